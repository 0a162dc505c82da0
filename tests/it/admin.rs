//! upserv as a school's admin runs it from a shell: each command's own
//! `--help`; output into a closed pipe ending quietly (`upserv list | head
//! -1`); `check-config` refusing typos and checking what the configuration
//! points at; errors reaching the terminal once even with a `log file`;
//! the journal's line format under systemd; syslog, with a private
//! /dev/log in a mount namespace; and the default listening addresses,
//! both IPv6 and IPv4, in a private network namespace.

use crate::support::proc::run_with_deadline;
use crate::support::upserv::{run_upserv, upserv_command};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// Bounds a command that should finish at once (qemu-user is slow).
const DEADLINE: Duration = Duration::from_secs(60);

/// A scratch directory with an empty config, a builds directory holding
/// one build, and a module tree.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().expect("scratch directory");
        let scene = Scene { dir };
        std::fs::write(scene.conf(), "").expect("empty config");
        std::fs::create_dir_all(scene.builds().join("b1")).expect("a build");
        std::fs::write(scene.builds().join("b1/README"), "b1\n").expect("a file");
        scene
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn conf(&self) -> PathBuf {
        self.path("upserv.conf")
    }

    fn builds(&self) -> PathBuf {
        self.path("builds")
    }

    /// `ARGS --config C --builds B`, as strings.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--config".to_string(),
            self.conf().display().to_string(),
            "--builds".to_string(),
            self.builds().display().to_string(),
        ]);
        all
    }

    /// Runs `upserv ARGS --config C --builds B`: (code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let all = self.args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_upserv(&all)
    }

    /// `check-config` on configuration `text`: (code, stdout, stderr).
    fn check(&self, text: &str) -> (i32, String, String) {
        std::fs::write(self.conf(), text).expect("writing the config");
        self.run(&["check-config"])
    }
}

#[test]
fn each_command_has_its_own_help() {
    for command in [
        "daemon",
        "fetch",
        "pin",
        "gc",
        "evict",
        "refetch",
        "check-config",
    ] {
        let (code, out, err) = run_upserv(&[command, "--help"]);
        assert_eq!(code, 0, "{command}: {err}");
        assert!(
            out.starts_with(&format!("usage: upserv {command} ")),
            "{command}: {out}"
        );
        // Not the whole help: no other command's usage.
        assert!(!out.contains("USAGE"), "{command}: {out}");
        let (_, by_name, _) = run_upserv(&["help", command]);
        assert_eq!(by_name, out);
    }
    let (code, out, _) = run_upserv(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("upserv evict ") && out.contains("upserv refetch "));
}

/// Runs `upserv ARGS` with stdout a pipe whose reader is already gone:
/// (exit code, or minus the signal that ended it; stderr).
fn into_closed_pipe(args: &[String]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut cmd = upserv_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("starting upserv");
    drop(cmd);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let done = rx
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("upserv {args:?} ran on"))
        .expect("upserv's exit");
    let code = done.status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        -done.status.signal().unwrap_or(0)
    });
    (code, String::from_utf8_lossy(&done.stderr).into_owned())
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let scene = Scene::new();
    let upstream = "--upstream=http://127.0.0.1:9/{name}.tar";
    let commands: [&[&str]; 10] = [
        &["--help"],
        &["pin", "--help"],
        &["--version"],
        &["check-config"],
        &["list"],
        &["gc", "--dry-run"],
        &["gc"],
        &["fetch", "b1", upstream],
        &["bench", "--size", "64K"],
        &["evict", "b1"],
    ];
    for args in commands {
        let (code, stderr) = into_closed_pipe(&scene.args(args));
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panick") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
    // `evict` really ran: stdout was gone only after its work was done.
    assert!(!scene.builds().join("b1").exists());
}

