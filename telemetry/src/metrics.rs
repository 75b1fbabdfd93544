//! The appliance's own measurements, for `/metrics` (Prometheus text format)
//! and the health endpoints: counters, gauges and histograms kept in atomics
//! so that recording costs a few nanoseconds on the hot path, and rendered
//! only when scraped. Names follow Prometheus conventions (`*_total`,
//! `*_seconds`, `*_bytes`); labels are bounded (stage, decision, configured
//! camera ids, the current model and recipe).
//!
//! One station runs per process, so the registry is process-wide. It is
//! written only through [`crate::Event`]s; reading is open to all. The
//! text a scrape gets is written by [`crate::exposition`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A histogram with fixed bucket bounds.
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations in micro-units (µs for seconds).
    sum_micro: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Sum, count and the count in each bucket (not cumulative; the last
    /// bound is `f64::MAX`, the exposition's `+Inf`).
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }
}

/// Seconds: 5 ms to 10 s, around the 1.2 s response budget.
const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.2, 2.0, 5.0, 10.0,
];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
/// Seconds of a store commit: 0.5 ms (a local SQLite file) to 1 s (a
/// shared PostgreSQL under load).
const COMMIT: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Stages of a frame, each timed from its capture.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// Accepted by the pipeline, waiting for the engine.
    Queued = 0,
    /// The engine returned its judgement.
    Inference = 1,
    /// The verdict is committed to the store.
    Decided = 2,
    /// The verdict was handed to the broker.
    Published = 3,
}

pub(crate) const STAGES: [&str; 4] = ["queued", "inference", "decided", "published"];

/// What the current model and standard are (info metrics).
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub recipe: String,
    pub standard_sha256: String,
}

pub(crate) struct Registry {
    pub(crate) stage: [Histogram; 4],
    pub(crate) batch: Histogram,
    /// How long each verdict's commit took.
    pub(crate) commit: Histogram,
    pub(crate) verdicts: [AtomicU64; 3],
    pub(crate) rejected: AtomicU64,
    /// Frames (and unreadable files) that reached the pipeline, by camera.
    pub(crate) frames: Mutex<std::collections::BTreeMap<String, u64>>,
    pub(crate) in_engine: AtomicI64,
    pub(crate) mqtt_connected: AtomicBool,
    pub(crate) info: Mutex<Option<Info>>,
    pub(crate) reloads: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batched_frames: AtomicU64,
    pub(crate) busy_nanos: AtomicU64,
}

pub(crate) fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(|| Registry {
        stage: [
            Histogram::new(SECONDS),
            Histogram::new(SECONDS),
            Histogram::new(SECONDS),
            Histogram::new(SECONDS),
        ],
        batch: Histogram::new(BATCH),
        commit: Histogram::new(COMMIT),
        verdicts: Default::default(),
        rejected: AtomicU64::new(0),
        frames: Default::default(),
        in_engine: AtomicI64::new(0),
        mqtt_connected: AtomicBool::new(false),
        info: Mutex::new(None),
        reloads: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        batched_frames: AtomicU64::new(0),
        busy_nanos: AtomicU64::new(0),
    })
}

/// Records that a frame captured at `captured` reached `stage` now.
pub(crate) fn stage(stage: Stage, captured: SystemTime) {
    let s = SystemTime::now()
        .duration_since(captured)
        .unwrap_or_default()
        .as_secs_f64();
    registry().stage[stage as usize].observe(s);
}

/// A verdict's commit took `took`.
pub(crate) fn commit(took: Duration) {
    registry().commit.observe(took.as_secs_f64());
}

/// A frame entered (+1) or left (-1) the engine's queue.
pub(crate) fn in_engine(delta: i64) {
    registry().in_engine.fetch_add(delta, Ordering::Relaxed);
}

pub(crate) fn batch(frames: usize, busy: Duration) {
    let r = registry();
    r.batch.observe(frames as f64);
    r.batches.fetch_add(1, Ordering::Relaxed);
    r.batched_frames.fetch_add(frames as u64, Ordering::Relaxed);
    r.busy_nanos
        .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
}

