//! Verdict months: the unit in which verdicts are stored and let go.
//!
//! A plant keeps years of verdicts. On PostgreSQL the tables of a verdict are
//! partitioned by month (migration 0011): each month's verdicts, findings,
//! shadow judgements and part verdicts sit in their own partitions, keyed by
//! the verdict's UUIDv7 id, whose text sorts by the millisecond it was made.
//! This module creates the coming months' partitions before they are needed
//! and, under `[storage] verdict_months`, drops the months that have aged
//! out, whole, with their reviews, their published outbox rows and the
//! pictures no kept verdict shows. On SQLite (one station) the same months
//! are deleted as rows, by the same id ranges.
//!
//! Several processes may share one database (stations and a plant server):
//! each change of partitions takes one advisory lock, so they never race.

use chrono::{DateTime, Datelike, TimeZone, Utc};
// Table and partition names cannot be bound as parameters: every SQL text
// built here is made only of the names in `TABLES`, numbers of a `Month`
// and hex digits of its bounds, never of anything read from outside.
use sqlx::{AssertSqlSafe, Row};

use crate::{Backend, Store, StoreError};

/// The tables partitioned by month and the column holding the verdict's id,
/// in the order they are dropped (those that reference `verdicts` first).
const TABLES: [(&str, &str); 4] = [
    ("shadow_verdicts", "verdict_id"),
    ("findings", "verdict_id"),
    ("part_verdicts", "id"),
    ("verdicts", "id"),
];

/// Key of the PostgreSQL advisory lock held while partitions change.
const LOCK: i64 = 0x7665_7264_6d6f; // "verdmo"

/// Rows deleted per statement where rows, not partitions, go.
const CHUNK: i64 = 5000;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    pub fn of(t: DateTime<Utc>) -> Self {
        Self {
            year: t.year(),
            month: t.month(),
        }
    }

    pub fn next(self) -> Self {
        self.plus(1)
    }

    /// The month `n` months later (earlier when negative).
    pub fn plus(self, n: i32) -> Self {
        let index = self.year * 12 + self.month as i32 - 1 + n;
        Self {
            year: index.div_euclid(12),
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// Midnight UTC on the first day.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("the first of a month at midnight UTC exists")
    }

    /// The smallest UUIDv7 text of the month's first millisecond: every id
    /// minted in the month sorts at or after it and before the next month's.
    pub fn first_id(self) -> String {
        let ms = self.start().timestamp_millis() as u64;
        format!(
            "{:08x}-{:04x}-0000-0000-000000000000",
            ms >> 16,
            ms & 0xffff
        )
    }

    /// The partition of `table` that holds this month: `verdicts_2026_12`.
    pub fn partition(self, table: &str) -> String {
        format!("{table}_{:04}_{:02}", self.year, self.month)
    }

    /// The month of a partition's name, if it is one of ours.
    fn of_partition(table: &str, name: &str) -> Option<Self> {
        let rest = name.strip_prefix(table)?.strip_prefix('_')?;
        let (y, m) = rest.split_once('_')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let month = Self {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        (1..=12).contains(&month.month).then_some(month)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ensured {
    /// Months whose partitions were created now.
    pub created: Vec<Month>,
    /// Months left in the default partition because it already holds some of
    /// their rows (written before the month had partitions); they are let go
    /// row by row at retention like everything else there.
    pub left_in_default: Vec<Month>,
}

/// Creates the partitions of every month from `from` to `to` (inclusive)
/// that do not exist yet. PostgreSQL only; nothing to do on SQLite.
pub async fn ensure(store: &Store, from: Month, to: Month) -> Result<Ensured, StoreError> {
    let mut done = Ensured::default();
    if store.backend() != Backend::Postgres {
        return Ok(done);
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await?;
    let existing = partitions_in(&mut tx, "verdicts").await?;
    let mut month = from;
    while month <= to {
        if !existing.contains(&month) {
            let (lo, hi) = (month.first_id(), month.next().first_id());
            // A default partition holding rows of the month would make the
            // new partition's bounds a lie: PostgreSQL refuses, and so do we.
            let mut in_default = false;
            for (table, key) in TABLES {
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM {table}_default WHERE {key} >= $1 AND {key} < $2)"
                );
                let any: bool = sqlx::query_scalar(AssertSqlSafe(sql))
                    .bind(&lo)
                    .bind(&hi)
                    .fetch_one(&mut *tx)
                    .await?;
                in_default |= any;
            }
            if in_default {
                done.left_in_default.push(month);
            } else {
                // Parents before children is not needed for partitions: each
                // table's partition is independent of the others'.
                for (table, _) in TABLES {
                    let sql = format!(
                        "CREATE TABLE {} PARTITION OF {table} FOR VALUES FROM ('{lo}') TO ('{hi}')",
                        month.partition(table)
                    );
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
                }
                done.created.push(month);
            }
        }
        month = month.next();
    }
    tx.commit().await?;
    Ok(done)
}

/// The months of `table`'s partitions (the default partition is not one).
async fn partitions_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
) -> Result<Vec<Month>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
          WHERE p.relname = $1",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    let mut months: Vec<Month> = names
        .iter()
        .filter_map(|n| Month::of_partition(table, n))
        .collect();
    months.sort();
    Ok(months)
}

