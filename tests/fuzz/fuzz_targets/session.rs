//! One whole connection as a client writes it: the greeting, the module
//! line (or a list request), the arguments, the filter rules, the file
//! requests with their checksum heads and block sums, the goodbye. The
//! daemon answers into /dev/null; the target fails only if it panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut conn = upserv_fuzz::conn_from(data);
    let _ = upserv::daemon::session::run(upserv_fuzz::server(), &mut conn, Some(upserv_fuzz::PEER));
});
