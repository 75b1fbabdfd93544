//! The monitor task: every `monitoring.evaluate_every` it computes the three
//! figures, runs the golden set when it is due, lets the [`Healer`] decide,
//! carries out its actions (alert, reload, escalate, recover) and keeps the
//! history the panel draws.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use firmware_config::StationConfig;
use fusion::Standard;
use tokio::sync::{watch, Notify};

use super::golden;
use super::healer::{Action, Healer, Rules};
use crate::worker::EngineHandle;
use store::health_history::{self, Event, Sample};
use telemetry::health::{self, figures, Figure, Inputs, Snapshot};

/// History older than this is pruned.
const KEEP_HISTORY: Duration = Duration::from_secs(90 * 24 * 3600);

type Fut<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the monitor needs from the running station.
pub trait Station: Send + Sync {
    /// The configuration in force now (it may be reloaded).
    fn config(&self) -> Arc<StationConfig>;
    /// The standard of the active recipe.
    fn standard(&self) -> Arc<Standard>;
    fn engine(&self) -> &EngineHandle;
    fn store(&self) -> &store::Store;
    /// The engine's safe reload; the new model's name and version.
    fn reload_model(&self) -> Fut<'_, Result<String, String>>;
    /// The health snapshot changed state: announce it (status topic).
    fn health_changed(&self) -> Fut<'_, ()>;
}

/// The latest golden run of the active recipe.
struct GoldenRun {
    at: Instant,
    recipe: String,
    judged: u64,
    agreed: u64,
}

pub struct Monitor<S: Station> {
    station: Arc<S>,
    healer: Healer,
    /// Figures count only what was judged after this (the last reload).
    fresh_since: Option<(Instant, SystemTime)>,
    golden: Option<GoldenRun>,
    /// When the golden set was last tried, and for which recipe (a set that
    /// cannot be read is tried again at the next `golden_every`, not at
    /// every evaluation).
    golden_tried: Option<(Instant, String)>,
    /// Set to run the golden set at the next evaluation.
    pub golden_now: Arc<Notify>,
    last_history: Option<(Instant, telemetry::metrics::Progress)>,
    /// p99 from capture to the model's judgement, at the last evaluation.
    inference_p99: Option<f64>,
    last_prune: Option<Instant>,
}

