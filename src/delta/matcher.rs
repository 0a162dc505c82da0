//! The sender's block matching: rsync/match.c (match_sums, hash_search,
//! matched) for protocols 27..29, streaming from an `impl Read`.
//!
//! Owns the search over the file and the order and content of the tokens it
//! hands to a [`TokenSink`], and the whole-file sum. It must not write to the
//! wire, split literals into tokens, compress, or open files: the sink and
//! the caller do that.
//!
//! The search is rsync's, step for step, so the same blocks match and the
//! same literal and matched byte counts come out as from rsyncd 3.5.0:
//! - at each offset the weak sum of the next `block_len` bytes (fewer at the
//!   end of the file) is looked up; candidates are tried in rsync's order and
//!   bounded as the `index` module describes; a candidate matches when
//!   its length and strong sum agree (the strong sum of the offset is
//!   computed once, on the first candidate of the right length);
//! - the block after the previous match (`want_i`) is preferred when it
//!   matches too, so runs of matches are consecutive blocks; it is checked
//!   first, and while whole blocks keep matching the next ones are checked
//!   directly, several at a time, without rolling (where that gives the
//!   same answer as the search: see `wanted_matches`);
//! - after a match the search jumps past it; offsets from which fewer bytes
//!   than the last block remain are not searched, so the short last block
//!   can only match at the very end;
//! - in-place updates (match.c `updating_basis_file`) only use blocks at or
//!   beyond the current offset, or found unchanged at their own offset, and
//!   prefer the block at the current offset, including re-aligning runs of
//!   zeros to it;
//! - append mode (protocol 29 always uses rsync's append_mode 2, "verify")
//!   sends everything past the receiver's length as literal data, having
//!   run the part before it through the whole-file sum when verifying.
//!
//! One deliberate difference: where rsync's in-place re-alignment fails
//! after a partial check, rsync goes on comparing the preferred block with
//! sums of the bytes it checked rather than of the current offset, and can
//! then send a block that does not match (the whole-file sum catches it).
//! Here the sums of the current offset are used.
//!
//! Memory: the window holds two blocks plus 256 KiB (`READ_AHEAD`) whatever
//! the file size; literal data goes to the sink as it leaves the window.

use super::index::BlockIndex;
use super::md4x::MAX_LANES;
use super::rolling::{weak_sum, RollingSum};
use super::strong::{
    block_strong_sum, block_strong_sums, spoil_file_sum, Digest, FileSum, StrongSum, STRONG_SUM_LEN,
};
use super::sums::BlockSums;
use super::window::{Window, READ_AHEAD};
use std::fmt;
use std::io::{self, Read};

/// Where the matcher's output goes: in file order, literal runs (consecutive
/// calls continue one run) and matched blocks of the receiver's basis.
pub(crate) trait TokenSink {
    /// The next literal bytes.
    fn literal(&mut self, data: &[u8]) -> io::Result<()>;
    /// Block `block_index` of the basis matched; `data` are the bytes it
    /// stands for (a compressing writer feeds them to its dictionary).
    fn matched(&mut self, block_index: u32, data: &[u8]) -> io::Result<()>;
}

/// How the receiver will use its basis file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MatchMode {
    /// The receiver builds a new file from the basis and the tokens.
    Normal,
    /// `--inplace`: the receiver overwrites the basis as it goes.
    Inplace,
    /// `--append`: the receiver keeps its `sums.basis_len()` bytes and only
    /// needs the rest. `verify` runs those bytes through the whole-file sum
    /// too; below protocol 30 rsync always does (append_mode 2), so protocol
    /// 29 callers pass `verify: true`.
    Append {
        /// Include the receiver's bytes in the whole-file sum.
        verify: bool,
    },
}

/// What one file's matching produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MatchOutcome {
    /// The sum to send after the end token. When the file ended before its
    /// announced length it is spoiled, as rsync does, so that the receiver
    /// rejects the file and asks for it again.
    pub(crate) file_sum: Digest,
    /// Bytes sent as literal data.
    pub(crate) literal_bytes: u64,
    /// Bytes covered by matched blocks.
    pub(crate) matched_bytes: u64,
    /// Bytes of the source the tokens describe (in append mode including the
    /// receiver's part): the announced length unless the file shrank.
    pub(crate) source_len: u64,
    /// The source did not hold exactly the announced number of bytes: it
    /// ended early (`source_len` is shorter), or it had more, which were not
    /// sent (as rsync sends the length it found when it opened the file).
    pub(crate) size_changed: bool,
}

