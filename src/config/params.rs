//! The parameters upserv knows: their rsyncd.conf names, whether they are
//! global or per module, how each value is read into the settings and how it
//! is written back out, and the rsyncd parameters upserv ignores or refuses.
//!
//! Must not know about files, lines or sections: the parser decides where a
//! value goes and adds the location to the messages returned from here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

use super::values::{
    format_bool, format_conf_list, format_size, parse_bool, parse_seconds, parse_size, parse_whole,
    split_conf_list, split_filter_words, split_hosts, ValueError,
};
use super::{Global, Layout, ModuleParams, DEFAULT_BUILDS_DIR, DEFAULT_PORT, MAX_WORKERS};

/// Archive endings the upstream template may have (SPEC §5).
const ARCHIVE_ENDINGS: [&str; 6] = [
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tar.xz",
    ".tar.lzma",
];
/// Checksum-file endings the checksum template may have (SPEC §5).
const CHECKSUM_ENDINGS: [&str; 2] = [".md5", ".sha256"];
/// The digests rsyncd's `auth digest` names, strongest first.
const AUTH_DIGESTS: [&str; 5] = ["sha512", "sha256", "sha1", "md5", "md4"];
/// Where a template puts the build name.
const NAME_PLACEHOLDER: &str = "{name}";

/// A server-wide parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GlobalParam {
    Listen,
    Address,
    Port,
    MotdFile,
    PidFile,
    LogFile,
    LogLevel,
    BuildsDir,
    Upstream,
    UpstreamChecksum,
    UpstreamContents,
    Layout,
    CacheSize,
    Workers,
    FetchTimeout,
}

/// Every global parameter, in the order the effective settings show them.
pub(super) const GLOBAL_PARAMS: [GlobalParam; 15] = [
    GlobalParam::Listen,
    GlobalParam::Address,
    GlobalParam::Port,
    GlobalParam::MotdFile,
    GlobalParam::PidFile,
    GlobalParam::LogFile,
    GlobalParam::LogLevel,
    GlobalParam::BuildsDir,
    GlobalParam::Upstream,
    GlobalParam::UpstreamChecksum,
    GlobalParam::UpstreamContents,
    GlobalParam::Layout,
    GlobalParam::CacheSize,
    GlobalParam::Workers,
    GlobalParam::FetchTimeout,
];

impl GlobalParam {
    pub(super) fn name(self) -> &'static str {
        match self {
            GlobalParam::Listen => "listen",
            GlobalParam::Address => "address",
            GlobalParam::Port => "port",
            GlobalParam::MotdFile => "motd file",
            GlobalParam::PidFile => "pid file",
            GlobalParam::LogFile => "log file",
            GlobalParam::LogLevel => "log level",
            GlobalParam::BuildsDir => "builds dir",
            GlobalParam::Upstream => "upstream",
            GlobalParam::UpstreamChecksum => "upstream checksum",
            GlobalParam::UpstreamContents => "upstream contents",
            GlobalParam::Layout => "layout",
            GlobalParam::CacheSize => "cache size",
            GlobalParam::Workers => "workers",
            GlobalParam::FetchTimeout => "fetch timeout",
        }
    }
}

/// A per-module parameter (a default for modules when given globally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ModuleParam {
    Path,
    Comment,
    List,
    ReadOnly,
    WriteOnly,
    HostsAllow,
    HostsDeny,
    MaxConnections,
    Timeout,
    AuthUsers,
    SecretsFile,
    StrictModes,
    AuthDigest,
    Filter,
    IncludeFrom,
    Include,
    ExcludeFrom,
    Exclude,
    RefuseOptions,
    IgnoreErrors,
    IgnoreNonreadable,
    NumericIds,
    ReverseLookup,
    ForwardLookup,
}

