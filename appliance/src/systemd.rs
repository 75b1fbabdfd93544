//! systemd notification (Type=notify): READY, STOPPING and watchdog pings,
//! written to `$NOTIFY_SOCKET` directly. Does nothing outside systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

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

/// The watchdog interval systemd asked for, halved, if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog.
pub fn watchdog() {
    notify("WATCHDOG=1");
}
