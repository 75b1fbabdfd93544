//! One verdict being decoded: which tokens the grammar allows next, the greedy
//! choice among them, and when the verdict is finished.
//!
//! Kept apart from the ONNX Runtime calls so the rules can be tested with any
//! logits at all (including hostile ones): whatever the decoder scores, the
//! tokens chosen here always form a verdict-v1 sentence that closes within the
//! hard token limit.

use std::sync::Arc;

use crate::grammar::{Grammar, State, Token};

/// The state of one sequence in a decoding batch.
pub struct Sequence {
    grammar: Arc<Grammar>,
    /// Highest clause number of the standard this sequence reads.
    clauses: u32,
    /// Per grammar defect word, the clauses a finding of it may cite.
    citable: Arc<Vec<Vec<u32>>>,
    state: State,
    defect: usize,
    boxes: Vec<u32>,
    /// Tokens chosen so far with their probabilities.
    pub emitted: Vec<(u32, f32)>,
}

impl Sequence {
    pub fn new(grammar: Arc<Grammar>, clauses: u32, citable: Arc<Vec<Vec<u32>>>) -> Self {
        Self {
            grammar,
            clauses,
            citable,
            state: State::Decision,
            defect: 0,
            boxes: Vec::new(),
            emitted: Vec::new(),
        }
    }

    /// True once the verdict is closed or the token limit is reached.
    pub fn finished(&self) -> bool {
        self.state == State::Done || self.emitted.len() >= self.grammar.max_tokens
    }

    /// True when the verdict ended with `</s>` (not cut by the limit).
    pub fn closed(&self) -> bool {
        self.state == State::Done
    }

    /// The token fed to the decoder for the next step.
    pub fn last_token(&self) -> u32 {
        self.emitted.last().map_or(self.grammar.bos, |(t, _)| *t)
    }

    /// Tokens the grammar allows next.
    pub fn allowed(&self) -> Vec<u32> {
        let citable = self
            .citable
            .get(self.defect)
            .map_or(&[][..], |c| c.as_slice());
        self.grammar.allowed(
            self.state,
            self.emitted.len(),
            &self.boxes,
            self.clauses,
            citable,
        )
    }

    /// Chooses the next token from this step's logits (one row of the
    /// vocabulary) and advances the grammar. Returns the chosen token.
    pub fn step(&mut self, logits: &[f32]) -> u32 {
        let allowed = self.allowed();
        let (id, p) = pick(logits, &allowed);
        let g = &self.grammar;
        if let Some(Token::Defect(k)) = g.meaning(id) {
            self.defect = k;
        }
        if let (State::Loc(_), Some(Token::Loc(bin))) = (self.state, g.meaning(id)) {
            self.boxes.push(bin);
        }
        self.state = g.advance(self.state, id);
        if matches!(self.state, State::FindingOrEnd | State::Done) {
            self.boxes.clear();
        }
        self.emitted.push((id, p));
        id
    }
}

/// Greedy choice among the allowed tokens; returns the token and its
/// probability renormalised over the allowed set. Non-finite scores never win
/// over finite ones; if no allowed token has a finite score the first allowed
/// token is taken with probability 0, which sends the verdict to REVIEW.
pub fn pick(logits: &[f32], allowed: &[u32]) -> (u32, f32) {
    let score = |t: u32| -> f32 {
        match logits.get(t as usize) {
            Some(v) if v.is_finite() => *v,
            _ => f32::NEG_INFINITY,
        }
    };
    let mut best = allowed[0];
    let mut max = f32::NEG_INFINITY;
    for &t in allowed {
        let s = score(t);
        if s > max {
            max = s;
            best = t;
        }
    }
    if !max.is_finite() {
        return (best, 0.0);
    }
    let sum: f32 = allowed.iter().map(|&t| (score(t) - max).exp()).sum();
    (best, 1.0 / sum)
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn pick_prefers_the_highest_allowed_score() {
        let logits = [5.0, 1.0, 3.0, 9.0];
        let (t, p) = pick(&logits, &[0, 1, 2]);
        assert_eq!(t, 0, "token 3 scores higher but is not allowed");
        assert!(p > 0.8 && p < 1.0);
    }

    #[test]
    fn non_finite_scores_never_win() {
        let logits = [f32::NAN, f32::INFINITY, 0.5, f32::NEG_INFINITY];
        let (t, p) = pick(&logits, &[0, 1, 2, 3]);
        assert_eq!(t, 2);
        assert!((p - 1.0).abs() < 1e-6);
        let (t, p) = pick(&logits, &[0, 1]);
        assert_eq!(t, 0);
        assert_eq!(p, 0.0, "no usable score: zero confidence");
    }

    #[test]
    fn out_of_vocabulary_ids_are_not_chosen_over_real_ones() {
        let (t, _) = pick(&[0.0, 1.0], &[7, 1]);
        assert_eq!(t, 1);
    }
}
