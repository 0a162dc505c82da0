//! Which entries a pull covers: rsync: flist.c send_file_list and its helpers.
//! The source arguments are split into the directory their names are
//! relative to and the names themselves; directories are walked (with `-r`)
//! in the order rsync reads them; filters, the link options, `-x`, `-R`'s
//! implied directories and the module's confinement decide what is listed.

use super::shared::{self, Built, PartKey, PullShare, Which};
use super::{
    describe_os_error, filter_error, full_name, Deferred, Entry, Extra, FileList, FilterLevel,
    NameType, Reporter, FLAG_CONTENT_DIR, FLAG_IMPLIED_DIR, FLAG_TOP_DIR, IOERR_GENERAL,
    IOERR_VANISHED, MAX_ENTRIES, MAX_PATH_LEN, NO_EXTRA,
};
use crate::delta::{self, Digest, SumKind};
use crate::protocol::filter::{DirToken, Filters};
use crate::protocol::io::MsgTag;
use crate::protocol::options::{MissingArgs, Options};
use crate::source::{self, Source, Stat};
use std::io;
use std::sync::Arc;

/// One directory's share of a list of incremental recursion: a directory
/// named twice in a list (from two arguments) gets one list for both
/// (rsync: flist.c send_extra_file_list, FLAG_DUPLICATE).
pub(super) struct DirPart {
    pub(super) root: u32,
    /// Whether its contents are listed.
    pub(super) content: bool,
    /// The names deferred to it, in the order the arguments named them.
    pub(super) deferred: Vec<Deferred>,
}

