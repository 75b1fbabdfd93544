//! Plant server mode (`appliance plant --config plant.toml`): the review
//! UI, JSON API, charts, exports and accounts over the plant's shared
//! database for every station, with no camera or model, and the fleet page
//! (`/fleet`) built from each station's retained `status` on the plant's
//! broker and its figures in the database.
//!
//! A review made here goes into the outbox of the station whose verdict it
//! is (the store orders outbox writers of a station across processes), so
//! the station publishes it on its own `review` topic as if it were made on
//! its own screen.
//!
//! Rollouts: an admin sends a model package from `plant.packages_dir`, or a
//! recipe's standard text, to chosen stations. Each station's whole desired
//! state goes out as a retained `rollout/v1` message on its `cmd/rollout`
//! (so one that is offline finds it on its return), with the sha256 of every
//! file; the station fetches the files from this server's
//! `/rollout/packages/…` and answers on `cmd/reply`, which is recorded.
//!
//! `plant.toml` is read like a station's file (the same layers, the same
//! errors naming keys); only `[station] station` (the server's name),
//! `[storage]`, `[http]`, `[mqtt]`, `[review]`, `[monitoring]` and `[plant]`
//! mean anything to it, and a file that sets station-only sections is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use delivery::link::{self, LinkEvent, Session};
use firmware_config::{BrokerMode, StationConfig};
use review_web::fleet::{FleetFeed, StationSeen};
use tokio::sync::watch;

/// Sections of a station's file that mean nothing to a plant server.
const STATION_ONLY: &[&str] = &["cameras", "parts", "recipes", "model", "batching", "shifts"];

/// Loads `plant.toml`: refused when it sets station-only sections or hosts
/// its own broker, or for any problem a station's file would be refused for
/// (files it names are not looked for: it names none).
pub fn load(path: &Path) -> anyhow::Result<StationConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plant configuration {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let stray: Vec<&str> = STATION_ONLY
        .iter()
        .copied()
        .filter(|s| table.contains_key(*s))
        .collect();
    anyhow::ensure!(
        stray.is_empty(),
        "{}: [{}] means nothing to a plant server (it has no camera or model); it reads [station] station, [storage], [http], [mqtt], [review], [monitoring] and [plant]",
        path.display(),
        stray.join("], [")
    );
    let mut loader = firmware_config::Loader::new(Some(path));
    loader.check_files = false;
    let cfg = loader.load()?;
    anyhow::ensure!(
        cfg.mqtt.broker == BrokerMode::External,
        "{}: mqtt.broker must be \"external\": a plant server connects to the plant's broker",
        path.display()
    );
    Ok(cfg)
}

/// The stations the broker told of, by name.
#[derive(Clone, Default)]
struct Fleet(Arc<Mutex<BTreeMap<String, StationSeen>>>);

impl Fleet {
    fn feed(&self) -> FleetFeed {
        let fleet = self.0.clone();
        Arc::new(move || {
            fleet
                .lock()
                .expect("fleet lock")
                .values()
                .cloned()
                .collect()
        })
    }

    /// Takes in a station's status payload. `offline` keeps what the
    /// station last said it ran.
    fn seen(&self, station: &str, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            tracing::warn!(station, "status that is not JSON; ignored");
            return;
        };
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let mut fleet = self.0.lock().expect("fleet lock");
        let s = fleet.entry(station.to_string()).or_insert(StationSeen {
            station: station.to_string(),
            ..StationSeen::default()
        });
        s.state = text(&v["state"]).unwrap_or_default();
        if s.state == "online" {
            s.model = match (text(&v["model"]["name"]), text(&v["model"]["version"])) {
                (Some(n), Some(version)) => Some(format!("{n} {version}")),
                _ => None,
            };
            s.recipe = text(&v["recipe"]);
            s.health = text(&v["health"]["state"]);
        }
    }
}

/// The station a status topic names: `{prefix}/{station}/status`.
fn station_of<'a>(topic: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = if prefix.is_empty() {
        topic
    } else {
        topic
            .strip_prefix(prefix.trim_end_matches('/'))?
            .strip_prefix('/')?
    };
    rest.strip_suffix("/status").filter(|s| !s.contains('/'))
}

/// The plant server's own MQTT connection: it follows the stations'
/// status and command replies, and publishes rollouts.
fn plant_link(cfg: &StationConfig) -> anyhow::Result<(link::Client, link::Events)> {
    let endpoint = link::Endpoint::from_config(cfg)?;
    let client_id = if cfg.mqtt.client_id.is_empty() {
        format!("{}-plant", cfg.station.station)
    } else {
        cfg.mqtt.client_id.clone()
    };
    Ok(link::connect(
        &endpoint,
        Session {
            client_id,
            persistent: false,
            will: None,
            capacity: 64,
            max_incoming: 1 << 20,
        },
    ))
}

