//! Scores the engine against a synthetic-line dataset (what `appliance synth`
//! writes): decision accuracy, finding recall/precision at IoU >= 0.3, clause
//! attribution, and the median time to judge one image.
//!
//! This runs the real appliance path (Rust preprocessing, ONNX Runtime,
//! constrained decoding), so its figures are the appliance's, not PyTorch's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use fusion::{Decision, Engine, Standard};
use serde::{Deserialize, Serialize};
use vision::preprocess::{self, Crop};

#[derive(Deserialize)]
struct Record {
    image: String,
    width: u32,
    height: u32,
    /// The part's calibration (sizes are judged in millimetres).
    mm_per_px: f64,
    standards: Vec<JudgedStandard>,
}

#[derive(Deserialize)]
struct JudgedStandard {
    text: String,
    #[serde(default)]
    language: Option<String>,
    /// `v2`, `handwritten`; absent for the first generator's wording.
    #[serde(default)]
    wording: Option<String>,
    /// The standard (index in this part's list) this one is the
    /// counterfactual twin of.
    #[serde(default)]
    counterfactual_of: Option<usize>,
    /// The file a hand-written standard was read from.
    #[serde(default)]
    source: Option<String>,
    verdict: Truth,
    /// What each clause says, as the generator wrote it.
    #[serde(default)]
    clauses: Vec<TruthClause>,
}

#[derive(Deserialize)]
struct TruthClause {
    number: u32,
    kind: Option<String>,
    rule: String,
    limit_mm: Option<f32>,
    max_count: Option<u32>,
}

impl TruthClause {
    /// True when `r` reads this clause as written.
    fn read_right(&self, r: &fusion::Reading) -> bool {
        use fusion::Rule;
        match &self.kind {
            None => r.rule == Rule::Other,
            Some(kind) => {
                r.defects == [kind.clone()]
                    && match (self.rule.as_str(), r.rule) {
                        ("ban", Rule::Ban) | ("tolerate", Rule::Tolerate) => true,
                        ("limit", Rule::SizeLimit { limit_mm }) => {
                            self.limit_mm.is_some_and(|l| (l - limit_mm).abs() < 1e-3)
                        }
                        ("count", Rule::CountLimit { max_count }) => {
                            self.max_count == Some(max_count)
                        }
                        _ => false,
                    }
            }
        }
    }
}

#[derive(Deserialize)]
struct Truth {
    decision: String,
    findings: Vec<TruthFinding>,
}

#[derive(Deserialize)]
struct TruthFinding {
    kind: String,
    box_px: [u32; 4],
    clause: Option<u32>,
}

/// Figures from one evaluation run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub images: usize,
    pub judgements: usize,
    pub decision_accuracy: f64,
    /// Clauses of the generator's standards, and the share the rule-based
    /// reading (what verdicts are held to) reads as they were written.
    pub clauses: usize,
    pub clause_reading_accuracy: f64,
    /// Judgements the consistency check turned into REVIEW (included in
    /// the review rate).
    pub contradictions: usize,
    /// Share of judgements that became REVIEW (counted as wrong above).
    pub review_rate: f64,
    pub finding_recall: f64,
    pub finding_precision: f64,
    /// Of matched findings, share citing the right clause (or `<ok>`).
    pub clause_accuracy: f64,
    /// Decision accuracy per standard language (`en`, `zh`), per wording
    /// (`v1`, `v2`, `handwritten`) and per hand-written standard's file.
    pub decision_by: BTreeMap<String, Share>,
    /// Counterfactual twins (the same part under a standard that differs in
    /// the one clause deciding it) where both decisions are right.
    pub counterfactual_pairs: Share,
    /// Median milliseconds to judge one image (batch 1), encoder to verdict.
    pub median_ms_per_image: f64,
}

/// A share and what it was counted over.
#[derive(Debug, Default, Serialize)]
pub struct Share {
    pub accuracy: f64,
    pub n: usize,
    #[serde(skip)]
    right: usize,
}

impl Share {
    fn add(&mut self, right: bool) {
        self.n += 1;
        self.right += usize::from(right);
        self.accuracy = self.right as f64 / self.n as f64;
    }
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter).max(1e-9)
}

