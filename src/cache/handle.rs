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
use std::time::Instant;

use crossbeam_channel::{unbounded, Sender};

use super::coordinator::{Coordinator, Event, Request};
use super::job::{Progress, PROGRESS_INTERVAL};
use super::meta::MetaTable;
use super::shared::{self, local_failure, not_found, stopped, Shared};
use super::store::BusyMark;
use super::{is_build_name, CacheConfig, CacheError};

/// Rounds of "not cached → fetched → look again" before giving up: a build
/// can only vanish between its install and our look by a racing `gc`.
const MAX_ACQUIRE_ROUNDS: usize = 3;

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

/// While alive, the build is busy: no process evicts it.
#[derive(Debug)]
pub struct BuildGuard {
    name: String,
    root: PathBuf,
    meta: Option<Arc<MetaTable>>,
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

/// One build that eviction removed (or, in a dry run, would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub name: String,
    /// The partial download of `name`, not a build tree.
    pub download: bool,
    pub size: u64,
    pub last_access: i64,
}

/// What happens at [`Cache::open`] besides spawning the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Startup {
    /// Recovery, table checks and eviction (daemon; serve mode does less).
    Full,
    /// Recovery only: admin commands that report before they change anything.
    NoEviction,
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

    pub(crate) fn open_with(cfg: CacheConfig, startup: Startup) -> Result<Cache, CacheError> {
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
        let mut last_shown: Option<Instant> = None;
        self.acquire_with(name, &mut |p: &Progress| {
            if last_shown.is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL) {
                last_shown = Some(Instant::now());
                progress(&p.line());
            }
        })
    }

    /// Evicts down to the budget now (through the coordinator), or with
    /// `dry_run` only reports what would go.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<Evicted>, CacheError> {
        let (reply, answer) = unbounded();
        self.requests
            .send(Request::Gc { dry_run, reply })
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }

    pub(crate) fn acquire_with(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Option<BuildGuard>, CacheError> {
        if !is_build_name(name) {
            return Ok(None);
        }
        for _ in 0..MAX_ACQUIRE_ROUNDS {
            let replace = match self.acquire_cached(name)? {
                Cached::Ready(guard) => return Ok(Some(guard)),
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
            self.wait_for_fetch(name, replace, progress)?;
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
            mark: Some(mark),
            requests: self.requests.clone(),
        }))
    }

    /// Asks the coordinator for `name` (first deleting the tree with inode
    /// `replace`, whose table is unusable) and waits until it is there.
    fn wait_for_fetch(
        &self,
        name: &str,
        replace: Option<u64>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), CacheError> {
        let (reply, events) = unbounded();
        self.requests
            .send(Request::Fetch {
                name: name.to_string(),
                replace,
                reply,
            })
            .map_err(|_| stopped())?;
        loop {
            match events.recv().map_err(|_| stopped())? {
                Event::Progress(p) => progress(&p),
                Event::Installed => return Ok(()),
                Event::Failed(e) => return Err(e),
            }
        }
    }
}
