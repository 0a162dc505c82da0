//! The compressed token stream of `-z`, `-zz` and `--compress-level`
//! (rsync: token.c send_deflated_token, the "zlib" and "zlibx" choices, which
//! are the only ones below protocol 30).
//!
//! This file owns the encoding: literal runs as raw-deflate data in
//! DEFLATED_DATA chunks, each run ended by a sync flush whose 4-byte
//! `00 00 ff ff` trailer is left off (the receiver adds it back); matched
//! blocks as [`BlockRuns`]; END_FLAG at the end of a file. The compressor starts afresh with every file, as the
//! receiver's inflater does. With "zlib" the receiver puts every matched
//! block into its inflater's window, so we must give our compressor the same
//! history; with "zlibx" neither side does.
//!
//! It must not decide what is literal and what matches (that is the delta
//! engine's job) nor choose compression on its own: the client's options do.

use super::{send_chunks, BlockRuns, TokenWriter, END_FLAG, MAX_DATA_COUNT};
use crate::delta::TokenSink;
use crate::protocol::options::Compression;
use crate::protocol::wire::WireWrite;
use flate2::{Compress, FlushCompress};
use std::io;

/// What a sync flush ends with: an empty stored block's length and its
/// complement. Never sent: the receiver supplies these bytes itself.
const SYNC_TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];
/// Compressed bytes we hold before sending a chunk: a full chunk plus the
/// trailer, which must stay with us until we know whether it ends a run.
const PENDING_CAPACITY: usize = 2 * MAX_DATA_COUNT;
/// The deflate window both sides use (raw deflate, 15 window bits).
const WINDOW_SIZE: usize = 32 * 1024;
/// Below protocol 31, both sides feed a matched block to the history in
/// pieces of this size, each taken again from the start of the block: a
/// shared quirk (fixed at 31), so we must repeat it exactly.
const HISTORY_PIECE: usize = 0xffff;
/// rsync's level when the client names none (zlib's Z_DEFAULT_COMPRESSION).
const DEFAULT_LEVEL: u32 = 6;
/// The client's "use the default" level.
const LEVEL_DEFAULT_REQUEST: i32 = -1;
/// The levels deflate knows; 0 turns compression off (init_compression_level).
const MIN_LEVEL: i32 = 1;
const MAX_LEVEL: i32 = 9;

/// One connection's compressor and buffers, reused for every file: the
/// compressor's tables are large, and nothing here allocates per token.
pub(crate) struct Deflater {
    z: Compress,
    insert_history: bool,
    /// Below protocol 31 a long matched block enters the history in
    /// pieces that each restart at the block's start.
    repeat_pieces: bool,
    /// Compressed output not yet sent.
    pending: Vec<u8>,
    /// Matched data the receiver has added to its window and we have not.
    history: HistoryTail,
    /// Whether the compressor has seen data since its last reset.
    dirty: bool,
}

impl Deflater {
    /// The compressor the client's options ask for, or `None` for the
    /// plain token stream (rsync: token.c init_compression_level and rsync: compat.c
    /// parse_compress_choice): a level alone implies `-z` as in rsync 3.x
    /// (2.6.x clients send `-z` with it anyway); level 0 turns compression
    /// off; -1 means the default; others are clamped to 1..=9.
    pub(crate) fn for_options(
        compression: Compression,
        level: Option<i32>,
        protocol: u32,
    ) -> Option<Deflater> {
        choose(compression, level).map(|(level, insert_history)| {
            let mut d = Deflater::new(level, insert_history);
            d.repeat_pieces = protocol < 31;
            d
        })
    }

    /// A compressor at `level` (1..=9); `insert_history` is "zlib" (`-z`),
    /// its absence "zlibx" (`-zz`).
    pub(crate) fn new(level: u32, insert_history: bool) -> Deflater {
        Deflater {
            z: Compress::new(flate2::Compression::new(level), false),
            insert_history,
            repeat_pieces: true,
            pending: Vec::with_capacity(PENDING_CAPACITY),
            history: HistoryTail::new(),
            dirty: false,
        }
    }

    /// The token writer for the next file, which starts with fresh
    /// compressor state as the receiver's inflater does.
    pub(crate) fn start_file<'a, W: WireWrite>(
        &'a mut self,
        out: &'a mut W,
    ) -> DeflatedTokens<'a, W> {
        if self.dirty {
            self.z.reset();
            self.dirty = false;
        }
        self.pending.clear();
        self.history.clear();
        DeflatedTokens {
            out,
            d: self,
            literal_open: false,
            runs: BlockRuns::default(),
        }
    }
}

