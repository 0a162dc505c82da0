//! The builds directory on disk: its layout, what each build costs, when it
//! was last opened, who is serving it, and which builds go first.
//!
//! ```text
//! DIR/NAME/               the tree of build NAME (module NAME)
//! DIR/NAME.sticky         NAME is never evicted
//! DIR/.upserv/partial/    downloads in progress: NAME.part + NAME.info;
//!                         NAME.complete: downloaded, not yet unpacked
//! DIR/.upserv/unpack/     unpacking scratch space, one directory per build
//! DIR/.upserv/meta/       one metadata table per build: NAME
//! DIR/.upserv/installed/  NAME: upserv unpacked the tree whose inode it holds
//! DIR/.upserv/busy/       one lock file per build; each connection holds a shared flock
//! DIR/.upserv/missing/    NAME: upstream answered 404 at this file's mtime
//! DIR/.upserv/trash/      builds on their way out (renamed here, then deleted)
//! DIR/.upserv/access      last-access record: "SECONDS NAME" lines
//! DIR/.upserv/seed        the secret behind the builds' checksum seeds (mode 0600)
//! DIR/.upserv/lock        held (flock) by the process that downloads and installs
//! DIR/.upserv/over-budget present while builds in use keep the cache over budget
//! ```
//!
//! This module provides the mechanisms; the coordinator decides when to use
//! them. It must not download, unpack or parse archives.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::delete;
use super::types::is_build_name;

/// Name of the private directory inside the builds directory.
pub(crate) const PRIVATE_DIR: &str = ".upserv";
/// The access record is written at most this often per build (spares SD cards).
pub(crate) const ACCESS_WRITE_INTERVAL_SECS: i64 = 60;
/// Size of a disk block as `st_blocks` counts them.
const ST_BLOCK_SIZE: u64 = 512;
/// Longest access record accepted; far beyond any real one.
const MAX_ACCESS_RECORD_BYTES: u64 = 16 << 20;

/// Endings of the files one download leaves in `partial/`.
const DOWNLOAD_ENDINGS: [&str; 4] = [".part", ".info", ".complete", ".contents"];

/// Paths of one builds directory.
#[derive(Debug)]
pub(crate) struct Store {
    builds: PathBuf,
    private: PathBuf,
    /// When the expired `missing/` records were last removed.
    missing_pruned: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// A download in `partial/`, finished or not: what eviction needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Download {
    pub(crate) name: String,
    /// Disk blocks of all its files, in bytes.
    pub(crate) size: u64,
    /// Last change: a download being written is never the oldest.
    pub(crate) mtime: i64,
}

/// The build a `partial/` file belongs to, from its name.
fn download_name(file_name: &str) -> Option<&str> {
    DOWNLOAD_ENDINGS
        .iter()
        .find_map(|ending| file_name.strip_suffix(ending))
        .filter(|name| is_build_name(name))
}

impl Store {
    /// Opens (creating when needed) the builds directory and its private parts.
    pub(crate) fn open(builds: &Path) -> io::Result<Store> {
        let store = Store {
            builds: builds.to_path_buf(),
            private: builds.join(PRIVATE_DIR),
            missing_pruned: parking_lot::Mutex::new(None),
        };
        for sub in [
            "partial",
            "unpack",
            "meta",
            "installed",
            "busy",
            "missing",
            "trash",
        ] {
            let dir = store.private.join(sub);
            fs::create_dir_all(&dir)
                .map_err(|e| annotate(e, &format!("cannot create {}", dir.display())))?;
        }
        Ok(store)
    }

    /// Another handle on the same directory, for a thread of its own.
    pub(crate) fn clone_paths(&self) -> Store {
        Store {
            builds: self.builds.clone(),
            private: self.private.clone(),
            missing_pruned: parking_lot::Mutex::new(None),
        }
    }

    pub(crate) fn build_dir(&self, name: &str) -> PathBuf {
        self.builds.join(name)
    }

    pub(crate) fn sticky_path(&self, name: &str) -> PathBuf {
        self.builds.join(format!("{name}.sticky"))
    }

