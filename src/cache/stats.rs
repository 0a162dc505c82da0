//! What the cache has done and is doing, for `upserv status` and the
//! metrics: counters of requests by result, evictions and bytes downloaded
//! (atomics, bumped at coarse points: once per request, per eviction, per
//! chunk read from the upstream), and the downloads in progress as the
//! coordinator last saw them.
//!
//! Readers take a [`CacheReport`] through [`super::CacheWatch::report`]; nothing
//! here is on a transfer's path.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::mirrors::MirrorState;
use super::store::PRIVATE_DIR;

use parking_lot::Mutex;

/// How a connection got its build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// It was cached.
    Hit,
    /// This request started its download.
    Miss,
    /// It joined a download another request had started.
    Wait,
}

impl Lookup {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Wait => "wait",
        }
    }
}

/// Every result a build request can have, in the order of
/// [`CacheReport::requests`]: the three [`Lookup`]s, then a build the
/// upstream does not have (or no upstream at all), then any other failure.
pub(crate) const REQUEST_RESULTS: [&str; 5] = ["hit", "miss", "wait", "notfound", "error"];
const NOT_FOUND: usize = 3;
const ERROR: usize = 4;

/// One download as the coordinator last saw it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DownloadView {
    pub(crate) name: String,
    /// `queued`, `waiting` (another process holds the install lock),
    /// `downloading` or `unpacking`.
    pub(crate) stage: &'static str,
    /// Bytes downloaded (or entries unpacked) so far.
    pub(crate) done: u64,
    /// The archive's size, when the upstream said.
    pub(crate) total: Option<u64>,
    /// Bytes per second since this download started, in this process.
    pub(crate) rate: f64,
    /// Connections waiting for it.
    pub(crate) waiters: usize,
}

impl DownloadView {
    /// Seconds left at the current rate, when the total is known.
    pub(crate) fn eta_seconds(&self) -> Option<u64> {
        let total = self.total?;
        (self.rate > 0.0 && self.stage == "downloading")
            .then(|| (total.saturating_sub(self.done) as f64 / self.rate).ceil() as u64)
    }

    /// `done` in percent of `total`.
    pub(crate) fn percent(&self) -> Option<u64> {
        self.total
            .filter(|&t| t > 0)
            .map(|t| self.done.min(t) * 100 / t)
    }
}

/// One cached build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BuildUsage {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sticky: bool,
}

/// The cache at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheReport {
    pub(crate) budget: u64,
    pub(crate) builds: Vec<BuildUsage>,
    pub(crate) downloads: Vec<DownloadView>,
    /// Requests by result, in the order of [`REQUEST_RESULTS`].
    pub(crate) requests: [u64; 5],
    pub(crate) evictions: u64,
    pub(crate) download_bytes: u64,
    /// The upstream mirrors in configured order, and which count as down.
    pub(crate) mirrors: Vec<MirrorState>,
}

impl CacheReport {
    /// Disk used by all builds.
    pub(crate) fn used(&self) -> u64 {
        self.builds.iter().map(|b| b.size).sum()
    }
}

/// The counters and the downloads view, owned by the cache's shared state.
#[derive(Default)]
pub(super) struct CacheStats {
    requests: [AtomicU64; 5],
    evictions: AtomicU64,
    download_bytes: AtomicU64,
    /// Bytes so far of the download running now (one at a time): exact,
    /// where the coordinator's view lags by up to a progress interval.
    running_bytes: AtomicU64,
    downloads: Mutex<Vec<DownloadView>>,
}

impl CacheStats {
    pub(super) fn count_lookup(&self, lookup: Lookup) {
        let at = match lookup {
            Lookup::Hit => 0,
            Lookup::Miss => 1,
            Lookup::Wait => 2,
        };
        self.requests[at].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_not_found(&self) {
        self.requests[NOT_FOUND].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_error(&self) {
        self.requests[ERROR].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_eviction(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// The running download got from `before` (`None`: it just started
    /// an attempt) to `done` bytes.
    pub(super) fn count_downloaded(&self, before: Option<u64>, done: u64) {
        if let Some(before) = before.filter(|&before| done > before) {
            self.download_bytes
                .fetch_add(done - before, Ordering::Relaxed);
        }
        self.running_bytes.store(done, Ordering::Relaxed);
    }

    /// Replaces the downloads view (the coordinator, after each change).
    pub(super) fn set_downloads(&self, downloads: Vec<DownloadView>) {
        *self.downloads.lock() = downloads;
    }

    /// The coordinator's view, with the exact byte count of the one
    /// being downloaded.
    fn downloads_now(&self) -> Vec<DownloadView> {
        let mut downloads = self.downloads.lock().clone();
        if let Some(running) = downloads.first_mut().filter(|d| d.stage == "downloading") {
            running.done = self.running_bytes.load(Ordering::Relaxed);
        }
        downloads
    }

    pub(super) fn report(
        &self,
        budget: u64,
        builds: Vec<BuildUsage>,
        mirrors: Vec<MirrorState>,
    ) -> CacheReport {
        CacheReport {
            mirrors,
            budget,
            builds,
            downloads: self.downloads_now(),
            requests: std::array::from_fn(|i| self.requests[i].load(Ordering::Relaxed)),
            evictions: self.evictions.load(Ordering::Relaxed),
            download_bytes: self.download_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Where one download started, for its rate: the first byte count this
/// process saw for it, and when.
#[derive(Clone, Copy, Debug)]
pub(super) struct RateBase {
    pub(super) at: Instant,
    pub(super) done: u64,
}

impl RateBase {
    pub(super) fn rate(&self, done: u64) -> f64 {
        let secs = self.at.elapsed().as_secs_f64();
        if secs < 0.001 {
            return 0.0;
        }
        done.saturating_sub(self.done) as f64 / secs
    }
}

/// The downloads on disk in `builds` (`.upserv/partial/NAME.part`), for
/// when no daemon can say more: stage `partial`, bytes so far, no rate.
pub(crate) fn partial_downloads(builds: &Path) -> Vec<DownloadView> {
    let dir = builds.join(PRIVATE_DIR).join("partial");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<DownloadView> = entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let name = file.strip_suffix(".part")?.to_string();
            Some(DownloadView {
                name,
                stage: "partial",
                done: entry.metadata().ok()?.len(),
                total: None,
                rate: 0.0,
                waiters: 0,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
