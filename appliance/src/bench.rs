//! The whole-pipeline benchmark behind `appliance bench`.
//!
//! It measures what a line cares about, end to end on this machine: K
//! cameras deliver N encoded synthetic frames (PNG, decoded on the camera's
//! thread as a real source does) into the station pipeline, which batches
//! them across cameras, judges them, commits verdict and outbox to SQLite and
//! publishes to a real MQTT broker. Latency runs from a frame's arrival to the
//! broker's acknowledgement of its last message; throughput is parts per
//! second over the same span. Beside it, the model's own compute is measured:
//! the four graphs back to back in a tight loop at the same batch size, on the
//! same images, with nothing else running. Their ratio is the pipeline's
//! overhead.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use firmware_config::{Camera, CameraSource, StationConfig};
use fusion::{Request, Standard};
use serde::Serialize;
use synth::SynthLine;
use tokio::sync::{mpsc, watch};
use vision::preprocess::{self, Crop};
use vision::sources::{Arrival, Origin};
use vision::Frame;

use crate::pipeline;

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
    /// With `--shadow`: the candidate's figures.
    pub shadow: Option<ShadowFigures>,
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
/// back, all at once on their own threads; milliseconds per part is the
/// median batch's time over the parts all workers judge in it.
fn compute_ms_per_part(
    cfg: &StationConfig,
    frames: &[Vec<u8>],
    standard: &Standard,
    rounds: usize,
) -> anyhow::Result<f64> {
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
    let all: Vec<f64> = times.into_iter().flatten().collect();
    Ok(median(all) / (batch * workers) as f64)
}

fn export(dir: &Path, frames: &[Vec<u8>], standard: &Standard) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("frames"))?;
    for (i, png) in frames.iter().enumerate() {
        std::fs::write(dir.join("frames").join(format!("{i:04}.png")), png)?;
    }
    std::fs::write(dir.join("standard.txt"), &standard.text)?;
    Ok(())
}

