//! Times as the pages show them. (Escaping is `maud`'s: every value placed
//! in a page goes through its `html!`, which escapes by construction.)

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