/// Why matching stopped before the end of the file. The tokens already given
/// to the sink are a correct beginning of the file; a caller that keeps the
/// connection ends the stream and sends a sum the receiver will reject
/// (sixteen zero bytes), and the receiver discards the file.
#[derive(Debug)]
pub(crate) enum MatchError {
    /// Reading the source failed.
    Read(io::Error),
    /// The sink failed.
    Sink(io::Error),
}

impl fmt::Display for MatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchError::Read(e) => write!(f, "reading the file to send failed: {e}"),
            MatchError::Sink(e) => write!(f, "writing file data failed: {e}"),
        }
    }
}

impl std::error::Error for MatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MatchError::Read(e) | MatchError::Sink(e) => Some(e),
        }
    }
}

/// The block matcher, with buffers reused for every file of a connection.
#[derive(Debug)]
pub(crate) struct Matcher {
    pub(super) window: Vec<u8>,
    /// Bytes read beyond the two blocks the search looks at; tests shrink it
    /// to make the window slide within small files.
    pub(super) read_ahead: usize,
    index: BlockIndex,
    /// In-place mode: blocks found unchanged at their own offset.
    same_offset: Vec<bool>,
    repeat: Repeat,
    /// Blocks of the last file matched by the fast paths: following a run,
    /// and a repeat of the last block found (tests check they are taken).
    #[cfg(test)]
    pub(super) fast: FastCounts,
}

/// How often each fast path was taken.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FastCounts {
    pub(crate) followed: u64,
    pub(crate) repeated: u64,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::new()
    }
}

impl Matcher {
    /// A matcher with empty buffers; they grow to fit the first files.
    pub(crate) fn new() -> Matcher {
        Matcher {
            window: Vec::new(),
            read_ahead: READ_AHEAD,
            index: BlockIndex::default(),
            same_offset: Vec::new(),
            repeat: Repeat::default(),
            #[cfg(test)]
            fast: FastCounts::default(),
        }
    }

    /// Send `source`, announced as `file_len` bytes, against the receiver's
    /// block `sums`: hand literal data and matched blocks to `sink` in order
    /// and return the counts and the whole-file sum, both sums computed as
    /// `strong` says.
    /// Without sums (none sent, block length 0, `-W`) everything is literal.
    pub(crate) fn send<R: Read, S: TokenSink>(
        &mut self,
        source: R,
        file_len: u64,
        sums: &BlockSums,
        strong: StrongSum,
        mode: MatchMode,
        sink: &mut S,
    ) -> Result<MatchOutcome, MatchError> {
        let searching = !matches!(mode, MatchMode::Append { .. })
            && sums.count() > 0
            && sums.block_len() > 0
            && file_len > 0;
        let block_len = u64::from(sums.block_len());
        let span = if searching { 2 * block_len } else { 0 };
        let mut win = Window::new(&mut self.window, source, file_len, span, self.read_ahead);
        let mut out = Emitter {
            sink,
            sum: FileSum::new(strong),
            last: 0,
            summed: 0,
            literal: 0,
            matched: 0,
        };
        if let MatchMode::Append { verify } = mode {
            out.skip_prefix(&mut win, sums.basis_len(), verify)?;
        }
        if searching {
            let inplace = mode == MatchMode::Inplace;
            self.index.build(sums, inplace);
            self.same_offset.clear();
            self.repeat.forget();
            if inplace {
                self.same_offset.resize(sums.count(), false);
            }
            let mut search = Search {
                win: &mut win,
                out: &mut out,
                index: &mut self.index,
                same_offset: &mut self.same_offset,
                repeat: &mut self.repeat,
                sums,
                strong,
                inplace,
                block_len,
                last_len: u64::from(sums.last_len()),
                want: 0,
                aligned_off: 0,
                aligned_block: 0,
                #[cfg(test)]
                fast: FastCounts::default(),
            };
            let ran = search.run();
            #[cfg(test)]
            {
                self.fast = search.fast;
            }
            ran?;
        }
        out.rest(&mut win)?;
        // Everything announced has been sent; failing to look further only
        // means a growth goes unreported.
        let grew = win.grew().unwrap_or(false);
        let mut file_sum = out.sum.finish();
        if win.is_short() {
            spoil_file_sum(&mut file_sum);
        }
        Ok(MatchOutcome {
            file_sum,
            literal_bytes: out.literal,
            matched_bytes: out.matched,
            source_len: win.len(),
            size_changed: win.is_short() || grew,
        })
    }
}

