//! How the running station is steered: recipe switches, model reloads and
//! configuration reloads (commands, SIGHUP), rollouts from the plant server,
//! what the health monitor may ask of it, and the status it announces when
//! any of that changes.

use std::sync::Arc;

use firmware_config::StationConfig;
use fusion::Standard;
use tokio::sync::watch;

use super::{
    birth_status, camera_map, load_engine, load_standard, set_info, sparkplug_context, Station,
};
use crate::commands::{
    Control, ControlError, Pending, RolloutOutcome, ShadowAction, ShadowOutcome, ShadowRequest,
};
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
        let rollout = self.rollout.read().expect("rollout lock").clone();
        birth_status(
            &self.cfg(),
            &self.engine.model(),
            &self.standard(),
            rollout.as_ref(),
        )
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
            // What the plant server rolled out stands over the file.
            let standing = self.standing.read().expect("standing lock").clone();
            if let Some(r) = standing {
                let _one_at_a_time = self.rolling.lock().await;
                match self.take_on(&r).await {
                    Ok(done) if done != RolloutOutcome::default() => plan.changed.push(format!(
                        "rollout {} applied again: {}",
                        r.id,
                        done.changed().join(", ")
                    )),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(rollout = %r.id, error = %e, "the standing rollout could not be applied again over the new configuration")
                    }
                }
            }
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

    fn rollout(&self, rollout: record::Rollout) -> Pending<'_, RolloutOutcome> {
        Box::pin(async move {
            let _one_at_a_time = self.rolling.lock().await;
            let outcome = self.take_on(&rollout).await;
            let state = serde_json::json!({
                "id": rollout.id,
                "sent_at": rollout.sent_at,
                "ok": outcome.is_ok(),
                "changed": outcome.as_ref().map(RolloutOutcome::changed).unwrap_or_default(),
                "error": outcome.as_ref().err().map(|e| e.message.clone()),
                "at": record::time::now(),
            });
            *self.rollout.write().expect("rollout lock") = Some(state);
            if outcome.is_ok() {
                *self.standing.write().expect("standing lock") = Some(rollout.clone());
            }
            self.announce().await;
            match &outcome {
                Ok(done) => {
                    tracing::info!(rollout = %rollout.id, changed = ?done.changed(), "rollout taken on")
                }
                Err(e) => {
                    tracing::warn!(rollout = %rollout.id, error = %e, "rollout refused; the station runs as before")
                }
            }
            outcome
        })
    }
}

/// Loads the package `cfg` names, refused unless its `model.toml` is the
/// one with sha256 `sha` (the one `what`).
fn load_exactly(
    cfg: StationConfig,
    sha: String,
    what: &'static str,
) -> impl Fn() -> anyhow::Result<fusion::Engine> + Send + 'static {
    move || {
        let engine = load_engine(&cfg)?;
        anyhow::ensure!(
            engine.package.sha256 == sha,
            "the package's model.toml has sha256 {}, not the {sha} {what}",
            engine.package.sha256
        );
        Ok(engine)
    }
}

fn no_candidate() -> ControlError {
    ControlError::conflict("no candidate model is in shadow mode")
}