/// The deflate level and whether matched data enters the history, for the
/// client's options; `None` for no compression. See [`Deflater::for_options`].
fn choose(compression: Compression, level: Option<i32>) -> Option<(u32, bool)> {
    let insert_history = match (compression, level) {
        (Compression::None, None) => return None,
        (Compression::None | Compression::Zlib, _) => true,
        (Compression::ZlibX, _) => false,
        // Not deflate: see [`super::Codec`].
        (Compression::Zstd | Compression::Lz4, _) => return None,
    };
    let level = match level {
        None | Some(LEVEL_DEFAULT_REQUEST) => DEFAULT_LEVEL,
        Some(0) => return None,
        Some(n) => n.clamp(MIN_LEVEL, MAX_LEVEL) as u32,
    };
    Some((level, insert_history))
}

/// One file's compressed token stream.
pub(crate) struct DeflatedTokens<'a, W: WireWrite> {
    out: &'a mut W,
    d: &'a mut Deflater,
    /// Literal data went into the compressor since the last sync flush.
    literal_open: bool,
    runs: BlockRuns,
}

impl<W: WireWrite> TokenSink for DeflatedTokens<'_, W> {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // The receiver takes the blocks before this data first.
        self.runs.flush(self.out)?;
        self.catch_up_history()?;
        self.compress(data, FlushCompress::None, Output::Send)?;
        self.literal_open = true;
        Ok(())
    }

    fn matched(&mut self, block_index: u32, data: &[u8]) -> io::Result<()> {
        self.close_literal()?;
        self.runs.add(self.out, block_index)?;
        match (self.d.insert_history, self.d.repeat_pieces) {
            (false, _) => {}
            (true, true) => self.d.history.push_block(data),
            (true, false) => self.d.history.push(data),
        }
        Ok(())
    }
}

impl<W: WireWrite> TokenWriter for DeflatedTokens<'_, W> {
    fn finish(&mut self) -> io::Result<()> {
        self.close_literal()?;
        self.runs.flush(self.out)?;
        self.out.write_u8(END_FLAG)
    }
}

/// Where the compressor's output goes.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    Send,
    Discard,
}

impl<W: WireWrite> DeflatedTokens<'_, W> {
    /// Ends a literal run with a sync flush and sends it all but the
    /// trailer, so that the receiver's inflater stops at a block boundary.
    fn close_literal(&mut self) -> io::Result<()> {
        if !self.literal_open {
            return Ok(());
        }
        self.literal_open = false;
        self.compress(&[], FlushCompress::Sync, Output::Send)?;
        let Some(body) = self.d.pending.strip_suffix(&SYNC_TRAILER) else {
            return Err(io::Error::other(
                "compressor did not end its sync flush with an empty stored block",
            ));
        };
        send_chunks(self.out, body)?;
        self.d.pending.clear();
        Ok(())
    }

    /// Gives the compressor the matched data the receiver has put into its
    /// window since our last literal. Only the window's worth at the end
    /// can be referred to, so that is all we feed; the output is dropped
    /// because the receiver rebuilds this history from its own blocks.
    /// (rsync compresses every matched byte for this; deferring it to the
    /// next literal and keeping only the tail spares the CPU on delta pulls
    /// that are mostly matches.) No literal run is open here: history only
    /// grows in `matched`, which closes it.
    fn catch_up_history(&mut self) -> io::Result<()> {
        if self.d.history.is_empty() {
            return Ok(());
        }
        // Taken out (an empty value allocates nothing) so the compressor
        // can read it while `compress` borrows the rest of us.
        let mut history = std::mem::take(&mut self.d.history);
        let result = self
            .compress(history.older(), FlushCompress::None, Output::Discard)
            .and_then(|()| self.compress(history.newer(), FlushCompress::Sync, Output::Discard));
        history.clear();
        self.d.history = history;
        result
    }

    /// Runs the compressor over `input` until it has taken all of it and,
    /// for a flush, given back everything. Sent output leaves whole chunks
    /// as they fill, keeping the last few bytes back for `close_literal`.
    fn compress(
        &mut self,
        mut input: &[u8],
        flush: FlushCompress,
        output: Output,
    ) -> io::Result<()> {
        loop {
            match output {
                Output::Send => self.send_full_chunks()?,
                Output::Discard => self.d.pending.clear(),
            }
            let (in_before, out_before) = (self.d.z.total_in(), self.d.z.total_out());
            self.d
                .z
                .compress_vec(input, &mut self.d.pending, flush)
                .map_err(|e| io::Error::other(format!("deflate failed: {e}")))?;
            self.d.dirty = true;
            let taken = (self.d.z.total_in() - in_before) as usize;
            let produced = self.d.z.total_out() - out_before;
            input = &input[taken..];
            let drained = self.d.pending.len() < self.d.pending.capacity();
            if input.is_empty() && drained {
                break;
            }
            if taken == 0 && produced == 0 {
                return Err(io::Error::other("deflate made no progress"));
            }
        }
        if output == Output::Discard {
            self.d.pending.clear();
        }
        Ok(())
    }

    fn send_full_chunks(&mut self) -> io::Result<()> {
        let pending = &mut self.d.pending;
        if pending.len() < MAX_DATA_COUNT + SYNC_TRAILER.len() {
            return Ok(());
        }
        let whole = (pending.len() - SYNC_TRAILER.len()) / MAX_DATA_COUNT * MAX_DATA_COUNT;
        send_chunks(self.out, &pending[..whole])?;
        pending.drain(..whole);
        Ok(())
    }
}

