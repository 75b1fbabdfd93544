//! systemd integration: notification (Type=notify: READY, STOPPING and
//! watchdog pings), the watchdog interval, and socket activation (the HTTP
//! listener handed over by a `.socket` unit). Does nothing outside systemd.
//!
//! The `sd-notify` crate reads the watchdog and the passed sockets. The
//! notification itself is sent here because `sd-notify` 0.5 cannot reach an
//! abstract-namespace `NOTIFY_SOCKET` (`@…`), which service managers in
//! containers use.
//!
//! The watchdog is fed only while the pipeline makes progress: a ping
//! proves that frames taken in are being finished, not merely that a timer
//! still fires, so a hung engine or store gets the service restarted.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let result = if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd the service is up.
pub fn ready() {
    notify("READY=1");
}

/// Tells systemd the service is shutting down.
pub fn stopping() {
    notify("STOPPING=1");
}

/// The watchdog interval systemd asked for (for this process), halved, if
/// any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|every| every / 2)
}

/// The listening socket systemd passed for the HTTP API (socket
/// activation: `LISTEN_PID` is this process and `LISTEN_FDS` is 1), if any.
/// A unit may then bind a privileged port while the service runs
/// unprivileged, and a caller that bound the port itself (a test binding
/// port 0) knows the port before the appliance starts.
pub fn http_listener() -> anyhow::Result<Option<std::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let mut fds = sd_notify::listen_fds()?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    anyhow::ensure!(
        fds.len() == 0,
        "systemd passed {} sockets; the appliance takes one, for the HTTP API",
        fds.len() + 1
    );
    // SAFETY: systemd passed this descriptor to this process (LISTEN_PID)
    // and nothing else in the process owns it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener
        .local_addr()
        .map_err(|e| anyhow::anyhow!("the socket systemd passed is not a TCP listener: {e}"))?;
    Ok(Some(listener))
}

/// Pings the watchdog.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// Frames the pipeline took in and frames it finished (stored a verdict or
/// an ingest error for).
#[derive(Debug, Default)]
pub struct Progress {
    received: AtomicU64,
    finished: AtomicU64,
}

impl Progress {
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pings the watchdog every half interval while the pipeline is idle or
/// has finished a frame since the last ping; while frames wait and none
/// finishes, it stops pinging (and says so in the log) so that systemd
/// restarts the service. Returns at once outside a watchdog.
pub async fn feed_watchdog(
    progress: Arc<Progress>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    let mut last = progress.finished.load(Ordering::Relaxed);
    let mut stalled_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let received = progress.received.load(Ordering::Relaxed);
        let finished = progress.finished.load(Ordering::Relaxed);
        let moved = finished != last;
        last = finished;
        if received == finished || moved {
            watchdog();
            if let Some(since) = stalled_since.take() {
                tracing::info!(stalled_for = ?since.elapsed(), "pipeline progressing again; watchdog fed");
            }
        } else {
            let since = *stalled_since.get_or_insert_with(Instant::now);
            tracing::error!(waiting = received - finished, stalled_for = ?since.elapsed(), "pipeline stalled: no frame finished; the watchdog is not fed");
        }
    }
}
