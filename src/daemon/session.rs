//! One client connection from its first byte to its last: the daemon
//! handshake (rsync: clientserver.c start_daemon and rsync_module), module
//! selection, then the pull itself.
//!
//! The handshake, line by line: our greeting `@RSYNCD: 32.0`, the MOTD, the
//! client's greeting, its module name (or an empty line / `#list` for the
//! module list), `@RSYNCD: OK`, then its arguments one per line up to an
//! empty line (NUL-terminated from protocol 30 on). Any refusal is an `@ERROR: ...` line, which the client prints
//! before exiting with code 5.

use super::admit::{self, Admitted};
use super::opening::{self, Ask, Need, Opening, Request, Step};
use super::{Module, ModuleRoot, Server};
use crate::cache::Lookup;
use crate::protocol::flist::shared::BuildLists;
use crate::protocol::io::Conn;
use crate::protocol::memo::Memo;
use crate::protocol::options::{self, Options};
use crate::protocol::sender::{self, Pull, TransferStats};
use crate::protocol::share::TreeId;
use crate::protocol::wire::{WireRead, WireWrite};
use crate::source::Source;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub(crate) use super::opening::MAX_LINE_LEN;

/// How long each wait for the client may take before the transfer starts:
/// the opening (up to the module name), and separately, once a worker
/// serves the connection, the login and the arguments. Waiting for a
/// build download does not count; the client is sent progress meanwhile.
/// A shorter `timeout` (global for the opening, the module's after it)
/// shortens it, as in rsyncd.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The handshake deadline under an I/O `timeout` setting.
pub(crate) fn handshake_timeout(timeout: Option<Duration>) -> Duration {
    timeout.map_or(HANDSHAKE_TIMEOUT, |t| t.min(HANDSHAKE_TIMEOUT))
}
/// Idle limit during a transfer when neither the module nor the client sets one.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How a connection ended, for the log.
pub enum Outcome {
    Listed,
    Refused(String),
    Pulled {
        module: String,
        user: Option<String>,
        /// For a build: whether it was cached, fetched or waited for.
        cache: Option<Lookup>,
        stats: TransferStats,
    },
    Failed {
        module: Option<String>,
        /// For a build: whether it was cached, fetched or waited for.
        cache: Option<Lookup>,
        error: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Listed => write!(f, "module list"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
            Outcome::Pulled {
                module,
                user,
                cache,
                stats,
            } => {
                write!(f, "module {module}: ")?;
                if let Some(lookup) = cache {
                    write!(f, "cache {}: ", lookup.name())?;
                }
                if let Some(user) = user {
                    write!(f, "user {user}: ")?;
                }
                write!(
                    f,
                    "{} files sent of {} listed, {} bytes sent, {} literal, {} matched",
                    stats.files_sent,
                    stats.files_listed,
                    stats.bytes_written,
                    stats.literal_bytes,
                    stats.matched_bytes
                )
            }
            Outcome::Failed {
                module,
                cache,
                error,
            } => {
                if let Some(m) = module {
                    write!(f, "module {m}: ")?;
                }
                if let Some(lookup) = cache {
                    write!(f, "cache {}: ", lookup.name())?;
                }
                write!(f, "failed: {error}")
            }
        }
    }
}

fn failed(module: Option<String>, e: io::Error) -> Outcome {
    Outcome::Failed {
        module,
        cache: None,
        error: e.to_string(),
    }
}

/// Runs the whole conversation with one client.
pub fn run(server: &Server, conn: &mut Conn, peer: Option<IpAddr>) -> Outcome {
    match opening(server, conn) {
        Ok(Ok(request)) => serve(server, conn, peer, request),
        Ok(Err(outcome)) => outcome,
        Err(e) => failed(None, e),
    }
}

fn send_line(conn: &mut Conn, line: &str) -> io::Result<()> {
    conn.write_all(line.as_bytes())?;
    conn.write_all(b"\n")
}

/// Sends `@ERROR: why`, which the client prints before exiting with code 5.
pub(crate) fn refuse(conn: &mut Conn, why: String) -> io::Result<Outcome> {
    conn.write_all(opening::error_line(&why).as_bytes())?;
    conn.flush()?;
    Ok(Outcome::Refused(why))
}

