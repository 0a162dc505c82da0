//! Incremental recursion (rsync's inc_recurse): from protocol 30 on, a
//! recursive pull gets the top directory's list first and each
//! directory's list as the client works through the tree. Every case is
//! pulled from rsyncd and upserv with the same client and protocol; `-v`
//! makes the client say "receiving incremental file list" only when the
//! server turned incremental recursion on, so the comparison of its output
//! also checks that upserv did.

mod common;

use common::tree::Rng;
use common::*;
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
    each_client(&tree, "nested", &["-a", "-i", "-v"], None);
}

#[test]
fn a_delta_pull_onto_an_edited_basis() {
    let tree = TestTree::new();
    nested_tree(&tree);
    each_client(&tree, "delta", &["-a", "-i", "-v"], Some(basis_edited));
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
        &["-a", "-i", "-v", "--delete"],
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
    each_client(&tree, "merge files", &["-a", "-i", "-v", "-F"], None);
}

#[test]
fn hard_links_across_directories() {
    let tree = TestTree::new();
    nested_tree(&tree);
    tree.file("x/one", b"linked");
    tree.hard_link("x/two", "x/one");
    tree.hard_link("y/z/three", "x/one");
    tree.hard_link("a0/four", "x/one");
    each_client(&tree, "hard links", &["-a", "-i", "-v", "-H"], None);
}

#[test]
fn a_subdirectory_named_without_a_slash() {
    let tree = TestTree::new();
    nested_tree(&tree);
    Differential::new(&tree)
        .name("named subdirectory")
        .url_path("m/a2")
        .run(&["-a", "-i", "-v"], &INC_PROTOCOLS);
}

#[test]
fn one_file_pulled_recursively() {
    let tree = TestTree::new();
    tree.file("only", b"alone");
    Differential::new(&tree)
        .name("one file")
        .url_path("m/only")
        .run(&["-a", "-i", "-v"], &INC_PROTOCOLS);
}
