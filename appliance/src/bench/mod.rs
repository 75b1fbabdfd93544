//! The whole-pipeline benchmark behind `appliance bench`.
//!
//! It measures what a line cares about, end to end on this machine: K
//! cameras deliver N encoded synthetic frames (PNG, decoded on the camera's
//! thread as a real source does) into the station pipeline, which batches
//! them across cameras, judges them, commits verdict and outbox to SQLite and
//! publishes to a real MQTT broker. Latency runs from a frame's arrival to the
//! broker's acknowledgement of its last message; throughput is parts per
//! second over the same span. With the hot-folder feed the station runs as
//! deployed instead: PNG files are renamed into the folders its own cameras
//! watch, and latency runs from each rename to the result an MQTT
//! subscriber hears. Parts start only once the station is online. Beside it, the model's own compute is measured:
//! the four graphs back to back in a tight loop at the same batch size, on the
//! same images, with nothing else running, half the rounds before the
//! pipeline runs and half after. Their ratio is the pipeline's overhead.

mod feed;
mod mqtt;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use firmware_config::{AfterJudged, BrokerMode, Camera, CameraSource, StationConfig};
use fusion::{Request, Standard};
use serde::Serialize;
use synth::SynthLine;
use tokio::sync::{mpsc, watch};
use vision::preprocess::{self, Crop};
use vision::sources::Arrival;

use crate::pipeline;
use feed::Pace;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Frames in all (ignored when `duration` is set).
    pub frames: usize,
    pub cameras: usize,
    /// Arrivals per second over all cameras; `None` sends as fast as the
    /// pipeline takes them (maximum throughput).
    pub rate: Option<f64>,
    /// Keep sending until this much time has passed (soak run).
    pub duration: Option<Duration>,
    /// Distinct synthetic parts, cycled.
    pub distinct: usize,
    /// Tight-loop repetitions of the model's own compute.
    pub compute_rounds: usize,
    /// Write the frame set and the standard here (for `bench/baseline.py`).
    pub export: Option<PathBuf>,
    /// Run this package as a candidate in shadow mode beside the running
    /// model for the whole run (started over MQTT, `cmd/shadow`), to
    /// measure what the candidate costs the line.
    pub shadow: Option<PathBuf>,
    pub feed: Feed,
}

/// How frames reach the station (the feeders are in `bench/feed.rs`).
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    /// Straight into the pipeline's queue, decoded by the bench's camera
    /// threads.
    Direct,
    /// Renamed into hot folders the station's own cameras watch.
    HotFolder { poll: Duration },
}

impl std::fmt::Display for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Feed::Direct => f.write_str("direct"),
            Feed::HotFolder { poll } => write!(f, "hot folder (poll {} ms)", poll.as_millis()),
        }
    }
}

/// What the candidate did in a shadow-mode run.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowFigures {
    pub candidate: String,
    /// Frames the candidate judged (the rest were skipped: it had no room).
    pub judged: i64,
    pub skipped: i64,
    /// Share of judged frames decided as the running model decided.
    pub agreement: Option<f64>,
}

/// Figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub precision: String,
    /// How frames reached the station ([`Feed`]).
    pub feed: String,
    /// What a part's latency runs from and to.
    pub latency_from: &'static str,
    /// Inference workers and ONNX Runtime threads each (0: its default).
    pub workers: usize,
    pub intra_threads: usize,
    pub max_batch: usize,
    pub max_wait_ms: f64,
    pub cameras: usize,
    pub frames: usize,
    pub offered_rate: Option<f64>,
    pub wall_s: f64,
    pub throughput_parts_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Mean frames per engine batch.
    pub mean_batch: f64,
    /// Share of the run the engine was judging (1.0: never waiting for frames).
    pub engine_busy: f64,
    /// Model reloads self-healing started during the run: a machine slow
    /// enough to trip the health monitor's latency alert reloads the model
    /// mid-run, and the figures then include that reload.
    pub model_reloads: u64,
    /// Milliseconds of wall time per part through the whole pipeline.
    pub pipeline_ms_per_part: f64,
    /// Milliseconds per part of the model alone at `max_batch` (median round).
    pub compute_ms_per_part: f64,
    /// `pipeline_ms_per_part / compute_ms_per_part`.
    pub overhead_ratio: f64,
    /// CPU time of the process over the pipeline run, in cores (1.0 = one core busy).
    pub cpu_cores_used: f64,
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    pub rss_peak_mib: f64,
    /// RSS sampled once a second during the run (MiB).
    pub rss_samples_mib: Vec<f64>,
    /// Hot folder: from a file's rename to its detection (`captured_at`).
    pub folder_wait: Option<FolderWait>,
    /// With `--shadow`: the candidate's figures.
    pub shadow: Option<ShadowFigures>,
}

