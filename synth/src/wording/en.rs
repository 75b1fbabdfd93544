//! English components of the composed wording: the sentence frames of each
//! rule, subjects, conditions, numbers, units and the document's other
//! lines, each split into training and held-out parts (see the parent
//! module), and the grammar that composes a clause from them (number
//! agreement, where a condition goes, complements).
//!
//! Slots in frames: `{S}` the subject (with a condition after it when so
//! placed), `{be}`/`{do}`/`{s}` verb forms agreeing with it, `{p}` the bare
//! plural, `{w}` the singular, `{aw}` the singular with its article, `{L}`
//! the limit with its unit, `{N}` the count, `{M}` one more than the count,
//! `{cn}` the counted noun agreeing with `{N}`, `{cnp}` its plural,
//! `{ben}` "is"/"are" agreeing with `{N}`.

use rand::rngs::StdRng;
use rand::Rng;

use super::{limit_text, uncapitalise, Lexicon, Split};
use crate::defects::DefectKind;
use crate::standard::{capitalise, Phrasings, Rule};

const SUBJECTS: Split = Split {
    name: "en subjects",
    train: &["{p}", "any {w}", "surface {p}"],
    heldout: &["visible {p}", "a {w}", "individual {p}"],
};

const CONDITIONS: Split = Split {
    name: "en conditions",
    train: &[
        "on the sealing face",
        "on visible surfaces",
        "on the machined face",
        "on class A surfaces",
    ],
    heldout: &[
        "on the mating flange",
        "within the cosmetic zone",
        "on external surfaces",
        "on the bore surface",
    ],
};

const BAN: Split = Split {
    name: "en ban frames",
    train: &[
        "{S} {be} not permitted",
        "{S} shall not be present",
        "{S} {be} cause for rejection",
        "the surface shall be free of {p}",
        "reject parts with {p}",
        "parts showing {p} shall be rejected",
        "{S} {be} prohibited",
        "{S} of any size {be} rejected",
    ],
    heldout: &[
        "{S} {be} unacceptable regardless of size",
        "{S} shall not be allowed",
        "the part shall be rejected if {aw} is found",
        "parts must be free from {p}",
        "{S} shall lead to rejection of the part",
        "any part exhibiting {p} is nonconforming",
        "{S} {be} not acceptable",
        "{S} constitute{s} a reject",
    ],
};

/// Size limits phrased as what rejects.
const LIMIT_REJECT: Split = Split {
    name: "en reject-phrased size limits",
    train: &[
        "{S} longer than {L} {be} rejected",
        "{S} exceeding {L} shall be rejected",
        "{S} larger than {L} {be} cause for rejection",
        "reject parts with {p} over {L}",
        "the part shall be rejected if {aw} exceeds {L}",
        "{S} over {L} in length {be} not permitted",
    ],
    heldout: &[
        "{S} greater than {L} {be} not acceptable",
        "{S} measuring more than {L} shall lead to rejection",
        "any part with {aw} above {L} is nonconforming",
        "{S} > {L}: reject",
        "the part is rejected when {aw} is longer than {L}",
    ],
};

/// Size limits phrased as what is accepted (still: rejected above the limit).
const LIMIT_ACCEPT: Split = Split {
    name: "en accept-phrased size limits",
    train: &[
        "{S} not exceeding {L} {be} acceptable",
        "{S} up to {L} {be} permitted",
        "{S} of {L} or less {be} acceptable",
        "maximum permissible {w} length: {L}",
    ],
    heldout: &[
        "{S} ≤ {L} {be} acceptable",
        "{S} no larger than {L} {be} allowed",
        "{S} within {L} {be} tolerated",
        "{S} {be} acceptable if not longer than {L}",
        "the largest allowable {w} is {L}",
    ],
};

/// What may follow a reject-phrased size limit.
const LIMIT_REJECT_MORE: Split = Split {
    name: "en complements of reject-phrased size limits",
    train: &["; smaller ones are acceptable"],
    heldout: &["; shorter ones are tolerated"],
};

/// What may follow an accept-phrased size limit.
const LIMIT_ACCEPT_MORE: Split = Split {
    name: "en complements of accept-phrased size limits",
    train: &[
        "; larger ones shall be rejected",
        ", anything larger is a reject",
    ],
    heldout: &[
        "; longer ones are cause for rejection",
        " (reject if larger)",
    ],
};

const COUNT_REJECT: Split = Split {
    name: "en reject-phrased count limits",
    train: &[
        "more than {N} {cn} per part shall cause rejection",
        "reject the part if it has more than {N} {cn}",
        "parts with more than {N} {cn} shall be rejected",
    ],
    heldout: &[
        "a part showing more than {N} {cn} is nonconforming",
        "{M} or more {cnp} on one part lead to rejection",
        "exceeding {N} {cn} per part is cause for rejection",
    ],
};

