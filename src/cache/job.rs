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

use crossbeam_channel::Sender;

use super::fetch::{self, FetchError, Target, MAX_MANIFEST_BYTES};
use super::shared::{local_failure, not_found, too_large, Shared};
use super::store;
use super::unpack::{self, Plan};
use super::{CacheError, Layout};

/// Waiting clients see a progress line at most this often (SPEC §5).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The job thread reports bytes at most this often.
const JOB_PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// How often a process waiting for another's install lock looks again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(200);
const MIB: u64 = 1 << 20;

/// Where a fetch stands, for progress lines and bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    pub name: String,
    pub stage: Stage,
    pub done: u64,
    pub total: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// In this process, behind the download of another build.
    Queued,
    /// Another process holds the install lock.
    Waiting,
    Downloading,
    Unpacking,
}

impl Progress {
    /// The line a waiting client sees.
    pub fn line(&self) -> String {
        let name = &self.name;
        match (self.stage, self.total) {
            (Stage::Queued, _) => {
                format!("upserv: {name} waits for another download to finish")
            }
            (Stage::Waiting, _) if self.done >= MIB => format!(
                "upserv: waiting for another download of {name} to finish ({} MiB so far)",
                self.done / MIB
            ),
            (Stage::Waiting, _) => {
                format!("upserv: waiting for another download of {name} to finish")
            }
            (Stage::Unpacking, _) if self.done > 0 => {
                format!("upserv: unpacking {name}: {} entries", self.done)
            }
            (Stage::Unpacking, _) => format!("upserv: unpacking {name}"),
            (Stage::Downloading, Some(total)) if total > 0 => format!(
                "upserv: fetching {name} from upstream: {}% ({} of {} MiB)",
                self.done.min(total) * 100 / total,
                self.done / MIB,
                total.div_ceil(MIB)
            ),
            (Stage::Downloading, _) => format!(
                "upserv: fetching {name} from upstream: {} MiB",
                self.done / MIB
            ),
        }
    }
}

/// What the job thread tells the coordinator.
pub(super) enum JobEvent {
    Progress(Progress),
    Finished(Result<Option<Prepared>, CacheError>),
}

/// A tree in scratch space, ready to publish; holds the install lock.
pub(super) struct Prepared {
    pub(super) name: String,
    pub(super) scratch: PathBuf,
    pub(super) tree: PathBuf,
    pub(super) table: PathBuf,
    pub(super) size: u64,
    pub(super) _lock: File,
}

/// The job thread: wait for the install lock, download, unpack, measure.
/// Returns `None` when another process installed the build.
pub(super) fn run(
    inner: &Shared,
    name: &str,
    events: &Sender<JobEvent>,
) -> Result<Option<Prepared>, CacheError> {
    let store = &inner.store;
    let Some(lock) = wait_install_lock(inner, name, events)? else {
        return Ok(None);
    };
    let _downloading = Downloading::mark(inner, name);
    if store.is_build(name) {
        return Ok(None);
    }
    if store.recently_missing(name, inner.cfg.not_found_ttl) {
        return Err(not_found(name));
    }
    let (Some(template), Some(kind)) = (&inner.cfg.upstream, inner.kind) else {
        return Err(CacheError::new(format!("{name}: no upstream configured")));
    };
    let url = fetch::expand(template, name);
    let archive = store.complete_path(name);
    if archive.exists() {
        log::info!("unpacking {name} from the download kept from an earlier attempt");
    } else {
        let part = download(inner, name, &url, events)?;
        std::fs::rename(&part, &archive)
            .map_err(|e| local_failure(name, "cannot keep its download", e))?;
        fetch::discard(&part, &store.partial_info_path(name));
    }
    let contents = fetch_contents(inner, name)?;
    let scratch = store.unpack_dir(name);
    let mut report = throttled(events, name, Stage::Unpacking);
    report(0, None);
    let mut plan = Plan {
        layout: inner.cfg.layout,
        contents: contents.as_deref(),
        on_entry: &mut |entries| report(entries, None),
        max_bytes: inner.cfg.cache_size,
    };
    let unpacked = unpack::unpack(&archive, kind, &scratch, &mut plan);
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
        _lock: lock,
    });
    match prepared {
        Ok(prepared) => {
            remove_download(inner, name);
            log::info!("unpacked {name}: {} entries", unpacked.entries);
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

/// A progress reporter that sends at most one event per interval, plus the
/// one that says a known total is reached.
fn throttled<'a>(
    events: &'a Sender<JobEvent>,
    name: &'a str,
    stage: Stage,
) -> impl FnMut(u64, Option<u64>) + 'a {
    let mut last_report: Option<Instant> = None;
    move |done, total| {
        let finished = total == Some(done);
        if finished || last_report.is_none_or(|t| t.elapsed() >= JOB_PROGRESS_INTERVAL) {
            last_report = Some(Instant::now());
            let _ = events.send(JobEvent::Progress(Progress {
                name: name.to_string(),
                stage,
                done,
                total,
            }));
        }
    }
}

fn download(
    inner: &Shared,
    name: &str,
    url: &str,
    events: &Sender<JobEvent>,
) -> Result<PathBuf, CacheError> {
    let part = inner.store.partial_path(name);
    let info = inner.store.partial_info_path(name);
    let checksum_url = inner
        .cfg
        .upstream_checksum
        .as_deref()
        .map(|t| fetch::expand(t, name));
    let target = Target {
        url,
        checksum_url: checksum_url.as_deref(),
        part: &part,
        info: &info,
        max_bytes: inner.cfg.cache_size,
    };
    let mut report = throttled(events, name, Stage::Downloading);
    match inner.fetcher.download(&target, &mut report) {
        Ok(fetched) => {
            let rate = fetched.transferred as f64 / fetched.seconds.max(0.001) / MIB as f64;
            log::info!(
                "fetched {name}: {} bytes ({} transferred) in {:.1} s, {rate:.2} MiB/s, {}",
                fetched.total,
                fetched.transferred,
                fetched.seconds,
                match fetched.verified {
                    Some(algorithm) => format!("{algorithm} verified"),
                    None => "no checksum".to_string(),
                }
            );
            Ok(part)
        }
        Err(e) => Err(fetch_failure(inner, name, e)),
    }
}

/// The olpc manifest, downloaded beside the partial archive.
fn fetch_contents(inner: &Shared, name: &str) -> Result<Option<PathBuf>, CacheError> {
    let template = match (&inner.cfg.upstream_contents, inner.cfg.layout) {
        (Some(template), Layout::Olpc) => template,
        _ => return Ok(None),
    };
    let url = fetch::expand(template, name);
    let body = inner
        .fetcher
        .get_small(&url, MAX_MANIFEST_BYTES)
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
/// build appeared while we waited.
fn wait_install_lock(
    inner: &Shared,
    name: &str,
    events: &Sender<JobEvent>,
) -> Result<Option<File>, CacheError> {
    let store = &inner.store;
    let mut report = throttled(events, name, Stage::Waiting);
    loop {
        match store.try_lock_install() {
            Ok(Some(lock)) => return Ok(Some(lock)),
            Ok(None) => {}
            Err(e) => return Err(CacheError::new(format!("cannot take the cache lock: {e}"))),
        }
        if store.is_build(name) {
            return Ok(None);
        }
        // The partial file of the other process shows how far it got.
        let done = std::fs::metadata(store.partial_path(name)).map_or(0, |m| m.len());
        report(done, None);
        thread::sleep(LOCK_POLL_INTERVAL);
    }
}
