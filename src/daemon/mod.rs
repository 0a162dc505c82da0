//! The process around the protocol: which modules exist, the listener and
//! its worker pool, one connection on stdin/stdout for inetd, who may
//! connect (hosts, logins, connection limits, the PROXY header of a load
//! balancer), which client options a module refuses, signals and the pid
//! file, and what a running daemon tells about itself (`stats`, `report`,
//! `control`, `metrics`).
//!
//! A module is either static (a `[section]` of the configuration) or a
//! build in the builds directory, possibly fetched on demand through the
//! cache. A static module shadows a build of the same name.

pub(crate) mod access;
pub(crate) mod admit;
pub mod audit;
pub(crate) mod auth;
pub mod control;
pub mod gatekeeper;
pub(crate) mod metrics;
pub(crate) mod opening;
pub(crate) mod policy;
pub mod pool;
pub mod proxy_header;
pub(crate) mod refuse;
pub mod report;
pub mod service_user;
pub mod session;
pub mod signals;
pub mod slots;
pub mod stats;

use crate::cache::{BuildGuard, Cache};
use crate::config::{self, ModuleParams, Settings};
use crate::protocol::filter::{DaemonRules, FilterList};
use crate::protocol::io::Conn;
use crate::protocol::memo::{Memo, MEMO_MAX_BYTES};
use crate::protocol::wire::{WireRead, WireWrite};
use crate::protocol::SharedLists;
use access::Access;
use policy::Policy;
use slots::Slots;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A `[section]` of the configuration.
#[derive(Clone, Debug)]
pub struct StaticModule {
    pub(crate) name: String,
    pub path: PathBuf,
    pub(crate) comment: String,
    pub(crate) policy: Arc<Policy>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) filters: FilterList,
}

/// The module's `filter`, `include from`, `include`, `exclude from` and
/// `exclude` parameters as one rule list.
fn daemon_filters(name: &str, p: &ModuleParams) -> Result<FilterList, String> {
    let include = p.include.join(" ");
    let exclude = p.exclude.join(" ");
    let rules = DaemonRules {
        filter: p.filter.as_deref().map(str::as_bytes),
        include_from: p.include_from.as_deref(),
        include: (!include.is_empty()).then_some(include.as_bytes()),
        exclude_from: p.exclude_from.as_deref(),
        exclude: (!exclude.is_empty()).then_some(exclude.as_bytes()),
    };
    FilterList::from_daemon_rules(&rules).map_err(|e| format!("module [{name}]: {e}"))
}

impl StaticModule {
    fn from_config(m: &config::Module) -> Result<StaticModule, String> {
        Ok(StaticModule {
            name: m.name.clone(),
            path: m.path.clone(),
            comment: m.params.comment.clone(),
            policy: Arc::new(Policy::from_params(&m.params)),
            timeout: m.params.timeout,
            filters: daemon_filters(&m.name, &m.params)?,
        })
    }
}

/// A module chosen by a client, ready to serve.
pub(crate) struct Module {
    pub(crate) name: String,
    pub(crate) root: ModuleRoot,
    pub(crate) policy: Arc<Policy>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) filters: FilterList,
}

pub(crate) enum ModuleRoot {
    Static(PathBuf),
    /// A build, kept from eviction while the guard lives.
    Build(BuildGuard),
}

/// What every connection of a daemon shares.
pub struct Server {
    pub modules: Vec<StaticModule>,
    pub(crate) motd: Option<Vec<u8>>,
    pub cache: Option<Cache>,
    /// Deltas of builds kept for identical requests (with a cache only).
    pub memo: Option<Arc<Memo>>,
    /// File lists of builds shared between connections (with a cache only).
    pub lists: Option<Arc<SharedLists>>,
    /// The generation of the module rules (`build_filters`): part of a
    /// shared list's key, new with every configuration read.
    pub(crate) rules_generation: u64,
    /// Who may use build modules, their timeout and filters (the global
    /// settings).
    pub(crate) build_policy: Arc<Policy>,
    pub(crate) build_timeout: Option<Duration>,
    pub(crate) build_filters: FilterList,
    /// Connections per module; shared by the servers a reload replaces, so
    /// that connections in flight still count.
    pub slots: Arc<Slots>,
    /// The whole server's connection limits (daemon mode).
    pub(crate) limits: ConnLimits,
    /// `proxy protocol`: when set, every connection starts with a PROXY
    /// header naming its client, taken only from the peers this admits
    /// (`proxy protocol from`; empty admits all).
    pub(crate) proxy_peers: Option<Access>,
}

