//! Every kind of configuration mistake gets an error naming the key path, the
//! bad value and what is allowed.

use std::path::Path;

use firmware_config::{ConfigError, Loader, DEFAULT_TOML};

/// A station folder with a standard file and a model manifest, so that file
/// checks pass unless a test breaks them.
fn station(dir: &Path, body: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("standards")).unwrap();
    std::fs::write(
        dir.join("standards/default.txt"),
        "1. No cracks are permitted.",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("models/reference")).unwrap();
    std::fs::write(dir.join("models/reference/model.toml"), "").unwrap();
    let path = dir.join("station.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// Loads `body` without checking that the files it names exist (the
/// defaults point at the installed locations under /etc, /usr/share and
/// /var/lib, which a test machine does not have).
fn load(body: &str) -> Result<firmware_config::StationConfig, ConfigError> {
    load_with_env(body, &[])
}

fn load_with_env(
    body: &str,
    env: &[(&str, &str)],
) -> Result<firmware_config::StationConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = station(dir.path(), body);
    let mut loader = Loader::without_env(Some(&path));
    loader.check_files = false;
    loader.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    loader.load()
}

fn only_problem(body: &str) -> (String, String) {
    let err = load(body).expect_err("configuration should be refused");
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    (problems[0].key.clone(), problems[0].message.clone())
}

#[test]
fn built_in_default_parses_and_validates() {
    let cfg = load("").expect("default configuration is valid");
    assert_eq!(cfg.station.station, "station-1");
    assert_eq!(cfg.batching.max_batch, 4);
    assert!(DEFAULT_TOML.contains("# "), "default is commented");
}

#[test]
fn unknown_key_is_named() {
    let (key, msg) = only_problem("[mqtt]\nbrokr = \"x\"\n");
    assert_eq!(key, "mqtt.brokr");
    assert!(
        msg.contains("unknown field `brokr`") && msg.contains("broker"),
        "{msg}"
    );
}

#[test]
fn wrong_type_is_named_with_value_and_expectation() {
    let (key, msg) = only_problem("[batching]\nmax_batch = \"eight\"\n");
    assert_eq!(key, "batching.max_batch");
    assert!(
        msg.contains("\"eight\"") && msg.contains("expected"),
        "{msg}"
    );
}

