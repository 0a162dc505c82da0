//! A table of values computed once for a build and shared read-only
//! between the connections that ask for them: the deltas of
//! [`super::memo`] and the file lists of [`super::flist::shared`].
//!
//! Owns the entries, their memory, the LRU order, who computes what and how
//! long the others wait, and which tree of each build the entries were made
//! from. It knows nothing of what the values are: the caller names a key,
//! computes on [`Claim::Produce`] and hands the value back with its memory.
//!
//! - The first claim of a key produces it; identical claims meanwhile wait
//!   for it (at most the table's wait limit, calling back between slices of
//!   [`WAIT_SLICE`] so a waiting connection can keep its client alive), then
//!   produce for themselves. A producer that fails (is dropped unsettled)
//!   lets one waiter take over; nobody waits on a dead producer.
//! - Entries are counted by the memory their producer declares and evicted
//!   least recently used first to stay under the limit; an entry larger
//!   than `limit / share` is handed to its waiters and not kept.
//! - [`Table::drop_build`] forgets a build whose tree left the cache;
//!   [`Table::note_tree`] does the same when a build shows another tree
//!   than before (replaced or evicted by another process).

use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a waiting claim calls back (a keep-alive to its client).
pub(crate) const WAIT_SLICE: Duration = Duration::from_secs(1);

/// What an entry costs besides its declared memory: the key, the map and
/// LRU slots.
pub(crate) const ENTRY_OVERHEAD: u64 = 256;

/// A key names its build, so that a build's entries can be dropped.
pub(crate) trait BuildKey: Eq + Hash {
    fn build(&self) -> &str;
}

/// Which tree a build's entries come from: its root directory's device,
/// inode and change time. A refetched tree is a new directory, and the
/// change time tells it apart even when its inode number is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TreeId {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl TreeId {
    pub(crate) fn of(root: &Path) -> io::Result<TreeId> {
        let m = std::fs::symlink_metadata(root)?;
        Ok(TreeId {
            dev: m.dev(),
            ino: m.ino(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        })
    }

    #[cfg(test)]
    pub(crate) fn fake(ino: u64) -> TreeId {
        TreeId {
            dev: 0,
            ino,
            ctime: 0,
            ctime_nsec: 0,
        }
    }
}

/// What a table did, for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Entries held now, and their memory.
    pub(crate) held: u64,
    pub(crate) bytes: u64,
    /// Claims answered with a value another connection produced
    /// (including after waiting).
    pub(crate) hits: u64,
    /// Values produced and handed over (kept or, too large, not).
    pub(crate) built: u64,
    /// Entries evicted for room, and dropped with their build.
    pub(crate) evicted: u64,
    pub(crate) dropped: u64,
}

enum Progress<V> {
    Producing,
    Ready(Arc<V>),
    Failed,
}

struct Pending<V> {
    progress: Mutex<Progress<V>>,
    changed: Condvar,
}

impl<V> Pending<V> {
    fn settle(&self, to: Progress<V>) {
        *self.progress.lock() = to;
        self.changed.notify_all();
    }
}

enum State<V> {
    Producing(Arc<Pending<V>>),
    Ready {
        value: Arc<V>,
        /// Position in the LRU order.
        tick: u64,
        memory: u64,
    },
}

struct Inner<K, V> {
    entries: HashMap<Arc<K>, State<V>>,
    trees: HashMap<Box<str>, TreeId>,
    lru: BTreeMap<u64, Arc<K>>,
    tick: u64,
    counts: Counts,
}

impl<K: BuildKey, V> Inner<K, V> {
    fn remove(&mut self, key: &K) -> bool {
        match self.entries.remove(key) {
            Some(State::Ready { tick, memory, .. }) => {
                self.lru.remove(&tick);
                self.counts.bytes -= memory;
                self.counts.held -= 1;
                true
            }
            _ => false,
        }
    }

