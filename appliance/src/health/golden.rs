//! The golden set: parts whose verdict a quality engineer has fixed, judged
//! again on a schedule and after every model reload. A model that stops
//! agreeing with them has drifted, whatever the line is sending.
//!
//! A recipe's `golden` folder holds `golden.toml` and the images:
//!
//! ```toml
//! [[part]]
//! image = "scratch-17.png"   # relative to the folder
//! expected = "FAIL"          # PASS or FAIL
//! camera = "top"             # optional: that camera's orientation and ROI apply
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use firmware_config::Camera;
use fusion::{Decision, Standard};
use serde::Deserialize;
use vision::preprocess::{self, Crop};

use crate::worker::EngineHandle;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    part: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    image: PathBuf,
    expected: String,
    #[serde(default)]
    camera: Option<String>,
}

/// One golden part, decoded, oriented and cropped as its camera would.
pub struct GoldenPart {
    pub image: String,
    pub expected: Decision,
    pixels: image::RgbImage,
    crop: Crop,
}

/// Reads `{dir}/golden.toml` and its images; an error names the entry.
pub fn load(dir: &Path, cameras: &HashMap<String, Camera>) -> anyhow::Result<Vec<GoldenPart>> {
    let path = dir.join("golden.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest =
        toml::from_str(&text).with_context(|| format!("{} is not a golden set", path.display()))?;
    anyhow::ensure!(
        !manifest.part.is_empty(),
        "{} lists no [[part]]",
        path.display()
    );
    manifest
        .part
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = || format!("{} part[{i}] ({})", path.display(), e.image.display());
            let expected = match e.expected.parse::<Decision>() {
                Ok(d @ (Decision::Pass | Decision::Fail)) => d,
                _ => anyhow::bail!("{}: expected `{}`; allowed: PASS, FAIL", at(), e.expected),
            };
            let bytes = std::fs::read(dir.join(&e.image)).with_context(at)?;
            let (mut pixels, _) = vision::decode::decode(&bytes).with_context(at)?;
            let mut crop = Crop::full(&pixels);
            if let Some(id) = &e.camera {
                let camera = cameras
                    .get(id)
                    .with_context(|| format!("{}: no camera `{id}`", at()))?;
                pixels = vision::geometry::orient(&pixels, camera.rotate, camera.flip);
                crop = Crop::of_roi(camera.roi, &pixels);
            }
            Ok(GoldenPart {
                image: e.image.display().to_string(),
                expected,
                pixels,
                crop,
            })
        })
        .collect()
}

/// How a golden run went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub recipe: String,
    pub judged: u64,
    pub agreed: u64,
    /// `image: expected X, judged Y`, for the log and the panel.
    pub disagreements: Vec<String>,
}

/// Judges every golden part under `standard` on the running model. A part
/// judged REVIEW counts as a disagreement: the model was not sure of a part
/// whose answer is known.
pub async fn judge(
    parts: &[GoldenPart],
    engine: &EngineHandle,
    standard: Arc<Standard>,
) -> anyhow::Result<Outcome> {
    let spec = engine.input_spec();
    let mut out = Outcome {
        recipe: standard.recipe.clone(),
        ..Default::default()
    };
    for p in parts {
        let tensor = preprocess::to_tensor(&p.pixels, p.crop, &spec);
        let judged = engine
            .judge_tensor(tensor, standard.clone(), None)
            .await
            .with_context(|| format!("judging golden part {}", p.image))?;
        let got = judged.judgement.decision;
        out.judged += 1;
        if got == p.expected {
            out.agreed += 1;
        } else {
            out.disagreements.push(format!(
                "{}: expected {}, judged {}",
                p.image, p.expected, got
            ));
        }
    }
    Ok(out)
}