/// Builds the file list for one pull.
pub(crate) struct Builder<'a> {
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
    /// With -R and incremental recursion, the last implied directory sent
    /// (root, name) and whether it is a directory names can be deferred to;
    /// the next argument under it reuses it (rsync: flist.c
    /// send_implied_dirs, lastpath).
    last_deferred: Option<(u32, Vec<u8>, bool)>,
    /// With -R, a leading `./` in an argument lists the transfer root "."
    /// itself, once.
    sent_implied_dot: bool,
    /// With -R, the implied directories entered for filtering, outermost
    /// first; they stay entered while following arguments share them.
    implied_scopes: Vec<(Vec<u8>, DirToken)>,
    /// Incremental recursion: subdirectories are listed later, each in a
    /// list of its own (rsync's FLAG_DIVERT_DIRS), not walked now.
    divert_dirs: bool,
    /// Incremental recursion: the scope of the first `.` argument, whose
    /// contents open the transfer; its merge files apply to every later
    /// list, so it stays entered after the first list is built.
    top_scope: Option<DirToken>,
    /// For builds: where directories' lists are shared ([`Builder::dir_list`]).
    share: Option<&'a PullShare>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(
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
            list: FileList::empty(protocol),
            filesystem_dev: 0,
            follow_links: opts.copy_links || opts.copy_dirlinks || opts.copy_unsafe_links,
            last_implied: Vec::new(),
            last_deferred: None,
            sent_implied_dot: false,
            implied_scopes: Vec::new(),
            divert_dirs: false,
            top_scope: None,
            share: None,
        }
    }

    /// Takes directories' lists from `share`, or builds them for it.
    pub(crate) fn sharing(mut self, share: Option<&'a PullShare>) -> Self {
        self.share = share;
        self
    }

    /// Lists for incremental recursion: a `.` argument's contents without
    /// their subdirectories' contents, and other directory arguments alone.
    pub(crate) fn incremental(mut self) -> Self {
        self.divert_dirs = true;
        self
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

    #[cfg(test)]
    /// Adds every argument (already sanitised paths, relative to `base`,
    /// itself relative to the module root) and everything below it, in the
    /// order rsync walks them. The list is sent in that order, then sorted
    /// with [`FileList::sort`]. `base` is empty for command-line sources and
    /// the source directory for `--files-from` names.
    pub(crate) fn build(self, base: &[u8], paths: &[Vec<u8>]) -> io::Result<FileList> {
        let (list, scope) = self.build_first(base, paths)?;
        debug_assert!(scope.is_none(), "only incremental lists keep a scope");
        Ok(list)
    }

    /// [`Builder::build`], for the first list of an incremental pull as
    /// well: also returns the filter scope of the top directory, which the
    /// caller leaves once every list is sent.
    pub(crate) fn build_first(
        mut self,
        base: &[u8],
        paths: &[Vec<u8>],
    ) -> io::Result<(FileList, Option<DirToken>)> {
        for path in paths {
            if let Err(e) = self.add_argument(base, path) {
                if let Some(scope) = self.top_scope.take() {
                    self.filters.pop_dir(scope);
                }
                return Err(e);
            }
        }
        self.leave_implied_dirs(b"");
        Ok((self.list, self.top_scope))
    }

    /// The contents of one directory of an earlier list, alone: one list
    /// of incremental recursion (rsync: flist.c send1extra): for each
    /// part, the directory's entries when they are listed, then the names
    /// deferred to it. `roots` are the first list's transfer roots, which
    /// each part's `root` indexes; the caller has entered the directory's
    /// filter scope.
    fn build_dir(
        &mut self,
        roots: &[Vec<u8>],
        dir_name: &[u8],
        parts: &[DirPart],
    ) -> io::Result<FileList> {
        self.list.roots = roots.to_vec();
        for part in parts {
            if part.content {
                self.add_dir_contents(part.root, dir_name)?;
            }
            if !part.deferred.is_empty() {
                let root = self.list.roots[part.root as usize].clone();
                self.filters.set_transfer_root(&root);
            }
            for name in &part.deferred {
                self.add_deferred(name)?;
            }
        }
        let empty = FileList::empty(self.protocol);
        Ok(std::mem::replace(&mut self.list, empty))
    }

    /// [`Builder::build_dir`], sorted, through the shared lists when the
    /// pull has them. The filters are left as building leaves them.
    pub(super) fn dir_list(
        &mut self,
        roots: &[Vec<u8>],
        dir_name: &[u8],
        parts: &[DirPart],
    ) -> io::Result<Arc<FileList>> {
        let (opts, protocol, source, module) = (self.opts, self.protocol, self.source, self.module);
        let divert_dirs = self.divert_dirs;
        let filters = &mut *self.filters;
        let which = Which::Dir {
            name: dir_name.into(),
            parts: parts
                .iter()
                .map(|part| PartKey {
                    root: roots[part.root as usize].as_slice().into(),
                    content: part.content,
                    deferred: part.deferred.as_slice().into(),
                })
                .collect(),
        };
        let built = shared::obtain(self.share, which, &mut *self.reporter, |reporter| {
            let mut builder = Builder::new(opts, protocol, source, filters, reporter, module);
            builder.divert_dirs = divert_dirs;
            let mut list = builder.build_dir(roots, dir_name, parts)?;
            list.sort();
            Ok(Built::new(list, None))
        })?;
        // Building sets the transfer root of each part that lists anything;
        // the last one stays.
        let last = parts
            .iter()
            .rev()
            .find(|part| part.content || !part.deferred.is_empty());
        if let Some(part) = last {
            self.filters.set_transfer_root(&roots[part.root as usize]);
        }
        Ok(Arc::clone(&built.list))
    }

    /// A name deferred to the directory being listed: its next directory,
    /// implied, with the rest deferred again, or the name itself, as its
    /// argument would have listed it (rsync: flist.c send1extra).
    fn add_deferred(&mut self, deferred: &Deferred) -> io::Result<()> {
        let name = source::join(&deferred.dir, &deferred.rest);
        let (root, below) = (deferred.root, deferred.dir.len() + 1);
        if let Some(slash) = name[below..].iter().position(|&b| b == b'/') {
            let at = below + slash;
            return self.defer(root, &name[..at], &name[at + 1..], deferred.name_type);
        }
        let flags = FLAG_TOP_DIR | FLAG_CONTENT_DIR;
        let st = if deferred.name_type == NameType::Normal {
            None
        } else {
            match self.stat_arg(root, &name, true) {
                Ok(st) => Some(st),
                Err(err) => return self.dir_stat_failed(root, &name, &err),
            }
        };
        self.send_file_name(root, &name, st, flags, FilterLevel::All)?;
        Ok(())
    }

    /// With `-R` and incremental recursion: lists `dir`, implied, unless
    /// the previous name deferred went to the same one, and defers `rest`
    /// to it (rsync: flist.c send_implied_dirs). Links are followed and
    /// only the module's rules apply, as for every implied directory.
    fn defer(&mut self, root: u32, dir: &[u8], rest: &[u8], name_type: NameType) -> io::Result<()> {
        let reuse = matches!(&self.last_deferred, Some((r, d, _)) if *r == root && d == dir);
        if !reuse {
            let listed = match self.source.stat_confined(&self.list_path(root, dir)) {
                Ok((_, st)) if st.is_dir() => self
                    .send_file_name(root, dir, Some(st), FLAG_IMPLIED_DIR, FilterLevel::Daemon)?
                    .is_some(),
                _ => false,
            };
            self.last_deferred = Some((root, dir.to_vec(), listed));
        }
        if matches!(self.last_deferred, Some((_, _, true))) {
            self.list.deferred.push(Deferred {
                root,
                dir: dir.to_vec(),
                rest: rest.to_vec(),
                name_type,
            });
        }
        Ok(())
    }

    fn add_dir_contents(&mut self, root: u32, dir_name: &[u8]) -> io::Result<()> {
        self.filters
            .set_transfer_root(&self.list.roots[root as usize].clone());
        if self.opts.one_file_system > 0 {
            let path = self.list_path(root, dir_name);
            match self.source.stat_confined(&path) {
                Ok((_, st)) => self.filesystem_dev = st.dev,
                Err(err) => return self.dir_stat_failed(root, dir_name, &err),
            }
        }
        self.list_contents(root, dir_name)
    }

    /// Enters a directory's filter scope (its per-directory merge files).
    pub(super) fn enter_dir(&mut self, dir_name: &[u8]) -> io::Result<DirToken> {
        let filter_name: &[u8] = if dir_name == b"." { b"" } else { dir_name };
        self.filters.push_dir(filter_name).map_err(filter_error)
    }

    /// Leaves what [`Builder::enter_dir`] entered.
    pub(super) fn leave_dir(&mut self, scope: DirToken) {
        self.filters.pop_dir(scope);
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
            self.send_file_name(root, b".", None, FLAG_IMPLIED_DIR, FilterLevel::None)?;
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
        if self.divert_dirs && self.opts.relative {
            // rsync: flist.c send_file_list: with incremental recursion an
            // argument's first directory is listed (implied, even with
            // --no-implied-dirs) and the rest of it comes in that
            // directory's list.
            if let Some(slash) = name.iter().position(|&b| b == b'/') {
                return self.defer(root, &name[..slash], &name[slash + 1..], name_type);
            }
        } else if self.opts.relative && self.opts.implied_dirs {
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
                if !self.divert_dirs {
                    self.send_if_directory(idx)?;
                } else if name_type == NameType::DotDir {
                    // rsync: flist.c send_file_list enters the first `.`
                    // argument's scope once, for the rest of the pull.
                    if self.top_scope.is_none() {
                        self.top_scope = Some(self.enter_dir(&name)?);
                    }
                    self.list_contents(root, &name)?;
                }
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
            self.send_file_name(root, name, Some(st), FLAG_IMPLIED_DIR, FilterLevel::Daemon)?;
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
                // A top-level name (a `-R` name deferred to a later list)
                // is listed whatever its device, as on the command line.
                if self.opts.one_file_system > 0
                    && st.dev != self.filesystem_dev
                    && flags & FLAG_CONTENT_DIR != 0
                    && flags & FLAG_TOP_DIR == 0
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
        // The module's `ignore nonreadable`: left out without a word.
        if self.opts.skip_unreadable
            && !st.is_symlink()
            && !self.source.readable(&self.list_path(root, name))
        {
            return Ok(None);
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
            atime: (self.opts.atimes && !st.is_dir()).then_some(st.atime),
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
        if source::leads_out(err) {
            // Left out with an error (the client exits 23) but without the
            // I/O-error flag, which would cancel every deletion: rsyncd
            // without chroot lists such a link and fails only when it
            // opens it (docs/protocol.md, "Links leading out of a module").
            let text = format!(
                "rsync: [sender] symlink leads outside the module: {}\n",
                self.full_name(root, name)
            );
            return self.reporter.report(MsgTag::Error, &text);
        }
        self.os_error("readlink_stat", root, name, err)
    }

    fn checksum(&mut self, root: u32, name: &[u8]) -> io::Result<Digest> {
        let path = self.list_path(root, name);
        let opened = if self.follow_links {
            self.source
                .resolve(&path, true)
                .and_then(|real| self.source.open(&real))
        } else {
            self.source.open(&path)
        };
        // rsync sends a zero sum for a file it cannot read.
        let kind = self.opts.file_sum;
        match opened {
            // rsync opens the file before it finds it has no digest.
            Ok(_) if kind == SumKind::None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "Invalid checksum-choice for --checksum: none (0)",
            )),
            Ok(file) => {
                Ok(delta::file_checksum(kind, file).unwrap_or(Digest::zeros(kind.digest_len())))
            }
            Err(_) => Ok(Digest::zeros(kind.digest_len())),
        }
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
        let extra = if extra.dev_ino.is_none() && extra.sum.is_none() && extra.atime.is_none() {
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
            mtime_nsec: st.mtime_nsec,
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
        let scope = self.enter_dir(&dir_name)?;
        let result = self.list_contents(root, &dir_name);
        self.filters.pop_dir(scope);
        result
    }

    /// Lists a directory's entries (and, unless diverting, what lies below).
    fn list_contents(&mut self, root: u32, dir_name: &[u8]) -> io::Result<()> {
        let dir_path = self.list_path(root, dir_name);
        let real_dir = if self.follow_links {
            match self.source.resolve(&dir_path, true) {
                Ok(r) => r,
                Err(err) => return self.os_error("opendir", root, dir_name, &err),
            }
        } else {
            dir_path
        };
        self.send_directory(root, dir_name, &real_dir)
    }

    /// rsync: flist.c interpret_stat_error, for a directory of an earlier
    /// list that is gone when its own list is built.
    fn dir_stat_failed(&mut self, root: u32, name: &[u8], err: &io::Error) -> io::Result<()> {
        if err.kind() == io::ErrorKind::NotFound {
            let text = format!("directory has vanished: {}\n", self.full_name(root, name));
            // rsync sends a warning; below protocol 30 that travels as info.
            return self.error(IOERR_VANISHED, MsgTag::Info, text);
        }
        self.os_error("link_stat", root, name, err)
    }

    fn send_directory(&mut self, root: u32, dir_name: &[u8], real_dir: &[u8]) -> io::Result<()> {
        // Directory order, as rsync reads it: the wire order does not change
        // the result (both sides sort), but it keeps the list's encoded size
        // the same as rsyncd's.
        let names = match self.source.read_dir(real_dir) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return self.dir_stat_failed(root, dir_name, &err)
            }
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
        if self.opts.recurse && !self.divert_dirs {
            let end = self.list.entries.len();
            for i in start..end {
                self.send_if_directory(i)?;
            }
        }
        Ok(())
    }
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
fn unsafe_symlink(target: &[u8], link_path: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn common_prefix_stops_at_component_boundaries() {
        assert_eq!(common_dir_prefix(b"a/b", b"a/b/c"), 3);
        assert_eq!(common_dir_prefix(b"a/bc", b"a/b/c"), 1);
        assert_eq!(common_dir_prefix(b"", b"a"), 0);
        assert_eq!(common_dir_prefix(b"x", b"a"), 0);
    }
}