/// Hands bytes to the sink in file order (rsync: match.c matched), and every
/// byte read to the whole-file sum as soon as it is read, while it is still
/// in the cache.
struct Emitter<'s, S> {
    sink: &'s mut S,
    sum: FileSum,
    /// Everything before this offset has been handed on.
    last: u64,
    /// Bytes from here on still go into the whole-file sum when read.
    summed: u64,
    literal: u64,
    matched: u64,
}

impl<S: TokenSink> Emitter<'_, S> {
    /// Hand on the bytes from the last handed-on one up to `to` as literal.
    fn literal_to<R: Read>(&mut self, win: &Window<R>, to: u64) -> Result<(), MatchError> {
        if to <= self.last {
            return Ok(());
        }
        let data = win.bytes(self.last, to);
        self.sink.literal(data).map_err(MatchError::Sink)?;
        self.literal += to - self.last;
        self.last = to;
        Ok(())
    }

    /// Hand on the literal bytes before `at`, then `len` bytes at `at` as `block`.
    fn block<R: Read>(
        &mut self,
        win: &Window<R>,
        at: u64,
        block: u32,
        len: u64,
    ) -> Result<(), MatchError> {
        self.literal_to(win, at)?;
        let data = win.bytes(at, at + len);
        self.sink.matched(block, data).map_err(MatchError::Sink)?;
        self.matched += len;
        self.last = at + len;
        Ok(())
    }

    /// Slide the window to `keep_from` and read on, summing what was read.
    fn fill<R: Read>(&mut self, win: &mut Window<R>, keep_from: u64) -> Result<(), MatchError> {
        win.fill(keep_from).map_err(MatchError::Read)?;
        if win.end() > self.summed {
            self.sum.update(win.bytes(self.summed, win.end()));
            self.summed = win.end();
        }
        Ok(())
    }

    /// Pass over the receiver's `prefix` bytes without sending them, summing
    /// them when `verify`.
    fn skip_prefix<R: Read>(
        &mut self,
        win: &mut Window<R>,
        prefix: u64,
        verify: bool,
    ) -> Result<(), MatchError> {
        if !verify {
            self.summed = prefix;
        }
        loop {
            self.last = prefix.min(win.end());
            if self.last >= prefix.min(win.len()) {
                return Ok(());
            }
            self.fill(win, self.last)?;
        }
    }

    /// Send the rest of the file as literal data.
    fn rest<R: Read>(&mut self, win: &mut Window<R>) -> Result<(), MatchError> {
        loop {
            self.literal_to(win, win.end())?;
            if win.end() >= win.len() {
                return Ok(());
            }
            self.fill(win, self.last)?;
        }
    }
}

/// The last block a search found by walking candidates, and the bytes it
/// was found for. Outside in-place mode what a search finds depends only on
/// the bytes, their weak sum and the wanted block, so the same bytes with
/// the same wanted block get the same block without a strong sum: in a run
/// of zeros (a disk image) every block after the second is found so.
#[derive(Debug, Default)]
struct Repeat {
    data: Vec<u8>,
    weak: u32,
    want: usize,
    block: usize,
    known: bool,
}

impl Repeat {
    /// Forget the last block: a new file has other sums.
    fn forget(&mut self) {
        self.known = false;
    }

    /// Remember that `data` (weak sum `weak`), with `want` wanted, found `block`.
    fn remember(&mut self, data: &[u8], weak: u32, want: usize, block: usize) {
        self.data.clear();
        self.data.extend_from_slice(data);
        (self.weak, self.want, self.block, self.known) = (weak, want, block, true);
    }

    /// The block found the last time, if these are the same bytes and wanted block.
    #[inline]
    fn same(&self, data: &[u8], weak: u32, want: usize) -> Option<usize> {
        let same = self.known && self.weak == weak && self.want == want && self.data == data;
        same.then_some(self.block)
    }
}

