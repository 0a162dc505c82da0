//! Support for the access, limits and operation tests: `upserv daemon` run
//! from a configuration the test writes whole (global parameters too), its
//! log awaited line by line, signals sent to it and its exit awaited; a
//! client speaking the daemon handshake by hand; the real rsync client run
//! with the environment a test chooses (passwords); and the daemon's open
//! descriptors, threads and memory read from /proc.
//!
//! Like `common`, it judges the binary from outside and must not use the
//! upserv library. It only signals and kills processes it started. Each
//! test binary uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use crate::common::client::{Client, PULL_TIMEOUT};
use crate::common::proc::{exit_code, run_with_deadline, Daemon as Child, Finished};
use crate::common::upserv::upserv_command;
use parking_lot::{Condvar, Mutex};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the daemon may take to say where it listens.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for a log line or an exit before failing.
pub const AWAIT_TIMEOUT: Duration = Duration::from_secs(40);
/// What upserv logs once bound; the address follows.
const LISTENING_MARK: &str = "listening on ";
/// Read timeout of hand-made clients.
const RAW_TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon's stderr lines, with a condition variable for waiters.
#[derive(Default)]
struct LogLines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running `upserv daemon` with its own state directory.
pub struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: Arc<LogLines>,
    /// The `log file`, when the configuration names one: upserv then
    /// writes nothing on stderr and the log is read from the file.
    log_file: Option<PathBuf>,
    dir: TempDir,
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(LISTENING_MARK)? + LISTENING_MARK.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl Daemon {
    /// Starts upserv with `conf` as its configuration, listening on a free
    /// loopback port, with an empty builds directory of its own.
    pub fn start(conf: &str) -> Daemon {
        Daemon::start_with(conf, &["--listen", "127.0.0.1:0"])
    }

    /// As [`Daemon::start`], with these arguments instead of `--listen`.
    pub fn start_with(conf: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("upserv-ops-")
            .tempdir()
            .expect("state directory");
        std::fs::write(dir.path().join("upserv.conf"), conf).expect("writing upserv.conf");
        std::fs::create_dir(dir.path().join("builds")).expect("builds directory");
        Daemon::start_in(dir, args)
    }

    /// Starts upserv with a `log file` in its state directory, on a free
    /// loopback port; `conf` gets the `log file` line in front.
    pub fn start_logging_to_file(conf: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("upserv-ops-")
            .tempdir()
            .expect("state directory");
        let log_file = dir.path().join("upserv.log");
        let text = format!("log file = {}\n{conf}", log_file.display());
        std::fs::write(dir.path().join("upserv.conf"), text).expect("writing upserv.conf");
        std::fs::create_dir(dir.path().join("builds")).expect("builds directory");
        let port = crate::common::rsyncd::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = upserv_command();
        cmd.arg("daemon")
            .arg("--config")
            .arg(dir.path().join("upserv.conf"))
            .arg("--builds")
            .arg(dir.path().join("builds"))
            .args(["--listen", &listen]);
        let child = Child::spawn(&mut cmd, |_| {}).expect("spawning upserv daemon");
        let daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log: Arc::new(LogLines::default()),
            log_file: Some(log_file),
            dir,
        };
        daemon.await_log(&format!("listening on {listen}"), 1);
        daemon
    }

    /// Starts upserv in a prepared state directory (holding `upserv.conf`
    /// and `builds/`).
    pub fn start_in(dir: TempDir, args: &[&str]) -> Daemon {
        let mut cmd = upserv_command();
        cmd.arg("daemon")
            .arg("--config")
            .arg(dir.path().join("upserv.conf"))
            .arg("--builds")
            .arg(dir.path().join("builds"))
            .args(args);
        let log = Arc::new(LogLines::default());
        let sink = Arc::clone(&log);
        let mut child = Child::spawn(&mut cmd, move |line| {
            sink.lines.lock().push(line.trim_end().to_string());
            sink.grew.notify_all();
        })
        .expect("spawning upserv daemon");
        let addr = await_line(&log, LISTEN_TIMEOUT, listening_addr);
        let Some(addr) = addr else {
            let state = child.exited().map_or("still running".to_string(), |s| {
                format!("exit {}", exit_code(s))
            });
            panic!(
                "upserv did not report a listening address ({state}); command {cmd:?}\n{}",
                child.stderr_text()
            );
        };
        Daemon {
            child,
            addr,
            log,
            log_file: None,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What upserv wrote on stderr (empty when it logs to a file).
    pub fn stderr_text(&self) -> String {
        self.child.stderr_text()
    }

    /// Replaces the configuration file (for a reload).
    pub fn write_conf(&self, conf: &str) {
        std::fs::write(self.dir.path().join("upserv.conf"), conf).expect("rewriting upserv.conf");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `rsync://HOST:PORT/` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        match self.addr.ip() {
            IpAddr::V6(ip) => format!("rsync://[{ip}]:{}/{path}", self.port()),
            IpAddr::V4(ip) => format!("rsync://{ip}:{}/{path}", self.port()),
        }
    }

    pub fn log_text(&self) -> String {
        match &self.log_file {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => self.log.lines.lock().join("\n"),
        }
    }

    /// Log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn await_log(&self, needle: &str, count: usize) {
        if self.log_file.is_some() {
            // A file gives no notice when it grows: poll it (bounded).
            let deadline = Instant::now() + AWAIT_TIMEOUT;
            while self.count_log(needle) < count {
                assert!(
                    Instant::now() < deadline,
                    "the log file never showed {count} line(s) with {needle:?}:\n{}\nstderr:\n{}",
                    self.log_text(),
                    self.child.stderr_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        let mut n = 0;
        let found = await_line(&self.log, AWAIT_TIMEOUT, |line| {
            n += usize::from(line.contains(needle));
            (n >= count).then_some(())
        });
        assert!(
            found.is_some(),
            "the log never showed {count} line(s) with {needle:?}:\n{}",
            self.log_text()
        );
    }

    /// Sends signal `sig` to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: plain syscall to our own, not yet reaped, child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let pid = self.pid();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            wait_without_reaping(pid);
            let _ = tx.send(());
        });
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            rx.recv_timeout(left).is_ok(),
            "upserv did not exit within {timeout:?}:\n{}",
            self.log_text()
        );
        let status = self.child.exited().expect("exited");
        exit_code(status)
    }
}

