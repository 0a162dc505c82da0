//! The server under test, run from the binary cargo built for the tests:
//! `upserv daemon` on an ephemeral loopback port, or `upserv serve` started
//! per connection with the socket as stdin/stdout, the way xinetd runs it.
//!
//! Both keep what upserv writes on stderr (and, for `serve`, its log file) for
//! failure reports. The per-connection plumbing is [`super::inetd`]'s.

use super::conf::{upserv_conf, Module};
use super::inetd::Inetd;
use super::proc::{exit_code, last_lines, Daemon};
use super::Server;
use crossbeam_channel::RecvTimeoutError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// How long `upserv daemon` may take to report that it listens.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// What upserv logs on stderr once bound; the port follows.
const LISTENING_MARK: &str = "listening on 127.0.0.1:";

/// The upserv binary cargo built for this test run.
pub fn upserv_bin() -> &'static str {
    env!("CARGO_BIN_EXE_upserv")
}

/// A command prefix that runs the upserv binary when the kernel cannot, e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu` for a cross target without
/// binfmt_misc. Words are split on blanks; unset or empty means none.
pub const RUNNER_VAR: &str = "UPSERV_TEST_RUNNER";

/// The words that start upserv: [`RUNNER_VAR`]'s, then the binary.
pub fn upserv_argv() -> Vec<String> {
    let runner = std::env::var(RUNNER_VAR).unwrap_or_default();
    let mut argv: Vec<String> = runner.split_whitespace().map(str::to_owned).collect();
    argv.push(upserv_bin().to_owned());
    argv
}

/// A command that starts upserv, through the runner when one is set; every
/// test that runs the binary should start it from here.
pub fn upserv_command() -> Command {
    let argv = upserv_argv();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// How to start upserv besides its modules: all optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct Launch<'a> {
    /// The builds directory (default: an empty one of its own).
    pub builds: Option<&'a Path>,
    /// Extra command-line arguments such as `--upstream URL`.
    pub args: &'a [&'a str],
    /// Extra global settings for the config file (`layout = olpc`, ...).
    pub globals: &'a [(&'a str, &'a str)],
    /// Run as this (uid, gid) through `setpriv`, without supplementary
    /// groups: the unprivileged server of the field. The builds directory
    /// must then be writable by that user.
    pub run_as: Option<(u32, u32)>,
}

impl Launch<'_> {
    /// The upserv command: [`upserv_command`], or `setpriv ... --` before it.
    fn command(&self) -> Command {
        match self.run_as {
            None => upserv_command(),
            Some((uid, gid)) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .args(upserv_argv());
                cmd
            }
        }
    }
}

/// Scratch space shared by both ways of running upserv: its config file, its
/// log file when it logs to one, and a builds directory (the one given, or an
/// empty one of its own).
struct Setup {
    _dir: TempDir,
    conf: PathBuf,
    log_file: PathBuf,
    builds: PathBuf,
}

impl Setup {
    fn new(modules: &[Module], launch: &Launch, use_log_file: bool) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("upserv-")
            .tempdir()
            .expect("creating the upserv state directory");
        if launch.run_as.is_some() {
            // Another user must read the config in this (0700) directory.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("opening the upserv state directory to its user");
        }
        let conf = dir.path().join("upserv.conf");
        let log_file = dir.path().join("upserv.log");
        let log_value = log_file.to_string_lossy().into_owned();
        let mut globals: Vec<(&str, &str)> = launch.globals.to_vec();
        if use_log_file {
            globals.push(("log file", &log_value));
        }
        std::fs::write(&conf, upserv_conf(&globals, modules)).expect("writing upserv.conf");
        let builds = launch.builds;
        let builds = match builds {
            Some(b) => b.to_path_buf(),
            None => {
                let b = dir.path().join("builds");
                std::fs::create_dir(&b).expect("creating the builds directory");
                if let Some((uid, gid)) = launch.run_as {
                    std::os::unix::fs::chown(&b, Some(uid), Some(gid))
                        .expect("giving the builds directory to upserv's user");
                }
                b
            }
        };
        Setup {
            _dir: dir,
            conf,
            log_file,
            builds,
        }
    }
}

/// A running `upserv daemon --listen 127.0.0.1:0`.
pub struct Upserv {
    daemon: Daemon,
    port: u16,
    setup: Setup,
}

impl Upserv {
    /// Starts upserv on `modules` with an empty builds directory.
    pub fn start(modules: &[Module]) -> Upserv {
        Upserv::start_with(modules, None, &[])
    }

