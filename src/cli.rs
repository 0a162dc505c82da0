//! The command line (README, Commands): turns upserv's arguments into an
//! [`Invocation`] (the command to run and the options that override the
//! configuration file), and holds the `--help` text users read.
//!
//! Parsing is hand-written: a few subcommands and a handful of options do
//! not need a crate. Options may come before or after the command, as
//! `--opt VALUE` or `--opt=VALUE`; `--` ends the options. `--help`/`-h` and
//! `--version`/`-V` win wherever they appear before `--`.
//!
//! This module must not read files or the environment: loading the
//! configuration is `config::load_settings`'s job, running the command is
//! the binary's.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::bench::MAX_CLIENTS;

use crate::cache::is_build_name;
use crate::config::{
    check_cache_size, check_workers, parse_level, parse_size, parse_socket_addrs, parse_whole,
    Overrides,
};

/// The data size `upserv bench` uses when `--size` is not given: 256 MiB.
pub(crate) const DEFAULT_BENCH_SIZE: u64 = 256 << 20;

/// What upserv was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Listen for rsync connections.
    Daemon,
    /// Serve one connection on stdin/stdout (`serve` and `server`).
    Serve,
    /// Put these builds into the cache now; names are valid build names.
    Fetch(Vec<String>),
    /// Print the cached builds.
    List,
    /// Ask the running daemon what it is doing (as JSON with `json`).
    Status { json: bool },
    /// Make a build sticky.
    Pin(String),
    /// Make a build evictable again.
    Unpin(String),
    /// Evict down to the budget now (or only print what would go).
    Gc { dry_run: bool },
    /// Remove one cached build now.
    Evict(String),
    /// Download a cached build again and replace it once the new one is ready.
    Refetch(String),
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// Measure the delta engine: on generated data of `size` bytes, or on
    /// `pair` = (FILE, BASIS) when given; with `clients`, that many
    /// identical laptops with and without the delta memo.
    Bench {
        size: u64,
        pair: Option<(PathBuf, PathBuf)>,
        clients: Option<u32>,
    },
    /// Print [`help`], or with a command name that command's [`command_help`].
    Help(Option<&'static str>),
    /// Print [`version_text`].
    Version,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub overrides: Overrides,
}

/// A command line that makes no sense; the binary prints it and exits 2.
/// Displays as one line naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl UsageError {
    fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// The `--version` line.
pub fn version_text() -> String {
    format!(
        "upserv {} (rsync daemon, protocol 29)",
        env!("CARGO_PKG_VERSION")
    )
}

/// One command: how it is called, what `upserv --help` says of it, its
/// own `--help` text, and how its operands are read. Adding a command is
/// one row of [`COMMANDS`] and a [`Command`] variant.
struct Spec {
    name: &'static str,
    /// What follows the name in the usage line.
    usage: &'static str,
    /// One line for the list of commands.
    summary: &'static str,
    /// The command's own help, after its usage line.
    details: &'static str,
    parse: fn(&Parsed, Vec<OsString>) -> Result<Command, UsageError>,
}

