//! Multi-buffer MD4: the digests of several messages of one length at once,
//! each message in its own lane of a SIMD register (the technique
//! dropbox/fast_rsync uses for signatures).
//!
//! Owns only the MD4 arithmetic over lanes and the choice of the widest path
//! this CPU runs. It must not know about blocks, seeds or sums: callers hand
//! it the messages and the bytes every message ends with.
//!
//! MD4 (RFC 1320) is one long dependency chain per message, so a single
//! digest cannot use a vector unit; independent messages can. The lane code
//! is written once over `[u32; L]` arrays. With L = 8 in a function compiled
//! for AVX2 (used only when the CPU reports AVX2 at run time) the compiler
//! turns it into 256-bit vector instructions: about five times the scalar
//! rate. Elsewhere (x86-64 with SSE2 only, aarch64, armv7) the compiler does
//! not vectorise it as written, and L = 4 runs as four interleaved scalar
//! digests, which still overlap on an out-of-order core; hand-written SSE2
//! and NEON lanes would be the next step. L = 1 is the plain scalar path.

/// The most messages hashed side by side (AVX2: eight 32-bit lanes).
pub(crate) const MAX_LANES: usize = 8;

/// The longest tail every message may share (`suffix`): a seed is 4 bytes.
pub(crate) const MAX_SUFFIX: usize = 8;

/// MD4's initial state (RFC 1320, 3.3).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
/// Round 2 and round 3 constants.
const K2: u32 = 0x5a82_7999;
const K3: u32 = 0x6ed9_eba1;
/// Bytes per MD4 block.
const CHUNK: usize = 64;

/// One 32-bit word of each of L messages.
#[derive(Clone, Copy)]
struct V<const L: usize>([u32; L]);

impl<const L: usize> V<L> {
    #[inline(always)]
    fn splat(x: u32) -> Self {
        V([x; L])
    }

    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(u32, u32) -> u32) -> Self {
        let mut r = self.0;
        for (r, o) in r.iter_mut().zip(o.0) {
            *r = f(*r, o);
        }
        V(r)
    }

    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, u32::wrapping_add)
    }

    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.zip(o, |a, b| a & b)
    }

    #[inline(always)]
    fn or(self, o: Self) -> Self {
        self.zip(o, |a, b| a | b)
    }

    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        self.zip(o, |a, b| a ^ b)
    }

    /// Rotation (two shifts in vector units without a rotate).
    #[inline(always)]
    fn rotl<const S: u32>(self) -> Self {
        let mut r = self.0;
        for r in r.iter_mut() {
            *r = r.rotate_left(S);
        }
        V(r)
    }
}

#[inline(always)]
fn f<const L: usize>(x: V<L>, y: V<L>, z: V<L>) -> V<L> {
    z.xor(x.and(y.xor(z)))
}

#[inline(always)]
fn g<const L: usize>(x: V<L>, y: V<L>, z: V<L>) -> V<L> {
    x.and(y).or(z.and(x.or(y)))
}

#[inline(always)]
fn h<const L: usize>(x: V<L>, y: V<L>, z: V<L>) -> V<L> {
    x.xor(y).xor(z)
}

/// One MD4 block of every lane: RFC 1320's three rounds.
#[inline(always)]
fn compress<const L: usize>(state: &mut [V<L>; 4], x: &[V<L>; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;
    macro_rules! step {
        ($fun:ident, $a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:literal) => {
            $a = $fun($b, $c, $d).add($a).add($k).rotl::<$s>()
        };
    }
    for i in [0, 4, 8, 12] {
        step!(f, a, b, c, d, x[i], 3);
        step!(f, d, a, b, c, x[i + 1], 7);
        step!(f, c, d, a, b, x[i + 2], 11);
        step!(f, b, c, d, a, x[i + 3], 19);
    }
    let k2 = V::splat(K2);
    for i in [0, 1, 2, 3] {
        step!(g, a, b, c, d, x[i].add(k2), 3);
        step!(g, d, a, b, c, x[i + 4].add(k2), 5);
        step!(g, c, d, a, b, x[i + 8].add(k2), 9);
        step!(g, b, c, d, a, x[i + 12].add(k2), 13);
    }
    let k3 = V::splat(K3);
    for i in [0, 2, 1, 3] {
        step!(h, a, b, c, d, x[i].add(k3), 3);
        step!(h, d, a, b, c, x[i + 8].add(k3), 9);
        step!(h, c, d, a, b, x[i + 4].add(k3), 11);
        step!(h, b, c, d, a, x[i + 12].add(k3), 15);
    }
    state[0] = state[0].add(a);
    state[1] = state[1].add(b);
    state[2] = state[2].add(c);
    state[3] = state[3].add(d);
}

/// Word `j` of lane `l` is bytes `4j..4j+4` of `chunks[l]`, little-endian.
#[inline(always)]
fn load<const L: usize>(chunks: [&[u8; CHUNK]; L]) -> [V<L>; 16] {
    let mut x = [V([0; L]); 16];
    for (l, chunk) in chunks.iter().enumerate() {
        for (j, word) in chunk.chunks_exact(4).enumerate() {
            x[j].0[l] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
    }
    x
}

/// MD4 of `msgs[l] ‖ suffix` for every lane; all messages are equally long.
#[inline(always)]
fn digest_lanes<const L: usize>(msgs: &[&[u8]; L], suffix: &[u8], out: &mut [[u8; 16]]) {
    let n = msgs[0].len();
    let mut state = INIT.map(V::splat);
    let whole = n / CHUNK * CHUNK;
    let mut at = 0;
    while at < whole {
        let chunks = std::array::from_fn(|l| {
            msgs[l][at..at + CHUNK]
                .try_into()
                .expect("every message holds the chunk")
        });
        compress(&mut state, &load::<L>(chunks));
        at += CHUNK;
    }
    // The rest, the suffix, the 0x80 marker, zeros and the bit length: one
    // block, or two when they do not fit in one.
    let rest = n - whole;
    let used = rest + suffix.len() + 1;
    let tail_len = if used + 8 <= CHUNK { CHUNK } else { 2 * CHUNK };
    let bits = ((n + suffix.len()) as u64).wrapping_mul(8).to_le_bytes();
    let mut tails = [[0u8; 2 * CHUNK]; L];
    for (tail, msg) in tails.iter_mut().zip(msgs) {
        tail[..rest].copy_from_slice(&msg[whole..]);
        tail[rest..rest + suffix.len()].copy_from_slice(suffix);
        tail[rest + suffix.len()] = 0x80;
        tail[tail_len - 8..tail_len].copy_from_slice(&bits);
    }
    for half in 0..tail_len / CHUNK {
        let chunks = std::array::from_fn(|l| {
            tails[l][half * CHUNK..(half + 1) * CHUNK]
                .try_into()
                .expect("a tail is two chunks")
        });
        compress(&mut state, &load::<L>(chunks));
    }
    for (l, digest) in out.iter_mut().take(L).enumerate() {
        for (w, word) in state.iter().enumerate() {
            digest[4 * w..4 * w + 4].copy_from_slice(&word.0[l].to_le_bytes());
        }
    }
}

/// A way of hashing lanes; tests run each that this CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// One message at a time (what the paths below use for leftovers).
    #[cfg(test)]
    Scalar,
    /// Four interleaved lanes, for CPUs without AVX2.
    X4,
    /// Eight lanes in AVX2 registers, on x86-64 CPUs that have AVX2.
    #[cfg(target_arch = "x86_64")]
    X8,
}

impl Path {
    /// The widest path this CPU runs.
    pub(crate) fn best() -> Path {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            return Path::X8;
        }
        Path::X4
    }

    /// The paths this CPU runs, narrowest first.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Path> {
        let mut paths = vec![Path::Scalar, Path::X4];
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            paths.push(Path::X8);
        }
        paths
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    // The standard library caches the answer after the first call.
    std::is_x86_feature_detected!("avx2")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn digest_x8_avx2(msgs: &[&[u8]; 8], suffix: &[u8], out: &mut [[u8; 16]]) {
    digest_lanes::<8>(msgs, suffix, out)
}

