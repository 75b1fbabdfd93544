//! Written inspection standards for the synthetic line, and the oracle that
//! judges a part against them.
//!
//! A standard is numbered clauses, one per defect kind, in shuffled order and
//! varied wording: a kind is banned, limited by a size in millimetres, or
//! tolerated. The oracle applies the clauses exactly, so every synthetic part
//! comes with the verdict a careful quality engineer would write.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::defects::{DefectKind, DrawnDefect};

/// What a clause says about its defect kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Any defect of the kind rejects the part.
    Ban,
    /// Defects larger than `limit_mm` reject the part; smaller ones are tolerated.
    Limit { limit_mm: f32 },
    /// The kind never rejects the part.
    Tolerate,
}

/// One numbered clause of a synthetic standard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthClause {
    /// The clause number as written.
    pub number: u32,
    /// The defect kind it governs.
    pub kind: DefectKind,
    /// What it says.
    #[serde(flatten)]
    pub rule: Rule,
}

/// A standard as text plus the clauses it was written from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenStandard {
    pub text: String,
    pub clauses: Vec<SynthClause>,
}

/// Limits standards choose from, in millimetres.
const LIMITS_MM: [f32; 7] = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0];
/// A limit must differ from every size it judges by at least this fraction,
/// so that ground truth is not decided by sub-pixel measurement noise.
const LIMIT_MARGIN: f32 = 0.25;

fn format_mm(v: f32) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn clause_sentence(rng: &mut StdRng, kind: DefectKind, rule: Rule) -> String {
    let (word, plural) = (kind.word(), kind.plural());
    match rule {
        Rule::Ban => match rng.gen_range(0..4) {
            0 => format!("No {plural} are permitted."),
            1 => format!("Any {word} is a reject."),
            2 => format!("{} of any size are not acceptable.", capitalise(plural)),
            _ => format!("Reject the part if a {word} is present."),
        },
        Rule::Limit { limit_mm } => {
            let l = format_mm(limit_mm);
            match rng.gen_range(0..4) {
                0 => format!("{} longer than {l} mm are rejected.", capitalise(plural)),
                1 => format!(
                    "A {word} larger than {l} mm shall be rejected; smaller ones are acceptable."
                ),
                2 => format!("Reject if a {word} exceeds {l} mm."),
                _ => format!(
                    "{} up to {l} mm are acceptable, larger ones are a reject.",
                    capitalise(plural)
                ),
            }
        }
        Rule::Tolerate => match rng.gen_range(0..4) {
            0 => format!("{} are acceptable.", capitalise(plural)),
            1 => format!(
                "{} are tolerated and do not cause rejection.",
                capitalise(plural)
            ),
            2 => format!("Any {word} is cosmetic only and accepted."),
            _ => format!("Ignore {plural}."),
        },
    }
}

/// Chooses a rule for `kind` that judges every size in `sizes` unambiguously.
fn choose_rule(rng: &mut StdRng, sizes: &[f32]) -> Rule {
    let roll: f32 = rng.gen();
    if roll < 0.3 {
        return Rule::Ban;
    }
    if roll < 0.7 {
        let usable: Vec<f32> = LIMITS_MM
            .into_iter()
            .filter(|l| sizes.iter().all(|s| (s - l).abs() / l >= LIMIT_MARGIN))
            .collect();
        if let Some(&limit_mm) = usable.choose(rng) {
            return Rule::Limit { limit_mm };
        }
        return if rng.gen_bool(0.5) {
            Rule::Ban
        } else {
            Rule::Tolerate
        };
    }
    Rule::Tolerate
}

/// Writes a standard for a part that carries `defects`.
pub fn write_standard(rng: &mut StdRng, defects: &[DrawnDefect]) -> WrittenStandard {
    let mut kinds = DefectKind::ALL.to_vec();
    kinds.shuffle(rng);
    let header = match rng.gen_range(0..3) {
        0 => "Inspection standard for machined housings.".to_string(),
        1 => "Visual acceptance criteria for the cover surface.".to_string(),
        _ => format!(
            "Surface quality standard, revision {}.",
            rng.gen_range(1..9)
        ),
    };
    let mut text = header;
    let mut clauses = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.into_iter().enumerate() {
        let sizes: Vec<f32> = defects
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| d.size_mm)
            .collect();
        let rule = choose_rule(rng, &sizes);
        let number = i as u32 + 1;
        text.push('\n');
        text.push_str(&format!("{number}. {}", clause_sentence(rng, kind, rule)));
        clauses.push(SynthClause { number, kind, rule });
    }
    WrittenStandard { text, clauses }
}

/// The clause a defect violates under `standard`, if any.
pub fn violated_clause(standard: &WrittenStandard, defect: &DrawnDefect) -> Option<u32> {
    let clause = standard.clauses.iter().find(|c| c.kind == defect.kind)?;
    let violated = match clause.rule {
        Rule::Ban => true,
        Rule::Limit { limit_mm } => defect.size_mm > limit_mm,
        Rule::Tolerate => false,
    };
    violated.then_some(clause.number)
}
