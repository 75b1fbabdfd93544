//! The station's MQTT topics under `{mqtt.topic_prefix}/{station}`: what
//! goes out (verdict, result, part, status, camera state, command replies)
//! and what comes in (`cmd/{name}`). The README's MQTT section documents
//! them; names are a contract with the PLC and the MES.

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
    /// Every operator review of a verdict, QoS 1, through the outbox.
    pub fn review(&self) -> String {
        format!("{}/review", self.base)
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
    /// The command `name` (what a plant system sends).
    pub fn command(&self, name: &str) -> String {
        format!("{}/cmd/{name}", self.base)
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
