//! The file list: which entries a pull covers, the order both sides sort
//! them in, and their encoding on the wire (rsync: flist.c, rsync: uidlist.c).
//!
//! - `build`: which entries a pull covers (the walk, filters, link options).
//! - `order`: the order both sides sort entries in (`f_name_cmp`).
//! - `encode`: the entries on the wire.
//! - `incremental`: with incremental recursion, which directory's list
//!   comes next; `window`: the lists the client still works on, and which
//!   file an index names.
//! - `shared`: for builds, lists built once and shared between the
//!   connections that pull the same build with the same options.
//!
//! Entries are kept compactly: every name and symlink target lives in one
//! byte arena and what only some options need lives apart, so a list of
//! 50,000 entries costs a few megabytes. The list is sent in the order the
//! tree was walked, as rsyncd sends it, then sorted; the client sorts it
//! the same way, and file indices on the wire are positions in that order.
//! With incremental recursion each directory's list is sorted before it is
//! sent (the walk numbers its subdirectories in sorted order), which the
//! client's own sort leaves as it is.

mod build;
mod encode;
mod feed;
mod ids;
mod incremental;
mod order;
pub(crate) mod shared;
mod window;

pub(crate) use build::Builder;
pub(crate) use encode::Encoder;
pub(crate) use feed::{Feed, ListSource};
pub(crate) use incremental::DirWalk;
pub(crate) use order::{f_name_cmp, NameParts};
pub(crate) use window::{Found, Window};

use super::filter::FilterError;
use super::io::MsgTag;
use crate::delta::Digest;
use crate::source;
use ids::IdNames;
use std::cmp::Ordering;
use std::io;

/// rsync refuses names this long (MAXPATHLEN).
pub(crate) const MAX_PATH_LEN: usize = 4096;
/// Entries one file list may hold; beyond it the pull is refused rather than
/// letting a huge tree exhaust a small server's memory.
pub(crate) const MAX_ENTRIES: usize = 4_000_000;

/// io_error bits (rsync.h IOERR_*), sent after the list.
pub(crate) const IOERR_GENERAL: i32 = 1 << 0;
pub(crate) const IOERR_VANISHED: i32 = 1 << 1;

/// Entry flags of our own.
const FLAG_TOP_DIR: u8 = 1 << 0;
/// A directory whose contents are listed (not a mount point under `-x`).
const FLAG_CONTENT_DIR: u8 = 1 << 1;
/// A directory sent only because a listed name lies beneath it (`-R`'s
/// implied directories, the `.` of `/./`).
const FLAG_IMPLIED_DIR: u8 = 1 << 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum NameType {
    Normal,
    DotDir,
    SlashEnding,
}

/// With `-R` and incremental recursion, a name that comes in a later list:
/// its leading directory (implied) was listed in its place, and the rest of
/// the name comes in that directory's list, one more directory at a time
/// (rsync: flist.c send_implied_dirs keeps it in the directory's relnames,
/// send1extra sends it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Deferred {
    /// The implied directory's transfer root and name.
    root: u32,
    dir: Vec<u8>,
    /// The rest of the name, below `dir`.
    rest: Vec<u8>,
    name_type: NameType,
}

/// One entry of the list.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Offset and length of the full name (`dir/base`) in the arena.
    name_at: u32,
    name_len: u32,
    /// Offset of the basename within the name.
    base_at: u32,
    /// Offset and length of the symlink target in the arena.
    link_at: u32,
    link_len: u32,
    /// Which transfer root (index into `FileList::roots`) the name is relative to.
    root: u32,
    flags: u8,
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    /// The nanoseconds of the mtime (sent from protocol 31 on).
    pub(crate) mtime_nsec: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev_major: u32,
    pub(crate) rdev_minor: u32,
    /// Index into [`FileList::extras`] of what only `-H` (device and inode)
    /// or `-c` (the file's checksum) need, or [`NO_EXTRA`]: kept apart so
    /// that ordinary pulls do not pay for them in every entry.
    extra: u32,
}

/// An entry without extras.
const NO_EXTRA: u32 = u32::MAX;

/// What some options add to an entry.
#[derive(Clone, Copy, Debug, Default)]
struct Extra {
    dev_ino: Option<(u64, u64)>,
    sum: Option<Digest>,
    /// The access time of a non-directory, with `--atimes`.
    atime: Option<i64>,
}

impl Entry {
    pub(crate) fn is_dir(&self) -> bool {
        self.mode & source::S_IFMT == source::S_IFDIR
    }
    pub(crate) fn is_file(&self) -> bool {
        self.mode & source::S_IFMT == source::S_IFREG
    }
    fn is_symlink(&self) -> bool {
        self.mode & source::S_IFMT == source::S_IFLNK
    }
    fn is_device(&self) -> bool {
        matches!(
            self.mode & source::S_IFMT,
            source::S_IFCHR | source::S_IFBLK
        )
    }
    fn is_special(&self) -> bool {
        matches!(
            self.mode & source::S_IFMT,
            source::S_IFIFO | source::S_IFSOCK
        )
    }
}

/// Which filters apply to a name (rsync: flist.c send_file_name, its filter levels).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FilterLevel {
    /// None: names the client gave on the command line.
    None,
    /// The module's rules only: directories implied by `--relative`.
    Daemon,
    /// The module's rules, then the client's.
    All,
}

