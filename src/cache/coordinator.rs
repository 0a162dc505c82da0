//! The coordinator: the one thread that downloads, publishes and deletes
//! builds, and the [`Cache`] handle through which worker threads reach it.
//!
//! A cached build is served without the coordinator: [`Cache::acquire`] takes
//! a busy mark (a shared flock), checks that the tree is there and hands out
//! a [`BuildGuard`]. Only a missing build becomes a request on the channel.
//! The coordinator runs one download at a time on a job thread of its own,
//! so it stays free to add waiters, answer for other builds and run `gc`;
//! every waiter of a build shares its single download. When the job has a
//! tree ready, the coordinator publishes it by renaming, then evicts.
//!
//! Across processes (`serve` mode, admin commands next to a daemon) the same
//! holds through flocks: the install lock serialises downloads and installs,
//! and busy marks keep evictions away from builds that any process serves.
//!
//! This module must not parse archives, speak HTTP or know about rsync.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, Receiver, Sender};
use parking_lot::Mutex;

use super::commands::human_size;
use super::fetch::{self, FetchError, Fetcher, Target, MAX_MANIFEST_BYTES};
use super::meta::{write_table, MetaTable};
use super::store::{self, AccessRecord, BusyMark, Candidate, Store};
use super::unpack::{self, ArchiveKind, Plan};
use super::{is_build_name, CacheConfig, CacheError, Layout};

/// Waiting clients see a progress line at most this often (SPEC §5).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The job thread reports bytes at most this often.
const JOB_PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// How often a process waiting for another's install lock looks again.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Rounds of "not cached → fetched → look again" before giving up: a build
/// can only vanish between its install and our look by a racing `gc`.
const MAX_ACQUIRE_ROUNDS: usize = 3;
const MIB: u64 = 1 << 20;

/// A cheap, shareable handle on the build cache.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
    requests: Sender<Request>,
}

