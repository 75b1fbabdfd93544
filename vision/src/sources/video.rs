//! Streaming cameras through OpenCV's `VideoCapture`: a V4L2 device (USB,
//! many GigE bridges), an RTSP/HTTP stream, a GStreamer pipeline (frame
//! grabbers, Aravis for GigE Vision) or a video file.
//!
//! The capture thread reads continuously, so OpenCV's internal buffer never
//! holds a stale frame. In free-run mode it delivers every frame (at most one
//! per `every`); when the pipeline's queue is full the newest frame waits and
//! replaces an older waiting one, which is counted as dropped. In trigger
//! mode it delivers, for each trigger, the first frame whose capture began
//! after the trigger arrived, and never drops one: it waits for queue space.
//! A camera that cannot be opened, returns no frame or stalls longer than
//! `stall_timeout` is reported down and reopened with capped exponential
//! backoff; the other cameras are unaffected (each has its own thread).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgproc, videoio};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::health::{Backoff, CameraHealth};
use super::trigger::Trigger;
use super::{Arrival, Origin};
use crate::frame::Frame;

/// What to open.
#[derive(Clone, Debug, PartialEq)]
pub enum VideoUri {
    Device(i32),
    Url(String),
    Pipeline(String),
    File { path: PathBuf, looping: bool },
}

impl std::fmt::Display for VideoUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VideoUri::Device(i) => write!(f, "/dev/video{i}"),
            VideoUri::Url(u) => write!(f, "{u}"),
            VideoUri::Pipeline(p) => write!(f, "gstreamer `{p}`"),
            VideoUri::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// Requested capture settings; the backend may ignore any of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureSettings {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    pub exposure: Option<f64>,
}

/// When frames are delivered.
pub enum Delivery {
    /// Every frame, at most one per interval (zero: all).
    FreeRun { every: Duration },
    /// One frame per trigger taken from this queue.
    Trigger(Receiver<Trigger>),
}

/// One OpenCV camera.
pub struct VideoCamera {
    pub camera_id: String,
    pub uri: VideoUri,
    pub settings: CaptureSettings,
    pub delivery: Delivery,
    pub stall_timeout: Duration,
    pub backoff: Backoff,
    pub health: Arc<CameraHealth>,
}

/// Why a read loop ended.
enum Outcome {
    Stopped,
    /// A file without looping reached its end.
    Ended,
    /// A file with looping reached its end: reopen at once.
    Rewind,
    Failed(String),
}

fn cv(e: opencv::Error) -> String {
    e.message
}

/// Converts a BGR, BGRA or grayscale 8-bit frame to RGB.
pub fn to_rgb(mat: &Mat) -> Result<RgbImage, String> {
    let (w, h) = (mat.cols(), mat.rows());
    if w <= 0 || h <= 0 {
        return Err("empty frame".into());
    }
    let code = match mat.channels() {
        1 => imgproc::COLOR_GRAY2RGB,
        3 => imgproc::COLOR_BGR2RGB,
        4 => imgproc::COLOR_BGRA2RGB,
        n => return Err(format!("frame with {n} channels")),
    };
    if mat.depth() != opencv::core::CV_8U {
        return Err(format!("frame depth {} is not 8-bit", mat.depth()));
    }
    let mut rgb = Mat::default();
    imgproc::cvt_color(mat, &mut rgb, code, 0).map_err(cv)?;
    let bytes = rgb.data_bytes().map_err(cv)?;
    RgbImage::from_raw(w as u32, h as u32, bytes.to_vec())
        .ok_or_else(|| "frame buffer smaller than its size".into())
}

impl VideoCamera {
    fn open(&self) -> Result<videoio::VideoCapture, String> {
        let timeout = self.stall_timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut params = Vector::<i32>::new();
        for p in [
            videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
            timeout,
            videoio::CAP_PROP_READ_TIMEOUT_MSEC,
            timeout,
        ] {
            params.push(p);
        }
        let cap = match &self.uri {
            VideoUri::Device(i) => {
                videoio::VideoCapture::new_with_params(*i, videoio::CAP_ANY, &params)
            }
            VideoUri::Url(u) => {
                videoio::VideoCapture::from_file_with_params(u, videoio::CAP_ANY, &params)
            }
            VideoUri::Pipeline(p) => videoio::VideoCapture::from_file(p, videoio::CAP_GSTREAMER),
            VideoUri::File { path, .. } => {
                if !path.exists() {
                    return Err(format!("{} does not exist", path.display()));
                }
                videoio::VideoCapture::from_file(&path.to_string_lossy(), videoio::CAP_ANY)
            }
        };
        let mut cap = cap.map_err(cv)?;
        if !cap.is_opened().map_err(cv)? {
            return Err(format!("cannot open {}", self.uri));
        }
        let s = &self.settings;
        for (prop, value) in [
            (videoio::CAP_PROP_FRAME_WIDTH, s.width.map(f64::from)),
            (videoio::CAP_PROP_FRAME_HEIGHT, s.height.map(f64::from)),
            (videoio::CAP_PROP_FPS, s.fps),
            (videoio::CAP_PROP_EXPOSURE, s.exposure),
        ] {
            if let Some(v) = value {
                if !cap.set(prop, v).unwrap_or(false) {
                    tracing::warn!(camera = %self.camera_id, prop, value = v, "the capture backend ignored a setting");
                }
            }
        }
        Ok(cap)
    }

