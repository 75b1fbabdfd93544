//! The three health figures, each driven across its threshold by a
//! controlled fault, and self-healing observed acting on it (real model,
//! real Mosquitto, real SQLite):
//!
//! - latency: a throttled engine (the fault a reload cures) raises an alert,
//!   the model is reloaded, and the figure recovers;
//! - context loss: a standard longer than the model's text window raises an
//!   alert; reloads do not cure it, so they back off and escalate; a fixed
//!   standard loaded with `cmd/config` brings it back;
//! - output consistency: a golden part whose expected verdict is changed
//!   raises an alert, reloads back off and escalate, and restoring the
//!   expectation recovers it;
//! - and a fault a reload cannot cure: a broker outage delays every verdict
//!   in the backlog, latency alarms, but the model keeps within the
//!   threshold, so the model is not reloaded.
//!
//! Each test also checks the retained status topic (schema-valid, carrying
//! the state) and the history the panel draws.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{banning_standard, repo, Broker, InProcess};
use store::health_history as history;
use store::Store;

/// A station `name` judging camera `line` frames under `standard.txt`, with
/// `monitoring` as its `[monitoring]` section and `recipe_extra` added to
/// its recipe.
fn station(
    dir: &std::path::Path,
    name: &str,
    broker: &Broker,
    monitoring: &str,
    recipe_extra: &str,
) -> firmware_config::StationConfig {
    e2e::load_config(
        dir,
        &format!(
            r#"
[station]
station = "{name}"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "unused" }}

[[recipes]]
name = "housing"
standard = "standard.txt"
{recipe_extra}

[model]
package = "{model}"

[batching]
max_batch = 4

[mqtt]
url = "mqtt://127.0.0.1:{port}"
keep_alive = "2s"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"

[monitoring]
{monitoring}
"#,
            model = repo().join("models/reference").display(),
            port = broker.port,
        ),
    )
}

async fn store_of(cfg: &firmware_config::StationConfig) -> Store {
    Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap()
        .with_station(&cfg.station.station)
}

/// The self-healing events so far (golden runs left out), oldest first, as
/// `kind` or `kind:figure`.
async fn healing(store: &Store) -> Vec<String> {
    let mut events = history::events(store, 1000).await.unwrap();
    events.reverse();
    events
        .into_iter()
        .filter(|e| !e.kind.starts_with("golden"))
        .map(|e| match e.figure {
            Some(f) => format!("{}:{f}", e.kind),
            None => e.kind,
        })
        .collect()
}

/// Waits until the healing events end with `tail` (after any earlier ones).
async fn wait_for_healing(store: &Store, tail: &[&str], within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = healing(store).await;
        if got.len() >= tail.len() && got[got.len() - tail.len()..] == *tail {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "healing events {got:?} do not end with {tail:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Collects retained status payloads, checking each against the schema.
fn statuses(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some((_, p)) = rx.recv().await {
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            e2e::assert_schema("status", &v);
            out.lock().unwrap().push(v);
        }
    });
    seen
}