    /// Starts upserv with a given builds directory (or an empty one) and
    /// extra command-line arguments such as `--upstream URL`.
    pub fn start_with(modules: &[Module], builds: Option<&Path>, extra_args: &[&str]) -> Upserv {
        Upserv::launch(
            modules,
            &Launch {
                builds,
                args: extra_args,
                ..Launch::default()
            },
        )
    }

    /// Starts upserv as `launch` says.
    pub fn launch(modules: &[Module], launch: &Launch) -> Upserv {
        let setup = Setup::new(modules, launch, false);
        let mut cmd = launch.command();
        cmd.arg("daemon")
            .arg("--config")
            .arg(&setup.conf)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--builds")
            .arg(&setup.builds)
            .args(launch.args);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut tx = Some(tx);
        let mut daemon = Daemon::spawn(&mut cmd, move |line| {
            if let Some(port) = listening_port(line) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(port);
                }
            }
        })
        .expect("spawning upserv daemon");
        match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(port) => Upserv {
                daemon,
                port,
                setup,
            },
            Err(why) => {
                let state = match (why, daemon.exited()) {
                    (_, Some(status)) => format!("it exited with code {}", exit_code(status)),
                    (RecvTimeoutError::Timeout, None) => {
                        format!("no `{LISTENING_MARK}PORT` line within {LISTEN_TIMEOUT:?}")
                    }
                    (RecvTimeoutError::Disconnected, None) => "it closed stderr".to_string(),
                };
                panic!(
                    "upserv daemon did not start listening: {state}\n\
                     command: {cmd:?}\nstderr:\n{}",
                    daemon.stderr_text()
                )
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn builds(&self) -> &Path {
        &self.setup.builds
    }

    /// All upserv has logged so far.
    pub fn log(&self) -> String {
        self.daemon.stderr_text()
    }

    /// Stops upserv the way an init system does (SIGTERM) and returns its
    /// exit code; panics if it is still running after `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> i32 {
        match self.daemon.stop(libc::SIGTERM, timeout) {
            Some(code) => code,
            None => panic!(
                "upserv did not exit within {timeout:?} of SIGTERM\nlog:\n{}",
                self.log()
            ),
        }
    }
}

impl Server for Upserv {
    fn describe(&self) -> String {
        format!("upserv daemon on port {}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{path}", self.port)
    }

    fn log_tail(&self, lines: usize) -> String {
        last_lines(&self.log(), lines)
    }
}

/// The port in a `listening on 127.0.0.1:PORT` log line.
pub fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find(LISTENING_MARK)? + LISTENING_MARK.len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// `upserv serve` in the inetd model: one process per accepted connection
/// with the socket as its stdin and stdout. Its stderr is kept apart (xinetd
/// would send it down the socket) so a test can assert that it wrote nothing.
pub struct UpservServe {
    inetd: Inetd,
    setup: Setup,
}

impl UpservServe {
    pub fn start(modules: &[Module]) -> UpservServe {
        UpservServe::start_with(modules, None, &[])
    }

    /// As [`Upserv::start_with`], for the per-connection `serve` command.
    pub fn start_with(
        modules: &[Module],
        builds: Option<&Path>,
        extra_args: &[&str],
    ) -> UpservServe {
        UpservServe::launch(
            modules,
            &Launch {
                builds,
                args: extra_args,
                ..Launch::default()
            },
        )
    }

    /// As [`Upserv::launch`], for the per-connection `serve` command.
    pub fn launch(modules: &[Module], launch: &Launch) -> UpservServe {
        let setup = Setup::new(modules, launch, true);
        let mut cmd = launch.command();
        cmd.arg("serve")
            .arg("--config")
            .arg(&setup.conf)
            .arg("--builds")
            .arg(&setup.builds)
            .args(launch.args);
        let inetd = Inetd::start(cmd, "upserv serve", Some(setup.log_file.clone()));
        UpservServe { inetd, setup }
    }

    pub fn port(&self) -> u16 {
        self.inetd.port()
    }

    pub fn builds(&self) -> &Path {
        &self.setup.builds
    }

    /// What the `serve` processes wrote on stderr; in the inetd model that
    /// would have gone down the socket, so it should stay empty.
    pub fn stderr_text(&self) -> String {
        self.inetd.stderr_text()
    }
}

impl Server for UpservServe {
    fn describe(&self) -> String {
        self.inetd.describe()
    }

    fn url(&self, path: &str) -> String {
        self.inetd.url(path)
    }

    fn log_tail(&self, lines: usize) -> String {
        self.inetd.log_tail(lines)
    }
}
