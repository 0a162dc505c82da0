//! The job thread of one download: wait for the install lock, download,
//! fetch the manifest, unpack (the unpacker writes the metadata table) and
//! measure the tree, telling the coordinator how far it got.
//!
//! It leaves a [`Prepared`] tree in scratch space and holds the install lock
//! until the coordinator has published it; it must never publish or delete
//! a build itself.

use std::fs::File;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::fetch::{self, FetchError, MAX_MANIFEST_BYTES};
use super::mirrors::{get_with_retries, Download, Mirror, Mirrors};
use super::shared::{local_failure, not_found, too_large, Shared};
use super::store;
use super::types::{Layout, Prepared, Progress, Stage};
use super::unpack::{self, Plan};
use super::CacheError;

/// The job thread reports bytes at most this often.
const JOB_PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// How often a process waiting for another's install lock looks again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(200);
const MIB: u64 = 1 << 20;

/// What the job thread tells the coordinator.
pub(super) enum JobEvent {
    Progress(Progress),
    Finished(Result<Option<Prepared>, CacheError>),
}

/// The job thread: wait for the install lock, download, unpack, measure.
/// Returns `None` when another process installed the build (unless
/// `refetch`: then a cached build is downloaded again).
pub(super) fn run(
    inner: &Shared,
    name: &str,
    refetch: bool,
    events: &Sender<JobEvent>,
) -> Result<Option<Prepared>, CacheError> {
    let store = &inner.store;
    let Some(lock) = wait_install_lock(inner, name, refetch, events)? else {
        return Ok(None);
    };
    let _downloading = Downloading::mark(inner, name);
    if !refetch && store.is_build(name) {
        return Ok(None);
    }
    if store.recently_missing(name, inner.cfg.not_found_ttl) {
        return Err(not_found(name));
    }
    let Some(mirrors) = &inner.mirrors else {
        return Err(CacheError::new(format!("{name}: no upstream configured")));
    };
    let archive = store.complete_path(name);
    let kept = if refetch {
        // Downloaded again, as asked: what was kept may be what is wrong.
        remove_download(inner, name);
        None
    } else {
        kept_download(inner, mirrors, name)
    };
    let mirror = match kept {
        Some(mirror) => {
            log::info!("unpacking {name} from the download kept from an earlier attempt");
            mirror
        }
        None => {
            let (part, mirror) = download(inner, mirrors, name, events)?;
            // The `.info` stays beside it: it names the mirror that sent it.
            std::fs::rename(&part, &archive)
                .map_err(|e| local_failure(name, "cannot keep its download", e))?;
            mirror
        }
    };
    let contents = fetch_contents(inner, mirror, name)?;
    let scratch = store.unpack_dir(name);
    let report = Reporter::new(events, name, Stage::Unpacking);
    report.update(0, None);
    let mut plan = Plan {
        layout: inner.cfg.layout,
        contents: contents.as_deref(),
        on_entry: &mut |entries| report.update(entries, None),
        max_bytes: inner.cfg.cache_size,
    };
    let unpacked = unpack::unpack(&archive, mirror.kind, &scratch, &mut plan);
    if let Some(path) = &contents {
        let _ = std::fs::remove_file(path);
    }
    let unpacked = unpacked.map_err(|e| {
        if unpack::is_disk_full(&e) {
            // Eviction may make room: the next attempt unpacks these bytes
            // again without downloading them.
            log::error!("build {name} could not be unpacked, download kept: {e}");
        } else {
            // The same bytes would fail the same way: fetch afresh next time.
            remove_download(inner, name);
            log::error!("build {name} could not be unpacked: {e}");
        }
        CacheError::new(format!("build {name} could not be unpacked: {e}"))
    })?;
    let prepared = store::disk_usage(&unpacked.tree).map(|size| Prepared {
        name: name.to_string(),
        scratch: scratch.clone(),
        tree: unpacked.tree,
        table: unpacked.table,
        size,
        swap: None,
        _lock: lock,
    });
    match prepared {
        Ok(mut prepared) => {
            remove_download(inner, name);
            log::info!("unpacked {name}: {} entries", unpacked.entries);
            if refetch && store.is_build(name) {
                match wait_until_idle(inner, name) {
                    Ok(idle) => prepared.swap = Some(idle),
                    Err(e) => {
                        let _ = store::remove_tree(&scratch);
                        return Err(e);
                    }
                }
            }
            Ok(Some(prepared))
        }
        Err(e) => {
            let _ = store::remove_tree(&scratch);
            Err(local_failure(name, "cannot prepare it", e))
        }
    }
}

/// Names the build this process downloads while the install lock is held,
/// so that eviction leaves its partial download alone.
struct Downloading<'a>(&'a Shared);

