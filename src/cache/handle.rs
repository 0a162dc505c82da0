//! The [`Cache`] handle that worker threads hold, and the [`BuildGuard`] it
//! hands out.
//!
//! A cached build is served without the coordinator: [`Cache::acquire`] takes
//! a busy mark (a shared flock), checks that the tree is there and returns a
//! guard, so it never waits behind a download. Only a missing build becomes a
//! request to the coordinator, and the caller waits for its events.
//!
//! This module must not delete or publish builds; that is the coordinator's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};

use super::coordinator::{Coordinator, Event, Request};
use super::mirrors::MirrorState;
use super::seed::SeedSecret;
use super::shared::{self, local_failure, not_found, stopped, Shared};
use super::stats::{BuildUsage, CacheReport, Lookup};
use super::store::BusyMark;
use super::types::{is_build_name, Evicted, Progress, Startup, PROGRESS_INTERVAL};
use super::{CacheConfig, CacheError};
use crate::meta::MetaTable;

/// Rounds of "not cached → fetched → look again" before giving up: a build
/// can only vanish between its install and our look by a racing `gc`.
const MAX_ACQUIRE_ROUNDS: usize = 3;

/// How often a caller waiting for a download is asked whether its client
/// is still there (see [`Cache::acquire_unless`]).
pub(crate) const GONE_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// A cheap, shareable handle on the build cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Shared>,
    requests: Sender<Request>,
    _last_handle: Arc<FlushOnDrop>,
}

/// Shared by all clones of one [`Cache`]: when the last one goes (the
/// process stops serving), the access times that were exact only in memory
/// are written, so that a restart evicts in the same order. Only a crash
/// loses them (at most a minute each, see `store`). In serve mode, where
/// the process ends with its connection, the eviction that the release of
/// its build may call for runs before that; the trash is emptied last.
struct FlushOnDrop {
    inner: Arc<Shared>,
    requests: Sender<Request>,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        if self.inner.cfg.cross_process_lock && self.inner.over_budget_while_busy() {
            let (done, evicted) = unbounded();
            let released = Request::Released { done: Some(done) };
            if self.requests.send(released).is_ok() {
                let _ = evicted.recv();
            }
        }
        self.inner.flush_access();
        self.inner.finish_trash();
    }
}

/// Reads the cache for status and metrics; see [`Cache::watch`].
#[derive(Clone)]
pub struct CacheWatch {
    inner: Arc<Shared>,
}

impl CacheWatch {
    /// The cache now: budget, builds with their sizes (measured once per
    /// tree), downloads in progress and the counters. It never waits for
    /// the coordinator.
    pub(crate) fn report(&self) -> CacheReport {
        let inner = &self.inner;
        let names = inner.store.list_builds().unwrap_or_else(|e| {
            log::warn!("cannot list {}: {e}", inner.cfg.builds_dir.display());
            Vec::new()
        });
        let builds = names
            .into_iter()
            .map(|name| BuildUsage {
                size: inner.size_of(&name),
                sticky: inner.store.is_sticky(&name),
                name,
            })
            .collect();
        inner
            .stats
            .report(inner.cfg.cache_size, builds, inner.mirror_states())
    }
}

/// While alive, the build is busy: no process evicts it.
#[derive(Debug)]
pub struct BuildGuard {
    name: String,
    root: PathBuf,
    meta: Option<Arc<MetaTable>>,
    lookup: Lookup,
    /// Always `Some` until dropped.
    mark: Option<BusyMark>,
    /// Told when the build stops being busy here.
    requests: Sender<Request>,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        // Released before the coordinator hears of it, or it would still
        // find the build busy.
        drop(self.mark.take());
        let _ = self.requests.send(Request::Released { done: None });
    }
}

impl BuildGuard {
    /// The directory served as the module.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata table, for builds upserv unpacked; `None` for trees an
    /// administrator put into the builds directory (serve what the disk says).
    pub fn meta(&self) -> Option<Arc<MetaTable>> {
        self.meta.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the build was cached, or this request fetched or waited.
    pub(crate) fn lookup(&self) -> Lookup {
        self.lookup
    }
}

/// What [`Cache::acquire_cached`] found.
enum Cached {
    Ready(BuildGuard),
    Absent,
    /// A build upserv unpacked whose table is `why` (missing, damaged).
    Unusable {
        ino: u64,
        why: &'static str,
    },
}

impl Cache {
    /// Opens the builds directory: startup recovery (unpacking leftovers
    /// removed, partial downloads kept, access record and metadata tables
    /// checked), eviction down to the budget, and the coordinator thread.
    ///
    /// A build whose metadata table is damaged is deleted at startup, so that
    /// the next request fetches it afresh (only upserv writes tables, so the
    /// build came from the upstream). With `cross_process_lock` (serve mode)
    /// the table check and the eviction are left to install time, to keep
    /// the start of each connection cheap.
    pub fn open(cfg: CacheConfig) -> Result<Cache, CacheError> {
        Cache::open_with(cfg, Startup::Full)
    }

