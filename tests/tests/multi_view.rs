//! Multi-view parts end to end: two hot-folder cameras look at every part;
//! their verdicts for one part id are combined into one part verdict (the one
//! the PLC gets), and a part whose second view never comes is decided after
//! the view timeout, naming the missing view.

use std::time::{Duration, Instant};

use e2e::{
    assert_schema, banning_standard, drop_file, load_config, pick_parts, png, repo, subscribe,
    Broker,
};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_combine_into_part_verdicts_and_a_missing_view_is_named() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    for cam in ["top", "side"] {
        std::fs::create_dir_all(dir.path().join(cam)).unwrap();
    }
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "mv-1"
recipe = "housing"

[[cameras]]
id = "top"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "top", poll = "50ms" }}

[[cameras]]
id = "side"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "side", poll = "50ms" }}

[parts]
views = ["top", "side"]
view_timeout = "1500ms"

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "{url}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"

[monitoring]
evaluate_every = "100ms"
min_samples = 1
auto_reload = false
"#,
            model = repo().join("models/reference").display(),
            url = broker.url(),
        ),
    );
    let (_plc, mut messages) = subscribe(&broker, "plc", "inspect/mv-1/#").await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg, stop_rx, None));

    let (clean, defective) = pick_parts();
    let top = dir.path().join("top");
    let side = dir.path().join("side");
    // P-1: both views clean. P-2: the side view shows a defect.
    // P-3: only the top view ever arrives.
    drop_file(&top, "P-1.png", &png(&clean));
    drop_file(&side, "P-1.png", &png(&clean));
    drop_file(&top, "P-2.png", &png(&clean));
    drop_file(&side, "P-2.png", &png(&defective));
    drop_file(&top, "P-3.png", &png(&clean));

    let mut parts = std::collections::BTreeMap::new();
    let mut results = std::collections::BTreeMap::new();
    let mut view_verdicts = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while parts.len() < 3 || results.len() < 3 || view_verdicts < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (topic, payload) = tokio::time::timeout(left, messages.recv())
            .await
            .expect("part verdicts in time")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        match topic.as_str() {
            "inspect/mv-1/part" => {
                assert_schema("part-verdict.v1", &v);
                parts.insert(v["part_id"].as_str().unwrap().to_string(), v);
            }
            "inspect/mv-1/result" => {
                assert_schema("result", &v);
                assert!(
                    v["part_verdict_id"].is_string(),
                    "the PLC gets part results only: {v}"
                );
                results.insert(v["part_id"].as_str().unwrap().to_string(), v);
            }
            "inspect/mv-1/verdict" => {
                assert_schema("verdict.v1", &v);
                view_verdicts += 1;
            }
            _ => {}
        }
    }
    let summary = |p: &serde_json::Value| {
        (
            p["decision"].as_str().unwrap().to_string(),
            p["views"].as_array().unwrap().len(),
            p["missing"].clone(),
        )
    };
    assert_eq!(
        summary(&parts["P-1"]),
        ("PASS".into(), 2, serde_json::json!([]))
    );
    assert_eq!(
        summary(&parts["P-2"]),
        ("FAIL".into(), 2, serde_json::json!([]))
    );
    assert_eq!(parts["P-2"]["reason"], "failed in view side");
    assert_eq!(
        summary(&parts["P-3"]),
        ("REVIEW".into(), 1, serde_json::json!(["side"]))
    );
    assert_eq!(parts["P-3"]["reason"], "view side missing");
    let codes: Vec<(String, u64)> = results
        .iter()
        .map(|(k, v)| (k.clone(), v["code"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [("P-1".into(), 0), ("P-2".into(), 1), ("P-3".into(), 2)]
    );

    // Output consistency counts the parts seen whole: P-1's views agree,
    // P-2's do not (P-3, missing a view, does not count).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let views = loop {
        let snapshot = telemetry::health::snapshot();
        let views = snapshot.as_ref().and_then(|s| {
            s.figures[2]
                .sources
                .iter()
                .find(|a| a.source == "multi_view" && a.samples == 2)
                .cloned()
        });
        if let Some(v) = views {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{snapshot:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((views.agreed, views.value), (1, Some(0.5)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = telemetry::health::snapshot().unwrap();
    assert_eq!(
        health.alerting,
        [telemetry::health::FigureName::Consistency]
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("service stops")
        .unwrap()
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("appliance.db").display()
    ))
    .await
    .unwrap();
    let stored: Vec<(String, String, String)> =
        sqlx::query("SELECT part_id, decision, missing FROM part_verdicts ORDER BY part_id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    assert_eq!(
        stored,
        [
            ("P-1".into(), "PASS".into(), "[]".into()),
            ("P-2".into(), "FAIL".into(), "[]".into()),
            ("P-3".into(), "REVIEW".into(), r#"["side"]"#.into())
        ]
    );
}
