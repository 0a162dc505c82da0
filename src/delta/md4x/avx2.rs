//! MD4's lanes in AVX2 registers: eight messages at once, on the x86-64
//! CPUs that report AVX2 at run time.
//!
//! Owns the mapping of [`Lanes`] onto AVX2 instructions and [`digest`], the
//! one function compiled for AVX2. The lane type is private and made only
//! inside that function, so no AVX2 instruction runs unless a caller has
//! found AVX2 on the CPU (calling it is `unsafe` for that reason).

use super::rounds::{self, word, Lanes, CHUNK};
use std::arch::x86_64 as arch;
use std::arch::x86_64::__m256i;

safe_intrinsics! { detected:
    _mm256_set1_epi32(a: i32) -> __m256i;
    _mm256_set_epi64x(e3: i64, e2: i64, e1: i64, e0: i64) -> __m256i;
    _mm256_extract_epi32<INDEX>(a: __m256i) -> i32;
    _mm256_add_epi32(a: __m256i, b: __m256i) -> __m256i;
    _mm256_and_si256(a: __m256i, b: __m256i) -> __m256i;
    _mm256_or_si256(a: __m256i, b: __m256i) -> __m256i;
    _mm256_xor_si256(a: __m256i, b: __m256i) -> __m256i;
    _mm256_slli_epi32<IMM8>(a: __m256i) -> __m256i;
    _mm256_srli_epi32<IMM8>(a: __m256i) -> __m256i;
    _mm256_unpacklo_epi32(a: __m256i, b: __m256i) -> __m256i;
    _mm256_unpackhi_epi32(a: __m256i, b: __m256i) -> __m256i;
    _mm256_unpacklo_epi64(a: __m256i, b: __m256i) -> __m256i;
    _mm256_unpackhi_epi64(a: __m256i, b: __m256i) -> __m256i;
    _mm256_permute2x128_si256<IMM8>(a: __m256i, b: __m256i) -> __m256i;
}

/// MD4 of `msgs[l] ‖ suffix` into `out[l]` for eight lanes, as
/// [`rounds::digest`].
#[target_feature(enable = "avx2")]
pub(super) fn digest(msgs: [&[u8]; 8], suffix: &[u8], out: &mut [[u8; 16]]) {
    rounds::digest::<Avx2, 8>(msgs, suffix, out)
}

/// One word of each of eight messages in a 256-bit register.
#[derive(Clone, Copy)]
struct Avx2(__m256i);

impl Lanes<8> for Avx2 {
    #[inline(always)]
    fn splat(x: u32) -> Self {
        Avx2(_mm256_set1_epi32(x as i32))
    }

    #[inline(always)]
    fn from_lanes(w: [u32; 8]) -> Self {
        // Lane 2i in the low half of the i-th 64-bit element.
        let pair = |i: usize| (u64::from(w[2 * i]) | u64::from(w[2 * i + 1]) << 32) as i64;
        Avx2(_mm256_set_epi64x(pair(3), pair(2), pair(1), pair(0)))
    }

    #[inline(always)]
    fn to_lanes(self) -> [u32; 8] {
        let v = self.0;
        [
            _mm256_extract_epi32::<0>(v),
            _mm256_extract_epi32::<1>(v),
            _mm256_extract_epi32::<2>(v),
            _mm256_extract_epi32::<3>(v),
            _mm256_extract_epi32::<4>(v),
            _mm256_extract_epi32::<5>(v),
            _mm256_extract_epi32::<6>(v),
            _mm256_extract_epi32::<7>(v),
        ]
        .map(|w| w as u32)
    }

    one_instruction_ops!(
        add _mm256_add_epi32, and _mm256_and_si256, or _mm256_or_si256, xor _mm256_xor_si256
    );

    /// AVX2 has no rotation: two shifts and an or.
    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        Avx2(_mm256_or_si256(
            _mm256_slli_epi32::<L>(self.0),
            _mm256_srli_epi32::<R>(self.0),
        ))
    }

    /// Eight words of each message in a register (one 32-byte load), then
    /// an 8×8 transpose: far fewer instructions than gathering word by
    /// word, which costs this path half its speed.
    #[inline(always)]
    fn load(chunks: [&[u8; CHUNK]; 8]) -> [Self; 16] {
        let mut x = [Avx2::splat(0); 16];
        for (k, x) in x.chunks_exact_mut(8).enumerate() {
            let r = chunks.map(|c| Avx2::from_lanes(std::array::from_fn(|i| word(c, 8 * k + i))).0);
            // Within each 128-bit half, as the SSE2 path: t[2p] holds
            // words 0 and 1 (4 and 5 above) of rows 2p and 2p+1, t[2p+1]
            // words 2 and 3 (6 and 7).
            let t: [__m256i; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_epi32(a, b)
                } else {
                    _mm256_unpackhi_epi32(a, b)
                }
            });
            // u[4h + w]: word w (and w + 4 above) of rows 4h..4h+4.
            let u: [__m256i; 8] = std::array::from_fn(|i| {
                let (h, w) = (i / 4, i % 4);
                let (a, b) = (t[4 * h + w / 2], t[4 * h + w / 2 + 2]);
                if w % 2 == 0 {
                    _mm256_unpacklo_epi64(a, b)
                } else {
                    _mm256_unpackhi_epi64(a, b)
                }
            });
            for w in 0..4 {
                x[w] = Avx2(_mm256_permute2x128_si256::<0x20>(u[w], u[w + 4]));
                x[w + 4] = Avx2(_mm256_permute2x128_si256::<0x31>(u[w], u[w + 4]));
            }
        }
        x
    }
}
