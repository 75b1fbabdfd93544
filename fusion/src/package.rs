//! The model package: a folder with `model.toml`, `tokenizer.json` and the
//! ONNX graphs (DESIGN.md, "The model package").
//!
//! Opening a package verifies every file against the sha256 in the manifest,
//! so a corrupt or swapped file is refused before ONNX Runtime sees it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use firmware_config::Precision;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The graphs a package must hold, in the order they run.
pub const GRAPHS: [&str; 5] = [
    "vision_encoder.onnx",
    "embed_tokens.onnx",
    "encoder_model.onnx",
    "decoder_model.onnx",
    "decoder_with_past_model.onnx",
];

/// Prompt formats the engine can write: the standard's text as is, or with
/// numbered clause lines tagged by their `<clause_K>` token.
pub const PROMPT_FORMATS: [&str; 2] = ["standard-text", "clause-tagged"];

/// `model.toml`, as far as the appliance needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub input: InputSection,
    pub prompt: PromptSection,
    pub output: OutputSection,
    pub special_tokens: SpecialTokens,
    pub decoder: DecoderSection,
    /// The good-only anomaly graph, when the package was commissioned with
    /// one (see [`crate::anomaly`]).
    #[serde(default)]
    pub anomaly: Option<crate::anomaly::AnomalySection>,
    /// File name -> sha256 (hex).
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputSection {
    pub width: u32,
    pub height: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resize: String,
    /// Millimetres one pixel of the model's input spanned in its training
    /// images: the calibration its sense of size was learned at. When set,
    /// the engine rewrites a standard's length limits for each camera's own
    /// calibration (see [`crate::engine::Request::mm_per_input_px`]).
    #[serde(default)]
    pub mm_per_px: Option<f32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PromptSection {
    pub format: String,
    pub max_text_tokens: usize,
    /// What of the standard the model reads: the text as written, or the
    /// text compiled from its reading (see [`crate::compiled`]).
    #[serde(default)]
    pub standard: StandardForm,
    /// The smallest size limit (mm, in the training calibration) the model
    /// learned to read; a compiled standard writes finer limits as bans.
    #[serde(default)]
    pub min_limit_mm: Option<f32>,
}

/// How a standard reaches the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StandardForm {
    /// The text as the quality engineer wrote it.
    #[default]
    AsWritten,
    /// Each confidently read clause rewritten in the model's training
    /// wording; see [`crate::compiled::Compiled`].
    Compiled,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputSection {
    pub format: String,
    pub max_tokens: usize,
    pub defect_words: Vec<String>,
    /// How standards name each defect word, in every language the model
    /// reads ("scratch" -> ["scratch", "scratches", "划痕"]). A word without
    /// an entry is named by itself.
    #[serde(default)]
    pub defect_names: BTreeMap<String, Vec<String>>,
}

impl OutputSection {
    /// The model's defect words with their names in standards.
    pub fn vocabulary(&self) -> crate::reading::Vocabulary {
        crate::reading::Vocabulary {
            defects: self
                .defect_words
                .iter()
                .map(|w| (w.clone(), self.names_of(w)))
                .collect(),
        }
    }

    /// The names a standard may use for `word`.
    pub fn names_of(&self, word: &str) -> Vec<String> {
        match self.defect_names.get(word) {
            Some(names) if !names.is_empty() => names.clone(),
            _ => vec![word.to_string()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpecialTokens {
    pub bos: String,
    pub eos: String,
    pub pad: String,
    pub pass: String,
    pub fail: String,
    pub ok: String,
    pub loc_prefix: String,
    pub loc_bins: u32,
    pub clause_prefix: String,
    pub max_clause: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DecoderSection {
    pub layers: usize,
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid model manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("model package {dir} lacks {file}")]
    Missing { dir: PathBuf, file: String },
    #[error("{path} is corrupt: sha256 {actual} does not match {expected} in model.toml")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model package {dir} is incompatible: {reason}")]
    Incompatible { dir: PathBuf, reason: String },
}

/// A verified model package.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// sha256 of `model.toml` itself: identifies this exact package in verdicts.
    pub sha256: String,
    precision: Precision,
}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, PackageError> {
    let mut f = std::fs::File::open(path).map_err(|source| PackageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|source| PackageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Manifest {
    /// Reads `model.toml` from a package folder without verifying the files
    /// it lists (enough to know the model's words; [`ModelPackage::open`]
    /// verifies before anything runs).
    pub fn read(dir: &Path) -> Result<Self, PackageError> {
        Self::read_with_text(dir).map(|(m, _)| m)
    }

    /// The manifest and its text (whose sha256 names the package).
    fn read_with_text(dir: &Path) -> Result<(Self, String), PackageError> {
        let manifest_path = dir.join("model.toml");
        let text =
            std::fs::read_to_string(&manifest_path).map_err(|source| PackageError::Read {
                path: manifest_path.clone(),
                source,
            })?;
        let manifest = toml::from_str(&text).map_err(|e| PackageError::Manifest {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
        Ok((manifest, text))
    }
}

impl ModelPackage {
    /// Reads the manifest, checks that the files `precision` runs are listed
    /// and present, and verifies the sha256 of every listed file present.
    pub fn open(dir: &Path, precision: Precision) -> Result<Self, PackageError> {
        let (manifest, text) = Manifest::read_with_text(dir)?;
        let incompatible = |reason: String| PackageError::Incompatible {
            dir: dir.to_path_buf(),
            reason,
        };
        if manifest.output.format != "verdict-v1" {
            return Err(incompatible(format!(
                "output format `{}`; this appliance speaks verdict-v1",
                manifest.output.format
            )));
        }
        if !PROMPT_FORMATS.contains(&manifest.prompt.format.as_str()) {
            return Err(incompatible(format!(
                "prompt format `{}`; supported: {}",
                manifest.prompt.format,
                PROMPT_FORMATS.join(", ")
            )));
        }
        if manifest.input.resize != "stretch" {
            return Err(incompatible(format!(
                "resize mode `{}`; supported: stretch",
                manifest.input.resize
            )));
        }
        let pkg = Self {
            dir: dir.to_path_buf(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            manifest,
            precision,
        };
        // What the selected precision runs must be listed and present.
        let mut required: Vec<String> = vec!["tokenizer.json".into()];
        required.extend(GRAPHS.iter().map(|g| pkg.graph_name(g)));
        for file in &required {
            if !pkg.manifest.files.contains_key(file) {
                return Err(PackageError::Missing {
                    dir: dir.to_path_buf(),
                    file: format!("{file} (not listed in model.toml [files])"),
                });
            }
            if !dir.join(file).exists() {
                return Err(PackageError::Missing {
                    dir: dir.to_path_buf(),
                    file: file.clone(),
                });
            }
        }
        // Every listed file that is there is checked, whichever precision
        // runs: a corrupt INT8 twin is found while FP32 is selected, not on
        // the day someone switches. A listed file the selected precision
        // does not need may be left out (a package stripped for disk).
        for (file, expected) in &pkg.manifest.files {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let actual = file_sha256(&path)?;
            if &actual != expected {
                return Err(PackageError::Checksum {
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(pkg)
    }

    /// The file name of a graph at the configured precision.
    pub fn graph_name(&self, graph: &str) -> String {
        match self.precision {
            Precision::Fp32 => graph.to_string(),
            Precision::Int8 => graph.replace(".onnx", ".int8.onnx"),
        }
    }

    /// The path of a graph at the configured precision.
    pub fn graph(&self, graph: &str) -> PathBuf {
        self.dir.join(self.graph_name(graph))
    }

    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
}
