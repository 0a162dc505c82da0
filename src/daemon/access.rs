//! `hosts allow` / `hosts deny`: which client addresses may use a module,
//! with rsyncd's precedence (rsync: access.c allow_access): a match in the allow
//! list always admits; an allow list without a deny list refuses everyone
//! else; otherwise a match in the deny list refuses and the rest are let in.
//!
//! Entries are addresses (`10.1.2.3`, `fe80::1`), CIDR blocks
//! (`10.0.0.0/8`, `2001:db8::/32`) and address/netmask pairs
//! (`192.168.1.0/255.255.255.0`), compared numerically, an IPv4-mapped IPv6
//! peer as the IPv4 address it carries. upserv never asks DNS or ident, so
//! it cannot evaluate what rsyncd matches against the client's host name:
//! host names and their wildcard patterns, `@netgroup`s and scoped IPv6
//! addresses. Such an entry never admits anyone from an allow list and, to
//! fail closed, refuses everyone from a deny list; [`Access::problems`]
//! names them so the daemon can warn at startup. A wildcard pattern made of
//! address characters only (`192.168.1.*`) is matched against the address
//! text, which is the only meaning it can have without DNS.
//!
//! Must not perform lookups of any kind, or decide what a refusal says.

use crate::protocol::wildmatch::wildmatch;
use std::net::IpAddr;

/// One entry of a hosts list, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// An address under a mask; a plain address has a full mask.
    Net { value: u128, mask: u128, width: u32 },
    /// A wildcard pattern over the address text (lower case).
    AddressText(Vec<u8>),
    /// Something only DNS could decide (a host name, a netgroup, a scope).
    NeedsLookup,
    /// An address or mask that does not parse; rsyncd ignores these.
    Malformed,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Access {
    allow: Vec<Entry>,
    deny: Vec<Entry>,
    problems: Vec<String>,
}

/// rsyncd splits hosts lists on blanks and commas and compares in lower case.
fn tokens(list: &[String]) -> impl Iterator<Item = String> + '_ {
    list.iter()
        .flat_map(|s| s.split([' ', ',', '\t']))
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The numeric value of an address and its width in bits; an IPv4-mapped
/// IPv6 address counts as IPv4, as rsyncd's client_addr reports it.
fn bits(addr: IpAddr) -> (u128, u32) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), 32),
            None => (u128::from(a), 128),
        },
    }
}

fn prefix_mask(len: u32, width: u32) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len)) >> (128 - width)
    }
}

const WILDCARDS: &[u8] = b"*?[]";

fn is_address_pattern(token: &str) -> bool {
    let b = token.as_bytes();
    if !b.iter().any(|c| WILDCARDS.contains(c)) {
        return false;
    }
    let plain = |c: &u8| WILDCARDS.contains(c) || *c == b'!' || *c == b'-';
    let ipv4 = b
        .iter()
        .all(|c| plain(c) || c.is_ascii_digit() || *c == b'.');
    let ipv6 = b.contains(&b':')
        && b.iter()
            .all(|c| plain(c) || c.is_ascii_hexdigit() || *c == b':' || *c == b'.');
    ipv4 || ipv6
}

/// The mask part of `addr/mask`: a prefix length or a netmask address of
/// the same family.
fn parse_mask(mask: &str, width: u32) -> Option<u128> {
    if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) {
        let len: u32 = mask.parse().ok()?;
        return (len <= width).then(|| prefix_mask(len, width));
    }
    let m: IpAddr = mask.parse().ok()?;
    let (value, mask_width) = bits(m);
    (mask_width == width).then_some(value)
}

