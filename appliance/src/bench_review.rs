//! The review list benchmark: fills a fresh store with N synthetic verdicts
//! (one million by default, two seconds apart from 1 January 2026; about a
//! fifth FAIL or REVIEW, each of those with a finding, one in a thousand
//! reviewed), serves the review UI on a free port, signs in, and times
//! `GET /?…` — the HTML list page with its inbox — for a set of filters and
//! a deep page. Prints JSON with the median and p95 of each, in milliseconds.
//!
//! The store is a SQLite file under `--dir`, or with `--postgres URL` a
//! database `appliance_bench_review` made afresh on that server (the plant's
//! case: monthly partitions, UUIDv7 ids, which the SQLite fill does not need).
//!
//! `appliance bench-review [--verdicts N] [--rounds R] [--dir DIR] [--postgres URL]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use review_web::{router, Web};
use store::accounts::{add_user, Accounts, Role};
use store::Store;

#[derive(Serialize)]
pub struct Timing {
    pub query: String,
    pub rows_on_page: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
}

#[derive(Serialize)]
pub struct Report {
    /// `sqlite` or `postgresql`.
    pub database: &'static str,
    pub verdicts: u64,
    pub fill_s: f64,
    pub database_mib: f64,
    pub rounds: usize,
    pub pages: Vec<Timing>,
}

/// Inserts `n` synthetic verdicts in one statement per table.
async fn fill(store: &Store, n: u64) -> anyhow::Result<()> {
    if store.backend() == store::Backend::Postgres {
        return fill_postgres(store, n).await;
    }
    let record = format!(
        "{{\"schema\":\"verdict/v1\",\"pad\":\"{}\"}}",
        "x".repeat(1100)
    );
    let mut tx = store.pool().begin().await?;
    sqlx::raw_sql(
        "INSERT INTO standard_versions (sha256, recipe, text, first_seen)
         VALUES ('bench', 'housing', '1. No scratches are permitted.', '2026-01-01T00:00:00.000000Z');
         INSERT INTO images (sha256, path, bytes, width, height, retention_class, created_at)
         WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 999)
         SELECT 'img' || i, '', 1000, 256, 256, 'pass', '2026-01-01T00:00:00.000000Z' FROM k;",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO verdicts (id, station, camera, part_id, trigger_id, recipe, standard_sha256,
           decision, confidence, model_name, model_version, model_sha256, image_sha256,
           captured_at, decided_at, record)
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $1)
         SELECT printf('v%09d', i), 'st-' || (i % 4), 'cam-' || (i % 3), 'P-' || i, NULL,
                CASE WHEN i % 7 = 0 THEN 'cover' ELSE 'housing' END, 'bench',
                CASE WHEN i % 20 = 0 THEN 'REVIEW' WHEN i % 5 = 0 THEN 'FAIL' ELSE 'PASS' END,
                0.9, 'reference-inspector', '0.2.0', 'm', 'img' || (i % 1000),
                strftime('%Y-%m-%dT%H:%M:%f', 1767225600 + i * 2, 'unixepoch') || '000Z',
                strftime('%Y-%m-%dT%H:%M:%f', 1767225600 + i * 2, 'unixepoch') || '000Z',
                $2
           FROM k",
    )
    .bind(n as i64)
    .bind(&record)
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(
        "INSERT INTO findings (verdict_id, idx, defect, x0, y0, x1, y1, size_mm, clause, clause_text, confidence)
         SELECT id, 0,
                CASE CAST(substr(id, 2) AS INTEGER) % 6 WHEN 0 THEN 'scratch' WHEN 1 THEN 'dent'
                  WHEN 2 THEN 'burr' WHEN 3 THEN 'crack' WHEN 4 THEN 'stain' ELSE 'porosity' END,
                0.1, 0.1, 0.3, 0.3, 2.5, 1, 'No scratches are permitted.', 0.8
           FROM verdicts WHERE decision <> 'PASS';
         INSERT INTO reviews (id, verdict_id, reviewer, decision, agrees, reason, corrections, created_at)
         SELECT 'r' || id, id, 'ana', 'PASS', 0, 'bench', '{}', decided_at
           FROM verdicts WHERE CAST(substr(id, 2) AS INTEGER) % 1000 = 0;
         UPDATE verdicts SET reviewed_at = decided_at
          WHERE CAST(substr(id, 2) AS INTEGER) % 1000 = 0;",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::raw_sql("ANALYZE").execute(store.pool()).await?;
    Ok(())
}

