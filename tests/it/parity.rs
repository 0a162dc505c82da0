//! Where upserv once parted from rsyncd, now compared with it: the client's
//! `--bwlimit` paces what the daemon sends, and a link leading out of the
//! module under `-L` or `--copy-unsafe-links` no longer cancels the
//! client's `--delete`.

use crate::support::*;
use std::path::Path;
use std::time::Duration;

/// The limit the paced pulls ask for, in KiB per second.
const LIMIT_KIB: u64 = 256;
/// The file the paced pulls fetch: two seconds' worth at [`LIMIT_KIB`].
const PACED_SIZE: usize = 512 << 10;
/// What a paced pull may finish ahead of size / limit: the throttle lets
/// a tenth of a second's worth out before it first sleeps, plus one write
/// of an eighth of a second's worth.
const PACING_SLACK: Duration = Duration::from_millis(250);

fn paced_tree() -> TestTree {
    let tree = TestTree::new();
    let mut rng = crate::support::tree::Rng::new(9);
    tree.file("big.bin", &rng.bytes(PACED_SIZE));
    tree.file("small.txt", b"small\n");
    tree
}

/// The time a pull of [`PACED_SIZE`] bytes takes at [`LIMIT_KIB`].
fn paced_time() -> Duration {
    Duration::from_secs_f64(PACED_SIZE as f64 / (LIMIT_KIB * 1024) as f64)
}

#[test]
fn bwlimit_paces_the_pull_and_leaves_rsyncds_tree() {
    let tree = paced_tree();
    let limit = format!("--bwlimit={LIMIT_KIB}");
    let pairs = Differential::new(&tree)
        .name("bwlimit")
        .run(&["-a", "-i", &limit], &ProtocolSet::V29);
    let floor = paced_time() - PACING_SLACK;
    for pair in pairs {
        for (who, r) in [("rsyncd", &pair.reference), ("upserv", &pair.candidate)] {
            assert!(
                r.elapsed >= floor,
                "{who} sent {PACED_SIZE} bytes at {LIMIT_KIB} KiB/s in {:?} (at least {floor:?} expected)",
                r.elapsed
            );
        }
    }
}

#[test]
fn without_bwlimit_the_pull_is_not_paced() {
    let tree = paced_tree();
    let pairs = Differential::new(&tree)
        .name("no bwlimit")
        .run(&["-a", "-i"], &ProtocolSet::V29);
    // Half the paced time is ample on a busy machine: the unpaced pull of
    // half a megabyte over loopback takes milliseconds.
    let ceiling = paced_time() / 2;
    for pair in pairs {
        assert!(
            pair.candidate.elapsed < ceiling,
            "upserv took {:?} without --bwlimit",
            pair.candidate.elapsed
        );
    }
}

/// Written into the files outside the module: it must never arrive.
const MARKER: &[u8] = b"OUTSIDE-THE-MODULE-parity";

/// A module whose links lead out of it to files (absolute and through
/// `..`), next to links that stay inside.
fn tree_with_outward_file_links() -> TestTree {
    let tree = TestTree::new();
    tree.file("a.txt", b"a\n");
    tree.file("sub/b.txt", b"b\n");
    tree.symlink("in-link", "a.txt");
    tree.symlink("sub/up-in", "../a.txt");
    let outside = tree.path("../outside");
    std::fs::create_dir_all(&outside).expect("outside directory");
    std::fs::write(outside.join("secret"), MARKER).expect("outside file");
    tree.symlink("abs-out", outside.join("secret"));
    tree.symlink("sub/rel-out", "../../outside/secret");
    tree
}

/// A laptop's copy with files the module no longer has.
fn stale_basis(_source: &Path, dest: &Path) {
    std::fs::create_dir_all(dest.join("sub")).expect("basis directories");
    std::fs::write(dest.join("stale.txt"), b"old\n").expect("stale file");
    std::fs::write(dest.join("sub/stale.txt"), b"old\n").expect("stale file");
}

/// Link options whose result with links leading out of the module rsyncd
/// (without chroot) and upserv share.
const LINK_OPTIONS: &[&[&str]] = &[
    &["-a", "-i", "--delete", "-L"],
    &["-a", "-i", "--delete", "--copy-unsafe-links"],
    &["-a", "-i", "--delete", "--safe-links"],
    &["-a", "-i", "--delete", "-k"],
    &["-a", "-i", "-L"],
];

/// The links are compared at every protocol: from 30 on the client prints
/// its deletions apart from its other lines, which the harness allows for
/// (`support::differential`, deletion lines).
const LINK_PROTOCOLS: ProtocolSet = ProtocolSet(&[
    Protocol::V(27),
    Protocol::V(28),
    Protocol::V(29),
    Protocol::V(30),
    Protocol::V(31),
    Protocol::Default,
]);

#[test]
fn links_leading_out_are_not_followed_and_deletions_still_happen() {
    let tree = tree_with_outward_file_links();
    for client in Client::all() {
        for opts in LINK_OPTIONS {
            let pairs = Differential::new(&tree)
                .name(&format!("outward links {opts:?}"))
                .client(client.clone())
                .basis(stale_basis)
                .run(opts, &LINK_PROTOCOLS);
            if !opts.contains(&"--delete") {
                continue;
            }
            for pair in &pairs {
                for name in ["stale.txt", "sub/stale.txt"] {
                    assert!(
                        pair.candidate_tree.get(name).is_none(),
                        "{opts:?} at {}: upserv left {name}",
                        pair.protocol
                    );
                }
            }
        }
    }
}

/// A link to a directory outside: rsyncd without chroot lists it as that
/// directory (reading outside the module), fails to open it and cancels
/// every deletion; with chroot it finds no referent and cancels them too.
/// upserv reads nothing outside, leaves the link out with an error, and
/// the client still deletes.
#[test]
fn a_link_to_a_directory_outside_is_left_out_and_deletions_still_happen() {
    let tree = tree_with_outward_file_links();
    let outside = tree.path("../outside");
    std::fs::create_dir_all(outside.join("dir")).expect("outside directory");
    std::fs::write(outside.join("dir/secret"), MARKER).expect("outside file");
    tree.symlink("dir-out", "../outside/dir");
    let upserv = Upserv::start(&[Module::new("m", tree.root())]);
    let scratch = tempfile::tempdir().expect("scratch");
    for opts in [
        &["-a", "--delete", "-L"][..],
        &["-a", "--delete", "--copy-unsafe-links"],
    ] {
        let dest = scratch.path().join("dest");
        let _ = std::fs::remove_dir_all(&dest);
        stale_basis(tree.root(), &dest);
        let r = pull(&upserv.url("m/"), &dest, opts, Protocol::V(29));
        assert_eq!(r.code, 23, "{opts:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("symlink leads outside the module: \"dir-out\""),
            "{opts:?}: {}",
            r.stderr
        );
        let got = Snapshot::of(&dest);
        for name in ["stale.txt", "sub/stale.txt", "dir-out", "abs-out"] {
            assert!(got.get(name).is_none(), "{opts:?}: {name} is there");
        }
        assert!(got.get("a.txt").is_some(), "{opts:?}: a.txt is missing");
    }
}
