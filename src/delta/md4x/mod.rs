//! Multi-buffer MD4: the digests of several messages of one length at once,
//! each message in its own lane of a SIMD register (the technique
//! dropbox/fast_rsync uses for signatures).
//!
//! Owns only the MD4 arithmetic over lanes and the choice of the widest path
//! this CPU runs. It must not know about blocks, seeds or sums: callers hand
//! it the messages and the bytes every message ends with.
//!
//! MD4 (RFC 1320) is one long dependency chain per message, so a single
//! digest cannot use a vector unit; independent messages can. The rounds
//! are written once (`rounds`), over a lane type with the dozen operations
//! MD4 needs; each path instantiates them with its own:
//! - AVX2, 8 lanes (`avx2`): when the CPU reports AVX2 at run time.
//! - SSE2, 4 lanes (`sse2`): every x86-64 CPU has it, so nothing is
//!   detected; for the x86-64 CPUs without AVX2.
//! - NEON, 4 lanes (`neon`): every aarch64 CPU has it.
//! - Scalar, one message at a time: everywhere, and for what is left over
//!   when fewer messages than lanes remain. 32-bit ARM (armv7) stays here:
//!   NEON is optional on ARMv7, and stable Rust can neither detect it at
//!   run time (`is_arm_feature_detected!` is unstable) nor call the 32-bit
//!   ARM NEON intrinsics; building for a NEON-only target instead would
//!   lock out the boards without it.
//!
//! [`Path::best`] picks the widest once per process. `upserv bench` reports
//! each path's rate ("md4 only" rows).

/// Safe functions, under the intrinsics' own names, that call
/// `arch::NAME` (`arch` being the caller's `std::arch::...` module). Rust
/// asks for `unsafe` to call an intrinsic outside a function marked with
/// its target feature, and a trait's methods cannot be marked. Two cases
/// make the call sound:
/// - `baseline "feature"`: every CPU of the architecture has the feature
///   (SSE2 on x86-64, NEON on aarch64); the build fails unless it enables
///   it everywhere;
/// - `detected`: the wrappers are private to a module whose lane type is
///   private too and made only inside its one function compiled for the
///   feature, which callers reach only after detecting it on the CPU.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! safe_intrinsics {
    (baseline $feature:tt: $($sig:tt)*) => {
        #[cfg(not(target_feature = $feature))]
        compile_error!(concat!("this target does not enable ", $feature));
        safe_intrinsics!(@wrap $($sig)*);
    };
    (detected: $($sig:tt)*) => {
        safe_intrinsics!(@wrap $($sig)*);
    };
    (@wrap $($name:ident $(<$imm:ident>)? ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            #[inline(always)]
            fn $name$(<const $imm: i32>)?($($arg: $ty),*) -> $ret {
                // SAFETY: the CPU running this has the feature, by one of
                // the two cases above.
                unsafe { arch::$name$(::<$imm>)?($($arg),*) }
            }
        )*
    };
}

/// The [`rounds::Lanes`] methods that are one intrinsic each, in an impl
/// for a newtype over a SIMD register: `method intrinsic` pairs.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! one_instruction_ops {
    ($($op:ident $intrinsic:ident),*) => {
        $(
            #[inline(always)]
            fn $op(self, o: Self) -> Self {
                Self($intrinsic(self.0, o.0))
            }
        )*
    };
}

mod rounds;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod sse2;
#[cfg(test)]
mod tests;

use rounds::digest;
use std::sync::OnceLock;

/// The most messages hashed side by side (AVX2: eight 32-bit lanes).
pub(crate) const MAX_LANES: usize = 8;

/// The longest tail every message may share (`suffix`): a seed is 4 bytes.
pub(crate) const MAX_SUFFIX: usize = 8;

/// A way of hashing lanes: what this CPU may run is [`Path::available`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// One message at a time.
    Scalar,
    /// Four lanes in SSE2 registers: any x86-64 CPU.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// Eight lanes in AVX2 registers, on x86-64 CPUs that report AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Four lanes in NEON registers: any aarch64 CPU.
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Path {
    /// The widest path this CPU runs, found on the first call.
    pub(crate) fn best() -> Path {
        static BEST: OnceLock<Path> = OnceLock::new();
        *BEST.get_or_init(|| *Path::available().last().expect("scalar is always there"))
    }

    /// The paths this CPU runs, narrowest first.
    pub(crate) fn available() -> Vec<Path> {
        #[cfg_attr(
            not(any(target_arch = "x86_64", target_arch = "aarch64")),
            allow(unused_mut)
        )]
        let mut paths = vec![Path::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            paths.push(Path::Sse2);
            if avx2() {
                paths.push(Path::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        paths.push(Path::Neon);
        paths
    }

    /// The name `upserv bench` reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Path::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Path::Sse2 => "sse2",
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => "avx2",
            #[cfg(target_arch = "aarch64")]
            Path::Neon => "neon",
        }
    }

    /// The path that takes the messages this one leaves: fewer than its
    /// lanes, or all of them when the CPU cannot run it.
    fn narrower(self) -> Path {
        match self {
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => Path::Sse2,
            _ => Path::Scalar,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    // The standard library caches the answer after the first call.
    std::is_x86_feature_detected!("avx2")
}

/// MD4 of `msg ‖ suffix` for every message of `msgs` (all of one length),
/// into `out[i]` (at least as many as messages), as wide as `path` goes.
/// A suffix over [`MAX_SUFFIX`] bytes is cut.
pub(crate) fn md4_many_with(path: Path, msgs: &[&[u8]], suffix: &[u8], out: &mut [[u8; 16]]) {
    let suffix = &suffix[..suffix.len().min(MAX_SUFFIX)];
    debug_assert!(msgs.iter().all(|m| m.len() == msgs[0].len()));
    assert!(out.len() >= msgs.len(), "a digest for every message");
    let mut path = path;
    let mut done = 0;
    while done < msgs.len() {
        let (msgs, out) = (&msgs[done..], &mut out[done..]);
        done += match path {
            Path::Scalar => in_groups(msgs, suffix, out, digest::<u32, 1>),
            #[cfg(target_arch = "x86_64")]
            Path::Sse2 => in_groups(msgs, suffix, out, digest::<sse2::Sse2, 4>),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 if avx2() => in_groups(msgs, suffix, out, |msgs, suffix, out| {
                // SAFETY: avx2() just found AVX2 on this CPU, the one
                // feature avx2::digest is compiled for.
                unsafe { avx2::digest(msgs, suffix, out) }
            }),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => 0,
            #[cfg(target_arch = "aarch64")]
            Path::Neon => in_groups(msgs, suffix, out, digest::<neon::Neon, 4>),
        };
        path = path.narrower();
    }
}

/// `hash` over each whole group of N messages; how many it hashed.
#[inline(always)]
fn in_groups<const N: usize>(
    msgs: &[&[u8]],
    suffix: &[u8],
    out: &mut [[u8; 16]],
    hash: impl Fn([&[u8]; N], &[u8], &mut [[u8; 16]]),
) -> usize {
    let groups = msgs.chunks_exact(N).zip(out.chunks_mut(N));
    for (group, out) in groups {
        hash(group.try_into().expect("chunks of N"), suffix, out);
    }
    msgs.len() - msgs.len() % N
}

/// [`md4_many_with`] on the widest path this CPU has.
pub(crate) fn md4_many(msgs: &[&[u8]], suffix: &[u8], out: &mut [[u8; 16]]) {
    md4_many_with(Path::best(), msgs, suffix, out)
}