/// Follows every station's retained status and its command replies until
/// `shutdown`, reconnecting to the broker (and subscribing again) whenever
/// the connection drops; a reply to a rollout is recorded beside it.
async fn watch_stations(
    prefix: String,
    client: link::Client,
    mut events: link::Events,
    fleet: Fleet,
    store: store::Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let base = if prefix.is_empty() {
        "+".to_string()
    } else {
        format!("{}/+", prefix.trim_end_matches('/'))
    };
    let (status, replies) = (format!("{base}/status"), format!("{base}/cmd/reply"));
    loop {
        let event = tokio::select! {
            e = events.poll() => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(LinkEvent::Connected { .. }) => {
                tracing::info!(
                    filter = status,
                    "plant server: following the stations' status"
                );
                for filter in [&status, &replies] {
                    if let Err(e) = client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await {
                        tracing::warn!(error = %e, filter, "cannot subscribe");
                    }
                }
            }
            Ok(LinkEvent::Message { topic, payload }) => {
                if let Some(station) = station_of(&topic, &prefix) {
                    fleet.seen(station, &payload);
                } else if topic.ends_with("/cmd/reply") {
                    rollout_answered(&store, &payload).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "plant server: broker connection lost; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let _ = client.disconnect().await;
}

/// Records a station's answer to a rollout (other replies are not ours).
async fn rollout_answered(store: &store::Store, payload: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    let (Some("rollout"), Some(id)) = (v["command"].as_str(), v["rollout"].as_str()) else {
        return;
    };
    let ok = v["ok"].as_bool().unwrap_or(false);
    let answer = if ok {
        let changed: Vec<&str> = v["changed"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        if changed.is_empty() {
            "nothing to change: it already ran this".to_string()
        } else {
            changed.join("; ")
        }
    } else {
        v["error"].as_str().unwrap_or("refused").to_string()
    };
    match store::rollouts::answered(store, id, ok, &answer, &record::time::now()).await {
        Ok(true) => tracing::info!(rollout = id, ok, answer, "rollout answered"),
        Ok(false) => {}
        Err(e) => tracing::warn!(rollout = id, error = %e, "cannot record a rollout's answer"),
    }
}

/// Serves the plant's pages until `shutdown` turns true. `http`: a listener
/// the caller bound (systemd socket activation, a test on port 0).
pub async fn serve(
    cfg: StationConfig,
    shutdown: watch::Receiver<bool>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir).await?;
    // Months of verdicts on the shared database are the plant server's to
    // let go (`verdict_months`); pictures are each station's own.
    tokio::spawn(store::retention::run(
        store.clone(),
        store::retention::Policy::plant(&cfg.storage),
        cfg.storage.sweep_every,
        shutdown.clone(),
    ));
    let fleet = Fleet::default();
    let (client, events) = plant_link(&cfg).context("the plant's broker")?;
    let desk = Arc::new(crate::rollout::plant::Desk::new(
        &cfg,
        store.clone(),
        client.clone(),
    )?);
    let watcher = tokio::spawn(watch_stations(
        cfg.mqtt.topic_prefix.clone(),
        client,
        events,
        fleet.clone(),
        store.clone(),
        shutdown.clone(),
    ));
    let web = review_web::Web {
        accounts: store::accounts::Accounts::new(store.clone()),
        store: store.clone(),
        secure_cookies: cfg.http.secure_cookies,
        latency_budget: cfg.monitoring.latency_threshold,
        line: review_web::line::LineFeed::idle(),
        review_topic: Some(crate::pipeline::review_topic(&cfg.mqtt.topic_prefix)),
        reasons: cfg.review.reasons.clone(),
        fleet: Some(fleet.feed()),
        rollout: Some(desk),
    };
    let listener = crate::http::listen(http, cfg.http.bind)
        .await
        .with_context(|| format!("http.bind {}", cfg.http.bind))?;
    let (bound, task) = crate::http::start(
        listener,
        crate::cameras::Triggers::default(),
        Vec::new(),
        web,
        cfg.http.open_metrics,
        shutdown.clone(),
    )?;
    tracing::info!(address = %bound, plant = %cfg.station.station, "plant server ready");
    crate::systemd::ready();
    let mut stop = shutdown;
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_topic_names_its_station() {
        assert_eq!(station_of("inspect/st-1/status", "inspect"), Some("st-1"));
        assert_eq!(
            station_of("plant/a/inspect/st-1/status", "plant/a/inspect/"),
            Some("st-1")
        );
        assert_eq!(station_of("st-1/status", ""), Some("st-1"));
        assert_eq!(station_of("inspect/st-1/camera/top", "inspect"), None);
        assert_eq!(station_of("other/st-1/status", "inspect"), None);
    }

    #[test]
    fn offline_keeps_what_the_station_last_ran() {
        let fleet = Fleet::default();
        fleet.seen(
            "st-1",
            br#"{"state":"online","model":{"name":"inspector","version":"0.3.0"},"recipe":"housing","health":{"state":"healthy"}}"#,
        );
        fleet.seen("st-1", br#"{"state":"offline"}"#);
        fleet.seen("st-2", b"not json");
        let seen = (fleet.feed())();
        assert_eq!(
            seen,
            vec![StationSeen {
                station: "st-1".into(),
                state: "offline".into(),
                model: Some("inspector 0.3.0".into()),
                recipe: Some("housing".into()),
                health: Some("healthy".into()),
            }]
        );
    }

    #[test]
    fn a_plant_file_with_station_sections_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plant.toml");
        std::fs::write(
            &path,
            "[station]\nstation = \"plant-1\"\n[model]\npackage = \"m\"\n[[cameras]]\nid = \"top\"\n",
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("[cameras], [model] means nothing to a plant server"),
            "{e}"
        );
        std::fs::write(
            &path,
            "[station]\nstation = \"plant-1\"\n[mqtt]\nbroker = \"embedded\"\n",
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("mqtt.broker must be \"external\""), "{e}");
    }
}
