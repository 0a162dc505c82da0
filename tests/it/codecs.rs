//! Every `--checksum-choice` and `--compress-choice` a client can name at
//! protocol 29, pulled from upserv and from rsyncd with each client CI has
//! (the current rsync and, when `UPSERV_TEST_RSYNC_OLD` names it, the older
//! one): full pulls, delta pulls onto an edited basis (whose statistics show
//! that the seeded block sums matched as rsyncd's did) and `-c` pulls (whose
//! itemized output shows that the file checksums agreed).

use crate::support::differential::BasisFn;
use crate::support::*;

/// Every checksum name rsync 3.2 and later accept, `xxhash` being xxh64's
/// other name.
const CHECKSUMS: &[&str] = &[
    "xxh128", "xxh3", "xxh64", "xxhash", "md5", "md4", "sha1", "auto",
];

/// A random tree with big files, for blocks to match in.
fn tree() -> TestTree {
    let tree = TestTree::new();
    tree.random(&RandomSpec::SMALL, 9);
    tree.file(
        "fixed.bin",
        &crate::support::tree::Rng::new(5).bytes(200 * 1024),
    )
    .mtime(1_600_000_000);
    tree
}

/// The pulls each choice gets: options and the basis in the destination.
const PULLS: &[(&[&str], Option<BasisFn>)] = &[
    (&["-a", "-i", "--stats"], None),
    (&["-a", "-i", "--stats"], Some(basis_edited)),
    (&["-a", "-c", "-i"], Some(basis_edited)),
    (&["-a", "-c", "-i"], Some(basis_copy)),
];

fn pull_everywhere(
    tree: &TestTree,
    name: &str,
    extra: &[&str],
    pulls: &[(&[&str], Option<BasisFn>)],
) {
    for client in Client::all() {
        for (opts, basis) in pulls {
            let opts: Vec<&str> = opts.iter().chain(extra).copied().collect();
            let mut run = Differential::new(tree)
                .name(&format!("{name} with {}", client.version))
                .client(client.clone());
            if let Some(basis) = basis {
                run = run.basis(*basis);
            }
            run.run(&opts, &ProtocolSet::V29);
        }
    }
}

#[test]
fn every_checksum_choice_pulls_like_rsyncd() {
    let tree = tree();
    for sum in CHECKSUMS {
        let choice = format!("--checksum-choice={sum}");
        pull_everywhere(&tree, &choice, &[&choice], PULLS);
    }
}

#[test]
fn split_checksum_choices_and_a_client_seed_pull_like_rsyncd() {
    let tree = tree();
    for choice in [
        "--checksum-choice=xxh3,sha1",
        "--checksum-choice=sha1,xxh128",
    ] {
        pull_everywhere(&tree, choice, &[choice], PULLS);
    }
    // rsync hands its `int` seed to xxHash sign-extended.
    for sum in ["xxh64", "xxh3", "xxh128", "sha1"] {
        let choice = format!("--checksum-choice={sum}");
        let extra = [choice.as_str(), "--checksum-seed=-7"];
        pull_everywhere(&tree, &choice, &extra, &PULLS[1..2]);
    }
}

#[test]
fn checksum_choice_none_pulls_whole_files_and_refuses_c_like_rsyncd() {
    let tree = tree();
    let choice = "--checksum-choice=none";
    pull_everywhere(&tree, choice, &[choice], &PULLS[..2]);
    pull_everywhere(&tree, choice, &[choice], &PULLS[2..3]);
}

/// Every compression choice, with and without `-z` and at levels zstd
/// clamps, pulled in full and onto an edited basis.
const COMPRESSIONS: &[&[&str]] = &[
    &["--compress-choice=zstd"],
    &["-z", "--compress-choice=zstd"],
    &["--compress-choice=zstd", "--compress-level=1"],
    &["--compress-choice=zstd", "--compress-level=0"],
    &["--compress-choice=zstd", "--compress-level=-3"],
    &["--compress-choice=zstd", "--compress-level=99"],
    &["--compress-choice=lz4"],
    &["-z", "--compress-choice=lz4", "--compress-level=9"],
    &["--compress-choice=zlibx"],
    &["--compress-choice=zlib", "--compress-level=3"],
    &["-z", "--compress-choice=none"],
];

#[test]
fn every_compress_choice_pulls_like_rsyncd() {
    let tree = tree();
    for extra in COMPRESSIONS {
        pull_everywhere(&tree, &extra.join(" "), extra, &PULLS[..2]);
    }
}

#[test]
fn compressed_pulls_with_a_checksum_choice_pull_like_rsyncd() {
    let tree = tree();
    for extra in [
        &["--compress-choice=zstd", "--checksum-choice=xxh128"][..],
        &["--compress-choice=lz4", "--checksum-choice=xxh3"],
    ] {
        pull_everywhere(&tree, &extra.join(" "), extra, PULLS);
    }
}
