//! The second wording of synthetic standards (`appliance synth --wording v2`):
//! standards composed from parts instead of picked from a short template list,
//! so that a model trained on them meets real variety and an evaluation on them
//! says whether a reading generalises.
//!
//! A clause is composed of an optional condition or location ("on the sealing
//! face", "密封面上"), the defect subject as the model's vocabulary names it,
//! and a rule construction (ban, size limit with comparator and unit, count
//! limit with digits or number words, toleration), each rule phrased to
//! accept or to reject, with an optional complement ("; larger ones are
//! rejected"). A document is composed of a title, document and scope lines,
//! headings, one of several numbering styles that `fusion::Standard::new`
//! parses (`1.`, `1、`, `(1)`, `（1）`, `1)`, `4.1`, `4.1.1`, `a)`, `(a)`,
//! `a.`), clauses about other things (lighting, packaging, records) and the
//! defect clauses in shuffled order.
//!
//! Every list of components is a [`Split`]: its training part and its
//! held-out part share no entry, and a standard draws only from the part its
//! [`Phrasings`] names, so evaluation wording never occurs in training data.
//! Rules and limits are chosen exactly as the first wording chooses them
//! (`standard::choose_rule`), so ground truth keeps its margin, and the
//! result is the same [`WrittenStandard`] the oracle and the dataset writer
//! take. The first wording (`standard.rs`) is left exactly as it was.

mod en;
mod zh;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::defects::{DefectKind, DrawnDefect};
use super::standard::{
    self, chinese_name, Language, Phrasings, Rule, SynthClause, WrittenStandard,
};

/// Which generator writes the synthetic standards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wording {
    /// Six templates per clause kind (`standard.rs`): what the reference
    /// model was trained on; its output for a seed never changes.
    #[default]
    V1,
    /// Composed wording (this module).
    V2,
}

impl Wording {
    /// Parses `v1` / `v2`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1" => Some(Wording::V1),
            "v2" => Some(Wording::V2),
            _ => None,
        }
    }

    /// `v1` / `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wording::V1 => "v1",
            Wording::V2 => "v2",
        }
    }
}

/// Interchangeable components of one kind, split into a training part and a
/// held-out part that share no entry.
#[derive(Debug)]
pub struct Split {
    /// What the components are, for test messages.
    pub name: &'static str,
    pub train: &'static [&'static str],
    pub heldout: &'static [&'static str],
}

impl Split {
    /// The part `set` may draw from.
    pub fn part(&self, set: Phrasings) -> &'static [&'static str] {
        match set {
            Phrasings::Train => self.train,
            Phrasings::Heldout => self.heldout,
        }
    }

    fn pick(&self, rng: &mut StdRng, set: Phrasings) -> &'static str {
        self.part(set)
            .choose(rng)
            .unwrap_or_else(|| panic!("{} has no {set:?} entry", self.name))
    }
}

/// Numbering styles (both languages). `1.`-like styles number clauses
/// flat; `4.1` and `4.1.1` put them in sections under headings; lettered
/// styles list them under numbered headings.
const NUMBERING: Split = Split {
    name: "numbering styles",
    train: &["1.", "1、", "4.1", "a)"],
    heldout: &["(1)", "（1）", "1)", "4.1.1", "(a)", "a."],
};

/// The document parts of one language.
struct Lexicon {
    titles: &'static Split,
    doc_lines: &'static Split,
    scopes: &'static Split,
    intros: &'static Split,
    head_scope: &'static Split,
    head_conditions: &'static Split,
    head_defects: &'static Split,
    subheads: &'static Split,
    distractors: &'static Split,
    /// Writes one clause sentence about `kind` saying `rule`.
    clause: fn(&mut StdRng, DefectKind, Rule, Phrasings) -> String,
    /// Headings are sometimes written in capitals (English).
    upper_headings: bool,
}

fn lexicon(language: Language) -> &'static Lexicon {
    match language {
        Language::En => &en::LEXICON,
        Language::Zh => &zh::LEXICON,
    }
}

/// Every component list of this wording, both languages: the held-out part
/// of each is disjoint from its training part.
pub fn components() -> Vec<&'static Split> {
    let mut all = vec![&NUMBERING];
    all.extend(en::ALL);
    all.extend(zh::ALL);
    all
}

