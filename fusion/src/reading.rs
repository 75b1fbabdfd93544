//! The reading of a clause: which defects it governs, what it says about
//! them (banned, limited in size, limited in count, tolerated, or nothing
//! at all) and how sure the reading is.
//!
//! This reading is written out as rules over the words of English and
//! Chinese standards, not learned: it is what the consistency check holds
//! every verdict to, so it must be predictable and explainable to a quality
//! engineer ("clause 5 reads as: dent, banned"). It never decides a part on
//! its own; it only refuses to let a verdict contradict its own citation.
//! A clause it cannot read with confidence is flagged, not guessed.

use serde::Serialize;

/// What a clause says about the defects it governs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Any such defect rejects the part.
    Ban,
    /// Defects larger than `limit_mm` reject the part; smaller are tolerated.
    SizeLimit { limit_mm: f32 },
    /// More than `max_count` such defects on one part reject it.
    CountLimit { max_count: u32 },
    /// Such defects never reject the part.
    Tolerate,
    /// The clause governs no defect (lighting, handling, paperwork).
    Other,
    /// Words about acceptance were found, but not a rule that can be relied
    /// on (conflicting or missing cues).
    Unclear,
}

/// How one clause was read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// The clause number as the decoder cites it.
    pub clause: u32,
    /// The model's defect words the clause governs.
    pub defects: Vec<String>,
    pub rule: Rule,
    /// 1.0 when every cue agrees; lower when some did not.
    pub confidence: f32,
    /// Why the reading is not sure, when it is not.
    pub doubt: Option<String>,
}

/// Below this a reading is not relied on: the recipe is flagged, and a
/// verdict citing the clause goes to a person.
pub const CONFIDENT: f32 = 0.8;

impl Reading {
    /// True when the reading can be relied on.
    pub fn confident(&self) -> bool {
        self.confidence >= CONFIDENT && self.rule != Rule::Unclear
    }

    /// True when the clause says something about acceptance that could
    /// not be read with confidence: the recipe is flagged before it goes
    /// live, and verdicts citing it go to REVIEW.
    pub fn flagged(&self) -> bool {
        self.rule != Rule::Other && !self.confident()
    }

    /// True when it governs the defect word `defect`.
    pub fn governs(&self, defect: &str) -> bool {
        self.defects.iter().any(|d| d == defect)
    }

    /// The reading in words, e.g. `scratch: rejected over 3 mm`.
    pub fn describe(&self) -> String {
        let what = if self.defects.is_empty() {
            "no known defect".to_string()
        } else {
            self.defects.join(", ")
        };
        let rule = match self.rule {
            Rule::Ban => "any rejects the part".to_string(),
            Rule::SizeLimit { limit_mm } => format!("rejected over {} mm", trim(limit_mm)),
            Rule::CountLimit { max_count } => {
                format!("more than {max_count} per part rejects it")
            }
            Rule::Tolerate => "tolerated".to_string(),
            Rule::Other => "not about defects".to_string(),
            Rule::Unclear => "unclear".to_string(),
        };
        format!("{what}: {rule}")
    }
}

fn trim(v: f32) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The defect words a model writes and what each is called in standards.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// `(word, names)`: e.g. `("scratch", ["scratch", "scratches", "划痕"])`.
    pub defects: Vec<(String, Vec<String>)>,
}

impl Vocabulary {
    /// The model words `text` mentions.
    pub fn mentioned(&self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        self.defects
            .iter()
            .filter(|(word, names)| {
                std::iter::once(word)
                    .chain(names)
                    .any(|n| mentions(&lower, &n.to_lowercase()))
            })
            .map(|(w, _)| w.clone())
            .collect()
    }
}

/// True when `text` (lower case) mentions `name` (lower case): each word of
/// an alphabetic name is a word of the text or an inflection of one, in
/// order ("weld spatter" in "weld spatters larger than"; "stain" is not in
/// "stainless"); a name in a script written without spaces is contained.
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    if !name.is_ascii() {
        return text.contains(name);
    }
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .collect();
    let parts: Vec<&str> = name.split_whitespace().collect();
    words.windows(parts.len()).any(|w| {
        w.iter()
            .zip(&parts)
            .all(|(word, part)| inflects(word, part))
    })
}

