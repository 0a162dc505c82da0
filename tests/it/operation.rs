//! Running upserv as a service: SIGTERM and SIGINT stop it gracefully
//! (transfers in flight finish, then exit 0), the pid file is written,
//! locked against a second daemon and removed, the log file gets one line
//! per connection, and SIGHUP reloads the configuration for new
//! connections.

use crate::support::client::{rsync, stderr};
use crate::support::relay::GatedRelay;
use crate::support::*;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// A stopped daemon must be gone within the grace period and a margin.
const EXIT_TIMEOUT: Duration = Duration::from_secs(40);

/// A tree with a file bigger than the socket buffers, so that a held pull
/// cannot finish on the side.
fn tree_with_big_file() -> TestTree {
    let tree = TestTree::new();
    tree.file("hello.txt", b"hello\n");
    tree.file("big.bin", &crate::support::tree::Rng::new(5).bytes(3 << 20));
    tree
}

fn module_conf(name: &str, tree: &TestTree) -> String {
    format!("[{name}]\npath = {}\n", tree.root().display())
}

/// upserv serving `tree` as module `m`, logging to a `log file`.
fn logging_to_a_file(tree: &TestTree) -> Upserv {
    Upserv::launch(
        &[],
        &Launch {
            conf: Some(&module_conf("m", tree)),
            log_file: true,
            ..Launch::default()
        },
    )
}

/// The module list of `server`, asked by the real client, which must succeed.
fn list_modules(server: &Upserv) {
    let scratch = tempfile::tempdir().expect("scratch");
    let listing = rsync(&Client::current(), scratch.path(), &[&server.url("")], &[]);
    assert_eq!(listing.code, 0, "{}", stderr(&listing));
}

/// A pull of `name/big.bin` through a relay that holds it in flight
/// after its first bytes, until the relay is released.
fn held_pull(
    server: &Upserv,
    name: &str,
    dest: &Path,
) -> (GatedRelay, std::thread::JoinHandle<PullResult>) {
    let relay = GatedRelay::start(server.port(), 64 * 1024);
    let url = format!("rsync://127.0.0.1:{}/{name}/big.bin", relay.port());
    let dest = dest.to_path_buf();
    let pull = std::thread::spawn(move || pull(&url, &dest, &["-a"], Protocol::Default));
    relay.await_paused();
    (relay, pull)
}

fn pull_result(server: &Upserv, path: &str) -> PullResult {
    let scratch = tempfile::tempdir().expect("scratch");
    pull(
        &server.url(path),
        &scratch.path().join("d"),
        &["-a"],
        Protocol::Default,
    )
}

#[test]
fn sigterm_lets_a_pull_in_flight_finish_then_exits_0() {
    let tree = tree_with_big_file();
    let mut server = Upserv::with_conf(&module_conf("m", &tree));
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("d");
    let (relay, pulling) = held_pull(&server, "m", &dest);
    server.signal(libc::SIGTERM);
    server.await_log("stopping: waiting up to", 1);
    // No new connections once stopping...
    assert!(
        TcpStream::connect(("127.0.0.1", server.port())).is_err(),
        "the daemon still accepts connections while stopping"
    );
    // ...but the one in flight completes, whole.
    relay.release();
    let result = pulling.join().expect("pull thread");
    result.assert_ok();
    assert_eq!(
        std::fs::read(dest.join("big.bin")).expect("pulled file"),
        std::fs::read(tree.path("big.bin")).expect("source file")
    );
    assert_eq!(server.wait_exit(EXIT_TIMEOUT), 0, "{}", server.log());
    assert!(server
        .log()
        .contains("INFO  [upserv::daemon::pool] stopped"));
}

#[test]
fn sigint_stops_an_idle_daemon_and_removes_its_pid_file() {
    let tree = tree_with_big_file();
    let dir = tempfile::tempdir().expect("pid dir");
    let pid_file = dir.path().join("upserv.pid");
    let conf = format!(
        "pid file = {}\n{}",
        pid_file.display(),
        module_conf("m", &tree)
    );
    let mut server = Upserv::with_conf(&conf);
    let written = std::fs::read_to_string(&pid_file).expect("pid file while running");
    assert_eq!(written, format!("{}\n", server.pid()));
    server.signal(libc::SIGINT);
    assert_eq!(server.wait_exit(EXIT_TIMEOUT), 0, "{}", server.log());
    assert!(!pid_file.exists(), "the pid file outlived the daemon");
}

#[test]
fn a_second_daemon_on_the_same_pid_file_refuses_to_start() {
    let tree = tree_with_big_file();
    let dir = tempfile::tempdir().expect("pid dir");
    let pid_file = dir.path().join("upserv.pid");
    // A stale pid file from a crash does not stop the first daemon.
    std::fs::write(&pid_file, "999999\n").expect("stale pid file");
    let conf = format!(
        "pid file = {}\n{}",
        pid_file.display(),
        module_conf("m", &tree)
    );
    let first = Upserv::with_conf(&conf);
    let second = upserv_command()
        .args(["daemon", "--listen", "127.0.0.1:0", "--config"])
        .arg(first.dir().join("upserv.conf"))
        .arg("--builds")
        .arg(first.dir().join("builds"))
        .output()
        .expect("running a second upserv");
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    let expected = format!(
        "pid file {} is locked: another upserv (pid {}) is running",
        pid_file.display(),
        first.pid()
    );
    assert!(err.contains(&expected), "{err}");
    // The refused daemon left the running one's pid file alone.
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        format!("{}\n", first.pid())
    );
}

