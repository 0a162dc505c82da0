//! Synthetic inputs for measuring and testing the delta engine (`upserv
//! bench`, `cargo bench --bench delta`, randomized tests): a seeded
//! generator, random edits, a mostly-zero disk image, and the sums a
//! protocol-29 receiver would send.
//!
//! Owns only pure helpers: no timing and no files (the benchmark's timing
//! and file reading live in the crate's `bench` module).

use super::strong::StrongSum;
use super::sums::{block_len_for, generate, strong_len_for, BlockSums};
use std::io::{self, Read};

/// The protocol whose block sizes the benchmark uses.
const PROTOCOL: u32 = 29;
/// "1% changed": one small edit per this many blocks.
const BLOCKS_PER_EDIT: u64 = 100;
/// Longest single edit (overwrite, insertion or deletion).
const MAX_EDIT: usize = 64;
/// The disk image is zeros except for this share (in percent) of data.
const DISK_DATA_PERCENT: u64 = 10;
/// Size range of the disk image's data regions.
const DISK_REGION_MIN: usize = 64 * 1024;
const DISK_REGION_MAX: usize = 1024 * 1024;

/// How many edits change about 1% of the blocks of a `size`-byte file.
pub(crate) fn edits_for(size: u64) -> usize {
    let block_len = u64::from(block_len_for(size, PROTOCOL));
    (size / block_len / BLOCKS_PER_EDIT).max(1) as usize
}

/// The sums a protocol-29 receiver would send for `basis`.
pub(crate) fn sums_for(basis: impl Read, len: u64, sum: StrongSum) -> io::Result<BlockSums> {
    let block_len = block_len_for(len, PROTOCOL);
    let strong_len = strong_len_for(len, block_len, false, sum.kind.digest_len());
    generate(basis, len, block_len, strong_len, sum)
}

/// `data` with `count` small edits at random places, in order: overwrites,
/// insertions and deletions of 1..=64 bytes.
pub(crate) fn edit(data: &[u8], count: usize, rng: &mut Prng) -> Vec<u8> {
    let mut places: Vec<usize> = (0..count).map(|_| rng.below(data.len() + 1)).collect();
    places.sort_unstable();
    let mut out = Vec::with_capacity(data.len() + count * MAX_EDIT);
    let mut from = 0;
    for at in places {
        let at = at.max(from);
        out.extend_from_slice(&data[from..at]);
        let n = 1 + rng.below(MAX_EDIT);
        let mut fresh = [0u8; MAX_EDIT];
        rng.fill(&mut fresh[..n]);
        from = match rng.below(3) {
            0 => {
                out.extend_from_slice(&fresh[..n]);
                (at + n).min(data.len())
            }
            1 => {
                out.extend_from_slice(&fresh[..n]);
                at
            }
            _ => (at + n).min(data.len()),
        };
    }
    out.extend_from_slice(&data[from..]);
    out
}

/// Zeros with random data regions making up about a tenth of it.
pub(crate) fn disk_image(len: usize, rng: &mut Prng) -> Vec<u8> {
    let mut disk = vec![0u8; len];
    let mut data_left = len as u64 * DISK_DATA_PERCENT / 100;
    while data_left > 0 && len > 0 {
        let n = (DISK_REGION_MIN + rng.below(DISK_REGION_MAX - DISK_REGION_MIN))
            .min(data_left as usize)
            .min(len);
        let at = rng.below(len - n + 1);
        rng.fill(&mut disk[at..at + n]);
        data_left -= n as u64;
    }
    disk
}

/// SplitMix64: a tiny seeded generator, so synthetic data and randomized
/// tests are the same on every run.
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`); the tiny modulo bias does not matter here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }
}
