//! The file list: which entries a pull covers (flist.c's send_file_list and
//! its helpers), the order both sides sort them in (`f_name_cmp`, which
//! changed at protocol 29), and their encoding on the wire (send_file_entry,
//! the uid/gid name lists, the I/O-error word).
//!
//! Entries are kept compactly: every name and symlink target lives in one
//! byte arena, so a list of 50,000 entries costs a few megabytes. The list is
//! built whole, then sorted, then sent in sorted order; the client sorts it
//! again with the same comparison, and file indices on the wire are positions
//! in that sorted order.

use super::filter::{DirToken, FilterError, Filters};
use super::io::MsgTag;
use super::options::{MissingArgs, Options};
use super::wire::WireWrite;
use crate::delta;
use crate::source::{self, Source, Stat};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io;

/// rsync refuses names this long (MAXPATHLEN).
pub const MAX_PATH_LEN: usize = 4096;
/// Entries one file list may hold; beyond it the pull is refused rather than
/// letting a huge tree exhaust a small server's memory.
pub const MAX_ENTRIES: usize = 4_000_000;

const XMIT_TOP_DIR: u16 = 1 << 0;
const XMIT_SAME_MODE: u16 = 1 << 1;
const XMIT_EXTENDED_FLAGS: u16 = 1 << 2;
const XMIT_SAME_RDEV_PRE28: u16 = 1 << 2;
const XMIT_SAME_UID: u16 = 1 << 3;
const XMIT_SAME_GID: u16 = 1 << 4;
const XMIT_SAME_NAME: u16 = 1 << 5;
const XMIT_LONG_NAME: u16 = 1 << 6;
const XMIT_SAME_TIME: u16 = 1 << 7;
const XMIT_SAME_RDEV_MAJOR: u16 = 1 << 8;
const XMIT_HLINKED: u16 = 1 << 9;
const XMIT_SAME_DEV_PRE30: u16 = 1 << 10;
const XMIT_RDEV_MINOR_8_PRE30: u16 = 1 << 11;

/// io_error bits (rsync.h IOERR_*), sent after the list at protocol < 30.
pub const IOERR_GENERAL: i32 = 1 << 0;
pub const IOERR_VANISHED: i32 = 1 << 1;

/// Entry flags of our own.
const FLAG_TOP_DIR: u8 = 1 << 0;
/// A directory whose contents are listed (not a mount point under `-x`).
const FLAG_CONTENT_DIR: u8 = 1 << 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum NameType {
    Normal,
    DotDir,
    SlashEnding,
}

/// One entry of the list.
#[derive(Clone, Debug)]
pub struct Entry {
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
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub uid: u32,
    pub gid: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
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
    sum: Option<[u8; 16]>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.mode & source::S_IFMT == source::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
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

/// Which filters apply to a name (flist.c's filter levels).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FilterLevel {
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
pub trait Reporter {
    fn report(&mut self, tag: MsgTag, text: &str) -> io::Result<()>;
    fn tick(&mut self) -> io::Result<()>;
}

/// The list as built, then sorted.
pub struct FileList {
    entries: Vec<Entry>,
    extras: Vec<Extra>,
    arena: Vec<u8>,
    /// Transfer roots: directories (relative to the module, free of symlinks)
    /// that entry names are relative to.
    roots: Vec<Vec<u8>>,
    ids: IdNames,
    pub io_error: i32,
    protocol: u32,
}

impl FileList {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index)
    }

    /// The name as the client knows it (relative to its transfer root).
    pub fn name(&self, e: &Entry) -> &[u8] {
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
    pub fn full_name(&self, e: &Entry, module: &str) -> String {
        full_name(&self.roots[e.root as usize], self.name(e), module)
    }

    /// The entry's path relative to the module root.
    pub fn module_path(&self, e: &Entry) -> Vec<u8> {
        let name = self.name(e);
        let name = if name == b"." { &b""[..] } else { name };
        source::join(&self.roots[e.root as usize], name)
    }

    /// Total size of regular files and symlinks (rsync's `stats.total_size`).
    pub fn total_size(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.is_file() || e.is_symlink())
            .map(|e| e.size)
            .sum()
    }

    /// Sorts into the order both sides index files by.
    pub fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by(|a, b| self.compare(a, b));
        self.entries = entries;
    }

    fn compare(&self, a: &Entry, b: &Entry) -> Ordering {
        f_name_cmp(
            NameParts::of(self.dirname(a), self.basename(a), a.is_dir()),
            NameParts::of(self.dirname(b), self.basename(b), b.is_dir()),
            self.protocol,
        )
    }
}

/// The pieces `f_name_cmp` compares: an entry's directory, basename and
/// whether it is a directory.
#[derive(Clone, Copy)]
pub struct NameParts<'a> {
    dir: &'a [u8],
    base: &'a [u8],
    is_dir: bool,
}

