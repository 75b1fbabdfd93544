//! One MQTT connection, whichever protocol the plant's broker speaks (3.1.1
//! or 5). The client library has a separate API per version; the verdict
//! publisher and the Sparkplug edge node see only what they need from either:
//! connected, a publish handed to the network, a publish acknowledged, a
//! message in, or the connection lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use firmware_config::{MqttVersion, StationConfig};
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{Outgoing, QoS};

/// Why the broker connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("mqtt.url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read mqtt.password_file {path}: {source}")]
    Password {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read mqtt.tls.{key} {path}: {source}")]
    TlsFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mqtt.tls: {0}")]
    Tls(String),
}

/// The message the broker publishes for us when the connection dies
/// (always QoS 1).
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// How to reach the broker, from `[mqtt]`.
#[derive(Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    transport: Option<rumqttc::Transport>,
    credentials: Option<(String, String)>,
    keep_alive: Duration,
    version: MqttVersion,
}

impl Endpoint {
    /// Reads the URL, TLS files and credentials; errors name the key.
    pub fn from_config(cfg: &StationConfig) -> Result<Self, LinkError> {
        let url = &cfg.mqtt.url;
        let bad = |reason: &str| LinkError::Url {
            url: url.clone(),
            reason: reason.to_string(),
        };
        let (rest, secure) = if let Some(r) = url.strip_prefix("mqtt://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (r, true)
        } else {
            return Err(bad("must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().map_err(|_| bad("port is not a number"))?,
            ),
            None => (rest, if secure { 8883 } else { 1883 }),
        };
        let transport = if secure {
            Some(tls_transport(cfg.mqtt.tls.as_ref())?)
        } else {
            None
        };
        let credentials = if cfg.mqtt.username.is_empty() {
            None
        } else {
            let password = if cfg.mqtt.password_file.as_os_str().is_empty() {
                cfg.mqtt.password.expose().to_string()
            } else {
                let text = std::fs::read_to_string(&cfg.mqtt.password_file).map_err(|source| {
                    LinkError::Password {
                        path: cfg.mqtt.password_file.clone(),
                        source,
                    }
                })?;
                text.lines().next().unwrap_or_default().to_string()
            };
            Some((cfg.mqtt.username.clone(), password))
        };
        Ok(Self {
            host: host.to_string(),
            port,
            transport,
            credentials,
            keep_alive: cfg.mqtt.keep_alive.max(Duration::from_secs(1)),
            version: cfg.mqtt.protocol,
        })
    }

    /// Points the endpoint at another broker on this host (the embedded one).
    pub fn local(mut self, port: u16) -> Self {
        self.host = "127.0.0.1".into();
        self.port = port;
        self.transport = None;
        self
    }
}

fn read_tls(key: &'static str, path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::TlsFile {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// TLS transport from `[mqtt.tls]`: the CA that signed the broker's
/// certificate, and optionally this station's client certificate and key.
fn tls_transport(tls: Option<&firmware_config::Tls>) -> Result<rumqttc::Transport, LinkError> {
    let tls =
        tls.ok_or_else(|| LinkError::Tls("mqtts:// needs [mqtt.tls] with at least `ca`".into()))?;
    // One crypto provider for the process (ring); a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = read_tls("ca", &tls.ca)?;
    let client_auth = match (
        tls.cert.as_os_str().is_empty(),
        tls.key.as_os_str().is_empty(),
    ) {
        (true, true) => None,
        (false, false) => Some((read_tls("cert", &tls.cert)?, read_tls("key", &tls.key)?)),
        _ => {
            return Err(LinkError::Tls(
                "`cert` and `key` go together: give both or neither".into(),
            ))
        }
    };
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        },
    ))
}

/// The largest packet MQTT can frame (its remaining-length field): what the
/// station lets itself send, so a verdict with many findings and long
/// clause texts is never held back by the client; a broker that accepts
/// less says so (MQTT 5) or refuses it.
pub const MAX_PACKET: usize = 268_435_455;

