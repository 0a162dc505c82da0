//! The strong sums of protocols 27..29: the seeded block sum, the whole-file
//! sum and the unseeded `--checksum` file sum, in MD4 (rsync's default) or
//! in the digest a client names with `--checksum-choice`: md4, md5, sha1,
//! xxh64, xxh3, xxh128 or none.
//!
//! Owns only hashing. It must not decide which sum the wire needs when, nor
//! truncate sums to the negotiated length: callers do that.
//!
//! Where the checksum seed goes differs per sum and digest (rsync/checksum.c,
//! as Debian's client, built with OpenSSL, computes it):
//! - block sum (get_checksum2): MD4(block ‖ seed as 4 LE bytes); MD5 and
//!   SHA-1 (seed ‖ block), the order of rsync's OpenSSL code; the seed only
//!   when it is non-zero. The xxHash family takes the seed as its own seed,
//!   sign-extended from rsync's `int` to 64 bits;
//! - whole-file sum (sum_init/sum_update/sum_end): at the default (`auto`,
//!   CSUM_MD4_OLD) MD4(seed as 4 LE bytes ‖ data), the seed prefixed always,
//!   even when it is zero; with a digest named explicitly, no seed at all;
//!   "none" is one zero byte;
//! - `-c` file checksum (file_checksum): the plain digest of the data.
//!
//! The xxHash digests go on the wire as little-endian integers, xxh128 its
//! low 64 bits first. From protocol 27 on rsync's MD4 is the standard one, so
//! the `md4` crate's digest is bit-for-bit what rsync computes.

use super::md4x::{md4_many, MAX_LANES};
use md4::{Digest as _, Md4};
use md5::Md5;
use sha1::Sha1;
use std::io::{self, Read};
use std::ops::Deref;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed, Xxh3Default};
use xxhash_rust::xxh64::{xxh64, Xxh64};

/// Length of the longest digest (SHA-1); no strong sum on the wire is
/// longer.
pub(crate) const STRONG_SUM_LEN: usize = 20;

/// Buffer size for hashing a whole file with [`file_checksum`].
const FILE_CHECKSUM_BUF: usize = 64 * 1024;

/// The digest of a transfer's sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SumKind {
    /// No `--checksum-choice`, or `auto`: MD4 with the seeded whole-file sum.
    #[default]
    Md4Auto,
    /// `--checksum-choice=md4`: MD4, the whole-file sum unseeded.
    Md4,
    Md5,
    /// MD5 with the seed after the block: rsync's own MD5 code at protocol
    /// 30 and later when the client lacks the seed-order fix (its `C`
    /// capability) and no digest was named.
    Md5SeedLast,
    Sha1,
    /// `xxh64`, also spelt `xxhash`.
    Xxh64,
    /// XXH3 with 64 bits.
    Xxh3,
    /// XXH3 with 128 bits.
    Xxh128,
    /// No sums at all: the client sends whole files and `-c` is an error.
    None,
}

impl SumKind {
    /// The digest a `--checksum-choice` name stands for, as rsync spells
    /// them (any case).
    pub(crate) fn from_name(name: &[u8]) -> Option<SumKind> {
        Some(match name.to_ascii_lowercase().as_slice() {
            b"auto" => SumKind::Md4Auto,
            b"md4" => SumKind::Md4,
            b"md5" => SumKind::Md5,
            b"sha1" => SumKind::Sha1,
            b"xxh64" | b"xxhash" => SumKind::Xxh64,
            b"xxh3" => SumKind::Xxh3,
            b"xxh128" => SumKind::Xxh128,
            b"none" => SumKind::None,
            _ => return None,
        })
    }

    /// rsync's name for the digest; "md4" for the default.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SumKind::Md4Auto | SumKind::Md4 => "md4",
            SumKind::Md5 | SumKind::Md5SeedLast => "md5",
            SumKind::Sha1 => "sha1",
            SumKind::Xxh64 => "xxh64",
            SumKind::Xxh3 => "xxh3",
            SumKind::Xxh128 => "xxh128",
            SumKind::None => "none",
        }
    }

    /// Bytes of a full sum: the whole-file sum, the `-c` sum and the
    /// longest block sum a receiver may send (rsync's csum_len_for_type).
    pub(crate) fn digest_len(self) -> usize {
        match self {
            SumKind::Md4Auto
            | SumKind::Md4
            | SumKind::Md5
            | SumKind::Md5SeedLast
            | SumKind::Xxh128 => 16,
            SumKind::Sha1 => 20,
            SumKind::Xxh64 | SumKind::Xxh3 => 8,
            SumKind::None => 1,
        }
    }
}

