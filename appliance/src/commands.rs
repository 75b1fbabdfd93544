//! Commands from the line: MQTT `{prefix}/{station}/cmd/{name}` and the HTTP
//! API share one parser and one answer, so a PLC and an integrator's script
//! get the same errors. Every command gets a reply; a malformed one gets an
//! error naming the problem, and inspection carries on.

use serde::Serialize;
use tokio::sync::mpsc;
use vision::sources::trigger::TriggerError;

use crate::cameras::{TriggerRequest, Triggers};
use delivery::{Command, Publisher};

/// Largest command payload accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// The commands a station answers, by the last level of their topic
/// (`cmd/trigger`) or their HTTP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// Photograph a part now (`cmd/trigger`, `POST /api/v1/trigger`).
    Trigger,
    /// Switch the active recipe.
    Recipe,
    /// Reload the configured model package.
    Reload,
    /// Read the configuration file again and apply it whole.
    Config,
    /// Start, stop or promote a candidate model in shadow mode.
    Shadow,
    /// Take on what the plant server rolled out (`rollout/v1`, retained).
    Rollout,
}

impl Name {
    pub const ALL: [Name; 6] = [
        Name::Trigger,
        Name::Recipe,
        Name::Reload,
        Name::Config,
        Name::Shadow,
        Name::Rollout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Name::Trigger => "trigger",
            Name::Recipe => "recipe",
            Name::Reload => "reload",
            Name::Config => "config",
            Name::Shadow => "shadow",
            Name::Rollout => "rollout",
        }
    }

    /// Takes seconds (load, verify, warm up): answered in the background
    /// so that triggers and recipe switches are not held up.
    pub fn slow(self) -> bool {
        matches!(
            self,
            Name::Reload | Name::Config | Name::Shadow | Name::Rollout
        )
    }

    fn parse(name: &str) -> Result<Self, String> {
        Name::ALL
            .into_iter()
            .find(|n| n.as_str() == name)
            .ok_or_else(|| {
                let accepted: Vec<&str> = Name::ALL.iter().map(|n| n.as_str()).collect();
                format!(
                    "unknown command `{name}`; this station accepts: {}",
                    accepted.join(", ")
                )
            })
    }
}

/// Why the station did not carry out a command, and what kind of failure
/// that is for the caller (HTTP status, PLC logic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub kind: Failure,
    pub message: String,
}

impl ControlError {
    fn of(kind: Failure, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// It names something that does not exist (a recipe).
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::of(Failure::Unknown, message)
    }

    /// It was tried and failed; the running state stays.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::of(Failure::Failed, message)
    }

    /// It cannot be done on this station as it runs (a restart is needed).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::of(Failure::Conflict, message)
    }

    /// It cannot be done now (the engine is stopping).
    pub fn busy(message: impl Into<String>) -> Self {
        Self::of(Failure::Busy, message)
    }
}

/// A control action running in the background.
pub type Pending<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ControlError>> + Send + 'a>>;

/// What commands act on besides cameras: the station's recipe and model.
pub trait Control: Send + Sync {
    /// Makes `name` the active recipe; returns it and its standard's sha256.
    fn switch_recipe(&self, name: &str) -> Result<(String, String), ControlError>;
    /// Reloads the configured model package (verified, warmed up, swapped
    /// between batches); returns the new model's name and version.
    fn reload(&self) -> Pending<'_, String>;
    /// Reads the station's configuration file again and applies it whole,
    /// or refuses it and keeps the running one; returns what changed.
    fn reconfigure(&self) -> Pending<'_, Vec<String>>;
    /// Starts, stops or promotes a candidate model in shadow mode; returns
    /// what was done.
    fn shadow(&self, request: ShadowRequest) -> Pending<'_, ShadowOutcome>;
    /// Takes on a rollout from the plant server (files fetched and verified,
    /// the model through the safe reload or shadow mode, standards swapped);
    /// returns what changed.
    fn rollout(&self, rollout: record::Rollout) -> Pending<'_, RolloutOutcome>;
}

