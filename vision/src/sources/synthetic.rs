//! The synthetic line as a camera: paints a part every `interval` and
//! delivers it like any other camera (PNG-encoded, then decoded), so demos
//! and soak tests exercise the same path as a real station.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::Sender;

use super::health::CameraHealth;
use super::{Arrival, Origin};
use crate::frame::Frame;
use synth::SynthLine;

/// Settings of one synthetic camera.
#[derive(Clone, Debug)]
pub struct SyntheticCamera {
    pub camera_id: String,
    pub seed: u64,
    pub interval: Duration,
    /// Counts every part made, so the camera's own figures agree with the
    /// metrics.
    pub health: Option<std::sync::Arc<CameraHealth>>,
}

impl SyntheticCamera {
    /// Produces parts until `stop` is set or the receiver is gone.
    pub fn run(self, tx: Sender<Arrival>, stop: Arc<AtomicBool>) {
        let mut line = SynthLine::new(self.seed);
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
            let part = line.next_part();
            let mut png = Vec::new();
            part.image
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .expect("encoding an in-memory PNG cannot fail");
            let name = format!("synth-{}-{seq:06}", self.seed);
            let frame = Frame {
                camera_id: self.camera_id.clone(),
                seq,
                captured_at: SystemTime::now(),
                part_id: Some(name.clone()),
                trigger_id: None,
                image: Arc::new(part.image),
                encoded: Arc::new(png),
                format: "png",
                truth: Some(Arc::new(part.defects.clone())),
                held: Default::default(),
            };
            let origin = Origin::named(name);
            if let Some(h) = &self.health {
                h.frame();
            }
            if tx.blocking_send(Arrival::Frame { frame, origin }).is_err() {
                return;
            }
            seq += 1;
            std::thread::sleep(self.interval);
        }
    }
}
