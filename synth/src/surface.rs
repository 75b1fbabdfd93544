//! Part surfaces for the synthetic line: materials, lighting and position.
//!
//! Real stations see the same part under drifting light and slightly shifted
//! fixtures; the generator varies exactly those so a model cannot learn the
//! defect from the background.

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::canvas::Canvas;

/// Surface finishes the synthetic line produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Material {
    BrushedSteel,
    AnodizedAluminium,
    BlackPlastic,
    CastIron,
    /// Only on the synthetic "new line" (adaptation demonstration).
    GreenPowderCoat,
}

impl Material {
    /// Every material, for uniform sampling.
    pub const ALL: [Material; 4] = [
        Material::BrushedSteel,
        Material::AnodizedAluminium,
        Material::BlackPlastic,
        Material::CastIron,
    ];

    fn base_colour(self) -> [f32; 3] {
        match self {
            Material::BrushedSteel => [0.62, 0.63, 0.65],
            Material::AnodizedAluminium => [0.33, 0.44, 0.66],
            Material::BlackPlastic => [0.20, 0.20, 0.22],
            Material::CastIron => [0.44, 0.41, 0.38],
            Material::GreenPowderCoat => [0.24, 0.47, 0.30],
        }
    }
}

/// Where the part sits in the frame: pixels outside are fixture background.
#[derive(Clone, Copy, Debug)]
pub struct PartRegion {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl PartRegion {
    /// Whether a pixel lies on the part.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }
}

/// Smooth random field in roughly -1..1, `cells` lattice cells across.
fn value_noise(rng: &mut StdRng, width: u32, height: u32, cells: u32) -> Vec<f32> {
    let gw = cells + 2;
    let lattice: Vec<f32> = (0..gw * gw).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut out = Vec::with_capacity((width * height) as usize);
    for y in 0..height {
        let fy = y as f32 / height as f32 * cells as f32;
        let (iy, ty) = (fy as u32, fy.fract());
        for x in 0..width {
            let fx = x as f32 / width as f32 * cells as f32;
            let (ix, tx) = (fx as u32, fx.fract());
            let at = |i: u32, j: u32| lattice[(j * gw + i) as usize];
            let top = at(ix, iy) * (1.0 - tx) + at(ix + 1, iy) * tx;
            let bottom = at(ix, iy + 1) * (1.0 - tx) + at(ix + 1, iy + 1) * tx;
            out.push(top * (1.0 - ty) + bottom * ty);
        }
    }
    out
}

/// Paints a defect-free part surface and returns where the part is.
pub fn paint_surface(
    rng: &mut StdRng,
    width: u32,
    height: u32,
    material: Material,
) -> (Canvas, PartRegion) {
    let base = material.base_colour();
    let tint: f32 = rng.gen_range(-0.06..0.06);
    let mut canvas = Canvas::filled(width, height, base);

    // Texture by material.
    let coarse = value_noise(rng, width, height, 6);
    let fine = value_noise(rng, width, height, 48);
    let streaks: Vec<f32> = (0..height).map(|_| rng.gen_range(-1.0..1.0)).collect();
    for y in 0..height {
        for x in 0..width {
            let i = (y * width + x) as usize;
            let texture = match material {
                Material::BrushedSteel => 0.05 * streaks[y as usize] + 0.03 * coarse[i],
                Material::AnodizedAluminium => 0.02 * fine[i] + 0.03 * coarse[i],
                Material::BlackPlastic => 0.025 * fine[i] + 0.02 * coarse[i],
                Material::CastIron => 0.06 * fine[i] + 0.04 * coarse[i],
                Material::GreenPowderCoat => 0.035 * fine[i] + 0.025 * coarse[i],
            };
            canvas.add(x, y, texture + tint);
        }
    }

    // Fixture offset: a strip of background on up to two sides.
    let mut region = PartRegion {
        x0: 0,
        y0: 0,
        x1: width,
        y1: height,
    };
    let max_margin = width / 10;
    if rng.gen_bool(0.5) {
        let m = rng.gen_range(0..=max_margin);
        if rng.gen_bool(0.5) {
            region.x0 = m;
        } else {
            region.x1 = width - m;
        }
    }
    if rng.gen_bool(0.5) {
        let m = rng.gen_range(0..=max_margin);
        if rng.gen_bool(0.5) {
            region.y0 = m;
        } else {
            region.y1 = height - m;
        }
    }
    let background = [0.08, 0.09, 0.08];
    for y in 0..height {
        for x in 0..width {
            if !region.contains(x, y) {
                canvas.set(x, y, background);
            }
        }
    }
    (canvas, region)
}

/// Applies a lighting gradient, vignette and sensor noise to the finished part.
pub fn apply_lighting(rng: &mut StdRng, canvas: &mut Canvas) {
    let (w, h) = (canvas.width as f32, canvas.height as f32);
    let angle: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let slope: f32 = rng.gen_range(0.0..0.35);
    let gain: f32 = rng.gen_range(0.8..1.2);
    let vignette: f32 = rng.gen_range(0.0..0.25);
    for y in 0..canvas.height {
        for x in 0..canvas.width {
            let u = x as f32 / w - 0.5;
            let v = y as f32 / h - 0.5;
            let light =
                gain * (1.0 + slope * (u * dx + v * dy)) * (1.0 - vignette * (u * u + v * v));
            let noise: f32 = (rng.gen::<f32>() + rng.gen::<f32>() - 1.0) * 0.025;
            let px = canvas.get(x, y);
            canvas.set(
                x,
                y,
                [
                    px[0] * light + noise,
                    px[1] * light + noise,
                    px[2] * light + noise,
                ],
            );
        }
    }
}
