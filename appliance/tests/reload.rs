//! Model reload under load, with the shipped reference model: while frames
//! stream through two workers, a corrupt package is refused (the running
//! model keeps judging) and a good one is swapped in on both; every frame is
//! answered exactly once, each by exactly one model, and frames after the
//! swap are judged by the new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use appliance::batcher::Batcher;
use appliance::worker::{self, ReloadError};
use firmware_config::Precision;
use fusion::{Engine, EngineSettings, ModelPackage, Standard};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(dir: &Path) -> anyhow::Result<Engine> {
    let package = ModelPackage::open(dir, Precision::Fp32)?;
    let settings = EngineSettings::cpu(1);
    Ok(Engine::load(package, &settings)?)
}

/// A copy of the reference package under a new version number.
fn copy_package(to: &Path, version: &str) {
    std::fs::create_dir_all(to).unwrap();
    let from = repo().join("models/reference");
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.ends_with(".onnx") || name == "tokenizer.json" {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(from.join("model.toml")).unwrap();
    let old = manifest
        .lines()
        .find(|l| l.starts_with("version"))
        .expect("model.toml has a version line");
    let manifest = manifest.replacen(old, &format!("version = \"{version}\""), 1);
    std::fs::write(to.join("model.toml"), manifest).unwrap();
}

const STANDARD: &str = "Inspection standard for the test housing.\n\
1. Scratches longer than 2 mm are not allowed.\n\
2. Dents are not allowed.\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_refuses_a_corrupt_package_and_swaps_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt");
    copy_package(&corrupt, "9.9.9-corrupt");
    let graph = corrupt.join("decoder_model.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&graph, bytes).unwrap();
    let good = dir.path().join("good");
    copy_package(&good, "9.9.9-good");

    let engine = load(&repo().join("models/reference")).unwrap();
    let spec = engine.input_spec();
    let second = load(&repo().join("models/reference")).unwrap();
    let (handle, thread) = worker::spawn(
        vec![engine, second],
        Batcher::new(4, Duration::from_millis(5)),
        64,
        tokio::runtime::Handle::current(),
    );
    let old = handle.model();
    let standard = Arc::new(Standard::new("housing", STANDARD));
    let pixels = 3 * spec.width as usize * spec.height as usize;

    // A steady stream of frames from four "cameras" while the reloads happen.
    let swapped = Arc::new(AtomicBool::new(false));
    let stream = |offset: usize| {
        let handle = handle.clone();
        let standard = standard.clone();
        let swapped = swapped.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut after_swap = 0;
            // Until ten frames each were sent after the swap (bounded).
            for i in 0..5000 {
                if swapped.load(Ordering::SeqCst) {
                    after_swap += 1;
                    if after_swap > 10 {
                        break;
                    }
                }
                let shade = ((offset * 31 + i) % 7) as f32 * 0.1 - 0.3;
                let judged = handle
                    .judge_tensor(vec![shade; pixels], standard.clone(), None)
                    .await;
                answers.push((offset * 1000 + i, judged));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            answers
        })
    };
    let streams: Vec<_> = (0..4).map(stream).collect();

    tokio::time::sleep(Duration::from_millis(200)).await;
    let corrupt_dir = corrupt.clone();
    let refused = handle
        .reload(move || load(&corrupt_dir), vec![standard.clone()])
        .await
        .expect_err("a corrupt package must be refused");
    let message = refused.to_string();
    assert!(matches!(refused, ReloadError::Load(_)));
    assert!(
        message.contains("decoder_model.onnx") && message.contains("corrupt"),
        "the error names the corrupt file: {message}"
    );
    assert_eq!(
        handle.model().sha256,
        old.sha256,
        "the running model stays after a refusal"
    );

    let good_dir = good.clone();
    let new = handle
        .reload(move || load(&good_dir), vec![standard.clone()])
        .await
        .expect("a good package is swapped in");
    assert_eq!(new.version, "9.9.9-good");
    assert_ne!(new.sha256, old.sha256);
    swapped.store(true, Ordering::SeqCst);

    let mut answers = Vec::new();
    for s in streams {
        answers.extend(s.await.unwrap());
    }
    assert!(answers.len() >= 44, "{} frames", answers.len());
    let mut by_old = 0;
    let mut by_new = 0;
    for (id, judged) in &answers {
        let judged = judged
            .as_ref()
            .unwrap_or_else(|e| panic!("frame {id} lost: {e}"));
        if judged.model.sha256 == old.sha256 {
            by_old += 1;
        } else {
            assert_eq!(judged.model.sha256, new.sha256, "frame {id}");
            by_new += 1;
        }
    }
    assert!(by_old > 0, "frames before the swap ran on the old model");
    assert!(by_new > 0, "frames after the swap ran on the new model");

    // After the swap, a new frame is judged by the new model.
    let after = handle
        .judge_tensor(vec![0.0; pixels], standard.clone(), None)
        .await
        .unwrap();
    assert_eq!(after.model.version, "9.9.9-good");
    drop(handle);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
}