impl<'a> Downloading<'a> {
    fn mark(inner: &'a Shared, name: &str) -> Downloading<'a> {
        *inner.downloading.lock() = Some(name.to_string());
        Downloading(inner)
    }
}

impl Drop for Downloading<'_> {
    fn drop(&mut self) {
        *self.0.downloading.lock() = None;
    }
}

/// The download of `name`, finished or not, with its bookkeeping.
fn remove_download(inner: &Shared, name: &str) {
    let store = &inner.store;
    fetch::discard(&store.partial_path(name), &store.partial_info_path(name));
    fetch::discard(&store.complete_path(name), &store.partial_info_path(name));
}

/// The download kept from an earlier attempt whose unpacking ran out of
/// disk space, with the mirror that sent it (the URL its `.info` keeps).
/// `None` when there is none; one whose mirror is no longer configured is
/// discarded.
fn kept_download<'m>(inner: &Shared, mirrors: &'m Mirrors, name: &str) -> Option<&'m Mirror> {
    let store = &inner.store;
    if !store.complete_path(name).exists() {
        return None;
    }
    let url = fetch::partial_url(&store.partial_info_path(name));
    let mirror = url.and_then(|url| mirrors.sent(name, &url));
    if mirror.is_none() {
        log::warn!("discarding the kept download of {name}: no configured mirror sent it");
        remove_download(inner, name);
    }
    mirror
}

/// Progress events for one stage: at most one per interval as values
/// change, the one that says a known total is reached, and on [`tick`]
/// the latest value again, so that waiting clients keep seeing how far a
/// stalled download got.
///
/// [`tick`]: Reporter::tick
struct Reporter<'a> {
    events: &'a Sender<JobEvent>,
    name: &'a str,
    stage: Stage,
    latest: Mutex<Latest>,
}

/// The latest value a [`Reporter`] was given, and when it last sent one.
struct Latest {
    done: u64,
    total: Option<u64>,
    sent: Option<Instant>,
}

impl<'a> Reporter<'a> {
    fn new(events: &'a Sender<JobEvent>, name: &'a str, stage: Stage) -> Reporter<'a> {
        Reporter {
            events,
            name,
            stage,
            latest: Mutex::new(Latest {
                done: 0,
                total: None,
                sent: None,
            }),
        }
    }

    fn update(&self, done: u64, total: Option<u64>) {
        let mut latest = self.latest.lock();
        let due = total == Some(done)
            || latest
                .sent
                .is_none_or(|t| t.elapsed() >= JOB_PROGRESS_INTERVAL);
        (latest.done, latest.total) = (done, total);
        if due {
            self.send(&mut latest);
        }
    }

    /// Sends the latest value if nothing was sent for an interval, once
    /// there is a value at all.
    fn tick(&self) {
        let mut latest = self.latest.lock();
        if latest
            .sent
            .is_some_and(|t| t.elapsed() >= JOB_PROGRESS_INTERVAL)
        {
            self.send(&mut latest);
        }
    }

    fn send(&self, latest: &mut Latest) {
        latest.sent = Some(Instant::now());
        let _ = self.events.send(JobEvent::Progress(Progress {
            name: self.name.to_string(),
            stage: self.stage,
            done: latest.done,
            total: latest.total,
        }));
    }
}

/// Downloads build `name` from the mirrors; the archive's path and the
/// mirror that sent it. A ticker thread repeats the latest progress while
/// the download stalls.
fn download<'m>(
    inner: &Shared,
    mirrors: &'m Mirrors,
    name: &str,
    events: &Sender<JobEvent>,
) -> Result<(PathBuf, &'m Mirror), CacheError> {
    let part = inner.store.partial_path(name);
    let info = inner.store.partial_info_path(name);
    let job = Download {
        name,
        part: &part,
        info: &info,
        max_bytes: inner.cfg.cache_size,
        attempts: inner.cfg.fetch_attempts,
        backoff: inner.cfg.retry_backoff,
    };
    let report = Reporter::new(events, name, Stage::Downloading);
    let started = Instant::now();
    let mut transferred = 0;
    // Each attempt reports its starting offset first, then every chunk:
    // what grew between two reports came from the upstream.
    let mut last_done: Option<u64> = None;
    let (stop, stopped) = bounded::<()>(0);
    let result = thread::scope(|scope| {
        // Without the ticker (no thread to be had) only the repeats are lost.
        let ticker = thread::Builder::new()
            .name("fetch-progress".into())
            .spawn_scoped(scope, || {
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(JOB_PROGRESS_INTERVAL)
                {
                    report.tick();
                }
            });
        if let Err(e) = ticker {
            log::warn!("no progress ticker for {name}: {e}");
        }
        let result = mirrors.download(&inner.fetcher, &job, &mut transferred, &mut |d, t| {
            inner.stats.count_downloaded(last_done, d);
            last_done = Some(d);
            report.update(d, t)
        });
        drop(stop);
        result
    });
    match result {
        Ok(served) => {
            let seconds = started.elapsed().as_secs_f64();
            let rate = transferred as f64 / seconds.max(0.001) / MIB as f64;
            let mirror = mirrors.get(served.mirror);
            log::info!(
                "fetched {name}: {} bytes ({transferred} transferred) in {seconds:.1} s, {rate:.2} MiB/s, {}, from {}",
                served.fetched.total,
                match served.fetched.verified {
                    Some(algorithm) => format!("{algorithm} verified"),
                    None => "no checksum".to_string(),
                },
                fetch::expand(&mirror.archive, name),
            );
            Ok((part, mirror))
        }
        Err(e) => Err(fetch_failure(inner, name, e)),
    }
}

