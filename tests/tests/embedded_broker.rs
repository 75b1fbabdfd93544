//! A stand-alone station: `mqtt.broker = "embedded"` hosts the broker in the
//! appliance, and the PLC connects to the appliance itself. The PLC gets the
//! retained status and a result per part, and a command sent through the
//! embedded broker is answered. A second station configured on a port that
//! is taken is refused with an error naming `mqtt.embedded_listen`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use e2e::{feed_frames, free_port, load_config, repo};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vision::sources::Arrival;

const PARTS: usize = 20;

fn station(dir: &std::path::Path, listen: u16) -> firmware_config::StationConfig {
    std::fs::write(
        dir.join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    load_config(
        dir,
        &format!(
            r#"
[station]
station = "solo-1"
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
broker = "embedded"
embedded_listen = "127.0.0.1:{listen}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_talks_to_the_appliance_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = station(dir.path(), port);
    let solo = e2e::InProcess::start(cfg);

    // The PLC connects to the appliance (retrying until it listens).
    let mut opts = MqttOptions::new("plc", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (plc, mut events) = AsyncClient::new(opts, 64);
    plc.subscribe("inspect/solo-1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (msg_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = msg_tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });

    let mut status_online = false;
    let mut results = 0;
    let mut reply = None;
    let mut fed = false;
    while !(status_online && results == PARTS && reply.is_some()) {
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(90), messages.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("status {status_online}, {results} results, reply {reply:?}")
            })
            .unwrap();
        if topic.ends_with("/cmd/recipe") {
            continue; // our own command
        }
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        match topic.as_str() {
            "inspect/solo-1/status" if v["state"] == "online" => {
                status_online = true;
                if !fed {
                    fed = true;
                    feed_frames(solo.frames.clone(), PARTS, 31);
                    plc.publish("inspect/solo-1/cmd/recipe", QoS::AtLeastOnce, false, "{")
                        .await
                        .unwrap();
                }
            }
            "inspect/solo-1/result" => {
                e2e::assert_schema("result", &v);
                results += 1;
            }
            "inspect/solo-1/cmd/reply" => reply = Some(v),
            _ => {}
        }
    }
    let reply = reply.unwrap();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("JSON"), "{reply}");

    // A second embedded broker on the same port is refused, naming the key.
    let other = tempfile::tempdir().unwrap();
    let (_tx2, rx2) = tokio::sync::mpsc::channel::<Arrival>(1);
    let (_stop2, stop_rx2) = tokio::sync::watch::channel(false);
    let err = appliance::pipeline::serve(
        station(other.path(), port),
        rx2,
        appliance::cameras::CameraLinks::none(),
        stop_rx2,
        Arc::new(AtomicBool::new(false)),
        None,
    )
    .await
    .expect_err("the port is taken");
    assert!(
        format!("{err:#}").contains("mqtt.embedded_listen"),
        "{err:#}"
    );

    solo.stop().await;
}
