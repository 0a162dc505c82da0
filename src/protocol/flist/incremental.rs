//! Incremental recursion (rsync's inc_recurse), sender side: which
//! directory gets the next file list, and the directory numbers the client
//! knows them by.
//!
//! The first list holds the top-level names and a `.` argument's contents;
//! after it every directory gets a list of its own, in depth-first order of
//! the sorted lists (rsync: flist.c send_extra_file_list, add_dirs_to_tree):
//! a directory's list, then its subdirectories' lists first to last, each
//! followed by its own subtree, then the directory's next sibling. The
//! client names a list by the number of its directory, counted over the
//! directories of all lists in the order they were sent (the first list's
//! `.` included), so a counter is all that numbering needs.
//!
//! Only the directories still to be listed are held: each level of the walk
//! keeps its remaining siblings' names, so memory follows the width of the
//! tree along the current path, not the size of the tree. Filter scopes
//! follow the same levels: a directory's per-directory merge files stay
//! entered while its subdirectories are listed.

use super::{Builder, FileList, FLAG_CONTENT_DIR};
use crate::protocol::filter::DirToken;
use std::io;

/// The most directories waiting for their list at once, over all levels of
/// the walk: a tree that is wide and deep at once (millions of
/// subdirectories under each of many parents) is refused rather than held.
pub const MAX_PENDING_DIRS: usize = super::MAX_ENTRIES;

/// One directory's list, ready to send after `NDX_FLIST_OFFSET - dir_ndx`.
pub struct SubList {
    pub dir_ndx: u32,
    pub list: FileList,
}

/// A directory whose list is still to come.
#[derive(Clone, Copy)]
struct Pending {
    /// Offset and length of its name in its level's arena.
    name_at: u32,
    name_len: u32,
    root: u32,
    dir_ndx: u32,
    /// Whether its contents are listed (not a mount point under `-x`); an
    /// empty list is sent either way, as rsync does.
    content: bool,
}

/// The subdirectories of one listed directory, in sorted order.
struct Level {
    names: Vec<u8>,
    dirs: Vec<Pending>,
    next: usize,
    /// The listed directory's filter scope, left with the level.
    scope: Option<DirToken>,
}

/// What is left to list in an incremental pull.
pub struct DirWalk {
    levels: Vec<Level>,
    /// The first list's transfer roots, which every later entry uses.
    roots: Vec<Vec<u8>>,
    /// The number the next directory sent gets (rsync's `dir_flist->used`).
    next_dir_ndx: u32,
    pending: usize,
    max_pending: usize,
    /// The first `.` argument's scope, left at the end.
    top_scope: Option<DirToken>,
}

impl DirWalk {
    /// Starts after the first list has been sent and sorted, with the scope
    /// [`Builder::build_first`] returned.
    pub fn new(first: &FileList, top_scope: Option<DirToken>) -> io::Result<DirWalk> {
        Self::with_limit(first, top_scope, MAX_PENDING_DIRS)
    }

    fn with_limit(
        first: &FileList,
        top_scope: Option<DirToken>,
        max_pending: usize,
    ) -> io::Result<DirWalk> {
        let mut walk = DirWalk {
            levels: Vec::new(),
            roots: first.roots.clone(),
            next_dir_ndx: 0,
            pending: 0,
            max_pending,
            top_scope,
        };
        if let Some(unused) = walk.add_level(first, None)? {
            debug_assert!(false, "no scope given: {unused:?}");
        }
        Ok(walk)
    }

    /// Whether the first list starts with `.`, the directory of the
    /// transfer root: then index 0 (the one before the first list) names it
    /// (rsync: flist.c send_file_list sets `parent_ndx`).
    pub fn first_has_parent(first: &FileList) -> bool {
        first
            .entries
            .first()
            .is_some_and(|e| first.basename(e) == b".")
    }

    /// Numbers the directories of a sorted list and queues those to list;
    /// hands `scope` back when there are none (the caller leaves it).
    fn add_level(
        &mut self,
        list: &FileList,
        scope: Option<DirToken>,
    ) -> io::Result<Option<DirToken>> {
        let mut level = Level {
            names: Vec::new(),
            dirs: Vec::new(),
            next: 0,
            scope: None,
        };
        for e in list.entries.iter().filter(|e| e.is_dir()) {
            let dir_ndx = self.next_dir_ndx;
            self.next_dir_ndx += 1;
            if list.basename(e) == b"." {
                continue;
            }
            if self.pending >= self.max_pending {
                return Err(io::Error::other(format!(
                    "more than {} directories wait to be listed",
                    self.max_pending
                )));
            }
            self.pending += 1;
            let name = list.name(e);
            level.dirs.push(Pending {
                name_at: level.names.len() as u32,
                name_len: name.len() as u32,
                root: e.root,
                dir_ndx,
                content: e.flags & FLAG_CONTENT_DIR != 0,
            });
            level.names.extend_from_slice(name);
        }
        if level.dirs.is_empty() {
            return Ok(scope);
        }
        level.scope = scope;
        self.levels.push(level);
        Ok(None)
    }

    /// The next directory's list, sorted, or `None` when every directory
    /// has had its list (time for `NDX_FLIST_EOF`). `builder` is a fresh
    /// [`Builder`] for the pull; it is used up either way.
    pub fn next_list(&mut self, mut builder: Builder) -> io::Result<Option<SubList>> {
        let (dir, name) = loop {
            let Some(level) = self.levels.last_mut() else {
                if let Some(scope) = self.top_scope.take() {
                    builder.leave_dir(scope);
                }
                return Ok(None);
            };
            if let Some(&dir) = level.dirs.get(level.next) {
                level.next += 1;
                let at = dir.name_at as usize;
                break (dir, level.names[at..at + dir.name_len as usize].to_vec());
            }
            if let Some(scope) = self.levels.pop().and_then(|l| l.scope) {
                builder.leave_dir(scope);
            }
        };
        self.pending -= 1;
        let scope = builder.enter_dir(&name)?;
        let mut list = builder.build_dir(&self.roots, dir.root, &name, dir.content)?;
        list.sort();
        if let Some(scope) = self.add_level(&list, Some(scope))? {
            builder.leave_dir(scope);
        }
        Ok(Some(SubList {
            dir_ndx: dir.dir_ndx,
            list,
        }))
    }

    /// Directories waiting for their list (for tests and measurements).
    pub fn pending(&self) -> usize {
        self.pending
    }
}
