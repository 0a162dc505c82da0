//! Self-tests of the differential harness in `tests/it/support`, with the real
//! rsync on both sides: two rsyncd instances serving one tree must compare
//! equal at every protocol, a changed tree must be reported by path, and the
//! fixtures and parsers must read what the real client and kernel produce.
//!
//! Expected values come from the tree the test builds, from rsync's
//! documented behaviour (block size, 32-bit mtimes) or from published test
//! vectors, never from the harness's own output.

use crate::support::client::{comparable_lines, is_itemized, Protocol};
use crate::support::differential::{
    compare_stats, run_cases_against, volatile_mtimes, StatsPolicy,
};
use crate::support::inetd::Inetd;
use crate::support::snapshot::{show_path, Kind, Volatile};
use crate::support::tree::{set_mtime, Device, Rng};
use crate::support::upserv::listening_addr;
use crate::support::*;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A fixed seed: a failure here must be reproducible.
const TREE_SEED: u64 = 20_240_601;
/// Protocol 29 and the client's default: enough for plumbing checks.
const V29_AND_DEFAULT: ProtocolSet = ProtocolSet(&[Protocol::V(29), Protocol::Default]);

#[test]
fn rsyncd_against_rsyncd_agrees_at_every_protocol() {
    let tree = TestTree::new();
    tree.random(&RandomSpec::SMALL, TREE_SEED);
    let pairs = Differential::new(&tree)
        .name("random tree, rsyncd vs rsyncd")
        .candidate(Candidate::Rsyncd)
        .stderr_exact()
        .run(&["-a", "-H", "-i", "--stats"], &ProtocolSet::ALL);
    assert_eq!(
        pairs.len(),
        ProtocolSet::ALL.0.len(),
        "one pair per protocol"
    );
    let source = Snapshot::of(tree.root());
    for pair in &pairs {
        pair.reference.assert_ok();
        // Below 30 a pre-1970 mtime crosses as 32 unsigned bits; from 30
        // on (the client's default included) it survives whole.
        let wraps = matches!(pair.protocol, Protocol::V(v) if v < 30);
        assert_pulled_like_source(&source, &pair.reference_tree, wraps);
        let stats = pair.reference.stats().expect("--stats output");
        assert_eq!(
            stats.files as usize,
            source.len(),
            "every entry is in the file list"
        );
        assert_eq!(
            stats.matched, 0,
            "nothing to match against in an empty destination"
        );
        assert_eq!(
            pair.reference.itemized.len(),
            source.len(),
            "one -i line per entry"
        );
    }
}

