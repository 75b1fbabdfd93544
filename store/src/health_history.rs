//! The health history in the store: a sample row per station every
//! `monitoring.history_every` (the panel's charts) and a row per alert,
//! reload, escalation and recovery (the panel's event list). Several
//! stations may share one PostgreSQL database; every row names its station.

use serde::Serialize;
use sqlx::Row;

use crate::Store;

/// One history row.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Sample {
    pub at: String,
    pub state: String,
    pub latency_p99: Option<f64>,
    pub latency_threshold: f64,
    pub context_loss: Option<f64>,
    pub context_loss_threshold: f64,
    pub consistency: Option<f64>,
    pub consistency_threshold: f64,
    /// Verdicts per second over the period.
    pub throughput: f64,
    /// p95 seconds from capture to queued, inference, decided, published.
    pub stage_p95: [Option<f64>; 4],
}

/// One self-healing event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub kind: String,
    pub figure: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub detail: String,
}

impl Event {
    pub fn new(
        kind: &str,
        figure: Option<&telemetry::health::Figure>,
        detail: impl Into<String>,
    ) -> Self {
        Event {
            at: record::time::now(),
            kind: kind.into(),
            figure: figure.map(|f| f.name.as_str().to_string()),
            value: figure.and_then(|f| f.value),
            threshold: figure.map(|f| f.threshold),
            detail: detail.into(),
        }
    }
}

pub async fn write_sample(store: &Store, s: &Sample) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO health_samples (station, at, state, latency_p99, latency_threshold, \
         context_loss, context_loss_threshold, consistency, consistency_threshold, throughput, \
         queued_p95, inference_p95, decided_p95, published_p95) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(store.station())
    .bind(&s.at)
    .bind(&s.state)
    .bind(s.latency_p99)
    .bind(s.latency_threshold)
    .bind(s.context_loss)
    .bind(s.context_loss_threshold)
    .bind(s.consistency)
    .bind(s.consistency_threshold)
    .bind(s.throughput)
    .bind(s.stage_p95[0])
    .bind(s.stage_p95[1])
    .bind(s.stage_p95[2])
    .bind(s.stage_p95[3])
    .execute(store.pool())
    .await?;
    Ok(())
}

pub async fn write_event(store: &Store, e: &Event) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO health_events (station, at, kind, figure, value, threshold, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(store.station())
    .bind(&e.at)
    .bind(&e.kind)
    .bind(e.figure.as_deref())
    .bind(e.value)
    .bind(e.threshold)
    .bind(&e.detail)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The station's samples from `since` (RFC 3339) on, oldest first.
pub async fn samples(store: &Store, since: &str) -> Result<Vec<Sample>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, state, latency_p99, latency_threshold, context_loss, context_loss_threshold, \
         consistency, consistency_threshold, throughput, queued_p95, inference_p95, decided_p95, \
         published_p95 FROM health_samples WHERE station = $1 AND at >= $2 ORDER BY at",
    )
    .bind(store.station())
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Sample {
                at: r.try_get(0)?,
                state: r.try_get(1)?,
                latency_p99: r.try_get(2)?,
                latency_threshold: r.try_get(3)?,
                context_loss: r.try_get(4)?,
                context_loss_threshold: r.try_get(5)?,
                consistency: r.try_get(6)?,
                consistency_threshold: r.try_get(7)?,
                throughput: r.try_get(8)?,
                stage_p95: [
                    r.try_get(9)?,
                    r.try_get(10)?,
                    r.try_get(11)?,
                    r.try_get(12)?,
                ],
            })
        })
        .collect()
}

/// The station's latest `limit` events, newest first.
pub async fn events(store: &Store, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, kind, figure, value, threshold, detail FROM health_events \
         WHERE station = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(store.station())
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                at: r.try_get(0)?,
                kind: r.try_get(1)?,
                figure: r.try_get(2)?,
                value: r.try_get(3)?,
                threshold: r.try_get(4)?,
                detail: r.try_get(5)?,
            })
        })
        .collect()
}

/// `(reviews, agreeing)` of this station's verdicts reviewed since `since`.
pub async fn review_agreement(store: &Store, since: &str) -> Result<(u64, u64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(r.agrees), 0) AS BIGINT) FROM reviews r \
         JOIN verdicts v ON v.id = r.verdict_id WHERE v.station = $1 AND r.created_at >= $2",
    )
    .bind(store.station())
    .bind(since)
    .fetch_one(store.pool())
    .await?;
    let (n, agreed): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    Ok((n as u64, agreed as u64))
}

/// Forgets samples and events older than `before`.
pub async fn prune(store: &Store, before: &str) -> Result<(), sqlx::Error> {
    for table in ["health_samples", "health_events"] {
        let sql = format!("DELETE FROM {table} WHERE station = $1 AND at < $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(store.station())
            .bind(before)
            .execute(store.pool())
            .await?;
    }
    Ok(())
}
