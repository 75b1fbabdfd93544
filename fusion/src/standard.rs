//! `Standard`: the station's written inspection standard, split into numbered
//! `Clause`s so verdicts can cite the clause text and the decoder can only
//! cite clauses that exist.

use sha2::{Digest, Sha256};

/// One numbered clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub number: u32,
    pub text: String,
}

/// A standard's text, its identity and its clauses.
#[derive(Debug, Clone)]
pub struct Standard {
    /// The recipe it belongs to.
    pub recipe: String,
    pub text: String,
    /// sha256 of the text: verdicts record which exact version judged them.
    pub sha256: String,
    pub clauses: Vec<Clause>,
}

/// Splits `"3. Text"` or `"3) Text"` into number and text.
fn numbered(line: &str) -> Option<(u32, &str)> {
    let t = line.trim_start();
    let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = &t[digits..];
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))?;
    Some((t[..digits].parse().ok()?, rest.trim()))
}

impl Standard {
    pub fn new(recipe: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut clauses: Vec<Clause> = Vec::new();
        for line in text.lines() {
            if let Some((number, body)) = numbered(line) {
                clauses.push(Clause {
                    number,
                    text: body.to_string(),
                });
            } else if let (Some(last), false) = (clauses.last_mut(), line.trim().is_empty()) {
                last.text.push(' ');
                last.text.push_str(line.trim());
            }
        }
        Self {
            recipe: recipe.into(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            text,
            clauses,
        }
    }

    /// The clause with this number.
    pub fn clause(&self, number: u32) -> Option<&Clause> {
        self.clauses.iter().find(|c| c.number == number)
    }

    /// The text as the `clause-tagged` prompt format writes it: a numbered
    /// clause line starts with `<clause_K>` (the token the decoder cites it
    /// with) instead of `K.`. Mirrors `tag_clauses` in models/toolchain/vocab.py.
    pub fn prompt_text(&self, max_clause: u32) -> String {
        self.text
            .lines()
            .map(|line| match numbered(line) {
                Some((n, body)) if (1..=max_clause).contains(&n) => format!("<clause_{n}> {body}"),
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Numbers of the clauses that talk about a defect called any of `names`.
    /// An alphabetic name is mentioned when one of the clause's words starts
    /// with it ("scratch" in "Scratches longer than 2 mm"); a name in a script
    /// written without spaces (Chinese) when the clause contains it
    /// ("划痕长度超过2毫米"). Empty when none does.
    pub fn clauses_mentioning(&self, names: &[String]) -> Vec<u32> {
        let names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        self.clauses
            .iter()
            .filter(|c| {
                let text = c.text.to_lowercase();
                names.iter().any(|name| {
                    if name.is_ascii() {
                        text.split(|ch: char| !ch.is_alphanumeric())
                            .any(|w| w.starts_with(name.as_str()))
                    } else {
                        text.contains(name.as_str())
                    }
                })
            })
            .map(|c| c.number)
            .collect()
    }

    /// Highest clause number, which bounds what the decoder may cite.
    pub fn max_clause(&self) -> u32 {
        self.clauses.iter().map(|c| c.number).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_are_numbered_lines_with_continuations() {
        let s = Standard::new(
            "r",
            "Header line.\n1. No cracks.\n2) Scratches up to 2 mm\n   are acceptable.\n\n10. Holes are tolerated.",
        );
        assert_eq!(s.clauses.len(), 3);
        assert_eq!(
            s.clause(2).unwrap().text,
            "Scratches up to 2 mm are acceptable."
        );
        assert_eq!(s.max_clause(), 10);
        assert_eq!(s.sha256.len(), 64);
        assert_eq!(
            s.prompt_text(32),
            "Header line.\n<clause_1> No cracks.\n<clause_2> Scratches up to 2 mm\n   are acceptable.\n\n<clause_10> Holes are tolerated."
        );
        assert!(s.prompt_text(5).ends_with("10. Holes are tolerated."));
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(s.clauses_mentioning(&names(&["scratch"])), [2]);
        assert_eq!(s.clauses_mentioning(&names(&["hole"])), [10]);
        assert!(s.clauses_mentioning(&names(&["dent"])).is_empty());
        let zh = Standard::new(
            "zh",
            "外观检验标准\n1. 划痕长度超过2毫米判为不合格。\n2. 异物可接受。",
        );
        assert_eq!(zh.clauses_mentioning(&names(&["scratch", "划痕"])), [1]);
        assert_eq!(
            zh.clauses_mentioning(&names(&["contamination", "异物"])),
            [2]
        );
        assert!(zh.clauses_mentioning(&names(&["dent", "凹坑"])).is_empty());
    }
}
