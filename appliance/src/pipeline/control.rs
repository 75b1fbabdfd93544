//! How the running station is steered: recipe switches, model reloads and
//! configuration reloads (commands, SIGHUP), what the health monitor may
//! ask of it, and the status it announces when any of that changes.

use std::sync::Arc;

use firmware_config::StationConfig;
use fusion::Standard;
use tokio::sync::watch;

use super::{
    birth_status, camera_map, load_engine, load_standard, set_info, sparkplug_context, Station,
};
use crate::commands::{Control, ControlError, Pending, ShadowAction, ShadowOutcome, ShadowRequest};
use crate::worker::{EngineHandle, ReloadError};
use store::Store;

/// A model reload that did not happen, as a command's failure: a package
/// that does not load or warm up failed; an engine that is stopping is busy.
fn reload_refused(e: ReloadError) -> ControlError {
    let message = format!("{e:#}");
    match e {
        ReloadError::Stopped => ControlError::busy(message),
        _ => ControlError::failed(message),
    }
}

/// SIGHUP reloads the configuration file; the outcome is answered on
/// `cmd/reply` like a `config` command and logged.
pub(super) async fn reload_on_sighup(
    ctx: Arc<Station>,
    triggers: crate::cameras::Triggers,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; configuration reload only via cmd/config");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let publisher = ctx.publisher.clone();
                crate::commands::answer("config", b"", &triggers, ctx.as_ref(), &publisher).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

impl Station {
    /// Announces the model, standard and health in use: status topic,
    /// Sparkplug and info metrics.
    async fn announce(&self) {
        let birth = self.context_changed();
        self.publisher.set_birth(birth).await;
    }

    /// The model or standard changed: updates Sparkplug and the info
    /// metrics; returns the status payload.
    fn context_changed(&self) -> String {
        let (model, standard) = (self.engine.model(), self.standard());
        if let Some(node) = &self.sparkplug {
            node.send(sparkplug_context(&model, &standard));
        }
        set_info(&model, &standard);
        self.status()
    }

    /// The retained status payload as things stand.
    fn status(&self) -> String {
        birth_status(&self.cfg(), &self.engine.model(), &self.standard())
    }
}

impl crate::health::monitor::Station for Station {
    fn config(&self) -> Arc<StationConfig> {
        self.cfg()
    }

    fn standard(&self) -> Arc<Standard> {
        Station::standard(self)
    }

    fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn reload_model(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>
    {
        Box::pin(async move {
            crate::commands::Control::reload(self)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn health_changed(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        // Only the status: the model and standard are unchanged.
        Box::pin(async move { self.publisher.set_birth(self.status()).await })
    }
}

impl Control for Station {
    fn switch_recipe(&self, name: &str) -> Result<(String, String), ControlError> {
        let cfg = self.cfg();
        if cfg.recipe(name).is_none() {
            let known: Vec<&str> = cfg.recipes.iter().map(|r| r.name.as_str()).collect();
            return Err(ControlError::unknown(format!(
                "unknown recipe `{name}`; configured: {}",
                known.join(", ")
            )));
        }
        let standard =
            load_standard(&cfg, name).map_err(|e| ControlError::failed(format!("{e:#}")))?;
        let sha = standard.sha256.clone();
        *self.standard.write().expect("standard lock") = Arc::new(standard);
        self.golden_now.notify_one();
        // Announced in the background: the reply need not wait for the broker.
        let (birth, publisher) = (self.context_changed(), self.publisher.clone());
        tokio::spawn(async move { publisher.set_birth(birth).await });
        tracing::info!(recipe = name, standard_sha256 = %sha, "recipe switched");
        Ok((name.to_string(), sha))
    }

    fn reload(&self) -> Pending<'_, String> {
        Box::pin(async move {
            let cfg = self.model_cfg();
            let model = self
                .engine
                .reload(move || load_engine(&cfg), vec![self.standard()])
                .await
                .map_err(reload_refused)?;
            self.announce().await;
            Ok(format!("{} {}", model.name, model.version))
        })
    }

    fn reconfigure(&self) -> Pending<'_, Vec<String>> {
        Box::pin(async move {
            let _one_at_a_time = self.reconfiguring.lock().await;
            let old = self.cfg();
            let Some(path) = old.source.clone() else {
                return Err(ControlError::conflict("this station was not started from a configuration file; there is nothing to reload"));
            };
            let new = tokio::task::spawn_blocking(move || {
                firmware_config::Loader::new(Some(&path)).load()
            })
            .await
            .map_err(|e| ControlError::failed(format!("configuration loader panicked: {e}")))?
            .map_err(|e| ControlError::failed(e.to_string()))?;
            let mut plan = crate::reconfigure::plan(&old, &new).map_err(ControlError::conflict)?;
            let recipe = plan
                .recipe
                .clone()
                .unwrap_or_else(|| self.standard().recipe.clone());
            let standard = Arc::new(load_standard(&new, &recipe).map_err(|e| {
                ControlError::failed(format!("{e:#}; the running configuration stays"))
            })?);
            // The same recipe whose text file was edited.
            if plan.recipe.is_none() && standard.sha256 != self.standard().sha256 {
                plan.changed
                    .push(format!("standard of `{recipe}` (text edited)"));
            }
            if plan.model {
                let model_cfg = new.clone();
                self.engine
                    .reload(move || load_engine(&model_cfg), vec![standard.clone()])
                    .await
                    .map_err(|e| {
                        let mut e = reload_refused(e);
                        e.message.push_str("; the running configuration stays");
                        e
                    })?;
                // The configured model now decides, not a promoted candidate.
                *self.promoted.write().expect("promoted lock") = None;
            }
            let cameras = camera_map(&new);
            *self.cameras.write().expect("cameras lock") = Arc::new(cameras);
            *self.cfg.write().expect("config lock") = Arc::new(new);
            *self.standard.write().expect("standard lock") = standard;
            self.golden_now.notify_one();
            self.announce().await;
            tracing::info!(changed = ?plan.changed, recipe, "configuration reloaded");
            Ok(plan.changed)
        })
    }

    fn shadow(&self, request: ShadowRequest) -> Pending<'_, ShadowOutcome> {
        Box::pin(async move {
            let _one_at_a_time = self.shadow.changing().await;
            match request.action {
                ShadowAction::Start => {
                    let running = self.model_cfg();
                    let package = request.package.unwrap_or_default();
                    let precision = request.precision.unwrap_or(running.model.precision);
                    let model = self
                        .shadow
                        .start(
                            &running,
                            package,
                            precision,
                            self.standard(),
                            &self.engine,
                            running.model.precision,
                        )
                        .await?;
                    Ok(ShadowOutcome::Started {
                        model: format!("{} {}", model.name, model.version),
                    })
                }
                ShadowAction::Stop => {
                    let retired = self.shadow.stop().await.ok_or_else(no_candidate)?;
                    Ok(ShadowOutcome::Stopped {
                        model: format!("{} {}", retired.model.name, retired.model.version),
                        frames: retired.offered,
                        skipped: retired.skipped,
                    })
                }
                ShadowAction::Promote => self.promote().await,
            }
        })
    }
}

fn no_candidate() -> ControlError {
    ControlError::conflict("no candidate model is in shadow mode")
}

impl Station {
    /// Stops comparing and reloads the candidate's package through the safe
    /// reload (verified again: a package changed on disk since it was
    /// compared is refused, and the running model stays). A later reload,
    /// the health monitor's included, keeps the promoted package until the
    /// configuration's `[model]` changes; the configuration file itself is
    /// not rewritten, so a restart brings back the configured model (the
    /// panel and the log say so).
    async fn promote(&self) -> Result<ShadowOutcome, ControlError> {
        let retired = self.shadow.stop().await.ok_or_else(no_candidate)?;
        let cfg = crate::shadow::with_package(&self.cfg(), &retired.package, retired.precision);
        let compared = retired.model.sha256.clone();
        let load = move || {
            let engine = load_engine(&cfg)?;
            anyhow::ensure!(
                engine.package.sha256 == compared,
                "the package changed on disk since it was compared (model.toml sha256 {} now, {compared} compared); start shadow mode again",
                engine.package.sha256
            );
            Ok(engine)
        };
        let model = self
            .engine
            .reload(load, vec![self.standard()])
            .await
            .map_err(reload_refused)?;
        *self.promoted.write().expect("promoted lock") =
            Some((retired.package.clone(), retired.precision));
        self.announce().await;
        tracing::warn!(model = %model.name, version = %model.version, package = %retired.package.display(), configured = %self.cfg().model.package.display(), "candidate promoted; set model.package in the configuration to keep it after a restart");
        Ok(ShadowOutcome::Promoted {
            model: format!("{} {}", model.name, model.version),
        })
    }
}
