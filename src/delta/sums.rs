//! The generator's side of the delta: the block sums a receiver sends for its
//! basis file ([`BlockSums`]), the sizes rsync/generator.c:sum_sizes_sqroot
//! picks for them, and [`generate`], which computes them as
//! rsync/generator.c:generate_and_send_sums does.
//!
//! The protocol layer fills a `BlockSums` from the wire; tests and benchmarks
//! use `generate`. This file must not validate peer input against file sizes
//! (the protocol layer does that before allocating) and must not do I/O other
//! than reading the basis handed to `generate`.

use super::md4x::MAX_LANES;
use super::rolling::weak_sum;
use super::strong::{block_strong_sums, StrongSum, STRONG_SUM_LEN};
use std::io::{self, Read};

/// rsync's BLOCK_SIZE: the block length of files up to 700² bytes, and the
/// smallest one it picks for larger files.
const MIN_BLOCK_LEN: u32 = 700;
/// Largest block length rsync picks below protocol 30 (OLD_MAX_BLOCK_SIZE).
const MAX_BLOCK_LEN_PROTO29: u32 = 1 << 29;
/// Largest block length rsync picks from protocol 30 on (MAX_BLOCK_SIZE).
const MAX_BLOCK_LEN_PROTO30: u32 = 1 << 17;
/// Block lengths above 700 are multiples of this.
const BLOCK_LEN_ROUNDING: u64 = 8;
/// rsync's BLOCKSUM_BIAS: bits of safety in the strong-sum length estimate.
const BLOCKSUM_BIAS: i32 = 10;
/// Strong-sum bytes of the first pass (SHORT_SUM_LENGTH), the least sent.
const SHORT_STRONG_LEN: usize = 2;
/// The most strong-sum bytes a generator sends per block (SUM_LENGTH), even
/// for a longer digest.
const MAX_BLOCK_STRONG_LEN: usize = 16;
/// [`generate`] reads (and hashes) at most this many bytes of blocks at once,
/// unless one block is longer.
const GENERATE_READ_MAX: u64 = 1 << 20;
/// Entries reserved up front, whatever count the peer announced: the rest
/// grows as sums actually arrive.
const MAX_RESERVED_BLOCKS: usize = 1 << 16;

/// The sums of a basis file: one weak and one (truncated) strong sum per
/// block of `block_len` bytes, the last block `remainder` bytes when non-zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockSums {
    block_len: u32,
    remainder: u32,
    strong_len: usize,
    /// The count from the sum head; in append mode no sums follow it.
    announced: usize,
    weak: Vec<u32>,
    strong: Vec<u8>,
}

impl BlockSums {
    /// Sums for `count` blocks, as announced by a sum head. The protocol layer
    /// has checked `strong_len` against the digest and `remainder <=
    /// block_len`; a strong length over [`STRONG_SUM_LEN`] is cut.
    pub(crate) fn new(
        block_len: u32,
        remainder: u32,
        strong_len: usize,
        count: usize,
    ) -> BlockSums {
        let strong_len = strong_len.min(STRONG_SUM_LEN);
        let reserve = count.min(MAX_RESERVED_BLOCKS);
        BlockSums {
            block_len,
            remainder,
            strong_len,
            announced: count,
            weak: Vec::with_capacity(reserve),
            strong: Vec::with_capacity(reserve * strong_len),
        }
    }

    /// Add the next block's sums. `strong` holds `strong_len` bytes (a longer
    /// one is cut, a shorter one padded with zeros).
    pub(crate) fn push(&mut self, weak: u32, strong: &[u8]) {
        debug_assert_eq!(strong.len(), self.strong_len);
        let take = strong.len().min(self.strong_len);
        self.weak.push(weak);
        self.strong.extend_from_slice(&strong[..take]);
        self.strong.resize(self.weak.len() * self.strong_len, 0);
    }

    /// How many blocks have sums (pushed so far).
    pub(crate) fn count(&self) -> usize {
        self.weak.len()
    }

    /// The block length from the sum head.
    pub(crate) fn block_len(&self) -> u32 {
        self.block_len
    }

    /// Length of the last block, 0 when it is a whole block.
    pub(crate) fn remainder(&self) -> u32 {
        self.remainder
    }

    /// Bytes of each strong sum.
    pub(crate) fn strong_len(&self) -> usize {
        self.strong_len
    }

    /// Length of the basis file the sum head describes, from its announced
    /// count: in append mode, where no sums follow the head, the length of
    /// the part the receiver already has.
    pub(crate) fn basis_len(&self) -> u64 {
        let whole = (self.announced as u64).saturating_mul(u64::from(self.block_len));
        if self.remainder == 0 || self.announced == 0 {
            whole
        } else {
            whole - u64::from(self.block_len) + u64::from(self.remainder)
        }
    }