/// What one session asks of the broker.
pub struct Session {
    pub client_id: String,
    /// Keep the session (subscriptions, unacknowledged QoS 1) across
    /// reconnects; MQTT 5 sessions then last a week without the client.
    pub persistent: bool,
    pub will: Option<Will>,
    /// Requests buffered between the application and the network task.
    pub capacity: usize,
    /// The largest packet taken from the broker. MQTT 5 declares it in
    /// CONNECT, so the broker drops larger messages for us; with 3.1.1 a
    /// larger one ends the connection ([`LinkDown::Oversized`]).
    pub max_incoming: usize,
}

/// Session expiry for persistent MQTT 5 sessions: long enough to ride out a
/// broker or network outage of days.
const SESSION_EXPIRY_S: u32 = 7 * 24 * 3600;

/// Handle for publishing and subscribing; cheap to clone.
#[derive(Clone)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The network side; poll it in one task.
pub enum Events {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What happened on the connection.
#[derive(Debug)]
pub enum LinkEvent {
    /// The broker accepted the connection; `session_present` is false when
    /// it kept no session for us (what was in flight is lost);
    /// `max_packet` is the largest packet it takes from us.
    Connected {
        session_present: bool,
        max_packet: usize,
    },
    /// A publish went to the network with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged the QoS 1 publish with this packet id;
    /// `accepted` is false when an MQTT 5 broker refused it (reason given).
    Acked {
        pkid: u16,
        accepted: bool,
        reason: String,
    },
    /// A message on a subscribed topic.
    Message { topic: String, payload: Vec<u8> },
    /// Anything else (pings, subscription acks).
    Other,
}

/// Why the connection ended (the next [`Events::poll`] reconnects).
#[derive(Debug, thiserror::Error)]
pub enum LinkDown {
    /// The broker sent a packet larger than [`Session::max_incoming`]: the
    /// client cannot skip it, so the connection ends.
    #[error("the broker sent a packet of {bytes} bytes; at most {limit} are taken")]
    Oversized { bytes: usize, limit: usize },
    #[error("{0}")]
    Other(String),
}

impl LinkDown {
    /// `limit`: the connection's incoming limit (3.1.1's error does not
    /// carry it).
    fn of_v311(e: rumqttc::ConnectionError, limit: usize) -> Self {
        use rumqttc::{ConnectionError, StateError};
        match e {
            ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::Error::PayloadSizeLimitExceeded(bytes),
            )) => LinkDown::Oversized { bytes, limit },
            e => LinkDown::Other(e.to_string()),
        }
    }

    fn of_v5(e: rumqttc::v5::ConnectionError) -> Self {
        use rumqttc::v5::{mqttbytes::Error, ConnectionError, StateError};
        match e {
            ConnectionError::MqttState(StateError::Deserialization(
                Error::PayloadSizeLimitExceeded { pkt_size, max },
            )) => LinkDown::Oversized {
                bytes: pkt_size,
                limit: max as usize,
            },
            e => LinkDown::Other(e.to_string()),
        }
    }
}

/// Opens a connection (in the background; `Events::poll` drives it).
pub fn connect(endpoint: &Endpoint, session: Session) -> (Client, Events) {
    match endpoint.version {
        MqttVersion::V311 => {
            let mut o =
                rumqttc::MqttOptions::new(session.client_id, endpoint.host.clone(), endpoint.port);
            if let Some(t) = &endpoint.transport {
                o.set_transport(t.clone());
            }
            o.set_keep_alive(endpoint.keep_alive);
            o.set_clean_session(!session.persistent);
            o.set_inflight(100);
            o.set_max_packet_size(session.max_incoming, MAX_PACKET);
            if let Some((u, p)) = &endpoint.credentials {
                o.set_credentials(u.clone(), p.clone());
            }
            if let Some(w) = session.will {
                o.set_last_will(rumqttc::LastWill::new(
                    w.topic,
                    w.payload,
                    QoS::AtLeastOnce,
                    w.retain,
                ));
            }
            let (c, e) = rumqttc::AsyncClient::new(o, session.capacity);
            (Client::V311(c), Events::V311(Box::new(e)))
        }
        MqttVersion::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(
                session.client_id,
                endpoint.host.clone(),
                endpoint.port,
            );
            if let Some(t) = &endpoint.transport {
                o.set_transport(t.clone());
            }
            // The MQTT 5 client refuses less than 5 s (validation says so).
            o.set_keep_alive(endpoint.keep_alive.max(Duration::from_secs(5)));
            o.set_clean_start(!session.persistent);
            if session.persistent {
                o.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
            }
            o.set_outgoing_inflight_upper_limit(100);
            o.set_max_packet_size(Some(session.max_incoming.min(MAX_PACKET) as u32));
            if let Some((u, p)) = &endpoint.credentials {
                o.set_credentials(u.clone(), p.clone());
            }
            if let Some(w) = session.will {
                o.set_last_will(will5(w));
            }
            let (c, e) = rumqttc::v5::AsyncClient::new(o, session.capacity);
            (Client::V5(c), Events::V5(Box::new(e)))
        }
    }
}