fn filter_error(e: FilterError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Where errors and warnings met while building go, and a chance to send
/// keep-alives during a long walk.
pub(crate) trait Reporter {
    fn report(&mut self, tag: MsgTag, text: &str) -> io::Result<()>;
    fn tick(&mut self) -> io::Result<()>;
}

/// The list as built, then sorted.
pub(crate) struct FileList {
    entries: Vec<Entry>,
    extras: Vec<Extra>,
    arena: Vec<u8>,
    /// Transfer roots: directories (relative to the module, free of symlinks)
    /// that entry names are relative to.
    roots: Vec<Vec<u8>>,
    ids: IdNames,
    pub(crate) io_error: i32,
    protocol: u32,
    /// With `-R` and incremental recursion, the names that come in the
    /// lists of this list's implied directories.
    deferred: Vec<Deferred>,
}

impl FileList {
    fn empty(protocol: u32) -> FileList {
        FileList {
            entries: Vec::new(),
            extras: Vec::new(),
            arena: Vec::new(),
            roots: Vec::new(),
            ids: IdNames::default(),
            io_error: 0,
            protocol,
            deferred: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name as the client knows it (relative to its transfer root).
    pub(crate) fn name(&self, e: &Entry) -> &[u8] {
        &self.arena[e.name_at as usize..(e.name_at + e.name_len) as usize]
    }

    fn dirname(&self, e: &Entry) -> &[u8] {
        let name = self.name(e);
        if e.base_at == 0 {
            b""
        } else {
            &name[..e.base_at as usize - 1]
        }
    }

    fn basename(&self, e: &Entry) -> &[u8] {
        &self.name(e)[e.base_at as usize..]
    }

    fn extra(&self, e: &Entry) -> Extra {
        if e.extra == NO_EXTRA {
            Extra::default()
        } else {
            self.extras[e.extra as usize]
        }
    }

    fn link(&self, e: &Entry) -> &[u8] {
        &self.arena[e.link_at as usize..(e.link_at + e.link_len) as usize]
    }

    /// The entry's name in messages (see [`full_name`]).
    pub(crate) fn full_name(&self, e: &Entry, module: &str) -> String {
        full_name(&self.roots[e.root as usize], self.name(e), module)
    }

    /// The entry's path relative to the module root.
    pub(crate) fn module_path(&self, e: &Entry) -> Vec<u8> {
        let name = self.name(e);
        let name = if name == b"." { &b""[..] } else { name };
        source::join(&self.roots[e.root as usize], name)
    }

    /// Total size of regular files and symlinks (rsync's `stats.total_size`).
    pub(crate) fn total_size(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.is_file() || e.is_symlink())
            .map(|e| e.size)
            .sum()
    }

    /// Sorts into the order both sides index files by.
    pub(crate) fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by(|a, b| self.compare(a, b));
        self.entries = entries;
    }

    /// Sorts as [`FileList::sort`] does and returns the order the entries
    /// were built in, as positions in the sorted list: the list goes out
    /// in that order (rsync sends before it sorts), and a list shared
    /// between connections is held sorted once.
    pub(crate) fn sort_keeping_walk_order(&mut self) -> Box<[u32]> {
        let mut by_name: Vec<u32> = (0..self.entries.len() as u32).collect();
        by_name
            .sort_by(|&a, &b| self.compare(&self.entries[a as usize], &self.entries[b as usize]));
        let mut walk_order = vec![0u32; by_name.len()].into_boxed_slice();
        for (sorted_at, &built_at) in by_name.iter().enumerate() {
            walk_order[built_at as usize] = sorted_at as u32;
        }
        self.entries = by_name
            .iter()
            .map(|&i| self.entries[i as usize].clone())
            .collect();
        walk_order
    }

    /// Frees what the building left unused, before the list is shared.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.extras.shrink_to_fit();
        self.arena.shrink_to_fit();
    }

    /// The memory the list holds, in bytes.
    pub(crate) fn memory(&self) -> u64 {
        let roots: usize = self.roots.iter().map(|r| r.capacity() + 24).sum();
        (self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.extras.capacity() * std::mem::size_of::<Extra>()
            + self.arena.capacity()
            + roots) as u64
            + self.ids.memory()
    }

    fn compare(&self, a: &Entry, b: &Entry) -> Ordering {
        f_name_cmp(
            NameParts::of(self.dirname(a), self.basename(a), a.is_dir()),
            NameParts::of(self.dirname(b), self.basename(b), b.is_dir()),
            self.protocol,
        )
    }
}

/// A file's name in messages, as rsync's full_fname writes it: quoted,
/// relative to the module (with a leading `/` when the transfer root is a
/// subdirectory), then `(in MODULE)`.
pub(crate) fn full_name(root: &[u8], name: &[u8], module: &str) -> String {
    let shown = if root.is_empty() {
        String::from_utf8_lossy(name).into_owned()
    } else {
        format!(
            "/{}/{}",
            String::from_utf8_lossy(root),
            String::from_utf8_lossy(name)
        )
    };
    format!("\"{shown}\" (in {module})")
}

/// strerror-style text with the errno, as rsync prints it.
pub(crate) fn describe_os_error(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{text} ({code})")
        }
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::options::Options;

    /// A reporter that keeps what it is told, for the builders' tests.
    #[derive(Default)]
    pub(super) struct Messages(pub(super) Vec<String>);

    impl Reporter for Messages {
        fn report(&mut self, _tag: MsgTag, text: &str) -> io::Result<()> {
            self.0.push(text.to_string());
            Ok(())
        }
        fn tick(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sender's options for the client's `args`, sending `.`.
    pub(super) fn options(args: &[&str]) -> Options {
        let mut all = vec!["--server", "--sender"];
        all.extend_from_slice(args);
        all.push(".");
        let v: Vec<Vec<u8>> = all.iter().map(|a| a.as_bytes().to_vec()).collect();
        Options::parse(&v).unwrap()
    }

    #[test]
    fn entries_stay_small() {
        // A school server lists trees of ~50,000 entries for many laptops
        // at once; the options some pulls use live outside the entry.
        assert!(
            std::mem::size_of::<Entry>() <= 72,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
