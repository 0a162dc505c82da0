//! The worker pool: a fixed number of worker threads fed through a bounded
//! queue of `Job`s (connections whose opening is done, with the tickets
//! that count them), the connection log line, and the graceful stop.
//!
//! A worker serves one connection at a time, from its module name to its
//! end; it catches a panic in it, logs it and goes on. At a stop, queued
//! connections are told the server is stopping, and the workers get up to
//! [`STOP_GRACE`] to finish the transfers in flight. Who feeds the queue
//! (the gatekeeper) is not this file's business.

use super::opening::{Ask, Request};
use super::session::{self, Outcome};
use super::signals::{Signal, Signals};
use super::stats::Stats;
use super::Server;
use crate::protocol::io::Conn;
use crate::protocol::wire::WireWrite;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections waiting for a worker, per worker.
pub(crate) const QUEUE_PER_WORKER: usize = 4;
/// How long a stop waits for transfers in flight.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a refusal or a module list may take to be written.
pub(crate) const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct PoolConfig {
    pub workers: usize,
    /// Where the workers count the connections they serve.
    pub stats: Arc<Stats>,
}

pub(crate) fn log_outcome(peer: Option<IpAddr>, outcome: &Outcome, took: Duration) {
    let who = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let secs = took.as_secs_f64();
    match outcome {
        Outcome::Failed { .. } => log::warn!("{who}: {outcome} ({secs:.1}s)"),
        _ => log::info!("{who}: {outcome} ({secs:.1}s)"),
    }
}

/// How often the grace period looks for a second stop signal.
const STOP_SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Waits up to [`STOP_GRACE`] for the connections being served; a second
/// SIGTERM or SIGINT cuts the wait short. Returns how many are left.
fn wait_for_transfers(committed: &Committed, signals: &Signals) -> usize {
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        let slice = (Instant::now() + STOP_SIGNAL_CHECK).min(deadline);
        let left = committed.wait_idle(slice);
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        if signals.drain().contains(&Signal::Stop) {
            log::warn!("a second stop signal: not waiting any longer");
            return left;
        }
    }
}

/// Connections committed to the pool (queued or served).
#[derive(Default)]
pub(super) struct Committed {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Committed {
    pub(super) fn count(&self) -> usize {
        *self.count.lock()
    }

    pub(super) fn start(self: &Arc<Self>) -> CommitTicket {
        *self.count.lock() += 1;
        CommitTicket(Arc::clone(self))
    }

    /// Waits until nothing is committed, or the deadline passes.
    fn wait_idle(&self, deadline: Instant) -> usize {
        let mut count = self.count.lock();
        while *count > 0 && !self.idle.wait_until(&mut count, deadline).timed_out() {}
        *count
    }
}

pub(super) struct CommitTicket(Arc<Committed>);

impl Drop for CommitTicket {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        *count -= 1;
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Connections per client address, from accept to close.
#[derive(Default)]
pub(super) struct Hosts(Mutex<HashMap<IpAddr, usize>>);

pub(super) struct HostTicket {
    hosts: Arc<Hosts>,
    addr: IpAddr,
}

impl Hosts {
    pub(super) fn count(&self, addr: IpAddr) -> usize {
        self.0.lock().get(&addr).copied().unwrap_or(0)
    }

