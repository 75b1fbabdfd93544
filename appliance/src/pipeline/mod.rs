//! Wires a station together: camera sources -> inference worker -> store
//! (verdict and outbox in one transaction) -> MQTT, and shuts it down in
//! order on request.
//!
//! Every arrival ends in exactly one stored record: a verdict, or an ingest
//! error naming why the bytes could not be judged. Files in a hot folder are
//! moved or deleted only after that record is committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use firmware_config::{AfterJudged, BrokerMode, Camera, CameraSource, StationConfig};
use fusion::{Engine, EngineSettings, ModelPackage, Standard};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;
use vision::preprocess::Crop;
use vision::runtime::SessionSettings;
use vision::sources::health::CameraEvent;
use vision::sources::hot_folder;
use vision::sources::{Arrival, Origin};
use vision::Frame;

use crate::batcher::Batcher;
use crate::cameras::{CameraLinks, Cameras};
use crate::verdict::{self, Geometry};
use crate::worker::{self, EngineHandle};
use delivery::Publisher;
use record::{ImageRef, StationRef, Timings, Verdict};
use review_web::line::{Live, LiveEvent};
use store::Store;
use telemetry::Event;

mod control;

/// Loads the recipe's standard text.
pub fn load_standard(cfg: &StationConfig, recipe: &str) -> anyhow::Result<Standard> {
    let r = cfg
        .recipe(recipe)
        .with_context(|| format!("recipe `{recipe}` is not configured"))?;
    crate::standards::load(recipe, &r.standard)
}

/// Opens, verifies and loads the configured model package.
pub fn load_engine(cfg: &StationConfig) -> anyhow::Result<Engine> {
    let package = ModelPackage::open(&cfg.model.package, cfg.model.precision)?;
    let m = &cfg.model;
    let settings = EngineSettings {
        sessions: SessionSettings {
            providers: m.execution_providers.clone(),
            intra_threads: m.threads_per_worker(),
            inter_threads: m.inter_threads,
            device_id: m.device_id,
            tensorrt_fp16: m.tensorrt.fp16,
            tensorrt_int8: m.tensorrt.int8,
            tensorrt_cache: m.tensorrt.engine_cache.clone(),
        },
        review_threshold: cfg.model.review_threshold as f32,
        vision_batch: m.vision_images_per_run(),
        onnxruntime_library: cfg.model.onnxruntime_library.clone(),
        stand_in: cfg.model.stand_in,
    };
    Ok(Engine::load(package, &settings)?)
}

/// Everything an arrival needs on its way to a stored verdict.
struct Station {
    /// The configuration in force; a configuration reload swaps it.
    cfg: RwLock<Arc<StationConfig>>,
    cameras: RwLock<Arc<HashMap<String, Camera>>>,
    /// The active recipe's standard; a `recipe` command swaps it between frames.
    standard: std::sync::RwLock<Arc<Standard>>,
    engine: EngineHandle,
    store: Store,
    publisher: Publisher,
    /// Sparkplug B mode: each verdict also goes to the edge node.
    sparkplug: Option<delivery::sparkplug::EdgeNode>,
    /// Verdicts of synthetic-line frames scored against their ground truth.
    score: crate::score::LiveScore,
    /// Multi-view stations: judged views go to the part assembler.
    parts: Option<mpsc::UnboundedSender<(String, record::View)>>,
    /// Frames taken in and finished, for the watchdog.
    progress: Arc<crate::systemd::Progress>,
    /// Asks the monitor to judge the golden set now (new recipe or model).
    golden_now: Arc<tokio::sync::Notify>,
    /// One configuration reload at a time.
    reconfiguring: tokio::sync::Mutex<()>,
    /// Every committed verdict, for the open line views.
    live: Live,
    /// A candidate model judging beside the running one, when an admin
    /// started one.
    shadow: Arc<crate::shadow::Shadow>,
    /// The package a promotion swapped in, at its precision: later reloads
    /// load it instead of the configured one until the configuration's
    /// `[model]` changes.
    promoted: RwLock<Option<(std::path::PathBuf, firmware_config::Precision)>>,
    /// One rollout at a time; the last one's outcome, for the status.
    rolling: tokio::sync::Mutex<()>,
    rollout: RwLock<Option<serde_json::Value>>,
    /// The last rollout taken on: it stands over the configuration file,
    /// so a configuration reload applies it again.
    standing: RwLock<Option<record::Rollout>>,
}

impl Station {
    fn standard(&self) -> Arc<Standard> {
        self.standard.read().expect("standard lock").clone()
    }

    fn cfg(&self) -> Arc<StationConfig> {
        self.cfg.read().expect("config lock").clone()
    }

