//! The synthetic line: parts with known defects, standards with known verdicts.
//!
//! It exists so that the model can be trained and scored without a plant's
//! images, so the demo has a camera, and so soak tests can score verdicts live.
//! It is written once, here, and everything else (the Python toolchain
//! included) reads what it writes.

mod canvas;
pub mod dataset;
pub mod defects;
pub mod plant;
pub mod standard;
pub mod surface;
pub mod wording;

use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use defects::{DefectKind, DrawnDefect};
pub use standard::{Language, Phrasings, Rule, SynthClause, WrittenStandard};
pub use surface::Material;
pub use wording::Wording;

/// Frame width and height the line produces, in pixels.
pub const FRAME_SIZE: u32 = 256;
/// Calibration of the synthetic camera.
pub const MM_PER_PX: f32 = 0.1;

/// One photographed part with its ground truth.
pub struct SynthPart {
    /// The photograph.
    pub image: RgbImage,
    /// The surface finish.
    pub material: Material,
    /// Camera calibration the sizes were computed with.
    pub mm_per_px: f32,
    /// Every defect on the part, in reading order (top to bottom, left to right).
    pub defects: Vec<DrawnDefect>,
}

/// The verdict the oracle gives a part under a standard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectedVerdict {
    /// `PASS` or `FAIL`.
    pub decision: String,
    /// One entry per defect, in the same order as the part's defects.
    pub findings: Vec<ExpectedFinding>,
    /// The verdict-v1 token sequence the model is trained to write.
    pub target: String,
}

/// One defect as the oracle judged it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectedFinding {
    pub kind: DefectKind,
    pub box_px: [u32; 4],
    /// Box in 0..999 location bins.
    pub loc: [u32; 4],
    pub size_mm: f32,
    /// The clause violated, or `None` when the standard tolerates it.
    pub clause: Option<u32>,
}

/// Converts a pixel coordinate to a 0..999 location bin.
pub fn loc_bin(px: u32, extent: u32) -> u32 {
    ((px as u64 * 1000) / extent as u64).min(999) as u32
}

/// Generates parts one after another from a seed: same seed, same parts.
pub struct SynthLine {
    rng: StdRng,
}

impl SynthLine {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Paints the next part.
    pub fn next_part(&mut self) -> SynthPart {
        let rng = &mut self.rng;
        let material = Material::ALL[rng.gen_range(0..Material::ALL.len())];
        let (mut canvas, region) = surface::paint_surface(rng, FRAME_SIZE, FRAME_SIZE, material);
        let count = match rng.gen::<f32>() {
            r if r < 0.25 => 0,
            r if r < 0.65 => 1,
            r if r < 0.9 => 2,
            _ => 3,
        };
        // Half the parts with several defects repeat one kind, so that count
        // limits in the standards have something to count.
        let repeat = rng.gen_bool(0.5);
        let mut defects: Vec<DrawnDefect> = Vec::new();
        for i in 0..count {
            let kind = match defects.first() {
                Some(first) if repeat && i > 0 => first.kind,
                _ => DefectKind::ALL[rng.gen_range(0..DefectKind::ALL.len())],
            };
            let size_mm = defects::sample_size_mm(rng, kind);
            let taken: Vec<[u32; 4]> = defects.iter().map(|d| d.box_px).collect();
            let Some(centre) = defects::sample_centre(rng, &region, size_mm / MM_PER_PX, &taken)
            else {
                continue;
            };
            if let Some(d) =
                defects::paint_defect(rng, &mut canvas, kind, centre, size_mm, MM_PER_PX)
            {
                defects.push(d);
            }
        }
        surface::apply_lighting(rng, &mut canvas);
        defects.sort_by_key(|d| (d.box_px[1], d.box_px[0]));
        SynthPart {
            image: canvas.to_rgb8(),
            material,
            mm_per_px: MM_PER_PX,
            defects,
        }
    }

