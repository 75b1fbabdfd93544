//! Chinese components of the composed wording, as a Chinese plant writes its
//! 质检标准: sentence frames of each rule, subjects, conditions, numerals,
//! measure words, units and the document's other lines, each split into
//! training and held-out parts (see the parent module).
//!
//! Slots in frames: `{S}` the subject (with a condition before it when so
//! placed), `{L}` the limit with its unit, `{NC}` the count with its measure
//! word (`两处`), `{MC}` one more than the count with its measure word.

use rand::rngs::StdRng;
use rand::Rng;

use super::{limit_text, Lexicon, Split};
use crate::defects::DefectKind;
use crate::standard::{chinese_name, Phrasings, Rule};

const SUBJECTS: Split = Split {
    name: "zh subjects",
    train: &["{w}", "表面{w}"],
    heldout: &["可见{w}", "单个{w}"],
};

const CONDITIONS: Split = Split {
    name: "zh conditions",
    train: &["密封面上", "外观面上", "A级面上", "加工面上"],
    heldout: &["装配面上", "非功能面上", "可视区域内", "法兰面上"],
};

const BAN: Split = Split {
    name: "zh ban frames",
    train: &[
        "不允许有{S}",
        "{S}一律判为不合格",
        "出现{S}即拒收",
        "{S}不允许存在",
        "{S}判为不良",
    ],
    heldout: &[
        "{S}一经发现即拒收",
        "严禁出现{S}",
        "{S}属致命缺陷，不予接收",
        "发现{S}的零件应判退",
        "{S}不可接受",
    ],
};

const LIMIT_REJECT: Split = Split {
    name: "zh reject-phrased size limits",
    train: &[
        "{S}长度超过{L}判为不合格",
        "{S}大于{L}的拒收",
        "{S}尺寸大于{L}时判不良",
    ],
    heldout: &[
        "{S}超过{L}即拒收",
        "长度大于{L}的{S}不可接受",
        "{S}尺寸>{L}判退",
    ],
};

const LIMIT_ACCEPT: Split = Split {
    name: "zh accept-phrased size limits",
    train: &[
        "{S}不超过{L}的允收",
        "{S}长度在{L}以内允许存在",
        "{L}以下的{S}可接受",
    ],
    heldout: &[
        "{S}≤{L}可接受",
        "{S}长度不大于{L}的不作拒收依据",
        "{S}小于{L}时不影响验收",
    ],
};

const LIMIT_REJECT_MORE: Split = Split {
    name: "zh complements of reject-phrased size limits",
    train: &["，以下允收"],
    heldout: &["，未超出者不影响验收"],
};

const LIMIT_ACCEPT_MORE: Split = Split {
    name: "zh complements of accept-phrased size limits",
    train: &["，超出者拒收", "，大于此值判不合格"],
    heldout: &["，否则判退", "，超出则不予接收"],
};

const COUNT_REJECT: Split = Split {
    name: "zh reject-phrased count limits",
    train: &[
        "{S}多于{NC}判为不合格",
        "每件{S}超过{NC}即拒收",
        "{S}数量超过{NC}的判不良",
    ],
    heldout: &[
        "同一零件上{S}多于{NC}即判退",
        "{S}超出{NC}不予接收",
        "{S}达到{MC}及以上的拒收",
    ],
};

const COUNT_ACCEPT: Split = Split {
    name: "zh accept-phrased count limits",
    train: &[
        "{S}最多{NC}",
        "{S}最多允许{NC}",
        "每件{S}不超过{NC}可接受",
        "{S}允许{NC}以内",
    ],
    heldout: &[
        "{S}至多{NC}，可以接受",
        "每件允许存在不多于{NC}的{S}",
        "{S}不超过{NC}的不作拒收依据",
    ],
};

const COUNT_REJECT_MORE: Split = Split {
    name: "zh complements of reject-phrased count limits",
    train: &["，以内允收"],
    heldout: &["，未超出时予以接收"],
};

const COUNT_ACCEPT_MORE: Split = Split {
    name: "zh complements of accept-phrased count limits",
    train: &["，超出拒收"],
    heldout: &["，多出的判不合格"],
};

const TOLERATE: Split = Split {
    name: "zh toleration frames",
    train: &[
        "{S}可接受",
        "{S}允许存在",
        "{S}不作拒收依据",
        "{S}不影响验收",
    ],
    heldout: &[
        "{S}属外观缺陷，予以接收",
        "{S}可以放行",
        "{S}不判为不合格",
        "{S}无需拒收",
        "{S}不作为判退条件",
    ],
};

