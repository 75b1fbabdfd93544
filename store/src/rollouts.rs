//! Rollouts a plant server sent (`rollout/v1`), one row per message to a
//! station, with the station's answer once heard on its `cmd/reply`. The
//! latest row of a station is what it should be running: a new rollout
//! starts from it, so sending a standard keeps the model rolled out before.

use sqlx::Row;

use crate::{Store, StoreError};

/// A rollout sent, and how the station answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub rollout: record::Rollout,
    /// `Some(true)`: taken on; `Some(false)`: refused; `None`: no answer yet.
    pub answer_ok: Option<bool>,
    /// What changed, or why it was refused.
    pub answer: Option<String>,
    pub answered_at: Option<String>,
}

/// Records a rollout about to be published.
pub async fn record(store: &Store, r: &record::Rollout) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rollouts (id, station, payload, sent_by, sent_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.id)
    .bind(&r.station)
    .bind(serde_json::to_string(r).expect("a rollout serialises"))
    .bind(&r.sent_by)
    .bind(&r.sent_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Records a station's answer to rollout `id` (an answer to a rollout this
/// database does not know is ignored: another plant server's).
pub async fn answered(
    store: &Store,
    id: &str,
    ok: bool,
    answer: &str,
    at: &str,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE rollouts SET answer_ok = $1, answer = $2, answered_at = $3 WHERE id = $4",
    )
    .bind(ok as i64)
    .bind(answer)
    .bind(at)
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n > 0)
}

fn sent(row: &sqlx::any::AnyRow) -> Result<Sent, StoreError> {
    let payload: String = row.get(0);
    let rollout = serde_json::from_str(&payload)
        .map_err(|e| StoreError::Corrupt(format!("rollout payload: {e}")))?;
    let ok: Option<i64> = row.get(1);
    Ok(Sent {
        rollout,
        answer_ok: ok.map(|v| v != 0),
        answer: row.get(2),
        answered_at: row.get(3),
    })
}

/// The station's latest rollout: what it should be running.
pub async fn latest(store: &Store, station: &str) -> Result<Option<Sent>, StoreError> {
    let row = sqlx::query(
        "SELECT payload, answer_ok, answer, answered_at FROM rollouts
          WHERE station = $1 ORDER BY sent_at DESC, id DESC LIMIT 1",
    )
    .bind(station)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(sent).transpose()
}

/// The newest `limit` rollouts to any station.
pub async fn recent(store: &Store, limit: i64) -> Result<Vec<Sent>, StoreError> {
    let rows = sqlx::query(
        "SELECT payload, answer_ok, answer, answered_at FROM rollouts
          ORDER BY sent_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(sent).collect()
}
