//! What the review UI and API read and write: the filtered verdict list with
//! keyset paging (fast however many verdicts are stored), one verdict with
//! the standard it was judged against and its reviews, and new reviews.
//!
//! Every value from a request is bound as a parameter; the only SQL built at
//! run time is the choice among fixed fragments with numbered placeholders.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::accounts::User;
use crate::{Store, StoreError};

/// Filters of the verdict list (all optional; empty strings are ignored).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Filter {
    pub station: String,
    pub camera: String,
    pub recipe: String,
    /// PASS, FAIL or REVIEW.
    pub decision: String,
    /// Decided at or after (RFC 3339 or YYYY-MM-DD).
    pub from: String,
    /// Decided before (RFC 3339 or YYYY-MM-DD; a date means its end).
    pub to: String,
    /// Verdicts with at least one finding of this defect.
    pub defect: String,
    /// `yes`: reviewed at least once; `no`: never reviewed.
    pub reviewed: String,
    /// Paging cursor: the last row of the previous page.
    pub after: String,
    /// Rows per page (default 50, at most 200).
    pub limit: Option<i64>,
}

/// One row of the list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ListRow {
    pub id: String,
    pub station: String,
    pub camera: String,
    pub part_id: Option<String>,
    pub recipe: String,
    pub decision: String,
    pub confidence: f64,
    pub decided_at: String,
    pub findings: i64,
    /// The latest review's decision, if any.
    pub reviewed: Option<String>,
    /// The picture's sha256 while it is kept (for its thumbnail).
    pub image: Option<String>,
}

/// One page of the list.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub items: Vec<ListRow>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next: Option<String>,
}

/// A request that cannot be answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("no verdict `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn bound(s: &str, end_of_day: bool) -> Result<String, QueryError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(record::time::format(t.with_timezone(&chrono::Utc)));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        QueryError::Invalid(format!(
            "`{s}` is not a date; write 2026-11-29 or 2026-11-29T08:00:00Z"
        ))
    })?;
    let d = if end_of_day {
        d.succ_opt().unwrap_or(d)
    } else {
        d
    };
    Ok(format!("{d}T00:00:00.000000Z"))
}

