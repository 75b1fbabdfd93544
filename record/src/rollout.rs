//! A rollout (`rollout/v1`): what the plant server wants a station to run —
//! a model package and the text of some recipes' standards. It is the
//! retained message on the station's `cmd/rollout` topic, so a station that
//! was offline finds it when it returns, and one that restarts applies it
//! again. The sha256 of every file comes in this message, over the broker's
//! authenticated connection; the files themselves are fetched over HTTP from
//! the plant server and refused unless each one matches.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const ROLLOUT_SCHEMA: &str = "rollout/v1";

/// The desired state of one station, as a whole: a new rollout carries
/// forward what the previous one set and it does not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub schema: String,
    /// Names this rollout in the station's reply and status.
    pub id: String,
    pub station: String,
    /// Who sent it (an admin of the plant server) and when (RFC 3339, UTC).
    pub sent_by: String,
    pub sent_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRollout>,
    /// Standard texts by recipe name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub standards: BTreeMap<String, StandardRollout>,
}

/// A model package on the plant server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRollout {
    /// The package folder's URL, ending in `/`: file `f` is at `{url}{f}`.
    pub url: String,
    /// Every file of the package (`model.toml` among them) and its sha256.
    pub files: BTreeMap<String, String>,
    /// `fp32` or `int8`; absent: the station's configured precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    pub apply: Apply,
}

impl ModelRollout {
    /// The package's identity: the sha256 of its `model.toml` (the manifest
    /// lists the sha256 of every other file).
    pub fn manifest_sha256(&self) -> Option<&str> {
        self.files.get("model.toml").map(String::as_str)
    }
}

/// How a station takes a model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Apply {
    /// Through the safe reload: it decides from then on.
    Reload,
    /// As a candidate in shadow mode beside the running model.
    Shadow,
}

impl Apply {
    pub fn as_str(self) -> &'static str {
        match self {
            Apply::Reload => "reload",
            Apply::Shadow => "shadow",
        }
    }
}

/// A recipe's standard text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardRollout {
    pub text: String,
    /// sha256 of the text's UTF-8 bytes.
    pub sha256: String,
}
