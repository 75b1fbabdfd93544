//! Commands in, on an MQTT connection of their own (`{client_id}-cmd`, clean
//! session), so that nothing a stranger publishes on `cmd/*` can stop the
//! verdicts.
//!
//! A command is an instruction for now (a trigger, a recipe switch, a
//! reload): one sent while the station was away is not kept for later. The
//! connection takes packets up to [`MAX_COMMAND_BYTES`]. MQTT 5 declares
//! that limit to the broker, which then drops larger messages itself; with
//! 3.1.1 a larger message ends this connection (the client cannot skip a
//! packet), the clean session lets the broker forget it, the station
//! replies on `cmd/reply` that a command was dropped and reconnects at once.
//! Either way the verdict connection never sees a command.

use std::time::Duration;

use firmware_config::StationConfig;
use rumqttc::QoS;
use tokio::sync::{mpsc, watch};

use crate::link::{self, Endpoint, LinkDown, LinkEvent, Session};
use crate::topics::{Command, Topics};
use crate::Publisher;

/// The largest command taken (the largest real one, a recipe switch with
/// its request id, is well under 1 kB).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Listens for commands until `shutdown`; replies about dropped ones go out
/// through `replies` (the verdict connection).
pub fn start(
    cfg: &StationConfig,
    endpoint: &Endpoint,
    topics: Topics,
    commands: mpsc::Sender<Command>,
    replies: Publisher,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (client, mut events) = link::connect(
        endpoint,
        Session {
            client_id: format!("{}-cmd", cfg.client_id()),
            persistent: false,
            will: None,
            capacity: 16,
            max_incoming: MAX_COMMAND_BYTES,
        },
    );
    tokio::spawn(async move {
        let mut connected = false;
        loop {
            let event = tokio::select! {
                e = events.poll() => e,
                _ = shutdown.changed() => {
                    let _ = client.disconnect().await;
                    return;
                }
            };
            match event {
                Ok(LinkEvent::Connected { .. }) => {
                    connected = true;
                    if let Err(e) = client.subscribe(&topics.commands(), QoS::AtLeastOnce).await {
                        tracing::warn!(error = %e, "cannot subscribe to commands");
                    }
                }
                Ok(LinkEvent::Message { topic, payload }) => {
                    let Some(name) = topics.command_name(&topic) else {
                        continue;
                    };
                    let cmd = Command {
                        name: name.to_string(),
                        payload,
                    };
                    if commands.try_send(cmd).is_err() {
                        tracing::warn!(topic, "command queue full; command dropped");
                    }
                }
                Ok(_) => {}
                Err(LinkDown::Oversized { bytes, limit }) => {
                    connected = false;
                    tracing::warn!(
                        bytes,
                        limit,
                        "dropped a command larger than commands may be; listening again"
                    );
                    let reply = serde_json::json!({
                        "command": "oversized",
                        "ok": false,
                        "error": format!(
                            "a command of {bytes} bytes was dropped: commands are at most {limit} bytes"
                        ),
                    });
                    if let Err(e) = replies
                        .publish_now(&topics.reply(), &reply.to_string(), false)
                        .await
                    {
                        tracing::debug!(error = %e, "cannot reply about the dropped command");
                    }
                }
                Err(LinkDown::Other(e)) => {
                    if std::mem::take(&mut connected) {
                        tracing::warn!(error = %e, "command connection lost; reconnecting");
                    } else {
                        tracing::debug!(error = %e, "command connection down");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}