/// Every module parameter, in the order the effective settings show them.
pub(super) const MODULE_PARAMS: [ModuleParam; 24] = [
    ModuleParam::Path,
    ModuleParam::Comment,
    ModuleParam::List,
    ModuleParam::ReadOnly,
    ModuleParam::WriteOnly,
    ModuleParam::HostsAllow,
    ModuleParam::HostsDeny,
    ModuleParam::MaxConnections,
    ModuleParam::Timeout,
    ModuleParam::AuthUsers,
    ModuleParam::SecretsFile,
    ModuleParam::StrictModes,
    ModuleParam::AuthDigest,
    ModuleParam::Filter,
    ModuleParam::IncludeFrom,
    ModuleParam::Include,
    ModuleParam::ExcludeFrom,
    ModuleParam::Exclude,
    ModuleParam::RefuseOptions,
    ModuleParam::IgnoreErrors,
    ModuleParam::IgnoreNonreadable,
    ModuleParam::NumericIds,
    ModuleParam::ReverseLookup,
    ModuleParam::ForwardLookup,
];

impl ModuleParam {
    pub(super) fn name(self) -> &'static str {
        match self {
            ModuleParam::Path => "path",
            ModuleParam::Comment => "comment",
            ModuleParam::List => "list",
            ModuleParam::ReadOnly => "read only",
            ModuleParam::WriteOnly => "write only",
            ModuleParam::HostsAllow => "hosts allow",
            ModuleParam::HostsDeny => "hosts deny",
            ModuleParam::MaxConnections => "max connections",
            ModuleParam::Timeout => "timeout",
            ModuleParam::AuthUsers => "auth users",
            ModuleParam::SecretsFile => "secrets file",
            ModuleParam::StrictModes => "strict modes",
            ModuleParam::AuthDigest => "auth digest",
            ModuleParam::Filter => "filter",
            ModuleParam::IncludeFrom => "include from",
            ModuleParam::Include => "include",
            ModuleParam::ExcludeFrom => "exclude from",
            ModuleParam::Exclude => "exclude",
            ModuleParam::RefuseOptions => "refuse options",
            ModuleParam::IgnoreErrors => "ignore errors",
            ModuleParam::IgnoreNonreadable => "ignore nonreadable",
            ModuleParam::NumericIds => "numeric ids",
            ModuleParam::ReverseLookup => "reverse lookup",
            ModuleParam::ForwardLookup => "forward lookup",
        }
    }
}

/// rsyncd parameters upserv accepts and ignores, with the reason it gives.
const IGNORED: [(&str, &str); 26] = [
    ("use chroot", NO_CHROOT),
    ("daemon chroot", NO_CHROOT),
    ("uid", NO_USER_SWITCH),
    ("gid", NO_USER_SWITCH),
    ("daemon uid", NO_USER_SWITCH),
    ("daemon gid", NO_USER_SWITCH),
    ("munge symlinks", RECEIVING_ONLY),
    ("incoming chmod", RECEIVING_ONLY),
    ("temp dir", RECEIVING_ONLY),
    (
        "fake super",
        "upserv serves owners and modes from disk or from its build metadata",
    ),
    (
        "outgoing chmod",
        "upserv serves modes unchanged (olpc-update checks them)",
    ),
    ("transfer logging", LOGS_PER_CONNECTION),
    ("log format", LOGS_PER_CONNECTION),
    ("max verbosity", LOGS_PER_CONNECTION),
    ("syslog facility", NO_SYSLOG),
    ("syslog tag", NO_SYSLOG),
    ("lock file", "upserv counts connections itself"),
    (
        "dont compress",
        "upserv compresses every file a client asks to have compressed",
    ),
    ("charset", "upserv speaks protocol 29, which has no --iconv"),
    ("open noatime", "upserv does not set O_NOATIME"),
    (
        "insecure links",
        "upserv never follows a symlink out of a module",
    ),
    ("name converter", "upserv maps user and group names itself"),
    ("post-xfer exec", "upserv runs no commands around transfers"),
    ("socket options", "upserv uses the system's socket defaults"),
    ("listen backlog", "upserv uses the system's socket defaults"),
    (
        "proxy protocol hosts",
        "upserv does not accept proxy protocol headers",
    ),
];
const NO_CHROOT: &str = "upserv never chroots; it keeps every path inside its module itself";
const NO_USER_SWITCH: &str =
    "upserv does not change user or group; run it as the user it should serve as";