impl<'a> NameParts<'a> {
    pub fn of(dir: &'a [u8], base: &'a [u8], is_dir: bool) -> NameParts<'a> {
        NameParts { dir, base, is_dir }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CmpType {
    Item,
    Path,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CmpState {
    Dir,
    Slash,
    Base,
    Trailing,
}

/// One side of the comparison walk in [`f_name_cmp`].
struct Cursor<'a> {
    parts: NameParts<'a>,
    text: &'a [u8],
    pos: usize,
    state: CmpState,
    kind: CmpType,
    path_type: CmpType,
}

impl<'a> Cursor<'a> {
    fn new(parts: NameParts<'a>, path_type: CmpType) -> Cursor<'a> {
        let mut c = Cursor {
            parts,
            text: b"",
            pos: 0,
            state: CmpState::Dir,
            kind: path_type,
            path_type,
        };
        if parts.dir.is_empty() {
            c.enter_base();
        } else {
            c.text = parts.dir;
        }
        c
    }

    /// Moves to the basename; a directory named "." sorts before its contents.
    fn enter_base(&mut self) {
        self.kind = if self.parts.is_dir {
            self.path_type
        } else {
            CmpType::Item
        };
        self.pos = 0;
        if self.kind == CmpType::Path && self.parts.base == b"." {
            self.kind = CmpType::Item;
            self.state = CmpState::Trailing;
            self.text = b"";
        } else {
            self.state = CmpState::Base;
            self.text = self.parts.base;
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn byte(&self) -> u8 {
        self.text[self.pos]
    }

    /// Advances past the end of the current piece. Returns true when the
    /// cursor has run out for good (the name is a prefix of the other).
    fn next_piece(&mut self) -> bool {
        match self.state {
            CmpState::Dir => {
                self.state = CmpState::Slash;
                self.text = b"/";
                self.pos = 0;
            }
            CmpState::Slash => self.enter_base(),
            CmpState::Base if self.kind == CmpType::Path => {
                self.state = CmpState::Trailing;
                self.text = b"/";
                self.pos = 0;
            }
            CmpState::Base | CmpState::Trailing => {
                self.state = CmpState::Trailing;
                self.kind = CmpType::Item;
                return true;
            }
        }
        false
    }
}

fn type_order(a: CmpType) -> Ordering {
    if a == CmpType::Path {
        Ordering::Greater
    } else {
        Ordering::Less
    }
}

/// rsync's `f_name_cmp`: compares two names as if joined into paths. From
/// protocol 29 on, a directory compares as if it had a trailing slash, sorts
/// after every non-directory at the same depth, and "." sorts first.
pub fn f_name_cmp(a: NameParts, b: NameParts, protocol: u32) -> Ordering {
    let path_type = if protocol >= 29 {
        CmpType::Path
    } else {
        CmpType::Item
    };
    let mut c1 = Cursor::new(a, path_type);
    let mut c2 = Cursor::new(b, path_type);
    if c1.kind != c2.kind {
        return type_order(c1.kind);
    }
    loop {
        if c1.at_end() {
            c1.next_piece();
            if !c2.at_end() && c1.kind != c2.kind {
                return type_order(c1.kind);
            }
        }
        if c2.at_end() {
            let done = c2.next_piece();
            if done && c1.at_end() {
                return Ordering::Equal;
            }
            if c1.kind != c2.kind {
                return type_order(c1.kind);
            }
        }
        let x = if c1.at_end() { 0 } else { c1.byte() };
        let y = if c2.at_end() { 0 } else { c2.byte() };
        if x != y {
            return x.cmp(&y);
        }
        c1.pos += 1;
        c2.pos += 1;
    }
}

/// Builds the file list for one pull.
pub struct Builder<'a> {
    opts: &'a Options,
    protocol: u32,
    source: &'a Source,
    filters: &'a mut Filters,
    reporter: &'a mut dyn Reporter,
    module: &'a str,
    list: FileList,
    /// With -x: the device of the current top-level argument.
    filesystem_dev: u64,
    follow_links: bool,
    /// With -R: the implied directories already sent for the previous argument.
    last_implied: Vec<u8>,
    /// With -R, a leading `./` in an argument lists the transfer root "."
    /// itself, once.
    sent_implied_dot: bool,
    /// With -R, the implied directories entered for filtering, outermost
    /// first; they stay entered while following arguments share them.
    implied_scopes: Vec<(Vec<u8>, DirToken)>,
}

impl<'a> Builder<'a> {
    pub fn new(
        opts: &'a Options,
        protocol: u32,
        source: &'a Source,
        filters: &'a mut Filters,
        reporter: &'a mut dyn Reporter,
        module: &'a str,
    ) -> Builder<'a> {
        Builder {
            opts,
            protocol,
            source,
            filters,
            reporter,
            module,
            list: FileList {
                entries: Vec::new(),
                extras: Vec::new(),
                arena: Vec::new(),
                roots: Vec::new(),
                ids: IdNames::default(),
                io_error: 0,
                protocol,
            },
            filesystem_dev: 0,
            follow_links: opts.copy_links || opts.copy_dirlinks || opts.copy_unsafe_links,
            last_implied: Vec::new(),
            sent_implied_dot: false,
            implied_scopes: Vec::new(),
        }
    }

    fn xfer_dirs(&self) -> bool {
        self.opts.recurse || self.opts.dirs
    }

    /// `"path" (in module)`, as rsync's full_fname names files in messages.
    fn full_name(&self, root: u32, name: &[u8]) -> String {
        full_name(&self.list.roots[root as usize], name, self.module)
    }

    fn error(&mut self, bits: i32, tag: MsgTag, text: String) -> io::Result<()> {
        self.list.io_error |= bits;
        self.reporter.report(tag, &text)
    }

    fn os_error(&mut self, what: &str, root: u32, name: &[u8], err: &io::Error) -> io::Result<()> {
        let text = format!(
            "rsync: [sender] {what} {} failed: {}\n",
            self.full_name(root, name),
            describe_os_error(err)
        );
        self.error(IOERR_GENERAL, MsgTag::Error, text)
    }

    /// Adds every argument (already sanitised paths, relative to `base`,
    /// itself relative to the module root) and everything below it, in the
    /// order rsync walks them. The list is sent in that order, then sorted
    /// with [`FileList::sort`]. `base` is empty for command-line sources and
    /// the source directory for `--files-from` names.
    pub fn build(mut self, base: &[u8], paths: &[Vec<u8>]) -> io::Result<FileList> {
        for path in paths {
            self.add_argument(base, path)?;
        }
        self.leave_implied_dirs(b"");
        Ok(self.list)
    }

    fn excluded(&self, name: &[u8], is_dir: bool, level: FilterLevel) -> bool {
        match level {
            FilterLevel::None => false,
            FilterLevel::Daemon => self.filters.is_daemon_excluded(name, is_dir),
            FilterLevel::All => self.filters.is_excluded(name, is_dir),
        }
    }

    /// Leaves the implied directories that `dirs` does not lie under.
    fn leave_implied_dirs(&mut self, dirs: &[u8]) {
        while let Some((name, _)) = self.implied_scopes.last() {
            let inside =
                dirs.starts_with(name) && (dirs.len() == name.len() || dirs[name.len()] == b'/');
            if inside && !dirs.is_empty() {
                break;
            }
            if let Some((_, token)) = self.implied_scopes.pop() {
                self.filters.pop_dir(token);
            }
        }
    }

    fn add_root(&mut self, dir: &[u8]) -> u32 {
        if let Some(i) = self.list.roots.iter().position(|r| r == dir) {
            return i as u32;
        }
        self.list.roots.push(dir.to_vec());
        (self.list.roots.len() - 1) as u32
    }

    fn add_argument(&mut self, base: &[u8], arg: &[u8]) -> io::Result<()> {
        let (dir, name, name_type, dot_prefix) = if self.opts.relative {
            match split_relative(arg) {
                Ok(parts) => parts,
                Err(text) => return self.error(IOERR_GENERAL, MsgTag::Error, text),
            }
        } else {
            let (d, n, t) = split_plain(arg);
            (d, n, t, false)
        };
        let dir = source::join(base, &dir);
        // The directory the names are relative to must itself stay inside
        // the module; following links on the way there is fine.
        let real_dir = match self.source.resolve(&dir, true) {
            Ok(d) => d,
            Err(err) => {
                let root = self.add_root(&dir);
                return self.os_error("change_dir", root, b"", &err);
            }
        };
        let root = self.add_root(&real_dir);
        self.filters.set_transfer_root(&dir);
        if dot_prefix && !self.sent_implied_dot {
            self.sent_implied_dot = true;
            self.send_file_name(root, b".", None, 0, FilterLevel::None)?;
        }
        if name_type != NameType::DotDir && self.daemon_hides(root, &name) {
            let err = io::Error::from(io::ErrorKind::NotFound);
            return self.os_error("link_stat", root, &name, &err);
        }
        let follow = self.opts.copy_dirlinks || name_type != NameType::Normal;
        let st = match self.stat_arg(root, &name, follow) {
            Ok(st) => st,
            Err(err) => {
                let missing = err.kind() == io::ErrorKind::NotFound;
                if missing && self.opts.missing_args == MissingArgs::Ignore {
                    return Ok(());
                }
                return self.os_error("link_stat", root, &name, &err);
            }
        };
        if name_type != NameType::DotDir && self.filters.is_excluded(&name, st.is_dir()) {
            return Ok(());
        }
        if st.is_dir() && !self.xfer_dirs() {
            let text = format!("skipping directory {}\n", String::from_utf8_lossy(&name));
            return self.reporter.report(MsgTag::Info, &text);
        }
        if self.opts.relative && self.opts.implied_dirs {
            if let Some(slash) = name.iter().rposition(|&b| b == b'/') {
                if slash > 0 {
                    self.send_implied_dirs(root, &name[..slash])?;
                }
            }
        }
        self.filesystem_dev = st.dev;
        if self.opts.recurse || (self.xfer_dirs() && name_type != NameType::Normal) {
            let flags = FLAG_TOP_DIR | FLAG_CONTENT_DIR;
            if let Some(idx) =
                self.send_file_name(root, &name, Some(st), flags, FilterLevel::None)?
            {
                self.send_if_directory(idx)?;
            }
        } else {
            self.send_file_name(root, &name, Some(st), 0, FilterLevel::None)?;
        }
        Ok(())
    }

    /// Whether the module's rules hide a command-line name or, with `-R`,
    /// one of the directories leading to it: such names do not exist for
    /// the client.
    fn daemon_hides(&self, root: u32, name: &[u8]) -> bool {
        if self.opts.relative {
            let leading = name
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'/')
                .any(|(i, _)| self.filters.is_daemon_excluded(&name[..i], true));
            if leading {
                return true;
            }
        }
        let is_dir = matches!(
            self.source.lstat(&self.list_path(root, name)),
            Ok(st) if st.is_dir()
        );
        self.filters.is_daemon_excluded(name, is_dir)
    }

