//! Shadow mode's records: a candidate model's judgement of each frame the
//! running model judged, the agreement per candidate, and the frames where
//! the two disagree, with the operators' standing decision where one was
//! reviewed (so the panel can say which model the people on the line side
//! with). Nothing here is ever published.

use record::{Decision, ShadowVerdict, Verdict};
use sqlx::Row;

use crate::{Store, StoreError};

/// One candidate's record on this station, from its shadow rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSummary {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// Frames both models judged.
    pub compared: i64,
    /// Of those, frames with the same decision.
    pub agreed: i64,
    /// Disagreements an operator reviewed, siding with the candidate.
    pub candidate_upheld: i64,
    /// Disagreements an operator reviewed, siding with the running model.
    pub running_upheld: i64,
    /// First and last frame compared (RFC 3339, UTC).
    pub first: String,
    pub last: String,
}

impl CandidateSummary {
    /// Agreed over compared, 0..1 (`None` before the first frame).
    pub fn agreement(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64)
    }
}

/// A frame the two models judged differently.
#[derive(Debug, Clone)]
pub struct Disagreement {
    /// The published verdict (the running model's).
    pub running: Verdict,
    pub candidate: ShadowVerdict,
    /// The latest review's decision, when the frame was reviewed.
    pub standing: Option<Decision>,
}

/// The latest review's decision for the shadow row `s` (a macro, so that
/// the queries stay literal SQL).
macro_rules! standing {
    () => {
        "(SELECT r.decision FROM reviews r WHERE r.verdict_id = s.verdict_id
          ORDER BY r.created_at DESC LIMIT 1)"
    };
}

/// Stores the candidate's judgement of one frame (after its verdict was
/// committed).
pub async fn record(store: &Store, s: &ShadowVerdict) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO shadow_verdicts (verdict_id, station, candidate_name, candidate_version,
            candidate_sha256, decision, running_decision, agrees, inference_ms, judged_at, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&s.verdict_id)
    .bind(&s.station)
    .bind(&s.candidate.name)
    .bind(&s.candidate.version)
    .bind(&s.candidate.sha256)
    .bind(s.decision.as_str())
    .bind(s.running_decision.as_str())
    .bind(i64::from(s.agrees()))
    .bind(s.inference_ms)
    .bind(&s.judged_at)
    .bind(serde_json::to_string(s).expect("a shadow verdict serialises"))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Every candidate this station compared, the latest first.
pub async fn summaries(store: &Store) -> Result<Vec<CandidateSummary>, StoreError> {
    let sql = concat!(
        "SELECT s.candidate_sha256, MIN(s.candidate_name), MIN(s.candidate_version),
            COUNT(*), COUNT(CASE WHEN s.agrees = 1 THEN 1 END),
            COUNT(CASE WHEN s.agrees = 0 AND ",
        standing!(),
        " = s.decision THEN 1 END),
            COUNT(CASE WHEN s.agrees = 0 AND ",
        standing!(),
        " = s.running_decision THEN 1 END),
            MIN(s.judged_at), MAX(s.judged_at)
         FROM shadow_verdicts s WHERE s.station = $1
         GROUP BY s.candidate_sha256 ORDER BY MAX(s.judged_at) DESC"
    );
    let rows = sqlx::query(sql)
        .bind(store.station())
        .fetch_all(store.pool())
        .await?;
    Ok(rows
        .iter()
        .map(|r| CandidateSummary {
            sha256: r.get(0),
            name: r.get(1),
            version: r.get(2),
            compared: r.get(3),
            agreed: r.get(4),
            candidate_upheld: r.get(5),
            running_upheld: r.get(6),
            first: r.get(7),
            last: r.get(8),
        })
        .collect())
}

/// The latest `limit` frames the candidate `sha256` judged differently
/// from the running model, newest first.
pub async fn disagreements(
    store: &Store,
    sha256: &str,
    limit: i64,
) -> Result<Vec<Disagreement>, StoreError> {
    let sql = concat!(
        "SELECT v.record, s.record, ",
        standing!(),
        " FROM shadow_verdicts s JOIN verdicts v ON v.id = s.verdict_id
         WHERE s.station = $1 AND s.candidate_sha256 = $2 AND s.agrees = 0
         ORDER BY s.judged_at DESC, s.verdict_id DESC LIMIT $3"
    );
    let rows = sqlx::query(sql)
        .bind(store.station())
        .bind(sha256)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let running = serde_json::from_str(r.get::<&str, _>(0)).ok()?;
            let candidate = serde_json::from_str(r.get::<&str, _>(1)).ok()?;
            let standing: Option<String> = r.get(2);
            Some(Disagreement {
                running,
                candidate,
                standing: standing.and_then(|d| d.parse().ok()),
            })
        })
        .collect())
}

/// The candidate's judgement of the frame of verdict `id`, if one was made.
pub async fn of_verdict(store: &Store, id: &str) -> Result<Option<ShadowVerdict>, StoreError> {
    let record: Option<String> =
        sqlx::query_scalar("SELECT record FROM shadow_verdicts WHERE verdict_id = $1")
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    Ok(record.and_then(|r| serde_json::from_str(&r).ok()))
}