const RECEIVING_ONLY: &str = "it only matters when receiving files, which upserv never does";
const LOGS_PER_CONNECTION: &str = "upserv logs one line per connection";
const NO_SYSLOG: &str = "upserv logs to its log file or standard error, not syslog";

/// rsyncd parameters whose purpose upserv cannot honour, so that ignoring
/// them could open access the administrator meant to close. Only an empty
/// value is accepted.
const REFUSED: [(&str, &str); 2] = [
    (
        "early exec",
        "upserv runs no commands; remove it (it may be an access check)",
    ),
    (
        "pre-xfer exec",
        "upserv runs no commands; remove it (it may be an access check)",
    ),
];

/// What a parameter name means to upserv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    Global(GlobalParam),
    Module(ModuleParam),
    /// Known to rsyncd, ignored here for the reason given.
    Ignored(&'static str),
    /// Known to rsyncd, not supported with a value.
    Refused(&'static str),
}

/// The comparison key of a parameter name: rsyncd compares names ignoring
/// case and every blank, so `max connections` and `MaxConnections` match.
pub(super) fn name_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// What the parameter called `name` is, if upserv knows it.
pub(super) fn lookup(name: &str) -> Option<Param> {
    let key = name_key(name);
    let matches = |candidate: &str| name_key(candidate) == key;
    if let Some(&param) = GLOBAL_PARAMS.iter().find(|p| matches(p.name())) {
        return Some(Param::Global(param));
    }
    if let Some(&param) = MODULE_PARAMS.iter().find(|p| matches(p.name())) {
        return Some(Param::Module(param));
    }
    if let Some(&(_, reason)) = IGNORED.iter().find(|(n, _)| matches(n)) {
        return Some(Param::Ignored(reason));
    }
    REFUSED
        .iter()
        .find(|(n, _)| matches(n))
        .map(|&(_, reason)| Param::Refused(reason))
}

/// For an unknown name written with underscores (`max_connections`), the
/// parameter it probably means. rsyncd does not accept underscores either.
pub(super) fn underscore_hint(name: &str) -> Option<&'static str> {
    if !name.contains('_') {
        return None;
    }
    let spaced = name.replace('_', " ");
    let key = name_key(&spaced);
    let global = GLOBAL_PARAMS.iter().map(|p| p.name());
    let module = MODULE_PARAMS.iter().map(|p| p.name());
    global
        .chain(module)
        .find(|candidate| name_key(candidate) == key)
}

/// The global settings while a file is read: the listen address may be
/// given as `listen` or as rsyncd's `address` and `port`, resolved at the end.
#[derive(Debug, Clone, Default)]
pub(super) struct GlobalDraft {
    pub global: Global,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub listen_given: bool,
}

impl GlobalDraft {
    /// The global settings with `address`/`port` turned into `listen`.
    pub(super) fn resolve(mut self) -> Global {
        if !self.listen_given && (self.address.is_some() || self.port.is_some()) {
            let address = self.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            self.global.listen = vec![SocketAddr::new(address, self.port.unwrap_or(DEFAULT_PORT))];
        }
        self.global
    }
}

/// The outcome of setting a parameter: `Ok(Some(text))` is a warning.
pub(super) type SetResult = Result<Option<String>, String>;