fn will5(w: Will) -> p5::LastWill {
    p5::LastWill::new(
        w.topic,
        w.payload,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        w.retain,
        None,
    )
}

fn qos5(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// The client refused a request (its queue is closed: the connection task
/// has ended).
#[derive(Debug, thiserror::Error)]
#[error("MQTT client: {0}")]
pub struct ClientError(String);

impl Client {
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c
                .publish(topic, qos, retain, payload)
                .await
                .map_err(|e| ClientError(e.to_string())),
            Client::V5(c) => c
                .publish(topic, qos5(qos), retain, payload)
                .await
                .map_err(|e| ClientError(e.to_string())),
        }
    }

    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c
                .subscribe(filter, qos)
                .await
                .map_err(|e| ClientError(e.to_string())),
            Client::V5(c) => c
                .subscribe(filter, qos5(qos))
                .await
                .map_err(|e| ClientError(e.to_string())),
        }
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c
                .unsubscribe(filter)
                .await
                .map_err(|e| ClientError(e.to_string())),
            Client::V5(c) => c
                .unsubscribe(filter)
                .await
                .map_err(|e| ClientError(e.to_string())),
        }
    }

    /// Clean disconnect: the broker discards the will.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c.disconnect().await.map_err(|e| ClientError(e.to_string())),
            Client::V5(c) => c.disconnect().await.map_err(|e| ClientError(e.to_string())),
        }
    }
}

impl Events {
    /// The next event; an error means the connection is down (the next call
    /// reconnects).
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkDown> {
        match self {
            Events::V311(e) => {
                use rumqttc::{Event, Packet};
                let limit = e.mqtt_options.max_packet_size();
                Ok(
                    match e.poll().await.map_err(|e| LinkDown::of_v311(e, limit))? {
                        Event::Incoming(Packet::ConnAck(c)) => LinkEvent::Connected {
                            session_present: c.session_present,
                            max_packet: MAX_PACKET,
                        },
                        Event::Incoming(Packet::PubAck(a)) => LinkEvent::Acked {
                            pkid: a.pkid,
                            accepted: true,
                            reason: String::new(),
                        },
                        Event::Incoming(Packet::Publish(p)) => LinkEvent::Message {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                        },
                        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
                        _ => LinkEvent::Other,
                    },
                )
            }
            Events::V5(e) => {
                use rumqttc::v5::Event;
                Ok(match e.poll().await.map_err(LinkDown::of_v5)? {
                    Event::Incoming(p5::Packet::ConnAck(c)) => LinkEvent::Connected {
                        session_present: c.session_present,
                        max_packet: c
                            .properties
                            .and_then(|p| p.max_packet_size)
                            .map_or(MAX_PACKET, |m| m as usize),
                    },
                    Event::Incoming(p5::Packet::PubAck(a)) => {
                        let accepted = matches!(
                            a.reason,
                            p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers
                        );
                        LinkEvent::Acked {
                            pkid: a.pkid,
                            accepted,
                            reason: format!("{:?}", a.reason),
                        }
                    }
                    Event::Incoming(p5::Packet::Publish(p)) => LinkEvent::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    },
                    Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
                    _ => LinkEvent::Other,
                })
            }
        }
    }

    /// Replaces the will for the next connection (Sparkplug's NDEATH carries
    /// a new `bdSeq` each time).
    pub fn set_will(&mut self, will: Will) {
        match self {
            Events::V311(e) => {
                e.mqtt_options.set_last_will(rumqttc::LastWill::new(
                    will.topic,
                    will.payload,
                    QoS::AtLeastOnce,
                    will.retain,
                ));
            }
            Events::V5(e) => {
                e.options.set_last_will(will5(will));
            }
        }
    }
}
