//! File lists of builds, built once and shared read-only between the
//! connections that pull the same build with the same list-shaping
//! options: a classroom of laptops asking for one build walks its tree
//! once, not once per laptop.
//!
//! Owns what a shared list is ([`Built`]: the sorted list, the order it
//! was built in, what building it reported), its key, and one pull's use
//! of the daemon's table ([`PullShare`]); the table itself (memory, LRU,
//! waiting, dropping a build) is [`crate::protocol::share`].
//!
//! - The key: the build, its tree ([`TreeId`]), and the shape of the pull:
//!   SHA-256 over the protocol, whether the pull recurses incrementally,
//!   the module's name and rules (their generation), every option that
//!   shapes the list ([`Options::list_shape`]), the seed when `-c` puts
//!   file sums in the list, the client's filter rules as sent and the
//!   `--files-from` names; then which list: the whole list, or one
//!   directory's list of an incremental pull (its transfer root, name, and
//!   whether its contents are listed).
//! - What building reported (errors, vanished files, skipped names, with
//!   their I/O-error bits in the list) is recorded with the list and
//!   replayed to each connection before the list goes out, where building
//!   it would have sent them. A build that reports more than
//!   [`MAX_MESSAGE_BYTES`] sends them as it goes and is not shared; a
//!   build that fails is not shared (each connection then fails on its
//!   own).
//! - Incremental recursion: the first list (the top directory's names) is
//!   built by each connection, which so keeps its own filter scopes; every
//!   later directory's list is shared, keyed by the directory. Each
//!   connection walks the directories itself (its numbering and pacing
//!   are its own) and takes each list from the table or builds it; lists
//!   are held by reference, so a connection holds no more than without
//!   sharing. A list taken from the table leaves the connection's filters
//!   as building it would (its transfer root set).
//! - Only builds share: a build's tree never changes under its identity,
//!   a static module's may.

use super::{Deferred, FileList, Reporter};
use crate::protocol::io::MsgTag;
use crate::protocol::options::Options;
use crate::protocol::share::{BuildKey, Claim, Counts, Table, TreeId};
use sha2::{Digest as _, Sha256};
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The memory the daemon's shared lists may take. A list of 100,000
/// entries takes about 12 MiB.
pub(crate) const LISTS_MAX_BYTES: u64 = 64 << 20;

/// One list may take at most this fraction of [`LISTS_MAX_BYTES`] (a
/// half); a larger one is handed to the connections waiting for it and
/// not kept.
pub(crate) const LIST_SHARE: u64 = 2;

/// How long a connection waits for another to build the list it needs
/// before it builds its own. Building is bounded by the disk, not by any
/// client, and a waiter keeps its client alive, so the wait is long: with
/// `-c` the whole build is read, which every waiter would otherwise do
/// again at the same time.
pub(crate) const LIST_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// The most message text kept with one list; beyond it the messages are
/// sent as they come and the list is not shared.
pub(crate) const MAX_MESSAGE_BYTES: u64 = 256 << 10;

/// The daemon's shared lists: at most [`LISTS_MAX_BYTES`], one list at
/// most a [`LIST_SHARE`]th of it, waits of at most [`LIST_WAIT_LIMIT`].
pub struct SharedLists {
    table: Table<ListKey, Built>,
}

impl SharedLists {
    pub(crate) fn new() -> SharedLists {
        SharedLists {
            table: Table::new(LISTS_MAX_BYTES, LIST_SHARE, LIST_WAIT_LIMIT),
        }
    }

    /// The counters now.
    pub(crate) fn counts(&self) -> Counts {
        self.table.counts()
    }

    /// Forgets every list of `build` (its tree left the cache); returns
    /// how many went.
    pub(crate) fn drop_build(&self, build: &str) -> u64 {
        self.table.drop_build(build)
    }
}

/// Which list of a pull.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) enum Which {
    /// The whole list of a pull without incremental recursion.
    Whole,
    /// One directory's list of an incremental pull, with its parts (a
    /// directory named under several roots gets one list for all).
    Dir {
        name: Box<[u8]>,
        parts: Box<[PartKey]>,
    },
}

/// One part of a directory's list, as it decides the list: its transfer
/// root, whether the directory's contents are listed, and the `-R` names
/// deferred to it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct PartKey {
    pub(super) root: Box<[u8]>,
    pub(super) content: bool,
    pub(super) deferred: Box<[Deferred]>,
}

/// Everything that decides a list; see the module comment.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ListKey {
    build: Arc<str>,
    tree: TreeId,
    shape: [u8; 32],
    which: Which,
}

impl BuildKey for ListKey {
    fn build(&self) -> &str {
        &self.build
    }
}

/// One message building reported.
struct Message {
    tag: MsgTag,
    text: Box<str>,
}

/// A list as built: sorted, the order it was built in (for the whole
/// list, which goes out in that order), and what building it reported.
pub(crate) struct Built {
    pub(crate) list: Arc<FileList>,
    pub(crate) walk_order: Option<Box<[u32]>>,
    messages: Box<[Message]>,
}