    fn drop_build(&mut self, build: &str) -> u64 {
        let keys: Vec<Arc<K>> = self
            .entries
            .keys()
            .filter(|k| k.build() == build)
            .cloned()
            .collect();
        let mut dropped = 0;
        for key in keys {
            if self.remove(&key) {
                dropped += 1;
            }
        }
        self.counts.dropped += dropped;
        dropped
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, oldest)) = self.lru.pop_first() else {
            return false;
        };
        if let Some(State::Ready { memory, .. }) = self.entries.remove(&oldest) {
            self.counts.bytes -= memory;
            self.counts.held -= 1;
            self.counts.evicted += 1;
        }
        true
    }
}

/// Values shared between connections; see the module comment.
pub(crate) struct Table<K, V> {
    limit: u64,
    /// One entry may take at most `limit / share`.
    share: u64,
    wait: Duration,
    inner: Mutex<Inner<K, V>>,
}

/// What a claim gets.
pub(crate) enum Claim<'t, K: BuildKey, V> {
    /// Another connection produced it.
    Ready(Arc<V>),
    /// Produce it; with the producer, hand it to the others.
    Produce(Option<Producer<'t, K, V>>),
}

impl<K: BuildKey, V> Table<K, V> {
    /// A table holding at most `limit` bytes, one entry at most
    /// `limit / share`, whose identical claims wait `wait` for each other.
    pub(crate) fn new(limit: u64, share: u64, wait: Duration) -> Table<K, V> {
        Table {
            limit,
            share: share.max(1),
            wait,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                trees: HashMap::new(),
                lru: BTreeMap::new(),
                tick: 0,
                counts: Counts::default(),
            }),
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        self.inner.lock().counts
    }

    /// The most one entry may take.
    pub(crate) fn entry_limit(&self) -> u64 {
        self.limit / self.share
    }

    /// Forgets every entry of `build` (its tree left the cache); returns
    /// how many were held. Productions under way finish for their waiters
    /// and are not kept.
    pub(crate) fn drop_build(&self, build: &str) -> u64 {
        let mut t = self.inner.lock();
        t.trees.remove(build);
        t.drop_build(build)
    }

    /// Notes that `build` is served from `tree`; a tree other than the one
    /// seen before drops the build's entries (returns how many).
    pub(crate) fn note_tree(&self, build: &str, tree: TreeId) -> u64 {
        let mut t = self.inner.lock();
        match t.trees.insert(build.into(), tree) {
            Some(old) if old != tree => t.drop_build(build),
            _ => 0,
        }
    }

    /// The value of `key`: held, produced meanwhile by another claim, or
    /// for the caller to produce. `between` runs between slices of a wait;
    /// its error ends the claim.
    pub(crate) fn claim(
        &self,
        key: K,
        between: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<Claim<'_, K, V>> {
        let key = Arc::new(key);
        let deadline = Instant::now() + self.wait;
        loop {
            let pending = {
                let mut t = self.inner.lock();
                let t = &mut *t;
                match t.entries.get_mut(&key) {
                    Some(State::Ready { value, tick, .. }) => {
                        let value = Arc::clone(value);
                        t.lru.remove(tick);
                        t.tick += 1;
                        *tick = t.tick;
                        t.lru.insert(t.tick, Arc::clone(&key));
                        t.counts.hits += 1;
                        return Ok(Claim::Ready(value));
                    }
                    Some(State::Producing(p)) => Arc::clone(p),
                    None => {
                        let pending = Arc::new(Pending {
                            progress: Mutex::new(Progress::Producing),
                            changed: Condvar::new(),
                        });
                        t.entries
                            .insert(Arc::clone(&key), State::Producing(Arc::clone(&pending)));
                        return Ok(Claim::Produce(Some(Producer {
                            table: self,
                            key,
                            pending,
                            settled: false,
                        })));
                    }
                }
            };
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Claim::Produce(None));
                }
                {
                    let mut progress = pending.progress.lock();
                    if matches!(*progress, Progress::Producing) {
                        let until = deadline.min(now + WAIT_SLICE);
                        let _ = pending.changed.wait_until(&mut progress, until);
                    }
                    match &*progress {
                        Progress::Producing => {}
                        Progress::Ready(value) => {
                            let value = Arc::clone(value);
                            drop(progress);
                            self.inner.lock().counts.hits += 1;
                            return Ok(Claim::Ready(value));
                        }
                        // Gone from the table: claim again (produce, or
                        // wait for whoever got there first).
                        Progress::Failed => break,
                    }
                }
                between()?;
            }
        }
    }
}

