//! Writes synthetic parts to disk for the model toolchain and the tests.
//!
//! Layout: `images/NNNNNN.png` and one `manifest.jsonl` line per part carrying
//! the ground truth and one or more standards with the oracle's verdicts.
//! `models/toolchain` reads exactly this; change both together.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    judge, DrawnDefect, ExpectedVerdict, Language, Material, Phrasings, SynthLine, SynthPart,
    WrittenStandard,
};

/// Name of the manifest file inside a dataset folder.
pub const MANIFEST: &str = "manifest.jsonl";

/// A standard paired with the verdict it produces for the part.
#[derive(Serialize)]
struct JudgedStandard<'a> {
    #[serde(flatten)]
    standard: &'a WrittenStandard,
    phrasings: Phrasings,
    /// Index of the standard (in this part's list) this one is the
    /// counterfactual twin of: same text except the one clause that decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    counterfactual_of: Option<usize>,
    verdict: ExpectedVerdict,
}

/// What a dataset holds.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    /// Number of parts.
    pub count: usize,
    /// Seed of the synthetic line.
    pub seed: u64,
    /// Standards written per part (languages taken in turn).
    pub standards_per_part: usize,
    /// Languages the standards are written in, used in turn.
    pub languages: Vec<Language>,
    /// Training or held-out phrasings.
    pub phrasings: Phrasings,
    /// Add after each standard a twin that flips the decision (where one
    /// clause can flip it).
    pub counterfactuals: bool,
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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn encode(path: &Path) -> impl FnOnce(image::ImageError) -> DatasetError + '_ {
    move |source| DatasetError::Encode {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes images and manifest lines into a dataset folder.
pub(crate) struct ManifestWriter {
    out: PathBuf,
    path: PathBuf,
    file: BufWriter<fs::File>,
}

impl ManifestWriter {
    pub(crate) fn create(out: &Path) -> Result<Self, DatasetError> {
        let images = out.join("images");
        fs::create_dir_all(&images).map_err(io(&images))?;
        let path = out.join(MANIFEST);
        let file = fs::File::create(&path).map_err(io(&path))?;
        Ok(Self {
            out: out.to_path_buf(),
            path,
            file: BufWriter::new(file),
        })
    }

    /// Saves the part's image and its line: ground truth and every standard
    /// with the oracle's verdict.
    pub(crate) fn add(
        &mut self,
        seed: u64,
        index: usize,
        part: &SynthPart,
        standards: &[(WrittenStandard, Option<usize>)],
        phrasings: Phrasings,
    ) -> Result<(), DatasetError> {
        let name = format!("images/{index:06}.png");
        let path = self.out.join(&name);
        part.image.save(&path).map_err(encode(&path))?;
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
                .map(|(s, of)| JudgedStandard {
                    standard: s,
                    phrasings,
                    counterfactual_of: *of,
                    verdict: judge(part, s),
                })
                .collect(),
        };
        let json = serde_json::to_string(&record).expect("manifest line serialises");
        writeln!(self.file, "{json}").map_err(io(&self.path))
    }

    pub(crate) fn finish(mut self) -> Result<PathBuf, DatasetError> {
        self.file.flush().map_err(io(&self.path))?;
        Ok(self.path)
    }
}

/// Writes the parts `spec` describes, each judged under its standards.
/// Returns the manifest path.
pub fn write_dataset(out: &Path, spec: &DatasetSpec) -> Result<PathBuf, DatasetError> {
    let mut manifest = ManifestWriter::create(out)?;
    let mut line = SynthLine::new(spec.seed);
    let languages = if spec.languages.is_empty() {
        vec![Language::En]
    } else {
        spec.languages.clone()
    };
    let mut turn = 0usize;
    for index in 0..spec.count {
        let part = line.next_part();
        let mut standards: Vec<(WrittenStandard, Option<usize>)> = Vec::new();
        for _ in 0..spec.standards_per_part.max(1) {
            let language = languages[turn % languages.len()];
            turn += 1;
            let standard = line.write_standard(&part, language, spec.phrasings);
            let twin = spec
                .counterfactuals
                .then(|| line.counterfactual(&part, &standard, spec.phrasings))
                .flatten();
            let at = standards.len();
            standards.push((standard, None));
            if let Some(twin) = twin {
                standards.push((twin, Some(at)));
            }
        }
        manifest.add(spec.seed, index, &part, &standards, spec.phrasings)?;
    }
    manifest.finish()
}
