//! Configuration: the rsyncd.conf-syntax file (the man page, src/upserv.8), its defaults and the
//! command-line overrides (README, Commands), resolved into one [`Settings`] value.
//!
//! The file is read the way rsyncd reads rsyncd.conf, so an administrator's
//! existing file mostly works: parameters before the first `[section]` or in
//! a `[global]` section are global; module parameters given there are
//! defaults for the modules that follow; every other section is a static
//! module; `&include`/`&merge` pull in other files. Problems that make the
//! configuration unusable are a [`ConfigError`] naming `FILE:LINE`; things
//! upserv ignores are [`ConfigWarning`]s returned to the caller to log.
//!
//! This module reads files and, in [`load_settings`], the `RUST_LOG`
//! variable. It must not act on settings: no sockets, no logging, no
//! touching the builds directory. Checking client addresses against
//! `hosts allow`, parsing filter rules and authenticating users are the
//! daemon's and the protocol's jobs; here those values are only kept.

mod assign;
mod checks;
mod display;
mod error;
mod lexer;
mod params;
mod parse;
mod values;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

use crate::cache::{check_paired, Layout};

pub use checks::SyslogFacility;
pub use checks::{
    check_cache_size, check_upstream, check_workers, parse_level, parse_socket_addrs,
};
pub use error::{ConfigError, ConfigWarning, Origin};
pub(crate) use values::parse_size;
pub(crate) use values::parse_whole;

/// The configuration file read when `--config` is not given, if it exists.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/upserv.conf";
/// Where builds live when neither the file nor `--builds` says.
pub(crate) const DEFAULT_BUILDS_DIR: &str = "./builds";
/// rsyncd's port.
pub(crate) const DEFAULT_PORT: u16 = 873;
/// The disk budget for cached builds when none is configured: 16 GiB.
pub(crate) const DEFAULT_CACHE_SIZE: u64 = 16 << 30;
/// Worker threads (connections served at once) when none is configured.
pub(crate) const DEFAULT_WORKERS: usize = 8;
/// The most worker threads upserv accepts; each serves one connection.
pub(crate) const MAX_WORKERS: usize = 1024;
/// How long an upstream download may see no data before it is abandoned.
pub(crate) const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per second a download must average over each minute (`fetch min
/// rate`): a slow school uplink manages far more, a stuck mirror trickling
/// a byte now and then does not.
pub(crate) const DEFAULT_FETCH_MIN_RATE: u64 = 1024;
/// Connections one client address may hold at once when the configuration
/// does not say: a laptop pulls one build at a time, so a few leave room for
/// a retry while keeping one host from taking every worker.
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_HOST: u64 = 4;
/// The log level when neither `--log-level`, `RUST_LOG` nor the file says.
pub(crate) const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::Info;

/// Everything upserv runs with: global settings and the static modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub global: Global,
    /// The static modules, in the order the file first defines them.
    pub(crate) modules: Vec<Module>,
    /// The configuration file read, if any.
    pub(crate) source: Option<PathBuf>,
}