/// The state of one file's search (rsync: match.c hash_search, its locals).
struct Search<'a, 'b, 's, R, S> {
    win: &'a mut Window<'b, R>,
    out: &'a mut Emitter<'s, S>,
    index: &'a mut BlockIndex,
    same_offset: &'a mut [bool],
    repeat: &'a mut Repeat,
    sums: &'a BlockSums,
    strong: StrongSum,
    inplace: bool,
    block_len: u64,
    last_len: u64,
    /// The block after the last match, preferred when it matches too.
    want: usize,
    /// In-place mode: the first block boundary at or after the offset...
    aligned_off: u64,
    /// ...and the block that starts there.
    aligned_block: usize,
    #[cfg(test)]
    fast: FastCounts,
}

impl<R: Read, S: TokenSink> Search<'_, '_, '_, R, S> {
    /// Offsets from here on are not searched: fewer bytes than the last
    /// block remain.
    fn end(&self) -> u64 {
        (self.win.len() + 1).saturating_sub(self.last_len)
    }

    /// Make the window hold the bytes up to `upto` (or to the end of the
    /// file); bytes before `off`, no longer matchable, may leave it.
    fn ensure(&mut self, off: u64, upto: u64) -> Result<(), MatchError> {
        if self.win.holds(upto) {
            return Ok(());
        }
        self.out.literal_to(self.win, off)?;
        self.out.fill(self.win, off)
    }

    /// The weak sum of the bytes searched for at `off`.
    fn window_sum(&self, off: u64) -> RollingSum {
        let k = self.block_len.min(self.win.len() - off);
        RollingSum::new(self.win.bytes(off, off + k))
    }

    /// The byte at `off`.
    fn byte(&self, off: u64) -> u8 {
        self.win.bytes(off, off + 1)[0]
    }

    fn run(&mut self) -> Result<(), MatchError> {
        let block_len = self.block_len;
        self.ensure(0, block_len + 1)?;
        if self.win.len() == 0 {
            return Ok(());
        }
        let mut off = 0;
        let mut sum = self.window_sum(0);
        // rsync's do-while: the first offset is searched even when the file
        // is shorter than the last block.
        loop {
            let len = self.win.len();
            let k = block_len.min(len - off);
            if let Some(next) = self.try_match(off, k, sum.value())? {
                off = next;
                if off >= self.end() {
                    return Ok(());
                }
                self.ensure(off, off + block_len + 1)?;
                sum = self.window_sum(off);
            } else {
                if off + k < len {
                    sum.roll(self.byte(off), self.byte(off + k));
                } else {
                    sum.shrink(self.byte(off));
                }
                off += 1;
                if off >= self.end() {
                    return Ok(());
                }
                self.ensure(off, off + block_len + 1)?;
            }
            off = self.scan(off, &mut sum);
            if off >= self.end() {
                return Ok(());
            }
            self.ensure(off, off + block_len + 1)?;
        }
    }

    /// The hot loop: roll over offsets whose weak sum no block has, while
    /// whole blocks are held; return the first offset that needs a closer
    /// look (or where the held bytes run out).
    fn scan(&self, off: u64, sum: &mut RollingSum) -> u64 {
        let (held, base) = self.win.held();
        let stop = self
            .end()
            .min((base + held.len() as u64).saturating_sub(self.block_len));
        if off >= stop {
            return off;
        }
        let start = (off - base) as usize;
        let count = (stop - off) as usize;
        let block_len = self.block_len as usize;
        let outgoing = &held[start..start + count];
        let incoming = &held[start + block_len..start + block_len + count];
        // Locals, so that the loop keeps everything in registers.
        let filter = self.index.filter();
        let mut rolling = *sum;
        for (i, (&old, &new)) in outgoing.iter().zip(incoming).enumerate() {
            let weak = rolling.value();
            if filter.may_contain(weak) && self.index.contains(weak) {
                *sum = rolling;
                return off + i as u64;
            }
            rolling.roll(old, new);
        }
        *sum = rolling;
        stop
    }

    /// Look for a block matching the `len` bytes at `off`; hand it on, and
    /// the blocks after it that match in a row, and return the offset after
    /// the last one.
    fn try_match(&mut self, off: u64, len: u64, weak: u32) -> Result<Option<u64>, MatchError> {
        let mut strong = [0u8; STRONG_SUM_LEN];
        let mut computed = false;
        let (block, at) = if self.wanted_matches(off, len, weak, &mut strong, &mut computed) {
            (self.want, off)
        } else if let Some(block) =
            self.repeat
                .same(self.win.bytes(off, off + len), weak, self.want)
        {
            #[cfg(test)]
            {
                self.fast.repeated += 1;
            }
            (block, off)
        } else {
            let Some(found) = self.find_candidate(off, len, weak, &mut strong, computed) else {
                return Ok(None);
            };
            let (mut block, mut at) = (found as usize, off);
            if self.inplace {
                (block, at) = self.prefer_aligned(off, len, weak, &strong, block)?;
            }
            block = self.prefer_wanted(block, at, len, weak, &strong);
            if !self.inplace {
                // (In place, what is found also depends on the offset.)
                let data = self.win.bytes(off, off + len);
                self.repeat.remember(data, weak, self.want, block);
            }
            (block, at)
        };
        let next = self.hand_on(block, at, len)?;
        if self.inplace {
            return Ok(Some(next));
        }
        self.follow_run(next).map(Some)
    }

    /// Hand on `block` as matching the `len` bytes at `at`; the block after
    /// it is wanted next. Returns the offset after the match.
    fn hand_on(&mut self, block: usize, at: u64, len: u64) -> Result<u64, MatchError> {
        self.want = block + 1;
        // Block indices come from the index, which holds u32s.
        self.out.block(self.win, at, block as u32, len)?;
        Ok(at + len)
    }

    /// The fast path, rsync's `want_i` hint checked first (rsync: match.c
    /// hash_search): whether the block after the previous match matches the
    /// bytes at `off`. Only where the search would pick it too: not in place
    /// (where the aligned block comes first), and only when a walk over its
    /// weak sum would reach it (then the walk accepts some block with its
    /// sums, and the hint turns that into this one). Computes the strong sum
    /// into `strong` when the weak sum and length agree.
    fn wanted_matches(
        &self,
        off: u64,
        len: u64,
        weak: u32,
        strong: &mut [u8; STRONG_SUM_LEN],
        computed: &mut bool,
    ) -> bool {
        let want = self.want;
        if self.inplace
            || want >= self.sums.count()
            || self.sums.weak(want) != weak
            || u64::from(self.sums.len_of(want)) != len
            || !self.index.reachable(want)
        {
            return false;
        }
        block_strong_sum(self.win.bytes(off, off + len), self.strong, strong);
        *computed = true;
        self.sums.strong(want) == &strong[..self.sums.strong_len()]
    }

    /// After a match ending at `off`: as long as the next whole blocks of
    /// the basis match the next bytes, hand them on without searching,
    /// checking up to [`MAX_LANES`] of them at once (their MD4 sums side by
    /// side). Each is exactly what [`wanted_matches`](Self::wanted_matches)
    /// would accept at its offset. Returns where the search goes on.
    fn follow_run(&mut self, mut off: u64) -> Result<u64, MatchError> {
        let block_len = self.block_len;
        let whole_blocks = self.sums.count() - usize::from(self.sums.remainder() != 0);
        let mut digests = [[0u8; STRONG_SUM_LEN]; MAX_LANES];
        loop {
            let want = self.want;
            let mut lanes = whole_blocks.saturating_sub(want).min(MAX_LANES);
            if lanes < 2 {
                return Ok(off);
            }
            self.ensure(off, off + 2 * block_len + 1)?;
            // The window ends within the file, so whole blocks held are
            // whole blocks of the file.
            let held = (self.win.end() - off) / block_len;
            lanes = lanes.min(usize::try_from(held).unwrap_or(MAX_LANES));
            let mut blocks = [&[][..]; MAX_LANES];
            let mut weak_ok = 0;
            while weak_ok < lanes {
                let at = off + weak_ok as u64 * block_len;
                let data = self.win.bytes(at, at + block_len);
                let b = want + weak_ok;
                if weak_sum(data) != self.sums.weak(b) || !self.index.reachable(b) {
                    break;
                }
                blocks[weak_ok] = data;
                weak_ok += 1;
            }
            if weak_ok == 0 {
                return Ok(off);
            }
            block_strong_sums(&blocks[..weak_ok], self.strong, &mut digests);
            let strong_len = self.sums.strong_len();
            let mut matched = 0;
            while matched < weak_ok
                && self.sums.strong(want + matched) == &digests[matched][..strong_len]
            {
                matched += 1;
            }
            for i in 0..matched {
                off = self.hand_on(want + i, off, block_len)?;
            }
            #[cfg(test)]
            {
                self.fast.followed += matched as u64;
            }
            if matched < lanes {
                return Ok(off);
            }
        }
    }

    /// The first candidate whose length and strong sum agree with the bytes
    /// at `off`; their strong sum is left in `strong` when it was computed
    /// (and taken from there when `computed` already).
    fn find_candidate(
        &mut self,
        off: u64,
        len: u64,
        weak: u32,
        strong: &mut [u8; STRONG_SUM_LEN],
        mut computed: bool,
    ) -> Option<u32> {
        let data = self.win.bytes(off, off + len);
        let (sums, strong_sum) = (self.sums, self.strong);
        let accept = |block: u32| {
            let block = block as usize;
            if u64::from(sums.len_of(block)) != len {
                return false;
            }
            if !computed {
                block_strong_sum(data, strong_sum, strong);
                computed = true;
            }
            sums.strong(block) == &strong[..sums.strong_len()]
        };
        if self.inplace {
            let (block_len, same_offset) = (self.block_len, &*self.same_offset);
            let usable = |b: u32| u64::from(b) * block_len >= off || same_offset[b as usize];
            self.index.find_inplace(weak, usable, accept)
        } else {
            self.index.find(weak, accept)
        }
    }

    /// Whether block `b` has these sums and length.
    fn same_sums(&self, b: usize, weak: u32, len: u64, strong: &[u8; STRONG_SUM_LEN]) -> bool {
        self.sums.weak(b) == weak
            && u64::from(self.sums.len_of(b)) == len
            && self.sums.strong(b) == &strong[..self.sums.strong_len()]
    }

    /// In-place mode: the block that starts exactly here in the basis beats
    /// `found` when it matches too; in a run of zeros, the block at the next
    /// boundary is used when the bytes there match it, skipping ahead to it.
    /// Returns the block and the offset of the match.
    fn prefer_aligned(
        &mut self,
        off: u64,
        len: u64,
        weak: u32,
        strong: &[u8; STRONG_SUM_LEN],
        found: usize,
    ) -> Result<(usize, u64), MatchError> {
        while self.aligned_off < off {
            self.aligned_off += self.block_len;
            self.aligned_block += 1;
        }
        let (aligned, block) = (self.aligned_off, self.aligned_block);
        let zero_run = weak == 0 && len == self.block_len && aligned + len <= self.win.len();
        if !(off == aligned || zero_run) || block >= self.sums.count() {
            return Ok((found, off));
        }
        if block != found && !self.same_sums(block, weak, len, strong) {
            return Ok((found, off));
        }
        if off != aligned && !self.matches_at(off, aligned, block, len)? {
            return Ok((block, off));
        }
        self.same_offset[block] = true;
        self.want = block;
        Ok((block, aligned))
    }

    /// Whether the `len` bytes at `at` (ahead of the offset `off`) match `block`.
    fn matches_at(
        &mut self,
        off: u64,
        at: u64,
        block: usize,
        len: u64,
    ) -> Result<bool, MatchError> {
        self.ensure(off, at + len)?;
        if at + len > self.win.len() {
            return Ok(false);
        }
        let data = self.win.bytes(at, at + len);
        if weak_sum(data) != self.sums.weak(block) {
            return Ok(false);
        }
        let mut strong = [0u8; STRONG_SUM_LEN];
        block_strong_sum(data, self.strong, &mut strong);
        Ok(self.sums.strong(block) == &strong[..self.sums.strong_len()])
    }

    /// The block after the previous match, when it matches as well as `block`.
    fn prefer_wanted(
        &self,
        block: usize,
        at: u64,
        len: u64,
        weak: u32,
        strong: &[u8; STRONG_SUM_LEN],
    ) -> usize {
        let want = self.want;
        if want == block || want >= self.sums.count() {
            return block;
        }
        let usable = !self.inplace || want as u64 * self.block_len >= at || self.same_offset[want];
        if usable && self.same_sums(want, weak, len, strong) {
            want
        } else {
            block
        }
    }
}