const COUNT_ACCEPT: Split = Split {
    name: "en accept-phrased count limits",
    train: &[
        "not more than {N} {cn} {ben} permitted per part",
        "up to {N} {cn} per part {ben} acceptable",
        "a maximum of {N} {cn} {ben} allowed per part",
        "{S} {be} acceptable up to {N} per part",
    ],
    heldout: &[
        "at most {N} {cn} per part may be accepted",
        "no more than {N} {cn} {ben} tolerated on a part",
        "{S} {be} permitted provided there are no more than {N} per part",
        "the number of {cnp} shall not exceed {N} per part",
    ],
};

const COUNT_REJECT_MORE: Split = Split {
    name: "en complements of reject-phrased count limits",
    train: &["; fewer are acceptable"],
    heldout: &["; up to that number they are tolerated"],
};

const COUNT_ACCEPT_MORE: Split = Split {
    name: "en complements of accept-phrased count limits",
    train: &["; more shall be rejected", ", any more is a reject"],
    heldout: &[
        "; additional ones are cause for rejection",
        " (reject above this number)",
    ],
};

const TOLERATE: Split = Split {
    name: "en toleration frames",
    train: &[
        "{S} {be} acceptable",
        "{S} {be} cosmetic and {do} not affect acceptance",
        "{S} {be} permitted",
        "{S} shall not be cause for rejection",
        "{S} {be} tolerated regardless of size",
        "accept parts with {p}",
    ],
    heldout: &[
        "{S} {be} allowed",
        "{S} {do} not constitute a reject",
        "{S} may be accepted without limit",
        "parts with {p} may be released",
        "{S} {be} not grounds for rejection",
        "{S} need not be rejected",
    ],
};

/// How a count is written: `{d}` digits, `{word}` the number word.
const NUMBERS: Split = Split {
    name: "en count forms",
    train: &["{d}", "{word}"],
    heldout: &["{word} ({d})"],
};

const UNITS: Split = Split {
    name: "en unit spellings",
    train: &["{mm} mm", "{mm}mm", "{mm} millimetres", "{cm} cm"],
    heldout: &[
        "{mm} millimeters",
        "{um} µm",
        "{um} microns",
        "{cm} centimetres",
    ],
};

const TITLES: Split = Split {
    name: "en titles",
    train: &[
        "Visual Inspection Standard",
        "Cosmetic Acceptance Criteria for Machined Housings",
        "Surface Quality Specification",
    ],
    heldout: &[
        "Appearance Inspection Instruction",
        "Outgoing Quality Standard for Painted Covers",
        "Workmanship Standard",
    ],
};

const DOC_LINES: Split = Split {
    name: "en document lines",
    train: &["Document QS-{k}, revision {r}", "Spec. QA-{k} issue {r}"],
    heldout: &["Doc. No. WI-{k} / Rev. {r}", "Ref. CTQ-{k} ({r})"],
};

const SCOPES: Split = Split {
    name: "en scope statements",
    train: &[
        "This standard applies to machined housings at final inspection.",
        "It defines the cosmetic acceptance criteria for parts leaving the line.",
    ],
    heldout: &[
        "Purpose: to state the visual acceptance limits for finished parts.",
        "The requirements below apply to every lot unless the drawing states otherwise.",
    ],
};

const INTROS: Split = Split {
    name: "en intro lines",
    train: &["Acceptance criteria:", "The following criteria apply:"],
    heldout: &["Parts are judged as follows:", "Requirements:"],
};

const HEAD_SCOPE: Split = Split {
    name: "en scope headings",
    train: &["Scope"],
    heldout: &["Purpose and scope"],
};

const HEAD_CONDITIONS: Split = Split {
    name: "en condition headings",
    train: &["Inspection conditions", "General"],
    heldout: &["Viewing conditions", "General requirements"],
};

const HEAD_DEFECTS: Split = Split {
    name: "en defect headings",
    train: &["Surface defects", "Acceptance criteria"],
    heldout: &["Cosmetic requirements", "Defect limits"],
};

const SUBHEADS: Split = Split {
    name: "en subsection headings",
    train: &["Primary surfaces", "Secondary surfaces"],
    heldout: &["Zone A", "Zone B"],
};

const DISTRACTORS: Split = Split {
    name: "en clauses about other things",
    train: &[
        "Inspect under 1000 lux.",
        "Viewing distance shall be 300 mm to 450 mm.",
        "Parts shall be packed in VCI bags, 20 per carton.",
        "Record the lot number on the traveller.",
        "Wear lint-free gloves when handling parts.",
        "Measure lengths with a calibrated scale.",
    ],
    heldout: &[
        "Inspection lighting shall be 800 to 1200 lux, daylight white.",
        "Rejected parts shall be tagged and placed in the quarantine area.",
        "Inspection records shall be retained for two years.",
        "Gauges shall be within their calibration period.",
        "View each part for no more than 10 seconds.",
        "Requirements not stated here follow the drawing.",
    ],
};

