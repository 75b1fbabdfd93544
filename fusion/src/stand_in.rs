//! The stand-in engine: judges a synthetic part from the defects drawn on
//! it, with no model graph run.
//!
//! Why it exists: the plant load test (`appliance bench-plant`) has to push
//! hundreds of parts a second through eight stations sharing one PostgreSQL
//! and one broker, on a machine where the real model costs about 16 ms of
//! CPU per part. It measures the shared services, not the model. The
//! stand-in writes the verdict-v1 tokens a perfect model would write (each
//! drawn defect, its box, and the clause that rejects it as the station
//! reads its standard), and those tokens go through the engine's own
//! interpretation (clause numbers mapped back to the written standard,
//! review rules) and everything after it in the station. Only the ONNX
//! graphs do not run.
//!
//! The appliance names its verdicts' model "stand-in for …", so no stored
//! verdict passes for the model's, and refuses the setting unless every
//! camera is the synthetic line: only those frames carry their defects.

use crate::grammar::Grammar;
use crate::reading::{Reading, Rule};

/// A defect known to be on the part: what the synthetic line drew.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    /// The model's defect word, e.g. `scratch`.
    pub defect: String,
    /// Box normalised to 0..1 of the model's input (x0, y0, x1, y1).
    pub box_norm: [f32; 4],
    /// Size in millimetres (length for scratches and cracks).
    pub size_mm: f32,
}

/// The written clause that rejects `known` on a part where `same_kind`
/// defects of its kind were drawn, as the station's confident readings say.
fn rejecting(readings: &[Reading], known: &Known, same_kind: usize) -> Option<u32> {
    readings
        .iter()
        .filter(|r| r.confident() && r.governs(&known.defect))
        .find(|r| match r.rule {
            Rule::Ban => true,
            Rule::SizeLimit { limit_mm } => known.size_mm > limit_mm,
            Rule::CountLimit { max_count } => same_kind as u32 > max_count,
            Rule::Tolerate | Rule::Other | Rule::Unclear => false,
        })
        .map(|r| r.clause)
}

/// A normalised box as four location bins with x1 > x0 and y1 > y0, as the
/// grammar wants them.
fn bins(box_norm: [f32; 4], n: usize) -> [usize; 4] {
    let n = n.max(2);
    let at = |v: f32| ((v.clamp(0.0, 1.0) * n as f32) as usize).min(n - 1);
    let x0 = at(box_norm[0]).min(n - 2);
    let y0 = at(box_norm[1]).min(n - 2);
    let x1 = (((box_norm[2].clamp(0.0, 1.0) * n as f32).ceil() as usize).saturating_sub(1))
        .clamp(x0 + 1, n - 1);
    let y1 = (((box_norm[3].clamp(0.0, 1.0) * n as f32).ceil() as usize).saturating_sub(1))
        .clamp(y0 + 1, n - 1);
    [x0, y0, x1, y1]
}

/// The verdict-v1 token ids (each with probability 1) that a model seeing
/// exactly `known` would write: `<fail>` when a clause rejects one of them,
/// then a finding per defect citing that clause or `<ok>`, then `</s>`.
/// `cite(word, clause)` gives the decoder's number for a written clause
/// (the compiled standard's line), `None` when a finding of that word may
/// not cite it. Words the model does not know are left out, as a model
/// could not name them; when more defects were drawn than a verdict has
/// room for, the rejected ones come first.
pub(crate) fn tokens(
    grammar: &Grammar,
    readings: &[Reading],
    known: &[Known],
    cite: impl Fn(usize, u32) -> Option<u32>,
) -> Vec<(u32, f32)> {
    let mut findings: Vec<(usize, &Known, Option<u32>)> = known
        .iter()
        .filter_map(|k| {
            let word = grammar.defects.iter().position(|(w, _)| *w == k.defect)?;
            let same_kind = known.iter().filter(|o| o.defect == k.defect).count();
            let clause = rejecting(readings, k, same_kind).and_then(|c| cite(word, c));
            Some((word, k, clause))
        })
        .collect();
    findings.sort_by_key(|(_, _, clause)| clause.is_none());
    let room = grammar.max_tokens.saturating_sub(2) / 6;
    findings.truncate(room);
    let fail = findings.iter().any(|(_, _, c)| c.is_some());
    let mut out = vec![if fail { grammar.fail } else { grammar.pass }];
    for (word, k, clause) in findings {
        out.push(grammar.defects[word].1);
        out.extend(bins(k.box_norm, grammar.loc.len()).map(|b| grammar.loc[b]));
        out.push(match clause {
            Some(n) => grammar.clause[n as usize - 1],
            None => grammar.ok,
        });
    }
    out.push(grammar.eos);
    out.into_iter().map(|id| (id, 1.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_become_ordered_bins_inside_the_grid() {
        assert_eq!(bins([0.1, 0.2, 0.3, 0.4], 1000), [100, 200, 299, 399]);
        // A box thinner than a bin still has x1 > x0.
        assert_eq!(bins([0.5, 0.5, 0.5, 0.5], 1000), [500, 500, 501, 501]);
        // At the far edge the box keeps its order.
        assert_eq!(bins([1.0, 1.0, 1.0, 1.0], 1000), [998, 998, 999, 999]);
    }

    fn reading(clause: u32, defect: &str, rule: Rule) -> Reading {
        Reading {
            clause,
            defects: vec![defect.into()],
            rule,
            confidence: 1.0,
            doubt: None,
        }
    }

    fn known(defect: &str, size_mm: f32) -> Known {
        Known {
            defect: defect.into(),
            box_norm: [0.1, 0.1, 0.2, 0.2],
            size_mm,
        }
    }

    #[test]
    fn each_rule_rejects_only_what_it_says() {
        let readings = [
            reading(2, "crack", Rule::Ban),
            reading(3, "scratch", Rule::SizeLimit { limit_mm: 2.0 }),
            reading(4, "dent", Rule::CountLimit { max_count: 1 }),
            reading(5, "stain", Rule::Tolerate),
        ];
        assert_eq!(rejecting(&readings, &known("crack", 0.2), 1), Some(2));
        assert_eq!(rejecting(&readings, &known("scratch", 2.5), 1), Some(3));
        assert_eq!(rejecting(&readings, &known("scratch", 1.5), 1), None);
        assert_eq!(rejecting(&readings, &known("dent", 1.0), 1), None);
        assert_eq!(rejecting(&readings, &known("dent", 1.0), 2), Some(4));
        assert_eq!(rejecting(&readings, &known("stain", 9.0), 1), None);
        assert_eq!(rejecting(&readings, &known("hole", 9.0), 1), None);
        // A reading the station is not sure of rejects nothing by itself.
        let unsure = [Reading {
            confidence: 0.5,
            ..reading(2, "crack", Rule::Ban)
        }];
        assert_eq!(rejecting(&unsure, &known("crack", 1.0), 1), None);
    }
}
