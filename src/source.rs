//! What the sender reads: a module's tree on disk, confined to its root.
//!
//! Every path handed in is relative to the module root, already sanitised
//! (no leading `/`, no `..` that climbs out). Symlinks are never followed
//! implicitly: [`Source::lstat`] describes a link itself, and
//! [`Source::resolve`] follows links only inside the module, refusing any
//! that leads out of it, however it is reached.
//!
//! For builds, a metadata table recorded while unpacking overrides what the
//! disk says about owners, modes, times and device numbers, and adds entries
//! (device nodes, FIFOs) that exist only in the table: upserv runs
//! unprivileged and cannot create them.

use crate::cache::meta::MetaTable;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many symlinks one resolution may cross (the kernel's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

pub use crate::cache::meta::{
    S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};

/// The attributes of one entry, as the file list needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Type and permission bits, as in `st_mode`.
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub uid: u32,
    pub gid: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// Owner and group names when the metadata table knows them; otherwise
    /// the file list looks the ids up in the system databases.
    pub user: Option<Box<[u8]>>,
    pub group: Option<Box<[u8]>>,
}

impl Stat {
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.kind() == S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == S_IFLNK
    }
    pub fn is_device(&self) -> bool {
        matches!(self.kind(), S_IFCHR | S_IFBLK)
    }
    pub fn is_special(&self) -> bool {
        matches!(self.kind(), S_IFIFO | S_IFSOCK)
    }

    fn from_metadata(m: &fs::Metadata) -> Stat {
        let rdev = m.rdev();
        Stat {
            mode: m.mode(),
            size: m.size(),
            mtime: m.mtime(),
            uid: m.uid(),
            gid: m.gid(),
            rdev_major: libc::major(rdev as libc::dev_t) as u32,
            rdev_minor: libc::minor(rdev as libc::dev_t) as u32,
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            user: None,
            group: None,
        }
    }
}

fn escape_error(path: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{}: symlink leads outside the module",
            String::from_utf8_lossy(path)
        ),
    )
}

