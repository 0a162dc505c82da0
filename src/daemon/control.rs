//! The control socket: `DIR/.upserv/control.sock` in the builds directory,
//! where a running daemon answers `upserv status` (and `upserv list`'s
//! question about downloads in progress) with its [`Report`](super::report::Report).
//!
//! Who may ask: the socket is mode 0660, so the daemon's user, its group
//! and root; the answer is read-only information. It cannot become a way to
//! tie the daemon up: one thread answers one client at a time, each read
//! and write has [`CONTROL_TIMEOUT`], a request is at most
//! [`MAX_REQUEST_LEN`] bytes, and no worker is ever involved.
//!
//! The exchange: the client sends one line (`status`, `status json` or
//! `downloads`), the daemon answers with text and closes.

use super::report::{download_lines, Observed};
use crate::cache::stats::{partial_downloads, DownloadView};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The socket's name in the builds directory's private part.
pub(crate) const SOCKET_NAME: &str = ".upserv/control.sock";
/// How long the daemon waits for a client's whole request, or for each
/// write of its answer.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client waits for the daemon (which may be answering another).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest request line.
pub(crate) const MAX_REQUEST_LEN: usize = 64;
/// Longest answer a client reads.
pub(crate) const MAX_ANSWER_LEN: u64 = 16 << 20;
/// The socket's mode: the daemon's user and group.
const SOCKET_MODE: u32 = 0o660;

pub(crate) fn socket_path(builds: &Path) -> PathBuf {
    builds.join(SOCKET_NAME)
}

/// The listening socket; removed when dropped (when the daemon stops).
pub struct ControlSocket {
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket in `builds` and answers from a thread of its own. A
/// socket left by a daemon that died is replaced; one that a live daemon
/// answers on is an error (two daemons on one builds directory). Any other
/// failure only costs `upserv status`: it is logged, and `Ok(None)`.
pub(crate) fn start(builds: &Path, observed: Observed) -> Result<Option<ControlSocket>, String> {
    let path = socket_path(builds);
    if UnixStream::connect(&path).is_ok() {
        return Err(format!(
            "another upserv daemon answers on {}: is it serving the same builds dir?",
            path.display()
        ));
    }
    match listen(&path, observed) {
        Ok(socket) => Ok(Some(socket)),
        Err(e) => {
            log::warn!(
                "control socket {}: {e}; `upserv status` will not work",
                path.display()
            );
            Ok(None)
        }
    }
}

fn listen(path: &Path, observed: Observed) -> io::Result<ControlSocket> {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
    }
    let listener = UnixListener::bind(path)?;
    let socket = ControlSocket {
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &observed) {
                    log::debug!("control socket: {e}");
                }
            }
        })?;
    Ok(socket)
}

fn answer(mut stream: UnixStream, observed: &Observed) -> io::Result<()> {
    stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let deadline = Instant::now() + CONTROL_TIMEOUT;
    let line = read_line(&mut stream, deadline)?;
    let report = observed.report();
    let text = match String::from_utf8_lossy(&line).trim() {
        "status" => report.text(),
        "status json" => report.json(),
        "downloads" => {
            let downloads = report.cache.map(|c| c.downloads).unwrap_or_default();
            downloads_text(&downloads)
        }
        other => format!("error: unknown request {other:?}\n"),
    };
    (&stream).write_all(text.as_bytes())
}

/// Reads the request line within `deadline` in all (a client sending a
/// byte at a time cannot stretch it) and [`MAX_REQUEST_LEN`] bytes.
fn read_line(stream: &mut UnixStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; MAX_REQUEST_LEN];
    while !line.contains(&b'\n') {
        if line.len() > MAX_REQUEST_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request line too long",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no whole request line in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.extend_from_slice(&buf[..n]);
    }
    Ok(line)
}

fn downloads_text(downloads: &[DownloadView]) -> String {
    format!(
        "downloads in progress: {}\n{}",
        downloads.len(),
        download_lines(downloads)
    )
}

/// Sends `request` to the daemon serving `builds` and returns its answer.
pub(crate) fn ask(builds: &Path, request: &str) -> io::Result<String> {
    let stream = UnixStream::connect(socket_path(builds))?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    (&stream).write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    (&stream).take(MAX_ANSWER_LEN).read_to_string(&mut answer)?;
    Ok(answer)
}

/// `upserv status [--json]`: prints what the daemon serving `builds` says.
/// Exit code 1 when no daemon answers.
pub fn status(builds: &Path, json: bool) -> i32 {
    match ask(builds, if json { "status json" } else { "status" }) {
        Ok(answer) => {
            crate::output::write(format_args!("{answer}"));
            0
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "upserv: status: no daemon answers on {}: {e} (is `upserv daemon` running with this builds dir?)",
                socket_path(builds).display()
            );
            1
        }
    }
}

/// The downloads in progress for `upserv list`: the daemon's, or without
/// one, what the partial downloads on disk show.
pub fn list_downloads(builds: &Path) -> String {
    match ask(builds, "downloads") {
        Ok(answer) => answer,
        Err(_) => downloads_text(&partial_downloads(builds)),
    }
}