/// A pull with `-aH` as root reproduces the source, except that protocols
/// below 30 carry mtimes in 32 bits, which a 3.x receiver reads as unsigned
/// (rsync: flist.c read_uint), so times before 1970 come back after 2100.
fn assert_pulled_like_source(source: &Snapshot, pulled: &Snapshot, wraps: bool) {
    let wrapped: Vec<&[u8]> = source
        .paths()
        .filter(|p| {
            let mtime = source.get(p).expect("listed").mtime;
            i64::from(mtime as u32) != mtime
        })
        .collect();
    assert!(
        !wrapped.is_empty(),
        "the random tree should have a pre-1970 mtime"
    );
    for path in &wrapped {
        let mtime = source.get(path).expect("listed").mtime;
        let expected = if wraps {
            i64::from(mtime as u32)
        } else {
            mtime
        };
        let got = pulled.get(path).map(|n| n.mtime);
        assert_eq!(got, Some(expected), "32-bit mtime of {}", show_path(path));
    }
    let diffs = source.diff(pulled, Volatile::default(), ["source", "pulled"]);
    let unexpected: Vec<&String> = diffs
        .iter()
        .filter(|d| {
            !wrapped
                .iter()
                .any(|p| d.starts_with(&format!("{}: mtime", show_path(p))))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "pulled tree differs from the source: {unexpected:#?}"
    );
}

#[test]
fn a_changed_tree_is_reported_by_path() {
    let served = TestTree::new();
    served.random(&RandomSpec::SMALL, TREE_SEED);
    served
        .file("docs/changed.txt", b"hello world")
        .mtime(1_600_000_000);
    served.settle();
    let changed = TestTree::new();
    basis_copy(served.root(), changed.root());
    changed
        .file("docs/changed.txt", b"hello WORLD")
        .mtime(1_600_000_000);
    changed.file("extra file", b"x").mtime(1_600_000_000);
    let report = Differential::new(&served)
        .name("changed tree")
        .candidate(Candidate::Rsyncd)
        .candidate_side(Side {
            modules: vec![Module::new("m", changed.root())],
            url_path: "m/".to_string(),
        })
        .run_checked(&["-a", "-i"], &ProtocolSet::V29)
        .err()
        .expect("serving a changed tree must fail the comparison");
    for needle in [
        "case `changed tree`, protocol 29",
        // Same size and mtime: only the content tells; "hello " is 6 bytes.
        "docs/changed.txt: content differs: size 11 (reference) vs 11 (candidate), first different byte at 6",
        "extra file: only in candidate (File)",
        "itemized lines: first difference",
        ">f+++++++++ extra file",
        "--- reference daemon log",
        "--- candidate daemon log",
    ] {
        assert!(report.contains(needle), "report lacks {needle:?}:\n{report}");
    }
}

#[test]
fn delta_pull_stats_follow_rsync_block_arithmetic() {
    let tree = TestTree::new();
    tree.file("same.txt", &[b'a'; 100]).mtime(1_500_000_000);
    tree.file("big.bin", &Rng::new(7).bytes(2000))
        .mtime(1_500_000_000);
    tree.symlink("link", "same.txt");
    let pairs = Differential::new(&tree)
        .name("one edited block")
        .candidate(Candidate::Rsyncd)
        .basis(flip_byte_1000)
        .run(&["-a", "-i", "--stats"], &ProtocolSet::ALL);
    let source = Snapshot::of(tree.root());
    for pair in &pairs {
        let stats = pair.reference.stats().expect("--stats output");
        // rsync's smallest block is 700 bytes: 2000 bytes are blocks
        // [0,700) [700,1400) [1400,2000); the edit spoils the second only.
        assert_eq!(
            (stats.literal, stats.matched),
            (700, 1300),
            "at {}",
            pair.protocol
        );
        assert_eq!(stats.transferred, 1, "only big.bin differs");
        assert_eq!(stats.files, 4, ". same.txt big.bin link");
        assert_eq!(stats.total_size, 100 + 2000 + "same.txt".len() as u64);
        assert_eq!(stats.transferred_size, 2000);
        let pulled = pair.reference_tree.get("big.bin").expect("big.bin pulled");
        assert_eq!(pulled.md4, source.get("big.bin").expect("source").md4);
    }
}

#[test]
fn an_edited_basis_makes_a_real_delta() {
    let tree = TestTree::new();
    tree.random(&RandomSpec::SMALL, TREE_SEED + 3);
    let pairs = Differential::new(&tree)
        .name("edited basis")
        .candidate(Candidate::Rsyncd)
        .basis(basis_edited)
        .run(&["-a", "-i", "--stats", "--delete"], &ProtocolSet::V29);
    let stats = pairs[0].reference.stats().expect("--stats output");
    assert!(
        stats.matched > 0 && stats.literal > 0,
        "a delta needs both: {stats:?}"
    );
    assert!(
        stats.literal < stats.transferred_size / 2,
        "small edits: {stats:?}"
    );
    let deleted = pairs[0]
        .reference
        .itemized
        .iter()
        .filter(|l| l.starts_with("*deleting"));
    assert_eq!(deleted.count(), 2, "the two basis-only files");
}

/// A basis equal to the source but for one byte of `big.bin`.
fn flip_byte_1000(source: &Path, dest: &Path) {
    basis_copy(source, dest);
    let path = dest.join("big.bin");
    let mut data = std::fs::read(&path).expect("reading the basis copy");
    data[1000] ^= 0xff;
    std::fs::write(&path, data).expect("writing the basis copy");
    set_mtime(&path, 1_400_000_000);
}

fn random_small(tree: &TestTree) {
    tree.random(&RandomSpec::SMALL, TREE_SEED + 1);
}

// One case per line: the table reads better than rustfmt's layout.
#[rustfmt::skip]
const CASES: &[Case] = &[
    Case::new("archive", &["-a", "-i"], random_small, None),
    Case::new("delta", &["-a", "-i", "--stats"], random_small, Some(basis_edited)),
    Case::new("delta, delete", &["-a", "-i", "--delete"], random_small, Some(basis_edited)),
    Case::new("no times", &["-r", "-i", "-l"], random_small, None),
    Case::new("chatty", &["-avv", "--stats"], random_small, Some(basis_edited)),
    Case::new("progress", &["-ai", "--progress"], random_small, None),
];

#[test]
fn a_case_table_runs_rsyncd_against_rsyncd() {
    run_cases_against(CASES, &ProtocolSet::V29, Candidate::Rsyncd);
}

/// Directories in the deletion tree: enough that, from protocol 30 on, the
/// client's generator still deletes while its receiver prints (with ten,
/// the deletions came first in every run).
const DELETION_DIRS: usize = 100;

/// [`DELETION_DIRS`] directories of twenty small files and a larger one.
fn deletion_tree() -> TestTree {
    let tree = TestTree::new();
    let mut rng = Rng::new(TREE_SEED);
    for d in 0..DELETION_DIRS {
        for f in 0..20 {
            tree.file(format!("d{d:03}/f{f:02}"), &rng.bytes(40));
        }
        tree.file(format!("d{d:03}/big"), &rng.bytes(30_000));
    }
    tree
}

/// A copy with a stale file in every directory and every larger file changed.
fn stale_everywhere(source: &Path, dest: &Path) {
    basis_copy(source, dest);
    for d in 0..DELETION_DIRS {
        let dir = dest.join(format!("d{d:03}"));
        std::fs::write(dir.join("stale"), b"gone from the source\n").expect("stale file");
        std::fs::write(dir.join("big"), b"changed\n").expect("changed file");
    }
}

/// rsyncd against rsyncd on one tree, deleting in every directory: from
/// protocol 30 on the client's generator prints its deletions while its
/// receiver prints the rest, interleaved differently from run to run (a
/// line-for-line comparison fails here nearly every time); the harness
/// compares the two streams apart, each in its own order, and they agree.
#[test]
fn deletions_are_compared_apart_from_the_receivers_lines() {
    let tree = deletion_tree();
    for opts in [&["-a", "-i", "--delete"][..], &["-a", "-v", "--delete"]] {
        Differential::new(&tree)
            .name("deletions in every directory, rsyncd vs rsyncd")
            .candidate(Candidate::Rsyncd)
            .basis(stale_everywhere)
            .run(opts, &FROM_30);
    }
}

/// The protocols of incremental recursion (below 30 the generator has
/// deleted everything before the receiver prints a line).
const FROM_30: ProtocolSet = ProtocolSet(&[Protocol::V(30), Protocol::V(31), Protocol::Default]);

#[test]
fn the_inetd_plumbing_serves_like_a_daemon() {
    let tree = TestTree::new();
    tree.random(&RandomSpec::SMALL, TREE_SEED + 2);
    Differential::new(&tree)
        .name("rsyncd in inetd mode")
        .candidate(Candidate::RsyncdInetd)
        .stderr_exact()
        .run(&["-a", "-H", "-i"], &V29_AND_DEFAULT);
}

#[test]
fn a_per_connection_server_that_dies_ends_the_pull() {
    // `true` exits at once: the client must see the socket close rather
    // than wait on a copy the harness kept open.
    let inetd = Inetd::start(Command::new("true"), "true", None);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let outcome = Client::current().pull_within(
        &inetd.url("m/"),
        &scratch.path().join("dest"),
        &["-a"],
        Protocol::Default,
        Duration::from_secs(20),
    );
    let result = outcome.expect("the pull ends on its own");
    assert_ne!(result.code, 0, "no server, no success");
}

#[test]
fn a_hung_client_is_killed_at_the_deadline() {
    // Accepts and never greets: the client waits for the greeting forever.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding");
    let port = silent.local_addr().expect("address").port();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let url = format!("rsync://127.0.0.1:{port}/m/");
    let started = std::time::Instant::now();
    let outcome = Client::current().pull_within(
        &url,
        &scratch.path().join("dest"),
        &["-a"],
        Protocol::Default,
        Duration::from_millis(500),
    );
    let report = outcome.expect_err("a client without a server must time out");
    assert!(report.contains("killed after 500ms"), "{report}");
    assert!(
        report.contains(&url),
        "the report names the command: {report}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "killed promptly"
    );
}

#[test]
fn snapshots_record_what_the_tree_holds() {
    let tree = TestTree::new();
    tree.file("abc", b"abc")
        .mode(0o4750)
        .owner(4242, 4343)
        .mtime(1_234_567_890);
    tree.hard_link("sub/abc-link", "abc");
    tree.symlink("sub/link", "../abc")
        .owner(1, 2)
        .mtime(1_111_111_111);
    tree.device("tty", Device::Char, 4, 64);
    tree.device("disk", Device::Block, 259, 65_537);
    tree.fifo("fifo");
    tree.socket("socket");
    tree.dir("sub").mode(0o2775).mtime(1_000_000_000);
    tree.settle();
    let snap = Snapshot::of(tree.root());
    let abc = snap.get("abc").expect("abc");
    assert_eq!(
        (abc.kind, abc.perm, abc.mtime),
        (Kind::File, 0o4750, 1_234_567_890)
    );
    assert_eq!((abc.uid, abc.gid, abc.size), (4242, 4343, 3));
    // RFC 1320's test vector: MD4("abc").
    let md4_abc = [
        0xa4, 0x48, 0x01, 0x7a, 0xaf, 0x21, 0xd8, 0x52, 0x5f, 0xc1, 0x0a, 0xe8, 0x7a, 0xa6, 0x72,
        0x9d,
    ];
    assert_eq!(abc.md4, Some(md4_abc));
    assert_eq!(abc.link_group.as_deref(), Some(&b"abc"[..]));
    assert_eq!(
        snap.get("sub/abc-link")
            .expect("link")
            .link_group
            .as_deref(),
        Some(&b"abc"[..])
    );
    let link = snap.get("sub/link").expect("symlink");
    assert_eq!(
        (link.kind, link.mtime, link.uid, link.gid),
        (Kind::Symlink, 1_111_111_111, 1, 2)
    );
    assert_eq!(link.target.as_deref(), Some(&b"../abc"[..]));
    assert_eq!(snap.get("tty").expect("tty").rdev, Some((4, 64)));
    assert_eq!(snap.get("disk").expect("disk").rdev, Some((259, 65_537)));
    assert_eq!(snap.get("fifo").expect("fifo").kind, Kind::Fifo);
    assert_eq!(snap.get("socket").expect("socket").kind, Kind::Socket);
    let sub = snap.get("sub").expect("sub");
    assert_eq!(
        (sub.kind, sub.perm, sub.mtime),
        (Kind::Dir, 0o2775, 1_000_000_000)
    );
    assert_eq!(
        snap.len(),
        9,
        ". abc sub sub/abc-link sub/link tty disk fifo socket"
    );
}

#[test]
fn assert_same_names_the_difference() {
    let left = TestTree::new();
    left.file("a/b", b"same").mode(0o644);
    let right = TestTree::new();
    right.file("a/b", b"same").mode(0o600);
    let (l, r) = (Snapshot::of(left.root()), Snapshot::of(right.root()));
    let outcome = std::panic::catch_unwind(|| assert_same(&l, &r));
    let message = *outcome
        .expect_err("different modes must fail")
        .downcast::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("a/b: mode 0644 (left) vs 0600 (right)"),
        "{message}"
    );
}