/// True when `word` is `stem` or an inflection of it ("scratches",
/// "cracked", "dent-free"), not merely a word that starts with it
/// ("stainless", "holder").
fn inflects(word: &str, stem: &str) -> bool {
    word.strip_prefix(stem).is_some_and(|rest| {
        rest.is_empty() || rest.starts_with('-') || matches!(rest, "s" | "es" | "d" | "ed" | "ing")
    })
}

/// Phrases that say "this rejects" (`true`) or "this is accepted" (`false`),
/// longest first so "not acceptable" is read before "acceptable". English
/// phrases are stems: a match must start a word and may run on into one
/// ("reject" in "rejected").
const CUES: &[(&str, bool)] = &[
    // English, negated acceptance first.
    ("need not be reported as reject", false),
    ("not considered a defect", false),
    ("not regarded as a defect", false),
    ("not count as a defect", false),
    ("not to be reported", false),
    ("not be reported", false),
    ("not a defect", false),
    ("not a cause for reject", false),
    ("not cause for reject", false),
    ("not a reason for reject", false),
    ("not grounds for reject", false),
    ("not constitute a reject", false),
    ("not count as reject", false),
    ("do not cause reject", false),
    ("does not cause reject", false),
    ("shall not cause reject", false),
    ("not result in reject", false),
    ("not be reject", false),
    ("not reject", false),
    ("no reason to reject", false),
    ("not be accept", true),
    ("not accept", true),
    ("not be permi", true),
    ("not permi", true),
    ("not be allow", true),
    ("not allow", true),
    ("not be tolera", true),
    ("not tolera", true),
    ("never accept", true),
    ("never permi", true),
    ("never allow", true),
    ("unaccept", true),
    ("impermissible", true),
    ("inadmissible", true),
    ("zero tolerance", true),
    ("cause for reject", true),
    ("shall be free of", true),
    ("shall be free from", true),
    ("must be free of", true),
    ("must be free from", true),
    ("is a reject", true),
    ("reject", true),
    ("scrap", true),
    ("prohibit", true),
    ("forbid", true),
    ("nonconform", true),
    ("non-conform", true),
    ("not ok", true),
    ("not be present", true),
    ("accept", false),
    ("tolera", false),
    ("permi", false),
    ("allow", false),
    ("ignor", false),
    ("disregard", false),
    ("cosmetic", false),
    ("releas", false),
    // Said alone ("Cracks: none."), after "none allowed" was read above.
    ("none", true),
    // Chinese, negated forms first.
    ("不作拒收依据", false),
    ("不作为拒收依据", false),
    ("不作为拒收", false),
    ("不判为不合格", false),
    ("不判不合格", false),
    ("不判不良", false),
    ("不影响判定", false),
    ("不视为缺陷", false),
    ("不拒收", false),
    ("不影响", false),
    ("不可接受", true),
    ("不能接受", true),
    ("不予接收", true),
    ("接收", false),
    ("不接受", true),
    ("不允许", true),
    ("不合格", true),
    ("不良", true),
    ("拒收", true),
    ("报废", true),
    ("不得", true),
    ("不应", true),
    ("严禁", true),
    ("禁止", true),
    ("判退", true),
    ("判废", true),
    ("剔除", true),
    ("不准", true),
    ("可接受", false),
    ("允收", false),
    ("接受", false),
    ("放行", false),
    ("允许", false),
    ("忽略", false),
    ("不计", false),
    ("合格", false),
];

/// Length units, with their size in millimetres.
const UNITS: &[(&str, f32)] = &[
    ("millimetres", 1.0),
    ("millimeters", 1.0),
    ("millimetre", 1.0),
    ("millimeter", 1.0),
    ("centimetres", 10.0),
    ("centimeters", 10.0),
    ("centimetre", 10.0),
    ("centimeter", 10.0),
    ("microns", 0.001),
    ("micron", 0.001),
    ("µm", 0.001),
    ("μm", 0.001),
    ("um", 0.001),
    ("mm", 1.0),
    ("cm", 10.0),
    ("毫米", 1.0),
    ("厘米", 10.0),
    ("微米", 0.001),
];

const EN_NUMBERS: &[(&str, u32)] = &[
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
];

