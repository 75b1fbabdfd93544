//! Trigger mode end to end: an OpenCV camera (a video file written here with
//! OpenCV's writer, mounted rotated) runs continuously, and only MQTT
//! `cmd/trigger` commands and HTTP trigger calls turn frames into verdicts
//! carrying the part id. Malformed commands are answered with errors naming
//! the problem while inspection continues; the camera's state is published.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::web::{form, get, sign_in};
use e2e::{assert_schema, http_get, http_post, load_config, repo, subscribe, Broker};
use opencv::core::{Mat, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::videoio::VideoWriter;
use rumqttc::QoS;
use store::accounts::{add_user, Role};
use tokio::sync::mpsc::UnboundedReceiver;

fn write_video(path: &Path) {
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
    let mut w = VideoWriter::new(
        &path.to_string_lossy(),
        fourcc,
        25.0,
        Size::new(320, 240),
        true,
    )
    .unwrap();
    for i in 0..50 {
        let m = Mat::new_rows_cols_with_default(
            240,
            320,
            CV_8UC3,
            Scalar::new(90.0 + i as f64, 100.0, 110.0, 0.0),
        )
        .unwrap();
        w.write(&m).unwrap();
    }
    w.release().unwrap();
}

async fn next_on(
    messages: &mut UnboundedReceiver<(String, Vec<u8>)>,
    topic: &str,
    what: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, v) = tokio::time::timeout(left, messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} on {topic} in time"))
            .unwrap();
        if t == topic {
            let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
            let schema = match topic.rsplit('/').next().unwrap() {
                "verdict" => "verdict.v1",
                "reply" => "command-reply",
                "status" => "status",
                _ => "camera-state",
            };
            assert_schema(schema, &v);
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_over_mqtt_and_http_turn_fresh_frames_into_verdicts() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    write_video(&dir.path().join("line.avi"));
    std::fs::write(
        dir.path().join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cover.txt"),
        "Cover standard.\n1. No stains are permitted.",
    )
    .unwrap();
    // Bound here and handed over, so the port is known and cannot be taken.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = http.local_addr().unwrap().port();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "trig-1"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
rotate = 90
[cameras.source]
kind = "opencv"
file = "line.avi"
looping = true
mode = "trigger"
trigger_queue = 4

[[recipes]]
name = "housing"
standard = "standard.txt"

[[recipes]]
name = "cover"
standard = "cover.txt"

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
"#,
            model = repo().join("models/reference").display(),
            url = broker.url(),
        ),
    );
    let operator = e2e::api_token(&cfg, "operator").await;
    {
        let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
            .await
            .unwrap();
        for (name, role) in [("otto", Role::Operator), ("vera", Role::Viewer)] {
            add_user(&store, name, role, &format!("{name}'s long password"))
                .await
                .unwrap();
        }
    }
    let viewer = e2e::api_token(&cfg, "viewer").await;
    let (plc, mut messages) = subscribe(&broker, "plc", "inspect/trig-1/#").await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg, stop_rx, Some(http)));

    // The camera's state and the birth (the model is loaded) come in either order.
    let (mut camera_up, mut online) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(camera_up && online) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, v) = tokio::time::timeout(left, messages.recv())
            .await
            .expect("camera state and birth in time")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&v).unwrap_or_default();
        match t.as_str() {
            "inspect/trig-1/camera/line" => {
                assert_schema("camera-state", &v);
                assert_eq!(v["state"], "up", "{v}");
                camera_up = true;
            }
            "inspect/trig-1/status" => {
                assert_schema("status", &v);
                online = v["state"] == "online";
            }
            _ => {}
        }
    }
    // The camera streams, but nothing is judged without a trigger.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok((t, _)) = messages.try_recv() {
        assert_ne!(t, "inspect/trig-1/verdict", "a verdict without a trigger");
    }

    let cmd = |payload: Vec<u8>| {
        let plc = plc.clone();
        async move {
            plc.publish(
                "inspect/trig-1/cmd/trigger",
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap()
        }
    };
    cmd(br#"{"part_id":"P-1","request_id":"r1","trigger_id":"T-1"}"#.to_vec()).await;
    let reply = next_on(&mut messages, "inspect/trig-1/cmd/reply", "reply").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["request_id"], "r1");
    assert_eq!(reply["cameras"], serde_json::json!(["line"]));
    let v = next_on(&mut messages, "inspect/trig-1/verdict", "verdict").await;
    assert_eq!(v["part_id"], "P-1");
    assert_eq!(v["trigger_id"], "T-1");
    assert_eq!(v["camera"], "line");
    // Mounted rotated by 90 degrees: the 320x240 stream is judged and stored upright.
    assert_eq!(
        (v["image"]["width"].clone(), v["image"]["height"].clone()),
        (240.into(), 320.into())
    );
    let stored = image::open(dir.path().join(v["image"]["path"].as_str().unwrap()))
        .or_else(|_| image::open(v["image"]["path"].as_str().unwrap()))
        .unwrap();
    assert_eq!((stored.width(), stored.height()), (240, 320));

    // Malformed commands: each answered with the problem, nothing judged.
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trigger", b"{\"part_id\": ".to_vec(), "not valid JSON"),
        (
            "trigger",
            br#"{"part_id": 17}"#.to_vec(),
            "field `part_id`: invalid type",
        ),
        (
            "trigger",
            br#"{"part_id":"P-x","camera":"side"}"#.to_vec(),
            "no camera `side`",
        ),
        (
            "trigger",
            format!(r#"{{"part_id":"{}"}}"#, "x".repeat(5000)).into_bytes(),
            "limit is 4096",
        ),
        (
            "self-destruct",
            b"{}".to_vec(),
            "unknown command `self-destruct`",
        ),
    ];
    for (name, payload, expected) in bad {
        plc.publish(
            format!("inspect/trig-1/cmd/{name}"),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .unwrap();
        let reply = next_on(&mut messages, "inspect/trig-1/cmd/reply", "error reply").await;
        assert_eq!(reply["ok"], false, "{reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error} should say {expected}");
    }

    // Inspection continues: MQTT and HTTP triggers are both answered.
    cmd(br#"{"part_id":"P-2"}"#.to_vec()).await;
    let v = next_on(&mut messages, "inspect/trig-1/verdict", "verdict").await;
    assert_eq!(v["part_id"], "P-2");
    assert!(
        v["trigger_id"].is_string(),
        "a trigger id is made when absent"
    );
    // Over HTTP a trigger needs an operator's credentials and a JSON body:
    // no stranger, viewer or other web page (a text/plain form) fires one.
    let (v, o) = (viewer.clone(), operator.clone());
    let refusals = tokio::task::spawn_blocking(move || {
        let body = r#"{"part_id":"P-X"}"#;
        [
            http_post(http_port, "/api/v1/trigger", body, "").0,
            http_post(http_port, "/api/v1/trigger", body, &v).0,
            e2e::http_request(
                http_port,
                "POST",
                "/api/v1/trigger",
                &[format!("Authorization: Bearer {o}")],
                "text/plain",
                body,
            )
            .0,
            http_get(http_port, "/api/v1/cameras", "").0,
            http_get(http_port, "/api/v1/outbox", "").0,
            http_get(http_port, "/api/v1/cameras", &v).0,
        ]
    })
    .await
    .unwrap();
    assert_eq!(refusals, [401, 403, 415, 401, 401, 200]);
    let o = operator.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http_post(
            http_port,
            "/api/v1/trigger",
            r#"{"part_id":"P-3","request_id":"h1"}"#,
            &o,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ok":true"#), "{body}");
    let v = next_on(&mut messages, "inspect/trig-1/verdict", "verdict").await;
    assert_eq!(v["part_id"], "P-3");
    let (status, body) = tokio::task::spawn_blocking(move || {
        http_post(http_port, "/api/v1/trigger", r#"{"part":1}"#, &operator)
    })
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field `part`"), "{body}");

    // Recipe switch: an unknown one is refused naming the configured ones;
    // a known one takes effect for the next part.
    plc.publish(
        "inspect/trig-1/cmd/recipe",
        QoS::AtLeastOnce,
        false,
        br#"{"recipe":"lid"}"#.to_vec(),
    )
    .await
    .unwrap();
    let reply = next_on(&mut messages, "inspect/trig-1/cmd/reply", "recipe reply").await;
    assert_eq!(reply["ok"], false);
    assert_eq!(
        reply["error"],
        "unknown recipe `lid`; configured: housing, cover"
    );
    plc.publish(
        "inspect/trig-1/cmd/recipe",
        QoS::AtLeastOnce,
        false,
        br#"{"recipe":"cover","request_id":"r9"}"#.to_vec(),
    )
    .await
    .unwrap();
    // The reply and the retained status that follows the switch come in
    // either order.
    let (mut reply, mut status) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reply.is_none() || status.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, v) = tokio::time::timeout(left, messages.recv())
            .await
            .expect("recipe reply and new status in time")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&v).unwrap_or_default();
        match t.as_str() {
            "inspect/trig-1/cmd/reply" => {
                assert_schema("command-reply", &v);
                reply = Some(v);
            }
            "inspect/trig-1/status" => {
                assert_schema("status", &v);
                status = Some(v);
            }
            _ => {}
        }
    }
    let (reply, status) = (reply.unwrap(), status.unwrap());
    assert_eq!(
        (reply["ok"].clone(), reply["recipe"].clone()),
        (true.into(), "cover".into()),
        "{reply}"
    );
    assert_eq!(status["recipe"], "cover", "{status}");
    assert_eq!(status["standard_sha256"], reply["standard_sha256"]);
    cmd(br#"{"part_id":"P-4"}"#.to_vec()).await;
    let v = next_on(&mut messages, "inspect/trig-1/verdict", "verdict").await;
    assert_eq!(
        (v["part_id"].as_str(), v["recipe"].as_str()),
        (Some("P-4"), Some("cover"))
    );
    assert_eq!(v["standard_sha256"], reply["standard_sha256"]);

    // Model reload: verified, warmed up and swapped; a malformed request is refused.
    plc.publish(
        "inspect/trig-1/cmd/reload",
        QoS::AtLeastOnce,
        false,
        br#"{"now":true}"#.to_vec(),
    )
    .await
    .unwrap();
    let reply = next_on(&mut messages, "inspect/trig-1/cmd/reply", "reload reply").await;
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `now`"),
        "{reply}"
    );
    plc.publish(
        "inspect/trig-1/cmd/reload",
        QoS::AtLeastOnce,
        false,
        Vec::new(),
    )
    .await
    .unwrap();
    let reply = next_on(&mut messages, "inspect/trig-1/cmd/reply", "reload reply").await;
    assert_eq!(reply["ok"], true, "{reply}");
    let shipped = fusion::package::Manifest::read(&repo().join("models/reference")).unwrap();
    assert_eq!(
        reply["model"],
        format!("{} {}", shipped.name, shipped.version)
    );
    cmd(br#"{"part_id":"P-5"}"#.to_vec()).await;
    let v = next_on(&mut messages, "inspect/trig-1/verdict", "verdict").await;
    assert_eq!(v["part_id"], "P-5");

    // From the line view: an operator switches the recipe and triggers a
    // part (CSRF and role checked); a viewer only watches. Each answer is
    // on the page, on cmd/reply, and in the event history with its author.
    let (pages, said) = tokio::task::spawn_blocking(move || {
        let (otto, otto_csrf) = sign_in(http_port, "otto", "otto's long password");
        let (vera, vera_csrf) = sign_in(http_port, "vera", "vera's long password");
        let (_, _, otto_page) = get(http_port, "/line", &otto);
        let (_, _, vera_page) = get(http_port, "/line", &vera);
        let refused = [
            form(
                http_port,
                "/line/command",
                &otto,
                "command=recipe&recipe=housing",
            )
            .0,
            form(
                http_port,
                "/line/command",
                &vera,
                &format!("command=recipe&recipe=housing&csrf={vera_csrf}"),
            )
            .0,
        ];
        assert_eq!(refused, [403, 403], "no CSRF token; a viewer");
        let location = |(status, head, _): (u16, String, String)| {
            assert_eq!(status, 303, "{head}");
            head.lines()
                .find_map(|l| l.strip_prefix("location: "))
                .unwrap()
                .to_string()
        };
        let switched = location(form(
            http_port,
            "/line/command",
            &otto,
            &format!("command=recipe&recipe=housing&csrf={otto_csrf}"),
        ));
        let triggered = location(form(
            http_port,
            "/line/command",
            &otto,
            &format!("command=trigger&part_id=P-6&csrf={otto_csrf}"),
        ));
        let (_, _, shown) = get(http_port, &switched, &otto);
        ((otto_page, vera_page), (switched, triggered, shown))
    })
    .await
    .unwrap();
    assert!(
        pages.0.contains("Switch recipe") && pages.0.contains(r#"<option value="cover" selected>"#)
    );
    assert!(
        !pages.1.contains("Switch recipe"),
        "a viewer gets no controls"
    );
    assert_eq!(
        said.0,
        "/line?said=Recipe%20switched%20to%20housing%20by%20otto"
    );
    assert_eq!(
        said.1,
        "/line?said=Part%20P-6%20triggered%20on%20line%20by%20otto"
    );
    assert!(said
        .2
        .contains(r#"<p id="said" class="said">Recipe switched to housing by otto</p>"#));
    let reply = next_on(
        &mut messages,
        "inspect/trig-1/cmd/reply",
        "the line view's reply",
    )
    .await;
    assert_eq!(
        (reply["recipe"].as_str(), reply["ok"].as_bool()),
        (Some("housing"), Some(true))
    );
    let v = next_on(&mut messages, "inspect/trig-1/verdict", "verdict").await;
    assert_eq!(
        (v["part_id"].as_str(), v["recipe"].as_str()),
        (Some("P-6"), Some("housing"))
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("service stops")
        .unwrap()
        .unwrap();
    // Exactly six parts were triggered, so exactly six verdicts exist.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("appliance.db").display()
    ))
    .await
    .unwrap();
    let parts: Vec<String> = sqlx::query_scalar("SELECT part_id FROM verdicts ORDER BY part_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(parts, ["P-1", "P-2", "P-3", "P-4", "P-5", "P-6"]);
    let events: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM health_events WHERE kind = 'operator' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].ends_with("Recipe switched to housing by otto"),
        "{events:?}"
    );
}
