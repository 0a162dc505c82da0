//! The PROXY protocol header a TCP load balancer (HAProxy's `send-proxy`
//! and `send-proxy-v2`, IPVS helpers, nginx's stream module) puts in front
//! of a connection to say whose it is: version 1, one text line such as
//! `PROXY TCP4 192.0.2.7 192.0.2.1 51234 873\r\n`, and version 2, a 16-byte
//! binary head and an address block.
//!
//! Pure: bytes in, the client's address (or "keep the socket's") out. The
//! caller feeds what it has read so far; [`Parse::Incomplete`] promises that
//! every byte fed is part of the header, so a caller may consume them and
//! never reads past the header into the rsync stream.
//!
//! As rsyncd does, `PROXY UNKNOWN` (v1) and the v2 `LOCAL` command (a
//! balancer's own health check) or an address family other than TCP over
//! IPv4/IPv6 are accepted and leave the connection judged by its socket
//! address.
//!
//! Must not touch sockets or decide what a refusal does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest version 1 line, `\r\n` included, as the PROXY protocol
/// specification sets it.
pub(crate) const MAX_V1_LEN: usize = 107;
/// The longest version 2 address block (addresses and TLVs) accepted:
/// twice what two UNIX socket paths take, room for a balancer's usual TLVs.
pub(crate) const MAX_V2_PAYLOAD: usize = 512;
/// The fixed head of a version 2 header.
pub(crate) const V2_HEAD_LEN: usize = 16;
/// The longest header of either version.
pub const MAX_HEADER_LEN: usize = V2_HEAD_LEN + MAX_V2_PAYLOAD;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What a complete header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The client's address, an IPv4-mapped IPv6 one as IPv4 (as rsyncd
    /// reports it); `None` keeps the socket's peer (`UNKNOWN`, `LOCAL`, or
    /// an address family that is not TCP over IP).
    pub(crate) client: Option<IpAddr>,
    /// The header's length in bytes.
    pub len: usize,
}

/// The outcome of feeding the bytes read so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    Done(Header),
    /// A header may still come; every byte fed belongs to it.
    Incomplete,
}

/// Why the bytes are not a PROXY header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyError(String);

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid PROXY protocol header: {}", self.0)
    }
}

impl std::error::Error for ProxyError {}

fn invalid(why: impl Into<String>) -> ProxyError {
    ProxyError(why.into())
}

/// Parses the start of a connection.
pub fn parse(bytes: &[u8]) -> Result<Parse, ProxyError> {
    let v2_seen = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..v2_seen] == V2_SIGNATURE[..v2_seen] && !bytes.is_empty() {
        return parse_v2(bytes);
    }
    let v1_seen = bytes.len().min(V1_PREFIX.len());
    if bytes[..v1_seen] == V1_PREFIX[..v1_seen] {
        return parse_v1(bytes);
    }
    Err(invalid("the connection does not start with one"))
}

fn parse_v1(bytes: &[u8]) -> Result<Parse, ProxyError> {
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return if bytes.len() >= MAX_V1_LEN {
            Err(invalid(format!(
                "version 1 line longer than {MAX_V1_LEN} bytes"
            )))
        } else {
            Ok(Parse::Incomplete)
        };
    };
    let len = nl + 1;
    if len > MAX_V1_LEN {
        return Err(invalid(format!(
            "version 1 line longer than {MAX_V1_LEN} bytes"
        )));
    }
    let Some(line) = bytes[..nl].strip_suffix(b"\r") else {
        return Err(invalid("version 1 line does not end with CR LF"));
    };
    let line = std::str::from_utf8(&line[V1_PREFIX.len()..])
        .map_err(|_| invalid("version 1 line is not text"))?;
    let mut fields = line.split(' ');
    let client = match fields.next() {
        Some("UNKNOWN") => None,
        Some("TCP4") => Some(v1_addresses(fields, |s| {
            s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        })?),
        Some("TCP6") => Some(v1_addresses(fields, |s| {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?),
        _ => return Err(invalid("version 1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Parse::Done(Header {
        client: client.map(|a| a.to_canonical()),
        len,
    }))
}

/// `SRC DST SPORT DPORT` of a version 1 line; returns the source address.
fn v1_addresses<'a>(
    mut fields: impl Iterator<Item = &'a str>,
    addr: impl Fn(&str) -> Option<IpAddr>,
) -> Result<IpAddr, ProxyError> {
    let mut next = || {
        fields
            .next()
            .ok_or_else(|| invalid("version 1 line is short of fields"))
    };
    let src = addr(next()?).ok_or_else(|| invalid("bad source address"))?;
    addr(next()?).ok_or_else(|| invalid("bad destination address"))?;
    for _ in 0..2 {
        let port = next()?;
        // Leading zeros pass, as rsyncd lets them.
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().is_err() {
            return Err(invalid("bad port"));
        }
    }
    if fields.next().is_some() {
        return Err(invalid("version 1 line has extra fields"));
    }
    Ok(src)
}

