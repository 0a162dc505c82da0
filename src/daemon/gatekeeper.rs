//! The gatekeeper: the one thread that accepts connections and runs every
//! connection's opening, so that workers serve only clients that speak.
//!
//! Why a gatekeeper: a worker serves one connection at a time, so a client
//! that connects and says nothing would hold a worker until its handshake
//! timed out, and a handful of them would stop the school from updating.
//! Instead one thread (the caller's) waits with poll(2) on the listeners,
//! the signal pipe and every connection still in its opening; it sends the
//! greeting and MOTD, reads the client's greeting and request on
//! non-blocking sockets, answers module-list requests itself, and commits a
//! worker only to a connection that has named a module. An opening costs a
//! socket and a few hundred bytes, and there are at most [`MAX_OPENINGS`];
//! when they are all taken the oldest is dropped (a real client finishes
//! its opening within a round trip, so the oldest is almost surely idle).
//!
//! Behind a load balancer (`proxy protocol = yes`) a connection first owes
//! its PROXY header (see [`super::proxy_header`]): nothing is sent until it
//! is whole, it is read from the socket without a byte of what follows, it
//! must come within the handshake time, and from then on the address it
//! carries is the connection's for everything, the per-host limit included.
//! A connection without a valid one, or from a peer `proxy protocol from`
//! does not list, is closed without a word, as rsyncd does.
//!
//! Limits, checked in this order:
//! - `max connections per host` at accept (behind a balancer: once the
//!   header has named the client): a client address holding that
//!   many connections (in their opening, queued or served) is told
//!   `@ERROR: max connections per host (N) reached -- try again later`
//!   after its opening; beyond [`REFUSALS_PER_HOST`] more it is just closed.
//!   Unless configured, loopback clients are not limited.
//! - `max connections` when a worker is to be committed, and the queue's
//!   room: `@ERROR: max connections (N) reached -- try again later`, N being
//!   the configured limit or, without one, what the pool and queue hold.
//! - each module's own `max connections`, in the worker (see `admit`).
//!
//! SIGHUP swaps in a freshly read configuration for new connections.
//! Must not serve a module: that is a worker's job.

use super::opening::{self, Ask, Need, Opening, Request, Step, MAX_LINE_LEN};
use super::pool::{
    log_outcome, Committed, HostTicket, Hosts, Job, Pool, PoolConfig, REFUSAL_TIMEOUT,
};
use super::proxy_header::{self, Parse, MAX_HEADER_LEN};
use super::session::{self, Outcome};
use super::signals::{Signal, Signals};
use super::Server;
use crossbeam_channel::{Sender, TrySendError};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections in their opening at once; beyond it the oldest is dropped.
pub(crate) const MAX_OPENINGS: usize = 256;
/// Over-limit connections from one address that still hear why they are
/// refused; more are closed at once.
pub(crate) const REFUSALS_PER_HOST: usize = 4;
/// Connections accepted per wake-up, so that openings are not starved.
const ACCEPT_BATCH: usize = 64;
/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// What one event may read and drop from a closing connection.
const DRAIN_CHUNK: usize = 4096;
const DRAIN_ROUNDS: usize = 16;
/// Connections closed without a word are logged as one line per interval.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The per-host limit for `addr`, `None` for no limit.
fn host_limit(configured: Option<u64>, addr: IpAddr) -> Option<usize> {
    let limit = match configured {
        Some(n) => n,
        None if addr.is_loopback() || is_mapped_loopback(addr) => 0,
        None => crate::config::DEFAULT_MAX_CONNECTIONS_PER_HOST,
    };
    (limit > 0).then(|| usize::try_from(limit).unwrap_or(usize::MAX))
}

fn is_mapped_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// Bytes waiting to be written to a connection in its opening; the MOTD
/// is shared, not copied per connection.
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Arc<[u8]>>,
    pos: usize,
}

