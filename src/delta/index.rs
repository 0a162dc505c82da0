//! The sender's lookup table from a weak sum to the generator's blocks with
//! that sum, and the bounded walks over them that rsync/match.c:hash_search
//! performs (its `hash_table` and `chain` links, rebuilt per file).
//!
//! Owns the table layout and the order and limits of candidate walks. It must
//! not read file data or compute sums: the caller's `accept` closure decides
//! whether a candidate block matches.
//!
//! Semantics kept from rsync 3.5.0, so that the same blocks match as there:
//! - candidates with the searched weak sum are tried from the highest block
//!   index to the lowest (rsync prepends to its chains in index order);
//! - at most [`MAX_CANDIDATES`] of them are tried per offset (rsync: match.c
//!   hash_search, its MAX_CHAIN_LEN); entries with other weak sums never count;
//! - in-place mode drops, for good, blocks that lie behind the current offset
//!   and have not been matched at their own offset, before counting.
//!
//! Layout: blocks sorted by (bucket, weak sum, descending index) in one array,
//! with a power-of-two bucket table of start positions over it, so all blocks
//! sharing a weak sum are contiguous. In front of it sits a Bloom filter
//! (one bit per weak sum, 128 bits per block) small enough to stay in the
//! CPU cache: almost every offset of a changed file is ruled out by one
//! multiply, one load and a bit test, without touching the table. Runs of identical blocks (same weak sum, length and strong sum,
//! such as the zero blocks of a disk image) carry their run length, so a
//! failed comparison skips the whole run at once while still counting every
//! block in it against the limit, as rsync does.

use super::sums::BlockSums;
use std::cmp::Reverse;

/// How many blocks sharing one weak sum are tried at one offset before the
/// offset is given up as unmatched; rsync 3.5.0's MAX_CHAIN_LEN.
pub(crate) const MAX_CANDIDATES: usize = 1024;

/// Buckets per block, as a power of two: twice as many keeps buckets short.
const BUCKETS_PER_BLOCK_LOG2: u32 = 1;
/// The smallest table, so that tiny files do not hash everything together.
const MIN_TABLE_LOG2: u32 = 4;
/// Fibonacci hashing multiplier (2^32 / golden ratio), spreading weak sums
/// whose low halves are alike over the buckets.
const HASH_MUL: u32 = 0x9e37_79b1;
/// Filter bits per block, as a power of two: 128, so that a weak sum no
/// block has passes the filter (one bit per sum) about once in 128 tries.
const FILTER_BITS_PER_BLOCK_LOG2: u32 = 7;
/// Bits per filter word.
const WORD_BITS_LOG2: u32 = 6;
/// Smallest filter: 8 words.
const MIN_FILTER_WORDS_LOG2: u32 = 3;
/// Largest filter: 2^15 words, 256 KiB, within a second-level cache.
const MAX_FILTER_WORDS_LOG2: u32 = 15;
/// 64-bit Fibonacci multiplier for the filter's hash: the product's top
/// bits depend on every bit of the weak sum and pick the filter's bit.
const FILTER_MUL: u64 = 0x9e37_79b9_7f4a_7c15;
/// Buckets at most this full are scanned linearly; fuller ones (only crafted
/// sums make them) are binary-searched, so a lookup never goes linear in them.
const LINEAR_SCAN_MAX: usize = 8;
/// The end of an in-place chain.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    weak: u32,
    block: u32,
}

/// Blocks by weak sum; reused from file to file so its vectors are allocated
/// once per connection.
#[derive(Debug, Default)]
pub(crate) struct BlockIndex {
    /// `32 - log2(table size)`.
    shift: u32,
    /// Each weak sum sets one bit.
    filter: Vec<u64>,
    /// `64 - log2(filter bits)`: the hash's top bits pick the bit.
    filter_shift: u32,
    /// `starts[b]..starts[b + 1]` are bucket `b`'s positions in `entries`.
    starts: Vec<u32>,
    entries: Vec<Entry>,
    /// Per position: how many entries from here on are identical blocks.
    runs: Vec<u32>,
    /// Per block: whether a walk over its weak sum reaches it within
    /// [`MAX_CANDIDATES`], so that finding it directly gives what a walk would.
    reachable: Vec<bool>,
    /// In-place mode: per group start, the first position still linked.
    heads: Vec<u32>,
    /// In-place mode: per position, the next linked position of its group.
    next: Vec<u32>,
}