    pub(crate) fn meta_path(&self, name: &str) -> PathBuf {
        self.private.join("meta").join(name)
    }

    fn installed_path(&self, name: &str) -> PathBuf {
        self.private.join("installed").join(name)
    }

    /// Notes that upserv unpacked the tree with inode `ino` as build `name`,
    /// so that losing its table later is noticed.
    pub(crate) fn mark_installed(&self, name: &str, ino: u64) -> io::Result<()> {
        fs::write(self.installed_path(name), format!("{ino}\n"))
    }

    /// Whether the tree now at `name` is one upserv unpacked (its mark names
    /// this very tree; a tree an administrator put in its place has another
    /// inode).
    pub(crate) fn is_installed_by_us(&self, name: &str) -> bool {
        let Some(ino) = self.build_ino(name) else {
            return false;
        };
        fs::read_to_string(self.installed_path(name))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            == Some(ino)
    }

    pub(crate) fn partial_path(&self, name: &str) -> PathBuf {
        self.private.join("partial").join(format!("{name}.part"))
    }

    /// A finished, verified download waiting to be unpacked: kept when
    /// unpacking ran out of disk space, so that it is not fetched again.
    pub(crate) fn complete_path(&self, name: &str) -> PathBuf {
        self.private
            .join("partial")
            .join(format!("{name}.complete"))
    }

    pub(crate) fn partial_info_path(&self, name: &str) -> PathBuf {
        self.private.join("partial").join(format!("{name}.info"))
    }

    pub(crate) fn unpack_dir(&self, name: &str) -> PathBuf {
        self.private.join("unpack").join(name)
    }

    fn busy_path(&self, name: &str) -> PathBuf {
        self.private.join("busy").join(name)
    }

    fn missing_path(&self, name: &str) -> PathBuf {
        self.private.join("missing").join(name)
    }

    /// The checksum-seed secret (see `seed`).
    pub(crate) fn seed_path(&self) -> PathBuf {
        self.private.join("seed")
    }

    fn access_path(&self) -> PathBuf {
        self.private.join("access")
    }

    /// The build's tree, when `DIR/NAME` is a real directory (not a symlink).
    pub(crate) fn is_build(&self, name: &str) -> bool {
        fs::symlink_metadata(self.build_dir(name)).is_ok_and(|m| m.is_dir())
    }