/// MD4 of `msg ‖ suffix` for every message of `msgs` (all of one length),
/// into `out[i]` (at least as many as messages), as wide as `path` goes.
/// A suffix over [`MAX_SUFFIX`] bytes is cut.
pub(crate) fn md4_many_with(path: Path, msgs: &[&[u8]], suffix: &[u8], out: &mut [[u8; 16]]) {
    let suffix = &suffix[..suffix.len().min(MAX_SUFFIX)];
    debug_assert!(msgs.iter().all(|m| m.len() == msgs[0].len()));
    debug_assert!(out.len() >= msgs.len());
    let mut i = 0;
    while i < msgs.len() {
        let (group, out) = (&msgs[i..], &mut out[i..]);
        i += match path {
            #[cfg(target_arch = "x86_64")]
            Path::X8 if group.len() >= 8 => {
                let group = group[..8].try_into().expect("eight left");
                // SAFETY: Path::X8 is only chosen (by `best`, and by tests
                // through `available`) after avx2() found AVX2 on this CPU.
                unsafe { digest_x8_avx2(group, suffix, out) };
                8
            }
            #[cfg(test)]
            Path::Scalar => {
                digest_lanes::<1>(&[group[0]], suffix, out);
                1
            }
            _ if group.len() >= 4 => {
                digest_lanes::<4>(group[..4].try_into().expect("four left"), suffix, out);
                4
            }
            _ => {
                digest_lanes::<1>(&[group[0]], suffix, out);
                1
            }
        };
    }
}

/// [`md4_many_with`] on the widest path this CPU has.
pub(crate) fn md4_many(msgs: &[&[u8]], suffix: &[u8], out: &mut [[u8; 16]]) {
    md4_many_with(Path::best(), msgs, suffix, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use md4::{Digest, Md4};

    fn reference(msg: &[u8], suffix: &[u8]) -> [u8; 16] {
        let mut md = Md4::new();
        md.update(msg);
        md.update(suffix);
        md.finalize().into()
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn every_path_equals_the_md4_crate() {
        let data = pseudo_random(13 * 2999 + 4093, 7);
        // Lengths around the one- and two-block tails and the chunk size.
        let lens = (0..=200).chain([255, 256, 700, 1000, 2048, 4093]);
        for path in Path::available() {
            for len in lens.clone() {
                for suffix in [&[][..], &[1, 2, 3, 4][..]] {
                    for count in [1, 3, 4, 5, 8, 9, 13] {
                        let msgs: Vec<&[u8]> = (0..count)
                            .map(|i| &data[i * 2999..i * 2999 + len])
                            .collect();
                        let mut out = [[0u8; 16]; 16];
                        md4_many_with(path, &msgs, suffix, &mut out);
                        for (i, msg) in msgs.iter().enumerate() {
                            assert_eq!(
                                out[i],
                                reference(msg, suffix),
                                "{path:?}, len {len}, lane {i} of {count}, suffix {suffix:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_default_path_is_the_widest() {
        assert_eq!(Path::best(), *Path::available().last().unwrap());
        let msgs = [&b"abc"[..]; 9];
        let mut out = [[0u8; 16]; 9];
        md4_many(&msgs, &[], &mut out);
        assert!(out.iter().all(|d| *d == reference(b"abc", &[])));
    }
}