fn parse_entry(token: &str) -> Entry {
    if token.contains('%') || token.starts_with('@') {
        return Entry::NeedsLookup;
    }
    if let Some((net, mask)) = token.split_once('/') {
        let Ok(net) = net.parse::<IpAddr>() else {
            return Entry::Malformed;
        };
        let (value, width) = bits(net);
        return match parse_mask(mask, width) {
            Some(mask) => Entry::Net { value, mask, width },
            None => Entry::Malformed,
        };
    }
    if let Ok(addr) = token.parse::<IpAddr>() {
        let (value, width) = bits(addr);
        return Entry::Net {
            value,
            mask: prefix_mask(width, width),
            width,
        };
    }
    if is_address_pattern(token) {
        return Entry::AddressText(token.as_bytes().to_vec());
    }
    let numeric = token.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if numeric || token.contains(':') {
        Entry::Malformed
    } else {
        Entry::NeedsLookup
    }
}

/// Parses one list, noting entries upserv cannot evaluate.
fn parse_list(list: &[String], what: &str, problems: &mut Vec<String>) -> Vec<Entry> {
    tokens(list)
        .map(|token| {
            let entry = parse_entry(&token);
            match entry {
                Entry::NeedsLookup if what == "hosts deny" => problems.push(format!(
                    "{what}: `{token}` needs a DNS lookup, which upserv never does; it refuses every client not admitted by hosts allow"
                )),
                Entry::NeedsLookup => problems.push(format!(
                    "{what}: `{token}` needs a DNS lookup, which upserv never does; it admits nobody"
                )),
                Entry::Malformed => {
                    problems.push(format!("{what}: `{token}` is not a valid address or mask; ignored"))
                }
                _ => {}
            }
            entry
        })
        .collect()
}

impl Entry {
    /// Whether the entry matches `addr`; `deny` decides for entries that
    /// need a lookup (they fail closed).
    fn matches(&self, addr: IpAddr, deny: bool) -> bool {
        match self {
            Entry::Net { value, mask, width } => {
                let (peer, peer_width) = bits(addr);
                peer_width == *width && peer & mask == value & mask
            }
            Entry::AddressText(pattern) => {
                let text = match addr {
                    IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
                    IpAddr::V4(_) => addr,
                };
                wildmatch(pattern, text.to_string().as_bytes())
            }
            Entry::NeedsLookup => deny,
            Entry::Malformed => false,
        }
    }
}

impl Access {
    pub(crate) fn new(allow: &[String], deny: &[String]) -> Access {
        let mut problems = Vec::new();
        let allow = parse_list(allow, "hosts allow", &mut problems);
        let deny = parse_list(deny, "hosts deny", &mut problems);
        Access {
            allow,
            deny,
            problems,
        }
    }

    /// Admits the addresses on `list` only, or everyone when it is empty;
    /// problems are named after the parameter `what`.
    pub(crate) fn allow_only(list: &[String], what: &str) -> Access {
        let mut problems = Vec::new();
        let allow = parse_list(list, what, &mut problems);
        Access {
            allow,
            deny: Vec::new(),
            problems,
        }
    }

