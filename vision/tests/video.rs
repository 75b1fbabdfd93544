//! OpenCV camera sources against real video: a file written here with
//! OpenCV's own writer (no binary fixtures), played free-running, answered
//! per trigger, and taken away and restored while the camera runs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opencv::core::{Mat, Scalar, Size, CV_8UC3};
use opencv::prelude::*;
use opencv::videoio::VideoWriter;
use tokio::sync::mpsc;
use vision::sources::health::{Backoff, CameraEvent, CameraHealth};
use vision::sources::trigger;
use vision::sources::video::{CaptureSettings, Delivery, VideoCamera, VideoUri};
use vision::sources::Arrival;

/// Writes `frames` solid frames whose blue channel counts 0, 10, 20, ...
fn write_video(path: &Path, frames: usize) {
    let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
    let mut w = VideoWriter::new(
        &path.to_string_lossy(),
        fourcc,
        25.0,
        Size::new(64, 48),
        true,
    )
    .unwrap();
    assert!(w.is_opened().unwrap(), "OpenCV cannot write MJPG AVI here");
    for i in 0..frames {
        let m = Mat::new_rows_cols_with_default(
            48,
            64,
            CV_8UC3,
            Scalar::new((i * 10) as f64, 128.0, 30.0, 0.0),
        )
        .unwrap();
        w.write(&m).unwrap();
    }
    w.release().unwrap();
}

fn camera(
    uri: VideoUri,
    delivery: Delivery,
    events: mpsc::UnboundedSender<CameraEvent>,
) -> (VideoCamera, Arc<CameraHealth>) {
    let health = CameraHealth::new("cam", Some(events));
    (
        VideoCamera {
            camera_id: "cam".into(),
            uri,
            settings: CaptureSettings::default(),
            delivery,
            stall_timeout: Duration::from_secs(2),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(400)),
            health: health.clone(),
        },
        health,
    )
}

fn frame_of(a: Arrival) -> vision::Frame {
    match a {
        Arrival::Frame { frame, .. } => frame,
        Arrival::Rejected { error, .. } => panic!("rejected: {error}"),
        Arrival::Skipped { reason, .. } => panic!("skipped: {reason}"),
    }
}

#[test]
fn a_video_file_plays_through_in_order_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("line.avi");
    write_video(&file, 12);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (cam, health) = camera(
        VideoUri::File {
            path: file,
            looping: false,
        },
        Delivery::FreeRun {
            every: Duration::ZERO,
        },
        etx,
    );
    let (tx, mut rx) = mpsc::channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    let t = std::thread::spawn(move || cam.run(tx, stop));
    let mut frames = Vec::new();
    while let Some(a) = rx.blocking_recv() {
        frames.push(frame_of(a));
    }
    t.join().unwrap();
    assert_eq!(frames.len(), 12);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.seq, i as u64);
        assert_eq!(f.image.dimensions(), (64, 48));
        // BGR blue written as i*10 arrives as RGB's third channel (MJPG is lossy).
        let b = f.image.get_pixel(32, 24)[2] as i32;
        assert!((b - (i as i32) * 10).abs() <= 6, "frame {i}: blue {b}");
        assert_eq!(
            vision::decode::decode(&f.encoded).unwrap().0.as_raw(),
            f.image.as_raw()
        );
    }
    assert_eq!(health.snapshot().frames, 12);
    let events: Vec<_> = std::iter::from_fn(|| erx.try_recv().ok()).collect();
    assert_eq!(
        events.last(),
        Some(&CameraEvent::Ended {
            camera_id: "cam".into()
        })
    );
}

