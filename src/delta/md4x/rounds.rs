//! MD4 (RFC 1320) over lanes, written once: the padding, the three rounds
//! and the digest, for any type that holds one 32-bit word of each of N
//! messages and implements [`Lanes`]; and that for a plain `u32`, one
//! message at a time.
//!
//! Owns only the arithmetic. Which lane type runs where is the parent's
//! choice; the SIMD lane types live beside this file (`avx2`, `sse2`,
//! `neon`).

/// Bytes per MD4 block.
pub(super) const CHUNK: usize = 64;

/// MD4's initial state (RFC 1320, 3.3).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
/// Round 2 and round 3 constants.
const K2: u32 = 0x5a82_7999;
const K3: u32 = 0x6ed9_eba1;

/// One 32-bit word of each of N messages, and what MD4 does with it. Every
/// method is a few instructions, inlined into [`digest`]; a SIMD type
/// overrides the provided methods where it has something better.
pub(super) trait Lanes<const N: usize>: Copy {
    /// `x` in every lane.
    fn splat(x: u32) -> Self;
    /// `words[l]` in lane `l`.
    fn from_lanes(words: [u32; N]) -> Self;
    /// Lane `l` at `[l]`.
    fn to_lanes(self) -> [u32; N];
    /// Wrapping addition.
    fn add(self, o: Self) -> Self;
    fn and(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    /// Rotation left by `L` bits; `R` is `32 - L`, given too because
    /// stable Rust cannot compute it from `L` in a const argument, and
    /// shift instructions take their counts as constants.
    fn rotl<const L: i32, const R: i32>(self) -> Self;

    /// MD4's F: `y` where `x` has a bit set, `z` elsewhere.
    #[inline(always)]
    fn select(x: Self, y: Self, z: Self) -> Self {
        z.xor(x.and(y.xor(z)))
    }

    /// MD4's G: each bit set in at least two of `x`, `y`, `z`.
    #[inline(always)]
    fn majority(x: Self, y: Self, z: Self) -> Self {
        x.and(y).or(z.and(x.or(y)))
    }

    /// MD4's H: each bit set in an odd number of `x`, `y`, `z`.
    #[inline(always)]
    fn parity(x: Self, y: Self, z: Self) -> Self {
        x.xor(y).xor(z)
    }

    /// The sixteen words of MD4's block: word `j` of `chunks[l]` in lane
    /// `l` of `[j]`. SIMD types load rows and transpose them instead.
    #[inline(always)]
    fn load(chunks: [&[u8; CHUNK]; N]) -> [Self; 16] {
        std::array::from_fn(|j| Self::from_lanes(chunks.map(|c| word(c, j))))
    }
}

/// Word `j` of a block, little-endian as MD4 reads it.
#[inline(always)]
pub(super) fn word(chunk: &[u8; CHUNK], j: usize) -> u32 {
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| chunk[4 * j + i]);
    u32::from_le_bytes([a, b, c, d])
}

/// One message at a time: the scalar path, and the reference the SIMD
/// paths are tested against.
impl Lanes<1> for u32 {
    #[inline(always)]
    fn splat(x: u32) -> Self {
        x
    }

    #[inline(always)]
    fn from_lanes([x]: [u32; 1]) -> Self {
        x
    }

    #[inline(always)]
    fn to_lanes(self) -> [u32; 1] {
        [self]
    }

    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }

    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self & o
    }

    #[inline(always)]
    fn or(self, o: Self) -> Self {
        self | o
    }

    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        self ^ o
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        self.rotate_left(L as u32)
    }
}

/// One MD4 block of every lane: RFC 1320's three rounds.
#[inline(always)]
fn compress<V: Lanes<N>, const N: usize>(state: &mut [V; 4], x: &[V; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! step {
        ($fun:ident, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $l:literal, $r:literal) => {
            const { assert!($l + $r == 32) };
            $a = V::$fun($b, $c, $d).add($a).add($k).rotl::<$l, $r>()
        };
    }
    for i in [0, 4, 8, 12] {
        step!(select, a, b, c, d, x[i], 3, 29);
        step!(select, d, a, b, c, x[i + 1], 7, 25);
        step!(select, c, d, a, b, x[i + 2], 11, 21);
        step!(select, b, c, d, a, x[i + 3], 19, 13);
    }
    let k2 = V::splat(K2);
    for i in [0, 1, 2, 3] {
        step!(majority, a, b, c, d, x[i].add(k2), 3, 29);
        step!(majority, d, a, b, c, x[i + 4].add(k2), 5, 27);
        step!(majority, c, d, a, b, x[i + 8].add(k2), 9, 23);
        step!(majority, b, c, d, a, x[i + 12].add(k2), 13, 19);
    }
    let k3 = V::splat(K3);
    for i in [0, 2, 1, 3] {
        step!(parity, a, b, c, d, x[i].add(k3), 3, 29);
        step!(parity, d, a, b, c, x[i + 8].add(k3), 9, 23);
        step!(parity, c, d, a, b, x[i + 4].add(k3), 11, 21);
        step!(parity, b, c, d, a, x[i + 12].add(k3), 15, 17);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.add(v);
    }
}

/// MD4 of `msgs[l] ‖ suffix` into `out[l]` for every lane; all messages are
/// equally long, `suffix` at most [`super::MAX_SUFFIX`] bytes and `out` at
/// least N digests.
#[inline(always)]
pub(super) fn digest<V: Lanes<N>, const N: usize>(
    msgs: [&[u8]; N],
    suffix: &[u8],
    out: &mut [[u8; 16]],
) {
    let n = msgs[0].len();
    let mut state = INIT.map(V::splat);
    let whole = n - n % CHUNK;
    for at in (0..whole).step_by(CHUNK) {
        let chunks = msgs.map(|m| {
            m[at..at + CHUNK]
                .try_into()
                .expect("every message holds the chunk")
        });
        compress(&mut state, &V::load(chunks));
    }
    // The rest, the suffix, the 0x80 marker, zeros and the bit length: one
    // block, or two when they do not fit in one.
    let rest = n - whole;
    let used = rest + suffix.len() + 1;
    let tail_len = if used + 8 <= CHUNK { CHUNK } else { 2 * CHUNK };
    let bits = ((n + suffix.len()) as u64).wrapping_mul(8).to_le_bytes();
    let mut tails = [[0u8; 2 * CHUNK]; N];
    for (tail, msg) in tails.iter_mut().zip(msgs) {
        tail[..rest].copy_from_slice(&msg[whole..]);
        tail[rest..rest + suffix.len()].copy_from_slice(suffix);
        tail[rest + suffix.len()] = 0x80;
        tail[tail_len - 8..tail_len].copy_from_slice(&bits);
    }
    for at in (0..tail_len).step_by(CHUNK) {
        let chunks = std::array::from_fn(|l| {
            tails[l][at..at + CHUNK]
                .try_into()
                .expect("a tail is two chunks")
        });
        compress(&mut state, &V::load(chunks));
    }
    let words = state.map(V::to_lanes);
    for (l, digest) in out[..N].iter_mut().enumerate() {
        for (w, word) in words.iter().enumerate() {
            digest[4 * w..4 * w + 4].copy_from_slice(&word[l].to_le_bytes());
        }
    }
}