    /// Paints a part of `material` carrying one defect of `kind` (or none),
    /// with the defect's pixel mask: the "new line" the adaptation
    /// demonstration fine-tunes on.
    pub fn next_plant_part(
        &mut self,
        material: Material,
        kind: Option<DefectKind>,
    ) -> (SynthPart, Option<image::GrayImage>) {
        let rng = &mut self.rng;
        let (mut canvas, region) = surface::paint_surface(rng, FRAME_SIZE, FRAME_SIZE, material);
        let mut defects = Vec::new();
        let mut mask = None;
        if let Some(kind) = kind {
            let size_mm = defects::sample_size_mm(rng, kind);
            if let Some(centre) = defects::sample_centre(rng, &region, size_mm / MM_PER_PX, &[]) {
                let before = canvas.clone();
                if let Some(d) =
                    defects::paint_defect(rng, &mut canvas, kind, centre, size_mm, MM_PER_PX)
                {
                    mask = Some(image::GrayImage::from_fn(FRAME_SIZE, FRAME_SIZE, |x, y| {
                        let (a, b) = (before.get(x, y), canvas.get(x, y));
                        let change: f32 = (0..3).map(|c| (a[c] - b[c]).abs()).sum();
                        image::Luma([if change > 0.04 { 255 } else { 0 }])
                    }));
                    defects.push(d);
                }
            }
        }
        surface::apply_lighting(rng, &mut canvas);
        let part = SynthPart {
            image: canvas.to_rgb8(),
            material,
            mm_per_px: MM_PER_PX,
            defects,
        };
        (part, mask)
    }

    /// Writes a standard suited to judging `part`.
    pub fn write_standard(
        &mut self,
        part: &SynthPart,
        language: Language,
        set: Phrasings,
    ) -> WrittenStandard {
        standard::write_standard(&mut self.rng, &part.defects, language, set)
    }

    /// A twin of `standard` differing in one clause so that `part`'s decision
    /// flips (see [`standard::counterfactual`]).
    pub fn counterfactual(
        &mut self,
        part: &SynthPart,
        standard: &WrittenStandard,
        set: Phrasings,
    ) -> Option<WrittenStandard> {
        standard::counterfactual(&mut self.rng, standard, &part.defects, set)
    }

    /// Writes a standard suited to judging `part` in `wording`: the first
    /// wording exactly as [`SynthLine::write_standard`] writes it, or the
    /// composed one ([`wording::write_standard`]).
    pub fn write_standard_worded(
        &mut self,
        part: &SynthPart,
        language: Language,
        set: Phrasings,
        wording: Wording,
    ) -> WrittenStandard {
        match wording {
            Wording::V1 => self.write_standard(part, language, set),
            Wording::V2 => wording::write_standard(&mut self.rng, &part.defects, language, set),
        }
    }

    /// The counterfactual twin of a standard written in `wording`.
    pub fn counterfactual_worded(
        &mut self,
        part: &SynthPart,
        standard: &WrittenStandard,
        set: Phrasings,
        wording: Wording,
    ) -> Option<WrittenStandard> {
        match wording {
            Wording::V1 => self.counterfactual(part, standard, set),
            Wording::V2 => wording::counterfactual(&mut self.rng, standard, &part.defects, set),
        }
    }
}

