//! `Standard`: the station's written inspection standard, split into
//! `Clause`s so verdicts can cite the clause text and the decoder can only
//! cite clauses that exist.
//!
//! Real standards number their rules in many ways: `3.`, `3)`, `3、`,
//! `(3)`, hierarchical `4.2.1`, lettered items `a)` under a numbered one.
//! Every rule becomes a clause with its label as written; a numbered line
//! that only heads deeper items (`4.2 Surface` above `4.2.1 …`) is a
//! heading, not a clause, and unnumbered lines are prose (a continuation
//! when they follow a clause without a blank line between).

use sha2::{Digest, Sha256};

/// One rule of the standard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The number the decoder cites it by (`<clause_K>`) and verdicts carry:
    /// the written number when every clause is numbered with a plain
    /// integer, else its position (1, 2, …) in the standard.
    pub number: u32,
    /// The label as written: `5`, `4.2.1`, `3.a`.
    pub label: String,
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
    /// `(line index, clause number, byte length of the label prefix)` of
    /// each line that starts a clause, for the tagged prompt.
    starts: Vec<(usize, u32, usize)>,
}

/// A numbered line: its label parts and where the text after the label starts.
struct Numbered<'a> {
    /// `["4", "2", "1"]`, `["a"]`.
    parts: Vec<String>,
    lettered: bool,
    body: &'a str,
    /// Bytes of the line up to the body.
    prefix: usize,
}

/// Recognises `3.`, `3)`, `3、`, `(3)`, `（3）`, `4.2.1`, `4.2.1.`, `a)`,
/// `(a)`, `a.` at the start of a line.
fn numbered(line: &str) -> Option<Numbered<'_>> {
    let t = line.trim_start();
    let (inner, rest, paren) = if let Some(r) = t.strip_prefix('(').or_else(|| t.strip_prefix('（'))
    {
        let close = r.find([')', '）'])?;
        let close_len = r[close..].chars().next()?.len_utf8();
        (&r[..close], &r[close + close_len..], true)
    } else {
        let end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(t.len());
        (&t[..end], &t[end..], false)
    };
    let label = inner.trim_end_matches('.');
    let closed_by_dot = inner.ends_with('.');
    if label.is_empty() {
        return None;
    }
    let lettered = label.len() == 1 && label.chars().all(|c| c.is_ascii_lowercase());
    let parts: Vec<String> = label.split('.').map(str::to_string).collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
    if !(numeric || lettered) {
        return None;
    }
    // What ends the label: `)`, `、`, a dot, or (for `4.2.1`) a space.
    let (rest, ok) = if paren {
        (rest, true)
    } else if let Some(r) = rest.strip_prefix(')').or_else(|| rest.strip_prefix('、')) {
        (r, true)
    } else {
        (
            rest,
            closed_by_dot || (numeric && parts.len() > 1 && rest.starts_with(char::is_whitespace)),
        )
    };
    if !ok {
        return None;
    }
    let body = rest.trim();
    if body.is_empty() {
        return None;
    }
    Some(Numbered {
        parts,
        lettered,
        prefix: line.len() - rest.trim_start().len(),
        body,
    })
}

/// A numbered line (with its continuation lines) before headings are told
/// apart from rules.
#[derive(Clone)]
struct Item {
    /// Index of the line it starts on.
    line: usize,
    /// Bytes of that line taken by the label.
    prefix: usize,
    label: String,
    text: String,
}

