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

fn load(body: &str) -> Result<firmware_config::StationConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = station(dir.path(), body);
    Loader::without_env(Some(&path)).load()
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
    let (key, msg) =
        only_problem("[[recipes]]\nname = \"default\"\nstandard = \"standards/nope.txt\"\n");
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
    let path = station(dir.path(), "");
    let cfg = Loader::without_env(Some(&path)).load().unwrap();
    assert_eq!(
        cfg.recipes[0].standard,
        dir.path().join("standards/default.txt")
    );
    assert!(cfg
        .storage
        .database_url
        .starts_with(&format!("sqlite://{}", dir.path().display())));
}

#[test]
fn mqtt_protocol_sparkplug_ids_and_embedded_listen_are_checked() {
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
    let cfg = load(
        "[mqtt]\nprotocol = \"5\"\n[mqtt.sparkplug]\ngroup_id = \"a\"\nedge_node_id = \"b\"\n",
    )
    .expect("valid");
    assert_eq!(cfg.mqtt.protocol, firmware_config::MqttVersion::V5);
    assert_eq!(cfg.mqtt.sparkplug.unwrap().edge_node_id, "b");
}
