//! One client connection from its first byte to its last: the daemon
//! handshake (clientserver.c's start_daemon and rsync_module), module
//! selection, then the pull itself.
//!
//! The handshake, line by line: our greeting `@RSYNCD: 29.0`, the MOTD, the
//! client's greeting, its module name (or an empty line / `#list` for the
//! module list), `@RSYNCD: OK`, then its arguments one per line up to an
//! empty line. Any refusal is an `@ERROR: ...` line, which the client prints
//! before exiting with code 5.

use super::{Module, ModuleRoot, Server};
use crate::protocol::io::Conn;
use crate::protocol::options::{self, Options};
use crate::protocol::sender::{self, Pull, TransferStats};
use crate::source::Source;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The protocol we offer: MD4 checksums, no incremental recursion, no
/// negotiation of checksums or compression, understood by every client
/// from rsync 2.6 on.
pub const PROTOCOL_VERSION: u32 = 29;
/// The oldest protocol we speak (its MD4 is the standard one).
pub const MIN_PROTOCOL_VERSION: u32 = 27;
/// Longest handshake line we accept.
pub const MAX_LINE_LEN: usize = 4096;
/// The whole handshake, up to the end of the arguments, must fit in this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle limit during a transfer when neither the module nor the client sets one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How a connection ended, for the log.
pub enum Outcome {
    Listed,
    Refused(String),
    Pulled {
        module: String,
        stats: TransferStats,
    },
    Failed {
        module: Option<String>,
        error: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Listed => write!(f, "module list"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
            Outcome::Pulled { module, stats } => write!(
                f,
                "module {module}: {} files sent of {} listed, {} bytes sent, {} literal, {} matched",
                stats.files_sent,
                stats.files_listed,
                stats.bytes_written,
                stats.literal_bytes,
                stats.matched_bytes
            ),
            Outcome::Failed { module, error } => match module {
                Some(m) => write!(f, "module {m}: failed: {error}"),
                None => write!(f, "failed: {error}"),
            },
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the whole conversation with one client.
pub fn run(server: &Server, conn: &mut Conn, peer: Option<IpAddr>) -> Outcome {
    match handshake(server, conn, peer) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed {
            module: None,
            error: e.to_string(),
        },
    }
}

fn send_line(conn: &mut Conn, line: &str) -> io::Result<()> {
    use crate::protocol::wire::WireWrite;
    conn.write_all(line.as_bytes())?;
    conn.write_all(b"\n")
}

fn refuse(conn: &mut Conn, why: String) -> io::Result<Outcome> {
    send_line(conn, &format!("@ERROR: {why}"))?;
    conn.flush()?;
    Ok(Outcome::Refused(why))
}

/// Parses `@RSYNCD: 31.0 sha512 sha256 ...` into the protocol number.
fn parse_greeting(line: &[u8]) -> Option<u32> {
    let rest = line.strip_prefix(b"@RSYNCD: ")?;
    let digits: Vec<u8> = rest
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn handshake(server: &Server, conn: &mut Conn, peer: Option<IpAddr>) -> io::Result<Outcome> {
    conn.set_deadline(Some(Instant::now() + HANDSHAKE_TIMEOUT));
    send_line(conn, &format!("@RSYNCD: {PROTOCOL_VERSION}.0 md5 md4"))?;
    if let Some(motd) = &server.motd {
        use crate::protocol::wire::WireWrite;
        conn.write_all(motd)?;
        conn.write_all(b"\n")?;
    }
    conn.flush()?;
    let greeting = conn.read_line(MAX_LINE_LEN)?;
    let Some(client_protocol) = parse_greeting(&greeting) else {
        return refuse(conn, "protocol startup error".into());
    };
    if client_protocol < MIN_PROTOCOL_VERSION {
        return refuse(
            conn,
            format!(
                "protocol version mismatch: this server needs protocol {MIN_PROTOCOL_VERSION} or newer (rsync 2.6.0), the client offered {client_protocol}"
            ),
        );
    }
    let protocol = client_protocol.min(PROTOCOL_VERSION);

    let mut line = conn.read_line(MAX_LINE_LEN)?;
    if line.starts_with(b"#early_input=") {
        // rsync 3.2's --early-input: a length, then that many bytes we ignore.
        let len: usize = text(&line[13..]).trim().parse().unwrap_or(usize::MAX);
        if len > MAX_LINE_LEN {
            return refuse(conn, "invalid early_input length".into());
        }
        let mut skip = vec![0u8; len];
        crate::protocol::wire::WireRead::read_exact(conn, &mut skip)?;
        line = conn.read_line(MAX_LINE_LEN)?;
    }
    if line.is_empty() || line == b"#list" {
        send_listing(server, conn)?;
        return Ok(Outcome::Listed);
    }
    if line.first() == Some(&b'#') {
        return refuse(conn, format!("Unknown command '{}'", text(&line)));
    }
    let name = text(&line);
    let module = match server.find_module(&name, conn)? {
        Ok(Some(m)) => m,
        Ok(None) => return refuse(conn, format!("Unknown module '{name}'")),
        Err(why) => return refuse(conn, why),
    };
    if let Some(why) = module.access_refusal(peer) {
        return refuse(conn, why);
    }
    send_line(conn, "@RSYNCD: OK")?;
    conn.flush()?;

    let args = read_args(conn, false)?;
    let mut opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            sender::refuse(conn, &e.0)?;
            return Ok(Outcome::Refused(e.0));
        }
    };
    if opts.protect_args {
        let protected = read_args(conn, true)?;
        opts.set_protected_paths(&protected);
    }
    if !opts.sender {
        let why = "ERROR: module is read only".to_string();
        sender::refuse(conn, &why)?;
        return Ok(Outcome::Refused(why));
    }
    conn.set_deadline(None);
    conn.reset_counters();
    conn.set_idle_timeout(Some(idle_timeout(module.timeout, opts.timeout)));

    let paths = source_paths(&module.name, &opts.paths, opts.relative);
    let source = Source::new(module.root.path().to_path_buf(), module.root.meta());
    let pull = Pull {
        opts: &opts,
        protocol,
        source: &source,
        module: &module.name,
        paths,
        daemon_filters: module.filters.clone(),
    };
    let outcome = match sender::run(conn, pull) {
        Ok(stats) => Outcome::Pulled {
            module: module.name.clone(),
            stats,
        },
        Err(e) => Outcome::Failed {
            module: Some(module.name.clone()),
            error: e.to_string(),
        },
    };
    Ok(outcome)
}

/// The idle timeout: the stricter of the module's and the client's, with a
/// default so that a vanished client never holds a worker forever.
fn idle_timeout(module: Option<Duration>, client: Option<u32>) -> Duration {
    let client = client.map(|s| Duration::from_secs(u64::from(s)));
    match (module, client) {
        (Some(m), Some(c)) => m.min(c),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => DEFAULT_IDLE_TIMEOUT,
    }
}

/// The arguments, one per line up to an empty one (protocol < 30), or
/// NUL-terminated up to an empty one for protected args.
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
/// module root (util1.c glob_expand_module and sanitize_path): the module
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

impl Module {
    /// Checks `hosts allow` / `hosts deny` for this module.
    fn access_refusal(&self, peer: Option<IpAddr>) -> Option<String> {
        let addr = peer?;
        if self.access.allows(addr) {
            None
        } else {
            Some(format!(
                "access denied to {} from {addr} ({addr})",
                self.name
            ))
        }
    }
}

impl ModuleRoot {
    fn path(&self) -> &std::path::Path {
        match self {
            ModuleRoot::Static(p) => p,
            ModuleRoot::Build(g) => g.root(),
        }
    }