#[test]
fn bench_clients_runs_the_matcher_once_through_the_memo() {
    let scene = Scene::new();
    let (code, out, err) = scene.run(&["bench", "--clients", "4", "--size", "1M"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // The memo's counter: one request matched, three replayed it.
    assert!(lines[0].starts_with("4 clients, memo on, cpu "), "{out}");
    assert!(lines[0].contains("matcher ran 1 of 4"), "{out}");
    assert!(lines[1].starts_with("4 clients, memo off, cpu "), "{out}");
    assert!(lines[1].contains("matcher ran 4 of 4"), "{out}");
    assert!(
        lines[2].starts_with("cpu without the memo / with it: "),
        "{out}"
    );
    let bytes = |line: &str| line.rsplit(", ").next().unwrap().to_string();
    assert_eq!(bytes(lines[0]), bytes(lines[1]), "the same stream: {out}");
}

#[test]
fn check_config_refuses_unknown_parameters_and_suggests_the_nearest() {
    let scene = Scene::new();
    let (code, out, err) = scene.check("upstrem = https://h/{name}.tar\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        out.is_empty(),
        "no settings printed for a bad config: {out}"
    );
    let line = format!("{}:1: unknown parameter `upstrem`", scene.conf().display());
    assert_eq!(err.matches(&line).count(), 1, "{err}");
    assert!(err.contains("(did you mean `upstream`?)"), "{err}");
    // A parameter rsyncd knows and upserv ignores stays a warning.
    let (code, out, err) = scene.check("use chroot = yes\n");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("upserv: warning: ") && err.contains("`use chroot` ignored"));
    assert!(out.contains("[global]"));
}

#[test]
fn check_config_checks_what_the_file_points_at() {
    let scene = Scene::new();
    std::fs::create_dir(scene.path("tree")).expect("module tree");
    let secrets = scene.path("secrets");
    std::fs::write(&secrets, "joe:pw\n").expect("secrets");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let good = "[ok]\npath = tree\n";
    assert_eq!(scene.check(good).0, 0);

    let (code, _, err) = scene.check("[gone]\npath = no-such-dir\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[gone] path ") && err.contains("no-such-dir"),
        "{err}"
    );

    let (code, _, err) = scene.check("[file]\npath = secrets\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a directory"), "{err}");

    let text = "[priv]\npath = tree\nauth users = joe\nsecrets file = secrets\n";
    let (code, _, err) = scene.check(text);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must not be other-accessible"), "{err}");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(scene.check(text).0, 0);

    let (code, _, err) = scene.check("[named]\npath = tree\nhosts allow = laptop.school\n");
    assert_eq!(code, 0, "host names only warn: {err}");
    assert!(
        err.contains("upserv: warning: [named] hosts allow: `laptop.school`"),
        "{err}"
    );

    // Relative paths are the file's folder's, whatever the current directory.
    let (code, out, err) = scene.check(good);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("path = {}", scene.path("tree").display())),
        "{out}"
    );
}

#[test]
fn command_errors_reach_stderr_once_even_with_a_log_file() {
    let scene = Scene::new();
    let log = scene.path("upserv.log");
    std::fs::write(scene.conf(), format!("log file = {}\n", log.display())).expect("config");
    let up = crate::support::upstream::Upstream::start();
    let template = format!("--upstream={}", up.url("/{name}.tar"));
    let (code, _, err) = scene.run(&["fetch", "nope", &template]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("nope")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("upserv"), "{err}");
    assert!(!log.exists() || std::fs::read_to_string(&log).unwrap().is_empty());

    // The daemon's startup errors too, once on stderr, and in its log.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a busy port");
    let addr = taken.local_addr().expect("its address").to_string();
    let (code, _, err) = scene.run(&["daemon", "--listen", &addr]);
    assert_eq!(code, 1, "{err}");
    let wanted = format!("cannot listen on {addr}");
    assert_eq!(err.matches(&wanted).count(), 1, "{err}");
    let logged = std::fs::read_to_string(&log).expect("the log file");
    assert!(logged.contains(&wanted), "{logged}");
}

