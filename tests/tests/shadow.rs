//! Shadow mode on a running station, with the real model beside a
//! deliberately different candidate (the reference package with its input
//! normalisation changed in its manifest: the same graphs see every picture
//! darker, so some decisions change). Over MQTT, malformed and impossible
//! `cmd/shadow` commands are refused by name; in headless Chromium
//! (`tests/browser_shadow.py`) an admin starts shadow mode from the panel,
//! watches the agreement and the candidate's cost, opens the disagreements
//! with both verdicts, and promotes the candidate. Meanwhile every verdict
//! published before the promotion is the running model's, and after it the
//! candidate's; the candidate's judgements sit in the store beside the
//! verdicts they shadow. The panel's screenshot lands in
//! `target/screenshots/shadow-panel.png`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{assert_schema, repo, subscribe, Broker};
use rumqttc::QoS;
use store::accounts::{add_user, Role};

/// The reference package, its graphs linked, its manifest changed: another
/// version whose input mean makes every picture darker to the model.
fn candidate(dir: &std::path::Path) -> std::path::PathBuf {
    let reference = repo().join("models/reference");
    let out = dir.join("candidate");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&reference).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "model.toml" {
            std::os::unix::fs::symlink(&path, out.join(name)).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(reference.join("model.toml")).unwrap();
    let changed = manifest
        .replacen("version = \"0.3.0\"", "version = \"0.3.0-shadow-test\"", 1)
        .replacen("mean = [0.5, 0.5, 0.5]", "mean = [0.75, 0.75, 0.75]", 1);
    assert!(changed.contains("0.3.0-shadow-test") && changed.contains("0.75, 0.75"));
    std::fs::write(out.join("model.toml"), changed).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_judges_beside_the_running_model_and_is_promoted() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let candidate = candidate(dir.path());
    let cfg = e2e::line_station(
        dir.path(),
        "sh-1",
        &broker.url(),
        "sqlite://appliance.db",
        "[batching]\nmax_batch = 4\n",
    );
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap()
        .with_station("sh-1");
    add_user(&store, "ada", Role::Admin, "ada's long password")
        .await
        .unwrap();
    let (plc, mut messages) = subscribe(&broker, "integrator", "inspect/sh-1/#").await;
    let station = e2e::InProcess::start(cfg);
    let port = station.http_port;
    let running_sha = loop {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(90), messages.recv())
            .await
            .expect("the station comes online")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if topic.ends_with("/status") && v["state"] == "online" {
            break v["model"]["sha256"].as_str().unwrap().to_string();
        }
    };

    // Commands that cannot be carried out are refused by name.
    let mut refusals = Vec::new();
    for payload in [
        r#"{"action":"start"}"#.to_string(),
        r#"{"action":"promote"}"#.to_string(),
        r#"{"action":"retire"}"#.to_string(),
        format!(
            r#"{{"action":"start","package":"{}"}}"#,
            repo().join("models/reference").display()
        ),
    ] {
        plc.publish(
            "inspect/sh-1/cmd/shadow",
            QoS::AtLeastOnce,
            false,
            payload.clone(),
        )
        .await
        .unwrap();
        let reply = loop {
            let (topic, payload) = tokio::time::timeout(Duration::from_secs(60), messages.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no reply to {payload} in 60 s; refusals so far: {refusals:?}")
                })
                .unwrap();
            if topic == "inspect/sh-1/cmd/reply" {
                break serde_json::from_slice::<serde_json::Value>(&payload).unwrap();
            }
        };
        assert_schema("command-reply", &reply);
        assert_eq!(reply["ok"], false, "{reply}");
        refusals.push(reply["error"].as_str().unwrap().to_string());
    }
    assert!(refusals[0].contains("field `package`"), "{refusals:?}");
    assert_eq!(refusals[1], "no candidate model is in shadow mode");
    assert!(
        refusals[2].contains("unknown variant `retire`"),
        "{refusals:?}"
    );
    assert!(
        refusals[3].contains("the candidate is the running model"),
        "{refusals:?}"
    );

    // A line at eight parts a second, forty distinct parts, while the
    // admin works in the browser.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = e2e::feed_paced_distinct(
        station.frames.clone(),
        Duration::from_millis(125),
        stop.clone(),
        77,
        40,
    );
    let shots = repo().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("shadow-panel.png");
    let seen = e2e::browser_session(
        "browser_shadow.py",
        vec![
            format!("http://127.0.0.1:{port}"),
            "ada".into(),
            "ada's long password".into(),
            candidate.display().to_string(),
            shot.display().to_string(),
        ],
    )
    .await;
    assert!(seen["compared"].as_i64().unwrap() >= 30, "{seen}");
    assert!(seen["disagreements"].as_i64().unwrap() >= 1, "{seen}");
    assert!(
        seen["promoted"]
            .as_str()
            .unwrap()
            .contains("reference-inspector 0.3.0-shadow-test promoted"),
        "{seen}"
    );

    // What the MES saw: the running model's verdicts, then after the
    // promotion (announced on the retained status) the candidate's, and the
    // operator's commands answered on cmd/reply.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut published: Vec<String> = Vec::new();
    let mut promoted_sha: Option<String> = None;
    let mut replies = Vec::new();
    let on_candidate = |published: &[String], p: &Option<String>| {
        published.iter().filter(|s| Some(*s) == p.as_ref()).count()
    };
    while promoted_sha.is_none() || on_candidate(&published, &promoted_sha) < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (topic, payload) = tokio::time::timeout(left, messages.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "verdicts stopped coming: {} published, promoted model {promoted_sha:?}, replies {replies:?}",
                    published.len()
                )
            })
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        match topic.rsplit('/').next().unwrap() {
            "verdict" => published.push(v["model"]["sha256"].as_str().unwrap().to_string()),
            "status" if v["model"]["version"] == "0.3.0-shadow-test" => {
                promoted_sha = Some(v["model"]["sha256"].as_str().unwrap().to_string());
            }
            "reply" => replies.push(v),
            _ => {}
        }
    }
    let promoted_sha = promoted_sha.unwrap();
    assert_ne!(promoted_sha, running_sha);
    // The running model's verdicts, then the candidate's: never one of the
    // candidate's before the promotion, never the old model's after.
    let switch = published.iter().position(|s| *s == promoted_sha).unwrap();
    assert!(switch > 30, "{switch} verdicts before the promotion");
    assert!(published[..switch].iter().all(|s| *s == running_sha));
    assert!(published[switch..].iter().all(|s| *s == promoted_sha));
    let commands: Vec<&str> = replies
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["shadow", "shadow"], "{replies:?}");
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    station.stop().await;

    // The store: every candidate judgement shadows a verdict of the
    // running model, the disagreements with both decisions, and nothing of
    // the candidate among the verdicts before the promotion.
    let summaries = store::shadow::summaries(&store).await.unwrap();
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0];
    assert_eq!(s.sha256, promoted_sha);
    assert!(s.compared >= 30 && s.agreed < s.compared, "{s:?}");
    let listed = store::shadow::disagreements(&store, &s.sha256, 1000)
        .await
        .unwrap();
    assert_eq!(listed.len() as i64, s.compared - s.agreed);
    for d in &listed {
        assert_eq!(d.running.model.sha256, running_sha);
        assert_eq!(d.candidate.verdict_id, d.running.id);
        assert_eq!(d.candidate.running_decision, d.running.decision);
        assert_ne!(d.candidate.decision, d.running.decision);
    }
    let shadowed_by_candidate: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM shadow_verdicts s JOIN verdicts v ON v.id = s.verdict_id
         WHERE v.model_sha256 <> $1",
    )
    .bind(&running_sha)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        shadowed_by_candidate, 0,
        "only running-model verdicts are shadowed"
    );
    let events = store::health_history::events(&store, 50).await.unwrap();
    let operator: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "operator")
        .map(|e| e.detail.as_str())
        .collect();
    assert!(
        operator
            .iter()
            .any(|d| d.contains("promoted") && d.contains("ada")),
        "{operator:?}"
    );
}