/// Our greeting and MOTD, then the client's side of the opening, read with
/// blocking waits (the daemon's gatekeeper drives the same machine on
/// non-blocking sockets). `Ok(Err(_))`: the client was refused.
pub(crate) fn opening(server: &Server, conn: &mut Conn) -> io::Result<Result<Request, Outcome>> {
    let limit = handshake_timeout(server.build_timeout);
    conn.set_deadline(Some(Instant::now() + limit));
    conn.write_all(opening::greeting().as_bytes())?;
    if let Some(motd) = &server.motd {
        conn.write_all(motd)?;
        conn.write_all(b"\n")?;
    }
    conn.flush()?;
    let mut machine = Opening::new();
    loop {
        let step = match machine.need() {
            Need::Line => machine.on_line(&conn.read_line(MAX_LINE_LEN)?),
            Need::Bytes(n) => {
                let mut skip = [0u8; opening::MAX_EARLY_INPUT];
                conn.read_exact(&mut skip[..n])?;
                machine.on_early_input()
            }
        };
        match step {
            Step::Continue => {}
            Step::Done(request) => return Ok(Ok(request)),
            Step::Refuse(why) => return refuse(conn, why).map(Err),
        }
    }
}

/// Serves a request whose opening is done.
pub(crate) fn serve(
    server: &Server,
    conn: &mut Conn,
    peer: Option<IpAddr>,
    request: Request,
) -> Outcome {
    match &request.ask {
        Ask::List => send_listing(server, conn)
            .map(|()| Outcome::Listed)
            .unwrap_or_else(|e| failed(None, e)),
        Ask::Module(name) => serve_module(server, conn, peer, name, &request)
            .unwrap_or_else(|e| failed(Some(name.clone()), e)),
    }
}

/// Finds the module, fetching a build while the client is sent progress;
/// only a client that stops reading meanwhile is timed out.
fn find_module(server: &Server, conn: &mut Conn, name: &str) -> io::Result<Result<Module, String>> {
    conn.set_deadline(None);
    conn.set_idle_timeout(Some(HANDSHAKE_TIMEOUT));
    let found = server.find_module(name, conn)?;
    conn.set_idle_timeout(None);
    Ok(match found {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(format!("Unknown module '{name}'")),
        Err(why) => Err(why),
    })
}

fn serve_module(
    server: &Server,
    conn: &mut Conn,
    peer: Option<IpAddr>,
    name: &str,
    request: &Request,
) -> io::Result<Outcome> {
    let module = match find_module(server, conn, name)? {
        Ok(m) => m,
        Err(why) => return refuse(conn, why),
    };
    conn.set_deadline(Some(Instant::now() + handshake_timeout(module.timeout)));
    let digests = request.client_digests.as_deref();
    let admitted = match admit::admit(server, conn, peer, &module, digests)? {
        Ok(a) => a,
        Err(refusal) => {
            refuse(conn, refusal.client)?;
            return Ok(Outcome::Refused(refusal.log));
        }
    };
    let who = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    // Held open from here on: every access of the pull goes through it.
    let source = match Source::new(module.root.path().to_path_buf(), module.root.meta()) {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "{who}: module {name}: chdir {} failed: {e}",
                module.root.path().display()
            );
            refuse(conn, "chdir failed".to_string())?;
            return Ok(Outcome::Refused(format!("chdir failed: {e}")));
        }
    };
    send_line(conn, "@RSYNCD: OK")?;
    conn.flush()?;
    log::debug!("{who}: module {name}: admitted");
    pull(server, conn, module, &source, admitted, request.protocol)
}

