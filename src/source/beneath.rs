//! Access beneath a module root through descriptors, never following a
//! symlink at any level.
//!
//! Every path is opened relative to the root's directory descriptor, and a
//! symlink met anywhere along it (a local user may swap a directory for a
//! link to `/` in the middle of a pull) makes the open fail with `ELOOP` or
//! `ENOTDIR` instead of leading out. Two ways with the same result:
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (Linux 5.6+), and
//! where the kernel lacks it, a walk component by component with
//! `O_NOFOLLOW`, holding at most two descriptors at a time. Whatever is
//! looked at (attributes, link target, directory entries) is read through
//! the descriptor that was opened, so it is what the walk reached.
//!
//! The directory of the last entry looked at stays open (one descriptor):
//! a file list looks at every entry of a directory in turn, and each then
//! costs one call relative to it instead of a walk from the root. Once
//! opened beneath the root it stays what it was, whatever is renamed
//! later, as a process's working directory does.
//!
//! Following links on purpose (`-L`, `-k`, ...) is the caller's business:
//! it resolves targets itself, component by component, and hands paths
//! without links to this module.

use super::stat::Stat;
use parking_lot::Mutex;
use std::ffi::{CStr, CString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// How often `openat2` is retried when it reports a concurrent rename or
/// mount (`EAGAIN`) before the walk answers instead.
const MAX_OPENAT2_RETRIES: usize = 4;

/// The longest symlink target read (PATH_MAX); a longer one is an error.
pub(crate) const MAX_LINK_LEN: usize = 4096;

/// Bytes asked of the kernel per `getdents64` call while listing.
const DIRENT_BUF_LEN: usize = 32 * 1024;

/// How paths are opened beneath the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// One `openat2` call confined by the kernel.
    Openat2,
    /// A walk component by component (kernels before 5.6, or where a
    /// seccomp filter refuses `openat2`).
    Walk,
}

/// Set once `openat2` was found missing: every later open walks.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Set once `statx` was found missing (Linux before 4.11, or refused by a
/// seccomp filter): attributes are then read from an `O_PATH` descriptor.
static NO_STATX: AtomicBool = AtomicBool::new(false);

impl Stat {
    fn from_statx(x: &libc::statx) -> Stat {
        Stat {
            mode: u32::from(x.stx_mode),
            size: x.stx_size,
            mtime: x.stx_mtime.tv_sec,
            mtime_nsec: x.stx_mtime.tv_nsec,
            atime: x.stx_atime.tv_sec,
            uid: x.stx_uid,
            gid: x.stx_gid,
            rdev_major: x.stx_rdev_major,
            rdev_minor: x.stx_rdev_minor,
            dev: libc::makedev(x.stx_dev_major, x.stx_dev_minor) as u64,
            ino: x.stx_ino,
            nlink: u64::from(x.stx_nlink),
            user: None,
            group: None,
        }
    }

    fn from_metadata(m: &Metadata) -> Stat {
        let rdev = m.rdev() as libc::dev_t;
        Stat {
            mode: m.mode(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            atime: m.atime(),
            uid: m.uid(),
            gid: m.gid(),
            rdev_major: libc::major(rdev) as u32,
            rdev_minor: libc::minor(rdev) as u32,
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            user: None,
            group: None,
        }
    }
}

/// A module root held open.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    strategy: Strategy,
    /// The directory of the last entry looked at, by its path.
    last_dir: Mutex<Option<(Vec<u8>, OwnedFd)>>,
}

impl Root {
    /// Opens the directory the operator configured (following links in
    /// that path is the operator's choice).
    pub(crate) fn at(path: &Path) -> io::Result<Root> {
        let strategy = if NO_OPENAT2.load(Ordering::Relaxed) {
            Strategy::Walk
        } else {
            Strategy::Openat2
        };
        Root::at_with(path, strategy)
    }

