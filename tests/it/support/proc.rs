//! Child processes for the tests: one-shot commands run with a deadline, and
//! long-running daemons whose stderr is kept for failure reports.
//!
//! Every child is put in a process group of its own so that a hung client or a
//! daemon with forked per-connection children can be ended as a whole, by its id.
//! This module knows nothing of rsync; it must not kill anything it did not start.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How a one-shot command ended.
pub struct Finished {
    /// Exit code, or `-signal` when a signal ended it.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The deadline passed and the process group was killed.
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Runs `cmd` to completion with its output captured, killing its whole
/// process group when `timeout` passes first.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> std::io::Result<Finished> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let stdout = read_all_in_thread(child.stdout.take());
    let stderr = read_all_in_thread(child.stderr.take());
    let (status, timed_out) = wait_with_deadline(&mut child, timeout)?;
    Ok(Finished {
        code: exit_code(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
        elapsed: started.elapsed(),
    })
}

/// Exit code of a finished process, `-signal` when it was killed.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

fn read_all_in_thread<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error only truncates what the report shows.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` to exit or for `timeout`, whichever is first.
///
/// A helper thread waits with `WNOWAIT`, which leaves the child unreaped: its
/// pid stays ours until `Child::wait`, so the kill after a timeout can never
/// reach a stranger that inherited a recycled pid.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> std::io::Result<(ExitStatus, bool)> {
    let pid = child.id();
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(wait_exited_without_reaping(pid));
    });
    match rx.recv_timeout(timeout) {
        Ok(_) => Ok((child.wait()?, false)),
        Err(_) => {
            kill_group(pid);
            Ok((child.wait()?, true))
        }
    }
}

fn wait_exited_without_reaping(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT;
        // SAFETY: a valid pointer to our own siginfo_t.
        let rc = unsafe { libc::waitid(libc::P_PID, pid, &mut info, flags) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sends SIGKILL to the process group led by our child `pid`, which must not
/// have been reaped yet (so the id cannot have been recycled).
pub fn kill_group(pid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pid) {
        // SAFETY: plain syscall; the group is one we created with process_group(0).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// A long-running child (a daemon) in its own process group, killed with all
/// its forked children on drop. Its stderr is drained into a buffer by a
/// thread so that it never blocks on a full pipe and the log can be shown.
pub struct Daemon {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    drain: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Spawns `cmd` with stdout discarded and stderr drained; `on_line` sees
    /// every stderr line as it arrives (to spot a readiness message).
    pub fn spawn(
        cmd: &mut Command,
        on_line: impl FnMut(&str) + Send + 'static,
    ) -> std::io::Result<Daemon> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drain = child
            .stderr
            .take()
            .map(|pipe| drain_lines(pipe, Arc::clone(&stderr), on_line));
        Ok(Daemon {
            child,
            stderr,
            drain,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the daemon has already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` to the daemon alone (not its group) and waits up to
    /// `timeout` for it to exit: its exit code (`-signal` when a signal
    /// ended it), or `None` when it still runs (it is then killed).
    pub fn stop(&mut self, signal: libc::c_int, timeout: Duration) -> Option<i32> {
        if let Some(status) = self.exited() {
            return Some(exit_code(status));
        }
        self.signal(signal);
        self.wait(timeout)
    }

    /// Sends `signal` to the daemon alone (not its group); false when the
    /// kernel refused (errno tells why).
    pub fn signal(&self, signal: libc::c_int) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return false;
        };
        // SAFETY: plain syscall on our own child, not reaped before drop.
        unsafe { libc::kill(pid, signal) == 0 }
    }

    /// Waits up to `timeout` for the daemon to exit: its exit code, or
    /// `None` when it still runs (it is then killed).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        match wait_with_deadline(&mut self.child, timeout) {
            Ok((status, false)) => Some(exit_code(status)),
            _ => None,
        }
    }

    /// Everything the daemon wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        let buf = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited().is_none() {
            kill_group(self.child.id());
        }
        let _ = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }
}

/// Copies `pipe` into `sink` line by line until EOF, calling `on_line` on each.
pub fn drain_lines<R: Read + Send + 'static>(
    pipe: R,
    sink: Arc<Mutex<Vec<u8>>>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            on_line(&String::from_utf8_lossy(&line));
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&line);
            line.clear();
        }
    })
}

/// The last `n` lines of `text`, for failure reports.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
