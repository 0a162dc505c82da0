//! Where log lines go. `log` + `simple_logger` write to stderr with
//! timestamps; with a `log file`, or in `serve` mode (where stderr is the
//! client's socket and must carry nothing but the protocol), stderr itself
//! is pointed at the log file first. Panics are logged there too, as error
//! lines, instead of being printed raw.

use crate::config::Settings;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// The log file in serve mode when none is configured: `DIR/.upserv/upserv.log`.
pub fn default_serve_log(settings: &Settings) -> PathBuf {
    settings
        .global
        .builds_dir
        .join(".upserv")
        .join("upserv.log")
}

/// Points fd 2 at `path` (appending), or at /dev/null when that fails and
/// stderr must not be used.
fn redirect_stderr(path: &std::path::Path, must_not_use_stderr: bool) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = match OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => f,
        Err(e) if must_not_use_stderr => {
            let null = OpenOptions::new().write(true).open("/dev/null")?;
            // SAFETY: dup2 onto fd 2 with a descriptor we own.
            unsafe { libc::dup2(null.as_raw_fd(), 2) };
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // SAFETY: dup2 onto fd 2 with a descriptor we own.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets up logging once for the process.
pub fn init(settings: &Settings, serving_stdio: bool) -> io::Result<()> {
    let target = match (&settings.global.log_file, serving_stdio) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(default_serve_log(settings)),
        (None, false) => None,
    };
    let redirected = match &target {
        Some(path) => redirect_stderr(path, serving_stdio),
        None => Ok(()),
    };
    simple_logger::SimpleLogger::new()
        .with_level(settings.global.log_level)
        .init()
        .map_err(io::Error::other)?;
    std::panic::set_hook(Box::new(log_panic));
    // In serve mode a log file we cannot open only costs the log.
    match redirected {
        Err(_) if serving_stdio => Ok(()),
        other => other,
    }
}

/// Reports a panic as an error log line, so that it lands where the other
/// log lines go, timestamped (the log file in serve mode), rather than as
/// raw text on stderr. A worker that catches the panic logs its own line
/// about the connection it dropped.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    let message = info.payload_as_str().unwrap_or("(no message)");
    let location = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    // Honours RUST_BACKTRACE, as the default hook does.
    let backtrace = std::backtrace::Backtrace::capture();
    match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => {
            log::error!("thread {name} panicked{location}: {message}\n{backtrace}")
        }
        _ => log::error!("thread {name} panicked{location}: {message}"),
    }
}
