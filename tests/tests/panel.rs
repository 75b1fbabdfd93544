//! The monitoring panel in a real browser (headless Chromium,
//! `tests/browser_panel.py`) after a latency alert that a reload cured: the
//! three figures' cards, the history charts and the alert and reload in the
//! event list. The same state over the API (`/api/v1/health`, checked
//! against the OpenAPI document). The screenshot lands in
//! `target/screenshots/panel.png` (the README's picture is a copy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{repo, Broker};
use store::accounts::{add_token, add_user, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_shows_the_figures_their_history_and_the_healing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = e2e::line_station(
        dir.path(),
        "panel-1",
        &broker.url(),
        "sqlite://appliance.db",
        r#"
[batching]
max_batch = 4

[monitoring]
latency_threshold = "900ms"
latency_window = "3s"
evaluate_every = "250ms"
min_samples = 5
reload_backoff = "1s"
history_every = "300ms"
"#,
    );
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap()
        .with_station("panel-1");
    add_user(&store, "quinn", Role::Viewer, "quinn's long password")
        .await
        .unwrap();
    let mes = add_token(&store, "mes", Role::Viewer, None).await.unwrap();
    appliance::faults::throttle_engine(Duration::from_millis(1200), true);
    let station = e2e::InProcess::start(cfg);
    let port = station.http_port;

    // A line at five parts a second, through the alert and the recovery.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = e2e::feed_paced(
        station.frames.clone(),
        Duration::from_millis(200),
        stop.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = store::health_history::events(&store, 100).await.unwrap();
        if events.iter().any(|e| e.kind == "recovered") {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Some healthy history after the recovery; the line keeps running while
    // the panel is looked at.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("panel.png");
    let seen = e2e::browser_session(
        "browser_panel.py",
        vec![
            format!("http://127.0.0.1:{port}"),
            "quinn".into(),
            "quinn's long password".into(),
            shot.display().to_string(),
        ],
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    // The card shows where latency stands now (the line is still running).
    assert_ne!(seen["cards"]["latency"], "unknown", "{seen}");
    let png = std::fs::read(shots.join("panel.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);

    // The API says the same, as the OpenAPI document describes.
    let (status, _, body) = e2e::http_request(
        port,
        "GET",
        "/api/v1/health",
        &[format!("Authorization: Bearer {mes}")],
        "application/json",
        "",
    );
    assert_eq!(status, 200, "{body}");
    e2e::OpenApi::load().check("/api/v1/health", "get", status, &body);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(h["health"]["figures"][0]["value"].is_number(), "{h}");
    let kinds: Vec<&str> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"alert") && kinds.contains(&"reload"),
        "{kinds:?}"
    );
    let (status, _, _) =
        e2e::http_request(port, "GET", "/api/v1/health", &[], "application/json", "");
    assert_eq!(status, 401, "the API needs a token or a session");
    station.stop().await;
}
