//! Shadow mode: a candidate model judges every frame the running model
//! judges, on the live line, before it decides anything for real.
//!
//! Only the running model's verdicts are stored as verdicts and published.
//! The candidate's judgement of the same frame (same crop, calibration and
//! standard, held to the standard by the same consistency check) is kept
//! beside it in the store (`store::shadow`), where the panel counts the two
//! models' agreement and lists each disagreement for review. "Promote"
//! swaps the candidate in through the station's safe reload.
//!
//! The candidate must never hold up the line: it runs on its own worker
//! thread at a lower CPU priority ([`worker::Role::Candidate`]), sees a
//! frame only after that frame's verdict is committed, has a bounded
//! number of frames in flight, and gets none while frames wait for the
//! running model (the line is at capacity); a frame it cannot take is
//! skipped and counted, never waited for. What it costs is measured as it runs: its own
//! engine time per frame, and the running model's engine time per frame
//! before and since it started.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmware_config::{Precision, StationConfig};
use fusion::Standard;
use record::{ModelRef, ShadowVerdict, Verdict};
use review_web::line::CandidateState;
use tokio::sync::Semaphore;
use vision::preprocess::Crop;
use vision::Frame;

use crate::batcher::Batcher;
use crate::commands::ControlError;
use crate::verdict::{self, Geometry};
use crate::worker::{self, EngineHandle, Meter, Role};

/// The station's configuration with its model package replaced by
/// `package` at `precision`: how a candidate is loaded, and how a promoted
/// one is reloaded.
pub fn with_package(
    cfg: &StationConfig,
    package: &std::path::Path,
    precision: Precision,
) -> StationConfig {
    let mut cfg = cfg.clone();
    cfg.model.package = package.to_path_buf();
    cfg.model.precision = precision;
    cfg
}

/// A candidate model in shadow mode.
struct Candidate {
    model: Arc<ModelRef>,
    package: PathBuf,
    precision: Precision,
    /// When it started (RFC 3339) and the monotonic clock then.
    since: String,
    started: Instant,
    /// Taken when it stops; compare tasks hold clones until they finish.
    engine: Mutex<Option<EngineHandle>>,
    thread: Mutex<Option<worker::Workers>>,
    /// Frames in flight on the candidate; a frame finding none free is skipped.
    room: Arc<Semaphore>,
    places: u32,
    /// The running model's engine figures when the candidate started:
    /// over its latest batches (its pace before), and in all (to tell its
    /// pace since).
    running_before: (u64, Duration),
    running_at_start: (u64, Duration),
    offered: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
}

impl Candidate {
    fn engine(&self) -> Option<EngineHandle> {
        self.engine.lock().expect("candidate engine lock").clone()
    }
}

/// A candidate that stopped: what it was and how many frames it saw.
#[derive(Debug, Clone)]
pub struct Retired {
    pub model: Arc<ModelRef>,
    pub package: PathBuf,
    pub precision: Precision,
    pub offered: u64,
    pub skipped: u64,
}

/// The station's shadow slot: empty, or one candidate.
#[derive(Default)]
pub struct Shadow {
    slot: Mutex<Option<Arc<Candidate>>>,
    /// One start, stop or promotion at a time.
    changing: tokio::sync::Mutex<()>,
}

impl Shadow {
    fn current(&self) -> Option<Arc<Candidate>> {
        self.slot.lock().expect("shadow lock").clone()
    }

    /// Held while a candidate is started, stopped or promoted.
    pub async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    /// Loads `package` at `precision` as the candidate (verified, warmed up
    /// under `standard`, on a thread at lower priority so that its ONNX
    /// Runtime threads inherit it) and starts comparing. Refused while
    /// another candidate runs, or when the candidate is the running model.
    /// The caller holds [`Shadow::changing`].
    pub async fn start(
        &self,
        cfg: &StationConfig,
        package: PathBuf,
        precision: Precision,
        standard: Arc<Standard>,
        running: &EngineHandle,
        running_precision: Precision,
    ) -> Result<Arc<ModelRef>, ControlError> {
        if let Some(c) = self.current() {
            return Err(ControlError::conflict(format!(
                "candidate {} {} is already in shadow mode; stop or promote it first",
                c.model.name, c.model.version
            )));
        }
        let cfg = with_package(cfg, &package, precision);
        let (max_batch, max_wait) = (cfg.batching.max_batch, cfg.batching.max_wait);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("shadow-loader".into())
            .spawn(move || {
                worker::lower_priority();
                let loaded = crate::pipeline::load_engine(&cfg).and_then(|mut engine| {
                    engine.warm_up(&[&standard], max_batch)?;
                    Ok(engine)
                });
                let _ = tx.send(loaded);
            })
            .map_err(|e| {
                ControlError::failed(format!("cannot start the candidate's loader: {e}"))
            })?;
        let engine = rx
            .await
            .map_err(|_| ControlError::failed("the candidate's loader panicked"))?
            .map_err(|e| ControlError::failed(format!("candidate refused: {e:#}")))?;
        let model = Arc::new(crate::worker::model_ref(&engine));
        if model.sha256 == running.model().sha256 && precision == running_precision {
            return Err(ControlError::conflict(format!(
                "the candidate is the running model ({} {}, model.toml sha256 {}); nothing to compare",
                model.name, model.version, model.sha256
            )));
        }
        let places = (max_batch * 2) as u32;
        let (handle, thread) = worker::spawn_as(
            Role::Candidate,
            vec![engine],
            Batcher::new(max_batch, max_wait),
            places as usize,
            tokio::runtime::Handle::current(),
        );
        let candidate = Candidate {
            model: model.clone(),
            package,
            precision,
            since: record::time::now(),
            started: Instant::now(),
            engine: Mutex::new(Some(handle)),
            thread: Mutex::new(Some(thread)),
            room: Arc::new(Semaphore::new(places as usize)),
            places,
            running_before: running.meter().recent_busy(),
            running_at_start: running.meter().busy(),
            offered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        };
        *self.slot.lock().expect("shadow lock") = Some(Arc::new(candidate));
        tracing::info!(candidate = %model.name, version = %model.version, sha256 = %model.sha256, "shadow mode started");
        Ok(model)
    }

