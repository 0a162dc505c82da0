//! The configuration file parser. A configuration it accepts must print
//! (as `upserv check-config` does) into text that reads back into the same
//! settings, which is what that printout promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upserv::config::parse_config_str;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // `&include` and `&merge` with relative names look next to this file,
    // in a directory of the fuzzer's own.
    let name = upserv_fuzz::scratch().join("upserv.conf");
    let Ok((settings, _warnings)) = parse_config_str(&text, &name) else {
        return;
    };
    let printed = settings.to_string();
    match parse_config_str(&printed, &name) {
        Ok((again, _)) => assert_eq!(again, settings, "printed settings:\n{printed}"),
        Err(e) => panic!("printed settings do not parse: {e}\n{printed}"),
    }
});
