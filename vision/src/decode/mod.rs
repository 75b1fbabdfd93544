//! Image decoding that survives hostile input.
//!
//! Files come from vision PCs, shared folders and the network: they may be
//! empty, truncated, not images at all, or crafted to allocate gigabytes.
//! Every such case becomes a `DecodeError` that names the problem; nothing
//! here panics or allocates without a bound.

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;

mod budget;
mod complete;

pub use budget::{Budget, Held, Refused};

/// Largest width or height accepted, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation accepted, in bytes.
pub const MAX_ALLOC: u64 = 512 << 20;

/// Why a file is not a usable picture.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty file")]
    Empty,
    #[error("not a supported image (PNG or JPEG expected)")]
    UnknownFormat,
    #[error("image is {width}x{height}, larger than the {MAX_SIDE}x{MAX_SIDE} limit")]
    TooLarge { width: u32, height: u32 },
    #[error("image is {width}x{height}: decoding it takes {} MiB, more than the {} MiB one picture may", bytes >> 20, MAX_ALLOC >> 20)]
    TooMuchMemory { width: u32, height: u32, bytes: u64 },
    #[error("the station stopped while the picture waited for memory")]
    Stopped,
    #[error("corrupt or truncated {format} image: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpg",
        _ => "image",
    }
}

/// What the header says, checked before any pixel is decoded.
struct Header {
    format: ImageFormat,
    name: &'static str,
    width: u32,
    height: u32,
    /// Bytes decoding needs at its peak: the decoder's own buffer, and the
    /// RGB copy when the file is not 8-bit RGB.
    peak: u64,
}

/// Decodes PNG or JPEG bytes into RGB, converting grayscale and 16-bit input
/// and turning the picture upright as its EXIF orientation says. Returns the
/// pixels and the format's file extension. For bytes from a trusted source;
/// an untrusted one uses [`decode_within`].
pub fn decode(bytes: &[u8]) -> Result<(RgbImage, &'static str), DecodeError> {
    let header = header(bytes)?;
    Ok((pixels(bytes, &header)?, header.name))
}

/// [`decode`], holding a share of `budget` for the decoded picture (taken
/// before decoding, waiting while it does not fit, the decoder's scratch
/// space given back afterwards). `give_up` ends a wait ([`DecodeError::Stopped`]).
pub fn decode_within(
    bytes: &[u8],
    budget: &std::sync::Arc<Budget>,
    give_up: impl Fn() -> bool,
) -> Result<(RgbImage, &'static str, Held), DecodeError> {
    let header = header(bytes)?;
    let held = budget
        .take(header.peak, give_up)
        .map_err(|refused| match refused {
            Refused::Larger { bytes, .. } => DecodeError::TooMuchMemory {
                width: header.width,
                height: header.height,
                bytes,
            },
            Refused::GaveUp => DecodeError::Stopped,
        })?;
    let image = pixels(bytes, &header)?;
    let held = budget.shrink(held, image.as_raw().len() as u64);
    Ok((image, header.name, held))
}

fn header(bytes: &[u8]) -> Result<Header, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(DecodeError::UnknownFormat);
    }
    let name = format_name(format);
    // Decoders forgive a missing tail (the JPEG decoder pads the missing
    // scanlines with grey); a part must never be judged on half a picture,
    // so the file's own structure has to say it is complete first.
    let complete = match format {
        ImageFormat::Png => complete::png(bytes),
        _ => complete::jpeg(bytes),
    };
    complete.map_err(|reason| DecodeError::Corrupt {
        format: name,
        reason,
    })?;
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        format: name,
        reason: e.to_string(),
    };
    let decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(DecodeError::TooLarge { width, height });
    }
    let rgb = u64::from(width) * u64::from(height) * 3;
    let peak = match (format, decoder.color_type()) {
        // Decoded straight into RGB.
        (ImageFormat::Jpeg, _) | (_, image::ColorType::Rgb8) => rgb,
        _ => decoder.total_bytes() + rgb,
    };
    if peak > MAX_ALLOC {
        return Err(DecodeError::TooMuchMemory {
            width,
            height,
            bytes: peak,
        });
    }
    Ok(Header {
        format,
        name,
        width,
        height,
        peak,
    })
}

