//! A standard rewritten from its reading, in the wording its model was
//! trained on: what a package with `[prompt] standard = "compiled"` reads
//! instead of the text as written.
//!
//! Why it exists: a model that learned to read standards from a generator's
//! phrasings misreads wording it never saw (QA-document prose, Chinese
//! idioms, distractor clauses), while the rule-based reading of every clause
//! ([`crate::reading`]) is explicit, checkable and right on nearly all of it.
//! Compiling the standard puts the two together: each confidently read
//! clause becomes one plain line per defect it governs ("Scratches longer
//! than 2 mm are rejected."), clauses about something else are left out,
//! and a clause the reading could not rely on is passed on as written (a
//! verdict citing it still goes to a person). A size limit below the
//! smallest the model learned to read becomes a ban for the model: any such
//! defect it can see is larger, and the consistency check still holds each
//! finding's measured size to the limit as written. The decoder then cites the
//! compiled lines, and [`Compiled::clause_of`] maps each citation back to the
//! clause of the standard as written, which is what verdicts quote.

use crate::package::{Manifest, StandardForm};
use crate::reading::{Reading, Rule, Vocabulary};
use crate::standard::Standard;

/// The first line of every compiled standard: a title like those the
/// training standards open with.
const TITLE: &str = "Cosmetic inspection rules for finished parts.";

/// A standard as the model reads it, and how its lines map back.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The compiled text as a standard of its own (lines numbered 1, 2, …).
    pub standard: Standard,
    /// `clause_of[k - 1]`: the clause of the written standard that compiled
    /// line `k` comes from.
    pub clause_of: Vec<u32>,
}

impl Compiled {
    /// Compiles `standard` from its `readings` (one per clause, in clause
    /// order) with the model's defect words; a size limit under
    /// `min_limit_mm` (in the standard's millimetres) is written as a ban.
    /// `None` when the compiled text would need more than `max_clause` lines
    /// (the model cannot cite them all: the standard is then read as
    /// written).
    pub fn new(
        standard: &Standard,
        readings: &[Reading],
        vocabulary: &Vocabulary,
        max_clause: u32,
        min_limit_mm: f32,
    ) -> Option<Self> {
        let mut lines = Vec::new();
        let mut clause_of = Vec::new();
        for (clause, reading) in standard.clauses.iter().zip(readings) {
            debug_assert_eq!(clause.number, reading.clause);
            if reading.rule == Rule::Other && reading.confident() {
                continue;
            }
            if reading.confident() && !reading.defects.is_empty() {
                let rule = match reading.rule {
                    Rule::SizeLimit { limit_mm } if limit_mm < min_limit_mm => Rule::Ban,
                    rule => rule,
                };
                for word in &reading.defects {
                    lines.push(sentence(rule, word, &plural(word, vocabulary)));
                    clause_of.push(clause.number);
                }
            } else {
                lines.push(clause.text.split_whitespace().collect::<Vec<_>>().join(" "));
                clause_of.push(clause.number);
            }
        }
        if clause_of.len() > max_clause as usize {
            return None;
        }
        let mut text = TITLE.to_string();
        for (k, line) in lines.iter().enumerate() {
            text.push_str(&format!("\n{}. {line}", k + 1));
        }
        Some(Self {
            standard: Standard::new(standard.recipe.clone(), text),
            clause_of,
        })
    }

    /// `standard` as the model of `manifest` reads it from a camera whose
    /// lengths the engine multiplies by `factor` (see
    /// [`crate::Engine::length_factor`]); `None` when the model reads the
    /// text as written: its manifest says so, or the standard needs more
    /// lines than it can cite.
    pub fn for_model(
        standard: &Standard,
        readings: &[Reading],
        manifest: &Manifest,
        factor: f32,
    ) -> Option<Self> {
        if manifest.prompt.standard != StandardForm::Compiled {
            return None;
        }
        // The finest limit the model reads, in this camera's millimetres.
        let min_limit = manifest.prompt.min_limit_mm.unwrap_or(0.0) / factor;
        Self::new(
            standard,
            readings,
            &manifest.output.vocabulary(),
            manifest.special_tokens.max_clause,
            min_limit,
        )
    }

    /// The written standard's clause that compiled line `k` comes from.
    pub fn clause_of(&self, k: u32) -> Option<u32> {
        self.clause_of.get((k as usize).checked_sub(1)?).copied()
    }
}