impl Outbox {
    fn push(&mut self, bytes: Arc<[u8]>) {
        if !bytes.is_empty() {
            self.chunks.push_back(bytes);
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes what the socket takes now.
    fn write_to(&mut self, mut stream: &TcpStream) -> io::Result<()> {
        while let Some(front) = self.chunks.front() {
            match stream.write(&front[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pos += n;
                    if self.pos == front.len() {
                        self.chunks.pop_front();
                        self.pos = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn into_vec(self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let from = if i == 0 { self.pos } else { 0 };
            out.extend_from_slice(&chunk[from..]);
        }
        out
    }
}

/// A connection in its opening, or finishing a refusal or module list.
struct Pending {
    stream: TcpStream,
    peer: IpAddr,
    accepted: Instant,
    deadline: Instant,
    machine: Opening,
    line: Vec<u8>,
    early_left: usize,
    out: Outbox,
    /// Set when the opening is over and the connection only writes `out`
    /// before closing.
    closing: bool,
    /// Our side is shut down; the client's leftovers are read and dropped
    /// until it closes, so that closing never resets the connection before
    /// the client has read our last line.
    shut: bool,
    /// Decided at accept: why this client will be refused after its opening.
    refusal: Option<String>,
    /// `Some` while the PROXY protocol header is awaited: the part of it
    /// read so far. Nothing has been sent yet, `peer` is the balancer's
    /// address and no host ticket is held.
    proxy_header: Option<Vec<u8>>,
    /// The PROXY header named no client (as a balancer's health check
    /// does) and nothing has come since: if it closes now, that is no
    /// failure worth a warning every few seconds.
    probe: bool,
    /// Counts the connection against its client address.
    host: Option<HostTicket>,
}

/// What to do with a pending connection after an event.
enum Next {
    Keep,
    Close(Option<Outcome>),
    Commit(Request),
    /// The PROXY header is read: the client's address, or `None` to keep
    /// the socket's.
    Proxied(Option<IpAddr>),
}

fn fail(error: impl Into<String>) -> Next {
    Next::Close(Some(Outcome::Failed {
        module: None,
        cache: None,
        error: error.into(),
    }))
}

impl Pending {
    /// A connection whose opening starts with `out` queued for the client.
    fn new(
        stream: TcpStream,
        peer: IpAddr,
        accepted: Instant,
        deadline: Instant,
        out: Outbox,
        host: Option<HostTicket>,
    ) -> Pending {
        Pending {
            stream,
            peer,
            accepted,
            deadline,
            machine: Opening::new(),
            line: Vec::new(),
            early_left: 0,
            out,
            closing: false,
            shut: false,
            refusal: None,
            proxy_header: None,
            probe: false,
            host,
        }
    }

    fn finish_with(&mut self, text: Arc<[u8]>, outcome: Outcome) -> Next {
        self.out.push(text);
        self.closing = true;
        self.deadline = self.deadline.min(Instant::now() + REFUSAL_TIMEOUT);
        log_outcome(Some(self.peer), &outcome, self.accepted.elapsed());
        Next::Keep
    }

    fn refuse(&mut self, why: String) -> Next {
        let line: Arc<[u8]> = opening::error_line(&why).into_bytes().into();
        self.finish_with(line, Outcome::Refused(why))
    }

    /// Reads whatever the client sent, stopping at the end of its request
    /// so that nothing meant for the session is consumed here.
    fn read(&mut self) -> Next {
        if self.proxy_header.is_some() {
            return self.read_proxy_header();
        }
        loop {
            let got = match self.machine.need() {
                Need::Line => self.read_line_part(),
                Need::Bytes(n) => self.read_early_input(n),
            };
            if got.is_ok() {
                self.probe = false;
            }
            match got {
                Ok(Some(step)) => match step {
                    Step::Continue => {}
                    Step::Refuse(why) => return self.refuse(why),
                    Step::Done(request) => return Next::Commit(request),
                },
                Ok(None) => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return fail(e.to_string()),
            }
        }
    }

    /// Reads what the client sent of its PROXY header, and not one byte
    /// more: the rest of the stream is the rsync opening.
    fn read_proxy_header(&mut self) -> Next {
        let have = self.proxy_header.as_ref().map_or(0, Vec::len);
        let mut buf = [0u8; MAX_HEADER_LEN];
        if let Some(part) = &self.proxy_header {
            buf[..have].copy_from_slice(part);
        }
        let seen = match self.stream.peek(&mut buf[have..]) {
            Ok(0) => return fail("connection closed before its PROXY protocol header"),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Next::Keep,
            Err(e) => return fail(e.to_string()),
        };
        let (take, next) = match proxy_header::parse(&buf[..have + seen]) {
            Ok(Parse::Done(header)) => (header.len - have, Next::Proxied(header.client)),
            Ok(Parse::Incomplete) => (seen, Next::Keep),
            // Nothing was sent: the connection is closed without a word,
            // as rsyncd does.
            Err(e) => return Next::Close(Some(Outcome::Refused(e.to_string()))),
        };
        if let Err(e) = (&self.stream).read_exact(&mut buf[have..have + take]) {
            return fail(e.to_string());
        }
        if let (Next::Keep, Some(part)) = (&next, &mut self.proxy_header) {
            part.extend_from_slice(&buf[have..have + take]);
        }
        next
    }

    /// `Ok(None)`: a part of a line was taken, more must come.
    fn read_line_part(&mut self) -> io::Result<Option<Step>> {
        let mut buf = [0u8; MAX_LINE_LEN + 1];
        let seen = self.stream.peek(&mut buf)?;
        if seen == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by client during the handshake",
            ));
        }
        let end = buf[..seen].iter().position(|&b| b == b'\n');
        let take = end.map_or(seen, |i| i + 1);
        (&self.stream).read_exact(&mut buf[..take])?;
        let body = &buf[..end.unwrap_or(take)];
        if self.line.len() + body.len() > MAX_LINE_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {MAX_LINE_LEN} bytes"),
            ));
        }
        self.line.extend_from_slice(body);
        if end.is_none() {
            return Ok(None);
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let step = self.machine.on_line(&self.line);
        self.line = Vec::new();
        Ok(Some(step))
    }

    fn read_early_input(&mut self, n: usize) -> io::Result<Option<Step>> {
        if self.early_left == 0 {
            self.early_left = n;
        }
        let mut buf = [0u8; opening::MAX_EARLY_INPUT];
        let got = (&self.stream).read(&mut buf[..self.early_left])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by client during the handshake",
            ));
        }
        self.early_left -= got;
        Ok((self.early_left == 0).then(|| self.machine.on_early_input()))
    }

    /// Handles poll's verdict on this connection.
    fn on_event(&mut self, revents: libc::c_short) -> Next {
        if revents & libc::POLLNVAL != 0 {
            return fail("invalid descriptor");
        }
        if !self.out.is_empty() && revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
            if let Err(e) = self.out.write_to(&self.stream) {
                return if self.closing {
                    Next::Close(None)
                } else {
                    fail(e.to_string())
                };
            }
        }
        let readable = revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
        if !self.closing {
            return if readable { self.read() } else { Next::Keep };
        }
        if !self.out.is_empty() {
            return Next::Keep;
        }
        if !self.shut {
            self.shut = true;
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                return Next::Close(None);
            }
        }
        if readable {
            return self.drain();
        }
        Next::Keep
    }

    /// Reads and drops what the client still sends after our last line.
    fn drain(&mut self) -> Next {
        let mut buf = [0u8; DRAIN_CHUNK];
        for _ in 0..DRAIN_ROUNDS {
            match (&self.stream).read(&mut buf) {
                Ok(0) => return Next::Close(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close(None),
            }
        }
        Next::Keep
    }

    fn events(&self) -> libc::c_short {
        let mut events = 0;
        if !self.closing || self.shut {
            events |= libc::POLLIN;
        }
        if !self.out.is_empty() {
            events |= libc::POLLOUT;
        }
        events
    }
}