/// Every command, in the order `--help` lists them.
const COMMANDS: [Spec; 14] = [
    Spec {
        name: "daemon",
        usage: "[OPTIONS]",
        summary: "listen for rsync connections",
        details: "\
Listens for rsync clients on every --listen address (default [::]:873 and
0.0.0.0:873: both families, as rsyncd; IPv4 alone, with a warning, when the
system has no IPv6). Host names are resolved at startup. Startup errors go
to stderr; the running log goes to the `log file`, else to syslog when
`syslog facility` is set, else to stderr (without timestamps under systemd).
SIGTERM or SIGINT: stop after the transfers in flight. SIGHUP: read the
configuration again for new connections and reopen the log file. SIGUSR1:
reopen the log file (after logrotate moved it). Warns when run as root.",
        parse: |_, operands| no_operands("daemon", &operands, Command::Daemon),
    },
    Spec {
        name: "serve",
        usage: "[OPTIONS]",
        summary: "serve one connection on stdin/stdout (inetd, xinetd, systemd Accept=yes)",
        details: "\
Serves one rsync client on stdin/stdout, for inetd, xinetd or a systemd
socket unit with Accept=yes. Logs to the `log file`, else to syslog when
`syslog facility` is set, else to DIR/.upserv/upserv.log; never to stderr.",
        parse: |_, operands| no_operands("serve", &operands, Command::Serve),
    },
    Spec {
        name: "server",
        usage: "[OPTIONS]",
        summary: "the same as serve (xinetd's `server_args = server`)",
        details: "The same as `upserv serve`.",
        parse: |_, operands| no_operands("server", &operands, Command::Serve),
    },
    Spec {
        name: "fetch",
        usage: "[OPTIONS] NAME...",
        summary: "put builds into the cache now, showing progress",
        details: "\
Downloads and unpacks each build NAME that is not cached yet, showing
progress on stderr. Run as root on a builds directory owned by another
user, it works as that user.",
        parse: |_, operands| fetch_names(&operands).map(Command::Fetch),
    },
    Spec {
        name: "list",
        usage: "[OPTIONS]",
        summary: "cached builds: name, size, last access, sticky, in use; totals, downloads",
        details: "\
Prints the cached builds: name, size, last access, sticky, in use; then
the totals and the downloads in progress (asked of the running daemon, or
read from the partial downloads when none runs). Needs only read access
to the builds directory.",
        parse: |_, operands| no_operands("list", &operands, Command::List),
    },
    Spec {
        name: "status",
        usage: "[OPTIONS] [--json]",
        summary: "ask the running daemon: downloads in progress, connections, the cache",
        details: "\
Asks the daemon running on this builds directory, over its control socket
DIR/.upserv/control.sock, and prints each download in progress (build,
bytes and percent, rate, ETA, laptops waiting), the upstream mirrors and
which count as down, each connection (address, module, bytes sent, seconds) and the cache (used against the budget,
builds, sticky ones). With --json, the same as one JSON object. Needs only
read access; exits 1 when no daemon answers.",
        parse: |parsed, operands| {
            no_operands("status", &operands, Command::Status { json: parsed.json })
        },
    },
    Spec {
        name: "pin",
        usage: "[OPTIONS] NAME",
        summary: "make a build sticky: never evicted",
        details: "Makes build NAME sticky: eviction never removes it.",
        parse: |_, operands| one_entry_name("pin", &operands).map(Command::Pin),
    },
    Spec {
        name: "unpin",
        usage: "[OPTIONS] NAME",
        summary: "make a sticky build evictable again",
        details: "Makes the sticky build NAME evictable again.",
        parse: |_, operands| one_entry_name("unpin", &operands).map(Command::Unpin),
    },
    Spec {
        name: "gc",
        usage: "[OPTIONS] [--dry-run]",
        summary: "evict down to the cache size now and print what goes",
        details: "\
Evicts the builds used least recently (never sticky or busy ones) until the
builds directory fits the cache size, and prints what went. With --dry-run
it only prints what would go, and needs only read access.",
        parse: |parsed, operands| {
            no_operands(
                "gc",
                &operands,
                Command::Gc {
                    dry_run: parsed.dry_run,
                },
            )
        },
    },
    Spec {
        name: "evict",
        usage: "[OPTIONS] NAME",
        summary: "remove one cached build now",
        details: "\
Removes the cached build NAME now. A sticky build must be unpinned first;
a build that laptops are pulling is left alone (exit 1).",
        parse: |_, operands| one_entry_name("evict", &operands).map(Command::Evict),
    },
    Spec {
        name: "refetch",
        usage: "[OPTIONS] NAME",
        summary: "download a cached build again and replace it when complete",
        details: "\
Downloads and unpacks build NAME again into scratch space; only when the
new tree is complete does it replace the cached one, in one step, so
laptops never see half a build. While laptops are pulling the old tree,
it waits for them to finish (new pulls wait for the swap).",
        parse: |_, operands| one_entry_name("refetch", &operands).map(Command::Refetch),
    },
    Spec {
        name: "check-config",
        usage: "[OPTIONS]",
        summary: "check the configuration and print the effective settings",
        details: "\
Reads the configuration, checks what it points at (module paths, the builds
directory, secrets files as `strict modes` would, host names in hosts
allow/deny) and prints the effective settings, itself a valid configuration.
Exits 2 on an error, including a parameter neither upserv nor rsyncd knows
(the nearest known name is suggested); rsyncd parameters upserv ignores
are warnings.",
        parse: |_, operands| no_operands("check-config", &operands, Command::CheckConfig),
    },
    Spec {
        name: "bench",
        usage: "[--size SIZE] [--clients N] [FILE BASIS]",
        summary: "delta-engine throughput (MB/s) on this machine",
        details: "\
Without FILE and BASIS, generates SIZE bytes of data (default 256M) and a
changed copy and measures the delta engine on them. With them, measures
sending FILE to a client that already holds BASIS.

With --clients N, measures N identical laptops asking at once for the
changed copy (or FILE) against the same basis, one thread each as the
daemon serves a build: first through the delta memo (the matcher runs
once, the others replay it), then without it (every laptop pays for its
own matching). Prints each one's CPU seconds (the whole process's),
wall seconds and how many requests ran the matcher, then the ratio of
the two CPU times.",
        parse: |parsed, operands| bench(operands, parsed.size, parsed.clients),
    },
    Spec {
        name: "help",
        usage: "[COMMAND]",
        summary: "this help, or a command's own (also: upserv COMMAND --help)",
        details: "Prints the help, or with COMMAND that command's own help.",
        parse: |_, operands| help_topic(&operands),
    },
];

