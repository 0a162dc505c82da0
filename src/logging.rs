//! Where log lines go, and how they look there. One [`log`] backend with
//! one sink per process:
//!
//! - a command (`fetch`, `list`, ...) writes to stderr as `upserv: message`
//!   (`upserv: warning: message`): it runs on a terminal or in a script,
//!   where a `log file` would hide its errors. Error records are left out:
//!   the command prints each failure itself, once, from the error it gets
//!   back, which the error line the cache logs for a daemon's log repeats;
//! - the daemon writes its running log to the `log file` when one is set,
//!   else to syslog when `syslog facility` is set, else to stderr:
//!   timestamped, or under systemd (whose journal stamps lines itself)
//!   with a `<N>` priority prefix and no timestamp. While it starts, its
//!   warnings and errors also go to stderr, so an admin starting it by hand
//!   or reading `journalctl` sees why it did not start;
//! - `serve` (stdin/stdout are the client's socket, stderr may be too)
//!   writes to the log file (by default `DIR/.upserv/upserv.log`) or to
//!   syslog, and never to stderr; fd 2 is pointed there as well, so that
//!   nothing stray reaches the client.
//!
//! The log file is reopened by path at the next line after
//! [`request_reopen`] (SIGUSR1 and SIGHUP call it), so `logrotate` can move
//! it away. Panics are logged as error lines instead of printed raw.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;

use crate::config::Settings;

/// The target of panic lines, which a command shows like any error.
const PANIC: &str = "panic";

/// Set from a signal handler: reopen the log file before the next line.
static REOPEN: AtomicBool = AtomicBool::new(false);

/// The name syslog shows for upserv's lines.
const SYSLOG_IDENT: &std::ffi::CStr = c"upserv";

/// What kind of process is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An admin command: stderr, in the command's own form.
    Command,
    /// `upserv daemon`.
    Daemon,
    /// `upserv serve`: one connection on stdin/stdout.
    Serve,
}

/// How lines written to stderr look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `upserv: message`, `upserv: warning: message`.
    Command,
    /// `2026-01-02T03:04:05.678Z INFO  [target] message`.
    Timestamped,
    /// `<6>INFO  [target] message`: journald reads the priority prefix and
    /// adds the time itself.
    Journal,
}

enum Sink {
    Stderr(Style),
    File { path: PathBuf, file: Mutex<File> },
    Syslog,
}

