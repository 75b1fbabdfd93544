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
use vision::preprocess::{self, Crop};
use vision::synth::dataset::{write_dataset, DatasetSpec};
use vision::synth::{Language, Phrasings};

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