    pub(super) fn start(self: &Arc<Self>, addr: IpAddr) -> HostTicket {
        *self.0.lock().entry(addr).or_insert(0) += 1;
        HostTicket {
            hosts: Arc::clone(self),
            addr,
        }
    }
}

impl Drop for HostTicket {
    fn drop(&mut self) {
        let mut map = self.hosts.0.lock();
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

/// A connection handed to a worker, its opening done.
pub(super) struct Job {
    pub(crate) stream: TcpStream,
    pub(crate) peer: IpAddr,
    pub(crate) request: Request,
    /// Greeting or MOTD bytes the client had not taken yet.
    pub(crate) unsent: Vec<u8>,
    pub(crate) server: Arc<Server>,
    pub(crate) accepted: Instant,
    pub(crate) committed: CommitTicket,
    pub(crate) host: Option<HostTicket>,
}

/// Serves a job; everything it holds is released before its log line is
/// written, so that the line means the connection is gone.
fn serve_job(job: Job, stats: &Arc<Stats>) {
    let Job {
        stream,
        peer,
        request,
        unsent,
        server,
        accepted,
        committed,
        host,
    } = job;
    let module = match &request.ask {
        Ask::Module(name) => Some(name.clone()),
        Ask::List => None,
    };
    let ticket = stats.open(peer, module);
    let conn = stream
        .try_clone()
        .and_then(|r| Conn::new(OwnedFd::from(r), OwnedFd::from(stream)));
    let outcome = match conn {
        Ok(mut conn) => {
            conn.count_written_into(ticket.sent_counter());
            match conn.write_all(&unsent) {
                Ok(()) => session::serve(&server, &mut conn, Some(peer), request),
                Err(e) => setup_failed(e),
            }
        }
        Err(e) => setup_failed(e),
    };
    if let Outcome::Pulled { stats: done, .. } = &outcome {
        stats.count_transfer(done.literal_bytes, done.matched_bytes);
    }
    drop((committed, host, ticket));
    log_outcome(Some(peer), &outcome, accepted.elapsed());
}

fn setup_failed(e: io::Error) -> Outcome {
    Outcome::Failed {
        module: None,
        cache: None,
        error: format!("cannot set up the connection: {e}"),
    }
}

/// Tells a queued client that the server stops, with a short deadline.
fn refuse_stopping(job: Job) {
    let Ok(reader) = job.stream.try_clone() else {
        return;
    };
    let Ok(mut conn) = Conn::new(OwnedFd::from(reader), OwnedFd::from(job.stream)) else {
        return;
    };
    conn.set_deadline(Some(Instant::now() + REFUSAL_TIMEOUT));
    let why = "the server is shutting down -- try again later".to_string();
    let _ = conn.write_all(&job.unsent);
    let outcome = session::refuse(&mut conn, why);
    if let Ok(outcome) = outcome {
        log_outcome(Some(job.peer), &outcome, job.accepted.elapsed());
    }
}

fn worker(jobs: Receiver<Job>, stopping: Arc<AtomicBool>, stats: Arc<Stats>) {
    for job in jobs {
        if stopping.load(Ordering::SeqCst) {
            refuse_stopping(job);
            continue;
        }
        let peer = job.peer;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve_job(job, &stats)));
        if result.is_err() {
            log::error!("{peer}: connection handler panicked; connection dropped");
        }
        give_back_freed_memory();
    }
}

/// Above this size an allocation gets pages of its own, given back when
/// freed: glibc's default, which it would otherwise raise to the largest
/// buffer ever freed (a connection's read window, its block index), after
/// which such buffers stay in the worker's arena for good.
const OWN_PAGES_FROM: usize = 128 * 1024;

/// Fixes glibc's thresholds for buffers of their own pages and for
/// trimming an arena's free top at [`OWN_PAGES_FROM`] (process-wide; the
/// workers do nearly all the allocating).
fn keep_large_buffers_out_of_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; no pointer is passed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_PAGES_FROM as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, OWN_PAGES_FROM as libc::c_int);
    };
}

/// Returns to the system what the allocator kept of a finished
/// connection's buffers (its read window, block sums and index): glibc
/// keeps freed memory in each thread's arena, so without this every worker
/// that ever served a large delta would hold its peak for good.
fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    };
}

/// The running workers, and what the feeder needs to hand them jobs.
pub(super) struct Pool {
    /// Where jobs go; bounded by [`QUEUE_PER_WORKER`] per worker.
    pub(crate) jobs: Sender<Job>,
    pub(crate) committed: Arc<Committed>,
    /// What the workers and their queue hold.
    pub(crate) capacity: usize,
    stopping: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts the workers.
    pub(super) fn start(cfg: &PoolConfig) -> io::Result<Pool> {
        let workers = cfg.workers.max(1);
        keep_large_buffers_out_of_arenas();
        let queue = workers * QUEUE_PER_WORKER;
        let (jobs, job_rx) = bounded::<Job>(queue);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..workers {
            let (jobs, stopping, stats) = (job_rx.clone(), stopping.clone(), cfg.stats.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker(jobs, stopping, stats))?,
            );
        }
        Ok(Pool {
            jobs,
            committed: Arc::new(Committed::default()),
            capacity: workers + queue,
            stopping,
            handles,
        })
    }

    /// Lets the transfers in flight finish (see [`STOP_GRACE`]); what is
    /// still queued is refused. The feeder must have stopped.
    pub(super) fn stop(self, signals: &Signals) {
        let Pool {
            jobs,
            committed,
            stopping,
            handles,
            ..
        } = self;
        drop(jobs);
        log::info!(
            "stopping: waiting up to {}s for transfers in flight",
            STOP_GRACE.as_secs()
        );
        stopping.store(true, Ordering::SeqCst);
        let left = wait_for_transfers(&committed, signals);
        if left > 0 {
            log::warn!("stopped with {left} connection(s) still open");
        } else {
            for h in handles {
                let _ = h.join();
            }
            log::info!("stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tickets_count_and_forget() {
        let hosts = Arc::new(Hosts::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t1 = hosts.start(a);
        let t2 = hosts.start(a);
        assert_eq!(hosts.count(a), 2);
        drop(t1);
        drop(t2);
        assert_eq!(hosts.count(a), 0);
        assert!(hosts.0.lock().is_empty());
    }
}
