//! The sender after a valid handshake: what the client's generator writes
//! (filter rules, file requests, checksum heads, block sums, phase ends,
//! the goodbye), with the handshake itself fixed so every run reaches it.
//! As for `session`, the connection's heap must stay within its bound.
//!
//! The first byte picks the protocol and the options that change how sums
//! are read and used (`-z`, `--inplace`, `--append`, `--append-verify`,
//! `-c`, `-R`); the rest is the client's stream after the arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The handshake and arguments a stock client would send for `choice`.
fn prologue(choice: u8) -> Vec<u8> {
    let protocol = [27, 28, 29, 29][usize::from(choice & 3)];
    let mut short = String::from("-lr");
    if choice & 4 != 0 {
        short.push('z');
    }
    if choice & 64 != 0 {
        short.push('c');
    }
    if choice & 128 != 0 {
        short.push('R');
    }
    let mut args = vec!["--server", "--sender", short.as_str()];
    if choice & 8 != 0 {
        args.push("--inplace");
    }
    if choice & 16 != 0 {
        args.push("--append");
        if choice & 32 != 0 {
            args.push("--append");
        }
    }
    args.extend([".", "m/"]);
    let mut out = format!("@RSYNCD: {protocol}.0\n{}\n", upserv_fuzz::MODULE).into_bytes();
    for arg in args {
        out.extend_from_slice(arg.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, stream)) = data.split_first() else {
        return;
    };
    let mut input = prologue(choice);
    input.extend_from_slice(stream);
    upserv_fuzz::serve_bounded(&input);
});
