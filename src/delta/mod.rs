//! The delta engine: rsync's rolling checksum, seeded MD4 sums and the
//! sender's block matching for protocols 27..29, with no socket I/O.
//!
//! Owns the algorithm only. It must not know about the wire format, token
//! encoding, compression, files or connections: callers hand it an
//! `impl Read` and a [`TokenSink`], and get literal runs, matched block
//! indices, byte counts and the whole-file sum back.
//!
//! - [`rolling`]: the weak sum and its O(1) updates (checksum.c get_checksum1).
//! - [`strong`]: block, whole-file and `-c` sums (MD4, or the digest a client
//!   chooses) and where the seed goes.
//! - [`sums`]: the receiver's block sums ([`BlockSums`]) and the sizes
//!   rsync's generator picks; [`generate`] computes them (tests, benchmarks).
//! - [`matcher`]: [`Matcher::send`], rsync: match.c hash_search over a streamed file.
//! - [`bench`](mod@bench): synthetic inputs for the benchmark and tests.
//! - [`md4x`]: MD4 of several blocks at once, in SIMD lanes (AVX2, SSE2,
//!   NEON or scalar, chosen at run time); `upserv bench` times each path.
//!
//! Internals: `index` (weak sum to blocks, bounded candidate walks) and
//! `window` (the bounded buffer over the file).

pub(crate) mod bench;
mod index;
pub(crate) mod matcher;
pub(crate) mod md4x;
pub(crate) mod rolling;
pub(crate) mod strong;
pub(crate) mod sums;
#[cfg(test)]
mod tests;
mod window;

pub(crate) use matcher::{MatchError, MatchMode, MatchOutcome, Matcher, TokenSink};
#[cfg(test)]
pub(crate) use strong::FileSum;
pub(crate) use strong::{file_checksum, Digest, StrongSum, SumKind};
pub(crate) use sums::BlockSums;
#[cfg(test)]
pub(crate) use sums::{block_len_for, generate, strong_len_for};
