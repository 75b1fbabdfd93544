//! Written inspection standards for the synthetic line, and the oracle that
//! judges a part against them.
//!
//! A standard is numbered clauses in shuffled order: one per defect kind (the
//! kind is banned, limited by a size in millimetres, limited by a count, or
//! tolerated) plus, sometimes, clauses that say nothing about defects. It is
//! written in English or in Chinese, in one of many phrasings per clause kind.
//! Phrasings come in two sets: `Train` for training data and `Heldout` for
//! evaluation, so a score on held-out standards shows the model reads wording
//! it never saw. The oracle applies the clauses exactly, so every synthetic
//! part comes with the verdict a careful quality engineer would write.

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
    /// More than `max_count` defects of the kind reject the part (and every
    /// one of them cites the clause); up to `max_count` are tolerated.
    Count { max_count: u32 },
    /// The kind never rejects the part.
    Tolerate,
}

/// The language a standard is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// English.
    En,
    /// Simplified Chinese, as a Chinese plant writes its 质检标准.
    Zh,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::En, Language::Zh];

    /// Parses `en` / `zh`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "en" => Some(Language::En),
            "zh" => Some(Language::Zh),
            _ => None,
        }
    }
}

/// Which phrasings a standard may use: training data and evaluation data
/// never share a phrasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phrasings {
    Train,
    Heldout,
}

/// One numbered clause of a synthetic standard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthClause {
    /// The clause number as written.
    pub number: u32,
    /// The defect kind it governs; `None` for a clause about something else
    /// (lighting, cleanliness, paperwork).
    pub kind: Option<DefectKind>,
    /// What it says (`tolerate` for clauses about something else).
    #[serde(flatten)]
    pub rule: Rule,
}

/// A standard as text plus the clauses it was written from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WrittenStandard {
    pub language: Language,
    pub text: String,
    pub clauses: Vec<SynthClause>,
}

/// Limits standards choose from, in millimetres.
const LIMITS_MM: [f32; 7] = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0];
/// A limit must differ from every size it judges by at least this fraction,
/// so that ground truth is not decided by sub-pixel measurement noise.
pub(crate) const LIMIT_MARGIN: f32 = 0.25;

fn format_mm(v: f32) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

