//! The attributes of one entry, as the file list needs them: what the disk
//! says (read by `beneath`), or the metadata table over it.

#[cfg(test)]
use crate::meta::{S_IFBLK, S_IFCHR};
use crate::meta::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};

/// The attributes of one entry, as the file list needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Type and permission bits, as in `st_mode`.
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    /// The nanoseconds of the mtime (0 where a build's table sets it).
    pub(crate) mtime_nsec: u32,
    /// The access time, in seconds (sent with `--atimes`).
    pub(crate) atime: i64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev_major: u32,
    pub(crate) rdev_minor: u32,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    /// Owner and group names when the metadata table knows them; otherwise
    /// the file list looks the ids up in the system databases.
    pub(crate) user: Option<Box<[u8]>>,
    pub(crate) group: Option<Box<[u8]>>,
}

impl Stat {
    pub(crate) fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub(crate) fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    pub(crate) fn is_file(&self) -> bool {
        self.kind() == S_IFREG
    }
    pub(crate) fn is_symlink(&self) -> bool {
        self.kind() == S_IFLNK
    }
    #[cfg(test)]
    pub(crate) fn is_device(&self) -> bool {
        matches!(self.kind(), S_IFCHR | S_IFBLK)
    }
}