/// The verdict list, newest first.
pub async fn list(store: &Store, f: &Filter) -> Result<Page, QueryError> {
    let limit = f.limit.unwrap_or(50).clamp(1, 200);
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let bind = |binds: &mut Vec<String>, v: String| {
        binds.push(v);
        format!("${}", binds.len())
    };
    for (col, v) in [
        ("v.station", &f.station),
        ("v.camera", &f.camera),
        ("v.recipe", &f.recipe),
    ] {
        if !v.is_empty() {
            let p = bind(&mut binds, v.clone());
            clauses.push(format!("{col} = {p}"));
        }
    }
    if !f.decision.is_empty() {
        if let Err(e) = f.decision.parse::<record::Decision>() {
            return Err(QueryError::Invalid(e.to_string()));
        }
        let p = bind(&mut binds, f.decision.clone());
        clauses.push(format!("v.decision = {p}"));
    }
    if !f.from.is_empty() {
        let p = bind(&mut binds, bound(&f.from, false)?);
        clauses.push(format!("v.decided_at >= {p}"));
    }
    if !f.to.is_empty() {
        let p = bind(&mut binds, bound(&f.to, true)?);
        clauses.push(format!("v.decided_at < {p}"));
    }
    if !f.defect.is_empty() {
        let p = bind(&mut binds, f.defect.clone());
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM findings fd WHERE fd.verdict_id = v.id AND fd.defect = {p})"
        ));
    }
    match f.reviewed.as_str() {
        "" => {}
        // `reviewed_at` is set with a verdict's first review (migration 0013).
        "yes" => clauses.push("v.reviewed_at IS NOT NULL".into()),
        "no" => clauses.push("v.reviewed_at IS NULL".into()),
        other => {
            return Err(QueryError::Invalid(format!(
                "reviewed `{other}`; allowed: yes, no"
            )))
        }
    }
    if !f.after.is_empty() {
        let (at, id) = f
            .after
            .split_once('|')
            .ok_or_else(|| QueryError::Invalid("`after` is not a paging cursor".into()))?;
        let (pa, pi) = (
            bind(&mut binds, at.to_string()),
            bind(&mut binds, id.to_string()),
        );
        // The first bound alone is what an index can start from (the OR
        // form is only a filter to PostgreSQL, which then read every newer
        // row: 2.1 s for a page deep in ten million); the OR decides ties.
        clauses.push(format!(
            "v.decided_at <= {pa} AND (v.decided_at < {pa} OR (v.decided_at = {pa} AND v.id < {pi}))"
        ));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit_p = format!("${}", binds.len() + 1);
    let sql = format!(
        "SELECT v.id, v.station, v.camera, v.part_id, v.recipe, v.decision, v.confidence, v.decided_at,
                (SELECT COUNT(*) FROM findings fc WHERE fc.verdict_id = v.id),
                (SELECT r.decision FROM reviews r WHERE r.verdict_id = v.id ORDER BY r.created_at DESC LIMIT 1),
                (SELECT i.sha256 FROM images i WHERE i.sha256 = v.image_sha256 AND i.deleted_at IS NULL AND i.path <> '')
           FROM verdicts v {filter}
          ORDER BY v.decided_at DESC, v.id DESC
          LIMIT {limit_p}"
    );
    // Only fixed fragments and numbered placeholders: values are bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.bind(limit + 1).fetch_all(store.pool()).await?;
    let mut items: Vec<ListRow> = rows
        .into_iter()
        .map(|r| ListRow {
            id: r.get(0),
            station: r.get(1),
            camera: r.get(2),
            part_id: r.get(3),
            recipe: r.get(4),
            decision: r.get(5),
            confidence: r.get(6),
            decided_at: r.get(7),
            findings: r.get(8),
            reviewed: r.get(9),
            image: r.get(10),
        })
        .collect();
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|r| format!("{}|{}", r.decided_at, r.id))
    } else {
        None
    };
    Ok(Page { items, next })
}

/// What the list's filters offer to pick from: the stations, cameras,
/// recipes and defect names verdicts have, sorted, at most
/// [`MAX_CHOICES`] each.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Choices {
    pub stations: Vec<String>,
    pub cameras: Vec<String>,
    pub recipes: Vec<String>,
    pub defects: Vec<String>,
}

/// The most values one filter offers.
pub const MAX_CHOICES: i64 = 200;

/// The distinct values of the indexed columns behind the filters. Each is
/// read as a loose index scan (the next value above the last, through the
/// index that leads with the column), so the cost grows with the number of
/// distinct values, not with the millions of verdicts.
pub async fn choices(store: &Store) -> Result<Choices, QueryError> {
    Ok(Choices {
        stations: stations(store).await?,
        cameras: distinct(store, "verdicts", "camera").await?,
        recipes: distinct(store, "verdicts", "recipe").await?,
        defects: distinct(store, "findings", "defect").await?,
    })
}

/// Every station with a verdict in the store (a plant's fleet).
pub async fn stations(store: &Store) -> Result<Vec<String>, QueryError> {
    distinct(store, "verdicts", "station").await
}

async fn distinct(
    store: &Store,
    table: &'static str,
    column: &'static str,
) -> Result<Vec<String>, QueryError> {
    let sql = format!(
        "WITH RECURSIVE seen(value) AS (
            SELECT MIN({column}) FROM {table}
            UNION ALL
            SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > seen.value)
              FROM seen WHERE seen.value IS NOT NULL
         )
         SELECT value FROM seen WHERE value IS NOT NULL LIMIT $1"
    );
    // Only the fixed table and column names above are formatted in.
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(MAX_CHOICES)
        .fetch_all(store.pool())
        .await?)
}