/// The plural a standard writes for `word`: the first of its English names
/// that is `word` plus a plural ending, else `word` itself
/// ("contamination").
fn plural(word: &str, vocabulary: &Vocabulary) -> String {
    vocabulary
        .defects
        .iter()
        .find(|(w, _)| w == word)
        .and_then(|(_, names)| {
            names
                .iter()
                .find(|n| n.strip_prefix(word).is_some_and(|r| r == "s" || r == "es"))
        })
        .cloned()
        .unwrap_or_else(|| word.to_string())
}

/// One line for a rule about one defect, in the training wording.
fn sentence(rule: Rule, word: &str, plural: &str) -> String {
    let capital = capitalise(plural);
    match rule {
        Rule::Ban => format!("Any {word} is a reject."),
        Rule::SizeLimit { limit_mm } => {
            format!(
                "{capital} longer than {} mm are rejected.",
                number(limit_mm)
            )
        }
        Rule::CountLimit { max_count } => format!("No more than {max_count} {plural} per part."),
        Rule::Tolerate => format!("{capital} are acceptable."),
        // Not reached: other and unclear clauses are left out or kept as
        // written by the caller.
        Rule::Other | Rule::Unclear => format!("{capital}."),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A limit as the training standards write it: `2`, `1.5`.
fn number(v: f32) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let v = |w: &str, n: &[&str]| (w.to_string(), n.iter().map(|s| s.to_string()).collect());
        Vocabulary {
            defects: vec![
                v("scratch", &["scratch", "scratches", "划痕"]),
                v("dent", &["dent", "dents", "凹坑"]),
                v("hole", &["hole", "holes", "孔洞"]),
                v("contamination", &["contamination", "异物"]),
            ],
        }
    }

    fn compile(text: &str) -> Compiled {
        let s = Standard::new("r", text);
        let readings = s.readings(&vocabulary());
        Compiled::new(&s, &readings, &vocabulary(), 32, 1.0).unwrap()
    }

    #[test]
    fn each_defect_a_clause_governs_becomes_one_line_citing_back_to_it() {
        let c = compile(
            "QA-STD-7 Housings\n4.1 Inspect under diffuse light.\n\
             4.2 The sealing face shall be free of scratches and dents.\n\
             4.3 孔洞长度超过2毫米判为不合格。\n4.4 异物不作为拒收依据。\n\
             4.5 Not more than two holes per part.",
        );
        assert_eq!(
            c.standard.text,
            "Cosmetic inspection rules for finished parts.\n\
             1. Any scratch is a reject.\n2. Any dent is a reject.\n\
             3. Holes longer than 2 mm are rejected.\n4. Contamination are acceptable.\n\
             5. No more than 2 holes per part."
        );
        // Written clauses are numbered by position: 4.2 is clause 2.
        assert_eq!(c.clause_of, [2, 2, 3, 4, 5]);
        assert_eq!(c.clause_of(3), Some(3));
        assert_eq!(c.clause_of(0), None);
        assert_eq!(c.clause_of(6), None);
    }

    #[test]
    fn a_clause_the_reading_cannot_rely_on_is_passed_on_as_written() {
        let c = compile("1. Scratches\n   are to be judged by the supervisor.\n2. No dents.");
        let s = Standard::new("r", "1. Scratches\n   are to be judged by the supervisor.");
        let r = s.readings(&vocabulary());
        assert!(r[0].flagged(), "{r:?}");
        assert_eq!(
            c.standard.text,
            "Cosmetic inspection rules for finished parts.\n\
             1. Scratches are to be judged by the supervisor.\n2. Any dent is a reject."
        );
        assert_eq!(c.clause_of, [1, 2]);
    }

    #[test]
    fn a_limit_finer_than_the_model_learned_is_a_ban_for_it() {
        let c = compile("1. Holes larger than 0.5 mm are rejected.\n2. Dents over 1 mm reject.");
        assert!(
            c.standard
                .text
                .ends_with("\n1. Any hole is a reject.\n2. Dents longer than 1 mm are rejected."),
            "{}",
            c.standard.text
        );
    }

    #[test]
    fn more_lines_than_the_model_can_cite_is_refused() {
        let s = Standard::new("r", "1. No scratches or dents or holes.");
        let readings = s.readings(&vocabulary());
        assert!(Compiled::new(&s, &readings, &vocabulary(), 2, 1.0).is_none());
        assert!(Compiled::new(&s, &readings, &vocabulary(), 3, 1.0).is_some());
    }
}
