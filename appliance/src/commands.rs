//! Commands from the line: MQTT `{prefix}/{station}/cmd/{name}` and the HTTP
//! API share one parser and one answer, so a PLC and an integrator's script
//! get the same errors. Every command gets a reply; a malformed one gets an
//! error naming the problem, and inspection carries on.

use serde::Serialize;
use tokio::sync::mpsc;
use vision::sources::trigger::TriggerError;

use crate::cameras::{TriggerRequest, Triggers};
use crate::mqtt::{Command, Publisher};

/// Largest command payload accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// The answer to one command.
#[derive(Debug, Serialize, PartialEq)]
pub struct Reply {
    pub command: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure, for HTTP status codes and PLC logic.
    #[serde(skip)]
    pub kind: Failure,
}

/// Kinds of failure a caller can act on differently.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    #[default]
    None,
    /// The command itself is wrong (size, JSON, types, unknown name).
    Malformed,
    /// It names something that does not exist.
    Unknown,
    /// It is valid but cannot be done now (queue full, camera stopped).
    Busy,
    /// It is valid but this station is not set up for it.
    Conflict,
}

impl Reply {
    fn error(command: &str, kind: Failure, request_id: Option<String>, message: String) -> Self {
        Reply {
            command: command.to_string(),
            ok: false,
            request_id,
            part_id: None,
            cameras: Vec::new(),
            error: Some(message),
            kind,
        }
    }
}

/// Parses a JSON payload into `T`, naming the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "payload is {} bytes; the limit is {MAX_COMMAND_BYTES}",
            payload.len()
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| format!("payload is not UTF-8: {e}"))?;
    if !text.trim_start().starts_with('{') && !text.trim().is_empty() {
        return Err("not a valid command: a JSON object is expected".into());
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if e.inner().is_syntax() || e.inner().is_eof() {
            format!("not valid JSON: {}", e.inner())
        } else if path == "." {
            format!("not a valid command: {}", e.inner())
        } else {
            format!("field `{path}`: {}", e.inner())
        }
    })
}

/// Handles one command and says how it went.
pub fn handle(name: &str, payload: &[u8], triggers: &Triggers) -> Reply {
    match name {
        "trigger" => {
            let req: TriggerRequest = match parse(payload) {
                Ok(r) => r,
                Err(e) => return Reply::error(name, Failure::Malformed, None, e),
            };
            match triggers.fire(&req) {
                Ok(cameras) => Reply {
                    command: name.to_string(),
                    ok: true,
                    request_id: req.request_id,
                    part_id: Some(req.part_id),
                    cameras,
                    error: None,
                    kind: Failure::None,
                },
                Err(e) => {
                    let kind = match e {
                        TriggerError::UnknownCamera { .. } => Failure::Unknown,
                        TriggerError::NotTriggered { .. } => Failure::Conflict,
                        TriggerError::QueueFull { .. } | TriggerError::Stopped { .. } => {
                            Failure::Busy
                        }
                    };
                    Reply::error(name, kind, req.request_id, e.to_string())
                }
            }
        }
        other => Reply::error(
            other,
            Failure::Malformed,
            None,
            format!("unknown command `{other}`; this station accepts: trigger"),
        ),
    }
}

/// Answers MQTT commands until the channel closes.
pub async fn serve(mut rx: mpsc::Receiver<Command>, triggers: Triggers, publisher: Publisher) {
    while let Some(cmd) = rx.recv().await {
        let reply = handle(&cmd.name, &cmd.payload, &triggers);
        if !reply.ok {
            tracing::warn!(command = %cmd.name, error = ?reply.error, "command refused");
        }
        let json = serde_json::to_string(&reply).expect("reply serialises");
        if let Err(e) = publisher
            .publish_now(&publisher.topics().reply(), &json, false)
            .await
        {
            tracing::warn!(error = %e, "cannot publish command reply");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(name: &str, payload: &[u8]) -> String {
        let r = handle(name, payload, &Triggers::default());
        assert!(!r.ok);
        r.error.unwrap()
    }

    #[test]
    fn malformed_commands_are_answered_with_the_problem() {
        assert!(error_of("trigger", b"{not json").contains("not valid JSON"));
        let e = error_of("trigger", b"[1, 2]");
        assert!(e.contains("a JSON object is expected"), "{e}");
        assert_eq!(
            error_of("trigger", br#"{"part_id": 42}"#),
            "field `part_id`: invalid type: integer `42`, expected a string at line 1 column 14"
        );
        assert!(error_of("trigger", br#"{"part":"p"}"#).contains("unknown field `part`"));
        assert!(error_of("trigger", &vec![b' '; 5000]).contains("limit is 4096"));
        assert!(error_of("trigger", &[0xff, 0xfe]).contains("not UTF-8"));
        assert!(error_of("explode", b"{}").contains("unknown command `explode`"));
        assert!(
            error_of("trigger", br#"{"part_id":"p","camera":"nope"}"#).contains("no camera `nope`")
        );
    }
}
