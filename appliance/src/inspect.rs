//! One-shot judging of pictures outside a running station (`appliance
//! inspect`).
//!
//! Why it exists: before a line goes live a plant engineer runs the model
//! and the standard over a folder of their own photographs. The engine is
//! loaded once and the pictures are judged in batches, so a folder costs its
//! inference, not one model load per picture. Verdicts are held to the
//! standard exactly as the station holds them (calibration, consistency).
//!
//! It never judges a picture that did not decode whole: that picture gets an
//! error naming it, and the others are still judged.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fusion::{Engine, Request, Standard};
use vision::preprocess::{self, Crop};

use crate::verdict::{self, Geometry};

/// File name endings taken as pictures when a folder is given.
const PICTURES: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// The pictures `paths` name: files as given, folders walked (sorted, masks
/// named `*_mask.*` left out). A path that does not exist is an error.
pub fn pictures(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
            continue;
        }
        let picture = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| PICTURES.contains(&e.to_ascii_lowercase().as_str()));
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if picture && !stem.ends_with("_mask") {
            out.push(p);
        }
    }
    Ok(())
}

/// A picture ready for the engine, or why it is not judged.
struct Loaded {
    width: u32,
    height: u32,
    tensor: Vec<f32>,
}

fn load(path: &Path, engine: &Engine) -> anyhow::Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (img, _) = vision::decode::decode(&bytes)
        .with_context(|| format!("{} is not judged", path.display()))?;
    Ok(Loaded {
        width: img.width(),
        height: img.height(),
        tensor: preprocess::to_tensor(&img, Crop::full(&img), &engine.input_spec()),
    })
}

/// Judges `pictures` in batches of `batch` and hands each result to `emit`:
/// the verdict JSON, or `Err` with the reason a picture was not judged.
/// Returns how many were not judged.
pub fn judge_all(
    engine: &mut Engine,
    standard: &Standard,
    pictures: &[PathBuf],
    mm_per_px: f64,
    batch: usize,
    mut emit: impl FnMut(&Path, anyhow::Result<serde_json::Value>),
) -> anyhow::Result<usize> {
    let mut failed = 0;
    for chunk in pictures.chunks(batch.max(1)) {
        let mut ready = Vec::with_capacity(chunk.len());
        for path in chunk {
            match load(path, engine) {
                Ok(l) => ready.push((path, l)),
                Err(e) => {
                    failed += 1;
                    emit(path, Err(e));
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        let spec = engine.input_spec();
        let requests: Vec<Request> = ready
            .iter()
            .map(|(_, l)| Request {
                image: &l.tensor,
                standard,
                mm_per_input_px: Some(
                    Crop {
                        x: 0,
                        y: 0,
                        width: l.width,
                        height: l.height,
                    }
                    .mm_per_input_px(mm_per_px, &spec),
                ),
                known: None,
            })
            .collect();
        let judgements = engine.judge_batch(&requests)?;
        for ((path, l), j) in ready.iter().zip(judgements) {
            let findings = verdict::findings_in_frame(
                &j,
                Geometry {
                    crop: [0, 0, l.width, l.height],
                    frame_width: l.width,
                    frame_height: l.height,
                    mm_per_px,
                },
            );
            let (decision, review_reason) = verdict::held_to_standard(&j, &findings);
            let m = &engine.package.manifest;
            emit(
                path,
                Ok(serde_json::json!({
                    "image": path.display().to_string(),
                    "standard_sha256": standard.sha256,
                    "decision": decision,
                    "confidence": j.confidence,
                    "review_reason": review_reason,
                    "findings": findings,
                    "tokens": j.tokens.join(" "),
                    "model": {"name": m.name, "version": m.version, "sha256": engine.package.sha256},
                    "inference_ms": j.inference_ms,
                    "batch_size": j.batch_size,
                })),
            );
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_in_order_and_masks_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("good")).unwrap();
        std::fs::create_dir_all(d.join("scratch/.hidden")).unwrap();
        for f in [
            "good/b.png",
            "good/a.JPG",
            "scratch/x.png",
            "scratch/x_mask.png",
            "scratch/notes.txt",
            "scratch/.hidden/y.png",
        ] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        let found = pictures(&[d.to_path_buf()]).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["good/a.JPG", "good/b.png", "scratch/x.png"]);
        let missing = pictures(&[d.join("nope")]).unwrap_err().to_string();
        assert!(
            missing.contains("nope: no such file or folder"),
            "{missing}"
        );
    }
}
