//! MQTT side of the appliance: topics, the retained status with birth and last
//! will, and the outbox drain that publishes committed verdicts with QoS 1 and
//! marks them done only when the broker acknowledges them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use firmware_config::StationConfig;
use rumqttc::QoS;
use tokio::sync::{watch, Mutex, Notify};

use crate::link::{self, Client, Endpoint, LinkError, LinkEvent, Session, Will};
use crate::store::Store;

/// How often a broker that stays unreachable is warned about again.
const UNREACHABLE_WARN_EVERY: Duration = Duration::from_secs(30);

/// Topic names for one station.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, station: &str) -> Self {
        let base = if prefix.is_empty() {
            station.to_string()
        } else {
            format!("{}/{station}", prefix.trim_end_matches('/'))
        };
        Self { base }
    }
    /// Full verdict JSON, QoS 1.
    pub fn verdict(&self) -> String {
        format!("{}/verdict", self.base)
    }
    /// PLC short form, QoS 1.
    pub fn result(&self) -> String {
        format!("{}/result", self.base)
    }
    /// Combined multi-view part verdict, QoS 1.
    pub fn part(&self) -> String {
        format!("{}/part", self.base)
    }
    /// Retained birth / last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
    /// Retained state of one camera.
    pub fn camera(&self, camera: &str) -> String {
        format!("{}/camera/{camera}", self.base)
    }
    /// Commands in: `{base}/cmd/{name}`.
    pub fn commands(&self) -> String {
        format!("{}/cmd/+", self.base)
    }
    /// Replies to commands.
    pub fn reply(&self) -> String {
        format!("{}/cmd/reply", self.base)
    }
    /// The command name of a topic under `{base}/cmd/`, if it is one (replies
    /// are not commands).
    pub fn command_name<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let name = topic.strip_prefix(&self.base)?.strip_prefix("/cmd/")?;
        (name != "reply" && !name.is_empty()).then_some(name)
    }
}

/// A command received on `{base}/cmd/{name}`.
#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub payload: Vec<u8>,
}

/// Shared state between the drain and the event loop.
struct Inflight {
    /// Outbox seq (or `None` for status messages) of publishes handed to the
    /// client, in order, until the event loop assigns them packet ids.
    queued: VecDeque<Option<i64>>,
    /// Packet id -> outbox seq, until acknowledged.
    by_pkid: HashMap<u16, Option<i64>>,
    /// Last outbox seq handed to the client.
    cursor: i64,
    /// Bumped when the broker starts us on a fresh session: what was handed
    /// over before is gone, and the drain starts again from the oldest
    /// unacknowledged row.
    epoch: u64,
}

/// Handle to the running publisher.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    inflight: Arc<Mutex<Inflight>>,
    wake: Arc<Notify>,
    connected: Arc<AtomicBool>,
    topics: Topics,
    commands: tokio::sync::mpsc::Sender<Command>,
    /// The retained birth status, published on every connect; it changes
    /// when the recipe or the model does.
    birth: Arc<std::sync::Mutex<String>>,
}