    pub fn open_with(cfg: CacheConfig, startup: Startup) -> Result<Cache, CacheError> {
        let inner = Arc::new(Shared::new(cfg)?);
        shared::recover(&inner, startup)?;
        let (requests, receiver) = unbounded();
        let coordinator = Coordinator::new(Arc::clone(&inner), receiver);
        thread::Builder::new()
            .name("cache-coordinator".into())
            .spawn(move || coordinator.run())
            .map_err(|e| CacheError::new(format!("cannot start the cache coordinator: {e}")))?;
        Ok(Cache {
            _last_handle: Arc::new(FlushOnDrop {
                inner: Arc::clone(&inner),
                requests: requests.clone(),
            }),
            inner,
            requests,
        })
    }

    /// The upstream mirrors in configured order, with how much longer each
    /// counts as down (for `status`); empty without an upstream.
    pub fn mirrors(&self) -> Vec<MirrorState> {
        self.inner.mirror_states()
    }

    /// Cached build names (directories in the builds dir that are valid
    /// module names), sorted.
    pub fn list_modules(&self) -> Vec<String> {
        self.inner.store.list_builds().unwrap_or_else(|e| {
            log::error!("cannot list {}: {e}", self.inner.cfg.builds_dir.display());
            Vec::new()
        })
    }

    /// Gets a build for serving. `Ok(None)`: not a valid build name, or not
    /// cached and no upstream configured ("Unknown module"). While a download
    /// runs, `progress` gets a ready line at most once every 2 s.
    pub fn acquire(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Option<BuildGuard>, CacheError> {
        self.acquire_unless(name, progress, &mut || false)
    }

    /// [`Cache::acquire`] for a caller whose client may hang up meanwhile:
    /// `gone` is asked every [`GONE_CHECK_INTERVAL`] while a download runs,
    /// and when it says so the wait ends at once with an error (the
    /// download goes on for the cache and other waiters).
    pub(crate) fn acquire_unless(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&str),
        gone: &mut dyn FnMut() -> bool,
    ) -> Result<Option<BuildGuard>, CacheError> {
        let mut last_shown: Option<Instant> = None;
        let mut show = |p: &Progress| {
            if last_shown.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL) {
                last_shown = Some(Instant::now());
                progress(&p.line());
            }
        };
        self.acquire_inner(name, &mut show, gone)
    }

    /// The checksum seed every connection pulling `name` gets today: one
    /// value per build and UTC day, derived from the builds directory's
    /// secret (see `seed`), so identical requests are identical.
    pub(crate) fn build_seed(&self, name: &str) -> u32 {
        let secret = self
            .inner
            .seed
            .get_or_init(|| SeedSecret::load_or_create(&self.inner.store.seed_path()));
        secret.seed(name, super::store::unix_now().max(0) as u64)
    }

    /// Calls `hook` with the name of every build whose tree leaves the
    /// cache from now on (evicted, or replaced by a refetch), until it
    /// answers `false` (its owner is gone).
    pub(crate) fn on_build_gone(&self, hook: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.inner.on_gone.lock().push(Box::new(hook));
    }

    /// Removes the idle, unpinned build `name` now (through the coordinator).
    pub fn evict(&self, name: &str) -> Result<Evicted, CacheError> {
        self.ask(|reply| Request::Evict {
            name: name.to_string(),
            reply,
        })
    }

    /// Downloads and unpacks `name` again, and replaces the cached tree
    /// only once the new one is complete (see `Shared::publish`).
    pub fn refetch(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), CacheError> {
        if self.inner.cfg.upstream.is_none() {
            return Err(CacheError::new("no upstream configured"));
        }
        self.wait_for_fetch(name, true, None, progress, &mut || false)
            .map(|_| ())
    }