/// The arguments, then the transfer.
fn pull(
    server: &Server,
    conn: &mut Conn,
    module: Module,
    source: &Source,
    admitted: Admitted,
    protocol: u32,
) -> io::Result<Outcome> {
    // From protocol 30 on the arguments end with NULs, not newlines.
    let args = read_args(conn, protocol >= 30)?;
    let parsed = Options::parse(&args)
        .and_then(|o| module.policy.refusals.check(&o).map(|()| o))
        .and_then(|o| o.check_protocol(protocol).map(|()| o));
    let mut opts = match parsed {
        Ok(o) => o,
        Err(e) => {
            sender::refuse(conn, protocol, &e.0)?;
            return Ok(Outcome::Refused(e.0));
        }
    };
    module.policy.imposed.apply(&mut opts);
    if opts.protect_args {
        let protected = read_args(conn, true)?;
        opts.set_protected_paths(&protected);
    }
    if !opts.sender {
        let why = "ERROR: module is read only".to_string();
        sender::refuse(conn, protocol, &why)?;
        return Ok(Outcome::Refused(why));
    }
    conn.set_deadline(None);
    conn.reset_counters();
    conn.set_idle_timeout(Some(idle_timeout(module.timeout, opts.timeout)));
    conn.set_bwlimit(opts.bwlimit);

    let mut paths = source_paths(&module.name, &opts.paths, opts.relative);
    drop_repeated(&mut paths);
    // Builds never change under their name: every laptop gets the same
    // seed, so identical requests can share one delta. Static modules can
    // change under us and keep rsync's time-based seed.
    // For the same reason they share one file list per list shape.
    let (cache, seed, memo, lists) =
        match (&module.root, &server.cache) {
            (ModuleRoot::Build(guard), Some(c)) => {
                let tree = TreeId::of(guard.root()).ok();
                let rules = server.rules_generation;
                (
                    Some(guard.lookup()),
                    Some(c.build_seed(guard.name())),
                    server
                        .memo
                        .as_ref()
                        .zip(tree)
                        .map(|(memo, tree)| Memo::for_build(memo, guard.name(), tree)),
                    server.lists.as_ref().zip(tree).map(|(lists, tree)| {
                        BuildLists::for_build(lists, guard.name(), tree, rules)
                    }),
                )
            }
            (ModuleRoot::Build(guard), None) => (Some(guard.lookup()), None, None, None),
            (ModuleRoot::Static(_), _) => (None, None, None, None),
        };
    let pull = Pull {
        opts: &opts,
        protocol,
        source,
        module: &module.name,
        paths,
        daemon_filters: module.filters.clone(),
        seed,
        memo,
        lists,
        io_timeout: announced_timeout(module.timeout, opts.timeout),
    };
    let outcome = match sender::run(conn, pull) {
        Ok(stats) => Outcome::Pulled {
            module: module.name.clone(),
            user: admitted.user.clone(),
            cache,
            stats,
        },
        Err(e) => Outcome::Failed {
            module: Some(module.name.clone()),
            cache,
            error: e.to_string(),
        },
    };
    Ok(outcome)
}

/// Keeps the first of identical source paths. The file list drops the
/// duplicate entries they make anyway, but only after building them: a
/// client repeating `m/` thousands of times would otherwise have us list
/// the module thousands of times over.
fn drop_repeated(paths: &mut Vec<Vec<u8>>) {
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
}

/// The idle timeout: the daemon's (the module's `timeout`, else
/// [`DEFAULT_IDLE_TIMEOUT`]), shortened by the client's `--timeout` but
/// never lengthened by it: a client asking for 136 years must not hold a
/// worker that long after it stops reading. A client's 0 (none) leaves the
/// daemon's.
fn idle_timeout(module: Option<Duration>, client: Option<u32>) -> Duration {
    let daemon = module.unwrap_or(DEFAULT_IDLE_TIMEOUT);
    match client {
        Some(secs) if secs > 0 => daemon.min(Duration::from_secs(u64::from(secs))),
        _ => daemon,
    }
}

/// The timeout rsyncd would tell the client (rsync: clientserver.c
/// rsync_module): the module's `timeout` when the client's `--timeout` is
/// unset or longer, else the client's; 0 when neither is set. upserv's
/// default idle timeout is its own business and is not announced.
fn announced_timeout(module: Option<Duration>, client: Option<u32>) -> u32 {
    let module = module.map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX));
    match client.unwrap_or(0) {
        0 => module,
        c if module != 0 && module < c => module,
        c => c,
    }
}

/// The arguments, one per line up to an empty one (protocol < 30), or
/// NUL-terminated up to an empty one (30 and later, and protected args).
fn read_args(conn: &mut Conn, nul_terminated: bool) -> io::Result<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    loop {
        let arg = conn.read_arg(options::MAX_ARG_LEN, nul_terminated)?;
        if arg.is_empty() {
            return Ok(args);
        }
        if args.len() >= options::MAX_ARGS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {} arguments", options::MAX_ARGS),
            ));
        }
        args.push(arg);
    }
}