    /// Captures until `stop` is set or the receiver is gone. Runs on the
    /// calling thread; spawn it on its own.
    pub fn run(mut self, tx: Sender<Arrival>, stop: Arc<AtomicBool>) {
        let mut seq = 0u64;
        let mut opened_once = false;
        // A trigger taken from the queue but not yet answered survives a
        // rewind or a reconnect: the next fresh frame answers it.
        let mut pending: Option<Trigger> = None;
        while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
            if opened_once {
                self.health.reconnecting();
            }
            let outcome = match self.open() {
                Ok(cap) => {
                    opened_once = true;
                    let mut waiting = None;
                    let outcome =
                        self.read_loop(cap, &tx, &stop, &mut seq, &mut waiting, &mut pending);
                    if waiting.is_some() {
                        // The newest free-run frame never found queue space.
                        self.health.dropped();
                    }
                    outcome
                }
                Err(reason) => Outcome::Failed(reason),
            };
            match outcome {
                Outcome::Stopped => return,
                Outcome::Ended => {
                    self.health.ended();
                    return;
                }
                Outcome::Rewind => continue,
                Outcome::Failed(reason) => {
                    let wait = self.backoff.next_wait();
                    self.health.down(&reason, wait);
                    sleep_unless_stopped(wait, &stop);
                }
            }
        }
    }

    fn read_loop(
        &mut self,
        mut cap: videoio::VideoCapture,
        tx: &Sender<Arrival>,
        stop: &AtomicBool,
        seq: &mut u64,
        waiting: &mut Option<Arrival>,
        pending: &mut Option<Trigger>,
    ) -> Outcome {
        let mut mat = Mat::default();
        let mut last_delivered: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) || tx.is_closed() {
                return Outcome::Stopped;
            }
            // A free-run frame that found the queue full goes first.
            if let Some(a) = waiting.take() {
                match tx.try_send(a) {
                    Ok(()) => {}
                    Err(TrySendError::Full(a)) => *waiting = Some(a),
                    Err(TrySendError::Closed(_)) => return Outcome::Stopped,
                }
            }
            let started = Instant::now();
            let got = cap.read(&mut mat);
            let took = started.elapsed();
            match got {
                Ok(true) if !mat.empty() => {}
                Ok(_) => {
                    return match &self.uri {
                        VideoUri::File { looping: true, .. } => Outcome::Rewind,
                        VideoUri::File { looping: false, .. } => Outcome::Ended,
                        _ => Outcome::Failed(format!("no frame from {}", self.uri)),
                    };
                }
                Err(e) => return Outcome::Failed(format!("reading {}: {}", self.uri, cv(e))),
            }
            if took > self.stall_timeout {
                return Outcome::Failed(format!(
                    "no frame for {} ms (stall timeout {} ms)",
                    took.as_millis(),
                    self.stall_timeout.as_millis()
                ));
            }
            self.health.frame();
            self.backoff.reset();
            let captured_at = SystemTime::now();
            match &self.delivery {
                Delivery::FreeRun { every } => {
                    if last_delivered.is_some_and(|t| t.elapsed() < *every) {
                        continue;
                    }
                    let Some(a) = self.arrival(&mat, *seq, captured_at, None) else {
                        continue;
                    };
                    last_delivered = Some(Instant::now());
                    *seq += 1;
                    match tx.try_send(a) {
                        Ok(()) => {}
                        Err(TrySendError::Full(a)) => {
                            if waiting.replace(a).is_some() {
                                self.health.dropped();
                            }
                        }
                        Err(TrySendError::Closed(_)) => return Outcome::Stopped,
                    }
                }
                Delivery::Trigger(triggers) => {
                    // Every trigger that arrived before this frame's capture
                    // began is answered by it.
                    loop {
                        if pending.is_none() {
                            *pending = triggers.try_recv().ok();
                        }
                        let Some(t) = pending.take_if(|t| t.at <= started) else {
                            break;
                        };
                        let Some(a) = self.arrival(&mat, *seq, captured_at, Some(t)) else {
                            break;
                        };
                        *seq += 1;
                        if tx.blocking_send(a).is_err() {
                            return Outcome::Stopped;
                        }
                    }
                }
            }
        }
    }

    fn arrival(
        &self,
        mat: &Mat,
        seq: u64,
        captured_at: SystemTime,
        trigger: Option<Trigger>,
    ) -> Option<Arrival> {
        let image = match to_rgb(mat) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(camera = %self.camera_id, error = %e, "frame not convertible; skipped");
                self.health.dropped();
                return None;
            }
        };
        let encoded = crate::decode::encode_png(&image);
        let (part_id, trigger_id) = match trigger {
            Some(t) => (t.part_id, Some(t.trigger_id)),
            None => (None, None),
        };
        let name = format!("{}-{seq:08}", self.camera_id);
        Some(Arrival::Frame {
            frame: Frame {
                camera_id: self.camera_id.clone(),
                seq,
                captured_at,
                part_id,
                trigger_id,
                image: Arc::new(image),
                encoded: Arc::new(encoded),
                format: "png",
                truth: None,
                held: Default::default(),
            },
            origin: Origin::named(name),
        })
    }
}

fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) {
    let until = Instant::now() + wait;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
}
