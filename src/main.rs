//! The `upserv` binary: parse the command line, load the settings, set up
//! logging, dispatch. Exit status: 0 success, 1 runtime failure, 2 bad
//! usage or bad configuration.

use std::process::ExitCode;
use std::sync::Arc;
use upserv::cli::{self, Command, Invocation};
use upserv::config::{self, Settings};
use upserv::daemon::{self, listener, signals::Signals, Server};
use upserv::logging;

fn usage_failure(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("upserv: {message}");
    ExitCode::from(2)
}

fn runtime_failure(message: impl std::fmt::Display) -> ExitCode {
    log::error!("{message}");
    eprintln!("upserv: {message}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let inv = match Invocation::from_env() {
        Ok(inv) => inv,
        Err(e) => return usage_failure(e),
    };
    match &inv.command {
        Command::Help => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("{}", cli::version_text());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let (settings, warnings) = match config::load_settings(&inv.overrides) {
        Ok(loaded) => loaded,
        Err(e) => return usage_failure(e),
    };
    let serving_stdio = inv.command == Command::Serve;
    if let Err(e) = logging::init(&settings, serving_stdio) {
        return runtime_failure(format!("cannot set up logging: {e}"));
    }
    for w in &warnings {
        log::warn!("{w}");
        if !serving_stdio && inv.command == Command::CheckConfig {
            eprintln!("upserv: warning: {w}");
        }
    }
    run(&inv, &settings)
}

fn run(inv: &Invocation, settings: &Settings) -> ExitCode {
    match &inv.command {
        Command::CheckConfig => {
            print!("{settings}");
            ExitCode::SUCCESS
        }
        Command::Daemon => run_daemon(settings),
        Command::Serve => {
            let server = match Server::new(settings, None) {
                Ok(s) => s,
                Err(e) => return usage_failure(e),
            };
            match daemon::serve_stdio(&server) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => runtime_failure(e),
            }
        }
        other => runtime_failure(format!("{other:?} is not available yet")),
    }
}

fn run_daemon(settings: &Settings) -> ExitCode {
    let listeners = match daemon::bind_all(&settings.global.listen) {
        Ok(l) => l,
        Err(e) => return runtime_failure(e),
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return runtime_failure(format!("cannot install signal handlers: {e}")),
    };
    let _pid_file = match settings.global.pid_file.as_deref().map(daemon::PidFile::create) {
        Some(Err(e)) => return runtime_failure(e),
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let server = match Server::new(settings, None) {
        Ok(s) => Arc::new(s),
        Err(e) => return usage_failure(e),
    };
    let pool = listener::PoolConfig {
        workers: settings.global.workers,
        max_connections: settings.global.module_defaults.max_connections as usize,
    };
    match listener::run(server, listeners, pool, &signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => runtime_failure(e),
    }
}
