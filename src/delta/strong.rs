//! The MD4 sums of protocol 27..29 (rsync's CSUM_MD4_OLD): the seeded block
//! sum, the seeded whole-file sum and the unseeded `--checksum` file sum.
//!
//! Owns only hashing. It must not decide which sum the wire needs when, nor
//! truncate sums to the negotiated length: callers do that.
//!
//! Where the checksum seed goes differs per sum (rsync/checksum.c):
//! - block sum (get_checksum2): MD4(block ‖ seed as 4 LE bytes), the seed
//!   appended only when it is non-zero;
//! - whole-file sum (sum_init/sum_update/sum_end): MD4(seed as 4 LE bytes ‖
//!   data), the seed prefixed always, even when it is zero;
//! - `-c` file checksum (file_checksum): MD4(data), no seed.
//!
//! From protocol 27 on rsync's MD4 is the standard one, so the `md4` crate's
//! digest is bit-for-bit what rsync computes.

use md4::{Digest, Md4};
use std::io::{self, Read};

/// Length of an MD4 digest; no strong sum on the wire is longer.
pub const STRONG_SUM_LEN: usize = 16;

/// Buffer size for hashing a whole file with [`file_checksum`].
const FILE_CHECKSUM_BUF: usize = 64 * 1024;

/// The strong sum of one block: MD4 over the block, then the seed (little
/// endian) when it is non-zero. The wire carries a prefix of `out`.
pub fn block_strong_sum(data: &[u8], seed: u32, out: &mut [u8; STRONG_SUM_LEN]) {
    let mut md = Md4::new();
    md.update(data);
    if seed != 0 {
        md.update(seed.to_le_bytes());
    }
    *out = md.finalize().into();
}

/// The whole-file sum the sender appends after a file's tokens, computed over
/// every byte of the file in order.
#[derive(Clone)]
pub struct FileSum {
    md: Md4,
}

impl FileSum {
    /// Start a sum; the seed goes in first, as 4 little-endian bytes.
    pub fn new(seed: u32) -> Self {
        let mut md = Md4::new();
        md.update(seed.to_le_bytes());
        FileSum { md }
    }

    /// Add the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.md.update(data);
    }

    /// The 16-byte digest.
    pub fn finish(self) -> [u8; STRONG_SUM_LEN] {
        self.md.finalize().into()
    }
}

/// The file checksum `rsync -c` compares and the file list carries: the plain
/// MD4 of the contents, read to the end of `r`.
pub fn file_checksum(mut r: impl Read) -> io::Result<[u8; STRONG_SUM_LEN]> {
    let mut md = Md4::new();
    let mut buf = vec![0u8; FILE_CHECKSUM_BUF];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(md.finalize().into()),
            Ok(n) => md.update(&buf[..n]),
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
            block_strong_sum(input.as_bytes(), 0, &mut out);
            assert_eq!(out, hex(digest), "block sum of {input:?}");
            assert_eq!(
                file_checksum(input.as_bytes()).unwrap(),
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
        block_strong_sum(b"message di", 0x7473_6567, &mut out);
        assert_eq!(out, hex("d9130a8164549fe818874806e1c7014b"));
        // The 80-digit vector: 76 digits, then the seed "7890" = 0x30393837.
        let digits = RFC1320[6].0.as_bytes();
        block_strong_sum(&digits[..76], 0x3039_3837, &mut out);
        assert_eq!(out, hex("e33b4ddc9c38f2199c3e7b164fcc0536"));
    }

    #[test]
    fn file_sum_prefixes_the_seed_even_when_zero() {
        // "mess" as a little-endian u32 is 0x7373656d.
        let mut sum = FileSum::new(0x7373_656d);
        sum.update(b"age ");
        sum.update(b"digest");
        assert_eq!(sum.finish(), hex("d9130a8164549fe818874806e1c7014b"));

        // Seed zero still contributes four zero bytes.
        let mut sum = FileSum::new(0);
        sum.update(b"abc");
        let mut md = Md4::new();
        md.update([0u8, 0, 0, 0, b'a', b'b', b'c']);
        let expected: [u8; 16] = md.finalize().into();
        assert_eq!(sum.finish(), expected);
        assert_ne!(expected, hex("a448017aaf21d8525fc10ae87aa6729d"));
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
