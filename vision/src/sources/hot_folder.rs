//! Hot folder: a vision PC (or a person) drops image files into a folder.
//!
//! Writers must not be read half-way: names starting with `.` or ending in
//! `.tmp`, `.part`, `.partial` or `~` are ignored (write there, then rename),
//! and any other file is only read once its size and modification time have
//! stayed the same across two scans. A writer that pauses longer than a scan
//! can still be caught half-way: a file that is empty or does not decode is
//! only rejected once it has stayed unchanged for `settle` (if it grows in
//! the meantime it is read again). Each file is delivered once; it is moved
//! to `processed/` or deleted only after its verdict is committed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use firmware_config::AfterJudged;
use tokio::sync::mpsc::Sender;

use super::health::CameraHealth;
use super::{Arrival, Origin};
use crate::decode::{self, DecodeError};
use crate::frame::Frame;

/// Sub-folder judged files are moved into.
pub const PROCESSED: &str = "processed";

fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [".tmp", ".part", ".partial"]
            .iter()
            .any(|s| name.to_ascii_lowercase().ends_with(s))
}

/// Settings of one hot-folder camera.
#[derive(Clone, Debug)]
pub struct HotFolder {
    pub camera_id: String,
    pub path: PathBuf,
    pub poll: Duration,
    /// How long a file that does not decode must stay unchanged before it is
    /// rejected (a slow writer may still be filling it).
    pub settle: Duration,
    /// Counts every file taken in, so the camera's own figures agree with
    /// the metrics.
    pub health: Option<std::sync::Arc<CameraHealth>>,
}

impl HotFolder {
    /// Watches the folder until `stop` is set or the receiver is gone.
    /// Runs on the calling thread; spawn it on its own.
    pub fn run(self, tx: Sender<Arrival>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        fs::create_dir_all(&self.path)?;
        let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
        let mut delivered: HashSet<PathBuf> = HashSet::new();
        // Files that did not decode: their stamp then, and since when.
        let mut suspect: HashMap<PathBuf, ((u64, SystemTime), Instant)> = HashMap::new();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
            let mut ready = Vec::new();
            let mut present = HashSet::new();
            let entries = match fs::read_dir(&self.path) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(camera = %self.camera_id, folder = %self.path.display(), error = %e, "cannot scan hot folder");
                    std::thread::sleep(self.poll);
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || ignored(&name) {
                    continue;
                }
                present.insert(path.clone());
                if delivered.contains(&path) {
                    continue;
                }
                let stamp = (
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                );
                match seen.insert(path.clone(), stamp) {
                    Some(prev) if prev == stamp => ready.push((stamp.1, name, path)),
                    _ => {}
                }
            }
            seen.retain(|p, _| present.contains(p));
            delivered.retain(|p| present.contains(p));
            suspect.retain(|p, _| present.contains(p));
            ready.sort();
            for (_, name, path) in ready {
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot read hot-folder file; will retry");
                        continue;
                    }
                };
                let decoded = decode::decode(&bytes);
                if let Err(DecodeError::Empty | DecodeError::Corrupt { .. }) = &decoded {
                    let stamp = seen[&path];
                    let since = suspect
                        .entry(path.clone())
                        .or_insert((stamp, Instant::now()));
                    if since.0 != stamp {
                        *since = (stamp, Instant::now());
                    }
                    if since.1.elapsed() < self.settle {
                        continue;
                    }
                }
                suspect.remove(&path);
                seen.remove(&path);
                delivered.insert(path.clone());
                let origin = Origin {
                    name: name.clone(),
                    path: Some(path.clone()),
                };
                let arrival = match decoded {
                    Ok((image, format)) => Arrival::Frame {
                        frame: Frame {
                            camera_id: self.camera_id.clone(),
                            seq,
                            captured_at: SystemTime::now(),
                            part_id: Path::new(&name)
                                .file_stem()
                                .map(|s| s.to_string_lossy().into_owned()),
                            trigger_id: None,
                            image: Arc::new(image),
                            encoded: Arc::new(bytes),
                            format,
                            truth: None,
                        },
                        origin,
                    },
                    Err(error) => Arrival::Rejected {
                        camera_id: self.camera_id.clone(),
                        origin,
                        bytes,
                        error,
                    },
                };
                seq += 1;
                if let Some(h) = &self.health {
                    h.frame();
                }
                if tx.blocking_send(arrival).is_err() {
                    return Ok(());
                }
            }
            std::thread::sleep(self.poll);
        }
        Ok(())
    }
}