    /// The configuration the model is loaded from: the station's, with a
    /// promoted candidate's package in place of the configured one.
    fn model_cfg(&self) -> StationConfig {
        let cfg = self.cfg();
        match &*self.promoted.read().expect("promoted lock") {
            Some((package, precision)) => crate::shadow::with_package(&cfg, package, *precision),
            None => (*cfg).clone(),
        }
    }

    fn cameras(&self) -> Arc<HashMap<String, Camera>> {
        self.cameras.read().expect("cameras lock").clone()
    }

    fn after(&self, camera: &str) -> Option<AfterJudged> {
        match &self.cameras().get(camera)?.source {
            CameraSource::HotFolder { after, .. } => Some(*after),
            _ => None,
        }
    }

    fn finish(&self, camera: &str, origin: &Origin) {
        if crate::faults::moves_lost() {
            return;
        }
        if let (Some(path), Some(after)) = (&origin.path, self.after(camera)) {
            if let Err(e) = hot_folder::finish(path, after) {
                tracing::warn!(file = %path.display(), error = %e, "cannot move judged file");
            }
        }
    }

    async fn reject(&self, camera: &str, origin: &Origin, bytes: &[u8], reason: &str) {
        Event::FrameRejected {
            camera,
            source: &origin.name,
            reason,
        }
        .emit();
        match self
            .store
            .record_ingest_error(
                &self.cfg().station.station,
                camera,
                &origin.name,
                reason,
                bytes,
            )
            .await
        {
            Ok(_) => self.finish(camera, origin),
            Err(e) => {
                tracing::error!(error = %e, source = %origin.name, "cannot store ingest error; file left in place")
            }
        }
    }

    /// Whether the file of `origin` was judged already: its verdict was
    /// committed and the station stopped (a power cut) before the file was
    /// moved. Said with the verdict's id; the file is then only moved.
    async fn judged_before(&self, camera: &str, origin: &Origin) -> bool {
        let Some(identity) = &origin.identity else {
            return false;
        };
        match self.store.judged_from(camera, identity).await {
            Ok(Some(verdict)) => {
                tracing::warn!(camera, file = %origin.name, verdict, "judged before the last stop; moved without judging it again");
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(camera, file = %origin.name, error = %e, "cannot tell whether the file was judged; judging it");
                false
            }
        }
    }

    /// Judges one arrival inside its own span (`frame`: camera, sequence
    /// number, source name), which the inference worker's batch follows
    /// from: every log line about a frame, wherever it is written, carries
    /// which frame it was.
    async fn handle(&self, arrival: Arrival) {
        let span = match &arrival {
            Arrival::Frame { frame, origin } => tracing::info_span!(
                "frame",
                camera = %frame.camera_id,
                seq = frame.seq,
                source = %origin.name,
                part = frame.part_id.as_deref(),
            ),
            Arrival::Rejected { .. } | Arrival::Skipped { .. } => {
                tracing::info_span!("frame", camera = %arrival.camera_id(), source = %arrival.origin().name)
            }
        };
        self.handle_one(arrival).instrument(span).await;
        self.progress.finished();
    }

    async fn handle_one(&self, arrival: Arrival) {
        Event::FrameArrived {
            camera: arrival.camera_id(),
        }
        .emit();
        match arrival {
            Arrival::Rejected {
                camera_id,
                origin,
                bytes,
                error,
            } => {
                self.reject(&camera_id, &origin, &bytes, &error.to_string())
                    .await
            }
            Arrival::Skipped {
                camera_id,
                origin,
                reason,
            } => {
                tracing::warn!(camera = %camera_id, entry = %origin.name, reason, "hot folder: skipped");
                self.reject(&camera_id, &origin, &[], &reason).await
            }
            Arrival::Frame { frame, origin } => {
                let camera_id = frame.camera_id.clone();
                if self.judged_before(&camera_id, &origin).await {
                    self.finish(&camera_id, &origin);
                    return;
                }
                match self.inspect(frame, origin.identity.as_deref()).await {
                    Ok(_) => self.finish(&camera_id, &origin),
                    Err(e) => {
                        self.reject(&camera_id, &origin, &[], &format!("{e:#}"))
                            .await;
                    }
                }
            }
        }
    }

