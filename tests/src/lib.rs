//! Helpers for end-to-end tests: a private Mosquitto on a free port, and the
//! repository's paths. Tests start what they need so they pass on a fresh
//! machine, not only where a broker happens to run.
//!
//! The stations the tests configure set `storage.min_free = "0 B"`: the
//! default 1 GiB reserve would make a test depend on the host's free disk
//! (a CI machine has been seen with a few hundred MB), and images not kept
//! fail every test that looks at a picture. The reserve itself is tested
//! with its own settings in `storage.rs`.

pub mod web;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A Mosquitto process on a free loopback port, killed on drop.
pub struct Broker {
    pub port: u16,
    child: Child,
    /// Configuration file, for brokers that keep sessions across restarts.
    config: Option<PathBuf>,
}

/// Starts Mosquitto on `port` and waits until it accepts connections.
/// `Err` when it exited instead: the port was taken between [`free_port`]
/// finding it and Mosquitto binding it (another test got there first).
fn try_spawn_mosquitto(port: u16, config: Option<&PathBuf>) -> Result<Child, String> {
    let mut cmd = Command::new("mosquitto");
    match config {
        Some(c) => cmd.arg("-c").arg(c),
        None => cmd.args(["-p", &port.to_string()]),
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (scripts/setup.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("mosquitto on {port} exited: {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Still ours: a broker that lost the port exits at once.
            std::thread::sleep(Duration::from_millis(20));
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("mosquitto on {port} exited: {status}"));
            }
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(format!("mosquitto did not start on {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_mosquitto(port: u16, config: Option<&PathBuf>) -> Child {
    try_spawn_mosquitto(port, config).unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh port and a Mosquitto on it, `config` written for each port tried:
/// a port taken in the meantime is given up for another.
fn broker_on_a_free_port(config: impl Fn(u16) -> Option<PathBuf>) -> (u16, Child, Option<PathBuf>) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let file = config(port);
        match try_spawn_mosquitto(port, file.as_ref()) {
            Ok(child) => return (port, child, file),
            Err(e) => last = e,
        }
    }
    panic!("no free port for mosquitto after 5 tries: {last}")
}

/// A free TCP port on the loopback interface. Free when asked, not held:
/// whoever binds it next may lose it to another process.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Broker {
    /// Starts `mosquitto -p PORT` and waits until it accepts connections.
    pub fn start() -> Broker {
        let (port, child, config) = broker_on_a_free_port(|_| None);
        Broker {
            port,
            child,
            config,
        }
    }

    /// A broker that keeps sessions and queued messages on disk in `dir`
    /// across a restart, as a production broker does.
    pub fn start_persistent(dir: &std::path::Path) -> Broker {
        Self::persistent(dir, "")
    }

    /// [`Broker::start_persistent`], saving after every change, so that
    /// even a SIGKILL loses (almost) nothing, as a broker with a journal.
    pub fn start_durable(dir: &std::path::Path) -> Broker {
        Self::persistent(dir, "autosave_on_changes true\nautosave_interval 1\n")
    }

    fn persistent(dir: &std::path::Path, extra: &str) -> Broker {
        let (port, child, config) = broker_on_a_free_port(|port| {
            let config = dir.join("mosquitto.conf");
            std::fs::write(
                &config,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\nuser root\npersistence_location {}/\nmax_queued_messages 100000\n{extra}",
                    dir.display()
                ),
            )
            .expect("write mosquitto.conf");
            Some(config)
        });
        Broker {
            port,
            child,
            config,
        }
    }

    /// Stops the broker (SIGTERM: it saves its sessions) and returns when
    /// it is gone.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Kills the broker (SIGKILL: what it had not saved is gone) and
    /// returns when it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the broker: connections stay
    /// open and nothing is answered, as with a hung host.
    pub fn freeze(&self, frozen: bool) {
        let _ = Command::new("kill")
            .arg(if frozen { "-STOP" } else { "-CONT" })
            .arg(self.child.id().to_string())
            .status();
    }

    /// Starts it again on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.child = spawn_mosquitto(self.port, self.config.as_ref());
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `text` as `station.toml` in `dir` and loads it (no environment layer).
pub fn load_config(dir: &std::path::Path, text: &str) -> firmware_config::StationConfig {
    let path = dir.join("station.toml");
    std::fs::write(&path, text).expect("write station.toml");
    firmware_config::Loader::without_env(Some(&path))
        .load()
        .expect("test configuration is valid")
}

/// Options of a test's MQTT client: 5 s keep-alive, and packets up to
/// 16 MiB (a verdict with many findings is larger than the 10 KiB default).
fn client_options(broker: &Broker, client_id: &str) -> rumqttc::MqttOptions {
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 24, 1 << 24);
    opts
}

