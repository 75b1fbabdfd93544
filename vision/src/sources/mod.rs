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
}
