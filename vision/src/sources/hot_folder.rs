//! Hot folder: a vision PC (or a person) drops image files into a folder.
//!
//! Writers must not be read half-way: names starting with `.` or ending in
//! `.tmp`, `.part`, `.partial` or `~` are ignored (write there, then rename),
//! and any other file is only read once its size and modification time have
//! stayed the same across two scans. Each file is delivered once; it is moved
//! to `processed/` or deleted only after its verdict is committed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use firmware_config::AfterJudged;
use tokio::sync::mpsc::Sender;

use super::{Arrival, Origin};
use crate::decode;
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
}

impl HotFolder {
    /// Watches the folder until `stop` is set or the receiver is gone.
    /// Runs on the calling thread; spawn it on its own.
    pub fn run(self, tx: Sender<Arrival>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        fs::create_dir_all(&self.path)?;
        let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
        let mut delivered: HashSet<PathBuf> = HashSet::new();
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
            ready.sort();
            for (_, name, path) in ready {
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot read hot-folder file; will retry");
                        continue;
                    }
                };
                seen.remove(&path);
                delivered.insert(path.clone());
                let origin = Origin {
                    name: name.clone(),
                    path: Some(path.clone()),
                };
                let arrival = match decode::decode(&bytes) {
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
        };
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
    }
}
