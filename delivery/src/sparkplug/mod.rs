//! Sparkplug B mode: the appliance as an edge node (`edge_node_id`) with the
//! station as its device, for SCADA and MES systems that speak Sparkplug.
//!
//! It runs beside the verdict topics on its own connection, because
//! Sparkplug wants what the verdict outbox must not have: a clean session,
//! QoS 0 data and an NDEATH will. The verdict topics stay the guaranteed
//! channel; here every verdict becomes one DDATA, and verdicts decided while
//! the broker is away are sent after the next birth, marked historical
//! (bounded in memory).
//!
//! What the specification asks of an edge node, and where it is done:
//! - NBIRTH (seq 0, `bdSeq`, `Node Control/Rebirth`) then DBIRTH with every
//!   device metric and its datatype, on each connect: [`Node::births`];
//! - NDEATH as the will, carrying the same `bdSeq` as the NBIRTH of that
//!   connection, and published before a clean disconnect;
//! - `bdSeq` goes up by one for every new connection (0..=255, persisted in
//!   the data folder so a restart does not repeat the previous value);
//! - `seq` goes up by one per message after NBIRTH and wraps from 255 to 0;
//! - an NCMD with `Node Control/Rebirth = true` gets fresh births.

pub mod payload;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use firmware_config::StationConfig;
use prost::Message;
use rumqttc::QoS;
use tokio::sync::{mpsc, watch};

use crate::link::{self, Client, Endpoint, Events, LinkError, LinkEvent, Session, Will};
use payload::{DataType, Metric, Payload, Typed, Value};
use record::Verdict;

/// Name of the node metric a host sets to ask for births again.
pub const REBIRTH: &str = "Node Control/Rebirth";
/// Verdicts kept for a historical replay while the broker is away.
const BACKLOG: usize = 10_000;

/// Sparkplug topics of one edge node and its device.
#[derive(Debug, Clone)]
pub struct Names {
    group: String,
    node: String,
    device: String,
}

impl Names {
    fn node_topic(&self, kind: &str) -> String {
        format!("spBv1.0/{}/{kind}/{}", self.group, self.node)
    }
    fn device_topic(&self, kind: &str) -> String {
        format!(
            "spBv1.0/{}/{kind}/{}/{}",
            self.group, self.node, self.device
        )
    }
}

/// What the station tells the edge node.
#[derive(Debug, Clone)]
pub enum Update {
    /// A verdict was committed.
    Verdict(Box<Verdict>),
    /// The recipe or the model changed.
    Context {
        recipe: String,
        standard_sha256: String,
        model: String,
    },
}

/// Handle the station keeps; sending never blocks inspection.
#[derive(Clone)]
pub struct EdgeNode {
    tx: mpsc::Sender<Update>,
}

impl EdgeNode {
    /// Starts the edge node on its own connection to the broker.
    pub fn start(
        cfg: &StationConfig,
        spb: &firmware_config::Sparkplug,
        endpoint: &Endpoint,
        context: Update,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), LinkError> {
        let names = Names {
            group: spb.group_id.clone(),
            node: spb.edge_node_id.clone(),
            device: cfg.station.station.clone(),
        };
        let bd_seq_file = cfg.storage.data_dir.join("sparkplug-bdseq");
        let bd_seq = next_bd_seq(&bd_seq_file);
        let will = ndeath(&names, bd_seq);
        let (client, events) = link::connect(
            endpoint,
            Session {
                client_id: format!("{}-spb", cfg.client_id()),
                persistent: false,
                will: Some(will),
                capacity: 256,
                // NCMD and DCMD are a few metrics; a larger packet ends
                // the (clean) connection and is forgotten.
                max_incoming: crate::command_link::MAX_COMMAND_BYTES,
            },
        );
        let mut node = Node {
            names,
            client,
            bd_seq,
            bd_seq_file,
            seq: 0,
            connected: false,
            device: Device::new(cfg),
            backlog: VecDeque::new(),
            dropped: 0,
        };
        node.device.apply(&context);
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(node.run(events, rx, shutdown));
        Ok((Self { tx }, task))
    }

