//! The file lists the client has not finished with, and which entry a file
//! index names (rsync: flist.c flist_new, flist_for_ndx, flist_free).
//!
//! Without incremental recursion there is one list, indexed from 0. With
//! it, the first list is indexed from 1 and each later list starts one past
//! the end of the one before: the index just before a list's start names
//! the directory the list is the contents of, which belongs to an earlier
//! list. The client finishes lists in the order they were sent and says so
//! with `NDX_DONE`; the oldest list is then dropped, so the lists held are
//! those between the client's progress and the sender's lookahead.

use super::{Entry, FileList};
use std::collections::VecDeque;
use std::sync::Arc;

/// A list in flight.
struct Live {
    start: u32,
    /// Whether the index before `start` names this list's directory.
    has_dir: bool,
    /// Held by reference: a list shared between connections is not copied.
    list: Arc<FileList>,
    /// Files already sent once: a second request is a redo.
    sent: Vec<bool>,
}

/// What a file index names.
pub(crate) enum Found<'a> {
    /// An entry of a list held, with its list (for its name) and the flag
    /// that says whether it was sent before.
    Entry {
        list: &'a FileList,
        entry: &'a Entry,
        sent: &'a mut bool,
    },
    /// The directory of a list (its entry was in an earlier list).
    ListDir,
}

/// The lists in flight, oldest first.
pub(crate) struct Window {
    lists: VecDeque<Live>,
    next_start: u32,
    /// Position in `lists` of the list the client last named a file of.
    current: usize,
    /// Entries of every list ever added: the statistics' file count.
    total_entries: u64,
    /// Size of the regular files and links of every list ever added.
    total_size: u64,
}

impl Window {
    /// An empty window whose first list will start at `first_start` (1 with
    /// incremental recursion, else 0).
    pub(crate) fn new(first_start: u32) -> Window {
        Window {
            lists: VecDeque::new(),
            next_start: first_start,
            current: 0,
            total_entries: 0,
            total_size: 0,
        }
    }

    /// Adds the next list (sorted) as the client numbers it.
    pub(crate) fn push(&mut self, list: Arc<FileList>, has_dir: bool) {
        let len = list.len() as u32;
        self.total_entries += u64::from(len);
        self.total_size += list.total_size();
        self.lists.push_back(Live {
            start: self.next_start,
            has_dir,
            sent: vec![false; list.len()],
            list,
        });
        self.next_start = self.next_start.saturating_add(len + 1);
    }

    /// What `ndx` names, or `None` for an index outside every list held.
    /// The list it falls in becomes the client's current one.
    pub(crate) fn find(&mut self, ndx: u32) -> Option<Found<'_>> {
        let at = self
            .lists
            .partition_point(|l| l.start.saturating_sub(u32::from(l.has_dir)) <= ndx)
            .checked_sub(1)?;
        let live = &mut self.lists[at];
        let found = if ndx < live.start {
            Found::ListDir
        } else {
            let i = (ndx - live.start) as usize;
            Found::Entry {
                entry: live.list.entries.get(i)?,
                sent: &mut live.sent[i],
                list: &live.list,
            }
        };
        self.current = at;
        Some(found)
    }

    /// The client is done with the oldest list: drop it. Returns whether
    /// lists remain.
    pub(crate) fn done(&mut self) -> bool {
        if self.lists.pop_front().is_some() {
            self.current = self.current.saturating_sub(1);
        }
        !self.lists.is_empty()
    }

    /// Entries in the lists after the client's current one: how far the
    /// sender is ahead (rsync's `file_total - file_old_total`).
    pub(crate) fn ahead(&self) -> usize {
        self.lists
            .iter()
            .skip(self.current + 1)
            .map(|l| l.list.len())
            .sum()
    }

    #[cfg(test)]
    /// Entries held now, over every list in flight.
    pub(crate) fn held(&self) -> usize {
        self.lists.iter().map(|l| l.list.len()).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The index one past the last entry of the newest list: what an old
    /// generator sends as a keep-alive.
    pub(crate) fn end(&self) -> u32 {
        self.next_start.saturating_sub(1)
    }

    /// The index the next list added will start at.
    pub(crate) fn next_start(&self) -> u32 {
        self.next_start
    }

    pub(crate) fn total_entries(&self) -> u64 {
        self.total_entries
    }

    pub(crate) fn total_size(&self) -> u64 {
        self.total_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of `n` plain entries (only their count matters here).
    fn list(n: usize) -> Arc<FileList> {
        let mut l = FileList::empty(31);
        for _ in 0..n {
            l.entries.push(Entry {
                name_at: 0,
                name_len: 0,
                base_at: 0,
                link_at: 0,
                link_len: 0,
                root: 0,
                flags: 0,
                mode: crate::source::S_IFREG | 0o644,
                size: 10,
                mtime: 0,
                mtime_nsec: 0,
                uid: 0,
                gid: 0,
                rdev_major: 0,
                rdev_minor: 0,
                extra: super::super::NO_EXTRA,
            });
        }
        Arc::new(l)
    }

    fn kind(w: &mut Window, ndx: u32) -> &'static str {
        match w.find(ndx) {
            None => "none",
            Some(Found::ListDir) => "dir",
            Some(Found::Entry { .. }) => "entry",
        }
    }

    #[test]
    fn indices_leave_one_gap_per_list_for_its_directory() {
        let mut w = Window::new(1);
        w.push(list(3), false); // 1..=3
        w.push(list(2), true); // 4 is its directory, 5..=6
        w.push(list(0), true); // 7 is its directory
        w.push(list(1), true); // 8, then 9
        assert_eq!(kind(&mut w, 0), "none");
        assert_eq!(kind(&mut w, 1), "entry");
        assert_eq!(kind(&mut w, 3), "entry");
        assert_eq!(kind(&mut w, 4), "dir");
        assert_eq!(kind(&mut w, 6), "entry");
        assert_eq!(kind(&mut w, 7), "dir");
        assert_eq!(kind(&mut w, 8), "dir");
        assert_eq!(kind(&mut w, 9), "entry");
        assert_eq!(kind(&mut w, 10), "none");
        assert_eq!(w.total_entries(), 6);
        assert_eq!(w.total_size(), 60);
    }

    #[test]
    fn done_lists_are_dropped_oldest_first() {
        let mut w = Window::new(1);
        w.push(list(3), true);
        w.push(list(2), true);
        w.push(list(4), true);
        assert!(matches!(w.find(2), Some(Found::Entry { .. })));
        assert_eq!(w.ahead(), 6);
        assert!(w.done());
        assert_eq!(w.held(), 6);
        assert_eq!(kind(&mut w, 2), "none");
        assert_eq!(kind(&mut w, 6), "entry");
        assert_eq!(w.ahead(), 4);
        assert!(w.done());
        assert!(!w.done());
        assert!(w.is_empty());
    }

    #[test]
    fn a_redo_is_told_from_a_first_request() {
        let mut w = Window::new(0);
        w.push(list(2), false);
        assert_eq!(w.end(), 2);
        if let Some(Found::Entry { sent, .. }) = w.find(1) {
            assert!(!*sent);
            *sent = true;
        }
        assert!(matches!(w.find(1), Some(Found::Entry { sent: true, .. })));
        assert_eq!(kind(&mut w, 2), "none");
    }
}