impl Standard {
    pub fn new(recipe: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        // First pass: numbered lines with their full labels (a lettered
        // item takes the number of the numbered line above it).
        let mut items: Vec<Item> = Vec::new();
        let mut parent: Option<String> = None;
        let mut open = false;
        for (line, text) in text.lines().enumerate() {
            if let Some(n) = numbered(text) {
                let label = if n.lettered {
                    match &parent {
                        Some(p) => format!("{p}.{}", n.parts[0]),
                        None => n.parts[0].clone(),
                    }
                } else {
                    let l = n.parts.join(".");
                    parent = Some(l.clone());
                    l
                };
                items.push(Item {
                    line,
                    prefix: n.prefix,
                    label,
                    text: n.body.to_string(),
                });
                open = true;
            } else if text.trim().is_empty() {
                open = false;
            } else if let (Some(last), true) = (items.last_mut(), open) {
                last.text.push(' ');
                last.text.push_str(text.trim());
            }
        }
        // A label that heads a deeper one is a heading, not a rule.
        let heads = |label: &str| {
            let deeper = format!("{label}.");
            items.iter().any(|i| i.label.starts_with(&deeper))
        };
        let rules: Vec<Item> = items.iter().filter(|i| !heads(&i.label)).cloned().collect();
        let plain: Vec<Option<u32>> = rules.iter().map(|i| i.label.parse().ok()).collect();
        let mut seen = std::collections::HashSet::new();
        let by_number = plain
            .iter()
            .all(|n| n.is_some_and(|n| n > 0 && seen.insert(n)));
        let mut clauses = Vec::new();
        let mut starts = Vec::new();
        for (k, item) in rules.into_iter().enumerate() {
            let number = match plain[k] {
                Some(n) if by_number => n,
                _ => k as u32 + 1,
            };
            starts.push((item.line, number, item.prefix));
            clauses.push(Clause {
                number,
                label: item.label,
                text: item.text,
            });
        }
        Self {
            recipe: recipe.into(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            text,
            clauses,
            starts,
        }
    }

    /// The clause with this number.
    pub fn clause(&self, number: u32) -> Option<&Clause> {
        self.clauses.iter().find(|c| c.number == number)
    }

    /// The text as the `clause-tagged` prompt format writes it: a line that
    /// starts a clause starts with `<clause_K>` (the token the decoder cites
    /// it with) instead of its label. Mirrors `tag_clauses` in
    /// models/toolchain/vocab.py.
    pub fn prompt_text(&self, max_clause: u32) -> String {
        self.text
            .lines()
            .enumerate()
            .map(
                |(i, line)| match self.starts.iter().find(|(l, _, _)| *l == i) {
                    Some((_, n, prefix)) if (1..=max_clause).contains(n) => {
                        format!("<clause_{n}> {}", line[*prefix..].trim())
                    }
                    _ => line.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Numbers of the clauses that talk about a defect called any of `names`
    /// (see [`crate::reading::mentions`]): "scratch" in "Scratches longer
    /// than 2 mm", "划痕" in "划痕长度超过2毫米". Empty when none does.
    pub fn clauses_mentioning(&self, names: &[String]) -> Vec<u32> {
        let names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        self.clauses
            .iter()
            .filter(|c| {
                let text = c.text.to_lowercase();
                names
                    .iter()
                    .any(|name| crate::reading::mentions(&text, name))
            })
            .map(|c| c.number)
            .collect()
    }

    /// How each clause reads (in clause order) with the model's words.
    pub fn readings(
        &self,
        vocabulary: &crate::reading::Vocabulary,
    ) -> Vec<crate::reading::Reading> {
        self.clauses
            .iter()
            .map(|c| crate::reading::read(c.number, &c.text, vocabulary))
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

    #[test]
    fn hierarchical_and_lettered_numbering_headings_and_prose() {
        let s = Standard::new(
            "r",
            "QA-STD-114 Visual acceptance\n\n4 Surface\n4.1 Scope: the machined face.\n\
             4.2 Defects\n4.2.1 No cracks are permitted.\n4.2.2 Dents up to 1 mm\nare acceptable.\n\n\
             Prose between clauses is not part of one.\n5. Marking\na) Labels must be legible.\n\
             b) 划痕可接受。\n（6）孔洞不允许。\n7、异物可接受。",
        );
        let labels: Vec<(u32, &str)> = s
            .clauses
            .iter()
            .map(|c| (c.number, c.label.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                (1, "4.1"),
                (2, "4.2.1"),
                (3, "4.2.2"),
                (4, "5.a"),
                (5, "5.b"),
                (6, "6"),
                (7, "7")
            ]
        );
        assert_eq!(s.clauses[2].text, "Dents up to 1 mm are acceptable.");
        assert_eq!(s.clauses[5].text, "孔洞不允许。");
        let prompt = s.prompt_text(32);
        assert!(
            prompt.contains("\n<clause_2> No cracks are permitted.\n"),
            "{prompt}"
        );
        assert!(prompt.contains("\n4.2 Defects\n"), "{prompt}");
        assert!(prompt.contains("<clause_6> 孔洞不允许。"), "{prompt}");
        assert!(
            Standard::new("r", "All parts shall be inspected.\nNo cracks.")
                .clauses
                .is_empty()
        );
    }
}