/// A delta memo for the builds of `cache`, which forgets a build when its
/// tree leaves the cache. A reload keeps the running one
/// ([`Server::with_memo`]); the new one goes unused, and its hook stops.
fn delta_memo(cache: &Cache) -> Arc<Memo> {
    let memo = Arc::new(Memo::new(MEMO_MAX_BYTES));
    let weak = Arc::downgrade(&memo);
    cache.on_build_gone(move |name| {
        let Some(memo) = weak.upgrade() else {
            return false;
        };
        let dropped = memo.drop_build(name);
        if dropped > 0 {
            log::info!("delta memo: dropped {dropped} entries of build {name}");
        }
        true
    });
    memo
}

/// Shared file lists for the builds of `cache`, which forget a build when
/// its tree leaves the cache, as the memo does ([`delta_memo`]).
fn shared_lists(cache: &Cache) -> Arc<SharedLists> {
    let lists = Arc::new(SharedLists::new());
    let weak = Arc::downgrade(&lists);
    cache.on_build_gone(move |name| {
        let Some(lists) = weak.upgrade() else {
            return false;
        };
        let dropped = lists.drop_build(name);
        if dropped > 0 {
            log::info!("shared lists: dropped {dropped} lists of build {name}");
        }
        true
    });
    lists
}

/// A new generation of module rules for every configuration read.
fn next_rules_generation() -> u64 {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `max connections` and `max connections per host` of the global part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Connections at once; 0: as many as the pool and its queue hold.
    pub(crate) total: u32,
    /// Connections at once from one address; `None`: the default, which
    /// spares loopback clients.
    pub(crate) per_host: Option<u64>,
}

impl Server {
    /// The daemon's view of the settings. The MOTD file is read once here:
    /// an unreadable one is logged and skipped, as rsyncd does. A module's
    /// filter rules that cannot be used are an error.
    pub fn new(settings: &Settings, cache: Option<Cache>) -> Result<Server, String> {
        let motd = settings.global.motd_file.as_ref().and_then(|path| {
            std::fs::read(path)
                .map_err(|e| log::warn!("motd file {}: {e}", path.display()))
                .ok()
        });
        let defaults = &settings.global.module_defaults;
        let server = Server {
            modules: settings
                .modules
                .iter()
                .map(StaticModule::from_config)
                .collect::<Result<_, _>>()?,
            motd,
            memo: cache.as_ref().map(delta_memo),
            lists: cache.as_ref().map(shared_lists),
            rules_generation: next_rules_generation(),
            cache,
            build_policy: Arc::new(Policy::from_params(defaults)),
            build_timeout: defaults.timeout,
            build_filters: daemon_filters("global", defaults)?,
            slots: Slots::in_process(),
            limits: ConnLimits {
                total: defaults.max_connections,
                per_host: settings.global.max_connections_per_host,
            },
            proxy_peers: settings.global.proxy_protocol.then(|| {
                Access::allow_only(&settings.global.proxy_protocol_from, "proxy protocol from")
            }),
        };
        server.warn_about_rules();
        if !settings.global.proxy_protocol && !settings.global.proxy_protocol_from.is_empty() {
            log::warn!("proxy protocol from is set without proxy protocol = yes: it has no effect");
        }
        Ok(server)
    }

    /// The same server counting its module connections in `slots`.
    pub fn with_slots(mut self, slots: Arc<Slots>) -> Server {
        self.slots = slots;
        self
    }

    /// The same server using the delta memo a reload carries over.
    pub fn with_memo(mut self, memo: Option<Arc<Memo>>) -> Server {
        self.memo = memo;
        self
    }

    /// The same server using the shared lists a reload carries over (its
    /// rules are new, so are its lists' keys).
    pub fn with_lists(mut self, lists: Option<Arc<SharedLists>>) -> Server {
        self.lists = lists;
        self
    }

