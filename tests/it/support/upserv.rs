//! The server under test, run from the binary cargo built for the tests:
//! `upserv daemon` on an ephemeral port (`--listen 127.0.0.1:0`, the port
//! read back from its `listening on` log line, so no port is probed and
//! released), `upserv serve` started per connection with the socket as
//! stdin/stdout the way xinetd runs it, and one-shot admin commands.
//!
//! The daemon's configuration is generated from modules and globals, or
//! given whole by the test; its log (stderr, or its `log file`) is kept for
//! assertions and failure reports. The per-connection plumbing is
//! [`super::inetd`]'s.

use super::conf::{upserv_conf, Module};
use super::inetd::Inetd;
use super::proc::{exit_code, last_lines, run_with_deadline, Daemon};
use super::wait::{poll, WAIT_LIMIT};
use super::Server;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// What upserv logs once bound; the address follows.
const LISTENING_MARK: &str = "listening on ";
/// Where the daemon listens unless the test says otherwise: any free
/// loopback port, which upserv then reports.
const DEFAULT_LISTEN: &str = "127.0.0.1:0";

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

/// Runs `upserv ARGS` to completion (an admin command next to a daemon):
/// (exit code, stdout, stderr).
pub fn run_upserv(args: &[&str]) -> (i32, String, String) {
    let mut cmd = upserv_command();
    cmd.args(args);
    let done = run_with_deadline(&mut cmd, WAIT_LIMIT).expect("running upserv");
    assert!(!done.timed_out, "upserv {args:?} ran past {WAIT_LIMIT:?}");
    (
        done.code,
        String::from_utf8_lossy(&done.stdout).into_owned(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

/// How to start upserv besides its modules: all optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct Launch<'a> {
    /// The whole configuration file, instead of one generated from the
    /// modules and [`Launch::globals`].
    pub conf: Option<&'a str>,
    /// The builds directory (default: an empty one of its own).
    pub builds: Option<&'a Path>,
    /// Extra command-line arguments such as `--upstream URL`.
    pub args: &'a [&'a str],
    /// Extra global settings for the config file (`layout = olpc`, ...).
    pub globals: &'a [(&'a str, &'a str)],
    /// The daemon's `--listen` address (default: a free loopback port);
    /// its port should be 0, so that upserv picks one and reports it.
    pub listen: Option<&'a str>,
    /// Log to a `log file` in the state directory instead of stderr.
    pub log_file: bool,
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
    dir: TempDir,
    conf: PathBuf,
    log_file: Option<PathBuf>,
    builds: PathBuf,
}

impl Setup {
    fn new(modules: &[Module], launch: &Launch) -> Setup {
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
        let log_file = launch.log_file.then(|| dir.path().join("upserv.log"));
        let log_line = log_file
            .as_ref()
            .map(|path| ("log file", path.to_string_lossy().into_owned()));
        let text = match launch.conf {
            Some(text) => match &log_line {
                Some((key, value)) => format!("{key} = {value}\n{text}"),
                None => text.to_string(),
            },
            None => {
                let mut globals: Vec<(&str, &str)> = launch.globals.to_vec();
                globals.extend(log_line.as_ref().map(|(k, v)| (*k, v.as_str())));
                upserv_conf(&globals, modules)
            }
        };
        std::fs::write(&conf, text).expect("writing upserv.conf");
        let builds = match launch.builds {
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
            dir,
            conf,
            log_file,
            builds,
        }
    }

    /// What upserv has logged: its log file when it has one, else `stderr`.
    fn log(&self, stderr: String) -> String {
        match &self.log_file {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => stderr,
        }
    }
}

/// A running `upserv daemon` with a state directory of its own.
pub struct Upserv {
    daemon: Daemon,
    addr: SocketAddr,
    setup: Setup,
}

impl Upserv {
    /// Starts upserv on `modules` with an empty builds directory.
    pub fn start(modules: &[Module]) -> Upserv {
        Upserv::launch(modules, &Launch::default())
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

    /// Starts upserv with `conf` as its whole configuration file.
    pub fn with_conf(conf: &str) -> Upserv {
        Upserv::launch(
            &[],
            &Launch {
                conf: Some(conf),
                ..Launch::default()
            },
        )
    }

    /// Starts upserv as `launch` says.
    pub fn launch(modules: &[Module], launch: &Launch) -> Upserv {
        let setup = Setup::new(modules, launch);
        let mut cmd = launch.command();
        cmd.arg("daemon")
            .arg("--config")
            .arg(&setup.conf)
            .arg("--listen")
            .arg(launch.listen.unwrap_or(DEFAULT_LISTEN))
            .arg("--builds")
            .arg(&setup.builds)
            .args(launch.args);
        let mut daemon = Daemon::spawn(&mut cmd, |_| {}).expect("spawning upserv daemon");
        // Some(Ok(address)) once it listens, Some(Err(status)) if it ended.
        let outcome = poll(WAIT_LIMIT, || {
            let log = setup.log(daemon.stderr_text());
            match log.lines().find_map(listening_addr) {
                Some(addr) => Some(Ok(addr)),
                None => daemon.exited().map(Err),
            }
        });
        let Some(Ok(addr)) = outcome else {
            let state = match outcome {
                Some(Err(status)) => format!("it exited with code {}", exit_code(status)),
                _ => format!("no `{LISTENING_MARK}ADDR` line within {WAIT_LIMIT:?}"),
            };
            panic!(
                "upserv daemon did not start listening: {state}\n\
                 command: {cmd:?}\nlog:\n{}",
                setup.log(daemon.stderr_text())
            )
        };
        Upserv {
            daemon,
            addr,
            setup,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn builds(&self) -> &Path {
        &self.setup.builds
    }

    /// The state directory: `upserv.conf`, `upserv.log` when it logs to a
    /// file, and `builds/` unless the test gave another.
    pub fn dir(&self) -> &Path {
        self.setup.dir.path()
    }

    /// Replaces the configuration file (for a reload).
    pub fn write_conf(&self, conf: &str) {
        std::fs::write(&self.setup.conf, conf).expect("rewriting upserv.conf");
    }

    /// All upserv has logged so far, on stderr or in its log file.
    pub fn log(&self) -> String {
        self.setup.log(self.daemon.stderr_text())
    }

    /// What upserv wrote on stderr (nothing, when it logs to a file).
    pub fn stderr_text(&self) -> String {
        self.daemon.stderr_text()
    }

    /// Log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn await_log(&self, needle: &str, count: usize) {
        let seen = poll(WAIT_LIMIT, || {
            (self.count_log(needle) >= count).then_some(())
        });
        assert!(
            seen.is_some(),
            "the log never showed {count} line(s) with {needle:?}:\n{}\nstderr:\n{}",
            self.log(),
            self.stderr_text()
        );
    }

    /// Sends signal `sig` to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        assert!(
            self.daemon.signal(sig),
            "kill({}, {sig}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits up to `timeout` for the daemon to exit on its own and returns
    /// its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        match self.daemon.wait(timeout) {
            Some(code) => code,
            None => panic!("upserv did not exit within {timeout:?}:\n{}", self.log()),
        }
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
        format!("upserv daemon on {}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        match self.addr.ip() {
            IpAddr::V6(ip) => format!("rsync://[{ip}]:{}/{path}", self.port()),
            IpAddr::V4(ip) => format!("rsync://{ip}:{}/{path}", self.port()),
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        last_lines(&self.log(), lines)
    }
}

/// The address in a `listening on ADDR` log line.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(LISTENING_MARK)? + LISTENING_MARK.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// `upserv serve` in the inetd model: one process per accepted connection
/// with the socket as its stdin and stdout. Its stderr is kept apart (xinetd
/// would send it down the socket) so a test can assert that it wrote nothing.
pub struct UpservServe {
    inetd: Inetd,
    /// Kept for its directory: the config, the log and the builds.
    _setup: Setup,
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
        let setup = Setup::new(
            modules,
            &Launch {
                log_file: true,
                ..*launch
            },
        );
        let mut cmd = launch.command();
        cmd.arg("serve")
            .arg("--config")
            .arg(&setup.conf)
            .arg("--builds")
            .arg(&setup.builds)
            .args(launch.args);
        let inetd = Inetd::start(cmd, "upserv serve", setup.log_file.clone());
        UpservServe {
            inetd,
            _setup: setup,
        }
    }

    pub fn port(&self) -> u16 {
        self.inetd.port()
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
