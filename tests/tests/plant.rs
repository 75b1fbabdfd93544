//! A plant, not a station: two stations and a plant server sharing one
//! PostgreSQL and one Mosquitto. The plant server's fleet page lists both
//! stations from their retained status and the database (online, model,
//! recipe, health, verdicts in the last hour, outbox backlog); its verdict
//! list holds every station's verdicts, filtered to one by a link; a review
//! made on the plant server of one station's verdict is published by that
//! station on its own review topic; a station that stops shows offline.

use std::time::{Duration, Instant};

use e2e::{http_get, http_post, subscribe, Broker, Postgres};
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

    let plant_toml = dir.path().join("plant.toml");
    std::fs::write(
        &plant_toml,
        format!(
            "[station]\nstation = \"plant-1\"\n\n[storage]\ndatabase_url = \"{}\"\ndata_dir = \"plant-data\"\n\n[http]\nbind = \"127.0.0.1:0\"\n\n[mqtt]\nurl = \"{}\"\n",
            pg.url,
            broker.url()
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
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
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

    two.stop().await;
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), plant)
        .await
        .expect("the plant server stops")
        .unwrap()
        .unwrap();
}