/// A client of `broker` subscribed to `filter`, as a PLC or the MES would
/// be; every message it receives comes out as (topic, payload).
pub async fn subscribe(
    broker: &Broker,
    client_id: &str,
    filter: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    let opts = client_options(broker, client_id);
    let (client, mut events) = AsyncClient::new(opts, 64);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    (client, rx)
}

/// Like [`subscribe`], but with a persistent session (clean session off)
/// that reconnects after the broker goes away, as an MES consumer should.
pub async fn subscribe_durably(
    broker: &Broker,
    client_id: &str,
    filter: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    let mut opts = client_options(broker, client_id);
    opts.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(opts, 1024);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

/// Every kind banned, clause number = position in `synth::DefectKind::ALL` + 1.
pub fn banning_standard() -> String {
    let mut text = String::from("Inspection standard for machined housings.");
    for (i, k) in synth::DefectKind::ALL.iter().enumerate() {
        text.push_str(&format!("\n{}. No {} are permitted.", i + 1, k.plural()));
    }
    text
}

/// The first clean part and the first part with one clearly visible defect.
pub fn pick_parts() -> (synth::SynthPart, synth::SynthPart) {
    let mut line = synth::SynthLine::new(20_261_128);
    let (mut clean, mut defective) = (None, None);
    while clean.is_none() || defective.is_none() {
        let p = line.next_part();
        match p.defects.len() {
            0 if clean.is_none() => clean = Some(p),
            1 if defective.is_none() && p.defects[0].size_mm >= 2.0 => defective = Some(p),
            _ => {}
        }
    }
    (clean.unwrap(), defective.unwrap())
}

/// Writes a file the way a well-behaved vision PC does: temp name, then rename.
pub fn drop_file(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

pub fn png(part: &synth::SynthPart) -> Vec<u8> {
    let mut out = Vec::new();
    part.image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Newest modification time of any file under `dir`.
fn newest(dir: &std::path::Path) -> std::time::SystemTime {
    let mut t = std::time::SystemTime::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            let m = if path.is_dir() {
                newest(&path)
            } else {
                e.metadata().and_then(|m| m.modified()).unwrap_or(t)
            };
            t = t.max(m);
        }
    }
    t
}

/// The appliance binary of this checkout. A workspace test run has already
/// built it (with the workspace's unified features); it is rebuilt here only
/// when missing or older than the sources, since a `cargo build -p
/// appliance` with other features would recompile most dependencies.
pub fn appliance_bin() -> PathBuf {
    // Where cargo builds: CARGO_TARGET_DIR when the run shares a build.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let bin = target.join("debug/appliance");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    // Every workspace crate the binary is built from (tests/tests/layers.rs
    // holds the same list).
    let sources = [
        "appliance",
        "review-web",
        "delivery",
        "store",
        "telemetry",
        "fusion",
        "vision",
        "synth",
        "record",
        "firmware-config",
    ]
    .iter()
    .map(|c| newest(&repo().join(c).join("src")))
    .max()
    .expect("the crates");
    if built.is_some_and(|b| b >= sources) {
        return bin;
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "appliance", "--bin", "appliance"])
        .current_dir(repo())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the appliance binary failed");
    bin
}