    /// Judges one decoded frame and stores, publishes and scores the
    /// verdict: orient, judge, keep the picture, build the verdict, commit
    /// it with its outbox rows, then tell whoever else listens.
    async fn inspect(&self, frame: Frame, source: Option<&str>) -> anyhow::Result<Verdict> {
        let cfg = self.cfg();
        let cameras = self.cameras();
        let camera = cameras
            .get(&frame.camera_id)
            .with_context(|| format!("unknown camera `{}`", frame.camera_id))?;
        let frame = oriented(frame, camera).await?;
        let queued_at = SystemTime::now();
        let crop = Crop::of_roi(camera.roi, &frame.image);
        let standard = self.standard();
        let judged = self.judge(&frame, crop, camera, &standard).await?;
        let decided_at = SystemTime::now();
        let (image, not_kept) = self.keep_picture(&frame).await?;
        let geometry = Geometry {
            crop: [crop.x, crop.y, crop.width, crop.height],
            frame_width: frame.image.width(),
            frame_height: frame.image.height(),
            mm_per_px: camera.mm_per_px,
        };
        let findings = verdict::findings_in_frame(&judged.judgement, geometry);
        let (decision, review_reason) = verdict::held_to_standard(&judged.judgement, &findings);
        let v = Verdict {
            schema: record::SCHEMA.into(),
            id: uuid::Uuid::now_v7().to_string(),
            station: StationRef {
                site: cfg.station.site.clone(),
                line: cfg.station.line.clone(),
                station: cfg.station.station.clone(),
            },
            camera: frame.camera_id.clone(),
            part_id: frame.part_id.clone(),
            trigger_id: frame.trigger_id.clone(),
            frame_seq: frame.seq,
            recipe: standard.recipe.clone(),
            standard_sha256: standard.sha256.clone(),
            decision,
            confidence: judged.judgement.confidence,
            review_reason,
            findings,
            model: (*judged.model).clone(),
            timings: Timings {
                captured_at: record::time::of(frame.captured_at),
                queued_at: record::time::of(queued_at),
                decided_at: record::time::of(decided_at),
                published_at: None,
                inference_ms: judged.judgement.inference_ms,
            },
            image: ImageRef {
                sha256: image.sha256,
                path: image.path.display().to_string(),
                bytes: image.bytes,
                width: frame.image.width(),
                height: frame.image.height(),
                not_kept,
            },
            context_loss: judged.judgement.context_loss,
        };
        let committing = std::time::Instant::now();
        let view_of = self.commit(&cfg, &v, &standard, source).await?;
        Event::VerdictCommitted {
            id: &v.id,
            camera: &v.camera,
            decision: v.decision,
            findings: v.findings.len(),
            captured: frame.captured_at,
            commit: committing.elapsed(),
        }
        .emit();
        self.pass_on(&v, &frame, view_of);
        if self.shadow.active() {
            let shown = crate::shadow::Shown {
                verdict: v.clone(),
                frame,
                crop,
                geometry,
                standard,
            };
            self.shadow
                .offer(shown, &self.store, self.engine.queue_depth());
        }
        Ok(v)
    }

    /// The engine's judgement of `frame`, counted in and out of the engine.
    async fn judge(
        &self,
        frame: &Frame,
        crop: Crop,
        camera: &Camera,
        standard: &Arc<Standard>,
    ) -> anyhow::Result<worker::Judged> {
        let captured = frame.captured_at;
        Event::FrameQueued { captured }.emit();
        let judged = match self
            .engine
            .judge(frame, crop, standard.clone(), Some(camera.mm_per_px))
            .await
        {
            Ok(judged) => judged,
            Err(e) => {
                Event::FrameFailed { captured }.emit();
                return Err(e.into());
            }
        };
        let j = &judged.judgement;
        Event::FrameInferred {
            captured,
            // The model did not get, or did not use, the whole standard.
            context_lost: j.context_loss > 0.0
                || !j.closed
                || j.findings
                    .iter()
                    .any(|f| f.clause.is_some() && f.clause_text.is_none()),
        }
        .emit();
        Ok(judged)
    }

    /// Writes the picture to the data folder. A picture that cannot be kept
    /// (full disk, write error) never stops the verdict: it is decided,
    /// stored and published, and says why (the second value).
    async fn keep_picture(
        &self,
        frame: &Frame,
    ) -> anyhow::Result<(store::StoredImage, Option<String>)> {
        let store = self.store.clone();
        let encoded = frame.encoded.clone();
        let format = frame.format;
        let stored = tokio::task::spawn_blocking(move || store.put_image(&encoded, format))
            .await
            .context("image writer panicked")?;
        Ok(match stored {
            Ok(image) => (image, None),
            Err(e) => {
                tracing::warn!(camera = %frame.camera_id, error = %e, "image not kept");
                let image = store::StoredImage {
                    sha256: store::image_sha256(&frame.encoded),
                    path: Default::default(),
                    bytes: frame.encoded.len() as u64,
                };
                (image, Some(e.to_string()))
            }
        })
    }

