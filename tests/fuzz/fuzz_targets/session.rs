//! One whole connection as a client writes it: the greeting, the module
//! line (or a list request), the arguments, the filter rules, the file
//! requests with their checksum heads and block sums, the goodbye. The
//! daemon answers into /dev/null; the target fails if it panics or if the
//! connection ever holds more heap than `SESSION_HEAP_LIMIT`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    upserv_fuzz::serve_bounded(data);
});
