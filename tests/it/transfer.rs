//! Whole transfers under load: a large tree with several large files pulled
//! onto an existing basis must complete (no deadlock between the client's
//! checksums coming in and our data going out) and equal rsyncd's result,
//! with real matching on both sides.

use crate::support::tree::Rng;
use crate::support::*;

const V29_AND_DEFAULT: ProtocolSet = ProtocolSet(&[Protocol::V(29), Protocol::Default]);

/// Thousands of small files in a few hundred directories, plus large files.
fn big_tree(tree: &TestTree) {
    let mut rng = Rng::new(2024);
    for d in 0..60 {
        for f in 0..50 {
            let len = rng.below(6000) as usize;
            tree.file(format!("d{d:02}/f{f:02}"), &rng.bytes(len));
        }
    }
    for i in 0..3 {
        tree.file(format!("large-{i}.img"), &rng.bytes(24 << 20));
    }
}

#[test]
fn a_large_tree_onto_a_basis_completes_and_matches_rsyncd() {
    let tree = TestTree::new();
    big_tree(&tree);
    let pairs = Differential::new(&tree)
        .name("large tree onto a basis")
        .basis(basis_edited)
        .run(&["-a", "-i", "--stats"], &V29_AND_DEFAULT);
    for pair in &pairs {
        let stats = pair.candidate.stats().expect("--stats output");
        assert!(stats.matched > 0, "no data matched: {stats:?}");
        assert!(stats.transferred > 1000, "too few files sent: {stats:?}");
    }
}

#[test]
fn large_files_with_small_blocks_keep_both_directions_flowing() {
    // Small blocks make the client send many checksums per file while we
    // send data: the case where a sender that only writes would deadlock.
    let tree = TestTree::new();
    let mut rng = Rng::new(77);
    for i in 0..4 {
        tree.file(format!("large-{i}.img"), &rng.bytes(16 << 20));
    }
    Differential::new(&tree)
        .name("small blocks")
        .basis(basis_edited)
        .run(
            &["-a", "-i", "--stats", "--block-size=512"],
            &V29_AND_DEFAULT,
        );
}
