//! The daemon proper: the listening sockets, a fixed pool of worker threads
//! fed through a bounded queue, refusals beyond the limits, graceful stop.
//!
//! One thread waits on every listening socket and the signal pipe at once,
//! accepts, and hands each connection to the pool. A worker serves one
//! connection at a time; a panic in it is caught and logged and the worker
//! goes on. Connections beyond `max connections` or beyond the queue get
//! rsyncd's `@ERROR: max connections (N) reached -- try again later` from a
//! separate thread, so refusing never delays accepting.

use super::session::{self, Outcome, PROTOCOL_VERSION};
use super::signals::{Signal, Signals};
use super::Server;
use crate::protocol::io::Conn;
use crate::protocol::wire::WireWrite;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections waiting for a worker, per worker.
pub const QUEUE_PER_WORKER: usize = 4;
/// Refusals waiting to be written; beyond this a connection is just closed.
pub const REFUSAL_QUEUE: usize = 64;
/// How long a refusal may take (it reads the client's greeting first).
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stop waits for transfers in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

pub struct PoolConfig {
    pub workers: usize,
    /// 0: no limit beyond the pool and its queue.
    pub max_connections: usize,
}

struct Job {
    stream: TcpStream,
    peer: SocketAddr,
}

/// The number of connections accepted and not yet finished.
#[derive(Default)]
struct Tracker {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Tracker {
    fn count(&self) -> usize {
        *self.count.lock()
    }

    fn start(self: &Arc<Self>) -> InFlight {
        *self.count.lock() += 1;
        InFlight(self.clone())
    }

    /// Waits until no connection is in flight, or the deadline passes.
    fn wait_idle(&self, deadline: Instant) -> usize {
        let mut count = self.count.lock();
        while *count > 0 && !self.idle.wait_until(&mut count, deadline).timed_out() {}
        *count
    }
}

/// One connection in flight; dropping it counts it as finished.
struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        *count -= 1;
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

pub fn log_outcome(peer: Option<IpAddr>, outcome: &Outcome, took: Duration) {
    let who = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let secs = took.as_secs_f64();
    match outcome {
        Outcome::Failed { .. } => log::warn!("{who}: {outcome} ({secs:.1}s)"),
        _ => log::info!("{who}: {outcome} ({secs:.1}s)"),
    }
}

fn serve_one(server: &Server, job: Job) {
    let started = Instant::now();
    let peer = job.peer.ip();
    let conn = job
        .stream
        .try_clone()
        .and_then(|r| Conn::new(OwnedFd::from(r), OwnedFd::from(job.stream)));
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            log::warn!("{peer}: cannot set up connection: {e}");
            return;
        }
    };
    let outcome = session::run(server, &mut conn, Some(peer));
    log_outcome(Some(peer), &outcome, started.elapsed());
}

fn worker(server: Arc<Server>, jobs: Receiver<(Job, InFlight)>, stopping: Arc<AtomicBool>) {
    for (job, _in_flight) in jobs {
        if stopping.load(Ordering::SeqCst) {
            refuse(job.stream, "the server is shutting down");
            continue;
        }
        let peer = job.peer;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve_one(&server, job)));
        if result.is_err() {
            log::error!(
                "{}: connection handler panicked; connection dropped",
                peer.ip()
            );
        }
    }
}

/// A short handshake that ends in an `@ERROR:` line: the client's rsync
/// prints it and exits with code 5.
fn refuse(stream: TcpStream, why: &str) {
    let _ = stream.set_read_timeout(Some(REFUSAL_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REFUSAL_TIMEOUT));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let Ok(mut conn) = Conn::new(OwnedFd::from(reader), OwnedFd::from(stream)) else {
        return;
    };
    conn.set_deadline(Some(Instant::now() + REFUSAL_TIMEOUT));
    let _ = (|| -> io::Result<()> {
        conn.write_all(format!("@RSYNCD: {PROTOCOL_VERSION}.0\n").as_bytes())?;
        conn.flush()?;
        // Read the client's greeting and module line before answering, so
        // closing does not reset the connection before it reads our answer.
        conn.read_line(session::MAX_LINE_LEN)?;
        conn.read_line(session::MAX_LINE_LEN)?;
        conn.write_all(format!("@ERROR: {why}\n").as_bytes())?;
        conn.flush()
    })();
}

fn refuser(refusals: Receiver<(TcpStream, String)>) {
    for (stream, why) in refusals {
        refuse(stream, &why);
    }
}

/// Serves until SIGTERM or SIGINT, then lets transfers in flight finish.
pub fn run(
    server: Arc<Server>,
    listeners: Vec<TcpListener>,
    cfg: PoolConfig,
    signals: &Signals,
) -> io::Result<()> {
    let workers = cfg.workers.max(1);
    let queue = workers * QUEUE_PER_WORKER;
    let (job_tx, job_rx) = bounded::<(Job, InFlight)>(queue);
    let (refusal_tx, refusal_rx) = bounded::<(TcpStream, String)>(REFUSAL_QUEUE);
    let stopping = Arc::new(AtomicBool::new(false));
    let tracker = Arc::new(Tracker::default());
    let mut handles = Vec::new();
    for i in 0..workers {
        let (server, jobs, stopping) = (server.clone(), job_rx.clone(), stopping.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(server, jobs, stopping))?,
        );
    }
    drop(job_rx);
    std::thread::Builder::new()
        .name("refuser".into())
        .spawn(move || refuser(refusal_rx))?;
    for l in &listeners {
        l.set_nonblocking(true)?;
    }
    let limit = if cfg.max_connections > 0 {
        cfg.max_connections
    } else {
        workers + queue
    };
    accept_loop(&listeners, signals, |stream, peer| {
        if tracker.count() >= limit {
            refuse_later(&refusal_tx, stream, limit);
            return;
        }
        let job = (Job { stream, peer }, tracker.start());
        match job_tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full((job, guard)) | TrySendError::Disconnected((job, guard))) => {
                drop(guard);
                refuse_later(&refusal_tx, job.stream, limit);
            }
        }
    })?;
    log::info!(
        "stopping: waiting up to {}s for transfers in flight",
        STOP_GRACE.as_secs()
    );
    stopping.store(true, Ordering::SeqCst);
    drop(job_tx);
    let left = tracker.wait_idle(Instant::now() + STOP_GRACE);
    if left > 0 {
        log::warn!("stopped with {left} connection(s) still open");
    } else {
        for h in handles {
            let _ = h.join();
        }
    }
    Ok(())
}

fn refuse_later(refusals: &Sender<(TcpStream, String)>, stream: TcpStream, limit: usize) {
    let why = format!("max connections ({limit}) reached -- try again later");
    // When even the refusal queue is full, closing is all we can afford.
    let _ = refusals.try_send((stream, why));
}

/// Waits for connections on every listener and for signals.
fn accept_loop(
    listeners: &[TcpListener],
    signals: &Signals,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|l| l.as_raw_fd())
        .chain(std::iter::once(signals.fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: fds is a valid array of pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if fds.last().is_some_and(|p| p.revents != 0) {
            let got = signals.drain();
            if got.contains(&Signal::Stop) {
                return Ok(());
            }
        }
        for (i, l) in listeners.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            loop {
                match l.accept() {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        on_accept(stream, peer);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: log and keep serving.
                        log::warn!("accept failed: {e}");
                        break;
                    }
                }
            }
        }
    }
}
