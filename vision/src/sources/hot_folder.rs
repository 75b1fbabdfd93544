//! Hot folder: a vision PC (or a person) drops image files into a folder.
//!
//! Writers must not be read half-way: names starting with `.` or ending in
//! `.tmp`, `.part`, `.partial` or `~` are ignored (write there, then rename).
//! A file renamed into place is complete, and inotify (`IN_MOVED_TO`) says
//! so the moment it happens: it is taken at once. Any other file is only
//! read once its size and modification time have stayed the same for a
//! `poll` interval, across two scans. Scans run every `poll` whether or not
//! inotify works: they are the fallback where it cannot be had (an
//! exhausted watch limit) or sees nothing (a network share written from
//! another machine). A frame's `captured_at` is the moment its file was
//! detected (the rename, or the first scan that saw its final size and
//! time), so the wait in the folder counts in the station's latency
//! figures. A writer that pauses longer than a scan
//! can still be caught half-way: a file that is empty or does not decode is
//! only rejected once it has stayed unchanged for `settle` (if it grows in
//! the meantime it is read again). Each file is delivered once; it is moved
//! to `processed/` or deleted only after its verdict is committed, and the
//! verdict records the file's identity so a restart between the two does
//! not judge it again.
//!
//! Nothing is skipped without a word: a link, a FIFO, a folder or a file
//! left with a temporary name is reported once (an `ingest_errors` row and
//! a warning) and left where it is; a name that is not UTF-8 keeps its
//! bytes as `%XX`. Decoded pictures hold a share of the process's pixel
//! budget ([`crate::decode::Budget`]), so many large files at once make
//! the folder wait, not the process run out of memory.

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
use crate::decode::{self, Budget, DecodeError};
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
    /// Take renamed files at once through inotify (scans still run).
    pub watch: bool,
    /// Counts every file taken in, so the camera's own figures agree with
    /// the metrics.
    pub health: Option<std::sync::Arc<CameraHealth>>,
}

/// A file with a temporary name that stays unchanged this many `settle`s
/// (2 minutes at the default) was left behind, not being written: said once.
const STALE_TEMPORARY_SETTLES: u32 = 60;

/// A file taken and still in the folder this long is taken again: its
/// verdict (or error record) could not be stored, say on a full disk. One
/// that was in fact judged is then only moved (its identity is stored with
/// its verdict), and this is far beyond any queue's wait.
const TAKE_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// A file's size and modification time, and since when it has had them.
#[derive(Clone, Copy)]
struct Seen {
    stamp: Stamp,
    since: Instant,
    /// When it was first seen with this stamp: its `captured_at`.
    detected: SystemTime,
}

/// What a scan remembers between scans.
#[derive(Default)]
struct Scan {
    /// Size and modification time at the last scan.
    seen: HashMap<PathBuf, Seen>,
    /// Renamed into the folder (inotify), not yet taken, and when.
    renamed: HashMap<PathBuf, SystemTime>,
    /// Delivered and not yet moved away, and when.
    delivered: HashMap<PathBuf, Instant>,
    /// Files that did not decode: their stamp then, and since when.
    suspect: HashMap<PathBuf, (Stamp, Instant)>,
    /// Files with a temporary name: their stamp, and since when unchanged.
    temporary: HashMap<PathBuf, (Stamp, Instant)>,
    /// Entries already said to be skipped (said again only if they go and
    /// come back).
    reported: HashSet<PathBuf>,
}

type Stamp = (u64, SystemTime);

/// A file ready to be read.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    modified: SystemTime,
    name: String,
    path: PathBuf,
    stamp: Stamp,
    detected: SystemTime,
}

/// What the folder holds at one scan.
struct Found {
    /// Regular files renamed in or unchanged for a poll, oldest first.
    ready: Vec<Ready>,
    /// Entries never to be judged, with why.
    skipped: Vec<(String, PathBuf, String)>,
}