#[test]
fn out_of_range_says_what_is_allowed() {
    let (key, msg) = only_problem("[batching]\nmax_batch = 0\n");
    assert_eq!(key, "batching.max_batch");
    assert!(
        msg.contains('0') && msg.contains("allowed 1 to 64"),
        "{msg}"
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let (key, msg) = only_problem("[model]\nprecision = \"fp16\"\n");
    assert_eq!(key, "model.precision");
    assert!(
        msg.contains("fp16") && msg.contains("fp32") && msg.contains("int8"),
        "{msg}"
    );
}

#[test]
fn bad_duration_is_named() {
    let (key, msg) = only_problem("[batching]\nmax_wait = \"soon\"\n");
    assert_eq!(key, "batching.max_wait");
    assert!(!msg.is_empty());
}

#[test]
fn missing_standard_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = station(
        dir.path(),
        "[[recipes]]\nname = \"default\"\nstandard = \"standards/nope.txt\"\n[model]\npackage = \"models/reference\"\n",
    );
    let err = Loader::without_env(Some(&path)).load().unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    let (key, msg) = (&err.problems()[0].key, &err.problems()[0].message);
    assert_eq!(key, "recipes[0].standard");
    assert!(
        msg.contains("nope.txt") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn duplicate_camera_id_is_named() {
    let body = r#"
[[cameras]]
id = "top"
mm_per_px = 0.1
source = { kind = "hot_folder", path = "a" }

[[cameras]]
id = "top"
mm_per_px = 0.1
source = { kind = "hot_folder", path = "b" }
"#;
    let (key, msg) = only_problem(body);
    assert_eq!(key, "cameras[1].id");
    assert!(msg.contains("duplicate camera id `top`"), "{msg}");
}

#[test]
fn unknown_recipe_lists_known_ones() {
    let (key, msg) = only_problem("[station]\nrecipe = \"ghost\"\n");
    assert_eq!(key, "station.recipe");
    assert!(msg.contains("ghost") && msg.contains("default"), "{msg}");
}

#[test]
fn syntax_error_names_the_file() {
    let err = load("[mqtt\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert!(err.to_string().contains("station.toml"), "{err}");
}

#[test]
fn all_problems_are_reported_together() {
    let err =
        load("[batching]\nmax_batch = 0\nqueue_capacity = 0\n[model]\nreview_threshold = 2.0\n")
            .unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "model.review_threshold",
            "batching.max_batch",
            "batching.queue_capacity"
        ]
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = station(dir.path(), "[mqtt]\nurl = \"mqtt://file:1883\"\n");
    let mut loader = Loader::without_env(Some(&path));
    loader.check_files = false;
    loader.env = vec![
        ("APPLIANCE__MQTT__URL".into(), "mqtt://env:1883".into()),
        ("APPLIANCE__BATCHING__MAX_BATCH".into(), "8".into()),
    ];
    let cfg = loader.load().unwrap();
    assert_eq!(cfg.mqtt.url, "mqtt://env:1883");
    assert_eq!(cfg.batching.max_batch, 8);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let cfg = load("[mqtt]\nusername = \"line\"\npassword = \"s3cret-pw\"\n").unwrap();
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("s3cret-pw"));
    assert_eq!(cfg.mqtt.password.expose(), "s3cret-pw");
}

#[test]
fn relative_paths_follow_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = station(
        &dir.path().join("etc/station"),
        "[[recipes]]\nname = \"default\"\nstandard = \"standards/default.txt\"\n\
         [model]\npackage = \"./models/../models/reference\"\n\
         [storage]\ndatabase_url = \"sqlite://../../var/db/appliance.db\"\ndata_dir = \"../../var/data\"\n",
    );
    let cfg = Loader::without_env(Some(&path)).load().unwrap();
    let root = dir.path();
    assert_eq!(
        cfg.recipes[0].standard,
        root.join("etc/station/standards/default.txt")
    );
    assert_eq!(cfg.model.package, root.join("etc/station/models/reference"));
    // `..` is resolved by name, inside the sqlite URL too: sqlx would read
    // `sqlite://../x` as a URL whose host is `..`.
    assert_eq!(
        cfg.storage.database_url,
        format!("sqlite://{}", root.join("var/db/appliance.db").display())
    );
    assert_eq!(cfg.storage.data_dir, root.join("var/data"));
}

#[test]
fn a_relative_path_is_made_absolute_against_the_working_folder() {
    let here = std::env::current_dir().unwrap();
    assert_eq!(
        firmware_config::absolute(std::path::Path::new("config/demo/../../.demo/a.db")),
        here.join(".demo/a.db")
    );
    assert_eq!(
        firmware_config::sqlite_file("sqlite://config/demo/../../.demo/a.db?mode=rwc", &here),
        Some(here.join(".demo/a.db"))
    );
    assert_eq!(firmware_config::sqlite_file("sqlite::memory:", &here), None);
    assert_eq!(firmware_config::sqlite_file("postgres://db/x", &here), None);
}

#[test]
fn every_problem_in_a_file_is_reported_not_only_the_first() {
    let err = load(
        "[batching]\nmax_batch = \"eight\"\nmax_wait = \"soon\"\n[mqtt]\nbrokr = 1\n\
         [[cameras]]\nid = \"cam-1\"\n",
    )
    .unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    for key in [
        "batching.max_batch",
        "batching.max_wait",
        "mqtt.brokr",
        "cameras[0]",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert!(err
        .to_string()
        .contains(&format!("{} problem(s)", keys.len())));
}

#[test]
fn a_bad_environment_value_names_its_variable() {
    let err = load_with_env("", &[("APPLIANCE__BATCHING__MAX_BATCH", "eight")]).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "batching.max_batch");
    assert!(
        p.message
            .contains("environment variable APPLIANCE__BATCHING__MAX_BATCH"),
        "{p}"
    );
    let err = load_with_env("", &[("APPLIANCE__BATCHING__MAX_BATCH", "0")]).unwrap_err();
    assert!(
        err.problems()[0]
            .message
            .contains("APPLIANCE__BATCHING__MAX_BATCH"),
        "{err}"
    );
}