impl BlockIndex {
    /// Index `sums`; with `inplace` also set up the links that in-place
    /// walks prune.
    pub(crate) fn build(&mut self, sums: &BlockSums, inplace: bool) {
        let count = sums.count();
        let bits = table_bits(count);
        self.shift = 32 - bits;
        self.fill_filter(sums);
        self.bucket_sort(sums, 1usize << bits);
        self.sort_buckets();
        self.mark_runs(sums);
        self.mark_reachable();
        if inplace {
            self.link_groups();
        }
    }

    #[inline(always)]
    fn bucket(&self, weak: u32) -> usize {
        (weak.wrapping_mul(HASH_MUL) >> self.shift) as usize
    }

    /// The filter, to check offsets quickly before [`contains`](Self::contains).
    #[inline]
    pub(crate) fn filter(&self) -> Filter<'_> {
        Filter {
            words: &self.filter,
            shift: self.filter_shift,
        }
    }

    /// Whether some block has this weak sum. Out of line: the hot loop only
    /// gets here for the few sums that pass the filter.
    #[cold]
    #[inline(never)]
    pub(crate) fn contains(&self, weak: u32) -> bool {
        self.group(weak).is_some()
    }

    /// Try blocks with weak sum `weak` in rsync's order, at most
    /// [`MAX_CANDIDATES`] of them, until `accept` takes one; return it.
    pub(crate) fn find(&self, weak: u32, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let (start, bucket_end) = self.group(weak)?;
        let stop = bucket_end.min(start + MAX_CANDIDATES);
        let mut pos = start;
        while pos < stop && self.entries[pos].weak == weak {
            let block = self.entries[pos].block;
            if accept(block) {
                return Some(block);
            }
            pos += self.runs[pos] as usize;
        }
        None
    }

    /// [`find`](Self::find) for in-place updates: blocks for which `usable`
    /// is false are unlinked for good and not counted, as rsync does.
    pub(crate) fn find_inplace(
        &mut self,
        weak: u32,
        usable: impl Fn(u32) -> bool,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let (start, _) = self.group(weak)?;
        let mut prev = NIL;
        let mut cur = self.heads[start];
        let mut tried = 0usize;
        while cur != NIL {
            let pos = cur as usize;
            let block = self.entries[pos].block;
            let next = self.next[pos];
            if !usable(block) {
                if prev == NIL {
                    self.heads[start] = next;
                } else {
                    self.next[prev as usize] = next;
                }
                cur = next;
                continue;
            }
            tried += 1;
            if tried > MAX_CANDIDATES {
                return None;
            }
            if accept(block) {
                return Some(block);
            }
            prev = cur;
            cur = next;
        }
        None
    }

    /// The first position of the blocks with weak sum `weak`, and the end of
    /// their bucket.
    fn group(&self, weak: u32) -> Option<(usize, usize)> {
        let b = self.bucket(weak);
        let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let bucket = &self.entries[lo..hi];
        let at = if bucket.len() <= LINEAR_SCAN_MAX {
            bucket.iter().position(|e| e.weak == weak)?
        } else {
            let at = bucket.partition_point(|e| e.weak < weak);
            if at == bucket.len() || bucket[at].weak != weak {
                return None;
            }
            at
        };
        Some((lo + at, hi))
    }

    fn fill_filter(&mut self, sums: &BlockSums) {
        let words = (ceil_log2(sums.count()) + FILTER_BITS_PER_BLOCK_LOG2)
            .saturating_sub(WORD_BITS_LOG2)
            .clamp(MIN_FILTER_WORDS_LOG2, MAX_FILTER_WORDS_LOG2);
        self.filter.clear();
        self.filter.resize(1 << words, 0);
        self.filter_shift = 64 - (words + WORD_BITS_LOG2);
        for i in 0..sums.count() {
            let (word, bit) = filter_slot(sums.weak(i), self.filter_shift);
            self.filter[word] |= 1 << bit;
        }
    }

    /// Counting sort of the blocks into buckets, descending index within each.
    fn bucket_sort(&mut self, sums: &BlockSums, table: usize) {
        let count = sums.count();
        self.starts.clear();
        self.starts.resize(table + 1, 0);
        for i in 0..count {
            let b = self.bucket(sums.weak(i));
            self.starts[b + 1] += 1;
        }
        for b in 0..table {
            self.starts[b + 1] += self.starts[b];
        }
        // Filling each bucket from its end with ascending indices leaves it in
        // descending order and moves every end back to its start.
        self.entries.clear();
        self.entries.resize(count, Entry::default());
        for i in 0..count {
            let weak = sums.weak(i);
            let b = self.bucket(weak);
            self.starts[b + 1] -= 1;
            let pos = self.starts[b + 1] as usize;
            self.entries[pos] = Entry {
                weak,
                block: i as u32,
            };
        }
        // Undo the shift by one that the decrementing fill left behind.
        for b in 0..table {
            self.starts[b] = self.starts[b + 1];
        }
        self.starts[table] = count as u32;
    }

    /// Within each bucket, group equal weak sums, keeping descending indices.
    fn sort_buckets(&mut self) {
        for b in 0..self.starts.len() - 1 {
            let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
            if hi - lo > 1 {
                self.entries[lo..hi].sort_unstable_by_key(|e| (e.weak, Reverse(e.block)));
            }
        }
    }

    fn mark_runs(&mut self, sums: &BlockSums) {
        let n = self.entries.len();
        self.runs.clear();
        self.runs.resize(n, 1);
        for pos in (0..n.saturating_sub(1)).rev() {
            let (a, b) = (self.entries[pos], self.entries[pos + 1]);
            if a.weak == b.weak && sums.same_block(a.block as usize, b.block as usize) {
                self.runs[pos] = self.runs[pos + 1] + 1;
            }
        }
    }

    /// Whether a walk over block `block`'s weak sum (without in-place
    /// pruning) is sure to accept a block with its sums: the walk reaches
    /// the run of identical blocks it belongs to before giving up.
    #[inline]
    pub(crate) fn reachable(&self, block: usize) -> bool {
        self.reachable[block]
    }

    fn mark_reachable(&mut self) {
        self.reachable.clear();
        self.reachable.resize(self.entries.len(), false);
        let (mut group_start, mut run_start) = (0, 0);
        for (pos, e) in self.entries.iter().enumerate() {
            if self.entries[group_start].weak != e.weak {
                group_start = pos;
            }
            if pos == 0 || self.runs[pos - 1] == 1 {
                run_start = pos;
            }
            // The walk looks at the first block of each run, counting every
            // block before it against the limit (`find`).
            self.reachable[e.block as usize] = run_start - group_start < MAX_CANDIDATES;
        }
    }

    fn link_groups(&mut self) {
        let n = self.entries.len();
        self.next.clear();
        self.next.resize(n, NIL);
        self.heads.clear();
        self.heads.resize(n, NIL);
        for pos in 0..n {
            let starts_group = pos == 0 || self.entries[pos - 1].weak != self.entries[pos].weak;
            if starts_group {
                self.heads[pos] = pos as u32;
            }
            if pos + 1 < n && self.entries[pos + 1].weak == self.entries[pos].weak {
                self.next[pos] = pos as u32 + 1;
            }
        }
    }
}