/// Asserts `value` matches `schemas/{name}.schema.json`, listing every
/// violation with its place in the document.
pub fn assert_schema(name: &str, value: &serde_json::Value) {
    let path = repo().join("schemas").join(format!("{name}.schema.json"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{value:#}");
}

/// Sends one HTTP/1.1 request to 127.0.0.1 and returns the status code and body.
fn http(port: u16, request: &str) -> (u16, String) {
    let (status, _, body) = raw_http(port, request);
    (status, body)
}

/// Sends one raw HTTP/1.1 request; returns status, head and body (bodies
/// that are not UTF-8 come back lossily converted).
fn raw_http(port: u16, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out[9..12].parse().expect("status code");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

/// An HTTP request with extra header lines (`Name: value`) and a body of
/// `content_type`; returns status, response head and body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    raw_http(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// `Authorization: Bearer {token}` with its line end, or nothing for "".
fn bearer(token: &str) -> String {
    if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 with an API token ("" for none);
/// returns the status code and body.
pub fn http_get(port: u16, path: &str, token: &str) -> (u16, String) {
    http(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}Connection: close\r\n\r\n",
            bearer(token)
        ),
    )
}

/// A minimal HTTP/1.1 POST of JSON on 127.0.0.1 with an API token ("" for
/// none); returns the status code and body.
pub fn http_post(port: u16, path: &str, body: &str, token: &str) -> (u16, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            bearer(token),
            body.len()
        ),
    )
}

/// An API token with `role` in the station's store (opened, and migrated,
/// here: call it before the station starts).
pub async fn api_token(cfg: &firmware_config::StationConfig, role: &str) -> String {
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .expect("the station's store opens");
    let role = store::accounts::Role::parse(role).expect("a role");
    let name = format!("test-{}", role.as_str());
    let token = store::accounts::add_token(&store, &name, role, None)
        .await
        .expect("a token");
    token
}

/// Starts the appliance binary as the service (`appliance run --config
/// FILE`), its output discarded; kill it with `Child::kill` (SIGKILL) or the
/// `kill` command (SIGTERM).
pub fn start_service(config: &std::path::Path) -> Child {
    Command::new(appliance_bin())
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("appliance starts")
}

/// Starts the service as [`start_service`] does, with its HTTP listener
/// handed over the way systemd's socket activation hands it (descriptor 3,
/// `LISTEN_FDS=1`, `LISTEN_PID` the service's own pid) on a port bound here,
/// so no other process can take the port in between. Returns the service
/// and the port.
pub fn start_service_listening(config: &std::path::Path) -> (Child, u16) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for HTTP");
    let port = listener.local_addr().expect("a bound address").port();
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    // `exec` keeps the shell's pid: `$$` is the service's own pid.
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(appliance_bin())
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let moved = if fd == 3 {
                // Already in place: only keep it open across exec.
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if moved < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("appliance starts");
    (child, port)
}

/// Feeds `parts` frames of camera `line` to `tx` from a thread, as a camera
/// would: six distinct parts of the synthetic line (seeded), repeated, with
/// part ids `P-00000`, `P-00001`, …
pub fn feed_frames(
    tx: tokio::sync::mpsc::Sender<vision::sources::Arrival>,
    parts: usize,
    seed: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let pngs = synthetic_pngs(seed, 6);
        for seq in 0..parts {
            if tx.blocking_send(line_frame(&pngs, seq)).is_err() {
                return; // the station stopped
            }
        }
    })
}

/// `n` distinct parts of the synthetic line (seeded), as PNG files.
fn synthetic_pngs(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut line = synth::SynthLine::new(seed);
    (0..n)
        .map(|_| vision::decode::encode_png(&line.next_part().image))
        .collect()
}

/// Frame `seq` of camera `line`, captured now: part `P-{seq:05}`, the
/// pictures taken in turn.
fn line_frame(pngs: &[Vec<u8>], seq: usize) -> vision::sources::Arrival {
    use std::sync::Arc;
    let png = &pngs[seq % pngs.len()];
    let (image, format) = vision::decode::decode(png).unwrap();
    let name = format!("P-{seq:05}");
    let frame = vision::Frame {
        camera_id: "line".into(),
        seq: seq as u64,
        captured_at: std::time::SystemTime::now(),
        part_id: Some(name.clone()),
        trigger_id: None,
        image: Arc::new(image),
        encoded: Arc::new(png.clone()),
        format,
        truth: None,
        held: Default::default(),
    };
    let origin = vision::sources::Origin::named(name);
    vision::sources::Arrival::Frame { frame, origin }
}

/// Feeds one frame every `every` until `stop` is set, as a line with a
/// takt time would; returns how many it fed. Part ids `P-00000`, …
pub fn feed_paced(
    tx: tokio::sync::mpsc::Sender<vision::sources::Arrival>,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    feed_paced_distinct(tx, every, stop, 5, 4)
}