/// The operator's inbox: REVIEW verdicts nobody has reviewed, oldest first.
pub async fn inbox(store: &Store, limit: i64) -> Result<Vec<ListRow>, QueryError> {
    let rows = sqlx::query(
        "SELECT v.id, v.station, v.camera, v.part_id, v.recipe, v.decision, v.confidence, v.decided_at,
                (SELECT COUNT(*) FROM findings fc WHERE fc.verdict_id = v.id),
                (SELECT i.sha256 FROM images i WHERE i.sha256 = v.image_sha256 AND i.deleted_at IS NULL AND i.path <> '')
           FROM verdicts v
          WHERE v.decision = 'REVIEW' AND v.reviewed_at IS NULL
          ORDER BY v.decided_at, v.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ListRow {
            id: r.get(0),
            station: r.get(1),
            camera: r.get(2),
            part_id: r.get(3),
            recipe: r.get(4),
            decision: r.get(5),
            confidence: r.get(6),
            decided_at: r.get(7),
            findings: r.get(8),
            reviewed: None,
            image: r.get(9),
        })
        .collect())
}

/// A review as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Review {
    pub id: String,
    pub reviewer: String,
    pub decision: String,
    /// The reviewer kept the appliance's decision.
    pub agrees: bool,
    pub reason: String,
    pub corrections: Corrections,
    pub created_at: String,
}

/// What the reviewer corrected, finding by finding, and what was missed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Corrections {
    /// Indexes (into the verdict's findings) the reviewer says are wrong.
    pub wrong_findings: Vec<usize>,
    /// Defects the model missed, as boxes normalised to the frame.
    pub missed: Vec<Missed>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Missed {
    pub defect: String,
    pub box_norm: [f32; 4],
}

/// One verdict with everything its page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// The `verdict/v1` record as stored.
    pub verdict: serde_json::Value,
    /// The standard text this verdict was judged against.
    pub standard: String,
    /// Why the image file is gone, if it is.
    pub image_deleted: Option<String>,
    pub reviews: Vec<Review>,
}