/// A child killed and reaped when the test ends, whether it passes or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of `stream`, read on a thread of their own as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line that contains `needle`; fails the test after [`DEADLINE`].
fn await_line(lines: &Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

/// `(dev, ino)` of the pipe behind `fd`, as systemd puts in JOURNAL_STREAM.
fn dev_ino(file: &impl std::os::fd::AsRawFd) -> String {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the struct we pass; read only on success.
    assert_eq!(
        unsafe { libc::fstat(file.as_raw_fd(), stat.as_mut_ptr()) },
        0
    );
    // SAFETY: fstat succeeded.
    let stat = unsafe { stat.assume_init() };
    format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// The first line the daemon logs when its stderr is a pipe and
/// JOURNAL_STREAM names `journal` (a pipe's `dev:ino`, or anything).
fn first_daemon_line(
    scene: &Scene,
    journal: impl FnOnce(&std::io::PipeWriter) -> String,
) -> String {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let stream = journal(&writer);
    let mut cmd = upserv_command();
    cmd.args(scene.args(&["daemon", "--listen", "127.0.0.1:0"]))
        .env("JOURNAL_STREAM", stream)
        .stdout(Stdio::null())
        .stderr(writer);
    let _daemon = Running(cmd.spawn().expect("starting the daemon"));
    drop(cmd);
    await_line(&lines_of(reader), "listening on")
}

#[test]
fn under_systemd_log_lines_carry_a_priority_and_no_timestamp() {
    let scene = Scene::new();
    let line = first_daemon_line(&scene, dev_ino);
    assert!(
        line.starts_with("<6>INFO  [upserv::daemon] listening on 127.0.0.1:"),
        "{line}"
    );
    // A JOURNAL_STREAM that is not our stderr (inherited, redirected) is ignored.
    let line = first_daemon_line(&scene, |_| "1:1".to_string());
    assert!(
        line.contains("Z INFO  [upserv::daemon] listening on"),
        "{line}"
    );
}

/// Mounts a private /dev holding /dev/null and, as /dev/log, the socket
/// `$0/log.sock`, then runs the command: syslog(3) writes to /dev/log.
const PRIVATE_DEV_LOG: &str = "touch \"$0/null\" && mount --bind /dev/null \"$0/null\" \
    && mount -t tmpfs tmpfs /dev && touch /dev/null /dev/log \
    && mount --bind \"$0/null\" /dev/null && mount --bind \"$0/log.sock\" /dev/log \
    && exec \"$@\"";

#[test]
fn syslog_facility_sends_the_log_to_syslog() {
    let probe = Command::new("unshare").args(["-m", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot create a mount namespace (needs root and unshare)");
        return;
    }
    let scene = Scene::new();
    std::fs::write(scene.conf(), "syslog facility = local3\n").expect("config");
    let syslog = std::os::unix::net::UnixDatagram::bind(scene.path("log.sock")).expect("socket");
    syslog
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", PRIVATE_DEV_LOG])
        .arg(scene.dir.path())
        .args(crate::support::upserv::upserv_argv())
        .args(scene.args(&["daemon", "--listen", "127.0.0.1:0"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Running(cmd.spawn().expect("starting upserv in a mount namespace"));
    let stderr = lines_of(child.0.stderr.take().expect("stderr"));
    let mut buf = [0u8; 4096];
    let line = loop {
        let n = syslog.recv(&mut buf).expect("a syslog message");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("listening on") {
            break text;
        }
    };
    drop(child);
    // local3 (19) * 8 + info (6); tagged upserv with its pid.
    assert!(line.starts_with("<158>"), "{line}");
    assert!(
        line.contains(" upserv[") && line.contains("INFO [upserv::daemon] listening on 127.0.0.1:"),
        "{line}"
    );
    let stderr: Vec<String> = stderr.try_iter().collect();
    assert!(
        !stderr.iter().any(|l| l.contains("listening on")),
        "{stderr:?}"
    );
}

/// Whether this machine lets the test make a private network namespace.
fn can_unshare() -> bool {
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status();
    if probe.is_ok_and(|s| s.success()) {
        return true;
    }
    eprintln!("skipped: cannot create a network namespace (needs root and unshare)");
    false
}

/// Lists the modules of `url` from inside the network namespace of `pid`.
fn list_in_namespace(pid: u32, url: &str) -> (i32, String) {
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "-t",
        &pid.to_string(),
        "-n",
        "rsync",
        "--contimeout=10",
        url,
    ]);
    let done = run_with_deadline(&mut cmd, DEADLINE).expect("running rsync");
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    let err = String::from_utf8_lossy(&done.stderr);
    (done.code, format!("{out}{err}"))
}

#[test]
fn by_default_the_daemon_listens_on_ipv6_and_ipv4() {
    if !can_unshare() {
        return;
    }
    let scene = Scene::new();
    let script = "ip link set lo up && exec \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "sh", "-c", script, "sh"])
        .args(crate::support::upserv::upserv_argv())
        .args(scene.args(&["daemon"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Running(cmd.spawn().expect("starting upserv in a namespace"));
    let lines = lines_of(child.0.stderr.take().expect("stderr"));
    let seen: Vec<String> = (0..2)
        .map(|_| {
            let line = await_line(&lines, "listening on ");
            line.split("listening on ").nth(1).unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(seen, ["[::]:873", "0.0.0.0:873"]);
    for url in ["rsync://[::1]/", "rsync://127.0.0.1/"] {
        let (code, text) = list_in_namespace(child.0.id(), url);
        assert_eq!(code, 0, "{url}: {text}");
        assert!(text.lines().any(|l| l.trim_end() == "b1"), "{url}: {text}");
    }
}

#[test]
fn listen_accepts_host_names() {
    let scene = Scene::new();
    let (code, out, err) = scene.run(&["check-config", "--listen", "localhost:8730"]);
    assert_eq!(code, 0, "{err}");
    let listen = out
        .lines()
        .find(|l| l.starts_with("listen = "))
        .expect("listen");
    assert!(listen.contains("127.0.0.1:8730"), "{listen}");
    let (code, _, err) = scene.run(&["check-config", "--listen", "no-such-host.invalid:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot resolve host name `no-such-host.invalid`"),
        "{err}"
    );
}
