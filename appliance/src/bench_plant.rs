//! The plant load test (`appliance bench-plant`): several station processes
//! on the synthetic line, sharing one PostgreSQL and one Mosquitto, with a
//! plant server beside them, for a set time; optionally one station killed
//! (SIGKILL) and started again, and the broker restarted, mid-run. It
//! reports per station what was committed and what a subscriber heard (and
//! so what was lost), the outbox backlog left, the commit latency each
//! station measured (`appliance_store_commit_seconds`), the CPU each process
//! used, and the plant server's list page timed during the run. JSON out.
//!
//! It runs this binary's own `run` and `plant` commands and the system's
//! `mosquitto` (a private one on a free port, with persistence, so its
//! restart is a restart and not a wipe).

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stations: usize,
    /// Parts per second each station's synthetic camera makes.
    pub rate: f64,
    pub seconds: u64,
    /// A PostgreSQL server; the database `appliance_bench_plant` is made
    /// afresh on it.
    pub postgres: String,
    pub package: PathBuf,
    pub standard: PathBuf,
    pub precision: String,
    /// Stations judge with the stand-in engine (`model.stand_in`).
    pub stand_in: bool,
    /// Each synthetic camera paints this many parts and replays them
    /// (`replay` of its source; 0 paints every part).
    pub replay: usize,
    /// Kill station 0 with SIGKILL this many seconds in, and start it again.
    pub kill_at: Option<u64>,
    /// Restart the broker this many seconds in.
    pub broker_restart_at: Option<u64>,
    pub dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct StationReport {
    pub station: String,
    /// Verdicts decided within the timed window (from the moment every
    /// station served to the end of the run, before stopping).
    pub decided_in_window: u64,
    /// Every verdict committed, the drain at the stop included.
    pub committed: u64,
    pub delivered: u64,
    /// Committed verdicts no subscriber heard.
    pub lost: u64,
    /// Verdicts heard more than once (allowed: consumers drop them by id).
    pub duplicates: u64,
    pub backlog: i64,
    pub commit_p50_ms: Option<f64>,
    pub commit_p99_ms: Option<f64>,
    /// CPU cores the station's process used on average (its last life).
    pub cpu_cores: f64,
    /// Of those, the share of a core its inference engine was busy (one
    /// ONNX Runtime thread each, so about the model's own CPU); the rest is
    /// the station's work around the model.
    pub engine_cores: f64,
    pub restarts: u32,
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// What judged the parts: `model fp32`, `model int8` or `stand-in`.
    pub engine: String,
    pub stations: Vec<StationReport>,
    /// The timed window.
    pub seconds: f64,
    /// Verdicts decided within the window, per second, all stations.
    pub decided_per_s: f64,
    pub lost: u64,
    pub plant_page_median_ms: Option<f64>,
    pub plant_page_p95_ms: Option<f64>,
    pub plant_page_samples: usize,
    pub plant_cpu_cores: f64,
    pub broker_cpu_cores: f64,
    /// The machine's `postgres` processes over the window (the server is
    /// shared with whatever else uses it).
    pub postgres_cpu_cores: f64,
    /// Cores the whole machine kept busy over the window, of how many.
    pub machine_busy_cores: f64,
    pub machine_cores: f64,
    pub events: Vec<String>,
}

const DATABASE: &str = "appliance_bench_plant";

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CPU seconds a process used so far (user + system).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_s)
}

/// CPU seconds all `postgres` processes on this machine used so far (those
/// still running).
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(cpu_seconds)
        .sum()
}

/// CPU seconds this machine spent busy and in all, summed over its cores
/// (`/proc/stat`; iowait counts as idle).
fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let all: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(((all - idle) / per_s, all / per_s))
}

