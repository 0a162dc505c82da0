//! State shared by the cache handle, the coordinator and the job thread:
//! configuration, the store, loaded tables, measured sizes, the access
//! record, and the operations on them that need several of these (startup
//! recovery, eviction, publishing).
//!
//! Only the coordinator thread calls [`Shared::evict`] and [`Shared::publish`]
//! (startup recovery runs before the coordinator exists), so that one thread
//! alone deletes and publishes builds.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;

use super::fetch::{Fetcher, Limits};
use super::mirrors::Mirrors;
use super::seed::SeedSecret;
use super::stats::CacheStats;
use super::store::{self, AccessRecord, Candidate, Store};
use super::types::{human_size, Evicted, Prepared, Startup};
use super::{CacheConfig, CacheError};
use crate::meta::MetaTable;

const MIB: u64 = 1 << 20;

/// See [`Shared::on_gone`].
pub(super) type GoneHook = Box<dyn Fn(&str) -> bool + Send + Sync>;

pub(super) struct Shared {
    pub(super) cfg: CacheConfig,
    pub(super) store: Store,
    pub(super) fetcher: Fetcher,
    /// `None` without an upstream.
    pub(super) mirrors: Option<Mirrors>,
    pub(super) access: Mutex<AccessRecord>,
    /// Tables in use, by build, with the inode of the tree they belong to.
    /// Weak, so that a table leaves memory with the last connection using it.
    pub(super) tables: Mutex<HashMap<String, (u64, Weak<MetaTable>)>>,
    /// Disk usage by build, with the inode of the tree it was measured for.
    pub(super) sizes: Mutex<HashMap<String, (u64, u64)>>,
    pub(super) stats: CacheStats,
    /// The build this process downloads while it holds the install lock.
    pub(super) downloading: Mutex<Option<String>>,
    /// The last eviction left the cache over budget because builds were in
    /// use: the end of a connection is then worth another try. In serve
    /// mode the store's mark says the same across processes.
    over_budget_while_busy: AtomicBool,
    trash: Trash,
    /// The checksum-seed secret, read or made at the first seed asked for.
    pub(super) seed: OnceLock<SeedSecret>,
    /// Told the name of each build whose tree leaves (evicted, replaced by
    /// a refetch), so that what was derived from it goes too; a hook that
    /// answers `false` is done and removed.
    pub(super) on_gone: Mutex<Vec<GoneHook>>,
}

/// Why eviction runs; each occasion spares different builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Occasion<'a> {
    /// After installing this build, which stays.
    Install(&'a str),
    Startup,
    Gc {
        dry_run: bool,
    },
    /// A connection stopped serving a build.
    Release,
}

/// When eviction runs because one build was released, a build newer than
/// one still in use waits: the older one, once released, goes first, so
/// the end of a burst evicts in the same order as one eviction at its end.
fn spare_newer_than_busy(candidates: &mut [Candidate]) {
    // In the order of eviction: last access, then name.
    let Some(oldest_busy) = candidates
        .iter()
        .filter(|c| c.busy)
        .min_by(|a, b| (a.last_access, &a.name).cmp(&(b.last_access, &b.name)))
        .map(|c| (c.last_access, c.name.clone()))
    else {
        return;
    };
    for candidate in candidates.iter_mut() {
        candidate.spared =
            (candidate.last_access, &candidate.name) > (oldest_busy.0, &oldest_busy.1);
    }
}

/// Which downloads in `partial/` eviction must leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Downloads {
    /// None runs: the caller holds the install lock.
    Idle,
    /// This process downloads this build.
    Except(String),
    /// Another process downloads, which build is unknown: keep them all.
    Busy,
}