/// Judges up to `limit` parts of the dataset in `dir` under each of their standards.
pub fn evaluate(engine: &mut Engine, dir: &Path, limit: usize) -> anyhow::Result<Report> {
    let manifest = dir.join("manifest.jsonl");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let spec = engine.input_spec();
    let mut r = Report::default();
    let (mut right, mut reviews) = (0usize, 0usize);
    let (mut truths, mut preds, mut matched, mut clause_right) = (0usize, 0usize, 0usize, 0usize);
    let mut times = Vec::new();
    let mut clauses_read = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(limit) {
        let rec: Record = serde_json::from_str(line).context("manifest line")?;
        let img = image::open(dir.join(&rec.image))
            .with_context(|| format!("opening {}", rec.image))?
            .to_rgb8();
        let tensor = preprocess::to_tensor(&img, Crop::full(&img), &spec);
        r.images += 1;
        let mut right_here = Vec::with_capacity(rec.standards.len());
        for s in &rec.standards {
            let standard = Standard::new("eval", s.text.clone());
            let started = Instant::now();
            let scale = Crop::full(&img).mm_per_input_px(rec.mm_per_px, &spec);
            let mut j = engine
                .judge_calibrated(std::slice::from_ref(&tensor), &standard, Some(scale))?
                .remove(0);
            // The readings the engine made of this standard (once, cached).
            for truth in &s.clauses {
                r.clauses += 1;
                match j.readings.iter().find(|x| x.clause == truth.number) {
                    Some(reading) if truth.read_right(reading) => clauses_read += 1,
                    reading => {
                        tracing::debug!(clause = %standard.clause(truth.number).map(|c| c.text.as_str()).unwrap_or("(missing)"), reading = ?reading, "clause misread")
                    }
                }
            }
            // Scored as the station would publish it: held to the standard.
            let geometry = crate::verdict::Geometry {
                crop: [0, 0, img.width(), img.height()],
                frame_width: img.width(),
                frame_height: img.height(),
                mm_per_px: rec.mm_per_px,
            };
            let findings = crate::verdict::findings_in_frame(&j, geometry);
            let (decision, why) = crate::verdict::held_to_standard(&j, &findings);
            if decision == Decision::Review && j.decision != Decision::Review {
                r.contradictions += 1;
            }
            j.decision = decision;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            r.judgements += 1;
            let want = if s.verdict.decision == "FAIL" {
                Decision::Fail
            } else {
                Decision::Pass
            };
            let is_right = j.decision == want;
            if !is_right {
                let seen: Vec<String> = findings
                    .iter()
                    .map(|f| format!("{} {:.2} mm cites {:?}", f.defect, f.size_mm, f.clause))
                    .collect();
                let truth: Vec<String> = s
                    .verdict
                    .findings
                    .iter()
                    .map(|t| {
                        let side = (t.box_px[2] - t.box_px[0]).max(t.box_px[3] - t.box_px[1]);
                        let mm = side as f64 * rec.mm_per_px;
                        format!("{} {mm:.2} mm cites {:?}", t.kind, t.clause)
                    })
                    .collect();
                tracing::debug!(image = %rec.image, want = ?want, got = ?j.decision, model = ?j.model_decision, why = why.as_deref().unwrap_or(""), ?seen, ?truth, "judged wrong");
            }
            right += usize::from(is_right);
            right_here.push(is_right);
            for key in [
                s.language.clone(),
                Some(s.wording.clone().unwrap_or_else(|| "v1".into())),
                s.source.clone(),
            ]
            .into_iter()
            .flatten()
            {
                r.decision_by.entry(key).or_default().add(is_right);
            }
            if j.decision == Decision::Review {
                reviews += 1;
            }
            truths += s.verdict.findings.len();
            preds += j.findings.len();
            let mut used = vec![false; j.findings.len()];
            for t in &s.verdict.findings {
                let tb = [
                    t.box_px[0] as f32 / rec.width as f32,
                    t.box_px[1] as f32 / rec.height as f32,
                    t.box_px[2] as f32 / rec.width as f32,
                    t.box_px[3] as f32 / rec.height as f32,
                ];
                let best = j
                    .findings
                    .iter()
                    .enumerate()
                    .filter(|(i, f)| !used[*i] && f.defect == t.kind)
                    .map(|(i, f)| (i, iou(f.box_norm, tb)))
                    .filter(|(_, v)| *v >= 0.3)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((i, _)) = best {
                    used[i] = true;
                    matched += 1;
                    if j.findings[i].clause == t.clause {
                        clause_right += 1;
                    }
                }
            }
        }
        for (i, s) in rec.standards.iter().enumerate() {
            if let Some(of) = s.counterfactual_of.filter(|of| *of < i) {
                r.counterfactual_pairs.add(right_here[i] && right_here[of]);
            }
        }
    }
    let share = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    r.decision_accuracy = share(right, r.judgements);
    r.review_rate = share(reviews, r.judgements);
    r.finding_recall = share(matched, truths);
    r.finding_precision = share(matched, preds);
    r.clause_accuracy = share(clause_right, matched);
    r.clause_reading_accuracy = share(clauses_read, r.clauses);
    times.sort_by(f64::total_cmp);
    r.median_ms_per_image = times.get(times.len() / 2).copied().unwrap_or(0.0);
    Ok(r)
}

/// Records `report` in a package's `model.toml` as the table
/// `[evaluation.appliance.NAME.PRECISION]`, replacing that table if it is
/// there and leaving every other line (comments included) as it was.
pub fn write_into(
    manifest: &Path,
    name: &str,
    precision: &str,
    data_command: &str,
    report: &Report,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "--write {name:?}: use letters, digits, `_` or `-`"
    );
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let header = format!("[evaluation.appliance.{name}.{precision}]");
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            skipping = t == header;
        }
        if !skipping {
            kept.push(line);
        }
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut out = kept.join("\n");
    out.push_str(&format!("\n\n{header}\n"));
    let mut put = |key: &str, value: String| out.push_str(&format!("{key} = {value}\n"));
    put("scored_by", toml_str("appliance eval (the appliance's engine, calibration and consistency check; REVIEW counted wrong)"));
    put("data", toml_str(data_command));
    put("judgements", report.judgements.to_string());
    put("decision", round(report.decision_accuracy));
    for (key, share) in &report.decision_by {
        let key: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        put(&format!("decision_{key}"), round(share.accuracy));
        put(&format!("decision_{key}_n"), share.n.to_string());
    }
    if report.counterfactual_pairs.n > 0 {
        put(
            "counterfactual",
            round(report.counterfactual_pairs.accuracy),
        );
        put(
            "counterfactual_n",
            report.counterfactual_pairs.n.to_string(),
        );
    }
    put("clause_attribution", round(report.clause_accuracy));
    put("clause_reading", round(report.clause_reading_accuracy));
    put("clauses", report.clauses.to_string());
    put("review_rate", round(report.review_rate));
    put("contradictions", report.contradictions.to_string());
    put("recall", round(report.finding_recall));
    put("precision", round(report.finding_precision));
    std::fs::write(manifest, out).with_context(|| format!("writing {}", manifest.display()))
}

fn round(v: f64) -> String {
    format!("{:.4}", v)
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}