#[test]
fn itemized_lines_are_told_from_other_output() {
    for line in [
        ">f+++++++++ file",
        "cd+++++++++ dir/",
        ".d..t...... ./",
        "cL+++++++++ link -> target",
        "hf+++++++++ b => a",
        ">f????????? old protocol",
        "*deleting   gone",
        "cD+++++++++ dev",
        "cS+++++++++ fifo",
    ] {
        assert!(is_itemized(line), "{line:?} is itemized");
    }
    for line in [
        "created directory dest",
        "receiving file list ... done",
        "Number of files: 3 (reg: 2, dir: 1)",
        "sent 1 bytes  received 2 bytes  6.00 bytes/sec",
        "file",
        "",
    ] {
        assert!(!is_itemized(line), "{line:?} is not itemized");
    }
}

#[test]
fn comparable_lines_mask_what_differs_between_servers() {
    let module = Path::new("/srv/tree");
    let text = "receiving file list ... done\n\
        rsync: [sender] link_stat \"/srv/tree/x\" (in m) failed: No such file or directory (2)\n\
        File list size: 1,234\n\
        File list generation time: 0.001 seconds\n\
        Literal data: 5 bytes\n\
        sent 1 bytes  received 2 bytes  6.00 bytes/sec\n\
        total size is 11  speedup is 0.02\n\
        rsync error: some files could not be transferred (code 23) at main.c(1338) [generator=3.5.0]\n\
        \r   1,000 100%  976.56kB/s    0:00:00 (xfr#1, to-chk=0/2)\n\
        opening tcp connection to 127.0.0.1 port 40123\n\
        rsync: failed to connect to 127.0.0.1:40123 rsync://127.0.0.1:40123/m/\n\
        renaming .with space-1.X9wnt1 to with space-1\n\
        rsync[8902] (generator) heap statistics:\n";
    let expected = [
        "receiving file list ... done",
        "rsync: [sender] link_stat \"<module>/x\" (in m) failed: No such file or directory (2)",
        "total size is 11",
        "rsync error: some files could not be transferred (code 23) [generator]",
        // Only the text after the last carriage return counts; the padding
        // of a progress line depends on the rate's width, so it goes.
        "1,000 100% <rate> <time> (xfr#1, to-chk=0/2)",
        "opening tcp connection to 127.0.0.1 port <port>",
        "rsync: failed to connect to <address> rsync://<address>/m/",
        "renaming .with space-1.XXXXXX to with space-1",
        "rsync[<pid>] (generator) heap statistics:",
    ];
    assert_eq!(comparable_lines(text, &[module]), expected);
}

