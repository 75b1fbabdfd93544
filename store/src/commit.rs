//! Group commit: verdicts judged together are committed together.
//!
//! A verdict is committed with its outbox rows before anything is published
//! (see the crate's doc). Each transaction on the station's SQLite costs a
//! sync to disk, and through sqlx every statement is a round trip to the
//! database's own thread: two thread wake-ups each. A batch of eight frames
//! judged at once used to become eight transactions of seven or more
//! statements, one after another behind the commit lock; on a 2-core station
//! those wake-ups were a tenth of the CPU.
//!
//! Here a verdict joins a queue, and whoever next holds the commit lock
//! takes everything queued (up to [`GROUP_MAX`]) and writes it as one
//! transaction with one multi-row statement per table. Each caller still
//! returns only once its own verdict is durable, and verdicts keep their
//! queue order in the outbox. A group that fails is retried one verdict at
//! a time, so a bad verdict (a duplicate id, say) fails alone and the others
//! are stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use record::Verdict;

use crate::{now, placeholders, Store, StoreError};

/// Verdicts in one transaction at most.
pub const GROUP_MAX: usize = 32;

/// Rows in one multi-row statement at most: 11 columns a finding keeps the
/// bound values far below SQLite's (32,766) and PostgreSQL's (65,535) limits.
const ROWS_MAX: usize = 256;

/// A verdict waiting for its transaction.
struct Item {
    verdict: Verdict,
    standard_text: String,
    outbox: Vec<(String, String)>,
    source: Option<String>,
}

struct Queued {
    ticket: u64,
    item: Item,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The verdicts waiting for the commit lock, and what was committed.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: Mutex<Waiting>,
    verdicts: AtomicU64,
    transactions: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    next_ticket: u64,
    items: Vec<Queued>,
}

impl Queue {
    fn push(&self, item: Item, done: oneshot::Sender<Result<(), StoreError>>) -> u64 {
        let mut w = self.waiting.lock().expect("commit queue lock");
        w.next_ticket += 1;
        let ticket = w.next_ticket;
        w.items.push(Queued { ticket, item, done });
        ticket
    }

    /// The oldest waiting verdicts, at most [`GROUP_MAX`], and whether
    /// `ticket` is still waiting after them.
    fn take(&self, ticket: u64) -> (Vec<Queued>, bool) {
        let mut w = self.waiting.lock().expect("commit queue lock");
        let n = w.items.len().min(GROUP_MAX);
        let group: Vec<Queued> = w.items.drain(..n).collect();
        let left = w.items.iter().any(|q| q.ticket == ticket);
        (group, left)
    }

    fn withdraw(&self, ticket: u64) {
        let mut w = self.waiting.lock().expect("commit queue lock");
        w.items.retain(|q| q.ticket != ticket);
    }
}

/// Takes a caller's verdict back out of the queue if the caller goes away
/// before a group took it, so an abandoned commit is not done later behind
/// its back.
struct Withdraw<'a> {
    queue: &'a Queue,
    ticket: u64,
    armed: bool,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queue.withdraw(self.ticket);
        }
    }
}

/// Verdicts committed and the transactions they took, since the store was
/// opened (all clones of a store share them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommits {
    pub verdicts: u64,
    pub transactions: u64,
}