pub(crate) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Phrasing templates. `{w}` is the defect word, `{p}` its plural (the
/// capitalised plural `{P}`), `{l}` the limit in mm, `{n}` the count. The
/// last `HELDOUT` templates of every list are the held-out phrasings.
const HELDOUT: usize = 2;

const EN_BAN: &[&str] = &[
    "No {p} are permitted.",
    "Any {w} is a reject.",
    "{P} of any size are not acceptable.",
    "Reject the part if a {w} is present.",
    "A part showing a {w} shall be rejected.",
    "{P} are not allowed on the surface.",
    "Parts with {p} are scrap.",
    "Zero tolerance for {p}: any {w} rejects the part.",
];
const EN_LIMIT: &[&str] = &[
    "{P} longer than {l} mm are rejected.",
    "A {w} larger than {l} mm shall be rejected; smaller ones are acceptable.",
    "Reject if a {w} exceeds {l} mm.",
    "{P} up to {l} mm are acceptable, larger ones are a reject.",
    "Maximum {w} size is {l} mm.",
    "{P} over {l} mm are not acceptable.",
    "A {w} may not exceed {l} mm in length or diameter.",
    "{P} are accepted only when smaller than {l} mm.",
];
const EN_COUNT: &[&str] = &[
    "No more than {n} {p} per part.",
    "At most {n} {p} are allowed; more is a reject.",
    "Reject the part if it shows more than {n} {p}.",
    "A part may carry up to {n} {p}.",
    "{P} are limited to {n} per part.",
    "More than {n} {p} on one part is not acceptable.",
];
const EN_TOLERATE: &[&str] = &[
    "{P} are acceptable.",
    "{P} are tolerated and do not cause rejection.",
    "Any {w} is cosmetic only and accepted.",
    "Ignore {p}.",
    "{P} are permitted.",
    "A {w} does not reject the part.",
    "{P} need not be reported as rejects.",
    "Accept parts with {p}.",
];
const EN_OTHER: &[&str] = &[
    "Inspect under diffuse white lighting.",
    "Parts must be clean and dry before inspection.",
    "Record the lot number on the traveller.",
    "Handle parts with gloves only.",
    "The inspection area is the machined face.",
    "Re-inspect after any rework.",
];
const EN_HEADERS: &[&str] = &[
    "Inspection standard for machined housings.",
    "Visual acceptance criteria for the cover surface.",
    "Surface quality standard, revision {n}.",
    "Cosmetic inspection rules for finished parts.",
    "Outgoing quality criteria, issue {n}.",
];

const ZH_BAN: &[&str] = &[
    "不允许有{w}。",
    "任何{w}均判为不合格。",
    "出现{w}即判定为不良品。",
    "{w}不论大小，一律拒收。",
    "表面不得有{w}。",
    "有{w}的零件判为报废。",
    "严禁存在{w}。",
    "发现{w}的零件应予拒收。",
];
const ZH_LIMIT: &[&str] = &[
    "{w}长度超过{l}毫米判为不合格。",
    "{w}大于{l} mm的拒收，小于等于{l} mm的允收。",
    "单个{w}尺寸不得超过{l}毫米。",
    "{w}超过{l}mm即为不良。",
    "{w}尺寸在{l}毫米以内可接受。",
    "{w}最大允许{l}毫米。",
    "{w}的最大尺寸限值为{l}毫米，超出者拒收。",
    "允许{l}毫米以内的{w}，更大的判为不合格。",
];
const ZH_COUNT: &[&str] = &[
    "每件{w}不得多于{n}处。",
    "{w}数量超过{n}个判为不合格。",
    "每个零件最多允许{n}处{w}。",
    "{w}不超过{n}处可接受。",
    "同一零件上{w}多于{n}处即拒收。",
    "{w}限{n}处以内。",
];
const ZH_TOLERATE: &[&str] = &[
    "{w}可接受。",
    "{w}不影响判定，允收。",
    "{w}属外观轻微缺陷，予以放行。",
    "允许存在{w}。",
    "{w}不作为拒收依据。",
    "{w}不计入缺陷。",
    "忽略{w}。",
    "有{w}的零件仍可放行。",
];
const ZH_OTHER: &[&str] = &[
    "检验应在漫射白光下进行。",
    "零件检验前应保持清洁干燥。",
    "在流转卡上记录批次号。",
    "检验时须佩戴手套。",
    "检验区域为加工面。",
    "返工后须重新检验。",
];
const ZH_HEADERS: &[&str] = &[
    "机加工壳体外观检验标准",
    "盖板表面验收准则",
    "表面质量标准，第{n}版",
    "成品外观检验规范",
    "出货质量判定标准，第{n}版",
];

/// The templates of `list` that `set` may use.
fn usable(list: &'static [&'static str], set: Phrasings) -> &'static [&'static str] {
    let split = list.len() - HELDOUT;
    match set {
        Phrasings::Train => &list[..split],
        Phrasings::Heldout => &list[split..],
    }
}

/// The Chinese name a Chinese standard uses for a kind.
pub fn chinese_name(kind: DefectKind) -> &'static str {
    match kind {
        DefectKind::Scratch => "划痕",
        DefectKind::Crack => "裂纹",
        DefectKind::Dent => "凹坑",
        DefectKind::Stain => "污渍",
        DefectKind::Hole => "孔洞",
        DefectKind::Contamination => "异物",
        DefectKind::Burr => "毛刺",
        DefectKind::Porosity => "气孔",
    }
}

fn fill(template: &str, kind: Option<DefectKind>, language: Language, l: &str, n: u32) -> String {
    let mut s = template.replace("{l}", l).replace("{n}", &n.to_string());
    if let Some(kind) = kind {
        match language {
            Language::En => {
                s = s
                    .replace("{P}", &capitalise(kind.plural()))
                    .replace("{p}", kind.plural())
                    .replace("{w}", kind.word());
            }
            Language::Zh => s = s.replace("{w}", chinese_name(kind)),
        }
    }
    capitalise(&s)
}

