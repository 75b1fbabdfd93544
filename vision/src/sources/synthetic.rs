//! The synthetic line as a camera: paints a part every `interval` and
//! delivers it like any other camera (PNG-encoded, then decoded), so demos
//! and soak tests exercise the same path as a real station.
//!
//! Parts come on a fixed schedule (the n-th at start + n × interval), so the
//! rate is the one configured however long painting takes; a camera that
//! falls behind (a busy CPU) catches up, and one held up for more than
//! [`CATCH_UP`] (a full queue) starts its schedule again rather than
//! bursting. With
//! `replay`, it paints that many parts once and then sends them round in a
//! ring, each under a new name: for load tests, where painting would take
//! the CPU the station is measured on.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::Sender;

use super::health::CameraHealth;
use super::{Arrival, Origin};
use crate::frame::Frame;
use synth::SynthLine;

/// How far behind its schedule the camera catches up.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Settings of one synthetic camera.
#[derive(Clone, Debug)]
pub struct SyntheticCamera {
    pub camera_id: String,
    pub seed: u64,
    pub interval: Duration,
    /// Paint this many parts once and replay them in a ring (0: paint
    /// every part).
    pub replay: usize,
    /// Counts every part made, so the camera's own figures agree with the
    /// metrics.
    pub health: Option<std::sync::Arc<CameraHealth>>,
}

impl SyntheticCamera {
    /// Produces parts until `stop` is set or the receiver is gone.
    pub fn run(self, tx: Sender<Arrival>, stop: Arc<AtomicBool>) {
        let mut line = SynthLine::new(self.seed);
        let ring: Vec<Painted> = (0..self.replay).map(|_| paint(&mut line)).collect();
        let mut seq = 0u64;
        let mut schedule = Instant::now();
        let mut due = 0u32;
        while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
            let name = format!("synth-{}-{seq:06}", self.seed);
            let part = if ring.is_empty() {
                paint(&mut line)
            } else {
                let part = &ring[seq as usize % ring.len()];
                Painted {
                    png: Arc::new(named(&part.png, &name)),
                    ..part.clone()
                }
            };
            let frame = Frame {
                camera_id: self.camera_id.clone(),
                seq,
                captured_at: SystemTime::now(),
                part_id: Some(name.clone()),
                trigger_id: None,
                image: part.image,
                encoded: part.png,
                format: "png",
                truth: Some(part.defects),
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
            due += 1;
            let next = schedule + self.interval * due;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > CATCH_UP.max(self.interval) {
                // Held up (a full queue): start again from here.
                (schedule, due) = (now, 0);
            }
        }
    }
}

/// One painted part, ready to send as often as wanted.
#[derive(Clone)]
struct Painted {
    image: Arc<image::RgbImage>,
    png: Arc<Vec<u8>>,
    defects: Arc<Vec<synth::DrawnDefect>>,
}

/// `png` with a `tEXt` chunk naming the part before its `IEND`: a replayed
/// frame's bytes differ from every other's, so each part's picture is
/// stored as its own file, as on a real line, for the cost of a copy.
fn named(png: &[u8], part: &str) -> Vec<u8> {
    let iend = png.len().saturating_sub(12);
    let mut data = b"Part\0".to_vec();
    data.extend_from_slice(part.as_bytes());
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32fast::hash(&chunk[4..]).to_be_bytes());
    let mut out = Vec::with_capacity(png.len() + chunk.len());
    out.extend_from_slice(&png[..iend]);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[iend..]);
    out
}

fn paint(line: &mut SynthLine) -> Painted {
    let part = line.next_part();
    let mut png = Vec::new();
    part.image
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encoding an in-memory PNG cannot fail");
    Painted {
        image: Arc::new(part.image),
        png: Arc::new(png),
        defects: Arc::new(part.defects),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_parts_come_round_under_new_names_and_new_bytes() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let cam = SyntheticCamera {
            camera_id: "line".into(),
            seed: 3,
            interval: Duration::from_millis(1),
            replay: 2,
            health: None,
        };
        let running = {
            let stop = stop.clone();
            std::thread::spawn(move || cam.run(tx, stop))
        };
        let mut frames = Vec::new();
        while frames.len() < 5 {
            if let Some(Arrival::Frame { frame, .. }) = rx.blocking_recv() {
                frames.push(frame);
            }
        }
        stop.store(true, Ordering::SeqCst);
        drop(rx);
        running.join().unwrap();

        let names: std::collections::HashSet<_> =
            frames.iter().map(|f| f.part_id.clone().unwrap()).collect();
        assert_eq!(names.len(), 5, "each part its own id");
        let bytes: std::collections::HashSet<_> =
            frames.iter().map(|f| f.encoded.as_ref().clone()).collect();
        assert_eq!(bytes.len(), 5, "each part its own picture file");
        // The ring: parts 0, 2 and 4 are one painted part, 1 and 3 another.
        assert_eq!(frames[0].image, frames[2].image);
        assert_eq!(frames[0].image, frames[4].image);
        assert_eq!(frames[1].image, frames[3].image);
        assert_ne!(frames[0].image, frames[1].image);
        assert_eq!(frames[2].truth, frames[0].truth);
        // Every replayed file still decodes to the painted part.
        for f in &frames {
            let decoded = image::load_from_memory(&f.encoded).unwrap().to_rgb8();
            assert_eq!(&decoded, f.image.as_ref());
        }
    }
}
