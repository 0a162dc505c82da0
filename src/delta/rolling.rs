//! rsync's weak ("rolling") checksum: rsync/checksum.c:get_checksum1 and the
//! O(1) updates that rsync/match.c:hash_search applies to it.
//!
//! Owns only the arithmetic. It must not read files or know about blocks,
//! tables or the wire; callers hand it bytes.
//!
//! The sum treats every byte as a *signed* char (CHAR_OFFSET is 0 in rsync), so
//! bytes 0x80..=0xFF count as -128..=-1. For a window x_0..x_{n-1}:
//! `s1 = Σ x_i`, `s2 = Σ (n - i)·x_i` (the sum of the running prefix sums), and
//! the value sent on the wire is `(s1 & 0xffff) | (s2 << 16)`. All arithmetic
//! wraps modulo 2^32, as rsync's `uint32` does.

/// The weak sum of `data`, as the generator sends it for a block.
pub(crate) fn weak_sum(data: &[u8]) -> u32 {
    RollingSum::new(data).value()
}

/// A weak sum over a sliding window, updated in O(1) per byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RollingSum {
    s1: u32,
    s2: u32,
    /// The window length, needed to remove the oldest byte's weight from `s2`.
    len: u32,
}

/// A byte as rsync's `schar`, widened with wrapping so it can be added to the sums.
#[inline(always)]
fn signed(byte: u8) -> u32 {
    byte as i8 as i32 as u32
}

impl RollingSum {
    /// The sum of the window `data` (a block or the short tail of a file).
    pub(crate) fn new(data: &[u8]) -> RollingSum {
        let (s1, s2) = block_sums(data);
        RollingSum {
            s1,
            s2,
            // A window longer than 4 GiB cannot occur: blocks are at most 2^29 bytes.
            len: data.len() as u32,
        }
    }

    /// The 32-bit value compared against the generator's weak sums.
    #[inline(always)]
    pub(crate) fn value(&self) -> u32 {
        (self.s1 & 0xffff) | (self.s2 << 16)
    }

    #[cfg(test)]
    /// The number of bytes the window currently covers.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Whether the window covers no bytes.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slide the window one byte: `outgoing` (its first byte) leaves and
    /// `incoming` (the byte just past its end) enters; the length is unchanged.
    #[inline(always)]
    pub(crate) fn roll(&mut self, outgoing: u8, incoming: u8) {
        let out = signed(outgoing);
        self.s1 = self.s1.wrapping_sub(out).wrapping_add(signed(incoming));
        self.s2 = self
            .s2
            .wrapping_sub(self.len.wrapping_mul(out))
            .wrapping_add(self.s1);
    }

    /// Drop the first byte without adding one: the window has reached the end
    /// of the file and becomes one byte shorter.
    #[inline]
    pub(crate) fn shrink(&mut self, outgoing: u8) {
        let out = signed(outgoing);
        self.s1 = self.s1.wrapping_sub(out);
        self.s2 = self.s2.wrapping_sub(self.len.wrapping_mul(out));
        self.len = self.len.saturating_sub(1);
    }
}

/// Bytes summed side by side by [`block_sums`]: a vector register's worth.
const LANES: usize = 16;