/// What a `rollout` did: the model it brought in (in words), the recipes
/// whose standard changed; both empty when the station already ran it all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutOutcome {
    pub model: Option<String>,
    pub standards: Vec<String>,
}

impl RolloutOutcome {
    /// The reply's `changed`: each thing the rollout changed, in words.
    pub fn changed(&self) -> Vec<String> {
        let mut out: Vec<String> = self.model.iter().cloned().collect();
        out.extend(self.standards.iter().map(|r| format!("standard of `{r}`")));
        out
    }
}

/// `cmd/recipe` payload.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeRequest {
    pub recipe: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `cmd/reload` payload.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `cmd/shadow` payload: `{"action": "start", "package": "/path"}`
/// (optionally `"precision": "int8"`), `{"action": "stop"}` or
/// `{"action": "promote"}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    pub action: ShadowAction,
    /// The candidate's package folder (`start` only).
    #[serde(default)]
    pub package: Option<std::path::PathBuf>,
    /// The candidate's precision (`start` only); the running model's when absent.
    #[serde(default)]
    pub precision: Option<firmware_config::Precision>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// What to do with the candidate model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowAction {
    /// Load a candidate beside the running model and compare.
    Start,
    /// Stop comparing; the running model stays.
    Stop,
    /// Swap the candidate in through the safe reload; it decides from now on.
    Promote,
}

/// What a `shadow` command did. `model` is the candidate's name and
/// version; in words (its `Display`) it is the reply's `model` field.
#[derive(Debug, Clone, PartialEq)]
pub enum ShadowOutcome {
    Started {
        model: String,
    },
    Stopped {
        model: String,
        frames: u64,
        skipped: u64,
    },
    Promoted {
        model: String,
    },
}

impl std::fmt::Display for ShadowOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShadowOutcome::Started { model } => write!(f, "candidate {model} in shadow mode"),
            ShadowOutcome::Stopped {
                model,
                frames,
                skipped,
            } => write!(
                f,
                "shadow mode stopped: candidate {model} saw {frames} frames, {skipped} skipped"
            ),
            ShadowOutcome::Promoted { model } => {
                write!(f, "candidate {model} promoted: it decides from now on")
            }
        }
    }
}

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
    pub recipe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standard_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `config`: the sections and keys that changed; `rollout`: the model
    /// and standards it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// `rollout`: the id of the rollout answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// `shadow`: what was done (in words in `model`).
    #[serde(skip)]
    pub shadow: Option<ShadowOutcome>,
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
    /// It is valid and was tried, but failed (a model package or a
    /// configuration file that does not load); nothing changed.
    Failed,
}

impl Reply {
    fn ok(command: &str, request_id: Option<String>) -> Self {
        Reply {
            command: command.to_string(),
            ok: true,
            request_id,
            part_id: None,
            cameras: Vec::new(),
            recipe: None,
            standard_sha256: None,
            model: None,
            changed: None,
            rollout: None,
            shadow: None,
            error: None,
            kind: Failure::None,
        }
    }

    fn refused(command: &str, e: ControlError, request_id: Option<String>) -> Self {
        Self::error(command, e.kind, request_id, e.message)
    }

    fn error(command: &str, kind: Failure, request_id: Option<String>, message: String) -> Self {
        Reply {
            ok: false,
            error: Some(message),
            kind,
            ..Reply::ok(command, request_id)
        }
    }
}

/// Parses a JSON payload into `T`, naming the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    parse_within(payload, MAX_COMMAND_BYTES)
}

