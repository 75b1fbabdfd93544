//! No verdict lost when the broker restarts: a stream of 1,200 parts, the
//! broker stopped after the first few hundred verdicts and restarted three
//! seconds later. The appliance keeps inspecting into its outbox; afterwards
//! every verdict id reaches a durable subscriber at least once, and the
//! first arrivals come in commit order. Prints the outage figures. The same
//! runs over MQTT 5 (its persistent session needs a session expiry), with
//! fewer parts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use e2e::{feed_frames, http_get, load_config, repo, subscribe_durably, Broker};

/// The outage station: one camera fed directly, batches of 8, a short
/// keep-alive so the outage is noticed quickly.
fn station(
    dir: &std::path::Path,
    broker_port: u16,
    protocol: &str,
) -> firmware_config::StationConfig {
    std::fs::write(
        dir.join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    load_config(
        dir,
        &format!(
            r#"
[station]
station = "out-1"
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

[batching]
max_batch = 8

[mqtt]
url = "mqtt://127.0.0.1:{port}"
keep_alive = "{keep_alive}"
protocol = "{protocol}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display(),
            port = broker_port,
            // The MQTT 5 client's lower bound.
            keep_alive = if protocol == "5" { "5s" } else { "2s" },
        ),
    )
}

async fn committed(pool: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM verdicts")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_verdict() {
    outage("3.1.1", 1200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_verdict_over_mqtt5() {
    outage("5", 600).await;
}

async fn outage(protocol: &str, parts: usize) {
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let mut broker = Broker::start_persistent(&broker_dir);
    let cfg = station(dir.path(), broker.port, protocol);
    let token = e2e::api_token(&cfg, "viewer").await;
    let mut received = subscribe_durably(&broker, "mes", "inspect/out-1/verdict").await;

    let station = e2e::InProcess::start(cfg);
    let http_port = station.http_port;
    let feeder = feed_frames(station.frames.clone(), parts, 606);

    let mut arrivals: Vec<String> = Vec::new();
    let mut ids = HashSet::new();
    let mut duplicates = 0usize;
    let mut take = |payload: &[u8], arrivals: &mut Vec<String>| {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        if ids.insert(id.clone()) {
            arrivals.push(id);
        } else {
            duplicates += 1;
        }
    };
    while arrivals.len() < parts / 4 {
        let (_, p) = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("verdicts flow before the outage")
            .unwrap();
        take(&p, &mut arrivals);
    }

    let db = dir.path().join("appliance.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    broker.stop();
    let at_down = committed(&pool).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_up = committed(&pool).await;
    // The backlog is visible while the broker is away.
    let t = token.clone();
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(http_port, "/api/v1/outbox", &t))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let backlog: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(backlog["pending"].as_i64().unwrap() > 0, "{backlog}");
    assert!(backlog["oldest"].is_string(), "{backlog}");
    assert!(
        at_up > at_down,
        "inspection stopped while the broker was down ({at_down} -> {at_up})"
    );
    // Whatever arrived before the stop took effect.
    while let Ok((_, p)) = received.try_recv() {
        take(&p, &mut arrivals);
    }
    let backlog_start = arrivals.len();
    broker.restart();
    let up_at = Instant::now();
    let mut drained_at = None;

    feeder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = committed(&pool).await as usize;
        let unpublished: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        if arrivals.len() >= at_up as usize && drained_at.is_none() {
            drained_at = Some(up_at.elapsed());
        }
        if total == parts && arrivals.len() == parts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} verdicts arrived; {unpublished} outbox rows not acknowledged",
            arrivals.len()
        );
        if let Ok(Some((_, p))) =
            tokio::time::timeout(Duration::from_millis(500), received.recv()).await
        {
            take(&p, &mut arrivals);
        }
    }
    wait_for_empty_backlog(http_port, &token, Duration::from_secs(30)).await;
    station.stop().await;

    let order: Vec<String> = sqlx::query_scalar(
        "SELECT verdict_id FROM outbox WHERE topic = 'inspect/out-1/verdict' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(order.len(), parts);
    assert_eq!(
        arrivals, order,
        "first arrivals are not in commit order, or a verdict is missing"
    );
    println!(
        "outage figures (MQTT {protocol}): broker down 3 s; {} verdicts committed during the outage; {} delivered before it; backlog of {} drained in {:.2} s after the broker returned; {} duplicates; {} of {} verdict ids arrived",
        at_up - at_down,
        backlog_start,
        at_up as usize - backlog_start,
        drained_at.unwrap_or_default().as_secs_f64(),
        duplicates,
        arrivals.len(),
        parts
    );
}

/// A broker that forgets sessions (no persistence, or a fail-over to another
/// node) drops what was in flight when it went away; the appliance notices
/// the fresh session and sends every unacknowledged verdict again from the
/// outbox, so the backlog still empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_forgets_the_session_still_gets_every_verdict() {
    let parts = 400;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start();
    let cfg = station(dir.path(), broker.port, "3.1.1");
    let token = e2e::api_token(&cfg, "viewer").await;
    let station = e2e::InProcess::start(cfg);
    let http_port = station.http_port;
    let feeder = feed_frames(station.frames.clone(), parts, 606);
    let db = dir.path().join("appliance.db");
    while !db.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    while committed(&pool).await < (parts / 4) as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    feeder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&pool).await < parts as i64 {
        assert!(Instant::now() < deadline, "not every part was judged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Verdicts lost in flight when the broker forgot the session would stay
    // unacknowledged here.
    wait_for_empty_backlog(http_port, &token, Duration::from_secs(60)).await;
    station.stop().await;
}

/// Waits until `GET /api/v1/outbox` reports no pending row.
async fn wait_for_empty_backlog(http_port: u16, token: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let t = token.to_string();
        let (_, body) =
            tokio::task::spawn_blocking(move || http_get(http_port, "/api/v1/outbox", &t))
                .await
                .unwrap();
        let backlog: serde_json::Value = serde_json::from_str(&body).unwrap();
        if backlog["pending"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backlog never emptied: {backlog}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 18, point 1: commands of 20 kB (over the MQTT client's 10 KiB
/// default) and of 100 kB (over the station's 64 KiB limit), sent QoS 1 by
/// a client with a persistent session (so the broker would redeliver them
/// for ever), on every `cmd/*` topic. Verdicts keep flowing, the station
/// never goes offline, the 20 kB ones are answered as malformed, 3.1.1
/// gets a reply saying a command was dropped, and a normal command is
/// answered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_never_stops_the_verdicts() {
    oversized_commands("3.1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_never_stops_the_verdicts_over_mqtt5() {
    oversized_commands("5").await;
}

async fn oversized_commands(protocol: &str) {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let dir = tempfile::tempdir().unwrap();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Broker::start_persistent(&broker_dir);
    let cfg = station(dir.path(), broker.port, protocol);
    let mut received = subscribe_durably(&broker, "mes", "inspect/out-1/#").await;
    let station = e2e::InProcess::start(cfg);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = e2e::feed_paced(
        station.frames.clone(),
        Duration::from_millis(50),
        stop.clone(),
    );
    let verdicts = |messages: &[(String, Vec<u8>)]| {
        messages
            .iter()
            .filter(|(t, _)| t == "inspect/out-1/verdict")
            .count()
    };
    let mut seen = Vec::new();
    while verdicts(&seen) < 5 {
        let m = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("verdicts flow before the oversized commands")
            .unwrap();
        seen.push(m);
    }

    // A stranger's client that keeps its session and sends 20 kB commands.
    let mut opts = MqttOptions::new("stranger", "127.0.0.1", broker.port);
    opts.set_clean_session(false);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (stranger, mut events) = AsyncClient::new(opts, 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for size in [20_000, 100_000] {
        for name in ["trigger", "recipe", "reload", "config", "anything"] {
            stranger
                .publish(
                    format!("inspect/out-1/cmd/{name}"),
                    QoS::AtLeastOnce,
                    false,
                    vec![b'x'; size],
                )
                .await
                .unwrap();
        }
    }

    // Verdicts go on within seconds, and a normal command is answered.
    let sent_at = Instant::now();
    let before = verdicts(&seen);
    let mut answered = false;
    let (mut oversized_replies, mut malformed_replies) = (0, 0);
    let mut next_ask = Instant::now() + Duration::from_secs(1);
    while sent_at.elapsed() < Duration::from_secs(20)
        && !(answered && verdicts(&seen) >= before + 20)
    {
        if Instant::now() >= next_ask {
            next_ask = Instant::now() + Duration::from_secs(1);
            stranger
                .publish(
                    "inspect/out-1/cmd/recipe",
                    QoS::AtLeastOnce,
                    false,
                    br#"{"recipe":"nope","request_id":"after"}"#.to_vec(),
                )
                .await
                .unwrap();
        }
        let Ok(Some((topic, payload))) =
            tokio::time::timeout(Duration::from_millis(200), received.recv()).await
        else {
            continue;
        };
        if topic == "inspect/out-1/cmd/reply" {
            let reply: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            e2e::assert_schema("command-reply", &reply);
            answered |= reply["request_id"] == "after";
            // No request id: one of the 20 kB ones.
            malformed_replies += usize::from(
                reply["ok"] == false
                    && reply["command"] != "oversized"
                    && reply["request_id"].is_null(),
            );
            if reply["command"] == "oversized" {
                oversized_replies += 1;
                assert!(
                    reply["error"]
                        .as_str()
                        .unwrap()
                        .contains("at most 65536 bytes"),
                    "{reply}"
                );
            }
        }
        seen.push((topic, payload));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let after = verdicts(&seen) - before;
    assert!(
        after >= 20,
        "only {after} verdicts in {:?} after the oversized commands",
        sent_at.elapsed()
    );
    assert!(answered, "a normal command after them was not answered");
    assert!(malformed_replies >= 1, "no 20 kB command was answered");
    if protocol == "3.1.1" {
        // MQTT 5 declares the limit and the broker drops them silently.
        assert!(
            oversized_replies >= 1,
            "no reply said a command was dropped"
        );
    }
    let offline = seen
        .iter()
        .filter(|(t, p)| t == "inspect/out-1/status" && p.windows(9).any(|w| w == b"\"offline\""))
        .count();
    assert_eq!(offline, 0, "the station went offline");
    feeder.join().unwrap();
    station.stop().await;
}

/// A verdict far larger than MQTT clients take by default (50 findings,
/// each citing a 2 kB clause: over 100 kB) is delivered like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_with_fifty_long_findings_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let cfg = station(dir.path(), broker.port, "3.1.1");
    let standard = std::fs::read_to_string(dir.path().join("standard.txt")).unwrap();
    let mut received = subscribe_durably(&broker, "mes", "inspect/out-1/verdict").await;
    let station = e2e::InProcess::start(cfg.clone());
    let feeder = feed_frames(station.frames.clone(), 1, 606);
    let (_, first) = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .expect("a first verdict")
        .unwrap();
    feeder.join().unwrap();

    // The same verdict again, with 50 findings citing a long clause.
    let mut big: record::Verdict = serde_json::from_slice(&first).unwrap();
    big.id = format!("{}beef", &big.id[..big.id.len() - 4]);
    let clause = "No scratch longer than 0.5 mm is permitted on a sealing face. ".repeat(32);
    let template = record::Finding {
        defect: "scratch".into(),
        box_norm: [0.1, 0.1, 0.2, 0.2],
        box_px: [10, 10, 20, 20],
        size_mm: 1.0,
        clause: Some(1),
        clause_label: Some("1".into()),
        clause_text: Some(clause),
        limit_mm: Some(0.5),
        max_count: None,
        confidence: 0.9,
    };
    big.findings = vec![template; 50];
    let payload = serde_json::to_string(&big).unwrap();
    assert!(payload.len() > 100_000, "{} bytes", payload.len());
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    store
        .commit_verdict(
            &big,
            &standard,
            &[("inspect/out-1/verdict".to_string(), payload)],
            None,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, p) = tokio::time::timeout(left, received.recv())
            .await
            .expect("the large verdict arrives")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        if v["id"] == big.id.as_str() {
            assert_eq!(v["findings"].as_array().unwrap().len(), 50);
            e2e::assert_schema("verdict.v1", &v);
            break;
        }
    }
    station.stop().await;
}
