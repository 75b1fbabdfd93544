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
//! `plant.toml` is read like a station's file (the same layers, the same
//! errors naming keys); only `[station] station` (the server's name),
//! `[storage]`, `[http]`, `[mqtt]`, `[review]` and `[monitoring]` mean
//! anything to it, and a file that sets station-only sections is refused.

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
        "{}: [{}] means nothing to a plant server (it has no camera or model); it reads [station] station, [storage], [http], [mqtt], [review] and [monitoring]",
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

/// Follows every station's retained status until `shutdown`, reconnecting
/// to the broker (and subscribing again) whenever the connection drops.
async fn watch_status(cfg: StationConfig, fleet: Fleet, mut shutdown: watch::Receiver<bool>) {
    let endpoint = match link::Endpoint::from_config(&cfg) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "the fleet page cannot reach the broker");
            return;
        }
    };
    let client_id = if cfg.mqtt.client_id.is_empty() {
        format!("{}-plant", cfg.station.station)
    } else {
        cfg.mqtt.client_id.clone()
    };
    let (client, mut events) = link::connect(
        &endpoint,
        Session {
            client_id,
            persistent: false,
            will: None,
            capacity: 64,
            max_incoming: 1 << 20,
        },
    );
    let prefix = cfg.mqtt.topic_prefix.clone();
    let filter = if prefix.is_empty() {
        "+/status".to_string()
    } else {
        format!("{}/+/status", prefix.trim_end_matches('/'))
    };
    loop {
        let event = tokio::select! {
            e = events.poll() => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(LinkEvent::Connected { .. }) => {
                tracing::info!(filter, "plant server: following the stations' status");
                if let Err(e) = client.subscribe(&filter, rumqttc::QoS::AtLeastOnce).await {
                    tracing::warn!(error = %e, "cannot subscribe to the stations' status");
                }
            }
            Ok(LinkEvent::Message { topic, payload }) => {
                if let Some(station) = station_of(&topic, &prefix) {
                    fleet.seen(station, &payload);
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

/// Serves the plant's pages until `shutdown` turns true. `http`: a listener
/// the caller bound (systemd socket activation, a test on port 0).
pub async fn serve(
    cfg: StationConfig,
    shutdown: watch::Receiver<bool>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir).await?;
    let fleet = Fleet::default();
    let watcher = tokio::spawn(watch_status(cfg.clone(), fleet.clone(), shutdown.clone()));
    let web = review_web::Web {
        accounts: store::accounts::Accounts::new(store.clone()),
        store: store.clone(),
        secure_cookies: cfg.http.secure_cookies,
        latency_budget: cfg.monitoring.latency_threshold,
        line: review_web::line::LineFeed::idle(),
        review_topic: Some(crate::pipeline::review_topic(&cfg.mqtt.topic_prefix)),
        reasons: cfg.review.reasons.clone(),
        fleet: Some(fleet.feed()),
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
