//! The rules single parameter values must follow beyond their syntax: URL
//! templates, listen addresses, ports, limits, digest names. Shared by the
//! configuration file and the command line.
//!
//! Returns plain messages; callers add where the value came from.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use log::LevelFilter;

use super::values::{parse_whole, split_hosts};
use super::MAX_WORKERS;

/// Archive endings the upstream template may have (docs/builds.md).
const ARCHIVE_ENDINGS: [&str; 6] = [
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tar.xz",
    ".tar.lzma",
];
/// Checksum-file endings the checksum template may have (docs/builds.md).
const CHECKSUM_ENDINGS: [&str; 2] = [".md5", ".sha256"];
/// The digests rsyncd's `auth digest` names, strongest first.
const AUTH_DIGESTS: [&str; 5] = ["sha512", "sha256", "sha1", "md5", "md4"];
/// Where a template puts the build name.
const NAME_PLACEHOLDER: &str = "{name}";

/// A list of `ADDR:PORT` items separated by blanks or commas.
pub(super) fn parse_listen(value: &str) -> Result<Vec<SocketAddr>, String> {
    let items = split_hosts(value);
    if items.is_empty() {
        return Err("`listen` needs at least one ADDR:PORT".into());
    }
    let mut addrs = Vec::new();
    for item in items {
        addrs.extend(parse_socket_addrs(&item)?);
    }
    Ok(addrs)
}

/// One `ADDR:PORT` (IPv6 addresses in brackets) or `HOST:PORT`: the host
/// name's addresses, looked up now, at startup.
pub fn parse_socket_addrs(text: &str) -> Result<Vec<SocketAddr>, String> {
    let text = text.trim();
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Ok(vec![addr]);
    }
    let not_an_address = || {
        format!(
            "`{text}` is not ADDR:PORT or HOST:PORT (e.g. 0.0.0.0:873, [::1]:8730, localhost:8730)"
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(not_an_address)?;
    let port: u16 = port.parse().map_err(|_| not_an_address())?;
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(not_an_address());
    }
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host name `{host}`: {e}"))?
        .collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("host name `{host}` has no address"));
    }
    Ok(addrs)
}

/// A syslog facility: its name as rsyncd spells it, and libc's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyslogFacility {
    pub(crate) name: &'static str,
    pub(crate) code: libc::c_int,
}

/// The facilities `syslog facility` accepts, as rsyncd does.
const SYSLOG_FACILITIES: [(&str, libc::c_int); 20] = [
    ("auth", libc::LOG_AUTH),
    ("authpriv", libc::LOG_AUTHPRIV),
    ("cron", libc::LOG_CRON),
    ("daemon", libc::LOG_DAEMON),
    ("ftp", libc::LOG_FTP),
    ("kern", libc::LOG_KERN),
    ("lpr", libc::LOG_LPR),
    ("mail", libc::LOG_MAIL),
    ("news", libc::LOG_NEWS),
    ("syslog", libc::LOG_SYSLOG),
    ("user", libc::LOG_USER),
    ("uucp", libc::LOG_UUCP),
    ("local0", libc::LOG_LOCAL0),
    ("local1", libc::LOG_LOCAL1),
    ("local2", libc::LOG_LOCAL2),
    ("local3", libc::LOG_LOCAL3),
    ("local4", libc::LOG_LOCAL4),
    ("local5", libc::LOG_LOCAL5),
    ("local6", libc::LOG_LOCAL6),
    ("local7", libc::LOG_LOCAL7),
];

/// `syslog facility`; empty means no syslog.
pub(super) fn parse_syslog_facility(value: &str) -> Result<Option<SyslogFacility>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let lower = value.to_ascii_lowercase();
    SYSLOG_FACILITIES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(name, code)| Some(SyslogFacility { name, code }))
        .ok_or_else(|| {
            let names: Vec<&str> = SYSLOG_FACILITIES.iter().map(|(n, _)| *n).collect();
            format!(
                "`{value}` is not a syslog facility (expected one of {})",
                names.join(", ")
            )
        })
}

/// rsyncd's `address`: an IP address; empty means all addresses.
pub(super) fn parse_address(value: &str) -> Result<Option<IpAddr>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    IpAddr::from_str(value)
        .map(Some)
        .map_err(|_| format!("`{value}` is not an IP address"))
}

