//! Incremental recursion (rsync's inc_recurse): from protocol 30 on, a
//! recursive pull gets the top directory's list first and each
//! directory's list as the client works through the tree. Every case is
//! pulled from rsyncd and upserv with the same client and protocol, with
//! `--inc-recursive` (the harness otherwise asks for one list); `-v`
//! makes the client say "receiving incremental file list" only when the
//! server turned incremental recursion on, so the comparison of its output
//! also checks that upserv did.

use crate::support::tree::Rng;
use crate::support::*;
use std::path::Path;

/// 30, 31 and the client's default (32 with rsync 3.4 and later).
const INC_PROTOCOLS: ProtocolSet =
    ProtocolSet(&[Protocol::V(30), Protocol::V(31), Protocol::Default]);

/// Nested directories, empty ones, files at every level, links.
fn nested_tree(tree: &TestTree) {
    let mut rng = Rng::new(30);
    tree.file("top.txt", b"top\n");
    for a in 0..4 {
        tree.file(format!("a{a}/file"), &rng.bytes(300));
        for b in 0..3 {
            tree.file(format!("a{a}/b{b}/data.bin"), &rng.bytes(2000));
            tree.dir(format!("a{a}/b{b}/empty"));
        }
    }
    let mut deep = String::from("deep");
    for level in 0..30 {
        tree.file(format!("{deep}/f{level}"), &rng.bytes(50));
        deep.push_str(&format!("/l{level}"));
    }
    tree.dir(&deep);
    tree.dir("empty-top");
    tree.symlink("a0/link", "file");
    tree.symlink("dirlink", "a1");
}

/// Every client available: the current one, and the old one (3.2.7) when
/// `UPSERV_TEST_RSYNC_OLD` names it.
fn each_client(tree: &TestTree, name: &str, opts: &[&str], basis: Option<fn(&Path, &Path)>) {
    for client in Client::all() {
        let mut d = Differential::new(tree)
            .name(&format!("{name} ({})", client.version))
            .client(client);
        if let Some(basis) = basis {
            d = d.basis(basis);
        }
        d.run(opts, &INC_PROTOCOLS);
    }
}

#[test]
fn a_nested_tree_arrives_as_from_rsyncd() {
    let tree = TestTree::new();
    nested_tree(&tree);
    each_client(
        &tree,
        "nested",
        &["-a", "-i", "-v", "--inc-recursive"],
        None,
    );
}

#[test]
fn a_delta_pull_onto_an_edited_basis() {
    let tree = TestTree::new();
    nested_tree(&tree);
    each_client(
        &tree,
        "delta",
        &["-a", "-i", "-v", "--inc-recursive"],
        Some(basis_edited),
    );
}

#[test]
fn delete_during_the_walk() {
    // The client deletes in each directory as its list arrives.
    let tree = TestTree::new();
    nested_tree(&tree);
    fn basis_with_extras(source: &Path, dest: &Path) {
        basis_copy(source, dest);
        std::fs::write(dest.join("a1/b2/stale"), b"old").unwrap();
        std::fs::create_dir_all(dest.join("a3/gone/deeper")).unwrap();
        std::fs::write(dest.join("a3/gone/deeper/x"), b"old").unwrap();
    }
    each_client(
        &tree,
        "delete",
        &["-a", "-i", "-v", "--inc-recursive", "--delete"],
        Some(basis_with_extras),
    );
}

#[test]
fn per_directory_merge_files_apply_in_every_list() {
    let tree = TestTree::new();
    nested_tree(&tree);
    tree.file("a1/.rsync-filter", b"- data.bin\n");
    tree.file("a2/b1/.rsync-filter", b"- empty/\n");
    tree.file(".rsync-filter", b"- f1*\n");
    each_client(
        &tree,
        "merge files",
        &["-a", "-i", "-v", "--inc-recursive", "-F"],
        None,
    );
}

#[test]
fn hard_links_across_directories() {
    let tree = TestTree::new();
    nested_tree(&tree);
    tree.file("x/one", b"linked");
    tree.hard_link("x/two", "x/one");
    tree.hard_link("y/z/three", "x/one");
    tree.hard_link("a0/four", "x/one");
    each_client(
        &tree,
        "hard links",
        &["-a", "-i", "-v", "--inc-recursive", "-H"],
        None,
    );
}

#[test]
fn a_subdirectory_named_without_a_slash() {
    let tree = TestTree::new();
    nested_tree(&tree);
    Differential::new(&tree)
        .name("named subdirectory")
        .url_path("m/a2")
        .run(&["-a", "-i", "-v", "--inc-recursive"], &INC_PROTOCOLS);
}

#[test]
fn one_file_pulled_recursively() {
    let tree = TestTree::new();
    tree.file("only", b"alone");
    Differential::new(&tree)
        .name("one file")
        .url_path("m/only")
        .run(&["-a", "-i", "-v", "--inc-recursive"], &INC_PROTOCOLS);
}