/// The months that have partitions now, oldest first (empty on SQLite).
pub async fn stored(store: &Store) -> Result<Vec<Month>, StoreError> {
    if store.backend() != Backend::Postgres {
        return Ok(Vec::new());
    }
    let mut tx = store.pool().begin().await?;
    let months = partitions_in(&mut tx, "verdicts").await?;
    tx.commit().await?;
    Ok(months)
}

/// What [`let_go`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetGo {
    /// Month partitions dropped (PostgreSQL).
    pub months_dropped: Vec<Month>,
    /// Verdicts deleted as rows (SQLite, or PostgreSQL's default partition).
    pub verdict_rows_deleted: u64,
    pub reviews_deleted: u64,
    /// Image rows removed because no kept verdict shows them (their files and
    /// thumbnails too, where they are this store's to delete).
    pub images_removed: u64,
    pub outbox_rows_deleted: u64,
}

/// Lets go of every verdict made before `keep_from` began: on PostgreSQL the
/// month partitions before it are dropped whole (their reviews first) and
/// older rows in the default partitions deleted; on SQLite the rows are
/// deleted. Then the published outbox rows of those verdicts go, and the
/// image rows that no kept verdict shows (made before the cut), with their
/// files where this store keeps them (only rows older than a day: a newer
/// one may be a picture whose verdict is being committed).
pub async fn let_go(
    store: &Store,
    keep_from: Month,
    now: DateTime<Utc>,
) -> Result<LetGo, StoreError> {
    let mut report = LetGo::default();
    let cut = keep_from.first_id();
    if store.backend() == Backend::Postgres {
        let mut tx = store.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK)
            .execute(&mut *tx)
            .await?;
        for month in partitions_in(&mut tx, "verdicts").await? {
            if month >= keep_from {
                continue;
            }
            report.reviews_deleted +=
                sqlx::query("DELETE FROM reviews WHERE verdict_id >= $1 AND verdict_id < $2")
                    .bind(month.first_id())
                    .bind(month.next().first_id())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            // Detaching checks that nothing still references the partition;
            // children go first, so nothing does.
            for (table, _) in TABLES {
                let name = month.partition(table);
                let sql = format!("ALTER TABLE {table} DETACH PARTITION {name}; DROP TABLE {name}");
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
            }
            report.months_dropped.push(month);
        }
        tx.commit().await?;
    }
    // Rows before the cut outside any partition: everything on SQLite, the
    // default partitions on PostgreSQL (the partitions left are all newer).
    loop {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM verdicts WHERE id < $1 ORDER BY id LIMIT $2")
                .bind(&cut)
                .bind(CHUNK)
                .fetch_all(store.pool())
                .await?;
        let Some(last) = ids.last() else { break };
        let mut tx = store.pool().begin().await?;
        for sql in [
            "DELETE FROM shadow_verdicts WHERE verdict_id >= $1 AND verdict_id <= $2",
            "DELETE FROM findings WHERE verdict_id >= $1 AND verdict_id <= $2",
        ] {
            sqlx::query(sql)
                .bind(&ids[0])
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        report.reviews_deleted +=
            sqlx::query("DELETE FROM reviews WHERE verdict_id >= $1 AND verdict_id <= $2")
                .bind(&ids[0])
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        report.verdict_rows_deleted +=
            sqlx::query("DELETE FROM verdicts WHERE id >= $1 AND id <= $2")
                .bind(&ids[0])
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
    }
    sqlx::query("DELETE FROM part_verdicts WHERE id < $1")
        .bind(&cut)
        .execute(store.pool())
        .await?;
    // The rest reads whole tables: only when verdicts did go.
    if !report.months_dropped.is_empty() || report.verdict_rows_deleted > 0 {
        report.outbox_rows_deleted =
            sqlx::query("DELETE FROM outbox WHERE published_at IS NOT NULL AND verdict_id < $1")
                .bind(&cut)
                .execute(store.pool())
                .await?
                .rows_affected();
        report.images_removed =
            remove_unshown_images(store, now - chrono::Duration::days(1)).await?;
    }
    Ok(report)
}