/// First second of the synthetic verdicts: 2026-01-01T00:00:00Z.
const EPOCH: i64 = 1_767_225_600;

/// The id of synthetic verdict `i` on PostgreSQL: a UUIDv7 of its time, so
/// that it lands in its month's partition as a real one would.
fn pg_id(i: u64) -> String {
    let ms = (EPOCH as u64 + 2 * i) * 1000;
    format!("{:08x}-{:04x}-7000-8000-{i:012x}", ms >> 16, ms & 0xffff)
}

/// The PostgreSQL fill: the same rows as SQLite's, made by `generate_series`
/// a million at a time into the month partitions they belong to.
async fn fill_postgres(store: &Store, n: u64) -> anyhow::Result<()> {
    use store::months::{self, Month};
    let record = format!(
        "{{\"schema\":\"verdict/v1\",\"pad\":\"{}\"}}",
        "x".repeat(1100)
    );
    let at = |i: u64| chrono::DateTime::from_timestamp(EPOCH + 2 * i as i64, 0).unwrap_or_default();
    months::ensure(store, Month::of(at(0)), Month::of(at(n))).await?;
    sqlx::raw_sql(
        "INSERT INTO standard_versions (sha256, recipe, text, first_seen)
         VALUES ('bench', 'housing', '1. No scratches are permitted.', '2026-01-01T00:00:00.000000Z');
         INSERT INTO images (sha256, path, bytes, width, height, retention_class, created_at)
         SELECT 'img' || i, '', 1000, 256, 256, 'pass', '2026-01-01T00:00:00.000000Z'
           FROM generate_series(0, 999) AS i;",
    )
    .execute(store.pool())
    .await?;
    // Each row of `k`: the number i, its id and its time. (The SQL is built
    // from literals and the constant EPOCH only: AssertSqlSafe below.)
    let rows = |select: &str, filter: &str| {
        format!(
            "{select}
               FROM (SELECT i, substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7000-8000-' || lpad(to_hex(i), 12, '0') AS id,
                            to_char(to_timestamp({EPOCH} + i * 2) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at
                       FROM (SELECT i, lpad(to_hex(({EPOCH} + i * 2) * 1000), 12, '0') AS h
                               FROM generate_series(CAST($1 AS BIGINT), CAST($2 AS BIGINT)) AS i) g) k
              {filter}"
        )
    };
    let verdicts = rows(
        "INSERT INTO verdicts (id, station, camera, part_id, trigger_id, recipe, standard_sha256,
           decision, confidence, model_name, model_version, model_sha256, image_sha256,
           captured_at, decided_at, record, reviewed_at)
         SELECT id, 'st-' || (i % 4), 'cam-' || (i % 3), 'P-' || i, NULL,
                CASE WHEN i % 7 = 0 THEN 'cover' ELSE 'housing' END, 'bench',
                CASE WHEN i % 20 = 0 THEN 'REVIEW' WHEN i % 5 = 0 THEN 'FAIL' ELSE 'PASS' END,
                0.9, 'reference-inspector', '0.2.0', 'm', 'img' || (i % 1000), at, at, $3,
                CASE WHEN i % 1000 = 0 THEN at END",
        "",
    );
    let findings = rows(
        "INSERT INTO findings (verdict_id, idx, defect, x0, y0, x1, y1, size_mm, clause, clause_text, confidence)
         SELECT id, 0,
                CASE i % 6 WHEN 0 THEN 'scratch' WHEN 1 THEN 'dent' WHEN 2 THEN 'burr'
                  WHEN 3 THEN 'crack' WHEN 4 THEN 'stain' ELSE 'porosity' END,
                0.1, 0.1, 0.3, 0.3, 2.5, 1, 'No scratches are permitted.', 0.8",
        "WHERE i % 5 = 0",
    );
    let reviews = rows(
        "INSERT INTO reviews (id, verdict_id, reviewer, decision, agrees, reason, corrections, created_at)
         SELECT 'r' || id, id, 'ana', 'PASS', 0, 'bench', '{}', at",
        "WHERE i % 1000 = 0",
    );
    const STEP: u64 = 1_000_000;
    let mut from = 1;
    while from <= n {
        let to = (from + STEP - 1).min(n);
        let t = Instant::now();
        let mut tx = store.pool().begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(verdicts.as_str()))
            .bind(from as i64)
            .bind(to as i64)
            .bind(&record)
            .execute(&mut *tx)
            .await?;
        for sql in [&findings, &reviews] {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(from as i64)
                .bind(to as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        eprintln!(
            "bench-review: verdicts {from}..={to} in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        from = to + 1;
    }
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A fresh database for the benchmark on the server of `url`.
async fn fresh_postgres(url: &str) -> anyhow::Result<String> {
    fresh_database(url, PG_DATABASE).await
}

/// Database `name` made afresh (dropped first) on the PostgreSQL server of
/// `url`; its URL. `name` is a benchmark's constant, never input.
pub(crate) async fn fresh_database(url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url).await?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
    }
    with_database(url, name)
}

/// The benchmark database on the server of `url`, if it holds exactly
/// `verdicts` verdicts.
async fn filled_postgres(url: &str, verdicts: u64) -> Option<String> {
    use sqlx::Connection;
    let url = with_database(url, PG_DATABASE).ok()?;
    let mut db = sqlx::PgConnection::connect(&url).await.ok()?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verdicts")
        .fetch_one(&mut db)
        .await
        .ok()?;
    (n == verdicts as i64).then_some(url)
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let host_at = base.find("://").context("a postgres:// URL")? + 3;
    let path_at = base[host_at..]
        .find('/')
        .map_or(base.len(), |p| p + host_at);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{}/{name}{query}", &base[..path_at]))
}

/// The benchmark's own database on a PostgreSQL server (replaced each run).
const PG_DATABASE: &str = "appliance_bench_review";

/// Sends one raw HTTP/1.1 request to 127.0.0.1:`port`; status, head, body.
pub(crate) fn request(port: u16, req: &str) -> anyhow::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.get(9..12).context("no status line")?.parse()?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((status, head.to_string(), body.to_string()))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `postgres`: a server to benchmark on instead of SQLite; `reuse`: keep its
/// benchmark database when it already holds `verdicts` verdicts (a fill of
/// ten million takes a while) and only time the pages.
pub async fn run(
    verdicts: u64,
    rounds: usize,
    dir: &Path,
    postgres: Option<&str>,
    reuse: bool,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(dir)?;
    let db = dir.join("bench-review.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let kept = match postgres {
        Some(server) if reuse => filled_postgres(server, verdicts).await,
        _ => None,
    };
    let url = match (postgres, &kept) {
        (_, Some(url)) => url.clone(),
        (Some(server), None) => fresh_postgres(server).await?,
        (None, _) => format!("sqlite://{}", db.display()),
    };
    let store = Store::open(&url, &dir.join("data")).await?;
    let t = Instant::now();
    if kept.is_none() {
        fill(&store, verdicts).await?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    add_user(&store, "bench", Role::Operator, "bench password").await?;
    let app = router(Web {
        accounts: Accounts::new(store.clone()),
        store: store.clone(),
        secure_cookies: false,
        latency_budget: std::time::Duration::from_millis(1200),
        line: review_web::line::LineFeed::idle(),
        review_topic: None,
        reasons: vec!["defect confirmed".into()],
        fleet: None,
        rollout: None,
    })
    .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The sign-in form first: its double-submit cookie and token.
    let (_, head, page) = tokio::task::spawn_blocking(move || {
        request(
            port,
            "GET /login HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        )
    })
    .await??;
    let login_cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .context("no sign-in form cookie")?
        .to_string();
    let token = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("no sign-in form token")?
        .to_string();
    let body = format!("name=bench&password=bench+password&csrf={token}");
    let login = format!(
        "POST /login HTTP/1.1\r\nHost: b\r\nCookie: {login_cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (_, head, _) = tokio::task::spawn_blocking(move || request(port, &login)).await??;
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .context("no session cookie")?
        .to_string();
    // A cursor deep in the list: the row a third of the way back.
    let i = verdicts * 2 / 3;
    let at = chrono::DateTime::from_timestamp(1_767_225_600 + 2 * i as i64, 0)
        .context("time in range")?
        .format("%Y-%m-%dT%H%%3A%M%%3A%S.000000Z");
    let id = match store.backend() {
        store::Backend::Postgres => pg_id(i),
        store::Backend::Sqlite => format!("v{i:09}"),
    };
    let deep = format!("after={at}%7C{id}");
    let queries = vec![
        String::new(),
        "decision=FAIL".into(),
        "defect=crack".into(),
        "station=st-0&decision=REVIEW".into(),
        "from=2026-01-05&to=2026-01-06".into(),
        "reviewed=yes".into(),
        "reviewed=no&decision=REVIEW".into(),
        "recipe=cover&defect=dent".into(),
        // Worst case: a defect no verdict has (the whole index is read).
        "defect=weld%20spatter".into(),
        deep,
    ];
    let mut pages = Vec::new();
    for q in queries {
        let req = format!(
            "GET /?{q} HTTP/1.1\r\nHost: b\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let (times, rows) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut times = Vec::with_capacity(rounds);
            let mut rows = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                let (status, _, body) = request(port, &req)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                anyhow::ensure!(status == 200, "{req}: HTTP {status}");
                // Rows of the "All verdicts" table (the inbox may come
                // before or after it).
                let all = body.split("All verdicts").nth(1).unwrap_or_default();
                let table = all.split("</table>").next().unwrap_or_default();
                rows = table.matches("<tr><td class=\"pic\">").count();
            }
            Ok((times, rows))
        })
        .await??;
        let mut sorted = times;
        sorted.sort_by(f64::total_cmp);
        pages.push(Timing {
            query: format!("/?{q}"),
            rows_on_page: rows,
            median_ms: percentile(&sorted, 0.5),
            p95_ms: percentile(&sorted, 0.95),
        });
    }
    server.abort();
    let bytes = match store.backend() {
        store::Backend::Postgres => {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                .fetch_one(store.pool())
                .await?
        }
        store::Backend::Sqlite => std::fs::metadata(&db).map(|m| m.len() as i64).unwrap_or(0),
    };
    let database_mib = bytes as f64 / (1 << 20) as f64;
    Ok(Report {
        database: match store.backend() {
            store::Backend::Postgres => "postgresql",
            store::Backend::Sqlite => "sqlite",
        },
        verdicts,
        fill_s,
        database_mib,
        rounds,
        pages,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_benchmark_names_its_own_database() {
        assert_eq!(
            super::with_database("postgres://pg@db:5432/postgres?sslmode=disable", "b").unwrap(),
            "postgres://pg@db:5432/b?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://pg@db", "b").unwrap(),
            "postgres://pg@db/b"
        );
    }

    #[test]
    fn synthetic_ids_are_uuidv7_of_their_time() {
        let id = super::pg_id(5);
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        let (secs, _) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, super::EPOCH + 10);
    }
}
