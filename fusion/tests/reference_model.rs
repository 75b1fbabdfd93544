//! The shipped reference model, run by the appliance's engine:
//! - parity: for fixed parts and standards, the engine decodes exactly the
//!   tokens the model toolchain decoded with ONNX Runtime from Python
//!   (FP32: fixtures written by `python -m toolchain.parity`, the same on
//!   every x86-64 CPU; INT8: that script run live on this machine, because
//!   ONNX Runtime's integer kernels round differently on CPUs with and
//!   without VNNI);
//! - accuracy: on parts generated fresh here (held-out phrasings, English and
//!   Chinese), the decision accuracy does not fall more than a stated margin
//!   below the figure the package reports in model.toml.

use std::path::{Path, PathBuf};

use firmware_config::Precision;
use fusion::{Decision, Engine, EngineSettings, ModelPackage, Standard, StandardForm};
use serde::Deserialize;
use synth::dataset::{write_dataset, DatasetSpec};
use synth::{Language, Phrasings};
use vision::preprocess::{self, Crop};

/// How far below its reported decision accuracy the model may score on a
/// fresh 120-part set before this test calls it a regression. The set holds
/// about 450 judgements, so one standard error is about 1.5 points.
const ACCURACY_MARGIN: f64 = 0.05;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference engine reading standards in `form`: parity compares the
/// graphs and the decoding on the text as written (what the toolchain's
/// mirror feeds them); accuracy is measured as the package ships.
fn engine(precision: Precision, form: Option<StandardForm>) -> Engine {
    let mut package = ModelPackage::open(&repo().join("models/reference"), precision).unwrap();
    if let Some(form) = form {
        package.manifest.prompt.standard = form;
    }
    let settings = EngineSettings::cpu(1);
    Engine::load(package, &settings).expect("reference model loads")
}

#[derive(Deserialize)]
struct Fixtures {
    dataset: FixtureSpec,
    items: Vec<Fixture>,
}

#[derive(Deserialize)]
struct FixtureSpec {
    count: usize,
    seed: u64,
    standards_per_part: usize,
    languages: Vec<String>,
    heldout: bool,
    counterfactuals: bool,
}

#[derive(Deserialize)]
struct Fixture {
    precision: String,
    part: usize,
    standard: usize,
    tokens: Vec<String>,
}

#[derive(Deserialize)]
struct Record {
    image: String,
    standards: Vec<JudgedStandard>,
}

#[derive(Deserialize)]
struct JudgedStandard {
    text: String,
    verdict: Truth,
}

#[derive(Deserialize)]
struct Truth {
    decision: String,
}