    /// rsync's link_stat for a command-line name: follows intermediate links
    /// inside the module, and the final one too when asked.
    fn stat_arg(&self, root: u32, name: &[u8], follow_dirlinks: bool) -> io::Result<Stat> {
        let path = self.list_path(root, name);
        if self.opts.copy_links {
            return self.source.stat_confined(&path).map(|(_, st)| st);
        }
        let real = self.source.resolve(&path, false)?;
        let st = self.source.lstat(&real)?;
        if follow_dirlinks && st.is_symlink() {
            if let Ok((_, target)) = self.source.stat_confined(&real) {
                if target.is_dir() {
                    return Ok(target);
                }
            }
        }
        Ok(st)
    }

    fn list_path(&self, root: u32, name: &[u8]) -> Vec<u8> {
        let name = if name == b"." { &b""[..] } else { name };
        source::join(&self.list.roots[root as usize], name)
    }

    /// With `--relative`, the directories leading to an argument are sent
    /// too (once per run of arguments sharing them), unfiltered, following
    /// links, so the client can create them with the right attributes.
    fn send_implied_dirs(&mut self, root: u32, dirs: &[u8]) -> io::Result<()> {
        self.leave_implied_dirs(dirs);
        let common = common_dir_prefix(&self.last_implied, dirs);
        let mut end = common;
        while end < dirs.len() {
            end = dirs[end + 1..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(dirs.len(), |p| end + 1 + p);
            let name = &dirs[..end];
            let st = match self.source.stat_confined(&self.list_path(root, name)) {
                Ok((_, st)) => st,
                Err(_) => break,
            };
            if !st.is_dir() {
                break;
            }
            self.send_file_name(root, name, Some(st), 0, FilterLevel::Daemon)?;
            let entered = self.implied_scopes.iter().any(|(n, _)| n == name);
            if !entered {
                let token = self.filters.push_dir(name).map_err(filter_error)?;
                self.implied_scopes.push((name.to_vec(), token));
            }
        }
        self.last_implied = dirs.to_vec();
        Ok(())
    }

    /// rsync's readlink_stat: the attributes to list for a name met while
    /// walking, with the link options applied, links followed only inside
    /// the module.
    fn readlink_stat(&self, root: u32, name: &[u8]) -> io::Result<(Stat, Vec<u8>)> {
        let path = self.list_path(root, name);
        if self.opts.copy_links {
            return self
                .source
                .stat_confined(&path)
                .map(|(_, st)| (st, Vec::new()));
        }
        let st = self.source.lstat(&path)?;
        if !st.is_symlink() {
            return Ok((st, Vec::new()));
        }
        let target = self.source.read_link(&path)?;
        if self.opts.copy_dirlinks {
            if let Ok((_, t)) = self.source.stat_confined(&path) {
                if t.is_dir() {
                    return Ok((t, Vec::new()));
                }
            }
        }
        if self.opts.copy_unsafe_links && unsafe_symlink(&target, name) {
            return self
                .source
                .stat_confined(&path)
                .map(|(_, st)| (st, Vec::new()));
        }
        Ok((st, target))
    }

    /// rsync's send_file_name/make_file: lists one name, applying filters
    /// (unless told not to) and the options that drop entries. Returns the
    /// index of the new entry.
    fn send_file_name(
        &mut self,
        root: u32,
        name: &[u8],
        known: Option<Stat>,
        mut flags: u8,
        level: FilterLevel,
    ) -> io::Result<Option<usize>> {
        self.reporter.tick()?;
        if name.len() >= MAX_PATH_LEN {
            let text = format!(
                "skipping overly long name: {}\n",
                String::from_utf8_lossy(name)
            );
            self.error(IOERR_GENERAL, MsgTag::Error, text)?;
            return Ok(None);
        }
        let (st, link) = match known {
            Some(st) if st.is_dir() => (st, Vec::new()),
            _ => match self.readlink_stat(root, name) {
                Ok(found) => found,
                Err(err) => {
                    if self.excluded(name, false, level) || self.excluded(name, true, level) {
                        return Ok(None);
                    }
                    self.stat_failed(root, name, &err)?;
                    return Ok(None);
                }
            },
        };
        if level != FilterLevel::None {
            if st.is_dir() {
                if !self.xfer_dirs() {
                    let text = format!("skipping directory {}\n", String::from_utf8_lossy(name));
                    self.reporter.report(MsgTag::Info, &text)?;
                    return Ok(None);
                }
                if self.opts.one_file_system > 0
                    && st.dev != self.filesystem_dev
                    && flags & FLAG_CONTENT_DIR != 0
                {
                    if self.opts.one_file_system > 1 {
                        return Ok(None);
                    }
                    flags &= !FLAG_CONTENT_DIR;
                }
            } else {
                flags &= !FLAG_CONTENT_DIR;
            }
            if self.excluded(name, st.is_dir(), level) {
                return Ok(None);
            }
        }
        if st.is_symlink() && self.opts.links && link.is_empty() {
            let text = format!(
                "skipping symlink with 0-length value: {}\n",
                self.full_name(root, name)
            );
            self.error(IOERR_GENERAL, MsgTag::Error, text)?;
            return Ok(None);
        }
        if self.list.entries.len() >= MAX_ENTRIES {
            return Err(io::Error::other(format!(
                "the file list has more than {MAX_ENTRIES} entries"
            )));
        }
        let sum = if self.opts.checksum && st.is_file() {
            Some(self.checksum(root, name)?)
        } else {
            None
        };
        let hard_link_candidate = if self.protocol >= 28 {
            !st.is_dir() && st.nlink > 1
        } else {
            st.is_file()
        };
        let extra = Extra {
            dev_ino: (self.opts.hard_links && hard_link_candidate).then_some((st.dev, st.ino)),
            sum,
        };
        let entry = self.make_entry(root, name, &link, &st, flags, extra);
        self.list.entries.push(entry);
        Ok(Some(self.list.entries.len() - 1))
    }

    fn stat_failed(&mut self, root: u32, name: &[u8], err: &io::Error) -> io::Result<()> {
        if err.kind() == io::ErrorKind::NotFound {
            let path = self.list_path(root, name);
            let dangling =
                self.follow_links && matches!(self.source.lstat(&path), Ok(st) if st.is_symlink());
            if dangling {
                let text = format!(
                    "rsync: [sender] symlink has no referent: {}\n",
                    self.full_name(root, name)
                );
                return self.error(IOERR_GENERAL, MsgTag::Error, text);
            }
            let tag = if self.protocol < 28 {
                MsgTag::Error
            } else {
                MsgTag::Info
            };
            let text = format!("file has vanished: {}\n", self.full_name(root, name));
            return self.error(IOERR_VANISHED, tag, text);
        }
        if err.kind() == io::ErrorKind::PermissionDenied && self.follow_links {
            let text = format!(
                "rsync: [sender] symlink leads outside the module: {}\n",
                self.full_name(root, name)
            );
            return self.error(IOERR_GENERAL, MsgTag::Error, text);
        }
        self.os_error("readlink_stat", root, name, err)
    }

    fn checksum(&mut self, root: u32, name: &[u8]) -> io::Result<[u8; 16]> {
        let path = self.list_path(root, name);
        let opened = if self.follow_links {
            self.source
                .resolve(&path, true)
                .and_then(|real| self.source.open(&real))
        } else {
            self.source.open(&path)
        };
        // rsync sends a zero sum for a file it cannot read.
        Ok(opened.and_then(delta::file_checksum).unwrap_or([0u8; 16]))
    }

    fn make_entry(
        &mut self,
        root: u32,
        name: &[u8],
        link: &[u8],
        st: &Stat,
        flags: u8,
        extra: Extra,
    ) -> Entry {
        let extra = if extra.dev_ino.is_none() && extra.sum.is_none() {
            NO_EXTRA
        } else {
            self.list.extras.push(extra);
            (self.list.extras.len() - 1) as u32
        };
        let arena = &mut self.list.arena;
        let name_at = arena.len() as u32;
        arena.extend_from_slice(name);
        let link_at = arena.len() as u32;
        arena.extend_from_slice(link);
        let base_at = name.iter().rposition(|&b| b == b'/').map_or(0, |p| p + 1) as u32;
        if let Some(user) = &st.user {
            self.list.ids.note_user(st.uid, user);
        }
        if let Some(group) = &st.group {
            self.list.ids.note_group(st.gid, group);
        }
        Entry {
            name_at,
            name_len: name.len() as u32,
            base_at,
            link_at,
            link_len: link.len() as u32,
            root,
            flags,
            mode: st.mode,
            size: st.size,
            mtime: st.mtime,
            uid: st.uid,
            gid: st.gid,
            rdev_major: st.rdev_major,
            rdev_minor: st.rdev_minor,
            extra,
        }
    }

    /// rsync's send_if_directory + send_directory: lists a directory's
    /// contents, then recurses into its subdirectories when `-r`.
    fn send_if_directory(&mut self, idx: usize) -> io::Result<()> {
        let e = &self.list.entries[idx];
        if !e.is_dir() || e.flags & FLAG_CONTENT_DIR == 0 {
            return Ok(());
        }
        let root = e.root;
        let dir_name = self.list.name(e).to_vec();
        let dir_path = self.list_path(root, &dir_name);
        let real_dir = if self.follow_links {
            match self.source.resolve(&dir_path, true) {
                Ok(r) => r,
                Err(err) => return self.os_error("opendir", root, &dir_name, &err),
            }
        } else {
            dir_path
        };
        let filter_name: &[u8] = if dir_name == b"." { b"" } else { &dir_name };
        let scope = self.filters.push_dir(filter_name).map_err(filter_error)?;
        let result = self.send_directory(root, &dir_name, &real_dir);
        self.filters.pop_dir(scope);
        result
    }

    fn send_directory(&mut self, root: u32, dir_name: &[u8], real_dir: &[u8]) -> io::Result<()> {
        // Directory order, as rsync reads it: the wire order does not change
        // the result (both sides sort), but it keeps the list's encoded size
        // the same as rsyncd's.
        let names = match self.source.read_dir(real_dir) {
            Ok(n) => n,
            Err(err) => return self.os_error("opendir", root, dir_name, &err),
        };
        let start = self.list.entries.len();
        for n in names {
            if n.is_empty() {
                continue;
            }
            let child = if dir_name == b"." {
                n
            } else {
                source::join(dir_name, &n)
            };
            self.send_file_name(root, &child, None, FLAG_CONTENT_DIR, FilterLevel::All)?;
        }
        if self.opts.recurse {
            let end = self.list.entries.len();
            for i in start..end {
                self.send_if_directory(i)?;
            }
        }
        Ok(())
    }
}

/// A file's name in messages, as rsync's full_fname writes it: quoted,
/// relative to the module (with a leading `/` when the transfer root is a
/// subdirectory), then `(in MODULE)`.
pub fn full_name(root: &[u8], name: &[u8], module: &str) -> String {
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

/// How many leading bytes of `dirs` (up to a component boundary) were
/// already sent as implied directories for the previous argument.
fn common_dir_prefix(last: &[u8], dirs: &[u8]) -> usize {
    let mut common = 0;
    let mut i = 0;
    while i < last.len() && i < dirs.len() && last[i] == dirs[i] {
        i += 1;
        let at_boundary = |p: &[u8]| i == p.len() || p[i] == b'/';
        if at_boundary(dirs) && at_boundary(last) {
            common = i;
        }
    }
    common
}

/// Splits a plain (non-`-R`) argument into the directory its names are
/// relative to and the name to list (send_file_list's first half).
fn split_plain(arg: &[u8]) -> (Vec<u8>, Vec<u8>, NameType) {
    let mut path = arg.to_vec();
    let name_type;
    if path.is_empty() || path.ends_with(b"/") {
        if path == b"./" {
            path.truncate(1);
        } else {
            path.push(b'.');
        }
        name_type = NameType::DotDir;
    } else if path == b".." || path.ends_with(b"/..") {
        path.extend_from_slice(b"/.");
        name_type = NameType::DotDir;
    } else if path == b"." || path.ends_with(b"/.") {
        name_type = NameType::DotDir;
    } else {
        name_type = NameType::Normal;
    }
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => (
            path[..slash].to_vec(),
            path[slash + 1..].to_vec(),
            name_type,
        ),
        None => (Vec::new(), path, name_type),
    }
}

/// Splits a `-R` argument at a `/./` marker: what precedes it is only the
/// place to start from; what follows is the name the client recreates.
/// The last value says whether the name began with `./` (which lists the
/// transfer root itself).
fn split_relative(arg: &[u8]) -> Result<(Vec<u8>, Vec<u8>, NameType, bool), String> {
    let (dir, mut rest) = match find(arg, b"/./") {
        Some(at) => (arg[..at].to_vec(), &arg[at + 3..]),
        None => (Vec::new(), arg),
    };
    while rest.first() == Some(&b'/') {
        rest = &rest[1..];
    }
    let dot_prefix = rest.starts_with(b"./") && rest.len() > 2;
    let mut name = clean_name(rest);
    let mut name_type = NameType::Normal;
    if name == b"." {
        name_type = NameType::DotDir;
    } else if name.ends_with(b"/") {
        name.pop();
        name_type = if name == b"." {
            NameType::DotDir
        } else {
            NameType::SlashEnding
        };
    }
    if name.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(format!(
            "found \"..\" dir in relative path: {}\n",
            String::from_utf8_lossy(&name)
        ));
    }
    if name.is_empty() {
        name = b".".to_vec();
        name_type = NameType::DotDir;
    }
    Ok((dir, name, name_type, dot_prefix))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// clean_fname with KEEP_TRAILING_SLASH and DROP_TRAILING_DOT_DIR: collapses
/// repeated slashes and interior "." components.
fn clean_name(name: &[u8]) -> Vec<u8> {
    let trailing_slash = name.ends_with(b"/") || name.ends_with(b"/.");
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let mut out = parts.join(&b'/');
    if out.is_empty() {
        return b".".to_vec();
    }
    if trailing_slash {
        out.push(b'/');
    }
    out
}

/// rsync's unsafe_symlink: does `target`, found at `link_path` (relative to
/// the transfer root), point outside the transfer?
pub fn unsafe_symlink(target: &[u8], link_path: &[u8]) -> bool {
    if target.is_empty() || target[0] == b'/' {
        return true;
    }
    let mut rest = target;
    while rest.starts_with(b"../") {
        rest = &rest[3..];
        while rest.first() == Some(&b'/') {
            rest = &rest[1..];
        }
    }
    if find(rest, b"/../").is_some() || (target.len() > 3 && target.ends_with(b"/..")) {
        return true;
    }
    let mut depth: i64 = 0;
    let link_comps: Vec<&[u8]> = link_path.split(|&b| b == b'/').collect();
    for comp in &link_comps[..link_comps.len() - 1] {
        match *comp {
            b"" | b"." => {}
            b".." => depth = 0,
            _ => depth += 1,
        }
    }
    if link_comps.last() == Some(&&b".."[..]) {
        depth = 0;
    }
    let target_comps: Vec<&[u8]> = target.split(|&b| b == b'/').collect();
    for comp in &target_comps[..target_comps.len() - 1] {
        match *comp {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    if target_comps.last() == Some(&&b".."[..]) {
        depth -= 1;
    }
    depth < 0
}

/// strerror-style text with the errno, as rsync prints it.
pub fn describe_os_error(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{text} ({code})")
        }
        None => err.to_string(),
    }
}

/// Writes the list in rsync's flist encoding for protocols 27–29, the
/// end marker, the uid/gid name lists and the I/O-error word.
pub struct Encoder<'a> {
    opts: &'a Options,
    protocol: u32,
    last_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    rdev: u64,
    rdev_major: u32,
    dev: u64,
    first: bool,
}

impl<'a> Encoder<'a> {
    pub fn new(opts: &'a Options, protocol: u32) -> Encoder<'a> {
        Encoder {
            opts,
            protocol,
            last_name: Vec::new(),
            mode: 0,
            mtime: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            rdev_major: 0,
            dev: 0,
            first: true,
        }
    }

    pub fn send_list(&mut self, out: &mut impl WireWrite, list: &FileList) -> io::Result<()> {
        let names = &list.ids;
        let mut buf = Vec::with_capacity(64 * 1024);
        for e in &list.entries {
            self.encode(&mut buf, list, e)?;
            if buf.len() >= 32 * 1024 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        buf.write_u8(0)?;
        if !self.opts.numeric_ids {
            if self.opts.owner {
                write_id_list(&mut buf, list.entries.iter().map(|e| e.uid), |id| {
                    names.user(id)
                })?;
            }
            if self.opts.group {
                write_id_list(&mut buf, list.entries.iter().map(|e| e.gid), |id| {
                    names.group(id)
                })?;
            }
        }
        buf.write_i32(if self.opts.ignore_errors {
            0
        } else {
            list.io_error
        })?;
        out.write_all(&buf)
    }

    fn encode(&mut self, out: &mut Vec<u8>, list: &FileList, e: &Entry) -> io::Result<()> {
        let proto = self.protocol;
        let mut xflags: u16 = if e.is_dir() && e.flags & FLAG_TOP_DIR != 0 {
            XMIT_TOP_DIR
        } else {
            0
        };
        if e.mode == self.mode {
            xflags |= XMIT_SAME_MODE;
        } else {
            self.mode = e.mode;
        }
        let rdev = libc::makedev(e.rdev_major, e.rdev_minor) as u64;
        if self.opts.devices && e.is_device() {
            if proto < 28 {
                if rdev == self.rdev {
                    xflags |= XMIT_SAME_RDEV_PRE28;
                } else {
                    self.rdev = rdev;
                }
            } else {
                if e.rdev_major == self.rdev_major {
                    xflags |= XMIT_SAME_RDEV_MAJOR;
                } else {
                    self.rdev_major = e.rdev_major;
                }
                if e.rdev_minor <= 0xff {
                    xflags |= XMIT_RDEV_MINOR_8_PRE30;
                }
            }
        } else if self.opts.specials && e.is_special() {
            if proto < 28 {
                xflags |= XMIT_SAME_RDEV_PRE28;
            } else {
                xflags |= XMIT_SAME_RDEV_MAJOR | XMIT_RDEV_MINOR_8_PRE30;
            }
        } else if proto < 28 {
            self.rdev = 0;
        }
        if !self.opts.owner || (e.uid == self.uid && !self.first) {
            xflags |= XMIT_SAME_UID;
        } else {
            self.uid = e.uid;
        }
        if !self.opts.group || (e.gid == self.gid && !self.first) {
            xflags |= XMIT_SAME_GID;
        } else {
            self.gid = e.gid;
        }
        if e.mtime == self.mtime {
            xflags |= XMIT_SAME_TIME;
        } else {
            self.mtime = e.mtime;
        }
        let extra = list.extra(e);
        if let Some((dev, _)) = extra.dev_ino {
            if dev == self.dev {
                if proto >= 28 {
                    xflags |= XMIT_SAME_DEV_PRE30;
                }
            } else {
                self.dev = dev;
            }
            xflags |= XMIT_HLINKED;
        }
        let name = list.name(e);
        let same = name
            .iter()
            .zip(&self.last_name)
            .take(255)
            .take_while(|(a, b)| a == b)
            .count();
        let rest = &name[same..];
        if same > 0 {
            xflags |= XMIT_SAME_NAME;
        }
        if rest.len() > 255 {
            xflags |= XMIT_LONG_NAME;
        }
        if proto >= 28 {
            if xflags == 0 && !e.is_dir() {
                xflags |= XMIT_TOP_DIR;
            }
            if xflags & 0xff00 != 0 || xflags == 0 {
                xflags |= XMIT_EXTENDED_FLAGS;
                out.write_u16(xflags)?;
            } else {
                out.write_u8(xflags as u8)?;
            }
        } else {
            if xflags & 0xff == 0 {
                xflags |= if e.is_dir() {
                    XMIT_LONG_NAME
                } else {
                    XMIT_TOP_DIR
                };
            }
            out.write_u8(xflags as u8)?;
        }
        if xflags & XMIT_SAME_NAME != 0 {
            out.write_u8(same as u8)?;
        }
        if xflags & XMIT_LONG_NAME != 0 {
            out.write_i32(rest.len() as i32)?;
        } else {
            out.write_u8(rest.len() as u8)?;
        }
        out.write_all(rest)?;
        out.write_longint(e.size as i64)?;
        if xflags & XMIT_SAME_TIME == 0 {
            out.write_i32(e.mtime as i32)?;
        }
        if xflags & XMIT_SAME_MODE == 0 {
            out.write_i32(e.mode as i32)?;
        }
        if self.opts.owner && xflags & XMIT_SAME_UID == 0 {
            out.write_i32(e.uid as i32)?;
        }
        if self.opts.group && xflags & XMIT_SAME_GID == 0 {
            out.write_i32(e.gid as i32)?;
        }
        if (self.opts.devices && e.is_device()) || (self.opts.specials && e.is_special()) {
            let rdev = if e.is_device() { rdev } else { 0 };
            if proto < 28 {
                if xflags & XMIT_SAME_RDEV_PRE28 == 0 {
                    out.write_i32(rdev as i32)?;
                }
            } else {
                let minor = if e.is_device() { e.rdev_minor } else { 0 };
                if xflags & XMIT_SAME_RDEV_MAJOR == 0 {
                    out.write_i32(e.rdev_major as i32)?;
                }
                if xflags & XMIT_RDEV_MINOR_8_PRE30 != 0 {
                    out.write_u8(minor as u8)?;
                } else {
                    out.write_i32(minor as i32)?;
                }
            }
        }
        if self.opts.links && e.is_symlink() {
            let link = list.link(e);
            out.write_i32(link.len() as i32)?;
            out.write_all(link)?;
        }
        if let Some((dev, ino)) = extra.dev_ino {
            if xflags & XMIT_SAME_DEV_PRE30 == 0 {
                out.write_longint(dev.wrapping_add(1) as i64)?;
            }
            out.write_longint(ino as i64)?;
        }
        if self.opts.checksum && (e.is_file() || proto < 28) {
            out.write_all(&extra.sum.unwrap_or([0u8; 16]))?;
        }
        self.last_name.clear();
        self.last_name.extend_from_slice(name);
        self.first = false;
        Ok(())
    }
}

/// Owner and group names for the id lists: names from a build's metadata
/// table first, then the system's user and group databases.
#[derive(Default)]
struct IdNames {
    users: HashMap<u32, Option<Box<[u8]>>>,
    groups: HashMap<u32, Option<Box<[u8]>>>,
}

impl IdNames {
    fn note_user(&mut self, id: u32, name: &[u8]) {
        self.users.entry(id).or_insert_with(|| Some(name.into()));
    }

    fn note_group(&mut self, id: u32, name: &[u8]) {
        self.groups.entry(id).or_insert_with(|| Some(name.into()));
    }

    fn user(&self, id: u32) -> Option<Vec<u8>> {
        match self.users.get(&id) {
            Some(name) => name.as_ref().map(|n| n.to_vec()),
            None => system_name(id, true),
        }
    }

    fn group(&self, id: u32) -> Option<Vec<u8>> {
        match self.groups.get(&id) {
            Some(name) => name.as_ref().map(|n| n.to_vec()),
            None => system_name(id, false),
        }
    }
}

/// Looks an id up in the passwd or group database (getpwuid_r/getgrgid_r).
fn system_name(id: u32, user: bool) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: the _r functions write only into the structs and buffer we pass;
    // the returned name pointer points into `buf`, which outlives its use.
    unsafe {
        let name_ptr = if user {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(id, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result);
            if rc != 0 || result.is_null() {
                return None;
            }
            pw.pw_name
        } else {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(id, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut result);
            if rc != 0 || result.is_null() {
                return None;
            }
            gr.gr_name
        };
        if name_ptr.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(name_ptr).to_bytes().to_vec())
    }
}

/// uidlist.c send_one_list at protocol < 30: each id other than 0 that has a
/// name, as int32 id, byte length, name; then a 0 id.
fn write_id_list(
    out: &mut Vec<u8>,
    ids: impl Iterator<Item = u32>,
    name_of: impl Fn(u32) -> Option<Vec<u8>>,
) -> io::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id == 0 || !seen.insert(id) {
            continue;
        }
        if let Some(name) = name_of(id) {
            let len = name.len().min(255);
            out.write_i32(id as i32)?;
            out.write_u8(len as u8)?;
            out.write_all(&name[..len])?;
        }
    }
    out.write_i32(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (&[u8], &[u8]) {
        match s.rfind('/') {
            Some(p) => (&s.as_bytes()[..p], &s.as_bytes()[p + 1..]),
            None => (b"", s.as_bytes()),
        }
    }

    fn sorted(names: &[(&str, bool)], protocol: u32) -> Vec<String> {
        let mut v: Vec<(&str, bool)> = names.to_vec();
        v.sort_by(|a, b| {
            let (da, ba) = split(a.0);
            let (db, bb) = split(b.0);
            f_name_cmp(
                NameParts::of(da, ba, a.1),
                NameParts::of(db, bb, b.1),
                protocol,
            )
        });
        v.iter().map(|(n, _)| n.to_string()).collect()
    }

    const TREE: &[(&str, bool)] = &[
        ("b", false),
        ("a", true),
        ("a/x", false),
        (".", true),
        ("a.txt", false),
        ("a/sub", true),
        ("a/sub/z", false),
        ("a/y", false),
        ("c", true),
    ];

    #[test]
    fn protocol_29_order_puts_files_before_dirs_and_dot_first() {
        // Checked by hand against flist.c's rules: "." first; at each level
        // files (in byte order) before directories; a directory's contents
        // follow it directly.
        assert_eq!(
            sorted(TREE, 29),
            [".", "a.txt", "b", "a", "a/x", "a/y", "a/sub", "a/sub/z", "c"]
        );
    }

    #[test]
    fn protocol_28_order_is_plain_byte_order_of_paths() {
        assert_eq!(
            sorted(TREE, 28),
            [".", "a", "a.txt", "a/sub", "a/sub/z", "a/x", "a/y", "b", "c"]
        );
    }

    #[test]
    fn directory_sorts_as_if_it_had_a_trailing_slash() {
        // "a-b" (0x2d) sorts before "a/" (0x2f) but "a0" (0x30) after it,
        // among directories at protocol 29.
        let names = [("a0", true), ("a", true), ("a-b", true)];
        assert_eq!(sorted(&names, 29), ["a-b", "a", "a0"]);
    }

    #[test]
    fn plain_split_rules() {
        let s = |a: &str| {
            let (d, n, t) = split_plain(a.as_bytes());
            (
                String::from_utf8(d).unwrap(),
                String::from_utf8(n).unwrap(),
                t == NameType::DotDir,
            )
        };
        assert_eq!(s(""), ("".into(), ".".into(), true));
        assert_eq!(s("dir/"), ("dir".into(), ".".into(), true));
        assert_eq!(s("dir"), ("".into(), "dir".into(), false));
        assert_eq!(s("a/b/file"), ("a/b".into(), "file".into(), false));
        assert_eq!(s("a/.."), ("a/..".into(), ".".into(), true));
    }

    #[test]
    fn relative_split_rules() {
        let s = |a: &str| {
            let (d, n, _, _) = split_relative(a.as_bytes()).unwrap();
            (String::from_utf8(d).unwrap(), String::from_utf8(n).unwrap())
        };
        assert_eq!(s("a/b/c"), ("".into(), "a/b/c".into()));
        assert_eq!(s("a/./b/c"), ("a".into(), "b/c".into()));
        assert_eq!(s("a//b/./"), ("a//b".into(), ".".into()));
        assert!(split_relative(b"a/../b").is_err());
    }

    #[test]
    fn unsafe_symlinks() {
        assert!(unsafe_symlink(b"/etc/passwd", b"link"));
        assert!(unsafe_symlink(b"../x", b"link"));
        assert!(!unsafe_symlink(b"../x", b"dir/link"));
        assert!(unsafe_symlink(b"../../x", b"dir/link"));
        assert!(!unsafe_symlink(b"sub/file", b"link"));
        assert!(unsafe_symlink(b"a/../../x", b"d/e/link"));
        assert!(unsafe_symlink(b"", b"link"));
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

    #[test]
    fn common_prefix_stops_at_component_boundaries() {
        assert_eq!(common_dir_prefix(b"a/b", b"a/b/c"), 3);
        assert_eq!(common_dir_prefix(b"a/bc", b"a/b/c"), 1);
        assert_eq!(common_dir_prefix(b"", b"a"), 0);
        assert_eq!(common_dir_prefix(b"x", b"a"), 0);
    }
}
