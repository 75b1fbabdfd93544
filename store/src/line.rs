//! What the line view shows from the database: the latest parts, and the
//! shift's counters (parts, PASS, FAIL, REVIEW, first-pass yield) since the
//! later of the shift's start and a supervisor's reset.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// The shift's counts, as first judged (reviews do not change them: the
/// yield is first-pass).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Counting since (RFC 3339).
    pub since: String,
    pub parts: i64,
    pub pass: i64,
    pub fail: i64,
    pub review: i64,
}

impl Tally {
    /// PASS over all parts judged, 0..1 (`None` before the first part).
    pub fn first_pass_yield(&self) -> Option<f64> {
        (self.parts > 0).then(|| self.pass as f64 / self.parts as f64)
    }
}

/// Counts this station's verdicts decided at or after `shift_start`, or
/// after the last reset if that is later.
pub async fn tally(store: &Store, shift_start: &str) -> Result<Tally, StoreError> {
    let reset: Option<String> =
        sqlx::query_scalar("SELECT MAX(at) FROM shift_resets WHERE station = $1")
            .bind(store.station())
            .fetch_one(store.pool())
            .await?;
    let since = match reset {
        Some(r) if r.as_str() > shift_start => r,
        _ => shift_start.to_string(),
    };
    let rows = sqlx::query(
        "SELECT decision, COUNT(*) FROM verdicts WHERE station = $1 AND decided_at >= $2
         GROUP BY decision",
    )
    .bind(store.station())
    .bind(&since)
    .fetch_all(store.pool())
    .await?;
    let mut t = Tally {
        since,
        ..Tally::default()
    };
    for r in rows {
        let n: i64 = r.get(1);
        match r.get::<String, _>(0).as_str() {
            "PASS" => t.pass += n,
            "FAIL" => t.fail += n,
            _ => t.review += n,
        }
        t.parts += n;
    }
    Ok(t)
}

/// Starts the counters again now (a supervisor's reset).
pub async fn reset(store: &Store, by: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO shift_resets (station, at, by_user) VALUES ($1, $2, $3)")
        .bind(store.station())
        .bind(record::time::now())
        .bind(by)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// This station's `n` latest verdicts, newest first.
pub async fn latest(store: &Store, n: i64) -> Result<Vec<record::Verdict>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT record FROM verdicts WHERE station = $1 ORDER BY decided_at DESC, id DESC LIMIT $2",
    )
    .bind(store.station())
    .bind(n)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counting_starts_at_the_later_of_the_shift_and_the_last_reset() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("l.db").display());
        let s = Store::open(&url, &dir.path().join("data")).await.unwrap();
        let shift = "2000-01-01T06:00:00.000000Z";
        assert_eq!(tally(&s, shift).await.unwrap().since, shift);
        reset(&s, "sam").await.unwrap();
        let t = tally(&s, shift).await.unwrap();
        assert!(t.since.as_str() > shift, "{t:?}");
        assert_eq!((t.parts, t.first_pass_yield()), (0, None));
        // A later shift start wins over an older reset.
        let later = "2999-01-01T06:00:00.000000Z";
        assert_eq!(tally(&s, later).await.unwrap().since, later);
    }
}