/// While alive, the build is busy: no process evicts it.
#[derive(Debug)]
pub struct BuildGuard {
    name: String,
    root: PathBuf,
    meta: Option<Arc<MetaTable>>,
    _mark: BusyMark,
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

/// One build that eviction removed (or, in a dry run, would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub name: String,
    pub size: u64,
    pub last_access: i64,
}

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
            (Stage::Waiting, _) => {
                format!("upserv: waiting for another download of {name} to finish")
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

struct Inner {
    cfg: CacheConfig,
    store: Store,
    fetcher: Fetcher,
    kind: Option<ArchiveKind>,
    access: Mutex<AccessRecord>,
    /// Loaded tables by build, with the inode of the tree they belong to.
    tables: Mutex<HashMap<String, (u64, Arc<MetaTable>)>>,
    /// Disk usage by build, with the inode of the tree it was measured for.
    sizes: Mutex<HashMap<String, (u64, u64)>>,
}

enum Request {
    Fetch {
        name: String,
        reply: Sender<Event>,
    },
    Gc {
        dry_run: bool,
        reply: Sender<Result<Vec<Evicted>, CacheError>>,
    },
}

/// What a waiting acquire hears from the coordinator.
enum Event {
    Progress(Progress),
    Installed,
    Failed(CacheError),
}

/// What the job thread tells the coordinator.
enum JobEvent {
    Progress(Progress),
    Finished(Result<Option<Prepared>, CacheError>),
}

/// A tree in scratch space, ready to publish; holds the install lock.
struct Prepared {
    name: String,
    scratch: PathBuf,
    tree: PathBuf,
    table: PathBuf,
    size: u64,
    _lock: File,
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
        let kind = match &cfg.upstream {
            Some(template) => Some(
                ArchiveKind::from_url(&fetch::expand(template, "x")).ok_or_else(|| {
                    CacheError::new(format!(
                        "upstream {template} does not end in .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz or .tar.lzma"
                    ))
                })?,
            ),
            None => None,
        };
        let store = Store::open(&cfg.builds_dir).map_err(|e| {
            CacheError::new(format!("builds dir {}: {e}", cfg.builds_dir.display()))
        })?;
        let inner = Arc::new(Inner {
            fetcher: Fetcher::new(cfg.fetch_timeout, cfg.fetch_attempts, cfg.retry_backoff),
            access: Mutex::new(store.load_access()),
            store,
            kind,
            tables: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            cfg,
        });
        recover(&inner, startup)?;
        let (requests, receiver) = unbounded();
        let coordinator = Coordinator::new(Arc::clone(&inner), receiver);
        thread::Builder::new()
            .name("cache-coordinator".into())
            .spawn(move || coordinator.run())
            .map_err(|e| CacheError::new(format!("cannot start the cache coordinator: {e}")))?;
        Ok(Cache { inner, requests })
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
            if let Some(guard) = self.acquire_cached(name)? {
                return Ok(Some(guard));
            }
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
            self.wait_for_fetch(name, progress)?;
        }
        Err(CacheError::new(format!(
            "build {name} was removed right after it was installed; try again"
        )))
    }

    fn acquire_cached(&self, name: &str) -> Result<Option<BuildGuard>, CacheError> {
        let store = &self.inner.store;
        if !store.is_build(name) {
            return Ok(None);
        }
        let mark = store
            .mark_busy(name)
            .map_err(|e| local_failure(name, "cannot mark it busy", e))?;
        // Checked again under the mark: an eviction may have won the race.
        let Some(ino) = store.build_ino(name) else {
            return Ok(None);
        };
        self.inner.note_access(name);
        let meta = self.inner.table(name, ino)?;
        Ok(Some(BuildGuard {
            name: name.to_string(),
            root: store.build_dir(name),
            meta,
            _mark: mark,
        }))
    }

    fn wait_for_fetch(
        &self,
        name: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), CacheError> {
        let (reply, events) = unbounded();
        self.requests
            .send(Request::Fetch {
                name: name.to_string(),
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

impl Inner {
    /// Records that a connection opened `name` now.
    fn note_access(&self, name: &str) {
        let mut access = self.access.lock();
        if access.touch(name, store::unix_now()) {
            if let Err(e) = access.write(|n| self.store.is_build(n)) {
                log::warn!("cannot write the access record: {e}");
            }
        }
    }

    /// The build's table, loaded once and shared; `None` when it has none.
    fn table(&self, name: &str, ino: u64) -> Result<Option<Arc<MetaTable>>, CacheError> {
        if let Some((held, table)) = self.tables.lock().get(name) {
            if *held == ino {
                return Ok(Some(Arc::clone(table)));
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
        self.tables
            .lock()
            .insert(name.to_string(), (ino, Arc::clone(&table)));
        Ok(Some(table))
    }

    /// Disk usage of a build, measured once per tree.
    fn size_of(&self, name: &str) -> u64 {
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
    fn evict(
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
            if let Err(e) = access.write(|n| self.store.is_build(n)) {
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

    /// Deletes one build unless someone started serving it meanwhile.
    fn remove(&self, name: &str) -> bool {
        let Some(idle) = self.store.try_lock_idle(name) else {
            log::info!("not evicting {name}: it is in use");
            return false;
        };
        match self.store.remove_build(name, idle) {
            Ok(()) => {
                log::info!("evicted build {name}");
                self.tables.lock().remove(name);
                self.sizes.lock().remove(name);
                true
            }
            Err(e) => {
                log::error!("evicting {name}: {e}");
                false
            }
        }
    }

    /// Moves a prepared tree into place: table first, then the tree in one
    /// rename, so a visible build always has its table.
    fn publish(&self, prepared: &Prepared) -> Result<(), CacheError> {
        let name = &prepared.name;
        let budget = self.cfg.cache_size;
        if prepared.size > budget {
            return Err(too_large(name, prepared.size, budget));
        }
        let fail = |e| local_failure(name, "cannot install it", e);
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

/// Startup recovery (SPEC §5): needs the install lock, so it is skipped
/// while another process downloads (that process cleans up after itself).
fn recover(inner: &Inner, startup: Startup) -> Result<(), CacheError> {
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

/// One download and its waiters.
struct Job {
    name: String,
    waiters: Vec<Sender<Event>>,
    last: Option<Progress>,
}

struct Coordinator {
    inner: Arc<Inner>,
    requests: Receiver<Request>,
    events: Receiver<JobEvent>,
    events_tx: Sender<JobEvent>,
    running: Option<Job>,
    queue: VecDeque<Job>,
}

impl Coordinator {
    fn new(inner: Arc<Inner>, requests: Receiver<Request>) -> Coordinator {
        let (events_tx, events) = unbounded();
        Coordinator {
            inner,
            requests,
            events,
            events_tx,
            running: None,
            queue: VecDeque::new(),
        }
    }

    /// Serves requests until every [`Cache`] handle is gone and no job runs.
    fn run(mut self) {
        loop {
            select! {
                recv(self.requests) -> request => match request {
                    Ok(request) => self.handle(request),
                    Err(_) => break,
                },
                recv(self.events) -> event => {
                    if let Ok(event) = event {
                        self.job_event(event);
                    }
                }
            }
        }
        while self.running.is_some() {
            match self.events.recv() {
                Ok(event) => self.job_event(event),
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Fetch { name, reply } => self.fetch(name, reply),
            Request::Gc { dry_run, reply } => {
                // A dropped reply only means the asker went away.
                let _ = reply.send(self.inner.evict(None, dry_run));
            }
        }
    }

    fn fetch(&mut self, name: String, reply: Sender<Event>) {
        if let Some(job) = self.running.as_mut().filter(|job| job.name == name) {
            if let Some(progress) = &job.last {
                let _ = reply.send(Event::Progress(progress.clone()));
            }
            job.waiters.push(reply);
            return;
        }
        if let Some(job) = self.queue.iter_mut().find(|job| job.name == name) {
            job.waiters.push(reply);
            return;
        }
        if self.inner.store.is_build(&name) {
            let _ = reply.send(Event::Installed);
            return;
        }
        self.queue.push_back(Job {
            name,
            waiters: vec![reply],
            last: None,
        });
        self.start_next();
    }

    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let events = self.events_tx.clone();
        let name = job.name.clone();
        let spawned = thread::Builder::new()
            .name(format!("fetch-{name}"))
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| run_job(&inner, &name, &events)))
                    .unwrap_or_else(|_| {
                        Err(CacheError::new(format!(
                            "fetching {name} failed: internal error"
                        )))
                    });
                let _ = events.send(JobEvent::Finished(outcome));
            });
        match spawned {
            Ok(_) => self.running = Some(job),
            Err(e) => {
                let error = CacheError::new(format!("cannot start a download: {e}"));
                for waiter in job.waiters {
                    let _ = waiter.send(Event::Failed(error.clone()));
                }
            }
        }
    }

    fn job_event(&mut self, event: JobEvent) {
        match event {
            JobEvent::Progress(progress) => {
                if let Some(job) = self.running.as_mut() {
                    job.waiters
                        .retain(|w| w.send(Event::Progress(progress.clone())).is_ok());
                    job.last = Some(progress);
                }
            }
            JobEvent::Finished(outcome) => {
                let Some(job) = self.running.take() else {
                    return;
                };
                let result = match outcome {
                    Ok(Some(prepared)) => self.install(prepared),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                for waiter in job.waiters {
                    let _ = waiter.send(match &result {
                        Ok(()) => Event::Installed,
                        Err(e) => Event::Failed(e.clone()),
                    });
                }
                self.start_next();
            }
        }
    }

    /// Publishes, then evicts with the new build exempt; the install lock in
    /// `prepared` is held until both are done.
    fn install(&self, prepared: Prepared) -> Result<(), CacheError> {
        let published = self.inner.publish(&prepared);
        if let Err(e) = store::remove_tree(&prepared.scratch) {
            log::warn!("{e}");
        }
        published?;
        if let Err(e) = self.inner.evict(Some(&prepared.name), false) {
            log::error!("eviction after installing {}: {e}", prepared.name);
        }
        Ok(())
    }
}

/// The job thread: wait for the install lock, download, unpack, write the
/// table, measure. Returns `None` when another process installed the build.
fn run_job(
    inner: &Inner,
    name: &str,
    events: &Sender<JobEvent>,
) -> Result<Option<Prepared>, CacheError> {
    let store = &inner.store;
    let Some(lock) = wait_install_lock(inner, name, events)? else {
        return Ok(None);
    };
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
    let archive = download(inner, name, &url, events)?;
    let contents = fetch_contents(inner, name)?;
    let _ = events.send(JobEvent::Progress(Progress {
        name: name.to_string(),
        stage: Stage::Unpacking,
        done: 0,
        total: None,
    }));
    let scratch = store.unpack_dir(name);
    let plan = Plan {
        layout: inner.cfg.layout,
        contents: contents.as_deref(),
    };
    let unpacked = unpack::unpack(&archive, kind, &scratch, &plan);
    if let Some(path) = &contents {
        let _ = std::fs::remove_file(path);
    }
    let unpacked = unpacked.map_err(|e| {
        // The same bytes would fail the same way: fetch afresh next time.
        fetch::discard(&archive, &store.partial_info_path(name));
        log::error!("build {name} could not be unpacked: {e}");
        CacheError::new(format!("build {name} could not be unpacked: {e}"))
    })?;
    let table = scratch.join("table");
    let prepared = write_table(&table, &unpacked.records)
        .and_then(|()| store::disk_usage(&unpacked.tree))
        .map(|size| Prepared {
            name: name.to_string(),
            scratch: scratch.clone(),
            tree: unpacked.tree,
            table,
            size,
            _lock: lock,
        });
    match prepared {
        Ok(prepared) => {
            fetch::discard(&store.partial_path(name), &store.partial_info_path(name));
            log::info!("unpacked {name}: {} entries", unpacked.entries);
            Ok(Some(prepared))
        }
        Err(e) => {
            let _ = store::remove_tree(&scratch);
            Err(local_failure(name, "cannot prepare it", e))
        }
    }
}

fn download(
    inner: &Inner,
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
    let mut last_report: Option<Instant> = None;
    let mut report = |done: u64, total: Option<u64>| {
        let finished = total == Some(done);
        if finished || last_report.is_none_or(|t| t.elapsed() >= JOB_PROGRESS_INTERVAL) {
            last_report = Some(Instant::now());
            let _ = events.send(JobEvent::Progress(Progress {
                name: name.to_string(),
                stage: Stage::Downloading,
                done,
                total,
            }));
        }
    };
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
fn fetch_contents(inner: &Inner, name: &str) -> Result<Option<PathBuf>, CacheError> {
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

fn fetch_failure(inner: &Inner, name: &str, error: FetchError) -> CacheError {
    match error {
        FetchError::NotFound => {
            if let Err(e) = inner.store.remember_missing(name) {
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
    inner: &Inner,
    name: &str,
    events: &Sender<JobEvent>,
) -> Result<Option<File>, CacheError> {
    let store = &inner.store;
    let mut told = false;
    loop {
        match store.try_lock_install() {
            Ok(Some(lock)) => return Ok(Some(lock)),
            Ok(None) => {}
            Err(e) => return Err(CacheError::new(format!("cannot take the cache lock: {e}"))),
        }
        if store.is_build(name) {
            return Ok(None);
        }
        if !told {
            told = true;
            let _ = events.send(JobEvent::Progress(Progress {
                name: name.to_string(),
                stage: Stage::Waiting,
                done: 0,
                total: None,
            }));
        }
        thread::sleep(LOCK_POLL_INTERVAL);
    }
}

fn not_found(name: &str) -> CacheError {
    CacheError::new(format!("{name} not found upstream"))
}

fn too_large(name: &str, size: u64, budget: u64) -> CacheError {
    CacheError::new(format!(
        "build {name} needs {}, more than the whole cache size of {}",
        human_size(size),
        human_size(budget)
    ))
}

fn stopped() -> CacheError {
    CacheError::new("the build cache has stopped")
}

fn local_failure(name: &str, what: &str, e: std::io::Error) -> CacheError {
    log::error!("build {name}: {what}: {e}");
    CacheError::new(format!("build {name}: {what}: {e}"))
}
