//! The store: verdicts, findings, images, ingest errors and the MQTT outbox in
//! one database (SQLite in WAL mode on the station, or a central PostgreSQL
//! shared by many stations; the same queries on both), plus image files
//! under the data folder, content-addressed by sha256.
//!
//! A verdict and its outbox rows are committed in one transaction before
//! anything is published, so a crash can lose no verdict: what is committed
//! is eventually published, in order.
//!
//! Every SQL statement of the appliance lives in this crate, one module per
//! kind of record: this file (parts, images, ingest errors, the outbox),
//! `commit` (verdicts, committed in groups), [`reviews`] (the review list and corrections), [`accounts`]
//! (users, sessions, API tokens), [`retention`] (image clean-up),
//! [`health_history`] (the panel's samples and events), [`charts`] and
//! [`export`] (reviewed verdicts as training data), [`shadow`] (a candidate
//! model's judgements beside the running model's), [`fleet`] (each station's
//! figures for a plant server), [`months`] (monthly partitions on PostgreSQL
//! and letting whole months of verdicts go), [`rollouts`] (what a plant
//! server sent each station, and the answers).

pub mod accounts;
pub mod charts;
mod commit;
pub mod export;
pub mod fleet;
pub mod health_history;
pub mod line;
pub mod months;
pub mod retention;
pub mod reviews;
pub mod rollouts;
pub mod shadow;
pub mod throttle;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Row;

pub use commit::GroupCommits;

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "disk nearly full under {path}: {free} bytes free, {reserve} reserved (storage.min_free)"
    )]
    DiskFull {
        path: PathBuf,
        free: u64,
        reserve: u64,
    },
    #[error("unsupported database URL `{0}`; allowed: sqlite://FILE or postgres://USER@HOST/DB")]
    Unsupported(String),
    #[error("a stored record does not read back: {0}")]
    Corrupt(String),
    #[error("the commit holding this verdict stopped before it ended (it panicked); the verdict may not be stored")]
    CommitAbandoned,
}

/// An image written to the data folder.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub sha256: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub verdict_id: String,
    pub topic: String,
    pub payload: String,
    /// When the verdict's frame was captured; `None` for a part's rows.
    pub captured_at: Option<String>,
}

/// The database behind a store. Both run the same queries; the migrations
/// are twins that differ only in column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file on the station.
    Sqlite,
    /// A central database shared by many stations.
    Postgres,
}

/// Database plus image folder.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    data_dir: PathBuf,
    backend: Backend,
    /// Free bytes to leave on the data folder's disk (`storage.min_free`).
    min_free: u64,
    /// The station whose outbox this store drains (`with_station`).
    station: String,
    /// Held for the whole of each commit that writes outbox rows, so their
    /// sequence numbers are committed in order: PostgreSQL hands out
    /// identities at insert, and two transactions committing the other way
    /// round would let the drain's cursor pass a row that appears later.
    commit_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Verdicts waiting to be committed together ([`commit`]).
    commits: std::sync::Arc<commit::Queue>,
}