const ZH_DIGITS: &[(char, u32)] = &[
    ('一', 1),
    ('二', 2),
    ('两', 2),
    ('三', 3),
    ('四', 4),
    ('五', 5),
    ('六', 6),
    ('七', 7),
    ('八', 8),
    ('九', 9),
    ('十', 10),
];

/// Words before a count that make it exclusive ("fewer than 3" allows 2).
const BELOW: &[&str] = &["fewer than", "less than", "少于", "小于"];

/// Words that mark a bare number as a count of defects.
const COUNT_WORDS: &[&str] = &[
    "more than",
    "no more than",
    "at most",
    "up to",
    "limited to",
    "maximum",
    "max",
    "per part",
    "per piece",
    "exceed",
    "fewer than",
    "less than",
    "多于",
    "超过",
    "最多",
    "不超过",
    "以内",
    "限",
    "少于",
    "or more",
    "or above",
    "以上",
    "至多",
];

/// Words after a count that make it the first one rejected ("3 or more
/// dents" allows 2; "3处及以上" likewise), and before it ("at least 3").
const FROM_AFTER: &[&str] = &["or more", "or above", "and more", "及以上", "以上"];
const FROM_BEFORE: &[&str] = &["at least", "达到"];

/// Words that make a length a distance between things (spacing, viewing
/// distance), not a limit on a defect's size.
const DISTANCE_WORDS: &[&str] = &["spacing", "distance", "apart", "间距", "距离", "相距"];

/// Reject words used as names of things ("rejected parts are tagged",
/// "不合格品应隔离"): in a clause that names no defect they are no rule.
const REJECT_NAMES_ZH: &[&str] = &[
    "不合格品",
    "不良品",
    "报废品",
    "不合格件",
    "不合格批",
    "不合格区",
    "不合格标识",
];
const REJECT_WORDS_EN: &[&str] = &["reject", "nonconform", "non-conform", "scrap"];
const THING_NOUNS_EN: &[&str] = &[
    "part",
    "piece",
    "item",
    "unit",
    "product",
    "material",
    "lot",
    "batch",
    "bin",
    "area",
    "tag",
    "cage",
    "label",
    "housing",
    "component",
    "goods",
    "note",
    "report",
    "record",
];

/// Measure words that follow a Chinese count.
const ZH_COUNTERS: &[char] = &['处', '个', '点', '条', '颗', '粒'];

/// A number found in a clause and what follows it.
struct Number {
    value: f32,
    start: usize,
    /// Byte just past the number itself (before any unit).
    end: usize,
    /// The unit right after it, as a factor to millimetres.
    unit_mm: Option<f32>,
    /// A Chinese measure word right after it (`3处`).
    counter: bool,
}

/// True when a "one" after `before` is an article, not a count: after
/// "on", "per", "in", "any", "each" ("no more than two on one housing").
fn names_one_thing(before: &str) -> bool {
    before
        .split_whitespace()
        .next_back()
        .is_some_and(|p| matches!(p, "on" | "per" | "in" | "any" | "each"))
}

fn numbers(text: &str) -> Vec<Number> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let mut value = None;
        let mut end = i;
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].1.is_ascii_digit() || chars[j].1 == '.') {
                j += 1;
            }
            let s: String = chars[i..j].iter().map(|(_, c)| *c).collect();
            let s = s.trim_end_matches('.');
            value = s.parse::<f32>().ok();
            end = j;
        } else if let Some(&(_, v)) = ZH_DIGITS.iter().find(|(d, _)| *d == c) {
            // A Chinese numeral counts only before a measure word or unit
            // (两处, 三个): 一 is also "all" in 一律 and "one" in 统一.
            let next = chars.get(i + 1).map(|(_, c)| *c);
            let rest = chars.get(i + 1).map_or("", |(b, _)| &text[*b..]);
            if next.is_some_and(|n| ZH_COUNTERS.contains(&n))
                || UNITS
                    .iter()
                    .any(|(u, _)| !u.is_ascii() && rest.starts_with(u))
            {
                value = Some(v as f32);
                end = i + 1;
            }
        } else if c.is_alphabetic() && (i == 0 || !chars[i - 1].1.is_alphanumeric()) {
            let rest = &text[start..];
            if let Some(&(w, v)) = EN_NUMBERS.iter().find(|(w, _)| {
                rest.starts_with(w)
                    && !rest[w.len()..]
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric)
                    // "on one part" names the part, not a count of defects.
                    && !["part", "piece", "side", "surface"]
                        .iter()
                        .any(|n| rest[w.len()..].trim_start().starts_with(n))
                    // Nor does "one" after "on", "per", "in", "any", "each"
                    // ("no more than two on one housing").
                    && (*w != "one" || !names_one_thing(&text[..start]))
            }) {
                value = Some(v as f32);
                end = i + w.chars().count();
            }
        }
        let Some(value) = value else {
            i += 1;
            continue;
        };
        let after = chars.get(end).map_or(text.len(), |(b, _)| *b);
        let tail = text[after..].trim_start();
        let unit_mm = UNITS.iter().find_map(|(u, mm)| {
            tail.strip_prefix(u)
                .filter(|rest| {
                    !u.is_ascii()
                        || !rest
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphanumeric())
                })
                .map(|_| *mm)
        });
        let counter = tail
            .chars()
            .next()
            .is_some_and(|c| ZH_COUNTERS.contains(&c));
        out.push(Number {
            value,
            start,
            end: after,
            unit_mm,
            counter,
        });
        i = end.max(i + 1);
    }
    out
}

