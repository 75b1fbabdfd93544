//! Sizes are judged in millimetres whatever the camera's scale: the same
//! picture, judged as if taken by a camera twice as coarse (each pixel twice
//! as many millimetres), must flip exactly the size decisions that the
//! doubled sizes flip. The engine rewrites the standard's limits into the
//! calibration the model was trained at (`[input] mm_per_px` in model.toml),
//! so this is the shipped model judging real parts of the synthetic line
//! under two calibrations.

use std::path::{Path, PathBuf};

use firmware_config::Precision;
use fusion::{Decision, Engine, EngineSettings, ModelPackage, Standard};
use synth::{DefectKind, SynthLine, MM_PER_PX};
use vision::preprocess::{self, Crop};

/// Share of parts rejected once their scratches are over the limit (0.94
/// measured). The model's size judgement is learned, so a bar, not every part.
const BAR: f64 = 0.85;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A size limit between the part's longest scratch and twice its length,
/// at least 25% from both, on a half-millimetre step; `None` if none fits.
fn limit_between(longest: f32) -> Option<f32> {
    let l = (longest * 1.42 * 2.0).round() / 2.0;
    (l >= longest * 1.25 && l * 1.25 <= longest * 2.0).then_some(l)
}

#[test]
fn a_doubled_scale_reads_as_the_halved_limit_and_rejects_the_oversize() {
    let package = ModelPackage::open(&repo().join("models/reference"), Precision::Fp32).unwrap();
    let trained = package
        .manifest
        .input
        .mm_per_px
        .expect("the reference model states the calibration it was trained at");
    assert_eq!(
        trained, MM_PER_PX,
        "trained on the synthetic line's calibration"
    );
    let mut engine = Engine::load(package, &EngineSettings::cpu(1)).unwrap();
    let spec = engine.input_spec();
    let mut line = SynthLine::new(4242);
    let (mut parts, mut right_as_shot, mut right_doubled) = (0, 0, 0);
    while parts < 16 {
        let part = line.next_part();
        // Parts showing scratches only: the size limit alone decides them.
        if part.defects.iter().any(|d| d.kind != DefectKind::Scratch) {
            continue;
        }
        let scratches: Vec<f32> = part.defects.iter().map(|d| d.size_mm).collect();
        let Some(longest) = scratches.iter().copied().reduce(f32::max) else {
            continue;
        };
        let Some(limit) = limit_between(longest) else {
            continue;
        };
        let written = |limit: f32| {
            Standard::new(
                "calibration",
                format!(
                    "1. Scratches longer than {limit} mm are rejected.\n\
                     2. Cracks are acceptable.\n3. Dents are acceptable.\n4. Stains are acceptable.\n\
                     5. Holes are acceptable.\n6. Contamination is acceptable.\n"
                ),
            )
        };
        let standard = written(limit);
        let x = preprocess::to_tensor(&part.image, Crop::full(&part.image), &spec);
        let crop = Crop::full(&part.image);
        let as_shot = crop.mm_per_input_px(part.mm_per_px as f64, &spec);
        let doubled = crop.mm_per_input_px(2.0 * part.mm_per_px as f64, &spec);
        assert!((engine.length_factor(Some(doubled)) - 0.5).abs() < 1e-6);
        let j1 = engine
            .judge_calibrated(std::slice::from_ref(&x), &standard, Some(as_shot))
            .unwrap()
            .remove(0);
        let j2 = engine
            .judge_calibrated(std::slice::from_ref(&x), &standard, Some(doubled))
            .unwrap()
            .remove(0);
        // Exactly the model's reading of half the limit at its own scale.
        let halved = engine
            .judge_calibrated(
                std::slice::from_ref(&x),
                &written(limit / 2.0),
                Some(as_shot),
            )
            .unwrap()
            .remove(0);
        assert_eq!(j2.tokens, halved.tokens, "limit {limit} mm, doubled scale");
        parts += 1;
        // As shot every scratch is under the limit; doubled, the longest is over.
        right_as_shot += usize::from(j1.model_decision == Decision::Pass);
        right_doubled += usize::from(j2.model_decision == Decision::Fail);
    }
    let (a, d) = (
        right_as_shot as f64 / parts as f64,
        right_doubled as f64 / parts as f64,
    );
    eprintln!("{parts} parts: as shot {a:.3} right (PASS), doubled {d:.3} right (FAIL)");
    // The rewrite is exact (asserted per part above). What the model makes
    // of the limits is its own size judgement, measured here: reference 0.3
    // FAILs most scratch-only parts under the limit (as shot 0.375 right on
    // this seed), so the bar is only that a coarser scale never rejects fewer.
    assert!(
        right_doubled >= parts - right_as_shot,
        "doubling mm_per_px rejected fewer parts ({right_doubled}) than as shot ({})",
        parts - right_as_shot
    );
    assert!(d >= BAR, "mm_per_px doubled: {d:.3} of {parts} parts right");
}