impl<S: Station + 'static> Monitor<S> {
    /// `golden_now` asks for a golden run at the next evaluation (the
    /// station pokes it on a recipe switch or configuration reload).
    pub fn new(station: Arc<S>, golden_now: Arc<Notify>) -> Self {
        Self {
            station,
            healer: Healer::default(),
            fresh_since: None,
            golden: None,
            golden_tried: None,
            golden_now,
            last_history: None,
            inference_p99: None,
            last_prune: None,
        }
    }

    /// Evaluates until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut forced = true;
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.evaluate(forced).await;
            let every = self.station.config().monitoring.evaluate_every;
            tokio::select! {
                _ = tokio::time::sleep(every) => forced = false,
                _ = self.golden_now.notified() => forced = true,
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn run_golden(&mut self, cfg: &StationConfig, forced: bool) {
        let standard = self.station.standard();
        let Some(dir) = cfg.recipe(&standard.recipe).and_then(|r| r.golden.clone()) else {
            self.golden = None;
            return;
        };
        let due = forced
            || match &self.golden_tried {
                Some((at, recipe)) => {
                    *recipe != standard.recipe || at.elapsed() >= cfg.monitoring.golden_every
                }
                None => true,
            };
        if !due {
            return;
        }
        self.golden_tried = Some((Instant::now(), standard.recipe.clone()));
        let cameras = cfg
            .cameras
            .iter()
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        let outcome = match tokio::task::spawn_blocking(move || golden::load(&dir, &cameras)).await
        {
            Ok(Ok(parts)) => golden::judge(&parts, self.station.engine(), standard.clone()).await,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("golden-set loader panicked: {e}")),
        };
        match outcome {
            Ok(o) => {
                if o.disagreements.is_empty() {
                    tracing::info!(recipe = %o.recipe, parts = o.judged, "golden set agreed");
                } else {
                    tracing::warn!(recipe = %o.recipe, parts = o.judged, agreed = o.agreed, disagreements = ?o.disagreements, "golden set disagreed");
                }
                let detail = if o.disagreements.is_empty() {
                    format!(
                        "{} of {} golden parts agreed ({})",
                        o.agreed, o.judged, o.recipe
                    )
                } else {
                    format!(
                        "{} of {} golden parts agreed ({}); {}",
                        o.agreed,
                        o.judged,
                        o.recipe,
                        o.disagreements.join("; ")
                    )
                };
                self.event(Event::new("golden", None, detail)).await;
                self.golden = Some(GoldenRun {
                    at: Instant::now(),
                    recipe: o.recipe,
                    judged: o.judged,
                    agreed: o.agreed,
                });
            }
            Err(e) => {
                tracing::error!(recipe = %standard.recipe, error = %format!("{e:#}"), "golden set not judged");
                self.event(Event::new("golden_error", None, format!("{e:#}")))
                    .await;
                self.golden = None;
            }
        }
    }

    async fn event(&self, e: Event) {
        if let Err(err) = health_history::write_event(self.station.store(), &e).await {
            tracing::warn!(error = %err, kind = %e.kind, "cannot store health event");
        }
    }

    /// One evaluation: figures, healing, snapshot, history.
    pub async fn evaluate(&mut self, forced_golden: bool) {
        let cfg = self.station.config();
        let m = &cfg.monitoring;
        self.run_golden(&cfg, forced_golden).await;
        let now = Instant::now();
        let wall = SystemTime::now();
        let fresh = self.fresh_since;
        let cutoff = |w: Duration| {
            since_reload(
                now.checked_sub(w).unwrap_or_else(health::epoch),
                fresh.map(|f| f.0),
            )
        };
        let mut inputs = Inputs::recorded(m, cutoff);
        inputs.golden = self
            .golden
            .as_ref()
            .filter(|g| fresh.is_none_or(|(t, _)| g.at >= t))
            .filter(|g| g.recipe == self.station.standard().recipe)
            .map(|g| (g.judged, g.agreed));
        let reviews_since = since_reload(
            wall.checked_sub(m.consistency_window)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            fresh.map(|f| f.1),
        );
        match health_history::review_agreement(
            self.station.store(),
            &record::time::of(reviews_since),
        )
        .await
        {
            Ok(r) => inputs.reviews = r,
            Err(e) => tracing::warn!(error = %e, "cannot read review agreement"),
        }
        self.inference_p99 = health::window::quantile(std::mem::take(&mut inputs.inference), 0.99);
        let figures = figures(m, &inputs);
        let before = self.healer.standing();
        let actions = self.healer.step(&figures, Rules::from_config(m), now);
        for action in actions {
            self.act(action, m.latency_threshold).await;
        }
        let snapshot = Snapshot {
            at: record::time::now(),
            state: self.healer.mode(),
            alerting: self.healer.alerting(),
            reloads: self.healer.reloads(),
            figures: figures.to_vec(),
        };
        let first = health::snapshot().is_none();
        health::set_snapshot(snapshot.clone());
        if first || before != self.healer.standing() {
            self.station.health_changed().await;
        }
        self.write_history(&cfg, &snapshot).await;
    }

    /// Latency alone is alarming, and the model itself keeps within the
    /// threshold: the time goes to storage or the broker (a backlog after an
    /// outage), which a model reload cannot cure.
    fn slow_after_the_model(&self, threshold: Duration) -> Option<f64> {
        let only_latency = self.healer.alerting() == [health::FigureName::Latency];
        self.inference_p99
            .filter(|p| only_latency && *p <= threshold.as_secs_f64())
    }

    async fn act(&mut self, action: Action, latency_threshold: Duration) {
        match action {
            Action::Alert(f) => {
                tracing::warn!(figure = f.name.as_str(), value = ?f.value, threshold = f.threshold, samples = f.samples, "health alert: figure beyond its threshold");
                self.event(Event::new("alert", Some(&f), describe(&f)))
                    .await;
            }
            Action::Reload { attempt } => {
                if let Some(p99) = self.slow_after_the_model(latency_threshold) {
                    tracing::warn!(attempt, inference_p99_s = p99, "latency is spent after the model (storage or broker); not reloading the model");
                    self.healer.reload_finished(Instant::now());
                    self.event(Event::new(
                        "reload_skipped",
                        None,
                        format!(
                            "attempt {attempt}: capture to judgement p99 {p99:.3} s is within the threshold; the time goes to storage or the broker, which a model reload cannot cure"
                        ),
                    ))
                    .await;
                    return;
                }
                telemetry::Event::ReloadStarted.emit();
                tracing::warn!(attempt, "self-healing: reloading the model");
                let result = self.station.reload_model().await;
                // Figures start again from what the reloaded model judges,
                // and the back-off from now.
                self.fresh_since = Some((Instant::now(), SystemTime::now()));
                self.healer.reload_finished(Instant::now());
                self.golden_now.notify_one();
                match result {
                    Ok(model) => {
                        self.event(Event::new(
                            "reload",
                            None,
                            format!("attempt {attempt}: {model} reloaded"),
                        ))
                        .await
                    }
                    Err(e) => {
                        tracing::error!(attempt, error = %e, "self-healing reload failed; the running model stays");
                        self.event(Event::new(
                            "reload_failed",
                            None,
                            format!("attempt {attempt}: {e}"),
                        ))
                        .await
                    }
                }
            }
            Action::Escalate { figures, reloads } => {
                for f in &figures {
                    tracing::error!(figure = f.name.as_str(), value = ?f.value, threshold = f.threshold, reloads, "health escalated: reloads did not cure it; reloading stops until it recovers");
                    self.event(Event::new(
                        "escalated",
                        Some(f),
                        format!(
                            "{}; {reloads} reloads did not cure it, reloading stopped",
                            describe(f)
                        ),
                    ))
                    .await;
                }
            }
            Action::Recover(figures) => {
                for f in &figures {
                    tracing::info!(figure = f.name.as_str(), value = ?f.value, threshold = f.threshold, "health recovered");
                    self.event(Event::new("recovered", Some(f), describe(f)))
                        .await;
                }
            }
        }
    }

    async fn write_history(&mut self, cfg: &StationConfig, s: &Snapshot) {
        let now = Instant::now();
        let progress = telemetry::metrics::progress();
        let Some((at, earlier)) = &self.last_history else {
            self.last_history = Some((now, progress));
            return;
        };
        let elapsed = now.duration_since(*at);
        if elapsed < cfg.monitoring.history_every {
            return;
        }
        let value = |i: usize| s.figures.get(i).and_then(|f| f.value);
        let sample = Sample {
            at: s.at.clone(),
            state: s.state.as_str().into(),
            latency_p99: value(0),
            latency_threshold: cfg.monitoring.latency_threshold.as_secs_f64(),
            context_loss: value(1),
            context_loss_threshold: cfg.monitoring.context_loss_threshold,
            consistency: value(2),
            consistency_threshold: cfg.monitoring.consistency_threshold,
            throughput: (progress.verdicts - earlier.verdicts) as f64 / elapsed.as_secs_f64(),
            stage_p95: progress.stage_quantiles(earlier, 0.95),
        };
        if let Err(e) = health_history::write_sample(self.station.store(), &sample).await {
            tracing::warn!(error = %e, "cannot store health history");
        }
        self.last_history = Some((now, progress));
        if self
            .last_prune
            .is_none_or(|t| t.elapsed() > Duration::from_secs(24 * 3600))
        {
            let before = record::time::of(SystemTime::now() - KEEP_HISTORY);
            if let Err(e) = health_history::prune(self.station.store(), &before).await {
                tracing::warn!(error = %e, "cannot prune health history");
            }
            self.last_prune = Some(now);
        }
    }
}

/// A window's start, or the last reload if that came later: figures count
/// only what the running model judged.
fn since_reload<T: Ord>(window_start: T, reload: Option<T>) -> T {
    match reload {
        Some(r) if r > window_start => r,
        _ => window_start,
    }
}

/// `latency p99 1.530 s over 42 samples; threshold 1.200 s`.
pub fn describe(f: &Figure) -> String {
    let v = |x: f64| match f.name {
        health::FigureName::Latency => format!("{x:.3} s"),
        _ => format!("{:.1}%", x * 100.0),
    };
    let value = f.value.map_or("no value".into(), v);
    format!(
        "{} {} over {} samples; threshold {}",
        f.name.as_str(),
        value,
        f.samples,
        v(f.threshold)
    )
}
