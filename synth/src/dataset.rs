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
    judge, DrawnDefect, ExpectedVerdict, Language, Material, Phrasings, Rule, SynthLine, SynthPart,
    Wording, WrittenStandard,
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
    #[serde(flatten)]
    origin: Origin,
    verdict: ExpectedVerdict,
}

/// Where a standard's wording came from, recorded beside it in the manifest
/// (nothing for the first wording, so its manifests read as they always did).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Origin {
    /// `v2` for the composed wording, `handwritten` for standards written
    /// by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wording: Option<String>,
    /// The file a hand-written standard was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Origin {
    fn of(wording: Wording) -> Self {
        Self {
            wording: (wording != Wording::V1).then(|| wording.as_str().to_string()),
            source: None,
        }
    }
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
        let standards: Vec<_> = standards
            .iter()
            .map(|(s, of)| (s.clone(), *of, Origin::default()))
            .collect();
        self.add_with_origin(seed, index, part, &standards, phrasings)
    }

    /// As [`ManifestWriter::add`], each standard with where its wording
    /// came from.
    pub(crate) fn add_with_origin(
        &mut self,
        seed: u64,
        index: usize,
        part: &SynthPart,
        standards: &[(WrittenStandard, Option<usize>, Origin)],
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
                .map(|(s, of, origin)| JudgedStandard {
                    standard: s,
                    phrasings,
                    counterfactual_of: *of,
                    origin: origin.clone(),
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
    write_dataset_worded(out, spec, Wording::V1)
}

/// As [`write_dataset`], with the standards written in `wording`.
pub fn write_dataset_worded(
    out: &Path,
    spec: &DatasetSpec,
    wording: Wording,
) -> Result<PathBuf, DatasetError> {
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
        let mut standards: Vec<(WrittenStandard, Option<usize>, Origin)> = Vec::new();
        for _ in 0..spec.standards_per_part.max(1) {
            let language = languages[turn % languages.len()];
            turn += 1;
            let standard = line.write_standard_worded(&part, language, spec.phrasings, wording);
            let twin = spec
                .counterfactuals
                .then(|| line.counterfactual_worded(&part, &standard, spec.phrasings, wording))
                .flatten();
            let at = standards.len();
            standards.push((standard, None, Origin::of(wording)));
            if let Some(twin) = twin {
                standards.push((twin, Some(at), Origin::of(wording)));
            }
        }
        manifest.add_with_origin(spec.seed, index, &part, &standards, spec.phrasings)?;
    }
    manifest.finish()
}

/// A standard written by hand, with the truth of each of its clauses.
#[derive(Clone, Debug)]
pub struct SourcedStandard {
    pub standard: WrittenStandard,
    /// The file it was read from, recorded in the manifest.
    pub source: String,
}

/// Writes `count` parts of the line (seed `seed`), each judged by the oracle
/// under every one of `standards` (hand-written standards with their truth):
/// an evaluation set of wording no generator wrote. A part is not judged
/// under a standard whose size limit lies within the generator's margin of
/// one of the part's defect sizes (the truth would then rest on measurement
/// noise). Returns the manifest path and how many such judgements were left
/// out.
pub fn write_dataset_judged_by(
    out: &Path,
    count: usize,
    seed: u64,
    standards: &[SourcedStandard],
) -> Result<(PathBuf, usize), DatasetError> {
    let mut manifest = ManifestWriter::create(out)?;
    let mut line = SynthLine::new(seed);
    let mut left_out = 0;
    for index in 0..count {
        let part = line.next_part();
        let judged: Vec<(WrittenStandard, Option<usize>, Origin)> = standards
            .iter()
            .filter(|s| {
                let clear = clear_of_limits(&s.standard, &part.defects);
                left_out += usize::from(!clear);
                clear
            })
            .map(|s| {
                let origin = Origin {
                    wording: Some("handwritten".into()),
                    source: Some(s.source.clone()),
                };
                (s.standard.clone(), None, origin)
            })
            .collect();
        manifest.add_with_origin(seed, index, &part, &judged, Phrasings::Heldout)?;
    }
    Ok((manifest.finish()?, left_out))
}

/// True when every size limit of `standard` that judges one of `defects`
/// is at least the generator's margin away from its size.
fn clear_of_limits(standard: &WrittenStandard, defects: &[DrawnDefect]) -> bool {
    defects.iter().all(|d| {
        standard.clauses.iter().all(|c| match c.rule {
            Rule::Limit { limit_mm } if c.kind == Some(d.kind) => {
                (d.size_mm - limit_mm).abs() / limit_mm >= super::standard::LIMIT_MARGIN
            }
            _ => true,
        })
    })
}