impl HotFolder {
    /// Watches the folder until `stop` is set or the receiver is gone.
    /// Runs on the calling thread; spawn it on its own.
    pub fn run(self, tx: Sender<Arrival>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
        fs::create_dir_all(&self.path)?;
        let mut watcher = self.watch.then(|| self.watcher()).flatten();
        let mut scan = Scan::default();
        let budget = Budget::global();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
            let found = match self.look(&mut scan) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(camera = %self.camera_id, folder = %self.path.display(), error = %e, "cannot scan hot folder");
                    std::thread::sleep(self.poll);
                    continue;
                }
            };
            for (name, path, reason) in found.skipped {
                if !scan.reported.insert(path.clone()) {
                    continue;
                }
                let arrival = Arrival::Skipped {
                    camera_id: self.camera_id.clone(),
                    origin: Origin::named(name),
                    reason,
                };
                if tx.blocking_send(arrival).is_err() {
                    return Ok(());
                }
            }
            for Ready {
                name,
                path,
                stamp,
                detected,
                ..
            } in found.ready
            {
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot read hot-folder file; will retry");
                        continue;
                    }
                };
                let decoded =
                    decode::decode_within(&bytes, &budget, || stop.load(Ordering::Relaxed));
                match &decoded {
                    Err(DecodeError::Stopped) => return Ok(()),
                    Err(
                        DecodeError::Empty
                        | DecodeError::UnknownFormat
                        | DecodeError::Corrupt { .. },
                    ) => {
                        let since = scan
                            .suspect
                            .entry(path.clone())
                            .or_insert((stamp, Instant::now()));
                        if since.0 != stamp {
                            *since = (stamp, Instant::now());
                        }
                        if since.1.elapsed() < self.settle {
                            continue;
                        }
                    }
                    _ => {}
                }
                scan.suspect.remove(&path);
                scan.seen.remove(&path);
                scan.delivered.insert(path.clone(), Instant::now());
                let origin = Origin {
                    identity: Some(identity(&name, stamp)),
                    name: name.clone(),
                    path: Some(path.clone()),
                };
                let arrival = match decoded {
                    Ok((image, format, held)) => Arrival::Frame {
                        frame: Frame {
                            camera_id: self.camera_id.clone(),
                            seq,
                            captured_at: detected,
                            part_id: Path::new(&name)
                                .file_stem()
                                .map(|s| s.to_string_lossy().into_owned()),
                            trigger_id: None,
                            image: Arc::new(image),
                            encoded: Arc::new(bytes),
                            format,
                            truth: None,
                            held,
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
            match &mut watcher {
                Some(w) => w.wait(self.poll, &self.path, &mut scan.renamed),
                None => std::thread::sleep(self.poll),
            }
        }
        Ok(())
    }

    /// An inotify watch on the folder for files renamed into it, or `None`
    /// (said once) when the system will not give one: then scans alone
    /// find files.
    fn watcher(&self) -> Option<Watcher> {
        match Watcher::new(&self.path) {
            Ok(w) => {
                tracing::debug!(camera = %self.camera_id, folder = %self.path.display(), "hot folder watched through inotify");
                Some(w)
            }
            Err(e) => {
                tracing::warn!(camera = %self.camera_id, folder = %self.path.display(), error = %e, poll_ms = self.poll.as_millis() as u64, "no inotify watch on the hot folder; finding files by scanning only");
                None
            }
        }
    }

    /// One scan: which files are ready, and what will never be judged.
    fn look(&self, scan: &mut Scan) -> std::io::Result<Found> {
        let mut found = Found {
            ready: Vec::new(),
            skipped: Vec::new(),
        };
        let mut present = HashSet::new();
        let stale_after = self.settle * STALE_TEMPORARY_SETTLES;
        for entry in fs::read_dir(&self.path)?.flatten() {
            let path = entry.path();
            let name = display_name(&entry.file_name());
            // Not followed: a link is reported, never read.
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            present.insert(path.clone());
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let kind = meta.file_type();
            if kind.is_dir() && name == PROCESSED {
                continue;
            }
            if !kind.is_file() {
                let what = not_a_file(&kind);
                found.skipped.push((
                    name,
                    path,
                    format!("{what}, not a regular file: never judged (drop image files only)"),
                ));
                continue;
            }
            if ignored(&name) {
                let since = scan
                    .temporary
                    .entry(path.clone())
                    .or_insert((stamp, Instant::now()));
                if since.0 != stamp {
                    *since = (stamp, Instant::now());
                } else if since.1.elapsed() >= stale_after {
                    found.skipped.push((
                        name,
                        path,
                        format!(
                            "a temporary name, unchanged for {} s: never judged until renamed (names starting with `.` or ending in .tmp, .part, .partial or ~ are being written)",
                            stale_after.as_secs()
                        ),
                    ));
                }
                continue;
            }
            if let Some(taken) = scan.delivered.get(&path) {
                if taken.elapsed() < TAKE_AGAIN_AFTER {
                    continue;
                }
                tracing::warn!(camera = %self.camera_id, file = %path.display(), "still in the hot folder {} s after it was taken (its record could not be stored?); taking it again", TAKE_AGAIN_AFTER.as_secs());
                scan.delivered.remove(&path);
            }
            let now = (Instant::now(), SystemTime::now());
            let seen = match scan.seen.get(&path) {
                Some(s) if s.stamp == stamp => *s,
                _ => Seen {
                    stamp,
                    since: now.0,
                    detected: now.1,
                },
            };
            scan.seen.insert(path.clone(), seen);
            let renamed = scan.renamed.remove(&path);
            if renamed.is_some() || seen.since.elapsed() >= self.poll {
                found.ready.push(Ready {
                    modified: stamp.1,
                    name,
                    path,
                    stamp,
                    detected: renamed.map_or(seen.detected, |at| at.min(seen.detected)),
                });
            }
        }
        scan.seen.retain(|p, _| present.contains(p));
        scan.renamed.retain(|p, _| present.contains(p));
        scan.delivered.retain(|p, _| present.contains(p));
        scan.suspect.retain(|p, _| present.contains(p));
        scan.temporary.retain(|p, _| present.contains(p));
        scan.reported.retain(|p| present.contains(p));
        found.ready.sort();
        Ok(found)
    }
}

