//! The one HTML escaper every review page uses, for text and for attribute
//! values alike (quotes included: a value quoted with `"` or `'` cannot be
//! closed by what it shows), and times as the pages show them.

/// `s` made safe to place in HTML text or in a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A record's time (RFC 3339) as the station's clock shows it, with its
/// zone: `14:03:22 (UTC+01:00)`; with `dated`, the date before it.
pub fn local_time(at: &str, dated: bool) -> String {
    let pattern = if dated {
        "%Y-%m-%d %H:%M:%S (UTC%:z)"
    } else {
        "%H:%M:%S (UTC%:z)"
    };
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&chrono::Local).format(pattern).to_string())
        .unwrap_or_else(|_| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn text_and_both_quotes_are_escaped() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(esc("划痕 3 mm"), "划痕 3 mm");
    }
}