/// The module list: `name<TAB>comment` for each listable module, then
/// `@RSYNCD: EXIT` (send_listing).
fn send_listing(server: &Server, conn: &mut Conn) -> io::Result<()> {
    for (name, comment) in server.listing() {
        send_line(conn, &format!("{name:<15}\t{comment}"))?;
    }
    send_line(conn, "@RSYNCD: EXIT")?;
    conn.flush()
}

/// Turns the client's `module/path` arguments into paths relative to the
/// module root (rsync: util1.c glob_expand_module and sanitize_path): the module
/// name is stripped, so is any leading `/`, and `..` can never climb above
/// the root. Several paths may arrive in one argument, separated by
/// ` module/` (old clients' space-splitting).
pub fn source_paths(module: &str, args: &[Vec<u8>], keep_dot_dirs: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let separator = format!(" {module}/").into_bytes();
    for arg in args {
        let arg = arg.strip_prefix(module.as_bytes()).unwrap_or(arg);
        let mut rest: &[u8] = arg;
        loop {
            let at = rest
                .windows(separator.len())
                .position(|w| w == separator.as_slice());
            let (piece, next) = match at {
                Some(i) => (&rest[..i], Some(&rest[i + separator.len()..])),
                None => (rest, None),
            };
            out.push(crate::source::sanitize_path(piece, keep_dot_dirs));
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
    }
    out
}

impl ModuleRoot {
    fn path(&self) -> &std::path::Path {
        match self {
            ModuleRoot::Static(p) => p,
            ModuleRoot::Build(g) => g.root(),
        }
    }

    fn meta(&self) -> Option<std::sync::Arc<crate::meta::MetaTable>> {
        match self {
            ModuleRoot::Static(_) => None,
            ModuleRoot::Build(g) => g.meta(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(module: &str, args: &[&str]) -> Vec<String> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        source_paths(module, &args, false)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn the_shorter_of_module_and_client_timeouts_is_announced() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(announced_timeout(None, None), 0);
        assert_eq!(announced_timeout(secs(7), None), 7);
        assert_eq!(announced_timeout(secs(7), Some(0)), 7);
        assert_eq!(announced_timeout(secs(7), Some(3)), 3);
        assert_eq!(announced_timeout(secs(7), Some(60)), 7);
        assert_eq!(announced_timeout(None, Some(60)), 60);
    }

    #[test]
    fn module_prefix_is_stripped_and_paths_stay_inside() {
        assert_eq!(paths("mod", &["mod/"]), [""]);
        assert_eq!(paths("mod", &["mod/dir/file"]), ["dir/file"]);
        assert_eq!(paths("mod", &["mod/dir/"]), ["dir/"]);
        assert_eq!(paths("mod", &["mod/../../etc/passwd"]), ["etc/passwd"]);
        assert_eq!(paths("mod", &["mod//a/./b/../c"]), ["a/c"]);
        assert_eq!(paths("mod", &["mod/a mod/b"]), ["a", "b"]);
    }

    #[test]
    fn a_client_timeout_only_shortens_the_daemon_one() {
        let secs = Duration::from_secs;
        assert_eq!(idle_timeout(None, Some(u32::MAX)), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(idle_timeout(None, Some(0)), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(idle_timeout(None, None), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(idle_timeout(None, Some(5)), secs(5));
        assert_eq!(idle_timeout(Some(secs(30)), Some(u32::MAX)), secs(30));
        assert_eq!(idle_timeout(Some(secs(30)), Some(0)), secs(30));
        assert_eq!(idle_timeout(Some(secs(30)), Some(7)), secs(7));
        assert_eq!(idle_timeout(Some(secs(9000)), None), secs(9000));
    }

    #[test]
    fn relative_paths_keep_their_dot_markers() {
        let args = vec![b"mod/./a/./b".to_vec(), b"mod/x/../../y".to_vec()];
        let got = source_paths("mod", &args, true);
        assert_eq!(got, [b"./a/./b".to_vec(), b"y".to_vec()]);
    }
}