/// Phrases that hold a cue word but name a thing, not a rule ("within the
/// cosmetic zone", "per the acceptance criteria"): never read as cues.
const NOT_CUES: &[&str] = &[
    "cosmetic zone",
    "cosmetic area",
    "cosmetic surface",
    "cosmetic face",
    "cosmetic side",
    "cosmetic class",
    "cosmetic inspection",
    "cosmetic requirement",
    "cosmetic criteri",
    "cosmetic standard",
    "acceptance criteri",
    "acceptance sampling",
    "acceptance standard",
    "acceptable quality level",
];

/// Words that negate a cue a few words later ("shall not be a reason for
/// rejection", "are not to be accepted").
const NEGATORS: &[&str] = &["not", "no", "never", "none", "nor"];

/// Words that may stand between a negator and the cue it negates.
const NEGATION_FILLERS: &[&str] = &[
    "a",
    "an",
    "the",
    "any",
    "be",
    "is",
    "are",
    "shall",
    "may",
    "to",
    "for",
    "in",
    "as",
    "by",
    "reason",
    "reasons",
    "cause",
    "causes",
    "ground",
    "grounds",
    "basis",
    "lead",
    "leads",
    "result",
    "results",
    "constitute",
    "constitutes",
    "considered",
    "regarded",
    "deemed",
    "treated",
    "counted",
    "count",
    "used",
    "taken",
    "itself",
];

/// Chinese words that, right before a word for rejecting, say it does not
/// apply ("无需拒收", "不作为判退条件").
const ZH_NEGATORS: &[&str] = &[
    "无需",
    "无须",
    "不需",
    "不必",
    "不作为",
    "不作",
    "不视为",
    "不算",
    "不属于",
];

/// True when the English text `before` a cue ends with a negator followed
/// only by filler words, within the same phrase.
fn negated(before: &str) -> bool {
    let phrase = before
        .rsplit([',', ';', ':', '.', '(', ')', '，', '；', '：', '。'])
        .next()
        .unwrap_or(before);
    phrase
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .rev()
        .take(5)
        .take_while(|w| NEGATORS.contains(w) || NEGATION_FILLERS.contains(w))
        .any(|w| NEGATORS.contains(&w))
}

/// The polarity cues of `text` (lower case): how many say "rejects" and
/// how many say "accepted", each phrase read once.
fn cues(text: &str) -> (usize, usize) {
    let mut masked = text.to_string();
    for phrase in NOT_CUES {
        masked = masked.replace(phrase, &" ".repeat(phrase.len()));
    }
    let (mut reject, mut accept) = (0, 0);
    for &(phrase, rejects) in CUES {
        let mut from = 0;
        while let Some(p) = masked[from..].find(phrase) {
            let at = from + p;
            let starts_word = !phrase.is_ascii()
                || !masked[..at]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric);
            if starts_word {
                // A cue is turned round by a negation before it.
                let flipped = if phrase.is_ascii() {
                    negated(&masked[..at])
                } else {
                    rejects && ZH_NEGATORS.iter().any(|n| masked[..at].ends_with(n))
                };
                if rejects != flipped {
                    reject += 1;
                } else {
                    accept += 1;
                }
                let blank = " ".repeat(phrase.len());
                masked.replace_range(at..at + phrase.len(), &blank);
            }
            from = at + phrase.len();
        }
    }
    (reject, accept)
}