    /// Hands an update over; when the edge node is far behind it is dropped
    /// (the verdict itself is safe in the outbox).
    pub fn send(&self, update: Update) {
        if self.tx.try_send(update).is_err() {
            tracing::warn!("Sparkplug edge node is behind; an update was dropped");
        }
    }
}

/// The `bdSeq` for this process's first connection: one after the last one
/// used (0 on a new station), recorded before it is used.
fn next_bd_seq(path: &PathBuf) -> u8 {
    let next = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .map_or(0, |last| last.wrapping_add(1));
    record_bd_seq(path, next);
    next
}

fn record_bd_seq(path: &PathBuf, value: u8) {
    if let Err(e) = std::fs::write(path, value.to_string()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot record the Sparkplug bdSeq");
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

fn ndeath(names: &Names, bd_seq: u8) -> Will {
    let p = Payload {
        timestamp: Some(now_ms()),
        metrics: vec![Metric::new("bdSeq", &Typed::Int64(bd_seq as i64), now_ms())],
        ..Default::default()
    };
    Will {
        topic: names.node_topic("NDEATH"),
        payload: p.encode_to_vec(),
        retain: false,
    }
}

/// The device's metrics and their current values.
struct Device {
    site: String,
    line: String,
    values: Vec<(&'static str, Typed)>,
    counts: [u64; 4],
}

const VERDICT_METRICS: [(&str, DataType); 12] = [
    ("Verdict/ID", DataType::String),
    ("Verdict/Camera", DataType::String),
    ("Verdict/Part ID", DataType::String),
    ("Verdict/Decision", DataType::String),
    ("Verdict/OK", DataType::Boolean),
    ("Verdict/Code", DataType::Int32),
    ("Verdict/Confidence", DataType::Float),
    ("Verdict/Findings", DataType::Int32),
    ("Verdict/Defects", DataType::String),
    ("Verdict/Inference ms", DataType::Double),
    ("Verdict/Decided At", DataType::DateTime),
    ("Verdict/Record", DataType::String),
];
const CONTEXT_METRICS: [&str; 3] = [
    "Inspection/Recipe",
    "Inspection/Standard SHA-256",
    "Inspection/Model",
];
const COUNTERS: [&str; 4] = [
    "Counters/Verdicts",
    "Counters/Pass",
    "Counters/Fail",
    "Counters/Review",
];

impl Device {
    fn new(cfg: &StationConfig) -> Self {
        let mut values: Vec<(&'static str, Typed)> = CONTEXT_METRICS
            .iter()
            .map(|n| (*n, Typed::Null(DataType::String)))
            .collect();
        values.extend(VERDICT_METRICS.iter().map(|(n, t)| (*n, Typed::Null(*t))));
        values.extend(COUNTERS.iter().map(|n| (*n, Typed::UInt64(0))));
        Self {
            site: cfg.station.site.clone(),
            line: cfg.station.line.clone(),
            values,
            counts: [0; 4],
        }
    }

    fn set(&mut self, name: &str, value: Typed) {
        if let Some(slot) = self.values.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        }
    }

    /// Applies an update; returns the metrics that changed, for a DDATA.
    fn apply(&mut self, update: &Update) -> Vec<(&'static str, Typed)> {
        let changed: Vec<(&'static str, Typed)> = match update {
            Update::Context {
                recipe,
                standard_sha256,
                model,
            } => vec![
                ("Inspection/Recipe", Typed::String(recipe.clone())),
                (
                    "Inspection/Standard SHA-256",
                    Typed::String(standard_sha256.clone()),
                ),
                ("Inspection/Model", Typed::String(model.clone())),
            ],
            Update::Verdict(v) => {
                let plc = v.plc();
                self.counts[0] += 1;
                self.counts[1 + plc.code as usize] += 1;
                let decided = chrono::DateTime::parse_from_rfc3339(&v.timings.decided_at)
                    .map_or_else(|_| now_ms(), |t| t.timestamp_millis() as u64);
                let defects: Vec<&str> = v.findings.iter().map(|f| f.defect.as_str()).collect();
                let mut out = vec![
                    ("Verdict/ID", Typed::String(v.id.clone())),
                    ("Verdict/Camera", Typed::String(v.camera.clone())),
                    (
                        "Verdict/Part ID",
                        match &v.part_id {
                            Some(p) => Typed::String(p.clone()),
                            None => Typed::Null(DataType::String),
                        },
                    ),
                    (
                        "Verdict/Decision",
                        Typed::String(v.decision.as_str().to_string()),
                    ),
                    ("Verdict/OK", Typed::Boolean(plc.ok)),
                    ("Verdict/Code", Typed::Int32(plc.code as i32)),
                    ("Verdict/Confidence", Typed::Float(v.confidence)),
                    ("Verdict/Findings", Typed::Int32(v.findings.len() as i32)),
                    ("Verdict/Defects", Typed::String(defects.join(","))),
                    (
                        "Verdict/Inference ms",
                        Typed::Double(v.timings.inference_ms),
                    ),
                    ("Verdict/Decided At", Typed::DateTime(decided)),
                    (
                        "Verdict/Record",
                        Typed::String(serde_json::to_string(v.as_ref()).unwrap_or_default()),
                    ),
                ];
                out.extend(
                    COUNTERS
                        .iter()
                        .zip(self.counts)
                        .map(|(n, c)| (*n, Typed::UInt64(c))),
                );
                out
            }
        };
        for (name, value) in &changed {
            self.set(name, value.clone());
        }
        changed
    }
}

/// The edge node's state, owned by its task.
struct Node {
    names: Names,
    client: Client,
    bd_seq: u8,
    bd_seq_file: PathBuf,
    /// Sequence number of the next message after NBIRTH.
    seq: u8,
    connected: bool,
    device: Device,
    /// DDATA metrics (with their timestamp) decided while disconnected.
    backlog: VecDeque<(u64, Vec<(&'static str, Typed)>)>,
    dropped: u64,
}

impl Node {
    async fn run(
        mut self,
        mut events: Events,
        mut updates: mpsc::Receiver<Update>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                ev = events.poll() => match ev {
                    Ok(LinkEvent::Connected { .. }) => {
                        tracing::info!(bd_seq = self.bd_seq, "Sparkplug edge node online");
                        self.connected = true;
                        for filter in [self.names.node_topic("NCMD"), self.names.device_topic("DCMD")] {
                            if let Err(e) = self.client.subscribe(&filter, QoS::AtLeastOnce).await {
                                tracing::warn!(error = %e, "cannot subscribe to Sparkplug commands");
                            }
                        }
                        self.births().await;
                        self.replay().await;
                    }
                    Ok(LinkEvent::Message { topic, payload }) => self.command(&topic, &payload).await,
                    Ok(_) => {}
                    Err(e) => {
                        if self.connected {
                            tracing::warn!(error = %e, "Sparkplug connection lost");
                            self.connected = false;
                            // A new connection is a new birth/death pair.
                            self.bd_seq = self.bd_seq.wrapping_add(1);
                            record_bd_seq(&self.bd_seq_file, self.bd_seq);
                            events.set_will(ndeath(&self.names, self.bd_seq));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                update = updates.recv() => {
                    let Some(update) = update else { return };
                    self.update(update).await;
                }
                _ = shutdown.changed() => {
                    // Updates already handed over are published first.
                    while let Ok(update) = updates.try_recv() {
                        self.update(update).await;
                    }
                    self.stop(events).await;
                    return;
                }
            }
        }
    }

    async fn update(&mut self, update: Update) {
        let changed = self.device.apply(&update);
        let at = now_ms();
        if self.connected {
            self.ddata(at, &changed, false).await;
        } else {
            if self.backlog.len() == BACKLOG {
                self.backlog.pop_front();
                self.dropped += 1;
            }
            self.backlog.push_back((at, changed));
        }
    }

    /// Sends what was decided during the outage, marked historical.
    async fn replay(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "Sparkplug: oldest offline verdicts were not kept (they are in the verdict outbox)"
            );
            self.dropped = 0;
        }
        while let Some((at, metrics)) = self.backlog.pop_front() {
            self.ddata(at, &metrics, true).await;
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s as u64
    }

    async fn send(&mut self, topic: String, payload: Payload) {
        if let Err(e) = self
            .client
            .publish(&topic, QoS::AtMostOnce, false, payload.encode_to_vec())
            .await
        {
            tracing::warn!(error = %e, topic, "cannot publish Sparkplug message");
        }
    }

    /// NBIRTH (seq 0) then DBIRTH, with every metric and its datatype.
    async fn births(&mut self) {
        let at = now_ms();
        self.seq = 0;
        let node_metrics = [
            ("bdSeq", Typed::Int64(self.bd_seq as i64)),
            (REBIRTH, Typed::Boolean(false)),
            (
                "Properties/Software Version",
                Typed::String(env!("CARGO_PKG_VERSION").to_string()),
            ),
            ("Properties/Site", Typed::String(self.device.site.clone())),
            ("Properties/Line", Typed::String(self.device.line.clone())),
        ];
        let nbirth = Payload {
            timestamp: Some(at),
            metrics: node_metrics
                .iter()
                .map(|(n, v)| Metric::new(n, v, at))
                .collect(),
            seq: Some(self.next_seq()),
            ..Default::default()
        };
        self.send(self.names.node_topic("NBIRTH"), nbirth).await;
        let dbirth = Payload {
            timestamp: Some(at),
            metrics: self
                .device
                .values
                .iter()
                .map(|(n, v)| Metric::new(n, v, at))
                .collect(),
            seq: Some(self.next_seq()),
            ..Default::default()
        };
        self.send(self.names.device_topic("DBIRTH"), dbirth).await;
    }

    async fn ddata(&mut self, at: u64, metrics: &[(&'static str, Typed)], historical: bool) {
        let p = Payload {
            timestamp: Some(now_ms()),
            metrics: metrics
                .iter()
                .map(|(n, v)| {
                    let mut m = Metric::new(n, v, at);
                    m.is_historical = historical.then_some(true);
                    m
                })
                .collect(),
            seq: Some(self.next_seq()),
            ..Default::default()
        };
        self.send(self.names.device_topic("DDATA"), p).await;
    }

    /// NCMD / DCMD: a rebirth request is honoured; anything else is logged.
    async fn command(&mut self, topic: &str, payload: &[u8]) {
        let p = match Payload::decode(payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(topic, error = %e, "Sparkplug command is not a Sparkplug B payload");
                return;
            }
        };
        let rebirth = p.metrics.iter().any(|m| {
            matches!(
                m.name.as_deref(),
                Some(REBIRTH) | Some("Device Control/Rebirth")
            ) && m.value == Some(Value::Boolean(true))
        });
        if rebirth {
            tracing::info!(topic, "Sparkplug rebirth requested");
            self.births().await;
        } else {
            let names: Vec<&str> = p.metrics.iter().filter_map(|m| m.name.as_deref()).collect();
            tracing::warn!(topic, metrics = ?names, "Sparkplug command not supported; supported: {REBIRTH}");
        }
    }

    /// Clean shutdown: NDEATH first (a clean disconnect discards the will),
    /// then let it leave before disconnecting.
    async fn stop(mut self, mut events: Events) {
        if !self.connected {
            return;
        }
        let will = ndeath(&self.names, self.bd_seq);
        if let Err(e) = self
            .client
            .publish(&will.topic, QoS::AtLeastOnce, false, will.payload)
            .await
        {
            tracing::warn!(error = %e, "cannot publish NDEATH");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.poll()).await {
            if matches!(ev, LinkEvent::Acked { .. }) {
                break;
            }
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout_at(deadline, events.poll()).await;
        self.connected = false;
    }
}