/// How a count is written: `{d}` digits, `{han}` a Chinese numeral, `{fw}`
/// full-width digits.
const NUMBERS: Split = Split {
    name: "zh count forms",
    train: &["{d}", "{han}"],
    heldout: &["{fw}"],
};

const COUNTERS: Split = Split {
    name: "zh measure words",
    train: &["处", "个"],
    heldout: &["点"],
};

const UNITS: Split = Split {
    name: "zh unit spellings",
    train: &["{mm}毫米", "{mm} mm", "{mm} 毫米"],
    heldout: &["{mm}mm", "{cm}厘米", "{um}微米"],
};

const TITLES: Split = Split {
    name: "zh titles",
    train: &["外观检验标准", "机加工壳体外观验收规范", "表面质量检验规范"],
    heldout: &[
        "成品外观检验作业指导书",
        "压铸件外观判定标准",
        "出货检验标准",
    ],
};

const DOC_LINES: Split = Split {
    name: "zh document lines",
    train: &["文件编号：QS-{k}  版本：{r}"],
    heldout: &["编号 WI-{k}，{r}版"],
};

const SCOPES: Split = Split {
    name: "zh scope statements",
    train: &[
        "本标准适用于机加工壳体的终检。",
        "本标准规定了零件出厂前的外观验收要求。",
    ],
    heldout: &[
        "目的：规定成品外观的验收界限。",
        "除图纸另有规定外，各批次均按本标准执行。",
    ],
};

const INTROS: Split = Split {
    name: "zh intro lines",
    train: &["判定标准如下：", "验收要求："],
    heldout: &["按以下条款判定：", "要求如下："],
};

const HEAD_SCOPE: Split = Split {
    name: "zh scope headings",
    train: &["范围"],
    heldout: &["目的与范围"],
};

const HEAD_CONDITIONS: Split = Split {
    name: "zh condition headings",
    train: &["检验条件", "一般要求"],
    heldout: &["检验环境", "通用要求"],
};

const HEAD_DEFECTS: Split = Split {
    name: "zh defect headings",
    train: &["外观缺陷", "判定标准"],
    heldout: &["缺陷判定", "外观要求"],
};

const SUBHEADS: Split = Split {
    name: "zh subsection headings",
    train: &["主要表面", "次要表面"],
    heldout: &["A区", "B区"],
};

const DISTRACTORS: Split = Split {
    name: "zh clauses about other things",
    train: &[
        "检验应在照度不低于1000勒克斯的光源下进行。",
        "目视距离为300毫米至450毫米。",
        "零件应使用防锈袋包装，每箱20件。",
        "在流转卡上记录批次号。",
        "检验员须佩戴洁净手套。",
    ],
    heldout: &[
        "本标准未规定的要求按图纸执行。",
        "不合格品应隔离存放并做好标识。",
        "量具须在有效校准期内使用。",
        "抽样方案按GB/T 2828.1执行。",
        "检验记录保存期限为两年。",
    ],
};

pub(super) const ALL: [&Split; 24] = [
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
    &COUNTERS,
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
    upper_headings: false,
};

const HAN: [&str; 5] = ["零", "一", "两", "三", "四"];

fn count_text(form: &str, counter: &str, n: u32) -> String {
    let fullwidth: String = n
        .to_string()
        .chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap_or(c))
        .collect();
    let number = form
        .replace("{d}", &n.to_string())
        .replace("{han}", HAN[n as usize])
        .replace("{fw}", &fullwidth);
    format!("{number}{counter}")
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
    let mut subject = SUBJECTS.pick(rng, set).replace("{w}", chinese_name(kind));
    let condition = rng
        .gen_bool(0.4)
        .then(|| CONDITIONS.pick(rng, set))
        .map(|c| (c, rng.gen_bool(0.5)));
    if let Some((c, true)) = condition {
        subject = format!("{c}的{subject}");
    }
    let (limit, n) = match rule {
        Rule::Limit { limit_mm } => (limit_text(UNITS.pick(rng, set), limit_mm), 0),
        Rule::Count { max_count } => (String::new(), max_count),
        _ => (String::new(), 0),
    };
    let number_form = NUMBERS.pick(rng, set);
    let counter = COUNTERS.pick(rng, set);
    let body = frame
        .replace("{S}", &subject)
        .replace("{L}", &limit)
        .replace("{NC}", &count_text(number_form, counter, n))
        .replace("{MC}", &count_text(number_form, counter, n + 1));
    match condition {
        Some((c, false)) => format!("{c}，{body}{complement}。"),
        _ => format!("{body}{complement}。"),
    }
}