/// The `--help` text before the list of commands.
const HELP_INTRO: &str = "\
upserv: an rsync daemon for school servers that fetches OS builds on demand

Laptops pull builds with a stock rsync client from rsync://SERVER/NAME/.
A build the server does not hold is downloaded from the upstream, unpacked
into the builds directory and served; the directory is kept under the cache
size by evicting the builds used least recently (never sticky ones).

USAGE
";

/// The `--help` text after the list of commands.
const HELP_OPTIONS: &str = "  upserv --help | --version

OPTIONS
Options go before or after the command, as --opt VALUE or --opt=VALUE; each
overrides the configuration file. `--` ends the options.
  --config PATH        configuration file (rsyncd.conf syntax);
                       default /etc/upserv.conf if it exists, else none
  --builds DIR         builds directory: one directory per build, served as
                       module NAME; default ./builds
  --listen ADDR:PORT   where the daemon listens; repeat for several addresses;
                       IPv6 in brackets, e.g. [::1]:873, or HOST:PORT;
                       default [::]:873 and 0.0.0.0:873
                       (ports below 1024 need privilege: try 0.0.0.0:8730)
  --upstream URL       URL template of build archives, {name} standing for the
                       build, e.g. https://host/builds/{name}.tree.tar.xz
                       (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz or .tar.lzma);
                       several (repeat the option, or separate them by
                       spaces) are mirrors tried in order
  --cache-size SIZE    disk budget of the builds directory: bytes, or K, M, G,
                       T (1024-based), e.g. 500M, 16G, 1T; default 16G
  --workers N          connections served at once; default 8
  --log-level LEVEL    error, warn, info, debug or trace (or off);
                       default RUST_LOG, else the file's `log level`, else info
  --dry-run            gc only: print what would be evicted, delete nothing
  --json               status only: the same as one JSON object
  --size SIZE          bench only: size of the generated data; default 256M
  --clients N          bench only: N identical laptops, with and without the
                       delta memo (1 to 1024)
  -h, --help           print this help (after a command: its own) and exit
  -V, --version        print the version and exit

BENCH
Without FILE and BASIS, bench generates SIZE bytes of data and a changed copy.
With them, it measures sending FILE to a client that already holds BASIS.
Each case (unchanged, changed and entirely different data, or FILE) is
measured with every --checksum-choice digest: md4 (the default), md5, sha1,
xxh64, xxh3, xxh128.

CONFIGURATION FILE
rsyncd.conf syntax: `name = value` lines, `[module]` sections, `#` or `;`
comment lines, `\\` at the end of a line continues it, names ignore case and
blanks. Relative paths are taken from the folder of the file they are in.
Global: address, port, listen, motd file, log file, syslog facility, pid
file, log level, builds dir, upstream (one or more mirrors), upstream
checksum (URL template ending in .md5 or .sha256; one, or one per mirror),
upstream contents (URL template of olpc manifests; the same), layout (plain
or olpc), cache size, workers, fetch timeout (seconds), fetch min rate
(bytes per second over each minute; default 1K, 0: none), max connections
per host, proxy protocol (yes: every connection comes from a load balancer
and starts with a PROXY header naming the client), proxy protocol from (the
balancers trusted to send one),
metrics listen (ADDR:PORT serving GET /metrics for Prometheus; off unless
set).
Per module (or as defaults in the global part): path, comment, list,
read only (always yes), hosts allow, hosts deny, max connections, timeout,
auth users, secrets file, strict modes, auth digest, filter, include,
include from, exclude, exclude from, refuse options, ignore errors,
ignore nonreadable, numeric ids, reverse lookup, forward lookup.
Every directory in the builds directory is a module too; a [module] of the
same name hides it. Unknown parameters are warned about and ignored by the
daemon; check-config refuses them.