/// Counts connections closed without a word: the first is logged, then
/// at most one line per interval sums up the others.
#[derive(Default)]
struct DropLog {
    count: u64,
    last_line: Option<Instant>,
}

impl DropLog {
    fn note(&mut self, addr: IpAddr, why: &str) {
        self.count += 1;
        if self
            .last_line
            .is_some_and(|t| t.elapsed() < DROP_LOG_INTERVAL)
        {
            return;
        }
        log::warn!(
            "{addr}: closed at once: {why} ({} connection(s) closed so since the last such line)",
            self.count
        );
        self.count = 0;
        self.last_line = Some(Instant::now());
    }
}

/// Reads the configuration again for SIGHUP.
pub(crate) type Reload<'a> = dyn FnMut() -> Result<Arc<Server>, String> + 'a;

/// Serves until SIGTERM or SIGINT, then lets transfers in flight finish.
pub fn run(
    server: Arc<Server>,
    listeners: Vec<TcpListener>,
    cfg: PoolConfig,
    signals: &Signals,
    reload: &mut Reload,
) -> io::Result<()> {
    let pool = Pool::start(&cfg)?;
    for l in &listeners {
        l.set_nonblocking(true)?;
    }
    let mut gate = Gatekeeper::new(
        server,
        pool.jobs.clone(),
        Arc::clone(&pool.committed),
        pool.capacity,
    );
    let served = gate.run(&listeners, signals, reload);
    drop(listeners);
    drop(gate);
    served?;
    pool.stop(signals);
    Ok(())
}

