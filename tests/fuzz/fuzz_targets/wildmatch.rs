//! rsync's wildcard matcher on a pattern and a text (split at the first
//! NUL). Besides not panicking and staying within libFuzzer's time limit,
//! it must agree with three answers known without it: a pattern without
//! wildcards matches only itself, the text with its special bytes escaped
//! matches the text, and `*` matches exactly the texts without a slash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upserv::protocol::wildmatch::wildmatch;

const SPECIAL: &[u8] = b"*?[\\";

fn escaped(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for &b in text {
        if SPECIAL.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (pattern, text) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let matched = wildmatch(pattern, text);
    if !pattern.iter().any(|b| SPECIAL.contains(b)) {
        assert_eq!(matched, pattern == text, "literal pattern");
    }
    assert!(
        wildmatch(&escaped(text), text),
        "escaped text must match itself"
    );
    assert_eq!(
        wildmatch(b"*", text),
        !text.contains(&b'/'),
        "`*` and slashes"
    );
    assert!(wildmatch(b"**", text), "`**` matches everything");
});