impl Built {
    /// A list built and sorted (`walk_order` from
    /// [`FileList::sort_keeping_walk_order`]), with nothing to replay.
    pub(crate) fn new(list: FileList, walk_order: Option<Box<[u32]>>) -> Built {
        Built {
            list: Arc::new(list),
            walk_order,
            messages: Box::new([]),
        }
    }

    fn memory(&self) -> u64 {
        let messages: usize = self.messages.iter().map(|m| m.text.len() + 24).sum();
        let order = self.walk_order.as_ref().map_or(0, |o| o.len() * 4);
        self.list.memory() + (messages + order) as u64
    }

    fn replay(&self, reporter: &mut dyn Reporter) -> io::Result<()> {
        for m in self.messages.iter() {
            reporter.report(m.tag, &m.text)?;
        }
        Ok(())
    }
}

/// Which build a connection pulls, with the daemon's shared lists.
#[derive(Clone)]
pub(crate) struct BuildLists {
    table: Arc<SharedLists>,
    build: Arc<str>,
    tree: TreeId,
    /// The generation of the module's rules (a reload makes new ones).
    rules: u64,
}

impl BuildLists {
    /// The build `name` served from `tree`, whose module rules are of
    /// generation `rules`. A tree other than the one seen before drops the
    /// build's lists.
    pub(crate) fn for_build(
        table: &Arc<SharedLists>,
        name: &str,
        tree: TreeId,
        rules: u64,
    ) -> BuildLists {
        let dropped = table.table.note_tree(name, tree);
        if dropped > 0 {
            log::info!("shared lists: dropped {dropped} lists of build {name}: a new tree");
        }
        BuildLists {
            table: Arc::clone(table),
            build: name.into(),
            tree,
            rules,
        }
    }

    /// Starts the shape of one pull (see [`Shape`]).
    pub(crate) fn shape(&self, opts: &Options, protocol: u32, seed: u32) -> Shape {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(&protocol.to_le_bytes());
        field(self.build.as_bytes());
        field(&self.rules.to_le_bytes());
        field(&opts.list_shape());
        if opts.checksum {
            field(&seed.to_le_bytes());
        }
        Shape {
            lists: self.clone(),
            h,
        }
    }
}

/// The shape of one pull being gathered: what the client sends after its
/// options (filter rules, `--files-from` names) adds to it.
pub(crate) struct Shape {
    lists: BuildLists,
    h: Sha256,
}

impl Shape {
    /// Adds one piece (a rule as sent, a name); pieces are length-prefixed,
    /// so no two sequences of them run together.
    pub(crate) fn add(&mut self, piece: &[u8]) {
        self.h.update((piece.len() as u64).to_le_bytes());
        self.h.update(piece);
    }

    /// The shape complete, for a pull with or without incremental
    /// recursion.
    pub(crate) fn finish(mut self, incremental: bool) -> PullShare {
        self.add(&[u8::from(incremental)]);
        PullShare {
            lists: self.lists,
            shape: self.h.finalize().into(),
        }
    }
}

/// One pull's use of the shared lists.
pub(crate) struct PullShare {
    lists: BuildLists,
    shape: [u8; 32],
}

impl PullShare {
    fn key(&self, which: Which) -> ListKey {
        ListKey {
            build: Arc::clone(&self.lists.build),
            tree: self.lists.tree,
            shape: self.shape,
            which,
        }
    }
}

/// The list `which` of a pull: from the table when another connection
/// built it (its messages replayed to `reporter`), else built by `build`
/// (reporting through the reporter it is given) and, with `share`, handed
/// to the others. Without `share` it is simply built.
pub(crate) fn obtain(
    share: Option<&PullShare>,
    which: Which,
    reporter: &mut dyn Reporter,
    build: impl FnOnce(&mut dyn Reporter) -> io::Result<Built>,
) -> io::Result<Arc<Built>> {
    let Some(share) = share else {
        return build(reporter).map(Arc::new);
    };
    let table = &share.lists.table.table;
    let claim = table.claim(share.key(which), &mut || reporter.tick())?;
    let producer = match claim {
        Claim::Ready(built) => {
            built.replay(reporter)?;
            return Ok(built);
        }
        Claim::Produce(None) => return build(reporter).map(Arc::new),
        Claim::Produce(Some(producer)) => producer,
    };
    let mut rec = Recorder {
        out: reporter,
        messages: Vec::new(),
        bytes: 0,
        overflow: false,
    };
    let built = build(&mut rec);
    let Recorder {
        out: reporter,
        messages,
        overflow,
        ..
    } = rec;
    let mut built = match built {
        Ok(b) => b,
        Err(e) => {
            // Said before the failure, as building without sharing would.
            for m in &messages {
                reporter.report(m.tag, &m.text)?;
            }
            return Err(e);
        }
    };
    built.messages = messages.into();
    let built = Arc::new(built);
    if overflow {
        drop(producer);
    } else {
        let memory = built.memory();
        producer.keep(Arc::clone(&built), memory);
    }
    built.replay(reporter)?;
    Ok(built)
}

