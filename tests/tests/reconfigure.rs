//! Configuration reload on SIGHUP, with the real binary and a hot folder
//! filling while it happens: a good file (another recipe, another latency
//! threshold, another camera calibration) is applied without dropping a
//! frame; a bad value and a change that needs a restart are each refused,
//! naming the problem, and the running configuration stays. Every answer
//! comes on `cmd/reply` and matches its schema.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{banning_standard, drop_file, http_get, repo, subscribe, Broker};

const PARTS: usize = 90;

fn station_toml(mqtt: u16, recipe: &str, monitoring: &str, mm_per_px: f64) -> String {
    format!(
        r#"
[station]
station = "rc-1"
recipe = "{recipe}"

[[cameras]]
id = "top"
mm_per_px = {mm_per_px}
source = {{ kind = "hot_folder", path = "incoming", poll = "20ms" }}

[[recipes]]
name = "housing"
standard = "housing.txt"

[[recipes]]
name = "strict"
standard = "strict.txt"

[model]
package = "{model}"

[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
keep_alive = "2s"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
# A scraper on a closed network: /metrics without a token.
open_metrics = true

[monitoring]
evaluate_every = "200ms"
{monitoring}
"#,
        model = repo().join("models/reference").display(),
    )
}

fn hangup(service: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-HUP", &service.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_good_configuration_and_refuses_bad_ones() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(dir.path().join("housing.txt"), banning_standard()).unwrap();
    std::fs::write(
        dir.path().join("strict.txt"),
        format!(
            "{}\nStrict line: every part is checked twice.",
            banning_standard()
        ),
    )
    .unwrap();
    let mqtt = broker.port;
    let config = dir.path().join("station.toml");
    std::fs::write(&config, station_toml(mqtt, "housing", "", 0.1)).unwrap();
    let (_c, mut rx) = subscribe(&broker, "integrator", "inspect/rc-1/#").await;
    let (mut service, http) = e2e::start_service_listening(&config);

    // Online, then a stream of parts.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (topic, p) = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("the station comes online")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        if topic.ends_with("/status") && v["state"] == "online" {
            break;
        }
    }
    let dropper = std::thread::spawn(move || {
        let mut line = synth::SynthLine::new(31);
        for i in 0..PARTS {
            drop_file(
                &incoming,
                &format!("R-{i:03}.png"),
                &e2e::png(&line.next_part()),
            );
            std::thread::sleep(Duration::from_millis(40));
        }
    });

    let mut verdicts: Vec<serde_json::Value> = Vec::new();
    let mut statuses: Vec<serde_json::Value> = Vec::new();

    /// Collects verdicts and statuses until a `config` reply arrives (which
    /// it returns), or, with `until_reply` false, until `verdicts` holds `n`.
    async fn collect(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
        verdicts: &mut Vec<serde_json::Value>,
        statuses: &mut Vec<serde_json::Value>,
        until_reply: bool,
        n: usize,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if !until_reply && verdicts.len() >= n {
                return None;
            }
            let (topic, p) = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .expect("messages keep coming")
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            if topic.ends_with("/verdict") {
                verdicts.push(v);
            } else if topic.ends_with("/status") {
                e2e::assert_schema("status", &v);
                statuses.push(v);
            } else if topic.ends_with("/cmd/reply") && until_reply {
                e2e::assert_schema("command-reply", &v);
                assert_eq!(v["command"], "config");
                return Some(v);
            }
        }
    }

    // Some parts go through on the first recipe.
    collect(&mut rx, &mut verdicts, &mut statuses, false, 20).await;

    // A good file: recipe, latency threshold and calibration change.
    std::fs::write(
        &config,
        station_toml(mqtt, "strict", r#"latency_threshold = "900ms""#, 0.2),
    )
    .unwrap();
    hangup(&service);
    let reply = collect(&mut rx, &mut verdicts, &mut statuses, true, 0)
        .await
        .unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["changed"],
        serde_json::json!(["station.recipe", "cameras[top]", "monitoring"])
    );

    // Refused, each naming the problem: a bad value names its key, a
    // change only a restart can make names its section.
    let refusals = [
        (
            station_toml(mqtt, "housing", "context_loss_threshold = 7.0", 0.1),
            "monitoring.context_loss_threshold",
        ),
        (
            station_toml(mqtt, "housing", "", 0.1)
                .replace("keep_alive = \"2s\"", "keep_alive = \"3s\""),
            "mqtt can only change with a restart",
        ),
    ];
    for (text, named) in refusals {
        std::fs::write(&config, text).unwrap();
        hangup(&service);
        let reply = collect(&mut rx, &mut verdicts, &mut statuses, true, 0)
            .await
            .unwrap();
        assert_eq!(reply["ok"], false);
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(named), "{error}");
    }

    // Every part judged once; the good file's settings, and only those, in force.
    collect(&mut rx, &mut verdicts, &mut statuses, false, PARTS).await;
    dropper.join().unwrap();
    let mut parts: Vec<&str> = verdicts
        .iter()
        .map(|v| v["part_id"].as_str().unwrap())
        .collect();
    parts.sort();
    parts.dedup();
    assert_eq!(parts.len(), PARTS, "no frame dropped or judged twice");
    assert_eq!(verdicts.len(), PARTS);
    assert_eq!(verdicts[0]["recipe"], "housing");
    assert_eq!(verdicts[PARTS - 1]["recipe"], "strict");
    let status = statuses.last().expect("a status after the reload");
    assert_eq!(status["recipe"], "strict");
    // Sizes follow each verdict's calibration: 0.1 mm/px on the first
    // recipe, 0.2 after the reload.
    let mut checked = [0, 0];
    for v in &verdicts {
        let (mm_per_px, k) = if v["recipe"] == "strict" {
            (0.2, 1)
        } else {
            (0.1, 0)
        };
        for f in v["findings"].as_array().unwrap() {
            let b: Vec<f64> = f["box_px"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let side = (b[2] - b[0]).max(b[3] - b[1]);
            let size = f["size_mm"].as_f64().unwrap();
            assert!((size - side * mm_per_px).abs() < 0.011, "{v}");
            checked[k] += 1;
        }
    }
    assert!(
        checked[0] > 0 && checked[1] > 0,
        "findings on both sides of the reload: {checked:?}"
    );
    let (code, metrics) = http_get(http, "/metrics", "");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("appliance_health_threshold{figure=\"latency\"} 0.9"),
        "the new latency threshold is in force"
    );

    let _ = Command::new("kill").arg(service.id().to_string()).status();
    let status = service.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
