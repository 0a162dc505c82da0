//! `metrics listen = ADDR:PORT`: a small HTTP responder that answers
//! `GET /metrics` with the [`Report`](super::report::Report) in the
//! Prometheus text format.
//!
//! It runs on threads of its own, never a worker's: one accepts, and each
//! scrape gets a short-lived thread, at most [`MAX_SCRAPES`] at once; more
//! connections are closed at once. Every read and write has
//! [`SCRAPE_TIMEOUT`], so a silent or slow client holds one of those
//! threads for a few seconds at most and never stops another scrape.

use super::report::Observed;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Scrapes served at once; a connection beyond them is closed unanswered.
pub const MAX_SCRAPES: usize = 4;
/// How long a scrape may take to send its request and read the answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read; a scraper's is a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Binds `addr` and serves metrics from a thread of its own until the
/// process ends.
pub fn start(addr: SocketAddr, observed: Observed) -> Result<SocketAddr, String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || accept_loop(&listener, &observed))
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(bound)
}

/// Undoes one scrape's claim on [`MAX_SCRAPES`] when its thread ends.
struct ScrapeSlot(Arc<AtomicUsize>);

impl Drop for ScrapeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: &TcpListener, observed: &Observed) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, typically: pause rather than spin.
                log::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPES {
            busy.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let slot = ScrapeSlot(Arc::clone(&busy));
        let observed = observed.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-scrape".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = serve(stream, &observed) {
                    log::debug!("metrics: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("metrics: cannot start a thread: {e}");
        }
    }
}

/// Reads one request and answers it; the connection then closes.
fn serve(mut stream: TcpStream, observed: &Observed) -> io::Result<()> {
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let head = read_request(&mut stream, deadline, MAX_REQUEST_HEAD, head_complete)?;
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

/// A stream whose reads can be given a timeout: TCP and Unix sockets.
pub(super) trait TimedRead: Read {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimedRead for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl TimedRead for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
}

/// Reads a request until `complete` says it is whole, within `deadline` in
/// all (a client sending a byte at a time cannot stretch it) and `max`
/// bytes.
pub(super) fn read_request(
    stream: &mut impl TimedRead,
    deadline: Instant,
    max: usize,
    complete: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the request ended",
            ));
        }
        request.extend_from_slice(&buf[..n]);
        if complete(&request) {
            return Ok(request);
        }
        if request.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
}

/// An HTTP request head ends with an empty line.
fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}
