//! Reviewed verdicts as training data: the operators' corrections become
//! the truth the model toolchain fine-tunes on (`python -m
//! toolchain.finetune … --reviews DIR`).
//!
//! One JSON line per reviewed verdict, its latest review taken as the
//! truth: `image` (relative to the file), `standard` (the text the verdict
//! was judged against), `decision`, and `findings` — the model's findings
//! the reviewer did not mark wrong, plus the missed defects the reviewer
//! drew (with the clause that names the defect, when the standard has one).
//! The image files are copied beside it. Provenance (`verdict_id`,
//! `reviewer`, `reason`, `reviewed_at`) travels along for audit.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::Row;

use crate::reviews::Corrections;
use crate::{Store, StoreError};

/// What an export wrote.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Exported {
    pub file: PathBuf,
    pub records: usize,
    /// Reviewed verdicts left out because their image file is gone.
    pub without_image: usize,
}

#[derive(Serialize)]
struct Finding {
    defect: String,
    box_norm: [f64; 4],
    clause: Option<u64>,
}

#[derive(Serialize)]
struct Record {
    image: String,
    standard: String,
    decision: String,
    findings: Vec<Finding>,
    verdict_id: String,
    reviewer: String,
    reason: String,
    reviewed_at: String,
}

/// The number of the first clause whose text names `defect` (clauses are
/// lines starting `N.`), for missed defects the reviewer drew.
fn clause_naming(standard: &str, defect: &str) -> Option<u64> {
    let defect = defect.to_lowercase();
    standard.lines().find_map(|line| {
        let (n, text) = line.trim().split_once('.')?;
        let n = n.trim().parse::<u64>().ok()?;
        text.to_lowercase().contains(&defect).then_some(n)
    })
}

/// Writes `reviewed.jsonl` and `images/` under `out` for every verdict
/// reviewed since `since` (RFC 3339; empty for all).
pub async fn export(store: &Store, out: &Path, since: &str) -> Result<Exported, StoreError> {
    let io = |path: &Path, source| StoreError::File {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out.join("images")).map_err(|e| io(out, e))?;
    // The latest review of each reviewed verdict.
    let rows = sqlx::query(
        "SELECT v.id, v.record, s.text, i.path, r.reviewer, r.decision, r.reason, r.corrections, r.created_at
           FROM reviews r
           JOIN verdicts v ON v.id = r.verdict_id
           JOIN standard_versions s ON s.sha256 = v.standard_sha256
           LEFT JOIN images i ON i.sha256 = v.image_sha256 AND i.deleted_at IS NULL
          WHERE r.created_at >= $1
            AND r.created_at = (SELECT MAX(r2.created_at) FROM reviews r2 WHERE r2.verdict_id = r.verdict_id)
          ORDER BY r.created_at",
    )
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let file = out.join("reviewed.jsonl");
    let mut lines = String::new();
    let mut report = Exported {
        file: file.clone(),
        ..Default::default()
    };
    for r in rows {
        let path: Option<String> = r.get(3);
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            report.without_image += 1;
            continue;
        };
        let record: serde_json::Value = serde_json::from_str(&r.get::<String, _>(1))
            .map_err(|e| StoreError::Query(sqlx::Error::Decode(Box::new(e))))?;
        let corrections: Corrections =
            serde_json::from_str(&r.get::<String, _>(7)).unwrap_or_default();
        let standard: String = r.get(2);
        let mut findings: Vec<Finding> = record["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(i, _)| !corrections.wrong_findings.contains(i))
            .map(|(_, f)| {
                let b: Vec<f64> = f["box_norm"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_f64())
                    .collect();
                let at = |i: usize| b.get(i).copied().unwrap_or(0.0);
                Finding {
                    defect: f["defect"].as_str().unwrap_or_default().to_string(),
                    box_norm: [at(0), at(1), at(2), at(3)],
                    clause: f["clause"].as_u64(),
                }
            })
            .collect();
        findings.extend(corrections.missed.iter().map(|m| Finding {
            defect: m.defect.clone(),
            box_norm: m.box_norm.map(f64::from),
            clause: clause_naming(&standard, &m.defect),
        }));
        let name = Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = out.join("images").join(&name);
        if !target.exists() {
            if let Err(e) = std::fs::copy(&path, &target) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    report.without_image += 1;
                    continue;
                }
                return Err(io(&target, e));
            }
        }
        let rec = Record {
            image: format!("images/{name}"),
            standard,
            decision: r.get(5),
            findings,
            verdict_id: r.get(0),
            reviewer: r.get(4),
            reason: r.get(6),
            reviewed_at: r.get(8),
        };
        lines.push_str(&serde_json::to_string(&rec).expect("record serialises"));
        lines.push('\n');
        report.records += 1;
    }
    std::fs::write(&file, lines).map_err(|e| io(&file, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::clause_naming;

    #[test]
    fn a_missed_defect_takes_the_clause_that_names_it() {
        let s = "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.";
        assert_eq!(clause_naming(s, "dent"), Some(2));
        assert_eq!(clause_naming(s, "Scratch"), Some(1));
        assert_eq!(clause_naming(s, "burr"), None);
    }
}