    /// Logs the host rules upserv cannot evaluate as written.
    fn warn_about_rules(&self) {
        if let Some(peers) = &self.proxy_peers {
            if peers.is_open() {
                log::warn!(
                    "proxy protocol = yes without proxy protocol from: any peer that reaches \
                     the port can name any client address; list the balancers there"
                );
            }
            for problem in peers.problems() {
                log::warn!("{problem}");
            }
        }
        let modules = self.modules.iter().map(|m| (m.name.as_str(), &m.policy));
        let builds = std::iter::once(("global", &self.build_policy));
        for (name, policy) in builds.chain(modules) {
            for problem in policy.access.problems() {
                log::warn!("[{name}] {problem}");
            }
        }
    }

    /// Listable modules with their comments, static ones first.
    pub(crate) fn listing(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .modules
            .iter()
            .filter(|m| m.policy.list)
            .map(|m| (m.name.clone(), m.comment.clone()))
            .collect();
        if let Some(cache) = self.cache.as_ref().filter(|_| self.build_policy.list) {
            for name in cache.list_modules() {
                if !self.modules.iter().any(|m| m.name == name) {
                    out.push((name, String::new()));
                }
            }
        }
        out
    }

    /// Finds module `name`. A build that must first be fetched sends
    /// progress lines to the client while it waits. `Ok(Err(text))` is a
    /// refusal for the client's `@ERROR:` line.
    pub(crate) fn find_module(
        &self,
        name: &str,
        conn: &mut Conn,
    ) -> io::Result<Result<Option<Module>, String>> {
        if let Some(m) = self.modules.iter().find(|m| m.name == name) {
            return Ok(Ok(Some(Module {
                name: m.name.clone(),
                root: ModuleRoot::Static(m.path.clone()),
                policy: Arc::clone(&m.policy),
                timeout: m.timeout,
                filters: m.filters.clone(),
            })));
        }
        let Some(cache) = &self.cache else {
            return Ok(Ok(None));
        };
        // A download may outlast any handshake limit: the wait is not the
        // client's fault, so the idle clock restarts with each progress line
        // and at the end of the wait; only a client that stops reading the
        // lines times out.
        // A client that hangs up while it waits frees its worker at once.
        let conn = std::cell::RefCell::new(conn);
        let mut write_failed = None;
        let mut progress = |line: &str| {
            if write_failed.is_some() {
                return;
            }
            let mut conn = conn.borrow_mut();
            conn.restart_idle_clock();
            let sent = conn
                .write_all(line.as_bytes())
                .and_then(|()| conn.write_all(b"\n"))
                .and_then(|()| conn.flush());
            if let Err(e) = sent {
                write_failed = Some(e);
            }
        };
        let mut hung_up = false;
        let mut gone = || {
            hung_up = hung_up || conn.borrow_mut().peer_gone();
            hung_up
        };
        let acquired = cache.acquire_unless(name, &mut progress, &mut gone);
        if let Some(e) = write_failed {
            return Err(e);
        }
        if hung_up {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the client hung up while waiting for {name}"),
            ));
        }
        let conn = conn.into_inner();
        conn.restart_idle_clock();
        Ok(match acquired {
            Ok(Some(guard)) => Ok(Some(Module {
                name: name.to_string(),
                root: ModuleRoot::Build(guard),
                policy: Arc::clone(&self.build_policy),
                timeout: self.build_timeout,
                filters: self.build_filters.clone(),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        })
    }
}

/// Serves one connection on stdin/stdout (inetd, xinetd, systemd with
/// `Accept=yes`). Connection limits hold across the processes through the
/// server's lock-file slots.
pub fn serve_stdio(server: &Server) -> io::Result<()> {
    // Copies of the descriptors: nothing else in upserv reads stdin or
    // writes stdout in serve mode.
    let rfd = io::stdin().as_fd().try_clone_to_owned()?;
    let wfd = io::stdout().as_fd().try_clone_to_owned()?;
    let mut peer = peer_of_stdin();
    let mut conn = Conn::new(rfd, wfd)?;
    let started = std::time::Instant::now();
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(peers) = &server.proxy_peers {
            match proxied_client(server, peers, peer, &mut conn) {
                Ok(client) => peer = client.or(peer),
                Err(outcome) => return outcome,
            }
        }
        match session::opening(server, &mut conn) {
            Ok(Ok(request)) => serve_within_limit(server, &mut conn, peer, request),
            Ok(Err(outcome)) => outcome,
            Err(e) => session::Outcome::Failed {
                module: None,
                cache: None,
                error: e.to_string(),
            },
        }
    }));
    // The panic itself was logged by the hook; the connection still gets
    // its one line.
    let outcome = served.unwrap_or_else(|_| session::Outcome::Failed {
        module: None,
        cache: None,
        error: "connection handler panicked".into(),
    });
    pool::log_outcome(peer, &outcome, started.elapsed());
    Ok(())
}

