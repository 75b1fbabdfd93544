//! A plant, not a station: two stations and a plant server sharing one
//! PostgreSQL and one Mosquitto. The plant server's fleet page lists both
//! stations from their retained status and the database (online, model,
//! recipe, health, verdicts in the last hour, outbox backlog); its verdict
//! list holds every station's verdicts, filtered to one by a link; a review
//! made on the plant server of one station's verdict is published by that
//! station on its own review topic; a station that stops shows offline.
//! Rollouts: a model package sent from the plant server is taken on by the
//! online station at once and by the offline one when it returns; a
//! standard sent later keeps the model; a package file whose sha256 is not
//! the rolled-out one is refused and the running model stays.

use std::time::{Duration, Instant};

use e2e::{http_get, http_post, repo, subscribe, Broker, Postgres};
use store::accounts::{add_token, Role};

const PARTS: usize = 4;

fn station(
    dir: &std::path::Path,
    name: &str,
    pg: &Postgres,
    broker: &Broker,
) -> firmware_config::StationConfig {
    e2e::line_station(&dir.join(name), name, &broker.url(), &pg.url, "")
}

/// The reference package as another version in the plant's package
/// folder (graphs linked, manifest changed).
fn package(packages: &std::path::Path, folder: &str, version: &str) {
    let reference = repo().join("models/reference");
    let out = packages.join(folder);
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(&reference).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "model.toml" && path.is_file() {
            std::os::unix::fs::symlink(&path, out.join(name)).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(reference.join("model.toml")).unwrap();
    let changed = manifest.replacen(
        "version = \"0.3.0\"",
        &format!("version = \"{version}\""),
        1,
    );
    assert!(changed.contains(version));
    std::fs::write(out.join("model.toml"), changed).unwrap();
}

/// The next reply to rollout `id` on any station's `cmd/reply`.
async fn reply_to(
    replies: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    id: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, payload) = tokio::time::timeout(left, replies.recv())
            .await
            .unwrap_or_else(|_| panic!("no reply to rollout {id}"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if v["rollout"] == id {
            e2e::assert_schema("command-reply", &v);
            return v;
        }
    }
}

/// The fleet as the plant server's API gives it, once `ready` holds.
async fn fleet_when(
    port: u16,
    token: &str,
    what: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(port, "/api/v1/fleet", token);
        assert_eq!(status, 200, "{body}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if ready(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plant_server_sees_and_reviews_every_station() {
    let pg = Postgres::start().await;
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (_mes, mut heard) = subscribe(&broker, "mes", "inspect/+/review").await;
    let one = e2e::InProcess::start(station(dir.path(), "p-1", &pg, &broker));
    let two = e2e::InProcess::start(station(dir.path(), "p-2", &pg, &broker));

    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    let packages = dir.path().join("packages");
    let plant_toml = dir.path().join("plant.toml");
    std::fs::write(
        &plant_toml,
        format!(
            "[station]\nstation = \"plant-1\"\n\n[storage]\ndatabase_url = \"{}\"\ndata_dir = \"plant-data\"\n\n[http]\nbind = \"127.0.0.1:0\"\n\n[mqtt]\nurl = \"{}\"\n\n[plant]\npackages_dir = \"{}\"\nurl = \"http://127.0.0.1:{port}\"\n",
            pg.url,
            broker.url(),
            packages.display()
        ),
    )
    .unwrap();
    let cfg = appliance::plant::load(&plant_toml).unwrap();
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    let token = add_token(&store, "quality", Role::Operator, None)
        .await
        .unwrap();
    let admin = add_token(&store, "plant-it", Role::Admin, None)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let plant = tokio::spawn(appliance::plant::serve(cfg, stopped, Some(http)));

    e2e::feed_frames(one.frames.clone(), PARTS, 11)
        .join()
        .unwrap();
    e2e::feed_frames(two.frames.clone(), PARTS, 12)
        .join()
        .unwrap();
    e2e::wait_until_stored(&store, 2 * PARTS, Duration::from_secs(90)).await;

    // Both stations, online, with what they run and what they did.
    let rows = fleet_when(
        port,
        &token,
        "both stations online, outboxes drained",
        |rows| {
            rows.len() == 2
                && rows
                    .iter()
                    .all(|r| r["state"] == "online" && r["backlog"] == 0)
        },
    )
    .await;
    for (row, name) in rows.iter().zip(["p-1", "p-2"]) {
        assert_eq!(row["station"], name);
        assert_eq!(row["model"], "reference-inspector 0.3.0");
        assert_eq!(row["recipe"], "housing");
        assert_eq!(row["verdicts_last_hour"], PARTS as u64);
        assert!(row["last_verdict"].is_string(), "{row}");
    }
    let (status, page) = http_get(port, "/fleet", &token);
    assert_eq!(status, 200);
    assert!(page.contains(r#"href="/?station=p-1""#) && page.contains(r#"href="/?station=p-2""#));
    // The plant server's navigation: the fleet, not a line view.
    assert!(page.contains(r#"<a href="/fleet">Fleet</a>"#), "{page}");
    assert!(!page.contains(r#"href="/line""#) && !page.contains(r#"href="/panel""#));

    // Every station's verdicts, and one station's by its filter.
    let (_, all) = http_get(port, "/api/v1/verdicts?limit=100", &token);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2 * PARTS, "{all}");
    let (_, two_only) = http_get(port, "/api/v1/verdicts?station=p-2&limit=100", &token);
    let two_only: serde_json::Value = serde_json::from_str(&two_only).unwrap();
    let items = two_only["items"].as_array().unwrap();
    assert_eq!(items.len(), PARTS);
    assert!(items.iter().all(|v| v["station"] == "p-2"), "{two_only}");

    // A review on the plant server, published by the verdict's station.
    let id = items[0]["id"].as_str().unwrap();
    let (status, body) = http_post(
        port,
        &format!("/api/v1/verdicts/{id}/reviews"),
        r#"{"decision":"FAIL","reason":"checked at the plant's quality office"}"#,
        &token,
    );
    assert_eq!(status, 201, "{body}");
    let (topic, payload) = tokio::time::timeout(Duration::from_secs(30), heard.recv())
        .await
        .expect("the review is published")
        .unwrap();
    assert_eq!(topic, "inspect/p-2/review");
    let review: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    e2e::assert_schema("review.v1", &review);
    assert_eq!(review["verdict_id"], id);
    assert_eq!(review["reviewer"], "token:quality");

    // A station that stops shows offline, with what it last ran.
    one.stop().await;
    let rows = fleet_when(port, &token, "p-1 offline", |rows| {
        rows.iter()
            .any(|r| r["station"] == "p-1" && r["state"] == "offline")
    })
    .await;
    assert_eq!(rows[0]["model"], "reference-inspector 0.3.0");
    assert_eq!(rows[1]["state"], "online");

    // A model rolled out to both: p-2 takes it on now, p-1 (offline) when
    // it returns.
    let (mes, mut replies) = subscribe(&broker, "it", "inspect/+/cmd/reply").await;
    package(&packages, "inspector-0.3.1", "0.3.1-rollout-test");
    let (status, body) = http_post(
        port,
        "/api/v1/rollouts",
        r#"{"stations":["p-1","p-2"],"package":"inspector-0.3.1"}"#,
        &token,
    );
    assert_eq!(status, 403, "an operator may not roll out: {body}");
    let (status, body) = http_post(
        port,
        "/api/v1/rollouts",
        r#"{"stations":["p-1","p-2"],"package":"inspector-0.3.1"}"#,
        &admin,
    );
    assert_eq!(status, 201, "{body}");
    let sent: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(sent.len(), 2);
    let files = sent[1]["model"]["files"].as_object().unwrap();
    assert!(files.contains_key("model.toml") && files.contains_key("vision_encoder.onnx"));
    let reply = reply_to(&mut replies, sent[1]["id"].as_str().unwrap()).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["model"], "reference-inspector 0.3.1-rollout-test");
    fleet_when(port, &token, "p-2 runs the rolled-out model", |rows| {
        rows.iter().any(|r| {
            r["station"] == "p-2" && r["model"] == "reference-inspector 0.3.1-rollout-test"
        })
    })
    .await;
    let one = e2e::InProcess::start(station(dir.path(), "p-1", &pg, &broker));
    let reply = reply_to(&mut replies, sent[0]["id"].as_str().unwrap()).await;
    assert_eq!(reply["ok"], true, "{reply}");
    fleet_when(port, &token, "p-1 back, on the rolled-out model", |rows| {
        rows.iter().any(|r| {
            r["station"] == "p-1"
                && r["state"] == "online"
                && r["model"] == "reference-inspector 0.3.1-rollout-test"
        })
    })
    .await;

    // A standard to p-2: the model it was sent before stays.
    let text = "1. Scratches longer than 2 mm are rejected.\n2. Dents are not permitted.\n";
    let order =
        serde_json::json!({"stations": ["p-2"], "standard": {"recipe": "housing", "text": text}});
    let (status, body) = http_post(port, "/api/v1/rollouts", &order.to_string(), &admin);
    assert_eq!(status, 201, "{body}");
    let sent: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert!(
        sent[0]["model"]["files"]["model.toml"].is_string(),
        "{body}"
    );
    let reply = reply_to(&mut replies, sent[0]["id"].as_str().unwrap()).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["changed"],
        serde_json::json!(["standard of `housing`"])
    );
    let sha = sent[0]["standards"]["housing"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // A configuration reload reads the file's standard; the rollout stands over it.
    mes.publish(
        "inspect/p-2/cmd/config",
        rumqttc::QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    let reply = loop {
        let (_, payload) = tokio::time::timeout(Duration::from_secs(60), replies.recv())
            .await
            .expect("the configuration reload is answered")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if v["command"] == "config" {
            break v;
        }
    };
    assert_eq!(reply["ok"], true, "{reply}");
    let again = format!(
        "rollout {} applied again: standard of `housing`",
        sent[0]["id"].as_str().unwrap()
    );
    // The file's recipes differ from the running ones (the rollout's text),
    // so they are read, and then the standing rollout is applied again.
    let changed = reply["changed"].as_array().unwrap();
    assert_eq!(
        changed.last().unwrap(),
        &serde_json::json!(again),
        "{reply}"
    );
    e2e::feed_frames(two.frames.clone(), 1, 13).join().unwrap();
    e2e::wait_until_stored(&store, 2 * PARTS + 1, Duration::from_secs(90)).await;
    let (_, newest) = http_get(port, "/api/v1/verdicts?station=p-2&limit=1", &token);
    let newest: serde_json::Value = serde_json::from_str(&newest).unwrap();
    let id = newest["items"][0]["id"].as_str().unwrap();
    let (_, verdict) = http_get(port, &format!("/api/v1/verdicts/{id}"), &token);
    let verdict: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    assert_eq!(verdict["verdict"]["standard_sha256"], sha.as_str());
    assert_eq!(verdict["verdict"]["model"]["version"], "0.3.1-rollout-test");

    // A file whose sha256 is not the rolled-out one: refused, nothing changes.
    package(&packages, "inspector-0.3.2", "0.3.2-tampered");
    let mut tampered = sent[0].clone();
    tampered["id"] = "tampered-1".into();
    tampered["model"]["url"] =
        format!("http://127.0.0.1:{port}/rollout/packages/inspector-0.3.2/").into();
    tampered["model"]["files"]["model.toml"] =
        fusion::package::file_sha256(&packages.join("inspector-0.3.2/model.toml"))
            .unwrap()
            .into();
    tampered["model"]["files"]["vision_encoder.onnx"] = "f".repeat(64).into();
    mes.publish(
        "inspect/p-2/cmd/rollout",
        rumqttc::QoS::AtLeastOnce,
        false,
        tampered.to_string(),
    )
    .await
    .unwrap();
    let reply = reply_to(&mut replies, "tampered-1").await;
    assert_eq!(reply["ok"], false, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains("vision_encoder.onnx") && error.contains("sha256"),
        "{error}"
    );
    let rows = fleet_when(port, &token, "p-2 keeps its model", |_| true).await;
    assert_eq!(rows[1]["model"], "reference-inspector 0.3.1-rollout-test");

    // The plant's record of what it sent and how each station answered.
    let (_, history) = http_get(port, "/api/v1/rollouts", &token);
    let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(history.len(), 3, "{history:#?}");
    assert!(
        history.iter().all(|r| r["state"] == "taken on"),
        "{history:#?}"
    );
    let (status, page) = http_get(port, "/rollout", &admin);
    assert_eq!(status, 200);
    assert!(
        page.contains("inspector-0.3.1") && page.contains("0.3.2-tampered"),
        "{page}"
    );

    one.stop().await;
    two.stop().await;
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), plant)
        .await
        .expect("the plant server stops")
        .unwrap()
        .unwrap();
}
