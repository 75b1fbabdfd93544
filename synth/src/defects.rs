//! Defects the synthetic line paints onto parts, each with exact ground truth.
//!
//! Every defect reports the box of the pixels it visibly changed and its size in
//! millimetres the way a quality engineer measures it: length for linear
//! defects (scratch, crack), largest extent for the others.

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::canvas::{BoxAccumulator, Canvas};
use super::surface::PartRegion;

/// Kinds of surface defect the line produces and the standards talk about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    Scratch,
    Crack,
    Dent,
    Stain,
    Hole,
    Contamination,
    /// A sharp sliver of material left at an edge (new-line kind, never in
    /// the reference model's training data).
    Burr,
    /// A cluster of small gas pits in a coating (new-line kind).
    Porosity,
}

impl DefectKind {
    /// Every kind, in a fixed order.
    pub const ALL: [DefectKind; 6] = [
        DefectKind::Scratch,
        DefectKind::Crack,
        DefectKind::Dent,
        DefectKind::Stain,
        DefectKind::Hole,
        DefectKind::Contamination,
    ];

    /// Kinds that only the synthetic "new line" produces: the adaptation
    /// (fine-tuning) demonstration uses them because pretraining never saw
    /// them, neither drawn nor named.
    pub const NEW_LINE: [DefectKind; 2] = [DefectKind::Burr, DefectKind::Porosity];

    /// The word the model writes for this kind in a finding.
    pub fn word(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratch",
            DefectKind::Crack => "crack",
            DefectKind::Dent => "dent",
            DefectKind::Stain => "stain",
            DefectKind::Hole => "hole",
            DefectKind::Contamination => "contamination",
            DefectKind::Burr => "burr",
            DefectKind::Porosity => "porosity",
        }
    }

    /// The plural a standard uses ("scratches are tolerated").
    pub fn plural(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratches",
            DefectKind::Crack => "cracks",
            DefectKind::Dent => "dents",
            DefectKind::Stain => "stains",
            DefectKind::Hole => "holes",
            DefectKind::Contamination => "contamination",
            DefectKind::Burr => "burrs",
            DefectKind::Porosity => "porosity",
        }
    }

    /// Parses the finding word back into a kind.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain(Self::NEW_LINE)
            .find(|k| k.word() == word)
    }

    /// Size range in millimetres the line draws this kind at.
    fn size_range_mm(self) -> (f32, f32) {
        match self {
            DefectKind::Scratch => (0.8, 8.0),
            DefectKind::Crack => (0.8, 6.0),
            DefectKind::Dent => (0.8, 4.0),
            DefectKind::Stain => (1.0, 5.0),
            DefectKind::Hole => (0.6, 3.0),
            DefectKind::Contamination => (1.0, 4.0),
            DefectKind::Burr => (1.2, 4.0),
            DefectKind::Porosity => (1.2, 4.0),
        }
    }
}

/// One defect as drawn: the truth a verdict is scored against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrawnDefect {
    /// What it is.
    pub kind: DefectKind,
    /// Pixel box `[x0, y0, x1, y1]`, right/bottom exclusive.
    pub box_px: [u32; 4],
    /// Size in millimetres (length for scratches and cracks, extent otherwise).
    pub size_mm: f32,
}