    /// The weak sum of block `i`.
    pub(crate) fn weak(&self, i: usize) -> u32 {
        self.weak[i]
    }

    /// The strong sum of block `i`, `strong_len` bytes.
    pub(crate) fn strong(&self, i: usize) -> &[u8] {
        &self.strong[i * self.strong_len..(i + 1) * self.strong_len]
    }

    /// Length of block `i`: the remainder for the last block, if it has one.
    pub(crate) fn len_of(&self, i: usize) -> u32 {
        if i + 1 == self.count() {
            self.last_len()
        } else {
            self.block_len
        }
    }

    /// Length of the last block.
    pub(crate) fn last_len(&self) -> u32 {
        if self.remainder != 0 {
            self.remainder
        } else {
            self.block_len
        }
    }

    /// Whether blocks `a` and `b` are interchangeable for matching.
    pub(crate) fn same_block(&self, a: usize, b: usize) -> bool {
        self.weak[a] == self.weak[b]
            && self.len_of(a) == self.len_of(b)
            && self.strong(a) == self.strong(b)
    }
}

/// The block length rsync's generator picks for a basis of `file_len` bytes:
/// 700 up to 700² bytes, then about √len rounded down to a multiple of 8,
/// capped at 2^29 below protocol 30 and 2^17 from protocol 30 on.
pub(crate) fn block_len_for(file_len: u64, protocol: u32) -> u32 {
    if file_len <= u64::from(MIN_BLOCK_LEN) * u64::from(MIN_BLOCK_LEN) {
        return MIN_BLOCK_LEN;
    }
    let max = if protocol < 30 {
        MAX_BLOCK_LEN_PROTO29
    } else {
        MAX_BLOCK_LEN_PROTO30
    };
    // The highest power of two whose square does not exceed the length.
    let mut bit: u64 = 1;
    let mut rest = file_len >> 2;
    while rest != 0 {
        bit <<= 1;
        rest >>= 2;
    }
    if bit >= u64::from(max) {
        return max;
    }
    // Integer square root, bit by bit down to the rounding unit.
    let mut len: u64 = 0;
    while bit >= BLOCK_LEN_ROUNDING {
        len |= bit;
        if len * len > file_len {
            len &= !bit;
        }
        bit >>= 1;
    }
    // Below the cap, so it fits.
    (len as u32).max(MIN_BLOCK_LEN)
}

/// The strong-sum length rsync's generator sends at protocol 27 and later
/// for a digest of `sum_len` bytes: all of it, up to 16, in the redo pass
/// (`full`), otherwise an estimate from the file and block lengths of the
/// bytes needed to make a false match unlikely, at least 2.
pub(crate) fn strong_len_for(file_len: u64, block_len: u32, full: bool, sum_len: usize) -> usize {
    let most = sum_len.min(MAX_BLOCK_STRONG_LEN);
    if full {
        return most;
    }
    let mut bits = BLOCKSUM_BIAS + 2 * floor_log2(file_len) as i32;
    let mut len = block_len >> 1;
    while len != 0 && bits != 0 {
        bits -= 1;
        len >>= 1;
    }
    // Add a bit, take off the 32 bits of the weak sum, round up to bytes;
    // Rust's division truncates toward zero as rsync's C does.
    let bytes = (bits + 1 - 32 + 7) / 8;
    (bytes.max(0) as usize).clamp(SHORT_STRONG_LEN.min(most), most)
}

/// Number of times `n` can be halved before it reaches 0, minus one; 0 for 0.
fn floor_log2(n: u64) -> u32 {
    63u32.saturating_sub(n.leading_zeros())
}