/// True when the clause opens by negating what it names: "No cracks are
/// permitted", "There shall be no dents", "Zero pits".
fn opens_with_negation(text: &str, vocabulary: &Vocabulary) -> bool {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let first_defect = words.iter().position(|w| {
        vocabulary.defects.iter().any(|(word, names)| {
            std::iter::once(word)
                .chain(names)
                .any(|n| n.is_ascii() && w.starts_with(n.to_lowercase().as_str()))
        })
    });
    let before = &words[..first_defect.unwrap_or(words.len().min(4))];
    before
        .iter()
        .any(|w| matches!(*w, "no" | "zero" | "without"))
}

/// `text` with every length (a number followed by a length unit) multiplied
/// by `factor`, other numbers (counts, clause labels) untouched: "longer than
/// 3 mm" becomes "longer than 1.5 mm" for a factor of 0.5. The engine uses it
/// to put a standard's limits into the calibration its model was trained at,
/// so that a size is judged in millimetres whatever the camera's scale. The
/// unit keeps its wording; a number word ("two mm") becomes digits.
pub fn rescale_lengths(text: &str, factor: f32) -> String {
    let lower = text.to_lowercase();
    if (factor - 1.0).abs() < 1e-6 || lower.len() != text.len() {
        // Lower-casing changed byte lengths (rare scripts): positions would
        // not carry over, so the text stays as written.
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = 0;
    for n in numbers(&lower).iter().filter(|n| n.unit_mm.is_some()) {
        out.push_str(&text[at..n.start]);
        out.push_str(&trim(n.value * factor));
        at = n.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with full-width digits (`２处`) written as ASCII digits.
fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            c => c,
        })
        .collect()
}