#[test]
fn stats_are_read_from_new_and_old_clients() {
    let new = "Number of files: 9 (reg: 4, dir: 4, link: 1)\n\
        Number of created files: 9 (reg: 4, dir: 4, link: 1)\n\
        Number of deleted files: 0\n\
        Number of regular files transferred: 4\n\
        Total file size: 1,234,567 bytes\n\
        Total transferred file size: 9 bytes\n\
        Literal data: 7 bytes\n\
        Matched data: 2 bytes\n\
        File list size: 139\n\
        Total bytes sent: 134\n\
        Total bytes received: 386\n";
    let stats = Stats::parse(new).expect("complete stats");
    assert_eq!(
        (stats.files, stats.created, stats.deleted),
        (9, Some(9), Some(0))
    );
    assert_eq!(
        (stats.transferred, stats.total_size, stats.transferred_size),
        (4, 1_234_567, 9)
    );
    assert_eq!(
        (stats.literal, stats.matched, stats.file_list_size),
        (7, 2, 139)
    );
    assert_eq!((stats.bytes_sent, stats.bytes_received), (134, 386));
    let old = new
        .replace(
            "Number of regular files transferred",
            "Number of files transferred",
        )
        .replace("Number of created files: 9 (reg: 4, dir: 4, link: 1)\n", "");
    let stats = Stats::parse(&old).expect("2.6-style stats");
    assert_eq!((stats.transferred, stats.created), (4, None));
    assert_eq!(Stats::parse("no stats here"), None);
}