/// The thread that empties the trash in the background, so that deleting
/// a large tree never holds up the coordinator.
struct Trash {
    wake: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Trash {
    fn start(store: &Store) -> Trash {
        // One pending wake-up is enough: each pass empties the whole trash.
        let (wake, woken) = bounded::<()>(1);
        let store = store.clone_paths();
        let thread = thread::Builder::new()
            .name("cache-trash".into())
            .spawn(move || {
                for () in woken {
                    store.empty_trash();
                }
            })
            .map_err(|e| log::error!("cannot start the trash thread: {e}"))
            .ok();
        Trash {
            wake: Mutex::new(Some(wake)),
            thread: Mutex::new(thread),
        }
    }

    fn wake(&self) {
        if let Some(wake) = &*self.wake.lock() {
            let _ = wake.try_send(());
        }
    }

    /// Lets the thread finish its pass and waits for it.
    fn finish(&self) {
        drop(self.wake.lock().take());
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    /// The upstream mirrors in configured order, with how much longer each
    /// counts as down; empty without an upstream.
    pub(super) fn mirror_states(&self) -> Vec<super::mirrors::MirrorState> {
        self.mirrors.as_ref().map_or(Vec::new(), |m| m.states())
    }

    /// Checks the configuration and opens the builds directory.
    pub(super) fn new(cfg: CacheConfig) -> Result<Shared, CacheError> {
        let mirrors = Mirrors::from_config(&cfg)?;
        let store = Store::open(&cfg.builds_dir).map_err(|e| {
            CacheError::new(format!("builds dir {}: {e}", cfg.builds_dir.display()))
        })?;
        Ok(Shared {
            fetcher: Fetcher::new(Limits {
                timeout: cfg.fetch_timeout,
                min_rate: cfg.fetch_min_rate,
                min_rate_window: cfg.min_rate_window,
            }),
            access: Mutex::new(store.load_access()),
            trash: Trash::start(&store),
            store,
            mirrors,
            tables: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
            downloading: Mutex::new(None),
            over_budget_while_busy: AtomicBool::new(false),
            seed: OnceLock::new(),
            on_gone: Mutex::new(Vec::new()),
            cfg,
        })
    }

    /// Whether a release may let eviction meet the budget again.
    pub(super) fn over_budget_while_busy(&self) -> bool {
        self.over_budget_while_busy.load(Ordering::Relaxed)
            || (self.cfg.cross_process_lock && self.store.over_budget_marked())
    }

    fn set_over_budget_while_busy(&self, over: bool) {
        self.over_budget_while_busy.store(over, Ordering::Relaxed);
        // Serve mode: the last process to release a build is seldom the one
        // that installed one, so the state is shared through the store.
        if self.cfg.cross_process_lock {
            if let Err(e) = self.store.mark_over_budget(over) {
                log::warn!("cannot record that the cache is over budget: {e}");
            }
        }
    }

    /// Empties the trash before the process ends (when the last handle goes).
    pub(super) fn finish_trash(&self) {
        self.trash.finish();
    }

    /// Which downloads eviction must keep, for a caller that does not hold
    /// the install lock; the lock, when it could be taken, is returned too
    /// and must be held while evicting.
    pub(super) fn active_downloads(&self) -> (Downloads, Option<File>) {
        if let Some(name) = self.downloading.lock().clone() {
            return (Downloads::Except(name), None);
        }
        match self.store.try_lock_install() {
            Ok(Some(lock)) => (Downloads::Idle, Some(lock)),
            Ok(None) | Err(_) => (Downloads::Busy, None),
        }
    }

    /// Records that a connection opened `name` now.
    pub(super) fn note_access(&self, name: &str) {
        let mut access = self.access.lock();
        if access.touch(name, store::unix_now()) {
            if let Err(e) = access.write(|n| self.store.is_build(n)) {
                log::warn!("cannot write the access record: {e}");
            }
        }
    }

    /// Writes the access times that are only exact in memory (when the
    /// last handle goes: a clean stop keeps the order of eviction). Not in
    /// serve mode, where every connection is a process of its own: writing
    /// at each one's end would break the once-a-minute rule that spares SD
    /// cards.
    pub(super) fn flush_access(&self) {
        if self.cfg.cross_process_lock {
            return;
        }
        let mut access = self.access.lock();
        if !access.is_dirty() {
            return;
        }
        if let Err(e) = access.write(|n| self.store.is_build(n)) {
            log::warn!("cannot write the access record: {e}");
        }
    }

    /// The build's table, shared by all connections serving the build at
    /// once; `None` when the build has none (a tree an administrator put
    /// there). The error says why a build upserv unpacked has no usable
    /// table: `missing` or `damaged`.
    pub(super) fn table(
        &self,
        name: &str,
        ino: u64,
    ) -> Result<Option<Arc<MetaTable>>, &'static str> {
        if let Some((held, table)) = self.tables.lock().get(name) {
            if let Some(table) = table.upgrade().filter(|_| *held == ino) {
                return Ok(Some(table));
            }
        }
        let path = self.store.meta_path(name);
        if std::fs::symlink_metadata(&path).is_err() {
            if self.store.is_installed_by_us(name) {
                log::error!("build {name}: its metadata table is missing");
                return Err("missing");
            }
            return Ok(None);
        }
        // Loaded without the lock held, so other builds' acquires never wait
        // for it; two racing loads of one table are harmless.
        let table = MetaTable::load(&path).map_err(|e| {
            log::error!("build {name}: {e}");
            "damaged"
        })?;
        let table = Arc::new(table);
        let mut tables = self.tables.lock();
        tables.retain(|_, (_, table)| table.strong_count() > 0);
        tables.insert(name.to_string(), (ino, Arc::downgrade(&table)));
        Ok(Some(table))
    }

    /// Disk usage of a build, measured once per tree.
    pub(super) fn size_of(&self, name: &str) -> u64 {
        let Some(ino) = self.store.build_ino(name) else {
            return 0;
        };
        if let Some(&(held, size)) = self.sizes.lock().get(name) {
            if held == ino {
                return size;
            }
        }
        let size = store::disk_usage(&self.store.build_dir(name)).unwrap_or_else(|e| {
            log::warn!("cannot measure build {name}: {e}");
            0
        });
        self.sizes.lock().insert(name.to_string(), (ino, size));
        size
    }

    /// Evicts least recently used builds and downloads until the budget is
    /// met; what waits in the trash counts too.
    pub(super) fn evict(
        &self,
        occasion: Occasion,
        downloads: &Downloads,
    ) -> Result<Vec<Evicted>, CacheError> {
        let (just_installed, dry_run) = match occasion {
            Occasion::Install(name) => (Some(name), false),
            Occasion::Gc { dry_run } => (None, dry_run),
            Occasion::Startup | Occasion::Release => (None, false),
        };
        let names = self
            .store
            .list_builds()
            .map_err(|e| CacheError::new(format!("cannot list the builds dir: {e}")))?;
        let known = {
            let mut access = self.access.lock();
            if dry_run {
                // Only reads: a dry run needs no write access.
            } else if let Err(e) = access.write(|n| self.store.is_build(n)) {
                log::warn!("cannot write the access record: {e}");
            }
            names.iter().map(|n| access.get(n)).collect::<Vec<_>>()
        };
        let mut candidates: Vec<Candidate> = names
            .iter()
            .zip(known)
            .map(|(name, last)| Candidate {
                size: self.size_of(name),
                last_access: last.unwrap_or_else(|| self.store.build_mtime(name)),
                sticky: self.store.is_sticky(name),
                busy: self.store.is_busy(name),
                just_installed: just_installed == Some(name.as_str()),
                spared: false,
                name: name.clone(),
                download: false,
            })
            .collect();
        let partial = self.store.list_downloads().unwrap_or_else(|e| {
            log::warn!("cannot list the partial downloads: {e}");
            Vec::new()
        });
        if occasion == Occasion::Release {
            spare_newer_than_busy(&mut candidates);
        }
        candidates.extend(partial.into_iter().map(|d| Candidate {
            busy: match downloads {
                Downloads::Idle => false,
                Downloads::Except(name) => *name == d.name,
                Downloads::Busy => true,
            },
            name: d.name,
            download: true,
            size: d.size,
            last_access: d.mtime,
            sticky: false,
            just_installed: false,
            spared: false,
        }));
        let budget = self.cfg.cache_size;
        let plan = store::plan_eviction(&candidates, self.store.trash_usage(), budget);
        let mut evicted = Vec::new();
        for victim in plan.victims {
            let candidate = &candidates[victim];
            if !dry_run && !self.remove_candidate(candidate) {
                continue;
            }
            evicted.push(Evicted {
                name: candidate.name.clone(),
                download: candidate.download,
                size: candidate.size,
                last_access: candidate.last_access,
            });
        }
        let busy_kept = candidates.iter().any(|c| c.busy && !c.download);
        self.set_over_budget_while_busy(!dry_run && plan.still_over.is_some() && busy_kept);
        if let Some(total) = plan.still_over {
            log::warn!(
                "builds use {} MiB, over the cache size of {} MiB, but the rest are sticky, in use or just installed",
                total / MIB,
                budget / MIB
            );
        }
        Ok(evicted)
    }

    /// `upserv evict NAME`: removes one cached build unless it is sticky or
    /// in use.
    pub(super) fn evict_one(&self, name: &str) -> Result<Evicted, CacheError> {
        if !self.store.is_build(name) {
            return Err(CacheError::new(format!("build {name} is not cached")));
        }
        if self.store.is_sticky(name) {
            return Err(CacheError::new(format!(
                "build {name} is pinned; unpin it first"
            )));
        }
        let evicted = Evicted {
            name: name.to_string(),
            download: false,
            size: self.size_of(name),
            last_access: self
                .access
                .lock()
                .get(name)
                .unwrap_or_else(|| self.store.build_mtime(name)),
        };
        let Some(idle) = self.store.try_lock_idle(name) else {
            return Err(CacheError::new(format!("build {name} is in use; kept")));
        };
        self.remove_idle(name, idle)
            .map_err(|e| CacheError::new(format!("evicting {name}: {e}")))?;
        Ok(evicted)
    }

    fn remove_candidate(&self, candidate: &Candidate) -> bool {
        if !candidate.download {
            return self.remove(&candidate.name);
        }
        match self.store.remove_download(&candidate.name) {
            Ok(()) => {
                log::info!("evicted the partial download of {}", candidate.name);
                true
            }
            Err(e) => {
                log::error!("evicting the partial download of {}: {e}", candidate.name);
                false
            }
        }
    }

    /// Deletes one build unless someone started serving it meanwhile.
    pub(super) fn remove(&self, name: &str) -> bool {
        let Some(idle) = self.store.try_lock_idle(name) else {
            log::info!("not evicting {name}: it is in use");
            return false;
        };
        match self.remove_idle(name, idle) {
            Ok(()) => true,
            Err(e) => {
                log::error!("evicting {name}: {e}");
                false
            }
        }
    }

    /// Tells the hook that `name`'s tree has left.
    fn tell_gone(&self, name: &str) {
        self.on_gone.lock().retain(|hook| hook(name));
    }

    /// Deletes one build whose idle lock the caller holds.
    fn remove_idle(&self, name: &str, idle: std::fs::File) -> std::io::Result<()> {
        self.store.remove_build(name, idle)?;
        log::info!("evicted build {name}");
        self.stats.count_eviction();
        self.tell_gone(name);
        self.tables.lock().remove(name);
        self.sizes.lock().remove(name);
        self.trash.wake();
        Ok(())
    }

    /// Moves a prepared tree into place: table first, then the tree in one
    /// rename, so a visible build always has its table.
    pub(super) fn publish(&self, prepared: &Prepared) -> Result<(), CacheError> {
        let name = &prepared.name;
        let budget = self.cfg.cache_size;
        if prepared.size > budget {
            return Err(too_large(name, prepared.size, budget));
        }
        let fail = |e| local_failure(name, "cannot install it", e);
        if prepared.swap.is_some() && self.store.is_build(name) {
            return self.replace(prepared);
        }
        if self.store.build_dir(name).exists() {
            return Err(CacheError::new(format!(
                "build {name} cannot be installed: something else appeared at its place"
            )));
        }
        self.put_in_place(prepared).map_err(fail)?;
        if let Some(ino) = self.store.build_ino(name) {
            self.sizes.lock().insert(name.clone(), (ino, prepared.size));
        }
        self.note_access(name);
        log::info!("installed build {name} ({} MiB)", prepared.size / MIB);
        Ok(())
    }
}

impl Shared {
    /// Moves a prepared tree and its table into place: the table first and
    /// the tree last, in one rename, so a visible build always has its
    /// table, and the tree marked as upserv's own in between.
    fn put_in_place(&self, prepared: &Prepared) -> std::io::Result<()> {
        let name = &prepared.name;
        std::fs::rename(&prepared.table, self.store.meta_path(name))?;
        let ino = std::fs::symlink_metadata(&prepared.tree)?.ino();
        self.store.mark_installed(name, ino)?;
        std::fs::rename(&prepared.tree, self.store.build_dir(name))
    }

