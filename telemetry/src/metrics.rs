//! The appliance's own measurements, for `/metrics` (Prometheus text format)
//! and the health endpoints: counters, gauges and histograms kept in atomics
//! so that recording costs a few nanoseconds on the hot path, and rendered
//! only when scraped. Names follow Prometheus conventions (`*_total`,
//! `*_seconds`, `*_bytes`); labels are bounded (stage, decision, configured
//! camera ids, the current model and recipe).
//!
//! One station runs per process, so the registry is process-wide. It is
//! written only through [`crate::Event`]s; reading is open to all.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A histogram with fixed bucket bounds.
pub struct Histogram {
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

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Seconds: 5 ms to 10 s, around the 1.2 s response budget.
const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.2, 2.0, 5.0, 10.0,
];
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

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

const STAGES: [&str; 4] = ["queued", "inference", "decided", "published"];

/// What the current model and standard are (info metrics).
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub recipe: String,
    pub standard_sha256: String,
}

pub struct Registry {
    stage: [Histogram; 4],
    batch: Histogram,
    verdicts: [AtomicU64; 3],
    rejected: AtomicU64,
    /// Frames (and unreadable files) that reached the pipeline, by camera.
    frames: Mutex<std::collections::BTreeMap<String, u64>>,
    in_engine: AtomicI64,
    mqtt_connected: AtomicBool,
    info: Mutex<Option<Info>>,
    reloads: AtomicU64,
    batches: AtomicU64,
    batched_frames: AtomicU64,
    busy_nanos: AtomicU64,
}

fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(|| Registry {
        stage: [
            Histogram::new(SECONDS),
            Histogram::new(SECONDS),
            Histogram::new(SECONDS),
            Histogram::new(SECONDS),
        ],
        batch: Histogram::new(BATCH),
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

/// Label value escaping per the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
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

/// The text exposition: the registry plus what is read at scrape time.
pub fn render(cameras: &[CameraState], outbox_pending: Option<i64>) -> String {
    let mut out = String::with_capacity(8 << 10);
    render_pipeline(&mut out);
    render_cameras(&mut out, cameras);
    render_delivery(&mut out, outbox_pending);
    render_info(&mut out);
    render_process(&mut out);
    render_health(&mut out);
    render_gpus(&mut out, &crate::gpu::snapshot());
    out
}

/// Frames through the stages, batches, verdicts, rejections, the queue and the engine.
fn render_pipeline(out: &mut String) {
    let r = registry();
    head(out, "appliance_stage_seconds", "histogram", "Time from capture to each stage of a frame: queued, inference, decided (stored), published (handed to the broker).");
    for (i, name) in STAGES.iter().enumerate() {
        r.stage[i].render(out, "appliance_stage_seconds", &format!("stage=\"{name}\""));
    }
    head(
        out,
        "appliance_batch_size",
        "histogram",
        "Frames per inference batch.",
    );
    let w = engine();
    r.batch.render(out, "appliance_batch_size", "");
    head(
        out,
        "appliance_verdicts_total",
        "counter",
        "Verdicts decided, by decision.",
    );
    for (i, d) in record::Decision::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "appliance_verdicts_total{{decision=\"{d}\"}} {}",
            r.verdicts[i].load(Ordering::Relaxed)
        );
    }
    head(
        out,
        "appliance_rejected_frames_total",
        "counter",
        "Frames or files that could not be judged (kept as ingest errors).",
    );
    let _ = writeln!(
        out,
        "appliance_rejected_frames_total {}",
        r.rejected.load(Ordering::Relaxed)
    );
    head(
        out,
        "appliance_queue_depth",
        "gauge",
        "Frames accepted and not yet judged (waiting for or in the engine).",
    );
    let _ = writeln!(
        out,
        "appliance_queue_depth {}",
        r.in_engine.load(Ordering::Relaxed).max(0)
    );
    head(
        out,
        "appliance_engine_busy_seconds_total",
        "counter",
        "Time the inference engine spent running batches.",
    );
    let _ = writeln!(
        out,
        "appliance_engine_busy_seconds_total {}",
        w.busy.as_secs_f64()
    );
    head(
        out,
        "appliance_frames_total",
        "counter",
        "Frames (and unreadable files) that reached the pipeline, by camera.",
    );
    for (camera, n) in registry().frames.lock().expect("frames lock").iter() {
        let _ = writeln!(
            out,
            "appliance_frames_total{{camera=\"{}\"}} {n}",
            label(camera)
        );
    }
}