#[test]
fn under_overload_free_run_keeps_the_newest_frame_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("line.avi");
    write_video(&file, 20);
    let (etx, _erx) = mpsc::unbounded_channel();
    let (cam, health) = camera(
        VideoUri::File {
            path: file,
            looping: false,
        },
        Delivery::FreeRun {
            every: Duration::ZERO,
        },
        etx,
    );
    // A queue of one that nobody reads until the file is done.
    let (tx, mut rx) = mpsc::channel(1);
    let stop = Arc::new(AtomicBool::new(false));
    let t = std::thread::spawn(move || cam.run(tx, stop));
    t.join().unwrap();
    let first = frame_of(rx.blocking_recv().unwrap());
    assert_eq!(first.seq, 0);
    assert!(rx.blocking_recv().is_none());
    let s = health.snapshot();
    assert_eq!(s.frames, 20);
    // Frame 0 was queued; frames 2..19 each replaced the one waiting, and the
    // last waiting frame (19) never found space before the file ended.
    assert_eq!(s.dropped, 19);
}

#[test]
fn each_trigger_gets_a_frame_captured_after_it_with_its_part_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("line.avi");
    write_video(&file, 25);
    let (etx, _erx) = mpsc::unbounded_channel();
    let (triggers, trigger_rx) = trigger::queue("cam", 4);
    let (cam, _health) = camera(
        VideoUri::File {
            path: file,
            looping: true,
        },
        Delivery::Trigger(trigger_rx),
        etx,
    );
    let (tx, mut rx) = mpsc::channel(8);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || cam.run(tx, stop2));
    // The stream runs; nothing is delivered without a trigger.
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "a frame arrived without a trigger");
    let mut got = Vec::new();
    for i in 0..3 {
        triggers
            .fire(Some(format!("part-{i}")), format!("t-{i}"))
            .unwrap();
        let f = frame_of(rx.blocking_recv().unwrap());
        got.push((f.part_id.unwrap(), f.trigger_id.unwrap()));
    }
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(
        got,
        [
            ("part-0".to_string(), "t-0".to_string()),
            ("part-1".into(), "t-1".into()),
            ("part-2".into(), "t-2".into())
        ]
    );
}

#[test]
fn a_camera_that_disappears_is_reported_down_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("line.avi");
    let hidden = dir.path().join("unplugged.avi");
    write_video(&file, 5);
    let (etx, mut erx) = mpsc::unbounded_channel();
    let (cam, health) = camera(
        VideoUri::File {
            path: file.clone(),
            looping: true,
        },
        Delivery::FreeRun {
            every: Duration::ZERO,
        },
        etx,
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || cam.run(tx, stop2));
    let next_event = |erx: &mut mpsc::UnboundedReceiver<CameraEvent>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(e) = erx.try_recv() {
                return e;
            }
            assert!(Instant::now() < deadline, "no camera event within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert!(matches!(next_event(&mut erx), CameraEvent::Up { .. }));
    // Unplug: the file goes away; the next reopen fails.
    std::fs::rename(&file, &hidden).unwrap();
    match next_event(&mut erx) {
        CameraEvent::Down { reason, .. } => {
            // The file vanishes either before the existence check or
            // between it and OpenCV's open.
            assert!(
                reason.contains("does not exist") || reason.contains("cannot open"),
                "{reason}"
            )
        }
        e => panic!("expected down, got {e:?}"),
    }
    std::thread::sleep(Duration::from_millis(600));
    let frames_while_down = health.snapshot().frames;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(health.snapshot().frames, frames_while_down);
    assert!(!health.snapshot().up);
    // Plug it back in: reopened by the backoff loop, frames flow again.
    std::fs::rename(&hidden, &file).unwrap();
    // Each failed retry while unplugged reported Down; those may still be
    // queued ahead of the Up.
    let up = loop {
        match next_event(&mut erx) {
            CameraEvent::Down { .. } => continue,
            e => break e,
        }
    };
    match up {
        CameraEvent::Up { reconnects, .. } => assert!(reconnects >= 2, "{reconnects}"),
        e => panic!("expected up, got {e:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while health.snapshot().frames <= frames_while_down {
        assert!(
            Instant::now() < deadline,
            "no frames after the camera came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    while rx.try_recv().is_ok() {}
}