/// Server-wide settings.
///
/// `max connections`, `timeout`, `hosts allow`, `hosts deny` and the other
/// module parameters given in the global part of the file live in
/// [`Global::module_defaults`]: as in rsyncd they are defaults for every
/// module (each static module already has them applied), and they are what
/// a build module gets (see [`Settings::build_module`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Addresses to listen on in `daemon` mode: `--listen`, else the file's
    /// `listen`, else its `address` and `port`, else [`dual_stack`] on 873.
    /// Host names are resolved when read.
    pub listen: Vec<SocketAddr>,
    pub motd_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    /// Log to syslog with this facility (when there is no `log file`).
    pub syslog_facility: Option<SyslogFacility>,
    pub pid_file: Option<PathBuf>,
    pub builds_dir: PathBuf,
    /// URL templates of build archives, one per mirror, separated by single
    /// spaces; each contains `{name}`.
    pub upstream: Option<String>,
    /// URL templates of the archives' `.md5`/`.sha256` files: one, or one
    /// per mirror; each contains `{name}`.
    pub upstream_checksum: Option<String>,
    /// URL templates of the olpc `contents` manifests, paired like the checksums.
    pub upstream_contents: Option<String>,
    pub layout: Layout,
    /// Disk budget of the builds directory in bytes; never 0.
    pub cache_size: u64,
    /// Worker threads; 1 to [`MAX_WORKERS`].
    pub workers: usize,
    /// Idle-read timeout of upstream downloads; never zero.
    pub fetch_timeout: Duration,
    /// Bytes per second a download must average over each minute; 0: no minimum.
    pub fetch_min_rate: u64,
    /// Connections one client address may hold at once (0: no limit).
    /// `None`, the default, means [`DEFAULT_MAX_CONNECTIONS_PER_HOST`] for
    /// every client except loopback ones, which are not limited.
    pub(crate) max_connections_per_host: Option<u64>,
    /// Every connection starts with a PROXY protocol header naming the
    /// client (it comes through a load balancer).
    pub(crate) proxy_protocol: bool,
    /// Peers whose PROXY headers are trusted, in `hosts allow` syntax;
    /// empty: any peer.
    pub(crate) proxy_protocol_from: Vec<String>,
    /// Where the daemon answers `GET /metrics` (`metrics listen`); off
    /// when `None`.
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub log_level: LevelFilter,
    /// Module parameters as they stand at the end of the global part of the
    /// file (after every `[global]` section).
    pub(crate) module_defaults: ModuleParams,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            listen: dual_stack(DEFAULT_PORT),
            motd_file: None,
            log_file: None,
            syslog_facility: None,
            pid_file: None,
            builds_dir: default_builds_dir(),
            upstream: None,
            upstream_checksum: None,
            upstream_contents: None,
            layout: Layout::Plain,
            cache_size: DEFAULT_CACHE_SIZE,
            workers: DEFAULT_WORKERS,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            fetch_min_rate: DEFAULT_FETCH_MIN_RATE,
            max_connections_per_host: None,
            proxy_protocol: false,
            proxy_protocol_from: Vec::new(),
            metrics_listen: None,
            log_level: DEFAULT_LOG_LEVEL,
            module_defaults: ModuleParams::default(),
        }
    }
}

/// [`DEFAULT_BUILDS_DIR`] in the current directory, made absolute: the
/// effective settings then read back the same from a file in any folder
/// (where relative paths are the file's folder's).
pub(crate) fn default_builds_dir() -> PathBuf {
    match std::env::current_dir() {
        Ok(dir) => dir.join("builds"),
        Err(_) => PathBuf::from(DEFAULT_BUILDS_DIR),
    }
}

/// Every address of both families on `port`, `[::]` first, as rsyncd
/// listens by default. The daemon binds the IPv6 one IPv6-only, so both
/// binds succeed, and goes on with IPv4 alone when IPv6 is unavailable.
pub(crate) fn dual_stack(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
    ]
}

/// A static module: a `[section]` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Module {
    /// The section name, blanks collapsed; never contains `/`.
    pub(crate) name: String,
    /// The served directory, trailing slashes removed.
    pub(crate) path: PathBuf,
    pub(crate) params: ModuleParams,
}