/// Reads `value` into the global parameter `param`.
pub(super) fn set_global(param: GlobalParam, value: &str, draft: &mut GlobalDraft) -> SetResult {
    let global = &mut draft.global;
    match param {
        GlobalParam::Listen => {
            global.listen = parse_listen(value)?;
            draft.listen_given = true;
            return Ok(listen_overlap(
                draft.address.is_some() || draft.port.is_some(),
            ));
        }
        GlobalParam::Address => {
            draft.address = parse_address(value)?;
            return Ok(listen_overlap(draft.listen_given));
        }
        GlobalParam::Port => {
            draft.port = parse_port(value)?;
            return Ok(listen_overlap(draft.listen_given));
        }
        GlobalParam::MotdFile => global.motd_file = optional_path(value),
        GlobalParam::PidFile => global.pid_file = optional_path(value),
        GlobalParam::LogFile => global.log_file = optional_path(value),
        GlobalParam::LogLevel => global.log_level = parse_level(value)?,
        GlobalParam::BuildsDir => {
            global.builds_dir =
                optional_path(value).unwrap_or_else(|| PathBuf::from(DEFAULT_BUILDS_DIR));
        }
        GlobalParam::Upstream => global.upstream = optional_template(value, check_upstream)?,
        GlobalParam::UpstreamChecksum => {
            global.upstream_checksum = optional_template(value, check_checksum_url)?;
        }
        GlobalParam::UpstreamContents => {
            global.upstream_contents = optional_template(value, check_template)?;
        }
        GlobalParam::Layout => global.layout = Layout::from_str(value).map_err(text)?,
        GlobalParam::CacheSize => {
            let size = parse_size(value).map_err(text)?;
            check_cache_size(size)?;
            global.cache_size = size;
        }
        GlobalParam::Workers => global.workers = check_workers(parse_whole(value).map_err(text)?)?,
        GlobalParam::FetchTimeout => {
            let seconds = parse_seconds(value).map_err(text)?;
            if seconds == 0 {
                return Err("the fetch timeout must be at least 1 second".into());
            }
            global.fetch_timeout = Duration::from_secs(seconds);
        }
    }
    Ok(None)
}

/// The warning for giving both `listen` and `address`/`port`.
fn listen_overlap(overlaps: bool) -> Option<String> {
    overlaps.then(|| "`listen` is given too, so `address` and `port` are ignored".to_owned())
}

