//! What the sender reads: a module's tree on disk, confined to its root.
//!
//! Every path handed in is relative to the module root, already sanitised
//! (no leading `/`, no `..` that climbs out). Symlinks are never followed
//! implicitly: [`Source::lstat`] describes a link itself, and
//! [`Source::resolve`] follows links only inside the module, refusing any
//! that leads out of it, however it is reached.
//!
//! Every access goes through a descriptor of the module root with no link
//! followed at any level (see `beneath`), so a link a local user swaps in
//! during a pull fails the access instead of leading out. A path whose
//! directories include links inside the module (a `-R` argument through a
//! link, the children of a directory link followed by `-k`) is tried
//! again with those directories resolved by [`Source::resolve`].
//!
//! For builds, a metadata table recorded while unpacking overrides what the
//! disk says about owners, modes, times and device numbers, and adds entries
//! (device nodes, FIFOs) that exist only in the table: upserv runs
//! unprivileged and cannot create them. The table never decides what an
//! entry on disk is: where its type disagrees with the disk (a stale table
//! after a hand edit, a damaged one), the disk's attributes are used whole,
//! and a table-only entry whose name exists on disk is not listed twice.

mod beneath;
mod stat;

pub(crate) use stat::Stat;

use crate::meta::MetaTable;
use beneath::Root;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(test)]
use beneath::Strategy;

/// How many symlinks one resolution may cross (the kernel's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

pub(crate) use crate::meta::{
    S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};

/// Why [`Source::resolve`] refused a path: a link on the way leads out of
/// the module. Callers tell it from other errors with [`leads_out`].
#[derive(Debug)]
struct LeadsOut(String);

impl std::fmt::Display for LeadsOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: symlink leads outside the module", self.0)
    }
}

impl std::error::Error for LeadsOut {}

fn escape_error(path: &[u8]) -> io::Error {
    let what = LeadsOut(String::from_utf8_lossy(path).into_owned());
    io::Error::new(io::ErrorKind::PermissionDenied, what)
}

/// Whether `err` is a refusal to follow a link out of the module (rather
/// than a file that could not be read).
pub(crate) fn leads_out(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<LeadsOut>())
}