/// [`parse`] with another size limit (a rollout carries standard texts).
fn parse_within<T: serde::de::DeserializeOwned>(payload: &[u8], limit: usize) -> Result<T, String> {
    if payload.len() > limit {
        return Err(format!(
            "payload is {} bytes; the limit is {limit}",
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
    match Name::parse(name) {
        Ok(Name::Trigger) => {
            let req: TriggerRequest = match parse(payload) {
                Ok(r) => r,
                Err(e) => return Reply::error(name, Failure::Malformed, None, e),
            };
            match triggers.fire(&req) {
                Ok(cameras) => Reply {
                    part_id: Some(req.part_id),
                    cameras,
                    ..Reply::ok(name, req.request_id)
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
        Ok(other) => Reply::error(
            name,
            Failure::Conflict,
            None,
            format!("`{}` is answered only over MQTT", other.as_str()),
        ),
        Err(e) => Reply::error(name, Failure::Malformed, None, e),
    }
}

/// Handles any command, the station's own (`recipe`, `reload`) included.
pub async fn handle_all(
    name: &str,
    payload: &[u8],
    triggers: &Triggers,
    control: &dyn Control,
) -> Reply {
    match Name::parse(name) {
        Ok(Name::Recipe) => {
            let req: RecipeRequest = match parse(payload) {
                Ok(r) => r,
                Err(e) => return Reply::error(name, Failure::Malformed, None, e),
            };
            match control.switch_recipe(&req.recipe) {
                Ok((recipe, sha)) => Reply {
                    recipe: Some(recipe),
                    standard_sha256: Some(sha),
                    ..Reply::ok(name, req.request_id)
                },
                Err(e) => Reply::refused(name, e, req.request_id),
            }
        }
        Ok(command @ (Name::Reload | Name::Config)) => {
            let req: ReloadRequest = if payload.iter().all(u8::is_ascii_whitespace) {
                ReloadRequest::default()
            } else {
                match parse(payload) {
                    Ok(r) => r,
                    Err(e) => return Reply::error(name, Failure::Malformed, None, e),
                }
            };
            if command == Name::Config {
                return match control.reconfigure().await {
                    Ok(changed) => Reply {
                        changed: Some(changed),
                        ..Reply::ok(name, req.request_id)
                    },
                    Err(e) => Reply::refused(name, e, req.request_id),
                };
            }
            match control.reload().await {
                Ok(model) => Reply {
                    model: Some(model),
                    ..Reply::ok(name, req.request_id)
                },
                Err(e) => Reply::refused(name, e, req.request_id),
            }
        }
        Ok(Name::Shadow) => {
            let req: ShadowRequest = match parse(payload) {
                Ok(r) => r,
                Err(e) => return Reply::error(name, Failure::Malformed, None, e),
            };
            if req.action == ShadowAction::Start && req.package.is_none() {
                return Reply::error(
                    name,
                    Failure::Malformed,
                    req.request_id,
                    "field `package`: the candidate's package folder is needed to start shadow mode".into(),
                );
            }
            let request_id = req.request_id.clone();
            match control.shadow(req).await {
                Ok(done) => Reply {
                    model: Some(done.to_string()),
                    shadow: Some(done),
                    ..Reply::ok(name, request_id)
                },
                Err(e) => Reply::refused(name, e, request_id),
            }
        }
        Ok(Name::Rollout) => {
            let rollout: record::Rollout =
                match parse_within(payload, delivery::command_link::MAX_COMMAND_BYTES) {
                    Ok(r) => r,
                    Err(e) => return Reply::error(name, Failure::Malformed, None, e),
                };
            if rollout.schema != record::ROLLOUT_SCHEMA {
                return Reply {
                    rollout: Some(rollout.id),
                    ..Reply::error(
                        name,
                        Failure::Malformed,
                        None,
                        format!(
                            "field `schema`: `{}`; this station reads {}",
                            rollout.schema,
                            record::ROLLOUT_SCHEMA
                        ),
                    )
                };
            }
            let id = rollout.id.clone();
            match control.rollout(rollout).await {
                Ok(done) => Reply {
                    changed: Some(done.changed()),
                    model: done.model,
                    rollout: Some(id),
                    ..Reply::ok(name, None)
                },
                Err(e) => Reply {
                    rollout: Some(id),
                    ..Reply::refused(name, e, None)
                },
            }
        }
        _ => handle(name, payload, triggers),
    }
}

/// Answers MQTT commands until the channel closes.
pub async fn serve<C: Control + 'static>(
    mut rx: mpsc::Receiver<Command>,
    triggers: Triggers,
    control: std::sync::Arc<C>,
    publisher: Publisher,
) {
    while let Some(cmd) = rx.recv().await {
        let slow = Name::parse(&cmd.name).is_ok_and(Name::slow);
        let (triggers, control, publisher) = (triggers.clone(), control.clone(), publisher.clone());
        let answer = async move {
            answer(
                &cmd.name,
                &cmd.payload,
                &triggers,
                control.as_ref(),
                &publisher,
            )
            .await;
        };
        // A reload takes seconds (load, verify, warm up); triggers and
        // recipe switches are answered meanwhile, in order.
        if slow {
            tokio::spawn(answer);
        } else {
            answer.await;
        }
    }
}

/// Answers the commands operators give on the line view (recipe switch,
/// trigger) as the same commands over MQTT are answered (the reply is also
/// published on `cmd/reply`), and records each as an `operator` event in
/// the station's event history (the panel lists it) with who gave it.
pub async fn serve_operators<C: Control + 'static>(
    mut rx: mpsc::Receiver<review_web::line::Command>,
    triggers: Triggers,
    control: std::sync::Arc<C>,
    publisher: Publisher,
    store: store::Store,
) {
    while let Some(cmd) = rx.recv().await {
        let reply = answer(
            cmd.name,
            cmd.payload.as_bytes(),
            &triggers,
            control.as_ref(),
            &publisher,
        )
        .await;
        let answer = operator_answer(&reply, &cmd.by);
        let said = answer.said(review_web::i18n::Lang::En);
        tracing::info!(by = %cmd.by, command = cmd.name, ok = reply.ok, said, "operator command");
        let event = store::health_history::Event::new(
            "operator",
            None,
            format!("{} {}: {said}", cmd.name, cmd.payload),
        );
        if let Err(e) = store::health_history::write_event(&store, &event).await {
            tracing::error!(error = %e, "cannot record the operator's command");
        }
        let _ = cmd.answer.send(answer);
    }
}

/// The reply to an operator's command as the answer their page shows.
fn operator_answer(reply: &Reply, by: &str) -> review_web::line::Answer {
    use review_web::line::Answer;
    let by = by.to_string();
    if let Some(error) = &reply.error {
        return Answer::Refused {
            error: error.clone(),
        };
    }
    match &reply.shadow {
        Some(ShadowOutcome::Started { model }) => Answer::ShadowStarted {
            model: model.clone(),
            by,
        },
        Some(ShadowOutcome::Stopped {
            model,
            frames,
            skipped,
        }) => Answer::ShadowStopped {
            model: model.clone(),
            frames: *frames,
            skipped: *skipped,
            by,
        },
        Some(ShadowOutcome::Promoted { model }) => Answer::Promoted {
            model: model.clone(),
            by,
        },
        None => match &reply.recipe {
            Some(recipe) => Answer::RecipeSwitched {
                recipe: recipe.clone(),
                by,
            },
            None => Answer::Triggered {
                part: reply.part_id.clone().unwrap_or_default(),
                cameras: reply.cameras.clone(),
                by,
            },
        },
    }
}

/// Handles one command and publishes the reply on `cmd/reply`.
pub async fn answer(
    name: &str,
    payload: &[u8],
    triggers: &Triggers,
    control: &dyn Control,
    publisher: &Publisher,
) -> Reply {
    let reply = handle_all(name, payload, triggers, control).await;
    if !reply.ok {
        tracing::warn!(command = %name, error = ?reply.error, "command refused");
    }
    let json = serde_json::to_string(&reply).expect("reply serialises");
    if let Err(e) = publisher
        .publish_now(&publisher.topics().reply(), &json, false)
        .await
    {
        tracing::warn!(error = %e, "cannot publish command reply");
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_parse_and_the_unknown_one_lists_them() {
        for n in Name::ALL {
            assert_eq!(Name::parse(n.as_str()), Ok(n));
        }
        assert!(Name::Reload.slow() && Name::Config.slow() && !Name::Trigger.slow());
        let r = handle("shutdown", b"{}", &Triggers::default());
        assert_eq!(r.kind, Failure::Malformed);
        assert_eq!(
            r.error.as_deref(),
            Some(
                "unknown command `shutdown`; this station accepts: trigger, recipe, reload, config, shadow, rollout"
            )
        );
    }

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