/// Reads `value` into the module parameter `param` of `params` (or `path`).
pub(super) fn set_module(
    param: ModuleParam,
    value: &str,
    params: &mut ModuleParams,
    path: &mut Option<PathBuf>,
) -> SetResult {
    match param {
        ModuleParam::Path => *path = optional_path(value),
        ModuleParam::Comment => params.comment = value.to_owned(),
        ModuleParam::List => params.list = parse_bool(value).map_err(text)?,
        ModuleParam::ReadOnly => {
            if !parse_bool(value).map_err(text)? {
                return Err(
                    "`read only = no` is not supported: upserv never receives files".into(),
                );
            }
        }
        ModuleParam::WriteOnly => {
            if parse_bool(value).map_err(text)? {
                return Err(
                    "`write only = yes` is not supported: upserv only serves downloads".into(),
                );
            }
        }
        ModuleParam::HostsAllow => params.hosts_allow = split_hosts(value),
        ModuleParam::HostsDeny => params.hosts_deny = split_hosts(value),
        ModuleParam::MaxConnections => params.max_connections = parse_max_connections(value)?,
        ModuleParam::Timeout => {
            let seconds = parse_seconds(value).map_err(text)?;
            params.timeout = (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        ModuleParam::AuthUsers => {
            params.auth_users = split_conf_list(value);
            return Ok(writable_rule_warning(&params.auth_users));
        }
        ModuleParam::SecretsFile => params.secrets_file = optional_path(value),
        ModuleParam::StrictModes => params.strict_modes = parse_bool(value).map_err(text)?,
        ModuleParam::AuthDigest => params.auth_digest = parse_auth_digest(value)?,
        ModuleParam::Filter => params.filter = (!value.is_empty()).then(|| value.to_owned()),
        ModuleParam::IncludeFrom => params.include_from = optional_path(value),
        ModuleParam::Include => params.include = split_filter_words(value).map_err(text)?,
        ModuleParam::ExcludeFrom => params.exclude_from = optional_path(value),
        ModuleParam::Exclude => params.exclude = split_filter_words(value).map_err(text)?,
        ModuleParam::RefuseOptions => {
            params.refuse_options = value.split_whitespace().map(str::to_owned).collect();
        }
        ModuleParam::IgnoreErrors => params.ignore_errors = parse_bool(value).map_err(text)?,
        ModuleParam::IgnoreNonreadable => {
            params.ignore_nonreadable = parse_bool(value).map_err(text)?;
        }
        ModuleParam::NumericIds => params.numeric_ids = parse_bool(value).map_err(text)?,
        ModuleParam::ReverseLookup => params.reverse_lookup = parse_bool(value).map_err(text)?,
        ModuleParam::ForwardLookup => params.forward_lookup = parse_bool(value).map_err(text)?,
    }
    Ok(None)
}

/// The value of a global parameter as the effective settings show it;
/// `None` for `address` and `port`, which `listen` replaces.
pub(super) fn global_value(param: GlobalParam, global: &Global) -> Option<String> {
    let value = match param {
        GlobalParam::Listen => global
            .listen
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        GlobalParam::Address | GlobalParam::Port => return None,
        GlobalParam::MotdFile => path_text(global.motd_file.as_ref()),
        GlobalParam::PidFile => path_text(global.pid_file.as_ref()),
        GlobalParam::LogFile => path_text(global.log_file.as_ref()),
        GlobalParam::LogLevel => global.log_level.as_str().to_ascii_lowercase(),
        GlobalParam::BuildsDir => path_text(Some(&global.builds_dir)),
        GlobalParam::Upstream => global.upstream.clone().unwrap_or_default(),
        GlobalParam::UpstreamChecksum => global.upstream_checksum.clone().unwrap_or_default(),
        GlobalParam::UpstreamContents => global.upstream_contents.clone().unwrap_or_default(),
        GlobalParam::Layout => global.layout.name().to_owned(),
        GlobalParam::CacheSize => format_size(global.cache_size),
        GlobalParam::Workers => global.workers.to_string(),
        GlobalParam::FetchTimeout => global.fetch_timeout.as_secs().to_string(),
    };
    Some(value)
}

/// The value of a module parameter as the effective settings show it;
/// `None` for `path` (written by the caller) and the fixed `read only` and
/// `write only`.
pub(super) fn module_value(param: ModuleParam, params: &ModuleParams) -> Option<String> {
    let value = match param {
        ModuleParam::Path | ModuleParam::ReadOnly | ModuleParam::WriteOnly => return None,
        ModuleParam::Comment => params.comment.clone(),
        ModuleParam::List => format_bool(params.list).to_owned(),
        ModuleParam::HostsAllow => params.hosts_allow.join(", "),
        ModuleParam::HostsDeny => params.hosts_deny.join(", "),
        ModuleParam::MaxConnections => params.max_connections.to_string(),
        ModuleParam::Timeout => params.timeout.map_or(0, |t| t.as_secs()).to_string(),
        ModuleParam::AuthUsers => format_conf_list(&params.auth_users),
        ModuleParam::SecretsFile => path_text(params.secrets_file.as_ref()),
        ModuleParam::StrictModes => format_bool(params.strict_modes).to_owned(),
        ModuleParam::AuthDigest => params.auth_digest.clone().unwrap_or_default(),
        ModuleParam::Filter => params.filter.clone().unwrap_or_default(),
        ModuleParam::IncludeFrom => path_text(params.include_from.as_ref()),
        ModuleParam::Include => params.include.join(" "),
        ModuleParam::ExcludeFrom => path_text(params.exclude_from.as_ref()),
        ModuleParam::Exclude => params.exclude.join(" "),
        ModuleParam::RefuseOptions => params.refuse_options.join(" "),
        ModuleParam::IgnoreErrors => format_bool(params.ignore_errors).to_owned(),
        ModuleParam::IgnoreNonreadable => format_bool(params.ignore_nonreadable).to_owned(),
        ModuleParam::NumericIds => format_bool(params.numeric_ids).to_owned(),
        ModuleParam::ReverseLookup => format_bool(params.reverse_lookup).to_owned(),
        ModuleParam::ForwardLookup => format_bool(params.forward_lookup).to_owned(),
    };
    Some(value)
}

/// A path as written in the file; empty for none.
pub(super) fn path_text(path: Option<&PathBuf>) -> String {
    path.map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A `ValueError` as a plain message.
fn text(error: ValueError) -> String {
    error.0
}

/// A path value: empty means none; trailing slashes go, as rsyncd does,
/// except for `/` itself.
fn optional_path(value: &str) -> Option<PathBuf> {
    if value.is_empty() {
        return None;
    }
    let trimmed = value.trim_end_matches('/');
    Some(PathBuf::from(if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }))
}

/// A URL template value: empty means none, anything else must pass `check`.
fn optional_template(
    value: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    check(value)?;
    Ok(Some(value.to_owned()))
}

/// A list of `ADDR:PORT` items separated by blanks or commas.
fn parse_listen(value: &str) -> Result<Vec<SocketAddr>, String> {
    let items = split_hosts(value);
    if items.is_empty() {
        return Err("`listen` needs at least one ADDR:PORT".into());
    }
    items.iter().map(|item| parse_socket_addr(item)).collect()
}

/// One `ADDR:PORT`, IPv6 addresses in brackets.
pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(text.trim()).map_err(|_| {
        format!(
            "`{}` is not ADDR:PORT (e.g. 0.0.0.0:873 or [::1]:8730)",
            text.trim()
        )
    })
}

/// rsyncd's `address`: an IP address; empty means all addresses.
fn parse_address(value: &str) -> Result<Option<IpAddr>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    IpAddr::from_str(value)
        .map(Some)
        .map_err(|_| format!("`{value}` is not an IP address"))
}