/// A tree of `dirs` directories of `files` one-byte files each, spread over
/// two levels so that lists nest.
fn wide_tree(tree: &TestTree, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = tree.path(format!("g{:02}/d{d:04}", d / 100));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("file-{f:03}")), b"x").unwrap();
        }
    }
    tree.settle();
}

#[test]
fn a_tree_of_100k_files_arrives_as_from_rsyncd() {
    let tree = TestTree::new();
    wide_tree(&tree, 1000, 100);
    // A dry run: every entry is listed, compared and itemized as in a real
    // pull, without the client writing 100k files twice, which alone
    // takes over a minute on a busy machine.
    Differential::new(&tree).name("100k files").run(
        &["-a", "-i", "-v", "--inc-recursive", "-n"],
        &ProtocolSet(&[Protocol::Default]),
    );
}

/// The peak resident set of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn memory_follows_the_directories_in_flight_not_the_tree() {
    // The same 100k-entry tree pulled (dry run) with incremental
    // recursion, then with the whole list: the first must cost the daemon
    // a small fraction of the second. Holding a fraction of the entries
    // also means sending began before the walk was done.
    let tree = TestTree::new();
    wide_tree(&tree, 1000, 100);
    let upserv = Upserv::start(&[Module::new("m", tree.root())]);
    let dest = tempfile::tempdir().unwrap();
    let url = upserv.url("m/");
    let before = peak_kib(upserv.pid());
    pull(
        &url,
        &dest.path().join("a"),
        &["-a", "-n"],
        Protocol::Default,
    )
    .assert_ok();
    let incremental = peak_kib(upserv.pid()) - before;
    let whole_opts = ["-a", "-n", "--no-inc-recursive"];
    pull(&url, &dest.path().join("b"), &whole_opts, Protocol::Default).assert_ok();
    let whole = peak_kib(upserv.pid()) - before;
    eprintln!("daemon peak growth: incremental {incremental} KiB, whole list {whole} KiB");
    assert!(
        incremental * 4 < whole,
        "incremental recursion grew the daemon by {incremental} KiB, the whole list by {whole} KiB"
    );
}

/// A copy of the tree with stale files in a named directory and in the
/// implied one above it.
fn stale_under_a2(source: &Path, dest: &Path) {
    basis_copy(source, dest);
    for stale in ["a2/stale", "a2/b1/stale", "a2/b1/empty/stale"] {
        std::fs::write(dest.join(stale), b"stale\n").expect("stale file");
    }
}

/// `-R` and `--files-from` (with `-r`) get incremental recursion from both
/// servers: leading directories come one list at a time, the names
/// themselves in their parents' lists, a directory two arguments name
/// apart in one list for both. `-v` tells whether the pull was incremental.
#[test]
fn relative_paths_and_files_from() {
    let tree = TestTree::new();
    nested_tree(&tree);
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        list.path(),
        "a1/b0\ndeep/l0\ntop.txt\na1/b2/data.bin\ndeep/l0/l1/l2/\n",
    )
    .unwrap();
    let list_opt = format!("--files-from={}", list.path().display());
    for client in Client::all() {
        let version = client.version.clone();
        Differential::new(&tree)
            .name(&format!("-R ({version})"))
            .client(client.clone())
            .url_path("m/a2/b1 m/a2/./b0/data.bin m/deep/l0/l1 m/a2/b2/ m/a2/b1/empty")
            .run(&["-a", "-i", "-v", "-R"], &INC_PROTOCOLS);
        // Deletions happen in the named directories, not in the implied
        // ones above them.
        Differential::new(&tree)
            .name(&format!("-R --delete ({version})"))
            .client(client.clone())
            .basis(stale_under_a2)
            .url_path("m/a2/b1 m/deep/l0/l1")
            .run(&["-a", "-i", "-v", "-R", "--delete"], &INC_PROTOCOLS);
        Differential::new(&tree)
            .name(&format!("-R, no implied dirs ({version})"))
            .client(client.clone())
            .url_path("m/a3/b0/data.bin m/deep/l0/l1/l2/f3")
            .run(
                &["-a", "-i", "-v", "-R", "--no-implied-dirs"],
                &INC_PROTOCOLS,
            );
        Differential::new(&tree)
            .name(&format!("--files-from ({version})"))
            .client(client)
            .run(&["-a", "-i", "-v", "-r", list_opt.as_str()], &INC_PROTOCOLS);
    }
}

#[test]
fn a_build_fetched_on_demand() {
    // The build's tree on the reference's side; its archive (whole-second
    // times, as tar keeps them) on the upstream, which upserv downloads
    // when the client asks.
    let (tree, archive) = crate::support::builds::small_tree_and_archive();
    let up = crate::support::upstream::Upstream::start();
    up.put("/b/build-inc.tar", archive);
    let template = up.url("/b/{name}.tar");
    Differential::new(&tree)
        .name("a build on demand")
        .candidate_side(Side {
            modules: Vec::new(),
            url_path: "build-inc/".to_string(),
        })
        .upserv_args(&["--upstream", &template])
        .run(
            &["-a", "-i", "-v", "--inc-recursive", "--no-motd"],
            &INC_PROTOCOLS,
        );
}
