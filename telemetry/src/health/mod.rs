//! The three health figures of the product promise, and what the station
//! does about them.
//!
//! - **Response latency**: p99 from capture to published verdict over
//!   `monitoring.latency_window`; alarms above `latency_threshold`.
//! - **Context loss**: the share of verdicts over `context_loss_window`
//!   where the model did not get or did not use the whole standard (its
//!   text cut to fit the model's window, the output stopped at the token
//!   limit, or a cited clause the standard does not have); alarms above
//!   `context_loss_threshold`.
//! - **Output consistency**: the lowest of three agreements over
//!   `consistency_window`: the golden set judged again against its expected
//!   verdicts, the views of multi-view parts with each other, and verdicts
//!   with their operator reviews; alarms below `consistency_threshold`.
//!
//! The pipeline records samples here through [`crate::Event`]s (a lock and
//! a push per verdict); the station's health monitor computes the figures
//! on a schedule from [`Inputs::recorded`] and publishes the [`Snapshot`]
//! that the panel, `/metrics` and the status topic read.

pub mod window;

use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use firmware_config::Monitoring;
use serde::Serialize;

use window::{Samples, Tally};

/// Longest a tally keeps a second when its figure is not evaluated (the
/// monitor forgets what falls out of each window as it evaluates).
const TALLY_MAX_AGE: Duration = Duration::from_secs(8 * 24 * 3600);

struct Recorders {
    /// When recording began: the oldest a cutoff can usefully be.
    epoch: Instant,
    latency: Samples,
    /// Capture to the model's judgement: tells a slow model from a slow
    /// broker or database.
    inference: Samples,
    context: Tally,
    views: Tally,
}

fn recorders() -> &'static Recorders {
    static R: OnceLock<Recorders> = OnceLock::new();
    R.get_or_init(|| Recorders {
        epoch: Instant::now(),
        latency: Samples::new(200_000),
        inference: Samples::new(200_000),
        context: Tally::new(TALLY_MAX_AGE),
        views: Tally::new(TALLY_MAX_AGE),
    })
}

/// No sample is older than this.
pub fn epoch() -> Instant {
    recorders().epoch
}

/// A verdict was handed to the broker `latency` after its capture.
pub(crate) fn published(latency: Duration) {
    recorders().latency.record(latency.as_secs_f64());
}

/// The model judged a frame `latency` after its capture.
pub(crate) fn inferred(latency: Duration) {
    recorders().inference.record(latency.as_secs_f64());
}

/// A verdict was decided; `lost` when the model lost part of the standard.
pub(crate) fn judged(lost: bool) {
    recorders().context.record(lost);
}

/// A multi-view part was decided; `agreed` when every view said the same.
pub(crate) fn views_decided(agreed: bool) {
    recorders().views.record(agreed);
}

/// The healer's state, as shown on the panel and the status topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Healthy,
    Alert,
    Escalated,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Healthy, Mode::Alert, Mode::Escalated];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Healthy => "healthy",
            Mode::Alert => "alert",
            Mode::Escalated => "escalated",
        }
    }
}

/// Which figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FigureName {
    Latency,
    ContextLoss,
    Consistency,
}

impl FigureName {
    pub const ALL: [FigureName; 3] = [
        FigureName::Latency,
        FigureName::ContextLoss,
        FigureName::Consistency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FigureName::Latency => "latency",
            FigureName::ContextLoss => "context_loss",
            FigureName::Consistency => "consistency",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Where a figure stands against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    Ok,
    Breached,
    /// Too few samples in the window to tell.
    Unknown,
}

/// One source of agreement within output consistency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agreement {
    pub source: &'static str,
    pub samples: u64,
    pub agreed: u64,
    pub value: Option<f64>,
}

impl Agreement {
    fn new(source: &'static str, samples: u64, agreed: u64) -> Self {
        Self {
            source,
            samples,
            agreed,
            value: (samples > 0).then(|| agreed as f64 / samples as f64),
        }
    }
}

/// A health figure at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figure {
    pub name: FigureName,
    /// Seconds for latency, a share (0..1) for the others.
    pub value: Option<f64>,
    pub threshold: f64,
    /// `true` when lower values are worse (consistency).
    pub lower_is_worse: bool,
    pub samples: u64,
    pub window_s: u64,
    pub standing: Standing,
    /// Consistency's sources; empty for the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Agreement>,
}

/// What the figures are computed from.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// Capture-to-publish seconds.
    pub latency: Vec<f64>,
    /// Capture-to-judgement seconds, over the same window.
    pub inference: Vec<f64>,
    /// `(verdicts, lost)`.
    pub context: (u64, u64),
    /// `(images, agreed)` of the latest golden-set run, if any.
    pub golden: Option<(u64, u64)>,
    /// `(parts, agreed)`.
    pub views: (u64, u64),
    /// `(reviews, agreed)`.
    pub reviews: (u64, u64),
}

impl Inputs {
    /// What the pipeline recorded after `cutoff(window)`, for each window.
    pub fn recorded(m: &Monitoring, cutoff: impl Fn(Duration) -> Instant) -> Self {
        let r = recorders();
        Inputs {
            latency: r.latency.since(cutoff(m.latency_window)),
            inference: r.inference.since(cutoff(m.latency_window)),
            context: r.context.since(cutoff(m.context_loss_window)),
            views: r.views.since(cutoff(m.consistency_window)),
            ..Default::default()
        }
    }
}

