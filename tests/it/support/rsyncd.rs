//! The reference server: a real `rsync --daemon` on a loopback port, with a
//! generated rsyncd.conf, its own log file, and a process group killed on drop.
//!
//! rsyncd cannot bind port 0, so a free port is picked, the daemon started on
//! it, and readiness awaited by connecting until its greeting arrives. This
//! module must not touch system paths (/etc/rsyncd.conf, /var/run).

use super::client::Client;
use super::conf::{rsyncd_conf, Module};
use super::inetd::Inetd;
use super::proc::{last_lines, Daemon};
use super::wait::poll;
use super::Server;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// Daemons started on a fresh port each, in case another process takes the
/// port between our probe and rsyncd's bind.
const START_ATTEMPTS: u32 = 3;
/// How long rsyncd may take to listen, and then to greet.
const RSYNCD_READY: Readiness = Readiness {
    listen: Duration::from_secs(2),
    greeting_timeout: Duration::from_secs(5),
};
/// The protocol upserv offers; the reference is capped at it so that a
/// client's default negotiation lands where it lands with upserv.
pub const UPSERV_PROTOCOL: u32 = 32;

/// A running `rsync --daemon`.
pub struct Rsyncd {
    daemon: Daemon,
    port: u16,
    log_file: PathBuf,
    _dir: TempDir,
}

impl Rsyncd {
    /// Starts the reference daemon. It is not capped at a protocol on its
    /// own command line (a daemon started with `--protocol=29` mishandles
    /// `--files-from`); instead its clients ask for it themselves, see
    /// [`Server::client_protocol`].
    pub fn start(modules: &[Module]) -> Rsyncd {
        let (dir, conf, log_file) = write_conf(modules);
        let mut failures = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new("rsync");
            cmd.arg("--daemon")
                .arg("--no-detach")
                .arg(format!("--config={}", conf.display()))
                .arg(format!("--port={port}"))
                .arg("--address=127.0.0.1");
            let mut daemon = Daemon::spawn(&mut cmd, |_| {}).expect("spawning rsync --daemon");
            match await_greeting(&mut daemon, "rsync --daemon", port, RSYNCD_READY) {
                Ok(()) => {
                    return Rsyncd {
                        daemon,
                        port,
                        log_file,
                        _dir: dir,
                    }
                }
                Err(why) => {
                    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
                    failures.push_str(&format!(
                        "port {port}: {why}\nstderr:\n{}\nlog:\n{}\n",
                        daemon.stderr_text(),
                        last_lines(&log, 10)
                    ));
                }
            }
        }
        panic!("rsync --daemon did not come up after {START_ATTEMPTS} attempts:\n{failures}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// rsync's daemon in inetd mode, one process per connection, capped at
/// upserv's protocol like [`Rsyncd::start`]: a reference for the inetd plumbing
/// that `upserv serve` is tested through.
pub fn rsyncd_inetd(modules: &[Module]) -> Inetd {
    let (dir, conf, log_file) = write_conf(modules);
    let mut cmd = Command::new("rsync");
    cmd.arg("--daemon")
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--protocol={UPSERV_PROTOCOL}"));
    Inetd::start(cmd, "rsync --daemon (inetd mode)", Some(log_file)).keeping(dir)
}

/// A state directory holding a generated rsyncd.conf; returns it with the
/// config's and the log's paths.
fn write_conf(modules: &[Module]) -> (TempDir, PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("rsyncd-")
        .tempdir()
        .expect("creating the rsyncd state directory");
    let conf = dir.path().join("rsyncd.conf");
    let log_file = dir.path().join("rsyncd.log");
    let text = rsyncd_conf(modules, &log_file, &dir.path().join("rsyncd.lock"));
    std::fs::write(&conf, text).expect("writing rsyncd.conf");
    (dir, conf, log_file)
}

impl Server for Rsyncd {
    fn describe(&self) -> String {
        format!(
            "rsyncd (clients ask for protocol {UPSERV_PROTOCOL}) on port {}",
            self.port
        )
    }

    fn client_protocol(&self) -> Option<u32> {
        Some(UPSERV_PROTOCOL)
    }

    fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{path}", self.port)
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let mut tail = last_lines(&log, lines);
        let stderr = self.daemon.stderr_text();
        if !stderr.is_empty() {
            tail.push_str("\n(stderr)\n");
            tail.push_str(&last_lines(&stderr, lines));
        }
        tail
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("probing for a free loopback port")
}

/// How long [`await_greeting`] waits: for the daemon to accept a
/// connection, then for a connected daemon to greet.
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    pub listen: Duration,
    pub greeting_timeout: Duration,
}

/// Connects to `port` until the daemon (`what`, for messages) answers with
/// an `@RSYNCD:` greeting, giving up early when it exits (typically: the
/// port was taken).
pub fn await_greeting(
    daemon: &mut Daemon,
    what: &str,
    port: u16,
    ready: Readiness,
) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let connected = poll(ready.listen, || match daemon.exited() {
        Some(status) => Some(Err(format!("{what} exited with {status}"))),
        None => TcpStream::connect(addr).ok().map(Ok),
    });
    match connected {
        Some(Ok(stream)) => read_greeting(stream, ready.greeting_timeout),
        Some(Err(why)) => Err(why),
        None => Err(format!("nothing listening after {:?}", ready.listen)),
    }
}

fn read_greeting(stream: TcpStream, timeout: Duration) -> Result<(), String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("reading the greeting: {e}"))?;
    if line.starts_with("@RSYNCD: ") {
        Ok(())
    } else {
        Err(format!("unexpected greeting {line:?}"))
    }
}

/// Why a test cannot compare with the reference rsync (the `rsync` on
/// PATH, both the reference daemon and the current client) when that is
/// older than release `min`: for expectations that hold from that release
/// on. `why` names the behaviour. `None` when the reference is recent enough.
pub fn reference_older_than(min: (u32, u32, u32), why: &str) -> Option<String> {
    let reference = Client::current();
    let (major, minor, patch) = min;
    (reference.release() < min).then(|| {
        format!(
            "this needs rsync {major}.{minor}.{patch} or newer as the reference, \
             because {why}; PATH has {}",
            reference.version
        )
    })
}

/// Fails the calling test as [`reference_older_than`] says.
pub fn require_reference(min: (u32, u32, u32), why: &str) {
    if let Some(report) = reference_older_than(min, why) {
        panic!("{report}");
    }
}
