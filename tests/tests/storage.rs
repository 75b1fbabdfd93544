//! The store on both databases it supports: SQLite (the station's file) and
//! PostgreSQL (a plant's central database, see `e2e::Postgres` for where it
//! runs). The same sequence of commits, reads and acknowledgements must give
//! the same answers on each.

use appliance::store::{Backend, Store};
use appliance::verdict::{Finding, ImageRef, ModelRef, StationRef, Timings, Verdict};
use e2e::Postgres;
use fusion::Decision;

fn verdict(n: u32, decision: Decision, image_sha: &str, findings: usize) -> Verdict {
    let at = format!("2026-11-29T10:00:{n:02}.000000Z");
    Verdict {
        schema: appliance::verdict::SCHEMA,
        id: format!("0193c1e4-7a2b-7c3d-9e8f-0a1b2c3d4e{n:02}"),
        station: StationRef {
            site: "plant".into(),
            line: "line-1".into(),
            station: "st-1".into(),
        },
        camera: "top".into(),
        part_id: Some(format!("P-{n}")),
        trigger_id: None,
        frame_seq: n as u64,
        recipe: "housing".into(),
        standard_sha256: "ab".repeat(32),
        decision,
        confidence: 0.875,
        review_reason: None,
        findings: (0..findings)
            .map(|i| Finding {
                defect: "scratch".into(),
                box_norm: [0.125, 0.25, 0.5, 0.75],
                box_px: [10, 20, 40, 60],
                size_mm: 3.5,
                clause: Some(1 + i as u32),
                clause_text: Some("No scratches are permitted.".into()),
                confidence: 0.9,
            })
            .collect(),
        model: ModelRef {
            name: "reference-inspector".into(),
            version: "0.2.0".into(),
            sha256: "cd".repeat(32),
        },
        timings: Timings {
            captured_at: at.clone(),
            queued_at: at.clone(),
            decided_at: at,
            published_at: None,
            inference_ms: 12.5,
        },
        image: ImageRef {
            sha256: image_sha.into(),
            path: format!("/data/images/{image_sha}.png"),
            bytes: 1234,
            width: 640,
            height: 480,
        },
        context_loss: 0.0,
    }
}

/// Commits, reads back, acknowledges and reopens; returns nothing, asserts
/// everything.
async fn exercise(url: &str, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(url, &dir.path().join("data")).await.unwrap();
    assert_eq!(store.backend(), backend);
    let image_a = "a1".repeat(32);
    let image_b = "b2".repeat(32);
    let verdicts = [
        verdict(1, Decision::Pass, &image_a, 0),
        verdict(2, Decision::Fail, &image_b, 2),
        // The same picture again, now failed: its image must be kept longer.
        verdict(3, Decision::Fail, &image_a, 1),
    ];
    for v in &verdicts {
        let outbox = vec![
            (
                "inspect/st-1/verdict".to_string(),
                format!("{{\"id\":\"{}\"}}", v.id),
            ),
            ("inspect/st-1/result".to_string(), "{}".to_string()),
        ];
        store
            .commit_verdict(v, "1. No scratches are permitted.", &outbox)
            .await
            .unwrap();
    }
    // A verdict id committed twice is refused, and nothing of it is kept.
    assert!(store
        .commit_verdict(&verdicts[0], "x", &[("t".into(), "p".into())])
        .await
        .is_err());

    let pending = store.pending(0, 100).await.unwrap();
    assert_eq!(pending.len(), 6);
    assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "in commit order"
    );
    assert_eq!(pending[0].verdict_id, verdicts[0].id);
    assert_eq!(pending[0].topic, "inspect/st-1/verdict");
    assert_eq!(pending[5].verdict_id, verdicts[2].id);
    let after_two = store.pending(pending[1].seq, 100).await.unwrap();
    assert_eq!(after_two.len(), 4);

    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.pending, 6);
    assert!(backlog.oldest.is_some());
    store
        .mark_published(&[pending[0].seq, pending[1].seq])
        .await
        .unwrap();
    assert_eq!(store.backlog().await.unwrap().pending, 4);

    let pool = store.pool();
    let (standards,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM standard_versions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(standards, 1, "one standard version, however many verdicts");
    let class: String = sqlx::query_scalar("SELECT retention_class FROM images WHERE sha256 = $1")
        .bind(&image_a)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(class, "keep", "an image that failed once is kept");
    let published: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, published_at FROM verdicts ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(published[0].1.is_some() && published[1].1.is_none());
    let findings: Vec<(i64, String, f64, Option<i64>)> = sqlx::query_as(
        "SELECT idx, defect, x1, clause FROM findings WHERE verdict_id = $1 ORDER BY idx",
    )
    .bind(&verdicts[1].id)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        findings,
        vec![
            (0, "scratch".to_string(), 0.5, Some(1)),
            (1, "scratch".to_string(), 0.5, Some(2))
        ]
    );
    let (record, confidence): (String, f64) =
        sqlx::query_as("SELECT record, confidence FROM verdicts WHERE id = $1")
            .bind(&verdicts[2].id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(confidence, 0.875);
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["decision"], "FAIL");

    let error_id = store
        .record_ingest_error("st-1", "top", "P-9.png", "truncated PNG", b"\x89PNG")
        .await
        .unwrap();
    let reason: String = sqlx::query_scalar("SELECT reason FROM ingest_errors WHERE id = $1")
        .bind(&error_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(reason, "truncated PNG");
    drop(store);

    // Reopening runs the migrations again (a no-op) and finds everything.
    let store = Store::open(url, &dir.path().join("data")).await.unwrap();
    assert_eq!(store.backlog().await.unwrap().pending, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("station.db").display());
    exercise(&url, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_postgresql() {
    let pg = Postgres::start().await;
    exercise(&pg.url, Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_of_another_kind_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open("mysql://db/x", dir.path())
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("mysql://db/x") && text.contains("sqlite://") && text.contains("postgres://"),
        "{text}"
    );
}

/// A station whose verdicts go to a central PostgreSQL: every verdict is
/// stored there and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_stores_its_verdicts_in_postgresql() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let parts = 30;
    let pg = Postgres::start().await;
    let broker = e2e::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    let cfg = e2e::load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "pg-1"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "unused" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[storage]
database_url = "{db}"
data_dir = "data"

[http]
bind = "127.0.0.1:0"
"#,
            model = e2e::repo().join("models/reference").display(),
            port = broker.port,
            db = pg.url,
        ),
    );
    let (_mes, mut verdicts) = e2e::subscribe(&broker, "mes", "inspect/pg-1/verdict").await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::serve(
        cfg,
        rx,
        appliance::cameras::CameraLinks::none(),
        stop_rx,
        Arc::new(AtomicBool::new(false)),
    ));
    e2e::feed_frames(tx.clone(), parts, 5);
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < parts {
        let (_, p) = tokio::time::timeout(std::time::Duration::from_secs(60), verdicts.recv())
            .await
            .expect("verdicts arrive")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    drop(tx);
    stop_tx.send(true).unwrap();
    service.await.unwrap().unwrap();
    let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
    let stored: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT id FROM verdicts WHERE station = 'pg-1'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        stored, ids,
        "every published verdict is stored in PostgreSQL"
    );
    let (pending,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "every outbox row acknowledged");
    pool.close().await;
}
