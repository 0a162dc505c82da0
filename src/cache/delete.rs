//! Deleting a tree of any depth with one directory descriptor open at a time.
//!
//! A recursive delete holds a descriptor per level, so an archive of a few
//! thousand nested directories runs out of descriptors under the common
//! limit of 1024 open files, and then cannot be cleaned up at all. Here the
//! walk goes down with `openat` (never following a symlink) and back up
//! through `..`, checked against the device and inode it came from, so a
//! directory moved away meanwhile stops the delete instead of sending it
//! elsewhere. Only the names of the levels above are kept, in memory.
//!
//! This module must not know what the tree is; callers decide what to delete.

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Flags for opening one level of the walk: a directory, never through a symlink.
const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// Deletes a file or a whole tree at `path`, without following symlinks;
/// absent is fine. Holds at most three descriptors at any moment (the
/// directory, its listing and the child being opened).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut dir = open_dir(None, &cstring(path.as_os_str().as_bytes())?)?;
    // The levels we went down through: the name we took, and where we took it.
    let mut above: Vec<(CString, (u64, u64))> = Vec::new();
    loop {
        if let Some(name) = clear_files(&dir)? {
            let child = open_dir(Some(&dir), &name)?;
            above.push((name, identity(&dir)?));
            dir = child;
            continue;
        }
        let Some((name, expected)) = above.pop() else {
            break;
        };
        let parent = open_dir(Some(&dir), c"..")?;
        if identity(&parent)? != expected {
            return Err(io::Error::other(
                "a directory was moved while its tree was being deleted",
            ));
        }
        dir = parent;
        unlink_at(&dir, &name, libc::AT_REMOVEDIR)?;
    }
    drop(dir);
    fs::remove_dir(path)
}

/// Unlinks every non-directory in `dir`; the first subdirectory met, if any,
/// is returned (its own listing comes next, then this one starts over).
fn clear_files(dir: &OwnedFd) -> io::Result<Option<CString>> {
    let mut listing = Listing::open(dir)?;
    while let Some(name) = listing.next()? {
        if name == c"." || name == c".." {
            continue;
        }
        // Trying the unlink first tells files from directories without a
        // stat per entry: Linux answers EISDIR (POSIX allows EPERM).
        match unlink_at(dir, name, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::EPERM)) => {
                return Ok(Some(name.to_owned()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// One pass over a directory's names, on a descriptor of its own.
struct Listing(*mut libc::DIR);

impl Listing {
    fn open(dir: &OwnedFd) -> io::Result<Listing> {
        // fdopendir takes over the descriptor it is given, and rewinds
        // nothing: a fresh open of "." starts at the beginning.
        let own = open_dir(Some(dir), c".")?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(own);
        // SAFETY: `fd` is an open directory descriptor we own; on success
        // the stream owns it and closedir (in Drop) closes it.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `fd` is still ours to close.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            return Err(err);
        }
        Ok(Listing(stream))
    }

    /// The next name; `None` at the end. The name lives until the next call.
    fn next(&mut self) -> io::Result<Option<&CStr>> {
        // SAFETY: setting errno is how readdir's end is told from its errors.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: the stream is open until Drop; the entry it returns stays
        // valid until the next readdir on it, which `&mut self` keeps from
        // happening while the borrowed name is alive.
        let entry = unsafe { libc::readdir64(self.0) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(0) => Ok(None),
                _ => Err(err),
            };
        }
        // SAFETY: d_name is a NUL-terminated name inside the entry.
        Ok(Some(unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }))
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        // SAFETY: the stream came from fdopendir and is closed once, here.
        unsafe { libc::closedir(self.0) };
    }
}

fn open_dir(at: Option<&OwnedFd>, name: &CStr) -> io::Result<OwnedFd> {
    let base = at.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    loop {
        // SAFETY: `name` is NUL-terminated and `base` a directory descriptor
        // (or AT_FDCWD); the returned descriptor is owned below.
        let fd = unsafe { libc::openat(base, name.as_ptr(), DIR_FLAGS) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor nobody else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn unlink_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: a directory descriptor we hold and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Device and inode of an open directory.
fn identity(dir: &OwnedFd) -> io::Result<(u64, u64)> {
    let file = File::from(dir.try_clone()?);
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("path contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_deeper_than_the_descriptor_limit() {
        let base = std::env::temp_dir().join(format!("upserv-delete-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        // Built level by level from inside, so no path ever grows long.
        let mut dir = open_dir(None, &cstring(base.as_os_str().as_bytes()).unwrap()).unwrap();
        for level in 0..3000 {
            fs::write(format!("/proc/self/fd/{}/f", dir.as_raw_fd()), b"x").unwrap();
            if level % 100 == 0 {
                std::os::unix::fs::symlink("/", format!("/proc/self/fd/{}/l", dir.as_raw_fd()))
                    .unwrap();
            }
            // SAFETY: a directory descriptor we hold and a literal name.
            assert_eq!(
                unsafe { libc::mkdirat(dir.as_raw_fd(), c"d".as_ptr(), 0o755) },
                0
            );
            dir = open_dir(Some(&dir), c"d").unwrap();
        }
        drop(dir);
        remove_tree(&base).unwrap();
        assert!(!base.exists());
        remove_tree(&base).unwrap();
    }
}
