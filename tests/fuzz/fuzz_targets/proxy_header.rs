//! The PROXY protocol header parser on whatever starts a connection. Besides
//! not panicking, it must keep the promise the gatekeeper reads by: a
//! header found is no longer than the input or the cap, is found again in
//! its own bytes alone, and every shorter prefix of it is "incomplete", so
//! that bytes taken while waiting never reach past the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upserv::daemon::proxy_header::{parse, Parse, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parse::Done(header)) => {
            assert!(header.len <= data.len() && header.len <= MAX_HEADER_LEN);
            assert_eq!(parse(&data[..header.len]), Ok(Parse::Done(header)));
            for cut in 0..header.len {
                assert_eq!(parse(&data[..cut]), Ok(Parse::Incomplete), "cut at {cut}");
            }
        }
        Ok(Parse::Incomplete) => {
            assert!(data.len() < MAX_HEADER_LEN);
            for cut in 0..data.len() {
                assert_eq!(parse(&data[..cut]), Ok(Parse::Incomplete), "cut at {cut}");
            }
        }
        Err(_) => {}
    }
});
