//! Checks a typed configuration for values serde cannot judge: ranges,
//! uniqueness, references between sections and files that must exist.
//!
//! Every problem names its key path, the value found and what is allowed, and
//! all problems are reported at once so an integrator fixes a file in one pass.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use crate::sections::{CameraSource, MqttVersion, StationConfig};
use crate::units::ByteSize;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `cameras[1].id`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

struct Report(Vec<Problem>);

impl Report {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn range<T: PartialOrd + fmt::Display>(&mut self, key: &str, v: T, lo: T, hi: T) {
        if v < lo || v > hi {
            self.push(key, format!("{v} is out of range; allowed {lo} to {hi}"));
        }
    }
}

/// A name that may stand in an MQTT topic (station, camera, recipe):
/// 1-64 letters, digits, `-`, `_`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Structural checks that need no file system: every problem, section by
/// section.
pub fn check_values(c: &StationConfig) -> Vec<Problem> {
    let mut r = Report(Vec::new());
    check_station(c, &mut r);
    check_cameras(c, &mut r);
    check_parts(c, &mut r);
    check_recipes(c, &mut r);
    check_model(c, &mut r);
    check_mqtt(c, &mut r);
    check_storage(c, &mut r);
    check_monitoring(c, &mut r);
    if c.review
        .reasons
        .iter()
        .any(|r| r.trim().is_empty() || r.chars().count() > 200)
    {
        r.push(
            "review.reasons",
            "each reason must have 1 to 200 characters",
        );
    }
    if c.shifts.starts.is_empty() {
        r.push(
            "shifts.starts",
            "give at least one shift start, e.g. [\"06:00\"]",
        );
    }
    r.0
}

/// The station's name.
fn check_station(c: &StationConfig, r: &mut Report) {
    if !is_name(&c.station.station) {
        r.push(
            "station.station",
            format!(
                "`{}` is not a valid station name; allowed: 1-64 letters, digits, `-`, `_` (it is part of MQTT topics)",
                c.station.station
            ),
        );
    }
}

/// Cameras: ids, sources, calibration, orientation, regions of interest.
fn check_cameras(c: &StationConfig, r: &mut Report) {
    if c.cameras.is_empty() {
        r.push(
            "cameras",
            "no camera configured; add at least one [[cameras]] entry",
        );
    }
    let mut ids = HashSet::new();
    for (i, cam) in c.cameras.iter().enumerate() {
        if !is_name(&cam.id) {
            r.push(
                format!("cameras[{i}].id"),
                format!(
                    "`{}` is not a valid camera id; allowed: 1-64 letters, digits, `-`, `_`",
                    cam.id
                ),
            );
        }
        if !ids.insert(cam.id.as_str()) {
            r.push(
                format!("cameras[{i}].id"),
                format!(
                    "duplicate camera id `{}`; every camera needs its own id",
                    cam.id
                ),
            );
        }
        if !(cam.mm_per_px > 0.0 && cam.mm_per_px <= 100.0) {
            r.push(
                format!("cameras[{i}].mm_per_px"),
                format!(
                    "{} is out of range; allowed: greater than 0 up to 100",
                    cam.mm_per_px
                ),
            );
        }
        if let Some(roi) = cam.roi {
            if roi.width == 0 || roi.height == 0 {
                r.push(
                    format!("cameras[{i}].roi"),
                    "width and height must be at least 1 pixel",
                );
            }
        }
        if ![0, 90, 180, 270].contains(&cam.rotate) {
            r.push(
                format!("cameras[{i}].rotate"),
                format!(
                    "is {}; allowed: 0, 90, 180 or 270 (degrees clockwise)",
                    cam.rotate
                ),
            );
        }
        if let CameraSource::Opencv {
            device,
            url,
            pipeline,
            file,
            trigger_queue,
            stall_timeout,
            backoff_initial,
            backoff_max,
            ..
        } = &cam.source
        {
            let given = [
                device.is_some(),
                url.is_some(),
                pipeline.is_some(),
                file.is_some(),
            ]
            .iter()
            .filter(|g| **g)
            .count();
            if given != 1 {
                r.push(
                    format!("cameras[{i}].source"),
                    format!("{given} of device, url, pipeline, file given; exactly one is needed"),
                );
            }
            if *trigger_queue == 0 {
                r.push(
                    format!("cameras[{i}].source.trigger_queue"),
                    "must be at least 1",
                );
            }
            if stall_timeout.is_zero() {
                r.push(
                    format!("cameras[{i}].source.stall_timeout"),
                    "must be greater than 0",
                );
            }
            if backoff_initial.is_zero() || backoff_max < backoff_initial {
                r.push(
                    format!("cameras[{i}].source.backoff_initial"),
                    "must be greater than 0 and at most backoff_max",
                );
            }
        }
        if let CameraSource::Synthetic {
            interval, replay, ..
        } = &cam.source
        {
            if interval.is_zero() {
                r.push(
                    format!("cameras[{i}].source.interval"),
                    "must be greater than 0",
                );
            }
            r.range(&format!("cameras[{i}].source.replay"), *replay, 0, 1000);
        }
    }
}