/// The last [`WINDOW_SIZE`] bytes of the history the receiver adds for
/// matched blocks, in a ring so that small blocks cost only their copy.
#[derive(Default)]
struct HistoryTail {
    ring: Vec<u8>,
    /// Where the next byte goes.
    end: usize,
    /// How many bytes are held (at most the ring's size).
    len: usize,
}

impl HistoryTail {
    fn new() -> HistoryTail {
        HistoryTail {
            ring: vec![0; WINDOW_SIZE],
            end: 0,
            len: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.end = 0;
        self.len = 0;
    }

    /// Adds a matched block as the receiver feeds it to its window
    /// (rsync: token.c see_deflate_token before protocol 31): in pieces of at
    /// most [`HISTORY_PIECE`] bytes, every piece read from the block's
    /// start. Pieces followed by a window's worth of others are skipped.
    fn push_block(&mut self, block: &[u8]) {
        let mut left = block.len();
        while left > 0 {
            let piece = left.min(HISTORY_PIECE);
            left -= piece;
            if left < WINDOW_SIZE {
                self.push(&block[..piece]);
            }
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(WINDOW_SIZE)..];
        let first = bytes.len().min(WINDOW_SIZE - self.end);
        self.ring[self.end..self.end + first].copy_from_slice(&bytes[..first]);
        let rest = &bytes[first..];
        self.ring[..rest.len()].copy_from_slice(rest);
        self.end = (self.end + bytes.len()) % WINDOW_SIZE;
        self.len = (self.len + bytes.len()).min(WINDOW_SIZE);
    }

    /// The held bytes are `older()` followed by `newer()`.
    fn older(&self) -> &[u8] {
        if self.len == WINDOW_SIZE {
            &self.ring[self.end..]
        } else {
            &[]
        }
    }

    fn newer(&self) -> &[u8] {
        let start = if self.len == WINDOW_SIZE {
            0
        } else {
            self.end - self.len
        };
        &self.ring[start..self.end]
    }
}

#[cfg(test)]
mod tests {
    //! The streams are checked by a receiver written here after rsync: token.c
    //! recv_deflated_token and rsync: token.c see_deflate_token, on flate2's inflater: it
    //! rebuilds each file from the tokens and a basis, and so fails on any
    //! framing, history or numbering mistake that a real client would hit.

    use super::*;
    use crate::protocol::token::{DEFLATED_DATA, TOKENRUN_LONG, TOKEN_LONG, TOKEN_REL};
    use flate2::{Decompress, FlushDecompress};

    /// What a test feeds the writer: literal bytes or a basis block.
    enum Op<'a> {
        Lit(&'a [u8]),
        Block(u32),
    }

    /// One file's stream from `ops`, with `blocks` as the basis.
    fn encode(d: &mut Deflater, ops: &[Op], blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut t = d.start_file(&mut out);
        for op in ops {
            match op {
                Op::Lit(data) => t.literal(data).unwrap(),
                Op::Block(i) => t.matched(*i, &blocks[*i as usize]).unwrap(),
            }
        }
        t.finish().unwrap();
        out
    }

