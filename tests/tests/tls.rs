//! A broker that demands TLS with client certificates and a password: the
//! certificates (a CA, the broker's, the station's) are generated here with
//! the openssl command, the password file with mosquitto_passwd. The station
//! connects with its certificate and the password read from a file, and its
//! verdicts are acknowledged; with a wrong password nothing is acknowledged
//! and the verdicts wait in the outbox.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{drop_file, load_config, pick_parts, png, repo};

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// CA, broker certificate for 127.0.0.1, station client certificate.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    for (name, cn) in [("broker", "127.0.0.1"), ("station", "station-1")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(
            dir.join(format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

struct Mosquitto(std::process::Child);
impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn secure_broker(dir: &Path, port: u16) -> Mosquitto {
    run(Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(dir.join("passwd"))
        .args(["station", "s3cret-Pa55"]));
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\ncafile {d}/ca.pem\ncertfile {d}/broker.pem\nkeyfile {d}/broker.key\nrequire_certificate true\n",
        d = dir.display()
    )).unwrap();
    // The broker may drop root privileges: let it read its files.
    for f in ["passwd", "ca.pem", "broker.pem", "broker.key"] {
        run(Command::new("chmod").arg("0644").arg(dir.join(f)));
    }
    run(Command::new("chmod").arg("0755").arg(dir));
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS broker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto(child)
}

async fn acknowledged(db: &Path, wait: Duration) -> (i64, i64) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let deadline = Instant::now() + wait;
    loop {
        let (total, acked): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(published_at) FROM outbox")
                .fetch_one(&pool)
                .await
                .unwrap_or((0, 0));
        if (total > 0 && total == acked) || Instant::now() > deadline {
            return (total, acked);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn station(dir: &Path, port: u16, password: &str, wait: Duration) -> (i64, i64) {
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(
        dir.join("standard.txt"),
        "Housing standard.\n1. No dents are permitted.",
    )
    .unwrap();
    std::fs::write(dir.join("mqtt-password"), format!("{password}\n")).unwrap();
    let cfg = load_config(
        dir,
        &format!(
            r#"
[station]
station = "tls-1"
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
url = "mqtts://127.0.0.1:{port}"
client_id = "station-1"
username = "station"
password_file = "mqtt-password"
tls = {{ ca = "../certs/ca.pem", cert = "../certs/station.pem", key = "../certs/station.key" }}

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display()
        ),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(appliance::pipeline::run(cfg, stop_rx, None));
    let (clean, _) = pick_parts();
    drop_file(&incoming, "P-1.png", &png(&clean));
    let result = acknowledged(&dir.join("appliance.db"), wait).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), service)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_publishes_over_tls_with_a_client_certificate_and_a_password() {
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    certificates(&certs);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _broker = secure_broker(&certs, port);

    let good = root.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    let (total, acked) = station(&good, port, "s3cret-Pa55", Duration::from_secs(60)).await;
    assert!(total >= 2, "verdict and result rows: {total}");
    assert_eq!(acked, total, "the TLS broker acknowledged every row");

    let bad = root.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let (total, acked) = station(&bad, port, "wrong", Duration::from_secs(8)).await;
    assert!(total >= 2);
    assert_eq!(acked, 0, "a refused password must not count as delivered");
}
