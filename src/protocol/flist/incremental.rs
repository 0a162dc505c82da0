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
//! With `-R` an argument's leading directories are implied: each list
//! holds one more of them, and the name itself comes in its parent's list
//! ([`super::build::Deferred`]). A directory named twice in one list (by
//! two arguments) gets one list for both, under the first's number.
//!
//! Only the directories still to be listed are held: each level of the walk
//! keeps its remaining siblings' names, so memory follows the width of the
//! tree along the current path, not the size of the tree. Filter scopes
//! follow the same levels: a directory's per-directory merge files stay
//! entered while its subdirectories are listed.

use super::build::DirPart;
use super::{Builder, Deferred, FileList, FLAG_CONTENT_DIR};
use crate::protocol::filter::DirToken;
use std::io;
use std::sync::Arc;

/// The most directories waiting for their list at once, over all levels of
/// the walk: a tree that is wide and deep at once (millions of
/// subdirectories under each of many parents) is refused rather than held.
pub(crate) const MAX_PENDING_DIRS: usize = super::MAX_ENTRIES;

/// One directory's list, ready to send after `NDX_FLIST_OFFSET - dir_ndx`.
pub(crate) struct SubList {
    pub(crate) dir_ndx: u32,
    pub(crate) list: Arc<FileList>,
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
    /// With `-R`, the names deferred to these directories, by directory
    /// name and, for each, in the order they were listed.
    deferred: Vec<Deferred>,
    /// The listed directory's filter scope, left with the level.
    scope: Option<DirToken>,
}

/// What is left to list in an incremental pull.
pub(crate) struct DirWalk {
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
    pub(crate) fn new(first: &FileList, top_scope: Option<DirToken>) -> io::Result<DirWalk> {
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
    pub(crate) fn first_has_parent(first: &FileList) -> bool {
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
            deferred: list.deferred.clone(),
            scope: None,
        };
        level.deferred.sort_by(|a, b| a.dir.cmp(&b.dir));
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
    pub(crate) fn next_list(&mut self, mut builder: Builder) -> io::Result<Option<SubList>> {
        let (dir_ndx, name, parts) = loop {
            let Some(level) = self.levels.last_mut() else {
                if let Some(scope) = self.top_scope.take() {
                    builder.leave_dir(scope);
                }
                return Ok(None);
            };
            if level.next < level.dirs.len() {
                break level.take_next();
            }
            if let Some(scope) = self.levels.pop().and_then(|l| l.scope) {
                builder.leave_dir(scope);
            }
        };
        self.pending -= parts.len();
        let scope = builder.enter_dir(&name)?;
        let list = builder.dir_list(&self.roots, &name, &parts)?;
        if let Some(scope) = self.add_level(&list, Some(scope))? {
            builder.leave_dir(scope);
        }
        Ok(Some(SubList { dir_ndx, list }))
    }

    /// Whether every directory has had its list.
    pub(crate) fn is_finished(&self) -> bool {
        self.pending == 0
    }

    #[cfg(test)]
    /// Directories waiting for their list (for tests and measurements).
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }
}

impl Level {
    fn name(&self, dir: &Pending) -> &[u8] {
        let at = dir.name_at as usize;
        &self.names[at..at + dir.name_len as usize]
    }

