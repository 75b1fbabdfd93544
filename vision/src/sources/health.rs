//! Camera health: whether each camera is delivering, how often it was
//! reopened and how many frames it dropped, plus the capped exponential
//! backoff used to reopen it. Sources update it from their own threads; the
//! pipeline reports changes (status topic, log) and monitoring reads it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

/// A change in a camera's state, for the status topic and the log.
#[derive(Clone, Debug, PartialEq)]
pub enum CameraEvent {
    /// Frames are arriving (again).
    Up { camera_id: String, reconnects: u64 },
    /// The camera could not be opened, stopped delivering or disconnected.
    Down {
        camera_id: String,
        reason: String,
        retry_in: Duration,
    },
    /// A video file without looping reached its end.
    Ended { camera_id: String },
}

/// Counters and state of one camera, shared between its thread and readers.
#[derive(Debug)]
pub struct CameraHealth {
    pub camera_id: String,
    up: AtomicBool,
    frames: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    events: Option<UnboundedSender<CameraEvent>>,
}

/// A copy of a camera's health at one moment.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HealthSnapshot {
    pub camera: String,
    pub up: bool,
    pub frames: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

impl CameraHealth {
    pub fn new(camera_id: &str, events: Option<UnboundedSender<CameraEvent>>) -> Arc<Self> {
        Arc::new(Self {
            camera_id: camera_id.to_string(),
            up: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            events,
        })
    }

    fn emit(&self, event: CameraEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// A frame arrived; the first after an outage reports the camera up.
    pub fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(camera = %self.camera_id, "camera delivering");
            self.emit(CameraEvent::Up {
                camera_id: self.camera_id.clone(),
                reconnects: self.reconnects.load(Ordering::Relaxed),
            });
        }
    }

    /// A source that has no frames of its own to count until a part comes
    /// (hot folder, synthetic line) is ready.
    pub fn started(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.emit(CameraEvent::Up {
                camera_id: self.camera_id.clone(),
                reconnects: self.reconnects.load(Ordering::Relaxed),
            });
        }
    }

    /// The camera failed; it will be reopened after `retry_in`.
    pub fn down(&self, reason: &str, retry_in: Duration) {
        let was_up = self.up.swap(false, Ordering::AcqRel);
        let mut last = self.last_error.lock().expect("health lock");
        let changed = was_up || last.as_deref() != Some(reason);
        *last = Some(reason.to_string());
        drop(last);
        if changed {
            tracing::warn!(camera = %self.camera_id, reason, retry_in_ms = retry_in.as_millis() as u64, "camera down");
            self.emit(CameraEvent::Down {
                camera_id: self.camera_id.clone(),
                reason: reason.to_string(),
                retry_in,
            });
        }
    }

    /// A reopen attempt is made.
    pub fn reconnecting(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame was discarded (free-run overload: a newer one replaced it).
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A file source reached its end.
    pub fn ended(&self) {
        self.up.store(false, Ordering::Release);
        tracing::info!(camera = %self.camera_id, "video file ended");
        self.emit(CameraEvent::Ended {
            camera_id: self.camera_id.clone(),
        });
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            camera: self.camera_id.clone(),
            up: self.up.load(Ordering::Acquire),
            frames: self.frames.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("health lock").clone(),
        }
    }
}

/// Capped exponential backoff: `initial`, doubling, never above `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt; doubles the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_millis(100));
    }

    #[test]
    fn up_and_down_are_reported_once_per_change() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let h = CameraHealth::new("top", Some(tx));
        h.down("cannot open", Duration::from_millis(5));
        h.down("cannot open", Duration::from_millis(10));
        h.reconnecting();
        h.frame();
        h.frame();
        h.dropped();
        let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            events,
            [
                CameraEvent::Down {
                    camera_id: "top".into(),
                    reason: "cannot open".into(),
                    retry_in: Duration::from_millis(5)
                },
                CameraEvent::Up {
                    camera_id: "top".into(),
                    reconnects: 1
                }
            ]
        );
        let s = h.snapshot();
        assert_eq!((s.up, s.frames, s.dropped, s.reconnects), (true, 2, 1, 1));
    }
}