SERVICE USER
Run as root on a builds directory owned by another user, fetch, pin, unpin,
gc, evict and refetch switch to that user first, so that the daemon (run as
that user) can serve and evict what they leave.

EXIT STATUS
  0 success, 1 runtime failure, 2 bad usage or bad configuration.
  Output into a closed pipe (upserv list | head -1) ends the command
  quietly with status 0.
";

/// The `--help` text: every command and option.
pub fn help() -> String {
    let mut text = String::from(HELP_INTRO);
    for spec in &COMMANDS {
        text.push_str(&format!(
            "  upserv {} {}\n      {}\n",
            spec.name, spec.usage, spec.summary
        ));
    }
    text.push_str(HELP_OPTIONS);
    text
}

/// `upserv COMMAND --help`: the command's usage line and its own text.
pub fn command_help(name: &str) -> Option<String> {
    let spec = COMMANDS.iter().find(|spec| spec.name == name)?;
    Some(format!(
        "usage: upserv {} {}\n\n{}\n\nOptions (see upserv --help): --config PATH, --builds DIR, --listen ADDR:PORT,\n--upstream URL, --cache-size SIZE, --workers N, --log-level LEVEL.\n",
        spec.name, spec.usage, spec.details
    ))
}

/// An option that takes a value or is a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Config,
    Builds,
    Listen,
    Upstream,
    CacheSize,
    Workers,
    LogLevel,
    DryRun,
    Json,
    Size,
    Clients,
}

/// Every long option with what it is.
const OPTIONS: [(&str, Opt); 11] = [
    ("--config", Opt::Config),
    ("--builds", Opt::Builds),
    ("--listen", Opt::Listen),
    ("--upstream", Opt::Upstream),
    ("--cache-size", Opt::CacheSize),
    ("--workers", Opt::Workers),
    ("--log-level", Opt::LogLevel),
    ("--dry-run", Opt::DryRun),
    ("--json", Opt::Json),
    ("--size", Opt::Size),
    ("--clients", Opt::Clients),
];

impl Invocation {
    /// Parses this process's arguments.
    pub fn from_env() -> Result<Invocation, UsageError> {
        Invocation::parse(std::env::args_os().skip(1))
    }

    /// Parses arguments (without the program name).
    pub fn parse<I, S>(args: I) -> Result<Invocation, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        if let Some(command) = help_or_version(&args) {
            return Ok(Invocation {
                command,
                overrides: Overrides::default(),
            });
        }
        let mut parsed = Parsed::default();
        let mut rest = args.into_iter();
        let mut options_done = false;
        while let Some(arg) = rest.next() {
            if !options_done && arg == "--" {
                options_done = true;
            } else if !options_done && is_option(&arg) {
                parsed.option(&arg, &mut rest)?;
            } else {
                parsed.operands.push(arg);
            }
        }
        parsed.into_invocation()
    }
}

/// `--help` or `--version` if either appears before `--` (help first);
/// help names the command when one is given.
fn help_or_version(args: &[OsString]) -> Option<Command> {
    let mut version = false;
    let mut help = false;
    let mut topic = None;
    let mut options = args.iter().take_while(|arg| *arg != "--");
    while let Some(arg) = options.next() {
        if arg == "--help" || arg == "-h" {
            help = true;
        } else if arg == "--version" || arg == "-V" {
            version = true;
        } else if is_option(arg) {
            if takes_value(arg) {
                options.next();
            }
        } else if topic.is_none() {
            topic = Some(arg);
        }
    }
    if help {
        let named = topic.and_then(|t| COMMANDS.iter().find(|spec| *t == spec.name));
        return Some(Command::Help(named.map(|spec| spec.name)));
    }
    version.then_some(Command::Version)
}

/// Whether `arg` is an option whose value is the next argument.
fn takes_value(arg: &OsStr) -> bool {
    !arg.as_bytes().contains(&b'=')
        && OPTIONS
            .iter()
            .any(|(name, opt)| *opt != Opt::DryRun && arg == *name)
}

/// True for `-x` and `--xyz`; a lone `-` is an operand, as usual.
fn is_option(arg: &OsStr) -> bool {
    let bytes = arg.as_bytes();
    bytes.len() > 1 && bytes[0] == b'-'
}

