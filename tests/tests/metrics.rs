//! `/metrics`, `/healthz` and `/readyz` during a real run: a hot-folder
//! station judges 20 parts; the scrape is parsed as Prometheus text and
//! must account for every frame (cameras, verdicts by decision, every stage
//! histogram), name the model and recipe, and follow the naming
//! conventions. With the broker gone the station stays ready (buffering).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{banning_standard, drop_file, http_get, load_config, repo, Broker};

const PARTS: usize = 20;

/// `name{labels}` -> value, plus the TYPE of each family.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    /// The last line was `# EOF`.
    eof: bool,
}

fn parse(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (key, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            samples.insert(key.to_string(), value);
        }
    }
    Scrape {
        samples,
        types,
        eof: text.ends_with("# EOF\n"),
    }
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}"))
    }
    fn sum(&self, prefix: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

fn scrape(port: u16, token: &str) -> Scrape {
    let (status, body) = http_get(port, "/metrics", token);
    assert_eq!(status, 200);
    parse(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_during_a_run() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    // Bound here and handed over, so the port is known and cannot be taken.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "mon-1"
recipe = "housing"

[[cameras]]
id = "top"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "incoming", poll = "20ms" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

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
"#,
            model = repo().join("models/reference").display(),
            mqtt = broker.port,
        ),
    );
    let token = e2e::api_token(&cfg, "viewer").await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg, stop_rx, Some(http)));
    let mut line = synth::SynthLine::new(99);
    for i in 0..PARTS {
        drop_file(
            &incoming,
            &format!("M-{i:03}.png"),
            &e2e::png(&line.next_part()),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let s = loop {
        let token = token.clone();
        let s = tokio::task::spawn_blocking(move || {
            // The HTTP server starts once the model is loaded.
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            let (status, _) = http_get(port, "/healthz", "");
            (status == 200).then(|| scrape(port, &token))
        })
        .await
        .unwrap();
        if let Some(s) = s {
            if s.sum("appliance_verdicts_total") as usize == PARTS
                && s.get("appliance_stage_seconds_count{stage=\"published\"}") as usize >= PARTS
                && s.get("appliance_outbox_pending") == 0.0
            {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Every frame is accounted for, at every stage.
    assert_eq!(
        s.get("appliance_frames_total{camera=\"top\"}") as usize,
        PARTS
    );
    assert_eq!(s.get("appliance_camera_up{camera=\"top\"}"), 1.0);
    for stage in ["queued", "inference", "decided"] {
        let n = s.get(&format!(
            "appliance_stage_seconds_count{{stage=\"{stage}\"}}"
        ));
        assert_eq!(n as usize, PARTS, "{stage}");
        let inf = s.get(&format!(
            "appliance_stage_seconds_bucket{{le=\"+Inf\",stage=\"{stage}\"}}"
        ));
        assert_eq!(inf, n, "+Inf bucket equals the count");
    }
    // Every verdict's commit is timed, and a commit is a part of its
    // frame's time to `decided`.
    assert_eq!(
        s.get("appliance_store_commit_seconds_count") as usize,
        PARTS
    );
    assert_eq!(
        s.get("appliance_store_commit_seconds_bucket{le=\"+Inf\"}"),
        PARTS as f64
    );
    let commit_sum = s.get("appliance_store_commit_seconds_sum");
    assert!(commit_sum > 0.0);
    assert!(commit_sum <= s.get("appliance_stage_seconds_sum{stage=\"decided\"}"));
    // Later stages take at least as long as earlier ones.
    let mean = |stage: &str| {
        s.get(&format!("appliance_stage_seconds_sum{{stage=\"{stage}\"}}"))
            / s.get(&format!(
                "appliance_stage_seconds_count{{stage=\"{stage}\"}}"
            ))
    };
    assert!(mean("queued") <= mean("inference") && mean("inference") <= mean("decided"));
    assert_eq!(
        s.get("appliance_batch_size_sum") as usize,
        PARTS,
        "frames in batches"
    );
    assert_eq!(s.get("appliance_queue_depth"), 0.0);
    assert_eq!(s.get("appliance_rejected_frames_total"), 0.0);
    assert_eq!(s.get("appliance_mqtt_connected"), 1.0);
    let model = s
        .samples
        .keys()
        .find(|k| k.starts_with("appliance_model_info{"))
        .expect("model info");
    assert!(model.contains("name=\"reference-inspector\""), "{model}");
    assert!(s
        .samples
        .keys()
        .any(|k| k.starts_with("appliance_standard_info{recipe=\"housing\"")));
    // The health figures, with the default thresholds, and a healthy state.
    assert_eq!(s.get("appliance_health_threshold{figure=\"latency\"}"), 1.2);
    assert_eq!(
        s.get("appliance_health_threshold{figure=\"context_loss\"}"),
        0.05
    );
    assert_eq!(
        s.get("appliance_health_threshold{figure=\"consistency\"}"),
        0.9
    );
    assert_eq!(s.get("appliance_health_state{state=\"healthy\"}"), 1.0);
    assert_eq!(s.get("appliance_model_reloads_total"), 0.0);
    assert!(s.get("process_resident_memory_bytes") > 10e6);
    assert!(s.get("process_cpu_seconds_total") > 0.0);

    // Conventions (OpenMetrics): a counter family's samples end in _total,
    // durations in _seconds, sizes in _bytes; every family has its TYPE;
    // the message ends with # EOF.
    for (name, kind) in &s.types {
        match kind.as_str() {
            "counter" => assert!(
                !name.ends_with("_total"),
                "{name}: the suffix is the sample's"
            ),
            "histogram" => assert!(
                name.ends_with("_seconds") || name.ends_with("_size"),
                "{name}"
            ),
            "gauge" => assert!(!name.ends_with("_total"), "{name}"),
            other => panic!("{name}: unexpected type {other}"),
        }
    }
    for key in s.samples.keys() {
        let family = key.split('{').next().unwrap();
        let of = |suffix: &str, kind: &str| {
            family
                .strip_suffix(suffix)
                .filter(|b| s.types.get(*b).is_some_and(|t| t == kind))
        };
        let base = of("_bucket", "histogram")
            .or_else(|| of("_sum", "histogram"))
            .or_else(|| of("_count", "histogram"))
            .or_else(|| of("_total", "counter"))
            .unwrap_or(family);
        assert!(s.types.contains_key(base), "{key} has no TYPE");
        if s.types[base] == "counter" {
            assert!(family.ends_with("_total"), "{key}");
        }
    }
    assert!(s.eof, "the exposition ends with # EOF");

    // A stranger gets no metrics, and from /readyz only whether the
    // station is ready: no model, standard or backlog.
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics", ""))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/readyz", ""))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "waiting_for": []}),
        "{body}"
    );

    // Ready; and still ready (buffering) with the broker gone.
    let t = token.clone();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/readyz", &t))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["broker"], "connected");
    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = token.clone();
        let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/readyz", &t))
            .await
            .unwrap();
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
        if ready["broker"] == "buffering in the outbox" {
            assert_eq!(status, 200, "ready while buffering: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker loss was not noticed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = tokio::task::spawn_blocking(move || scrape(port, &token))
        .await
        .unwrap();
    assert_eq!(s.get("appliance_mqtt_connected"), 0.0);

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), service)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
}
