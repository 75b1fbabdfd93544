//! The embedded broker (`mqtt.broker = "embedded"`): a stand-alone station,
//! or the demo, whose PLC and MES connect to the appliance itself instead of
//! a plant broker. It is rumqttd, in process, on `mqtt.embedded_listen`,
//! speaking the configured protocol version; the appliance's own clients
//! connect to it over loopback like any other client.
//!
//! It keeps sessions, retained messages and wills in memory only: what must
//! survive a power cut is the verdict outbox, which is in the store either way.
//! Each topic's recent messages are kept for subscribers that are behind, up
//! to `mqtt.embedded_backlog` per topic. rumqttd keeps each message inside the
//! buffer it read it into, so the memory held is a multiple of that; the
//! earlier fixed ten segments of 16 MiB per topic showed as a station's RSS
//! climbing about 2 KB per verdict.
//! Production plants use their own broker (the default, `external`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use firmware_config::MqttVersion;

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mqtt.embedded_listen {addr}: cannot listen there: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("mqtt.embedded_listen {addr}: the embedded broker did not start within 5 s")]
    NotReady { addr: SocketAddr },
    #[error("the embedded broker failed: {0}")]
    Broker(String),
}

/// Whether an MQTT broker at `addr` accepts a connection: a real CONNECT,
/// its CONNACK, then DISCONNECT (a bare TCP probe would be logged by the
/// broker as a failed client).
fn answers(addr: SocketAddr, version: MqttVersion) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    // CONNECT: protocol "MQTT", level 4 or 5, clean session, keep-alive
    // 60 s, client id "probe" (MQTT 5 adds an empty property list).
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T'];
    match version {
        MqttVersion::V311 => body.extend_from_slice(&[4, 0x02, 0, 60]),
        MqttVersion::V5 => body.extend_from_slice(&[5, 0x02, 0, 60, 0]),
    }
    body.extend_from_slice(&[0, 5, b'p', b'r', b'o', b'b', b'e']);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    let mut connack = [0u8; 2];
    let ok =
        s.write_all(&packet).is_ok() && s.read_exact(&mut connack).is_ok() && connack[0] == 0x20;
    let _ = s.write_all(&[0xE0, 0x00]);
    ok
}

/// How many pieces a topic's backlog is kept in: the oldest piece goes
/// whole when the newest is full, so the backlog held is between 7/8 of
/// `backlog` and all of it.
const BACKLOG_SEGMENTS: usize = 8;

/// Starts the broker on its own threads, keeping up to `backlog` bytes of
/// each topic's recent messages; returns once it accepts connections. It
/// runs until the process ends.
pub fn start(listen: SocketAddr, version: MqttVersion, backlog: u64) -> Result<(), BrokerError> {
    // rumqttd reports a taken port only in its log; find out here instead.
    drop(
        TcpListener::bind(listen).map_err(|source| BrokerError::Listen {
            addr: listen,
            source,
        })?,
    );
    let server = rumqttd::ServerSettings {
        name: "appliance".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1 << 20,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let servers = Some([("1".to_string(), server)].into_iter().collect());
    let (v4, v5) = match version {
        MqttVersion::V311 => (servers, None),
        MqttVersion::V5 => (None, servers),
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            // rumqttd refuses segments under 1 KiB (configuration keeps
            // the backlog at 64 KiB or more).
            max_segment_size: (backlog as usize / BACKLOG_SEGMENTS).max(1 << 10),
            max_segment_count: BACKLOG_SEGMENTS,
            ..Default::default()
        },
        v4,
        v5,
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Broker(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let probe = match listen.ip() {
        IpAddr::V4(a) if a.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(a) if a.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    };
    while !answers(probe, version) {
        if Instant::now() > deadline {
            return Err(BrokerError::NotReady { addr: listen });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(address = %listen, ?version, "embedded MQTT broker listening");
    Ok(())
}