    fn expected(ops: &[Op], blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut v = Vec::new();
        for op in ops {
            match op {
                Op::Lit(data) => v.extend_from_slice(data),
                Op::Block(i) => v.extend_from_slice(&blocks[*i as usize]),
            }
        }
        v
    }

    /// A receiver's view of one file, as recv_deflated_token sees it.
    struct Receiver<'a> {
        input: &'a [u8],
        z: Decompress,
        insert_history: bool,
        /// The block counter (rx_token), 0 at the start of a file.
        token: i64,
        /// Inflated data since the last token: a sync is due.
        inflated: bool,
        /// The largest DEFLATED_DATA chunk seen.
        largest_chunk: usize,
    }

    impl<'a> Receiver<'a> {
        fn new(input: &'a [u8], insert_history: bool) -> Self {
            Receiver {
                input,
                z: Decompress::new(false),
                insert_history,
                token: 0,
                inflated: false,
                largest_chunk: 0,
            }
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.input.len() < n {
                return Err(format!("stream ends early, {n} bytes wanted"));
            }
            let (head, rest) = self.input.split_at(n);
            self.input = rest;
            Ok(head)
        }

        fn byte(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }

        /// Inflates `data` completely; what comes out goes to `sink`.
        fn inflate(&mut self, mut data: &[u8], sink: &mut Vec<u8>) -> Result<(), String> {
            let mut buf = vec![0u8; 40 * 1024];
            loop {
                let (i, o) = (self.z.total_in(), self.z.total_out());
                self.z
                    .decompress(data, &mut buf, FlushDecompress::Sync)
                    .map_err(|e| format!("inflate: {e}"))?;
                let used = (self.z.total_in() - i) as usize;
                let made = (self.z.total_out() - o) as usize;
                sink.extend_from_slice(&buf[..made]);
                data = &data[used..];
                if data.is_empty() && made < buf.len() {
                    return Ok(());
                }
                if used == 0 && made == 0 {
                    return Err("inflate is stuck".into());
                }
            }
        }

        /// The sync the receiver does before a token: the stripped
        /// trailer must complete an empty stored block, adding nothing.
        fn resync(&mut self) -> Result<(), String> {
            let mut out = Vec::new();
            self.inflate(&SYNC_TRAILER, &mut out)?;
            if !out.is_empty() {
                return Err(format!(
                    "lost sync: trailer inflated to {} bytes",
                    out.len()
                ));
            }
            self.inflated = false;
            Ok(())
        }

        /// see_deflate_token before protocol 31: fake stored blocks of at
        /// most 0xffff bytes, each from the block's start.
        fn see_block(&mut self, block: &[u8]) -> Result<(), String> {
            let mut left = block.len();
            while left > 0 {
                let piece = left.min(0xffff);
                left -= piece;
                let [lo, hi] = (piece as u16).to_le_bytes();
                let mut out = Vec::new();
                self.inflate(&[0, lo, hi, !lo, !hi], &mut out)?;
                self.inflate(&block[..piece], &mut out)?;
                if out != block[..piece] {
                    return Err("stored block did not come back as given".into());
                }
            }
            Ok(())
        }

        fn add_block(
            &mut self,
            index: i64,
            blocks: &[Vec<u8>],
            file: &mut Vec<u8>,
        ) -> Result<(), String> {
            let block = usize::try_from(index)
                .ok()
                .and_then(|i| blocks.get(i))
                .ok_or_else(|| format!("token for block {index}, which the basis lacks"))?;
            file.extend_from_slice(block);
            if self.insert_history {
                self.see_block(block)?;
            }
            Ok(())
        }

        /// Reads one file's stream up to and including END_FLAG.
        fn file(&mut self, blocks: &[Vec<u8>]) -> Result<Vec<u8>, String> {
            let mut file = Vec::new();
            loop {
                let flag = self.byte()?;
                if flag & 0xc0 == DEFLATED_DATA {
                    let len = (usize::from(flag & 0x3f) << 8) | usize::from(self.byte()?);
                    let data = self.take(len)?;
                    self.largest_chunk = self.largest_chunk.max(len);
                    self.inflate(data, &mut file)?;
                    self.inflated = true;
                    continue;
                }
                if self.inflated {
                    self.resync()?;
                }
                let (first, run) = match flag {
                    END_FLAG => return Ok(file),
                    f if f & TOKEN_REL != 0 => (self.token + i64::from(f & 0x3f), f & 0x40 != 0),
                    TOKEN_LONG | TOKENRUN_LONG => {
                        let b = self.take(4)?;
                        (
                            i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                            flag & 1 != 0,
                        )
                    }
                    f => return Err(format!("unknown flag byte {f:#04x}")),
                };
                let extra = if run {
                    let b = self.take(2)?;
                    i64::from(u16::from_le_bytes([b[0], b[1]]))
                } else {
                    0
                };
                if run && extra == 0 {
                    return Err("a run of no extra blocks".into());
                }
                for index in first..=first + extra {
                    self.add_block(index, blocks, &mut file)?;
                }
                self.token = first + extra;
            }
        }
    }