/// A reporter that keeps the messages for the list (the producer sends
/// them with the list, as everyone else), up to [`MAX_MESSAGE_BYTES`]:
/// then it sends what it kept and whatever follows, and the list is not
/// shared.
struct Recorder<'r> {
    out: &'r mut dyn Reporter,
    messages: Vec<Message>,
    bytes: u64,
    overflow: bool,
}

impl Reporter for Recorder<'_> {
    fn report(&mut self, tag: MsgTag, text: &str) -> io::Result<()> {
        if !self.overflow {
            self.bytes += text.len() as u64;
            if self.bytes <= MAX_MESSAGE_BYTES {
                self.messages.push(Message {
                    tag,
                    text: text.into(),
                });
                return Ok(());
            }
            self.overflow = true;
            for m in std::mem::take(&mut self.messages) {
                self.out.report(m.tag, &m.text)?;
            }
        }
        self.out.report(tag, text)
    }

    fn tick(&mut self) -> io::Result<()> {
        self.out.tick()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flist::tests::{options, Messages};

    fn share(table: &Arc<SharedLists>, args: &[&str], rules: &[&str]) -> PullShare {
        let lists = BuildLists::for_build(table, "b", TreeId::fake(1), 0);
        let mut shape = lists.shape(&options(args), 31, 7);
        for r in rules {
            shape.add(r.as_bytes());
        }
        shape.finish(false)
    }

    /// Obtains the whole list of a pull with `args` through the table:
    /// building it reports one message. Returns whether it was built here
    /// and the messages this pull heard.
    fn pull(table: &Arc<SharedLists>, args: &[&str]) -> (bool, Vec<String>) {
        let mut messages = Messages::default();
        let mut built_here = false;
        obtain(
            Some(&share(table, args, &[])),
            Which::Whole,
            &mut messages,
            |rep| {
                built_here = true;
                rep.report(MsgTag::Info, "file has vanished: \"x\" (in b)\n")?;
                let mut list = FileList::empty(31);
                list.io_error = super::super::IOERR_VANISHED;
                Ok(Built::new(list, None))
            },
        )
        .unwrap();
        (built_here, messages.0)
    }

    #[test]
    fn a_shared_list_is_built_once_and_its_messages_reach_everyone() {
        let table = Arc::new(SharedLists::new());
        let vanished = vec!["file has vanished: \"x\" (in b)\n".to_string()];
        assert_eq!(pull(&table, &["-r"]), (true, vanished.clone()));
        assert_eq!(pull(&table, &["-r"]), (false, vanished.clone()));
        let c = table.counts();
        assert_eq!((c.built, c.hits, c.held), (1, 1, 1));
        // -c puts sums in the list: its own list.
        assert_eq!(pull(&table, &["-r", "-c"]), (true, vanished));
        assert_eq!(table.counts().built, 2);
        assert!(table.counts().bytes > 0);
        assert_eq!(table.drop_build("b"), 2);
        assert_eq!(table.counts().bytes, 0);
    }

    #[test]
    fn list_shaping_options_and_rules_make_other_keys() {
        let table = Arc::new(SharedLists::new());
        let key = |args: &[&str], rules: &[&str]| share(&table, args, rules).key(Which::Whole);
        let base = key(&["-r"], &[]);
        assert_eq!(base, key(&["-r"], &[]));
        // The transfer's own business does not.
        assert_eq!(base, key(&["-r", "-z", "--timeout=9", "-v"], &[]));
        for other in [
            key(&["-r", "-c"], &[]),
            key(&["-r", "-H"], &[]),
            key(&["-r", "-L"], &[]),
            key(&["-r", "-x"], &[]),
            key(&["-r", "-U"], &[]),
            key(&["-d"], &[]),
            key(&["-r"], &["- *.o"]),
        ] {
            assert_ne!(base, other);
        }
        // Rules are length-prefixed: one rule is not two.
        assert_ne!(key(&["-r"], &["- a", "b"]), key(&["-r"], &["- ab"]));
    }

    #[test]
    fn recorded_messages_past_the_limit_go_out_and_the_list_is_not_kept() {
        let table = Arc::new(SharedLists::new());
        let s = share(&table, &["-r"], &[]);
        let mut out = Messages::default();
        let line = "x".repeat(1000);
        let many = (MAX_MESSAGE_BYTES / 1000 + 2) as usize;
        let built = obtain(Some(&s), Which::Whole, &mut out, |rep| {
            for _ in 0..many {
                rep.report(MsgTag::Error, &line)?;
            }
            Ok(Built::new(FileList::empty(31), None))
        })
        .unwrap();
        assert_eq!(out.0.len(), many);
        assert!(built.messages.is_empty());
        assert_eq!(table.counts().held, 0);
        // Under the limit: kept, and the builder hears them once.
        let mut out = Messages::default();
        obtain(Some(&s), Which::Whole, &mut out, |rep| {
            rep.report(MsgTag::Info, "one\n")?;
            Ok(Built::new(FileList::empty(31), None))
        })
        .unwrap();
        assert_eq!(out.0, ["one\n"]);
        let mut again = Messages::default();
        obtain(Some(&s), Which::Whole, &mut again, |_| {
            panic!("built twice")
        })
        .unwrap();
        assert_eq!(again.0, ["one\n"]);
    }
}
