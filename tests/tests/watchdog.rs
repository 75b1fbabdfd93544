//! The systemd watchdog is fed only while the pipeline makes progress. The
//! test plays systemd: it owns the notification socket and sets
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC` (300 ms, so pings every 150 ms) for
//! an in-process station. Idle, the station pings; with the engine stalled
//! and frames waiting, the pings stop (systemd would restart it); once the
//! stall ends, the frames are judged and the pings resume.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{banning_standard, repo, Broker, InProcess};

/// Every datagram received, with when it came.
fn listen(socket: UnixDatagram) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            out.lock().unwrap().push((Instant::now(), text));
        }
    });
    got
}

fn pings_between(got: &Arc<Mutex<Vec<(Instant, String)>>>, from: Instant, to: Instant) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(t, m)| *t >= from && *t < to && m == "WATCHDOG=1")
        .count()
}

/// A hot-folder station (fed in process) on the reference model.
fn station_config(
    dir: &std::path::Path,
    station: &str,
    mqtt_port: u16,
) -> firmware_config::StationConfig {
    e2e::load_config(
        dir,
        &format!(
            r#"
[station]
station = "{station}"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "unused" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display(),
            port = mqtt_port,
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pipeline_stops_feeding_the_watchdog() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let got = listen(UnixDatagram::bind(&path).unwrap());
    // This test's process is its own (nextest), so the environment is ours.
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "300000");
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    let cfg = station_config(dir.path(), "wd-1", broker.port);
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    let station = InProcess::start(cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !got.lock().unwrap().iter().any(|(_, m)| m == "READY=1") {
        assert!(Instant::now() < deadline, "no READY=1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Idle: fed.
    let idle = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fed_idle = pings_between(&got, idle, Instant::now());
    assert!(fed_idle >= 4, "{fed_idle} pings in an idle second");

    // Stalled with frames waiting: not fed.
    appliance::faults::stall_pipeline(true);
    e2e::feed_frames(station.frames.clone(), 3, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fed_stalled = pings_between(&got, stalled, Instant::now());
    assert_eq!(
        fed_stalled, 0,
        "the watchdog was fed while the pipeline hung"
    );

    // The stall ends: the frames are judged and the pings resume.
    appliance::faults::stall_pipeline(false);
    e2e::wait_until_stored(&store, 3, Duration::from_secs(30)).await;
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pings_between(&got, resumed, Instant::now()) >= 4);
    station.stop().await;
    let stopping = got.lock().unwrap().iter().any(|(_, m)| m == "STOPPING=1");
    assert!(stopping, "STOPPING=1 at shutdown");
}

/// One stop, one deadline: with the engine stalled, frames waiting for a
/// place in flight and the broker away, SIGTERM's stop still ends within
/// the unit's TimeoutStopSec (30 s), and what was judged before it stays
/// in the outbox for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_engine_and_an_absent_broker_still_stop_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), banning_standard()).unwrap();
    // Nothing listens on that port: the broker is away all along.
    let cfg = station_config(dir.path(), "stop-1", e2e::free_port());
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    let station = InProcess::start(cfg);
    e2e::feed_frames(station.frames.clone(), 4, 3)
        .join()
        .unwrap();
    e2e::wait_until_stored(&store, 4, Duration::from_secs(60)).await;
    // More frames than places in flight (2 x max_batch), engine stalled.
    appliance::faults::stall_pipeline(true);
    let _feeder = e2e::feed_frames(station.frames.clone(), 40, 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    station.stop().await;
    let took = asked.elapsed();
    appliance::faults::stall_pipeline(false);
    assert!(
        took < Duration::from_secs(30),
        "the stop took {took:?}, past TimeoutStopSec"
    );
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        pending >= 4,
        "{pending} outbox rows: judged verdicts kept for the next start"
    );
    println!("stop with a stalled engine and no broker: {took:?}");
}
