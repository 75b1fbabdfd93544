//! Holding a verdict to the clauses it cites.
//!
//! Whatever the decoder writes, an operator must never be shown — and the
//! PLC never sent — a verdict that contradicts its own citations: a FAIL
//! resting on a clause that tolerates the defect, a finding cited to a
//! clause about another defect, a defect the standard bans shown as
//! tolerated. This module finds such contradictions against the clauses'
//! readings ([`crate::reading`]); the caller turns a verdict that has any
//! into REVIEW, naming them. It never turns a verdict into PASS or FAIL.

use std::fmt;

use crate::engine::Decision;
use crate::reading::{Reading, Rule};

/// A size within this fraction of a clause's limit is not held against the
/// verdict either way: a box measures a defect only to a few pixels.
pub const SIZE_TOLERANCE: f32 = 0.15;

/// What the check needs to know of one finding.
#[derive(Debug, Clone)]
pub struct FindingFacts<'a> {
    /// The model's defect word.
    pub defect: &'a str,
    /// The clause cited as violated; `None` when shown as tolerated.
    pub clause: Option<u32>,
    /// Its size in millimetres, when the camera is calibrated.
    pub size_mm: Option<f32>,
}

/// One way a verdict contradicts the standard. Findings are numbered from 1,
/// as the review page numbers them.
#[derive(Debug, Clone, PartialEq)]
pub enum Contradiction {
    /// The cited clause does not exist.
    NoSuchClause { finding: usize, clause: u32 },
    /// The cited clause governs other defects (or none).
    OtherDefect {
        finding: usize,
        defect: String,
        clause: u32,
        governs: Vec<String>,
    },
    /// The cited clause could not be read with confidence.
    Unread {
        finding: usize,
        clause: u32,
        doubt: String,
    },
    /// Cited as violated, but the clause tolerates it.
    CitedButTolerated {
        finding: usize,
        defect: String,
        clause: u32,
        why: String,
    },
    /// Shown as tolerated, but a clause rejects it.
    ShownTolerated {
        finding: usize,
        defect: String,
        clause: u32,
        why: String,
    },
    /// FAIL without any finding a clause rejects.
    FailWithoutRejection,
    /// PASS although a finding violates a clause.
    PassDespiteRejection { finding: usize, clause: u32 },
}

impl fmt::Display for Contradiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contradiction::NoSuchClause { finding, clause } => write!(
                f,
                "finding {finding} cites clause {clause}, which the standard does not have"
            ),
            Contradiction::OtherDefect {
                finding,
                defect,
                clause,
                governs,
            } if governs.is_empty() => write!(
                f,
                "finding {finding} ({defect}) cites clause {clause}, which is not about any defect"
            ),
            Contradiction::OtherDefect {
                finding,
                defect,
                clause,
                governs,
            } => write!(
                f,
                "finding {finding} ({defect}) cites clause {clause}, which is about {}",
                governs.join(", ")
            ),
            Contradiction::Unread {
                finding,
                clause,
                doubt,
            } => write!(
                f,
                "finding {finding} cites clause {clause}, which could not be read with confidence ({doubt})"
            ),
            Contradiction::CitedButTolerated {
                finding,
                defect,
                clause,
                why,
            } => write!(
                f,
                "finding {finding} ({defect}) is cited as violating clause {clause}, but {why}"
            ),
            Contradiction::ShownTolerated {
                finding,
                defect,
                clause,
                why,
            } => write!(
                f,
                "finding {finding} ({defect}) is shown as tolerated, but clause {clause} {why}"
            ),
            Contradiction::FailWithoutRejection => {
                write!(f, "FAIL without a finding that a clause of the standard rejects")
            }
            Contradiction::PassDespiteRejection { finding, clause } => write!(
                f,
                "PASS although finding {finding} violates clause {clause}"
            ),
        }
    }
}

/// The reason text for a verdict made REVIEW by `contradictions`.
pub fn reason(contradictions: &[Contradiction]) -> String {
    let list: Vec<String> = contradictions.iter().map(|c| c.to_string()).collect();
    format!("the verdict contradicts the standard: {}", list.join("; "))
}