/// [`feed_paced`] with `distinct` parts of the synthetic line from `seed`.
pub fn feed_paced_distinct(
    tx: tokio::sync::mpsc::Sender<vision::sources::Arrival>,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
    distinct: usize,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let pngs = synthetic_pngs(seed, distinct);
        let mut seq = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if tx.blocking_send(line_frame(&pngs, seq)).is_err() {
                break;
            }
            seq += 1;
            std::thread::sleep(every);
        }
        seq
    })
}

/// A fresh PostgreSQL database for one test, dropped afterwards. Where it
/// lives, by `APPLIANCE_TEST_POSTGRES`:
/// - unset: the server on 127.0.0.1:5432 when one answers (trust auth, as on
///   the CI machine), else a throwaway cluster started here;
/// - `throwaway`: always a throwaway cluster (initdb + pg_ctl from Debian's
///   `postgresql` package, on a free port, deleted afterwards);
/// - a URL such as `postgres://postgres@db:5432/postgres`: that server (the
///   user must be allowed to create databases).
pub struct Postgres {
    /// URL of the test's own database.
    pub url: String,
    admin: String,
    name: String,
    cluster: Option<Cluster>,
}

/// A PostgreSQL cluster in a temporary folder, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
}

impl Postgres {
    pub async fn start() -> Postgres {
        let choice = std::env::var("APPLIANCE_TEST_POSTGRES").unwrap_or_default();
        let (admin, cluster) = match choice.as_str() {
            "" => {
                let local = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
                if answers(&local).await {
                    (local, None)
                } else {
                    let (url, c) = Cluster::start();
                    (url, Some(c))
                }
            }
            "throwaway" => {
                let (url, c) = Cluster::start();
                (url, Some(c))
            }
            url => (url.to_string(), None),
        };
        let name = format!("appliance_test_{}", uuid_like());
        let mut conn = connect(&admin).await;
        // `name` is ours: letters, digits and underscores.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE on {admin}: {e}"));
        let base = admin.rsplit_once('/').expect("URL has a database").0;
        Postgres {
            url: format!("{base}/{name}"),
            admin,
            name,
            cluster,
        }
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut last = None;
    for _ in 0..50 {
        match sqlx::PgConnection::connect(url).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {url}: {last:?}")
}

async fn answers(url: &str) -> bool {
    use sqlx::Connection;
    matches!(
        tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// Where Debian keeps a PostgreSQL program (`initdb`, `pg_ctl`).
fn pg_program(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found under /usr/lib/postgresql: install Debian's `postgresql` (scripts/setup.sh does)"))
}

/// Runs a PostgreSQL program; as root, as the `postgres` user (initdb
/// refuses root).
fn pg_run(program: &std::path::Path, args: &[&str]) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).output().expect("PostgreSQL program runs");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start() -> (String, Cluster) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary folder");
        // The server runs as `postgres` when we are root: let it in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let data_s = data.to_str().unwrap().to_string();
        let sock = dir.path().to_str().unwrap().to_string();
        let port = free_port();
        pg_run(
            &pg_program("initdb"),
            &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let pg_ctl = pg_program("pg_ctl");
        let opts = format!("-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = dir.path().join("server.log");
        pg_run(
            &pg_ctl,
            &[
                "-D",
                &data_s,
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        (
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            Cluster { dir, pg_ctl },
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        pg_run(
            &self.pg_ctl,
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.cluster.is_some() {
            return; // the whole cluster goes
        }
        // A shared server: drop the test's database (from a thread with its
        // own runtime, since this may run inside one).
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = connect(&admin).await;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await;
            });
        })
        .join();
    }
}

/// Shows the appliance's log in a test's output when `RUST_LOG` is set
/// (e.g. `RUST_LOG=appliance=debug cargo nextest run … --no-capture`).
pub fn show_logs() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// The review API's OpenAPI document (`openapi/review-api.json`), checked
/// against what the running server answers: each answer must be documented
/// for its operation and status, and match the documented schema.
pub struct OpenApi {
    doc: serde_json::Value,
    seen: std::collections::BTreeSet<String>,
}

impl OpenApi {
    pub fn load() -> OpenApi {
        let path = repo().join("openapi/review-api.json");
        let doc = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        OpenApi {
            doc,
            seen: Default::default(),
        }
    }

    fn resolve<'a>(&'a self, v: &'a serde_json::Value) -> &'a serde_json::Value {
        match v.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {r}")),
            None => v,
        }
    }

    /// Asserts `body` (JSON) is what `method path_template` documents for
    /// `status`.
    pub fn check(&mut self, path_template: &str, method: &str, status: u16, body: &str) {
        let op = self
            .doc
            .pointer(&format!(
                "/paths/{}/{method}",
                path_template.replace('~', "~0").replace('/', "~1")
            ))
            .unwrap_or_else(|| panic!("{method} {path_template} is not documented"));
        let response = op["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {path_template} answered {status}, undocumented"));
        let schema = &self.resolve(response)["content"]["application/json"]["schema"];
        let root = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root).expect("OpenAPI schemas compile");
        let value: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| {
            panic!("{method} {path_template} {status}: not JSON ({e}): {body}")
        });
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path_template} {status} does not match the OpenAPI document:\n{}",
            errors.join("\n")
        );
        self.seen
            .insert(format!("{method} {path_template} {status}"));
    }

    /// Documented success answers no test has checked.
    pub fn unchecked_successes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, ops) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for status in op["responses"].as_object().unwrap().keys() {
                    let key = format!("{method} {path} {status}");
                    if status.starts_with('2') && !self.seen.contains(&key) {
                        out.push(key);
                    }
                }
            }
        }
        out
    }
}

