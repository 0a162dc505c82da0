//! Between the module name and `@RSYNCD: OK`: may this client use this
//! module now? The checks come in rsyncd's order (rsync: clientserver.c
//! `rsync_module`): `hosts allow`/`hosts deny`, then the module's
//! `max connections`, then the `auth users` login.
//!
//! A module with `list = no` answers a refused address as if it did not
//! exist. upserv never looks up host names, so where rsyncd names the
//! client's host it says `UNDETERMINED`, as rsyncd does with `reverse
//! lookup = no`.
//!
//! Must not read the client's arguments or start the transfer.

use super::auth::{self, AuthRules, Digest};
use super::opening::MAX_LINE_LEN;
use super::policy::Policy;
use super::slots::SlotGuard;
use super::{Module, Server};
use crate::protocol::io::Conn;
use crate::protocol::wire::WireWrite;
use std::io;
use std::net::IpAddr;

/// What rsyncd calls the client's host when it did not look it up.
const UNDETERMINED_HOST: &str = "UNDETERMINED";

/// A client let in: who logged in (if anyone), and the module slot it
/// holds until dropped.
pub(crate) struct Admitted {
    pub(crate) user: Option<String>,
    _slot: SlotGuard,
}

/// A refusal: what the client's `@ERROR:` line says, and what the log says.
pub(crate) struct Refusal {
    pub(crate) client: String,
    pub(crate) log: String,
}

impl Refusal {
    fn same(text: String) -> Refusal {
        Refusal {
            client: text.clone(),
            log: text,
        }
    }
}

/// Runs the checks; only the login talks to the client.
pub(crate) fn admit(
    server: &Server,
    conn: &mut Conn,
    peer: Option<IpAddr>,
    module: &Module,
    client_digests: Option<&str>,
) -> io::Result<Result<Admitted, Refusal>> {
    if let Err(refusal) = check_hosts(&module.name, &module.policy, peer) {
        return Ok(Err(refusal));
    }
    let max = module.policy.max_connections;
    let Some(slot) = server.slots.claim(&module.name, max)? else {
        return Ok(Err(Refusal::same(format!(
            "max connections ({max}) reached -- try again later"
        ))));
    };
    let user = match &module.policy.auth {
        None => None,
        Some(rules) => match login(conn, rules, &module.name, peer, client_digests)? {
            Ok(user) => Some(user),
            Err(refusal) => return Ok(Err(refusal)),
        },
    };
    Ok(Ok(Admitted { user, _slot: slot }))
}

fn addr_text(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "unknown address".to_string(), |a| a.to_string())
}

/// `hosts allow` / `hosts deny`. An unknown peer (not a socket) passes
/// only a module without host rules.
fn check_hosts(name: &str, policy: &Policy, peer: Option<IpAddr>) -> Result<(), Refusal> {
    let allowed = match peer {
        Some(addr) => policy.access.allows(addr),
        None => policy.access.is_open(),
    };
    if allowed {
        return Ok(());
    }
    let addr = addr_text(peer);
    let client = if policy.list {
        format!("access denied to {name} from {UNDETERMINED_HOST} ({addr})")
    } else {
        format!("Unknown module '{name}'")
    };
    Err(Refusal {
        client,
        log: format!("denied on module {name} from {addr} by hosts allow/deny"),
    })
}

/// The challenge-response login; returns the user name.
fn login(
    conn: &mut Conn,
    rules: &AuthRules,
    name: &str,
    peer: Option<IpAddr>,
    client_digests: Option<&str>,
) -> io::Result<Result<String, Refusal>> {
    let addr = addr_text(peer);
    let failed = |user: &str, why: &str| {
        let who = if user.is_empty() {
            String::new()
        } else {
            format!(" for {user}")
        };
        Refusal {
            client: format!("auth failed on module {name}"),
            log: format!("auth failed on module {name} from {addr}{who}: {why}"),
        }
    };
    let Some(digest) = Digest::negotiate(client_digests) else {
        return Ok(Err(Refusal::same(format!(
            "your client does not support one of our daemon-auth checksums: {}",
            Digest::offered_list()
        ))));
    };
    if let Err(f) = rules.check_digest(digest) {
        return Ok(Err(failed("", &f.0)));
    }
    let challenge = match auth::new_challenge() {
        Ok(c) => c,
        Err(e) => return Ok(Err(failed("", &format!("no random challenge: {e}")))),
    };
    conn.write_all(format!("@RSYNCD: AUTHREQD {challenge}\n").as_bytes())?;
    conn.flush()?;
    let line = conn.read_line(MAX_LINE_LEN)?;
    Ok(match rules.verify(digest, &challenge, &line) {
        Ok(user) => Ok(user),
        Err((user, f)) => Err(failed(&user, &f.0)),
    })
}