/// Joins two relative paths with a `/`, treating "" and "." as empty.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
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
pub fn sanitize_path(path: &[u8], keep_dot_dirs: bool) -> Vec<u8> {
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

/// A module's tree.
#[derive(Clone)]
pub struct Source {
    root: PathBuf,
    meta: Option<Arc<MetaTable>>,
}

impl Source {
    pub fn new(root: PathBuf, meta: Option<Arc<MetaTable>>) -> Source {
        Source { root, meta }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn disk_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() || rel == b"." {
            return self.root.clone();
        }
        self.root.join(OsStr::from_bytes(rel))
    }

    /// Attributes of `rel` itself (a symlink is described, not followed).
    pub fn lstat(&self, rel: &[u8]) -> io::Result<Stat> {
        let table = self.meta.as_ref().and_then(|m| m.get(rel));
        match fs::symlink_metadata(self.disk_path(rel)) {
            Ok(m) => {
                let mut st = Stat::from_metadata(&m);
                if let Some(e) = table {
                    st.mode = e.mode;
                    st.uid = e.uid;
                    st.gid = e.gid;
                    st.mtime = e.mtime;
                    st.rdev_major = e.rdev_major;
                    st.rdev_minor = e.rdev_minor;
                    st.user = e.user.map(|u| u.as_bytes().into());
                    st.group = e.group.map(|g| g.as_bytes().into());
                }
                Ok(st)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => match table {
                // Devices and FIFOs live only in the table.
                Some(e) if !matches!(e.mode & S_IFMT, S_IFREG | S_IFDIR | S_IFLNK) => Ok(Stat {
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

    /// Whether this process may read `rel` (access(2), following a final
    /// symlink). An entry that exists only in the metadata table counts as
    /// readable: it is served from the table, not from the disk.
    pub fn readable(&self, rel: &[u8]) -> bool {
        let Ok(path) = std::ffi::CString::new(self.disk_path(rel).as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::access(path.as_ptr(), libc::R_OK) } == 0 {
            return true;
        }
        let missing = io::Error::last_os_error().kind() == io::ErrorKind::NotFound;
        missing && self.meta.as_ref().is_some_and(|m| m.get(rel).is_some())
    }

    /// The names in directory `rel`, without `.` and `..`, including entries
    /// that exist only in the metadata table.
    pub fn read_dir(&self, rel: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.disk_path(rel))? {
            names.push(entry?.file_name().as_bytes().to_vec());
        }
        if let Some(meta) = &self.meta {
            names.extend(meta.table_only_children(rel).map(|(n, _)| n.to_vec()));
        }
        Ok(names)
    }

    pub fn read_link(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        Ok(fs::read_link(self.disk_path(rel))?
            .into_os_string()
            .as_bytes()
            .to_vec())
    }

    /// Reads a whole regular file of at most `limit` bytes (`rel` free of
    /// symlinks), e.g. a `--files-from` list kept in the module.
    pub fn read_small_file(&self, rel: &[u8], limit: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut data = Vec::new();
        self.open(rel)?.take(limit + 1).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        Ok(data)
    }

    /// Opens a regular file for reading without following a final symlink.
    /// `rel` must already be free of symlinks (see [`Source::resolve`]).
    pub fn open(&self, rel: &[u8]) -> io::Result<File> {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(self.disk_path(rel))
    }

    /// Resolves `rel` to a path with no symlinks in it, following links only
    /// while they stay inside the module. With `follow_last` false a final
    /// symlink is kept as it is. A link that leads out of the module (an
    /// absolute target, or `..` above the root) is an error.
    pub fn resolve(&self, rel: &[u8], follow_last: bool) -> io::Result<Vec<u8>> {
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
            let meta = fs::symlink_metadata(self.disk_path(&candidate));
            let is_link = matches!(&meta, Ok(m) if m.file_type().is_symlink());
            if is_link && (follow_last || !is_last) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "too many levels of symbolic links",
                    ));
                }
                let target = self.read_link(&candidate)?;
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
    pub fn stat_confined(&self, rel: &[u8]) -> io::Result<(Vec<u8>, Stat)> {
        let real = self.resolve(rel, true)?;
        let st = self.lstat(&real)?;
        Ok((real, st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempdir::TempDir, Source) {
        let dir = tempdir::TempDir::new();
        let root = dir.path().join("mod");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), b"x").unwrap();
        fs::write(dir.path().join("secret"), b"s").unwrap();
        symlink("b", root.join("a/inside")).unwrap();
        symlink("../../secret", root.join("a/out")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../b/f", root.join("a/b/up")).unwrap();
        let src = Source::new(root, None);
        (dir, src)
    }

    #[test]
    fn follows_links_inside_the_module() {
        let (_d, src) = tree();
        assert_eq!(src.resolve(b"a/inside/f", true).unwrap(), b"a/b/f");
        assert_eq!(src.resolve(b"a/b/up", true).unwrap(), b"a/b/f");
        assert_eq!(src.resolve(b"a/inside", false).unwrap(), b"a/inside");
    }

    #[test]
    fn refuses_links_leading_out() {
        let (_d, src) = tree();
        assert!(src.resolve(b"a/out", true).is_err());
        assert!(src.resolve(b"abs/passwd", true).is_err());
        assert!(src.resolve(b"../secret", true).is_err());
        // Not following the last link is fine: it is sent as a link.
        assert_eq!(src.resolve(b"a/out", false).unwrap(), b"a/out");
    }

    #[test]
    fn open_does_not_follow_a_final_link() {
        let (_d, src) = tree();
        assert!(src.open(b"a/b/up").is_err());
        assert!(src.open(b"a/b/f").is_ok());
    }

    /// A minimal self-cleaning temporary directory for unit tests.
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempDir(PathBuf);
        impl TempDir {
            pub fn new() -> TempDir {
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "upserv-src-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                TempDir(p)
            }
            pub fn path(&self) -> &Path {
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
