//! The parameter names upserv knows: server-wide and per-module ones, and
//! the rsyncd parameters it ignores or refuses, with rsyncd's rule for
//! comparing names (case and blanks do not matter).
//!
//! Must not read values: `assign` does that.

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
    FetchMinRate,
    MaxConnectionsPerHost,
    ProxyProtocol,
    ProxyProtocolFrom,
    SyslogFacility,
    MetricsListen,
}

/// Every global parameter, in the order the effective settings show them.
pub(super) const GLOBAL_PARAMS: [GlobalParam; 21] = [
    GlobalParam::Listen,
    GlobalParam::Address,
    GlobalParam::Port,
    GlobalParam::MotdFile,
    GlobalParam::PidFile,
    GlobalParam::LogFile,
    GlobalParam::LogLevel,
    GlobalParam::SyslogFacility,
    GlobalParam::BuildsDir,
    GlobalParam::Upstream,
    GlobalParam::UpstreamChecksum,
    GlobalParam::UpstreamContents,
    GlobalParam::Layout,
    GlobalParam::CacheSize,
    GlobalParam::Workers,
    GlobalParam::FetchTimeout,
    GlobalParam::FetchMinRate,
    GlobalParam::MaxConnectionsPerHost,
    GlobalParam::ProxyProtocol,
    GlobalParam::ProxyProtocolFrom,
    GlobalParam::MetricsListen,
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
            GlobalParam::FetchMinRate => "fetch min rate",
            GlobalParam::MaxConnectionsPerHost => "max connections per host",
            GlobalParam::ProxyProtocol => "proxy protocol",
            GlobalParam::ProxyProtocolFrom => "proxy protocol from",
            GlobalParam::SyslogFacility => "syslog facility",
            GlobalParam::MetricsListen => "metrics listen",
        }
    }

    /// Whether the value is a path, taken relative to the file's folder.
    pub(super) fn is_path(self) -> bool {
        matches!(
            self,
            GlobalParam::MotdFile
                | GlobalParam::PidFile
                | GlobalParam::LogFile
                | GlobalParam::BuildsDir
        )
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

    /// Whether the value is a path, taken relative to the file's folder.
    pub(super) fn is_path(self) -> bool {
        matches!(
            self,
            ModuleParam::Path
                | ModuleParam::SecretsFile
                | ModuleParam::IncludeFrom
                | ModuleParam::ExcludeFrom
        )
    }
}

/// rsyncd's names for parameters upserv calls otherwise.
const ALIASES: [(&str, GlobalParam); 1] =
    [("proxy protocol hosts", GlobalParam::ProxyProtocolFrom)];

/// rsyncd parameters upserv accepts and ignores, with the reason it gives.
const IGNORED: [(&str, &str); 24] = [
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
    (
        "syslog tag",
        "upserv's syslog lines are always tagged `upserv`",
    ),
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
];
const NO_CHROOT: &str = "upserv never chroots; it keeps every path inside its module itself";
const NO_USER_SWITCH: &str =
    "upserv does not change user or group; run it as the user it should serve as";
const RECEIVING_ONLY: &str = "it only matters when receiving files, which upserv never does";
const LOGS_PER_CONNECTION: &str = "upserv logs one line per connection";

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
    if let Some(&(_, param)) = ALIASES.iter().find(|(n, _)| matches(n)) {
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

/// For an unknown name, the known parameter it probably means: the one
/// fewest letter edits away (ignoring case and blanks), if close enough to
/// be a typo, such as `upstrem` or `max_connections`.
pub(super) fn nearest_name(name: &str) -> Option<&'static str> {
    let key = name_key(name);
    let global = GLOBAL_PARAMS.iter().map(|p| p.name());
    let module = MODULE_PARAMS.iter().map(|p| p.name());
    let ignored = IGNORED.iter().chain(REFUSED.iter()).map(|(n, _)| *n);
    global
        .chain(module)
        .chain(ignored)
        .map(|candidate| (edit_distance(&key, &name_key(candidate)), candidate))
        .filter(|&(distance, _)| distance <= (key.chars().count() / 3).max(1))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
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
        assert_eq!(nearest_name("max_connections"), Some("max connections"));
        assert_eq!(nearest_name("upstrem"), Some("upstream"));
        assert_eq!(nearest_name("Builds Directory"), None);
        assert_eq!(nearest_name("frobnicate"), None);
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
}