/// What the engine has done so far in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineCounts {
    pub batches: u64,
    pub frames: u64,
    /// Time spent inside the engine.
    pub busy: Duration,
}

pub fn engine() -> EngineCounts {
    let r = registry();
    EngineCounts {
        batches: r.batches.load(Ordering::Relaxed),
        frames: r.batched_frames.load(Ordering::Relaxed),
        busy: Duration::from_nanos(r.busy_nanos.load(Ordering::Relaxed)),
    }
}

pub(crate) fn verdict(decision: record::Decision) {
    registry().verdicts[decision.plc_code() as usize].fetch_add(1, Ordering::Relaxed);
}

/// A frame (or an unreadable file) from `camera` reached the pipeline.
pub(crate) fn frame_in(camera: &str) {
    let mut f = registry().frames.lock().expect("frames lock");
    match f.get_mut(camera) {
        Some(n) => *n += 1,
        None => {
            f.insert(camera.to_string(), 1);
        }
    }
}

/// A frame or file could not be judged (stored as an ingest error).
pub(crate) fn rejected() {
    registry().rejected.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn mqtt_connected(up: bool) {
    registry().mqtt_connected.store(up, Ordering::Relaxed);
}

pub fn is_mqtt_connected() -> bool {
    registry().mqtt_connected.load(Ordering::Relaxed)
}

/// The model and standard now in use.
pub(crate) fn set_info(info: Info) {
    *registry().info.lock().expect("info lock") = Some(info);
}

pub fn info() -> Option<Info> {
    registry().info.lock().expect("info lock").clone()
}

/// Resident memory and CPU time of this process, from /proc.
pub fn process() -> (u64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, in clock ticks of 1/100 s.
    (rss_kib * 1024, (ticks(11) + ticks(12)) / 100.0)
}

/// One camera as a scrape reports it (read from the camera sources at
/// scrape time).
#[derive(Debug, Clone, Default)]
pub struct CameraState {
    pub camera: String,
    pub up: bool,
    pub dropped: u64,
    pub reconnects: u64,
}

/// Self-healing started a model reload.
pub(crate) fn reload_started() {
    registry().reloads.fetch_add(1, Ordering::Relaxed);
}

/// Model reloads self-healing has started in this process.
pub fn reloads() -> u64 {
    registry().reloads.load(Ordering::Relaxed)
}

/// Cumulative stage-histogram counts and verdicts so far, for the panel's
/// history (differences between two snapshots give a period's figures).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub stages: [Vec<u64>; 4],
    pub verdicts: u64,
}

pub fn progress() -> Progress {
    let r = registry();
    Progress {
        stages: std::array::from_fn(|i| {
            r.stage[i]
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect()
        }),
        verdicts: r.verdicts.iter().map(|v| v.load(Ordering::Relaxed)).sum(),
    }
}

impl Progress {
    /// The `q` quantile of each stage's seconds between `earlier` and now,
    /// read as the upper bound of the bucket it falls in (capped at the
    /// largest bound); `None` for a stage with no frames in between.
    pub fn stage_quantiles(&self, earlier: &Progress, q: f64) -> [Option<f64>; 4] {
        std::array::from_fn(|i| {
            let now = &self.stages[i];
            let delta: Vec<u64> = now
                .iter()
                .enumerate()
                .map(|(b, n)| n - earlier.stages[i].get(b).copied().unwrap_or(0))
                .collect();
            let total: u64 = delta.iter().sum();
            if total == 0 {
                return None;
            }
            let rank = (q * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, n) in delta.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Some(
                        SECONDS
                            .get(b)
                            .copied()
                            .unwrap_or(SECONDS[SECONDS.len() - 1]),
                    );
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_bucket_with_sum_and_count() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!((sum, count), (4.25, 4));
        assert_eq!(buckets, vec![(0.1, 1), (1.0, 2), (f64::MAX, 1)]);
    }
}