fn parse_v2(bytes: &[u8]) -> Result<Parse, ProxyError> {
    if bytes.len() < V2_HEAD_LEN {
        return Ok(Parse::Incomplete);
    }
    let (version, command) = (bytes[12] >> 4, bytes[12] & 0x0f);
    if version != 2 {
        return Err(invalid(format!(
            "version 2 signature with version {version}"
        )));
    }
    let (family, transport) = (bytes[13] >> 4, bytes[13] & 0x0f);
    if family > 3 || transport > 2 {
        return Err(invalid("unknown address family or transport"));
    }
    let payload = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if payload > MAX_V2_PAYLOAD {
        return Err(invalid(format!(
            "version 2 address block of {payload} bytes, more than {MAX_V2_PAYLOAD}"
        )));
    }
    let len = V2_HEAD_LEN + payload;
    if bytes.len() < len {
        return Ok(Parse::Incomplete);
    }
    let block = &bytes[V2_HEAD_LEN..len];
    let client = match (command, family, transport) {
        // LOCAL: the balancer speaks for itself.
        (0, _, _) => None,
        (1, 1, 1) => Some(IpAddr::from(source::<4>(block, 12, "TCP4")?)),
        (1, 2, 1) => Some(IpAddr::from(source::<16>(block, 36, "TCP6")?)),
        (1, _, _) => None,
        _ => return Err(invalid(format!("unknown version 2 command {command}"))),
    };
    Ok(Parse::Done(Header {
        client: client.map(|a| a.to_canonical()),
        len,
    }))
}