fn standing(
    value: Option<f64>,
    samples: u64,
    min: u64,
    breached: impl Fn(f64) -> bool,
) -> Standing {
    match value {
        Some(v) if samples >= min => {
            if breached(v) {
                Standing::Breached
            } else {
                Standing::Ok
            }
        }
        _ => Standing::Unknown,
    }
}

/// The three figures from `inputs` under `m`'s thresholds. A golden set
/// counts whatever its size (it is the operator's own choice of parts);
/// the other sources need `min_samples`.
pub fn figures(m: &Monitoring, inputs: &Inputs) -> [Figure; 3] {
    let latency = {
        let n = inputs.latency.len() as u64;
        let value = window::quantile(inputs.latency.clone(), 0.99);
        let t = m.latency_threshold.as_secs_f64();
        Figure {
            name: FigureName::Latency,
            value,
            threshold: t,
            lower_is_worse: false,
            samples: n,
            window_s: m.latency_window.as_secs(),
            standing: standing(value, n, m.min_samples, |v| v > t),
            sources: Vec::new(),
        }
    };
    let context = {
        let (n, lost) = inputs.context;
        let value = (n > 0).then(|| lost as f64 / n as f64);
        let t = m.context_loss_threshold;
        Figure {
            name: FigureName::ContextLoss,
            value,
            threshold: t,
            lower_is_worse: false,
            samples: n,
            window_s: m.context_loss_window.as_secs(),
            standing: standing(value, n, m.min_samples, |v| v > t),
            sources: Vec::new(),
        }
    };
    let consistency = {
        let t = m.consistency_threshold;
        let golden = inputs.golden.map(|(n, a)| Agreement::new("golden", n, a));
        let views = Agreement::new("multi_view", inputs.views.0, inputs.views.1);
        let reviews = Agreement::new("reviews", inputs.reviews.0, inputs.reviews.1);
        // Each source stands on its own; the figure is the worst that can
        // be told.
        let told: Vec<&Agreement> = golden
            .iter()
            .filter(|g| g.samples > 0)
            .chain(
                [&views, &reviews]
                    .into_iter()
                    .filter(|a| a.samples >= m.min_samples),
            )
            .collect();
        let worst = told.iter().filter_map(|a| a.value).min_by(f64::total_cmp);
        let samples = told.iter().map(|a| a.samples).sum();
        let value = worst.or_else(|| {
            // Nothing to tell yet: show the pooled share of what there is.
            let all = [golden.as_ref(), Some(&views), Some(&reviews)];
            let (n, a) = all
                .iter()
                .flatten()
                .fold((0, 0), |(n, a), s| (n + s.samples, a + s.agreed));
            (n > 0).then(|| a as f64 / n as f64)
        });
        Figure {
            name: FigureName::Consistency,
            value,
            threshold: t,
            lower_is_worse: true,
            samples,
            window_s: m.consistency_window.as_secs(),
            standing: match worst {
                Some(v) if v < t => Standing::Breached,
                Some(_) => Standing::Ok,
                None => Standing::Unknown,
            },
            sources: golden.into_iter().chain([views, reviews]).collect(),
        }
    };
    [latency, context, consistency]
}

/// The station's health now: what the panel, `/api/v1/health` and the
/// status topic show.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub at: String,
    pub state: Mode,
    /// Figures alerted on and not yet recovered.
    pub alerting: Vec<FigureName>,
    /// Reloads since the alert began.
    pub reloads: u32,
    pub figures: Vec<Figure>,
}

fn current() -> &'static RwLock<Option<Snapshot>> {
    static C: OnceLock<RwLock<Option<Snapshot>>> = OnceLock::new();
    C.get_or_init(|| RwLock::new(None))
}

/// The latest snapshot, once the monitor has computed one.
pub fn snapshot() -> Option<Snapshot> {
    current().read().expect("health lock").clone()
}

pub fn set_snapshot(s: Snapshot) {
    *current().write().expect("health lock") = Some(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitoring() -> Monitoring {
        let mut loader = firmware_config::Loader::without_env(None);
        loader.check_files = false;
        let cfg = loader.load().unwrap();
        Monitoring {
            min_samples: 10,
            ..cfg.monitoring
        }
    }

    #[test]
    fn each_figure_crosses_its_threshold_on_the_right_side() {
        let m = monitoring();
        let mut i = Inputs {
            latency: vec![0.2; 100],
            inference: Vec::new(),
            context: (100, 5),
            golden: Some((10, 10)),
            views: (0, 0),
            reviews: (20, 19),
        };
        let f = figures(&m, &i);
        assert_eq!(f.each_ref().map(|f| f.standing), [Standing::Ok; 3]);
        assert_eq!(f[2].value, Some(0.95));

        i.latency[99] = 5.0; // one slow part in a hundred is the p99's own
        i.latency[98] = 5.0;
        i.context = (100, 6);
        i.golden = Some((10, 8));
        let f = figures(&m, &i);
        assert_eq!(f.each_ref().map(|f| f.standing), [Standing::Breached; 3]);
        assert_eq!(f[0].value, Some(5.0));
        assert_eq!(f[2].value, Some(0.8));
    }

    #[test]
    fn too_few_samples_tell_nothing() {
        let m = monitoring();
        let i = Inputs {
            latency: vec![9.0; 3],
            inference: Vec::new(),
            context: (3, 3),
            golden: None,
            views: (2, 0),
            reviews: (0, 0),
        };
        let f = figures(&m, &i);
        assert_eq!(f.each_ref().map(|f| f.standing), [Standing::Unknown; 3]);
        assert_eq!(f[2].value, Some(0.0), "the pooled share is still shown");
    }
}
