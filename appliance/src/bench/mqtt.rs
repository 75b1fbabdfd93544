//! The bench as the plant sees the station: a client of the station's
//! broker that waits for the station to say it is online (its engines
//! loaded and warm) before any part is sent, hears every result the PLC
//! would hear, with when, and can start shadow mode as a plant system does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use delivery::link::{self, Client, Events, LinkEvent, Session};
use delivery::Topics;
use firmware_config::{BrokerMode, StationConfig};
use rumqttc::QoS;
use tokio::sync::oneshot;

/// A connection to the station's broker (the embedded one where it hosts
/// its own).
fn connect(cfg: &StationConfig, role: &str) -> anyhow::Result<(Client, Events)> {
    let endpoint = link::Endpoint::from_config(cfg)?;
    let endpoint = match cfg.mqtt.broker {
        BrokerMode::Embedded => endpoint.local(cfg.mqtt.embedded_listen.port()),
        BrokerMode::External => endpoint,
    };
    Ok(link::connect(
        &endpoint,
        Session {
            client_id: format!("{}-{role}", cfg.station.station),
            persistent: false,
            will: None,
            capacity: 64,
            max_incoming: 1 << 20,
        },
    ))
}

fn topics(cfg: &StationConfig) -> Topics {
    Topics::new(&cfg.mqtt.topic_prefix, &cfg.station.station)
}

/// Results heard on the station's `result` topic: part id → when it came.
#[derive(Clone, Default)]
pub struct Heard(Arc<Mutex<HashMap<String, SystemTime>>>);

impl Heard {
    pub fn len(&self) -> usize {
        self.0.lock().expect("heard lock").len()
    }

    pub fn take(&self) -> HashMap<String, SystemTime> {
        std::mem::take(&mut *self.0.lock().expect("heard lock"))
    }
}

/// The listening client; results are heard until it is dropped.
pub struct Listener {
    pub heard: Heard,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to the station's results and status (again on every
/// connect: the session is not kept) and returns once the station has said
/// it is online. The status subscription follows the results' on the same
/// connection, so by the time the retained status arrives the results are
/// heard.
pub async fn listen(cfg: &StationConfig) -> anyhow::Result<Listener> {
    let (client, mut events) = connect(cfg, "listener")?;
    let t = topics(cfg);
    let (status, result) = (t.status(), t.result());
    let heard = Heard::default();
    let (online_tx, online) = oneshot::channel();
    let task = tokio::spawn({
        let heard = heard.clone();
        async move {
            let mut online_tx = Some(online_tx);
            loop {
                match events.poll().await {
                    Ok(LinkEvent::Connected { .. }) => {
                        for topic in [&result, &status] {
                            if client.subscribe(topic, QoS::AtLeastOnce).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(LinkEvent::Message { topic, payload }) => {
                        let at = SystemTime::now();
                        let v: serde_json::Value =
                            serde_json::from_slice(&payload).unwrap_or_default();
                        if topic == result {
                            if let Some(part) = v["part_id"].as_str() {
                                let mut heard = heard.0.lock().expect("heard lock");
                                heard.entry(part.to_string()).or_insert(at);
                            }
                        } else if topic == status && v["state"] == "online" {
                            if let Some(tx) = online_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    Ok(_) => {}
                    // Not up yet (the embedded broker starts with the station).
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });
    let listener = Listener { heard, task };
    tokio::time::timeout(Duration::from_secs(120), online)
        .await
        .context("the station did not come online within 120 s")?
        .context("the bench's MQTT listener stopped")?;
    Ok(listener)
}

/// Starts shadow mode on the bench's station as a plant system would:
/// sends `cmd/shadow` once the station's online status is heard and waits
/// for the reply (the candidate loads and warms up meanwhile).
pub async fn start_shadow(cfg: &StationConfig, package: &Path) -> anyhow::Result<()> {
    let (client, mut events) = connect(cfg, "shadow")?;
    let t = topics(cfg);
    let (status, reply) = (t.status(), t.reply());
    let command = serde_json::json!({ "action": "start", "package": package }).to_string();
    let answered = async {
        let mut sent = false;
        loop {
            match events.poll().await {
                Ok(LinkEvent::Connected { .. }) => {
                    client.subscribe(&reply, QoS::AtLeastOnce).await?;
                    client.subscribe(&status, QoS::AtLeastOnce).await?;
                }
                Ok(LinkEvent::Message { topic, payload }) => {
                    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                    if topic == status && v["state"] == "online" && !sent {
                        client
                            .publish(
                                &t.command("shadow"),
                                QoS::AtLeastOnce,
                                false,
                                command.clone().into_bytes(),
                            )
                            .await?;
                        sent = true;
                    } else if topic == reply && v["command"] == "shadow" {
                        anyhow::ensure!(v["ok"] == true, "shadow mode refused: {}", v["error"]);
                        tracing::info!(reply = %v["model"], "bench: shadow mode on");
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let started = tokio::time::timeout(Duration::from_secs(120), answered)
        .await
        .context("no answer to cmd/shadow within 120 s")?;
    let _ = client.disconnect().await;
    started
}
