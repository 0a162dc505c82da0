//! The admin commands on the build cache: `fetch`, `list`, `pin`, `unpin`,
//! `gc`, `evict`, `refetch`. Part of the binary, not the library: the
//! library's cache answers with values and errors; these commands print them.
//!
//! Each takes the cache configuration, prints its results to stdout (through
//! [`upserv::output`], so a closed pipe ends it quietly) and its errors (one
//! line each) to stderr, progress bars included, and returns the exit code:
//! 0 success, 1 runtime failure. Argument parsing is main's job; these
//! functions must not exit the process or read the command line.

use std::io::{self, IsTerminal};
use std::time::Instant;

use upserv::cache::{
    self, human_size, is_build_name, Cache, CacheConfig, Evicted, Progress, Stage, Startup,
    PROGRESS_INTERVAL,
};
use upserv::outln;

/// `eprintln!` that never panics: a closed stderr must not crash a command.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

const EXIT_OK: i32 = 0;
const EXIT_FAILURE: i32 = 1;
/// Width of the progress bar, in characters.
const BAR_WIDTH: u64 = 30;
/// The bar is redrawn at most this often.
const BAR_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
const MIB: u64 = 1 << 20;

/// `upserv fetch NAME...`: puts builds into the cache now.
pub fn fetch(cfg: CacheConfig, names: &[String]) -> i32 {
    if cfg.upstream.is_none() {
        errln!("upserv fetch: no upstream configured (set `upstream` or --upstream)");
        return EXIT_FAILURE;
    }
    let cache = match Cache::open(cfg) {
        Ok(cache) => cache,
        Err(e) => return fail(&e),
    };
    let terminal = io::stderr().is_terminal();
    let mut status = EXIT_OK;
    for name in names {
        if !is_build_name(name) {
            errln!("upserv fetch: {name:?} is not a valid build name");
            status = EXIT_FAILURE;
            continue;
        }
        let mut shown = ProgressDisplay::new(terminal);
        let result = cache.acquire_with(name, &mut |p| shown.show(p));
        shown.finish();
        match result {
            Ok(Some(guard)) => outln!("{}: cached in {}", name, guard.root().display()),
            Ok(None) => {
                errln!("upserv fetch: {name}: not available");
                status = EXIT_FAILURE;
            }
            Err(e) => {
                errln!("upserv fetch: {e}");
                status = EXIT_FAILURE;
            }
        }
    }
    status
}

/// `upserv list`: name, size, last access, sticky, busy; then the totals.
pub fn list(cfg: CacheConfig) -> i32 {
    let builds = match cache::list_builds(&cfg.builds_dir) {
        Ok(builds) => builds,
        Err(e) => return fail(&e),
    };
    outln!(
        "{:<32} {:>10} {:<20} {:<6} {:<4}",
        "NAME",
        "SIZE",
        "LAST ACCESS (UTC)",
        "STICKY",
        "BUSY"
    );
    let (mut used, mut sticky) = (0, 0);
    for build in &builds {
        used += build.size;
        sticky += usize::from(build.sticky);
        outln!(
            "{:<32} {:>10} {:<20} {:<6} {:<4}",
            build.name,
            human_size(build.size),
            format_utc(build.last_access),
            yes_no(build.sticky),
            yes_no(build.busy),
        );
    }
    outln!(
        "\ntotal: {} builds, {} used of {} ({}%), {sticky} sticky",
        builds.len(),
        human_size(used),
        human_size(cfg.cache_size),
        used.saturating_mul(100) / cfg.cache_size.max(1)
    );
    EXIT_OK
}

/// `upserv pin NAME`: the build is never evicted.
pub fn pin(cfg: CacheConfig, name: &str) -> i32 {
    set_sticky(cfg, name, true)
}

/// `upserv unpin NAME`: the build may be evicted again.
pub fn unpin(cfg: CacheConfig, name: &str) -> i32 {
    set_sticky(cfg, name, false)
}