fn fmt_mm(v: f32) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Every contradiction between `decision`, `findings` and the readings of
/// the standard's clauses. Empty when the verdict is consistent.
pub fn check(
    decision: Decision,
    findings: &[FindingFacts<'_>],
    readings: &[Reading],
) -> Vec<Contradiction> {
    let mut out = Vec::new();
    let count = |defect: &str| findings.iter().filter(|f| f.defect == defect).count();
    let mut rejected_by: Option<(usize, u32)> = None;
    for (i, f) in findings.iter().enumerate() {
        let finding = i + 1;
        match f.clause {
            Some(clause) => {
                let Some(r) = readings.iter().find(|r| r.clause == clause) else {
                    out.push(Contradiction::NoSuchClause { finding, clause });
                    continue;
                };
                if !r.governs(f.defect) {
                    out.push(if r.confident() || r.rule == Rule::Other {
                        Contradiction::OtherDefect {
                            finding,
                            defect: f.defect.to_string(),
                            clause,
                            governs: r.defects.clone(),
                        }
                    } else {
                        Contradiction::Unread {
                            finding,
                            clause,
                            doubt: r.doubt.clone().unwrap_or_default(),
                        }
                    });
                    continue;
                }
                if !r.confident() {
                    out.push(Contradiction::Unread {
                        finding,
                        clause,
                        doubt: r.doubt.clone().unwrap_or_else(|| "low confidence".into()),
                    });
                    continue;
                }
                let tolerated_because = match r.rule {
                    Rule::Ban => None,
                    Rule::SizeLimit { limit_mm } => match f.size_mm {
                        Some(size) if size < limit_mm * (1.0 - SIZE_TOLERANCE) => Some(format!(
                            "it measures {} mm and clause {clause} rejects only those over {} mm",
                            fmt_mm(size),
                            fmt_mm(limit_mm)
                        )),
                        _ => None,
                    },
                    Rule::CountLimit { max_count } => {
                        let n = count(f.defect);
                        (n as u32 <= max_count).then(|| {
                            format!(
                                "the verdict shows {n} and clause {clause} allows up to {max_count}"
                            )
                        })
                    }
                    Rule::Tolerate => Some(format!("clause {clause} tolerates it")),
                    Rule::Other | Rule::Unclear => Some(format!("clause {clause} rejects nothing")),
                };
                match tolerated_because {
                    Some(why) => out.push(Contradiction::CitedButTolerated {
                        finding,
                        defect: f.defect.to_string(),
                        clause,
                        why,
                    }),
                    None => {
                        rejected_by.get_or_insert((finding, clause));
                    }
                }
            }
            None => {
                for r in readings
                    .iter()
                    .filter(|r| r.confident() && r.governs(f.defect))
                {
                    let why = match r.rule {
                        Rule::Ban => Some(format!("rejects any {}", f.defect)),
                        Rule::SizeLimit { limit_mm } => f
                            .size_mm
                            .filter(|size| *size > limit_mm * (1.0 + SIZE_TOLERANCE))
                            .map(|size| {
                                format!(
                                    "rejects those over {} mm and it measures {} mm",
                                    fmt_mm(limit_mm),
                                    fmt_mm(size)
                                )
                            }),
                        Rule::CountLimit { max_count } => {
                            let n = count(f.defect);
                            (n as u32 > max_count).then(|| {
                                format!("allows at most {max_count} and the verdict shows {n}")
                            })
                        }
                        Rule::Tolerate | Rule::Other | Rule::Unclear => None,
                    };
                    if let Some(why) = why {
                        out.push(Contradiction::ShownTolerated {
                            finding,
                            defect: f.defect.to_string(),
                            clause: r.clause,
                            why,
                        });
                        break;
                    }
                }
            }
        }
    }
    match (decision, rejected_by) {
        (Decision::Fail, None) => out.push(Contradiction::FailWithoutRejection),
        (Decision::Pass, Some((finding, clause))) => {
            out.push(Contradiction::PassDespiteRejection { finding, clause })
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Vocabulary;

    fn readings(text: &str) -> Vec<Reading> {
        let v = |w: &str, names: &[&str]| {
            (
                w.to_string(),
                names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let vocabulary = Vocabulary {
            defects: vec![
                v("scratch", &["scratch", "scratches"]),
                v("crack", &["crack", "cracks"]),
                v("dent", &["dent", "dents"]),
                v("stain", &["stain", "stains"]),
                v("hole", &["hole", "holes"]),
                v("contamination", &["contamination"]),
            ],
        };
        crate::Standard::new("r", text).readings(&vocabulary)
    }

    const HOUSING: &str = "Inspection standard for machined housings.\n\
        1. No cracks are permitted.\n\
        2. Scratches longer than 3 mm are rejected.\n\
        3. Holes are tolerated and do not cause rejection.\n\
        4. Reject if a stain exceeds 2 mm.\n\
        5. Any dent is a reject.\n\
        6. Contamination is acceptable.\n\
        7. No more than 2 scratches per part.";

    fn facts(defect: &str, clause: Option<u32>, size_mm: f32) -> FindingFacts<'_> {
        FindingFacts {
            defect,
            clause,
            size_mm: Some(size_mm),
        }
    }

    #[test]
    fn a_consistent_verdict_passes_the_check() {
        let r = readings(HOUSING);
        assert!(check(Decision::Fail, &[facts("crack", Some(1), 0.5)], &r).is_empty());
        assert!(check(Decision::Fail, &[facts("scratch", Some(2), 4.0)], &r).is_empty());
        assert!(check(Decision::Pass, &[facts("hole", None, 2.0)], &r).is_empty());
        assert!(check(Decision::Pass, &[facts("scratch", None, 1.0)], &r).is_empty());
        assert!(check(Decision::Pass, &[], &r).is_empty());
        // Near the limit, the box's own error decides nothing.
        assert!(check(Decision::Pass, &[facts("scratch", None, 3.2)], &r).is_empty());
    }

    #[test]
    fn a_fail_resting_on_a_tolerating_clause_is_caught() {
        let r = readings(HOUSING);
        let c = check(Decision::Fail, &[facts("contamination", Some(6), 1.0)], &r);
        assert!(
            matches!(c[0], Contradiction::CitedButTolerated { clause: 6, .. }),
            "{c:?}"
        );
        assert_eq!(c[1], Contradiction::FailWithoutRejection);
        assert!(
            reason(&c).contains("clause 6 tolerates it"),
            "{}",
            reason(&c)
        );
    }

    #[test]
    fn banned_findings_shown_as_tolerated_are_caught() {
        let r = readings(HOUSING);
        let c = check(
            Decision::Pass,
            &[facts("dent", None, 1.0), facts("dent", None, 1.5)],
            &r,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[1]
            .to_string()
            .contains("finding 2 (dent) is shown as tolerated, but clause 5 rejects any dent"));
        let c = check(Decision::Pass, &[facts("scratch", None, 5.0)], &r);
        assert!(
            c[0].to_string().contains("over 3 mm and it measures 5 mm"),
            "{c:?}"
        );
    }

    #[test]
    fn a_finding_citing_another_defects_clause_is_caught() {
        let r = readings(HOUSING);
        let c = check(Decision::Fail, &[facts("contamination", Some(5), 1.0)], &r);
        assert_eq!(
            c[0].to_string(),
            "finding 1 (contamination) cites clause 5, which is about dent"
        );
        let c = check(Decision::Fail, &[facts("dent", Some(9), 1.0)], &r);
        assert_eq!(
            c[0],
            Contradiction::NoSuchClause {
                finding: 1,
                clause: 9
            }
        );
    }

    #[test]
    fn sizes_and_counts_are_held_to_the_limit() {
        let r = readings(HOUSING);
        let c = check(Decision::Fail, &[facts("scratch", Some(2), 1.0)], &r);
        assert!(c[0].to_string().contains("measures 1 mm"), "{c:?}");
        // Two scratches under a "no more than 2" clause cannot fail it; three can.
        let two = [
            facts("scratch", Some(7), 1.0),
            facts("scratch", Some(7), 1.0),
        ];
        assert!(!check(Decision::Fail, &two, &r).is_empty());
        let three = [
            facts("scratch", Some(7), 1.0),
            facts("scratch", Some(7), 1.0),
            facts("scratch", Some(7), 1.0),
        ];
        assert!(check(Decision::Fail, &three, &r).is_empty());
    }

    #[test]
    fn a_pass_with_a_violation_and_an_unread_citation_are_caught() {
        let r = readings(HOUSING);
        let c = check(Decision::Pass, &[facts("crack", Some(1), 1.0)], &r);
        assert_eq!(
            c,
            [Contradiction::PassDespiteRejection {
                finding: 1,
                clause: 1
            }]
        );
        let r = readings("1. Dents are noted on the traveller.");
        let c = check(Decision::Fail, &[facts("dent", Some(1), 1.0)], &r);
        assert!(
            matches!(c[0], Contradiction::Unread { clause: 1, .. }),
            "{c:?}"
        );
    }
}