/// A child process and when it started, for its CPU share.
struct Proc {
    child: Child,
    started: Instant,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self {
            child,
            started: Instant::now(),
        })
    }

    fn cores(&self) -> f64 {
        cpu_seconds(self.child.id()).unwrap_or(0.0) / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid we own.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then waits up to `grace`; SIGKILL after.
    fn stop(&mut self, grace: Duration) {
        self.signal(libc::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto(dir: &Path, port: u16) -> anyhow::Result<Proc> {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n",
            dir.display()
        ),
    )?;
    let p = Proc::spawn(
        Command::new("mosquitto").arg("-c").arg(&conf),
        &dir.join("mosquitto.log"),
    )?;
    wait_for_port(port, Duration::from_secs(10))?;
    Ok(p)
}

fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < until, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn get(port: u16, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    crate::bench_review::request(port, &req).map(|(status, _, body)| (status, body))
}

/// A counter's value in a Prometheus text.
fn counter(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The `q` quantile of a Prometheus histogram's text, in ms: the upper
/// bound of the bucket where the cumulative count reaches it.
fn quantile_ms(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("{name}_bucket{{le=\""))?;
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| le * 1e3)
}

fn station_toml(plan: &Plan, i: usize, mqtt: u16, db: &str, http: u16, dir: &Path) -> String {
    let interval_us = (1e6 / plan.rate).round().max(1.0) as u64;
    format!(
        r#"[station]
site = "bench"
line = "line-{i}"
station = "s-{i}"
recipe = "housing"

[[cameras]]
id = "synthetic"
mm_per_px = 0.1
[cameras.source]
kind = "synthetic"
seed = {i}
interval = "{interval_us}us"
replay = {replay}

[[recipes]]
name = "housing"
standard = "{standard}"

[model]
package = "{package}"
precision = "{precision}"
intra_threads = 1
stand_in = {stand_in}

[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"

[storage]
database_url = "{db}"
data_dir = "{data}"
min_free = "0 B"

[http]
bind = "127.0.0.1:{http}"
open_metrics = true
"#,
        standard = plan.standard.display(),
        package = plan.package.display(),
        precision = plan.precision,
        stand_in = plan.stand_in,
        replay = plan.replay,
        data = dir.join("data").display(),
    )
}

/// Every verdict heard on the broker: ids by station, and repeats.
#[derive(Default)]
struct Heard {
    ids: HashMap<String, HashSet<String>>,
    duplicates: HashMap<String, u64>,
    last: Option<Instant>,
}

fn listen(port: u16, heard: Arc<Mutex<Heard>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new("bench-plant-listener", "127.0.0.1", port);
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut events) = AsyncClient::new(opts, 1024);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client
                        .subscribe("inspect/+/verdict", QoS::AtLeastOnce)
                        .await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    let (Some(id), Some(station)) =
                        (v["id"].as_str(), v["station"]["station"].as_str())
                    else {
                        continue;
                    };
                    let mut h = heard.lock().expect("heard lock");
                    h.last = Some(Instant::now());
                    let fresh = h
                        .ids
                        .entry(station.to_string())
                        .or_default()
                        .insert(id.to_string());
                    if !fresh {
                        *h.duplicates.entry(station.to_string()).or_default() += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let exe = std::env::current_exe()?;
    let dir = &plan.dir;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let db = crate::bench_review::fresh_database(&plan.postgres, DATABASE).await?;
    let store = store::Store::open(&db, &dir.join("bench-data")).await?;
    let token =
        store::accounts::add_token(&store, "bench", store::accounts::Role::Viewer, None).await?;
    let mut events = Vec::new();
    let broker_dir = dir.join("broker");
    std::fs::create_dir_all(&broker_dir)?;
    let mqtt = free_port()?;
    let mut broker = mosquitto(&broker_dir, mqtt)?;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let listener = listen(mqtt, heard.clone());

    // The plant server.
    let plant_http = free_port()?;
    let plant_dir = dir.join("plant");
    std::fs::create_dir_all(plant_dir.join("packages"))?;
    std::fs::write(
        plant_dir.join("plant.toml"),
        format!(
            "[station]\nstation = \"plant\"\n[storage]\ndatabase_url = \"{db}\"\ndata_dir = \"data\"\n[http]\nbind = \"127.0.0.1:{plant_http}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\n[plant]\npackages_dir = \"packages\"\n"
        ),
    )?;
    let mut plant = Proc::spawn(
        Command::new(&exe)
            .args(["plant", "--config"])
            .arg(plant_dir.join("plant.toml")),
        &plant_dir.join("plant.log"),
    )?;

    // The stations.
    let mut configs = Vec::new();
    let mut stations = Vec::new();
    for i in 0..plan.stations {
        let sdir = dir.join(format!("s-{i}"));
        std::fs::create_dir_all(&sdir)?;
        let http = free_port()?;
        let file = sdir.join("station.toml");
        std::fs::write(&file, station_toml(&plan, i, mqtt, &db, http, &sdir))?;
        let start = |n: u32| -> anyhow::Result<Proc> {
            Proc::spawn(
                Command::new(&exe).args(["run", "--config"]).arg(&file),
                &sdir.join(format!("station-{n}.log")),
            )
        };
        stations.push(start(0)?);
        configs.push((file.clone(), sdir.clone(), http));
    }
    let launched = Instant::now();
    wait_for_port(plant_http, Duration::from_secs(60))?;
    for (_, _, http) in &configs {
        wait_for_port(*http, Duration::from_secs(120))?;
    }
    // The window starts when every station's first verdict was heard (a
    // camera that paints parts to replay starts a little after serving).
    let first_heard = Instant::now() + Duration::from_secs(120);
    while heard.lock().expect("heard lock").ids.len() < plan.stations {
        anyhow::ensure!(
            Instant::now() < first_heard,
            "not every station published a verdict within 2 minutes of serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events.push(format!(
        "all {} stations publishing after {:.1} s; the window starts",
        plan.stations,
        launched.elapsed().as_secs_f64()
    ));
    let started = Instant::now();
    let window_from = record::time::now();
    let postgres_from = postgres_cpu_seconds();
    let machine_from = machine_cpu_seconds();

    let mut restarts = vec![0u32; plan.stations];
    let mut page_ms = Vec::new();
    let (mut killed, mut bounced) = (false, false);
    let run_for = Duration::from_secs(plan.seconds);
    let mut next_page = Instant::now();
    while started.elapsed() < run_for {
        let t = started.elapsed().as_secs();
        if plan.kill_at.is_some_and(|k| t >= k) && !killed {
            killed = true;
            stations[0].signal(libc::SIGKILL);
            let _ = stations[0].child.wait();
            events.push(format!("s-0 killed (SIGKILL) at {t} s"));
            tokio::time::sleep(Duration::from_secs(2)).await;
            restarts[0] += 1;
            let (file, sdir, _) = &configs[0];
            stations[0] = Proc::spawn(
                Command::new(&exe).args(["run", "--config"]).arg(file),
                &sdir.join(format!("station-{}.log", restarts[0])),
            )?;
            events.push(format!(
                "s-0 started again at {} s",
                started.elapsed().as_secs()
            ));
        }
        if plan.broker_restart_at.is_some_and(|b| t >= b) && !bounced {
            bounced = true;
            broker.stop(Duration::from_secs(10));
            events.push(format!("broker stopped at {t} s"));
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker = mosquitto(&broker_dir, mqtt)?;
            events.push(format!("broker back at {} s", started.elapsed().as_secs()));
        }
        if Instant::now() >= next_page {
            next_page += Duration::from_secs(2);
            let path = format!("/?station=s-{}", page_ms.len() % plan.stations);
            let token = token.clone();
            let timed = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                get(plant_http, &path, &token).map(|(status, _)| (status, t.elapsed()))
            })
            .await?;
            match timed {
                Ok((200, took)) => page_ms.push(took.as_secs_f64() * 1e3),
                Ok((status, _)) => events.push(format!("plant list page: HTTP {status} at {t} s")),
                Err(e) => events.push(format!("plant list page: {e} at {t} s")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let window_to = record::time::now();
    let postgres_cores = (postgres_cpu_seconds() - postgres_from).max(0.0) / seconds;
    let (machine_busy_cores, machine_cores) = match (machine_from, machine_cpu_seconds()) {
        (Some((b0, a0)), Some((b1, a1))) => ((b1 - b0) / seconds, (a1 - a0) / seconds),
        _ => (0.0, 0.0),
    };

    // Commit latency and CPU as each station saw them, before stopping.
    let mut commit = Vec::new();
    let mut cores = Vec::new();
    for (i, (_, _, http)) in configs.iter().enumerate() {
        let metrics = get(*http, "/metrics", "")
            .map(|(_, b)| b)
            .unwrap_or_default();
        commit.push((
            quantile_ms(&metrics, "appliance_store_commit_seconds", 0.5),
            quantile_ms(&metrics, "appliance_store_commit_seconds", 0.99),
        ));
        let busy = counter(&metrics, "appliance_engine_busy_seconds_total").unwrap_or(0.0);
        let lived = stations[i].started.elapsed().as_secs_f64().max(1e-9);
        cores.push((stations[i].cores(), busy / lived));
    }
    let plant_cores = plant.cores();
    let broker_cores = broker.cores();
    for s in &mut stations {
        s.stop(Duration::from_secs(60));
    }
    events.push(format!(
        "stations stopped at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // Until the subscriber has heard nothing for 3 s (at most a minute).
    let quiet_until = Instant::now() + Duration::from_secs(60);
    loop {
        let last = heard.lock().expect("heard lock").last;
        if last.is_none_or(|l| l.elapsed() > Duration::from_secs(3)) || Instant::now() > quiet_until
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    listener.abort();
    plant.stop(Duration::from_secs(20));
    broker.stop(Duration::from_secs(10));

    let heard = std::mem::take(&mut *heard.lock().expect("heard lock"));
    let mut reports = Vec::new();
    for (i, (c, (cpu, engine))) in commit.into_iter().zip(cores).enumerate() {
        let station = format!("s-{i}");
        let committed: Vec<String> =
            sqlx::query_scalar("SELECT id FROM verdicts WHERE station = $1")
                .bind(&station)
                .fetch_all(store.pool())
                .await?;
        let backlog: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE station = $1 AND published_at IS NULL",
        )
        .bind(&station)
        .fetch_one(store.pool())
        .await?;
        let decided_in_window: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM verdicts WHERE station = $1 AND decided_at >= $2 AND decided_at < $3",
        )
        .bind(&station)
        .bind(&window_from)
        .bind(&window_to)
        .fetch_one(store.pool())
        .await?;
        let empty = HashSet::new();
        let ids = heard.ids.get(&station).unwrap_or(&empty);
        let lost = committed.iter().filter(|id| !ids.contains(*id)).count() as u64;
        reports.push(StationReport {
            decided_in_window: decided_in_window as u64,
            committed: committed.len() as u64,
            delivered: ids.len() as u64,
            lost,
            duplicates: heard.duplicates.get(&station).copied().unwrap_or(0),
            backlog,
            commit_p50_ms: c.0,
            commit_p99_ms: c.1,
            cpu_cores: cpu,
            engine_cores: engine,
            restarts: restarts[i],
            station,
        });
    }
    page_ms.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        (!page_ms.is_empty()).then(|| page_ms[((page_ms.len() - 1) as f64 * q).round() as usize])
    };
    let decided: u64 = reports.iter().map(|r| r.decided_in_window).sum();
    Ok(Report {
        engine: if plan.stand_in {
            "stand-in".into()
        } else {
            format!("model {}", plan.precision)
        },
        seconds,
        decided_per_s: decided as f64 / seconds,
        lost: reports.iter().map(|r| r.lost).sum(),
        plant_page_median_ms: pick(0.5),
        plant_page_p95_ms: pick(0.95),
        plant_page_samples: page_ms.len(),
        plant_cpu_cores: plant_cores,
        broker_cpu_cores: broker_cores,
        postgres_cpu_cores: postgres_cores,
        machine_busy_cores,
        machine_cores,
        stations: reports,
        events,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_quantile_is_read_from_the_cumulative_buckets() {
        let text = "x_bucket{le=\"0.001\"} 10\nx_bucket{le=\"0.005\"} 90\nx_bucket{le=\"0.01\"} 99\nx_bucket{le=\"+Inf\"} 100\nx_sum 0.4\nx_count 100\n";
        assert_eq!(super::quantile_ms(text, "x", 0.5), Some(5.0));
        assert_eq!(super::quantile_ms(text, "x", 0.99), Some(10.0));
        assert_eq!(super::quantile_ms(text, "x", 0.1), Some(1.0));
        assert_eq!(super::quantile_ms("", "x", 0.5), None);
        assert_eq!(
            super::counter("# TYPE y counter\ny_total 2.5\n", "y_total"),
            Some(2.5)
        );
    }
}
