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

/// `appliance standard compile`: each JSON line `{"text": …}` read from
/// `input` becomes a line `{"text": …, "clause_of": […]}` on `output`, the
/// standard as `manifest`'s model reads it at its training calibration
/// (`"text": null` when it reads the text as written).
pub fn compile_lines(
    manifest: &fusion::package::Manifest,
    input: impl std::io::BufRead,
    mut output: impl std::io::Write,
) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct In {
        text: String,
    }
    let vocabulary = manifest.output.vocabulary();
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading standards from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let given: In = serde_json::from_str(&line)
            .with_context(|| format!("line {}: expected {{\"text\": \"…\"}}", i + 1))?;
        let standard = Standard::new("compile", given.text);
        let readings = standard.readings(&vocabulary);
        let out = match fusion::Compiled::for_model(&standard, &readings, manifest, 1.0) {
            Some(c) => serde_json::json!({"text": c.standard.text, "clause_of": c.clause_of}),
            None => serde_json::json!({"text": null, "clause_of": []}),
        };
        writeln!(output, "{out}").context("writing to stdout")?;
    }
    Ok(())
}

/// What a model that reads compiled standards (`[prompt] standard =
/// "compiled"`) is given for `standard`, each line with the written clause
/// it cites back to; `None` for a model that reads the text as written.
pub fn compiled(standard: &Standard, manifest: &fusion::package::Manifest) -> Option<String> {
    if manifest.prompt.standard != fusion::StandardForm::Compiled {
        return None;
    }
    let readings = standard.readings(&manifest.output.vocabulary());
    let mut out = String::from("\nwhat the model reads (compiled from the readings above):\n");
    match fusion::Compiled::for_model(standard, &readings, manifest, 1.0) {
        Some(c) => {
            for clause in &c.standard.clauses {
                let written = c.clause_of(clause.number).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {}. {}   -> clause {written}",
                    clause.number, clause.text
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  (more lines than the model's {} clause tokens: it reads the text as written)",
                manifest.special_tokens.max_clause
            );
        }
    }
    Some(out)
}