fn clause_sentence(
    rng: &mut StdRng,
    kind: DefectKind,
    rule: Rule,
    language: Language,
    set: Phrasings,
) -> String {
    let lists = match (language, rule) {
        (Language::En, Rule::Ban) => EN_BAN,
        (Language::En, Rule::Limit { .. }) => EN_LIMIT,
        (Language::En, Rule::Count { .. }) => EN_COUNT,
        (Language::En, Rule::Tolerate) => EN_TOLERATE,
        (Language::Zh, Rule::Ban) => ZH_BAN,
        (Language::Zh, Rule::Limit { .. }) => ZH_LIMIT,
        (Language::Zh, Rule::Count { .. }) => ZH_COUNT,
        (Language::Zh, Rule::Tolerate) => ZH_TOLERATE,
    };
    let template = usable(lists, set).choose(rng).expect("templates exist");
    let (l, n) = match rule {
        Rule::Limit { limit_mm } => (format_mm(limit_mm), 0),
        Rule::Count { max_count } => (String::new(), max_count),
        _ => (String::new(), 0),
    };
    fill(template, Some(kind), language, &l, n)
}

/// Limits in `LIMITS_MM` that judge every size in `sizes` unambiguously.
fn usable_limits(sizes: &[f32]) -> Vec<f32> {
    LIMITS_MM
        .into_iter()
        .filter(|l| sizes.iter().all(|s| (s - l).abs() / l >= LIMIT_MARGIN))
        .collect()
}

/// Chooses a rule for a kind that judges every size in `sizes` unambiguously.
pub(crate) fn choose_rule(rng: &mut StdRng, sizes: &[f32]) -> Rule {
    let roll: f32 = rng.gen();
    if roll < 0.25 {
        return Rule::Ban;
    }
    if roll < 0.6 {
        if let Some(&limit_mm) = usable_limits(sizes).choose(rng) {
            return Rule::Limit { limit_mm };
        }
        return if rng.gen_bool(0.5) {
            Rule::Ban
        } else {
            Rule::Tolerate
        };
    }
    if roll < 0.75 {
        // Around the part's own count, so the limit matters.
        let max_count = match sizes.len() {
            0 | 1 => rng.gen_range(1..=2),
            c => rng.gen_range(c as u32 - 1..=c as u32),
        };
        return Rule::Count { max_count };
    }
    Rule::Tolerate
}

/// Assembles the text of a standard from its clauses.
fn write_text(
    rng: &mut StdRng,
    language: Language,
    set: Phrasings,
    clauses: &[SynthClause],
    others: &[&str],
) -> String {
    let headers = match language {
        Language::En => EN_HEADERS,
        Language::Zh => ZH_HEADERS,
    };
    let header = fill(
        headers.choose(rng).expect("headers exist"),
        None,
        language,
        "",
        rng.gen_range(1..9),
    );
    let mut text = header;
    let mut other = others.iter();
    for c in clauses {
        let sentence = match c.kind {
            Some(kind) => clause_sentence(rng, kind, c.rule, language, set),
            None => other
                .next()
                .expect("one sentence per other clause")
                .to_string(),
        };
        text.push('\n');
        text.push_str(&format!("{}. {sentence}", c.number));
    }
    text
}

/// Writes a standard for a part that carries `defects`.
pub fn write_standard(
    rng: &mut StdRng,
    defects: &[DrawnDefect],
    language: Language,
    set: Phrasings,
) -> WrittenStandard {
    let mut kinds: Vec<Option<DefectKind>> = DefectKind::ALL.iter().copied().map(Some).collect();
    let other_pool = match language {
        Language::En => EN_OTHER,
        Language::Zh => ZH_OTHER,
    };
    let extra = match rng.gen::<f32>() {
        r if r < 0.5 => 0,
        r if r < 0.8 => 1,
        _ => 2,
    };
    let others: Vec<&str> = other_pool.choose_multiple(rng, extra).copied().collect();
    kinds.extend(std::iter::repeat_n(None, extra));
    kinds.shuffle(rng);
    let clauses: Vec<SynthClause> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let rule = match kind {
                Some(kind) => {
                    let sizes: Vec<f32> = defects
                        .iter()
                        .filter(|d| d.kind == kind)
                        .map(|d| d.size_mm)
                        .collect();
                    choose_rule(rng, &sizes)
                }
                None => Rule::Tolerate,
            };
            SynthClause {
                number: i as u32 + 1,
                kind,
                rule,
            }
        })
        .collect();
    let text = write_text(rng, language, set, &clauses, &others);
    WrittenStandard {
        language,
        text,
        clauses,
    }
}