/// A one-bit-per-sum Bloom filter over the weak sums of the blocks: no
/// false negatives, few false positives, one multiply, shift and load per
/// offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Filter<'a> {
    words: &'a [u64],
    shift: u32,
}

impl Filter<'_> {
    /// False when no block has the weak sum `weak`.
    #[inline(always)]
    pub(crate) fn may_contain(self, weak: u32) -> bool {
        let (word, bit) = filter_slot(weak, self.shift);
        // SAFETY: `fill_filter` makes the filter 2^(64 - shift) bits long,
        // and `filter_slot` takes its bit number from the top 64 - shift bits
        // of a u64, so `word < len`; the hot loop keeps no bounds check
        // (`filter_slots_stay_inside` tests it).
        let bits = unsafe { *self.words.get_unchecked(word) };
        bits >> bit & 1 != 0
    }
}

/// The word and the bit in it that `weak` maps to in a filter of
/// 2^(64 - shift) bits.
#[inline(always)]
fn filter_slot(weak: u32, shift: u32) -> (usize, u32) {
    let n = u64::from(weak).wrapping_mul(FILTER_MUL) >> shift;
    ((n >> WORD_BITS_LOG2) as usize, (n & 63) as u32)
}

/// log2 of the bucket count for `count` blocks.
fn table_bits(count: usize) -> u32 {
    (ceil_log2(count) + BUCKETS_PER_BLOCK_LOG2).clamp(MIN_TABLE_LOG2, 32)
}

