//! The builds directory on disk: its layout, what each build costs, when it
//! was last opened, who is serving it, and which builds go first.
//!
//! ```text
//! DIR/NAME/               the tree of build NAME (module NAME)
//! DIR/NAME.sticky         NAME is never evicted
//! DIR/.upserv/partial/    downloads in progress: NAME.part + NAME.info
//! DIR/.upserv/unpack/     unpacking scratch space, one directory per build
//! DIR/.upserv/meta/       one metadata table per build: NAME
//! DIR/.upserv/busy/       one lock file per build; each connection holds a shared flock
//! DIR/.upserv/missing/    NAME: upstream answered 404 at this file's mtime
//! DIR/.upserv/trash/      builds on their way out (renamed here, then deleted)
//! DIR/.upserv/access      last-access record: "SECONDS NAME" lines
//! DIR/.upserv/lock        held (flock) by the process that downloads and installs
//! ```
//!
//! This module provides the mechanisms; the coordinator decides when to use
//! them. It must not download, unpack or parse archives.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::delete;
use super::is_build_name;

/// Name of the private directory inside the builds directory.
pub const PRIVATE_DIR: &str = ".upserv";
/// The access record is written at most this often per build (spares SD cards).
pub const ACCESS_WRITE_INTERVAL_SECS: i64 = 60;
/// Size of a disk block as `st_blocks` counts them.
const ST_BLOCK_SIZE: u64 = 512;
/// Longest access record accepted; far beyond any real one.
const MAX_ACCESS_RECORD_BYTES: u64 = 16 << 20;

/// Paths of one builds directory.
#[derive(Clone, Debug)]
pub struct Store {
    builds: PathBuf,
    private: PathBuf,
}

impl Store {
    /// Opens (creating when needed) the builds directory and its private parts.
    pub fn open(builds: &Path) -> io::Result<Store> {
        let store = Store {
            builds: builds.to_path_buf(),
            private: builds.join(PRIVATE_DIR),
        };
        for sub in ["partial", "unpack", "meta", "busy", "missing", "trash"] {
            let dir = store.private.join(sub);
            fs::create_dir_all(&dir)
                .map_err(|e| annotate(e, &format!("cannot create {}", dir.display())))?;
        }
        Ok(store)
    }

    pub fn build_dir(&self, name: &str) -> PathBuf {
        self.builds.join(name)
    }

    pub fn sticky_path(&self, name: &str) -> PathBuf {
        self.builds.join(format!("{name}.sticky"))
    }

    pub fn meta_path(&self, name: &str) -> PathBuf {
        self.private.join("meta").join(name)
    }

    pub fn partial_path(&self, name: &str) -> PathBuf {
        self.private.join("partial").join(format!("{name}.part"))
    }

    pub fn partial_info_path(&self, name: &str) -> PathBuf {
        self.private.join("partial").join(format!("{name}.info"))
    }

    pub fn unpack_dir(&self, name: &str) -> PathBuf {
        self.private.join("unpack").join(name)
    }

    fn busy_path(&self, name: &str) -> PathBuf {
        self.private.join("busy").join(name)
    }

    fn missing_path(&self, name: &str) -> PathBuf {
        self.private.join("missing").join(name)
    }

    fn access_path(&self) -> PathBuf {
        self.private.join("access")
    }

    /// The build's tree, when `DIR/NAME` is a real directory (not a symlink).
    pub fn is_build(&self, name: &str) -> bool {
        fs::symlink_metadata(self.build_dir(name)).is_ok_and(|m| m.is_dir())
    }

