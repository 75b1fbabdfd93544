//! The pages in English and Chinese. The English text in the code is the
//! key; each room of the UI keeps its Chinese beside its code (a `ZH` table
//! in the module), gathered here. A page asks [`Lang::t`] for a fixed text
//! and [`Lang::f`] for one with values (`{0}`, `{1}`, … placed where the
//! language puts them). Which language: the person's choice
//! (`users.language`, set from the navigation bar), else the browser's
//! `Accept-Language`, else English.
//!
//! What is never translated: the data (part ids, station, camera, recipe
//! and defect names, the standard, reasons people wrote) and the decisions
//! PASS / FAIL / REVIEW, which are the words the PLC and MES use too.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap};

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    /// The BCP 47 tag, for `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The code stored for a person's choice.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The person's choice, else the browser's first language the pages
    /// speak (`Accept-Language`, by its q-values), else English.
    pub fn of(chosen: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(l) = chosen.and_then(Lang::from_code) {
            return l;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Lang::of_accept_language(accept)
    }

    fn of_accept_language(accept: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',') {
            let mut parts = item.trim().split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Lang::Zh,
                Some("en") => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// A fixed text of the pages in this language. English text with no
    /// Chinese in the catalogue is shown as it is (a test keeps that from
    /// happening).
    pub fn t(self, en: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => catalogue().get(en).copied().unwrap_or(en),
        }
    }

    /// A text with values: `{0}`, `{1}`, … in the template are replaced by
    /// `values` in order, wherever this language places them.
    pub fn f(self, en: &'static str, values: &[&dyn std::fmt::Display]) -> String {
        let mut out = self.t(en).to_string();
        for (i, v) in values.iter().enumerate() {
            out = out.replace(&format!("{{{i}}}"), &v.to_string());
        }
        out
    }
}

/// The English words of a page's visible text (and of the attributes people
/// read: placeholders, labels, titles, alt text), once the data the page
/// shows (`data`: names, ids, the standard, what people wrote) and the words
/// never translated (PASS, FAIL, REVIEW, units) are taken out: what a
/// Chinese reader would find untranslated. The tests' check that no string
/// is left.
pub fn untranslated_words(html: &str, data: &[&str]) -> Vec<String> {
    // Text outside tags, scripts and styles.
    let mut text = String::new();
    let (mut in_tag, mut in_code) = (false, false);
    for (i, c) in html.char_indices() {
        let rest = &html[i..];
        if rest.starts_with("<script") || rest.starts_with("<style") {
            in_code = true;
        } else if rest.starts_with("</script>") || rest.starts_with("</style>") {
            in_code = false;
        }
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag && !in_code => text.push(c),
            _ => {}
        }
    }
    // Attributes people read: placeholders, labels, titles, alt text.
    for attr in ["placeholder=\"", "aria-label=\"", "title=\"", "alt=\""] {
        for piece in html.split(attr).skip(1) {
            text.push(' ');
            text.push_str(piece.split('"').next().unwrap_or_default());
        }
    }
    let mut text = text
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"");
    for d in data {
        text = text.replace(d, " ");
    }
    const KEPT: &[&str] = &[
        "English", "PASS", "FAIL", "REVIEW", "UTC", "mm", "ms", "MQTT", "PLC", "MES", "CSV", "ID",
        "CPU", "p99", "p95", "h",
    ];
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 2 && !KEPT.contains(w))
        .map(str::to_string)
        .collect()
}

/// Every room's Chinese, English text to Chinese.
fn catalogue() -> &'static HashMap<&'static str, &'static str> {
    static CATALOGUE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    CATALOGUE.get_or_init(|| TABLES.iter().flat_map(|t| t.iter().copied()).collect())
}

/// The rooms' tables.
const TABLES: &[&[(&str, &str)]] = &[
    crate::respond::ZH,
    crate::auth::ZH,
    crate::pages::ZH,
    crate::line::ZH,
    crate::charts::ZH,
    crate::panel::ZH,
    crate::shadow::ZH,
    crate::fleet::ZH,
    crate::rollout::ZH,
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The rooms' tests ask for the English left on their Chinese pages.
    pub(crate) use super::untranslated_words as english_left;

    #[test]
    fn the_browser_language_is_read_by_its_weights() {
        assert_eq!(
            Lang::of_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::of_accept_language("en-GB,en;q=0.9,zh;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::of_accept_language("de-DE,zh-TW;q=0.5"), Lang::Zh);
        assert_eq!(Lang::of_accept_language("fr, de"), Lang::En);
        assert_eq!(Lang::of_accept_language("en;q=0.2, zh;q=0.7"), Lang::Zh);
        assert_eq!(Lang::of_accept_language(""), Lang::En);
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, "zh-CN".parse().unwrap());
        assert_eq!(
            Lang::of(Some("en"), &h),
            Lang::En,
            "the person's choice wins"
        );
        assert_eq!(Lang::of(None, &h), Lang::Zh);
    }

    #[test]
    fn a_text_two_rooms_share_reads_the_same_in_both() {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (en, zh) in TABLES.iter().flat_map(|t| t.iter()) {
            if let Some(before) = seen.insert(en, zh) {
                assert_eq!(before, *zh, "`{en}` has two Chinese texts");
            }
        }
    }

    #[test]
    fn values_land_where_the_language_puts_them() {
        assert_eq!(Lang::En.f("Review inbox ({0})", &[&3]), "Review inbox (3)");
        assert_eq!(Lang::Zh.f("Review inbox ({0})", &[&3]), "待复核（3）");
        assert_eq!(
            Lang::Zh.f(
                "Judged {0} by the model · overridden to {1} by {2} at {3}",
                &[&"FAIL", &"PASS", &"ana", &"08:05"]
            ),
            "模型判定为 FAIL · 由 ana 于 08:05 改判为 PASS"
        );
    }

    #[test]
    fn every_text_the_code_asks_for_has_its_chinese() {
        // Every literal passed to `.t(` or `.f(` in the crate's sources.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut missing = Vec::new();
        let mut asked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            for call in [".t(\"", ".f(\""] {
                for piece in src.split(call).skip(1) {
                    let text = literal(piece);
                    asked += 1;
                    if !catalogue().contains_key(text.as_str()) {
                        missing.push(format!("{}: {text}", path.display()));
                    }
                }
            }
        }
        assert!(asked > 100, "only {asked} texts found: is the scan right?");
        assert!(
            missing.is_empty(),
            "no Chinese for:\n{}",
            missing.join("\n")
        );
    }

    /// The Rust string literal at the start of `piece` (after its opening
    /// quote), unescaped for `\"` and `\\`.
    fn literal(piece: &str) -> String {
        let mut out = String::new();
        let mut chars = piece.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(c) => out.push(c),
                    None => break,
                },
                c => out.push(c),
            }
        }
        out
    }
}