/// Reads the PROXY header in front of a connection on stdin, as rsyncd
/// does when inetd starts it; the client's address if it names one. The
/// header's limits bound the read; nothing is sent before it is whole, and
/// a connection from an untrusted peer or without a header is closed
/// without a word.
fn proxied_client(
    server: &Server,
    peers: &Access,
    peer: Option<IpAddr>,
    conn: &mut Conn,
) -> Result<Option<IpAddr>, session::Outcome> {
    let trusted = match peer {
        Some(addr) => peers.allows(addr),
        None => peers.is_open(),
    };
    if !trusted {
        let why = "not a trusted PROXY protocol peer (proxy protocol from)";
        return Err(session::Outcome::Refused(why.into()));
    }
    let limit = session::handshake_timeout(server.build_timeout);
    conn.set_deadline(Some(std::time::Instant::now() + limit));
    let mut header = Vec::new();
    loop {
        match proxy_header::parse(&header) {
            Ok(proxy_header::Parse::Done(h)) => return Ok(h.client),
            Ok(proxy_header::Parse::Incomplete) => {}
            Err(e) => return Err(session::Outcome::Refused(e.to_string())),
        }
        // The connection is buffered, so a byte at a time costs no system
        // call each; what follows the header stays buffered for the opening.
        match conn.read_u8() {
            Ok(b) => header.push(b),
            Err(e) => {
                return Err(session::Outcome::Failed {
                    module: None,
                    cache: None,
                    error: format!("reading the PROXY protocol header: {e}"),
                })
            }
        }
    }
}

/// Serves `request` if the server-wide `max connections` leaves room.
fn serve_within_limit(
    server: &Server,
    conn: &mut Conn,
    peer: Option<IpAddr>,
    request: opening::Request,
) -> session::Outcome {
    let max = server.limits.total;
    let slot = server
        .slots
        .claim(slots::SERVER_KEY, max)
        .unwrap_or_else(|e| {
            log::warn!("cannot count connections ({e}); serving without the limit");
            Some(slots::SlotGuard::unlimited())
        });
    if slot.is_none() {
        let why = format!("max connections ({max}) reached -- try again later");
        return session::refuse(conn, why).unwrap_or_else(|e| session::Outcome::Failed {
            module: None,
            cache: None,
            error: e.to_string(),
        });
    }
    session::serve(server, conn, peer, request)
}

/// The address of the peer on stdin, if stdin is a TCP socket (for a
/// Unix socket or a pipe there is none).
fn peer_of_stdin() -> Option<IpAddr> {
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    std::net::TcpStream::from(fd)
        .peer_addr()
        .ok()
        .map(|a| a.ip())
}

/// Binds every address. An IPv6 socket is IPv6-only, as rsyncd makes it, so
/// that `[::]:P` and `0.0.0.0:P` both bind. When the system has no IPv6, a
/// `[::]:P` listed with `0.0.0.0:P` (the default) is left out with a
/// warning; any other failure is an error.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for addr in addrs {
        match bind(addr) {
            Ok(l) => out.push(l),
            Err(e) if no_ipv6(&e) && has_ipv4_twin(addr, addrs) => {
                log::warn!("cannot listen on {addr} ({e}): IPv6 is unavailable; listening on IPv4 only");
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 => {
                return Err(format!(
                    "cannot listen on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); try --listen 0.0.0.0:8730"
                ))
            }
            Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
        }
    }
    Ok(out)
}

/// The errors that mean "this system has no IPv6".
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Whether `addr` is `[::]:P` and `0.0.0.0:P` is listed too.
fn has_ipv4_twin(addr: &SocketAddr, addrs: &[SocketAddr]) -> bool {
    let twin = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), addr.port());
    addr.is_ipv6() && addr.ip().is_unspecified() && addrs.contains(&twin)
}