    fn meta(&self) -> Option<std::sync::Arc<crate::cache::meta::MetaTable>> {
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
    fn module_prefix_is_stripped_and_paths_stay_inside() {
        assert_eq!(paths("mod", &["mod/"]), [""]);
        assert_eq!(paths("mod", &["mod/dir/file"]), ["dir/file"]);
        assert_eq!(paths("mod", &["mod/dir/"]), ["dir/"]);
        assert_eq!(paths("mod", &["mod/../../etc/passwd"]), ["etc/passwd"]);
        assert_eq!(paths("mod", &["mod//a/./b/../c"]), ["a/c"]);
        assert_eq!(paths("mod", &["mod/a mod/b"]), ["a", "b"]);
    }

    #[test]
    fn relative_paths_keep_their_dot_markers() {
        let args = vec![b"mod/./a/./b".to_vec(), b"mod/x/../../y".to_vec()];
        let got = source_paths("mod", &args, true);
        assert_eq!(got, [b"./a/./b".to_vec(), b"y".to_vec()]);
    }

    #[test]
    fn greeting_versions() {
        assert_eq!(parse_greeting(b"@RSYNCD: 31.0 sha512 md5"), Some(31));
        assert_eq!(parse_greeting(b"@RSYNCD: 29"), Some(29));
        assert_eq!(parse_greeting(b"hello"), None);
    }
}