/// An inotify instance watching one folder for files renamed into it.
struct Watcher {
    inotify: inotify::Inotify,
    buffer: Vec<u8>,
}

impl Watcher {
    fn new(folder: &Path) -> std::io::Result<Self> {
        let inotify = inotify::Inotify::init()?;
        inotify.watches().add(
            folder,
            inotify::WatchMask::MOVED_TO | inotify::WatchMask::ONLYDIR,
        )?;
        Ok(Self {
            inotify,
            buffer: vec![0; 16 * 1024],
        })
    }

    /// Waits up to `timeout` for files renamed into `folder`, noting each
    /// with the moment it was heard of; returns at the first. An overflowed
    /// queue loses names, not files: the next scans find them.
    fn wait(
        &mut self,
        timeout: Duration,
        folder: &Path,
        renamed: &mut HashMap<PathBuf, SystemTime>,
    ) {
        use std::os::fd::AsRawFd;
        let mut fd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, and its count.
        let ready = unsafe { libc::poll(&mut fd, 1, ms) };
        if ready <= 0 {
            return;
        }
        let heard = SystemTime::now();
        loop {
            match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => {
                    let mut any = false;
                    for event in events {
                        any = true;
                        if let Some(name) = event.name {
                            renamed.entry(folder.join(name)).or_insert(heard);
                        }
                    }
                    if !any {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(folder = %folder.display(), error = %e, "reading the hot folder's inotify events");
                    std::thread::sleep(timeout);
                    return;
                }
            }
        }
    }
}