struct Logger {
    sink: Sink,
    level: LevelFilter,
    /// Whether stderr is the terminal's or the journal's (not in serve
    /// mode, where it is pointed at the log).
    stderr_is_ours: bool,
    /// Warnings and errors also go to stderr (a daemon that is starting).
    echo: AtomicBool,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// The log file in serve mode when none is configured: `DIR/.upserv/upserv.log`.
pub(crate) fn default_serve_log(settings: &Settings) -> PathBuf {
    settings
        .global
        .builds_dir
        .join(".upserv")
        .join("upserv.log")
}

/// Asks for the log file to be reopened before the next line. Only stores
/// a flag, so a signal handler may call it.
pub(crate) fn request_reopen() {
    REOPEN.store(true, Ordering::Relaxed);
}

/// Sets up logging once for the process. An error means the log file
/// cannot be opened; in serve mode that only costs the log.
pub fn init(settings: &Settings, role: Role) -> io::Result<()> {
    let g = &settings.global;
    let file = match (role, &g.log_file) {
        (Role::Command, _) => None,
        (_, Some(path)) => Some(path.clone()),
        (Role::Serve, None) if g.syslog_facility.is_none() => Some(default_serve_log(settings)),
        _ => None,
    };
    let mut failure = None;
    let sink = if let Some(path) = file {
        match open_log(&path) {
            Ok(file) => Sink::File {
                path,
                file: Mutex::new(file),
            },
            Err(e) => {
                failure = Some(io::Error::new(
                    e.kind(),
                    format!("cannot open log file {}: {e}", path.display()),
                ));
                fallback_sink(role)
            }
        }
    } else if let (Some(facility), false) = (&g.syslog_facility, role == Role::Command) {
        // SAFETY: the ident is a 'static C string, as openlog(3) requires.
        unsafe { libc::openlog(SYSLOG_IDENT.as_ptr(), libc::LOG_PID, facility.code) };
        Sink::Syslog
    } else {
        fallback_sink(role)
    };
    if role == Role::Serve {
        point_stderr_at(&sink);
    }
    let logger = Logger {
        sink,
        level: g.log_level,
        stderr_is_ours: role != Role::Serve,
        echo: AtomicBool::new(role == Role::Daemon),
    };
    if LOGGER.set(logger).is_ok() {
        if let Some(logger) = LOGGER.get() {
            log::set_logger(logger).map_err(io::Error::other)?;
            log::set_max_level(g.log_level);
        }
    }
    std::panic::set_hook(Box::new(log_panic));
    match failure {
        Some(_) if role == Role::Serve => Ok(()),
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Where lines go when there is no file and no syslog.
fn fallback_sink(role: Role) -> Sink {
    match role {
        Role::Command => Sink::Stderr(Style::Command),
        Role::Daemon if stderr_is_journal() => Sink::Stderr(Style::Journal),
        Role::Daemon => Sink::Stderr(Style::Timestamped),
        // stderr may be the client's socket: a lost log beats a broken pull.
        Role::Serve => Sink::Syslog,
    }
}

/// The daemon has started: from now on only its log shows what happens.
pub fn started() {
    if let Some(logger) = LOGGER.get() {
        logger.echo.store(false, Ordering::Relaxed);
    }
}

/// Reports an error the admin must see (one that ends the process, or a
/// `check-config` finding): once on stderr, as `upserv: message`, and in
/// the log when the log is elsewhere.
pub fn error(message: &dyn std::fmt::Display) {
    let logger = LOGGER.get();
    if let Some(logger) = logger.filter(|l| !matches!(l.sink, Sink::Stderr(_))) {
        // Not echoed: it goes to stderr below, in the same form as always.
        let echo = logger.echo.swap(false, Ordering::Relaxed);
        log::error!("{message}");
        logger.echo.store(echo, Ordering::Relaxed);
    }
    if logger.is_none_or(|l| l.stderr_is_ours) {
        let _ = writeln!(io::stderr().lock(), "upserv: {message}");
    }
}

/// Whether stderr is the systemd journal: `JOURNAL_STREAM` names the device
/// and inode of the journal's stream, which a redirected stderr no longer is.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(stat) = File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(stat.dev()) && ino.parse() == Ok(stat.ino())
}

/// Opens the log file for appending, creating it and its folder.
fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Points fd 2 at the log file, or at /dev/null: in serve mode nothing may
/// reach the client's socket but the protocol.
fn point_stderr_at(sink: &Sink) {
    let target = match sink {
        Sink::File { file, .. } => file.lock().try_clone(),
        _ => OpenOptions::new().write(true).open("/dev/null"),
    };
    if let Ok(target) = target {
        // SAFETY: dup2 onto fd 2 with a descriptor we own.
        unsafe { libc::dup2(target.as_raw_fd(), 2) };
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let command = matches!(self.sink, Sink::Stderr(Style::Command));
        let repeated = command && metadata.level() == Level::Error && metadata.target() != PANIC;
        metadata.level() <= self.level && !repeated
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let echo = record.level() <= Level::Warn && self.echo.load(Ordering::Relaxed);
        match &self.sink {
            Sink::Stderr(style) => write_stderr(&line(record, *style)),
            Sink::File { path, file } => {
                let mut file = file.lock();
                if REOPEN.swap(false, Ordering::Relaxed) {
                    match open_log(path) {
                        Ok(fresh) => *file = fresh,
                        Err(e) => write_stderr(&format!(
                            "upserv: cannot reopen log file {}: {e}\n",
                            path.display()
                        )),
                    }
                }
                let _ = file.write_all(line(record, Style::Timestamped).as_bytes());
            }
            Sink::Syslog => syslog(record),
        }
        if echo && !matches!(self.sink, Sink::Stderr(_)) {
            write_stderr(&line(record, Style::Command));
        }
    }

    fn flush(&self) {}
}

/// Writes to stderr, ignoring failures: a closed stderr must not end a
/// daemon or panic a command.
fn write_stderr(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// One log line in `style`, newline included.
fn line(record: &Record, style: Style) -> String {
    let mut text = String::with_capacity(128);
    let level = record.level();
    let _ = match style {
        Style::Command if level == Level::Warn => {
            writeln!(text, "upserv: warning: {}", record.args())
        }
        Style::Command => writeln!(text, "upserv: {}", record.args()),
        Style::Timestamped => writeln!(
            text,
            "{} {level:<5} [{}] {}",
            timestamp(),
            record.target(),
            record.args()
        ),
        Style::Journal => writeln!(
            text,
            "<{}>{level:<5} [{}] {}",
            priority(level),
            record.target(),
            record.args()
        ),
    };
    text
}

/// The syslog priority of a level.
fn priority(level: Level) -> libc::c_int {
    match level {
        Level::Error => libc::LOG_ERR,
        Level::Warn => libc::LOG_WARNING,
        Level::Info => libc::LOG_INFO,
        Level::Debug | Level::Trace => libc::LOG_DEBUG,
    }
}

/// Sends one line to syslog through libc, which knows the local socket's
/// kind and reconnects when syslogd restarts.
fn syslog(record: &Record) {
    let text = format!("{} [{}] {}", record.level(), record.target(), record.args());
    let text = std::ffi::CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: a constant "%s" format with one C string argument.
    unsafe { libc::syslog(priority(record.level()), c"%s".as_ptr(), text.as_ptr()) };
}

/// The current time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
    // SAFETY: gmtime_r fills the struct we pass; read only on success.
    if unsafe { libc::gmtime_r(&secs, tm.as_mut_ptr()) }.is_null() {
        return format!("@{}", now.as_secs());
    }
    // SAFETY: gmtime_r succeeded, so the struct is initialised.
    let tm = unsafe { tm.assume_init() };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

/// Reports a panic as an error log line, so that it lands where the other
/// log lines go, rather than as raw text on stderr. A worker that catches
/// the panic logs its own line about the connection it dropped.
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
            log::error!(target: PANIC, "thread {name} panicked{location}: {message}\n{backtrace}")
        }
        _ => log::error!(target: PANIC, "thread {name} panicked{location}: {message}"),
    }
}
