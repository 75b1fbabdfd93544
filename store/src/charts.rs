//! What the charts page is drawn from: verdicts per hour by decision, the
//! latency per hour (capture to publish, median and p95) and the defect
//! Pareto (which defects cause most rejects).

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{Store, StoreError};

/// One hour of verdicts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hour {
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    pub pass: i64,
    pub fail: i64,
    pub review: i64,
    /// Capture to publish, milliseconds, when any verdict of the hour was published.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

/// What the charts page shows.
#[derive(Debug, Clone, Default)]
pub struct Charts {
    pub hours: Vec<Hour>,
    /// Defects of violated clauses, most frequent first.
    pub pareto: Vec<(String, i64)>,
}

fn ms_between(a: &str, b: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    Some((b - a).num_microseconds()? as f64 / 1e3)
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// The last `hours` hours up to now.
pub async fn load(store: &Store, hours: i64) -> Result<Charts, StoreError> {
    let since = record::time::format(chrono::Utc::now() - chrono::Duration::hours(hours));
    let mut by_hour: BTreeMap<String, Hour> = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT substr(decided_at, 1, 13), decision, COUNT(*) FROM verdicts
          WHERE decided_at >= $1 GROUP BY substr(decided_at, 1, 13), decision",
    )
    .bind(&since)
    .fetch_all(store.pool())
    .await?;
    for r in rows {
        let hour: String = r.get(0);
        let decision: String = r.get(1);
        let n: i64 = r.get(2);
        let h = by_hour.entry(hour.clone()).or_insert_with(|| Hour {
            hour,
            ..Default::default()
        });
        match decision.as_str() {
            "PASS" => h.pass = n,
            "FAIL" => h.fail = n,
            _ => h.review = n,
        }
    }
    // Latency from the most recent published verdicts (bounded work).
    let rows = sqlx::query(
        "SELECT captured_at, published_at FROM verdicts
          WHERE decided_at >= $1 AND published_at IS NOT NULL
          ORDER BY decided_at DESC LIMIT 50000",
    )
    .bind(&since)
    .fetch_all(store.pool())
    .await?;
    let mut latencies: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let (captured, published): (String, String) = (r.get(0), r.get(1));
        if let Some(ms) = ms_between(&captured, &published) {
            latencies
                .entry(captured.get(..13).unwrap_or_default().to_string())
                .or_default()
                .push(ms);
        }
    }
    for (hour, mut v) in latencies {
        v.sort_by(f64::total_cmp);
        if let Some(h) = by_hour.get_mut(&hour) {
            h.latency_p50_ms = quantile(&v, 0.5);
            h.latency_p95_ms = quantile(&v, 0.95);
        }
    }
    let pareto = sqlx::query(
        "SELECT f.defect, COUNT(*) FROM findings f JOIN verdicts v ON v.id = f.verdict_id
          WHERE v.decided_at >= $1 AND f.clause IS NOT NULL
          GROUP BY f.defect ORDER BY COUNT(*) DESC, f.defect",
    )
    .bind(&since)
    .fetch_all(store.pool())
    .await?
    .into_iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
    .collect();
    Ok(Charts {
        hours: by_hour.into_values().collect(),
        pareto,
    })
}
