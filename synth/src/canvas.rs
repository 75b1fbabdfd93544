//! A float RGB canvas the synthetic line paints on, plus the bounding-box
//! accumulator that turns what a defect painted into exact ground truth.
//!
//! Painting happens in linear 0..1 floats so defects can be blended additively;
//! only the finished part is quantised to 8-bit.

use image::RgbImage;

/// A planar-free, row-major RGB float image.
#[derive(Clone)]
pub struct Canvas {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` values, row-major, RGB interleaved.
    pub data: Vec<f32>,
}

impl Canvas {
    /// A canvas filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [f32; 3]) -> Self {
        let mut data = Vec::with_capacity((width * height * 3) as usize);
        for _ in 0..width * height {
            data.extend_from_slice(&rgb);
        }
        Self {
            width,
            height,
            data,
        }
    }

    fn index(&self, x: u32, y: u32) -> usize {
        ((y * self.width + x) * 3) as usize
    }

    /// The colour at a pixel.
    pub fn get(&self, x: u32, y: u32) -> [f32; 3] {
        let i = self.index(x, y);
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Replaces the colour at a pixel.
    pub fn set(&mut self, x: u32, y: u32, rgb: [f32; 3]) {
        let i = self.index(x, y);
        self.data[i..i + 3].copy_from_slice(&rgb);
    }

    /// Blends `rgb` over the pixel with coverage `alpha` (0..1).
    pub fn blend(&mut self, x: u32, y: u32, rgb: [f32; 3], alpha: f32) {
        let i = self.index(x, y);
        for (c, value) in rgb.iter().enumerate() {
            self.data[i + c] = self.data[i + c] * (1.0 - alpha) + value * alpha;
        }
    }

    /// Adds `delta` (may be negative) to every channel of a pixel.
    pub fn add(&mut self, x: u32, y: u32, delta: f32) {
        let i = self.index(x, y);
        for c in 0..3 {
            self.data[i + c] += delta;
        }
    }

    /// Quantises to an 8-bit image, clamping out-of-range values.
    pub fn to_rgb8(&self) -> RgbImage {
        let bytes = self
            .data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        RgbImage::from_raw(self.width, self.height, bytes).expect("canvas size matches buffer")
    }
}

/// Collects the pixels a defect visibly changed, to report its exact box.
#[derive(Debug, Default, Clone, Copy)]
pub struct BoxAccumulator {
    min: Option<(u32, u32)>,
    max: (u32, u32),
}

/// Coverage above which a pixel counts as part of the defect's box.
const VISIBLE_COVERAGE: f32 = 0.25;

impl BoxAccumulator {
    /// Records a painted pixel if its coverage is visible.
    pub fn touch(&mut self, x: u32, y: u32, coverage: f32) {
        if coverage < VISIBLE_COVERAGE {
            return;
        }
        match &mut self.min {
            None => {
                self.min = Some((x, y));
                self.max = (x, y);
            }
            Some(min) => {
                min.0 = min.0.min(x);
                min.1 = min.1.min(y);
                self.max.0 = self.max.0.max(x);
                self.max.1 = self.max.1.max(y);
            }
        }
    }

    /// The box as `[x0, y0, x1, y1]` with exclusive right/bottom edges.
    pub fn bounds(&self) -> Option<[u32; 4]> {
        self.min
            .map(|(x0, y0)| [x0, y0, self.max.0 + 1, self.max.1 + 1])
    }
}
