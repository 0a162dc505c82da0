//! Inputs the fuzz targets under `tests/fuzz/` found to crash upserv, each
//! fed to the same public entry point its target uses. Every test here
//! panicked before its fix; the expected answers come from rsync's
//! behaviour (options.c, exclude.c), not from what upserv printed.

use upserv::protocol::options::Options;

fn args(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|a| a.to_vec()).collect()
}

/// `options`: a size suffix starting with a multi-byte character was split
/// inside the character. rsync refuses the value as an invalid size.
#[test]
fn size_with_a_multibyte_suffix_is_refused() {
    let crash: &[u8] = b"--min-size=0444444\xcf\x9bnorein-size=04444444dnoress";
    let err = Options::parse(&args(&[b"--server", b"--sender", crash, b".", b"m/"]))
        .expect_err("an invalid size");
    assert!(err.0.contains("--min-size: invalid size"), "{}", err.0);
}

/// `options` (found by reading the same function after the crash above):
/// a size past 2^63 overflowed when its `+1` was added. rsync says the
/// value is too large.
#[test]
fn size_past_two_to_the_63_is_refused() {
    for value in [
        &b"--max-size=99999999999999999999p+1"[..],
        b"--max-size=8192p",
    ] {
        let parsed = Options::parse(&args(&[b"--server", b"--sender", value, b".", b"m/"]));
        assert!(parsed.is_err(), "{}", String::from_utf8_lossy(value));
    }
    let largest = Options::parse(&args(&[
        b"--server",
        b"--sender",
        b"--max-size=8191p",
        b".",
        b"m/",
    ]))
    .expect("a size below 2^63");
    assert_eq!(largest.max_size, Some(8191 << 50));
}
