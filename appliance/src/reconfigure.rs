//! Configuration reload (SIGHUP, `cmd/config`): which changes in a new
//! station file take effect while the line runs, and which need a restart.
//!
//! A reload is all or nothing. A file that does not load or validate is
//! refused with the loader's error (naming the key); a valid file that
//! changes something only a restart can change (the station's identity,
//! camera sources, batching, MQTT, storage, HTTP, multi-view parts) is
//! refused naming those sections. Otherwise recipes, thresholds and camera
//! processing settings (calibration, ROI, orientation) are swapped in
//! between two frames, and a changed `[model]` is loaded with the engine's
//! safe reload; frames keep flowing throughout.

use firmware_config::StationConfig;

/// What a valid new configuration changes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The sections and keys that change, for the reply and the log.
    pub changed: Vec<String>,
    /// `[model]` changed: the engine reloads under the new settings.
    pub model: bool,
    /// `station.recipe` changed: switch to it.
    pub recipe: Option<String>,
}

/// Compares the running configuration with a new one.
pub fn plan(old: &StationConfig, new: &StationConfig) -> Result<Plan, String> {
    let mut restart = Vec::new();
    let id = (&old.station.site, &old.station.line, &old.station.station);
    if id != (&new.station.site, &new.station.line, &new.station.station) {
        restart.push("station (site, line, station)".to_string());
    }
    let sources = |c: &StationConfig| {
        c.cameras
            .iter()
            .map(|c| (c.id.clone(), c.source.clone()))
            .collect::<Vec<_>>()
    };
    if sources(old) != sources(new) {
        restart.push("cameras (ids or sources)".to_string());
    }
    for (name, unchanged) in [
        ("parts", old.parts == new.parts),
        ("batching", old.batching == new.batching),
        ("mqtt", old.mqtt == new.mqtt),
        ("storage", old.storage == new.storage),
        ("http", old.http == new.http),
        ("shifts", old.shifts == new.shifts),
        ("review", old.review == new.review),
    ] {
        if !unchanged {
            restart.push(name.to_string());
        }
    }
    if !restart.is_empty() {
        return Err(format!(
            "{} can only change with a restart; nothing was applied (restart the service to apply them)",
            restart.join(", ")
        ));
    }
    let mut plan = Plan::default();
    if old.station.recipe != new.station.recipe {
        plan.changed.push("station.recipe".into());
        plan.recipe = Some(new.station.recipe.clone());
    }
    if old.recipes != new.recipes {
        plan.changed.push("recipes".into());
    }
    for (a, b) in old.cameras.iter().zip(&new.cameras) {
        if a != b {
            plan.changed.push(format!("cameras[{}]", a.id));
        }
    }
    if old.model != new.model {
        plan.changed.push("model".into());
        plan.model = true;
    }
    if old.monitoring != new.monitoring {
        plan.changed.push("monitoring".into());
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> StationConfig {
        let mut loader = firmware_config::Loader::without_env(None);
        loader.check_files = false;
        loader.load().unwrap()
    }

    #[test]
    fn live_settings_are_planned_and_restart_ones_refused() {
        let old = base();
        let mut new = base();
        assert_eq!(plan(&old, &new).unwrap(), Plan::default());
        new.monitoring.latency_threshold = std::time::Duration::from_millis(500);
        new.station.recipe = "other".into();
        new.model.review_threshold = 0.9;
        let p = plan(&old, &new).unwrap();
        assert_eq!(p.changed, ["station.recipe", "model", "monitoring"]);
        assert!(p.model);
        assert_eq!(p.recipe.as_deref(), Some("other"));

        new.mqtt.client_id = "elsewhere".into();
        new.http.bind = "127.0.0.1:1".parse().unwrap();
        let e = plan(&old, &new).unwrap_err();
        assert!(
            e.starts_with("mqtt, http can only change with a restart"),
            "{e}"
        );
    }
}
