//! MD4's lanes in SSE2 registers: four messages at once on any x86-64 CPU.
//!
//! Owns only the mapping of [`Lanes`] onto SSE2 instructions. SSE2 is part
//! of x86-64 itself: nothing is detected.

use super::rounds::{word, Lanes, CHUNK};
use std::arch::x86_64 as arch;
use std::arch::x86_64::__m128i;

safe_intrinsics! { baseline "sse2":
    _mm_set1_epi32(a: i32) -> __m128i;
    _mm_set_epi32(e3: i32, e2: i32, e1: i32, e0: i32) -> __m128i;
    _mm_cvtsi128_si32(a: __m128i) -> i32;
    _mm_shuffle_epi32<IMM8>(a: __m128i) -> __m128i;
    _mm_add_epi32(a: __m128i, b: __m128i) -> __m128i;
    _mm_and_si128(a: __m128i, b: __m128i) -> __m128i;
    _mm_or_si128(a: __m128i, b: __m128i) -> __m128i;
    _mm_xor_si128(a: __m128i, b: __m128i) -> __m128i;
    _mm_slli_epi32<IMM8>(a: __m128i) -> __m128i;
    _mm_srli_epi32<IMM8>(a: __m128i) -> __m128i;
    _mm_unpacklo_epi32(a: __m128i, b: __m128i) -> __m128i;
    _mm_unpackhi_epi32(a: __m128i, b: __m128i) -> __m128i;
    _mm_unpacklo_epi64(a: __m128i, b: __m128i) -> __m128i;
    _mm_unpackhi_epi64(a: __m128i, b: __m128i) -> __m128i;
}

/// One word of each of four messages in a 128-bit register.
#[derive(Clone, Copy)]
pub(super) struct Sse2(__m128i);

impl Lanes<4> for Sse2 {
    #[inline(always)]
    fn splat(x: u32) -> Self {
        Sse2(_mm_set1_epi32(x as i32))
    }

    #[inline(always)]
    fn from_lanes(w: [u32; 4]) -> Self {
        Sse2(_mm_set_epi32(
            w[3] as i32,
            w[2] as i32,
            w[1] as i32,
            w[0] as i32,
        ))
    }

    #[inline(always)]
    fn to_lanes(self) -> [u32; 4] {
        let v = self.0;
        [
            _mm_cvtsi128_si32(v),
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<1>(v)),
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<2>(v)),
            _mm_cvtsi128_si32(_mm_shuffle_epi32::<3>(v)),
        ]
        .map(|w| w as u32)
    }

    one_instruction_ops!(add _mm_add_epi32, and _mm_and_si128, or _mm_or_si128, xor _mm_xor_si128);

    /// SSE2 has no rotation: two shifts and an or.
    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        Sse2(_mm_or_si128(
            _mm_slli_epi32::<L>(self.0),
            _mm_srli_epi32::<R>(self.0),
        ))
    }

    /// Four words of each message in a register (one 16-byte load), then
    /// a 4×4 transpose so that each register holds one word of every
    /// message: far fewer instructions than gathering word by word.
    #[inline(always)]
    fn load(chunks: [&[u8; CHUNK]; 4]) -> [Self; 16] {
        let mut x = [Sse2::splat(0); 16];
        for (k, x) in x.chunks_exact_mut(4).enumerate() {
            let [r0, r1, r2, r3] =
                chunks.map(|c| Sse2::from_lanes(std::array::from_fn(|i| word(c, 4 * k + i))).0);
            // t0: r0[0] r1[0] r0[1] r1[1]; t1: r0[2] r1[2] r0[3] r1[3].
            let (t0, t1) = (_mm_unpacklo_epi32(r0, r1), _mm_unpackhi_epi32(r0, r1));
            let (t2, t3) = (_mm_unpacklo_epi32(r2, r3), _mm_unpackhi_epi32(r2, r3));
            x[0] = Sse2(_mm_unpacklo_epi64(t0, t2));
            x[1] = Sse2(_mm_unpackhi_epi64(t0, t2));
            x[2] = Sse2(_mm_unpacklo_epi64(t1, t3));
            x[3] = Sse2(_mm_unpackhi_epi64(t1, t3));
        }
        x
    }
}
