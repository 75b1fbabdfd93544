//! Writes synthetic parts to disk for the model toolchain and the tests.
//!
//! Layout: `images/NNNNNN.png` and one `manifest.jsonl` line per part carrying
//! the ground truth and one or more standards with the oracle's verdicts.
//! `models/toolchain` reads exactly this; change both together.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{judge, DrawnDefect, ExpectedVerdict, Material, SynthLine, WrittenStandard};

/// Name of the manifest file inside a dataset folder.
pub const MANIFEST: &str = "manifest.jsonl";

/// A standard paired with the verdict it produces for the part.
#[derive(Serialize)]
struct JudgedStandard<'a> {
    #[serde(flatten)]
    standard: &'a WrittenStandard,
    verdict: ExpectedVerdict,
}

#[derive(Serialize)]
struct ManifestLine<'a> {
    image: String,
    width: u32,
    height: u32,
    mm_per_px: f32,
    material: Material,
    seed: u64,
    index: usize,
    defects: &'a [DrawnDefect],
    standards: Vec<JudgedStandard<'a>>,
}

/// Failures while writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {path}: {source}")]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `count` parts from `seed`, each judged under `standards_per_part`
/// different standards. Returns the manifest path.
pub fn write_dataset(
    out: &Path,
    count: usize,
    seed: u64,
    standards_per_part: usize,
) -> Result<PathBuf, DatasetError> {
    let images = out.join("images");
    fs::create_dir_all(&images).map_err(io(&images))?;
    let manifest_path = out.join(MANIFEST);
    let file = fs::File::create(&manifest_path).map_err(io(&manifest_path))?;
    let mut manifest = BufWriter::new(file);
    let mut line = SynthLine::new(seed);
    for index in 0..count {
        let part = line.next_part();
        let standards: Vec<WrittenStandard> = (0..standards_per_part.max(1))
            .map(|_| line.write_standard(&part))
            .collect();
        let name = format!("images/{index:06}.png");
        let path = out.join(&name);
        part.image
            .save(&path)
            .map_err(|source| DatasetError::Encode {
                path: path.clone(),
                source,
            })?;
        let record = ManifestLine {
            image: name,
            width: part.image.width(),
            height: part.image.height(),
            mm_per_px: part.mm_per_px,
            material: part.material,
            seed,
            index,
            defects: &part.defects,
            standards: standards
                .iter()
                .map(|s| JudgedStandard {
                    standard: s,
                    verdict: judge(&part, s),
                })
                .collect(),
        };
        let json = serde_json::to_string(&record).expect("manifest line serialises");
        writeln!(manifest, "{json}").map_err(io(&manifest_path))?;
    }
    manifest.flush().map_err(io(&manifest_path))?;
    Ok(manifest_path)
}