/// Joins two relative paths with a `/`, treating "" and "." as empty.
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() || dir == b"." {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// rsync's sanitize_path with the daemon's settings: drops leading slashes,
/// `.` components (kept with `--relative`, where `/./` marks where the
/// client's path starts) and any `..` that would climb above the root;
/// keeps a trailing slash; an empty result becomes "" (the module root),
/// which the file list turns into ".".
pub(crate) fn sanitize_path(path: &[u8], keep_dot_dirs: bool) -> Vec<u8> {
    let trailing = path.ends_with(b"/") && path.iter().any(|&b| b != b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" => {}
            b"." if !keep_dot_dirs => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = parts.join(&b'/');
    if trailing && !out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Opens the regular file `rel` beneath `dir`, no link followed at any
/// level. Anything but a regular file (a FIFO, a device) is refused before
/// it is opened, so opening has no side effects; the type is checked again
/// on what was opened, in case it was swapped meanwhile.
fn open_regular(dir: &Root, rel: &[u8]) -> io::Result<File> {
    let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
    if !dir.lstat(rel)?.is_file() {
        return Err(not_regular());
    }
    let file = File::from(dir.open_file(rel, libc::O_NONBLOCK | libc::O_NOCTTY)?);
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Opens the regular file `rel` inside the module at `root` the way
/// [`Source`] does (for merge files named by a client).
pub(crate) fn open_regular_beneath(root: &Path, rel: &[u8]) -> io::Result<File> {
    open_regular(&Root::at(root)?, rel)
}

/// A module's tree.
#[derive(Clone)]
pub(crate) struct Source {
    root: PathBuf,
    dir: Arc<Root>,
    meta: Option<Arc<MetaTable>>,
}

/// Whether an open failed because it met a symlink (or a non-directory) on
/// the way.
fn met_link(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
}

impl Source {
    /// Opens the module root `root`.
    pub(crate) fn new(root: PathBuf, meta: Option<Arc<MetaTable>>) -> io::Result<Source> {
        let dir = Arc::new(Root::at(&root)?);
        Ok(Source { root, dir, meta })
    }

    /// [`Source::new`] with a chosen way of opening paths (tests cover both).
    #[cfg(test)]
    fn with_strategy(
        root: PathBuf,
        meta: Option<Arc<MetaTable>>,
        strategy: Strategy,
    ) -> io::Result<Source> {
        let dir = Arc::new(Root::at_with(&root, strategy)?);
        Ok(Source { root, dir, meta })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `op` on `rel`; if it met a link in a directory on the way, runs
    /// it again with those directories resolved inside the module (the last
    /// component is never followed here).
    fn through_dirs<T>(
        &self,
        rel: &[u8],
        mut op: impl FnMut(&[u8]) -> io::Result<T>,
    ) -> io::Result<T> {
        match op(rel) {
            Err(err) if met_link(&err) => {
                let (parent, Some(name)) = beneath::split_last(rel) else {
                    return Err(err);
                };
                if beneath::split_last(parent).1.is_none() {
                    return Err(err);
                }
                let real = self.resolve(parent, true)?;
                op(&join(&real, name))
            }
            done => done,
        }
    }

    /// Attributes of `rel` itself (a symlink is described, not followed).
    pub(crate) fn lstat(&self, rel: &[u8]) -> io::Result<Stat> {
        let table = self.meta.as_ref().and_then(|m| m.get(rel));
        match self.through_dirs(rel, |r| self.dir.lstat(r)) {
            Ok(mut st) => {
                if let Some(e) = table.filter(|e| e.mode & S_IFMT == st.kind()) {
                    st.mode = e.mode;
                    st.uid = e.uid;
                    st.gid = e.gid;
                    if st.mtime != e.mtime {
                        st.mtime = e.mtime;
                        st.mtime_nsec = 0;
                    }
                    st.rdev_major = e.rdev_major;
                    st.rdev_minor = e.rdev_minor;
                    st.user = e.user.map(|u| u.as_bytes().into());
                    st.group = e.group.map(|g| g.as_bytes().into());
                }
                Ok(st)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => match table {
                // Devices and FIFOs live only in the table.
                Some(e) if e.is_table_only() => Ok(Stat {
                    mode: e.mode,
                    mtime: e.mtime,
                    uid: e.uid,
                    gid: e.gid,
                    rdev_major: e.rdev_major,
                    rdev_minor: e.rdev_minor,
                    nlink: 1,
                    user: e.user.map(|u| u.as_bytes().into()),
                    group: e.group.map(|g| g.as_bytes().into()),
                    ..Stat::default()
                }),
                _ => Err(err),
            },
            Err(err) => Err(err),
        }
    }

    /// Whether this process may read `rel` (access(2) on the entry itself).
    /// An entry that exists only in the metadata table counts as readable:
    /// it is served from the table, not from the disk.
    pub(crate) fn readable(&self, rel: &[u8]) -> bool {
        match self.through_dirs(rel, |r| self.dir.readable(r)) {
            Ok(readable) => readable,
            Err(err) => {
                err.kind() == io::ErrorKind::NotFound
                    && self.meta.as_ref().is_some_and(|m| m.get(rel).is_some())
            }
        }
    }

    /// The names in directory `rel`, without `.` and `..`, including entries
    /// that exist only in the metadata table.
    pub(crate) fn read_dir(&self, rel: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut list = |r: &[u8]| {
            names.clear();
            self.dir.list(r, |n| names.push(n.to_vec()))
        };
        // Asked to list a link, the caller followed it (`-L`, `-k`, a
        // trailing slash): so do we, inside the module.
        match list(rel) {
            Err(err) if met_link(&err) => list(&self.resolve(rel, true)?)?,
            done => done?,
        }
        if let Some(meta) = &self.meta {
            let mut table_only = meta.table_only_children(rel).peekable();
            if table_only.peek().is_some() {
                // The disk wins: a name it holds is listed once, as it is.
                let on_disk: HashSet<&[u8]> = names.iter().map(Vec::as_slice).collect();
                let extra: Vec<Vec<u8>> = table_only
                    .map(|(n, _)| n)
                    .filter(|n| !on_disk.contains(n))
                    .map(<[u8]>::to_vec)
                    .collect();
                names.extend(extra);
            }
        }
        Ok(names)
    }

    pub(crate) fn read_link(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        self.through_dirs(rel, |r| self.dir.read_link(r))
    }

    /// Reads a whole regular file of at most `limit` bytes (`rel` free of
    /// symlinks), e.g. a `--files-from` list kept in the module.
    pub(crate) fn read_small_file(&self, rel: &[u8], limit: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut data = Vec::new();
        open_regular(&self.dir, rel)?
            .take(limit + 1)
            .read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        Ok(data)
    }

    /// Opens `rel` for reading without following a symlink at any level
    /// (links in its directories are resolved inside the module first).
    pub(crate) fn open(&self, rel: &[u8]) -> io::Result<File> {
        let flags = libc::O_NOCTTY | libc::O_NONBLOCK;
        self.through_dirs(rel, |r| self.dir.open_file(r, flags))
            .map(File::from)
    }

    /// Resolves `rel` to a path with no symlinks in it, following links only
    /// while they stay inside the module. With `follow_last` false a final
    /// symlink is kept as it is. A link that leads out of the module (an
    /// absolute target, or `..` above the root) is an error.
    pub(crate) fn resolve(&self, rel: &[u8], follow_last: bool) -> io::Result<Vec<u8>> {
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = rel
            .split(|&b| b == b'/')
            .rev()
            .map(<[u8]>::to_vec)
            .collect();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if resolved.pop().is_none() {
                        return Err(escape_error(rel));
                    }
                    continue;
                }
                _ => {}
            }
            let mut candidate = resolved.join(&b'/');
            candidate = join(&candidate, &comp);
            let is_last = pending.iter().all(|c| c.is_empty() || c == b".");
            let meta = self.dir.lstat(&candidate);
            let is_link = matches!(&meta, Ok(m) if m.is_symlink());
            if is_link && (follow_last || !is_last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "too many levels of symbolic links",
                    ));
                }
                let target = self.dir.read_link(&candidate)?;
                if target.first() == Some(&b'/') {
                    return Err(escape_error(rel));
                }
                pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                continue;
            }
            if let Err(err) = meta {
                if !is_last || self.lstat(&candidate).is_err() {
                    return Err(err);
                }
            }
            resolved.push(comp);
        }
        Ok(resolved.join(&b'/'))
    }

    /// Attributes of what `rel` finally names, following symlinks inside the
    /// module only.
    pub(crate) fn stat_confined(&self, rel: &[u8]) -> io::Result<(Vec<u8>, Stat)> {
        let real = self.resolve(rel, true)?;
        let st = self.lstat(&real)?;
        Ok((real, st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const STRATEGIES: [Strategy; 2] = [Strategy::Openat2, Strategy::Walk];

    fn tree_with(strategy: Strategy) -> (tempdir::TempDir, Source) {
        let dir = tempdir::TempDir::new();
        let root = dir.path().join("mod");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), b"x").unwrap();
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/secret"), b"s").unwrap();
        fs::write(dir.path().join("secret"), b"s").unwrap();
        symlink("b", root.join("a/inside")).unwrap();
        symlink("../../secret", root.join("a/out")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../b/f", root.join("a/b/up")).unwrap();
        symlink("../outside", root.join("esc")).unwrap();
        symlink(dir.path().join("outside"), root.join("esc_abs")).unwrap();
        let src = Source::with_strategy(root, None, strategy).unwrap();
        (dir, src)
    }

    #[test]
    fn follows_links_inside_the_module() {
        for strategy in STRATEGIES {
            let (_d, src) = tree_with(strategy);
            assert_eq!(src.resolve(b"a/inside/f", true).unwrap(), b"a/b/f");
            assert_eq!(src.resolve(b"a/b/up", true).unwrap(), b"a/b/f");
            assert_eq!(src.resolve(b"a/inside", false).unwrap(), b"a/inside");
            // A link in a directory position is resolved inside the module.
            assert!(src.lstat(b"a/inside/f").unwrap().is_file());
            assert!(src.open(b"a/inside/f").is_ok());
            let mut names = src.read_dir(b"a/inside/").unwrap();
            names.sort();
            assert_eq!(names, [b"f".to_vec(), b"up".to_vec()]);
        }
    }

    #[test]
    fn refuses_links_leading_out() {
        for strategy in STRATEGIES {
            let (_d, src) = tree_with(strategy);
            for escape in [&b"a/out"[..], b"abs/passwd", b"../secret"] {
                assert!(leads_out(&src.resolve(escape, true).unwrap_err()));
            }
            assert!(!leads_out(&src.resolve(b"a/none", true).unwrap_err()));
            // Not following the last link is fine: it is sent as a link.
            assert_eq!(src.resolve(b"a/out", false).unwrap(), b"a/out");
        }
    }

    #[test]
    fn no_access_goes_through_a_link_leading_out() {
        for strategy in STRATEGIES {
            let (_d, src) = tree_with(strategy);
            for dir in [&b"esc"[..], b"esc_abs", b"abs"] {
                let file = join(dir, b"secret");
                assert!(src.open(&file).is_err(), "{strategy:?} open");
                assert!(src.lstat(&file).is_err(), "{strategy:?} lstat");
                assert!(src.read_link(&file).is_err(), "{strategy:?} readlink");
                assert!(!src.readable(&file), "{strategy:?} readable");
                assert!(src.read_dir(dir).is_err(), "{strategy:?} read_dir");
                assert!(src.read_small_file(&file, 10).is_err());
                assert!(open_regular_beneath(src.root(), &file).is_err());
                // The link itself is described, not followed.
                assert!(src.lstat(dir).unwrap().is_symlink());
            }
        }
    }

    #[test]
    fn open_does_not_follow_a_final_link() {
        for strategy in STRATEGIES {
            let (_d, src) = tree_with(strategy);
            assert!(src.open(b"a/b/up").is_err());
            assert!(src.open(b"a/b/f").is_ok());
            assert!(src.readable(b"a/b/f"));
            assert_eq!(src.read_link(b"a/b/up").unwrap(), b"../b/f");
        }
    }

    /// The attack on a static module: a local user swaps a directory with
    /// a link out of the module (RENAME_EXCHANGE) while files are opened.
    /// No open, listing or stat may ever reach the outside file.
    #[test]
    fn a_directory_swapped_for_a_link_never_leads_out() {
        use std::sync::atomic::{AtomicBool, Ordering};
        for strategy in STRATEGIES {
            let (d, src) = tree_with(strategy);
            let root = src.root().to_path_buf();
            fs::create_dir(root.join("d")).unwrap();
            fs::write(root.join("d/secret"), b"inside").unwrap();
            symlink(d.path().join("outside"), root.join("swap")).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let swapper = {
                let stop = stop.clone();
                let a =
                    std::ffi::CString::new(root.join("d").into_os_string().into_encoded_bytes())
                        .unwrap();
                let b =
                    std::ffi::CString::new(root.join("swap").into_os_string().into_encoded_bytes())
                        .unwrap();
                std::thread::spawn(move || {
                    let mut swaps = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: two valid C strings naming paths in our
                        // scratch directory.
                        let rc = unsafe {
                            libc::syscall(
                                libc::SYS_renameat2,
                                libc::AT_FDCWD,
                                a.as_ptr(),
                                libc::AT_FDCWD,
                                b.as_ptr(),
                                libc::RENAME_EXCHANGE,
                            )
                        };
                        assert_eq!(rc, 0, "renameat2: {}", io::Error::last_os_error());
                        swaps += 1;
                    }
                    swaps
                })
            };
            let (mut inside, mut refused) = (0u32, 0u32);
            for _ in 0..20_000 {
                // A new one each time: a source keeps the last directory it
                // looked in open, which would hide the race after a while.
                let src = Source::with_strategy(root.clone(), None, strategy).unwrap();
                match src.read_small_file(b"d/secret", 100) {
                    Ok(data) => {
                        assert_eq!(data, b"inside", "{strategy:?}: read the outside file");
                        inside += 1;
                    }
                    Err(_) => refused += 1,
                }
                if let Ok(names) = src.read_dir(b"d") {
                    assert_eq!(names, [b"secret".to_vec()]);
                }
                if let Ok(st) = src.lstat(b"d/secret") {
                    assert_eq!(st.size, 6, "{strategy:?}: stat the outside file");
                }
            }
            stop.store(true, Ordering::Relaxed);
            let swaps = swapper.join().unwrap();
            assert!(
                swaps > 0 && inside > 0 && refused > 0,
                "{swaps} {inside} {refused}"
            );
        }
    }

    #[test]
    fn the_disk_decides_what_an_entry_is() {
        use crate::meta::MetaRecord;
        let rec = |path: &str, mode: u32| MetaRecord {
            path: path.as_bytes().to_vec(),
            mode,
            uid: 7,
            gid: 8,
            user: None,
            group: None,
            mtime: 5,
            rdev_major: 1,
            rdev_minor: 3,
        };
        let records = [
            rec("a", S_IFDIR | 0o4755),
            rec("a/b", S_IFDIR | 0o700),
            rec("esc", S_IFDIR | 0o755),
            rec("a/b/f", S_IFCHR | 0o600),
            rec("a/null", S_IFCHR | 0o666),
        ];
        for strategy in STRATEGIES {
            let table = MetaTable::from_records(&records).unwrap();
            let (_d, plain) = tree_with(strategy);
            let src =
                Source::with_strategy(plain.root().to_path_buf(), Some(Arc::new(table)), strategy)
                    .unwrap();
            // Same type: the table's owners and modes win.
            let a = src.lstat(b"a").unwrap();
            assert_eq!((a.mode, a.uid, a.mtime), (S_IFDIR | 0o4755, 7, 5));
            // "Directory" in the table, a link on disk: a link it is, and
            // nothing beneath it is reached.
            assert!(src.lstat(b"esc").unwrap().is_symlink());
            assert!(src.read_dir(b"esc").is_err());
            assert!(src.open(b"esc/secret").is_err());
            // "Device" in the table, a file on disk: a file, listed once.
            let f = src.lstat(b"a/b/f").unwrap();
            assert!(f.is_file());
            assert_eq!(
                (f.uid, f.rdev_major),
                (plain.lstat(b"a/b/f").unwrap().uid, 0)
            );
            let mut names = src.read_dir(b"a/b").unwrap();
            names.sort();
            assert_eq!(names, [b"f".to_vec(), b"up".to_vec()]);
            // A device only in the table stays.
            assert!(src.lstat(b"a/null").unwrap().is_device());
            assert!(src.read_dir(b"a").unwrap().contains(&b"null".to_vec()));
        }
    }

    #[test]
    fn split_last_names_the_last_component() {
        use super::beneath::split_last;
        assert_eq!(split_last(b"a/b/c"), (&b"a/b/"[..], Some(&b"c"[..])));
        assert_eq!(split_last(b"a/b/./"), (&b"a/"[..], Some(&b"b"[..])));
        assert_eq!(split_last(b"c"), (&b""[..], Some(&b"c"[..])));
        assert_eq!(split_last(b"./"), (&b""[..], None));
        assert_eq!(split_last(b""), (&b""[..], None));
    }

    /// A minimal self-cleaning temporary directory for unit tests.
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub(crate) struct TempDir(PathBuf);
        impl TempDir {
            pub(crate) fn new() -> TempDir {
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "upserv-src-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                TempDir(p)
            }
            pub(crate) fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
