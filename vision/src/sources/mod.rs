//! Camera sources: each kind runs on its own thread and delivers `Arrival`s
//! into a bounded channel, so a slow model never blocks a camera's driver and
//! a full queue is visible instead of silent.

pub mod health;
pub mod hot_folder;
pub mod synthetic;
pub mod trigger;
#[cfg(feature = "opencv")]
pub mod video;

use std::path::PathBuf;

use crate::decode::DecodeError;
use crate::frame::Frame;

/// Where an arrival came from, so it can be acknowledged once stored.
#[derive(Clone, Debug)]
pub struct Origin {
    /// File name or synthetic part name, for records and logs.
    pub name: String,
    /// The file to move or delete after the verdict is committed.
    pub path: Option<PathBuf>,
    /// What identifies the file taken (name, size, modification time),
    /// stored with its verdict so a file judged before a power cut is not
    /// judged again when found after the restart.
    pub identity: Option<String>,
}

impl Origin {
    /// An origin with only a name (no file to move, nothing to de-duplicate).
    pub fn named(name: String) -> Self {
        Self {
            name,
            path: None,
            identity: None,
        }
    }
}

/// What a camera delivers: a decodable frame, or bytes that are not one.
#[derive(Debug)]
pub enum Arrival {
    Frame {
        frame: Frame,
        origin: Origin,
    },
    /// The bytes could not be decoded; they are kept for the error record.
    Rejected {
        camera_id: String,
        origin: Origin,
        bytes: Vec<u8>,
        error: DecodeError,
    },
    /// Something in the hot folder that will never be judged (a link, a
    /// FIFO, a folder, a file left with a temporary name): said once, left
    /// where it is.
    Skipped {
        camera_id: String,
        origin: Origin,
        reason: String,
    },
}

impl Arrival {
    pub fn camera_id(&self) -> &str {
        match self {
            Arrival::Frame { frame, .. } => &frame.camera_id,
            Arrival::Rejected { camera_id, .. } | Arrival::Skipped { camera_id, .. } => camera_id,
        }
    }

    pub fn origin(&self) -> &Origin {
        match self {
            Arrival::Frame { origin, .. }
            | Arrival::Rejected { origin, .. }
            | Arrival::Skipped { origin, .. } => origin,
        }
    }
}