fn now() -> String {
    record::time::now()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::File {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // Unique per write: two frames with the same bytes may be stored at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.partial", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `path` as a URL path: every byte but letters, digits and `/-._~`
/// percent-encoded (sqlx decodes it back), so spaces, `#`, `?` and `%` in a
/// folder name survive the trip through URL parsing.
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Store {
    /// Opens (creating if needed) the database and runs migrations:
    /// `sqlite://FILE` (WAL, full sync, foreign keys) or
    /// `postgres://user@host/db` (the database must exist).
    pub async fn open(url: &str, data_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let open_err = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let (pool, backend) = if url.starts_with("sqlite:") {
            // A relative file is taken from the working folder; the URL given
            // to sqlx is absolute and percent-encoded, because sqlx parses it
            // as a URL first (`sqlite://a/b.db` would make `a` a host name).
            let file = firmware_config::sqlite_file(url, Path::new("."))
                .ok_or_else(|| StoreError::Unsupported(url.to_string()))?;
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::File {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            let pool = AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Per connection; WAL is a property of the file.
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })
                .connect(&format!("sqlite://{}?mode=rwc", url_path(&file)))
                .await
                .map_err(open_err)?;
            (pool, Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(open_err)?;
            (pool, Backend::Postgres)
        } else {
            return Err(StoreError::Unsupported(url.to_string()));
        };
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::File {
            path: data_dir.to_path_buf(),
            source,
        })?;
        // Absolute paths in records, whatever the working folder was.
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let store = Self {
            pool,
            data_dir,
            backend,
            min_free: 0,
            station: String::new(),
            commit_lock: Default::default(),
            commits: Default::default(),
        };
        // This month's partitions and the next two, so that the first
        // verdicts already land in their month (retention keeps it so).
        let this = months::Month::of(chrono::Utc::now());
        if let Err(e) = months::ensure(&store, this, this.plus(2)).await {
            tracing::warn!(error = %e, "could not create the coming months' partitions; verdicts go to the default partition until retention can");
        }
        Ok(store)
    }

    /// Scopes the outbox to one station (many can share a database).
    pub fn with_station(mut self, station: &str) -> Self {
        self.station = station.to_string();
        self
    }

    /// Leaves at least `bytes` free on the data folder's disk: an image that
    /// would eat into it is not written ([`StoreError::DiskFull`]).
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// Free bytes on the data folder's file system (for unprivileged users).
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        free_bytes(&self.data_dir).map_err(|source| StoreError::File {
            path: self.data_dir.clone(),
            source,
        })
    }

    /// The station whose outbox (and health history) this handle writes.
    pub fn station(&self) -> &str {
        &self.station
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The data folder (absolute): images, exports.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The verdict of the file `source` (its identity as the hot folder
    /// gives it) from `camera`, if one was committed.
    pub async fn judged_from(
        &self,
        camera: &str,
        source: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM verdicts WHERE camera = $1 AND source = $2 LIMIT 1")
                .bind(camera)
                .bind(source)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Writes image bytes under `images/ab/<sha256>.<ext>` (once per content),
    /// unless that would leave less than the reserved free space.
    pub fn put_image(&self, bytes: &[u8], ext: &str) -> Result<StoredImage, StoreError> {
        let sha = image_sha256(bytes);
        let path = self
            .data_dir
            .join("images")
            .join(&sha[..2])
            .join(format!("{sha}.{ext}"));
        if !path.exists() {
            if self.min_free > 0 {
                let free = self.free_bytes()?;
                if free < self.min_free + bytes.len() as u64 {
                    return Err(StoreError::DiskFull {
                        path: self.data_dir.clone(),
                        free,
                        reserve: self.min_free,
                    });
                }
            }
            write_atomically(&path, bytes)?;
        }
        Ok(StoredImage {
            sha256: sha,
            path,
            bytes: bytes.len() as u64,
        })
    }

    /// Held (with [`Store::order_outbox`] inside the transaction) by
    /// everything that commits outbox rows in this process.
    pub(crate) async fn outbox_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.commit_lock.lock().await
    }

    /// Orders the outbox writers of `station` across processes, for the
    /// same reason as the commit lock within one: on PostgreSQL a plant
    /// server's review and the station's verdicts write the same station's
    /// outbox, so each such transaction first takes a transaction-scoped
    /// advisory lock on the station (released at commit). SQLite writers
    /// are serialised already.
    pub(crate) async fn order_outbox(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        station: &str,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            let digest = Sha256::digest(station.as_bytes());
            let key = i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"));
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(key)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Stores a multi-view part verdict and its outbox rows in one transaction.
    pub async fn commit_part(
        &self,
        p: &record::PartVerdict,
        outbox: &[(String, String)],
    ) -> Result<(), StoreError> {
        let at = record::time::now();
        let _in_order = self.commit_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        self.order_outbox(&mut tx, &p.station).await?;
        sqlx::query(
            "INSERT INTO part_verdicts (id, station, part_id, decision, reason, views, missing, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.id)
        .bind(&p.station)
        .bind(&p.part_id)
        .bind(p.decision.as_str())
        .bind(&p.reason)
        .bind(serde_json::to_string(&p.views).expect("views serialise"))
        .bind(serde_json::to_string(&p.missing).expect("names serialise"))
        .bind(&p.decided_at)
        .execute(&mut *tx)
        .await?;
        enqueue(&mut tx, &p.station, &p.id, outbox, &at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records bytes that could not be judged (kept under `rejected/`).
    pub async fn record_ingest_error(
        &self,
        station: &str,
        camera: &str,
        source: &str,
        reason: &str,
        bytes: &[u8],
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let kept = if bytes.is_empty() {
            None
        } else {
            let path = self.data_dir.join("rejected").join(format!("{id}.bin"));
            write_atomically(&path, bytes)?;
            Some(path.display().to_string())
        };
        sqlx::query(
            "INSERT INTO ingest_errors (id, station, camera, source, reason, bytes, kept_path, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(station)
        .bind(camera)
        .bind(source)
        .bind(reason)
        .bind(bytes.len() as i64)
        .bind(kept)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Unpublished outbox rows after `after_seq`, oldest first.
    pub async fn pending(&self, after_seq: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.seq, o.verdict_id, o.topic, o.payload, v.captured_at
               FROM outbox o LEFT JOIN verdicts v ON v.id = o.verdict_id
              WHERE o.published_at IS NULL AND o.station = $1 AND o.seq > $2
              ORDER BY o.seq LIMIT $3",
        )
        .bind(&self.station)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxRow {
                seq: r.get(0),
                verdict_id: r.get(1),
                topic: r.get(2),
                payload: r.get(3),
                captured_at: r.get(4),
            })
            .collect())
    }

    /// Where the kept picture with content address `sha256` lies; `None`
    /// when no such picture is kept (never stored, not kept, or deleted by
    /// retention).
    /// Where the review pages keep the small picture they made of image
    /// `sha256` (made on first request; retention deletes it with the image).
    pub fn thumbnail_file(&self, sha256: &str) -> PathBuf {
        self.data_dir.join("thumbs").join(format!("{sha256}.jpg"))
    }

    pub async fn image_file(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT path FROM images WHERE sha256 = $1 AND deleted_at IS NULL AND path <> ''",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Messages waiting for the broker: how many, and since when.
    pub async fn backlog(&self) -> Result<Backlog, StoreError> {
        let (pending, oldest): (i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE published_at IS NULL AND station = $1",
        )
        .bind(&self.station)
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog { pending, oldest })
    }

    /// Marks outbox rows acknowledged by the broker (and their verdicts
    /// published), all in one transaction: two statements for every
    /// [`MARK_MAX`] rows, not two per row.
    pub async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        for seqs in seqs.chunks(MARK_MAX) {
            let list = placeholders(2, seqs.len());
            let sql = format!("UPDATE outbox SET published_at = $1 WHERE seq IN ({list})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&at);
            for seq in seqs {
                q = q.bind(seq);
            }
            q.execute(&mut *tx).await?;
            let sql = format!(
                "UPDATE verdicts SET published_at = $1 WHERE published_at IS NULL
                   AND id IN (SELECT verdict_id FROM outbox WHERE seq IN ({list}))"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&at);
            for seq in seqs {
                q = q.bind(seq);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Outbox rows marked by one statement at most.
const MARK_MAX: usize = 500;

/// `$first, $first+1, …`: `n` numbered placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The content address of an image.
pub fn image_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by
    // statvfs before it is read (only when it returns 0).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The outbox rows not yet acknowledged by the broker.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Backlog {
    pub pending: i64,
    /// When the oldest waiting row was committed (RFC 3339).
    pub oldest: Option<String>,
}

/// Adds outbox rows for one record inside its transaction.
pub(crate) async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    station: &str,
    record_id: &str,
    outbox: &[(String, String)],
    at: &str,
) -> Result<(), StoreError> {
    for (topic, payload) in outbox {
        sqlx::query(
            "INSERT INTO outbox (station, verdict_id, topic, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(station)
        .bind(record_id)
        .bind(topic)
        .bind(payload)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_image_stored_at_once_by_many_frames_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url, &dir.path().join("data")).await.unwrap();
        let bytes = Arc::new(vec![7u8; 200_000]);
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (store, bytes) = (store.clone(), bytes.clone());
                std::thread::spawn(move || store.put_image(&bytes, "png"))
            })
            .collect();
        let stored: Vec<StoredImage> = writers
            .into_iter()
            .map(|w| w.join().unwrap().expect("every concurrent write succeeds"))
            .collect();
        assert!(stored.iter().all(|s| s.path == stored[0].path));
        assert_eq!(std::fs::read(&stored[0].path).unwrap(), *bytes);
        let folder = stored[0].path.parent().unwrap();
        assert_eq!(
            std::fs::read_dir(folder).unwrap().count(),
            1,
            "no partial files left"
        );
    }
}