/// Feeds one camera's share of the frames, paced if asked; returns how
/// many it fed.
#[allow(clippy::too_many_arguments)]
fn feed(
    camera: String,
    frames: Arc<Vec<Vec<u8>>>,
    offset: usize,
    count: Option<usize>,
    until: Option<Instant>,
    interval: Option<Duration>,
    tx: mpsc::Sender<Arrival>,
) -> u64 {
    let started = Instant::now();
    let mut seq = 0u64;
    loop {
        if count.is_some_and(|n| seq as usize >= n) || until.is_some_and(|u| Instant::now() >= u) {
            return seq;
        }
        if let Some(every) = interval {
            let due = started + every * seq as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let png = &frames[(offset + seq as usize) % frames.len()];
        let captured_at = SystemTime::now();
        let (image, format) = vision::decode::decode(png).expect("bench frames decode");
        let name = format!("{camera}-{seq:07}");
        let frame = Frame {
            camera_id: camera.clone(),
            seq,
            captured_at,
            part_id: Some(name.clone()),
            trigger_id: None,
            image: Arc::new(image),
            encoded: Arc::new(png.clone()),
            format,
            truth: None,
            held: Default::default(),
        };
        let origin = Origin::named(name);
        if tx.blocking_send(Arrival::Frame { frame, origin }).is_err() {
            return seq;
        }
        seq += 1;
    }
}

/// Starts shadow mode on the bench's station as a plant system would:
/// waits for the station's `online` status, sends `cmd/shadow` and waits
/// for its reply (the candidate loads and warms up meanwhile).
async fn start_shadow(cfg: &StationConfig, package: &Path) -> anyhow::Result<()> {
    use delivery::link::{self, LinkEvent, Session};
    let endpoint = link::Endpoint::from_config(cfg)?;
    let endpoint = match cfg.mqtt.broker {
        firmware_config::BrokerMode::Embedded => endpoint.local(cfg.mqtt.embedded_listen.port()),
        firmware_config::BrokerMode::External => endpoint,
    };
    let topics = delivery::Topics::new(&cfg.mqtt.topic_prefix, &cfg.station.station);
    let (client, mut events) = link::connect(
        &endpoint,
        Session {
            client_id: format!("{}-shadow", cfg.station.station),
            persistent: false,
            will: None,
            capacity: 16,
            max_incoming: 1 << 20,
        },
    );
    let status = topics.status();
    client.subscribe(&status, rumqttc::QoS::AtLeastOnce).await?;
    client
        .subscribe(&topics.reply(), rumqttc::QoS::AtLeastOnce)
        .await?;
    let command = serde_json::json!({ "action": "start", "package": package }).to_string();
    let answered = async {
        let mut sent = false;
        loop {
            match events.poll().await {
                Ok(LinkEvent::Message { topic, payload }) => {
                    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                    if topic == status && v["state"] == "online" && !sent {
                        let shadow = topics.command("shadow");
                        client
                            .publish(
                                &shadow,
                                rumqttc::QoS::AtLeastOnce,
                                false,
                                command.clone().into_bytes(),
                            )
                            .await?;
                        sent = true;
                    } else if topic == topics.reply() && v["command"] == "shadow" {
                        anyhow::ensure!(v["ok"] == true, "shadow mode refused: {}", v["error"]);
                        tracing::info!(reply = %v["model"], "bench: shadow mode on");
                        return Ok(());
                    }
                }
                Ok(_) => {}
                // Not up yet (the embedded broker starts with the station).
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    let started = tokio::time::timeout(Duration::from_secs(120), answered)
        .await
        .context("no answer to cmd/shadow within 120 s")?;
    let _ = client.disconnect().await;
    started
}

fn parse_time(s: &str) -> anyhow::Result<SystemTime> {
    Ok(chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("timestamp {s:?}"))?
        .into())
}

/// Runs the benchmark with `cfg` (its cameras are replaced by the bench's).
pub async fn run(mut cfg: StationConfig, opts: BenchOptions) -> anyhow::Result<BenchReport> {
    let work = tempfile::tempdir()?;
    cfg.storage.database_url = format!("sqlite://{}", work.path().join("bench.db").display());
    cfg.storage.data_dir = work.path().join("data");
    cfg.http.bind = "127.0.0.1:0".parse().expect("literal address");
    cfg.cameras = (1..=opts.cameras.max(1))
        .map(|i| Camera {
            id: format!("cam-{i}"),
            mm_per_px: 0.1,
            roi: None,
            rotate: 0,
            flip: Default::default(),
            source: CameraSource::Synthetic {
                seed: i as u64,
                interval: Duration::from_secs(1),
                replay: 0,
            },
        })
        .collect();
    let standard = pipeline::load_standard(&cfg, &cfg.station.recipe)?;
    let frames = Arc::new(frame_set(opts.distinct, 2024));
    if let Some(dir) = &opts.export {
        export(dir, &frames, &standard)?;
    }

    let compute = {
        let (cfg, frames, standard) = (cfg.clone(), frames.clone(), standard.clone());
        let rounds = opts.compute_rounds;
        tokio::task::spawn_blocking(move || compute_ms_per_part(&cfg, &frames, &standard, rounds))
            .await??
    };

    // The bench reads results through its own connection to the station's
    // database (SQLite in WAL mode allows it); opening it first also creates
    // the schema before the station starts.
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir).await?;
    let (tx, rx) = mpsc::channel::<Arrival>(cfg.batching.queue_capacity);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let station = tokio::spawn(pipeline::serve(
        cfg.clone(),
        rx,
        crate::cameras::CameraLinks::none(),
        shutdown,
        Arc::new(AtomicBool::new(false)),
        None,
    ));
    if let Some(package) = &opts.shadow {
        start_shadow(&cfg, package).await?;
    }
    let cameras = cfg.cameras.len();
    let per_camera = opts.frames.div_ceil(cameras);
    let until = opts.duration.map(|d| Instant::now() + d);
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(cameras as f64 / r.max(1e-3)));
    let before = telemetry::metrics::engine();
    let cpu0 = cpu_seconds();
    let (rss_start, _) = rss_mib();
    let started = Instant::now();
    let feeders: Vec<_> = cfg
        .cameras
        .iter()
        .enumerate()
        .map(|(i, cam)| {
            let (camera, frames, tx) = (cam.id.clone(), frames.clone(), tx.clone());
            let count = until.is_none().then_some(per_camera);
            std::thread::spawn(move || feed(camera, frames, i * 7, count, until, interval, tx))
        })
        .collect();
    drop(tx);

    let mut samples = Vec::new();
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    let done = tokio::task::spawn_blocking(move || {
        feeders
            .into_iter()
            .map(|f| f.join().unwrap_or(0))
            .sum::<u64>()
    });
    tokio::pin!(done);
    let fed = loop {
        tokio::select! {
            fed = &mut done => break fed?,
            _ = sampler.tick() => samples.push(rss_mib().0),
        }
    };
    // Every frame fed: wait until each has its verdict (or error record)
    // and every message is acknowledged, so the span ends at the last
    // acknowledgement of the last frame and nothing is judged after it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (settled, pending): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM verdicts) + (SELECT COUNT(*) FROM ingest_errors),
                    (SELECT COUNT(*) FROM outbox WHERE published_at IS NULL)",
        )
        .fetch_one(store.pool())
        .await?;
        if settled as u64 >= fed && pending == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{settled} of {fed} frames settled and {pending} messages unacknowledged 2 minutes after the last was fed"
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
    let _ = shutdown_tx.send(true);
    station.await??;
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

    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT v.captured_at, MAX(o.published_at)
           FROM verdicts v JOIN outbox o ON o.verdict_id = v.id
          GROUP BY v.id",
    )
    .fetch_all(store.pool())
    .await?;
    let mut latencies = Vec::with_capacity(rows.len());
    let mut first = None::<SystemTime>;
    let mut last = None::<SystemTime>;
    for (captured, published) in &rows {
        let captured = parse_time(captured)?;
        let published = parse_time(
            published
                .as_deref()
                .context("a verdict was never published")?,
        )?;
        latencies.push(
            published
                .duration_since(captured)
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
        );
        first = Some(first.map_or(captured, |f| f.min(captured)));
        last = Some(last.map_or(published, |l| l.max(published)));
    }
    let (errors,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ingest_errors")
        .fetch_one(store.pool())
        .await?;
    anyhow::ensure!(errors == 0, "{errors} frames were rejected during the run");
    latencies.sort_by(f64::total_cmp);
    let n = rows.len();
    let span = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).unwrap_or_default().as_secs_f64(),
        _ => wall,
    };
    let throughput = n as f64 / span.max(1e-9);
    let pipeline_ms = 1e3 / throughput;
    Ok(BenchReport {
        precision: format!("{:?}", cfg.model.precision).to_lowercase(),
        workers: cfg.model.workers,
        intra_threads: cfg.model.intra_threads,
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
        pipeline_ms_per_part: pipeline_ms,
        compute_ms_per_part: compute,
        overhead_ratio: pipeline_ms / compute,
        cpu_cores_used: cpu / wall,
        rss_start_mib: rss_start,
        rss_end_mib: rss_end,
        rss_peak_mib: rss_peak,
        rss_samples_mib: samples,
        shadow,
    })
}