/// Multi-view parts: the views name cameras, and they wait for each other.
fn check_parts(c: &StationConfig, r: &mut Report) {
    if c.parts.views.len() == 1 {
        r.push(
            "parts.views",
            "a single view needs no combining; list two or more cameras, or none",
        );
    }
    for (i, view) in c.parts.views.iter().enumerate() {
        if !c.cameras.iter().any(|cam| &cam.id == view) {
            r.push(
                format!("parts.views[{i}]"),
                format!("`{view}` is not a configured camera id"),
            );
        }
    }
    if !c.parts.views.is_empty() && c.parts.view_timeout.is_zero() {
        r.push("parts.view_timeout", "must be greater than 0");
    }
}

/// Recipes: named once each, the active one among them.
fn check_recipes(c: &StationConfig, r: &mut Report) {
    if c.recipes.is_empty() {
        r.push(
            "recipes",
            "no recipe configured; add at least one [[recipes]] entry",
        );
    }
    let mut names = HashSet::new();
    for (i, recipe) in c.recipes.iter().enumerate() {
        if !is_name(&recipe.name) {
            r.push(
                format!("recipes[{i}].name"),
                format!(
                    "`{}` is not a valid recipe name; allowed: 1-64 letters, digits, `-`, `_`",
                    recipe.name
                ),
            );
        }
        if !names.insert(recipe.name.as_str()) {
            r.push(
                format!("recipes[{i}].name"),
                format!("duplicate recipe name `{}`", recipe.name),
            );
        }
    }
    if !c.recipes.iter().any(|x| x.name == c.station.recipe) {
        let known: Vec<&str> = c.recipes.iter().map(|x| x.name.as_str()).collect();
        r.push(
            "station.recipe",
            format!(
                "`{}` is not a configured recipe; allowed: {}",
                c.station.recipe,
                known.join(", ")
            ),
        );
    }
}

/// The model and batching.
fn check_model(c: &StationConfig, r: &mut Report) {
    if c.model.execution_providers.is_empty() {
        r.push(
            "model.execution_providers",
            "empty; allowed: a list of \"tensorrt\", \"cuda\", \"cpu\" in order of preference",
        );
    }
    r.range("model.intra_threads", c.model.intra_threads, 0, 256);
    r.range("model.inter_threads", c.model.inter_threads, 0, 256);
    r.range("model.workers", c.model.workers, 1, 64);
    r.range("model.vision_batch", c.model.vision_batch, 0, 1024);
    r.range("model.review_threshold", c.model.review_threshold, 0.0, 1.0);
    if c.model.stand_in {
        for (i, cam) in c.cameras.iter().enumerate() {
            if !matches!(cam.source, CameraSource::Synthetic { .. }) {
                r.push(
                    format!("cameras[{i}].source"),
                    "model.stand_in judges only the synthetic line (its parts carry the defects drawn on them); use kind = \"synthetic\" or set model.stand_in = false",
                );
            }
        }
    }
    r.range("batching.max_batch", c.batching.max_batch, 1, 64);
    r.range(
        "batching.queue_capacity",
        c.batching.queue_capacity,
        1,
        100_000,
    );
    if c.batching.max_wait.as_secs() > 10 {
        r.push(
            "batching.max_wait",
            format!(
                "{} is out of range; allowed 0 to 10s",
                humantime::format_duration(c.batching.max_wait)
            ),
        );
    }
}

/// The embedded broker's backlog per topic: below 64 KiB its log segments
/// would be smaller than one verdict; above 4 GiB it is no longer a bound.
const EMBEDDED_BACKLOG_MIN: ByteSize = ByteSize(64 << 10);
const EMBEDDED_BACKLOG_MAX: ByteSize = ByteSize(4 << 30);

/// MQTT: broker URL, topics, credentials, Sparkplug, keep-alive, the
/// embedded broker's backlog.
fn check_mqtt(c: &StationConfig, r: &mut Report) {
    if !(c.mqtt.url.starts_with("mqtt://") || c.mqtt.url.starts_with("mqtts://")) {
        r.push(
            "mqtt.url",
            format!(
                "`{}` is not a broker URL; allowed: mqtt://host:port or mqtts://host:port",
                c.mqtt.url
            ),
        );
    }
    if !c.mqtt.topic_prefix.is_empty() && c.mqtt.topic_prefix.contains(['#', '+']) {
        r.push(
            "mqtt.topic_prefix",
            "must not contain MQTT wildcards `#` or `+`",
        );
    }
    if !c.mqtt.password.is_empty() && !c.mqtt.password_file.as_os_str().is_empty() {
        r.push(
            "mqtt.password_file",
            "give either mqtt.password or mqtt.password_file, not both",
        );
    }
    if let Some(spb) = &c.mqtt.sparkplug {
        for (key, id) in [
            ("mqtt.sparkplug.group_id", &spb.group_id),
            ("mqtt.sparkplug.edge_node_id", &spb.edge_node_id),
            ("station.station", &c.station.station),
        ] {
            if id.is_empty() || id.contains(['/', '+', '#']) {
                r.push(
                    key,
                    format!("`{id}` is not a Sparkplug id: it must be non-empty, without `/`, `+` or `#`"),
                );
            }
        }
    }
    r.range(
        "mqtt.embedded_backlog",
        c.mqtt.embedded_backlog,
        EMBEDDED_BACKLOG_MIN,
        EMBEDDED_BACKLOG_MAX,
    );
    if c.mqtt.keep_alive.as_secs() < 1 {
        r.push("mqtt.keep_alive", "must be at least 1s");
    } else if c.mqtt.protocol == MqttVersion::V5 && c.mqtt.keep_alive.as_secs() < 5 {
        r.push(
            "mqtt.keep_alive",
            "must be at least 5s with protocol = \"5\" (the MQTT 5 client's lower bound)",
        );
    }
}

