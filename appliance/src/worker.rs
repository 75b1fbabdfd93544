//! The engine's worker threads: ONNX Runtime never runs on the async runtime.
//!
//! Frames are preprocessed on the blocking pool (so that work overlaps the
//! model's), queued on a bounded channel, gathered into batches by the
//! [`Batcher`] and judged on dedicated threads that each own an engine
//! (`model.workers` of them, each with `model.intra_threads` ONNX Runtime
//! threads); each frame gets its answer on its own oneshot channel. One
//! worker at a time gathers a batch from the queue, so while one judges,
//! the next gathers and then judges beside it: on a small CPU, several
//! single-threaded workers keep every core on the model with less
//! contention than one worker whose operators are split across threads.
//!
//! Model reload is safe by construction: the new engines are loaded,
//! verified and warmed up beside the running ones, then handed to the
//! workers, each of which swaps its own in between two batches. Frames
//! already in a batch finish on the old model, every later batch runs on
//! the new one; no frame is dropped or judged twice, and a package that
//! fails to load leaves the running model untouched.
//!
//! The same worker also runs a candidate model in shadow mode (see
//! [`crate::shadow`]): [`Role::Candidate`] puts it on its own thread at a
//! lower CPU priority and keeps it out of the running model's telemetry and
//! fault injection.

use fusion::{Engine, Judgement, Request, Standard};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use vision::preprocess::{self, Crop, InputSpec};
use vision::Frame;

use crate::batcher::{Batcher, Queued};
use record::ModelRef;

/// One preprocessed frame to judge.
pub struct Job {
    pub tensor: Vec<f32>,
    pub standard: Arc<Standard>,
    /// The camera's calibration at the model's input (see
    /// [`fusion::Request::mm_per_input_px`]).
    pub mm_per_input_px: Option<f32>,
    /// The defects drawn on a synthetic part, in the model's input, for
    /// the stand-in engine.
    pub known: Option<Vec<fusion::Known>>,
    queued_at: Instant,
    /// The frame's span (see the pipeline): the batch that judges the frame
    /// follows from it, so a frame's log lines and its batch's can be joined.
    span: tracing::Span,
    reply: oneshot::Sender<Result<Judged, String>>,
}

impl Queued for Job {
    fn queued_at(&self) -> Instant {
        self.queued_at
    }
}

/// A judgement and the model that made it.
#[derive(Debug, Clone)]
pub struct Judged {
    pub judgement: Judgement,
    pub model: Arc<ModelRef>,
}

/// Why a job got no judgement.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("frame preprocessing failed: {0}")]
    Preprocess(String),
}

/// Why a reload did not happen; the running model stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("new model refused: {0:#}")]
    Load(anyhow::Error),
    #[error("new model failed its warm-up: {0}")]
    WarmUp(fusion::EngineError),
    #[error("the inference worker has stopped")]
    Stopped,
}

/// A loaded, warmed-up engine waiting to be swapped in.
struct Pending {
    engine: Engine,
    done: oneshot::Sender<()>,
}

/// The defects drawn on a synthetic part as the model's input sees them:
/// boxes relative to `crop`, those wholly outside it left out.
fn known(drawn: &[synth::DrawnDefect], crop: Crop) -> Vec<fusion::Known> {
    let (x, y) = (crop.x as f32, crop.y as f32);
    let (w, h) = (crop.width.max(1) as f32, crop.height.max(1) as f32);
    drawn
        .iter()
        .map(|d| {
            let b = d.box_px.map(|v| v as f32);
            fusion::Known {
                defect: d.kind.word().to_string(),
                box_norm: [
                    (b[0] - x) / w,
                    (b[1] - y) / h,
                    (b[2] - x) / w,
                    (b[3] - y) / h,
                ],
                size_mm: d.size_mm,
            }
        })
        .filter(|k| k.box_norm[2] > 0.0 && k.box_norm[3] > 0.0)
        .filter(|k| k.box_norm[0] < 1.0 && k.box_norm[1] < 1.0)
        .collect()
}

/// The model a verdict names: the package's, or "stand-in for" it when the
/// engine runs no graph, so no stored verdict passes for the model's.
pub fn model_ref(engine: &Engine) -> ModelRef {
    let m = &engine.package.manifest;
    ModelRef {
        name: if engine.is_stand_in() {
            format!("stand-in for {}", m.name)
        } else {
            m.name.clone()
        },
        version: m.version.clone(),
        sha256: engine.package.sha256.clone(),
    }
}

