//! Hand-written inspection standards for evaluation only
//! (`appliance/standards-eval/`, `appliance synth --standards-from DIR`).
//!
//! Synthetic standards, however varied, are written by a generator whose
//! habits a reading (or a model) can learn. These are written by hand in the
//! style of real QA documents, each `NN-name.{en,zh}.txt` with a sidecar
//! `NN-name.{en,zh}.toml` that states the truth of every clause the engine
//! numbers: its number as `fusion::Standard::new` numbers it (and, to catch
//! a numbering that moved, its label), the defect kind it governs (absent for
//! clauses about something else) and its rule. The truth becomes a
//! `WrittenStandard`, so the synthetic line's oracle judges parts under it and
//! `appliance eval` scores decisions and clause reading on it as on any
//! synthetic set.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use serde::Deserialize;
use synth::dataset::SourcedStandard;
use synth::{DefectKind, Language, Rule, SynthClause, WrittenStandard};

/// A sidecar file: the truth of each clause.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub clause: Vec<TruthClause>,
}

/// What one clause says, as the person who wrote it meant it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthClause {
    /// The number the engine cites it by.
    pub number: u32,
    /// Its label as `Standard::new` reports it (`4.2`, `2.a`), if stated.
    pub label: Option<String>,
    /// The model's defect word it governs; absent for other clauses.
    pub kind: Option<String>,
    /// `ban`, `size_limit`, `count_limit`, `tolerate` or `other`.
    pub rule: String,
    pub limit_mm: Option<f32>,
    pub max_count: Option<u32>,
}

/// One hand-written standard with its truth.
#[derive(Debug, Clone)]
pub struct HandWritten {
    /// The text file.
    pub path: PathBuf,
    pub text: String,
    pub language: Language,
    pub truth: Vec<TruthClause>,
}

impl HandWritten {
    /// Reads `NN-name.LANG.txt` and its sidecar `NN-name.LANG.toml`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", path.display()))?;
        let language = name
            .rsplit('.')
            .nth(1)
            .and_then(Language::parse)
            .with_context(|| format!("{name}: name it NN-name.en.txt or NN-name.zh.txt"))?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let sidecar_path = path.with_extension("toml");
        let sidecar = std::fs::read_to_string(&sidecar_path)
            .with_context(|| format!("reading the truth of {name}"))?;
        let sidecar: Sidecar =
            toml::from_str(&sidecar).with_context(|| sidecar_path.display().to_string())?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
            language,
            truth: sidecar.clause,
        })
    }

    /// The file name, as the manifest records it.
    pub fn source(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Checks that the engine numbers exactly the clauses the sidecar states,
    /// with the same numbers (and labels, where stated).
    pub fn check_numbering(&self) -> anyhow::Result<()> {
        let parsed = fusion::Standard::new("eval", self.text.clone());
        let got: Vec<(u32, &str)> = parsed
            .clauses
            .iter()
            .map(|c| (c.number, c.label.as_str()))
            .collect();
        let want: Vec<u32> = self.truth.iter().map(|c| c.number).collect();
        let numbers: Vec<u32> = got.iter().map(|(n, _)| *n).collect();
        ensure!(
            numbers == want,
            "{}: the engine numbers clauses {numbers:?}, the sidecar states {want:?}",
            self.source()
        );
        for (t, (n, label)) in self.truth.iter().zip(&got) {
            if let Some(l) = &t.label {
                ensure!(
                    l == label,
                    "{}: clause {n} is labelled {label:?}, the sidecar says {l:?}",
                    self.source()
                );
            }
        }
        Ok(())
    }

    /// The standard with its truth, as the oracle takes it.
    pub fn written(&self) -> anyhow::Result<WrittenStandard> {
        let mut clauses = Vec::with_capacity(self.truth.len());
        let mut kinds = std::collections::HashSet::new();
        for t in &self.truth {
            let at = || format!("{}, clause {}", self.source(), t.number);
            let kind = match &t.kind {
                Some(k) => {
                    let kind = DefectKind::from_word(k)
                        .with_context(|| format!("{}: unknown defect kind {k:?}", at()))?;
                    ensure!(
                        kinds.insert(kind),
                        "{}: a second clause about {k} (the oracle takes one per kind)",
                        at()
                    );
                    Some(kind)
                }
                None => None,
            };
            let rule = match (t.rule.as_str(), kind) {
                ("other", None) => Rule::Tolerate,
                ("other", Some(_)) => bail!("{}: an `other` clause names no kind", at()),
                (_, None) => bail!("{}: rule {:?} needs a kind", at(), t.rule),
                ("ban", _) => Rule::Ban,
                ("tolerate", _) => Rule::Tolerate,
                ("size_limit", _) => Rule::Limit {
                    limit_mm: t
                        .limit_mm
                        .filter(|l| *l > 0.0)
                        .with_context(|| format!("{}: size_limit needs limit_mm", at()))?,
                },
                ("count_limit", _) => Rule::Count {
                    max_count: t
                        .max_count
                        .with_context(|| format!("{}: count_limit needs max_count", at()))?,
                },
                (other, _) => bail!(
                    "{}: rule {other:?} is not ban, size_limit, count_limit, tolerate or other",
                    at()
                ),
            };
            clauses.push(SynthClause {
                number: t.number,
                kind,
                rule,
            });
        }
        Ok(WrittenStandard {
            language: self.language,
            text: self.text.clone(),
            clauses,
        })
    }
}

/// Every `*.txt` standard in `dir` (sorted by name), each checked against its
/// sidecar.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<HandWritten>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    ensure!(!paths.is_empty(), "no *.txt standard in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            let h = HandWritten::read(p)?;
            h.check_numbering()?;
            h.written()?;
            Ok(h)
        })
        .collect()
}

/// The standards of `dir` as the dataset writer takes them.
pub fn sourced(dir: &Path) -> anyhow::Result<Vec<SourcedStandard>> {
    load_dir(dir)?
        .into_iter()
        .map(|h| {
            Ok(SourcedStandard {
                standard: h.written()?,
                source: h.source(),
            })
        })
        .collect()
}