    /// Swaps a refetched tree in for the cached one, under the idle lock
    /// the job took ([`Prepared::swap`]): two renames new connections,
    /// waiting for that lock, cannot see between.
    fn replace(&self, prepared: &Prepared) -> Result<(), CacheError> {
        let name = &prepared.name;
        let fail = |e| local_failure(name, "cannot replace it", e);
        // Deleted by the trash thread, so a large tree never holds up the
        // coordinator.
        self.store
            .move_to_trash(&self.store.build_dir(name), name)
            .map_err(fail)?;
        self.put_in_place(prepared).map_err(fail)?;
        self.trash.wake();
        self.tell_gone(name);
        self.tables.lock().remove(name);
        if let Some(ino) = self.store.build_ino(name) {
            self.sizes.lock().insert(name.clone(), (ino, prepared.size));
        }
        self.note_access(name);
        log::info!("replaced build {name} ({} MiB)", prepared.size / MIB);
        Ok(())
    }
}

/// Startup recovery (docs/builds.md): needs the install lock, so it is skipped
/// while another process downloads (that process cleans up after itself).
pub(super) fn recover(inner: &Shared, startup: Startup) -> Result<(), CacheError> {
    if startup == Startup::ReadOnly {
        return Ok(());
    }
    let store = &inner.store;
    let lock = store
        .try_lock_install()
        .map_err(|e| CacheError::new(format!("cannot take the cache lock: {e}")))?;
    let Some(_lock) = lock else {
        return Ok(());
    };
    store
        .remove_leftovers()
        .map_err(|e| CacheError::new(format!("startup recovery failed: {e}")))?;
    inner.trash.wake();
    if inner.cfg.cross_process_lock || startup == Startup::NoEviction {
        return Ok(());
    }
    for name in store.list_builds().unwrap_or_default() {
        let path = store.meta_path(&name);
        let fault = if std::fs::symlink_metadata(&path).is_err() {
            store
                .is_installed_by_us(&name)
                .then(|| "its metadata table is missing".to_string())
        } else {
            MetaTable::load(&path).err().map(|e| e.to_string())
        };
        if let Some(fault) = fault {
            log::error!("build {name}: {fault}; removing it so that it is fetched again");
            inner.remove(&name);
        }
    }
    inner.evict(Occasion::Startup, &Downloads::Idle).map(drop)
}

pub(super) fn not_found(name: &str) -> CacheError {
    CacheError {
        not_found: true,
        ..CacheError::new(format!("{name} not found upstream"))
    }
}

pub(super) fn too_large(name: &str, size: u64, budget: u64) -> CacheError {
    CacheError::new(format!(
        "build {name} needs {}, more than the whole cache size of {}",
        human_size(size),
        human_size(budget)
    ))
}

pub(super) fn stopped() -> CacheError {
    CacheError::new("the build cache has stopped")
}

pub(super) fn local_failure(name: &str, what: &str, e: std::io::Error) -> CacheError {
    log::error!("build {name}: {what}: {e}");
    CacheError::new(format!("build {name}: {what}: {e}"))
}