#[test]
fn literal_data_may_differ_only_within_the_margin() {
    let policy = StatsPolicy {
        literal_margin_percent: 10,
        literal_margin_bytes: 100,
    };
    let base = Stats::parse(
        "Number of files: 1\nNumber of files transferred: 1\nTotal file size: 10000 bytes\n\
         Total transferred file size: 10000 bytes\nLiteral data: 2000 bytes\n\
         Matched data: 8000 bytes\nFile list size: 1\nTotal bytes sent: 1\nTotal bytes received: 1\n",
    )
    .expect("stats");
    let with = |literal, matched| {
        Some(Stats {
            literal,
            matched,
            ..base
        })
    };
    assert!(
        compare_stats(with(2000, 8000), with(2200, 7800), policy).is_empty(),
        "10% of 2000"
    );
    assert_eq!(
        compare_stats(with(2000, 8000), with(2201, 7799), policy).len(),
        1
    );
    assert_eq!(
        compare_stats(with(2000, 8000), with(10000, 0), policy).len(),
        2,
        "no matches"
    );
    assert!(
        compare_stats(with(50, 9950), with(150, 9850), policy).is_empty(),
        "100-byte floor"
    );
    assert_eq!(
        compare_stats(with(10000, 0), with(9999, 0), policy).len(),
        1,
        "exact without matching"
    );
    assert_eq!(
        compare_stats(with(1, 1), None, policy).len(),
        1,
        "stats on one side only"
    );
}

