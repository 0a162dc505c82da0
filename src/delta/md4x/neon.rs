//! MD4's lanes in NEON registers: four messages at once on any aarch64 CPU.
//!
//! Owns only the mapping of [`Lanes`] onto NEON instructions. NEON is part
//! of aarch64 itself: nothing is detected. It does in one instruction what
//! takes SSE2 several: F is a bit select, G a select on `x ^ y`, and a
//! rotation a shift and a shift-right-and-insert.

use super::rounds::{word, Lanes, CHUNK};
use std::arch::aarch64 as arch;
use std::arch::aarch64::{uint32x2_t, uint32x4_t, uint64x2_t};

safe_intrinsics! { baseline "neon":
    vdupq_n_u32(value: u32) -> uint32x4_t;
    vcreate_u32(a: u64) -> uint32x2_t;
    vcombine_u32(low: uint32x2_t, high: uint32x2_t) -> uint32x4_t;
    vgetq_lane_u32<LANE>(v: uint32x4_t) -> u32;
    vaddq_u32(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vandq_u32(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vorrq_u32(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    veorq_u32(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vbslq_u32(mask: uint32x4_t, a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vshlq_n_u32<N>(a: uint32x4_t) -> uint32x4_t;
    vsriq_n_u32<N>(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vtrn1q_u32(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vtrn2q_u32(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t;
    vtrn1q_u64(a: uint64x2_t, b: uint64x2_t) -> uint64x2_t;
    vtrn2q_u64(a: uint64x2_t, b: uint64x2_t) -> uint64x2_t;
    vreinterpretq_u64_u32(a: uint32x4_t) -> uint64x2_t;
    vreinterpretq_u32_u64(a: uint64x2_t) -> uint32x4_t;
}

/// One word of each of four messages in a 128-bit register.
#[derive(Clone, Copy)]
pub(super) struct Neon(uint32x4_t);

impl Lanes<4> for Neon {
    #[inline(always)]
    fn splat(x: u32) -> Self {
        Neon(vdupq_n_u32(x))
    }

    #[inline(always)]
    fn from_lanes(w: [u32; 4]) -> Self {
        let pair = |lo: u32, hi: u32| vcreate_u32(u64::from(lo) | u64::from(hi) << 32);
        Neon(vcombine_u32(pair(w[0], w[1]), pair(w[2], w[3])))
    }

    #[inline(always)]
    fn to_lanes(self) -> [u32; 4] {
        let v = self.0;
        [
            vgetq_lane_u32::<0>(v),
            vgetq_lane_u32::<1>(v),
            vgetq_lane_u32::<2>(v),
            vgetq_lane_u32::<3>(v),
        ]
    }

    one_instruction_ops!(add vaddq_u32, and vandq_u32, or vorrq_u32, xor veorq_u32);

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        Neon(vsriq_n_u32::<R>(vshlq_n_u32::<L>(self.0), self.0))
    }

    #[inline(always)]
    fn select(x: Self, y: Self, z: Self) -> Self {
        Neon(vbslq_u32(x.0, y.0, z.0))
    }

    /// Where `x` and `y` differ, `z` decides; elsewhere they agree.
    #[inline(always)]
    fn majority(x: Self, y: Self, z: Self) -> Self {
        Neon(vbslq_u32(veorq_u32(x.0, y.0), z.0, y.0))
    }

    /// Four words of each message in a register, then a 4×4 transpose so
    /// that each register holds one word of every message.
    #[inline(always)]
    fn load(chunks: [&[u8; CHUNK]; 4]) -> [Self; 16] {
        let mut x = [Neon::splat(0); 16];
        for (k, x) in x.chunks_exact_mut(4).enumerate() {
            let [r0, r1, r2, r3] =
                chunks.map(|c| Neon::from_lanes(std::array::from_fn(|i| word(c, 4 * k + i))).0);
            // t0: r0[0] r1[0] r0[2] r1[2]; t1: r0[1] r1[1] r0[3] r1[3].
            let (t0, t1) = (vtrn1q_u32(r0, r1), vtrn2q_u32(r0, r1));
            let (t2, t3) = (vtrn1q_u32(r2, r3), vtrn2q_u32(r2, r3));
            let [t0, t1, t2, t3] = [t0, t1, t2, t3].map(vreinterpretq_u64_u32);
            x[0] = Neon(vreinterpretq_u32_u64(vtrn1q_u64(t0, t2)));
            x[1] = Neon(vreinterpretq_u32_u64(vtrn1q_u64(t1, t3)));
            x[2] = Neon(vreinterpretq_u32_u64(vtrn2q_u64(t0, t2)));
            x[3] = Neon(vreinterpretq_u32_u64(vtrn2q_u64(t1, t3)));
        }
        x
    }
}
