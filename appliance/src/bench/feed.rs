//! How the bench's frames reach the station, one feeder thread per camera.
//!
//! `direct` hands each frame to the pipeline as a camera thread does
//! (decoded on the feeder's thread, `captured_at` stamped before decoding).
//! `hot_folder` writes each PNG under a temporary name and renames it into
//! the camera's folder, as a vision PC does, for the station's own
//! hot-folder camera to find, read and decode: the real station end to end.
//! Both follow the same pace: as fast as the station takes them, or one
//! every `interval` on a fixed schedule.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use vision::sources::{Arrival, Origin};
use vision::Frame;

/// When a feeder sends and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Frames this feeder sends (`None`: until `until`).
    pub count: Option<usize>,
    pub until: Option<Instant>,
    /// One frame every `interval` from the start (`None`: back to back).
    pub interval: Option<Duration>,
}

impl Pace {
    /// Waits until frame `seq` is due; false when the feeder is done.
    fn wait_for(&self, started: Instant, seq: u64) -> bool {
        if self.count.is_some_and(|n| seq as usize >= n)
            || self.until.is_some_and(|u| Instant::now() >= u)
        {
            return false;
        }
        if let Some(every) = self.interval {
            let due = started + every.mul_f64(seq as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        true
    }
}

/// The part name of a camera's `seq`-th frame (the hot folder's file stem).
fn part_name(camera: &str, seq: u64) -> String {
    format!("{camera}-{seq:07}")
}

/// Feeds one camera's share of `frames` into the pipeline's queue; returns
/// how many it fed.
pub fn direct(
    camera: String,
    frames: Arc<Vec<Vec<u8>>>,
    offset: usize,
    pace: Pace,
    tx: mpsc::Sender<Arrival>,
) -> u64 {
    let started = Instant::now();
    let mut seq = 0u64;
    while pace.wait_for(started, seq) {
        let png = &frames[(offset + seq as usize) % frames.len()];
        let captured_at = SystemTime::now();
        let (image, format) = vision::decode::decode(png).expect("bench frames decode");
        let name = part_name(&camera, seq);
        let frame = Frame {
            camera_id: camera.clone(),
            seq,
            captured_at,
            part_id: Some(name.clone()),
            trigger_id: None,
            image: Arc::new(image),
            encoded: Arc::new(png.clone()),
            format,
            truth: None,
            held: Default::default(),
        };
        if tx
            .blocking_send(Arrival::Frame {
                frame,
                origin: Origin::named(name),
            })
            .is_err()
        {
            break;
        }
        seq += 1;
    }
    seq
}

/// Writes one camera's share of `frames` into `folder` the way a vision PC
/// should: to a hidden temporary name, then renamed into place. Returns
/// each part's name and the moment just before its rename.
pub fn hot_folder(
    camera: String,
    folder: &Path,
    frames: Arc<Vec<Vec<u8>>>,
    offset: usize,
    pace: Pace,
) -> std::io::Result<Vec<(String, SystemTime)>> {
    let started = Instant::now();
    let mut renamed = Vec::new();
    let mut seq = 0u64;
    while pace.wait_for(started, seq) {
        let png = &frames[(offset + seq as usize) % frames.len()];
        let name = part_name(&camera, seq);
        let temporary = folder.join(format!(".{name}.png.tmp"));
        std::fs::write(&temporary, png)?;
        let at = SystemTime::now();
        std::fs::rename(&temporary, folder.join(format!("{name}.png")))?;
        renamed.push((name, at));
        seq += 1;
    }
    Ok(renamed)
}