/// Per camera: frames dropped, up or down, reconnects.
fn render_cameras(out: &mut String, cameras: &[CameraState]) {
    head(
        out,
        "appliance_camera_dropped_frames_total",
        "counter",
        "Frames a camera dropped (pipeline full, stale frames).",
    );
    for c in cameras {
        let _ = writeln!(
            out,
            "appliance_camera_dropped_frames_total{{camera=\"{}\"}} {}",
            label(&c.camera),
            c.dropped
        );
    }
    head(
        out,
        "appliance_camera_up",
        "gauge",
        "1 when the camera delivers frames, 0 when it is down.",
    );
    for c in cameras {
        let _ = writeln!(
            out,
            "appliance_camera_up{{camera=\"{}\"}} {}",
            label(&c.camera),
            u8::from(c.up)
        );
    }
    head(
        out,
        "appliance_camera_reconnects_total",
        "counter",
        "Times a camera was reopened.",
    );
    for c in cameras {
        let _ = writeln!(
            out,
            "appliance_camera_reconnects_total{{camera=\"{}\"}} {}",
            label(&c.camera),
            c.reconnects
        );
    }
}

/// The outbox backlog (when the store answered) and the broker connection.
fn render_delivery(out: &mut String, outbox_pending: Option<i64>) {
    if let Some(p) = outbox_pending {
        head(
            out,
            "appliance_outbox_pending",
            "gauge",
            "Messages committed and not yet acknowledged by the broker.",
        );
        let _ = writeln!(out, "appliance_outbox_pending {p}");
    }
    head(
        out,
        "appliance_mqtt_connected",
        "gauge",
        "1 while connected to the broker.",
    );
    let _ = writeln!(
        out,
        "appliance_mqtt_connected {}",
        u8::from(is_mqtt_connected())
    );
}

/// The model and standard in use, as info metrics.
fn render_info(out: &mut String) {
    if let Some(i) = info() {
        head(
            out,
            "appliance_model_info",
            "gauge",
            "The model in use (value always 1).",
        );
        let _ = writeln!(
            out,
            "appliance_model_info{{name=\"{}\",version=\"{}\",sha256=\"{}\"}} 1",
            label(&i.model_name),
            label(&i.model_version),
            label(&i.model_sha256)
        );
        head(
            out,
            "appliance_standard_info",
            "gauge",
            "The active recipe and its standard (value always 1).",
        );
        let _ = writeln!(
            out,
            "appliance_standard_info{{recipe=\"{}\",sha256=\"{}\"}} 1",
            label(&i.recipe),
            label(&i.standard_sha256)
        );
    }
}

/// Resident memory and CPU time of the process.
fn render_process(out: &mut String) {
    let (rss, cpu) = process();
    head(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the appliance process.",
    );
    let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    head(
        out,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time of the appliance process.",
    );
    let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
}

/// GPU utilisation and memory, where a GPU is present.
fn render_gpus(out: &mut String, gpus: &[crate::gpu::Gpu]) {
    if gpus.is_empty() {
        return;
    }
    type Value = fn(&crate::gpu::Gpu) -> String;
    let families: [(&str, &str, Value); 3] = [
        (
            "appliance_gpu_utilization_ratio",
            "Share of time the GPU was busy over the driver's last sample period (nvidia-smi).",
            |g| g.utilization.to_string(),
        ),
        (
            "appliance_gpu_memory_used_bytes",
            "GPU memory in use (all processes).",
            |g| g.memory_used_bytes.to_string(),
        ),
        (
            "appliance_gpu_memory_total_bytes",
            "GPU memory in all.",
            |g| g.memory_total_bytes.to_string(),
        ),
    ];
    for (name, help, value) in families {
        head(out, name, "gauge", help);
        for g in gpus {
            let _ = writeln!(
                out,
                "{name}{{gpu=\"{}\",name=\"{}\"}} {}",
                g.index,
                label(&g.name),
                value(g)
            );
        }
    }
}