/// A station served in the test's own process on frames the test feeds
/// (see [`feed_frames`]), for the tests that need no real camera.
pub struct InProcess {
    pub frames: tokio::sync::mpsc::Sender<vision::sources::Arrival>,
    /// Where its HTTP API listens: the harness binds port 0 and hands the
    /// listener over, so no other process can take the port in between.
    pub http_port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub fn start(cfg: firmware_config::StationConfig) -> InProcess {
        let http = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for HTTP");
        Self::start_listening(cfg, http)
    }

    /// Starts it with its HTTP API on `http` (a station started again on
    /// the port of one that stopped).
    pub fn start_listening(
        cfg: firmware_config::StationConfig,
        http: std::net::TcpListener,
    ) -> InProcess {
        let (frames, rx) = tokio::sync::mpsc::channel(64);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let http_port = http.local_addr().expect("a bound address").port();
        let task = tokio::spawn(appliance::pipeline::serve(
            cfg,
            rx,
            appliance::cameras::CameraLinks::none(),
            stop_rx,
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            Some(http),
        ));
        InProcess {
            frames,
            http_port,
            stop,
            task,
        }
    }

    /// Ends the feed, stops the station and waits (60 s at most) for it to
    /// stop cleanly.
    pub async fn stop(self) {
        drop(self.frames);
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the station stops")
            .expect("the station does not panic")
            .expect("the station stops without error");
    }
}

/// The configuration of a test station `name` in `dir`: one camera `line`
/// fed by the test, the recipe `housing` under [`banning_standard`], the
/// reference model, the broker at `mqtt_url`, the database at
/// `database_url` (`sqlite://appliance.db` for the station's own file),
/// HTTP on port 0; `extra` is appended (more sections, such as
/// `[batching]` or `[monitoring]`).
pub fn line_station(
    dir: &std::path::Path,
    name: &str,
    mqtt_url: &str,
    database_url: &str,
    extra: &str,
) -> firmware_config::StationConfig {
    std::fs::create_dir_all(dir).expect("the station's folder");
    std::fs::write(dir.join("standard.txt"), banning_standard()).expect("the standard");
    load_config(
        dir,
        &format!(
            r#"
[station]
station = "{name}"
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
url = "{mqtt_url}"

[storage]
database_url = "{database_url}"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
{extra}
"#,
            model = repo().join("models/reference").display(),
        ),
    )
}

/// Runs the browser session `tests/{script}` (headless Chromium through
/// WebDriver) with `args`, off the async runtime; panics with its output if
/// it fails, and returns the JSON it printed.
pub async fn browser_session(script: &str, args: Vec<String>) -> serde_json::Value {
    let path = repo().join("tests").join(script);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(path)
            .args(args)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("the browser session's thread");
    assert!(
        out.status.success(),
        "the browser session {script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Waits until `store` holds `n` verdicts (panics after `within`).
pub async fn wait_until_stored(store: &store::Store, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM verdicts")
            .fetch_one(store.pool())
            .await
            .expect("count verdicts");
        if stored >= n as i64 {
            return;
        }
        assert!(Instant::now() < deadline, "{stored} of {n} verdicts stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