impl Publisher {
    /// Connects (in the background, retrying) and starts draining the outbox.
    pub fn start(
        cfg: &StationConfig,
        endpoint: &Endpoint,
        store: Store,
        birth: String,
        mut shutdown: watch::Receiver<bool>,
        commands: tokio::sync::mpsc::Sender<Command>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), LinkError> {
        let topics = Topics::new(&cfg.mqtt.topic_prefix, &cfg.station.station);
        let (client, mut eventloop) = link::connect(
            endpoint,
            Session {
                client_id: cfg.client_id(),
                persistent: true,
                will: Some(Will {
                    topic: topics.status(),
                    payload: br#"{"state":"offline"}"#.to_vec(),
                    retain: true,
                }),
                capacity: 256,
            },
        );
        let p = Self {
            client,
            inflight: Arc::new(Mutex::new(Inflight {
                queued: VecDeque::new(),
                by_pkid: HashMap::new(),
                cursor: 0,
                epoch: 0,
            })),
            wake: Arc::new(Notify::new()),
            connected: Arc::new(AtomicBool::new(false)),
            topics,
            commands,
            birth: Arc::new(std::sync::Mutex::new(birth)),
        };
        let events = p.clone();
        let drain_store = store.clone();
        let drain = p.clone();
        let mut drain_shutdown = shutdown.clone();
        let drain_task = tokio::spawn(async move {
            /// Outbox rows read per query.
            const BATCH: usize = 100;
            /// Publishes handed over and not yet acknowledged, at most: the
            /// client's in-flight window, so nothing piles up in its queue.
            const WINDOW: usize = 100;
            loop {
                // A full batch handed over means more may be waiting: read
                // again at once instead of waiting for a wake.
                let mut more = false;
                if drain.connected.load(Ordering::Relaxed) {
                    let (cursor, epoch) = {
                        let i = drain.inflight.lock().await;
                        (i.cursor, i.epoch)
                    };
                    match drain_store.pending(cursor, BATCH as i64).await {
                        Ok(rows) => {
                            more = rows.len() == BATCH;
                            for row in rows {
                                let payload = stamp_published(&row.payload);
                                let mut inflight = drain.inflight.lock().await;
                                if inflight.epoch != epoch
                                    || !drain.connected.load(Ordering::Relaxed)
                                {
                                    more = inflight.epoch != epoch;
                                    break;
                                }
                                if inflight.queued.len() + inflight.by_pkid.len() >= WINDOW {
                                    // An acknowledgement wakes the drain.
                                    more = false;
                                    break;
                                }
                                inflight.queued.push_back(Some(row.seq));
                                if let Err(e) = drain
                                    .client
                                    .publish(
                                        &row.topic,
                                        QoS::AtLeastOnce,
                                        false,
                                        payload.into_bytes(),
                                    )
                                    .await
                                {
                                    inflight.queued.pop_back();
                                    tracing::warn!(error = %e, "cannot hand message to MQTT client");
                                    more = false;
                                    break;
                                }
                                inflight.cursor = row.seq;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot read outbox"),
                    }
                }
                if more {
                    continue;
                }
                tokio::select! {
                    _ = drain.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = drain_shutdown.changed() => return,
                }
            }
        });
        // Acknowledged outbox rows are marked in batches by one task, so a
        // burst of acknowledgements costs one transaction, not one each, and
        // the event loop never waits on the database.
        let (acked, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let marker = tokio::spawn(async move {
            while let Some(first) = acked_rx.recv().await {
                let mut seqs = vec![first];
                while seqs.len() < 512 {
                    match acked_rx.try_recv() {
                        Ok(seq) => seqs.push(seq),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.mark_published(&seqs).await {
                    tracing::error!(error = %e, rows = seqs.len(), "cannot mark outbox rows published; they will be sent again");
                }
            }
        });
        let task = tokio::spawn(async move {
            // When the last "unreachable" warning was logged.
            let mut unreachable_warned: Option<tokio::time::Instant> = None;
            loop {
                let event = tokio::select! {
                    e = eventloop.poll() => e,
                    _ = shutdown.changed() => {
                        let _ = events.publish_status(r#"{"state":"offline"}"#).await;
                        // Let the last acknowledgements arrive.
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                        while tokio::time::Instant::now() < deadline {
                            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                                Ok(Ok(ev)) => events.on_event(ev, &acked).await,
                                _ => break,
                            }
                            if events.inflight.lock().await.by_pkid.is_empty() { break; }
                        }
                        let _ = events.client.disconnect().await;
                        drain_task.abort();
                        drop(acked);
                        let _ = marker.await;
                        return;
                    }
                };
                match event {
                    Ok(LinkEvent::Connected { session_present }) => {
                        tracing::info!(session_present, "connected to MQTT broker");
                        unreachable_warned = None;
                        if !session_present {
                            // The broker kept nothing of ours (a first
                            // connect, or a broker that lost its state):
                            // whatever was handed over and not acknowledged
                            // is sent again from the outbox.
                            let mut i = events.inflight.lock().await;
                            i.queued.clear();
                            i.by_pkid.clear();
                            i.cursor = 0;
                            i.epoch += 1;
                        }
                        events.connected.store(true, Ordering::Relaxed);
                        crate::metrics::mqtt_connected(true);
                        let birth = events.birth.lock().expect("birth lock").clone();
                        if let Err(e) = events.publish_status(&birth).await {
                            tracing::warn!(error = %e, "cannot publish birth status");
                        }
                        if let Err(e) = events
                            .client
                            .subscribe(&events.topics.commands(), QoS::AtLeastOnce)
                            .await
                        {
                            tracing::warn!(error = %e, "cannot subscribe to commands");
                        }
                        events.wake.notify_one();
                    }
                    Ok(ev) => events.on_event(ev, &acked).await,
                    Err(e) => {
                        crate::metrics::mqtt_connected(false);
                        if events.connected.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "MQTT connection lost; verdicts wait in the outbox");
                            unreachable_warned = Some(tokio::time::Instant::now());
                        } else if unreachable_warned
                            .is_none_or(|at| at.elapsed() >= UNREACHABLE_WARN_EVERY)
                        {
                            // Said at once (a station that starts without its
                            // broker is not silent), then every 30 s.
                            tracing::warn!(error = %e, "MQTT broker unreachable; verdicts wait in the outbox, retrying every second");
                            unreachable_warned = Some(tokio::time::Instant::now());
                        } else {
                            tracing::debug!(error = %e, "MQTT broker unreachable");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok((p, task))
    }

    async fn on_event(&self, ev: LinkEvent, acked: &tokio::sync::mpsc::UnboundedSender<i64>) {
        match ev {
            LinkEvent::Sent(pkid) => {
                let mut inflight = self.inflight.lock().await;
                // A packet id still awaiting its ack is a retransmission.
                if pkid == 0 || inflight.by_pkid.contains_key(&pkid) {
                    if pkid == 0 {
                        inflight.queued.pop_front();
                    }
                    return;
                }
                if let Some(seq) = inflight.queued.pop_front() {
                    inflight.by_pkid.insert(pkid, seq);
                }
            }
            LinkEvent::Message { topic, payload } => {
                if let Some(name) = self.topics.command_name(&topic) {
                    let cmd = Command {
                        name: name.to_string(),
                        payload,
                    };
                    if self.commands.try_send(cmd).is_err() {
                        tracing::warn!(topic, "command queue full; command dropped");
                    }
                }
            }
            LinkEvent::Acked {
                pkid,
                accepted,
                reason,
            } => {
                let seq = self.inflight.lock().await.by_pkid.remove(&pkid);
                self.wake.notify_one();
                match seq {
                    Some(Some(seq)) if accepted => {
                        let _ = acked.send(seq);
                    }
                    // Left in the outbox: sent again after the next restart.
                    Some(Some(seq)) => {
                        tracing::error!(outbox_seq = seq, reason, "broker refused a verdict")
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    async fn publish_status(&self, payload: &str) -> Result<(), link::ClientError> {
        self.publish_now(&self.topics.status(), payload, true).await
    }

    /// Publishes a message that is not a verdict (status, camera state,
    /// command reply) with QoS 1, without the outbox: it matters now or not
    /// at all (retained ones are published again on change).
    pub async fn publish_now(
        &self,
        topic: &str,
        payload: &str,
        retain: bool,
    ) -> Result<(), link::ClientError> {
        let mut inflight = self.inflight.lock().await;
        inflight.queued.push_back(None);
        let r = self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await;
        if r.is_err() {
            inflight.queued.pop_back();
        }
        r
    }

    /// Replaces the birth status (recipe or model changed) and publishes it.
    pub async fn set_birth(&self, birth: String) {
        *self.birth.lock().expect("birth lock") = birth.clone();
        if self.connected.load(Ordering::Relaxed) {
            if let Err(e) = self.publish_status(&birth).await {
                tracing::warn!(error = %e, "cannot publish the new status");
            }
        }
    }

    /// Tells the drain that new rows were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }
}

/// Sets `timings.published_at` in a verdict payload at hand-over time.
fn stamp_published(payload: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(mut v) if v.get("schema").is_some() => {
            if let Some(captured) = v["timings"]["captured_at"]
                .as_str()
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            {
                crate::metrics::stage(crate::metrics::Stage::Published, captured.into());
                let age = chrono::Utc::now().signed_duration_since(captured);
                crate::health::published(age.to_std().unwrap_or_default());
            }
            if let Some(t) = v.get_mut("timings") {
                t["published_at"] = serde_json::Value::String(record::time::now());
            }
            v.to_string()
        }
        _ => payload.to_string(),
    }
}