/// The parameters of one module (or the defaults for modules). Lists are
/// already split the way rsyncd splits them; matching them is the daemon's
/// job. Modules are always read-only, so there is no field for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleParams {
    /// Shown next to the name in a module listing.
    pub(crate) comment: String,
    /// Whether the module appears in `rsync rsync://host/` listings.
    pub(crate) list: bool,
    /// Address, CIDR, netmask or host-name patterns, split on blanks and commas.
    pub(crate) hosts_allow: Vec<String>,
    pub(crate) hosts_deny: Vec<String>,
    /// Connections to this module at once; 0 means no limit.
    pub(crate) max_connections: u32,
    /// I/O idle timeout; `None` (the file's `0`) means none.
    pub(crate) timeout: Option<Duration>,
    /// Rules such as `joe`, `@group:deny`, split as rsyncd does (the
    /// leading-comma form allows spaces inside a rule).
    pub(crate) auth_users: Vec<String>,
    pub(crate) secrets_file: Option<PathBuf>,
    /// Refuse a secrets file that others may read or write.
    pub(crate) strict_modes: bool,
    /// Weakest challenge-response digest accepted (`md4`, `md5`, `sha1`,
    /// `sha256`, `sha512`, lower case); `None` accepts any.
    pub(crate) auth_digest: Option<String>,
    /// The daemon filter chain, in rsyncd's order of priority: `filter`
    /// (raw rule text), `include from`, `include`, `exclude from`, `exclude`.
    pub(crate) filter: Option<String>,
    pub(crate) include_from: Option<PathBuf>,
    /// One pattern per item; an item may carry a `+ `/`- ` prefix.
    pub(crate) include: Vec<String>,
    pub(crate) exclude_from: Option<PathBuf>,
    /// One pattern per item; an item may carry a `+ `/`- ` prefix.
    pub(crate) exclude: Vec<String>,
    /// Client options to refuse, as written (`delete`, `c`, `delete-*`,
    /// `!delete-during`).
    pub(crate) refuse_options: Vec<String>,
    /// Send a clean I/O-error flag even when reading some files failed.
    pub(crate) ignore_errors: bool,
    /// Leave files the server cannot read out of the file list.
    pub(crate) ignore_nonreadable: bool,
    /// Send no user and group names, as if the client asked `--numeric-ids`.
    pub(crate) numeric_ids: bool,
    /// Look up the client's host name (for host-name patterns in hosts lists).
    pub(crate) reverse_lookup: bool,
    /// Resolve host names in hosts lists to addresses.
    pub(crate) forward_lookup: bool,
}

impl Default for ModuleParams {
    fn default() -> Self {
        ModuleParams {
            comment: String::new(),
            list: true,
            hosts_allow: Vec::new(),
            hosts_deny: Vec::new(),
            max_connections: 0,
            timeout: None,
            auth_users: Vec::new(),
            secrets_file: None,
            strict_modes: true,
            auth_digest: None,
            filter: None,
            include_from: None,
            include: Vec::new(),
            exclude_from: None,
            exclude: Vec::new(),
            refuse_options: Vec::new(),
            ignore_errors: false,
            ignore_nonreadable: false,
            numeric_ids: false,
            reverse_lookup: true,
            forward_lookup: true,
        }
    }
}

impl Settings {
    #[cfg(test)]
    /// The static module called exactly `name` (case-sensitive, as rsyncd).
    pub(crate) fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|module| module.name == name)
    }

    /// The module serving build `name` from the builds directory, with the
    /// module defaults. The caller checks that `name` is a build (and not
    /// shadowed by a static module).
    #[cfg(test)]
    pub(crate) fn build_module(&self, name: &str) -> Module {
        Module {
            name: name.to_owned(),
            path: self.global.builds_dir.join(name),
            params: self.global.module_defaults.clone(),
        }
    }
}

/// What the command line sets over the configuration file (README, Commands). Values
/// are already parsed; [`load_settings`] applies the checks that need the
/// configuration's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--config PATH`.
    pub(crate) config: Option<PathBuf>,
    /// `--builds DIR`.
    pub(crate) builds_dir: Option<PathBuf>,
    /// `--listen ADDR:PORT`, in order; empty when not given.
    pub(crate) listen: Vec<SocketAddr>,
    /// `--upstream URL-TEMPLATE`.
    pub(crate) upstream: Option<String>,
    /// `--cache-size SIZE`, in bytes.
    pub(crate) cache_size: Option<u64>,
    /// `--workers N`.
    pub(crate) workers: Option<usize>,
    /// `--log-level LEVEL`.
    pub(crate) log_level: Option<LevelFilter>,
}

/// Reads a configuration file into settings (defaults where it is silent).
pub(crate) fn parse_config_file(
    path: &Path,
) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
    let mut loader = parse::Loader::new();
    loader.load_main(path)?;
    loader.finish(Some(path))
}

