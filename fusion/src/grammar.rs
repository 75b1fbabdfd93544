//! The verdict-v1 output language as a state machine over token ids.
//!
//! The decoder may only pick tokens this grammar allows next, so every output
//! parses: a decision (`<pass>`/`<fail>`), then findings, each a defect word,
//! four `<loc_*>` tokens (x0 y0 x1 y1, with x1 > x0 and y1 > y0) and a
//! `<clause_K>` of the standard or `<ok>`, then `</s>`. A hard token limit
//! closes the verdict before it could be cut mid-finding.

use std::collections::HashMap;

use tokenizers::Tokenizer;

use crate::package::Manifest;

/// Token ids of the verdict language.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub bos: u32,
    pub eos: u32,
    pub pass: u32,
    pub fail: u32,
    pub ok: u32,
    /// `<loc_0>`..: ids by bin.
    pub loc: Vec<u32>,
    /// `<clause_1>`..: ids by clause number - 1.
    pub clause: Vec<u32>,
    /// Defect words and their ids.
    pub defects: Vec<(String, u32)>,
    /// Most tokens a verdict may have, `</s>` included.
    pub max_tokens: usize,
    reverse: HashMap<u32, Token>,
}

/// What a verdict token means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Pass,
    Fail,
    Ok,
    Eos,
    Loc(u32),
    Clause(u32),
    Defect(usize),
}

/// Where the decoder is within a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Decision,
    FindingOrEnd,
    /// Waiting for location token `k` (0..4) of the current finding.
    Loc(u8),
    ClauseOrOk,
    Done,
}

/// Tokens in a finding plus the closing `</s>`.
const FINDING_TOKENS: usize = 6;

#[derive(Debug, thiserror::Error)]
#[error("tokenizer lacks verdict token `{0}`")]
pub struct MissingToken(String);

impl Grammar {
    pub fn new(tok: &Tokenizer, m: &Manifest) -> Result<Self, MissingToken> {
        let id = |t: &str| {
            tok.token_to_id(t)
                .ok_or_else(|| MissingToken(t.to_string()))
        };
        let s = &m.special_tokens;
        let loc = (0..s.loc_bins)
            .map(|i| id(&format!("{}{i}>", s.loc_prefix)))
            .collect::<Result<Vec<_>, _>>()?;
        let clause = (1..=s.max_clause)
            .map(|i| id(&format!("{}{i}>", s.clause_prefix)))
            .collect::<Result<Vec<_>, _>>()?;
        let defects = m
            .output
            .defect_words
            .iter()
            .map(|w| Ok((w.clone(), id(w)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut g = Self {
            bos: id(&s.bos)?,
            eos: id(&s.eos)?,
            pass: id(&s.pass)?,
            fail: id(&s.fail)?,
            ok: id(&s.ok)?,
            loc,
            clause,
            defects,
            max_tokens: m.output.max_tokens,
            reverse: HashMap::new(),
        };
        let mut r = HashMap::new();
        r.insert(g.pass, Token::Pass);
        r.insert(g.fail, Token::Fail);
        r.insert(g.ok, Token::Ok);
        r.insert(g.eos, Token::Eos);
        for (i, t) in g.loc.iter().enumerate() {
            r.insert(*t, Token::Loc(i as u32));
        }
        for (i, t) in g.clause.iter().enumerate() {
            r.insert(*t, Token::Clause(i as u32 + 1));
        }
        for (i, (_, t)) in g.defects.iter().enumerate() {
            r.insert(*t, Token::Defect(i));
        }
        g.reverse = r;
        Ok(g)
    }

    /// What a token id means, if it is a verdict token.
    pub fn meaning(&self, id: u32) -> Option<Token> {
        self.reverse.get(&id).copied()
    }

    /// Token ids allowed next. `used` counts tokens emitted so far;
    /// `boxes` is the current finding's location bins so far; `clauses` is
    /// the highest clause number the standard has; `citable` are the clauses
    /// that mention the current finding's defect (a finding may only cite a
    /// clause about its own kind; empty means no clause names it, and then
    /// it cites none: it is shown as `<ok>`, not governed by the standard, and
    /// a FAIL resting on it goes to REVIEW by the consistency check).
    pub fn allowed(
        &self,
        state: State,
        used: usize,
        boxes: &[u32],
        clauses: u32,
        citable: &[u32],
    ) -> Vec<u32> {
        match state {
            State::Decision => vec![self.pass, self.fail],
            State::FindingOrEnd => {
                let mut v = vec![self.eos];
                if used + FINDING_TOKENS < self.max_tokens {
                    v.extend(self.defects.iter().map(|(_, t)| *t));
                }
                v
            }
            State::Loc(k) => {
                // x1 > x0 and y1 > y0.
                let floor = match k {
                    2 => boxes[0] + 1,
                    3 => boxes[1] + 1,
                    _ => 0,
                };
                let top = self.loc.len() as u32;
                let floor = floor.min(top - 1);
                self.loc[floor as usize..].to_vec()
            }
            State::ClauseOrOk => {
                let n = (clauses as usize).min(self.clause.len());
                let mut v = vec![self.ok];
                let named: Vec<u32> = citable
                    .iter()
                    .filter(|&&c| c >= 1 && c as usize <= n)
                    .map(|&c| self.clause[c as usize - 1])
                    .collect();
                v.extend(named);
                v
            }
            State::Done => vec![],
        }
    }

    /// The state after emitting `id` in `state`.
    pub fn advance(&self, state: State, id: u32) -> State {
        match (state, self.meaning(id)) {
            (State::Decision, _) => State::FindingOrEnd,
            (State::FindingOrEnd, Some(Token::Eos)) => State::Done,
            (State::FindingOrEnd, _) => State::Loc(0),
            (State::Loc(3), _) => State::ClauseOrOk,
            (State::Loc(k), _) => State::Loc(k + 1),
            (State::ClauseOrOk, _) => State::FindingOrEnd,
            (State::Done, _) => State::Done,
        }
    }
}