    /// Decodes a stream of one file, which must end with its END_FLAG.
    fn decode(stream: &[u8], blocks: &[Vec<u8>], insert_history: bool) -> Vec<u8> {
        let mut rx = Receiver::new(stream, insert_history);
        let file = rx.file(blocks).unwrap();
        assert!(
            rx.input.is_empty(),
            "{} bytes after END_FLAG",
            rx.input.len()
        );
        assert!(rx.largest_chunk <= MAX_DATA_COUNT);
        file
    }

    /// Deterministic incompressible bytes (xorshift), so that a compressed
    /// literal is only small when it was found in the history.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn round_trip(level: u32, insert: bool, ops: &[Op], blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut d = Deflater::new(level, insert);
        let stream = encode(&mut d, ops, blocks);
        assert!(
            decode(&stream, blocks, insert) == expected(ops, blocks),
            "rebuilt file differs"
        );
        stream
    }

    #[test]
    fn token_numbers_by_hand() {
        // Runs and distances worked out from rsync: token.c: 0..=2 is a run at
        // distance 0 with 2 more; 10 is 8 after 2; 100 is 90 away (long);
        // 5..=7 is a run behind 100 (long); 9 is 2 after 7; 11..=12 a run
        // 2 after 9.
        let blocks = vec![vec![7u8; 3]; 101];
        let ops: Vec<Op> = [0, 1, 2, 10, 100, 5, 6, 7, 9, 11, 12]
            .into_iter()
            .map(Op::Block)
            .collect();
        for insert in [false, true] {
            let stream = round_trip(6, insert, &ops, &blocks);
            let want = [
                0xc0, 2, 0,    // 0..=2
                0x88, // 10
                0x20, 100, 0, 0, 0, // 100
                0x21, 5, 0, 0, 0, 2, 0,    // 5..=7
                0x82, // 9
                0xc2, 1, 0, // 11..=12
                0x00,
            ];
            assert_eq!(stream, want);
        }
    }

    #[test]
    fn runs_split_at_the_16_bit_count() {
        // 65537 consecutive blocks: a run of 0..=65535 (count 0xffff),
        // then block 65536 one after the run's end.
        let blocks = vec![vec![1u8]; 65537];
        let ops: Vec<Op> = (0..65537).map(Op::Block).collect();
        let stream = round_trip(6, true, &ops, &blocks);
        assert_eq!(stream, [0xc0, 0xff, 0xff, 0x81, 0x00]);
    }

    #[test]
    fn distance_63_is_relative_and_64_is_long() {
        let blocks = vec![vec![2u8; 4]; 200];
        let ops = [Op::Block(63), Op::Block(127)];
        assert_eq!(
            round_trip(6, true, &ops, &blocks),
            [0xbf, 0x20, 127, 0, 0, 0, 0x00]
        );
    }

    #[test]
    fn empty_file_is_just_the_end_flag() {
        assert_eq!(round_trip(6, true, &[], &[]), [0x00]);
    }

    #[test]
    fn literal_runs_between_blocks() {
        let blocks: Vec<Vec<u8>> = (0..8).map(|i| noise(700, i + 1)).collect();
        let text = b"the quick brown fox jumps over the lazy dog, again and again".repeat(40);
        let ops = [
            Op::Lit(&text[..100]),
            Op::Lit(&text[100..]),
            Op::Block(0),
            Op::Block(1),
            Op::Lit(b"x"),
            Op::Block(5),
            Op::Block(3),
            Op::Lit(&text),
        ];
        for level in [1, 6, 9] {
            for insert in [false, true] {
                let stream = round_trip(level, insert, &ops, &blocks);
                // The text compresses: the stream must be far smaller.
                assert!(stream.len() < text.len(), "{} bytes", stream.len());
            }
        }
    }

    #[test]
    fn large_incompressible_literal_goes_in_full_chunks() {
        let data = noise(1 << 20, 7);
        let stream = round_trip(
            6,
            true,
            &[Op::Lit(&data[..5000]), Op::Lit(&data[5000..])],
            &[],
        );
        assert!(stream.len() > data.len(), "random data cannot shrink");
        assert_eq!(stream[0], DEFLATED_DATA | (MAX_DATA_COUNT >> 8) as u8);
        assert_eq!(stream[1], MAX_DATA_COUNT as u8);
    }

    #[test]
    fn literal_finds_matched_data_in_the_history() {
        let block = noise(20_000, 3);
        let blocks = vec![block.clone()];
        let ops = [Op::Block(0), Op::Lit(&block[5000..15000])];
        // With -z the receiver has the block in its window, so the literal
        // costs a few bytes; with -zz it cannot shrink.
        assert!(round_trip(6, true, &ops, &blocks).len() < 200);
        assert!(round_trip(6, false, &ops, &blocks).len() > 10_000);
    }

    #[test]
    fn blocks_over_0xffff_repeat_their_start_in_the_history() {
        // A 100000-byte block enters the history as bytes 0..65535 and then
        // again 0..34465, so the window ends with block[1697..34465]; its
        // true end, block[67232..], is not in the receiver's window.
        let block = noise(100_000, 11);
        let blocks = vec![block.clone()];
        let in_window = &block[10_000..34465];
        let stream = round_trip(6, true, &[Op::Block(0), Op::Lit(in_window)], &blocks);
        assert!(stream.len() < 300, "{} bytes", stream.len());
        let stream = round_trip(6, true, &[Op::Block(0), Op::Lit(&block[67232..])], &blocks);
        assert!(stream.len() > 30_000, "{} bytes", stream.len());
    }

    #[test]
    fn history_spans_many_small_blocks_and_a_wrapping_window() {
        // 100 blocks of 1000 bytes: the window holds the last 32 KiB of
        // them; a literal repeating blocks 80 and 97..=99 compresses to
        // little, and rebuilds only if the ring kept its order.
        let blocks: Vec<Vec<u8>> = (0..100).map(|i| noise(1000, i + 100)).collect();
        let mut ops: Vec<Op> = (0..100).map(Op::Block).collect();
        let tail = expected(
            &[Op::Block(80), Op::Block(97), Op::Block(98), Op::Block(99)],
            &blocks,
        );
        ops.push(Op::Lit(&tail));
        ops.push(Op::Block(50));
        ops.push(Op::Lit(&tail[..10]));
        let stream = round_trip(6, true, &ops, &blocks);
        assert!(stream.len() < 300, "{} bytes", stream.len());
    }

    #[test]
    fn each_file_starts_a_fresh_stream() {
        let blocks = vec![noise(4000, 5)];
        let text = b"one two three four five six seven eight nine ten ".repeat(100);
        let ops = [
            Op::Lit(&text),
            Op::Block(0),
            Op::Lit(&blocks[0][..3000]),
            Op::Lit(&text),
        ];
        let mut d = Deflater::new(6, true);
        let first = encode(&mut d, &ops, &blocks);
        let second = encode(&mut d, &ops, &blocks);
        // Same input, same bytes: nothing carried over from the first file.
        assert_eq!(first, second);
        assert_eq!(decode(&second, &blocks, true), expected(&ops, &blocks));
        // A file abandoned half way does not leak into the next one.
        let mut sink = Vec::new();
        d.start_file(&mut sink).literal(&text).unwrap();
        assert_eq!(encode(&mut d, &ops, &blocks), first);
    }

    #[test]
    fn options_choose_variant_and_level() {
        assert_eq!(choose(Compression::None, None), None);
        assert_eq!(choose(Compression::Zlib, None), Some((6, true)));
        assert_eq!(choose(Compression::ZlibX, None), Some((6, false)));
        assert_eq!(choose(Compression::None, Some(3)), Some((3, true)));
        assert_eq!(choose(Compression::Zlib, Some(0)), None);
        assert_eq!(choose(Compression::ZlibX, Some(0)), None);
        assert_eq!(choose(Compression::Zlib, Some(-1)), Some((6, true)));
        assert_eq!(choose(Compression::Zlib, Some(-7)), Some((1, true)));
        assert_eq!(choose(Compression::ZlibX, Some(42)), Some((9, false)));
    }
}