/// The source address at the start of an address block of at least
/// `need` bytes (both addresses and both ports).
fn source<const N: usize>(block: &[u8], need: usize, what: &str) -> Result<[u8; N], ProxyError> {
    if block.len() < need {
        return Err(invalid(format!("{what} address block too short")));
    }
    let mut octets = [0u8; N];
    octets.copy_from_slice(&block[..N]);
    Ok(octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(bytes: &[u8]) -> Header {
        match parse(bytes) {
            Ok(Parse::Done(h)) => h,
            other => panic!("{other:?} for {bytes:?}"),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn version_1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 192.0.2.1 51234 873\r\n@RSYNCD: 31.0\n";
        let h = done(line);
        assert_eq!(h.client, ip("192.0.2.7"));
        assert_eq!(&line[h.len..], b"@RSYNCD: 31.0\n");
        let h = done(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n");
        assert_eq!(h.client, ip("2001:db8::7"));
        let h = done(b"PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n");
        assert_eq!(h.client, ip("192.0.2.9"));
        assert_eq!(done(b"PROXY TCP4 192.0.2.7 192.0.2.1 0873 00\r\n").len, 40);
        assert_eq!(done(b"PROXY UNKNOWN\r\n").client, None);
        assert_eq!(
            done(b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n").client,
            None
        );
    }

    #[test]
    fn version_1_refuses_malformed_lines() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 192.0.2.1 51234 873\n"[..],
            b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 192.0.2.1 65536 873\r\n",
            b"PROXY TCP4 192.0.2.7 192.0.2.1 +873 873\r\n",
            b"PROXY TCP4 192.0.2.7 192.0.2.1  873\r\n",
            b"PROXY TCP4 192.0.2.7 192.0.2.1 1\r\n",
            b"PROXY TCP4 192.0.2.7 192.0.2.1 1 2 3\r\n",
            b"PROXY TCP4  192.0.2.7 192.0.2.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 192.0.2.1 1 2\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn version_1_waits_for_its_line_up_to_the_limit() {
        assert_eq!(parse(b"P"), Ok(Parse::Incomplete));
        assert_eq!(parse(b"PROXY TCP4 192.0"), Ok(Parse::Incomplete));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(MAX_V1_LEN - 1, b'x');
        assert_eq!(parse(&long), Ok(Parse::Incomplete));
        let mut fits = long.clone();
        fits.truncate(MAX_V1_LEN - 2);
        fits.extend_from_slice(b"\r\n");
        assert_eq!(done(&fits).len, MAX_V1_LEN);
        long.push(b'x');
        assert!(parse(&long).is_err());
        long.extend_from_slice(b"\r\n");
        assert!(parse(&long).is_err());
    }

    #[test]
    fn version_2_tcp4_tcp6_local_and_other_families() {
        let mut block4 = vec![192, 0, 2, 7, 192, 0, 2, 1];
        block4.extend_from_slice(&[0xc8, 0x22, 0x03, 0x69]);
        let mut bytes = v2(1, 0x11, &block4);
        bytes.extend_from_slice(b"@RSYNCD");
        let h = done(&bytes);
        assert_eq!((h.client, h.len), (ip("192.0.2.7"), 28));
        let mut block6 = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        block6.extend_from_slice(&[0; 20]);
        assert_eq!(done(&v2(1, 0x21, &block6)).client, ip("2001:db8::7"));
        let mut mapped = "::ffff:192.0.2.9"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        mapped.extend_from_slice(&[0; 20]);
        assert_eq!(done(&v2(1, 0x21, &mapped)).client, ip("192.0.2.9"));
        // TLVs after the addresses are skipped.
        block4.extend_from_slice(&[0x04, 0, 1, 0]);
        assert_eq!(done(&v2(1, 0x11, &block4)).len, 32);
        assert_eq!(done(&v2(0, 0x00, &[])).client, None);
        assert_eq!(done(&v2(0, 0x11, &block4)).client, None);
        assert_eq!(done(&v2(1, 0x00, &[])).client, None);
        assert_eq!(done(&v2(1, 0x31, &[0; 216])).client, None);
        assert_eq!(done(&v2(1, 0x12, &block4)).client, None);
    }

    #[test]
    fn version_2_refuses_bad_heads_and_short_blocks() {
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert!(parse(&bad_version).is_err());
        assert!(parse(&v2(2, 0x11, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x41, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x13, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x11, &[0; 11])).is_err());
        assert!(parse(&v2(1, 0x21, &[0; 35])).is_err());
    }

    #[test]
    fn version_2_waits_for_its_block_up_to_the_cap() {
        let whole = v2(1, 0x11, &[1; 12]);
        for cut in 1..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(Parse::Incomplete), "cut at {cut}");
        }
        let largest = v2(1, 0x11, &[1; MAX_V2_PAYLOAD]);
        assert_eq!(done(&largest).len, MAX_HEADER_LEN);
        let oversized = v2(1, 0x11, &[1; MAX_V2_PAYLOAD + 1]);
        assert!(parse(&oversized[..V2_HEAD_LEN]).is_err());
    }

    #[test]
    fn anything_else_is_refused_at_its_first_byte() {
        assert!(parse(b"@RSYNCD: 31.0\n").is_err());
        assert!(parse(b"@").is_err());
        assert!(parse(b"\r\n\r\n\0\r\nQUIX").is_err());
        assert!(parse(b"PROXX").is_err());
        assert_eq!(parse(b""), Ok(Parse::Incomplete));
    }
}
