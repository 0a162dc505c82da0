//! Builds on demand across processes, with real clients: the daemon killed
//! with SIGKILL while it downloads and while it unpacks, then restarted
//! (no client ever gets a half build; the download resumes; the build
//! completes), and `upserv serve` started per connection as xinetd does
//! (two processes share one download; a missing build's error).

use std::path::Path;

use crate::support::builds::{
    assert_pulled_tree, private_leftovers, small_build_upstream, tar_tree, upserv_for,
};
use crate::support::live::LiveClient;
use crate::support::scratch::scratch_dir;
use crate::support::upstream::{compress, Behavior, Upstream};
use crate::support::*;

/// Files in the tree whose unpacking is interrupted: enough that it takes
/// a good while longer than the test needs to notice it has begun.
const MANY_FILES: usize = 3000;
const PULL_OPTS: &[&str] = &["-aH", "--no-motd"];

/// A tree of [`MANY_FILES`] small files in a few directories, gzipped.
fn many_files_tree_and_archive() -> (TestTree, Vec<u8>) {
    let tree = TestTree::new();
    for i in 0..MANY_FILES {
        tree.file(
            format!("d{}/f{i}", i % 30),
            format!("file {i}\n").as_bytes(),
        )
        .mtime(1_600_000_000 + i as i64);
    }
    for d in 0..30 {
        tree.dir(format!("d{d}")).mtime(1_600_100_000);
    }
    tree.dir("").mtime(1_600_200_000);
    tree.settle();
    let archive = tar_tree(tree.root().parent().expect("a parent"), "tree");
    (tree, compress(&archive, &["gzip", "-1", "-c"]))
}

/// A client that was waiting when its server died: it failed, and it
/// received nothing of the build.
fn assert_failed_empty_handed(client: LiveClient, dest: &Path) {
    let finished = client.finish();
    assert_ne!(finished.code, 0, "{finished:?}");
    let received = std::fs::read_dir(dest).map_or(0, |entries| entries.count());
    assert_eq!(
        received, 0,
        "a client of a dead server received a partial tree"
    );
}

/// The module names a listing of `server` shows.
fn listed_modules(server: &dyn Server, scratch: &Path) -> Vec<String> {
    let listing = pull(
        &server.url(""),
        &scratch.join("listing"),
        &[],
        Protocol::Default,
    );
    listing.assert_ok();
    listing
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn kill_9_during_a_download_then_the_restart_resumes_it() {
    let (tree, archive, up) = small_build_upstream(&["build-k"]);
    let dir = scratch_dir("builds-kill-download");
    let builds = dir.join("builds");
    let half = archive.len() / 2;
    up.gate_after("/b/build-k.tar", half);
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &[]);
    let first = LiveClient::start(&upserv.url("build-k/"), &dir.join("first"), &["-aH"]);
    first.wait_for_fetching("build-k");
    up.wait_at_gate(1);
    let part = builds.join(".upserv/partial/build-k.part");
    wait_until("half the archive on disk", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() >= half as u64)
    });
    // Another client asking now waits too, and the build is not listed.
    let second = LiveClient::start(&upserv.url("build-k/"), &dir.join("second"), &["-aH"]);
    second.wait_for_fetching("build-k");
    assert!(!listed_modules(&upserv, &dir).contains(&"build-k".to_string()));

    drop(upserv); // SIGKILL to the daemon's process group
    assert_failed_empty_handed(first, &dir.join("first"));
    assert_failed_empty_handed(second, &dir.join("second"));
    assert!(
        !builds.join("build-k").exists(),
        "a half build was published"
    );
    assert!(part.exists(), "the partial download is kept for resuming");

    up.set_behavior("/b/build-k.tar", Behavior::default());
    up.open_gate();
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &[]);
    assert_completed_after_restart(&upserv, &up, "/b/build-k.tar", &dir, &tree, Some(half));
}

#[test]
fn kill_9_during_unpacking_then_the_restart_completes_the_build() {
    let (tree, archive) = many_files_tree_and_archive();
    let dir = scratch_dir("builds-kill-unpack");
    let builds = dir.join("builds");
    let up = Upstream::start();
    up.put("/b/build-u.tar.gz", archive);
    let upserv = upserv_for(&up, "/b/{name}.tar.gz", &builds, &[]);
    let client = LiveClient::start(&upserv.url("build-u/"), &dir.join("first"), &["-aH"]);
    let scratch = builds.join(".upserv/unpack/build-u");
    wait_until("unpacking to begin", || scratch.exists());
    // Frozen at once, then killed: the state a crash leaves.
    let pid = libc::pid_t::try_from(upserv.pid()).expect("a pid");
    // SAFETY: plain syscall on the daemon this test started (not yet reaped).
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    assert!(
        !builds.join("build-u").exists(),
        "the build was published before the kill; unpacking {MANY_FILES} files was too quick to catch"
    );
    assert!(scratch.exists(), "the kill came during unpacking");
    drop(upserv);
    assert_failed_empty_handed(client, &dir.join("first"));

    let upserv = upserv_for(&up, "/b/{name}.tar.gz", &builds, &[]);
    // A listing answered means the startup recovery is over.
    assert!(!listed_modules(&upserv, &dir).contains(&"build-u".to_string()));
    assert!(!scratch.exists(), "startup removes what unpacking left");
    // The finished download was kept: nothing is asked for again.
    assert_completed_after_restart(&upserv, &up, "/b/build-u.tar.gz", &dir, &tree, None);
}