/// Formats `tenths` tenths of a unit as a decimal without trailing zeros
/// (`decimal(15, 1)` = "1.5", `decimal(15, 2)` = "0.15").
fn decimal(value: u32, places: u32) -> String {
    let scale = 10u32.pow(places);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = places as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Fills a unit spelling (`{mm} mm`, `{cm} cm`, `{um} µm`) with a limit.
fn limit_text(form: &str, limit_mm: f32) -> String {
    let tenths = (limit_mm * 10.0).round() as u32;
    form.replace("{mm}", &decimal(tenths, 1))
        .replace("{cm}", &decimal(tenths, 2))
        .replace("{um}", &(tenths * 100).to_string())
}

/// Lower-cases the first letter (a sentence that follows a condition).
fn uncapitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Where a clause stands in the document, before it is numbered.
enum Block {
    /// An unnumbered line (title, prose, a heading that is not numbered).
    Prose(String),
    /// A blank line.
    Blank,
    /// A numbered line that heads the clauses under it.
    Heading(String),
    /// Item `usize` (index into the standard's items) with its label.
    Clause(String, usize),
}

/// One numbered item of the standard before layout: what it governs, what
/// it says and its sentence.
struct Item {
    kind: Option<DefectKind>,
    rule: Rule,
    sentence: String,
}

fn flat_label(style: &str, n: usize) -> String {
    match style {
        "1、" => format!("{n}、"),
        "(1)" => format!("({n}) "),
        "（1）" => format!("（{n}）"),
        "1)" => format!("{n}) "),
        _ => format!("{n}. "),
    }
}

fn letter_label(style: &str, i: usize) -> String {
    let letter = (b'a' + i as u8) as char;
    match style {
        "(a)" => format!("({letter}) "),
        "a." => format!("{letter}. "),
        _ => format!("{letter}) "),
    }
}

/// A section title as written after its number.
fn heading_title(rng: &mut StdRng, lex: &Lexicon, split: &Split, set: Phrasings) -> String {
    let title = split.pick(rng, set);
    if lex.upper_headings && rng.gen_bool(0.25) {
        title.to_uppercase()
    } else {
        title.to_string()
    }
}

/// Lays out the items as a document in `style`; every item becomes one
/// numbered line. `scope` is the index of the item that is the scope
/// statement, if the scope is a clause.
fn layout(
    rng: &mut StdRng,
    lex: &Lexicon,
    set: Phrasings,
    style: &str,
    items: &[Item],
    scope: Option<usize>,
) -> Vec<Block> {
    let mut blocks = vec![Block::Prose(lex.titles.pick(rng, set).to_string())];
    if rng.gen_bool(0.5) {
        let line = lex
            .doc_lines
            .pick(rng, set)
            .replace("{k}", &rng.gen_range(100..9999).to_string())
            .replace("{r}", &((b'A' + rng.gen_range(0..6u8)) as char).to_string());
        blocks.push(Block::Prose(line));
    }
    blocks.push(Block::Blank);
    let rest: Vec<usize> = (0..items.len()).filter(|&i| Some(i) != scope).collect();
    let scope_prose = (scope.is_none() && rng.gen_bool(0.6)).then(|| lex.scopes.pick(rng, set));
    match style {
        "1." | "1、" | "(1)" | "（1）" | "1)" => {
            if let Some(p) = scope_prose {
                blocks.push(Block::Prose(p.to_string()));
                blocks.push(Block::Blank);
            }
            if rng.gen_bool(0.4) {
                blocks.push(Block::Prose(lex.intros.pick(rng, set).to_string()));
            }
            let spaced = rng.gen_bool(0.25);
            for (n, i) in scope.into_iter().chain(rest).enumerate() {
                if spaced && n > 0 {
                    blocks.push(Block::Blank);
                }
                blocks.push(Block::Clause(flat_label(style, n + 1), i));
            }
        }
        _ => sections(
            rng,
            lex,
            set,
            style,
            items,
            scope,
            scope_prose,
            rest,
            &mut blocks,
        ),
    }
    blocks
}

/// Lays out items in numbered sections (`4.1`, `4.1.1`) or lettered lists
/// under numbered headings (`a)`).
#[allow(clippy::too_many_arguments)]
fn sections(
    rng: &mut StdRng,
    lex: &Lexicon,
    set: Phrasings,
    style: &str,
    items: &[Item],
    scope: Option<usize>,
    scope_prose: Option<&str>,
    rest: Vec<usize>,
    blocks: &mut Vec<Block>,
) {
    // Clauses about other things may get a section of their own first.
    let others: Vec<usize> = rest
        .iter()
        .copied()
        .filter(|&i| items[i].kind.is_none())
        .collect();
    let apart = if !others.is_empty() && rng.gen_bool(0.6) {
        rng.gen_range(1..=others.len())
    } else {
        0
    };
    let conditions: Vec<usize> = others[..apart].to_vec();
    let defects: Vec<usize> = rest
        .into_iter()
        .filter(|i| !conditions.contains(i))
        .collect();
    // (headings, items, whether these are the defect clauses)
    let mut groups: Vec<(&Split, Vec<usize>, bool)> = Vec::new();
    if !conditions.is_empty() {
        groups.push((lex.head_conditions, conditions, false));
    }
    groups.push((lex.head_defects, defects, true));
    let mut section = 1;
    let dotted = rng.gen_bool(0.5);
    let lettered = matches!(style, "a)" | "(a)" | "a.");
    // The scope: prose under an unnumbered heading, or a clause.
    if scope.is_some() || scope_prose.is_some() {
        let title = heading_title(rng, lex, lex.head_scope, set);
        match (scope, style) {
            (Some(i), "4.1.1") => {
                blocks.push(Block::Prose(format!("{section} {title}")));
                blocks.push(Block::Heading(format!("{section}.1 {title}")));
                blocks.push(Block::Clause(format!("{section}.1.1 "), i));
            }
            (Some(i), _) if lettered => {
                blocks.push(Block::Heading(format!("{section}. {title}")));
                blocks.push(Block::Clause(letter_label(style, 0), i));
            }
            (Some(i), _) => {
                blocks.push(Block::Heading(if dotted {
                    format!("{section}. {title}")
                } else {
                    format!("{section} {title}")
                }));
                blocks.push(Block::Clause(format!("{section}.1 "), i));
            }
            (None, _) => {
                blocks.push(Block::Prose(format!("{section} {title}")));
                blocks.push(Block::Prose(scope_prose.unwrap_or_default().to_string()));
            }
        }
        blocks.push(Block::Blank);
        section += 1;
    }
    if style == "4.1.1" {
        // One numbered section; its groups are numbered subsections.
        let title = heading_title(rng, lex, lex.head_defects, set);
        blocks.push(Block::Prose(format!("{section} {title}")));
        let mut sub = 1;
        for (split, group, of_defects) in groups {
            let parts: Vec<Vec<usize>> = if of_defects && group.len() >= 4 && rng.gen_bool(0.5) {
                let cut = rng.gen_range(2..=group.len() - 2);
                vec![group[..cut].to_vec(), group[cut..].to_vec()]
            } else {
                vec![group]
            };
            let heads = lex.subheads.part(set);
            for (k, part) in parts.iter().enumerate() {
                let title = if parts.len() > 1 {
                    heads[k % heads.len()].to_string()
                } else {
                    heading_title(rng, lex, split, set)
                };
                blocks.push(Block::Heading(format!("{section}.{sub} {title}")));
                for (j, &i) in part.iter().enumerate() {
                    blocks.push(Block::Clause(format!("{section}.{sub}.{} ", j + 1), i));
                }
                sub += 1;
            }
        }
        return;
    }
    for (split, group, _) in groups {
        let title = heading_title(rng, lex, split, set);
        if lettered || dotted {
            blocks.push(Block::Heading(format!("{section}. {title}")));
        } else {
            blocks.push(Block::Prose(format!("{section} {title}")));
        }
        for (j, &i) in group.iter().enumerate() {
            let label = if lettered {
                letter_label(style, j)
            } else {
                format!("{section}.{} ", j + 1)
            };
            blocks.push(Block::Clause(label, i));
        }
        blocks.push(Block::Blank);
        section += 1;
    }
    if matches!(blocks.last(), Some(Block::Blank)) {
        blocks.pop();
    }
}

/// Writes a standard for a part that carries `defects`, in the composed
/// wording, drawing only on the `set` part of every component list.
pub fn write_standard(
    rng: &mut StdRng,
    defects: &[DrawnDefect],
    language: Language,
    set: Phrasings,
) -> WrittenStandard {
    let lex = lexicon(language);
    let extra = match rng.gen::<f32>() {
        r if r < 0.3 => 0,
        r if r < 0.6 => 1,
        r if r < 0.85 => 2,
        _ => 3,
    };
    let distractors: Vec<&str> = lex
        .distractors
        .part(set)
        .choose_multiple(rng, extra)
        .copied()
        .collect();
    let mut others = distractors.iter();
    let mut kinds: Vec<Option<DefectKind>> = DefectKind::ALL.iter().copied().map(Some).collect();
    kinds.extend(std::iter::repeat_n(None, distractors.len()));
    kinds.shuffle(rng);
    let mut items: Vec<Item> = Vec::with_capacity(kinds.len() + 1);
    for kind in kinds {
        let item = match kind {
            Some(kind) => {
                let sizes: Vec<f32> = defects
                    .iter()
                    .filter(|d| d.kind == kind)
                    .map(|d| d.size_mm)
                    .collect();
                let rule = standard::choose_rule(rng, &sizes);
                Item {
                    kind: Some(kind),
                    rule,
                    sentence: (lex.clause)(rng, kind, rule, set),
                }
            }
            None => Item {
                kind: None,
                rule: Rule::Tolerate,
                sentence: others.next().expect("one per other clause").to_string(),
            },
        };
        items.push(item);
    }
    // Sometimes the scope statement is itself a numbered clause.
    let scope = rng.gen_bool(0.2).then(|| {
        items.push(Item {
            kind: None,
            rule: Rule::Tolerate,
            sentence: lex.scopes.pick(rng, set).to_string(),
        });
        items.len() - 1
    });
    let style = NUMBERING.pick(rng, set);
    let blocks = layout(rng, lex, set, style, &items, scope);
    let mut lines = Vec::with_capacity(blocks.len());
    let mut clauses = Vec::with_capacity(items.len());
    for block in blocks {
        match block {
            Block::Prose(s) | Block::Heading(s) => lines.push(s),
            Block::Blank => lines.push(String::new()),
            Block::Clause(label, i) => {
                lines.push(format!("{label}{}", items[i].sentence));
                clauses.push(SynthClause {
                    number: clauses.len() as u32 + 1,
                    kind: items[i].kind,
                    rule: items[i].rule,
                });
            }
        }
    }
    WrittenStandard {
        language,
        text: lines.join("\n"),
        clauses,
    }
}

/// True when `line` names `kind` (English word or plural at the start of a
/// word, or the Chinese name).
fn names_kind(line: &str, kind: DefectKind) -> bool {
    if line.contains(chinese_name(kind)) {
        return true;
    }
    let lower = line.to_lowercase();
    lower
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w.starts_with(kind.word()))
}

