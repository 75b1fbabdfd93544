//! What happened to a frame, a verdict, the model or the broker, said once.
//!
//! Each event writes everything that is measured about it in one place: its
//! metric in the registry, its health sample, and its log line. Call sites
//! say *what happened* (`Event::VerdictCommitted { .. }.emit()`), never how
//! it is counted, so a new figure or a renamed metric is a change here and
//! nowhere else.

use std::time::{Duration, SystemTime};

use record::Decision;

use crate::health;
use crate::metrics::{self, Info, Stage};

/// One thing worth counting.
#[derive(Debug)]
pub enum Event<'a> {
    /// A frame (or a file that did not decode) from `camera` reached the
    /// pipeline.
    FrameArrived { camera: &'a str },
    /// A frame or file could not be judged; it is kept as an ingest error.
    FrameRejected {
        camera: &'a str,
        source: &'a str,
        reason: &'a str,
    },
    /// A frame was handed to the engine.
    FrameQueued { captured: SystemTime },
    /// The engine judged a frame; `context_lost` when the model did not get
    /// or did not use the whole standard.
    FrameInferred {
        captured: SystemTime,
        context_lost: bool,
    },
    /// The engine gave no judgement for a frame (the frame is then
    /// rejected).
    FrameFailed { captured: SystemTime },
    /// The engine ran one batch of `frames` frames in `busy`.
    BatchRun { frames: usize, busy: Duration },
    /// A verdict and its outbox rows were committed to the store; `commit`
    /// is how long the commit took, waiting for its turn included.
    VerdictCommitted {
        id: &'a str,
        camera: &'a str,
        decision: Decision,
        findings: usize,
        captured: SystemTime,
        commit: Duration,
    },
    /// A verdict was handed to the broker.
    VerdictPublished { captured: SystemTime },
    /// A multi-view part was decided. `views_agreed` tells whether every
    /// view said the same, where at least two views were judged and none is
    /// missing (otherwise there is nothing to compare).
    PartDecided {
        part: &'a str,
        decision: Decision,
        missing: usize,
        views_agreed: Option<bool>,
    },
    /// The broker connection came up or went down.
    BrokerConnection { up: bool },
    /// The model or standard in use changed (also said at start).
    InUse(Info),
    /// The worker swapped a new model in between two batches.
    ModelSwapped {
        from: &'a str,
        to: &'a str,
        sha256: &'a str,
    },
    /// Self-healing started a model reload.
    ReloadStarted,
}

impl Event<'_> {
    /// Records the event: metric, health sample and log line.
    pub fn emit(self) {
        match self {
            Event::FrameArrived { camera } => metrics::frame_in(camera),
            Event::FrameRejected {
                camera,
                source,
                reason,
            } => {
                tracing::warn!(camera, source, reason, "frame rejected");
                metrics::rejected();
            }
            Event::FrameQueued { captured } => {
                metrics::stage(Stage::Queued, captured);
                metrics::in_engine(1);
            }
            Event::FrameInferred {
                captured,
                context_lost,
            } => {
                metrics::in_engine(-1);
                metrics::stage(Stage::Inference, captured);
                health::inferred(since(captured));
                health::judged(context_lost);
            }
            Event::FrameFailed { .. } => metrics::in_engine(-1),
            Event::BatchRun { frames, busy } => metrics::batch(frames, busy),
            Event::VerdictCommitted {
                id,
                camera,
                decision,
                findings,
                captured,
                commit,
            } => {
                metrics::stage(Stage::Decided, captured);
                metrics::commit(commit);
                metrics::verdict(decision);
                // Every verdict is stored and published; the log keeps it
                // only at debug level (at 150 parts/s an info line each
                // cost 8% of throughput).
                tracing::debug!(verdict = id, camera, decision = %decision, findings, "verdict");
            }
            Event::VerdictPublished { captured } => {
                metrics::stage(Stage::Published, captured);
                health::published(since(captured));
            }
            Event::PartDecided {
                part,
                decision,
                missing,
                views_agreed,
            } => {
                tracing::debug!(part, decision = %decision, missing, views_agreed, "part decided");
                if let Some(agreed) = views_agreed {
                    health::views_decided(agreed);
                }
            }
            Event::BrokerConnection { up } => metrics::mqtt_connected(up),
            Event::InUse(info) => metrics::set_info(info),
            Event::ModelSwapped { from, to, sha256 } => {
                tracing::info!(from, to, sha256, "model swapped");
            }
            Event::ReloadStarted => {
                tracing::info!("self-healing reloads the model");
                metrics::reload_started();
            }
        }
    }
}

fn since(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is process-wide, so this test reads differences.
    #[test]
    fn one_verdict_counts_once_in_the_metric_and_once_in_health() {
        let captured = SystemTime::now() - Duration::from_millis(50);
        let before = metrics::progress();
        let lat_before = health::Inputs::recorded(&monitoring(), |_| health::epoch())
            .latency
            .len();
        Event::FrameQueued { captured }.emit();
        Event::FrameInferred {
            captured,
            context_lost: false,
        }
        .emit();
        Event::VerdictCommitted {
            id: "v",
            camera: "top",
            decision: Decision::Fail,
            findings: 1,
            captured,
            commit: Duration::from_millis(3),
        }
        .emit();
        Event::VerdictPublished { captured }.emit();
        let after = metrics::progress();
        assert_eq!(after.verdicts - before.verdicts, 1);
        for stage in 0..4 {
            let n = |p: &metrics::Progress| p.stages[stage].iter().sum::<u64>();
            assert_eq!(n(&after) - n(&before), 1, "stage {stage}");
        }
        let lat = health::Inputs::recorded(&monitoring(), |_| health::epoch()).latency;
        assert_eq!(lat.len() - lat_before, 1);
        assert!(lat.iter().any(|s| *s >= 0.05));
    }

    fn monitoring() -> firmware_config::Monitoring {
        let mut loader = firmware_config::Loader::without_env(None);
        loader.check_files = false;
        loader.load().unwrap().monitoring
    }
}
