//! `hosts allow` / `hosts deny` (access.c): which client addresses may use a
//! module. Entries are addresses, CIDR blocks (`10.0.0.0/8`, `fe80::/10`),
//! address/netmask pairs, or wildcard patterns matched against the address
//! text. upserv never does DNS or ident lookups, so host names match only
//! through such patterns.

use std::net::IpAddr;

#[derive(Clone, Debug, Default)]
pub struct Access {
    allow: Vec<String>,
    deny: Vec<String>,
}

fn split_list(list: &[String]) -> Vec<String> {
    list.iter()
        .flat_map(|s| s.split([' ', ',', '\t']))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The numeric value of an address, IPv4-mapped IPv6 addresses as IPv4.
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

fn token_matches(token: &str, addr: IpAddr) -> bool {
    let (value, width) = bits(addr);
    if let Some((net, mask)) = token.split_once('/') {
        let Ok(net) = net.parse::<IpAddr>() else {
            return false;
        };
        let (net_value, net_width) = bits(net);
        if net_width != width {
            return false;
        }
        let mask = match mask.parse::<u32>() {
            Ok(len) if len <= width => prefix_mask(len, width),
            Ok(_) => return false,
            Err(_) => match mask.parse::<IpAddr>() {
                Ok(m) => bits(m).0,
                Err(_) => return false,
            },
        };
        return value & mask == net_value & mask;
    }
    if let Ok(exact) = token.parse::<IpAddr>() {
        return bits(exact) == (value, width);
    }
    wildcard(token.as_bytes(), addr.to_string().as_bytes())
}

/// Shell-style `*` and `?` matching, enough for address patterns.
fn wildcard(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

impl Access {
    pub fn new(allow: &[String], deny: &[String]) -> Access {
        Access {
            allow: split_list(allow),
            deny: split_list(deny),
        }
    }

    /// rsyncd's rule: an allow match always wins; with an allow list and no
    /// deny list everything else is refused; otherwise a deny match refuses.
    pub fn allows(&self, addr: IpAddr) -> bool {
        let matches = |list: &[String]| list.iter().any(|t| token_matches(t, addr));
        if !self.allow.is_empty() {
            if matches(&self.allow) {
                return true;
            }
            if self.deny.is_empty() {
                return false;
            }
        }
        !matches(&self.deny)
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
        assert!(a.allows(ip("172.16.0.5")));
        assert!(!a.allows(ip("172.16.0.6")));
        assert!(!a.allows(ip("11.0.0.1")));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let a = access("fe80::/10 127.0.0.1", "");
        assert!(a.allows(ip("fe80::1")));
        assert!(!a.allows(ip("2001:db8::1")));
        assert!(a.allows(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn allow_wins_then_deny_refuses() {
        let a = access("10.0.0.1", "10.0.0.0/8");
        assert!(a.allows(ip("10.0.0.1")));
        assert!(!a.allows(ip("10.0.0.2")));
        assert!(a.allows(ip("192.0.2.1")));
        let open = Access::default();
        assert!(open.allows(ip("192.0.2.1")));
    }

    #[test]
    fn wildcards_match_the_address_text() {
        let a = access("192.168.*", "");
        assert!(a.allows(ip("192.168.4.4")));
        assert!(!a.allows(ip("192.169.4.4")));
    }
}
