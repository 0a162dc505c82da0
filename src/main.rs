//! The `upserv` binary: parse the command line, load the settings, set up
//! logging, dispatch. Exit status: 0 success, 1 runtime failure, 2 bad
//! usage or bad configuration.

mod admin;

use std::process::ExitCode;
use std::sync::Arc;
use upserv::cache::{Cache, CacheConfig};
use upserv::cli::{self, Command, Invocation};
use upserv::config::{self, Settings};
use upserv::daemon::{self, gatekeeper, pool, service_user, signals::Signals, Server};
use upserv::logging::{self, Role};
use upserv::outln;
use upserv::protocol::memo::Memo;
use upserv::protocol::SharedLists;

fn usage_failure(message: impl std::fmt::Display) -> ExitCode {
    logging::error(&message);
    ExitCode::from(2)
}

fn runtime_failure(message: impl std::fmt::Display) -> ExitCode {
    logging::error(&message);
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let inv = match Invocation::from_env() {
        Ok(inv) => inv,
        Err(e) => return usage_failure(e),
    };
    match &inv.command {
        Command::Help(None) => {
            outln!("{}", cli::help().trim_end());
            return ExitCode::SUCCESS;
        }
        Command::Help(Some(name)) => {
            let text = cli::command_help(name).unwrap_or_else(cli::help);
            outln!("{}", text.trim_end());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            outln!("{}", cli::version_text());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let (settings, warnings) = match config::load_settings(&inv.overrides) {
        Ok(loaded) => loaded,
        Err(e) => return usage_failure(e),
    };
    let role = match inv.command {
        Command::Daemon => Role::Daemon,
        Command::Serve => Role::Serve,
        _ => Role::Command,
    };
    if let Err(e) = logging::init(&settings, role) {
        return runtime_failure(e);
    }
    if inv.command == Command::CheckConfig {
        return check_config(&settings, &warnings);
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    run(&inv, &settings)
}

/// `upserv check-config`: warnings, then errors (each once, on stderr),
/// then the effective settings when nothing is wrong.
fn check_config(settings: &Settings, warnings: &[config::ConfigWarning]) -> ExitCode {
    let mut errors = 0;
    for w in warnings {
        if w.unknown_parameter {
            logging::error(w);
            errors += 1;
        } else {
            log::warn!("{w}");
        }
    }
    for finding in daemon::audit::audit(settings) {
        if finding.error {
            logging::error(&finding.message);
            errors += 1;
        } else {
            log::warn!("{}", finding.message);
        }
    }
    if errors > 0 {
        return usage_failure(format!(
            "the configuration has {errors} error(s); see above"
        ));
    }
    outln!("{}", settings.to_string().trim_end());
    ExitCode::SUCCESS
}

/// The cache's part of the settings. In `serve` mode every connection is
/// its own process, which the cache must coordinate through lock files.
fn cache_config(settings: &Settings, one_process_per_connection: bool) -> CacheConfig {
    let g = &settings.global;
    let mut cfg = CacheConfig::new(&g.builds_dir);
    cfg.upstream = g.upstream.clone();
    cfg.upstream_checksum = g.upstream_checksum.clone();
    cfg.upstream_contents = g.upstream_contents.clone();
    cfg.layout = g.layout;
    cfg.cache_size = g.cache_size;
    cfg.fetch_timeout = g.fetch_timeout;
    cfg.fetch_min_rate = g.fetch_min_rate;
    cfg.cross_process_lock = one_process_per_connection;
    cfg
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run(inv: &Invocation, settings: &Settings) -> ExitCode {
    let cfg = || cache_config(settings, false);
    match &inv.command {
        Command::Daemon => run_daemon(inv, settings),
        Command::Serve => run_serve(settings),
        Command::Fetch(_)
        | Command::Pin(_)
        | Command::Unpin(_)
        | Command::Gc { dry_run: false }
        | Command::Evict(_)
        | Command::Refetch(_) => {
            if let Err(e) = service_user::become_owner(&settings.global.builds_dir) {
                return runtime_failure(e);
            }
            run_cache_command(&inv.command, cfg())
        }
        Command::Gc { dry_run: true } => run_cache_command(&inv.command, cfg()),
        Command::List => {
            let code = admin::list(cfg());
            if code == 0 {
                upserv::output::write(format_args!(
                    "{}",
                    daemon::control::list_downloads(&settings.global.builds_dir)
                ));
            }
            exit_code(code)
        }
        Command::Status { json } => {
            exit_code(daemon::control::status(&settings.global.builds_dir, *json))
        }
        Command::Bench {
            size,
            pair,
            clients,
        } => run_bench(*size, pair.as_ref(), *clients),
        Command::CheckConfig | Command::Help(_) | Command::Version => ExitCode::SUCCESS,
    }
}

/// The admin commands on the build cache.
fn run_cache_command(command: &Command, cfg: CacheConfig) -> ExitCode {
    let code = match command {
        Command::Fetch(names) => admin::fetch(cfg, names),
        Command::Pin(name) => admin::pin(cfg, name),
        Command::Unpin(name) => admin::unpin(cfg, name),
        Command::Gc { dry_run } => admin::gc(cfg, *dry_run),
        Command::Evict(name) => admin::evict(cfg, name),
        Command::Refetch(name) => admin::refetch(cfg, name),
        _ => return ExitCode::SUCCESS,
    };
    exit_code(code)
}

/// `upserv bench`: the delta engine's throughput on this machine, so the
/// owner of a small box can tell how many laptops it can feed.
/// With `clients`, what that many identical laptops cost with the delta
/// memo and without it.
fn run_bench(
    size: u64,
    pair: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    clients: Option<u32>,
) -> ExitCode {
    let pair = pair.map(|(file, basis)| (file.as_path(), basis.as_path()));
    if let Some(clients) = clients {
        return match upserv::bench::run_clients(clients, size, pair) {
            Ok([with, without]) => {
                outln!("{with}");
                outln!("{without}");
                outln!("{}", upserv::bench::clients_ratio(&with, &without));
                ExitCode::SUCCESS
            }
            Err(e) => runtime_failure(format!("bench: {e}")),
        };
    }
    match upserv::bench::run(size, pair) {
        Ok(results) => {
            outln!("{}", upserv::bench::BenchResult::HEADER);
            for r in results {
                outln!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => runtime_failure(format!("bench: {e}")),
    }
}

/// Builds the shared server state: modules, MOTD and the build cache.
fn server(settings: &Settings, serve: bool) -> Result<Server, ExitCode> {
    let cache = Cache::open(cache_config(settings, serve)).map_err(|e| {
        runtime_failure(format!(
            "builds dir {}: {e}",
            settings.global.builds_dir.display()
        ))
    })?;
    Server::new(settings, Some(cache)).map_err(usage_failure)
}

fn run_serve(settings: &Settings) -> ExitCode {
    let server = match server(settings, true) {
        Ok(s) => s.with_slots(daemon::slots::Slots::lock_files(&connection_locks(
            settings,
        ))),
        Err(code) => return code,
    };
    match daemon::serve_stdio(&server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => runtime_failure(e),
    }
}

/// Where `serve` processes count their connections.
fn connection_locks(settings: &Settings) -> std::path::PathBuf {
    settings
        .global
        .builds_dir
        .join(".upserv")
        .join("connections")
}

/// SIGHUP: the configuration read again, as a server for new connections.
/// Settings that need a restart (listening addresses, workers, the cache,
/// logging) keep their running values, with a warning when they changed.
fn reload_server(
    inv: &Invocation,
    running: &Settings,
    cache: &Option<Cache>,
    slots: &Arc<daemon::slots::Slots>,
    memo: &Option<Arc<Memo>>,
    lists: &Option<Arc<SharedLists>>,
) -> Result<Arc<Server>, String> {
    let (fresh, warnings) = config::load_settings(&inv.overrides).map_err(|e| e.to_string())?;
    for w in &warnings {
        log::warn!("{w}");
    }
    for what in needs_restart(running, &fresh) {
        log::warn!("reload: `{what}` changed; it takes effect at the next restart");
    }
    let server = Server::new(&fresh, cache.clone())?;
    Ok(Arc::new(
        server
            .with_slots(Arc::clone(slots))
            .with_memo(memo.clone())
            .with_lists(lists.clone()),
    ))
}

/// The settings a reload cannot apply that differ between `a` and `b`.
fn needs_restart(a: &Settings, b: &Settings) -> Vec<&'static str> {
    let (a, b) = (&a.global, &b.global);
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("listen", a.listen != b.listen);
    check("workers", a.workers != b.workers);
    check("builds dir", a.builds_dir != b.builds_dir);
    check("upstream", a.upstream != b.upstream);
    check(
        "upstream checksum",
        a.upstream_checksum != b.upstream_checksum,
    );
    check(
        "upstream contents",
        a.upstream_contents != b.upstream_contents,
    );
    check("layout", a.layout != b.layout);
    check("cache size", a.cache_size != b.cache_size);
    check("fetch timeout", a.fetch_timeout != b.fetch_timeout);
    check("fetch min rate", a.fetch_min_rate != b.fetch_min_rate);
    check("log file", a.log_file != b.log_file);
    check("log level", a.log_level != b.log_level);
    check("syslog facility", a.syslog_facility != b.syslog_facility);
    check("pid file", a.pid_file != b.pid_file);
    changed
}

fn run_daemon(inv: &Invocation, settings: &Settings) -> ExitCode {
    // Everything is in place before the daemon announces "listening on":
    // whoever waits for that line may connect, signal the daemon or read
    // its pid file at once.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return runtime_failure(format!("cannot install signal handlers: {e}")),
    };
    let _pid_file = match settings
        .global
        .pid_file
        .as_deref()
        .map(daemon::PidFile::create)
    {
        Some(Err(e)) => return runtime_failure(e),
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let listeners = match daemon::bind_all(&settings.global.listen) {
        Ok(l) => l,
        Err(e) => return runtime_failure(e),
    };
    let server = match server(settings, false) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (cache, slots) = (server.cache.clone(), Arc::clone(&server.slots));
    let memo = server.memo.clone();
    let lists = server.lists.clone();
    let stats = daemon::stats::Stats::new();
    let observed = daemon::report::Observed {
        stats: Arc::clone(&stats),
        cache: cache.as_ref().map(Cache::watch),
        memo: memo.clone(),
        lists: lists.clone(),
    };
    let _control = match daemon::start_observers(&settings.global, observed) {
        Ok(control) => control,
        Err(e) => return runtime_failure(e),
    };
    let mut reload = || reload_server(inv, settings, &cache, &slots, &memo, &lists);
    let pool = pool::PoolConfig {
        workers: settings.global.workers,
        stats,
    };
    service_user::warn_if_root();
    daemon::announce(&listeners);
    logging::started();
    match gatekeeper::run(Arc::new(server), listeners, pool, &signals, &mut reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => runtime_failure(e),
    }
}