/// Moves or deletes a judged file, after its verdict (or error record) is stored.
pub fn finish(path: &Path, after: AfterJudged) -> std::io::Result<()> {
    match after {
        AfterJudged::Delete => fs::remove_file(path),
        AfterJudged::Move => {
            let dir = path
                .parent()
                .map(|p| p.join(PROCESSED))
                .unwrap_or_else(|| PathBuf::from(PROCESSED));
            fs::create_dir_all(&dir)?;
            let name = path.file_name().unwrap_or_default();
            fs::rename(path, dir.join(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_ignored() {
        assert!(ignored(".part-1.png"));
        assert!(ignored("a.png.tmp"));
        assert!(ignored("a.PART"));
        assert!(ignored("a.png~"));
        assert!(!ignored("part-1.png"));
    }

    #[test]
    fn files_arrive_once_and_bad_ones_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let folder = HotFolder {
            camera_id: "cam".into(),
            path: dir.path().to_path_buf(),
            poll: Duration::from_millis(20),
            settle: Duration::from_millis(100),
            health: Some(CameraHealth::new("cam", None)),
        };
        let health = folder.health.clone().unwrap();
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || folder.run(tx, stop2));
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        img.save(dir.path().join("p1.png")).unwrap();
        fs::write(dir.path().join("empty.png"), b"").unwrap();
        fs::write(dir.path().join(".p2.png.tmp"), b"partial").unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(rx.blocking_recv().unwrap());
        }
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            rx.try_recv().is_err(),
            "a file was delivered twice or a temp file was read"
        );
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        let mut names: Vec<String> = got
            .iter()
            .map(|a| match a {
                Arrival::Frame { frame, .. } => format!("frame:{}", frame.part_id.clone().unwrap()),
                Arrival::Rejected { origin, error, .. } => {
                    format!("rejected:{}:{error}", origin.name)
                }
            })
            .collect();
        names.sort();
        assert_eq!(names, ["frame:p1", "rejected:empty.png:empty file"]);
        // The camera's own count agrees with what arrived (as /metrics counts).
        assert_eq!(health.snapshot().frames, 2);
    }

    #[test]
    fn a_slow_writer_is_read_when_done_and_a_renamed_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let folder = HotFolder {
            camera_id: "cam".into(),
            path: dir.path().to_path_buf(),
            poll: Duration::from_millis(20),
            settle: Duration::from_millis(500),
            health: None,
        };
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || folder.run(tx, stop2));
        let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        // A writer that creates the file empty, then writes it in four
        // pieces with pauses longer than two scans, under its final name.
        let slow = dir.path().join("slow.png");
        let mut f = fs::File::create(&slow).unwrap();
        for piece in png.chunks(png.len().div_ceil(4)) {
            std::thread::sleep(Duration::from_millis(120));
            std::io::Write::write_all(&mut f, piece).unwrap();
            f.sync_all().unwrap();
        }
        drop(f);
        // A writer that follows the convention: temporary name, then rename.
        let tmp = dir.path().join("renamed.png.part");
        fs::write(&tmp, &png).unwrap();
        fs::rename(&tmp, dir.path().join("renamed.png")).unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            match rx.blocking_recv().unwrap() {
                Arrival::Frame { frame, .. } => {
                    assert_eq!(frame.image.as_raw(), img.as_raw());
                    got.push(frame.part_id.unwrap());
                }
                Arrival::Rejected { origin, error, .. } => {
                    panic!("{} rejected while being written: {error}", origin.name)
                }
            }
        }
        std::thread::sleep(Duration::from_millis(700));
        assert!(rx.try_recv().is_err(), "a file was delivered twice");
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        got.sort();
        assert_eq!(got, ["renamed", "slow"]);
    }
}
