//! Timestamps as every record writes them: RFC 3339, UTC, microseconds, `Z`
//! (`2026-12-03T08:16:39.123456Z`). Written this one way, they sort as text,
//! which the stores' range queries rely on.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

/// `t` as a record writes it.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A system time as a record writes it.
pub fn of(t: SystemTime) -> String {
    format(DateTime::<Utc>::from(t))
}

/// Now, as a record writes it.
pub fn now() -> String {
    format(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_that_sorts_as_text() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_750_999_123_456);
        assert_eq!(of(t), "2025-12-03T08:36:39.123456Z");
        assert!(of(t) < of(t + std::time::Duration::from_micros(1)));
        assert_eq!(now().len(), of(t).len());
    }
}