/// The command line as read so far.
#[derive(Debug, Default)]
struct Parsed {
    overrides: Overrides,
    dry_run: bool,
    json: bool,
    size: Option<u64>,
    clients: Option<u32>,
    operands: Vec<OsString>,
}

impl Parsed {
    /// Reads one option, taking its value from `=` or from the next argument.
    fn option(
        &mut self,
        arg: &OsStr,
        rest: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), UsageError> {
        let bytes = arg.as_bytes();
        let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(at) => (
                &bytes[..at],
                Some(OsStr::from_bytes(&bytes[at + 1..]).to_owned()),
            ),
            None => (bytes, None),
        };
        let name = String::from_utf8_lossy(name);
        let Some(&(name, opt)) = OPTIONS.iter().find(|(known, _)| *known == name) else {
            return Err(UsageError::new(format!(
                "unknown option `{name}` (see upserv --help)"
            )));
        };
        if matches!(opt, Opt::DryRun | Opt::Json) {
            if inline.is_some() {
                return Err(UsageError::new(format!("`{name}` takes no value")));
            }
            match opt {
                Opt::DryRun => self.dry_run = true,
                _ => self.json = true,
            }
            return Ok(());
        }
        let value = inline
            .or_else(|| rest.next())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| UsageError::new(format!("`{name}` needs a value")))?;
        self.value(name, opt, value)
            .map_err(|message| UsageError::new(format!("{name}: {message}")))
    }

    /// Stores the value of an option that takes one.
    fn value(&mut self, name: &str, opt: Opt, value: OsString) -> Result<(), String> {
        let overrides = &mut self.overrides;
        match opt {
            Opt::Config => overrides.config = Some(PathBuf::from(value)),
            Opt::Builds => overrides.builds_dir = Some(PathBuf::from(value)),
            _ => {
                let text = value
                    .to_str()
                    .ok_or_else(|| format!("the value of `{name}` is not valid UTF-8"))?;
                self.text_value(opt, text)?;
            }
        }
        Ok(())
    }

    /// Stores the value of an option whose value is text.
    fn text_value(&mut self, opt: Opt, text: &str) -> Result<(), String> {
        let overrides = &mut self.overrides;
        match opt {
            Opt::Listen => overrides.listen.extend(parse_socket_addrs(text)?),
            Opt::Upstream => {
                // Repeated, each adds mirrors after the ones before.
                let upstream = overrides.upstream.get_or_insert_with(String::new);
                if !upstream.is_empty() {
                    upstream.push(' ');
                }
                upstream.push_str(text);
            }
            Opt::CacheSize => {
                let size = parse_size(text).map_err(|e| e.0)?;
                check_cache_size(size)?;
                overrides.cache_size = Some(size);
            }
            Opt::Workers => {
                overrides.workers = Some(check_workers(parse_whole(text).map_err(|e| e.0)?)?);
            }
            Opt::LogLevel => overrides.log_level = Some(parse_level(text)?),
            Opt::Size => {
                let size = parse_size(text).map_err(|e| e.0)?;
                if size == 0 {
                    return Err("the bench size must be more than 0".into());
                }
                self.size = Some(size);
            }
            Opt::Clients => {
                let n = parse_whole(text).map_err(|e| e.0)?;
                match u32::try_from(n) {
                    Ok(n) if (1..=MAX_CLIENTS).contains(&n) => self.clients = Some(n),
                    _ => return Err(format!("`{n}` clients: expected 1 to {MAX_CLIENTS}")),
                }
            }
            Opt::Config | Opt::Builds | Opt::DryRun | Opt::Json => {}
        }
        Ok(())
    }

    /// The command the operands name, with the options checked against it.
    fn into_invocation(mut self) -> Result<Invocation, UsageError> {
        let mut operands = std::mem::take(&mut self.operands).into_iter();
        let Some(first) = operands.next() else {
            return Err(UsageError::new("no command given (try upserv --help)"));
        };
        let name = first.to_string_lossy().into_owned();
        let operands: Vec<OsString> = operands.collect();
        let Some(spec) = COMMANDS.iter().find(|spec| spec.name == name) else {
            let names: Vec<&str> = COMMANDS.iter().map(|spec| spec.name).collect();
            return Err(UsageError::new(format!(
                "unknown command `{name}` (commands: {})",
                names.join(", ")
            )));
        };
        let command = (spec.parse)(&self, operands)?;
        if self.dry_run && !matches!(command, Command::Gc { .. }) {
            return Err(UsageError::new("`--dry-run` only applies to gc"));
        }
        if self.json && !matches!(command, Command::Status { .. }) {
            return Err(UsageError::new("`--json` only applies to status"));
        }
        if self.size.is_some() && !matches!(command, Command::Bench { .. }) {
            return Err(UsageError::new("`--size` only applies to bench"));
        }
        if self.clients.is_some() && !matches!(command, Command::Bench { .. }) {
            return Err(UsageError::new("`--clients` only applies to bench"));
        }
        Ok(Invocation {
            command,
            overrides: self.overrides,
        })
    }
}