/// Bytes of `line` taken by its clause label and the space after it.
fn label_len(line: &str) -> usize {
    let end = line
        .char_indices()
        .find(|(_, c)| matches!(c, ' ' | '、' | '）'))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    end + (line[end..].len() - line[end..].trim_start().len())
}

/// A twin of `standard` (written by [`write_standard`]) that differs only in
/// the clause governing one of the part's defect kinds, changed so that the
/// part's decision flips, with that clause newly worded from `set`. `None`
/// where no single clause can flip it.
pub fn counterfactual(
    rng: &mut StdRng,
    standard: &WrittenStandard,
    defects: &[DrawnDefect],
    set: Phrasings,
) -> Option<WrittenStandard> {
    let (target, rule) = standard::flipping_rule(rng, standard, defects)?;
    let mut twin = standard.clone();
    twin.clauses
        .iter_mut()
        .find(|c| c.kind == Some(target))?
        .rule = rule;
    let sentence = (lexicon(standard.language).clause)(rng, target, rule, set);
    let lines: Vec<&str> = standard.text.lines().collect();
    let mut naming = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| names_kind(l, target));
    let (at, line) = naming.next()?;
    if naming.next().is_some() {
        return None;
    }
    let prefix = &line[..label_len(line)];
    twin.text = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == at {
                format!("{prefix}{sentence}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(twin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    /// Defects as the line draws them, without painting a picture.
    fn drawn(rng: &mut StdRng) -> Vec<DrawnDefect> {
        let count = rng.gen_range(0..=3);
        let repeat = rng.gen_bool(0.5);
        let mut out: Vec<DrawnDefect> = Vec::new();
        for i in 0..count {
            let kind = match out.first() {
                Some(first) if repeat && i > 0 => first.kind,
                _ => DefectKind::ALL[rng.gen_range(0..DefectKind::ALL.len())],
            };
            out.push(DrawnDefect {
                kind,
                box_px: [0, 0, 1, 1],
                size_mm: super::super::defects::sample_size_mm(rng, kind),
            });
        }
        out
    }

    /// The sentence of every numbered clause line (text after the label).
    fn clause_sentences(s: &WrittenStandard) -> Vec<String> {
        let lines: Vec<&str> = s.text.lines().collect();
        s.clauses
            .iter()
            .filter_map(|c| {
                let kind = c.kind?;
                let line = lines.iter().find(|l| names_kind(l, kind))?;
                Some(line[label_len(line)..].to_string())
            })
            .collect()
    }

    #[test]
    fn same_seed_same_standard() {
        for language in Language::ALL {
            let a = write_standard(
                &mut StdRng::seed_from_u64(3),
                &drawn(&mut StdRng::seed_from_u64(1)),
                language,
                Phrasings::Train,
            );
            let b = write_standard(
                &mut StdRng::seed_from_u64(3),
                &drawn(&mut StdRng::seed_from_u64(1)),
                language,
                Phrasings::Train,
            );
            assert_eq!(a, b);
            let c = write_standard(
                &mut StdRng::seed_from_u64(4),
                &drawn(&mut StdRng::seed_from_u64(1)),
                language,
                Phrasings::Train,
            );
            assert_ne!(a.text, c.text);
        }
    }

    #[test]
    fn heldout_components_and_sentences_never_occur_in_training() {
        for split in components() {
            let train: HashSet<&str> = split.train.iter().copied().collect();
            assert!(
                !split.train.is_empty() && !split.heldout.is_empty(),
                "{split:?}"
            );
            for h in split.heldout {
                assert!(!train.contains(h), "{}: {h:?} in both parts", split.name);
            }
        }
        let mut rng = StdRng::seed_from_u64(17);
        let mut train = HashSet::new();
        for i in 0..5000 {
            let defects = drawn(&mut rng);
            let s = write_standard(&mut rng, &defects, Language::ALL[i % 2], Phrasings::Train);
            train.extend(clause_sentences(&s));
        }
        let mut checked = 0;
        for i in 0..500 {
            let defects = drawn(&mut rng);
            let s = write_standard(&mut rng, &defects, Language::ALL[i % 2], Phrasings::Heldout);
            for sentence in clause_sentences(&s) {
                assert!(!train.contains(&sentence), "{sentence}");
                checked += 1;
            }
        }
        assert_eq!(checked, 500 * 6);
    }

    #[test]
    fn each_kind_is_named_on_exactly_one_line_and_every_style_is_used() {
        let mut rng = StdRng::seed_from_u64(23);
        let mut styles = HashSet::new();
        for i in 0..600 {
            let defects = drawn(&mut rng);
            let set = [Phrasings::Train, Phrasings::Heldout][i / 2 % 2];
            let s = write_standard(&mut rng, &defects, Language::ALL[i % 2], set);
            for kind in DefectKind::ALL {
                let n = s.text.lines().filter(|l| names_kind(l, kind)).count();
                assert_eq!(n, 1, "{kind:?} on {n} lines:\n{}", s.text);
            }
            assert_eq!(s.clauses.iter().filter(|c| c.kind.is_some()).count(), 6);
            let first = s
                .text
                .lines()
                .find(|l| names_kind(l, DefectKind::Dent))
                .unwrap();
            styles.insert(
                first[..label_len(first)]
                    .trim()
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect::<String>(),
            );
        }
        assert!(styles.len() >= 8, "{styles:?}");
    }

    #[test]
    fn twins_flip_the_decision_and_change_one_clause_line() {
        let mut rng = StdRng::seed_from_u64(29);
        let mut made = 0;
        for i in 0..200 {
            let defects = drawn(&mut rng);
            let set = [Phrasings::Train, Phrasings::Heldout][i % 2];
            let s = write_standard(&mut rng, &defects, Language::ALL[i / 2 % 2], set);
            let Some(twin) = counterfactual(&mut rng, &s, &defects, set) else {
                continue;
            };
            made += 1;
            let fails = |w: &WrittenStandard| {
                defects
                    .iter()
                    .any(|d| standard::violated_clause(w, d, &defects).is_some())
            };
            assert_ne!(fails(&s), fails(&twin), "{}\n---\n{}", s.text, twin.text);
            let changed = s
                .clauses
                .iter()
                .zip(&twin.clauses)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(changed, 1);
            let differing = s
                .text
                .lines()
                .zip(twin.text.lines())
                .filter(|(a, b)| a != b)
                .count();
            assert!(differing <= 1, "{}\n---\n{}", s.text, twin.text);
            assert_eq!(s.text.lines().count(), twin.text.lines().count());
        }
        assert!(made > 60, "only {made} twins");
    }

    #[test]
    fn limits_are_written_in_every_unit_exactly() {
        assert_eq!(limit_text("{mm} mm", 1.5), "1.5 mm");
        assert_eq!(limit_text("{cm} cm", 1.5), "0.15 cm");
        assert_eq!(limit_text("{cm} cm", 3.0), "0.3 cm");
        assert_eq!(limit_text("{um} µm", 2.5), "2500 µm");
        assert_eq!(limit_text("{mm}毫米", 4.0), "4毫米");
    }
}