    /// The next directory to list, with those of the same name right after
    /// it (rsync: flist.c send_extra_file_list sends FLAG_DUPLICATE
    /// directories in one list): its number, name and parts, each with the
    /// names deferred to it. A duplicate under the same root as the first
    /// is not read again once one before it was (rsync clears its
    /// FLAG_CONTENT_DIR).
    fn take_next(&mut self) -> (u32, Vec<u8>, Vec<DirPart>) {
        let first = self.dirs[self.next];
        let name = self.name(&first).to_vec();
        let lo = self.deferred.partition_point(|d| d.dir < name);
        let hi = lo + self.deferred[lo..].partition_point(|d| d.dir == name);
        let mut parts: Vec<DirPart> = Vec::new();
        while let Some(&dir) = self.dirs.get(self.next) {
            if self.name(&dir) != name.as_slice() {
                break;
            }
            self.next += 1;
            let read_before = parts.last().is_some_and(|p| p.content) && dir.root == first.root;
            // The names deferred under this root go with its first part.
            let served = parts.iter().any(|p| p.root == dir.root);
            let deferred = self.deferred[lo..hi]
                .iter()
                .filter(|d| !served && d.root == dir.root)
                .cloned()
                .collect();
            parts.push(DirPart {
                root: dir.root,
                content: dir.content && !read_before,
                deferred,
            });
        }
        (first.dir_ndx, name, parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::filter::tests::Scratch;
    use crate::protocol::filter::{FilterList, Filters};
    use crate::protocol::flist::tests::{options, Messages};
    use crate::protocol::options::Options;
    use crate::source::Source;
    use std::fs;
    use std::path::Path;

    /// What a sender holds to build the lists of the module at `root`.
    struct Sender {
        opts: Options,
        source: Source,
        filters: Filters,
        messages: Messages,
    }

    impl Sender {
        /// With the options `args` and the client's rules `client`.
        fn new(root: &Path, args: &[&str], client: FilterList) -> Sender {
            Sender {
                opts: options(args),
                source: Source::new(root.to_path_buf(), None).unwrap(),
                filters: Filters::new(root, FilterList::new(), client),
                messages: Messages::default(),
            }
        }

        /// A builder of the next list, at protocol 31, in module `mod`.
        fn builder(&mut self) -> Builder<'_> {
            Builder::new(
                &self.opts,
                31,
                &self.source,
                &mut self.filters,
                &mut self.messages,
                "mod",
            )
        }
    }

    fn names(list: &FileList) -> Vec<String> {
        list.entries
            .iter()
            .map(|e| String::from_utf8_lossy(list.name(e)).into_owned())
            .collect()
    }

    /// Lists by directory number (`None` for the first), with their names.
    type Lists = Vec<(Option<u32>, Vec<String>)>;

    /// Every list of an incremental walk over `paths`: the first one with
    /// no directory number, then each directory's, with the most
    /// directories pending at once.
    fn walk(
        root: &Path,
        args: &[&str],
        client: FilterList,
        paths: &[&str],
        max_pending: usize,
    ) -> io::Result<(Lists, usize)> {
        let mut sender = Sender::new(root, args, client);
        let paths: Vec<Vec<u8>> = paths.iter().map(|p| p.as_bytes().to_vec()).collect();
        let (mut first, scope) = sender.builder().incremental().build_first(b"", &paths)?;
        first.sort();
        let mut walk = DirWalk::with_limit(&first, scope, max_pending)?;
        let mut lists = vec![(None, names(&first))];
        let mut most = walk.pending();
        while let Some(sub) = walk.next_list(sender.builder().incremental())? {
            lists.push((Some(sub.dir_ndx), names(&sub.list)));
            most = most.max(walk.pending());
        }
        Ok((lists, most))
    }

    fn owned(lists: &[(Option<u32>, &[&str])]) -> Lists {
        lists
            .iter()
            .map(|(n, l)| (*n, l.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn lists_go_depth_first_numbered_by_directory() {
        let s = Scratch::new("order");
        s.file("top", "x")
            .file("a/f1", "x")
            .file("a/b/f2", "x")
            .dir("a/c")
            .dir("d");
        let (lists, _) = walk(s.path(), &["-r"], FilterList::new(), &[""], 100).unwrap();
        // Directory numbers: `.` 0, a 1, d 2 (the first list, sorted); then
        // a's list adds b 3, c 4.
        let expected = owned(&[
            (None, &[".", "top", "a", "d"]),
            (Some(1), &["a/f1", "a/b", "a/c"]),
            (Some(3), &["a/b/f2"]),
            (Some(4), &[]),
            (Some(2), &[]),
        ]);
        assert_eq!(lists, expected);
    }

    #[test]
    fn a_named_directory_is_listed_in_a_list_of_its_own() {
        let s = Scratch::new("named");
        s.file("a/f1", "x").file("a/b/f2", "x");
        let (lists, _) = walk(s.path(), &["-r"], FilterList::new(), &["a"], 100).unwrap();
        let expected = owned(&[
            (None, &["a"]),
            (Some(0), &["a/f1", "a/b"]),
            (Some(1), &["a/b/f2"]),
        ]);
        assert_eq!(lists, expected);
    }

    #[test]
    fn relative_names_come_one_directory_per_list() {
        let s = Scratch::new("relative");
        s.file("a/b/c/f", "x").file("a/b/g", "x").file("x/y", "x");
        let args = ["a/b/c", "a/b/g", "x/y"];
        let (lists, _) = walk(s.path(), &["-r", "-R"], FilterList::new(), &args, 100).unwrap();
        // a 0, x 1; a's list adds a/b 2 (implied, once for both names
        // under it), whose list adds a/b/c 3.
        let expected = owned(&[
            (None, &["a", "x"]),
            (Some(0), &["a/b"]),
            (Some(2), &["a/b/g", "a/b/c"]),
            (Some(3), &["a/b/c/f"]),
            (Some(1), &["x/y"]),
        ]);
        assert_eq!(lists, expected);
    }

    #[test]
    fn a_directory_implied_twice_gets_one_list() {
        let s = Scratch::new("twice");
        s.file("a/b/c/f", "x").file("a/b/g", "x").file("x/y", "x");
        let args = ["a/b/g", "x/y", "a/b/c"];
        let (lists, _) = walk(s.path(), &["-r", "-R"], FilterList::new(), &args, 100).unwrap();
        // Both a's are numbered (0 and 1), x 2; the second a's names come
        // in the first's list, and a/b (3) once.
        let expected = owned(&[
            (None, &["a", "a", "x"]),
            (Some(0), &["a/b"]),
            (Some(3), &["a/b/g", "a/b/c"]),
            (Some(4), &["a/b/c/f"]),
            (Some(2), &["x/y"]),
        ]);
        assert_eq!(lists, expected);
    }

    #[test]
    fn only_the_directories_still_to_list_are_held() {
        // A chain 40 deep with two empty siblings at every level: at most
        // the siblings along the path wait, never the whole tree.
        let s = Scratch::new("deep");
        let mut path = String::new();
        for depth in 0..40 {
            for side in ["x", "y"] {
                s.dir(&format!("{path}{side}"));
            }
            path.push_str(&format!("d{depth}/"));
            s.dir(&path);
        }
        let (lists, most) = walk(s.path(), &["-r"], FilterList::new(), &[""], 1000).unwrap();
        assert_eq!(lists.len(), 1 + 3 * 40);
        assert!(most <= 2 * 40 + 1, "{most} pending at once");
        // Every directory comes once, after its parent's list named it.
        let all: usize = lists.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(all, 1 + 3 * 40);
    }

    #[test]
    fn too_many_pending_directories_are_refused() {
        let s = Scratch::new("wide");
        for i in 0..20 {
            s.dir(&format!("w{i:02}"));
        }
        let err = walk(s.path(), &["-r"], FilterList::new(), &[""], 10).unwrap_err();
        assert!(
            err.to_string().contains("more than 10 directories"),
            "{err}"
        );
        assert!(walk(s.path(), &["-r"], FilterList::new(), &[""], 20).is_ok());
    }

    #[test]
    fn merge_files_apply_below_their_directory_only() {
        let s = Scratch::new("merge");
        s.file("a/.rsync-filter", "- *.o\n")
            .file("a/x.o", "x")
            .file("a/sub/y.o", "x")
            .file("b/z.o", "x");
        let mut client = FilterList::new();
        client.add_wire_rule(b": .rsync-filter", 31).unwrap();
        let (lists, _) = walk(s.path(), &["-r"], client, &[""], 100).unwrap();
        let expected = owned(&[
            (None, &[".", "a", "b"]),
            (Some(1), &["a/.rsync-filter", "a/sub"]),
            (Some(3), &[]),
            (Some(2), &["b/z.o"]),
        ]);
        assert_eq!(lists, expected);
    }

    #[test]
    fn the_walk_lists_what_a_full_build_lists() {
        let s = Scratch::new("same");
        for i in 0..5 {
            s.file(&format!("d{i}/f"), "x")
                .file(&format!("d{i}/e{i}/g"), "x");
        }
        s.file("z", "x");
        let (lists, _) = walk(s.path(), &["-r"], FilterList::new(), &[""], 100).unwrap();
        let mut walked: Vec<String> = lists.into_iter().flat_map(|(_, l)| l).collect();
        walked.sort();
        let full = Sender::new(s.path(), &["-r"], FilterList::new())
            .builder()
            .build(b"", &[Vec::new()])
            .unwrap();
        let mut all = names(&full);
        all.sort();
        assert_eq!(walked, all);
    }

    #[test]
    fn a_directory_gone_before_its_list_is_reported_and_listed_empty() {
        let s = Scratch::new("vanish");
        s.file("a/f", "x").file("b/g", "x");
        let mut sender = Sender::new(s.path(), &["-r"], FilterList::new());
        let (mut first, scope) = sender
            .builder()
            .incremental()
            .build_first(b"", &[Vec::new()])
            .unwrap();
        first.sort();
        let mut walk = DirWalk::new(&first, scope).unwrap();
        fs::remove_dir_all(s.path().join("a")).unwrap();
        let sub = walk
            .next_list(sender.builder().incremental())
            .unwrap()
            .unwrap();
        assert_eq!(sub.dir_ndx, 1);
        assert!(sub.list.is_empty());
        assert_eq!(sub.list.io_error, crate::protocol::flist::IOERR_VANISHED);
        assert_eq!(
            sender.messages.0,
            vec!["directory has vanished: \"a\" (in mod)\n".to_string()]
        );
        let sub = walk
            .next_list(sender.builder().incremental())
            .unwrap()
            .unwrap();
        assert_eq!(names(&sub.list), vec!["b/g".to_string()]);
        assert!(walk
            .next_list(sender.builder().incremental())
            .unwrap()
            .is_none());
        assert!(walk.is_finished());
    }
}
