//! The first inspection end to end: images dropped into a hot folder are
//! judged by the real reference model through ONNX Runtime, stored in SQLite
//! and published to a real (private) Mosquitto. Bad files become stored error
//! records while the service keeps running.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{
    assert_schema, banning_standard, drop_file, load_config, pick_parts, png, repo, subscribe,
    Broker,
};
use sqlx::Row;
use synth::DefectKind;

/// The part as a JPEG of its full size (a camera's file).
fn jpeg(part: &synth::SynthPart) -> Vec<u8> {
    let mut bytes = Vec::new();
    part.image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    bytes
}

/// A small JPEG whose header claims 50000 x 50000 pixels (a decompression
/// bomb: decoding it would allocate 7.5 GB).
fn huge_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&50_000u16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&50_000u16.to_be_bytes());
    bytes
}

/// A 16384 x 16384 grey PNG: a few hundred kB on disk, 1 GiB while decoded
/// and turned into RGB.
fn grey_bomb() -> Vec<u8> {
    let grey = image::GrayImage::new(16_384, 16_384);
    let mut bytes = Vec::new();
    grey.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

/// A station `name` judging the hot folder `incoming` under `dir` with the
/// reference model, storing in `database_url`.
fn station(
    dir: &Path,
    name: &str,
    database_url: &str,
    broker: &Broker,
) -> firmware_config::StationConfig {
    load_config(
        dir,
        &format!(
            r#"
[station]
station = "{name}"
recipe = "housing"

[[cameras]]
id = "top"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "incoming", poll = "50ms" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "{url}"

[storage]
database_url = "{database_url}"
data_dir = "data"
min_free = "0 B"
"#,
            model = repo().join("models/reference").display(),
            url = broker.url(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_images_become_stored_and_published_verdicts() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let cfg = station(dir.path(), "e2e-1", "sqlite://db/appliance.db", &broker);

    // A subscriber, as the MES would be.
    let (_sub, mut messages) = subscribe(&broker, "e2e-sub", "inspect/e2e-1/#").await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg, stop_rx, None));

    let (clean, defective) = pick_parts();
    let kind = defective.defects[0].kind;
    let expected_clause = DefectKind::ALL.iter().position(|k| *k == kind).unwrap() as u64 + 1;
    drop_file(&incoming, "part-clean.png", &png(&clean));
    drop_file(&incoming, "part-defect.png", &png(&defective));
    let good = png(&clean);
    drop_file(&incoming, "corrupt.png", &good[..good.len() / 3]);
    drop_file(&incoming, "empty.png", b"");
    drop_file(&incoming, "notes.png", b"shift notes: all fine\n");
    drop_file(&incoming, "huge.jpg", &huge_jpeg());
    drop_file(&incoming, "grey-bomb.png", &grey_bomb());
    // Never judged, never silently skipped: a FIFO (reading it would block
    // for ever) and a link (never followed).
    let made = std::process::Command::new("mkfifo")
        .arg(incoming.join("pipe.png"))
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/etc/passwd", incoming.join("link.png")).unwrap();
    // Photos cut short, as an interrupted transfer leaves them: the lenient
    // decoder would pad the missing rows with grey and the part be judged.
    let photo = jpeg(&clean);
    drop_file(&incoming, "truncated.jpg", &photo[..photo.len() / 4]);
    drop_file(&incoming, "cut.jpg", &photo[..photo.len() - 40]);

    // Collect verdicts from MQTT.
    let mut verdicts = std::collections::HashMap::new();
    let mut results = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while verdicts.len() < 2 || results < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (topic, payload) = tokio::time::timeout(left, messages.recv())
            .await
            .expect("verdicts arrive on MQTT in time")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if topic == "inspect/e2e-1/verdict" {
            assert_schema("verdict.v1", &v);
            verdicts.insert(v["part_id"].as_str().unwrap().to_string(), v);
        } else if topic == "inspect/e2e-1/result" {
            assert_schema("result", &v);
            results += 1;
        }
    }
    let pass = &verdicts["part-clean"];
    assert_eq!(pass["decision"], "PASS", "{pass:#}");
    let fail = &verdicts["part-defect"];
    assert_eq!(fail["decision"], "FAIL", "{fail:#}");
    let cited: Vec<u64> = fail["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["clause"].as_u64())
        .collect();
    assert_eq!(
        cited,
        [expected_clause],
        "{kind:?} should cite clause {expected_clause}: {fail:#}"
    );
    assert_eq!(fail["findings"][0]["defect"], kind.word());
    assert!(fail["timings"]["published_at"].is_string());

    // The store has both verdicts, their images, and three error records.
    let db = dir.path().join("db/appliance.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let errors = loop {
        let rows = sqlx::query("SELECT source, reason FROM ingest_errors ORDER BY source")
            .fetch_all(&pool)
            .await
            .unwrap();
        if rows.len() >= 9 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let errors: std::collections::BTreeMap<String, String> =
        errors.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(errors.len(), 9, "{errors:?}");
    assert_eq!(
        errors["grey-bomb.png"],
        "image is 16384x16384: decoding it takes 1024 MiB, more than the 512 MiB one picture may"
    );
    assert!(
        errors["pipe.png"].starts_with("a FIFO, not a regular file"),
        "{errors:?}"
    );
    assert!(
        errors["link.png"].starts_with("a symbolic link, not a regular file"),
        "{errors:?}"
    );
    assert!(
        errors["corrupt.png"].contains("corrupt or truncated png"),
        "{errors:?}"
    );
    assert_eq!(errors["empty.png"], "empty file");
    assert_eq!(
        errors["huge.jpg"],
        "image is 50000x50000, larger than the 16384x16384 limit"
    );
    assert!(
        errors["notes.png"].contains("not a supported image"),
        "{errors:?}"
    );
    for cut in ["truncated.jpg", "cut.jpg"] {
        assert!(
            errors[cut].contains("corrupt or truncated jpg"),
            "{cut}: {errors:?}"
        );
    }

    let stored: Vec<(String, String)> =
        sqlx::query("SELECT part_id, decision FROM verdicts ORDER BY part_id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        stored,
        [
            ("part-clean".into(), "PASS".into()),
            ("part-defect".into(), "FAIL".into())
        ]
    );
    let clause: i64 = sqlx::query_scalar(
        "SELECT f.clause FROM findings f JOIN verdicts v ON v.id = f.verdict_id WHERE v.part_id = 'part-defect' AND f.clause IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(clause as u64, expected_clause);
    let images: Vec<String> = sqlx::query_scalar("SELECT path FROM images")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(images.len(), 2);
    assert!(images.iter().all(|p| Path::new(p).exists()));

    // Nothing is lost: every file was moved to processed/, none left behind.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = std::fs::read_dir(&incoming)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "files left in the hot folder: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_dir(incoming.join("processed"))
            .unwrap()
            .count(),
        9
    );
    // The FIFO and the link stay where they were.
    assert!(incoming.join("pipe.png").exists() && incoming.join("link.png").is_symlink());

    // Still running after the bad files: one more part is judged.
    assert!(!service.is_finished());
    drop_file(&incoming, "part-again.png", &png(&clean));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (topic, payload) = tokio::time::timeout(left, messages.recv())
            .await
            .expect("the service keeps judging after bad files")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if topic.ends_with("/verdict") && v["part_id"] == "part-again" {
            break;
        }
    }

    // Every outbox row was acknowledged by the broker.
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("graceful shutdown within 30 s")
        .unwrap()
        .expect("service ran without error");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}

/// A power cut between a verdict's commit and its file's move leaves the
/// file in the hot folder with its verdict stored. After the restart the
/// file is recognised by its identity (name, size, modification time)
/// recorded in the verdict's transaction: moved, not judged twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_judged_before_a_power_cut_is_not_judged_again() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let cfg = station(dir.path(), "cut-1", "sqlite://appliance.db", &broker);
    let (clean, defective) = pick_parts();
    drop_file(&incoming, "a.png", &png(&clean));
    drop_file(&incoming, "b.png", &png(&defective));
    // Opened (and migrated) before the station starts, so the two never
    // migrate the same database at once.
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();

    appliance::faults::lose_moves(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg.clone(), stop_rx, None));
    e2e::wait_until_stored(&store, 2, Duration::from_secs(120)).await;
    stop_tx.send(true).unwrap();
    service.await.unwrap().unwrap();
    assert!(incoming.join("a.png").exists() && incoming.join("b.png").exists());

    // Power back: the same files, the same folder.
    appliance::faults::lose_moves(false);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg, stop_rx, None));
    let deadline = Instant::now() + Duration::from_secs(60);
    while incoming.join("a.png").exists() || incoming.join("b.png").exists() {
        assert!(Instant::now() < deadline, "the files were never moved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    service.await.unwrap().unwrap();
    let judged: Vec<(String, i64)> =
        sqlx::query_as("SELECT part_id, COUNT(*) FROM verdicts GROUP BY part_id ORDER BY part_id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(judged, [("a".to_string(), 1), ("b".to_string(), 1)]);
    assert!(incoming.join("processed/a.png").exists());
}

/// The benchmark's two feeds on the reference model: straight into the
/// pipeline, and through the station as deployed, its hot-folder cameras
/// finding files the bench renames in. Every part fed is judged, published
/// and (hot folder) heard by an MQTT subscriber; nothing is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_judges_every_part_fed_directly_or_through_hot_folders() {
    use appliance::bench::{BenchOptions, Feed};
    let broker = Broker::start();
    let mut cfg = firmware_config::Loader::new(Some(&repo().join("config/demo/station.toml")))
        .load()
        .unwrap();
    cfg.mqtt.url = broker.url();
    cfg.mqtt.broker = firmware_config::BrokerMode::External;
    for (i, feed) in [
        Feed::Direct,
        Feed::HotFolder {
            poll: Duration::from_millis(100),
        },
    ]
    .into_iter()
    .enumerate()
    {
        cfg.station.station = format!("bench-test-{i}");
        let opts = BenchOptions {
            frames: 24,
            cameras: 2,
            rate: Some(16.0),
            duration: None,
            distinct: 6,
            compute_rounds: 2,
            export: None,
            shadow: None,
            feed,
        };
        let report = appliance::bench::run(cfg.clone(), opts).await.unwrap();
        assert_eq!(report.frames, 24, "{feed}: every part judged and heard");
        assert_eq!(report.feed, feed.to_string());
        assert!(
            0.0 < report.latency_p50_ms
                && report.latency_p50_ms <= report.latency_p99_ms
                && report.latency_p99_ms <= report.latency_max_ms,
            "{feed}: {report:?}"
        );
        assert!(report.mean_batch >= 1.0 && report.compute_ms_per_part > 0.0);
        assert_eq!(
            report.latency_from.contains("rename"),
            matches!(feed, Feed::HotFolder { .. })
        );
        // A renamed file waits in its folder less than its whole way.
        if let Some(wait) = &report.folder_wait {
            assert!(wait.p50_ms < report.latency_p50_ms, "{report:?}");
        }
        assert_eq!(
            report.folder_wait.is_some(),
            matches!(feed, Feed::HotFolder { .. })
        );
    }
}