/// After a crash and a restart: the build of archive `path` (at
/// `/b/NAME.EXT`) pulls whole from `upserv`, the upstream was asked for the
/// archive once in full and, when the crash came during the download, once
/// from `resumed_from`, and upserv's private space holds nothing.
fn assert_completed_after_restart(
    upserv: &Upserv,
    up: &Upstream,
    path: &str,
    dir: &Path,
    tree: &TestTree,
    resumed_from: Option<usize>,
) {
    let name = path
        .trim_start_matches("/b/")
        .split('.')
        .next()
        .expect("a build name");
    let dest = dir.join("after");
    pull(
        &upserv.url(&format!("{name}/")),
        &dest,
        PULL_OPTS,
        Protocol::Default,
    )
    .assert_ok();
    assert_pulled_tree(tree, &dest);
    let mut expected = vec![None];
    expected.extend(resumed_from.map(|from| Some(format!("bytes={from}-"))));
    assert_eq!(
        up.ranges(path),
        expected,
        "the restarted daemon asked only for what it lacked"
    );
    assert_eq!(private_leftovers(&dir.join("builds")), Vec::<String>::new());
}

#[test]
fn two_serve_processes_share_one_download() {
    let (tree, archive, up) = small_build_upstream(&["build-s"]);
    let dir = scratch_dir("builds-serve-two");
    let half = archive.len() / 2;
    up.gate_after("/b/build-s.tar", half);
    let upstream = up.url("/b/{name}.tar");
    let builds = dir.join("builds");
    let serve = UpservServe::start_with(&[], Some(&builds), &["--upstream", &upstream]);
    let first = LiveClient::start(&serve.url("build-s/"), &dir.join("first"), &["-aH"]);
    first.wait_for_fetching("build-s");
    up.wait_at_gate(1);
    let second = LiveClient::start(&serve.url("build-s/"), &dir.join("second"), &["-aH"]);
    second.wait_for_line("upserv: waiting for another download of build-s to finish");
    up.open_gate();
    first.finish().assert_ok();
    second.finish().assert_ok();
    assert_pulled_tree(&tree, &dir.join("first"));
    assert_pulled_tree(&tree, &dir.join("second"));
    assert_eq!(up.gets("/b/build-s.tar"), 1);
    assert_eq!(
        serve.stderr_text(),
        "",
        "serve mode writes nothing on stderr"
    );
}

#[test]
fn serve_mode_reports_a_build_missing_upstream_once() {
    let dir = scratch_dir("builds-serve-404");
    let up = Upstream::start();
    let upstream = up.url("/b/{name}.tar.xz");
    let serve = UpservServe::start_with(&[], Some(&dir.join("builds")), &["--upstream", &upstream]);
    for attempt in 0..2 {
        let result = pull(
            &serve.url("build-none/"),
            &dir.join(format!("dest-{attempt}")),
            PULL_OPTS,
            Protocol::Default,
        );
        assert_eq!(result.code, 5, "{result:?}");
        assert!(
            result
                .stderr
                .lines()
                .any(|l| l == "@ERROR: build-none not found upstream"),
            "{}",
            result.stderr
        );
    }
    assert_eq!(
        up.gets("/b/build-none.tar.xz"),
        1,
        "the second process remembered the 404 of the first"
    );
    assert_eq!(
        serve.stderr_text(),
        "",
        "serve mode writes nothing on stderr"
    );
}

/// Cuts the metadata table at `table` to half its length.
fn truncate_to_half(table: &Path) {
    let bytes = std::fs::read(table).expect("the build's metadata table");
    std::fs::write(table, &bytes[..bytes.len() / 2]).expect("truncating the table");
}

#[test]
fn a_damaged_metadata_table_is_never_served_the_build_is_fetched_again() {
    let (tree, _, up) = small_build_upstream(&["build-d"]);
    let dir = scratch_dir("builds-damaged-table");
    let builds = dir.join("builds");
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &[]);
    pull(
        &upserv.url("build-d/"),
        &dir.join("first"),
        PULL_OPTS,
        Protocol::Default,
    )
    .assert_ok();
    // Damage such as a bad sector or a crash of the disk: the table is
    // truncated.
    let table = builds.join(".upserv/meta/build-d");
    truncate_to_half(&table);

    // The running daemon does not serve it with the disk's metadata: it
    // deletes the build and fetches it again.
    let dest = dir.join("second");
    pull(&upserv.url("build-d/"), &dest, PULL_OPTS, Protocol::Default).assert_ok();
    assert_pulled_tree(&tree, &dest);
    assert_eq!(up.gets("/b/build-d.tar"), 2, "fetched again at once");

    // Damaged while stopped: the restart drops the build; it comes again.
    drop(upserv);
    truncate_to_half(&table);
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &[]);
    assert!(!listed_modules(&upserv, &dir).contains(&"build-d".to_string()));
    let dest = dir.join("after");
    pull(&upserv.url("build-d/"), &dest, PULL_OPTS, Protocol::Default).assert_ok();
    assert_pulled_tree(&tree, &dest);
    assert_eq!(
        up.gets("/b/build-d.tar"),
        3,
        "the restart dropped the build; it came again"
    );
}