/// What a worker's engine is there for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The model whose verdicts are published: its batches are the engine
    /// metrics, and test faults apply to it.
    Running,
    /// A candidate in shadow mode: judged beside the running model at a
    /// lower CPU priority (nice 10, its ONNX Runtime threads included when
    /// they are made on its loader thread), counted only in its own figures.
    Candidate,
}

/// Batches remembered for [`Meter::recent_busy`].
pub const RECENT_BATCHES: usize = 200;

struct Shared {
    role: Role,
    /// The queue; the worker holding it gathers the next batch.
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    /// Frames judged and time spent judging them, for the candidate's cost.
    judged: AtomicU64,
    busy_us: AtomicU64,
    /// The same for each of the latest batches (frames, microseconds).
    recent: Mutex<std::collections::VecDeque<(u64, u64)>>,
    model: RwLock<Arc<ModelRef>>,
    spec: RwLock<InputSpec>,
    /// A new engine for each worker, by worker.
    pending: Mutex<Vec<Option<Pending>>>,
    /// Wakes each worker for its swap.
    wake: Vec<Notify>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    max_batch: usize,
    /// Workers waiting for work right now: a worker gathering a batch
    /// leaves them their share (see the batcher's doc).
    idle: AtomicUsize,
}

/// Sends frames to the worker and swaps its model.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl EngineHandle {
    /// Preprocesses a frame, queues it and waits for its judgement.
    /// `mm_per_px`: the camera's calibration in frame pixels, when it has one.
    pub async fn judge(
        &self,
        frame: &Frame,
        crop: Crop,
        standard: Arc<Standard>,
        mm_per_px: Option<f64>,
    ) -> Result<Judged, WorkerError> {
        let spec = *self.shared.spec.read().expect("spec lock");
        let image = frame.image.clone();
        let tensor =
            tokio::task::spawn_blocking(move || preprocess::to_tensor(&image, crop, &spec))
                .await
                .map_err(|e| WorkerError::Preprocess(e.to_string()))?;
        let scale = mm_per_px.map(|mm| crop.mm_per_input_px(mm, &spec));
        let known = frame.truth.as_deref().map(|drawn| known(drawn, crop));
        self.queue(tensor, standard, scale, known).await
    }

    /// Queues an already preprocessed frame and waits for its judgement.
    pub async fn judge_tensor(
        &self,
        tensor: Vec<f32>,
        standard: Arc<Standard>,
        mm_per_input_px: Option<f32>,
    ) -> Result<Judged, WorkerError> {
        self.queue(tensor, standard, mm_per_input_px, None).await
    }

    async fn queue(
        &self,
        tensor: Vec<f32>,
        standard: Arc<Standard>,
        mm_per_input_px: Option<f32>,
        known: Option<Vec<fusion::Known>>,
    ) -> Result<Judged, WorkerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                tensor,
                standard,
                mm_per_input_px,
                known,
                queued_at: Instant::now(),
                span: tracing::Span::current(),
                reply,
            })
            .await
            .map_err(|_| WorkerError::Stopped)?;
        rx.await
            .map_err(|_| WorkerError::Stopped)?
            .map_err(WorkerError::Inference)
    }

    /// The model judging new batches now.
    pub fn model(&self) -> Arc<ModelRef> {
        self.shared.model.read().expect("model lock").clone()
    }

    /// What the model expects as input.
    pub fn input_spec(&self) -> InputSpec {
        *self.shared.spec.read().expect("spec lock")
    }

    /// The engine's figures, for whoever watches its pace without sending
    /// it frames (holding a meter does not keep the worker alive).
    pub fn meter(&self) -> Meter {
        Meter {
            shared: self.shared.clone(),
        }
    }

    /// Frames waiting for the model.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Loads a new model with `load` (on the blocking pool, beside the running
    /// one), warms it up under `standards`, and swaps it in between two
    /// batches. Returns the new model's identity once it judges; on any
    /// failure the running model stays and the error says why.
    pub async fn reload<F>(
        &self,
        load: F,
        standards: Vec<Arc<Standard>>,
    ) -> Result<Arc<ModelRef>, ReloadError>
    where
        F: Fn() -> anyhow::Result<Engine> + Send + 'static,
    {
        let _one_at_a_time = self.shared.reloading.lock().await;
        let max_batch = self.shared.max_batch;
        let workers = self.shared.wake.len();
        let engines = tokio::task::spawn_blocking(move || {
            let refs: Vec<&Standard> = standards.iter().map(|s| s.as_ref()).collect();
            (0..workers)
                .map(|_| {
                    let mut engine = load().map_err(ReloadError::Load)?;
                    let took = engine
                        .warm_up(&refs, max_batch)
                        .map_err(ReloadError::WarmUp)?;
                    tracing::info!(model = %engine.package.manifest.name, version = %engine.package.manifest.version, warm_up_ms = took.as_millis() as u64, "new model loaded and warmed up");
                    Ok::<_, ReloadError>(engine)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ReloadError::Load(anyhow::anyhow!("model loader panicked: {e}")))?;
        let engines = match engines {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "model reload failed; the running model stays");
                return Err(e);
            }
        };
        let mut swapped = Vec::with_capacity(workers);
        {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            for (slot, engine) in pending.iter_mut().zip(engines) {
                let (done, rx) = oneshot::channel();
                *slot = Some(Pending { engine, done });
                swapped.push(rx);
            }
        }
        for wake in &self.shared.wake {
            wake.notify_one();
        }
        for rx in swapped {
            rx.await.map_err(|_| ReloadError::Stopped)?;
        }
        Ok(self.model())
    }
}