/// A twin of `standard` that differs only in the clause governing one of the
/// part's defect kinds, changed so that the part's decision flips. Same
/// language, numbering and other clauses; the changed clause is rephrased.
/// `None` when no single clause can flip the decision (a part with no
/// defects, or several kinds each failing it on their own).
pub fn counterfactual(
    rng: &mut StdRng,
    standard: &WrittenStandard,
    defects: &[DrawnDefect],
    set: Phrasings,
) -> Option<WrittenStandard> {
    let (target, rule) = flipping_rule(rng, standard, defects)?;
    let mut twin = standard.clone();
    let clause = twin.clauses.iter_mut().find(|c| c.kind == Some(target))?;
    clause.rule = rule;
    let number = clause.number;
    let sentence = clause_sentence(rng, target, rule, standard.language, set);
    let prefix = format!("{number}. ");
    twin.text = standard
        .text
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) {
                format!("{prefix}{sentence}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(twin)
}

/// The kind whose clause a counterfactual twin changes, and the rule that
/// flips the part's decision (see [`counterfactual`]); shared by every
/// wording of standards.
pub(crate) fn flipping_rule(
    rng: &mut StdRng,
    standard: &WrittenStandard,
    defects: &[DrawnDefect],
) -> Option<(DefectKind, Rule)> {
    let failing: Vec<DefectKind> = standard
        .clauses
        .iter()
        .filter_map(|c| c.kind)
        .filter(|&k| {
            defects
                .iter()
                .any(|d| violated_clause(standard, d, defects).is_some() && d.kind == k)
        })
        .collect();
    let target = match failing.len() {
        // Passing part: make one present kind fail.
        0 => {
            let present: Vec<DefectKind> = defects.iter().map(|d| d.kind).collect();
            *present.choose(rng)?
        }
        // Failing because of one kind: make that kind pass.
        1 => failing[0],
        _ => return None,
    };
    let sizes: Vec<f32> = defects
        .iter()
        .filter(|d| d.kind == target)
        .map(|d| d.size_mm)
        .collect();
    let count = sizes.len() as u32;
    let largest = sizes.iter().copied().fold(0.0f32, f32::max);
    let make_fail = failing.is_empty();
    let mut options: Vec<Rule> = Vec::new();
    if make_fail {
        options.push(Rule::Ban);
        options.extend(
            usable_limits(&sizes)
                .into_iter()
                .filter(|&l| l < largest)
                .map(|limit_mm| Rule::Limit { limit_mm }),
        );
        if count >= 2 {
            options.push(Rule::Count {
                max_count: count - 1,
            });
        }
    } else {
        options.push(Rule::Tolerate);
        options.extend(
            usable_limits(&sizes)
                .into_iter()
                .filter(|&l| l > largest)
                .map(|limit_mm| Rule::Limit { limit_mm }),
        );
        options.push(Rule::Count {
            max_count: count.max(1),
        });
    }
    let rule = *options.choose(rng)?;
    Some((target, rule))
}

/// The clause a defect violates under `standard`, if any. `all` is every
/// defect on the part (count limits look at the others of its kind).
pub fn violated_clause(
    standard: &WrittenStandard,
    defect: &DrawnDefect,
    all: &[DrawnDefect],
) -> Option<u32> {
    let clause = standard
        .clauses
        .iter()
        .find(|c| c.kind == Some(defect.kind))?;
    let violated = match clause.rule {
        Rule::Ban => true,
        Rule::Limit { limit_mm } => defect.size_mm > limit_mm,
        Rule::Count { max_count } => {
            all.iter().filter(|d| d.kind == defect.kind).count() as u32 > max_count
        }
        Rule::Tolerate => false,
    };
    violated.then_some(clause.number)
}