/// The health figures as the monitor last computed them, their thresholds,
/// the healer's state and its reloads.
fn render_health(out: &mut String) {
    let Some(h) = crate::health::snapshot() else {
        return;
    };
    head(out, "appliance_health_value", "gauge", "Health figures: p99 capture-to-publish seconds (latency), share of verdicts with context loss, output consistency (absent while the window is empty).");
    for f in &h.figures {
        if let Some(v) = f.value {
            let _ = writeln!(
                out,
                "appliance_health_value{{figure=\"{}\"}} {v}",
                f.name.as_str()
            );
        }
    }
    head(
        out,
        "appliance_health_threshold",
        "gauge",
        "Thresholds of the health figures.",
    );
    for f in &h.figures {
        let _ = writeln!(
            out,
            "appliance_health_threshold{{figure=\"{}\"}} {}",
            f.name.as_str(),
            f.threshold
        );
    }
    head(
        out,
        "appliance_health_breached",
        "gauge",
        "1 while a figure is beyond its threshold.",
    );
    for f in &h.figures {
        let b = (f.standing == crate::health::Standing::Breached) as u8;
        let _ = writeln!(
            out,
            "appliance_health_breached{{figure=\"{}\"}} {b}",
            f.name.as_str()
        );
    }
    head(
        out,
        "appliance_health_state",
        "gauge",
        "Self-healing state: 1 for the current one of healthy, alert, escalated.",
    );
    for mode in crate::health::Mode::ALL {
        let _ = writeln!(
            out,
            "appliance_health_state{{state=\"{}\"}} {}",
            mode.as_str(),
            (h.state == mode) as u8
        );
    }
    head(
        out,
        "appliance_model_reloads_total",
        "counter",
        "Model reloads started by self-healing.",
    );
    let _ = writeln!(
        out,
        "appliance_model_reloads_total {}",
        registry().reloads.load(Ordering::Relaxed)
    );
}

/// Self-healing started a model reload.
pub(crate) fn reload_started() {
    registry().reloads.fetch_add(1, Ordering::Relaxed);
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
    fn gpus_render_as_three_gauge_families() {
        let gpus = crate::gpu::parse("0, NVIDIA H200, 37, 20480, 143771\n");
        let mut out = String::new();
        render_gpus(&mut out, &gpus);
        assert!(out.contains("# TYPE appliance_gpu_utilization_ratio gauge"));
        assert!(
            out.contains("appliance_gpu_utilization_ratio{gpu=\"0\",name=\"NVIDIA H200\"} 0.37\n")
        );
        assert!(out.contains(
            "appliance_gpu_memory_used_bytes{gpu=\"0\",name=\"NVIDIA H200\"} 21474836480\n"
        ));
        assert!(out.contains(
            "appliance_gpu_memory_total_bytes{gpu=\"0\",name=\"NVIDIA H200\"} 150754820096\n"
        ));
        let mut none = String::new();
        render_gpus(&mut none, &[]);
        assert!(none.is_empty(), "nothing without a GPU");
    }

    #[test]
    fn a_histogram_is_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "stage=\"a\"");
        assert_eq!(
            out,
            "x_seconds_bucket{stage=\"a\",le=\"0.1\"} 1\nx_seconds_bucket{stage=\"a\",le=\"1\"} 3\nx_seconds_bucket{stage=\"a\",le=\"+Inf\"} 4\nx_seconds_sum{stage=\"a\"} 4.25\nx_seconds_count{stage=\"a\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