/// What the engine has done: frames judged and the time spent on them.
#[derive(Clone)]
pub struct Meter {
    shared: Arc<Shared>,
}

impl Meter {
    /// Frames judged so far and the engine's time spent on them.
    pub fn busy(&self) -> (u64, Duration) {
        (
            self.shared.judged.load(Ordering::Relaxed),
            Duration::from_micros(self.shared.busy_us.load(Ordering::Relaxed)),
        )
    }

    /// Frames judged and the engine's time spent on them over the latest
    /// [`RECENT_BATCHES`] batches: the engine's pace as it is now.
    pub fn recent_busy(&self) -> (u64, Duration) {
        let recent = self.shared.recent.lock().expect("recent lock");
        let (frames, us) = recent
            .iter()
            .fold((0, 0), |(f, u), (bf, bu)| (f + bf, u + bu));
        (frames, Duration::from_micros(us))
    }
}

/// The worker threads, to wait for at the stop.
pub struct Workers(Vec<std::thread::JoinHandle<()>>);

impl Workers {
    /// Waits for every worker; the first that panicked says so.
    pub fn join(self) -> std::thread::Result<()> {
        let mut first = Ok(());
        for t in self.0 {
            if let Err(e) = t.join() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Starts the worker threads of the running model, one per engine; they
/// end when every handle is dropped and the queue is empty. `runtime`
/// drives the batcher's timers.
pub fn spawn(
    engines: Vec<Engine>,
    batcher: Batcher,
    capacity: usize,
    runtime: tokio::runtime::Handle,
) -> (EngineHandle, Workers) {
    spawn_as(Role::Running, engines, batcher, capacity, runtime)
}

/// Starts a worker thread per engine for `role` (see [`spawn`]).
pub fn spawn_as(
    role: Role,
    engines: Vec<Engine>,
    batcher: Batcher,
    capacity: usize,
    runtime: tokio::runtime::Handle,
) -> (EngineHandle, Workers) {
    assert!(!engines.is_empty(), "a worker needs an engine");
    let engine = &engines[0];
    let (tx, rx) = mpsc::channel::<Job>(capacity.max(1));
    let shared = Arc::new(Shared {
        role,
        rx: tokio::sync::Mutex::new(rx),
        judged: AtomicU64::new(0),
        busy_us: AtomicU64::new(0),
        recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT_BATCHES)),
        model: RwLock::new(Arc::new(model_ref(engine))),
        spec: RwLock::new(engine.input_spec()),
        pending: Mutex::new(engines.iter().map(|_| None).collect()),
        wake: engines.iter().map(|_| Notify::new()).collect(),
        reloading: tokio::sync::Mutex::new(()),
        max_batch: batcher.max_batch,
        idle: AtomicUsize::new(0),
    });
    let name = match role {
        Role::Running => "inference",
        Role::Candidate => "shadow-inference",
    };
    let threads = engines
        .into_iter()
        .enumerate()
        .map(|(index, engine)| {
            let (worker, batcher, runtime) = (shared.clone(), batcher, runtime.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    if role == Role::Candidate {
                        lower_priority();
                    }
                    run(index, engine, batcher, worker, runtime)
                })
                .expect("spawning an inference thread")
        })
        .collect();
    (EngineHandle { tx, shared }, Workers(threads))
}

