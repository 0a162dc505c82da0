//! Compressed pulls (`-z`, `-zz`) in the corners of rsync's deflated token
//! stream, against rsyncd: blocks longer than 0xffff bytes (which protocols
//! below 31 feed to the compressor's history in a peculiar way) and runs of
//! more than 65536 consecutive matching blocks. The everyday `-z` cases are
//! rows of the option matrix in `tests/it/options.rs`.

use crate::support::rsyncd::require_reference;
use crate::support::tree::Rng;
use crate::support::*;
use std::path::Path;

/// A block length above 0xffff.
const BIG_BLOCK: usize = 100_000;
/// Tiny blocks, so that a megabyte makes over 65536 of them.
const TINY_BLOCK: usize = 16;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

fn big_block_basis() -> Vec<u8> {
    (0..6).flat_map(|i| noise(BIG_BLOCK, 10 + i)).collect()
}

/// The basis's big blocks reordered, with literal data between them that
/// repeats the part of the previous block the receiver's deflate window
/// holds (its start, by the quirk) and a part it does not (its true end): a
/// sender whose history differs from the receiver's corrupts the file.
fn big_blocks(tree: &TestTree) {
    let basis = big_block_basis();
    let block = |i: usize| &basis[i * BIG_BLOCK..(i + 1) * BIG_BLOCK];
    let pad = |mut v: Vec<u8>, seed| {
        v.extend_from_slice(&noise(BIG_BLOCK - v.len(), seed));
        v
    };
    let in_window = pad(block(1)[10_000..34_465].to_vec(), 20);
    let beyond_window = pad(block(3)[70_000..].to_vec(), 21);
    let mut file = Vec::new();
    for part in [
        block(0),
        block(1),
        &in_window,
        block(3),
        &beyond_window,
        block(5),
        block(4),
    ] {
        file.extend_from_slice(part);
    }
    file.extend_from_slice(&block(2)[..5000]);
    tree.file("big.bin", &file).mtime(1_600_000_000);
}

fn big_blocks_basis(_source: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("basis dir");
    std::fs::write(dest.join("big.bin"), big_block_basis()).expect("basis file");
}

fn long_runs_basis_data() -> Vec<u8> {
    noise(1_200_000, 3)
}

/// One changed block in the middle of more than 65536 matching ones.
fn long_runs(tree: &TestTree) {
    let mut file = long_runs_basis_data();
    file[600_000..600_000 + TINY_BLOCK].copy_from_slice(&noise(TINY_BLOCK, 4));
    tree.file("runs.bin", &file).mtime(1_600_000_000);
}

fn long_runs_basis(_source: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("basis dir");
    std::fs::write(dest.join("runs.bin"), long_runs_basis_data()).expect("basis file");
}

#[test]
fn compressed_pulls_of_blocks_over_64k_match_rsyncd() {
    // rsyncd 3.2.7 breaks its own stream here below protocol 30 (the client
    // ends with code 12); 3.5.0 sends it intact, and upserv is compared
    // with that (rsync's NEWS for 3.4.4: "token: drain the matched-block
    // insert deflate").
    require_reference(
        (3, 5, 0),
        "rsyncd 3.2.7 breaks -z streams with blocks over 64 KiB below protocol 30",
    );
    let tree = TestTree::new();
    big_blocks(&tree);
    let block = format!("--block-size={BIG_BLOCK}");
    for z in [&["-z"][..], &["-zz"], &["-z", "--compress-level=9"]] {
        let opts: Vec<&str> = ["-a", "-i", "--stats", block.as_str()]
            .into_iter()
            .chain(z.iter().copied())
            .collect();
        let pairs = Differential::new(&tree)
            .name("blocks over 64 KiB")
            .basis(big_blocks_basis)
            .run(&opts, &ProtocolSet::ALL);
        for pair in pairs {
            let stats = pair.candidate.stats().expect("--stats");
            assert!(stats.matched > 0, "nothing matched: {stats:?}");
        }
    }
}

#[test]
fn compressed_pulls_with_runs_over_65536_blocks_match_rsyncd() {
    let tree = TestTree::new();
    long_runs(&tree);
    let block = format!("--block-size={TINY_BLOCK}");
    for z in ["-z", "-zz"] {
        Differential::new(&tree)
            .name("runs over 65536 blocks")
            .basis(long_runs_basis)
            .run(
                &["-a", "-i", "--stats", block.as_str(), z],
                &ProtocolSet(&[Protocol::V(27), Protocol::V(29)]),
            );
    }
}