pub async fn detail(store: &Store, id: &str) -> Result<Detail, QueryError> {
    let row = sqlx::query(
        "SELECT v.record, s.text, i.deleted_reason FROM verdicts v
           JOIN standard_versions s ON s.sha256 = v.standard_sha256
           LEFT JOIN images i ON i.sha256 = v.image_sha256
          WHERE v.id = $1",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| QueryError::NotFound(id.to_string()))?;
    let record: String = row.get(0);
    let verdict: serde_json::Value = serde_json::from_str(&record)
        .map_err(|e| QueryError::Invalid(format!("stored record of `{id}` is not JSON: {e}")))?;
    let reviews = sqlx::query(
        "SELECT id, reviewer, decision, agrees, reason, corrections, created_at FROM reviews
          WHERE verdict_id = $1 ORDER BY created_at",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?
    .into_iter()
    .map(|r| Review {
        id: r.get(0),
        reviewer: r.get(1),
        decision: r.get(2),
        agrees: r.get::<i64, _>(3) != 0,
        reason: r.get(4),
        corrections: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
        created_at: r.get(6),
    })
    .collect();
    Ok(Detail {
        verdict,
        standard: row.get(1),
        image_deleted: row.get(2),
        reviews,
    })
}

/// The longest defect name a reviewer may give (the model's own are a word
/// or two).
pub const MAX_DEFECT_NAME: usize = 64;
/// Missed defects one review may draw.
pub const MAX_MISSED: usize = 50;

/// A review as submitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    pub decision: String,
    pub reason: String,
    #[serde(default)]
    pub corrections: Corrections,
}

/// The schema every review message names (`schemas/review.v1.schema.json`).
pub const REVIEW_SCHEMA: &str = "review/v1";

/// A review as the MES learns of it on `{prefix}/{station}/review`: the
/// reviewed verdict, its decision as judged and as reviewed, who and why.
fn message(d: &Detail, review: &Review) -> serde_json::Value {
    let judged = d.verdict["decision"].clone();
    serde_json::json!({
        "schema": REVIEW_SCHEMA,
        "id": review.id,
        "verdict_id": d.verdict["id"],
        "station": d.verdict["station"]["station"],
        "camera": d.verdict["camera"],
        "part_id": d.verdict["part_id"],
        "judged": judged,
        "decision": review.decision,
        "overridden": judged != review.decision.as_str(),
        "agrees": review.agrees,
        "reviewer": review.reviewer,
        "reason": review.reason,
        "corrections": review.corrections,
        "reviewed_at": review.created_at,
    })
}

/// Records a review (never touching the verdict), keeps the verdict's
/// image as long as the retention allows reviewed images, and, with
/// `publish_to` (the review topic of the verdict's station), puts the
/// review message in that station's outbox in the same transaction (so the
/// MES learns of every override once committed, whatever the broker does
/// meanwhile; a plant server's review is published by the station).
pub async fn review(
    store: &Store,
    verdict_id: &str,
    who: &User,
    r: &NewReview,
    publish_to: Option<&(dyn Fn(&str) -> String + Send + Sync)>,
) -> Result<Review, QueryError> {
    if let Err(e) = r.decision.parse::<record::Decision>() {
        return Err(QueryError::Invalid(e.to_string()));
    }
    let reason = r.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(QueryError::Invalid(
            "a reason is required (at most 2,000 characters)".into(),
        ));
    }
    let d = detail(store, verdict_id).await?;
    let findings = d.verdict["findings"].as_array().map_or(0, |f| f.len());
    if let Some(bad) = r
        .corrections
        .wrong_findings
        .iter()
        .find(|i| **i >= findings)
    {
        return Err(QueryError::Invalid(format!(
            "finding {bad} does not exist; this verdict has {findings}"
        )));
    }
    if r.corrections.missed.len() > MAX_MISSED {
        return Err(QueryError::Invalid(format!(
            "at most {MAX_MISSED} missed defects per review"
        )));
    }
    for m in &r.corrections.missed {
        let [x0, y0, x1, y1] = m.box_norm;
        let inside = [x0, y0, x1, y1].iter().all(|v| (0.0..=1.0).contains(v));
        let name = m.defect.trim();
        if name.is_empty() || name.chars().count() > MAX_DEFECT_NAME {
            return Err(QueryError::Invalid(format!(
                "a missed defect needs a name of 1 to {MAX_DEFECT_NAME} characters"
            )));
        }
        if !inside || x1 <= x0 || y1 <= y0 {
            return Err(QueryError::Invalid(format!(
                "missed defect `{name}` needs a box x0<x1, y0<y1 within 0..1"
            )));
        }
    }
    let review = Review {
        id: uuid::Uuid::now_v7().to_string(),
        reviewer: who.name.clone(),
        decision: r.decision.clone(),
        agrees: d.verdict["decision"] == r.decision.as_str()
            && r.corrections == Corrections::default(),
        reason: reason.to_string(),
        corrections: r.corrections.clone(),
        created_at: record::time::now(),
    };
    let station = d.verdict["station"]["station"]
        .as_str()
        .unwrap_or(store.station())
        .to_string();
    let _in_order = store.outbox_writer().await;
    let mut tx = store.pool().begin().await?;
    store.order_outbox(&mut tx, &station).await?;
    sqlx::query(
        "INSERT INTO reviews (id, verdict_id, reviewer, decision, agrees, reason, corrections, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&review.id)
    .bind(verdict_id)
    .bind(&review.reviewer)
    .bind(&review.decision)
    .bind(review.agrees as i64)
    .bind(&review.reason)
    .bind(serde_json::to_string(&review.corrections).expect("corrections serialise"))
    .bind(&review.created_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE verdicts SET reviewed_at = $1 WHERE id = $2 AND reviewed_at IS NULL")
        .bind(&review.created_at)
        .bind(verdict_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE images SET retention_class = 'reviewed'
          WHERE sha256 = (SELECT image_sha256 FROM verdicts WHERE id = $1)",
    )
    .bind(verdict_id)
    .execute(&mut *tx)
    .await?;
    if let Some(topic_of) = publish_to {
        let payload = message(&d, &review).to_string();
        crate::enqueue(
            &mut tx,
            &station,
            verdict_id,
            &[(topic_of(&station), payload)],
            &review.created_at,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(review)
}