fn set_sticky(cfg: CacheConfig, name: &str, sticky: bool) -> i32 {
    match cache::set_sticky(&cfg.builds_dir, name, sticky) {
        Ok(cached) => {
            if !cached {
                errln!("upserv: note: build {name} is not cached (yet)");
            }
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

/// `upserv gc [--dry-run]`: evicts down to the budget, printing what goes.
pub fn gc(cfg: CacheConfig, dry_run: bool) -> i32 {
    let startup = if dry_run {
        Startup::ReadOnly
    } else {
        Startup::NoEviction
    };
    let cache = match Cache::open_with(cfg, startup) {
        Ok(cache) => cache,
        Err(e) => return fail(&e),
    };
    match cache.gc(dry_run) {
        Ok(evicted) => {
            print_evicted(&evicted, dry_run);
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

/// `upserv evict NAME`: removes one idle, unpinned build now.
pub fn evict(cfg: CacheConfig, name: &str) -> i32 {
    let cache = match open_for(cfg, name) {
        Ok(cache) => cache,
        Err(code) => return code,
    };
    match cache.evict(name) {
        Ok(build) => {
            print_evicted(&[build], false);
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

/// `upserv refetch NAME`: downloads a build again, replacing the cached
/// tree only once the new one is complete.
pub fn refetch(cfg: CacheConfig, name: &str) -> i32 {
    let cache = match open_for(cfg, name) {
        Ok(cache) => cache,
        Err(code) => return code,
    };
    let mut shown = ProgressDisplay::new(io::stderr().is_terminal());
    let result = cache.refetch(name, &mut |p| shown.show(p));
    shown.finish();
    match result {
        Ok(()) => {
            outln!("{name}: fetched again");
            EXIT_OK
        }
        Err(e) => fail(&e),
    }
}

/// The cache, for a command on build `name`; the exit code on failure.
fn open_for(cfg: CacheConfig, name: &str) -> Result<Cache, i32> {
    if !is_build_name(name) {
        return Err(fail(&format!("{name:?} is not a valid build name")));
    }
    Cache::open_with(cfg, Startup::NoEviction).map_err(|e| fail(&e))
}

fn print_evicted(evicted: &[Evicted], dry_run: bool) {
    let verb = if dry_run { "would evict" } else { "evicted" };
    if evicted.is_empty() {
        outln!("nothing to evict");
    }
    for build in evicted {
        let what = if build.download {
            "the partial download of "
        } else {
            ""
        };
        outln!(
            "{verb} {what}{} ({}, last access {})",
            build.name,
            human_size(build.size),
            format_utc(build.last_access)
        );
    }
}

fn fail(message: &dyn std::fmt::Display) -> i32 {
    errln!("upserv: {message}");
    EXIT_FAILURE
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// Progress on stderr: a redrawn bar on a terminal, else a line every 2 s.
struct ProgressDisplay {
    terminal: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressDisplay {
    fn new(terminal: bool) -> ProgressDisplay {
        ProgressDisplay {
            terminal,
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, progress: &Progress) {
        let interval = if self.terminal {
            BAR_INTERVAL
        } else {
            PROGRESS_INTERVAL
        };
        let complete = progress.total == Some(progress.done);
        let due = self.last.is_none_or(|t| t.elapsed() >= interval);
        if !(due || self.terminal && complete) {
            return;
        }
        self.last = Some(Instant::now());
        if self.terminal {
            use std::io::Write as _;
            let _ = write!(io::stderr(), "\r{}\x1b[K", bar(progress));
            self.drawn = true;
        } else {
            errln!("{}", progress.line());
        }
    }

    fn finish(&mut self) {
        if self.drawn {
            errln!("");
        }
    }
}

fn bar(progress: &Progress) -> String {
    match (progress.stage, progress.total) {
        (Stage::Downloading, Some(total)) if total > 0 => {
            let done = progress.done.min(total);
            let filled = (done * BAR_WIDTH / total) as usize;
            format!(
                "{} [{}{}] {:>3}% {}/{} MiB",
                progress.name,
                "#".repeat(filled),
                ".".repeat(BAR_WIDTH as usize - filled),
                done * 100 / total,
                done / MIB,
                total.div_ceil(MIB)
            )
        }
        _ => progress.line(),
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(crate) fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm, written out here).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        // `date -u -d @951782400` → Tue Feb 29 00:00:00 UTC 2000
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        // `date -u -d @1700000000` → Tue Nov 14 22:13:20 UTC 2023
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn progress_lines() {
        let p = Progress {
            name: "build-812".into(),
            stage: Stage::Downloading,
            done: 109 << 20,
            total: Some(266 << 20),
        };
        assert_eq!(
            p.line(),
            "upserv: fetching build-812 from upstream: 40% (109 of 266 MiB)"
        );
        assert!(bar(&p).starts_with("build-812 [############.................."));
        let queued = Progress {
            stage: Stage::Queued,
            done: 0,
            total: None,
            ..p
        };
        assert_eq!(
            bar(&queued),
            "upserv: build-812 waits for another download to finish"
        );
    }
}