    /// [`Root::at`] with a chosen strategy (tests cover both).
    pub(super) fn at_with(path: &Path, strategy: Strategy) -> io::Result<Root> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(path)?;
        Ok(Root {
            fd: file.into(),
            strategy,
            last_dir: Mutex::new(None),
        })
    }

    /// Opens `rel` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`), with no
    /// symlink followed at any level. `rel` is relative to the root; empty
    /// and `.` components are skipped, a `..` is refused.
    fn open(&self, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
        if self.strategy == Strategy::Openat2 && !NO_OPENAT2.load(Ordering::Relaxed) {
            match self.openat2(rel, flags) {
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                done => return done,
            }
        }
        self.walk(rel, flags)
    }

    fn openat2(&self, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
        check_components(rel)?;
        let path = if components(rel).next().is_none() {
            c".".to_owned()
        } else {
            c_name(rel)?
        };
        // SAFETY: an all-zero open_how is valid; the fields are set below.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
        let mut tries = 0;
        loop {
            // SAFETY: the root is an open descriptor, `path` a valid C
            // string, `how` a valid open_how of the size passed.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    path.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: the kernel just returned this descriptor to us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
            }
            let err = io::Error::last_os_error();
            tries += 1;
            if err.raw_os_error() != Some(libc::EAGAIN) || tries > MAX_OPENAT2_RETRIES {
                return Err(err);
            }
        }
    }

    /// The fallback: each directory on the way is opened `O_PATH |
    /// O_DIRECTORY | O_NOFOLLOW` relative to the previous one, so a link
    /// anywhere fails the walk.
    fn walk(&self, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
        check_components(rel)?;
        let mut parts = components(rel).peekable();
        let mut dir: Option<OwnedFd> = None;
        while let Some(part) = parts.next() {
            let at = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
            let name = c_name(part)?;
            if parts.peek().is_none() {
                return openat(at, &name, flags);
            }
            dir = Some(openat(at, &name, libc::O_PATH | libc::O_DIRECTORY)?);
        }
        openat(self.fd.as_fd(), c".", flags)
    }

    /// Runs `op` with the directory holding `rel` and its last component
    /// (the root and `.` for the root itself), the directory opened with no
    /// link followed or taken from the one kept open.
    fn at_parent<T>(
        &self,
        rel: &[u8],
        op: impl FnOnce(BorrowedFd<'_>, &CStr) -> io::Result<T>,
    ) -> io::Result<T> {
        check_components(rel)?;
        let (parent, Some(name)) = split_last(rel) else {
            return op(self.fd.as_fd(), c".");
        };
        let name = c_name(name)?;
        if components(parent).next().is_none() {
            return op(self.fd.as_fd(), &name);
        }
        let mut last = self.last_dir.lock();
        match &*last {
            Some((path, dir)) if path.as_slice() == parent => op(dir.as_fd(), &name),
            _ => {
                let dir = self.open(parent, libc::O_PATH | libc::O_DIRECTORY)?;
                let done = op(dir.as_fd(), &name);
                *last = Some((parent.to_vec(), dir));
                done
            }
        }
    }

    /// Opens `rel` for reading (with `flags` added), no link followed.
    pub(crate) fn open_file(&self, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
        self.at_parent(rel, |dir, name| openat(dir, name, libc::O_RDONLY | flags))
    }

    /// What the disk says about `rel` itself (a final symlink is
    /// described); no owner names.
    pub(crate) fn lstat(&self, rel: &[u8]) -> io::Result<Stat> {
        self.at_parent(rel, |dir, name| {
            if !NO_STATX.load(Ordering::Relaxed) {
                // SAFETY: an all-zero statx is a valid buffer to fill.
                let mut x: libc::statx = unsafe { std::mem::zeroed() };
                // SAFETY: `dir` is open, `name` a valid C string and `x` a
                // writable statx buffer.
                let rc = unsafe {
                    libc::statx(
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                        libc::STATX_BASIC_STATS,
                        &mut x,
                    )
                };
                if rc == 0 {
                    return Ok(Stat::from_statx(&x));
                }
                let err = io::Error::last_os_error();
                if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
                    return Err(err);
                }
                NO_STATX.store(true, Ordering::Relaxed);
            }
            let fd = openat(dir, name, libc::O_PATH)?;
            Ok(Stat::from_metadata(&File::from(fd).metadata()?))
        })
    }

    /// The target of the symlink `rel`.
    pub(crate) fn read_link(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        self.at_parent(rel, |dir, name| {
            let mut buf = vec![0u8; MAX_LINK_LEN + 1];
            // SAFETY: `dir` is open, `name` a valid C string, and `buf` is
            // writable for its length.
            let n = unsafe {
                libc::readlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n > MAX_LINK_LEN {
                return Err(io::Error::other(format!(
                    "symlink target longer than {MAX_LINK_LEN} bytes"
                )));
            }
            buf.truncate(n);
            Ok(buf)
        })
    }

    /// Whether this process may read `rel` (access(2) on the entry itself,
    /// never through a final link).
    pub(crate) fn readable(&self, rel: &[u8]) -> io::Result<bool> {
        self.at_parent(rel, |dir, name| {
            // SAFETY: `dir` is an open directory and `name` a valid C string.
            let rc = unsafe {
                libc::faccessat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::R_OK,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc == 0 {
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::NotFound => Err(err),
                _ => Ok(false),
            }
        })
    }

    /// Calls `each` with every name in directory `rel` but `.` and `..`,
    /// read from the opened directory with `getdents64`.
    pub(crate) fn list(&self, rel: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let dir = self.open(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let mut buf = vec![0u8; DIRENT_BUF_LEN];
        loop {
            // SAFETY: `dir` is an open directory and `buf` is writable for
            // its whole length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(());
            }
            for_each_dirent(&buf[..n as usize], &mut each)?;
        }
    }
}

/// Walks the `linux_dirent64` records the kernel wrote: inode (8 bytes),
/// offset (8), record length (2), type (1), then the NUL-terminated name.
fn for_each_dirent(mut records: &[u8], each: &mut impl FnMut(&[u8])) -> io::Result<()> {
    const NAME_AT: usize = 19;
    while records.len() >= NAME_AT {
        let len = usize::from(u16::from_ne_bytes([records[16], records[17]]));
        if len < NAME_AT || len > records.len() {
            return Err(io::Error::other("malformed directory entry"));
        }
        let field = &records[NAME_AT..len];
        let name = &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())];
        if name != b"." && name != b".." {
            each(name);
        }
        records = &records[len..];
    }
    Ok(())
}

/// The components that name something: empty and `.` ones are skipped.
fn components(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Paths here are already sanitised; a `..` would be a caller's bug, and is
/// refused rather than resolved.
fn check_components(rel: &[u8]) -> io::Result<()> {
    if components(rel).any(|c| c == b"..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "`..` in a path beneath the module root",
        ));
    }
    Ok(())
}

/// Splits off the last naming component; `None` for the root itself.
pub(crate) fn split_last(rel: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut end = rel.len();
    loop {
        let start = rel[..end]
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |p| p + 1);
        let part = &rel[start..end];
        if !part.is_empty() && part != b"." {
            return (&rel[..start], Some(part));
        }
        if start == 0 {
            return (b"", None);
        }
        end = start - 1;
    }
}

fn c_name(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open descriptor and `name` a valid C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
