//! The one-shot commands as a shell user meets them: output piped into a
//! reader that stops early (`appliance standard check … | head`) ends the
//! command quietly, as it ends any Unix tool, with no panic.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use e2e::{appliance_bin, repo};

#[test]
fn a_reader_that_stops_early_ends_a_command_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // Far more output than a pipe holds (64 KiB), so the command must write
    // after its reader has gone.
    let standard: String = (1..=2000)
        .map(|i| {
            format!(
                "{i}. Scratches longer than {} mm are not allowed.\n",
                i % 9 + 1
            )
        })
        .collect();
    let file = dir.path().join("long.txt");
    std::fs::write(&file, standard).unwrap();
    let mut child = Command::new(appliance_bin())
        .args(["standard", "check"])
        .arg(&file)
        .arg("--model")
        .arg(repo().join("models/reference"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line's worth, then go away.
    let mut first = [0u8; 64];
    let mut out = child.stdout.take().unwrap();
    out.read_exact(&mut first).unwrap();
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "ended by the closed pipe, as `head` expects: {status:?} {err}"
    );
}
