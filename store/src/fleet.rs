//! What a plant server knows of each station from the shared database: its
//! last verdict, how many it decided in the last hour, and its outbox
//! backlog (messages committed but not yet acknowledged by the broker).
//! Each figure is read through an index on the station, so the fleet page
//! costs the same at ten million verdicts as at ten.

use crate::{Store, StoreError};

/// One station's figures from the database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StationFigures {
    pub station: String,
    /// When its latest verdict was decided (RFC 3339, UTC).
    pub last_verdict: Option<String>,
    /// Verdicts decided since `since`.
    pub recent: i64,
    /// Outbox messages not yet acknowledged by the broker.
    pub backlog: i64,
}

/// The figures of each of `stations` (verdicts counted since `since`).
pub async fn figures(
    store: &Store,
    stations: &[String],
    since: &str,
) -> Result<Vec<StationFigures>, StoreError> {
    let mut out = Vec::with_capacity(stations.len());
    for station in stations {
        let last: Option<String> =
            sqlx::query_scalar("SELECT MAX(decided_at) FROM verdicts WHERE station = $1")
                .bind(station)
                .fetch_one(store.pool())
                .await?;
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM verdicts WHERE station = $1 AND decided_at >= $2",
        )
        .bind(station)
        .bind(since)
        .fetch_one(store.pool())
        .await?;
        let backlog: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE station = $1 AND published_at IS NULL",
        )
        .bind(station)
        .fetch_one(store.pool())
        .await?;
        out.push(StationFigures {
            station: station.clone(),
            last_verdict: last,
            recent,
            backlog,
        });
    }
    Ok(out)
}