pub(super) const ALL: [&Split; 23] = [
    &SUBJECTS,
    &CONDITIONS,
    &BAN,
    &LIMIT_REJECT,
    &LIMIT_ACCEPT,
    &LIMIT_REJECT_MORE,
    &LIMIT_ACCEPT_MORE,
    &COUNT_REJECT,
    &COUNT_ACCEPT,
    &COUNT_REJECT_MORE,
    &COUNT_ACCEPT_MORE,
    &TOLERATE,
    &NUMBERS,
    &UNITS,
    &TITLES,
    &DOC_LINES,
    &SCOPES,
    &INTROS,
    &HEAD_SCOPE,
    &HEAD_CONDITIONS,
    &HEAD_DEFECTS,
    &SUBHEADS,
    &DISTRACTORS,
];

pub(super) const LEXICON: Lexicon = Lexicon {
    titles: &TITLES,
    doc_lines: &DOC_LINES,
    scopes: &SCOPES,
    intros: &INTROS,
    head_scope: &HEAD_SCOPE,
    head_conditions: &HEAD_CONDITIONS,
    head_defects: &HEAD_DEFECTS,
    subheads: &SUBHEADS,
    distractors: &DISTRACTORS,
    clause,
    upper_headings: true,
};

const WORDS: [&str; 5] = ["zero", "one", "two", "three", "four"];

fn count_text(form: &str, n: u32) -> String {
    form.replace("{d}", &n.to_string())
        .replace("{word}", WORDS[n as usize])
}

/// The counted noun: "scratch"/"scratches"; contamination is counted in spots.
fn counted(kind: DefectKind, n: u32) -> String {
    let (one, many) = match kind {
        DefectKind::Contamination => ("contamination spot", "contamination spots"),
        k => (k.word(), k.plural()),
    };
    if n == 1 { one } else { many }.to_string()
}

/// One clause sentence about `kind` saying `rule`, composed from the `set`
/// part of every list.
pub(super) fn clause(rng: &mut StdRng, kind: DefectKind, rule: Rule, set: Phrasings) -> String {
    let reject_phrased = rng.gen_bool(0.5);
    let (frames, complements) = match rule {
        Rule::Ban => (&BAN, None),
        Rule::Tolerate => (&TOLERATE, None),
        Rule::Limit { .. } if reject_phrased => (&LIMIT_REJECT, Some(&LIMIT_REJECT_MORE)),
        Rule::Limit { .. } => (&LIMIT_ACCEPT, Some(&LIMIT_ACCEPT_MORE)),
        Rule::Count { .. } if reject_phrased => (&COUNT_REJECT, Some(&COUNT_REJECT_MORE)),
        Rule::Count { .. } => (&COUNT_ACCEPT, Some(&COUNT_ACCEPT_MORE)),
    };
    let frame = frames.pick(rng, set);
    let complement = match complements {
        Some(c) if rng.gen_bool(0.35) => c.pick(rng, set),
        _ => "",
    };
    let mass = kind == DefectKind::Contamination;
    let mut subject_form = SUBJECTS.pick(rng, set);
    if mass && subject_form == "a {w}" {
        subject_form = "{w}";
    }
    let singular = mass || subject_form.contains("{w}");
    let condition = rng
        .gen_bool(0.4)
        .then(|| CONDITIONS.pick(rng, set))
        .map(|c| (c, frame.starts_with("{S}") && rng.gen_bool(0.5)));
    let mut subject = subject_form
        .replace("{w}", kind.word())
        .replace("{p}", kind.plural());
    if let Some((c, true)) = condition {
        subject = format!("{subject} {c}");
    }
    let (limit, n) = match rule {
        Rule::Limit { limit_mm } => (limit_text(UNITS.pick(rng, set), limit_mm), 0),
        Rule::Count { max_count } => (String::new(), max_count),
        _ => (String::new(), 0),
    };
    let number_form = NUMBERS.pick(rng, set);
    let aw = if mass {
        kind.word().to_string()
    } else {
        format!("a {}", kind.word())
    };
    let body = frame
        .replace("{S}", &subject)
        .replace("{be}", if singular { "is" } else { "are" })
        .replace("{do}", if singular { "does" } else { "do" })
        .replace("{s}", if singular { "s" } else { "" })
        .replace("{ben}", if n == 1 { "is" } else { "are" })
        .replace("{aw}", &aw)
        .replace("{w}", kind.word())
        .replace("{p}", kind.plural())
        .replace("{L}", &limit)
        .replace("{N}", &count_text(number_form, n))
        .replace("{M}", &count_text(number_form, n + 1))
        .replace("{cnp}", &counted(kind, 2))
        .replace("{cn}", &counted(kind, n));
    let sentence = match condition {
        Some((c, false)) => format!("{}, {}", capitalise(c), uncapitalise(&body)),
        _ => body,
    };
    capitalise(&format!("{sentence}{complement}."))
}