/// Distance from point p to segment ab.
fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let (wx, wy) = (p.0 - a.0, p.1 - a.1);
    let len2 = vx * vx + vy * vy;
    let t = if len2 > 0.0 {
        ((wx * vx + wy * vy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * vx, a.1 + t * vy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

/// Paints an antialiased segment that brightens or darkens by `delta`.
fn stroke(
    canvas: &mut Canvas,
    acc: &mut BoxAccumulator,
    a: (f32, f32),
    b: (f32, f32),
    width: f32,
    delta: f32,
) {
    let pad = width + 2.0;
    let x0 = (a.0.min(b.0) - pad).max(0.0) as u32;
    let y0 = (a.1.min(b.1) - pad).max(0.0) as u32;
    let x1 = ((a.0.max(b.0) + pad) as u32).min(canvas.width - 1);
    let y1 = ((a.1.max(b.1) + pad) as u32).min(canvas.height - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d = segment_distance((x as f32 + 0.5, y as f32 + 0.5), a, b);
            let coverage = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
            if coverage > 0.0 {
                canvas.add(x, y, delta * coverage);
                acc.touch(x, y, coverage);
            }
        }
    }
}

/// Inclusive pixel bounds of a square of half-side `reach` around `centre`, clipped to the canvas.
fn window(canvas: &Canvas, centre: (f32, f32), reach: f32) -> (u32, u32, u32, u32) {
    (
        (centre.0 - reach).max(0.0) as u32,
        (centre.1 - reach).max(0.0) as u32,
        ((centre.0 + reach) as u32).min(canvas.width - 1),
        ((centre.1 + reach) as u32).min(canvas.height - 1),
    )
}

/// Paints a filled soft disk of colour `rgb`.
fn disk(
    canvas: &mut Canvas,
    acc: &mut BoxAccumulator,
    centre: (f32, f32),
    radius: f32,
    rgb: [f32; 3],
    opacity: f32,
) {
    let (x0, y0, x1, y1) = window(canvas, centre, radius + 1.0);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d =
                ((x as f32 + 0.5 - centre.0).powi(2) + (y as f32 + 0.5 - centre.1).powi(2)).sqrt();
            let coverage = (radius + 0.5 - d).clamp(0.0, 1.0) * opacity;
            if coverage > 0.0 {
                canvas.blend(x, y, rgb, coverage);
                acc.touch(x, y, coverage / opacity.max(1e-3));
            }
        }
    }
}

