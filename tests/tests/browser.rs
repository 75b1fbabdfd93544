//! The review UI in a real browser (headless Chromium through WebDriver,
//! `tests/browser_review.py`): an operator signs in, filters to FAIL, opens
//! a FAIL verdict, sees its box and the violated clause, draws a missed
//! defect on the image, overrides the verdict with a reason — and the review
//! (with the drawn box) is in the retraining export. The screenshot of
//! the verdict page lands in `target/screenshots/verdict-page.png` (the
//! README's picture is a copy).

use std::time::Duration;

use e2e::{load_config, repo, Broker};
use store::accounts::{add_user, Role};

const PARTS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_overrides_a_fail_verdict_in_chromium() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), e2e::banning_standard()).unwrap();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "web-1"
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
url = "mqtt://127.0.0.1:{mqtt}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display(),
            mqtt = broker.port,
        ),
    );
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    add_user(&store, "olga", Role::Operator, "olga's long password")
        .await
        .unwrap();
    let station = e2e::InProcess::start(cfg);
    let port = station.http_port;
    e2e::feed_frames(station.frames.clone(), PARTS, 2024);
    e2e::wait_until_stored(&store, PARTS, Duration::from_secs(90)).await;

    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("verdict-page.png");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(repo().join("tests/browser_review.py"))
            .arg(format!("http://127.0.0.1:{port}"))
            .args(["olga", "olga's long password"])
            .arg(&shot)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser session failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = result["verdict_id"].as_str().unwrap();
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