/// `command` when there are no operands.
fn no_operands(name: &str, operands: &[OsString], command: Command) -> Result<Command, UsageError> {
    match operands.first() {
        None => Ok(command),
        Some(extra) => Err(UsageError::new(format!(
            "`{name}` takes no arguments, got `{}`",
            extra.to_string_lossy()
        ))),
    }
}

/// The build names of `fetch`: at least one, each a valid build name.
fn fetch_names(operands: &[OsString]) -> Result<Vec<String>, UsageError> {
    if operands.is_empty() {
        return Err(UsageError::new("`fetch` needs at least one build NAME"));
    }
    operands
        .iter()
        .map(|operand| {
            let name = operand.to_string_lossy();
            if is_build_name(&name) {
                Ok(name.into_owned())
            } else {
                Err(UsageError::new(format!(
                    "`{name}` is not a build name (a letter or digit, then up to 127 letters, digits, `.`, `_`, `+` or `-`)"
                )))
            }
        })
        .collect()
}

/// The one NAME of `pin`/`unpin`/`evict`: an entry of the builds directory, so not
/// empty, no `/`, not hidden.
fn one_entry_name(command: &str, operands: &[OsString]) -> Result<String, UsageError> {
    let [operand] = operands else {
        return Err(UsageError::new(format!(
            "`{command}` takes exactly one build NAME"
        )));
    };
    let name = operand.to_str().unwrap_or_default();
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(UsageError::new(format!(
            "`{}` is not a build name (not empty, no `/`, not starting with `.`)",
            operand.to_string_lossy()
        )));
    }
    Ok(name.to_owned())
}

/// `help [COMMAND]`.
fn help_topic(operands: &[OsString]) -> Result<Command, UsageError> {
    match operands {
        [] => Ok(Command::Help(None)),
        [topic] => COMMANDS
            .iter()
            .find(|spec| *topic == spec.name)
            .map(|spec| Command::Help(Some(spec.name)))
            .ok_or_else(|| {
                UsageError::new(format!(
                    "no command `{}` (see upserv --help)",
                    topic.to_string_lossy()
                ))
            }),
        _ => Err(UsageError::new("`help` takes at most one COMMAND")),
    }
}

