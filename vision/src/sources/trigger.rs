//! Triggers: the PLC (over MQTT) or a caller (over HTTP) says a part is in
//! position; the camera's next fresh frame becomes that part's picture.
//!
//! Each triggered camera has a bounded queue of waiting triggers. A trigger
//! that finds it full is refused with an error the caller sees, so a part is
//! never silently left without a picture.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Instant;

/// One request for a picture.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub part_id: Option<String>,
    pub trigger_id: String,
    /// When it arrived: only frames captured after this answer it.
    pub at: Instant,
}

/// Why a trigger was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("camera `{camera}` already has {capacity} triggers waiting for a frame")]
    QueueFull { camera: String, capacity: usize },
    #[error("camera `{camera}` has stopped")]
    Stopped { camera: String },
    #[error("camera `{camera}` is not in trigger mode")]
    NotTriggered { camera: String },
    #[error("no camera `{camera}` is configured")]
    UnknownCamera { camera: String },
}

/// The sending side, held by the MQTT and HTTP command handlers.
#[derive(Clone, Debug)]
pub struct TriggerSender {
    camera: String,
    capacity: usize,
    tx: SyncSender<Trigger>,
}

/// A camera's trigger queue: the sender for command handlers, the receiver
/// for its capture thread.
pub fn queue(camera: &str, capacity: usize) -> (TriggerSender, Receiver<Trigger>) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    (
        TriggerSender {
            camera: camera.to_string(),
            capacity,
            tx,
        },
        rx,
    )
}

impl TriggerSender {
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// Queues a trigger stamped now, or says why it cannot be.
    pub fn fire(&self, part_id: Option<String>, trigger_id: String) -> Result<(), TriggerError> {
        let t = Trigger {
            part_id,
            trigger_id,
            at: Instant::now(),
        };
        self.tx.try_send(t).map_err(|e| match e {
            TrySendError::Full(_) => TriggerError::QueueFull {
                camera: self.camera.clone(),
                capacity: self.capacity,
            },
            TrySendError::Disconnected(_) => TriggerError::Stopped {
                camera: self.camera.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_with_the_camera_and_bound() {
        let (tx, rx) = queue("side", 2);
        tx.fire(Some("p1".into()), "t1".into()).unwrap();
        tx.fire(Some("p2".into()), "t2".into()).unwrap();
        assert_eq!(
            tx.fire(Some("p3".into()), "t3".into()),
            Err(TriggerError::QueueFull {
                camera: "side".into(),
                capacity: 2
            })
        );
        assert_eq!(rx.recv().unwrap().part_id.as_deref(), Some("p1"));
        drop(rx);
        assert!(matches!(
            tx.fire(None, "t4".into()),
            Err(TriggerError::Stopped { .. })
        ));
    }
}
