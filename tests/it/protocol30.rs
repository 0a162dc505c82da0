//! What protocol 30 and later add to a pull and that the option matrix
//! cannot compare: access times (`-U`), which the snapshots leave out.

use crate::support::raw::Raw;
use crate::support::tree::set_atime;
use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Source access times: after every mtime and ctime the test makes, and in
/// the future, so that reading a file (the sender's, or the snapshot's on
/// the destination) never moves them under `relatime`.
const ATIME_BASE: i64 = 2_000_000_000;

/// The protocols this file is about: 30, 31 and the client's default.
const FROM_30: ProtocolSet = ProtocolSet(&[Protocol::V(30), Protocol::V(31), Protocol::Default]);

/// What a server on `port` answers a hand-made client that asks for
/// protocol `protocol` and module `m`, then sends the server arguments
/// `--server --sender ARGS . m/` (`args` one a line): everything until it
/// closes.
fn answer_to(port: u16, protocol: u32, args: &str) -> String {
    let mut raw = Raw::connect(port);
    let lines = raw.open_module_at("m", protocol);
    assert_eq!(lines.last().map(String::as_str), Some("@RSYNCD: OK\n"));
    raw.send(format!("--server\n--sender\n{args}\n.\nm/\n\n").as_bytes());
    // The seed and message header are binary: read bytes, not text
    // (nothing is buffered past `@RSYNCD: OK`, the server waits).
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw.stream, &mut rest);
    String::from_utf8_lossy(&rest).into_owned()
}

fn atime(root: &Path, rel: &str) -> i64 {
    root.join(rel).symlink_metadata().unwrap().atime()
}

#[test]
fn atimes_pull_like_rsyncd() {
    let tree = TestTree::new();
    // Two files share an atime (XMIT_SAME_ATIME), the others differ.
    let files = [
        ("a.txt", 0),
        ("b.txt", 0),
        ("dir/c.txt", 77),
        ("dir/sub/d.bin", 3_600),
    ];
    for (rel, offset) in files {
        tree.file(rel, rel.as_bytes()).mtime(1_600_000_000);
        set_atime(&tree.path(rel), ATIME_BASE + offset);
    }
    tree.symlink("link", "a.txt");
    tree.settle();
    for opts in [&["-rtU"][..], &["-aU"]] {
        for pair in Differential::new(&tree).run(opts, &FROM_30) {
            for (rel, offset) in files {
                let want = ATIME_BASE + offset;
                let reference = atime(pair.reference_tree.root(), rel);
                let candidate = atime(pair.candidate_tree.root(), rel);
                assert_eq!(
                    (reference, candidate),
                    (want, want),
                    "{rel} atime (rsyncd, upserv) with {opts:?} at {}",
                    pair.protocol
                );
            }
        }
    }
}

/// Below 30 rsyncd turns `-A` and `-X` away naming the protocol it
/// negotiated (rsync: compat.c setup_protocol; it only logs the words,
/// as its error channel is not up yet); upserv tells the client the same.
/// The stock client refuses them itself below 30, so a hand-made client
/// asks at 27.
#[test]
fn acls_and_xattrs_below_30_are_refused_with_the_protocol() {
    let tree = TestTree::new();
    tree.file("f", b"f\n");
    let modules = [Module::new("m", tree.root())];
    let upserv = Upserv::start(&modules);
    for name in ["acls", "xattrs"] {
        let want = format!("--{name} requires protocol 30 or higher (negotiated 27).");
        let rest = answer_to(upserv.port(), 27, &format!("-r\n--{name}"));
        assert!(rest.contains(&want), "--{name}: {rest:?}");
    }
}

/// From 30 on rsyncd (built with ACL and xattr support) serves `-A` and
/// `-X`; upserv does not, and says so without naming a wrong protocol.
#[test]
fn acls_and_xattrs_from_30_are_refused_truthfully() {
    let tree = TestTree::new();
    tree.file("f", b"f\n");
    let upserv = Upserv::start(&[Module::new("m", tree.root())]);
    let scratch = tempfile::tempdir().unwrap();
    for (opt, name) in [("-A", "acls"), ("-X", "xattrs")] {
        for &protocol in FROM_30.0 {
            let dest = scratch.path().join(format!("{name}-{protocol}"));
            let got = pull(&upserv.url("m/"), &dest, &["-r", opt], protocol);
            assert_ne!(got.code, 0, "{opt} at {protocol}");
            let want = format!("--{name}: not supported by this server");
            assert!(
                got.stderr.contains(&want) && !got.stderr.contains("negotiated"),
                "{opt} at {protocol}: {}",
                got.stderr
            );
        }
    }
}

/// rsyncd on Linux is built without `--crtimes` and refuses it as if
/// configured to; upserv answers the same. The stock client refuses `-N`
/// itself, so a hand-made client asks both servers.
#[test]
fn crtimes_refused_like_rsyncd() {
    let tree = TestTree::new();
    tree.file("f", b"f\n");
    let modules = [Module::new("m", tree.root())];
    let rsyncd = Rsyncd::start(&modules);
    let upserv = Upserv::start(&modules);
    let want = "rsync: The server is configured to refuse --crtimes (-N)\n";
    for (server, port) in [("rsyncd", rsyncd.port()), ("upserv", upserv.port())] {
        for args in ["-rN", "--crtimes"] {
            let rest = answer_to(port, 29, args);
            assert!(rest.contains(want), "{server}, {args}: {rest:?}");
        }
    }
}

/// At 31+ a daemon with a module `timeout` tells the client (MSG_IO_TIMEOUT),
/// which adopts it when shorter than its own: the pull must go on as
/// rsyncd's does, with and without a client `--timeout` either side of it.
#[test]
fn module_timeout_is_announced_like_rsyncd() {
    let tree = TestTree::new();
    tree.file("f", b"f\n").mtime(1_600_000_000);
    let diff = Differential::new(&tree)
        .param("timeout", "7")
        .stderr_exact();
    for opts in [
        &["-rt"][..],
        &["-rt", "--timeout=3"],
        &["-rt", "--timeout=60"],
    ] {
        diff.run(opts, &FROM_30);
    }
}
