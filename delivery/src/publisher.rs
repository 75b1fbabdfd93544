//! The verdict channel: the retained status with birth and last will, and
//! the outbox drain that publishes committed verdicts with QoS 1 and marks
//! them done only when the broker acknowledges them, in order, across
//! broker restarts and station restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use firmware_config::StationConfig;
use rumqttc::QoS;
use tokio::sync::{watch, Mutex, Notify};

use crate::command_link;
use crate::link::{self, Client, Endpoint, Events, LinkError, LinkEvent, Session, Will};
use crate::topics::{Command, Topics};
use store::Store;

/// How often a broker that stays unreachable is warned about again.
const UNREACHABLE_WARN_EVERY: Duration = Duration::from_secs(30);

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
    /// The largest packet the broker takes from us (MQTT 5 says so on
    /// connect); a verdict larger than that is left in the outbox.
    max_packet: Arc<AtomicUsize>,
    topics: Topics,
    /// The retained birth status, published on every connect; it changes
    /// when the recipe or the model does.
    birth: Arc<std::sync::Mutex<String>>,
}

impl Publisher {
    /// Connects (in the background, retrying) and starts draining the outbox:
    /// three tasks, [`drain`] (outbox to client), [`mark_acknowledged`]
    /// (acknowledgements to the store, batched) and [`run_connection`] (the
    /// client's event loop), and the command connection
    /// ([`command_link`]), stopped together by `shutdown`. The handle
    /// returned ends when the last acknowledgements are stored.
    pub fn start(
        cfg: &StationConfig,
        endpoint: &Endpoint,
        store: Store,
        birth: String,
        shutdown: watch::Receiver<bool>,
        commands: tokio::sync::mpsc::Sender<Command>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), LinkError> {
        let topics = Topics::new(&cfg.mqtt.topic_prefix, &cfg.station.station);
        let (client, eventloop) = link::connect(
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
                // Nothing but acknowledgements comes in here; a command left
                // in the session by an older version is bounded too.
                max_incoming: command_link::MAX_COMMAND_BYTES,
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
            max_packet: Arc::new(AtomicUsize::new(link::MAX_PACKET)),
            topics,
            birth: Arc::new(std::sync::Mutex::new(birth)),
        };
        let drain_task = tokio::spawn(drain(p.clone(), store.clone(), shutdown.clone()));
        let (acked, acked_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let marker = tokio::spawn(mark_acknowledged(store, acked_rx));
        let listener = command_link::start(
            cfg,
            endpoint,
            p.topics.clone(),
            commands,
            p.clone(),
            shutdown.clone(),
        );
        let connection = p.clone();
        let task = tokio::spawn(async move {
            run_connection(&connection, eventloop, &acked, shutdown).await;
            let _ = listener.await;
            drain_task.abort();
            drop(acked);
            let _ = marker.await;
        });
        Ok((p, task))
    }

    /// A (re)connection: start again from the outbox if the broker kept
    /// nothing of ours, note the largest packet it takes, announce the
    /// birth, drop an old command subscription, wake the drain.
    async fn on_connected(&self, session_present: bool, max_packet: usize) {
        tracing::info!(session_present, max_packet, "connected to MQTT broker");
        self.max_packet.store(max_packet, Ordering::Relaxed);
        if !session_present {
            // The broker kept nothing of ours (a first connect, or a broker
            // that lost its state): whatever was handed over and not
            // acknowledged is sent again from the outbox.
            let mut i = self.inflight.lock().await;
            i.queued.clear();
            i.by_pkid.clear();
            i.cursor = 0;
            i.epoch += 1;
        }
        self.connected.store(true, Ordering::Relaxed);
        telemetry::Event::BrokerConnection { up: true }.emit();
        let birth = self.birth.lock().expect("birth lock").clone();
        if let Err(e) = self.publish_status(&birth).await {
            tracing::warn!(error = %e, "cannot publish birth status");
        }
        // Commands come in on their own connection; a session kept from an
        // older version still holds this subscription.
        if let Err(e) = self.client.unsubscribe(&self.topics.commands()).await {
            tracing::debug!(error = %e, "cannot drop the old command subscription");
        }
        self.wake.notify_one();
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
            LinkEvent::Message { topic, .. } => {
                tracing::debug!(topic, "message on the verdict connection ignored");
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

/// Hands committed outbox rows to the client in order, within the in-flight
/// window, whenever connected; woken by new commits and acknowledgements.
async fn drain(p: Publisher, store: Store, mut shutdown: watch::Receiver<bool>) {
    /// Outbox rows read per query.
    const BATCH: usize = 100;
    /// Publishes handed over and not yet acknowledged, at most: the
    /// client's in-flight window, so nothing piles up in its queue.
    const WINDOW: usize = 100;
    let verdict_topic = p.topics.verdict();
    loop {
        // A full batch handed over means more may be waiting: read again at
        // once instead of waiting for a wake.
        let mut more = false;
        if p.connected.load(Ordering::Relaxed) {
            let (cursor, epoch) = {
                let i = p.inflight.lock().await;
                (i.cursor, i.epoch)
            };
            match store.pending(cursor, BATCH as i64).await {
                Ok(rows) => {
                    more = rows.len() == BATCH;
                    for row in rows {
                        let mut inflight = p.inflight.lock().await;
                        if inflight.epoch != epoch || !p.connected.load(Ordering::Relaxed) {
                            more = inflight.epoch != epoch;
                            break;
                        }
                        if inflight.queued.len() + inflight.by_pkid.len() >= WINDOW {
                            // An acknowledgement wakes the drain.
                            more = false;
                            break;
                        }
                        let verdict = row.topic == verdict_topic;
                        let payload = if verdict {
                            stamped(row.payload)
                        } else {
                            row.payload
                        };
                        if too_large(&row.topic, &payload, &p.max_packet) {
                            // Kept in the store and the outbox; the rest goes on.
                            inflight.cursor = row.seq;
                            continue;
                        }
                        inflight.queued.push_back(Some(row.seq));
                        if let Err(e) = p
                            .client
                            .publish(&row.topic, QoS::AtLeastOnce, false, payload.into_bytes())
                            .await
                        {
                            inflight.queued.pop_back();
                            tracing::warn!(error = %e, "cannot hand message to MQTT client");
                            more = false;
                            break;
                        }
                        if verdict {
                            counted_published(row.captured_at.as_deref());
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
            _ = p.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether a publish is larger than the broker takes (said with an error
/// naming the row's topic and size): sending it would end the connection
/// again at every reconnect, and hold up everything after it.
fn too_large(topic: &str, payload: &str, max_packet: &AtomicUsize) -> bool {
    // Fixed header (5), topic length (2), packet id (2), MQTT 5 properties.
    let size = topic.len() + payload.len() + 16;
    let max = max_packet.load(Ordering::Relaxed);
    if size > max {
        tracing::error!(
            topic,
            bytes = size,
            max,
            "message larger than the broker takes (its maximum packet size); left in the outbox and skipped"
        );
    }
    size > max
}

/// A verdict's JSON as it leaves: `timings.published_at` set to now.
fn stamped(payload: String) -> String {
    record::stamp_published(&payload, &record::time::now()).unwrap_or(payload)
}

/// Counts a verdict handed to the broker (once per hand-over, never for a
/// row read and left for a later round).
fn counted_published(captured_at: Option<&str>) {
    if let Some(captured) = captured_at.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) {
        telemetry::Event::VerdictPublished {
            captured: captured.into(),
        }
        .emit();
    }
}

/// Marks acknowledged outbox rows published in batches, so that a burst of
/// acknowledgements costs one transaction, not one each, and the event loop
/// never waits on the database. Ends when every sender is gone.
async fn mark_acknowledged(store: Store, mut acked: tokio::sync::mpsc::UnboundedReceiver<i64>) {
    while let Some(first) = acked.recv().await {
        let mut seqs = vec![first];
        while seqs.len() < 512 {
            match acked.try_recv() {
                Ok(seq) => seqs.push(seq),
                Err(_) => break,
            }
        }
        if let Err(e) = store.mark_published(&seqs).await {
            tracing::error!(error = %e, rows = seqs.len(), "cannot mark outbox rows published; they will be sent again");
        }
    }
}

/// The client's event loop: connection state, births, subscriptions,
/// acknowledgements and commands, until `shutdown`; then the offline status
/// and up to two seconds for the last acknowledgements.
async fn run_connection(
    p: &Publisher,
    mut eventloop: Events,
    acked: &tokio::sync::mpsc::UnboundedSender<i64>,
    mut shutdown: watch::Receiver<bool>,
) {
    // When the last "unreachable" warning was logged.
    let mut unreachable_warned: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => {
                let _ = p.publish_status(r#"{"state":"offline"}"#).await;
                // Let the last acknowledgements arrive.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                while tokio::time::Instant::now() < deadline {
                    match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                        Ok(Ok(ev)) => p.on_event(ev, acked).await,
                        _ => break,
                    }
                    if p.inflight.lock().await.by_pkid.is_empty() {
                        break;
                    }
                }
                let _ = p.client.disconnect().await;
                return;
            }
        };
        match event {
            Ok(LinkEvent::Connected {
                session_present,
                max_packet,
            }) => {
                p.on_connected(session_present, max_packet).await;
                unreachable_warned = None;
            }
            Ok(ev) => p.on_event(ev, acked).await,
            Err(e) => {
                telemetry::Event::BrokerConnection { up: false }.emit();
                if p.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "MQTT connection lost; verdicts wait in the outbox");
                    unreachable_warned = Some(tokio::time::Instant::now());
                } else if unreachable_warned.is_none_or(|at| at.elapsed() >= UNREACHABLE_WARN_EVERY)
                {
                    // Said at once (a station that starts without its broker
                    // is not silent), then every 30 s.
                    tracing::warn!(error = %e, "MQTT broker unreachable; verdicts wait in the outbox, retrying every second");
                    unreachable_warned = Some(tokio::time::Instant::now());
                } else {
                    tracing::debug!(error = %e, "MQTT broker unreachable");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