/// Compute the sums of `len` bytes of `basis` as a generator does: blocks of
/// `block_len` bytes, the last one shorter, strong sums cut to `strong_len`.
pub(crate) fn generate(
    mut basis: impl Read,
    len: u64,
    block_len: u32,
    strong_len: usize,
    strong_sum: StrongSum,
) -> io::Result<BlockSums> {
    if block_len == 0 && len > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "block length 0 for a non-empty basis",
        ));
    }
    let remainder = if len == 0 {
        0
    } else {
        (len % u64::from(block_len)) as u32
    };
    let count = if len == 0 {
        0
    } else {
        len.div_ceil(u64::from(block_len))
    };
    let count = usize::try_from(count)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many blocks"))?;
    let mut sums = BlockSums::new(block_len, remainder, strong_len, count);
    // Whole blocks are read and hashed several at a time (multi-buffer
    // MD4); the short last block, if any, alone.
    let block_len = u64::from(block_len);
    let lanes = (GENERATE_READ_MAX / block_len.max(1)).clamp(1, MAX_LANES as u64);
    let mut buf = vec![0u8; (block_len * lanes).min(len) as usize];
    let mut strong = [[0u8; STRONG_SUM_LEN]; MAX_LANES];
    let mut left = len;
    while left > 0 {
        let whole = (left / block_len).min(lanes) as usize;
        let (n, each) = if whole > 0 {
            (whole, block_len as usize)
        } else {
            (1, left as usize)
        };
        let data = &mut buf[..n * each];
        basis.read_exact(data)?;
        let mut blocks = [&[][..]; MAX_LANES];
        for (slot, block) in blocks.iter_mut().zip(data.chunks_exact(each)) {
            *slot = block;
        }
        block_strong_sums(&blocks[..n], strong_sum, &mut strong);
        for (block, strong) in blocks[..n].iter().zip(&strong) {
            sums.push(weak_sum(block), &strong[..sums.strong_len()]);
        }
        left -= (n * each) as u64;
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::strong::block_strong_sum;

    #[test]
    fn block_lengths_follow_the_square_root() {
        // Up to 700*700 = 490000 bytes: 700.
        assert_eq!(block_len_for(0, 29), 700);
        assert_eq!(block_len_for(490_000, 29), 700);
        // √490001 ≈ 700.0007 -> 696 after rounding down to 8, then at least 700.
        assert_eq!(block_len_for(490_001, 29), 700);
        // 1 MiB: √2^20 = 1024 exactly.
        assert_eq!(block_len_for(1 << 20, 29), 1024);
        assert_eq!(block_len_for((1 << 20) - 1, 29), 1016);
        // 64 MiB: 8192.
        assert_eq!(block_len_for(64 << 20, 29), 8192);
        // 10^9: √ = 31622.8 -> 31616 (a multiple of 8; 31624² > 10^9).
        assert_eq!(block_len_for(1_000_000_000, 29), 31616);
        // 2^40: 2^20 at protocol 29, capped at 2^17 from 30 on.
        assert_eq!(block_len_for(1 << 40, 29), 1 << 20);
        assert_eq!(block_len_for(1 << 40, 30), 1 << 17);
        // 2^60 bytes: √ = 2^30, capped at 2^29.
        assert_eq!(block_len_for(1 << 60, 29), 1 << 29);
        assert_eq!(block_len_for(u64::MAX, 29), 1 << 29);
    }

    #[test]
    fn strong_lengths_follow_generator_c() {
        // 64 MiB, blocks of 8192: bits = 10 + 2*26 - 13 = 49, (49+1-32+7)/8 = 3.
        assert_eq!(strong_len_for(64 << 20, 8192, false, 16), 3);
        // 1 MiB, 1024: 10 + 40 - 10 = 40 -> (40-24)/8 = 2.
        assert_eq!(strong_len_for(1 << 20, 1024, false, 16), 2);
        // Tiny files: negative estimate, at least 2.
        assert_eq!(strong_len_for(0, 700, false, 16), 2);
        assert_eq!(strong_len_for(100, 700, false, 16), 2);
        // 2^40 bytes, blocks 2^20: 10 + 80 - 20 = 70 -> (70-24)/8 = 5.
        assert_eq!(strong_len_for(1 << 40, 1 << 20, false, 16), 5);
        // Redo pass: full sums.
        assert_eq!(strong_len_for(100, 700, true, 16), 16);
    }

    #[test]
    fn generate_cuts_the_file_into_blocks() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
        let sums = generate(&data[..], 2500, 1000, 4, StrongSum::md4_auto(0)).unwrap();
        assert_eq!(sums.count(), 3);
        assert_eq!(sums.remainder(), 500);
        assert_eq!(sums.basis_len(), 2500);
        assert_eq!(sums.len_of(2), 500);
        assert_eq!(sums.weak(1), weak_sum(&data[1000..2000]));
        let mut strong = [0u8; STRONG_SUM_LEN];
        block_strong_sum(&data[2000..], StrongSum::md4_auto(0), &mut strong);
        assert_eq!(sums.strong(2), &strong[..4]);

        let empty = generate(&[][..], 0, 700, 2, StrongSum::md4_auto(1)).unwrap();
        assert_eq!(empty.count(), 0);
        assert_eq!(empty.basis_len(), 0);

        let exact = generate(&data[..2000], 2000, 1000, 2, StrongSum::md4_auto(0)).unwrap();
        assert_eq!(
            (exact.count(), exact.remainder(), exact.len_of(1)),
            (2, 0, 1000)
        );

        let short = generate(&data[..10], 20, 8, 2, StrongSum::md4_auto(0));
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn announced_count_gives_the_basis_length_without_sums() {
        // An append-mode head: 3 blocks of 1000, the last 250 long.
        let head = BlockSums::new(1000, 250, 2, 3);
        assert_eq!(head.count(), 0);
        assert_eq!(head.basis_len(), 2250);
        assert_eq!(BlockSums::new(1000, 0, 2, 3).basis_len(), 3000);
    }
}
