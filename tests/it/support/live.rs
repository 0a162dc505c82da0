//! Real rsync clients watched as they run: one whose output is read line
//! by line as it comes (to wait for what it shows), and one held still in
//! the middle of a pull (to keep a module in use for as long as a test
//! needs, without timing).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::proc::{exit_code, kill_group};
use super::wait::{poll, wait_until, WAIT_LIMIT};
use super::Client;

/// A client's outputs watched: stdout and stderr.
const OUTPUTS: usize = 2;
/// Bytes that fill a pipe beyond what any kernel buffers (64 KiB on Linux).
const PIPE_FILL_LIMIT: usize = 1 << 20;

/// A real rsync client whose output is read as it comes, each line with
/// the time it arrived, so that a test can wait for what the client shows.
pub struct LiveClient {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
    /// Set when the client has closed both stdout and stderr (it is ending).
    closed: Arc<AtomicUsize>,
    readers: Vec<thread::JoinHandle<()>>,
    pub command: String,
}

/// Reads `pipe` line by line into `sink`, then counts itself in `closed`.
fn spawn_reader<R: Read + Send + 'static>(
    pipe: R,
    sink: Arc<Mutex<Vec<(Instant, String)>>>,
    closed: Arc<AtomicUsize>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
        closed.fetch_add(1, Ordering::SeqCst);
    })
}

impl LiveClient {
    /// Starts `rsync OPTS URL DEST` with the current client.
    pub fn start(url: &str, dest: &Path, opts: &[&str]) -> LiveClient {
        let mut cmd = Command::new(&Client::current().program);
        cmd.env("LC_ALL", "C").args(opts).arg(url).arg(dest);
        let command = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let readers = vec![
            spawn_reader(
                child.stdout.take().expect("the client's stdout"),
                Arc::clone(&lines),
                Arc::clone(&closed),
            ),
            spawn_reader(
                child.stderr.take().expect("the client's stderr"),
                Arc::clone(&stderr),
                Arc::clone(&closed),
            ),
        ];
        LiveClient {
            child: Some(child),
            lines,
            stderr,
            closed,
            readers,
            command,
        }
    }

    /// Waits until a stdout line contains `needle`; returns it with the
    /// time it arrived.
    pub fn wait_for_line(&self, needle: &str) -> (Instant, String) {
        let mut found = None;
        wait_until(&format!("{needle:?} from `{}`", self.command), || {
            let ended = self.closed.load(Ordering::SeqCst) == OUTPUTS;
            found = self.find_line(needle);
            found.is_some() || ended
        });
        found.unwrap_or_else(|| {
            panic!(
                "the client ended without printing {needle:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Waits until upserv tells the client that `build` is being fetched
    /// from the upstream (the first progress line).
    pub fn wait_for_fetching(&self, build: &str) {
        self.wait_for_line(&format!("upserv: fetching {build} from upstream: "));
    }

    fn find_line(&self, needle: &str) -> Option<(Instant, String)> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|(_, l)| l.contains(needle)).cloned()
    }

    /// Stdout lines so far, with their arrival times.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    pub fn stderr(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits for the client to exit (killing it after [`WAIT_LIMIT`]) and
    /// returns its exit code, with all output read.
    pub fn finish(mut self) -> Finished {
        let mut child = self.child.take().expect("a client not yet finished");
        let pid = child.id();
        let code = wait_or_kill(&mut child, pid);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Finished {
            code,
            lines: self.lines(),
            stdout: self.stdout(),
            stderr: self.stderr(),
            command: self.command.clone(),
        }
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                kill_group(child.id());
            }
            let _ = child.wait();
        }
    }
}

/// Waits up to [`WAIT_LIMIT`] for `child`, then kills its group.
fn wait_or_kill(child: &mut Child, pid: u32) -> i32 {
    if let Some(status) = poll(WAIT_LIMIT, || child.try_wait().ok().flatten()) {
        return exit_code(status);
    }
    kill_group(pid);
    let status = child.wait().expect("waiting for a killed client");
    panic!("the client ran past {WAIT_LIMIT:?} and was killed ({status})");
}

/// How a watched client ended.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    /// Stdout lines with the times they arrived.
    pub lines: Vec<(Instant, String)>,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Finished {
    pub fn assert_ok(&self) -> &Finished {
        assert!(
            self.code == 0,
            "{} exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A real client held still in the middle of a pull: its stdout is a pipe
/// filled to the brim before it starts, so the first line it prints after
/// receiving the file list (`-i`) blocks it with the connection open and
/// the module in use. [`StalledClient::release`] drains the pipe and lets
/// it finish.
pub struct StalledClient {
    child: Child,
    pipe: Option<std::fs::File>,
}

impl StalledClient {
    pub fn start(url: &str, dest: &Path, opts: &[&str]) -> StalledClient {
        let (read_end, write_end) = full_pipe();
        let mut cmd = Command::new(&Client::current().program);
        cmd.env("LC_ALL", "C").args(opts).arg(url).arg(dest);
        let command = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command}: {e}"));
        StalledClient {
            child,
            pipe: Some(std::fs::File::from(read_end)),
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Lets the client go on and waits for it; returns its exit code.
    pub fn release(mut self) -> i32 {
        let mut pipe = self.pipe.take().expect("the pipe of a held client");
        let drain = thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = pipe.read_to_end(&mut sink);
        });
        let pid = self.child.id();
        let code = wait_or_kill(&mut self.child, pid);
        let _ = drain.join();
        code
    }
}

impl Drop for StalledClient {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(self.child.id());
        }
        let _ = self.child.wait();
    }
}

/// A pipe whose buffer is already full: (read end, write end). The write
/// end is left blocking, so a writer given it waits until we read.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(&write_end, true);
    let mut file = std::fs::File::from(write_end);
    let filler = [b'#'; 4096];
    let mut written = 0;
    while written < PIPE_FILL_LIMIT {
        match file.write(&filler) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling a pipe: {e}"),
        }
    }
    let write_end = OwnedFd::from(file);
    set_nonblocking(&write_end, false);
    (read_end, write_end)
}

fn set_nonblocking(fd: &OwnedFd, on: bool) {
    // SAFETY: fcntl on a descriptor we own; no memory is involved.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags);
    }
}
