//! Reading a recipe's standard before it goes live: the file must hold
//! numbered clauses the model can cite, and every clause's reading is shown
//! so a quality engineer sees what each verdict will be held to — and which
//! clauses could not be read with confidence — before a part is judged.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use fusion::{Reading, Standard, Vocabulary};

/// Reads a standard file; a text without any numbered clause is refused,
/// naming the file, since no verdict could cite it.
pub fn load(recipe: &str, path: &Path) -> anyhow::Result<Standard> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading standard {}", path.display()))?;
    let standard = Standard::new(recipe, text);
    anyhow::ensure!(
        !standard.clauses.is_empty(),
        "standard {} has no numbered clause; number each rule `1.`, `1)`, `1、`, `(1)`, `4.2.1` or `a)` so verdicts can cite it",
        path.display()
    );
    Ok(standard)
}

/// Clauses whose reading cannot be relied on (verdicts citing them go to
/// REVIEW), and those that reject something the model has no word for.
pub fn flagged(readings: &[Reading]) -> Vec<&Reading> {
    readings.iter().filter(|r| r.flagged()).collect()
}

/// The reading of every clause, one block each, as `appliance standard
/// check` prints it.
pub fn describe(standard: &Standard, vocabulary: &Vocabulary) -> (String, usize) {
    let readings = standard.readings(vocabulary);
    let mut out = String::new();
    for (c, r) in standard.clauses.iter().zip(&readings) {
        let mark = if r.flagged() { "! " } else { "  " };
        let _ = writeln!(out, "{mark}clause {} ({}): {}", c.number, c.label, c.text);
        let _ = write!(
            out,
            "    reads as: {} (confidence {:.2})",
            r.describe(),
            r.confidence
        );
        if let Some(doubt) = &r.doubt {
            let _ = write!(out, " — {doubt}");
        }
        out.push('\n');
    }
    (out, flagged(&readings).len())
}