impl Station {
    /// Applies a rollout: every standard is checked and kept first, then the
    /// model is fetched and verified; only then does anything change (the
    /// standards swapped in, the model through the safe reload or started in
    /// shadow mode), so a refused rollout leaves the station as it was —
    /// unless the model's reload itself fails after the standards were
    /// checked, in which case nothing was swapped either.
    async fn take_on(&self, r: &record::Rollout) -> Result<RolloutOutcome, ControlError> {
        let cfg = self.cfg();
        if r.station != cfg.station.station {
            return Err(ControlError::conflict(format!(
                "rollout {} is for station `{}`, not `{}`",
                r.id, r.station, cfg.station.station
            )));
        }
        let data_dir = cfg.storage.data_dir.clone();
        let mut outcome = RolloutOutcome::default();
        // Standards: the new configuration, not yet in force.
        let mut new_cfg = (*cfg).clone();
        for (recipe, text) in &r.standards {
            let Some(slot) = new_cfg.recipes.iter_mut().find(|x| &x.name == recipe) else {
                let known: Vec<&str> = cfg.recipes.iter().map(|x| x.name.as_str()).collect();
                return Err(ControlError::unknown(format!(
                    "standards.{recipe}: no such recipe on this station; configured: {}",
                    known.join(", ")
                )));
            };
            let now = crate::standards::load(recipe, &slot.standard)
                .map(|s| s.sha256)
                .unwrap_or_default();
            if now == text.sha256 {
                continue;
            }
            let (recipe_name, text, dir) = (recipe.clone(), text.clone(), data_dir.clone());
            let path = tokio::task::spawn_blocking(move || {
                let path = crate::rollout::keep_standard(&recipe_name, &text, &dir)?;
                crate::standards::load(&recipe_name, &path)?;
                Ok::<_, anyhow::Error>(path)
            })
            .await
            .map_err(|e| ControlError::failed(format!("standard check panicked: {e}")))?
            .map_err(|e| ControlError::failed(format!("{e:#}")))?;
            slot.standard = path;
            outcome.standards.push(recipe.clone());
        }
        let active = self.standard().recipe.clone();
        let standard = if outcome.standards.contains(&active) {
            Arc::new(
                load_standard(&new_cfg, &active)
                    .map_err(|e| ControlError::failed(format!("{e:#}")))?,
            )
        } else {
            self.standard()
        };
        // The model: fetched and verified before it is loaded.
        let mut promoted = None;
        if let Some(m) = &r.model {
            let want = crate::rollout::check(m)
                .map_err(|e| ControlError::failed(format!("{e:#}")))?
                .to_string();
            let precision = match m.precision.as_deref() {
                None => cfg.model.precision,
                Some(p) => {
                    crate::rollout::precision(p).map_err(|e| ControlError::failed(e.to_string()))?
                }
            };
            let already = match m.apply {
                record::Apply::Reload => self.engine.model().sha256 == want,
                record::Apply::Shadow => self.shadow.candidate_sha256().as_deref() == Some(&want),
            };
            if !already {
                let (package, dir) = (m.clone(), data_dir.clone());
                let fetched = tokio::task::spawn_blocking(move || {
                    crate::rollout::fetch_package(&package, &dir)
                })
                .await
                .map_err(|e| ControlError::failed(format!("fetch panicked: {e}")))?
                .map_err(|e| ControlError::failed(format!("{e:#}")))?;
                tracing::info!(package = %fetched.dir.display(), files = fetched.downloaded, bytes = fetched.bytes, "rollout: package fetched and verified");
                match m.apply {
                    record::Apply::Reload => {
                        let load_cfg =
                            crate::shadow::with_package(&self.model_cfg(), &fetched.dir, precision);
                        let model = self
                            .engine
                            .reload(
                                load_exactly(load_cfg, want.clone(), "rolled out"),
                                vec![standard.clone()],
                            )
                            .await
                            .map_err(reload_refused)?;
                        promoted = Some((fetched.dir, precision));
                        outcome.model = Some(format!("{} {}", model.name, model.version));
                    }
                    record::Apply::Shadow => {
                        let _changing = self.shadow.changing().await;
                        let running = self.model_cfg();
                        if self.shadow.active() {
                            self.shadow.stop().await;
                        }
                        let model = self
                            .shadow
                            .start(
                                &running,
                                fetched.dir,
                                precision,
                                standard.clone(),
                                &self.engine,
                                running.model.precision,
                            )
                            .await?;
                        outcome.model = Some(format!(
                            "candidate {} {} in shadow mode",
                            model.name, model.version
                        ));
                    }
                }
            }
        }
        // Everything checked and loaded: swap in what changed.
        if let Some(p) = promoted {
            *self.promoted.write().expect("promoted lock") = Some(p);
        }
        if !outcome.standards.is_empty() {
            *self.cfg.write().expect("config lock") = Arc::new(new_cfg);
            *self.standard.write().expect("standard lock") = standard;
            self.golden_now.notify_one();
        }
        Ok(outcome)
    }

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
        let load = load_exactly(
            cfg,
            retired.model.sha256.clone(),
            "compared in shadow mode (it changed on disk since; start shadow mode again)",
        );
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