/// Storage: retention and the database URL.
fn check_storage(c: &StationConfig, r: &mut Report) {
    if c.storage.keep_max_age < c.storage.max_age {
        r.push(
            "storage.keep_max_age",
            format!(
                "{} is shorter than storage.max_age ({}); FAIL and reviewed images are kept at least as long as PASS ones",
                humantime::format_duration(c.storage.keep_max_age),
                humantime::format_duration(c.storage.max_age)
            ),
        );
    }
    if c.storage.sweep_every.as_secs() < 1 {
        r.push("storage.sweep_every", "must be at least 1s");
    }
    if !(c.storage.database_url.starts_with("sqlite://")
        || c.storage.database_url.starts_with("postgres://")
        || c.storage.database_url.starts_with("postgresql://"))
    {
        r.push(
            "storage.database_url",
            format!(
                "`{}` is not a supported database URL; allowed: sqlite://FILE or postgres://...",
                c.storage.database_url
            ),
        );
    }
}

/// Monitoring: thresholds, windows, reloads.
fn check_monitoring(c: &StationConfig, r: &mut Report) {
    r.range(
        "monitoring.context_loss_threshold",
        c.monitoring.context_loss_threshold,
        0.0,
        1.0,
    );
    r.range(
        "monitoring.consistency_threshold",
        c.monitoring.consistency_threshold,
        0.0,
        1.0,
    );
    for (key, d) in [
        (
            "monitoring.latency_threshold",
            c.monitoring.latency_threshold,
        ),
        ("monitoring.latency_window", c.monitoring.latency_window),
        (
            "monitoring.context_loss_window",
            c.monitoring.context_loss_window,
        ),
        (
            "monitoring.consistency_window",
            c.monitoring.consistency_window,
        ),
        ("monitoring.evaluate_every", c.monitoring.evaluate_every),
        ("monitoring.golden_every", c.monitoring.golden_every),
        ("monitoring.reload_backoff", c.monitoring.reload_backoff),
        ("monitoring.history_every", c.monitoring.history_every),
    ] {
        if d.is_zero() {
            r.push(key, "must be longer than zero");
        }
    }
    if c.monitoring.max_reloads == 0 && c.monitoring.auto_reload {
        r.push(
            "monitoring.max_reloads",
            "must be at least 1 with auto_reload = true (set auto_reload = false to only alarm)",
        );
    }
    if c.monitoring.min_samples == 0 {
        r.push("monitoring.min_samples", "must be at least 1");
    }
}

/// Checks that files the configuration names exist (paths already resolved).
pub fn check_files(c: &StationConfig) -> Vec<Problem> {
    let mut r = Report(Vec::new());
    let must_exist = |r: &mut Report, key: String, path: &Path, what: &str| {
        if !path.exists() {
            r.push(key, format!("{what} `{}` does not exist", path.display()));
        }
    };
    for (i, recipe) in c.recipes.iter().enumerate() {
        must_exist(
            &mut r,
            format!("recipes[{i}].standard"),
            &recipe.standard,
            "standard file",
        );
        if let Some(g) = &recipe.golden {
            must_exist(
                &mut r,
                format!("recipes[{i}].golden"),
                &g.join("golden.toml"),
                "golden-set manifest",
            );
        }
    }
    must_exist(
        &mut r,
        "model.package".into(),
        &c.model.package.join("model.toml"),
        "model manifest",
    );
    if !c.mqtt.password_file.as_os_str().is_empty() {
        must_exist(
            &mut r,
            "mqtt.password_file".into(),
            &c.mqtt.password_file,
            "password file",
        );
    }
    if let Some(tls) = &c.mqtt.tls {
        must_exist(&mut r, "mqtt.tls.ca".into(), &tls.ca, "CA file");
        for (key, p) in [("mqtt.tls.cert", &tls.cert), ("mqtt.tls.key", &tls.key)] {
            if !p.as_os_str().is_empty() {
                must_exist(&mut r, key.into(), p, "TLS file");
            }
        }
    }
    r.0
}