/// The right and duty to produce one key: settled by [`Producer::keep`];
/// dropped unsettled (a failure), it lets the waiters produce for
/// themselves.
pub(crate) struct Producer<'t, K: BuildKey, V> {
    table: &'t Table<K, V>,
    key: Arc<K>,
    pending: Arc<Pending<V>>,
    settled: bool,
}

impl<K: BuildKey, V> Producer<'_, K, V> {
    /// Hands `value` to the waiters, and keeps it unless it takes more
    /// than an entry may or its build was dropped meanwhile. `memory` is
    /// what the value holds.
    pub(crate) fn keep(mut self, value: Arc<V>, memory: u64) {
        self.settled = true;
        self.pending.settle(Progress::Ready(Arc::clone(&value)));
        let memory = memory + ENTRY_OVERHEAD;
        let table = self.table;
        let mut t = table.inner.lock();
        t.counts.built += 1;
        let ours = matches!(t.entries.get(&self.key),
            Some(State::Producing(p)) if Arc::ptr_eq(p, &self.pending));
        if !ours {
            return;
        }
        if memory > table.entry_limit() {
            t.entries.remove(&self.key);
            return;
        }
        while t.counts.bytes + memory > table.limit && t.evict_oldest() {}
        t.tick += 1;
        let tick = t.tick;
        t.lru.insert(tick, Arc::clone(&self.key));
        t.entries.insert(
            Arc::clone(&self.key),
            State::Ready {
                value,
                tick,
                memory,
            },
        );
        t.counts.bytes += memory;
        t.counts.held += 1;
    }
}

