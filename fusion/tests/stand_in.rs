//! The stand-in engine (`model.stand_in`, for load tests of the shared
//! services) judges synthetic parts as the synthetic line's oracle does,
//! through the engine's own interpretation of verdict-v1 tokens, and needs
//! no ONNX Runtime at all.

use std::path::Path;

use firmware_config::Precision;
use fusion::{Decision, Engine, EngineSettings, Known, ModelPackage, Request, Standard};
use rand::rngs::StdRng;
use rand::SeedableRng;
use synth::standard::write_standard;
use synth::{Language, Phrasings, SynthLine, FRAME_SIZE};

#[test]
fn the_stand_in_agrees_with_the_oracle_without_onnx_runtime() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let package = ModelPackage::open(&repo.join("models/reference"), Precision::Fp32).unwrap();
    let settings = EngineSettings {
        stand_in: true,
        // A library that does not exist: loading any graph would fail.
        onnxruntime_library: "/nonexistent/libonnxruntime.so".into(),
        ..EngineSettings::cpu(1)
    };
    let mut engine = Engine::load(package, &settings).expect("the stand-in loads");
    assert!(engine.is_stand_in());

    let mut line = SynthLine::new(11);
    let mut rng = StdRng::seed_from_u64(11);
    let image = vec![0f32; 3 * 256 * 256];
    let (mut total, mut agreed, mut fails, mut cited_right, mut cited) = (0, 0, 0, 0, 0);
    for i in 0..400 {
        let part = line.next_part();
        let language = if i % 2 == 0 {
            Language::En
        } else {
            Language::Zh
        };
        let written = write_standard(&mut rng, &part.defects, language, Phrasings::Heldout);
        let expected = synth::judge(&part, &written);
        let standard = Standard::new("housing", written.text.clone());
        let known: Vec<Known> = part
            .defects
            .iter()
            .map(|d| Known {
                defect: d.kind.word().to_string(),
                box_norm: d.box_px.map(|v| v as f32 / FRAME_SIZE as f32),
                size_mm: d.size_mm,
            })
            .collect();
        let request = Request {
            image: &image,
            standard: &standard,
            mm_per_input_px: None,
            known: Some(&known),
        };
        let j = engine.judge_batch(&[request]).unwrap().remove(0);
        total += 1;
        let want = if expected.decision == "FAIL" {
            Decision::Fail
        } else {
            Decision::Pass
        };
        if j.decision == want {
            agreed += 1;
        }
        if j.decision == Decision::Fail {
            fails += 1;
        }
        // Each finding the stand-in wrote cites the clause the oracle says
        // the defect violates (or none where the standard tolerates it).
        for f in &j.findings {
            let truth = expected
                .findings
                .iter()
                .find(|e| e.kind.word() == f.defect && e.loc[0].abs_diff(f.loc[0]) <= 1)
                .expect("every finding is a drawn defect");
            cited += 1;
            if truth.clause == f.clause {
                cited_right += 1;
            }
        }
        // A verdict never contradicts itself: FAIL cites, PASS does not.
        let violated = j.findings.iter().any(|f| f.clause.is_some());
        assert_eq!(violated, j.decision == Decision::Fail, "{:?}", j.tokens);
    }
    let share = agreed as f64 / total as f64;
    let cite_share = cited_right as f64 / cited as f64;
    eprintln!("decisions {agreed}/{total}, clauses {cited_right}/{cited}, {fails} FAIL");
    assert!(share >= 0.97, "decisions agree on {share:.3} only");
    assert!(cite_share >= 0.97, "clauses agree on {cite_share:.3} only");
    assert!(
        fails > total / 5,
        "too few FAIL verdicts ({fails}) to mean anything"
    );
    assert!(fails < total, "every part failed");
}