/// Lowers the calling thread's CPU priority to nice 10 (threads it starts
/// inherit it), so that a candidate model takes only the CPU the running
/// model leaves. Failing to is logged, not fatal.
pub fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers.
    let done = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if done != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the candidate model's CPU priority");
    }
}

enum Wake<'a> {
    /// The first job of a batch, with the queue to gather the rest from.
    Job(tokio::sync::MutexGuard<'a, mpsc::Receiver<Job>>, Job),
    Swap,
    Closed,
}

fn run(
    index: usize,
    mut engine: Engine,
    batcher: Batcher,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
) {
    let running = shared.role == Role::Running;
    let mut model = shared.model.read().expect("model lock").clone();
    loop {
        // Waiting for the queue (another worker may be gathering from it)
        // or for a job is given up for a swap; nothing is taken from the
        // queue unless it completes.
        shared.idle.fetch_add(1, Ordering::SeqCst);
        let wake = runtime.block_on(async {
            tokio::select! {
                biased;
                _ = shared.wake[index].notified() => Wake::Swap,
                (rx, job) = async {
                    let mut rx = shared.rx.lock().await;
                    let job = rx.recv().await;
                    (rx, job)
                } => match job {
                    Some(job) => Wake::Job(rx, job),
                    None => Wake::Closed,
                },
            }
        });
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        // A swap waits for the batch in hand to finish, never interrupts it.
        let swap = shared.pending.lock().expect("pending lock")[index].take();
        if let Some(p) = swap {
            let old = std::mem::replace(&mut engine, p.engine);
            model = Arc::new(model_ref(&engine));
            *shared.model.write().expect("model lock") = model.clone();
            *shared.spec.write().expect("spec lock") = engine.input_spec();
            // Said once per reload, not once per worker.
            if index == 0 {
                telemetry::Event::ModelSwapped {
                    from: &old.package.manifest.version,
                    to: &model.version,
                    sha256: &model.sha256,
                }
                .emit();
                crate::faults::model_swapped();
            }
            let _ = p.done.send(());
        }
        let (mut rx, first) = match wake {
            Wake::Job(rx, job) => (rx, job),
            Wake::Swap => continue,
            Wake::Closed => break,
        };
        let batch = runtime
            .block_on(batcher.fill_sharing(first, &mut rx, || shared.idle.load(Ordering::SeqCst)));
        drop(rx);
        let jobs = batch.items;
        let requests: Vec<Request> = jobs
            .iter()
            .map(|j| Request {
                image: &j.tensor,
                standard: &j.standard,
                mm_per_input_px: j.mm_per_input_px,
                known: j.known.as_deref(),
            })
            .collect();
        let span = tracing::debug_span!("batch", frames = jobs.len());
        for job in &jobs {
            span.follows_from(&job.span);
        }
        let _entered = span.enter();
        let started = std::time::Instant::now();
        if running {
            crate::faults::before_batch();
        }
        let result = engine.judge_batch(&requests);
        let busy = started.elapsed();
        shared
            .judged
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        shared
            .busy_us
            .fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
        {
            let mut recent = shared.recent.lock().expect("recent lock");
            if recent.len() == RECENT_BATCHES {
                recent.pop_front();
            }
            recent.push_back((jobs.len() as u64, busy.as_micros() as u64));
        }
        if running {
            telemetry::Event::BatchRun {
                frames: jobs.len(),
                busy,
            }
            .emit();
        }
        match result {
            Ok(mut judgements) => {
                let scripted = running.then(crate::faults::scripted_output).flatten();
                if let Some(tokens) = scripted {
                    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
                    for (j, job) in judgements.iter_mut().zip(&jobs) {
                        match engine.interpret_tokens(&tokens, &job.standard) {
                            Ok(scripted) => {
                                *j = fusion::Judgement {
                                    inference_ms: j.inference_ms,
                                    batch_size: j.batch_size,
                                    ..scripted
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "scripted model output refused"),
                        }
                    }
                }
                for (job, judgement) in jobs.into_iter().zip(judgements) {
                    let _ = job.reply.send(Ok(Judged {
                        judgement,
                        model: model.clone(),
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, frames = jobs.len(), "batch failed");
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