/// `(s1, s2)` of `data`. The byte-at-a-time running sums form one long
/// dependency chain; here each of [`LANES`] lanes keeps its own running sums
/// over every LANES-th byte, which vectorises, and the lanes are combined at
/// the end: with `r[j]` the sum of lane `j` and `s[j]` the sum of its running
/// sums, the first 16·C bytes have s2 = Σ_j (16·s[j] - j·r[j]).
fn block_sums(data: &[u8]) -> (u32, u32) {
    let mut r = [0u32; LANES];
    let mut s = [0u32; LANES];
    let mut chunks = data.chunks_exact(LANES);
    for chunk in &mut chunks {
        for j in 0..LANES {
            r[j] = r[j].wrapping_add(signed(chunk[j]));
            s[j] = s[j].wrapping_add(r[j]);
        }
    }
    let mut s1: u32 = 0;
    let mut s2: u32 = 0;
    for j in 0..LANES {
        s1 = s1.wrapping_add(r[j]);
        s2 = s2
            .wrapping_add((LANES as u32).wrapping_mul(s[j]))
            .wrapping_sub((j as u32).wrapping_mul(r[j]));
    }
    for &b in chunks.remainder() {
        s1 = s1.wrapping_add(signed(b));
        s2 = s2.wrapping_add(s1);
    }
    (s1, s2)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values worked out by hand from the definition in the module doc.
    #[test]
    fn hand_computed_vectors() {
        assert_eq!(weak_sum(&[]), 0);
        // s1 = 1+2+3 = 6, s2 = 1 + 3 + 6 = 10.
        assert_eq!(weak_sum(&[1, 2, 3]), 0x000a_0006);
        // "abc": s1 = 97+98+99 = 294 = 0x126; s2 = 97 + 195 + 294 = 586 = 0x24a.
        assert_eq!(weak_sum(b"abc"), 0x024a_0126);
        // 0x80 is -128: s1 = s2 = 0xffffff80 -> low half 0xff80, high half 0xff80.
        // (An unsigned sum would give 0x0080_0080.)
        assert_eq!(weak_sum(&[0x80]), 0xff80_ff80);
        // 0xff is -1: s1 = -1 + 1 = 0; s2 = -1 + 0 = 0xffffffff -> 0xffff_0000.
        assert_eq!(weak_sum(&[0xff, 0x01]), 0xffff_0000);
        // 1000 bytes of 0xff: s1 = -1000 = 0xfffffc18; s2 = -(1000*1001/2) = -500500
        // = 0xfff85cec, whose low 16 bits are 0x5cec.
        assert_eq!(weak_sum(&[0xff; 1000]), 0x5cec_fc18);
    }

    fn pseudo_random(n: usize) -> Vec<u8> {
        let mut x: u32 = 0x1234_5678;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    /// The running prefix sums, one byte at a time: the definition itself.
    fn prefix_sum_weak(data: &[u8]) -> u32 {
        let (mut s1, mut s2) = (0u32, 0u32);
        for &b in data {
            s1 = s1.wrapping_add(b as i8 as i32 as u32);
            s2 = s2.wrapping_add(s1);
        }
        (s1 & 0xffff) | (s2 << 16)
    }

    #[test]
    fn lane_sums_equal_prefix_sums() {
        let data = pseudo_random(5000);
        for len in (0..100).chain([255, 256, 1000, 4095, 5000]) {
            assert_eq!(
                weak_sum(&data[..len]),
                prefix_sum_weak(&data[..len]),
                "len {len}"
            );
        }
        // Extremes: all -128 and all 127 over a long block.
        for fill in [0x80u8, 0x7f] {
            let block = vec![fill; 1 << 20];
            assert_eq!(weak_sum(&block), prefix_sum_weak(&block));
        }
    }

    #[test]
    fn roll_equals_fresh_sum_at_every_offset() {
        let data = pseudo_random(4096);
        for window in [1usize, 2, 7, 64, 700, 1000] {
            let mut sum = RollingSum::new(&data[..window]);
            for off in 0..data.len() - window {
                assert_eq!(sum.value(), weak_sum(&data[off..off + window]), "off {off}");
                sum.roll(data[off], data[off + window]);
            }
        }
    }

    #[test]
    fn shrink_equals_fresh_sum_of_the_tail() {
        let data = pseudo_random(300);
        let start = 100;
        let mut sum = RollingSum::new(&data[start..]);
        for off in start..data.len() {
            assert_eq!(sum.value(), weak_sum(&data[off..]));
            assert_eq!(sum.len() as usize, data.len() - off);
            sum.shrink(data[off]);
        }
        assert!(sum.is_empty());
        assert_eq!(sum.value(), 0);
    }
}
