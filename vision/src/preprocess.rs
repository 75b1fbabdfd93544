//! Turns a frame into the model's input tensor exactly as `model.toml` says:
//! region of interest, resize, mean/std normalisation, CHW float layout.

use image::imageops::{self, FilterType};
use image::RgbImage;

/// What the model expects of its input, from the package manifest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// A crop rectangle in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Crop {
    /// The whole of an image.
    pub fn full(img: &RgbImage) -> Self {
        Self {
            x: 0,
            y: 0,
            width: img.width(),
            height: img.height(),
        }
    }

    /// Millimetres one pixel of the model's input spans, for a camera whose
    /// frame pixels span `mm_per_px`: the crop is stretched to the input, so
    /// each input pixel covers `width / spec.width` frame pixels across and
    /// `height / spec.height` down; their mean is the scale sizes are read at.
    pub fn mm_per_input_px(&self, mm_per_px: f64, spec: &InputSpec) -> f32 {
        let across = self.width as f64 / spec.width.max(1) as f64;
        let down = self.height as f64 / spec.height.max(1) as f64;
        (mm_per_px * (across + down) / 2.0) as f32
    }

    /// A camera's region of interest within an (oriented) frame, clamped to
    /// it; the whole frame when the camera has none or it lies outside.
    pub fn of_roi(roi: Option<firmware_config::Roi>, img: &RgbImage) -> Self {
        roi.and_then(|r| {
            Crop {
                x: r.x,
                y: r.y,
                width: r.width,
                height: r.height,
            }
            .clamp_to(img)
        })
        .unwrap_or_else(|| Crop::full(img))
    }

    /// Clamps the crop to the image; `None` if nothing of it is inside.
    pub fn clamp_to(self, img: &RgbImage) -> Option<Self> {
        if self.x >= img.width() || self.y >= img.height() {
            return None;
        }
        Some(Self {
            x: self.x,
            y: self.y,
            width: self.width.min(img.width() - self.x),
            height: self.height.min(img.height() - self.y),
        })
    }
}

/// Crops, resizes (stretch, bilinear) and normalises into CHW floats.
/// A full-frame crop of the model's own size is neither copied nor resized,
/// and normalisation is one table look-up per channel value.
pub fn to_tensor(img: &RgbImage, crop: Crop, spec: &InputSpec) -> Vec<f32> {
    let cropped;
    let view = if crop == Crop::full(img) {
        img
    } else {
        cropped = imageops::crop_imm(img, crop.x, crop.y, crop.width, crop.height).to_image();
        &cropped
    };
    let resized;
    let sized = if view.dimensions() == (spec.width, spec.height) {
        view
    } else {
        resized = imageops::resize(view, spec.width, spec.height, FilterType::Triangle);
        &resized
    };
    let mut table = [[0f32; 256]; 3];
    for (c, row) in table.iter_mut().enumerate() {
        for (v, x) in row.iter_mut().enumerate() {
            *x = (v as f32 / 255.0 - spec.mean[c]) / spec.std[c];
        }
    }
    let plane = (spec.width * spec.height) as usize;
    let mut out = vec![0f32; plane * 3];
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in sized.as_raw().chunks_exact(3).enumerate() {
        r[i] = table[0][px[0] as usize];
        g[i] = table[1][px[1] as usize];
        b[i] = table[2][px[2] as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_into_planes() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 128]));
        let spec = InputSpec {
            width: 2,
            height: 2,
            mean: [0.5; 3],
            std: [0.5; 3],
        };
        let t = to_tensor(&img, Crop::full(&img), &spec);
        assert_eq!(t.len(), 12);
        assert!((t[0] - 1.0).abs() < 1e-6);
        assert!((t[4] + 1.0).abs() < 1e-6);
        assert!(t[8].abs() < 0.01);
    }
}
