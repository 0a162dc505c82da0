//! Every path this CPU runs against the scalar path and the `md4` crate.

use super::*;
use crate::delta::strong::{block_strong_sum, StrongSum, STRONG_SUM_LEN};
use md4::{Digest, Md4};

/// The `md4` crate's digest of `msg ‖ suffix`.
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

/// Hashes `count` different `len`-byte messages of `data` (each starting
/// `stride` bytes after the last) with `suffix` on every path, and checks
/// each digest against the scalar path's and the `md4` crate's.
fn check(data: &[u8], stride: usize, len: usize, count: usize, suffix: &[u8]) {
    let msgs: Vec<&[u8]> = (0..count)
        .map(|i| &data[i * stride..i * stride + len])
        .collect();
    let mut scalar = vec![[0u8; 16]; count];
    md4_many_with(Path::Scalar, &msgs, suffix, &mut scalar);
    for path in Path::available() {
        let mut out = vec![[0u8; 16]; count];
        md4_many_with(path, &msgs, suffix, &mut out);
        for (i, msg) in msgs.iter().enumerate() {
            let (want, scalar) = (reference(msg, suffix), scalar[i]);
            assert!(
                out[i] == want && scalar == want,
                "{path:?}, len {len}, message {i} of {count}, suffix {suffix:?}: {:02x?}, \
                 scalar {scalar:02x?}, md4 crate {want:02x?}",
                out[i]
            );
        }
    }
}

#[test]
fn every_path_equals_the_md4_crate_around_the_padding() {
    // Every length up to three MD4 blocks: the tail in one block or two
    // (55/56 bytes with no suffix, 51/52 with a seed), whole blocks, and
    // each odd tail; with every number of messages from one to past two
    // groups of the widest path.
    let data = pseudo_random(17 * 211, 7);
    for len in 0..=192 {
        for suffix in [&[][..], &[1, 2, 3, 4][..], &[0xff; MAX_SUFFIX][..]] {
            for count in [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17] {
                check(&data, 211, len, count, suffix);
            }
        }
    }
}

#[test]
fn every_path_equals_the_md4_crate_on_block_sizes() {
    // rsync's block lengths, from its minimum (700) to the largest at
    // protocol 30 and later (128 KiB), and lengths just off them.
    let data = pseudo_random(9 * (128 << 10) + 4099, 11);
    let lens = [
        700,
        1000,
        1023,
        1024,
        1025,
        2048,
        4093,
        16384,
        65536 + 13,
        (128 << 10) - 1,
        128 << 10,
    ];
    for len in lens {
        for suffix in [&[][..], &[9, 8, 7, 6][..]] {
            let counts: &[usize] = if len > 16384 { &[1, 5, 9] } else { &[3, 8, 9] };
            for &count in counts {
                check(&data, len + 1, len, count, suffix);
            }
        }
    }
}

#[test]
fn every_path_gives_the_matchers_seeded_block_sums() {
    // As the strong sums of consecutive blocks: MD4(block ‖ seed as 4
    // little-endian bytes), the seed left out when it is zero, equal to
    // what the one-block sum the matcher also uses gives.
    let data = pseudo_random(11 * 2048, 3);
    for seed in [0, 1, 0x5eed_1234, 0x8000_0000, u32::MAX] {
        let bytes = seed.to_le_bytes();
        let suffix: &[u8] = if seed == 0 { &[] } else { &bytes };
        for len in [700, 2048] {
            let blocks: Vec<&[u8]> = data.chunks_exact(len).take(MAX_LANES + 3).collect();
            for path in Path::available() {
                let mut out = vec![[0u8; 16]; blocks.len()];
                md4_many_with(path, &blocks, suffix, &mut out);
                for (i, block) in blocks.iter().enumerate() {
                    let mut one = [0u8; STRONG_SUM_LEN];
                    block_strong_sum(block, StrongSum::md4_auto(seed), &mut one);
                    assert_eq!(out[i], one[..16], "{path:?}, seed {seed:#x}, block {i}");
                }
            }
        }
    }
}

#[test]
fn a_suffix_past_the_limit_is_cut() {
    let msgs = [&b"abc"[..]; 5];
    let mut out = [[0u8; 16]; 5];
    md4_many(&msgs, &[7; MAX_SUFFIX + 3], &mut out);
    assert!(out
        .iter()
        .all(|d| *d == reference(b"abc", &[7; MAX_SUFFIX])));
}

#[test]
fn the_default_path_is_the_widest_this_cpu_runs() {
    let available = Path::available();
    assert_eq!(Path::best(), *available.last().unwrap());
    // What CI's machines have: SSE2 and NEON always; AVX2 where the CPU
    // reports it.
    #[cfg(target_arch = "x86_64")]
    {
        assert!(available.contains(&Path::Sse2));
        let avx2 = std::is_x86_feature_detected!("avx2");
        assert_eq!(available.contains(&Path::Avx2), avx2);
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(available, [Path::Scalar, Path::Neon]);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    assert_eq!(available, [Path::Scalar]);
    // md4_many takes it: nine different messages, a group of the widest
    // path and one left over.
    let data = pseudo_random(9 * 100, 5);
    let msgs: Vec<&[u8]> = data.chunks_exact(100).collect();
    let mut out = [[0u8; 16]; 9];
    md4_many(&msgs, &[], &mut out);
    for (i, msg) in msgs.iter().enumerate() {
        assert_eq!(out[i], reference(msg, &[]), "message {i}");
    }
}
