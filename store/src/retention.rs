//! Image retention: the data folder must not fill the station's disk, and
//! the pictures that matter most to reviewers and retraining (FAIL, REVIEW,
//! reviewed) must outlive the routine PASS ones.
//!
//! A sweep deletes image files by age (PASS after `max_age`, the others
//! after `keep_max_age`), then, while the kept images together exceed
//! `disk_quota`, the oldest PASS images and after them the oldest others.
//! The image row stays with `deleted_at` and `deleted_reason`, and so does
//! every verdict: only pictures are deleted here. Whole months of verdicts go
//! only under `verdict_months`, through [`crate::months`], at the same sweep.

use std::path::PathBuf;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::{Store, StoreError};

/// What retention keeps, from `[storage]`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Whether this process deletes picture files: a station does; a plant
    /// server, whose database lists pictures on the stations' disks, does not.
    pub pictures: bool,
    pub max_age: Duration,
    pub keep_max_age: Duration,
    pub disk_quota: u64,
    /// Whole months of verdicts kept before the current one; 0: all.
    pub verdict_months: u32,
}

impl Policy {
    /// A station's retention.
    pub fn from_config(s: &firmware_config::Storage) -> Self {
        Self {
            pictures: true,
            max_age: s.max_age,
            keep_max_age: s.keep_max_age,
            disk_quota: s.disk_quota.0,
            verdict_months: s.verdict_months,
        }
    }

    /// A plant server's: verdict months only, no picture files.
    pub fn plant(s: &firmware_config::Storage) -> Self {
        Self {
            pictures: false,
            ..Self::from_config(s)
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub deleted_for_age: u64,
    pub deleted_for_quota: u64,
    pub bytes_freed: u64,
    /// Bytes of image files still kept after the sweep.
    pub bytes_kept: u64,
    /// Month partitions made ready and months of verdicts let go.
    pub months: Option<(crate::months::Ensured, Option<crate::months::LetGo>)>,
}

/// Images deleted per query; a sweep loops until nothing is left to do.
const CHUNK: i64 = 500;

fn stamp(t: DateTime<Utc>) -> String {
    record::time::format(t)
}

/// Runs one sweep as of `now` (a parameter so tests can age the store).
pub async fn sweep(store: &Store, policy: Policy, now: DateTime<Utc>) -> Result<Sweep, StoreError> {
    let mut report = Sweep {
        months: Some(crate::months::maintain(store, now, policy.verdict_months).await?),
        ..Sweep::default()
    };
    if !policy.pictures {
        return Ok(report);
    }
    let pass_before = stamp(now - chrono::Duration::from_std(policy.max_age).unwrap_or_default());
    let keep_before =
        stamp(now - chrono::Duration::from_std(policy.keep_max_age).unwrap_or_default());
    loop {
        let rows = sqlx::query(
            "SELECT sha256, path, bytes FROM images
              WHERE deleted_at IS NULL
                AND ((retention_class = 'pass' AND created_at < $1)
                  OR (retention_class <> 'pass' AND created_at < $2))
              ORDER BY created_at LIMIT $3",
        )
        .bind(&pass_before)
        .bind(&keep_before)
        .bind(CHUNK)
        .fetch_all(store.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let bytes: i64 = r.get(2);
            delete(store, r.get(0), r.get(1), "age", now).await?;
            report.deleted_for_age += 1;
            report.bytes_freed += bytes as u64;
        }
    }
    let mut kept = bytes_kept(store).await?;
    while kept > policy.disk_quota {
        let rows = sqlx::query(
            "SELECT sha256, path, bytes FROM images WHERE deleted_at IS NULL
              ORDER BY CASE retention_class WHEN 'pass' THEN 0 ELSE 1 END, created_at
              LIMIT $1",
        )
        .bind(CHUNK)
        .fetch_all(store.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            if kept <= policy.disk_quota {
                break;
            }
            let bytes: i64 = r.get(2);
            delete(store, r.get(0), r.get(1), "disk quota", now).await?;
            report.deleted_for_quota += 1;
            report.bytes_freed += bytes as u64;
            kept = kept.saturating_sub(bytes as u64);
        }
    }
    report.bytes_kept = kept;
    Ok(report)
}

/// Logs a sweep that did something.
fn log(s: &Sweep) {
    if s.deleted_for_age + s.deleted_for_quota > 0 {
        tracing::info!(
            deleted_for_age = s.deleted_for_age,
            deleted_for_quota = s.deleted_for_quota,
            mib_freed = s.bytes_freed >> 20,
            mib_kept = s.bytes_kept >> 20,
            "retention sweep"
        );
    }
    let Some((ensured, let_go)) = &s.months else {
        return;
    };
    if !ensured.created.is_empty() {
        let months: Vec<String> = ensured.created.iter().map(ToString::to_string).collect();
        tracing::info!(months = %months.join(", "), "verdict partitions created");
    }
    if !ensured.left_in_default.is_empty() {
        let months: Vec<String> = ensured
            .left_in_default
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::warn!(months = %months.join(", "), "these months' verdicts stay in the default partition (some were written before it had its own)");
    }
    if let Some(g) = let_go {
        if !g.months_dropped.is_empty() || g.verdict_rows_deleted + g.images_removed > 0 {
            let months: Vec<String> = g.months_dropped.iter().map(ToString::to_string).collect();
            tracing::info!(
                months_dropped = %months.join(", "),
                verdict_rows_deleted = g.verdict_rows_deleted,
                reviews_deleted = g.reviews_deleted,
                images_removed = g.images_removed,
                outbox_rows_deleted = g.outbox_rows_deleted,
                "verdict retention"
            );
        }
    }
}

/// Total bytes of image files not yet deleted.
pub async fn bytes_kept(store: &Store) -> Result<u64, StoreError> {
    let total: Option<i64> =
        // SUM of a PostgreSQL BIGINT is NUMERIC: cast back for both databases.
        sqlx::query_scalar("SELECT CAST(SUM(bytes) AS BIGINT) FROM images WHERE deleted_at IS NULL")
            .fetch_one(store.pool())
            .await?;
    Ok(total.unwrap_or(0).max(0) as u64)
}

/// Deletes one image file (already gone is fine) and records why.
async fn delete(
    store: &Store,
    sha256: String,
    path: String,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let thumbnail = store.thumbnail_file(&sha256);
    for file in [PathBuf::from(path), thumbnail] {
        if file.as_os_str().is_empty() {
            continue;
        }
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::File { path: file, source }),
        }
    }
    sqlx::query("UPDATE images SET deleted_at = $1, deleted_reason = $2 WHERE sha256 = $3")
        .bind(stamp(now))
        .bind(reason)
        .bind(&sha256)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Sweeps at start and then every `every`, until `shutdown`; each sweep
/// that did something is logged.
pub async fn run(
    store: Store,
    policy: Policy,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match sweep(&store, policy, Utc::now()).await {
            Ok(s) => log(&s),
            Err(e) => tracing::error!(error = %e, "retention sweep failed; will retry"),
        }
    }
}