    /// Evicts down to the budget now (through the coordinator), or with
    /// `dry_run` only reports what would go.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<Evicted>, CacheError> {
        self.ask(|reply| Request::Gc { dry_run, reply })
    }

    /// Sends the coordinator a request with a reply channel, and waits for
    /// its one answer.
    fn ask<T>(
        &self,
        request: impl FnOnce(Sender<Result<T, CacheError>>) -> Request,
    ) -> Result<T, CacheError> {
        let (reply, answer) = unbounded();
        self.requests.send(request(reply)).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    /// A handle for watching the cache, which keeps it from nothing: the
    /// coordinator still stops, and the access times are still written,
    /// when the last [`Cache`] goes.
    pub fn watch(&self) -> CacheWatch {
        CacheWatch {
            inner: Arc::clone(&self.inner),
        }
    }

    /// [`Cache::acquire`] with the progress as values, not lines.
    pub fn acquire_with(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Option<BuildGuard>, CacheError> {
        self.acquire_inner(name, progress, &mut || false)
    }

    /// [`Cache::find_or_fetch`], counted by result for status and metrics.
    fn acquire_inner(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&Progress),
        gone: &mut dyn FnMut() -> bool,
    ) -> Result<Option<BuildGuard>, CacheError> {
        let acquired = self.find_or_fetch(name, progress, gone);
        let stats = &self.inner.stats;
        match &acquired {
            Ok(Some(guard)) => stats.count_lookup(guard.lookup),
            Ok(None) => stats.count_not_found(),
            Err(e) if e.not_found => stats.count_not_found(),
            Err(_) => stats.count_error(),
        }
        acquired
    }

    fn find_or_fetch(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&Progress),
        gone: &mut dyn FnMut() -> bool,
    ) -> Result<Option<BuildGuard>, CacheError> {
        if !is_build_name(name) {
            return Ok(None);
        }
        // What the first fetch said; a build found at once is a hit.
        let mut lookup = Lookup::Hit;
        for _ in 0..MAX_ACQUIRE_ROUNDS {
            let unusable = match self.acquire_cached(name)? {
                Cached::Ready(mut guard) => {
                    guard.lookup = lookup;
                    return Ok(Some(guard));
                }
                Cached::Absent => None,
                Cached::Unusable { ino, why } => {
                    let error = CacheError::new(format!(
                        "build {name} cannot be served: its metadata table is {why}"
                    ));
                    if self.inner.cfg.upstream.is_none() {
                        return Err(error);
                    }
                    log::warn!("{error}; fetching it again");
                    Some(ino)
                }
            };
            if self.inner.cfg.upstream.is_none() {
                return Ok(None);
            }
            if self
                .inner
                .store
                .recently_missing(name, self.inner.cfg.not_found_ttl)
            {
                return Err(not_found(name));
            }
            let heard = self.wait_for_fetch(name, false, unusable, progress, gone)?;
            if lookup == Lookup::Hit {
                lookup = heard.unwrap_or(Lookup::Hit);
            }
        }
        Err(CacheError::new(format!(
            "build {name} was removed right after it was installed; try again"
        )))
    }

    fn acquire_cached(&self, name: &str) -> Result<Cached, CacheError> {
        let store = &self.inner.store;
        if !store.is_build(name) {
            return Ok(Cached::Absent);
        }
        let mark = store
            .mark_busy(name)
            .map_err(|e| local_failure(name, "cannot mark it busy", e))?;
        // Checked again under the mark: an eviction may have won the race.
        let Some(ino) = store.build_ino(name) else {
            return Ok(Cached::Absent);
        };
        let meta = match self.inner.table(name, ino) {
            Ok(meta) => meta,
            Err(why) => return Ok(Cached::Unusable { ino, why }),
        };
        self.inner.note_access(name);
        Ok(Cached::Ready(BuildGuard {
            name: name.to_string(),
            root: store.build_dir(name),
            meta,
            lookup: Lookup::Hit,
            mark: Some(mark),
            requests: self.requests.clone(),
        }))
    }

    /// Asks the coordinator for `name` and waits until it is there; says
    /// whether this request started the download or joined one (`None`: it
    /// was there). With `refetch` it is downloaded even when cached, and
    /// replaces the cached tree once complete; with `unusable`, the tree
    /// with that inode, whose table is unusable, is deleted first.
    fn wait_for_fetch(
        &self,
        name: &str,
        refetch: bool,
        unusable: Option<u64>,
        progress: &mut dyn FnMut(&Progress),
        gone: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Lookup>, CacheError> {
        let (reply, events) = unbounded();
        self.requests
            .send(Request::Fetch {
                name: name.to_string(),
                refetch,
                unusable,
                reply,
            })
            .map_err(|_| stopped())?;
        let mut lookup = None;
        loop {
            match events.recv_timeout(GONE_CHECK_INTERVAL) {
                Ok(Event::Lookup(l)) => lookup = Some(l),
                Ok(Event::Progress(p)) => progress(&p),
                Ok(Event::Installed) => return Ok(lookup),
                Ok(Event::Failed(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
            }
            if gone() {
                return Err(CacheError::new(format!(
                    "the client went away while {name} was being fetched"
                )));
            }
        }
    }
}
