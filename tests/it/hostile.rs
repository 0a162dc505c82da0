//! Broken and hostile clients: each must end only its own connection, with a
//! log line, while other clients go on being served, and no number a client
//! makes up may decide how much memory upserv allocates.

use crate::support::proc::kill_group;
use crate::support::procfs::rss_kib;
use crate::support::raw::{file_request, Raw};
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;

/// upserv serving module `m`: a small file and a big one.
fn start() -> (TestTree, Upserv) {
    let tree = TestTree::new();
    tree.file("small.txt", b"small\n");
    tree.file("big.bin", &crate::support::tree::Rng::new(9).bytes(8 << 20));
    let server = Upserv::start(&[Module::new("m", tree.root())]);
    (tree, server)
}

/// A real pull that must still work while something hostile goes on.
fn assert_still_serves(server: &Upserv, tree: &TestTree) {
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("dest");
    pull(
        &server.url("m/small.txt"),
        &dest,
        &["-a"],
        Protocol::Default,
    )
    .assert_ok();
    assert_eq!(
        std::fs::read(dest.join("small.txt")).expect("pulled file"),
        std::fs::read(tree.path("small.txt")).expect("source file")
    );
}

/// A hand-made pull of `path` from module `m`, up to the checksum seed.
fn raw_pull(server: &Upserv, path: &str) -> TcpStream {
    Raw::start_pull(server.port(), "m", &["--server", "--sender", ".", path])
}

/// The daemon ends connection `s` (read here to its end) and logs `why`.
fn assert_connection_ended(server: &Upserv, mut s: TcpStream, why: &str) {
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    server.await_log(why, 1);
}

#[test]
fn unknown_module_gets_an_error_and_exit_code_5() {
    let (tree, server) = start();
    let scratch = tempfile::tempdir().expect("scratch");
    pull(
        &server.url("nosuch/"),
        &scratch.path().join("d"),
        &["-a"],
        Protocol::Default,
    )
    .assert_refused("@ERROR: Unknown module 'nosuch'");
    assert_still_serves(&server, &tree);
}

/// A module name of bytes that are not UTF-8 grows threefold in the
/// `@ERROR` line (each shows as U+FFFD): the line is cut to what the client
/// reads, so the client still shows why, and the log has it whole.
#[test]
fn an_error_about_a_huge_module_name_still_reaches_the_client() {
    use std::os::unix::ffi::OsStrExt;
    let (tree, server) = start();
    let scratch = tempfile::tempdir().expect("scratch");
    let mut url = server.url("").into_bytes();
    url.extend(std::iter::repeat_n(0xffu8, 3000));
    url.push(b'/');
    let out = std::process::Command::new(&Client::current().program)
        .arg(std::ffi::OsStr::from_bytes(&url))
        .arg(scratch.path().join("d"))
        .output()
        .expect("rsync");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("@ERROR: Unknown module '\u{fffd}"),
        "{stderr}"
    );
    server.await_log(&format!("{}'", "\u{fffd}".repeat(3000)), 1);
    assert_still_serves(&server, &tree);
}

#[test]
fn a_garbage_greeting_is_refused() {
    let (tree, server) = start();
    let mut s = Raw::connect(server.port()).stream;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read until close");
    assert!(
        answer.contains("@ERROR: protocol startup error"),
        "{answer:?}"
    );
    server.await_log("refused: protocol startup error", 1);
    assert_still_serves(&server, &tree);
}

#[test]
fn an_overlong_handshake_line_ends_the_connection() {
    let (tree, server) = start();
    let mut s = Raw::connect(server.port()).stream;
    // Far more than the line limit, with no newline.
    let junk = vec![b'x'; 1 << 20];
    let _ = s.write_all(&junk);
    assert_connection_ended(&server, s, "line longer than");
    assert_still_serves(&server, &tree);
}

#[test]
fn absurd_checksum_heads_are_refused_without_allocating() {
    let (tree, server) = start();
    let before = rss_kib(server.pid());
    // Block length above the protocol's limit.
    let mut s = raw_pull(&server, "m/big.bin");
    s.write_all(&file_request(0, &[1000, (1 << 30) + 5, 16, 0]))
        .expect("request");
    assert_connection_ended(&server, s, "invalid block length");

    // A count of two billion blocks, then the client goes away: upserv must
    // not have reserved room for them.
    let mut s = raw_pull(&server, "m/big.bin");
    let mut req = file_request(0, &[i32::MAX, 1 << 20, 16, 0]);
    // A few real-looking sums, then silence.
    req.extend(std::iter::repeat_n(7u8, 20 * 1000));
    s.write_all(&req).expect("request");
    drop(s);
    server.await_log("module m: failed", 2);
    let after = rss_kib(server.pid());
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert_still_serves(&server, &tree);
}

#[test]
fn a_request_for_a_nonexistent_index_is_a_protocol_error() {
    let (tree, server) = start();
    let mut s = raw_pull(&server, "m/small.txt");
    s.write_all(&file_request(12345, &[])).expect("request");
    assert_connection_ended(&server, s, "invalid file index 12345");
    assert_still_serves(&server, &tree);
}

#[test]
fn a_client_that_disconnects_mid_file_ends_only_its_connection() {
    let (tree, server) = start();
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("dest");
    std::fs::create_dir_all(&dest).expect("dest");
    // A slow pull of the big file, killed once the partial file has data:
    // its whole process group, since the client's forked receiver would
    // otherwise keep the connection open (and reading) on its own.
    let mut client = std::process::Command::new("rsync")
        .args(["-a", "--bwlimit=200", "--partial"])
        .arg(server.url("m/big.bin"))
        .arg(&dest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("rsync client");
    wait_until("the transfer to start", || {
        std::fs::read_dir(&dest)
            .expect("dest dir")
            .filter_map(Result::ok)
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    });
    kill_group(client.id());
    let _ = client.wait();
    server.await_log("module m: failed", 1);
    assert_still_serves(&server, &tree);
}

#[test]
fn a_push_is_refused_with_a_clear_error() {
    let (tree, server) = start();
    let scratch = tempfile::tempdir().expect("scratch");
    let src = scratch.path().join("upload.txt");
    std::fs::write(&src, b"not welcome").expect("file to push");
    let out = std::process::Command::new("timeout")
        .arg("30")
        .arg("rsync")
        .arg(&src)
        .arg(server.url("m/"))
        .output()
        .expect("rsync push");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("module is read only"), "{stderr}");
    assert_ne!(out.status.code(), Some(0));
    assert_ne!(out.status.code(), Some(124), "the push hung");
    assert!(!tree.path("upload.txt").exists());
}