/// rsyncd's `port`; 0 means the default port, as in rsyncd.
fn parse_port(value: &str) -> Result<Option<u16>, String> {
    let port = parse_whole(value).map_err(text)?;
    let port = u16::try_from(port).map_err(|_| format!("`{value}` is not a port (0 to 65535)"))?;
    Ok((port != 0).then_some(port))
}

/// A log level name.
pub(crate) fn parse_level(value: &str) -> Result<LevelFilter, String> {
    LevelFilter::from_str(value.trim()).map_err(|_| {
        format!(
            "`{}` is not a log level (expected error, warn, info, debug, trace or off)",
            value.trim()
        )
    })
}

/// `max connections`; rsyncd's negative "disable the module" is refused.
fn parse_max_connections(value: &str) -> Result<u32, String> {
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
fn parse_auth_digest(value: &str) -> Result<Option<String>, String> {
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

/// The warning for `auth users` rules that grant writing (`:rw`).
fn writable_rule_warning(rules: &[String]) -> Option<String> {
    let writable: Vec<&str> = rules
        .iter()
        .filter(|rule| {
            rule.rsplit_once(':')
                .is_some_and(|(_, access)| access.eq_ignore_ascii_case("rw"))
        })
        .map(String::as_str)
        .collect();
    (!writable.is_empty()).then(|| {
        format!(
            "`{}` would grant writing; upserv modules are read-only for everyone",
            writable.join(" ")
        )
    })
}

/// Checks an upstream archive URL template (SPEC §5).
pub(crate) fn check_upstream(url: &str) -> Result<(), String> {
    check_template(url)?;
    if !ends_with_any(url, &ARCHIVE_ENDINGS) {
        return Err(format!(
            "`{url}` does not end in {} (the archive type follows the ending)",
            ARCHIVE_ENDINGS.join(", ")
        ));
    }
    Ok(())
}

/// Checks an upstream checksum URL template (SPEC §5).
fn check_checksum_url(url: &str) -> Result<(), String> {
    check_template(url)?;
    if !ends_with_any(url, &CHECKSUM_ENDINGS) {
        return Err(format!(
            "`{url}` does not end in .md5 or .sha256 (the digest type follows the ending)"
        ));
    }
    Ok(())
}

/// Checks what every URL template needs: http(s) and the `{name}` placeholder.
fn check_template(url: &str) -> Result<(), String> {
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
pub(crate) fn check_cache_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("the cache size must be more than 0".into());
    }
    Ok(())
}

/// Checks a worker count and returns it as a `usize`.
pub(crate) fn check_workers(count: u64) -> Result<usize, String> {
    match usize::try_from(count) {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!("`{count}` workers: expected 1 to {MAX_WORKERS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ignoring_case_and_blanks_but_not_underscores() {
        let max = Param::Module(ModuleParam::MaxConnections);
        assert_eq!(lookup("max connections"), Some(max));
        assert_eq!(lookup("MaxConnections"), Some(max));
        assert_eq!(lookup("max  Con nections"), Some(max));
        assert_eq!(lookup("max_connections"), None);
        assert_eq!(underscore_hint("max_connections"), Some("max connections"));
        assert_eq!(underscore_hint("no_such"), None);
        assert_eq!(
            lookup("Builds Dir"),
            Some(Param::Global(GlobalParam::BuildsDir))
        );
        assert!(matches!(lookup("use chroot"), Some(Param::Ignored(_))));
        assert!(matches!(lookup("pre-xfer exec"), Some(Param::Refused(_))));
        assert_eq!(lookup("frobnicate"), None);
    }

    #[test]
    fn every_name_is_unique() {
        let mut keys: Vec<String> = GLOBAL_PARAMS
            .iter()
            .map(|p| p.name())
            .chain(MODULE_PARAMS.iter().map(|p| p.name()))
            .chain(IGNORED.iter().map(|(n, _)| *n))
            .chain(REFUSED.iter().map(|(n, _)| *n))
            .map(name_key)
            .collect();
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count);
    }

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
    fn listen_address_and_port() {
        let mut draft = GlobalDraft::default();
        assert_eq!(set_global(GlobalParam::Port, "8730", &mut draft), Ok(None));
        assert_eq!(
            draft.clone().resolve().listen,
            ["0.0.0.0:8730".parse().unwrap()]
        );
        assert_eq!(
            set_global(GlobalParam::Address, "::1", &mut draft),
            Ok(None)
        );
        assert_eq!(
            draft.clone().resolve().listen,
            ["[::1]:8730".parse().unwrap()]
        );
        assert_eq!(set_global(GlobalParam::Port, "0", &mut draft), Ok(None));
        assert_eq!(
            draft.clone().resolve().listen,
            ["[::1]:873".parse().unwrap()]
        );
        let warned = set_global(GlobalParam::Listen, "127.0.0.1:1, [::]:2", &mut draft);
        assert!(warned.unwrap().is_some());
        let both: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap(), "[::]:2".parse().unwrap()];
        assert_eq!(draft.resolve().listen, both);
        let mut draft = GlobalDraft::default();
        assert!(set_global(GlobalParam::Port, "65536", &mut draft).is_err());
        assert!(set_global(GlobalParam::Address, "localhost", &mut draft).is_err());
        assert!(set_global(GlobalParam::Listen, "1.2.3.4", &mut draft).is_err());
        assert!(set_global(GlobalParam::Listen, "", &mut draft).is_err());
    }

    #[test]
    fn module_values_are_checked() {
        let mut params = ModuleParams::default();
        let mut path = None;
        let mut set = |param, value: &str| set_module(param, value, &mut params, &mut path);
        assert!(set(ModuleParam::ReadOnly, "no")
            .unwrap_err()
            .contains("read only = no"));
        assert_eq!(set(ModuleParam::ReadOnly, "yes"), Ok(None));
        assert!(set(ModuleParam::WriteOnly, "true").is_err());
        assert!(set(ModuleParam::MaxConnections, "-1")
            .unwrap_err()
            .contains("negative"));
        assert!(set(ModuleParam::MaxConnections, "4294967296").is_err());
        assert!(set(ModuleParam::List, "maybe").is_err());
        assert!(set(ModuleParam::AuthDigest, "sha3").is_err());
        assert!(set(ModuleParam::AuthUsers, "joe admin:RW")
            .unwrap()
            .unwrap()
            .contains("admin:RW"));
        assert_eq!(set(ModuleParam::Path, "/srv/x///"), Ok(None));
        assert_eq!(path, Some(PathBuf::from("/srv/x")));
    }

    #[test]
    fn root_path_keeps_its_slash() {
        assert_eq!(optional_path("/"), Some(PathBuf::from("/")));
        assert_eq!(optional_path("///"), Some(PathBuf::from("/")));
        assert_eq!(optional_path(""), None);
    }

    #[test]
    fn worker_bounds() {
        assert_eq!(check_workers(1), Ok(1));
        assert_eq!(check_workers(1024), Ok(1024));
        assert!(check_workers(0).is_err());
        assert!(check_workers(1025).is_err());
    }
}
