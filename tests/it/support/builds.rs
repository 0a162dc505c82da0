//! Builds on demand, as the tests prepare them: archives made by GNU tar
//! from real trees and unpacked by it as root (the independent reference
//! for what upserv must serve), what upserv leaves in its private
//! directory, upserv started on an upstream, and a pulled build checked
//! against its tree.
//!
//! Nothing here may use upserv's library: the tests judge the binary from
//! outside.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use super::proc::run_with_deadline;
use super::upstream::Upstream;
use super::wait::{wait_until, WAIT_LIMIT};
use super::{assert_same, Launch, Snapshot, TestTree, Upserv};

/// Seconds since the epoch, as upserv's access record counts them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits for the wall clock to enter a new second, so that two accesses
/// recorded with one-second resolution are ordered, not tied.
pub fn next_second() {
    let now = unix_now();
    wait_until("the next second", || unix_now() > now);
}

/// A tar archive of `parent/top` (entries `top/...`), as GNU tar writes it
/// from the real tree: owners with their names, devices, FIFOs, hard links.
pub fn tar_tree(parent: &Path, top: &str) -> Vec<u8> {
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(parent).args(["-cf", "-", top]);
    let done = run_with_deadline(&mut cmd, WAIT_LIMIT).expect("running tar -c");
    assert!(
        done.code == 0 && !done.timed_out,
        "tar -c of {parent:?}/{top} failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    done.stdout
}

/// A small plain tree (files, a subdirectory, links, two owners) and its archive.
pub fn small_tree_and_archive() -> (TestTree, Vec<u8>) {
    let tree = TestTree::new();
    tree.file("README", b"a build\n").mtime(1_600_000_000);
    tree.file("bin/tool", &[7u8; 70_000])
        .mode(0o755)
        .mtime(1_600_000_100);
    tree.file("etc/owned", b"x")
        .owner(4242, 4343)
        .mtime(1_600_000_200);
    tree.hard_link("bin/tool-again", "bin/tool");
    tree.symlink("latest", "bin/tool");
    tree.dir("bin").mtime(1_600_000_300);
    tree.dir("etc").mtime(1_600_000_400);
    tree.dir("").mtime(1_600_000_500);
    tree.settle();
    let parent = tree.root().parent().expect("a tree root has a parent");
    let archive = tar_tree(parent, "tree");
    (tree, archive)
}

/// Unpacks `archive` into `dest` as root does with `tar --same-owner`:
/// owners, modes with set-id bits, device nodes, mtimes as recorded.
pub fn untar_as_root(archive: &[u8], dest: &Path) {
    std::fs::create_dir_all(dest).unwrap_or_else(|e| panic!("creating {dest:?}: {e}"));
    let mut child = Command::new("tar")
        .arg("-C")
        .arg(dest)
        .args(["--same-owner", "--same-permissions", "-xf", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running tar -x");
    let mut stdin = child.stdin.take().expect("tar's stdin");
    let input = archive.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("waiting for tar -x");
    writer
        .join()
        .expect("the writer thread")
        .expect("feeding tar -x");
    assert!(
        output.status.success(),
        "tar -x into {dest:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes the sockets under `root`: tar cannot archive them, so a tree
/// that must equal its archive has none.
pub fn remove_sockets(root: &Path) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {dir:?}: {e}")) {
            let entry = entry.expect("a directory entry");
            let kind = entry.file_type().expect("an entry's type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_socket() {
                std::fs::remove_file(entry.path()).expect("removing a socket");
            }
        }
    }
}

/// What `.upserv/` holds besides bookkeeping: unpacking scratch, trash
/// and partial downloads, as `dir/name` strings.
pub fn private_leftovers(builds: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["unpack", "trash", "partial"] {
        let dir = builds.join(".upserv").join(sub);
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing {
            let name = entry.expect("a directory entry").file_name();
            found.push(format!("{sub}/{}", name.to_string_lossy()));
        }
    }
    found.sort();
    found
}

/// The upserv daemon for build tests: builds in `builds`, archives from
/// `template` on `upstream` (e.g. `/b/{name}.tar.xz`), plus `args`.
pub fn upserv_for(upstream: &Upstream, template: &str, builds: &Path, args: &[&str]) -> Upserv {
    let url = upstream.url(template);
    let mut all = vec!["--upstream", url.as_str()];
    all.extend_from_slice(args);
    Upserv::start_with(&[], Some(builds), &all)
}

/// The upserv daemon for build tests that check a sum file: builds in
/// `builds`, archives from the URL template `upstream`, their sum files
/// from the URL template `checksum`.
pub fn upserv_checked(upstream: &str, checksum: &str, builds: &Path) -> Upserv {
    Upserv::launch(
        &[],
        &Launch {
            builds: Some(builds),
            args: &["--upstream", upstream],
            globals: &[("upstream checksum", checksum)],
            ..Launch::default()
        },
    )
}

/// A fresh upstream serving the small build ([`small_tree_and_archive`])
/// as `/b/NAME.tar` for each of `names`; returns the tree, the archive and
/// the upstream.
pub fn small_build_upstream(names: &[&str]) -> (TestTree, Vec<u8>, Upstream) {
    let (tree, archive) = small_tree_and_archive();
    let up = Upstream::start();
    for name in names {
        up.put(&format!("/b/{name}.tar"), archive.clone());
    }
    (tree, archive, up)
}

/// A pulled build must be its source tree (both were made by root, and a
/// root client with -aH keeps every attribute).
pub fn assert_pulled_tree(source: &TestTree, dest: &Path) {
    assert_same(&Snapshot::of(source.root()), &Snapshot::of(dest));
}
