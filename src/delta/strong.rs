//! The strong sums of protocols 27..29: the seeded block sum, the whole-file
//! sum and the unseeded `--checksum` file sum, in MD4 (rsync's default) or
//! in the digest a client names with `--checksum-choice`.
//!
//! Owns only hashing. It must not decide which sum the wire needs when, nor
//! truncate sums to the negotiated length: callers do that.
//!
//! Where the checksum seed goes differs per sum and digest (rsync/checksum.c):
//! - block sum (get_checksum2): MD4(block ‖ seed as 4 LE bytes); MD5(seed ‖
//!   block), the order of rsync's OpenSSL code, which Debian's client uses;
//!   the seed only when it is non-zero;
//! - whole-file sum (sum_init/sum_update/sum_end): at the default (`auto`,
//!   CSUM_MD4_OLD) MD4(seed as 4 LE bytes ‖ data), the seed prefixed always,
//!   even when it is zero; with a digest named explicitly, no seed at all;
//! - `-c` file checksum (file_checksum): the plain digest of the data.
//!
//! From protocol 27 on rsync's MD4 is the standard one, so the `md4` crate's
//! digest is bit-for-bit what rsync computes.

use md4::{Digest, Md4};
use md5::Md5;
use std::io::{self, Read};

/// Length of an MD4 or MD5 digest; no strong sum on the wire is longer.
pub const STRONG_SUM_LEN: usize = 16;

/// Buffer size for hashing a whole file with [`file_checksum`].
const FILE_CHECKSUM_BUF: usize = 64 * 1024;

/// The digest of a transfer's sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SumKind {
    /// No `--checksum-choice`, or `auto`: MD4 with the seeded whole-file sum.
    #[default]
    Md4Auto,
    /// `--checksum-choice=md4`: MD4, the whole-file sum unseeded.
    Md4,
    /// `--checksum-choice=md5`.
    Md5,
}

/// How one transfer computes its strong sums: the digest and the seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrongSum {
    pub kind: SumKind,
    pub seed: u32,
}

impl StrongSum {
    /// rsync's default sums at protocols 27..29 with `seed`.
    pub fn md4_auto(seed: u32) -> StrongSum {
        StrongSum {
            kind: SumKind::Md4Auto,
            seed,
        }
    }
}

/// The strong sum of one block, with the seed where [`SumKind`] puts it. The
/// wire carries a prefix of `out`.
pub fn block_strong_sum(data: &[u8], sum: StrongSum, out: &mut [u8; STRONG_SUM_LEN]) {
    let seed = (sum.seed != 0).then(|| sum.seed.to_le_bytes());
    *out = match sum.kind {
        SumKind::Md4Auto | SumKind::Md4 => {
            let mut md = Md4::new();
            md.update(data);
            if let Some(seed) = seed {
                md.update(seed);
            }
            md.finalize().into()
        }
        SumKind::Md5 => {
            let mut md = Md5::new();
            if let Some(seed) = seed {
                md.update(seed);
            }
            md.update(data);
            md.finalize().into()
        }
    };
}

/// The whole-file sum the sender appends after a file's tokens, computed over
/// every byte of the file in order.
#[derive(Clone)]
pub enum FileSum {
    Md4(Md4),
    Md5(Md5),
}

impl FileSum {
    /// Start a sum; at the default the seed goes in first, as 4
    /// little-endian bytes.
    pub fn new(sum: StrongSum) -> Self {
        match sum.kind {
            SumKind::Md4Auto => {
                let mut md = Md4::new();
                md.update(sum.seed.to_le_bytes());
                FileSum::Md4(md)
            }
            SumKind::Md4 => FileSum::Md4(Md4::new()),
            SumKind::Md5 => FileSum::Md5(Md5::new()),
        }
    }

    /// Add the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            FileSum::Md4(md) => md.update(data),
            FileSum::Md5(md) => md.update(data),
        }
    }

    /// The 16-byte digest.
    pub fn finish(self) -> [u8; STRONG_SUM_LEN] {
        match self {
            FileSum::Md4(md) => md.finalize().into(),
            FileSum::Md5(md) => md.finalize().into(),
        }
    }
}

/// The file checksum `rsync -c` compares and the file list carries: the plain
/// digest of the contents, read to the end of `r`.
pub fn file_checksum(kind: SumKind, mut r: impl Read) -> io::Result<[u8; STRONG_SUM_LEN]> {
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
pub fn spoil_file_sum(sum: &mut [u8; STRONG_SUM_LEN]) {
    let was_zero = sum.iter().all(|&b| b == 0);
    *sum = [0; STRONG_SUM_LEN];
    if was_zero {
        sum[STRONG_SUM_LEN - 1] = 1;
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
            let mut out = [0u8; 16];
            block_strong_sum(input.as_bytes(), StrongSum::md4_auto(0), &mut out);
            assert_eq!(out, hex(digest), "block sum of {input:?}");
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
        let mut out = [0u8; 16];
        block_strong_sum(b"message di", StrongSum::md4_auto(0x7473_6567), &mut out);
        assert_eq!(out, hex("d9130a8164549fe818874806e1c7014b"));
        // The 80-digit vector: 76 digits, then the seed "7890" = 0x30393837.
        let digits = RFC1320[6].0.as_bytes();
        block_strong_sum(&digits[..76], StrongSum::md4_auto(0x3039_3837), &mut out);
        assert_eq!(out, hex("e33b4ddc9c38f2199c3e7b164fcc0536"));
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
        let mut out = [0u8; 16];
        block_strong_sum(b"age digest", md5, &mut out);
        assert_eq!(out, hex("f96b697d7cb7938d525a2f31aaf161d0"));
        let unseeded = StrongSum { seed: 0, ..md5 };
        block_strong_sum(b"abc", unseeded, &mut out);
        assert_eq!(out, hex("900150983cd24fb0d6963f7d28e17f72"));
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
    fn spoiled_sums_differ_from_the_real_one() {
        let mut sum = hex("d9130a8164549fe818874806e1c7014b");
        spoil_file_sum(&mut sum);
        assert_eq!(sum, [0; 16]);
        let mut zero = [0u8; 16];
        spoil_file_sum(&mut zero);
        let mut expected = [0u8; 16];
        expected[15] = 1;
        assert_eq!(zero, expected);
    }
}