impl Store {
    /// Commits a verdict with its findings, image row, standard version,
    /// outbox messages and the identity of the file it judged (`source`,
    /// see [`Store::judged_from`]) in one transaction, usually shared with
    /// the verdicts committed beside it (see the module's doc). Returns once
    /// the verdict is durable; an error means it was not stored.
    pub async fn commit_verdict(
        &self,
        v: &Verdict,
        standard_text: &str,
        outbox: &[(String, String)],
        source: Option<&str>,
    ) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        let item = Item {
            verdict: v.clone(),
            standard_text: standard_text.to_string(),
            outbox: outbox.to_vec(),
            source: source.map(str::to_string),
        };
        let ticket = self.commits.push(item, done);
        let mut withdraw = Withdraw {
            queue: &self.commits,
            ticket,
            armed: true,
        };
        loop {
            let lock = self.commit_lock.clone().lock_owned().await;
            let (group, still_waiting) = self.commits.take(ticket);
            if !group.is_empty() {
                // The group runs to its end even if this caller goes away:
                // the others wait for it, and the lock goes with it.
                let store = self.clone();
                tokio::spawn(async move {
                    let _in_order = lock;
                    store.commit_group(group).await;
                });
            }
            if !still_waiting {
                break;
            }
        }
        withdraw.armed = false;
        committed.await.unwrap_or(Err(StoreError::CommitAbandoned))
    }

    /// Verdicts committed and transactions taken so far.
    pub fn group_commits(&self) -> GroupCommits {
        GroupCommits {
            verdicts: self.commits.verdicts.load(Ordering::Relaxed),
            transactions: self.commits.transactions.load(Ordering::Relaxed),
        }
    }

    async fn commit_group(&self, group: Vec<Queued>) {
        let items: Vec<&Item> = group.iter().map(|q| &q.item).collect();
        let result = self.write(&items).await;
        self.commits.transactions.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.commits
                    .verdicts
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for q in group {
                    let _ = q.done.send(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => {
                let _ = group.into_iter().next().map(|q| q.done.send(Err(e)));
            }
            Err(e) => {
                tracing::warn!(verdicts = group.len(), error = %e, "group commit failed; committing its verdicts one at a time");
                for q in group {
                    let result = self.write(&[&q.item]).await;
                    self.commits.transactions.fetch_add(1, Ordering::Relaxed);
                    if result.is_ok() {
                        self.commits.verdicts.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = q.done.send(result);
                }
            }
        }
    }

    /// One transaction for `items`, in their order.
    async fn write(&self, items: &[&Item]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut stations: Vec<&str> = items
            .iter()
            .map(|i| i.verdict.station.station.as_str())
            .collect();
        // Always in the same order, so two writers never wait for each other
        // the other way round.
        stations.sort_unstable();
        stations.dedup();
        for station in stations {
            self.order_outbox(&mut tx, station).await?;
        }
        let at = now();

        let mut standards: Vec<&Item> = Vec::new();
        for i in items {
            if !standards
                .iter()
                .any(|s| s.verdict.standard_sha256 == i.verdict.standard_sha256)
            {
                standards.push(i);
            }
        }
        for rows in standards.chunks(ROWS_MAX) {
            let sql = insert(
                "standard_versions (sha256, recipe, text, first_seen)",
                4,
                rows.len(),
                "ON CONFLICT (sha256) DO NOTHING",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for i in rows {
                q = q
                    .bind(&i.verdict.standard_sha256)
                    .bind(&i.verdict.recipe)
                    .bind(&i.standard_text)
                    .bind(&at);
            }
            q.execute(&mut *tx).await?;
        }

        let images = images(items, &at);
        for rows in images.chunks(ROWS_MAX) {
            // An image not kept (disk full) still gets its row, already
            // marked deleted with the reason, so its verdicts can say where
            // it went. Seen again, an image is only ever promoted to `keep`.
            let sql = insert(
                "images (sha256, path, bytes, width, height, retention_class, created_at, \
                 deleted_at, deleted_reason)",
                9,
                rows.len(),
                "ON CONFLICT (sha256) DO UPDATE SET retention_class = \
                 CASE WHEN excluded.retention_class = 'keep' THEN 'keep' ELSE images.retention_class END",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in rows {
                let v = r.verdict;
                q = q
                    .bind(&v.image.sha256)
                    .bind(&v.image.path)
                    .bind(v.image.bytes as i64)
                    .bind(v.image.width as i64)
                    .bind(v.image.height as i64)
                    .bind(r.class)
                    .bind(&at)
                    .bind(r.deleted_at)
                    .bind(v.image.not_kept.as_deref());
            }
            q.execute(&mut *tx).await?;
        }

        let records: Vec<String> = items
            .iter()
            .map(|i| serde_json::to_string(&i.verdict).expect("verdict serialises"))
            .collect();
        let rows: Vec<(&Item, &String)> = items.iter().copied().zip(&records).collect();
        for rows in rows.chunks(ROWS_MAX) {
            let sql = insert(
                "verdicts (id, station, camera, part_id, trigger_id, recipe, standard_sha256, \
                 decision, confidence, model_name, model_version, model_sha256, image_sha256, \
                 captured_at, decided_at, record, source)",
                17,
                rows.len(),
                "",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, record) in rows {
                let v = &i.verdict;
                q = q
                    .bind(&v.id)
                    .bind(&v.station.station)
                    .bind(&v.camera)
                    .bind(&v.part_id)
                    .bind(&v.trigger_id)
                    .bind(&v.recipe)
                    .bind(&v.standard_sha256)
                    .bind(v.decision.as_str())
                    .bind(v.confidence as f64)
                    .bind(&v.model.name)
                    .bind(&v.model.version)
                    .bind(&v.model.sha256)
                    .bind(&v.image.sha256)
                    .bind(&v.timings.captured_at)
                    .bind(&v.timings.decided_at)
                    .bind(*record)
                    .bind(i.source.as_deref());
            }
            q.execute(&mut *tx).await?;
        }

        let findings: Vec<(&Verdict, usize)> = items
            .iter()
            .flat_map(|i| (0..i.verdict.findings.len()).map(move |n| (&i.verdict, n)))
            .collect();
        for rows in findings.chunks(ROWS_MAX) {
            let sql = insert(
                "findings (verdict_id, idx, defect, x0, y0, x1, y1, size_mm, clause, clause_text, \
                 confidence)",
                11,
                rows.len(),
                "",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (v, n) in rows {
                let f = &v.findings[*n];
                q = q
                    .bind(&v.id)
                    .bind(*n as i64)
                    .bind(&f.defect)
                    .bind(f.box_norm[0] as f64)
                    .bind(f.box_norm[1] as f64)
                    .bind(f.box_norm[2] as f64)
                    .bind(f.box_norm[3] as f64)
                    .bind(f.size_mm as f64)
                    .bind(f.clause.map(|c| c as i64))
                    .bind(&f.clause_text)
                    .bind(f.confidence as f64);
            }
            q.execute(&mut *tx).await?;
        }

        // One statement's rows take their sequence numbers in the order
        // written, so the outbox keeps the queue's order.
        let outbox: Vec<(&Verdict, &(String, String))> = items
            .iter()
            .flat_map(|i| i.outbox.iter().map(move |m| (&i.verdict, m)))
            .collect();
        for rows in outbox.chunks(ROWS_MAX) {
            let sql = insert(
                "outbox (station, verdict_id, topic, payload, created_at)",
                5,
                rows.len(),
                "",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (v, (topic, payload)) in rows {
                q = q
                    .bind(&v.station.station)
                    .bind(&v.id)
                    .bind(topic)
                    .bind(payload)
                    .bind(&at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// One image row of a group: the first verdict that names the image, kept
/// (`keep`) if any verdict of the group was not a PASS. A multi-row upsert
/// may not name a row twice (PostgreSQL refuses it).
struct ImageRow<'a> {
    verdict: &'a Verdict,
    class: &'static str,
    deleted_at: Option<&'a str>,
}

fn images<'a>(items: &[&'a Item], at: &'a str) -> Vec<ImageRow<'a>> {
    let mut rows: Vec<ImageRow<'a>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for i in items {
        let v = &i.verdict;
        let class = match v.decision {
            record::Decision::Pass => "pass",
            _ => "keep",
        };
        match index.get(v.image.sha256.as_str()) {
            Some(&n) => {
                if class == "keep" {
                    rows[n].class = "keep";
                }
            }
            None => {
                index.insert(&v.image.sha256, rows.len());
                rows.push(ImageRow {
                    verdict: v,
                    class,
                    deleted_at: v.image.not_kept.as_ref().map(|_| at),
                });
            }
        }
    }
    rows
}

/// `INSERT INTO <table> VALUES ($1, …), (…) <tail>` for `rows` rows of
/// `columns` values each. Only this module's constant table and column
/// lists and numbered placeholders make up the text (hence `AssertSqlSafe`
/// where it is run); every value is bound.
fn insert(table: &str, columns: usize, rows: usize, tail: &str) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * columns, columns)))
        .collect();
    let mut sql = format!("INSERT INTO {table} VALUES {}", values.join(", "));
    if !tail.is_empty() {
        sql.push(' ');
        sql.push_str(tail);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn verdict(n: usize, image: &str, findings: usize, decision: &str) -> Verdict {
        let finding = serde_json::json!({
            "defect": "scratch", "box_norm": [0.1, 0.2, 0.3, 0.4], "box_px": [1, 2, 3, 4],
            "size_mm": 2.5, "clause": 1, "clause_label": "1",
            "clause_text": "No scratches.", "confidence": 0.9
        });
        serde_json::from_value(serde_json::json!({
            "schema": record::SCHEMA,
            "id": format!("verdict-{n:03}"),
            "station": {"site": "s", "line": "l", "station": "st-1"},
            "camera": "top", "part_id": null, "trigger_id": null, "frame_seq": n,
            "recipe": "housing", "standard_sha256": "ab".repeat(32),
            "decision": decision, "confidence": 0.9, "review_reason": null,
            "findings": vec![finding; findings],
            "model": {"name": "m", "version": "1", "sha256": "cd".repeat(32)},
            "timings": {"captured_at": "2026-12-07T10:00:00Z", "queued_at": "2026-12-07T10:00:00Z",
                        "decided_at": "2026-12-07T10:00:00Z", "published_at": null, "inference_ms": 1.0},
            "image": {"sha256": image, "path": "/x.png", "bytes": 1, "width": 2, "height": 2},
            "context_loss": 0.0
        }))
        .expect("a verdict")
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url, &dir.path().join("data"))
            .await
            .unwrap()
            .with_station("st-1");
        (dir, store)
    }

    /// Starts one commit per verdict while the commit lock is held, each
    /// queued before the next starts, then lets them go.
    async fn queued_then_released(
        store: &Store,
        verdicts: Vec<Verdict>,
    ) -> Vec<Result<(), StoreError>> {
        let held = store.outbox_writer().await;
        let mut tasks = Vec::new();
        for (n, v) in verdicts.into_iter().enumerate() {
            let committer = store.clone();
            tasks.push(tokio::spawn(async move {
                let outbox = [
                    ("verdict".to_string(), v.id.clone()),
                    ("result".to_string(), v.id.clone()),
                ];
                committer
                    .commit_verdict(&v, "1. No scratches.", &outbox, None)
                    .await
            }));
            while store.commits.waiting.lock().unwrap().items.len() <= n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(held);
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    }

    async fn count(store: &Store, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verdicts_queued_together_are_committed_in_few_transactions_and_in_order() {
        let (_dir, store) = store().await;
        let n = GROUP_MAX + 8;
        // Two verdicts share a picture: the first passed, the second failed.
        let verdicts: Vec<Verdict> = (0..n)
            .map(|i| match i {
                3 => verdict(i, "same", 0, "PASS"),
                4 => verdict(i, "same", 1, "FAIL"),
                _ => verdict(i, &format!("img-{i}"), i % 3, "PASS"),
            })
            .collect();
        let results = queued_then_released(&store, verdicts).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(
            store.group_commits(),
            GroupCommits {
                verdicts: n as u64,
                transactions: 2
            },
            "a full group of {GROUP_MAX}, then the rest"
        );
        assert_eq!(count(&store, "verdicts").await, n as i64);
        assert_eq!(count(&store, "images").await, n as i64 - 1);
        assert_eq!(count(&store, "standard_versions").await, 1);
        let findings: i64 = (0..n)
            .map(|i| {
                if i == 4 {
                    1
                } else if i == 3 {
                    0
                } else {
                    (i % 3) as i64
                }
            })
            .sum();
        assert_eq!(count(&store, "findings").await, findings);
        let class: String =
            sqlx::query_scalar("SELECT retention_class FROM images WHERE sha256 = 'same'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(
            class, "keep",
            "a picture that failed once in the group is kept"
        );
        let pending = store.pending(0, 1000).await.unwrap();
        let order: Vec<(String, String)> = pending
            .into_iter()
            .map(|r| (r.verdict_id, r.topic))
            .collect();
        let expected: Vec<(String, String)> = (0..n)
            .flat_map(|i| {
                let id = format!("verdict-{i:03}");
                [
                    (id.clone(), "verdict".to_string()),
                    (id, "result".to_string()),
                ]
            })
            .collect();
        assert_eq!(order, expected, "the outbox in the order the verdicts came");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_verdict_in_a_group_fails_alone() {
        let (_dir, store) = store().await;
        let first = verdict(1, "img-1", 0, "PASS");
        store
            .commit_verdict(&first, "1. No scratches.", &[], None)
            .await
            .unwrap();
        // The same id again, in the middle of a group.
        let verdicts = vec![
            verdict(2, "img-2", 1, "FAIL"),
            verdict(1, "img-9", 0, "PASS"),
            verdict(3, "img-3", 0, "PASS"),
        ];
        let results = queued_then_released(&store, verdicts).await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(results[1], Err(StoreError::Query(_))),
            "{:?}",
            results[1]
        );
        assert_eq!(count(&store, "verdicts").await, 3);
        assert_eq!(count(&store, "findings").await, 1);
        let ids: Vec<String> = sqlx::query_scalar("SELECT verdict_id FROM outbox ORDER BY seq")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(
            ids,
            ["verdict-002", "verdict-002", "verdict-003", "verdict-003"],
            "nothing of the refused verdict, the others in order"
        );
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE sha256 = 'img-9'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(kept, 0);
        assert_eq!(store.group_commits().verdicts, 3);
    }

    #[test]
    fn a_multi_row_insert_numbers_its_values_in_order() {
        assert_eq!(
            insert("t (a, b)", 2, 2, "ON CONFLICT (a) DO NOTHING"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(insert("t (a)", 1, 1, ""), "INSERT INTO t (a) VALUES ($1)");
    }
}