    /// Commits the verdict with its outbox rows: the full verdict, and the
    /// PLC's short form unless the frame is one view of a multi-view part
    /// (the PLC then gets the part's result). Returns the part assembler and
    /// part id for such a view.
    async fn commit(
        &self,
        cfg: &StationConfig,
        v: &Verdict,
        standard: &Standard,
        source: Option<&str>,
    ) -> anyhow::Result<Option<PartView<'_>>> {
        let topics = self.publisher.topics();
        let mut outbox = vec![(topics.verdict(), serde_json::to_string(v)?)];
        let view_of = match (&self.parts, &v.part_id) {
            (Some(parts), Some(part)) if cfg.parts.views.contains(&v.camera) => {
                Some((parts, part.clone()))
            }
            _ => {
                outbox.push((topics.result(), serde_json::to_string(&v.plc())?));
                None
            }
        };
        self.store
            .commit_verdict(v, &standard.text, &outbox, source)
            .await?;
        Ok(view_of)
    }

    /// After the commit: wake the outbox drain, and hand the verdict to
    /// Sparkplug, the live score (synthetic frames) and the part assembler.
    fn pass_on(&self, v: &Verdict, frame: &Frame, view_of: Option<PartView<'_>>) {
        self.publisher.wake();
        self.live.send(LiveEvent::Verdict(Arc::new(v.clone())));
        if let Some(node) = &self.sparkplug {
            node.send(delivery::sparkplug::Update::Verdict(Box::new(v.clone())));
        }
        if let Some(truth) = &frame.truth {
            self.score.record(truth, &v.findings);
        }
        if let Some((parts, part)) = view_of {
            let view = record::View {
                camera: v.camera.clone(),
                verdict_id: v.id.clone(),
                decision: v.decision,
                findings: v.findings.len(),
            };
            let _ = parts.send((part, view));
        }
    }
}

/// The part assembler and the part id a judged view goes to.
type PartView<'a> = (&'a mpsc::UnboundedSender<(String, record::View)>, String);

/// `frame` as the model sees it: turned and mirrored as its camera is
/// mounted, and re-encoded so that the stored picture and the boxes agree.
async fn oriented(mut frame: Frame, camera: &Camera) -> anyhow::Result<Frame> {
    if vision::geometry::is_identity(camera.rotate, camera.flip) {
        return Ok(frame);
    }
    let (rotate, flip, image) = (camera.rotate, camera.flip, frame.image.clone());
    let (oriented, png) = tokio::task::spawn_blocking(move || {
        let oriented = vision::geometry::orient(&image, rotate, flip);
        let png = vision::decode::encode_png(&oriented);
        (oriented, png)
    })
    .await
    .context("orientation panicked")?;
    frame.image = Arc::new(oriented);
    frame.encoded = Arc::new(png);
    frame.format = "png";
    Ok(frame)
}

/// Runs the station until `shutdown` turns true, then stops sources, finishes
/// frames in flight, drains acknowledgements and returns.
///
/// `http`: the HTTP API's listener when the caller bound it (systemd socket
/// activation, a test on port 0); otherwise `http.bind` is bound.
pub async fn run(
    cfg: StationConfig,
    shutdown: watch::Receiver<bool>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<Arrival>(cfg.batching.queue_capacity);
    let stop = Arc::new(AtomicBool::new(false));
    let (cameras, events) = Cameras::start(&cfg, &tx, &stop)?;
    drop(tx);
    let links = CameraLinks {
        triggers: cameras.triggers.clone(),
        health: cameras.health.clone(),
        events,
    };
    let result = serve(cfg, rx, links, shutdown, stop.clone(), http).await;
    stop.store(true, Ordering::Relaxed);
    cameras.join();
    result
}

/// Where the station's MQTT clients connect: the plant's broker, or the
/// embedded one started here.
fn broker_endpoint(cfg: &StationConfig) -> anyhow::Result<delivery::link::Endpoint> {
    let endpoint = delivery::link::Endpoint::from_config(cfg)?;
    match cfg.mqtt.broker {
        BrokerMode::External => Ok(endpoint),
        #[cfg(feature = "embedded-broker")]
        BrokerMode::Embedded => {
            delivery::broker::start(
                cfg.mqtt.embedded_listen,
                cfg.mqtt.protocol,
                cfg.mqtt.embedded_backlog.0,
            )?;
            Ok(endpoint.local(cfg.mqtt.embedded_listen.port()))
        }
        #[cfg(not(feature = "embedded-broker"))]
        BrokerMode::Embedded => anyhow::bail!(
            "mqtt.broker = \"embedded\" needs the appliance built with the `embedded-broker` feature"
        ),
    }
}

/// Publishes the model and standard in use as info metrics.
fn set_info(model: &record::ModelRef, standard: &Standard) {
    Event::InUse(telemetry::metrics::Info {
        model_name: model.name.clone(),
        model_version: model.version.clone(),
        model_sha256: model.sha256.clone(),
        recipe: standard.recipe.clone(),
        standard_sha256: standard.sha256.clone(),
    })
    .emit();
}