/// Waits (without reaping) until process `pid` has exited.
fn wait_without_reaping(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to our own siginfo_t.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Waits until `check` finds something in the log, or the timeout passes.
/// `check` sees every line once, in order, as it arrives.
fn await_line<T>(
    log: &LogLines,
    timeout: Duration,
    mut check: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut lines = log.lines.lock();
    let mut seen = 0;
    loop {
        while seen < lines.len() {
            if let Some(found) = check(&lines[seen]) {
                return Some(found);
            }
            seen += 1;
        }
        if log.grew.wait_until(&mut lines, deadline).timed_out() {
            return None;
        }
    }
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// Waits until process `pid` has `want` open descriptors. Closing a
/// socket leaves no other trace to wait for, so this polls (bounded).
pub fn await_fd_count(pid: u32, want: usize) {
    let deadline = Instant::now() + AWAIT_TIMEOUT;
    loop {
        let now = fd_count(pid);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} kept {now} descriptors, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads of process `pid`.
pub fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .count()
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// A client speaking the daemon protocol by hand.
pub struct Raw {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Raw::wrap(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// Connects from another loopback address (Linux routes all of
    /// 127.0.0.0/8 to the loopback interface), to act as another host.
    pub fn connect_from(source: &str, port: u16) -> Raw {
        Raw::wrap(connect_from(source, port).expect("connect from another loopback address"))
    }

    fn wrap(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(RAW_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Raw { stream, reader }
    }

    /// One line from the server, with its newline; empty at end of stream.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reading a line");
        line
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("sending");
    }

    /// Everything until the server closes (or the read times out).
    pub fn rest(&mut self) -> String {
        let mut text = String::new();
        let _ = self.reader.read_to_string(&mut text);
        text
    }

    /// Greeting and module name sent; returns the server's lines up to
    /// and including `@RSYNCD: OK` or the first `@ERROR`/`@RSYNCD:` line.
    pub fn open_module(&mut self, module: &str) -> Vec<String> {
        let greeting = self.line();
        // upserv offers 29; the reference rsyncd offers its own newest and
        // settles on the 29 this client asks for.
        assert!(greeting.starts_with("@RSYNCD: "), "greeting {greeting:?}");
        self.send(format!("@RSYNCD: 29.0\n{module}\n").as_bytes());
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.is_empty() || line.starts_with("@");
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source`.
pub fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let src: std::net::Ipv4Addr = source.parse().expect("IPv4 source address");
    // SAFETY: a fresh socket, owned by the TcpStream built from it below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours; the stream closes it on drop.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr(src, 0);
    let remote = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
    // SAFETY: valid sockaddr_in structures of the given length.
    unsafe {
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(stream)
}

/// Runs `client` with `args` and extra environment variables (such as
/// `RSYNC_PASSWORD`), in `cwd`, with the usual pull deadline.
pub fn rsync(client: &Client, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = Command::new(&client.program);
    cmd.current_dir(cwd).env("LC_ALL", "C").args(args);
    for var in [
        "RSYNC_PASSWORD",
        "RSYNC_CONNECT_PROG",
        "RSYNC_PROXY",
        "USER",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let finished = run_with_deadline(&mut cmd, PULL_TIMEOUT).expect("running rsync");
    assert!(!finished.timed_out, "rsync hung: {cmd:?}");
    finished
}

/// The text of a finished command's stderr.
pub fn stderr(f: &Finished) -> String {
    String::from_utf8_lossy(&f.stderr).into_owned()
}

/// A file of `len` zero bytes, made sparse so that big ones cost no disk.
pub fn sparse_file(path: &Path, len: u64) {
    let f = std::fs::File::create(path).expect("creating a sparse file");
    f.set_len(len).expect("sizing the sparse file");
}

/// Every file under `dir` whose content contains `marker`.
pub fn files_containing(dir: &Path, marker: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&path, marker));
        } else if meta.is_file() {
            let mut content = Vec::new();
            if std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut content))
                .is_ok()
                && content.windows(marker.len()).any(|w| w == marker)
            {
                found.push(path);
            }
        }
    }
    found
}

/// A one-connection TCP relay to a daemon that forwards the first bytes
/// the daemon sends, then holds the rest until released: a pull that is
/// certainly in flight for as long as a test needs, without timing.
pub struct GatedRelay {
    port: u16,
    paused: crossbeam_channel::Receiver<()>,
    release: crossbeam_channel::Sender<()>,
}

impl GatedRelay {
    /// Relays one connection to `127.0.0.1:target`, pausing once
    /// `pause_after` bytes have gone from the daemon to the client.
    pub fn start(target: u16, pause_after: usize) -> GatedRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay listener");
        let port = listener.local_addr().expect("relay address").port();
        let (paused_tx, paused) = crossbeam_channel::bounded(1);
        let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(daemon) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (mut c_in, mut d_out) = (
                client.try_clone().expect("clone"),
                daemon.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut d_out);
                let _ = d_out.shutdown(std::net::Shutdown::Write);
            });
            relay_gated(daemon, client, pause_after, &paused_tx, &release_rx);
        });
        GatedRelay {
            port,
            paused,
            release,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until the relay holds the daemon's data back.
    pub fn await_paused(&self) {
        self.paused
            .recv_timeout(AWAIT_TIMEOUT)
            .expect("the relay never paused: the pull did not start");
    }

    /// Lets the rest of the daemon's data through.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

fn relay_gated(
    mut from: TcpStream,
    mut to: TcpStream,
    pause_after: usize,
    paused: &crossbeam_channel::Sender<()>,
    release: &crossbeam_channel::Receiver<()>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0;
    let mut gate_open = false;
    loop {
        if !gate_open && sent >= pause_after {
            let _ = paused.send(());
            if release.recv().is_err() {
                return;
            }
            gate_open = true;
        }
        let room = if gate_open {
            buf.len()
        } else {
            buf.len().min(pause_after - sent)
        };
        match from.read(&mut buf[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n;
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