/// Draws one defect of `kind` with its extent centred at `centre`.
/// Returns `None` when nothing visible landed inside the frame.
pub fn paint_defect(
    rng: &mut StdRng,
    canvas: &mut Canvas,
    kind: DefectKind,
    centre: (f32, f32),
    size_mm: f32,
    mm_per_px: f32,
) -> Option<DrawnDefect> {
    let size_px = size_mm / mm_per_px;
    let mut acc = BoxAccumulator::default();
    let angle: f32 = rng.gen_range(0.0..std::f32::consts::PI);
    let (ux, uy) = (angle.cos(), angle.sin());
    match kind {
        DefectKind::Scratch => {
            let half = size_px / 2.0;
            let a = (centre.0 - ux * half, centre.1 - uy * half);
            let b = (centre.0 + ux * half, centre.1 + uy * half);
            let delta = if rng.gen_bool(0.6) { 0.38 } else { -0.32 };
            stroke(canvas, &mut acc, a, b, rng.gen_range(1.2..2.2), delta);
        }
        DefectKind::Crack => {
            let segments = 5;
            let step = size_px / segments as f32;
            let mut heading = angle;
            let mut p = (centre.0 - ux * size_px / 2.0, centre.1 - uy * size_px / 2.0);
            for _ in 0..segments {
                heading += rng.gen_range(-0.6..0.6);
                let q = (p.0 + heading.cos() * step, p.1 + heading.sin() * step);
                stroke(canvas, &mut acc, p, q, rng.gen_range(1.3..2.2), -0.5);
                p = q;
            }
        }
        DefectKind::Dent => {
            let r = size_px / 2.0;
            let light = rng.gen_range(0.0..std::f32::consts::TAU);
            let (lx, ly) = (light.cos(), light.sin());
            let (x0, y0, x1, y1) = window(canvas, centre, r + 1.0);
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let dx = (x as f32 + 0.5 - centre.0) / r;
                    let dy = (y as f32 + 0.5 - centre.1) / r;
                    let d2 = dx * dx + dy * dy;
                    if d2 < 1.0 {
                        let shade = (dx * lx + dy * ly) * (1.0 - d2).sqrt();
                        canvas.add(x, y, 0.42 * shade - 0.06);
                        acc.touch(x, y, 1.0);
                    }
                }
            }
        }
        DefectKind::Stain => {
            let rgb = [
                rng.gen_range(0.25..0.45),
                rng.gen_range(0.18..0.3),
                rng.gen_range(0.05..0.15),
            ];
            let blobs = rng.gen_range(2..5);
            for _ in 0..blobs {
                let off = (
                    rng.gen_range(-0.25..0.25) * size_px,
                    rng.gen_range(-0.25..0.25) * size_px,
                );
                let r = size_px * rng.gen_range(0.2..0.3);
                disk(
                    canvas,
                    &mut acc,
                    (centre.0 + off.0, centre.1 + off.1),
                    r,
                    rgb,
                    0.6,
                );
            }
        }
        DefectKind::Hole => {
            let r = size_px / 2.0;
            disk(canvas, &mut acc, centre, r + 1.0, [0.85, 0.85, 0.85], 0.7);
            disk(canvas, &mut acc, centre, r, [0.03, 0.03, 0.03], 1.0);
        }
        DefectKind::Contamination => {
            let specks = rng.gen_range(6..14);
            let rgb = if rng.gen_bool(0.5) {
                [0.05, 0.05, 0.05]
            } else {
                [0.75, 0.7, 0.3]
            };
            for _ in 0..specks {
                let off = (
                    rng.gen_range(-0.5..0.5) * size_px,
                    rng.gen_range(-0.5..0.5) * size_px,
                );
                disk(
                    canvas,
                    &mut acc,
                    (centre.0 + off.0, centre.1 + off.1),
                    rng.gen_range(0.7..1.5),
                    rgb,
                    0.9,
                );
            }
        }
        DefectKind::Burr => {
            // A bright tapering sliver with a thin shadow along one side.
            let (nx, ny) = (-uy, ux);
            let base = (centre.0 - ux * size_px / 2.0, centre.1 - uy * size_px / 2.0);
            for (i, width) in [2.6f32, 1.8, 1.0].into_iter().enumerate() {
                let reach = size_px * (1.0 - 0.3 * i as f32);
                let tip = (base.0 + ux * reach, base.1 + uy * reach);
                stroke(canvas, &mut acc, base, tip, width, 0.42);
            }
            let shadow = (base.0 + nx * 2.0, base.1 + ny * 2.0);
            let tip = (shadow.0 + ux * size_px * 0.8, shadow.1 + uy * size_px * 0.8);
            stroke(canvas, &mut acc, shadow, tip, 1.0, -0.25);
        }
        DefectKind::Porosity => {
            // Small dark pits with a lit rim, scattered over the extent.
            let pits = rng.gen_range(4..9);
            for _ in 0..pits {
                let off = (
                    rng.gen_range(-0.45..0.45) * size_px,
                    rng.gen_range(-0.45..0.45) * size_px,
                );
                let c = (centre.0 + off.0, centre.1 + off.1);
                let r = rng.gen_range(1.0..2.0);
                disk(
                    canvas,
                    &mut acc,
                    (c.0 - 0.7, c.1 - 0.7),
                    r + 0.6,
                    [0.8, 0.8, 0.75],
                    0.5,
                );
                disk(canvas, &mut acc, c, r, [0.06, 0.05, 0.05], 0.95);
            }
        }
    }
    let box_px = acc.bounds()?;
    let extent_mm = (box_px[2] - box_px[0]).max(box_px[3] - box_px[1]) as f32 * mm_per_px;
    let size_mm = match kind {
        DefectKind::Scratch | DefectKind::Crack => size_mm,
        _ => extent_mm,
    };
    Some(DrawnDefect {
        kind,
        box_px,
        size_mm: (size_mm * 100.0).round() / 100.0,
    })
}

/// Draws a size for a kind, uniformly over its range.
pub fn sample_size_mm(rng: &mut StdRng, kind: DefectKind) -> f32 {
    let (lo, hi) = kind.size_range_mm();
    rng.gen_range(lo..hi)
}

/// Picks a centre on the part far enough from the edges and from other defects.
pub fn sample_centre(
    rng: &mut StdRng,
    region: &PartRegion,
    extent_px: f32,
    taken: &[[u32; 4]],
) -> Option<(f32, f32)> {
    let margin = extent_px / 2.0 + 4.0;
    let (x0, x1) = (region.x0 as f32 + margin, region.x1 as f32 - margin);
    let (y0, y1) = (region.y0 as f32 + margin, region.y1 as f32 - margin);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    for _ in 0..30 {
        let c = (rng.gen_range(x0..x1), rng.gen_range(y0..y1));
        let clear = taken.iter().all(|b| {
            let gap = margin + 6.0;
            c.0 + gap < b[0] as f32
                || c.0 - gap > b[2] as f32
                || c.1 + gap < b[1] as f32
                || c.1 - gap > b[3] as f32
        });
        if clear {
            return Some(c);
        }
    }
    None
}