/// The recipe and model the Sparkplug device announces.
fn sparkplug_context(model: &record::ModelRef, standard: &Standard) -> delivery::sparkplug::Update {
    delivery::sparkplug::Update::Context {
        recipe: standard.recipe.clone(),
        standard_sha256: standard.sha256.clone(),
        model: format!("{} {}", model.name, model.version),
    }
}

/// The retained `status` payload announced on every connect.
fn birth_status(
    cfg: &StationConfig,
    model: &record::ModelRef,
    standard: &Standard,
    rollout: Option<&serde_json::Value>,
) -> String {
    serde_json::json!({
        "rollout": rollout,
        "state": "online",
        "version": env!("CARGO_PKG_VERSION"),
        "model": model,
        "recipe": standard.recipe,
        "standard_sha256": standard.sha256,
        "cameras": cfg.cameras.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        "health": telemetry::health::snapshot().map(|h| serde_json::json!({
            "state": h.state,
            "alerting": h.alerting,
            "reloads": h.reloads,
            "at": h.at,
            "figures": h.figures.iter().map(|f| serde_json::json!({
                "figure": f.name,
                "value": f.value,
                "threshold": f.threshold,
                "standing": f.standing,
                "samples": f.samples,
            })).collect::<Vec<_>>(),
        })),
    })
    .to_string()
}

/// Publishes each camera's state change, retained, on `{base}/camera/{id}`.
async fn report_cameras(mut events: mpsc::UnboundedReceiver<CameraEvent>, publisher: Publisher) {
    while let Some(e) = events.recv().await {
        let at = record::time::now();
        let (camera, payload) = match e {
            CameraEvent::Up {
                camera_id,
                reconnects,
            } => {
                let p = serde_json::json!({"camera": camera_id, "state": "up", "reconnects": reconnects, "at": at});
                (camera_id, p)
            }
            CameraEvent::Down {
                camera_id,
                reason,
                retry_in,
            } => {
                let p = serde_json::json!({"camera": camera_id, "state": "down", "reason": reason,
                    "retry_in_ms": retry_in.as_millis() as u64, "at": at});
                (camera_id, p)
            }
            CameraEvent::Ended { camera_id } => {
                let p = serde_json::json!({"camera": camera_id, "state": "ended", "at": at});
                (camera_id, p)
            }
        };
        if let Err(e) = publisher
            .publish_now(
                &publisher.topics().camera(&camera),
                &payload.to_string(),
                true,
            )
            .await
        {
            tracing::warn!(camera, error = %e, "cannot publish camera state");
        }
    }
}