/// rsyncd's `port`; 0 means the default port, as in rsyncd.
pub(super) fn parse_port(value: &str) -> Result<Option<u16>, String> {
    let port = parse_whole(value).map_err(|error| error.0)?;
    let port = u16::try_from(port).map_err(|_| format!("`{value}` is not a port (0 to 65535)"))?;
    Ok((port != 0).then_some(port))
}

/// A log level name.
pub fn parse_level(value: &str) -> Result<LevelFilter, String> {
    LevelFilter::from_str(value.trim()).map_err(|_| {
        format!(
            "`{}` is not a log level (expected error, warn, info, debug, trace or off)",
            value.trim()
        )
    })
}

/// `max connections`; rsyncd's negative "disable the module" is refused.
pub(super) fn parse_max_connections(value: &str) -> Result<u32, String> {
    let count = parse_whole(value).map_err(|error| {
        if value.trim().starts_with('-') {
            "a negative `max connections` (rsyncd's way to disable a module) is not supported; remove the module instead".to_owned()
        } else {
            error.0
        }
    })?;
    u32::try_from(count).map_err(|_| format!("`{value}` is too large"))
}

/// `auth digest`: one of rsyncd's digest names; empty means any.
pub(super) fn parse_auth_digest(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let digest = value.to_ascii_lowercase();
    if !AUTH_DIGESTS.contains(&digest.as_str()) {
        return Err(format!(
            "`{value}` is not a digest (expected one of {})",
            AUTH_DIGESTS.join(", ")
        ));
    }
    Ok(Some(digest))
}

/// Checks an upstream archive URL template (docs/builds.md).
pub fn check_upstream(url: &str) -> Result<(), String> {
    check_template(url)?;
    if !ends_with_any(url, &ARCHIVE_ENDINGS) {
        return Err(format!(
            "`{url}` does not end in {} (the archive type follows the ending)",
            ARCHIVE_ENDINGS.join(", ")
        ));
    }
    Ok(())
}

/// Checks an upstream checksum URL template (docs/builds.md).
pub(super) fn check_checksum_url(url: &str) -> Result<(), String> {
    check_template(url)?;
    if !ends_with_any(url, &CHECKSUM_ENDINGS) {
        return Err(format!(
            "`{url}` does not end in .md5 or .sha256 (the digest type follows the ending)"
        ));
    }
    Ok(())
}

/// Checks what every URL template needs: http(s) and the `{name}` placeholder.
pub(super) fn check_template(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    }
    if !url.contains(NAME_PLACEHOLDER) {
        return Err(format!(
            "`{url}` has no `{NAME_PLACEHOLDER}` where the build name goes"
        ));
    }
    Ok(())
}

/// Whether the path part of `url` (before any `?` or `#`) ends in one of
/// `endings`, ignoring case.
fn ends_with_any(url: &str, endings: &[&str]) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    endings.iter().any(|ending| path.ends_with(ending))
}

/// Checks a cache size: a budget of 0 could hold no build at all.
pub fn check_cache_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("the cache size must be more than 0".into());
    }
    Ok(())
}

/// Checks a worker count and returns it as a `usize`.
pub fn check_workers(count: u64) -> Result<usize, String> {
    match usize::try_from(count) {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!("`{count}` workers: expected 1 to {MAX_WORKERS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_upstream("https://h/p/{name}.tree.tar.xz").is_ok());
        assert!(check_upstream("HTTP://h/{name}.TGZ?token=1").is_ok());
        assert!(check_upstream("https://h/p/build.tar.xz")
            .unwrap_err()
            .contains("{name}"));
        assert!(check_upstream("ftp://h/{name}.tar")
            .unwrap_err()
            .contains("http"));
        assert!(check_upstream("https://h/{name}.zip")
            .unwrap_err()
            .contains(".tar.lzma"));
        assert!(check_checksum_url("https://h/{name}.tar.xz.md5").is_ok());
        assert!(check_checksum_url("https://h/{name}.sha256").is_ok());
        assert!(check_checksum_url("https://h/{name}.sha1").is_err());
        assert!(check_template("http://h/{name}/contents").is_ok());
    }

    #[test]
    fn worker_bounds() {
        assert_eq!(check_workers(1), Ok(1));
        assert_eq!(check_workers(1024), Ok(1024));
        assert!(check_workers(0).is_err());
        assert!(check_workers(1025).is_err());
    }
}
