//! The server arguments a client sends after `@RSYNCD: OK` (NUL-separated
//! here), then the source paths they name. Whatever the arguments, every
//! path handed to the file list must stay inside the module: no leading
//! `/` and no `..` component.
#![no_main]

use libfuzzer_sys::fuzz_target;
use upserv::daemon::session::source_paths;
use upserv::protocol::options::Options;

fn assert_confined(path: &[u8], args: &[Vec<u8>]) {
    assert!(
        !path.starts_with(b"/") && !upserv_fuzz::split(path, b'/').any(|c| c == b".."),
        "path {:?} from arguments {:?} leaves the module",
        String::from_utf8_lossy(path),
        args
    );
}

fuzz_target!(|data: &[u8]| {
    let args: Vec<Vec<u8>> = upserv_fuzz::split(data, 0).map(<[u8]>::to_vec).collect();
    let Ok(opts) = Options::parse(&args) else {
        return;
    };
    for path in source_paths(upserv_fuzz::MODULE, &opts.paths, opts.relative) {
        assert_confined(&path, &args);
    }
});