    /// Entries upserv cannot evaluate as written, for startup warnings.
    pub(crate) fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether there are no rules at all (everyone is admitted).
    pub(crate) fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// rsyncd's rule: an allow match always wins; with an allow list and no
    /// deny list everything else is refused; otherwise a deny match refuses.
    pub(crate) fn allows(&self, addr: IpAddr) -> bool {
        if !self.allow.is_empty() {
            if self.allow.iter().any(|e| e.matches(addr, false)) {
                return true;
            }
            if self.deny.is_empty() {
                return false;
            }
        }
        !self.deny.iter().any(|e| e.matches(addr, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(allow: &str, deny: &str) -> Access {
        Access::new(&[allow.to_string()], &[deny.to_string()])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_netmask_and_exact() {
        let a = access("10.0.0.0/8, 192.168.1.0/255.255.255.0 172.16.0.5", "");
        assert!(a.allows(ip("10.1.2.3")));
        assert!(a.allows(ip("192.168.1.77")));
        assert!(!a.allows(ip("192.168.2.77")));
        assert!(a.allows(ip("172.16.0.5")));
        assert!(!a.allows(ip("172.16.0.6")));
        assert!(!a.allows(ip("11.0.0.1")));
        assert!(a.problems().is_empty());
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let a = access("fe80::/10 127.0.0.1 2001:DB8::/ffff:ffff::", "");
        assert!(a.allows(ip("fe80::1")));
        assert!(a.allows(ip("2001:db8:1::5")));
        assert!(!a.allows(ip("2001:db9::1")));
        assert!(a.allows(ip("::ffff:127.0.0.1")));
        assert!(!a.allows(ip("::1")));
    }

    #[test]
    fn a_family_never_matches_the_other() {
        // ::/0 covers all of IPv6 and none of IPv4, as in rsyncd.
        let a = access("::/0", "");
        assert!(a.allows(ip("2001:db8::1")));
        assert!(!a.allows(ip("192.0.2.1")));
        let b = access("0.0.0.0/0", "");
        assert!(b.allows(ip("192.0.2.1")));
        assert!(!b.allows(ip("2001:db8::1")));
    }

    #[test]
    fn allow_wins_then_deny_refuses() {
        let a = access("10.0.0.1", "10.0.0.0/8");
        assert!(a.allows(ip("10.0.0.1")));
        assert!(!a.allows(ip("10.0.0.2")));
        assert!(a.allows(ip("192.0.2.1")));
        let open = Access::default();
        assert!(open.allows(ip("192.0.2.1")));
        let closed = access("", "*");
        assert!(!closed.allows(ip("192.0.2.1")));
        assert!(!closed.allows(ip("2001:db8::1")));
    }

    #[test]
    fn wildcards_match_the_address_text() {
        let a = access("192.168.*", "");
        assert!(a.allows(ip("192.168.4.4")));
        assert!(!a.allows(ip("192.169.4.4")));
        let b = access("10.0.0.[1-3]", "");
        assert!(b.allows(ip("10.0.0.2")));
        assert!(!b.allows(ip("10.0.0.4")));
    }

    #[test]
    fn host_names_admit_nobody_and_deny_everybody() {
        let a = access("laptop.school.lan 10.0.0.0/8", "");
        assert!(!a.allows(ip("192.0.2.1")));
        assert!(a.allows(ip("10.9.9.9")));
        assert_eq!(a.problems().len(), 1);
        let d = access("10.0.0.0/8", "*.evil.example @netgroup");
        assert!(d.allows(ip("10.1.1.1")));
        assert!(!d.allows(ip("192.0.2.1")));
        assert_eq!(d.problems().len(), 2);
    }

    #[test]
    fn malformed_entries_match_nothing() {
        let a = access("10.0.0.0/33 10.0.0.0/ffff:: 300.1.1.1 10.0.0.0/x", "");
        assert!(!a.allows(ip("10.0.0.1")));
        assert_eq!(a.problems().len(), 4);
        let d = access("", "10.0.0.0/33");
        assert!(d.allows(ip("10.0.0.1")));
    }

    #[test]
    fn an_allow_only_list_admits_its_entries_or_everyone_when_empty() {
        let peers = Access::allow_only(&["10.0.0.5, 10.0.1.0/24 lb.lan".to_string()], "from");
        assert!(peers.allows(ip("10.0.0.5")));
        assert!(peers.allows(ip("::ffff:10.0.1.9")));
        assert!(!peers.allows(ip("10.0.0.6")));
        assert_eq!(peers.problems().len(), 1);
        assert!(peers.problems()[0].starts_with("from: `lb.lan`"));
        let anyone = Access::allow_only(&[], "from");
        assert!(anyone.is_open() && anyone.allows(ip("192.0.2.1")));
    }

    #[test]
    fn a_zero_prefix_matches_the_whole_family() {
        let a = access("", "10.0.0.0/0");
        assert!(!a.allows(ip("192.0.2.1")));
        assert!(a.allows(ip("2001:db8::1")));
    }
}