/// Runs the station on the arrivals of `rx` until `shutdown` turns true or
/// every sender is gone; then sets `stop_sources`, finishes frames in flight,
/// drains acknowledgements and returns.
pub async fn serve(
    cfg: StationConfig,
    mut rx: mpsc::Receiver<Arrival>,
    links: CameraLinks,
    shutdown: watch::Receiver<bool>,
    stop_sources: Arc<AtomicBool>,
    http: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let store = Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await?
        .with_min_free(cfg.storage.min_free.0)
        .with_station(&cfg.station.station);
    let standard = Arc::new(load_standard(&cfg, &cfg.station.recipe)?);
    let engines = start_engines(&cfg, &standard).await?;
    let (handle, worker) = worker::spawn(
        engines,
        Batcher::new(cfg.batching.max_batch, cfg.batching.max_wait),
        cfg.batching.queue_capacity,
        tokio::runtime::Handle::current(),
    );
    set_info(&handle.model(), &standard);
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let mut delivery = start_delivery(&cfg, &store, &handle.model(), &standard, commands_tx)?;
    tokio::spawn(store::retention::run(
        store.clone(),
        store::retention::Policy::from_config(&cfg.storage),
        cfg.storage.sweep_every,
        shutdown.clone(),
    ));
    let live = Live::default();
    let shadow = Arc::new(crate::shadow::Shadow::default());
    let (operators, operators_rx) = mpsc::channel(8);
    let feed = line_feed(&cfg, &links, &live, operators, &shadow, &handle);
    let http = start_http(http, &cfg, &links, &store, feed, &shutdown).await;
    tokio::spawn(report_cameras(links.events, delivery.publisher.clone()));
    let (parts, parts_task) = start_parts(&cfg, &store, &delivery.publisher);
    let ctx = Arc::new(Station {
        standard: RwLock::new(standard),
        score: Default::default(),
        parts,
        cameras: RwLock::new(Arc::new(camera_map(&cfg))),
        cfg: RwLock::new(Arc::new(cfg)),
        engine: handle,
        store,
        publisher: delivery.publisher.clone(),
        sparkplug: delivery.sparkplug.take(),
        progress: Default::default(),
        golden_now: Default::default(),
        reconfiguring: Default::default(),
        live,
        shadow,
        promoted: Default::default(),
        rolling: Default::default(),
        rollout: Default::default(),
        standing: Default::default(),
    });
    let monitor = crate::health::monitor::Monitor::new(ctx.clone(), ctx.golden_now.clone());
    let monitor = tokio::spawn(monitor.run(shutdown.clone()));
    tokio::spawn(telemetry::gpu::poll(
        Duration::from_secs(5),
        shutdown.clone(),
    ));
    tokio::spawn(crate::systemd::feed_watchdog(
        ctx.progress.clone(),
        shutdown.clone(),
    ));
    if ctx.cfg().source.is_some() {
        tokio::spawn(control::reload_on_sighup(
            ctx.clone(),
            links.triggers.clone(),
            shutdown.clone(),
        ));
    }
    // Holds the station: aborted at shutdown so the engine can stop.
    // MQTT's commands and the line view's, stopped together.
    let commands = tokio::spawn({
        let mqtt = crate::commands::serve(
            commands_rx,
            links.triggers.clone(),
            ctx.clone(),
            ctx.publisher.clone(),
        );
        let operators = crate::commands::serve_operators(
            operators_rx,
            links.triggers.clone(),
            ctx.clone(),
            ctx.publisher.clone(),
            ctx.store.clone(),
        );
        async move {
            tokio::join!(mqtt, operators);
        }
    });
    crate::systemd::ready();
    // Frames in flight at once (from arrival to their verdict handed to
    // the outbox): a batch for each worker to judge, the next batch waiting
    // for whichever is free first, and one being stored. With room for only
    // two batches, two workers at full load judged batches of 5.2 on
    // average where 8 were allowed; with this, 8.0 (parts/s within the
    // development machine's run-to-run spread).
    let in_flight = {
        let cfg = ctx.cfg();
        Arc::new(Semaphore::new(
            cfg.batching.max_batch * (cfg.model.workers.max(1) + 2),
        ))
    };
    take_frames(&ctx, &mut rx, &in_flight, shutdown).await;
    let running = Running {
        parts: parts_task,
        commands,
        monitor,
        delivery,
        http,
        worker,
    };
    running.stop(ctx, rx, in_flight, &stop_sources).await;
    Ok(())
}