/// Removes the image rows made before `before` that no verdict shows any
/// more: their file and thumbnail are deleted when they lie in this store's
/// data folder; a picture kept on another station's disk keeps its row until
/// that station's own retention has deleted the file.
async fn remove_unshown_images(store: &Store, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let before = record::time::format(before);
    let mut removed = 0;
    let mut after = String::new();
    loop {
        let rows = sqlx::query(
            "SELECT sha256, path, deleted_at FROM images i
              WHERE created_at < $1 AND sha256 > $2
                AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.image_sha256 = i.sha256)
              ORDER BY sha256 LIMIT $3",
        )
        .bind(&before)
        .bind(&after)
        .bind(CHUNK)
        .fetch_all(store.pool())
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for r in rows {
            let sha256: String = r.get(0);
            let path: String = r.get(1);
            let deleted_at: Option<String> = r.get(2);
            let ours =
                !path.is_empty() && std::path::Path::new(&path).starts_with(store.data_dir());
            if deleted_at.is_none() && !ours && !path.is_empty() {
                continue;
            }
            if ours {
                for file in [
                    std::path::PathBuf::from(&path),
                    store.thumbnail_file(&sha256),
                ] {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(StoreError::File { path: file, source }),
                    }
                }
            }
            removed += sqlx::query("DELETE FROM images WHERE sha256 = $1")
                .bind(&sha256)
                .execute(store.pool())
                .await?
                .rows_affected();
        }
    }
    Ok(removed)
}

/// The store's routine at start and at each retention sweep: the current
/// month and the next two have partitions (so a station that runs for weeks
/// never writes into the default partition) and, when `keep_months` is set,
/// everything older than that many months before the current one goes.
pub async fn maintain(
    store: &Store,
    now: DateTime<Utc>,
    keep_months: u32,
) -> Result<(Ensured, Option<LetGo>), StoreError> {
    let this = Month::of(now);
    let ensured = ensure(store, this, this.plus(2)).await?;
    let let_go = if keep_months > 0 {
        Some(let_go(store, this.plus(-(keep_months as i32)), now).await?)
    } else {
        None
    };
    Ok((ensured, let_go))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_across_years() {
        let dec = Month {
            year: 2026,
            month: 12,
        };
        assert_eq!(
            dec.next(),
            Month {
                year: 2027,
                month: 1
            }
        );
        assert_eq!(
            dec.plus(-12),
            Month {
                year: 2025,
                month: 12
            }
        );
        assert_eq!(dec.plus(-24).plus(24), dec);
        assert_eq!(dec.to_string(), "2026-12");
    }

    #[test]
    fn every_id_minted_in_a_month_sorts_inside_its_bounds() {
        let month = Month {
            year: 2026,
            month: 12,
        };
        let (lo, hi) = (month.first_id(), month.next().first_id());
        for t in [
            month.start(),
            month.start() + chrono::Duration::days(17),
            month.next().start() - chrono::Duration::milliseconds(1),
        ] {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                t.timestamp() as u64,
                t.timestamp_subsec_nanos(),
            );
            let id = uuid::Uuid::new_v7(ts).to_string();
            assert!(lo <= id && id < hi, "{lo} <= {id} < {hi}");
        }
        let before = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            month.start().timestamp() as u64 - 1,
            999_000_000,
        ))
        .to_string();
        assert!(before < lo);
    }

    #[test]
    fn partition_names_read_back() {
        let m = Month {
            year: 2027,
            month: 3,
        };
        assert_eq!(m.partition("findings"), "findings_2027_03");
        assert_eq!(Month::of_partition("findings", "findings_2027_03"), Some(m));
        assert_eq!(Month::of_partition("findings", "findings_default"), None);
        assert_eq!(Month::of_partition("verdicts", "findings_2027_03"), None);
    }
}