/// log2 of the smallest power of two not below `n` (0 for 0 and 1).
fn ceil_log2(n: usize) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_of(weaks: &[u32], strongs: &[u8]) -> BlockSums {
        let mut sums = BlockSums::new(4, 0, 1, weaks.len());
        for (w, s) in weaks.iter().zip(strongs) {
            sums.push(*w, &[*s]);
        }
        sums
    }

    fn all_candidates(index: &BlockIndex, weak: u32) -> Vec<u32> {
        let mut seen = Vec::new();
        index.find(weak, |b| {
            seen.push(b);
            false
        });
        seen
    }

    #[test]
    fn candidates_come_highest_index_first() {
        let sums = sums_of(&[7, 9, 7, 7, 9], &[1, 2, 3, 4, 5]);
        let mut index = BlockIndex::default();
        index.build(&sums, false);
        assert_eq!(all_candidates(&index, 7), vec![3, 2, 0]);
        assert_eq!(all_candidates(&index, 9), vec![4, 1]);
        assert_eq!(all_candidates(&index, 8), Vec::<u32>::new());
        assert!(index.contains(7) && index.contains(9) && !index.contains(8));
        assert!(index.filter().may_contain(7) && index.filter().may_contain(9));
        assert_eq!(index.find(7, |b| b == 2), Some(2));
    }

    #[test]
    fn identical_blocks_are_tried_once_per_run() {
        // Blocks 0..=5 are identical, 6 differs in its strong sum.
        let sums = sums_of(&[5; 7], &[1, 1, 1, 1, 1, 1, 2]);
        let mut index = BlockIndex::default();
        index.build(&sums, false);
        assert_eq!(all_candidates(&index, 5), vec![6, 5]);
    }

    #[test]
    fn the_walk_stops_after_max_candidates() {
        let n = MAX_CANDIDATES + 10;
        let weaks = vec![3u32; n];
        // All different, so no run skipping.
        let strongs: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let mut sums = BlockSums::new(4, 0, 2, n);
        for (i, w) in weaks.iter().enumerate() {
            sums.push(*w, &[strongs[i], (i >> 8) as u8]);
        }
        let mut index = BlockIndex::default();
        index.build(&sums, false);
        let seen = all_candidates(&index, 3);
        assert_eq!(seen.len(), MAX_CANDIDATES);
        assert_eq!(seen[0], n as u32 - 1);
        assert_eq!(*seen.last().unwrap(), (n - MAX_CANDIDATES) as u32);
        // A run of identical blocks is offered once: its first (highest) block
        // stands for all of them.
        let mut same = BlockSums::new(4, 0, 1, n);
        for _ in 0..n {
            same.push(3, &[0]);
        }
        index.build(&same, false);
        assert_eq!(all_candidates(&index, 3), vec![n as u32 - 1]);
    }

    #[test]
    fn inplace_walks_unlink_unusable_blocks() {
        let sums = sums_of(&[7, 7, 7, 7], &[1, 2, 3, 4]);
        let mut index = BlockIndex::default();
        index.build(&sums, true);
        let mut seen = Vec::new();
        index.find_inplace(
            7,
            |b| b != 2,
            |b| {
                seen.push(b);
                false
            },
        );
        assert_eq!(seen, vec![3, 1, 0]);
        // Block 2 is gone even when everything is usable again.
        seen.clear();
        index.find_inplace(
            7,
            |_| true,
            |b| {
                seen.push(b);
                false
            },
        );
        assert_eq!(seen, vec![3, 1, 0]);
    }

    #[test]
    fn the_filter_lets_few_strangers_through() {
        let mut x: u64 = 99;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        };
        let weaks: Vec<u32> = (0..16384).map(|_| next()).collect();
        let sums = sums_of(&weaks, &vec![0; weaks.len()]);
        let mut index = BlockIndex::default();
        index.build(&sums, false);
        let filter = index.filter();
        assert!(weaks.iter().all(|&w| filter.may_contain(w)));
        let trials = 1_000_000;
        let passed = (0..trials).filter(|_| filter.may_contain(next())).count();
        // About 0.8% expected for 128 bits per block and one bit per sum.
        assert!(passed < trials / 100, "{passed} of {trials}");
    }

    #[test]
    fn filter_slots_stay_inside() {
        let mut index = BlockIndex::default();
        for count in [0usize, 1, 2, 3, 17, 1000, 70_000] {
            let weaks: Vec<u32> = (0..count as u32).collect();
            index.build(&sums_of(&weaks, &vec![0; count]), false);
            let words = index.filter.len();
            assert!(words >= 1 << MIN_FILTER_WORDS_LOG2);
            assert_eq!(words << WORD_BITS_LOG2, 1 << (64 - index.filter_shift));
            for w in [0, 1, 0x7fff_ffff, u32::MAX, 0x8000_0000] {
                assert!(filter_slot(w, index.filter_shift).0 < words);
            }
        }
    }

    #[test]
    fn blocks_past_the_candidate_limit_are_unreachable() {
        let n = MAX_CANDIDATES + 5;
        let mut sums = BlockSums::new(4, 0, 1, n + 1);
        for i in 0..n {
            sums.push(3, &[(i % 2) as u8]);
        }
        sums.push(4, &[0]);
        let mut index = BlockIndex::default();
        index.build(&sums, false);
        // Walked from the highest index: the first MAX_CANDIDATES are reached.
        let reached: Vec<usize> = (0..n).filter(|&b| index.reachable(b)).collect();
        assert_eq!(reached, (n - MAX_CANDIDATES..n).collect::<Vec<_>>());
        assert!(index.reachable(n));
        // A run of identical blocks is reached at its first (highest) block.
        // Here the odd last block comes first in the walk and the n identical
        // blocks before it second.
        let mut same = BlockSums::new(4, 0, 1, n + 1);
        for _ in 0..n {
            same.push(3, &[0]);
        }
        same.push(3, &[1]);
        index.build(&same, false);
        assert!((0..=n).all(|b| index.reachable(b)));
    }

    #[test]
    fn crowded_buckets_are_searched() {
        // w * HASH_MUL == j for w = j * HASH_MUL^-1, so j < 2^shift all land in
        // bucket 0: what a client crafting weak sums could do.
        let mut inv = HASH_MUL;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(HASH_MUL.wrapping_mul(inv)));
        }
        assert_eq!(inv.wrapping_mul(HASH_MUL), 1);
        let weaks: Vec<u32> = (0..5000u32).map(|j| j.wrapping_mul(inv)).collect();
        let strongs = vec![0u8; weaks.len()];
        let sums = sums_of(&weaks, &strongs);
        let mut index = BlockIndex::default();
        index.build(&sums, false);
        assert_eq!(index.starts[1] as usize, weaks.len(), "all in bucket 0");
        for (i, w) in weaks.iter().enumerate() {
            assert_eq!(index.find(*w, |_| true), Some(i as u32));
        }
        assert_eq!(index.find(5000u32.wrapping_mul(inv), |_| true), None);
    }
}
