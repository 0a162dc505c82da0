//! State shared by the cache handle, the coordinator and the job thread:
//! configuration, the store, loaded tables, measured sizes, the access
//! record, and the operations on them that need several of these (startup
//! recovery, eviction, publishing).
//!
//! Only the coordinator thread calls [`Shared::evict`] and [`Shared::publish`]
//! (startup recovery runs before the coordinator exists), so that one thread
//! alone deletes and publishes builds.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::commands::human_size;
use super::fetch::{Fetcher, Limits};
use super::handle::{Evicted, Startup};
use super::job::Prepared;
use super::meta::MetaTable;
use super::mirrors::Mirrors;
use super::stats::CacheStats;
use super::store::{self, AccessRecord, Candidate, Store};
use super::{CacheConfig, CacheError};

const MIB: u64 = 1 << 20;

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
}

impl Shared {
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
            store,
            mirrors,
            tables: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
            cfg,
        })
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
    /// once; `None` when the build has none.
    pub(super) fn table(&self, name: &str, ino: u64) -> Result<Option<Arc<MetaTable>>, CacheError> {
        if let Some((held, table)) = self.tables.lock().get(name) {
            if let Some(table) = table.upgrade().filter(|_| *held == ino) {
                return Ok(Some(table));
            }
        }
        let path = self.store.meta_path(name);
        if !path.exists() {
            return Ok(None);
        }
        // Loaded without the lock held, so other builds' acquires never wait
        // for it; two racing loads of one table are harmless.
        let table = MetaTable::load(&path).map_err(|e| {
            log::error!("build {name}: {e}");
            CacheError::new(format!(
                "build {name} cannot be served: its metadata table is damaged"
            ))
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

    /// Evicts least recently used builds until the budget is met.
    pub(super) fn evict(
        &self,
        just_installed: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<Evicted>, CacheError> {
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
        let candidates: Vec<Candidate> = names
            .iter()
            .zip(known)
            .map(|(name, last)| Candidate {
                size: self.size_of(name),
                last_access: last.unwrap_or_else(|| self.store.build_mtime(name)),
                sticky: self.store.is_sticky(name),
                busy: self.store.is_busy(name),
                just_installed: just_installed == Some(name.as_str()),
                name: name.clone(),
            })
            .collect();
        let budget = self.cfg.cache_size;
        let plan = store::plan_eviction(&candidates, budget);
        let mut evicted = Vec::new();
        for victim in plan.victims {
            let Some(candidate) = candidates.iter().find(|c| c.name == victim) else {
                continue;
            };
            if !dry_run && !self.remove(&victim) {
                continue;
            }
            evicted.push(Evicted {
                name: victim,
                size: candidate.size,
                last_access: candidate.last_access,
            });
        }
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

    /// Deletes one build whose idle lock the caller holds.
    fn remove_idle(&self, name: &str, idle: std::fs::File) -> std::io::Result<()> {
        self.store.remove_build(name, idle)?;
        log::info!("evicted build {name}");
        self.stats.count_eviction();
        self.tables.lock().remove(name);
        self.sizes.lock().remove(name);
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
        if prepared.replace && self.store.is_build(name) {
            return self.replace(prepared);
        }
        if self.store.build_dir(name).exists() {
            return Err(CacheError::new(format!(
                "build {name} cannot be installed: something else appeared at its place"
            )));
        }
        std::fs::rename(&prepared.table, self.store.meta_path(name)).map_err(fail)?;
        std::fs::rename(&prepared.tree, self.store.build_dir(name)).map_err(fail)?;
        if let Some(ino) = self.store.build_ino(name) {
            self.sizes.lock().insert(name.clone(), (ino, prepared.size));
        }
        self.note_access(name);
        log::info!("installed build {name} ({} MiB)", prepared.size / MIB);
        Ok(())
    }
}

impl Shared {
    /// Swaps a refetched tree in for the cached one. Connections serving the
    /// old tree read it by path, so the swap waits until none does; holding
    /// the build's idle lock then makes new connections wait for the swap,
    /// which is two renames they cannot see between.
    fn replace(&self, prepared: &Prepared) -> Result<(), CacheError> {
        let name = &prepared.name;
        let fail = |e| local_failure(name, "cannot replace it", e);
        let deadline = std::time::Instant::now() + REPLACE_IDLE_WAIT;
        let idle = loop {
            if let Some(idle) = self.store.try_lock_idle(name) {
                break idle;
            }
            if std::time::Instant::now() >= deadline {
                return Err(CacheError::new(format!(
                    "build {name} stayed in use for {} s; kept the cached one",
                    REPLACE_IDLE_WAIT.as_secs()
                )));
            }
            std::thread::sleep(REPLACE_IDLE_POLL);
        };
        let old = prepared.scratch.join("old");
        std::fs::rename(self.store.build_dir(name), &old).map_err(fail)?;
        std::fs::rename(&prepared.table, self.store.meta_path(name)).map_err(fail)?;
        std::fs::rename(&prepared.tree, self.store.build_dir(name)).map_err(fail)?;
        drop(idle);
        self.tables.lock().remove(name);
        if let Some(ino) = self.store.build_ino(name) {
            self.sizes.lock().insert(name.clone(), (ino, prepared.size));
        }
        self.note_access(name);
        log::info!("replaced build {name} ({} MiB)", prepared.size / MIB);
        Ok(())
    }
}

/// How long a refetched build waits for the connections serving the old
/// tree to end before giving up (and keeping the old tree).
const REPLACE_IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);
/// How often it looks whether they have.
const REPLACE_IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Startup recovery (SPEC §5): needs the install lock, so it is skipped
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
    if inner.cfg.cross_process_lock || startup == Startup::NoEviction {
        return Ok(());
    }
    for name in store.list_builds().unwrap_or_default() {
        let path = store.meta_path(&name);
        if !path.exists() {
            continue;
        }
        if let Err(e) = MetaTable::load(&path) {
            log::error!("build {name}: {e}; removing it so that it is fetched again");
            inner.remove(&name);
        }
    }
    inner.evict(None, false).map(drop)
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
