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
pub fn to_tensor(img: &RgbImage, crop: Crop, spec: &InputSpec) -> Vec<f32> {
    let view = imageops::crop_imm(img, crop.x, crop.y, crop.width, crop.height).to_image();
    let sized = if view.dimensions() == (spec.width, spec.height) {
        view
    } else {
        imageops::resize(&view, spec.width, spec.height, FilterType::Triangle)
    };
    let plane = (spec.width * spec.height) as usize;
    let mut out = vec![0f32; plane * 3];
    for (i, px) in sized.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - spec.mean[c]) / spec.std[c];
        }
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