/// Loads and warms up the configured model for `standard`, once per
/// worker (`model.workers`), off the async runtime, and warns of clauses it
/// cannot read with confidence.
async fn start_engines(
    cfg: &StationConfig,
    standard: &Arc<Standard>,
) -> anyhow::Result<Vec<Engine>> {
    let (engine_cfg, warm_standard) = (cfg.clone(), standard.clone());
    let engines = tokio::task::spawn_blocking(move || {
        (0..engine_cfg.model.workers.max(1))
            .map(|_| {
                let mut engine = load_engine(&engine_cfg)?;
                let took = engine.warm_up(&[&warm_standard], engine_cfg.batching.max_batch)?;
                tracing::debug!(ms = took.as_millis() as u64, "model warmed up");
                anyhow::Ok(engine)
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("model loader panicked")??;
    let engine = &engines[0];
    tracing::info!(model = %engine.package.manifest.name, version = %engine.package.manifest.version, recipe = %standard.recipe, clauses = standard.clauses.len(), workers = engines.len(), "model loaded");
    for r in crate::standards::flagged(&standard.readings(&engine.vocabulary())) {
        tracing::warn!(recipe = %standard.recipe, clause = r.clause, reading = %r.describe(), doubt = r.doubt.as_deref().unwrap_or_default(), "clause not read with confidence; verdicts citing it go to REVIEW (see `appliance standard check`)");
    }
    Ok(engines)
}

/// The verdict channel and, in Sparkplug B mode, the edge node, with what
/// stops them.
struct Delivery {
    publisher: Publisher,
    publisher_task: tokio::task::JoinHandle<()>,
    /// Taken by the station, which sends it each verdict.
    sparkplug: Option<delivery::sparkplug::EdgeNode>,
    sparkplug_task: Option<tokio::task::JoinHandle<()>>,
    /// Stops both; sent after the last frame is committed.
    stop: watch::Sender<bool>,
}

/// Connects to the broker (embedded or external) and starts the outbox
/// publisher, and the Sparkplug edge node where configured.
fn start_delivery(
    cfg: &StationConfig,
    store: &Store,
    model: &record::ModelRef,
    standard: &Standard,
    commands: mpsc::Sender<delivery::Command>,
) -> anyhow::Result<Delivery> {
    let (stop, stopped) = watch::channel(false);
    let endpoint = broker_endpoint(cfg)?;
    let (publisher, publisher_task) = Publisher::start(
        cfg,
        &endpoint,
        store.clone(),
        birth_status(cfg, model, standard, None),
        stopped.clone(),
        commands,
    )?;
    let (sparkplug, sparkplug_task) = match &cfg.mqtt.sparkplug {
        Some(spb) => {
            let context = sparkplug_context(model, standard);
            let (node, task) =
                delivery::sparkplug::EdgeNode::start(cfg, spb, &endpoint, context, stopped)?;
            (Some(node), Some(task))
        }
        None => (None, None),
    };
    Ok(Delivery {
        publisher,
        publisher_task,
        sparkplug,
        sparkplug_task,
        stop,
    })
}

/// Serves the HTTP API on the handed-over listener or `http.bind`. The API
/// is secondary: a port already taken is logged, and the station inspects
/// without it.
async fn start_http(
    handed: Option<std::net::TcpListener>,
    cfg: &StationConfig,
    links: &CameraLinks,
    store: &Store,
    line: review_web::line::LineFeed,
    shutdown: &watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let web = review_web::Web {
        accounts: store::accounts::Accounts::new(store.clone()),
        store: store.clone(),
        secure_cookies: cfg.http.secure_cookies,
        latency_budget: cfg.monitoring.latency_threshold,
        line,
        review_topic: Some(review_topic(&cfg.mqtt.topic_prefix)),
        reasons: cfg.review.reasons.clone(),
        fleet: None,
        rollout: None,
    };
    let started = crate::http::listen(handed, cfg.http.bind)
        .await
        .and_then(|listener| {
            crate::http::start(
                listener,
                links.triggers.clone(),
                links.health.clone(),
                web,
                cfg.http.open_metrics,
                shutdown.clone(),
            )
        });
    match started {
        Ok((_, task)) => Some(task),
        Err(e) => {
            tracing::error!(address = %cfg.http.bind, error = %e, "cannot serve the HTTP API");
            None
        }
    }
}

/// A station's review topic under `prefix` (the station's own, or, on a
/// plant server, the station of the verdict reviewed).
pub fn review_topic(prefix: &str) -> review_web::ReviewTopic {
    let prefix = prefix.to_string();
    Arc::new(move |station: &str| delivery::Topics::new(&prefix, station).review())
}

/// What the line view and the panel read of the station: the live
/// verdicts, the cameras', broker's and recipe's state, the candidate model
/// in shadow mode, the shift starts.
fn line_feed(
    cfg: &StationConfig,
    links: &CameraLinks,
    live: &Live,
    commands: mpsc::Sender<review_web::line::Command>,
    shadow: &Arc<crate::shadow::Shadow>,
    engine: &EngineHandle,
) -> review_web::line::LineFeed {
    use review_web::line::{CameraState, StationState};
    let health = links.health.clone();
    // A meter, not the engine handle: an open page must not keep the
    // inference worker from stopping.
    let (shadow, engine) = (shadow.clone(), engine.meter());
    let recipes: Vec<String> = cfg.recipes.iter().map(|r| r.name.clone()).collect();
    review_web::line::LineFeed {
        live: live.clone(),
        state: Arc::new(move || StationState {
            cameras: health
                .iter()
                .map(|h| {
                    let s = h.snapshot();
                    CameraState {
                        camera: s.camera,
                        up: s.up,
                    }
                })
                .collect(),
            broker_connected: telemetry::metrics::is_mqtt_connected(),
            recipe: telemetry::metrics::info()
                .map(|i| i.recipe)
                .unwrap_or_default(),
            recipes: recipes.clone(),
            shadow: shadow.state(&engine),
        }),
        shift_starts: cfg.shifts.starts.iter().map(|t| t.minutes()).collect(),
        commands: Some(commands),
    }
}

/// The part assembler task, for multi-view stations: where judged views go,
/// and what stops it.
type PartsTask = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

fn start_parts(
    cfg: &StationConfig,
    store: &Store,
    publisher: &Publisher,
) -> (
    Option<mpsc::UnboundedSender<(String, record::View)>>,
    Option<PartsTask>,
) {
    if cfg.parts.views.is_empty() {
        return (None, None);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let assembler = crate::parts::Assembler::new(
        &cfg.station.station,
        cfg.parts.views.clone(),
        cfg.parts.view_timeout,
    );
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(crate::parts::serve(
        assembler,
        rx,
        stop,
        store.clone(),
        publisher.clone(),
    ));
    (Some(tx), Some((stop_tx, task)))
}

/// Takes arrivals until `shutdown` or until every source is gone, each
/// judged on its own task. A place in flight is taken before a frame is:
/// while the engine is stalled the loop waits here, and still sees the stop.
async fn take_frames(
    ctx: &Arc<Station>,
    rx: &mut mpsc::Receiver<Arrival>,
    in_flight: &Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => permit.expect("semaphore open"),
            _ = shutdown.changed() => return,
        };
        let arrival = tokio::select! {
            arrival = rx.recv() => match arrival {
                Some(arrival) => arrival,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        ctx.progress.received();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.handle(arrival).await;
            drop(permit);
        });
    }
}

/// What runs beside the frame loop, stopped in order by [`Running::stop`].
struct Running {
    parts: Option<PartsTask>,
    commands: tokio::task::JoinHandle<()>,
    monitor: tokio::task::JoinHandle<()>,
    delivery: Delivery,
    http: Option<tokio::task::JoinHandle<()>>,
    worker: worker::Workers,
}

impl Running {
    /// The one ordered stop, under one deadline inside systemd's
    /// TimeoutStopSec: cameras, then the frames queued and in flight, then
    /// parts still waiting for a view, then commands, the monitor, the
    /// publisher's last acknowledgements and the servers, then the engine.
    /// Each step takes what is left of the deadline; whatever has not
    /// finished by then is left (committed verdicts wait in the outbox for
    /// the next start).
    async fn stop(
        self,
        ctx: Arc<Station>,
        mut rx: mpsc::Receiver<Arrival>,
        in_flight: Arc<Semaphore>,
        stop_sources: &AtomicBool,
    ) {
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        // A step's own cap, never past the deadline.
        let until = |cap: Duration| deadline.min(tokio::time::Instant::now() + cap);
        tracing::info!(
            deadline_s = STOP_DEADLINE.as_secs(),
            "stopping: cameras first, then frames in flight, then MQTT"
        );
        let (scored, agreed) = ctx.score.snapshot();
        if scored > 0 {
            tracing::info!(
                parts = scored,
                agreed,
                "synthetic line: findings agreed with the drawn defects"
            );
        }
        crate::systemd::stopping();
        // Open line views end their streams now (and reconnect to the
        // next start by themselves).
        ctx.live.send(LiveEvent::Closing);
        stop_sources.store(true, Ordering::Relaxed);
        rx.close();
        let places = (ctx.cfg().batching.max_batch * 2) as u32;
        let queued = async {
            while let Ok(arrival) = rx.try_recv() {
                ctx.progress.received();
                ctx.handle(arrival).await;
            }
            let _ = in_flight.acquire_many(places).await;
        };
        // What is left after it is kept for publishing what was committed.
        let frames_until = deadline - Duration::from_secs(5);
        if tokio::time::timeout_at(frames_until, queued).await.is_err() {
            tracing::warn!("frames still in flight at the stop deadline are left unjudged");
        }
        // Parts still waiting for a view are decided now, naming what is missing.
        if let Some((stop, task)) = self.parts {
            let _ = stop.send(true);
            let _ = tokio::time::timeout_at(until(Duration::from_secs(10)), task).await;
        }
        // Give the drain a moment to hand over what was just committed.
        ctx.publisher.wake();
        tokio::time::sleep_until(until(Duration::from_millis(300))).await;
        self.commands.abort();
        let _ = self.commands.await;
        let _ = tokio::time::timeout_at(until(Duration::from_secs(10)), self.monitor).await;
        let _ = self.delivery.stop.send(true);
        if let Some(http) = self.http {
            http.abort();
        }
        let _ =
            tokio::time::timeout_at(until(Duration::from_secs(5)), self.delivery.publisher_task)
                .await;
        if let Some(task) = self.delivery.sparkplug_task {
            let _ = tokio::time::timeout_at(until(Duration::from_secs(5)), task).await;
        }
        let _ = tokio::time::timeout_at(until(Duration::from_secs(5)), async {
            let _changing = ctx.shadow.changing().await;
            ctx.shadow.stop().await
        })
        .await;
        drop(ctx);
        let worker = self.worker;
        let joined = tokio::task::spawn_blocking(move || worker.join());
        if tokio::time::timeout_at(deadline, joined).await.is_err() {
            tracing::warn!("the inference worker did not stop by the deadline; leaving it");
        }
    }
}

/// How long a stop may take in all, below the unit's `TimeoutStopSec=30s`
/// so that systemd never has to kill the process.
pub const STOP_DEADLINE: Duration = Duration::from_secs(25);

fn camera_map(cfg: &StationConfig) -> HashMap<String, Camera> {
    cfg.cameras
        .iter()
        .map(|c| (c.id.clone(), c.clone()))
        .collect()
}
