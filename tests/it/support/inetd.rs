//! An inetd in miniature: a loopback listener that starts one process per
//! accepted connection with the socket as its stdin and stdout, the way
//! xinetd runs `upserv serve` (or `rsync --daemon`) in the field.
//!
//! What the processes write on stderr is kept apart (xinetd would send it
//! down the socket) so a test can show it or assert that there was none.
//! This module must not kill processes it did not start.

use super::proc::{drain_lines, kill_group, last_lines};
use super::Server;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tempfile::TempDir;

/// A listener spawning `command` per connection.
pub struct Inetd {
    port: u16,
    label: String,
    log_file: Option<PathBuf>,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    /// Files the spawned program needs (its config), removed with us.
    _state: Option<TempDir>,
}

struct Shared {
    stop: AtomicBool,
    children: Mutex<Vec<Child>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Inetd {
    /// Listens on an ephemeral loopback port. `label` names the server in
    /// reports; `log_file` is where the spawned program logs, if anywhere.
    pub fn start(command: Command, label: &str, log_file: Option<PathBuf>) -> Inetd {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the inetd-style listener");
        let port = listener.local_addr().expect("listener address").port();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            children: Mutex::new(Vec::new()),
            stderr: Arc::new(Mutex::new(Vec::new())),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(listener, command, &shared))
        };
        Inetd {
            port,
            label: label.to_string(),
            log_file,
            shared,
            acceptor: Some(acceptor),
            _state: None,
        }
    }

    /// Keeps `state` (the program's config directory) alive as long as
    /// this listener.
    pub fn keeping(mut self, state: TempDir) -> Inetd {
        self._state = Some(state);
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the spawned processes wrote on stderr.
    pub fn stderr_text(&self) -> String {
        let buf = self.shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Server for Inetd {
    fn describe(&self) -> String {
        format!(
            "{} (one process per connection) on port {}",
            self.label, self.port
        )
    }

    fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{path}", self.port)
    }

    /// The log file's last lines, then any stderr output.
    fn log_tail(&self, lines: usize) -> String {
        let log = self
            .log_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default();
        let mut tail = last_lines(&log, lines);
        let stderr = self.stderr_text();
        if !stderr.is_empty() {
            tail.push_str("\n(stderr of the per-connection processes)\n");
            tail.push_str(&last_lines(&stderr, lines));
        }
        tail
    }
}

fn accept_loop(listener: TcpListener, mut command: Command, shared: &Shared) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let spawned = spawn_on(&mut command, stream, shared);
        let mut children = shared.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                let note = format!("test harness: spawning {command:?}: {e}\n");
                let mut stderr = shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
                stderr.extend_from_slice(note.as_bytes());
            }
        }
    }
}

fn spawn_on(command: &mut Command, stream: TcpStream, shared: &Shared) -> std::io::Result<Child> {
    let input = OwnedFd::from(stream.try_clone()?);
    let spawned = command
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(OwnedFd::from(stream)))
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    // The command keeps its Stdio, and so our copy of the socket, until
    // replaced: without this a client would wait for an EOF that never
    // comes once the server process has gone.
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let mut child = spawned?;
    if let Some(pipe) = child.stderr.take() {
        drain_lines(pipe, Arc::clone(&shared.stderr), |_| {});
    }
    Ok(child)
}

impl Drop for Inetd {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so that the loop sees the stop flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let mut children = self
            .shared
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for child in children.iter_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                kill_group(child.id());
            }
            let _ = child.wait();
        }
    }
}