fn write(dir: &Path, spec: &DatasetSpec) -> Vec<Record> {
    let manifest = write_dataset(dir, spec).unwrap();
    std::fs::read_to_string(manifest)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tensor(engine: &Engine, dir: &Path, record: &Record) -> Vec<f32> {
    let img = image::open(dir.join(&record.image)).unwrap().to_rgb8();
    preprocess::to_tensor(&img, Crop::full(&img), &engine.input_spec())
}

/// The toolchain's tokens for the set already written in `dataset`, decoded
/// by Python's ONNX Runtime on this machine.
fn python_tokens_here(dataset: &Path, precision: &str) -> Fixtures {
    let out = dataset.join(format!("parity-{precision}.json"));
    let status = std::process::Command::new("python3")
        .current_dir(repo().join("models"))
        .args([
            "-m",
            "toolchain.parity",
            "--package",
            "reference",
            "--dataset",
        ])
        .arg(dataset)
        .args(["--precisions", precision, "--out"])
        .arg(&out)
        .status()
        .expect("python3 runs (make setup installs the toolchain's packages)");
    assert!(status.success(), "python -m toolchain.parity failed");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn engine_decodes_exactly_the_toolchain_tokens() {
    let text = std::fs::read_to_string(repo().join("fusion/tests/fixtures/reference_parity.json"))
        .expect("parity fixtures (python -m toolchain.parity)");
    let fixtures: Fixtures = serde_json::from_str(&text).unwrap();
    let f = &fixtures.dataset;
    let dir = tempfile::tempdir().unwrap();
    let records = write(
        dir.path(),
        &DatasetSpec {
            count: f.count,
            seed: f.seed,
            standards_per_part: f.standards_per_part,
            languages: f
                .languages
                .iter()
                .map(|l| Language::parse(l).unwrap())
                .collect(),
            phrasings: if f.heldout {
                Phrasings::Heldout
            } else {
                Phrasings::Train
            },
            counterfactuals: f.counterfactuals,
        },
    );
    let int8 = python_tokens_here(dir.path(), "int8");
    let mut checked = 0;
    for (precision, name, items) in [
        (Precision::Fp32, "fp32", &fixtures.items),
        (Precision::Int8, "int8", &int8.items),
    ] {
        let mut engine = engine(precision, Some(StandardForm::AsWritten));
        for item in items.iter().filter(|i| i.precision == name) {
            let record = &records[item.part];
            let standard = Standard::new("parity", record.standards[item.standard].text.clone());
            let x = tensor(&engine, dir.path(), record);
            let j = engine.judge(&[x], &standard).unwrap().remove(0);
            assert_eq!(
                j.tokens, item.tokens,
                "{name} part {} standard {}:\n{}",
                item.part, item.standard, standard.text
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} fixtures");
}

#[test]
fn decision_accuracy_holds_on_fresh_parts() {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(repo().join("models/reference/model.toml")).unwrap(),
    )
    .unwrap();
    let reported = manifest["evaluation"]["fp32"]["decision"]
        .as_float()
        .expect("model.toml reports [evaluation.fp32] decision");
    let dir = tempfile::tempdir().unwrap();
    let records = write(
        dir.path(),
        &DatasetSpec {
            count: 120,
            seed: 424_242,
            standards_per_part: 2,
            languages: vec![Language::En, Language::Zh],
            phrasings: Phrasings::Heldout,
            counterfactuals: true,
        },
    );
    let mut engine = engine(Precision::Fp32, None);
    let (mut right, mut total) = (0usize, 0usize);
    for record in &records {
        let x = tensor(&engine, dir.path(), record);
        for s in &record.standards {
            let standard = Standard::new("accuracy", s.text.clone());
            let j = engine
                .judge(std::slice::from_ref(&x), &standard)
                .unwrap()
                .remove(0);
            let want = if s.verdict.decision == "FAIL" {
                Decision::Fail
            } else {
                Decision::Pass
            };
            right += usize::from(j.model_decision == want);
            total += 1;
        }
    }
    let accuracy = right as f64 / total as f64;
    assert!(
        accuracy >= reported - ACCURACY_MARGIN,
        "decision accuracy {accuracy:.3} on {total} fresh judgements; model.toml reports {reported:.3}"
    );
}

/// A grey, finely textured surface; with `hole`, a dark disc of radius 14 px
/// centred there.
fn surface(seed: u32, hole: Option<(f32, f32)>) -> image::RgbImage {
    image::RgbImage::from_fn(256, 256, |x, y| {
        // A cheap deterministic hash: texture without a random crate.
        let h = (x.wrapping_mul(73_856_093)
            ^ y.wrapping_mul(19_349_663)
            ^ seed.wrapping_mul(83_492_791))
            % 23;
        let mut v = 150 + h as u8;
        if let Some((cx, cy)) = hole {
            if (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < 14.0f32.powi(2) {
                v = 20;
            }
        }
        image::Rgb([v, v, v])
    })
}

/// Good-only commissioning end to end: `toolchain.anomaly` fits a bank on
/// pictures of a good surface, and the engine sends a picture with a hole
/// to REVIEW with an `unknown` finding boxed around the hole, while a good
/// picture it never saw keeps the decoder's verdict.
#[test]
fn a_package_commissioned_on_good_parts_only_sends_an_unseen_defect_to_review() {
    let dir = tempfile::tempdir().unwrap();
    let (good, hole) = (dir.path().join("eval/good"), dir.path().join("eval/hole"));
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&hole).unwrap();
    let bank = dir.path().join("bank");
    std::fs::create_dir_all(&bank).unwrap();
    for i in 0..10 {
        surface(i, None)
            .save(bank.join(format!("{i}.png")))
            .unwrap();
        surface(100 + i, None)
            .save(good.join(format!("{i}.png")))
            .unwrap();
        let at = (60.0 + 14.0 * i as f32, 190.0 - 10.0 * i as f32);
        surface(200 + i, Some(at))
            .save(hole.join(format!("{i}.png")))
            .unwrap();
    }
    let out = dir.path().join("pkg");
    let status = std::process::Command::new("python3")
        .current_dir(repo().join("models"))
        .args(["-m", "toolchain.anomaly", "--base", "reference", "--good"])
        .arg(&bank)
        .arg("--eval")
        .arg(dir.path().join("eval"))
        .args([
            "--per-class",
            "10",
            "--bank",
            "256",
            "--threads",
            "1",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("python3 runs (make setup installs the toolchain's packages)");
    assert!(status.success(), "python -m toolchain.anomaly failed");

    let package = ModelPackage::open(&out, Precision::Fp32).expect("the package verifies");
    let threshold = package
        .manifest
        .anomaly
        .as_ref()
        .expect("[anomaly]")
        .threshold;
    let mut engine = Engine::load(package, &EngineSettings::cpu(1)).unwrap();
    let standard = Standard::new("plant", "Surface standard.\n1. No holes are permitted.");
    let judge = |engine: &mut Engine, img: &image::RgbImage| {
        let x = preprocess::to_tensor(img, Crop::full(img), &engine.input_spec());
        engine
            .judge(std::slice::from_ref(&x), &standard)
            .unwrap()
            .remove(0)
    };
    let clean = judge(&mut engine, &surface(999, None));
    let a = clean.anomaly.as_ref().expect("every judgement is scored");
    assert!(
        !a.over(),
        "a good surface scored {} over {threshold}",
        a.score
    );
    assert!(clean.findings.iter().all(|f| f.defect != "unknown"));

    let holed = judge(&mut engine, &surface(998, Some((96.0, 160.0))));
    let a = holed.anomaly.as_ref().unwrap();
    assert!(a.over(), "a hole scored {} under {threshold}", a.score);
    assert_eq!(holed.decision, Decision::Review, "{holed:?}");
    assert!(
        holed
            .review_reason
            .as_deref()
            .unwrap()
            .contains("unlike the good parts"),
        "{holed:?}"
    );
    let unknown = holed
        .findings
        .iter()
        .find(|f| f.defect == "unknown")
        .unwrap();
    let [x0, y0, x1, y1] = unknown.box_norm;
    let (cx, cy) = (96.0 / 256.0, 160.0 / 256.0);
    assert!(x0 <= cx && cx <= x1 && y0 <= cy && cy <= y1, "{unknown:?}");
    assert!(
        (x1 - x0) * (y1 - y0) < 0.25,
        "the box marks the hole, not the part: {unknown:?}"
    );
    assert_eq!(unknown.clause, None);

    // The toolchain's own figures, written into the package.
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("model.toml")).unwrap()).unwrap();
    assert_eq!(
        manifest["evaluation"]["anomaly"]["auroc"].as_float(),
        Some(1.0)
    );
}
