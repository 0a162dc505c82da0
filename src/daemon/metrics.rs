//! `metrics listen = ADDR:PORT`: a small HTTP responder that answers
//! `GET /metrics` with the [`Report`](super::report::Report) in the
//! Prometheus text format.
//!
//! One thread of its own, never a worker, waits with poll(2) on the
//! listener and on at most [`MAX_SCRAPES`] connections still sending their
//! request; a connection beyond them is closed at once. Each has
//! [`SCRAPE_TIMEOUT`] in all to send its request, so a silent or slow
//! client neither stops another scrape nor holds anything for long. The
//! answer (a few kilobytes) goes into the socket's buffer in one write.

use super::report::Observed;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Connections sending their request at once; more are closed unanswered.
pub(crate) const MAX_SCRAPES: usize = 4;
/// How long a scraper may take to send its whole request.
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read; a scraper's is a few hundred bytes.
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long writing the answer may take; it fits the socket buffer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long accepting pauses after an error such as running out of
/// descriptors, rather than spinning.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Binds `addr` and serves metrics from a thread of its own until the
/// process ends.
pub(crate) fn start(addr: SocketAddr, observed: Observed) -> Result<SocketAddr, String> {
    let fail = |e: io::Error| format!("cannot listen for metrics on {addr}: {e}");
    let listener = TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let bound = listener.local_addr().unwrap_or(addr);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve_loop(&listener, &observed))
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(bound)
}

/// A connection whose request is still coming.
struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    deadline: Instant,
}

impl Pending {
    /// Reads what arrived; `true` when the connection is done with (the
    /// request answered, or the connection closed, broken or too long).
    fn advance(&mut self, observed: &Observed) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
            if head_complete(&self.head) {
                if let Err(e) = self.answer(observed) {
                    log::debug!("metrics: {e}");
                }
                return true;
            }
            if self.head.len() > MAX_REQUEST_HEAD {
                return true;
            }
        }
    }

    fn answer(&mut self, observed: &Observed) -> io::Result<()> {
        self.stream.set_nonblocking(false)?;
        self.stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        respond(&mut self.stream, &self.head, observed)
    }
}

fn serve_loop(listener: &TcpListener, observed: &Observed) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        let now = Instant::now();
        pending.retain(|p| p.deadline > now);
        let timeout = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .map_or(-1, |left| {
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            });
        let entry = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        fds.clear();
        fds.push(entry(listener.as_raw_fd()));
        fds.extend(pending.iter().map(|p| entry(p.stream.as_raw_fd())));
        // SAFETY: fds is a valid array of fds.len() pollfd structs, alive
        // for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                log::warn!("metrics: poll failed: {err}");
                std::thread::sleep(ACCEPT_PAUSE);
            }
            continue;
        }
        // Backwards, so that removing one leaves the others' indexes alone.
        for i in (0..pending.len()).rev() {
            if fds[i + 1].revents != 0 && pending[i].advance(observed) {
                pending.swap_remove(i);
            }
        }
        if fds[0].revents != 0 {
            accept_all(listener, &mut pending);
        }
    }
}

/// Takes every waiting connection: up to [`MAX_SCRAPES`] pending, the
/// rest closed at once.
fn accept_all(listener: &TcpListener, pending: &mut Vec<Pending>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if pending.len() >= MAX_SCRAPES || stream.set_nonblocking(true).is_err() {
                    continue;
                }
                pending.push(Pending {
                    stream,
                    head: Vec::new(),
                    deadline: Instant::now() + SCRAPE_TIMEOUT,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                std::thread::sleep(ACCEPT_PAUSE);
                return;
            }
        }
    }
}

/// Answers the request whose head is `head`; the connection then closes.
fn respond(stream: &mut TcpStream, head: &[u8], observed: &Observed) -> io::Result<()> {
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", observed.report().prometheus()),
        ("GET", _) => ("404 Not Found", "only /metrics is here\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "only GET is answered\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// An HTTP request head ends with an empty line.
fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}