/// The olpc manifest, downloaded beside the partial archive.
fn fetch_contents(
    inner: &Shared,
    mirror: &Mirror,
    name: &str,
) -> Result<Option<PathBuf>, CacheError> {
    let template = match (&mirror.contents, inner.cfg.layout) {
        (Some(template), Layout::Olpc) => template,
        _ => return Ok(None),
    };
    let url = fetch::expand(template, name);
    let body = get_with_retries(
        &inner.fetcher,
        &url,
        MAX_MANIFEST_BYTES,
        inner.cfg.fetch_attempts,
        inner.cfg.retry_backoff,
    )
    .map_err(|e| match e {
        FetchError::NotFound => CacheError::new(format!(
            "the contents manifest of {name} was not found upstream"
        )),
        other => fetch_failure(inner, name, other),
    })?;
    let path = inner.store.partial_path(name).with_extension("contents");
    std::fs::write(&path, body).map_err(|e| local_failure(name, "cannot store its manifest", e))?;
    Ok(Some(path))
}

fn fetch_failure(inner: &Shared, name: &str, error: FetchError) -> CacheError {
    match error {
        FetchError::NotFound => {
            if let Err(e) = inner.store.remember_missing(name, inner.cfg.not_found_ttl) {
                log::warn!("cannot remember that {name} is missing upstream: {e}");
            }
            not_found(name)
        }
        FetchError::TooLarge(size) => too_large(name, size, inner.cfg.cache_size),
        FetchError::Failed(why) => {
            log::error!("fetching {name}: {why}");
            CacheError::new(format!("fetching {name} from upstream failed: {why}"))
        }
    }
}

/// Waits for the install lock, telling waiters meanwhile; `None` when the
/// build appeared while we waited (and is not to be replaced).
fn wait_install_lock(
    inner: &Shared,
    name: &str,
    refetch: bool,
    events: &Sender<JobEvent>,
) -> Result<Option<File>, CacheError> {
    let store = &inner.store;
    let report = Reporter::new(events, name, Stage::Waiting);
    loop {
        match store.try_lock_install() {
            Ok(Some(lock)) => return Ok(Some(lock)),
            Ok(None) => {}
            Err(e) => return Err(CacheError::new(format!("cannot take the cache lock: {e}"))),
        }
        if !refetch && store.is_build(name) {
            return Ok(None);
        }
        // The partial file of the other process shows how far it got.
        let done = std::fs::metadata(store.partial_path(name)).map_or(0, |m| m.len());
        report.update(done, None);
        thread::sleep(LOCK_POLL_INTERVAL);
    }
}

/// How long a refetched build waits for the connections serving the old
/// tree to end before giving up (and keeping the old tree).
const REPLACE_IDLE_WAIT: Duration = Duration::from_secs(600);
/// How often it looks whether they have.
const REPLACE_IDLE_POLL: Duration = Duration::from_millis(200);

/// The idle lock of cached build `name`, once no connection serves it.
/// Connections serving the old tree read it by path, so a swap must wait for
/// them; holding the lock then makes new connections wait for the swap.
fn wait_until_idle(inner: &Shared, name: &str) -> Result<File, CacheError> {
    let deadline = Instant::now() + REPLACE_IDLE_WAIT;
    loop {
        if let Some(idle) = inner.store.try_lock_idle(name) {
            return Ok(idle);
        }
        if Instant::now() >= deadline {
            return Err(CacheError::new(format!(
                "build {name} stayed in use for {} s; kept the cached one",
                REPLACE_IDLE_WAIT.as_secs()
            )));
        }
        thread::sleep(REPLACE_IDLE_POLL);
    }
}