#[test]
fn the_log_file_has_one_line_per_connection() {
    let tree = tree_with_big_file();
    let server = logging_to_a_file(&tree);
    list_modules(&server);
    pull_result(&server, "m/").assert_ok();
    assert_eq!(pull_result(&server, "nope/").code, 5);
    server.await_log("127.0.0.1: ", 3);
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("127.0.0.1: ")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].ends_with("127.0.0.1: module list (0.0s)"),
        "{}",
        lines[0]
    );
    // The pull's line: module, files, bytes, literal and matched data, time.
    let pulled = lines[1];
    assert!(
        pulled.contains("127.0.0.1: module m: 2 files sent of 3 listed, ")
            && pulled.contains(" bytes sent, 3145734 literal, 0 matched ("),
        "{pulled}"
    );
    assert!(pulled.ends_with("s)"), "{pulled}");
    assert!(
        lines[2].contains("127.0.0.1: refused: Unknown module 'nope'"),
        "{}",
        lines[2]
    );
    // Only startup warnings (such as running as root) reach stderr too.
    let stderr = server.stderr_text();
    assert!(
        stderr.lines().all(|l| l.starts_with("upserv: warning: ")),
        "{stderr}"
    );
}

#[test]
fn sighup_reloads_modules_for_new_connections_only() {
    let tree = tree_with_big_file();
    let first = module_conf("old", &tree);
    let server = Upserv::with_conf(&first);
    pull_result(&server, "old/hello.txt").assert_ok();
    assert!(pull_result(&server, "new/")
        .stderr
        .contains("Unknown module 'new'"));

    // A pull of the old module is in flight when it is removed.
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("slow");
    let (relay, pulling) = held_pull(&server, "old", &dest);
    server.write_conf(&format!("workers = 3\n{}", module_conf("new", &tree)));
    server.signal(libc::SIGHUP);
    server.await_log("configuration reloaded", 1);
    assert!(server.log().contains("`workers` changed"));
    pull_result(&server, "new/hello.txt").assert_ok();
    pull_result(&server, "old/").assert_refused("@ERROR: Unknown module 'old'");
    relay.release();
    pulling.join().expect("pull thread").assert_ok();
    assert_eq!(
        std::fs::read(dest.join("big.bin")).expect("pulled file"),
        std::fs::read(tree.path("big.bin")).expect("source file")
    );

    // A configuration that does not load keeps the running one.
    server.write_conf("[broken\n");
    server.signal(libc::SIGHUP);
    server.await_log("reload failed, keeping the running configuration", 1);
    pull_result(&server, "new/hello.txt").assert_ok();
}

#[test]
fn a_second_stop_signal_ends_the_grace_period() {
    let tree = tree_with_big_file();
    let mut server = Upserv::with_conf(&module_conf("m", &tree));
    let scratch = tempfile::tempdir().expect("scratch");
    let (relay, pulling) = held_pull(&server, "m", &scratch.path().join("d"));
    server.signal(libc::SIGTERM);
    server.await_log("stopping: waiting up to", 1);
    server.signal(libc::SIGINT);
    // Well before the 30 s of grace, with the held pull cut off.
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        0,
        "{}",
        server.log()
    );
    assert!(server.log().contains("a second stop signal"));
    assert!(server
        .log()
        .contains("stopped with 1 connection(s) still open"));
    relay.release();
    assert_ne!(pulling.join().expect("pull thread").code, 0);
}

#[test]
fn logrotate_and_sigusr1_start_a_fresh_log_file() {
    let tree = tree_with_big_file();
    let server = logging_to_a_file(&tree);
    let log = server.dir().join("upserv.log");
    let rotated = server.dir().join("upserv.log.1");
    let conf = server.dir().join("logrotate.conf");
    // The shape of packaging/logrotate/upserv, for this log and this daemon.
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 2\n  nocompress\n  postrotate\n    kill -USR1 {}\n  endscript\n}}\n",
            log.display(),
            server.pid()
        ),
    )
    .expect("writing logrotate.conf");
    let state = server.dir().join("logrotate.state");
    let rotate = std::process::Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(&conf)
        .output()
        .expect("running logrotate (apt-get install logrotate)");
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let old = std::fs::read_to_string(&rotated).expect("the rotated log");
    assert!(old.contains("listening on"), "{old}");

    // The first connection after the signal lands in the new file.
    list_modules(&server);
    server.await_log("127.0.0.1: module list", 1);
    let old = std::fs::read_to_string(&rotated).expect("the rotated log");
    assert!(!old.contains("module list"), "{old}");

    // SIGHUP reopens it too.
    let moved = server.dir().join("upserv.log.moved");
    std::fs::rename(&log, &moved).expect("moving the log");
    server.signal(libc::SIGHUP);
    server.await_log("configuration reloaded", 1);
    let before = std::fs::read_to_string(&moved).expect("the moved log");
    assert!(!before.contains("configuration reloaded"), "{before}");
}