/// How one transfer computes its strong sums: the digest and the seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StrongSum {
    pub(crate) kind: SumKind,
    pub(crate) seed: u32,
}

impl StrongSum {
    /// rsync's default sums at protocols 27..29 with `seed`.
    pub(crate) fn md4_auto(seed: u32) -> StrongSum {
        StrongSum {
            kind: SumKind::Md4Auto,
            seed,
        }
    }

    /// The seed as the xxHash functions get it: rsync passes its `int`
    /// seed, which C sign-extends to 64 bits.
    fn xxh_seed(self) -> u64 {
        self.seed as i32 as i64 as u64
    }
}

/// A finished sum: its digest's [`SumKind::digest_len`] bytes, as a slice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest {
    bytes: [u8; STRONG_SUM_LEN],
    len: u8,
}

impl Digest {
    /// `len` zero bytes.
    pub(crate) fn zeros(len: usize) -> Digest {
        Digest {
            bytes: [0; STRONG_SUM_LEN],
            len: len.min(STRONG_SUM_LEN) as u8,
        }
    }

    fn from_slice(bytes: &[u8]) -> Digest {
        let mut d = Digest::zeros(bytes.len());
        d.bytes[..bytes.len()].copy_from_slice(bytes);
        d
    }
}

impl Deref for Digest {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Digest {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

/// The strong sum of one block, with the seed where [`SumKind`] puts it. The
/// wire carries a prefix of `out`; bytes past the digest's length are left
/// as they were.
pub(crate) fn block_strong_sum(data: &[u8], sum: StrongSum, out: &mut [u8; STRONG_SUM_LEN]) {
    let seed = (sum.seed != 0).then(|| sum.seed.to_le_bytes());
    match sum.kind {
        SumKind::Md4Auto | SumKind::Md4 => {
            let mut md = Md4::new();
            md.update(data);
            if let Some(seed) = seed {
                md.update(seed);
            }
            out[..16].copy_from_slice(&md.finalize());
        }
        SumKind::Md5 => seed_first::<Md5>(data, seed, out),
        SumKind::Md5SeedLast => {
            let mut md = Md5::new();
            md.update(data);
            if let Some(seed) = seed {
                md.update(seed);
            }
            out[..16].copy_from_slice(&md.finalize());
        }
        SumKind::Sha1 => seed_first::<Sha1>(data, seed, out),
        SumKind::Xxh64 => out[..8].copy_from_slice(&xxh64(data, sum.xxh_seed()).to_le_bytes()),
        SumKind::Xxh3 => {
            out[..8].copy_from_slice(&xxh3_64_with_seed(data, sum.xxh_seed()).to_le_bytes())
        }
        SumKind::Xxh128 => {
            out[..16].copy_from_slice(&xxh3_128_with_seed(data, sum.xxh_seed()).to_le_bytes())
        }
        // rsync never asks for block sums without a digest (it sends whole
        // files); a zero byte matches what such a receiver would compare.
        SumKind::None => out[0] = 0,
    }
}

/// [`block_strong_sum`] of each of `blocks` (all of one length) into
/// `out[i]`. MD4 sums are computed several blocks at a time, one per SIMD
/// lane (the `md4x` module); the other digests one after another.
pub(crate) fn block_strong_sums(
    blocks: &[&[u8]],
    sum: StrongSum,
    out: &mut [[u8; STRONG_SUM_LEN]],
) {
    debug_assert!(out.len() >= blocks.len());
    if !matches!(sum.kind, SumKind::Md4Auto | SumKind::Md4) {
        for (block, out) in blocks.iter().zip(out.iter_mut()) {
            block_strong_sum(block, sum, out);
        }
        return;
    }
    let seed = sum.seed.to_le_bytes();
    let suffix: &[u8] = if sum.seed != 0 { &seed } else { &[] };
    let mut digests = [[0u8; 16]; MAX_LANES];
    for (blocks, out) in blocks.chunks(MAX_LANES).zip(out.chunks_mut(MAX_LANES)) {
        md4_many(blocks, suffix, &mut digests);
        for (out, digest) in out.iter_mut().zip(&digests[..blocks.len()]) {
            out[..16].copy_from_slice(digest);
        }
    }
}

/// `D(seed ‖ data)`, the seed only when there is one: the order of rsync's
/// OpenSSL code, into the start of `out`.
fn seed_first<D: md4::Digest>(data: &[u8], seed: Option<[u8; 4]>, out: &mut [u8]) {
    let mut md = D::new();
    if let Some(seed) = seed {
        md.update(seed);
    }
    md.update(data);
    let digest = md.finalize();
    out[..digest.len()].copy_from_slice(&digest);
}

/// The whole-file sum the sender appends after a file's tokens, computed over
/// every byte of the file in order.
#[derive(Clone)]
pub(crate) enum FileSum {
    Md4(Md4),
    Md5(Md5),
    Sha1(Sha1),
    Xxh64(Xxh64),
    /// Boxed: the state holds a 256-byte buffer and the accumulators.
    Xxh3(Box<Xxh3Default>, SumKind),
    None,
}

impl FileSum {
    /// Start a sum; at the default the seed goes in first, as 4
    /// little-endian bytes.
    pub(crate) fn new(sum: StrongSum) -> Self {
        match sum.kind {
            SumKind::Md4Auto => {
                let mut md = Md4::new();
                md.update(sum.seed.to_le_bytes());
                FileSum::Md4(md)
            }
            SumKind::Md4 => FileSum::Md4(Md4::new()),
            SumKind::Md5 | SumKind::Md5SeedLast => FileSum::Md5(Md5::new()),
            SumKind::Sha1 => FileSum::Sha1(Sha1::new()),
            SumKind::Xxh64 => FileSum::Xxh64(Xxh64::new(0)),
            kind @ (SumKind::Xxh3 | SumKind::Xxh128) => {
                FileSum::Xxh3(Box::new(Xxh3Default::new()), kind)
            }
            SumKind::None => FileSum::None,
        }
    }