fn pixels(bytes: &[u8], h: &Header) -> Result<RgbImage, DecodeError> {
    let (name, width, height) = (h.name, h.width, h.height);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), h.format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => DecodeError::TooMuchMemory {
            width,
            height,
            bytes: h.peak,
        },
        other => DecodeError::Corrupt {
            format: name,
            reason: other.to_string(),
        },
    };
    let mut decoder = reader.into_decoder().map_err(failed)?;
    // Unreadable EXIF is not a reason to refuse the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = if h.format == ImageFormat::Jpeg {
        drop(decoder);
        DynamicImage::ImageRgb8(strict_jpeg(bytes).map_err(|reason| DecodeError::Corrupt {
            format: name,
            reason,
        })?)
    } else {
        DynamicImage::from_decoder(decoder).map_err(failed)?
    };
    img.apply_orientation(orientation);
    // No copy when it is RGB already; otherwise the source is freed at once.
    Ok(img.into_rgb8())
}

/// The JPEG's pixels from a decoder in strict mode: entropy data that runs
/// out or does not parse is an error, where the lenient decoder would pad
/// the rest of the picture grey. (A scan cut short and then closed with an
/// end-of-image marker still decodes: neither check sees that case.)
fn strict_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let pixels = decoder.decode().map_err(|e| e.to_string())?;
    let info = decoder.info().ok_or("no frame header")?;
    RgbImage::from_raw(u32::from(info.width), u32::from(info.height), pixels)
        .ok_or_else(|| "fewer pixels than the frame header promises".to_string())
}

