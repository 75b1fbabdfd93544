//! The review UI in a real browser (headless Chromium through WebDriver).
//! The line view (`tests/browser_line.py`) follows parts as they are judged.
//! The review (`tests/browser_review.py`): an operator signs in, filters to FAIL, opens
//! a FAIL verdict, sees its box and the violated clause, draws a missed
//! defect on the image, overrides the verdict with a reason — and the review
//! reaches the MES on `inspect/{station}/review` and (with the drawn box) is
//! in the retraining export. The screenshot of
//! the verdict page lands in `target/screenshots/verdict-page.png` (the
//! README's picture is a copy). One-tap review (`tests/browser_one_tap.py`):
//! three REVIEW parts decided in a row, each review heard on MQTT.

use std::time::Duration;

use e2e::{repo, Broker};
use store::accounts::{add_user, Role};

const PARTS: usize = 24;

/// The browser tests' station: frames fed by the test, the reference
/// model, a private broker.
fn station_config(dir: &std::path::Path, broker: &Broker) -> firmware_config::StationConfig {
    e2e::line_station(dir, "web-1", &broker.url(), "sqlite://appliance.db", "")
}

/// That station started, with `user` (password "{user}'s long password")
/// in its store.
async fn started(
    dir: &std::path::Path,
    broker: &Broker,
    user: &str,
    role: Role,
) -> (store::Store, e2e::InProcess) {
    let cfg = station_config(dir, broker);
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    add_user(&store, user, role, &format!("{user}'s long password"))
        .await
        .unwrap();
    (store, e2e::InProcess::start(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_overrides_a_fail_verdict_in_chromium() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    // The MES, listening for reviews.
    let (_mes, mut reviews_heard) = e2e::subscribe(&broker, "mes", "inspect/web-1/review").await;
    let (store, station) = started(dir.path(), &broker, "olga", Role::Operator).await;
    let port = station.http_port;
    e2e::feed_frames(station.frames.clone(), PARTS, 2024);
    e2e::wait_until_stored(&store, PARTS, Duration::from_secs(90)).await;

    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("verdict-page.png");
    let result = e2e::browser_session(
        "browser_review.py",
        vec![
            format!("http://127.0.0.1:{port}"),
            "olga".into(),
            "olga's long password".into(),
            shot.display().to_string(),
        ],
    )
    .await;
    let id = result["verdict_id"].as_str().unwrap();
    // The override made in the browser reached the MES over MQTT.
    let (_, payload) = tokio::time::timeout(Duration::from_secs(10), reviews_heard.recv())
        .await
        .expect("the review is published")
        .unwrap();
    let heard: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    e2e::assert_schema("review.v1", &heard);
    assert_eq!(
        (
            heard["verdict_id"].as_str(),
            heard["judged"].as_str(),
            heard["decision"].as_str(),
            heard["overridden"].as_bool(),
            heard["reviewer"].as_str(),
        ),
        (
            Some(id),
            Some("FAIL"),
            Some("PASS"),
            Some(true),
            Some("olga")
        ),
        "{heard}"
    );
    let png = std::fs::read(shots.join("verdict-page.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );

    // The override is in the retraining export, as the truth.
    let export = dir.path().join("export");
    let report = store::export::export(&store, &export, "").await.unwrap();
    assert_eq!(report.records, 1);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(export.join("reviewed.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(line["verdict_id"], id);
    assert_eq!(line["decision"], "PASS");
    assert_eq!(line["reviewer"], "olga");
    assert_eq!(line["reason"], "scratch is a fixture mark, not a defect");
    let dent = line["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["defect"] == "dent")
        .expect("the missed dent drawn in the browser is in the export");
    assert!(dent["clause"].is_u64(), "the clause naming dents: {dent}");
    let b: Vec<f64> = dent["box_norm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(b[0] < b[2] && b[1] < b[3], "{b:?}");

    station.stop().await;
}

/// The line view as an operator leaves it open: Chromium watches /line
/// while parts are judged; the lamp, counters and strip follow each verdict
/// without a reload, within a second of its decision; at a tablet held
/// upright nothing scrolls sideways. Screenshots land in
/// `target/screenshots/line-view.png` and `line-view-tablet.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_view_follows_the_line_live_in_chromium() {
    use std::io::BufRead;
    const LIVE_PARTS: usize = 12;
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, station) = started(dir.path(), &broker, "lin", Role::Viewer).await;
    let port = station.http_port;
    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("line-view.png");
    let mut browser = std::process::Command::new("python3")
        .arg(repo().join("tests/browser_line.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["lin", "lin's long password", &LIVE_PARTS.to_string()])
        .arg(&shot)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = std::io::BufReader::new(browser.stdout.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (line, out)
    });
    let (line, mut out) = tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("the browser is ready in time")
        .unwrap();
    assert_eq!(line.trim(), "ready", "{line}");
    // One part every 300 ms, as a line with a takt time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = e2e::feed_paced(
        station.frames.clone(),
        Duration::from_millis(300),
        stop.clone(),
    );
    e2e::wait_until_stored(&store, LIVE_PARTS, Duration::from_secs(90)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fed = feeder.join().unwrap();
    let finished = tokio::task::spawn_blocking(move || {
        let mut report = String::new();
        std::io::Read::read_to_string(&mut out, &mut report).unwrap();
        (browser.wait_with_output().unwrap(), report)
    });
    let (status, report) = tokio::time::timeout(Duration::from_secs(120), finished)
        .await
        .expect("the browser finishes")
        .unwrap();
    assert!(
        status.status.success(),
        "the browser session failed: {report}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verdicts")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(r["parts"].as_i64().unwrap() >= LIVE_PARTS as i64, "{r}");
    assert!(
        r["parts"].as_i64().unwrap() <= stored,
        "{r}: {stored} stored"
    );
    assert_eq!(
        r["parts"].as_i64().unwrap(),
        r["pass"].as_i64().unwrap() + r["fail"].as_i64().unwrap() + r["review"].as_i64().unwrap()
    );
    assert_eq!(r["thumbs"], r["parts"].as_i64().unwrap().min(20), "{r}");
    assert!(fed >= LIVE_PARTS, "{fed} fed");
    assert!(r["lamps_seen"].as_u64().unwrap() >= 3, "{r}");
    assert!(r["max_lag_ms"].as_f64().unwrap() < 1000.0, "{r}");
    println!("line view: {r}");
    station.stop().await;
}

/// Three REVIEW parts in a row, each decided with one tap (the keyboard at
/// a desk, a tap on a touch screen), the next opening at once
/// (`tests/browser_one_tap.py`); each review reaches the MES on
/// `inspect/web-1/review`. The REVIEW parts come from a model scripted to
/// write a FAIL that no clause backs (the consistency check makes it
/// REVIEW).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_review_parts_are_decided_with_one_tap_each_in_chromium() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (_mes, mut reviews_heard) = e2e::subscribe(&broker, "mes", "inspect/web-1/review").await;
    let (store, station) = started(dir.path(), &broker, "tam", Role::Operator).await;
    let port = station.http_port;
    let script = "<fail> contamination <loc_100> <loc_100> <loc_300> <loc_300> <ok> </s>";
    appliance::faults::script_model_output(Some(
        script.split_whitespace().map(str::to_string).collect(),
    ));
    e2e::feed_frames(station.frames.clone(), 3, 7)
        .join()
        .unwrap();
    e2e::wait_until_stored(&store, 3, Duration::from_secs(90)).await;
    appliance::faults::script_model_output(None);
    e2e::feed_frames(station.frames.clone(), 3, 8)
        .join()
        .unwrap();
    e2e::wait_until_stored(&store, 6, Duration::from_secs(90)).await;
    let review: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verdicts WHERE decision = 'REVIEW'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        review, 3,
        "the scripted parts, and only those, wait for review"
    );

    let result = e2e::browser_session(
        "browser_one_tap.py",
        vec![
            format!("http://127.0.0.1:{port}"),
            "tam".into(),
            "tam's long password".into(),
        ],
    )
    .await;
    let decided = result["decided"].as_array().unwrap();
    assert_eq!(decided.len(), 3);
    for want in decided {
        let (_, payload) = tokio::time::timeout(Duration::from_secs(10), reviews_heard.recv())
            .await
            .expect("each review is published")
            .unwrap();
        let heard: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        e2e::assert_schema("review.v1", &heard);
        assert_eq!(heard["verdict_id"], want["id"], "in the order decided");
        assert_eq!(heard["judged"], "REVIEW");
        assert_eq!(heard["decision"], want["decision"]);
        assert_eq!(heard["reviewer"], "tam");
        assert!(
            heard["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty() && r != "REVIEW"),
            "a reason from the list: {heard}"
        );
    }
    station.stop().await;
}

/// A dropped connection, for real: Chromium watches /line while the
/// station stops (its event stream ends) and starts again on the same port
/// (`tests/browser_line_drop.py`). The page says it is reconnecting, comes
/// back by itself without a reload and counts the parts judged before and
/// after, its lamp on the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_view_reconnects_after_the_station_restarts_in_chromium() {
    use std::io::BufRead;
    const BEFORE: usize = 3;
    const AFTER: usize = 3;
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, station) = started(dir.path(), &broker, "dru", Role::Viewer).await;
    let port = station.http_port;
    let mut browser = std::process::Command::new("python3")
        .arg(repo().join("tests/browser_line_drop.py"))
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["dru", "dru's long password"])
        .args([BEFORE.to_string(), AFTER.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let out = std::io::BufReader::new(browser.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    async fn said(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
        let line = tokio::time::timeout(Duration::from_secs(90), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("the browser never said `{want}`"))
            .unwrap_or_else(|| panic!("the browser ended before `{want}`"));
        assert_eq!(line.trim(), want);
    }
    said(&mut lines, "ready").await;
    e2e::feed_frames(station.frames.clone(), BEFORE, 3)
        .join()
        .unwrap();
    said(&mut lines, "seen").await;
    station.stop().await;
    said(&mut lines, "dropped").await;
    // Started again on the port the page reconnects to.
    let http = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the same port again");
    let station = e2e::InProcess::start_listening(station_config(dir.path(), &broker), http);
    e2e::feed_frames(station.frames.clone(), AFTER, 4)
        .join()
        .unwrap();
    e2e::wait_until_stored(&store, BEFORE + AFTER, Duration::from_secs(90)).await;
    let report = tokio::time::timeout(Duration::from_secs(90), lines.recv())
        .await
        .expect("the browser reports")
        .unwrap_or_default();
    let status = browser.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "the browser session failed: {report}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(r["parts"], (BEFORE + AFTER) as u64, "{r}");
    let newest: String =
        sqlx::query_scalar("SELECT id FROM verdicts ORDER BY decided_at DESC, id DESC LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(r["lamp"], newest.as_str(), "{r}");
    println!("line view through a restart: {r}");
    station.stop().await;
}
