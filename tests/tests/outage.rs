//! No verdict lost when the broker restarts: a stream of 1,200 parts, the
//! broker stopped after the first few hundred verdicts and restarted three
//! seconds later. The appliance keeps inspecting into its outbox; afterwards
//! every verdict id reaches a durable subscriber at least once, and the
//! first arrivals come in commit order. Prints the outage figures.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use e2e::{free_port, http_get, load_config, repo, subscribe_durably, Broker};
use vision::sources::{Arrival, Origin};
use vision::synth::SynthLine;
use vision::Frame;

const PARTS: usize = 1200;

fn frames() -> Vec<Vec<u8>> {
    let mut line = SynthLine::new(606);
    (0..6)
        .map(|_| vision::decode::encode_png(&line.next_part().image))
        .collect()
}

async fn committed(pool: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM verdicts")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let mut broker = Broker::start_persistent(&broker_dir);
    std::fs::write(
        dir.path().join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    let http_port = free_port();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "out-1"
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

[batching]
max_batch = 8

[mqtt]
url = "mqtt://127.0.0.1:{port}"
keep_alive = "2s"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"

[http]
bind = "127.0.0.1:{http_port}"
"#,
            model = repo().join("models/reference").display(),
            port = broker.port,
        ),
    );
    let mut received = subscribe_durably(&broker, "mes", "inspect/out-1/verdict").await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Arrival>(64);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::serve(
        cfg,
        rx,
        appliance::cameras::CameraLinks::none(),
        stop_rx,
        Arc::new(AtomicBool::new(false)),
    ));
    let feeder_tx = tx.clone();
    let feeder = std::thread::spawn(move || {
        let pngs = frames();
        for seq in 0..PARTS {
            let png = &pngs[seq % pngs.len()];
            let (image, format) = vision::decode::decode(png).unwrap();
            let name = format!("P-{seq:05}");
            let frame = Frame {
                camera_id: "line".into(),
                seq: seq as u64,
                captured_at: SystemTime::now(),
                part_id: Some(name.clone()),
                trigger_id: None,
                image: Arc::new(image),
                encoded: Arc::new(png.clone()),
                format,
                truth: None,
            };
            let origin = Origin { name, path: None };
            feeder_tx
                .blocking_send(Arrival::Frame { frame, origin })
                .unwrap();
        }
    });

    let mut arrivals: Vec<String> = Vec::new();
    let mut ids = HashSet::new();
    let mut duplicates = 0usize;
    let mut take = |payload: &[u8], arrivals: &mut Vec<String>| {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        if ids.insert(id.clone()) {
            arrivals.push(id);
        } else {
            duplicates += 1;
        }
    };
    while arrivals.len() < 300 {
        let (_, p) = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("verdicts flow before the outage")
            .unwrap();
        take(&p, &mut arrivals);
    }

    let db = dir.path().join("appliance.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    broker.stop();
    let at_down = committed(&pool).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_up = committed(&pool).await;
    // The backlog is visible while the broker is away.
    let (status, body) = tokio::task::spawn_blocking(move || http_get(http_port, "/api/v1/outbox"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let backlog: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(backlog["pending"].as_i64().unwrap() > 0, "{backlog}");
    assert!(backlog["oldest"].is_string(), "{backlog}");
    assert!(
        at_up > at_down,
        "inspection stopped while the broker was down ({at_down} -> {at_up})"
    );
    // Whatever arrived before the stop took effect.
    while let Ok((_, p)) = received.try_recv() {
        take(&p, &mut arrivals);
    }
    let backlog_start = arrivals.len();
    broker.restart();
    let up_at = Instant::now();
    let mut drained_at = None;

    feeder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = committed(&pool).await as usize;
        let unpublished: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        if arrivals.len() >= at_up as usize && drained_at.is_none() {
            drained_at = Some(up_at.elapsed());
        }
        if total == PARTS && arrivals.len() == PARTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} verdicts arrived; {unpublished} outbox rows not acknowledged",
            arrivals.len()
        );
        if let Ok(Some((_, p))) =
            tokio::time::timeout(Duration::from_millis(500), received.recv()).await
        {
            take(&p, &mut arrivals);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = tokio::task::spawn_blocking(move || http_get(http_port, "/api/v1/outbox"))
            .await
            .unwrap();
        let backlog: serde_json::Value = serde_json::from_str(&body).unwrap();
        if backlog["pending"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog never emptied: {backlog}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(tx);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), service)
        .await
        .expect("service stops")
        .unwrap()
        .unwrap();

    let order: Vec<String> = sqlx::query_scalar(
        "SELECT verdict_id FROM outbox WHERE topic = 'inspect/out-1/verdict' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(order.len(), PARTS);
    assert_eq!(
        arrivals, order,
        "first arrivals are not in commit order, or a verdict is missing"
    );
    println!(
        "outage figures: broker down 3 s; {} verdicts committed during the outage; {} delivered before it; backlog of {} drained in {:.2} s after the broker returned; {} duplicates; {} of {} verdict ids arrived",
        at_up - at_down,
        backlog_start,
        at_up as usize - backlog_start,
        drained_at.unwrap_or_default().as_secs_f64(),
        duplicates,
        arrivals.len(),
        PARTS
    );
}