/// True when the length `n` in `text` is a distance between things ("at
/// least 50 mm apart", "相互间距不小于50 mm"): a word for distance in the
/// same phrase.
fn is_distance(text: &str, n: &Number) -> bool {
    if n.unit_mm.is_none() {
        return false;
    }
    let stops = [',', ';', '(', ')', '，', '；', '。', '：', ':'];
    let from = text[..n.start]
        .char_indices()
        .rev()
        .find(|(_, c)| stops.contains(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let to = text[n.end..].find(stops).map_or(text.len(), |i| n.end + i);
    DISTANCE_WORDS.iter().any(|w| text[from..to].contains(w))
}

/// `text` with the reject words that name things rather than state a rule
/// ("rejected parts shall be tagged", "不合格品应隔离") blanked out.
fn without_reject_names(text: &str) -> String {
    let mut out = text.to_string();
    for name in REJECT_NAMES_ZH {
        out = out.replace(name, &" ".repeat(name.len()));
    }
    let mut words: Vec<(usize, &str)> = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_alphanumeric() || c == '-', start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    for (k, &(start, w)) in words.iter().enumerate() {
        let names_thing = REJECT_WORDS_EN.iter().any(|r| w.starts_with(r))
            && (k == 0
                || words
                    .get(k + 1)
                    .is_some_and(|(_, next)| THING_NOUNS_EN.iter().any(|t| next.starts_with(t))));
        if names_thing {
            out.replace_range(start..start + w.len(), &" ".repeat(w.len()));
        }
    }
    out
}

/// True when the clause defines a defect rather than judging it: it opens
/// with the defect's name followed by ":", a dash, "means", "是指" ("Dent -
/// a local depression caused by impact").
fn defines(text: &str, vocabulary: &Vocabulary) -> bool {
    let text = text.trim_start();
    vocabulary
        .defects
        .iter()
        .flat_map(|(word, names)| std::iter::once(word).chain(names))
        .filter_map(|name| text.strip_prefix(name.to_lowercase().as_str()))
        .any(|rest| {
            let rest = rest
                .strip_prefix("es")
                .or_else(|| rest.strip_prefix('s'))
                .unwrap_or(rest);
            let spaced = rest.trim_start();
            rest.starts_with([':', '：'])
                || (spaced.len() < rest.len() && spaced.starts_with(['-', '–', '—']))
                || [" means ", " is defined as ", "是指", "指"]
                    .iter()
                    .any(|m| rest.starts_with(m))
        })
}

/// Reads one clause's text.
pub fn read(clause: u32, text: &str, vocabulary: &Vocabulary) -> Reading {
    let lower = ascii_digits(&text.to_lowercase());
    let defects = vocabulary.mentioned(&lower);
    let nums: Vec<Number> = numbers(&lower)
        .into_iter()
        .filter(|n| !is_distance(&lower, n))
        .collect();
    let (mut reject, mut accept) = if defects.is_empty() {
        cues(&without_reject_names(&lower))
    } else {
        cues(&lower)
    };
    if opens_with_negation(&lower, vocabulary) {
        // "No scratches are permitted": the acceptance word is negated.
        reject += accept.max(1);
        accept = 0;
    }
    let reading = |rule, confidence: f32, doubt: Option<String>| Reading {
        clause,
        defects: defects.clone(),
        rule,
        confidence,
        doubt,
    };
    if defects.is_empty() {
        return if reject > 0 {
            reading(
                Rule::Ban,
                0.5,
                Some("rejects something the model has no defect word for".into()),
            )
        } else {
            reading(Rule::Other, 1.0, None)
        };
    }
    let sizes: Vec<&Number> = nums.iter().filter(|n| n.unit_mm.is_some()).collect();
    if let Some(first) = sizes.first() {
        let limit_mm = first.value * first.unit_mm.unwrap_or(1.0);
        let agree = sizes
            .iter()
            .all(|n| (n.value * n.unit_mm.unwrap_or(1.0) - limit_mm).abs() < 1e-6);
        return if agree && limit_mm > 0.0 {
            reading(Rule::SizeLimit { limit_mm }, 1.0, None)
        } else {
            reading(
                Rule::Unclear,
                0.3,
                Some("names more than one size limit".into()),
            )
        };
    }
    if let Some(n) = nums.first() {
        let before = &lower[..n.start];
        let counted = n.counter || COUNT_WORDS.iter().any(|w| lower.contains(w));
        let below = BELOW.iter().any(|w| before.trim_end().ends_with(w));
        // "3 or more", "3处及以上", "at least 3": the count named rejects.
        let after = lower[n.end..].trim_start();
        let after = after
            .strip_prefix(|c: char| ZH_COUNTERS.contains(&c))
            .unwrap_or(after)
            .trim_start();
        // Past a restatement in brackets: "two (2) or more".
        let after = match after.strip_prefix(['(', '（']) {
            Some(inner) => inner
                .split_once([')', '）'])
                .map_or(after, |(_, rest)| rest.trim_start()),
            None => after,
        };
        let from = FROM_AFTER.iter().any(|w| after.starts_with(w))
            || FROM_BEFORE.iter().any(|w| before.trim_end().ends_with(w));
        let max_count = if below || from {
            (n.value as u32).saturating_sub(1)
        } else {
            n.value as u32
        };
        // "two (2)" says one count twice.
        let one_count = nums.iter().all(|m| m.value == n.value);
        return if counted && one_count && n.value.fract() == 0.0 {
            reading(Rule::CountLimit { max_count }, 1.0, None)
        } else {
            reading(
                Rule::Unclear,
                0.4,
                Some("has a number without a unit that is not clearly a count".into()),
            )
        };
    }
    match (reject, accept) {
        (r, 0) if r > 0 => reading(Rule::Ban, 1.0, None),
        (0, a) if a > 0 => reading(Rule::Tolerate, 1.0, None),
        (0, 0) if defines(&lower, vocabulary) => reading(Rule::Other, 1.0, None),
        (0, 0) => reading(
            Rule::Unclear,
            0.0,
            Some("names a defect but says neither that it rejects nor that it is accepted".into()),
        ),
        _ => reading(
            Rule::Unclear,
            0.3,
            Some("says both that it rejects and that it is accepted".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let v = |w: &str, names: &[&str]| {
            (
                w.to_string(),
                names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        Vocabulary {
            defects: vec![
                v("scratch", &["scratch", "scratches", "划痕"]),
                v("crack", &["crack", "cracks", "裂纹"]),
                v("dent", &["dent", "dents", "凹坑"]),
                v("stain", &["stain", "stains", "污渍"]),
                v("hole", &["hole", "holes", "孔洞"]),
                v("contamination", &["contamination", "异物"]),
                v("weld spatter", &["weld spatter", "焊渣"]),
            ],
        }
    }

    fn rule(text: &str) -> (Vec<String>, Rule) {
        let r = read(1, text, &vocabulary());
        (r.defects, r.rule)
    }

    #[test]
    fn bans_in_many_wordings_and_both_languages() {
        for text in [
            "No dents are permitted.",
            "Any dent is a reject.",
            "Dents of any size are not acceptable.",
            "Reject the part if a dent is present.",
            "A part showing a dent shall be rejected.",
            "Parts with dents are scrap.",
            "Zero tolerance for dents: any dent rejects the part.",
            "The surface shall be free of dents.",
            "Dents are cause for rejection.",
            "Dents are not allowed on the surface.",
            "不允许有凹坑。",
            "任何凹坑均判为不合格。",
            "凹坑不论大小，一律拒收。",
            "表面不得有凹坑。",
            "严禁存在凹坑。",
        ] {
            assert_eq!(rule(text), (vec!["dent".to_string()], Rule::Ban), "{text}");
        }
    }

    #[test]
    fn toleration_is_not_mistaken_for_a_ban() {
        for text in [
            "Contamination is acceptable.",
            "Holes are tolerated and do not cause rejection.",
            "Any hole is cosmetic only and accepted.",
            "Ignore holes.",
            "A hole does not reject the part.",
            "Holes need not be reported as rejects.",
            "Accept parts with holes.",
            "Holes are not a cause for rejection.",
            "孔洞可接受。",
            "孔洞不影响判定，允收。",
            "孔洞不作拒收依据。",
            "孔洞属外观轻微缺陷，予以放行。",
        ] {
            let (defects, r) = rule(text);
            assert_eq!(r, Rule::Tolerate, "{text}");
            assert!(!defects.is_empty(), "{text}");
        }
    }

    #[test]
    fn lengths_are_rescaled_and_counts_are_not() {
        assert_eq!(
            rescale_lengths("<clause_3> Scratches longer than 3 mm are rejected.", 0.5),
            "<clause_3> Scratches longer than 1.5 mm are rejected."
        );
        assert_eq!(
            rescale_lengths("No more than 2 dents over 0.5 cm; two 1.2毫米 pits.", 2.0),
            "No more than 2 dents over 1 cm; two 2.4毫米 pits."
        );
        assert_eq!(
            rescale_lengths("划痕长度超过2.5毫米判为不合格，最多两处。", 0.4),
            "划痕长度超过1毫米判为不合格，最多两处。"
        );
        assert_eq!(
            rescale_lengths("Scratches of 3 MM.", 1.0),
            "Scratches of 3 MM."
        );
        assert_eq!(
            rescale_lengths("Scratches of 3 MM.", 2.0),
            "Scratches of 6 MM."
        );
    }

    #[test]
    fn size_limits_carry_their_unit() {
        let limit = |text: &str| match rule(text).1 {
            Rule::SizeLimit { limit_mm } => limit_mm,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(limit("Scratches longer than 3 mm are rejected."), 3.0);
        assert_eq!(limit("Reject if a stain exceeds 2 mm."), 2.0);
        assert_eq!(limit("Scratches up to 0.5 cm are acceptable."), 5.0);
        assert_eq!(limit("Scratches over 500 µm are not acceptable."), 0.5);
        assert_eq!(limit("Maximum scratch size is 1.5 millimetres."), 1.5);
        assert_eq!(limit("划痕大于2 mm的拒收，小于等于2 mm的允收。"), 2.0);
        assert_eq!(limit("划痕长度超过2.5毫米判为不合格。"), 2.5);
        assert_eq!(limit("Weld spatters larger than 1 mm are rejected."), 1.0);
    }

    #[test]
    fn count_limits_read_digits_and_number_words() {
        let count = |text: &str| match rule(text).1 {
            Rule::CountLimit { max_count } => max_count,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(count("No more than 2 dents per part."), 2);
        assert_eq!(
            count("At most three dents are allowed; more is a reject."),
            3
        );
        assert_eq!(count("Fewer than 3 dents are acceptable."), 2);
        assert_eq!(count("每件凹坑不得多于2处。"), 2);
        assert_eq!(count("每个零件最多允许两处凹坑。"), 2);
        assert_eq!(count("凹坑限3处以内。"), 3);
        assert_eq!(count("More than 1 dents on one part is not acceptable."), 1);
    }

    #[test]
    fn clauses_about_other_things_and_unclear_ones_are_said_to_be() {
        assert_eq!(rule("Inspect under diffuse white lighting.").1, Rule::Other);
        let r = read(4, "Dents are noted on the traveller.", &vocabulary());
        assert_eq!(r.rule, Rule::Unclear);
        assert!(!r.confident() && r.doubt.is_some());
        let r = read(5, "Burrs are rejected.", &vocabulary());
        assert!(r.defects.is_empty() && !r.confident(), "{r:?}");
        let r = read(6, "Dents are rejected but acceptable.", &vocabulary());
        assert_eq!(r.rule, Rule::Unclear);
    }

    #[test]
    fn negated_cues_are_turned_round() {
        for text in [
            "Stains on the sealing face shall not be cause for rejection.",
            "Stains and water marks are cosmetic and shall not be a reason for rejection.",
            "Stains that can be wiped off with a dry cloth are not a defect.",
            "Stains from rinse water are normal and are not to be reported.",
            "Parts with stains may be released.",
            "污渍不影响验收。",
            "污渍无需拒收。",
            "污渍不作为判退条件。",
            "污渍属外观缺陷，予以接收。",
        ] {
            assert_eq!(rule(text), (vec!["stain".into()], Rule::Tolerate), "{text}");
        }
        for text in [
            "Cracks: none allowed.",
            "Cracks: none.",
            "Cracks shall not be present.",
            "Cracks are not to be accepted.",
            "Within the cosmetic zone, a crack is not acceptable.",
            "表面不应有裂纹。",
            "裂纹属致命缺陷，不予接收。",
        ] {
            assert_eq!(rule(text), (vec!["crack".into()], Rule::Ban), "{text}");
        }
    }

    #[test]
    fn names_definitions_and_lookalike_words_are_not_rules() {
        for text in [
            "Rejected housings shall be segregated and tagged.",
            "Nonconforming material goes to the MRB cage.",
            "不合格品应隔离存放并做好标识。",
            "Scratch - a linear mark that can be felt with a fingernail.",
            "Dent: a local depression caused by impact.",
            "划痕是指表面的线状痕迹。",
            "The stainless steel surface must show a uniform grain.",
        ] {
            assert_eq!(rule(text).1, Rule::Other, "{text}");
        }
        assert!(!mentions("stainless steel", "stain"));
        assert!(mentions("scratched or dent-free", "scratch"));
        assert!(mentions("scratched or dent-free", "dent"));
        // A clause that names a defect without a rule is still flagged.
        assert_eq!(rule("Dents are noted on the traveller.").1, Rule::Unclear);
    }

    #[test]
    fn counts_said_twice_from_a_number_or_beside_distances() {
        let count = |text: &str| match rule(text).1 {
            Rule::CountLimit { max_count } => max_count,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            count("A maximum of two (2) dents is permitted on the fin side."),
            2
        );
        assert_eq!(
            count("Dents are acceptable provided that no more than two are found on one housing."),
            2
        );
        assert_eq!(
            count("Three (3) or more dents on one part lead to rejection."),
            2
        );
        assert_eq!(count("3 or more dents reject the part."), 2);
        assert_eq!(count("凹坑达到３处及以上的拒收。"), 2);
        assert_eq!(count("每件凹坑不超过２处。"), 2);
        assert_eq!(
            count("凹坑：同一零件上不多于3处，且相互间距不小于50 mm。"),
            3
        );
        assert_eq!(count("Not more than 2 dents, at least 50 mm apart."), 2);
        assert_eq!(
            rule("Scratches longer than 3 mm are rejected; inspect at a distance of 450 mm.").1,
            Rule::SizeLimit { limit_mm: 3.0 }
        );
    }

    #[test]
    fn several_defects_in_one_clause_are_all_governed() {
        let (defects, r) = rule("Scratches and dents are not permitted.");
        assert_eq!(defects, ["scratch", "dent"]);
        assert_eq!(r, Rule::Ban);
    }
}
