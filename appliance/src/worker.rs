//! The engine's worker thread: ONNX Runtime never runs on the async runtime.
//!
//! Jobs arrive on a bounded channel; the worker gathers a batch (up to
//! `max_batch`, or whatever arrived within `max_wait` of the first job),
//! preprocesses, runs the engine per standard, and answers each job on its
//! own oneshot channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion::{Engine, Judgement, Standard};
use tokio::sync::{mpsc, oneshot};
use vision::preprocess::{self, Crop};
use vision::Frame;

/// One frame to judge.
pub struct Job {
    pub frame: Frame,
    pub crop: Crop,
    pub standard: Arc<Standard>,
    pub reply: oneshot::Sender<Result<Judgement, String>>,
}

/// Why a job got no judgement.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Sends jobs to the worker.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    /// Model identity, for verdict records.
    pub model: crate::verdict::ModelRef,
}

impl EngineHandle {
    /// Queues a frame and waits for its judgement.
    pub async fn judge(
        &self,
        frame: Frame,
        crop: Crop,
        standard: Arc<Standard>,
    ) -> Result<Judgement, WorkerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                frame,
                crop,
                standard,
                reply,
            })
            .await
            .map_err(|_| WorkerError::Stopped)?;
        rx.await
            .map_err(|_| WorkerError::Stopped)?
            .map_err(WorkerError::Inference)
    }

    /// Frames waiting for the model.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Starts the worker thread; it ends when every handle is dropped.
pub fn spawn(
    mut engine: Engine,
    max_batch: usize,
    max_wait: Duration,
    capacity: usize,
) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
    let m = &engine.package.manifest;
    let model = crate::verdict::ModelRef {
        name: m.name.clone(),
        version: m.version.clone(),
        sha256: engine.package.sha256.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || {
            let spec = engine.input_spec();
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                let deadline = Instant::now() + max_wait;
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_micros(500))
                        }
                        Err(_) => break,
                    }
                }
                // One engine call per standard in the batch.
                while !batch.is_empty() {
                    let sha = batch[0].standard.sha256.clone();
                    let (group, rest): (Vec<Job>, Vec<Job>) =
                        batch.into_iter().partition(|j| j.standard.sha256 == sha);
                    batch = rest;
                    let standard = group[0].standard.clone();
                    let tensors: Vec<Vec<f32>> = group
                        .iter()
                        .map(|j| preprocess::to_tensor(&j.frame.image, j.crop, &spec))
                        .collect();
                    match engine.judge(&tensors, &standard) {
                        Ok(judgements) => {
                            for (job, j) in group.into_iter().zip(judgements) {
                                let _ = job.reply.send(Ok(j));
                            }
                        }
                        Err(e) => {
                            for job in group {
                                let _ = job.reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            }
        })
        .expect("spawning the inference thread");
    (EngineHandle { tx, model }, thread)
}