impl<K: BuildKey, V> Drop for Producer<'_, K, V> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut t = self.table.inner.lock();
        if matches!(t.entries.get(&self.key),
            Some(State::Producing(p)) if Arc::ptr_eq(p, &self.pending))
        {
            t.entries.remove(&self.key);
        }
        drop(t);
        self.pending.settle(Progress::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(PartialEq, Eq, Hash, Debug, Clone)]
    struct Key(&'static str, u32);

    impl BuildKey for Key {
        fn build(&self) -> &str {
            self.0
        }
    }

    fn nothing() -> io::Result<()> {
        Ok(())
    }

    /// Produces `key` with `memory` bytes if nobody holds it; whether it
    /// was a hit.
    fn get(t: &Table<Key, u32>, key: Key, memory: u64) -> bool {
        match t.claim(key.clone(), &mut nothing).unwrap() {
            Claim::Ready(v) => {
                assert_eq!(*v, key.1);
                true
            }
            Claim::Produce(Some(p)) => {
                p.keep(Arc::new(key.1), memory);
                false
            }
            Claim::Produce(None) => panic!("nobody produces"),
        }
    }

    #[test]
    fn the_byte_limit_evicts_the_least_recently_used() {
        let entry = 1000 + ENTRY_OVERHEAD;
        // Room for three entries.
        let t: Table<Key, u32> = Table::new(3 * entry + 10, 1, WAIT_SLICE);
        for n in 0..3 {
            assert!(!get(&t, Key("b", n), 1000));
        }
        assert!(get(&t, Key("b", 0), 1000), "held");
        // A fourth evicts the least recently used: 1 (0 was just used).
        assert!(!get(&t, Key("b", 3), 1000));
        let c = t.counts();
        assert_eq!((c.held, c.bytes, c.evicted), (3, 3 * entry, 1));
        assert!(get(&t, Key("b", 0), 1000));
        assert!(get(&t, Key("b", 2), 1000));
        assert!(get(&t, Key("b", 3), 1000));
        assert!(!get(&t, Key("b", 1), 1000), "the oldest went");
        assert!(t.counts().bytes <= 3 * entry + 10);
    }

    #[test]
    fn an_entry_beyond_its_share_is_handed_over_not_kept() {
        let t: Table<Key, u32> = Table::new(10_000, 4, WAIT_SLICE);
        assert!(!get(&t, Key("b", 1), 3000));
        assert_eq!(t.counts().held, 0);
        assert_eq!(t.counts().built, 1);
        assert!(!get(&t, Key("b", 1), 1000));
        assert!(get(&t, Key("b", 1), 1000));
    }

    #[test]
    fn a_build_and_a_new_tree_drop_their_entries() {
        let t: Table<Key, u32> = Table::new(1 << 20, 1, WAIT_SLICE);
        get(&t, Key("a", 1), 10);
        get(&t, Key("a", 2), 10);
        get(&t, Key("b", 1), 10);
        assert_eq!(t.note_tree("a", TreeId::fake(1)), 0);
        assert_eq!(t.note_tree("a", TreeId::fake(1)), 0);
        assert_eq!(t.note_tree("a", TreeId::fake(2)), 2);
        assert_eq!(t.drop_build("b"), 1);
        let c = t.counts();
        assert_eq!((c.held, c.bytes, c.dropped), (0, 0, 3));
    }

    #[test]
    fn waiters_get_the_value_and_a_failure_hangs_nobody() {
        let t: Table<Key, u32> = Table::new(1 << 20, 1, Duration::from_secs(60));
        let Claim::Produce(Some(p)) = t.claim(Key("b", 7), &mut nothing).unwrap() else {
            panic!("the first claim produces")
        };
        std::thread::scope(|s| {
            let waiters: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| match t.claim(Key("b", 7), &mut nothing).unwrap() {
                        Claim::Ready(v) => *v,
                        Claim::Produce(_) => 0,
                    })
                })
                .collect();
            while Arc::strong_count(&p.pending) < 6 {
                std::thread::yield_now();
            }
            p.keep(Arc::new(7), 10);
            for w in waiters {
                assert_eq!(w.join().unwrap(), 7);
            }
        });
        assert_eq!(t.counts().hits, 4);
        // A producer that fails: one waiter takes over.
        let Claim::Produce(Some(p)) = t.claim(Key("b", 8), &mut nothing).unwrap() else {
            panic!("the first claim produces")
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                matches!(
                    t.claim(Key("b", 8), &mut nothing).unwrap(),
                    Claim::Produce(Some(_))
                )
            });
            while Arc::strong_count(&p.pending) < 3 {
                std::thread::yield_now();
            }
            drop(p);
            assert!(waiter.join().unwrap());
        });
    }

    #[test]
    fn a_waiter_gives_up_after_the_limit_and_calls_back_meanwhile() {
        let t: Table<Key, u32> = Table::new(1 << 20, 1, Duration::from_millis(1500));
        let Claim::Produce(Some(_p)) = t.claim(Key("b", 1), &mut nothing).unwrap() else {
            panic!("the first claim produces")
        };
        let mut calls = 0;
        let started = Instant::now();
        let got = t
            .claim(Key("b", 1), &mut || {
                calls += 1;
                Ok(())
            })
            .unwrap();
        assert!(matches!(got, Claim::Produce(None)));
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert!(calls >= 1);
        // An error from the callback ends the wait.
        let err = t.claim(Key("b", 1), &mut || Err(io::Error::other("gone")));
        assert!(err.is_err());
    }
}