#[test]
fn cameras_are_overridden_from_the_environment_by_index() {
    let body = "[[cameras]]\nid = \"top\"\nmm_per_px = 0.1\n[cameras.source]\nkind = \"hot_folder\"\npath = \"in\"\n";
    let cfg = load_with_env(
        body,
        &[
            ("APPLIANCE__CAMERAS__0__MM_PER_PX", "0.05"),
            ("APPLIANCE__CAMERAS__0__SOURCE__PATH", "/srv/incoming"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.cameras[0].mm_per_px, 0.05);
    assert_eq!(cfg.cameras[0].id, "top");
    match &cfg.cameras[0].source {
        firmware_config::CameraSource::HotFolder { path, .. } => {
            assert_eq!(path, std::path::Path::new("/srv/incoming"))
        }
        other => panic!("{other:?}"),
    }
    let err = load_with_env(body, &[("APPLIANCE__CAMERAS__3__ID", "x")]).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.key, "cameras[3]");
    assert!(p.message.contains("APPLIANCE__CAMERAS__3__ID"), "{p}");
}

#[test]
fn mqtt_protocol_sparkplug_ids_and_the_embedded_broker_are_checked() {
    let (key, msg) = only_problem("[mqtt]\nprotocol = \"4\"\n");
    assert_eq!(key, "mqtt.protocol");
    assert!(msg.contains("3.1.1") && msg.contains('5'), "{msg}");
    let (key, msg) = only_problem("[mqtt]\nprotocol = \"5\"\nkeep_alive = \"2s\"\n");
    assert_eq!(key, "mqtt.keep_alive");
    assert!(msg.contains("5s"), "{msg}");
    let (key, msg) =
        only_problem("[mqtt.sparkplug]\ngroup_id = \"plant/a\"\nedge_node_id = \"line-1\"\n");
    assert_eq!(key, "mqtt.sparkplug.group_id");
    assert!(msg.contains("`plant/a`") && msg.contains('/'), "{msg}");
    let (key, _) = only_problem("[mqtt]\nembedded_listen = \"localhost\"\n");
    assert_eq!(key, "mqtt.embedded_listen");
    let (key, msg) = only_problem("[mqtt]\nembedded_backlog = \"4 KiB\"\n");
    assert_eq!(key, "mqtt.embedded_backlog");
    assert!(msg.contains("64 KiB"), "{msg}");
    let (key, _) = only_problem("[mqtt]\nembedded_backlog = \"lots\"\n");
    assert_eq!(key, "mqtt.embedded_backlog");
    let cfg = load(
        "[mqtt]\nprotocol = \"5\"\n[mqtt.sparkplug]\ngroup_id = \"a\"\nedge_node_id = \"b\"\n",
    )
    .expect("valid");
    assert_eq!(cfg.mqtt.protocol, firmware_config::MqttVersion::V5);
    assert_eq!(cfg.mqtt.sparkplug.unwrap().edge_node_id, "b");
}

#[test]
fn the_stand_in_engine_is_refused_for_real_cameras_and_replay_is_bounded() {
    // A stand-in station whose synthetic camera replays `replay` parts,
    // followed by `more` cameras.
    let station = |replay: u32, more: &str| {
        format!(
            "[model]\nstand_in = true\n\n[[cameras]]\nid = \"line\"\nmm_per_px = 0.1\nsource = {{ kind = \"synthetic\", replay = {replay} }}\n{more}"
        )
    };
    let hot_folder = "[[cameras]]\nid = \"top\"\nmm_per_px = 0.1\nsource = { kind = \"hot_folder\", path = \"a\" }\n";
    let (key, msg) = only_problem(&station(64, hot_folder));
    assert_eq!(key, "cameras[1].source");
    assert!(
        msg.contains("model.stand_in") && msg.contains("synthetic"),
        "{msg}"
    );
    let (key, msg) = only_problem(&station(5000, ""));
    assert_eq!(key, "cameras[0].source.replay");
    assert!(msg.contains("5000") && msg.contains("0 to 1000"), "{msg}");
}
