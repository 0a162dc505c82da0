//! upserv run as an unprivileged user, as the README's deployments run it:
//! asked for port 873 without the privilege, the daemon must stop at once
//! with exit status 1 and a message that says why and what to do instead
//! (README, Commands), never run on without a listener.
//!
//! The test drops to `nobody` with setpriv(1), so it needs root (it skips,
//! saying so, without it) and a kernel that keeps ports below 1024
//! privileged. It binds 127.0.0.1 only, so nothing is exposed if it does.
//!
//! Also the service user: admin commands run as root on nobody's builds
//! directory leave nobody's files, which nobody's daemon serves and
//! evicts; `list` and `gc --dry-run` work with read access alone.

use crate::support::proc::run_with_deadline;
use crate::support::upserv::upserv_argv;
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
    let (_dir, builds, conf) = nobodys_builds();

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

/// A scratch directory nobody can enter, with an empty configuration and
/// a builds directory owned by nobody: (scratch, builds, config).
fn nobodys_builds() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("scratch directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("opening the scratch directory to nobody");
    let builds = dir.path().join("builds");
    std::fs::create_dir(&builds).expect("creating the builds directory");
    std::os::unix::fs::chown(&builds, Some(NOBODY), Some(NOBODY)).expect("chown builds");
    let conf = dir.path().join("upserv.conf");
    std::fs::write(&conf, "").expect("writing an empty configuration");
    (dir, builds, conf)
}

/// Every entry under `root` (not following symlinks) not owned by `uid`.
fn not_owned_by(root: &std::path::Path, uid: u32) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut wrong = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.uid() != uid {
            wrong.push(format!("{} (uid {})", path.display(), meta.uid()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("listing") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    wrong
}

#[test]
fn root_runs_admin_commands_as_the_owner_of_the_builds_directory() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the service-user test needs root");
        return;
    }
    let (dir, builds, conf) = nobodys_builds();
    let up = crate::support::upstream::Upstream::start();
    for (name, fill) in [("b1", 1u8), ("b2", 2)] {
        let tree = crate::support::TestTree::new();
        tree.file("image.bin", &vec![fill; 100 * 1024]);
        tree.settle();
        let parent = tree.root().parent().expect("a parent");
        up.put(
            &format!("/b/{name}.tar"),
            crate::support::builds::tar_tree(parent, "tree"),
        );
    }
    let template = up.url("/b/{name}.tar");
    let as_root = |args: &[&str]| {
        let mut all = args.to_vec();
        let (conf, builds) = (conf.to_str().unwrap(), builds.to_str().unwrap());
        all.extend([
            "--config",
            conf,
            "--builds",
            builds,
            "--upstream",
            &template,
        ]);
        crate::support::upserv::run_upserv(&all)
    };
    let (code, _, stderr) = as_root(&["fetch", "b1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(as_root(&["pin", "b1"]).0, 0);
    assert_eq!(as_root(&["unpin", "b1"]).0, 0);
    assert_eq!(as_root(&["gc"]).0, 0);
    assert_eq!(not_owned_by(&builds, NOBODY), Vec::<String>::new());

    // Read access alone does for list and gc --dry-run: as another user,
    // with nothing in the builds directory writable to it.
    let reader = NOBODY - 1;
    let read_only = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={reader}"))
            .arg(format!("--regid={reader}"))
            .arg("--clear-groups")
            .args(upserv_argv())
            .args(args)
            .arg("--config")
            .arg(&conf)
            .arg("--builds")
            .arg(&builds);
        let done = run_with_deadline(&mut cmd, DEADLINE).expect("running upserv");
        let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        (done.code, stdout, stderr)
    };
    let (code, stdout, stderr) = read_only(&["list"]);
    assert_eq!(code, 0, "{stderr}");
    let b1 = stdout
        .lines()
        .find(|l| l.starts_with("b1 "))
        .expect("b1 listed");
    let fields: Vec<&str> = b1.split_whitespace().collect();
    assert_eq!(
        fields[fields.len() - 2..],
        ["no", "no"],
        "idle, not sticky: {b1}"
    );
    let (code, stdout, stderr) = read_only(&["gc", "--dry-run"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "nothing to evict\n"),
        "{stderr}"
    );

    // nobody's daemon serves root's fetch, then evicts it for b2.
    use crate::support::Server;
    let upserv = crate::support::Upserv::launch(
        &[],
        &crate::support::Launch {
            builds: Some(&builds),
            args: &["--upstream", &template, "--cache-size", "150K"],
            run_as: Some((NOBODY, NOBODY)),
            ..crate::support::Launch::default()
        },
    );
    for name in ["b1", "b2"] {
        let dest = dir.path().join(format!("{name}-pulled"));
        crate::support::pull(
            &upserv.url(&format!("{name}/")),
            &dest,
            &["-a"],
            crate::support::Protocol::Default,
        )
        .assert_ok();
    }
    assert_eq!(up.gets("/b/b1.tar"), 1, "b1 was served from root's fetch");
    assert!(!builds.join("b1").exists(), "b1 was evicted for b2");
    assert!(builds.join("b2").is_dir());
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