/// Reads configuration text as if it were the file `name`; `&include` and
/// `&merge` in it read real files. For tests and tools.
pub fn parse_config_str(
    text: &str,
    name: &Path,
) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
    let mut loader = parse::Loader::new();
    loader.load_text(text, name)?;
    loader.finish(Some(name))
}

/// The effective settings for this run: the configuration file (`--config`,
/// else [`DEFAULT_CONFIG_PATH`] when it exists, else none), then the
/// command-line overrides. The log level is `--log-level`, else `RUST_LOG`
/// (a level name), else the file's `log level`, else info.
pub fn load_settings(overrides: &Overrides) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    load_with(
        overrides,
        Path::new(DEFAULT_CONFIG_PATH),
        rust_log.as_deref(),
    )
}

/// [`load_settings`] with the default path and `RUST_LOG` passed in.
fn load_with(
    overrides: &Overrides,
    default_config: &Path,
    rust_log: Option<&str>,
) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
    let config = match &overrides.config {
        Some(path) => Some(path.as_path()),
        None => default_config.exists().then_some(default_config),
    };
    let (mut settings, mut warnings) = match config {
        Some(path) => parse_config_file(path)?,
        None => parse::Loader::new().finish(None)?,
    };
    apply_overrides(&mut settings.global, overrides)?;
    let mirrors = settings
        .global
        .upstream
        .as_deref()
        .map_or(0, |u| u.split(' ').count());
    for (param, templates) in [
        ("upstream checksum", &settings.global.upstream_checksum),
        ("upstream contents", &settings.global.upstream_contents),
    ] {
        check_paired(param, templates.as_deref(), mirrors).map_err(|message| {
            let origin = match config {
                Some(path) => Origin::File(path.to_path_buf()),
                None => Origin::Option("--upstream"),
            };
            ConfigError::new(origin, message)
        })?;
    }
    if overrides.log_level.is_none() {
        if let Some(level) = level_from_env(rust_log, &mut warnings) {
            settings.global.log_level = level;
        }
    }
    Ok((settings, warnings))
}

/// Puts the command-line values over the file's, checking the ones whose
/// rules live in the configuration.
fn apply_overrides(global: &mut Global, overrides: &Overrides) -> Result<(), ConfigError> {
    let check = |option: &'static str, result: Result<(), String>| {
        result.map_err(|message| ConfigError::new(Origin::Option(option), message))
    };
    if let Some(dir) = &overrides.builds_dir {
        global.builds_dir = dir.clone();
    }
    if !overrides.listen.is_empty() {
        global.listen = overrides.listen.clone();
    }
    if let Some(upstream) = &overrides.upstream {
        global.upstream = assign::optional_template(upstream, check_upstream)
            .map_err(|message| ConfigError::new(Origin::Option("--upstream"), message))?;
    }
    if let Some(size) = overrides.cache_size {
        check("--cache-size", check_cache_size(size))?;
        global.cache_size = size;
    }
    if let Some(workers) = overrides.workers {
        global.workers = check_workers(workers as u64)
            .map_err(|message| ConfigError::new(Origin::Option("--workers"), message))?;
    }
    if let Some(level) = overrides.log_level {
        global.log_level = level;
    }
    Ok(())
}

/// The level `RUST_LOG` names, if it is set to a plain level name; anything
/// else (such as `upserv=debug`) is reported and ignored.
fn level_from_env(
    rust_log: Option<&str>,
    warnings: &mut Vec<ConfigWarning>,
) -> Option<LevelFilter> {
    let text = rust_log?.trim();
    if text.is_empty() {
        return None;
    }
    match LevelFilter::from_str(text) {
        Ok(level) => Some(level),
        Err(_) => {
            warnings.push(ConfigWarning::new(
                Origin::Env("RUST_LOG"),
                format!(
                    "`{text}` is not a log level (error, warn, info, debug, trace or off); ignored"
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
