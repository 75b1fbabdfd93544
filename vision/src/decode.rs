//! Image decoding that survives hostile input.
//!
//! Files come from vision PCs, shared folders and the network: they may be
//! empty, truncated, not images at all, or crafted to allocate gigabytes.
//! Every such case becomes a `DecodeError` that names the problem; nothing
//! here panics or allocates without a bound.

use image::{ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;

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

/// Decodes PNG or JPEG bytes into RGB, converting grayscale and 16-bit input.
/// Returns the pixels and the format's file extension.
pub fn decode(bytes: &[u8]) -> Result<(RgbImage, &'static str), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(DecodeError::UnknownFormat);
    }
    let name = format_name(format);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let (width, height) = reader.into_dimensions().map_err(|e| DecodeError::Corrupt {
        format: name,
        reason: e.to_string(),
    })?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(DecodeError::TooLarge { width, height });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => DecodeError::TooLarge { width, height },
        other => DecodeError::Corrupt {
            format: name,
            reason: other.to_string(),
        },
    })?;
    Ok((img.to_rgb8(), name))
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
}