/// PNG bytes of a frame (fast compression: a camera frame is stored once,
/// losslessly, so review and retraining see exactly what the model saw).
pub fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(
        Cursor::new(&mut out),
        CompressionType::Fast,
        FilterType::Sub,
    )
    .write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .expect("encoding an in-memory PNG cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn good_png_decodes() {
        let (img, fmt) = decode(&png(8, 4)).unwrap();
        assert_eq!((img.width(), img.height(), fmt), (8, 4, "png"));
    }

    #[test]
    fn empty_and_foreign_files_are_named() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode(b"hello, not an image"),
            Err(DecodeError::UnknownFormat)
        );
    }

    #[test]
    fn truncated_png_is_corrupt() {
        let bytes = png(64, 64);
        let err = decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { format: "png", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn absurd_dimensions_are_refused_before_allocation() {
        // A PNG header claiming 100000 x 100000 pixels.
        let mut bytes = png(1, 1);
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge { .. } | DecodeError::Corrupt { .. }
            ),
            "{err:?}"
        );
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 60) as u8, 90])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .unwrap();
        out
    }

    /// Decoding must end in a picture or a named error, never a panic.
    fn survives(bytes: &[u8]) {
        match decode(bytes) {
            Ok((img, _)) => assert!(img.width() <= MAX_SIDE && img.height() <= MAX_SIDE),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn every_truncation_and_thousands_of_bit_flips_end_in_a_picture_or_an_error() {
        for original in [png(32, 24), jpeg(32, 24)] {
            for cut in 0..original.len() {
                survives(&original[..cut]);
            }
            let mut state = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..3000 {
                let mut bytes = original.clone();
                for _ in 0..1 + (state % 4) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let bit = (state % (bytes.len() as u64 * 8)) as usize;
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                survives(&bytes);
            }
        }
    }

    /// A camera-sized picture with texture, so the compressed data is long
    /// and every cut lands somewhere different.
    fn photo(format: ImageFormat) -> Vec<u8> {
        let mut state = 0x9e37_79b9u32;
        let img = RgbImage::from_fn(640, 480, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (state & 31) as u8;
            image::Rgb([
                ((x / 3) as u8).wrapping_add(n),
                ((y / 2) as u8).wrapping_add(n),
                ((x + y) / 5) as u8,
            ])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn no_truncation_of_a_real_sized_png_or_jpeg_is_ever_judged() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg] {
            let whole = photo(format);
            assert!(decode(&whole).is_ok(), "{format:?} whole");
            // 300 cuts spread over the file, plus every one of the last 40
            // bytes (where a decoder is most tempted to call it done).
            let step = (whole.len() / 300).max(1);
            let cuts = (1..whole.len())
                .step_by(step)
                .chain(whole.len() - 40..whole.len());
            for cut in cuts {
                match decode(&whole[..cut]) {
                    Err(DecodeError::Corrupt { .. }) | Err(DecodeError::UnknownFormat) => {}
                    other => panic!("{format:?} cut at {cut} of {}: {other:?}", whole.len()),
                }
            }
        }
    }

    #[test]
    fn a_png_whose_image_data_stops_early_is_refused() {
        // Rebuild the file with its IDAT data halved but every chunk intact
        // (valid lengths and CRCs), so only the pixel decoder can tell.
        let whole = photo(ImageFormat::Png);
        let mut out = whole[..8].to_vec();
        let mut at = 8;
        while at < whole.len() {
            let len = u32::from_be_bytes(whole[at..at + 4].try_into().unwrap()) as usize;
            let kind = &whole[at + 4..at + 8];
            let mut data = whole[at + 8..at + 8 + len].to_vec();
            if kind == b"IDAT" {
                data.truncate(len / 2);
            }
            let mut crc_input = kind.to_vec();
            crc_input.extend_from_slice(&data);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(&crc_input);
            out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
            at += 12 + len;
        }
        let err = decode(&out).unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { format: "png", .. }),
            "{err:?}"
        );
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_jpeg_claiming_50000_by_50000_is_refused_before_allocation() {
        let mut bytes = jpeg(8, 8);
        // Baseline SOF0: FF C0, length, precision, then height and width.
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 7].copy_from_slice(&50_000u16.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&50_000u16.to_be_bytes());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                width: 50_000,
                height: 50_000
            }
        );
    }

    #[test]
    fn a_small_grey_png_that_would_need_a_gigabyte_as_rgb_is_refused() {
        // Issue 18: 16384 x 16384 grey compresses to a few hundred kB but
        // needs 256 MiB decoded and 768 MiB more as RGB.
        let grey = image::GrayImage::new(16_384, 16_384);
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new_with_quality(
            Cursor::new(&mut bytes),
            CompressionType::Fast,
            FilterType::NoFilter,
        )
        .write_image(grey.as_raw(), 16_384, 16_384, image::ExtendedColorType::L8)
        .unwrap();
        drop(grey);
        assert!(bytes.len() < 2 << 20, "{} bytes", bytes.len());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooMuchMemory {
                width: 16_384,
                height: 16_384,
                bytes: 4 * 16_384 * 16_384
            }
        );
        assert!(err.to_string().contains("1024 MiB"), "{err}");
    }

    #[test]
    fn a_picture_holds_its_rgb_share_of_the_budget_while_it_lives() {
        let gray = image::GrayImage::from_pixel(100, 100, image::Luma([9]));
        let mut bytes = Vec::new();
        gray.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let budget = Budget::new(100 * 100 * 4);
        let (img, _, held) = decode_within(&bytes, &budget, || false).unwrap();
        // The grey buffer is given back; the RGB picture is held.
        assert_eq!((held.bytes(), budget.used()), (30_000, 30_000));
        let err = decode_within(&bytes, &budget, || true).unwrap_err();
        assert_eq!(err, DecodeError::Stopped, "the second waits for memory");
        drop((img, held));
        assert_eq!(budget.used(), 0);
        let small = Budget::new(100);
        let err = decode_within(&bytes, &small, || false).unwrap_err();
        assert!(matches!(err, DecodeError::TooMuchMemory { .. }), "{err:?}");
    }

    #[test]
    fn sixteen_bit_and_grayscale_pictures_become_8_bit_rgb() {
        let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(
            3,
            2,
            image::Rgb([65535, 32896, 0]),
        );
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb16(deep)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let (img, _) = decode(&bytes).unwrap();
        assert_eq!(img.get_pixel(2, 1).0, [255, 128, 0]);

        let gray = image::GrayImage::from_pixel(3, 2, image::Luma([77]));
        let mut bytes = Vec::new();
        gray.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let (img, _) = decode(&bytes).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [77, 77, 77]);
    }

    /// A JPEG with an EXIF APP1 segment saying "rotate 90 degrees clockwise
    /// to display" (orientation 6), as phones and some cameras write.
    fn exif_rotated_jpeg(w: u32, h: u32) -> Vec<u8> {
        let plain = jpeg(w, h);
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&[0, 6, 0, 0]); // value 6, padded
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = plain[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&plain[2..]);
        out
    }

    #[test]
    fn exif_orientation_turns_the_picture_upright() {
        let (img, fmt) = decode(&exif_rotated_jpeg(16, 8)).unwrap();
        assert_eq!((img.width(), img.height(), fmt), (8, 16, "jpg"));
        // The source's top-left (dark red channel) ends at the top-right.
        let top_right = img.get_pixel(7, 0)[0];
        let bottom_left = img.get_pixel(0, 15)[0];
        assert!(top_right < bottom_left, "{top_right} vs {bottom_left}");
    }
}