    /// Inode of the build's directory: changes when the build is replaced.
    pub fn build_ino(&self, name: &str) -> Option<u64> {
        fs::symlink_metadata(self.build_dir(name))
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| m.ino())
    }

    /// Names of all cached builds, sorted.
    pub fn list_builds(&self) -> io::Result<Vec<String>> {
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

    pub fn is_sticky(&self, name: &str) -> bool {
        fs::symlink_metadata(self.sticky_path(name)).is_ok()
    }

    pub fn set_sticky(&self, name: &str, sticky: bool) -> io::Result<()> {
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
    pub fn mark_busy(&self, name: &str) -> io::Result<BusyMark> {
        lock_stable(&self.busy_path(name), libc::LOCK_SH).map(|file| BusyMark { _file: file })
    }

    /// Whether any connection, of any process, serves `name` right now.
    pub fn is_busy(&self, name: &str) -> bool {
        self.try_lock_idle(name).is_none()
    }

    /// Takes the exclusive lock that proves nobody serves `name`; `None` when
    /// someone does. While held, no connection can start serving `name`.
    pub fn try_lock_idle(&self, name: &str) -> Option<File> {
        lock_stable(&self.busy_path(name), libc::LOCK_EX | libc::LOCK_NB).ok()
    }

    /// Takes the download-and-install lock if no other process holds it.
    pub fn try_lock_install(&self) -> io::Result<Option<File>> {
        match open_locked(&self.private.join("lock"), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a build: renamed into the trash first, so that it vanishes from
    /// the builds directory at once, then deleted. The caller holds `idle`,
    /// the lock from [`Store::try_lock_idle`].
    pub fn remove_build(&self, name: &str, idle: File) -> io::Result<()> {
        let trash = self.private.join("trash").join(format!(
            "{name}.{}.{}",
            std::process::id(),
            unix_now()
        ));
        fs::rename(self.build_dir(name), &trash)
            .map_err(|e| annotate(e, &format!("cannot remove build {name}")))?;
        remove_if_present(&self.meta_path(name))?;
        // Deleting the lock file while holding it makes waiters re-open it
        // (see lock_stable), so busy files do not pile up.
        remove_if_present(&self.busy_path(name))?;
        drop(idle);
        remove_tree(&trash)
    }

    /// Remembers that the upstream has no build `name`, and forgets the
    /// misses older than `ttl` (so a flood of made-up names leaves no trail).
    pub fn remember_missing(&self, name: &str, ttl: std::time::Duration) -> io::Result<()> {
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
        File::create(self.missing_path(name)).map(drop)
    }

    /// Whether a 404 for `name` was remembered less than `ttl` ago.
    pub fn recently_missing(&self, name: &str, ttl: std::time::Duration) -> bool {
        fs::metadata(self.missing_path(name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < ttl)
    }

    /// Startup recovery that needs the install lock (held by the caller):
    /// unpacking scratch and trash are removed, partial downloads kept.
    pub fn remove_leftovers(&self) -> io::Result<()> {
        for sub in ["unpack", "trash"] {
            for entry in fs::read_dir(self.private.join(sub))? {
                let path = entry?.path();
                log::info!("removing leftover {}", path.display());
                remove_tree(&path)?;
            }
        }
        for entry in fs::read_dir(self.private.join("meta"))? {
            let entry = entry?;
            let name = entry.file_name();
            let build = name
                .to_str()
                .filter(|n| is_build_name(n) && self.is_build(n));
            if build.is_none() {
                log::info!("removing metadata table of absent build {name:?}");
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Last modification of the build directory: the fallback last access
    /// for builds the record does not know (e.g. put there by an admin).
    pub fn build_mtime(&self, name: &str) -> i64 {
        fs::symlink_metadata(self.build_dir(name))
            .map(|m| m.mtime())
            .unwrap_or(0)
    }

    pub fn load_access(&self) -> AccessRecord {
        AccessRecord::load(self.access_path())
    }
}

/// A connection's claim on a build; released on drop.
#[derive(Debug)]
pub struct BusyMark {
    _file: File,
}

/// Opens `path` (creating it) and flocks it with `op`.
fn open_locked(path: &Path, op: libc::c_int) -> io::Result<File> {
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
fn lock_stable(path: &Path, op: libc::c_int) -> io::Result<File> {
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

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
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
pub fn remove_tree(path: &Path) -> io::Result<()> {
    delete::remove_tree(path).map_err(|e| annotate(e, &format!("cannot delete {}", path.display())))
}

pub fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Disk space a tree really occupies: allocated blocks, each hard-linked
/// inode counted once, symlinks not followed.
pub fn disk_usage(root: &Path) -> io::Result<u64> {
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
pub struct AccessRecord {
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

    pub fn get(&self, name: &str) -> Option<i64> {
        self.times.get(name).map(|&(exact, _)| exact)
    }

    /// Notes an access at `now`; true when the record should be written
    /// (the build's written time is a minute old or more).
    pub fn touch(&mut self, name: &str, now: i64) -> bool {
        let entry = self.times.entry(name.to_string()).or_insert((now, None));
        entry.0 = entry.0.max(now);
        entry
            .1
            .is_none_or(|written| now - written >= ACCESS_WRITE_INTERVAL_SECS)
    }

    /// Whether some access is known more exactly here than on disk.
    pub fn is_dirty(&self) -> bool {
        self.times
            .values()
            .any(|&(exact, written)| written != Some(exact))
    }

    /// Merges with the file on disk and writes it back (temp file + rename),
    /// keeping only names for which `keep` is true.
    pub fn write(&mut self, keep: impl Fn(&str) -> bool) -> io::Result<()> {
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

/// What eviction needs to know about one build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub size: u64,
    pub last_access: i64,
    pub sticky: bool,
    pub busy: bool,
    pub just_installed: bool,
}

impl Candidate {
    fn exempt(&self) -> bool {
        self.sticky || self.busy || self.just_installed
    }
}

/// The outcome of planning: whom to evict, and whether the budget still
/// cannot be met because only exempt builds remain.
#[derive(Debug, PartialEq, Eq)]
pub struct EvictionPlan {
    pub victims: Vec<String>,
    pub still_over: Option<u64>,
}

/// Least recently accessed first (ties by name, for a stable order), until
/// the total fits `budget`. Exempt builds are never chosen.
pub fn plan_eviction(candidates: &[Candidate], budget: u64) -> EvictionPlan {
    let mut total: u64 = candidates.iter().map(|c| c.size).sum();
    let mut order: Vec<&Candidate> = candidates.iter().filter(|c| !c.exempt()).collect();
    order.sort_by(|a, b| a.last_access.cmp(&b.last_access).then(a.name.cmp(&b.name)));
    let mut victims = Vec::new();
    for candidate in order {
        if total <= budget {
            break;
        }
        total -= candidate.size;
        victims.push(candidate.name.clone());
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
            size,
            last_access,
            sticky: false,
            busy: false,
            just_installed: false,
        }
    }

    #[test]
    fn evicts_oldest_first_until_within_budget() {
        let builds = [cand("a", 10, 300), cand("b", 10, 100), cand("c", 10, 200)];
        let plan = plan_eviction(&builds, 15);
        assert_eq!(plan.victims, ["b", "c"]);
        assert_eq!(plan.still_over, None);
        assert!(plan_eviction(&builds, 30).victims.is_empty());
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
        let plan = plan_eviction(&builds, 5);
        assert_eq!(plan.victims, ["d"]);
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