/// How long renamed files waited in their folder before a camera took them.
#[derive(Debug, Clone, Serialize)]
pub struct FolderWait {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Renders `distinct` synthetic parts as PNG bytes.
fn frame_set(distinct: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut line = SynthLine::new(seed);
    (0..distinct.max(1))
        .map(|_| {
            let part = line.next_part();
            let mut png = Vec::new();
            part.image
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .expect("in-memory PNG");
            png
        })
        .collect()
}

/// Resident set size now and at its peak, from /proc (MiB).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) this process has used, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here indices 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// The model's own compute, in the station's engine structure: each of
/// `model.workers` engines judges `max_batch` images at a time, back to
/// back, all at once on their own threads. Returns each batch's time over
/// the parts all workers judge in it, in milliseconds per part (the bench
/// takes the median of the rounds run before and after the pipeline).
fn compute_ms_per_part(
    cfg: &StationConfig,
    frames: &[Vec<u8>],
    standard: &Standard,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let workers = cfg.model.workers.max(1);
    let mut engines = (0..workers)
        .map(|_| pipeline::load_engine(cfg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = engines[0].input_spec();
    let batch = cfg.batching.max_batch.max(1);
    let tensors: Vec<Vec<f32>> = frames
        .iter()
        .map(|png| {
            let (img, _) = vision::decode::decode(png).expect("bench frames decode");
            preprocess::to_tensor(&img, Crop::full(&img), &spec)
        })
        .collect();
    for engine in &mut engines {
        engine.warm_up(&[standard], batch)?;
    }
    let tensors = &tensors;
    let times = std::thread::scope(|scope| {
        let running: Vec<_> = engines
            .iter_mut()
            .enumerate()
            .map(|(w, engine)| {
                scope.spawn(move || -> anyhow::Result<Vec<f64>> {
                    let mut ms = Vec::with_capacity(rounds);
                    for round in 0..rounds.max(1) {
                        let requests: Vec<Request> = (0..batch)
                            .map(|i| Request {
                                image: &tensors[(w * 7 + round * batch + i) % tensors.len()],
                                standard,
                                mm_per_input_px: None,
                                known: None,
                            })
                            .collect();
                        let t = Instant::now();
                        engine.judge_batch(&requests)?;
                        ms.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok(ms)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("a compute thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let parts = (batch * workers) as f64;
    Ok(times.into_iter().flatten().map(|ms| ms / parts).collect())
}

fn export(dir: &Path, frames: &[Vec<u8>], standard: &Standard) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("frames"))?;
    for (i, png) in frames.iter().enumerate() {
        std::fs::write(dir.join("frames").join(format!("{i:04}.png")), png)?;
    }
    std::fs::write(dir.join("standard.txt"), &standard.text)?;
    Ok(())
}

fn parse_time(s: &str) -> anyhow::Result<SystemTime> {
    Ok(chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("timestamp {s:?}"))?
        .into())
}

/// The bench's cameras: synthetic ones (their frames are fed directly, so
/// only their ids matter) or hot folders under `work`.
fn cameras(feed: Feed, count: usize, work: &Path) -> anyhow::Result<Vec<Camera>> {
    (1..=count.max(1))
        .map(|i| {
            let id = format!("cam-{i}");
            let source = match feed {
                Feed::Direct => CameraSource::Synthetic {
                    seed: i as u64,
                    interval: Duration::from_secs(1),
                    replay: 0,
                },
                Feed::HotFolder { poll } => {
                    let path = work.join("incoming").join(&id);
                    std::fs::create_dir_all(&path)?;
                    CameraSource::HotFolder {
                        path,
                        after: AfterJudged::Delete,
                        poll,
                        settle: Duration::from_secs(2),
                    }
                }
            };
            Ok(Camera {
                id,
                mm_per_px: 0.1,
                roi: None,
                rotate: 0,
                flip: Default::default(),
                source,
            })
        })
        .collect()
}

/// Each part's latency (ms) and the span from the first part's start to
/// the last one's end, from (start, end) pairs.
fn latencies(pairs: &[(SystemTime, SystemTime)]) -> (Vec<f64>, Option<f64>) {
    let mut ms: Vec<f64> = pairs
        .iter()
        .map(|(start, end)| end.duration_since(*start).unwrap_or_default().as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let first = pairs.iter().map(|p| p.0).min();
    let last = pairs.iter().map(|p| p.1).max();
    let span = first
        .zip(last)
        .map(|(f, l)| l.duration_since(f).unwrap_or_default().as_secs_f64());
    (ms, span)
}

/// Direct feed: from each frame's arrival at the pipeline to the broker's
/// acknowledgement of its last message, as the station recorded them.
async fn acknowledged(store: &store::Store) -> anyhow::Result<Vec<(SystemTime, SystemTime)>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT v.captured_at, MAX(o.published_at)
           FROM verdicts v JOIN outbox o ON o.verdict_id = v.id
          GROUP BY v.id",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|(captured, published)| {
            let published = published
                .as_deref()
                .context("a verdict was never published")?;
            Ok((parse_time(captured)?, parse_time(published)?))
        })
        .collect()
}

/// Runs the benchmark with `cfg` (its cameras are replaced by the bench's).
pub async fn run(mut cfg: StationConfig, opts: BenchOptions) -> anyhow::Result<BenchReport> {
    let work = tempfile::tempdir()?;
    cfg.storage.database_url = format!("sqlite://{}", work.path().join("bench.db").display());
    cfg.storage.data_dir = work.path().join("data");
    cfg.http.bind = "127.0.0.1:0".parse().expect("literal address");
    if cfg.mqtt.broker == BrokerMode::Embedded {
        // The bench's own broker, on a free port: the configured one (the
        // demo's 1883) may belong to a broker already running here.
        cfg.mqtt.embedded_listen = ([127, 0, 0, 1], crate::bench_plant::free_port()?).into();
    }
    cfg.cameras = cameras(opts.feed, opts.cameras, work.path())?;
    let standard = pipeline::load_standard(&cfg, &cfg.station.recipe)?;
    let frames = Arc::new(frame_set(opts.distinct, 2024));
    if let Some(dir) = &opts.export {
        export(dir, &frames, &standard)?;
    }

    // Half the model-alone rounds run before the pipeline and half after,
    // so that the overhead ratio does not compare two moments minutes apart
    // on a machine whose speed moves (a shared host).
    let model_alone = |rounds: usize| {
        let (cfg, frames, standard) = (cfg.clone(), frames.clone(), standard.clone());
        tokio::task::spawn_blocking(move || compute_ms_per_part(&cfg, &frames, &standard, rounds))
    };
    let mut compute_rounds = model_alone(opts.compute_rounds.div_ceil(2)).await??;

    // The bench reads results through its own connection to the station's
    // database (SQLite in WAL mode allows it); opening it first also creates
    // the schema before the station starts.
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir).await?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    // Direct: the bench holds the queue the cameras would fill. Hot folder:
    // the station runs as deployed, its cameras started from the config.
    let (mut station, tx) = match opts.feed {
        Feed::Direct => {
            let (tx, rx) = mpsc::channel::<Arrival>(cfg.batching.queue_capacity);
            let station = tokio::spawn(pipeline::serve(
                cfg.clone(),
                rx,
                crate::cameras::CameraLinks::none(),
                shutdown,
                Arc::new(AtomicBool::new(false)),
                None,
            ));
            (station, Some(tx))
        }
        Feed::HotFolder { .. } => (
            tokio::spawn(pipeline::run(cfg.clone(), shutdown, None)),
            None,
        ),
    };
    // No part comes before the station has said it is online: its engines
    // are loaded and warm, as on a line at the start of a shift.
    // A station that stops first (its broker's port taken, a model that
    // does not load) says why, rather than leaving the bench to time out.
    let listener = tokio::select! {
        listener = mqtt::listen(&cfg) => listener?,
        ended = &mut station => {
            ended??;
            anyhow::bail!("the station stopped before it came online");
        }
    };
    if let Some(package) = &opts.shadow {
        mqtt::start_shadow(&cfg, package).await?;
    }
    let cameras = cfg.cameras.len();
    // Every camera's share, on one clock.
    let pace = Pace {
        count: opts
            .duration
            .is_none()
            .then_some(opts.frames.div_ceil(cameras)),
        until: opts.duration.map(|d| Instant::now() + d),
        interval: opts
            .rate
            .map(|r| Duration::from_secs_f64(cameras as f64 / r.max(1e-3))),
    };
    let before = telemetry::metrics::engine();
    let reloads_before = telemetry::metrics::reloads();
    let cpu0 = cpu_seconds();
    let (rss_start, _) = rss_mib();
    let started = Instant::now();
    type Renamed = Vec<(String, SystemTime)>;
    let feeders: Vec<std::thread::JoinHandle<anyhow::Result<(u64, Renamed)>>> = cfg
        .cameras
        .iter()
        .enumerate()
        .map(|(i, cam)| {
            let (camera, frames) = (cam.id.clone(), frames.clone());
            match (&cam.source, &tx) {
                (CameraSource::HotFolder { path, .. }, _) => {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        let renamed = feed::hot_folder(camera, &path, frames, i * 7, pace)
                            .with_context(|| format!("writing into {}", path.display()))?;
                        Ok((renamed.len() as u64, renamed))
                    })
                }
                (_, Some(tx)) => {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        Ok((feed::direct(camera, frames, i * 7, pace, tx), Vec::new()))
                    })
                }
                (_, None) => unreachable!("the direct feed holds the queue"),
            }
        })
        .collect();
    drop(tx);

    let mut samples = Vec::new();
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    let done = tokio::task::spawn_blocking(move || {
        feeders
            .into_iter()
            .map(|f| f.join().expect("a feeder panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    });
    tokio::pin!(done);
    let fed = loop {
        tokio::select! {
            fed = &mut done => break fed??,
            _ = sampler.tick() => samples.push(rss_mib().0),
        }
    };
    let renamed: Renamed = fed.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
    let fed: u64 = fed.iter().map(|(n, _)| n).sum();
    // Every frame fed: wait until each has its verdict (or error record),
    // every message is acknowledged and (hot folder) every result heard, so
    // the span ends at the last of them and nothing is judged after it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (settled, pending): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM verdicts) + (SELECT COUNT(*) FROM ingest_errors),
                    (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL)",
        )
        .fetch_one(store.pool())
        .await?;
        let heard = listener.heard.len();
        if settled as u64 >= fed && pending == 0 && heard >= renamed.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{settled} of {fed} frames settled, {pending} messages unacknowledged and {heard} of {} results heard 2 minutes after the last was fed",
            renamed.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let (rss_end, rss_peak) = rss_mib();
    let after = telemetry::metrics::engine();
    let mean_batch =
        (after.frames - before.frames) as f64 / (after.batches - before.batches).max(1) as f64;
    let engine_busy = (after.busy - before.busy).as_secs_f64() / wall;
    let model_reloads = telemetry::metrics::reloads() - reloads_before;
    if model_reloads > 0 {
        tracing::warn!(model_reloads, "self-healing reloaded the model during the run (the health monitor's latency alert): these figures include the reload");
    }
    let heard = listener.heard.take();
    drop(listener);
    let _ = shutdown_tx.send(true);
    station.await??;
    compute_rounds.extend(model_alone(opts.compute_rounds / 2).await??);
    let compute = median(compute_rounds);
    let shadow = match &opts.shadow {
        None => None,
        Some(_) => {
            let station = store.clone().with_station(&cfg.station.station);
            let s = store::shadow::summaries(&station).await?;
            let (verdicts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM verdicts")
                .fetch_one(store.pool())
                .await?;
            s.first().map(|s| ShadowFigures {
                candidate: format!("{} {}", s.name, s.version),
                judged: s.compared,
                skipped: verdicts - s.compared,
                agreement: s.agreement(),
            })
        }
    };

    let (errors,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ingest_errors")
        .fetch_one(store.pool())
        .await?;
    anyhow::ensure!(errors == 0, "{errors} frames were rejected during the run");
    let (pairs, latency_from) = match opts.feed {
        Feed::Direct => (
            acknowledged(&store).await?,
            "arrival at the pipeline to the broker's acknowledgement",
        ),
        Feed::HotFolder { .. } => (
            renamed
                .iter()
                .map(|(part, at)| {
                    let heard = heard
                        .get(part)
                        .with_context(|| format!("no result heard for {part}"))?;
                    Ok((*at, *heard))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            "the file's rename to its result heard by an MQTT subscriber",
        ),
    };
    // Hot folder: how long each file lay in its folder before the camera
    // took it (rename to `captured_at`, the moment of detection).
    let folder_wait = match opts.feed {
        Feed::Direct => None,
        Feed::HotFolder { .. } => {
            let detected: std::collections::HashMap<String, String> = sqlx::query_as(
                "SELECT part_id, captured_at FROM verdicts WHERE part_id IS NOT NULL",
            )
            .fetch_all(store.pool())
            .await?
            .into_iter()
            .collect();
            let pairs = renamed
                .iter()
                .map(|(part, at)| {
                    let captured = detected
                        .get(part)
                        .with_context(|| format!("no verdict stored for {part}"))?;
                    Ok((*at, parse_time(captured)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (ms, _) = latencies(&pairs);
            Some(FolderWait {
                p50_ms: percentile(&ms, 0.5),
                p99_ms: percentile(&ms, 0.99),
            })
        }
    };
    let (latencies, span) = latencies(&pairs);
    let n = pairs.len();
    let throughput = n as f64 / span.unwrap_or(wall).max(1e-9);
    let pipeline_ms = 1e3 / throughput;
    Ok(BenchReport {
        precision: format!("{:?}", cfg.model.precision).to_lowercase(),
        feed: opts.feed.to_string(),
        latency_from,
        workers: cfg.model.workers,
        intra_threads: cfg.model.threads_per_worker(),
        max_batch: cfg.batching.max_batch,
        max_wait_ms: cfg.batching.max_wait.as_secs_f64() * 1e3,
        cameras,
        frames: n,
        offered_rate: opts.rate,
        wall_s: wall,
        throughput_parts_per_s: throughput,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        mean_batch,
        engine_busy,
        model_reloads,
        pipeline_ms_per_part: pipeline_ms,
        compute_ms_per_part: compute,
        overhead_ratio: pipeline_ms / compute,
        cpu_cores_used: cpu / wall,
        rss_start_mib: rss_start,
        rss_end_mib: rss_end,
        rss_peak_mib: rss_peak,
        rss_samples_mib: samples,
        folder_wait,
        shadow,
    })
}