/// Length of the backlog of connections not yet accepted, as std uses.
const LISTEN_BACKLOG: libc::c_int = 128;

/// `TcpListener::bind`, but with IPV6_V6ONLY set on IPv6 sockets before
/// binding (std offers no way to set it in time).
fn bind(addr: &SocketAddr) -> io::Result<TcpListener> {
    let SocketAddr::V6(v6) = addr else {
        return TcpListener::bind(addr);
    };
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just created and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let set = |level: libc::c_int, option: libc::c_int| {
        // SAFETY: setsockopt reads one c_int from a local for its length.
        check(unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                option,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)?;
    // As std does for every listener: a restart can bind at once.
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    // SAFETY: an all-zero sockaddr_in6 is valid; the fields are set below.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = v6.port().to_be();
    sa.sin6_addr.s6_addr = v6.ip().octets();
    sa.sin6_flowinfo = v6.flowinfo();
    sa.sin6_scope_id = v6.scope_id();
    // SAFETY: bind reads a sockaddr_in6 of the length given.
    check(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    // SAFETY: listen on a bound socket we own.
    check(unsafe { libc::listen(socket.as_raw_fd(), LISTEN_BACKLOG) })?;
    Ok(TcpListener::from(socket))
}

/// Starts what lets an administrator watch the daemon: the control socket
/// in the builds directory, and the metrics responder when `metrics listen`
/// is set. The socket goes when the returned value is dropped.
pub fn start_observers(
    global: &config::Global,
    observed: report::Observed,
) -> Result<Option<control::ControlSocket>, String> {
    if let Some(addr) = global.metrics_listen {
        let bound = metrics::start(addr, observed.clone())?;
        log::info!("metrics on http://{bound}/metrics");
    }
    control::start(&global.builds_dir, observed)
}

/// The `pid file`: written at start, locked while the daemon runs so that a
/// second daemon on the same file refuses to start, removed at exit.
pub struct PidFile {
    path: PathBuf,
    _locked: std::fs::File,
}

impl PidFile {
    pub fn create(path: &std::path::Path) -> Result<PidFile, String> {
        use std::io::Write;
        let fail = |e: io::Error| format!("cannot write pid file {}: {e}", path.display());
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(fail)?;
        if file.try_lock().is_err() {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            return Err(format!(
                "pid file {} is locked: another upserv (pid {}) is running",
                path.display(),
                holder.trim()
            ));
        }
        file.set_len(0).map_err(fail)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(fail)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _locked: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Logs `listening on ADDR` for each listener: the sign (for operators and
/// tests alike) that the daemon is ready, so it comes after everything is
/// set up.
pub fn announce(listeners: &[std::net::TcpListener]) {
    for l in listeners {
        if let Ok(addr) = l.local_addr() {
            log::info!("listening on {addr}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_pair_goes_on_without_ipv6() {
        let pair = config::dual_stack(873);
        assert!(has_ipv4_twin(&pair[0], &pair));
        assert!(!has_ipv4_twin(&pair[1], &pair), "IPv4 is never left out");
        let alone = ["[::]:873".parse().unwrap()];
        assert!(
            !has_ipv4_twin(&alone[0], &alone),
            "an explicit [::] must bind"
        );
        let other_port = ["[::]:873".parse().unwrap(), "0.0.0.0:8730".parse().unwrap()];
        assert!(!has_ipv4_twin(&other_port[0], &other_port));
        assert!(no_ipv6(&io::Error::from_raw_os_error(libc::EAFNOSUPPORT)));
        assert!(!no_ipv6(&io::Error::from_raw_os_error(libc::EADDRINUSE)));
    }

    #[test]
    fn ipv6_and_ipv4_bind_the_same_port() {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("an IPv4 port");
        let port = v4.local_addr().expect("its address").port();
        let v6: SocketAddr = format!("[::]:{port}").parse().unwrap();
        match bind(&v6) {
            Ok(listener) => assert_eq!(listener.local_addr().unwrap(), v6),
            // A machine without IPv6 cannot show it.
            Err(e) => assert!(no_ipv6(&e), "{e}"),
        }
    }
}
