//! Reads a parameter's value into the settings, and writes it back out as
//! the effective settings show it.
//!
//! Must not know about files, lines or sections: the parser decides where a
//! value goes and puts the location in front of the messages returned here.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::checks::{
    check_cache_size, check_checksum_url, check_template, check_upstream, check_workers,
    parse_address, parse_auth_digest, parse_level, parse_listen, parse_max_connections, parse_port,
    parse_socket_addrs, parse_syslog_facility,
};
use super::params::{GlobalParam, ModuleParam};
use super::values::{
    format_bool, format_conf_list, format_size, parse_bool, parse_seconds, parse_size, parse_whole,
    split_conf_list, split_filter_words, split_hosts, ValueError,
};
use super::{default_builds_dir, dual_stack, Global, Layout, ModuleParams, DEFAULT_PORT};

/// The global settings while a file is read: the listen address may be
/// given as `listen` or as rsyncd's `address` and `port`, resolved at the end.
#[derive(Debug, Clone, Default)]
pub(super) struct GlobalDraft {
    pub(crate) global: Global,
    pub(crate) address: Option<IpAddr>,
    pub(crate) port: Option<u16>,
    pub(crate) listen_given: bool,
}

impl GlobalDraft {
    /// The global settings with `address`/`port` turned into `listen`.
    pub(super) fn resolve(mut self) -> Global {
        if !self.listen_given && (self.address.is_some() || self.port.is_some()) {
            let port = self.port.unwrap_or(DEFAULT_PORT);
            self.global.listen = match self.address {
                Some(address) => vec![SocketAddr::new(address, port)],
                None => dual_stack(port),
            };
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
        GlobalParam::SyslogFacility => global.syslog_facility = parse_syslog_facility(value)?,
        GlobalParam::BuildsDir => {
            global.builds_dir = optional_path(value).unwrap_or_else(default_builds_dir);
        }
        GlobalParam::Upstream => global.upstream = optional_template(value, check_upstream)?,
        GlobalParam::UpstreamChecksum => {
            global.upstream_checksum = optional_template(value, check_checksum_url)?;
        }
        GlobalParam::UpstreamContents => {
            global.upstream_contents = optional_template(value, check_template)?;
        }
        GlobalParam::Layout => global.layout = Layout::from_str(value)?,
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
        GlobalParam::FetchMinRate => global.fetch_min_rate = parse_size(value).map_err(text)?,
        GlobalParam::MaxConnectionsPerHost => {
            global.max_connections_per_host = if value.is_empty() {
                None
            } else {
                Some(parse_whole(value).map_err(text)?)
            };
        }
        GlobalParam::ProxyProtocol => global.proxy_protocol = parse_bool(value).map_err(text)?,
        GlobalParam::ProxyProtocolFrom => global.proxy_protocol_from = split_hosts(value),
        GlobalParam::MetricsListen => {
            global.metrics_listen = if value.is_empty() {
                None
            } else {
                Some(parse_socket_addrs(value)?[0])
            };
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
        GlobalParam::SyslogFacility => global
            .syslog_facility
            .map(|f| f.name.to_owned())
            .unwrap_or_default(),
        GlobalParam::BuildsDir => path_text(Some(&global.builds_dir)),
        GlobalParam::Upstream => global.upstream.clone().unwrap_or_default(),
        GlobalParam::UpstreamChecksum => global.upstream_checksum.clone().unwrap_or_default(),
        GlobalParam::UpstreamContents => global.upstream_contents.clone().unwrap_or_default(),
        GlobalParam::Layout => global.layout.name().to_owned(),
        GlobalParam::CacheSize => format_size(global.cache_size),
        GlobalParam::Workers => global.workers.to_string(),
        GlobalParam::FetchTimeout => global.fetch_timeout.as_secs().to_string(),
        GlobalParam::FetchMinRate => format_size(global.fetch_min_rate),
        GlobalParam::MaxConnectionsPerHost => global
            .max_connections_per_host
            .map(|n| n.to_string())
            .unwrap_or_default(),
        GlobalParam::ProxyProtocol => format_bool(global.proxy_protocol).to_owned(),
        GlobalParam::ProxyProtocolFrom => global.proxy_protocol_from.join(", "),
        GlobalParam::MetricsListen => global
            .metrics_listen
            .map(|a| a.to_string())
            .unwrap_or_default(),
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

/// A path as written in the file; empty for none. A path that ends in a
/// blank gets a trailing slash (rsyncd's own advice): reading the line back
/// trims blanks from the value but strips the slash only after that.
pub(super) fn path_text(path: Option<&PathBuf>) -> String {
    let mut text = path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if text.ends_with(char::is_whitespace) {
        text.push('/');
    }
    text
}

/// A `ValueError` as a plain message.
pub(super) fn text(error: ValueError) -> String {
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
/// A list of URL templates separated by blanks (one per mirror), each
/// checked, kept with single spaces between them; `None` when empty.
pub(super) fn optional_template(
    value: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<String>, String> {
    let templates: Vec<&str> = value.split_whitespace().collect();
    if templates.is_empty() {
        return Ok(None);
    }
    for template in &templates {
        check(template)?;
    }
    Ok(Some(templates.join(" ")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_and_port() {
        let mut draft = GlobalDraft::default();
        assert_eq!(set_global(GlobalParam::Port, "8730", &mut draft), Ok(None));
        assert_eq!(draft.clone().resolve().listen, dual_stack(8730));
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
}