/// The accept loop and every connection's opening.
pub(super) struct Gatekeeper {
    server: Arc<Server>,
    greeting: Arc<[u8]>,
    motd: Option<Arc<[u8]>>,
    pending: Vec<Pending>,
    hosts: Arc<Hosts>,
    committed: Arc<Committed>,
    jobs: Sender<Job>,
    /// What the pool and its queue hold.
    capacity: usize,
    accept_paused_until: Option<Instant>,
    drops: DropLog,
}

fn motd_chunk(server: &Server) -> Option<Arc<[u8]>> {
    server.motd.as_ref().map(|m| {
        let mut text = m.clone();
        text.push(b'\n');
        text.into()
    })
}

impl Gatekeeper {
    pub(super) fn new(
        server: Arc<Server>,
        jobs: Sender<Job>,
        committed: Arc<Committed>,
        capacity: usize,
    ) -> Gatekeeper {
        Gatekeeper {
            motd: motd_chunk(&server),
            server,
            greeting: opening::greeting().into_bytes().into(),
            pending: Vec::new(),
            hosts: Arc::new(Hosts::default()),
            committed,
            jobs,
            capacity,
            accept_paused_until: None,
            drops: DropLog::default(),
        }
    }

    /// Runs until a stop signal.
    pub(super) fn run(
        &mut self,
        listeners: &[TcpListener],
        signals: &Signals,
        reload: &mut Reload,
    ) -> io::Result<()> {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            let accepting = self.accepting();
            self.fill_pollfds(&mut fds, listeners, signals, accepting);
            let timeout = self.poll_timeout();
            // SAFETY: fds is a valid array of pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let signal_at = listeners.len();
            if fds[signal_at].revents != 0 {
                let got = signals.drain();
                if got.contains(&Signal::Stop) {
                    return Ok(());
                }
                if got.contains(&Signal::Reload) {
                    self.reload(reload);
                }
            }
            self.serve_openings(&fds[signal_at + 1..]);
            self.expire();
            if accepting {
                for (i, l) in listeners.iter().enumerate() {
                    if fds[i].revents != 0 {
                        self.accept_from(l);
                    }
                }
            }
        }
    }

    fn accepting(&mut self) -> bool {
        match self.accept_paused_until {
            Some(until) if Instant::now() < until => false,
            _ => {
                self.accept_paused_until = None;
                true
            }
        }
    }

    fn fill_pollfds(
        &self,
        fds: &mut Vec<libc::pollfd>,
        listeners: &[TcpListener],
        signals: &Signals,
        accepting: bool,
    ) {
        let entry = |fd, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        fds.clear();
        let listen_events = if accepting { libc::POLLIN } else { 0 };
        fds.extend(
            listeners
                .iter()
                .map(|l| entry(l.as_raw_fd(), listen_events)),
        );
        fds.push(entry(signals.fd(), libc::POLLIN));
        fds.extend(
            self.pending
                .iter()
                .map(|p| entry(p.stream.as_raw_fd(), p.events())),
        );
    }

    /// Milliseconds until the next deadline (or a paused accept resumes).
    fn poll_timeout(&self) -> libc::c_int {
        let next = self
            .pending
            .iter()
            .map(|p| p.deadline)
            .chain(self.accept_paused_until)
            .min();
        match next {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int
            }
        }
    }

    fn reload(&mut self, reload: &mut Reload) {
        match reload() {
            Ok(server) => {
                self.motd = motd_chunk(&server);
                self.server = server;
                log::info!("configuration reloaded; new connections use it");
            }
            Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
        }
    }

    /// Handles the events of the pending connections; `revents` is in the
    /// same order as `self.pending`.
    fn serve_openings(&mut self, revents: &[libc::pollfd]) {
        for i in (0..self.pending.len().min(revents.len())).rev() {
            let events = revents[i].revents;
            if events == 0 {
                continue;
            }
            // A panic while reading one opening must not end the daemon:
            // that connection is closed and the others go on.
            let pending = &mut self.pending[i];
            let next =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pending.on_event(events)))
                    .unwrap_or_else(|_| fail("connection handler panicked; connection dropped"));
            self.apply(i, next);
        }
    }

    fn apply(&mut self, i: usize, next: Next) {
        match next {
            Next::Keep => {}
            Next::Close(outcome) => {
                let p = self.pending.swap_remove(i);
                let (peer, took, probe) = (p.peer, p.accepted.elapsed(), p.probe);
                drop(p);
                if let Some(outcome) = outcome {
                    log_closed(peer, probe, &outcome, took);
                }
            }
            Next::Commit(request) => self.commit(i, request),
            Next::Proxied(client) => {
                let mut p = self.pending.swap_remove(i);
                p.proxy_header = None;
                p.probe = client.is_none();
                if let Some(client) = client {
                    log::debug!("{}: PROXY protocol header for {client}", p.peer);
                    p.peer = client;
                }
                self.greet(p);
            }
        }
    }

    /// Closes openings past their deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        for i in (0..self.pending.len()).rev() {
            if self.pending[i].deadline <= now {
                let p = self.pending.swap_remove(i);
                let (peer, took, closing) = (p.peer, p.accepted.elapsed(), p.closing);
                drop(p);
                if !closing {
                    let outcome = Outcome::Failed {
                        module: None,
                        cache: None,
                        error: "handshake took too long".into(),
                    };
                    log_outcome(Some(peer), &outcome, took);
                }
            }
        }
    }

    /// The opening is done: refuse, list, or hand the connection over.
    fn commit(&mut self, i: usize, request: Request) {
        if let Some(why) = self.pending[i].refusal.take() {
            self.pending[i].refuse(why);
            return;
        }
        let name = match &request.ask {
            Ask::List => {
                let text = listing_text(&self.server);
                self.pending[i].finish_with(text.into(), Outcome::Listed);
                return;
            }
            Ask::Module(name) => name.clone(),
        };
        let limit = match self.server.limits.total {
            0 => self.capacity,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        if self.committed.count() >= limit {
            self.pending[i].refuse(max_connections(limit));
            return;
        }
        let p = self.pending.swap_remove(i);
        let job = Job {
            stream: p.stream,
            peer: p.peer,
            request,
            unsent: p.out.into_vec(),
            server: Arc::clone(&self.server),
            accepted: p.accepted,
            committed: self.committed.start(),
            host: p.host,
        };
        match self.jobs.try_send(job) {
            Ok(()) => log::debug!("{}: asks for module {name}", p.peer),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.requeue_refused(job, limit);
            }
        }
    }

    /// A job the queue had no room for becomes a refusal again.
    fn requeue_refused(&mut self, job: Job, limit: usize) {
        let mut out = Outbox::default();
        out.push(job.unsent.into());
        let mut p = Pending::new(
            job.stream,
            job.peer,
            job.accepted,
            Instant::now() + REFUSAL_TIMEOUT,
            out,
            job.host,
        );
        p.refuse(max_connections(limit));
        self.pending.push(p);
    }

    fn accept_from(&mut self, listener: &TcpListener) {
        for _ in 0..ACCEPT_BATCH {
            match listener.accept() {
                Ok((stream, addr)) => self.admit(stream, addr.ip()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("accept failed: {e}; pausing accepts briefly");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Starts the opening of a new connection: behind a balancer with its
    /// PROXY header, else with the greeting.
    fn admit(&mut self, stream: TcpStream, addr: IpAddr) {
        let proxied = match &self.server.proxy_peers {
            None => false,
            Some(peers) if peers.allows(addr) => true,
            Some(_) => {
                let why = "not a trusted PROXY protocol peer (proxy protocol from)";
                log_outcome(Some(addr), &Outcome::Refused(why.into()), Duration::ZERO);
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let now = Instant::now();
        let mut p = Pending::new(
            stream,
            addr,
            now,
            now + session::handshake_timeout(self.server.build_timeout),
            Outbox::default(),
            None,
        );
        if proxied {
            p.proxy_header = Some(Vec::new());
            self.push(p);
        } else {
            self.greet(p);
        }
    }

    /// Sends the greeting to a connection whose client address is known,
    /// or closes it at once when that address is far over its limit.
    fn greet(&mut self, mut p: Pending) {
        let addr = p.peer;
        let held = self.hosts.count(addr);
        p.refusal = match host_limit(self.server.limits.per_host, addr) {
            Some(limit) if held >= limit + REFUSALS_PER_HOST => {
                self.drops.note(addr, "over its connection limit");
                return;
            }
            Some(limit) if held >= limit => Some(format!(
                "max connections per host ({limit}) reached -- try again later"
            )),
            _ => None,
        };
        p.host = Some(self.hosts.start(addr));
        p.out.push(Arc::clone(&self.greeting));
        if let Some(motd) = &self.motd {
            p.out.push(Arc::clone(motd));
        }
        // Most greetings fit the socket buffer at once.
        if let Err(e) = p.out.write_to(&p.stream) {
            let outcome = Outcome::Failed {
                module: None,
                cache: None,
                error: e.to_string(),
            };
            log_closed(addr, p.probe, &outcome, p.accepted.elapsed());
            return;
        }
        self.push(p);
    }

    fn push(&mut self, p: Pending) {
        if self.pending.len() >= MAX_OPENINGS {
            self.drop_oldest();
        }
        self.pending.push(p);
    }

    fn drop_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| p.accepted)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            let p = self.pending.swap_remove(i);
            self.drops.note(p.peer, "too many handshakes in progress");
        }
    }
}

/// Logs how a connection in its opening ended; a balancer's health check
/// (see `Pending::probe`) only at debug level.
fn log_closed(peer: IpAddr, probe: bool, outcome: &Outcome, took: Duration) {
    if probe {
        log::debug!("{peer}: health check (a PROXY header without a client, then nothing)");
    } else {
        log_outcome(Some(peer), outcome, took);
    }
}

fn max_connections(limit: usize) -> String {
    format!("max connections ({limit}) reached -- try again later")
}

/// The module list as rsyncd sends it: `name<TAB>comment` lines, then
/// `@RSYNCD: EXIT`.
fn listing_text(server: &Server) -> Vec<u8> {
    let mut text = String::new();
    for (name, comment) in server.listing() {
        text.push_str(&format!("{name:<15}\t{comment}\n"));
    }
    text.push_str("@RSYNCD: EXIT\n");
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_spared_only_by_default() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let lan: IpAddr = "10.1.2.3".parse().unwrap();
        let default = crate::config::DEFAULT_MAX_CONNECTIONS_PER_HOST as usize;
        assert_eq!(host_limit(None, lo), None);
        assert_eq!(host_limit(None, mapped), None);
        assert_eq!(host_limit(None, lan), Some(default));
        assert_eq!(host_limit(Some(2), lo), Some(2));
        assert_eq!(host_limit(Some(0), lan), None);
    }

    #[test]
    fn an_outbox_hands_over_what_is_left() {
        let mut out = Outbox::default();
        out.push(b"abc".to_vec().into());
        out.push(Vec::new().into());
        out.push(b"de".to_vec().into());
        out.pos = 1;
        assert_eq!(out.into_vec(), b"bcde");
    }
}