#[test]
fn volatile_mtimes_follow_the_options() {
    let none = |v: Volatile| !v.file_mtimes && !v.dir_mtimes && !v.link_mtimes && !v.root_mtime;
    assert!(none(volatile_mtimes(&["-a"], "m/")));
    assert!(none(volatile_mtimes(&["-rlt", "-v"], "m/")));
    assert!(none(volatile_mtimes(&["-r", "--times"], "m/")));
    let v = volatile_mtimes(&["-r"], "m/");
    assert!(v.file_mtimes && v.dir_mtimes && v.link_mtimes);
    let v = volatile_mtimes(&["-aO"], "m/");
    assert!(!v.file_mtimes && v.dir_mtimes && !v.link_mtimes);
    let v = volatile_mtimes(&["-a", "--omit-link-times"], "m");
    assert!(!v.dir_mtimes && v.link_mtimes && v.root_mtime);
    // Option values are not flags: "- test" is -f's rule, -B takes 700.
    assert!(volatile_mtimes(&["-r", "-f", "- test"], "m/").file_mtimes);
    assert!(volatile_mtimes(&["-rB", "700"], "m/").file_mtimes);
    assert!(volatile_mtimes(&["-a", "--no-times"], "m/").file_mtimes);
}

#[test]
fn upserv_listening_lines_give_the_address() {
    let line = "2024-06-01T10:00:00Z INFO  [upserv] listening on 127.0.0.1:40123\n";
    let addr = |text: &str| Some(text.parse().expect("a socket address"));
    assert_eq!(listening_addr(line), addr("127.0.0.1:40123"));
    assert_eq!(listening_addr("listening on [::1]:873"), addr("[::1]:873"));
    // The warning when IPv6 is missing names no address after the mark.
    let warning = "cannot listen on [::]:873 (Address family not supported): \
                   IPv6 is unavailable; listening on IPv4 only";
    assert_eq!(listening_addr(warning), None);
    assert_eq!(listening_addr("starting"), None);
}

#[test]
fn upserv_daemon_serves_like_rsyncd() {
    let tree = TestTree::new();
    tree.random(&RandomSpec::SMALL, TREE_SEED);
    Differential::new(&tree)
        .name("upserv daemon smoke test")
        .candidate(Candidate::Upserv)
        .run(&["-a", "-H", "-i", "--stats"], &ProtocolSet::ALL);
}

#[test]
fn upserv_serve_serves_like_rsyncd_and_keeps_stderr_clean() {
    let tree = TestTree::new();
    tree.random(&RandomSpec::SMALL, TREE_SEED);
    let module = Module::new("m", tree.root());
    let serve = UpservServe::start(std::slice::from_ref(&module));
    let scratch = tempfile::tempdir().expect("scratch dir");
    let dest = scratch.path().join("dest");
    pull(&serve.url("m/"), &dest, &["-a"], Protocol::V(29)).assert_ok();
    assert_eq!(
        serve.stderr_text(),
        "",
        "serve must write nothing but the protocol"
    );
    Differential::new(&tree)
        .name("upserv serve smoke test")
        .candidate(Candidate::UpservServe)
        .run(&["-a", "-H", "-i"], &V29_AND_DEFAULT);
}