/// Judges a part under a standard exactly as the standard says.
pub fn judge(part: &SynthPart, standard: &WrittenStandard) -> ExpectedVerdict {
    let (w, h) = part.image.dimensions();
    let findings: Vec<ExpectedFinding> = part
        .defects
        .iter()
        .map(|d| ExpectedFinding {
            kind: d.kind,
            box_px: d.box_px,
            loc: [
                loc_bin(d.box_px[0], w),
                loc_bin(d.box_px[1], h),
                loc_bin(d.box_px[2], w),
                loc_bin(d.box_px[3], h),
            ],
            size_mm: d.size_mm,
            clause: standard::violated_clause(standard, d, &part.defects),
        })
        .collect();
    let fail = findings.iter().any(|f| f.clause.is_some());
    let mut target = String::from(if fail { "<fail>" } else { "<pass>" });
    for f in &findings {
        target.push(' ');
        target.push_str(f.kind.word());
        target.push(' ');
        for l in f.loc {
            target.push_str(&format!("<loc_{l}>"));
        }
        match f.clause {
            Some(n) => target.push_str(&format!(" <clause_{n}>")),
            None => target.push_str(" <ok>"),
        }
    }
    target.push_str(" </s>");
    ExpectedVerdict {
        decision: if fail { "FAIL" } else { "PASS" }.to_string(),
        findings,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_parts() {
        let a = SynthLine::new(7).next_part();
        let b = SynthLine::new(7).next_part();
        assert_eq!(a.image.as_raw(), b.image.as_raw());
        assert_eq!(a.defects, b.defects);
    }

    #[test]
    fn defects_are_visible_where_their_box_says() {
        let mut line = SynthLine::new(11);
        let mut checked = 0;
        for _ in 0..40 {
            let part = line.next_part();
            for d in &part.defects {
                assert!(d.box_px[2] > d.box_px[0] && d.box_px[3] > d.box_px[1]);
                assert!(d.box_px[2] <= FRAME_SIZE && d.box_px[3] <= FRAME_SIZE);
                assert!(d.size_mm > 0.3, "{d:?}");
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} defects in 40 parts");
    }

    #[test]
    fn oracle_fails_banned_and_oversize_defects_only() {
        let mut line = SynthLine::new(3);
        let mut seen = (0, 0);
        for _ in 0..60 {
            let part = line.next_part();
            let language = Language::ALL[seen.0 % 2];
            let standard = line.write_standard(&part, language, Phrasings::Train);
            let verdict = judge(&part, &standard);
            for f in &verdict.findings {
                let clause = standard
                    .clauses
                    .iter()
                    .find(|c| c.kind == Some(f.kind))
                    .unwrap();
                let of_kind = verdict.findings.iter().filter(|g| g.kind == f.kind).count();
                let expected = match clause.rule {
                    Rule::Ban => Some(clause.number),
                    Rule::Tolerate => None,
                    Rule::Limit { limit_mm } => (f.size_mm > limit_mm).then_some(clause.number),
                    Rule::Count { max_count } => {
                        (of_kind as u32 > max_count).then_some(clause.number)
                    }
                };
                assert_eq!(f.clause, expected);
                if f.clause.is_some() {
                    seen.0 += 1
                } else {
                    seen.1 += 1
                }
            }
            assert_eq!(
                verdict.decision == "FAIL",
                verdict.findings.iter().any(|f| f.clause.is_some())
            );
            assert!(verdict.target.ends_with("</s>"));
        }
        assert!(seen.0 > 5 && seen.1 > 5, "{seen:?}");
    }

    #[test]
    fn counterfactual_twin_flips_the_decision_and_changes_one_clause() {
        let mut line = SynthLine::new(21);
        let mut made = 0;
        for i in 0..80 {
            let part = line.next_part();
            let language = Language::ALL[i % 2];
            let standard = line.write_standard(&part, language, Phrasings::Heldout);
            let Some(twin) = line.counterfactual(&part, &standard, Phrasings::Heldout) else {
                continue;
            };
            made += 1;
            assert_ne!(
                judge(&part, &standard).decision,
                judge(&part, &twin).decision
            );
            let changed = standard
                .clauses
                .iter()
                .zip(&twin.clauses)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(changed, 1, "{}\n---\n{}", standard.text, twin.text);
            let differing = standard
                .text
                .lines()
                .zip(twin.text.lines())
                .filter(|(a, b)| a != b)
                .count();
            assert!(differing <= 1);
        }
        assert!(made > 30, "only {made} twins");
    }

    #[test]
    fn heldout_phrasings_never_appear_in_training_standards() {
        let mut line = SynthLine::new(5);
        let mut train = std::collections::HashSet::new();
        for i in 0..300 {
            let part = line.next_part();
            let s = line.write_standard(&part, Language::ALL[i % 2], Phrasings::Train);
            train.extend(
                s.text
                    .lines()
                    .skip(1)
                    .map(|l| l.split_once(". ").unwrap().1.to_string()),
            );
        }
        let mut line = SynthLine::new(6);
        for i in 0..100 {
            let part = line.next_part();
            let s = line.write_standard(&part, Language::ALL[i % 2], Phrasings::Heldout);
            for (c, l) in s.clauses.iter().zip(s.text.lines().skip(1)) {
                if c.kind.is_some() {
                    assert!(!train.contains(l.split_once(". ").unwrap().1), "{l}");
                }
            }
        }
    }
}