/// What an entry that is not a regular file is, in words.
fn not_a_file(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// A file name as text: unchanged when it is UTF-8; otherwise each byte
/// that is not is written `%XX`, so no byte of it is lost from part ids and
/// records, and two such names stay apart.
pub fn display_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The identity of a file taken: name, size and modification time (ns).
fn identity(name: &str, (size, modified): Stamp) -> String {
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}|{size}|{nanos}")
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
            watch: true,
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
                Arrival::Skipped { origin, .. } => format!("skipped:{}", origin.name),
            })
            .collect();
        names.sort();
        assert_eq!(names, ["frame:p1", "rejected:empty.png:empty file"]);
        // The camera's own count agrees with what arrived (as /metrics counts).
        assert_eq!(health.snapshot().frames, 2);
    }

    #[test]
    fn links_fifos_folders_stale_temporaries_are_reported_once_and_odd_names_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let folder = HotFolder {
            camera_id: "cam".into(),
            path: dir.path().to_path_buf(),
            poll: Duration::from_millis(20),
            settle: Duration::from_millis(10),
            watch: true,
            health: None,
        };
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        let elsewhere = tempfile::tempdir().unwrap();
        img.save(elsewhere.path().join("real.png")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("real.png"),
            dir.path().join("link.png"),
        )
        .unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe.png"))
            .status()
            .unwrap();
        assert!(made.success());
        fs::create_dir(dir.path().join("x.png")).unwrap();
        fs::write(dir.path().join(".left-behind.png"), b"abandoned").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"bad-\xff.png");
        img.save(dir.path().join(odd)).unwrap();
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || folder.run(tx, stop2));
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 5 && Instant::now() < deadline {
            if let Ok(a) = rx.try_recv() {
                got.push(a);
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Nothing is said twice.
        std::thread::sleep(Duration::from_millis(300));
        assert!(rx.try_recv().is_err(), "reported twice");
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        let mut said: Vec<String> = got
            .iter()
            .map(|a| match a {
                Arrival::Frame { frame, .. } => format!("frame:{}", frame.part_id.clone().unwrap()),
                Arrival::Skipped { origin, reason, .. } => {
                    format!("{}: {}", origin.name, reason.split(',').next().unwrap())
                }
                Arrival::Rejected { origin, .. } => format!("rejected:{}", origin.name),
            })
            .collect();
        said.sort();
        assert_eq!(
            said,
            [
                ".left-behind.png: a temporary name",
                "frame:bad-%FF",
                "link.png: a symbolic link",
                "pipe.png: a FIFO",
                "x.png: a folder",
            ]
        );
        // Left where they were; the link's target was never read.
        assert!(dir.path().join("pipe.png").exists() && dir.path().join("x.png").is_dir());
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
            watch: true,
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
                Arrival::Skipped { origin, reason, .. } => {
                    panic!("{} skipped: {reason}", origin.name)
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

    /// Watches a folder that scans every `poll`; returns the sender's
    /// receiver, the stop flag and the thread.
    fn watching(
        dir: &Path,
        poll: Duration,
        watch: bool,
    ) -> (
        tokio::sync::mpsc::Receiver<Arrival>,
        Arc<AtomicBool>,
        std::thread::JoinHandle<std::io::Result<()>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let folder = HotFolder {
            camera_id: "cam".into(),
            path: dir.to_path_buf(),
            poll,
            settle: Duration::from_secs(30),
            watch,
            health: None,
        };
        let stop2 = stop.clone();
        (rx, stop, std::thread::spawn(move || folder.run(tx, stop2)))
    }

    fn next_frame(
        rx: &mut tokio::sync::mpsc::Receiver<Arrival>,
        within: Duration,
    ) -> Option<Frame> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            match rx.try_recv() {
                Ok(Arrival::Frame { frame, .. }) => return Some(frame),
                Ok(_) => panic!("not a frame"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        None
    }

    #[test]
    fn a_renamed_file_is_taken_at_once_and_one_written_in_place_after_a_poll() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([9, 8, 7]));
        img.save_with_format(dir.path().join(".a.png.part"), image::ImageFormat::Png)
            .unwrap();
        img.save_with_format(dir.path().join(".b.png.part"), image::ImageFormat::Png)
            .unwrap();
        // Scans every 2 s: found by scanning, a file is ready after 2 s at
        // the earliest.
        let poll = Duration::from_secs(2);
        let (mut rx, stop, handle) = watching(dir.path(), poll, true);
        std::thread::sleep(Duration::from_millis(300));

        let renamed_at = SystemTime::now();
        fs::rename(dir.path().join(".a.png.part"), dir.path().join("a.png")).unwrap();
        let frame = next_frame(&mut rx, Duration::from_millis(1500))
            .expect("a renamed file is taken well before a scan would find it ready");
        let heard = SystemTime::now();
        assert_eq!(frame.part_id.as_deref(), Some("a"));
        // captured_at is when the rename was noticed, not when it was read.
        assert!(frame.captured_at >= renamed_at && frame.captured_at <= heard);

        // Written in place: the settle rule still holds.
        let written_at = Instant::now();
        img.save(dir.path().join("c.png")).unwrap();
        let frame = next_frame(&mut rx, Duration::from_secs(10)).expect("found by scanning");
        assert_eq!(frame.part_id.as_deref(), Some("c"));
        assert!(
            written_at.elapsed() >= poll,
            "a file written in place was read before it stayed unchanged for a poll"
        );
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        fs::remove_file(dir.path().join("a.png")).unwrap();
        fs::remove_file(dir.path().join("c.png")).unwrap();

        // Without inotify, a renamed file waits for the scans.
        let (mut rx, stop, handle) = watching(dir.path(), poll, false);
        std::thread::sleep(Duration::from_millis(300));
        let renamed = Instant::now();
        fs::rename(dir.path().join(".b.png.part"), dir.path().join("b.png")).unwrap();
        let frame = next_frame(&mut rx, Duration::from_secs(10)).expect("found by scanning");
        assert_eq!(frame.part_id.as_deref(), Some("b"));
        assert!(renamed.elapsed() >= poll);
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    }
}