fn states_seen(seen: &Arc<std::sync::Mutex<Vec<serde_json::Value>>>) -> Vec<String> {
    let mut states: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s["health"]["state"].as_str().map(String::from))
        .collect();
    states.dedup();
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_engine_raises_a_latency_alert_and_a_reload_cures_it() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let cfg = station(
        dir.path(),
        "lat-1",
        &broker,
        r#"
latency_threshold = "800ms"
latency_window = "4s"
evaluate_every = "250ms"
min_samples = 5
reload_backoff = "1s"
max_reloads = 5
history_every = "500ms"
"#,
        "",
    );
    let store = store_of(&cfg).await;
    let (_c, rx) = e2e::subscribe(&broker, "panel", "inspect/lat-1/status").await;
    let seen = statuses(rx);
    // The fault: every batch takes a second longer, until the next reload.
    appliance::faults::throttle_engine(Duration::from_millis(1500), true);
    let station = InProcess::start(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = e2e::feed_paced(
        station.frames.clone(),
        Duration::from_millis(200),
        stop.clone(),
    );

    let events = wait_for_healing(&store, &["recovered:latency"], Duration::from_secs(120)).await;
    assert_eq!(events[0], "alert:latency", "{events:?}");
    assert_eq!(events[1], "reload", "{events:?}");
    // The alert carried the figure that crossed the threshold.
    let alert = history::events(&store, 1000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == "alert")
        .unwrap();
    assert!(alert.value.unwrap() > 0.8, "{alert:?}");
    assert_eq!(alert.threshold, Some(0.8));
    // The status topic told the line.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let states = states_seen(&seen);
    let alerted = states.iter().position(|s| s == "alert");
    assert!(
        states.first().map(String::as_str) == Some("healthy")
            && alerted.is_some_and(|i| states[i..].contains(&"healthy".to_string())),
        "healthy, alert, healthy again: {states:?}"
    );
    // The panel's history holds the breach and the recovery.
    let samples = history::samples(&store, "2000-01-01").await.unwrap();
    assert!(samples.iter().any(|s| s.latency_p99.unwrap_or(0.0) > 0.8));
    assert!(samples.iter().any(|s| s.throughput > 0.0));
    stop.store(true, Ordering::Relaxed);
    let fed = feeder.join().unwrap();
    station.stop().await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verdicts")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(stored, fed as i64, "the reload lost no frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_longer_than_the_window_alarms_backs_off_escalates_and_a_fixed_one_recovers() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut long = banning_standard();
    long.push_str("\nNotes for the inspector.");
    for i in 0..40 {
        long.push_str(&format!(
            "\nNote {i}: parts are presented under diffuse light, one at a time, and handled by their flanges only."
        ));
    }
    std::fs::write(dir.path().join("standard.txt"), &long).unwrap();
    let cfg = station(
        dir.path(),
        "ctx-1",
        &broker,
        // Latency is not what this test watches: frames fed while two
        // workers load, under a standard this long, can pass the default
        // 1.2 s p99 on a busy test machine and add a latency alert.
        r#"
context_loss_window = "3s"
evaluate_every = "250ms"
min_samples = 5
reload_backoff = "500ms"
max_reloads = 2
latency_threshold = "60s"
"#,
        "",
    );
    let store = store_of(&cfg).await;
    let (cmd, mut replies) = e2e::subscribe(&broker, "mes", "inspect/ctx-1/cmd/reply").await;
    let (_c, rx) = e2e::subscribe(&broker, "panel", "inspect/ctx-1/status").await;
    let seen = statuses(rx);
    let station = InProcess::start(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = e2e::feed_paced(
        station.frames.clone(),
        Duration::from_millis(100),
        stop.clone(),
    );

    let events = wait_for_healing(
        &store,
        &["escalated:context_loss"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        events,
        [
            "alert:context_loss",
            "reload",
            "reload",
            "escalated:context_loss"
        ],
        "alert, two reloads that did not cure it, then escalation"
    );
    let snapshot = telemetry::health::snapshot().unwrap();
    assert_eq!(
        snapshot.figures[1].value,
        Some(1.0),
        "every verdict lost context"
    );
    // Escalated: no further reloads while it stays broken.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(healing(&store).await.len(), 4);

    // The fix: a standard that fits, taken in with `cmd/config`.
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    cmd.publish(
        "inspect/ctx-1/cmd/config",
        rumqttc::QoS::AtLeastOnce,
        false,
        r#"{"request_id":"fix-1"}"#,
    )
    .await
    .unwrap();
    let (_, reply) = tokio::time::timeout(Duration::from_secs(30), replies.recv())
        .await
        .expect("config reply")
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    e2e::assert_schema("command-reply", &reply);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["request_id"], "fix-1");
    assert_eq!(
        reply["changed"],
        serde_json::json!(["standard of `housing` (text edited)"])
    );
    wait_for_healing(&store, &["recovered:context_loss"], Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let states = states_seen(&seen);
    assert!(
        states.ends_with(&["alert".into(), "escalated".into(), "healthy".into()]),
        "{states:?}"
    );
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    station.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_golden_part_with_a_changed_expectation_breaks_consistency_until_restored() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let golden = dir.path().join("golden");
    std::fs::create_dir_all(&golden).unwrap();
    let (clean, defective) = e2e::pick_parts();
    std::fs::write(golden.join("clean.png"), e2e::png(&clean)).unwrap();
    std::fs::write(golden.join("scratched.png"), e2e::png(&defective)).unwrap();
    let manifest = |clean_expected: &str| {
        format!(
            "[[part]]\nimage = \"clean.png\"\nexpected = \"{clean_expected}\"\n\n\
             [[part]]\nimage = \"scratched.png\"\nexpected = \"FAIL\"\ncamera = \"line\"\n"
        )
    };
    std::fs::write(golden.join("golden.toml"), manifest("PASS")).unwrap();
    let cfg = station(
        dir.path(),
        "gold-1",
        &broker,
        r#"
evaluate_every = "200ms"
golden_every = "1s"
reload_backoff = "300ms"
max_reloads = 2
"#,
        r#"golden = "golden""#,
    );
    let store = store_of(&cfg).await;
    let (_c, rx) = e2e::subscribe(&broker, "panel", "inspect/gold-1/status").await;
    let seen = statuses(rx);
    let station = InProcess::start(cfg);

    // Agreed at start: consistency is the golden set's 100%.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = telemetry::health::snapshot();
        if let Some(v) = s.as_ref().and_then(|s| s.figures[2].value) {
            assert_eq!(v, 1.0, "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no golden run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healing(&store).await.is_empty());

    // The fault: the clean part is now expected to fail.
    std::fs::write(golden.join("golden.toml"), manifest("FAIL")).unwrap();
    let events =
        wait_for_healing(&store, &["escalated:consistency"], Duration::from_secs(60)).await;
    assert_eq!(
        events,
        [
            "alert:consistency",
            "reload",
            "reload",
            "escalated:consistency"
        ]
    );
    let snapshot = telemetry::health::snapshot().unwrap();
    assert_eq!(snapshot.figures[2].value, Some(0.5));
    let runs: Vec<String> = history::events(&store, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "golden")
        .map(|e| e.detail)
        .collect();
    assert!(
        runs.iter()
            .any(|d| d.contains("clean.png: expected FAIL, judged PASS")),
        "{runs:?}"
    );

    std::fs::write(golden.join("golden.toml"), manifest("PASS")).unwrap();
    wait_for_healing(&store, &["recovered:consistency"], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let states = states_seen(&seen);
    assert!(
        states.ends_with(&["alert".into(), "escalated".into(), "healthy".into()]),
        "{states:?}"
    );
    station.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_raises_a_latency_alert_but_no_model_reload() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let cfg = station(
        dir.path(),
        "out-1",
        &broker,
        // The threshold sits well above what judging takes on a busy 2-core
        // CI machine (capture to judgement p99 reached 0.8 s there with
        // another test beside it), and the outage well above the threshold.
        r#"
latency_threshold = "2s"
latency_window = "4s"
evaluate_every = "250ms"
min_samples = 5
reload_backoff = "500ms"
max_reloads = 5
"#,
        "",
    );
    let store = store_of(&cfg).await;
    let station = InProcess::start(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = e2e::feed_paced(
        station.frames.clone(),
        Duration::from_millis(100),
        stop.clone(),
    );
    e2e::wait_until_stored(&store, 10, Duration::from_secs(60)).await;
    // Five seconds without a broker: verdicts wait in the outbox, and are
    // published late when it returns.
    broker.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.restart();
    let events = wait_for_healing(&store, &["recovered:latency"], Duration::from_secs(60)).await;
    assert_eq!(events[0], "alert:latency", "{events:?}");
    assert!(events.contains(&"reload_skipped".to_string()), "{events:?}");
    assert!(
        !events.contains(&"reload".to_string()),
        "the model was reloaded for a broker outage: {events:?}"
    );
    let alert = history::events(&store, 1000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == "alert")
        .unwrap();
    assert!(alert.value.unwrap() > 3.0, "the backlog's p99 {alert:?}");
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    station.stop().await;
}
