//! upserv run as an unprivileged user, as the README's deployments run it:
//! asked for port 873 without the privilege, the daemon must stop at once
//! with exit status 1 and a message that says why and what to do instead
//! (SPEC §2), never run on without a listener.
//!
//! The test drops to `nobody` with setpriv(1), so it needs root (it skips,
//! saying so, without it) and a kernel that keeps ports below 1024
//! privileged. It binds 127.0.0.1 only, so nothing is exposed if it does.

mod common;

use common::proc::run_with_deadline;
use common::upserv::upserv_argv;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

/// The account the daemon runs as here: `nobody`, no supplementary groups.
const NOBODY: u32 = 65534;
/// The privileged rsync port.
const RSYNC_PORT: u16 = 873;
/// Where Linux says which port is the first one anyone may bind.
const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
/// A refusal is immediate; this only bounds a daemon that wrongly runs on
/// (qemu-user starts slowly, hence the margin).
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn port_873_without_privilege_fails_with_a_hint() {
    if !can_test() {
        return;
    }
    let dir = tempfile::tempdir().expect("scratch directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("opening the scratch directory to nobody");
    let builds = dir.path().join("builds");
    std::fs::create_dir(&builds).expect("creating the builds directory");
    std::os::unix::fs::chown(&builds, Some(NOBODY), Some(NOBODY)).expect("chown builds");
    let conf = dir.path().join("upserv.conf");
    std::fs::write(&conf, "").expect("writing an empty configuration");

    let id = NOBODY.to_string();
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={id}"))
        .arg(format!("--regid={id}"))
        .arg("--clear-groups")
        .args(upserv_argv())
        .arg("daemon")
        .arg("--config")
        .arg(&conf)
        .arg("--builds")
        .arg(&builds)
        .arg("--listen")
        .arg(format!("127.0.0.1:{RSYNC_PORT}"));
    let finished = run_with_deadline(&mut cmd, DEADLINE).expect("running setpriv upserv");
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(!finished.timed_out, "upserv ran on: {stderr}");
    assert_eq!(finished.code, 1, "a runtime failure; stderr:\n{stderr}");
    let explained = stderr.lines().any(|line| {
        line.starts_with("upserv: ")
            && line.contains("127.0.0.1:873")
            && line.contains("permission denied")
            && line.contains("--listen 0.0.0.0:8730")
    });
    assert!(
        explained,
        "one line naming the address, the reason and the way out; got:\n{stderr}"
    );
    assert!(finished.stdout.is_empty(), "nothing on stdout");
}

/// Whether this machine can show the refusal; says why not when it cannot.
fn can_test() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping to nobody with setpriv needs root");
        return false;
    }
    let first_free = std::fs::read_to_string(UNPRIVILEGED_PORT_START)
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok());
    if first_free.is_some_and(|port| port <= RSYNC_PORT) {
        eprintln!(
            "skipped: this kernel lets anyone bind port {RSYNC_PORT} ({UNPRIVILEGED_PORT_START})"
        );
        return false;
    }
    true
}