    /// Inode of the build's directory: changes when the build is replaced.
    pub(crate) fn build_ino(&self, name: &str) -> Option<u64> {
        fs::symlink_metadata(self.build_dir(name))
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| m.ino())
    }

    /// Names of all cached builds, sorted.
    pub(super) fn list_builds(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.builds)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_build_name(&name) && entry.file_type()?.is_dir() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    pub(crate) fn is_sticky(&self, name: &str) -> bool {
        fs::symlink_metadata(self.sticky_path(name)).is_ok()
    }

    pub(super) fn set_sticky(&self, name: &str, sticky: bool) -> io::Result<()> {
        let path = self.sticky_path(name);
        if sticky {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map(drop)
        } else {
            match fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
    }

    /// Marks `name` as served until the returned handle is dropped.
    pub(crate) fn mark_busy(&self, name: &str) -> io::Result<BusyMark> {
        lock_stable(&self.busy_path(name), Lock::Shared).map(|file| BusyMark { _file: file })
    }

    /// Whether any connection, of any process, serves `name` right now.
    /// Only reads (for `list` and `gc --dry-run`): a build without a busy
    /// file was never served.
    pub(crate) fn is_busy(&self, name: &str) -> bool {
        match File::open(self.busy_path(name)) {
            Ok(file) => flock(&file, Lock::TryExclusive).is_err(),
            Err(_) => false,
        }
    }

    /// Takes the exclusive lock that proves nobody serves `name`; `None` when
    /// someone does. While held, no connection can start serving `name`.
    pub(crate) fn try_lock_idle(&self, name: &str) -> Option<File> {
        lock_stable(&self.busy_path(name), Lock::TryExclusive).ok()
    }

    /// Takes the download-and-install lock if no other process holds it.
    pub(crate) fn try_lock_install(&self) -> io::Result<Option<File>> {
        match open_locked(&self.private.join("lock"), Lock::TryExclusive) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a build: renamed into the trash, so that it vanishes from the
    /// builds directory at once; [`Store::empty_trash`] deletes it later.
    /// The caller holds `idle`, the lock from [`Store::try_lock_idle`].
    pub(crate) fn remove_build(&self, name: &str, idle: File) -> io::Result<()> {
        self.move_to_trash(&self.build_dir(name), name)
            .map_err(|e| annotate(e, &format!("cannot remove build {name}")))?;
        // A directory in the table's place must not stop the removal.
        remove_tree(&self.meta_path(name))?;
        remove_tree(&self.installed_path(name))?;
        // Deleting the lock file while holding it makes waiters re-open it
        // (see lock_stable), so busy files do not pile up.
        remove_if_present(&self.busy_path(name))?;
        drop(idle);
        Ok(())
    }

    /// Moves `path` into the trash (one rename), named after `name`; the
    /// trash thread deletes it.
    pub(crate) fn move_to_trash(&self, path: &Path, name: &str) -> io::Result<()> {
        let trash = self.private.join("trash").join(format!(
            "{name}.{}.{}",
            std::process::id(),
            unix_now()
        ));
        fs::rename(path, trash)
    }

    /// Deletes everything in the trash; what cannot be deleted is logged
    /// and left for the next time.
    pub(crate) fn empty_trash(&self) {
        let trash = self.private.join("trash");
        let entries = match fs::read_dir(&trash) {
            Ok(entries) => entries,
            Err(e) => return log::warn!("cannot list {}: {e}", trash.display()),
        };
        for entry in entries.flatten() {
            if let Err(e) = remove_tree(&entry.path()) {
                log::warn!("{e}");
            }
        }
    }

    /// Disk usage of what waits in the trash to be deleted.
    pub(crate) fn trash_usage(&self) -> u64 {
        disk_usage(&self.private.join("trash")).unwrap_or(0)
    }

    /// Notes (or forgets) that builds in use keep the cache over budget.
    pub(crate) fn mark_over_budget(&self, over: bool) -> io::Result<()> {
        let path = self.private.join("over-budget");
        if over {
            File::create(path).map(drop)
        } else {
            remove_if_present(&path)
        }
    }

    pub(crate) fn over_budget_marked(&self) -> bool {
        self.private.join("over-budget").exists()
    }

    /// Downloads in `partial/`, finished or not, by build name.
    pub(crate) fn list_downloads(&self) -> io::Result<Vec<Download>> {
        let mut downloads: Vec<Download> = Vec::new();
        for entry in fs::read_dir(self.private.join("partial"))? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(download_name) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Finished and removed meanwhile, by this process or another.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let size = meta.blocks().saturating_mul(ST_BLOCK_SIZE);
            match downloads.iter_mut().find(|d| d.name == name) {
                Some(download) => {
                    download.size += size;
                    download.mtime = download.mtime.max(meta.mtime());
                }
                None => downloads.push(Download {
                    name: name.to_string(),
                    size,
                    mtime: meta.mtime(),
                }),
            }
        }
        downloads.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(downloads)
    }

    /// Deletes the files of one download, finished or not.
    pub(crate) fn remove_download(&self, name: &str) -> io::Result<()> {
        for ending in DOWNLOAD_ENDINGS {
            let path = self.private.join("partial").join(format!("{name}{ending}"));
            remove_if_present(&path)?;
        }
        Ok(())
    }

    /// Remembers that the upstream has no build `name`, and, at most once a
    /// `ttl`, forgets the misses older than `ttl` (so a flood of made-up
    /// names leaves no trail, and each miss costs the same however many
    /// there were).
    pub(crate) fn remember_missing(&self, name: &str, ttl: std::time::Duration) -> io::Result<()> {
        File::create(self.missing_path(name))?;
        let mut pruned = self.missing_pruned.lock();
        if pruned.is_some_and(|at| at.elapsed() < ttl) {
            return Ok(());
        }
        *pruned = Some(std::time::Instant::now());
        for entry in fs::read_dir(self.private.join("missing"))? {
            let entry = entry?;
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age >= ttl);
            if expired {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Whether a 404 for `name` was remembered less than `ttl` ago.
    pub(crate) fn recently_missing(&self, name: &str, ttl: std::time::Duration) -> bool {
        fs::metadata(self.missing_path(name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < ttl)
    }

    /// Startup recovery that needs the install lock (held by the caller):
    /// unpacking scratch goes to the trash (emptied by the caller, in the
    /// background), partial downloads are kept.
    pub(crate) fn remove_leftovers(&self) -> io::Result<()> {
        for entry in fs::read_dir(self.private.join("unpack"))? {
            let entry = entry?;
            log::info!("removing leftover {}", entry.path().display());
            let name = format!("unpack-{}", entry.file_name().to_string_lossy());
            self.move_to_trash(&entry.path(), &name)?;
        }
        for sub in ["meta", "installed"] {
            for entry in fs::read_dir(self.private.join(sub))? {
                let entry = entry?;
                let name = entry.file_name();
                let build = name
                    .to_str()
                    .filter(|n| is_build_name(n) && self.is_build(n));
                if build.is_none() {
                    log::info!("removing {sub}/{name:?} of an absent build");
                    remove_tree(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// Last modification of the build directory: the fallback last access
    /// for builds the record does not know (e.g. put there by an admin).
    pub(crate) fn build_mtime(&self, name: &str) -> i64 {
        fs::symlink_metadata(self.build_dir(name))
            .map(|m| m.mtime())
            .unwrap_or(0)
    }

    pub(crate) fn load_access(&self) -> AccessRecord {
        AccessRecord::load(self.access_path())
    }
}

/// A connection's claim on a build; released on drop.
#[derive(Debug)]
pub(crate) struct BusyMark {
    _file: File,
}

/// Opens `path` (creating it) and flocks it with `op`.
fn open_locked(path: &Path, op: Lock) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    flock(&file, op)?;
    Ok(file)
}

/// Like [`open_locked`], but retries when the file was deleted and replaced
/// while we waited, so a lock is always held on the file the path names now.
fn lock_stable(path: &Path, op: Lock) -> io::Result<File> {
    loop {
        let file = open_locked(path, op)?;
        let held = file.metadata()?.ino();
        match fs::metadata(path) {
            Ok(now) if now.ino() == held => return Ok(file),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The whole-file locks (flock) the store takes: every process, daemon or
/// command, takes the same ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    /// Shared, waiting for it.
    Shared,
    /// Exclusive, or an error of kind `WouldBlock` at once.
    TryExclusive,
}

fn flock(file: &File, op: Lock) -> io::Result<()> {
    loop {
        let result = match op {
            Lock::Shared => file.lock_shared(),
            Lock::TryExclusive => file.try_lock().map_err(|e| match e {
                TryLockError::WouldBlock => io::ErrorKind::WouldBlock.into(),
                TryLockError::Error(e) => e,
            }),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(annotate(e, &format!("cannot remove {}", path.display())))
        }
        _ => Ok(()),
    }
}

/// Deletes a file or a whole tree, without following symlinks, at any depth
/// (see `delete`).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    delete::remove_tree(path).map_err(|e| annotate(e, &format!("cannot delete {}", path.display())))
}

pub(crate) fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Disk space a tree really occupies: allocated blocks, each hard-linked
/// inode counted once, symlinks not followed.
pub(crate) fn disk_usage(root: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    let mut seen_links: HashSet<(u64, u64)> = HashSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(annotate(e, &path.display().to_string())),
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen_links.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total = total.saturating_add(meta.blocks().saturating_mul(ST_BLOCK_SIZE));
        if meta.is_dir() {
            for entry in
                fs::read_dir(&path).map_err(|e| annotate(e, &path.display().to_string()))?
            {
                pending.push(entry?.path());
            }
        }
    }
    Ok(total)
}

/// When each build was last opened, exact in memory, persisted lazily.
///
/// Several processes may share the record (serve mode, admin commands), so a
/// write merges with what is on disk, keeping the later time of each build.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    path: PathBuf,
    /// name → (exact last access, last access as last written)
    times: HashMap<String, (i64, Option<i64>)>,
}

impl AccessRecord {
    fn load(path: PathBuf) -> AccessRecord {
        let mut record = AccessRecord {
            path,
            times: HashMap::new(),
        };
        for (name, time) in read_access_file(&record.path) {
            record.times.insert(name, (time, Some(time)));
        }
        record
    }

    pub(crate) fn get(&self, name: &str) -> Option<i64> {
        self.times.get(name).map(|&(exact, _)| exact)
    }

    /// Notes an access at `now`; true when the record should be written
    /// (the build's written time is a minute old or more).
    pub(crate) fn touch(&mut self, name: &str, now: i64) -> bool {
        let entry = self.times.entry(name.to_string()).or_insert((now, None));
        entry.0 = entry.0.max(now);
        entry
            .1
            .is_none_or(|written| now - written >= ACCESS_WRITE_INTERVAL_SECS)
    }

    /// Whether some access is known more exactly here than on disk.
    pub(crate) fn is_dirty(&self) -> bool {
        self.times
            .values()
            .any(|&(exact, written)| written != Some(exact))
    }

    /// Merges with the file on disk and writes it back (temp file + rename),
    /// keeping only names for which `keep` is true.
    pub(crate) fn write(&mut self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
        for (name, time) in read_access_file(&self.path) {
            let entry = self.times.entry(name).or_insert((time, None));
            entry.0 = entry.0.max(time);
        }
        self.times.retain(|name, _| keep(name));
        let mut lines: Vec<(&String, i64)> = self.times.iter().map(|(n, &(t, _))| (n, t)).collect();
        lines.sort();
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        for (name, time) in lines {
            writeln!(out, "{time} {name}")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        for entry in self.times.values_mut() {
            entry.1 = Some(entry.0);
        }
        Ok(())
    }
}

/// Reads "SECONDS NAME" lines; damaged lines are reported and skipped, since
/// a lost access time only makes a build look older than it is.
fn read_access_file(path: &Path) -> Vec<(String, i64)> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::warn!("cannot read access record {}: {e}", path.display());
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    let reader = BufReader::new(io::Read::take(file, MAX_ACCESS_RECORD_BYTES));
    for (number, line) in reader.split(b'\n').enumerate() {
        // A read error (a directory in its place, EIO on an SD card) repeats
        // for ever if retried: what was read so far is all there is.
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                log::warn!(
                    "cannot read access record {} beyond line {number}: {e}",
                    path.display()
                );
                break;
            }
        };
        let parsed = std::str::from_utf8(&line).ok().and_then(|line| {
            let (time, name) = line.split_once(' ')?;
            let time = time.parse::<i64>().ok()?;
            is_build_name(name).then(|| (name.to_string(), time))
        });
        match parsed {
            Some(entry) => entries.push(entry),
            None => log::warn!(
                "access record {}:{}: damaged line ignored",
                path.display(),
                number + 1
            ),
        }
    }
    entries
}

/// What eviction needs to know about one build or download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) name: String,
    /// A download in `partial/` rather than a build tree.
    pub(crate) download: bool,
    pub(crate) size: u64,
    pub(crate) last_access: i64,
    pub(crate) sticky: bool,
    pub(crate) busy: bool,
    pub(crate) just_installed: bool,
    /// Kept this time for another reason (see the caller).
    pub(crate) spared: bool,
}

impl Candidate {
    fn exempt(&self) -> bool {
        self.sticky || self.busy || self.just_installed || self.spared
    }
}

/// The outcome of planning: whom to evict (indices into the candidates),
/// and whether the budget still cannot be met because only exempt builds
/// (and `fixed`) remain.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EvictionPlan {
    pub(crate) victims: Vec<usize>,
    pub(crate) still_over: Option<u64>,
}

/// Least recently accessed first (ties by name, for a stable order), until
/// the total, with `fixed` bytes that no eviction frees (the trash being
/// emptied), fits `budget`. Exempt builds are never chosen.
pub(crate) fn plan_eviction(candidates: &[Candidate], fixed: u64, budget: u64) -> EvictionPlan {
    let mut total: u64 = candidates.iter().map(|c| c.size).sum::<u64>() + fixed;
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| !candidates[i].exempt())
        .collect();
    order.sort_by_key(|&i| (candidates[i].last_access, &candidates[i].name));
    let mut victims = Vec::new();
    for index in order {
        if total <= budget {
            break;
        }
        total -= candidates[index].size;
        victims.push(index);
    }
    EvictionPlan {
        victims,
        still_over: (total > budget).then_some(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, size: u64, last_access: i64) -> Candidate {
        Candidate {
            name: name.into(),
            download: false,
            size,
            last_access,
            sticky: false,
            busy: false,
            just_installed: false,
            spared: false,
        }
    }

    #[test]
    fn evicts_oldest_first_until_within_budget() {
        let builds = [cand("a", 10, 300), cand("b", 10, 100), cand("c", 10, 200)];
        let plan = plan_eviction(&builds, 0, 15);
        assert_eq!(plan.victims, [1, 2]);
        assert_eq!(plan.still_over, None);
        assert!(plan_eviction(&builds, 0, 30).victims.is_empty());
        assert_eq!(plan_eviction(&builds, 5, 30).victims, [1]);
    }

    #[test]
    fn exempt_builds_stay_and_warn() {
        let mut builds = [
            cand("a", 10, 1),
            cand("b", 10, 2),
            cand("c", 10, 3),
            cand("d", 10, 4),
        ];
        builds[0].sticky = true;
        builds[1].busy = true;
        builds[2].just_installed = true;
        let plan = plan_eviction(&builds, 0, 5);
        assert_eq!(plan.victims, [3]);
        assert_eq!(plan.still_over, Some(30));
    }

    #[test]
    fn access_record_writes_at_most_once_a_minute() {
        let dir = std::env::temp_dir().join(format!("upserv-access-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access");
        let mut record = AccessRecord::load(path.clone());
        assert!(record.touch("b1", 1000));
        assert!(record.is_dirty());
        record.write(|_| true).unwrap();
        assert!(!record.is_dirty());
        assert!(!record.touch("b1", 1030));
        assert_eq!(record.get("b1"), Some(1030));
        assert!(record.is_dirty(), "1030 is not on disk yet");
        assert!(record.touch("b1", 1060));
        assert!(record.touch("b2", 1061));

        // Another process wrote a later time for b1 and one for b3.
        fs::write(&path, "2000 b1\n1500 b3\ngarbage\n").unwrap();
        record.write(|name| name != "b2").unwrap();
        let again = AccessRecord::load(path);
        assert_eq!(again.get("b1"), Some(2000));
        assert_eq!(again.get("b3"), Some(1500));
        assert_eq!(again.get("b2"), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disk_usage_counts_hard_links_once() {
        let dir = std::env::temp_dir().join(format!("upserv-du-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/a"), vec![1u8; 100_000]).unwrap();
        let one = disk_usage(&dir).unwrap();
        fs::hard_link(dir.join("sub/a"), dir.join("b")).unwrap();
        std::os::unix::fs::symlink("/usr", dir.join("l")).unwrap();
        let two = disk_usage(&dir).unwrap();
        let file_blocks = fs::metadata(dir.join("b")).unwrap().blocks() * 512;
        assert!(file_blocks >= 100_000);
        assert!(one >= file_blocks);
        // Only the symlink (usually 0 blocks) and no second copy of the file.
        assert!(two - one < file_blocks);
        fs::remove_dir_all(&dir).unwrap();
    }
}