/// `bench [--size SIZE] [--clients N] [FILE BASIS]`.
fn bench(
    operands: Vec<OsString>,
    size: Option<u64>,
    clients: Option<u32>,
) -> Result<Command, UsageError> {
    let pair = match <[OsString; 2]>::try_from(operands) {
        Ok([file, basis]) => Some((PathBuf::from(file), PathBuf::from(basis))),
        Err(operands) if operands.is_empty() => None,
        Err(_) => {
            return Err(UsageError::new(
                "`bench` takes FILE and BASIS together, or neither",
            ))
        }
    };
    if pair.is_some() && size.is_some() {
        return Err(UsageError::new(
            "`--size` does not apply when FILE and BASIS are given",
        ));
    }
    Ok(Command::Bench {
        size: size.unwrap_or(DEFAULT_BENCH_SIZE),
        pair,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter;
    use std::net::SocketAddr;
    use std::os::unix::ffi::OsStringExt;

    fn parse(args: &[&str]) -> Result<Invocation, UsageError> {
        Invocation::parse(args.iter().copied())
    }

    fn command(args: &[&str]) -> Command {
        parse(args).unwrap().command
    }

    fn error(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn every_command() {
        assert_eq!(command(&["daemon"]), Command::Daemon);
        assert_eq!(command(&["serve"]), Command::Serve);
        assert_eq!(command(&["server"]), Command::Serve);
        assert_eq!(command(&["list"]), Command::List);
        assert_eq!(command(&["status"]), Command::Status { json: false });
        assert_eq!(
            command(&["status", "--json"]),
            Command::Status { json: true }
        );
        assert_eq!(command(&["check-config"]), Command::CheckConfig);
        assert_eq!(command(&["gc"]), Command::Gc { dry_run: false });
        assert_eq!(command(&["gc", "--dry-run"]), Command::Gc { dry_run: true });
        assert_eq!(command(&["--dry-run", "gc"]), Command::Gc { dry_run: true });
        assert_eq!(
            command(&["pin", "build-812"]),
            Command::Pin("build-812".into())
        );
        assert_eq!(command(&["unpin", "b"]), Command::Unpin("b".into()));
        assert_eq!(
            command(&["fetch", "a", "os12.1_x+y"]),
            Command::Fetch(vec!["a".into(), "os12.1_x+y".into()])
        );
        assert_eq!(command(&["evict", "b"]), Command::Evict("b".into()));
        assert_eq!(command(&["refetch", "b"]), Command::Refetch("b".into()));
        assert_eq!(command(&["help"]), Command::Help(None));
        assert_eq!(command(&["help", "gc"]), Command::Help(Some("gc")));
    }

    #[test]
    fn bench_forms() {
        assert_eq!(
            command(&["bench"]),
            Command::Bench {
                size: 268_435_456,
                pair: None,
                clients: None
            }
        );
        assert_eq!(
            command(&["bench", "--size", "1G"]),
            Command::Bench {
                size: 1 << 30,
                pair: None,
                clients: None
            }
        );
        assert_eq!(
            command(&["bench", "new.img", "old.img"]),
            Command::Bench {
                size: 268_435_456,
                pair: Some(("new.img".into(), "old.img".into())),
                clients: None
            }
        );
        assert!(error(&["bench", "one"]).contains("FILE and BASIS"));
        assert!(error(&["bench", "a", "b", "c"]).contains("FILE and BASIS"));
        assert!(error(&["bench", "--size=1M", "a", "b"]).contains("--size"));
        assert!(error(&["bench", "--size=0"]).contains("more than 0"));
        assert_eq!(
            command(&["bench", "--clients", "30", "--size=1M"]),
            Command::Bench {
                size: 1 << 20,
                pair: None,
                clients: Some(30)
            }
        );
        assert!(error(&["bench", "--clients=0"]).contains("1 to 1024"));
        assert!(error(&["bench", "--clients=1025"]).contains("1 to 1024"));
        assert!(error(&["list", "--clients=2"]).contains("only applies to bench"));
    }

    #[test]
    fn repeated_upstreams_add_mirrors() {
        let inv = parse(&[
            "daemon",
            "--upstream",
            "https://a/{name}.tar",
            "--upstream=https://b/{name}.tar https://c/{name}.tar",
        ])
        .unwrap();
        assert_eq!(
            inv.overrides.upstream.as_deref(),
            Some("https://a/{name}.tar https://b/{name}.tar https://c/{name}.tar")
        );
    }

    #[test]
    fn options_before_and_after_with_both_spellings() {
        let inv = parse(&[
            "--config",
            "/etc/x.conf",
            "daemon",
            "--builds=/srv/builds",
            "--listen",
            "0.0.0.0:8730",
            "--listen=[::1]:873",
            "--upstream",
            "https://h/{name}.tar.xz",
            "--cache-size=500M",
            "--workers",
            "3",
            "--log-level=DEBUG",
        ])
        .unwrap();
        assert_eq!(inv.command, Command::Daemon);
        let listen: Vec<SocketAddr> = vec![
            "0.0.0.0:8730".parse().unwrap(),
            "[::1]:873".parse().unwrap(),
        ];
        assert_eq!(
            inv.overrides,
            Overrides {
                config: Some("/etc/x.conf".into()),
                builds_dir: Some("/srv/builds".into()),
                listen,
                upstream: Some("https://h/{name}.tar.xz".into()),
                cache_size: Some(500 << 20),
                workers: Some(3),
                log_level: Some(LevelFilter::Debug),
            }
        );
    }

    #[test]
    fn listen_takes_host_names() {
        let inv = parse(&["daemon", "--listen", "localhost:8730"]).unwrap();
        assert!(!inv.overrides.listen.is_empty());
        assert!(inv
            .overrides
            .listen
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8730));
        assert!(error(&["daemon", "--listen", "no-such-host.invalid:1"]).contains("cannot resolve"));
    }

    #[test]
    fn the_last_of_a_repeated_option_wins() {
        let inv = parse(&["list", "--builds", "a", "--builds", "b"]).unwrap();
        assert_eq!(inv.overrides.builds_dir, Some("b".into()));
    }

    #[test]
    fn help_and_version_win_anywhere_before_double_dash() {
        assert_eq!(command(&["--help"]), Command::Help(None));
        assert_eq!(command(&["fetch", "-h"]), Command::Help(Some("fetch")));
        assert_eq!(command(&["--bogus", "--help"]), Command::Help(None));
        assert_eq!(command(&["-V"]), Command::Version);
        assert_eq!(
            command(&["daemon", "--version", "--help"]),
            Command::Help(Some("daemon"))
        );
        // The value of --builds is not a command name.
        assert_eq!(
            command(&["--builds", "pin", "unpin", "--help"]),
            Command::Help(Some("unpin"))
        );
        assert_eq!(command(&["frob", "--help"]), Command::Help(None));
        assert_eq!(command(&["gc", "--version"]), Command::Version);
        // After `--`, `-h` is an operand: here not a valid build name.
        assert!(error(&["fetch", "--", "-h"]).contains("`-h` is not a build name"));
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(command(&["--", "pin", "-x"]), Command::Pin("-x".into()));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        assert!(error(&[]).contains("no command"));
        assert!(error(&["frob"]).contains("unknown command `frob`"));
        assert!(error(&["daemon", "--frob"]).contains("unknown option `--frob`"));
        assert!(error(&["daemon", "-x"]).contains("unknown option `-x`"));
        assert!(error(&["daemon", "--builds"]).contains("`--builds` needs a value"));
        assert!(error(&["daemon", "--builds="]).contains("`--builds` needs a value"));
        assert!(error(&["gc", "--dry-run=yes"]).contains("takes no value"));
        assert!(error(&["list", "extra"]).contains("`list` takes no arguments, got `extra`"));
        assert!(error(&["daemon", "--dry-run"]).contains("only applies to gc"));
        assert!(error(&["list", "--size", "1M"]).contains("only applies to bench"));
        assert!(error(&["list", "--json"]).contains("only applies to status"));
        assert!(error(&["fetch"]).contains("at least one"));
        assert!(error(&["fetch", "ok", "../etc"]).contains("`../etc` is not a build name"));
        assert!(error(&["pin"]).contains("exactly one"));
        assert!(error(&["pin", "a", "b"]).contains("exactly one"));
        assert!(error(&["pin", "../x"]).contains("not a build name"));
        assert!(error(&["unpin", ".upserv"]).contains("not a build name"));
    }

    #[test]
    fn bad_option_values_name_the_option() {
        let cases = [
            (
                &["daemon", "--listen", "1.2.3.4"][..],
                "--listen: `1.2.3.4` is not ADDR:PORT",
            ),
            (
                &["daemon", "--listen=::1:873"][..],
                "--listen: `::1:873` is not ADDR:PORT",
            ),
            (
                &["daemon", "--cache-size", "12Q"][..],
                "--cache-size: `12Q` is not a size",
            ),
            (
                &["daemon", "--cache-size", "0"][..],
                "--cache-size: the cache size must be more than 0",
            ),
            (&["daemon", "--workers", "0"][..], "--workers: `0` workers"),
            (
                &["daemon", "--workers", "-2"][..],
                "--workers: `-2` is negative",
            ),
            (
                &["daemon", "--log-level", "loud"][..],
                "--log-level: `loud` is not a log level",
            ),
        ];
        for (args, expected) in cases {
            let message = error(args);
            assert!(message.starts_with(expected), "{args:?}: {message}");
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn non_utf8_paths_pass_through() {
        let odd = OsString::from_vec(b"/srv/b\xffuilds".to_vec());
        let mut with_equals = OsString::from("--builds=");
        with_equals.push(&odd);
        let inv = Invocation::parse([OsString::from("list"), with_equals]).unwrap();
        assert_eq!(inv.overrides.builds_dir, Some(PathBuf::from(odd)));
    }

    #[test]
    fn help_documents_every_command_and_option() {
        let help = help();
        for (option, _) in OPTIONS {
            assert!(help.contains(option), "{option}");
        }
        for spec in &COMMANDS {
            assert!(help.contains(&format!("upserv {} ", spec.name)));
            let own = command_help(spec.name).unwrap();
            assert!(own.starts_with(&format!("usage: upserv {} ", spec.name)));
            assert!(own.contains(spec.details));
        }
        assert_eq!(command_help("frob"), None);
        assert!(version_text().starts_with("upserv "));
    }
}