    /// Add the next bytes of the file.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            FileSum::Md4(md) => md.update(data),
            FileSum::Md5(md) => md.update(data),
            FileSum::Sha1(md) => md.update(data),
            FileSum::Xxh64(h) => h.update(data),
            FileSum::Xxh3(h, _) => h.update(data),
            FileSum::None => {}
        }
    }

    /// The digest, [`SumKind::digest_len`] bytes.
    pub(crate) fn finish(self) -> Digest {
        match self {
            FileSum::Md4(md) => Digest::from_slice(&md.finalize()),
            FileSum::Md5(md) => Digest::from_slice(&md.finalize()),
            FileSum::Sha1(md) => Digest::from_slice(&md.finalize()),
            FileSum::Xxh64(h) => Digest::from_slice(&h.digest().to_le_bytes()),
            FileSum::Xxh3(h, SumKind::Xxh3) => Digest::from_slice(&h.digest().to_le_bytes()),
            FileSum::Xxh3(h, _) => Digest::from_slice(&h.digest128().to_le_bytes()),
            FileSum::None => Digest::zeros(SumKind::None.digest_len()),
        }
    }
}

/// The file checksum `rsync -c` compares and the file list carries: the plain
/// digest of the contents, read to the end of `r`. Not for
/// [`SumKind::None`], which rsync refuses for `-c`.
pub(crate) fn file_checksum(kind: SumKind, mut r: impl Read) -> io::Result<Digest> {
    let mut sum = FileSum::new(StrongSum {
        kind: match kind {
            SumKind::Md4Auto => SumKind::Md4,
            named => named,
        },
        seed: 0,
    });
    let mut buf = vec![0u8; FILE_CHECKSUM_BUF];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(sum.finish()),
            Ok(n) => sum.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Turn a file sum into one the receiver is certain to reject, as rsync's
/// match.c does after a read problem: all zeros, unless the real sum was all
/// zeros, in which case the last byte becomes 1.
pub(crate) fn spoil_file_sum(sum: &mut Digest) {
    let was_zero = sum.iter().all(|&b| b == 0);
    let len = usize::from(sum.len);
    *sum = Digest::zeros(len);
    if was_zero {
        sum.bytes[len - 1] = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// The test suite of RFC 1320, appendix A.5.
    const RFC1320: &[(&str, &str)] = &[
        ("", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        ("a", "bde52cb31de33e46245e05fbdbd6fb24"),
        ("abc", "a448017aaf21d8525fc10ae87aa6729d"),
        ("message digest", "d9130a8164549fe818874806e1c7014b"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "d79e1c308aa5bbcdeea8ed63df412da9",
        ),
        (
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4",
        ),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "e33b4ddc9c38f2199c3e7b164fcc0536",
        ),
    ];

    #[test]
    fn unseeded_sums_are_plain_md4() {
        for (input, digest) in RFC1320 {
            let mut out = [0u8; STRONG_SUM_LEN];
            block_strong_sum(input.as_bytes(), StrongSum::md4_auto(0), &mut out);
            assert_eq!(out[..16], hex(digest), "block sum of {input:?}");
            assert_eq!(
                file_checksum(SumKind::Md4Auto, input.as_bytes()).unwrap(),
                hex(digest),
                "file checksum of {input:?}"
            );
        }
    }

    #[test]
    fn block_sum_appends_the_seed_little_endian() {
        // "gest" read as a little-endian u32 is 0x74736567, so the sum of
        // "message di" with that seed is MD4("message digest").
        let mut out = [0u8; STRONG_SUM_LEN];
        block_strong_sum(b"message di", StrongSum::md4_auto(0x7473_6567), &mut out);
        assert_eq!(out[..16], hex("d9130a8164549fe818874806e1c7014b"));
        // The 80-digit vector: 76 digits, then the seed "7890" = 0x30393837.
        let digits = RFC1320[6].0.as_bytes();
        block_strong_sum(&digits[..76], StrongSum::md4_auto(0x3039_3837), &mut out);
        assert_eq!(out[..16], hex("e33b4ddc9c38f2199c3e7b164fcc0536"));
    }

    #[test]
    fn file_sum_prefixes_the_seed_even_when_zero() {
        // "mess" as a little-endian u32 is 0x7373656d.
        let mut sum = FileSum::new(StrongSum::md4_auto(0x7373_656d));
        sum.update(b"age ");
        sum.update(b"digest");
        assert_eq!(sum.finish(), hex("d9130a8164549fe818874806e1c7014b"));

        // Seed zero still contributes four zero bytes.
        let mut sum = FileSum::new(StrongSum::md4_auto(0));
        sum.update(b"abc");
        let mut md = Md4::new();
        md.update([0u8, 0, 0, 0, b'a', b'b', b'c']);
        let expected: [u8; 16] = md.finalize().into();
        assert_eq!(sum.finish(), expected);
        assert_ne!(expected, hex("a448017aaf21d8525fc10ae87aa6729d"));
    }

    #[test]
    fn md5_block_sums_prefix_the_seed() {
        // RFC 1321, appendix A.5: MD5("message digest"); "mess" as a
        // little-endian u32 is 0x7373656d.
        let md5 = StrongSum {
            kind: SumKind::Md5,
            seed: 0x7373_656d,
        };
        let mut out = [0u8; STRONG_SUM_LEN];
        block_strong_sum(b"age digest", md5, &mut out);
        assert_eq!(out[..16], hex("f96b697d7cb7938d525a2f31aaf161d0"));
        let unseeded = StrongSum { seed: 0, ..md5 };
        block_strong_sum(b"abc", unseeded, &mut out);
        assert_eq!(out[..16], hex("900150983cd24fb0d6963f7d28e17f72"));
    }

    #[test]
    fn named_digests_leave_the_seed_out_of_whole_file_and_c_sums() {
        for (kind, abc) in [
            (SumKind::Md4, "a448017aaf21d8525fc10ae87aa6729d"),
            (SumKind::Md5, "900150983cd24fb0d6963f7d28e17f72"),
        ] {
            let mut sum = FileSum::new(StrongSum { kind, seed: 99 });
            sum.update(b"a");
            sum.update(b"bc");
            assert_eq!(sum.finish(), hex(abc), "{kind:?}");
            assert_eq!(file_checksum(kind, &b"abc"[..]).unwrap(), hex(abc));
        }
    }

    #[test]
    fn many_block_sums_equal_one_at_a_time() {
        let data: Vec<u8> = (0..20_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        for kind in [SumKind::Md4Auto, SumKind::Md4, SumKind::Md5, SumKind::Xxh3] {
            for seed in [0, 0x1234_5678] {
                let sum = StrongSum { kind, seed };
                for (len, count) in [(0, 3), (1, 1), (700, 11), (1024, 8), (999, 17)] {
                    let blocks: Vec<&[u8]> =
                        (0..count).map(|i| &data[i * len..(i + 1) * len]).collect();
                    let mut many = vec![[0u8; STRONG_SUM_LEN]; count];
                    block_strong_sums(&blocks, sum, &mut many);
                    for (block, got) in blocks.iter().zip(&many) {
                        let mut one = [0u8; STRONG_SUM_LEN];
                        block_strong_sum(block, sum, &mut one);
                        let n = kind.digest_len();
                        assert_eq!(got[..n], one[..n], "{kind:?} seed {seed} len {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn spoiled_sums_differ_from_the_real_one() {
        let mut sum = Digest::from_slice(&hex("d9130a8164549fe818874806e1c7014b"));
        spoil_file_sum(&mut sum);
        assert_eq!(sum, [0; 16]);
        let mut zero = Digest::zeros(16);
        spoil_file_sum(&mut zero);
        let mut expected = [0u8; 16];
        expected[15] = 1;
        assert_eq!(zero, expected);
    }
}