    /// Stops comparing: no frame is offered any more, the frames in flight
    /// on the candidate finish and are stored, and its worker ends. `None`
    /// when no candidate runs. The caller holds [`Shadow::changing`].
    pub async fn stop(&self) -> Option<Retired> {
        let c = self.slot.lock().expect("shadow lock").take()?;
        let _all = c.room.acquire_many(c.places).await;
        drop(c.engine.lock().expect("candidate engine lock").take());
        let thread = c.thread.lock().expect("candidate thread lock").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!(candidate = %c.model.name, version = %c.model.version, offered = c.offered.load(Ordering::Relaxed), "shadow mode stopped");
        Some(Retired {
            model: c.model.clone(),
            package: c.package.clone(),
            precision: c.precision,
            offered: c.offered.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
        })
    }

    /// Whether a candidate runs (a frame is worth offering).
    pub fn active(&self) -> bool {
        self.slot.lock().expect("shadow lock").is_some()
    }

    /// Gives the candidate the frame of the committed verdict `v`, if a
    /// candidate runs, has room, and the line leaves it time: with frames
    /// waiting for the running model (`running_waiting` > 0) the line is at
    /// capacity and the frame is skipped. Its judgement is stored in the
    /// background. Never waits.
    pub fn offer(&self, shown: Shown, store: &store::Store, running_waiting: usize) {
        let Some(c) = self.current() else { return };
        c.offered.fetch_add(1, Ordering::Relaxed);
        let place = match c.room.clone().try_acquire_owned() {
            Ok(place) if running_waiting == 0 => place,
            _ => {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Some(engine) = c.engine() else { return };
        let store = store.clone();
        tokio::spawn(async move {
            let judged = engine
                .judge(
                    &shown.frame,
                    shown.crop,
                    shown.standard,
                    Some(shown.geometry.mm_per_px),
                )
                .await;
            drop(engine);
            let stored = match judged {
                Ok(judged) => {
                    let s = compared(&shown.verdict, &judged, shown.geometry);
                    store::shadow::record(&store, &s)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = stored {
                c.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(verdict = %shown.verdict.id, error = %e, "the candidate's judgement was not kept");
            }
            drop(place);
        });
    }

    /// The package sha256 of the candidate running now.
    pub fn candidate_sha256(&self) -> Option<String> {
        self.current().map(|c| c.model.sha256.clone())
    }

    /// What the panel shows of the candidate running now; `running` meters
    /// the running model's engine.
    pub fn state(&self, running: &Meter) -> Option<CandidateState> {
        let c = self.current()?;
        let (judged, busy) = c.engine().map(|e| e.meter().busy()).unwrap_or_default();
        let (now_n, now_busy) = running.busy();
        let (before_n, before_busy) = c.running_before;
        let (start_n, start_busy) = c.running_at_start;
        let per_frame =
            |busy: Duration, n: u64| (n > 0).then(|| busy.as_secs_f64() * 1e3 / n as f64);
        Some(CandidateState {
            name: c.model.name.clone(),
            version: c.model.version.clone(),
            sha256: c.model.sha256.clone(),
            package: c.package.display().to_string(),
            precision: match c.precision {
                Precision::Fp32 => "fp32",
                Precision::Int8 => "int8",
            }
            .into(),
            since: c.since.clone(),
            offered: c.offered.load(Ordering::Relaxed),
            judged,
            skipped: c.skipped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            candidate_ms_per_frame: per_frame(busy, judged),
            running_ms_before: per_frame(before_busy, before_n),
            running_ms_since: per_frame(now_busy.saturating_sub(start_busy), now_n - start_n),
            busy_share: busy.as_secs_f64() / c.started.elapsed().as_secs_f64().max(1e-9),
        })
    }
}

/// A frame as the running model saw it, with its committed verdict.
pub struct Shown {
    pub verdict: Verdict,
    pub frame: Frame,
    pub crop: Crop,
    pub geometry: Geometry,
    pub standard: Arc<Standard>,
}

/// The candidate's judgement as a shadow record: findings placed on the
/// frame and the decision held to the standard, exactly as the running
/// model's verdict was built.
fn compared(v: &Verdict, judged: &worker::Judged, geometry: Geometry) -> ShadowVerdict {
    let findings = verdict::findings_in_frame(&judged.judgement, geometry);
    let (decision, review_reason) = verdict::held_to_standard(&judged.judgement, &findings);
    ShadowVerdict {
        schema: record::SHADOW_SCHEMA.into(),
        verdict_id: v.id.clone(),
        station: v.station.station.clone(),
        candidate: (*judged.model).clone(),
        decision,
        confidence: judged.judgement.confidence,
        review_reason,
        findings,
        running_decision: v.decision,
        inference_ms: judged.judgement.inference_ms,
        judged_at: record::time::now(),
    }
}
