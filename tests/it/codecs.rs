//! Every `--checksum-choice` and `--compress-choice` a client can name, and
//! the choices negotiated by name from protocol 30 on (the client's
//! `RSYNC_CHECKSUM_LIST` and `RSYNC_COMPRESS_LIST`, a module's `refuse
//! options`), pulled at 29, 30, 31 and the client's default from upserv and
//! from rsyncd with each client CI has (the current rsync and, when
//! `UPSERV_TEST_RSYNC_OLD` names it, Debian's 3.2.7, which is how a real
//! protocol-31 client is tested): full pulls, delta pulls onto an edited
//! basis (whose statistics show that the seeded block sums matched as
//! rsyncd's did) and `-c` pulls (whose itemized output shows that the file
//! checksums agreed).

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

/// 29, where choices are named only; 30 and 31, where the rest are
/// negotiated; and the client's own.
const PROTOCOLS: ProtocolSet = ProtocolSet(&[
    Protocol::V(29),
    Protocol::V(30),
    Protocol::V(31),
    Protocol::Default,
]);

fn pull_everywhere(
    tree: &TestTree,
    name: &str,
    extra: &[&str],
    pulls: &[(&[&str], Option<BasisFn>)],
) {
    pull_with(tree, name, extra, pulls, &[], &[]);
}

/// As [`pull_everywhere`], with variables in the clients' environment and
/// parameters on both servers' module.
fn pull_with(
    tree: &TestTree,
    name: &str,
    extra: &[&str],
    pulls: &[(&[&str], Option<BasisFn>)],
    env: &[(&str, &str)],
    params: &[(&str, &str)],
) {
    for client in Client::all() {
        let client = env
            .iter()
            .fold(client, |c, (name, value)| c.with_env(name, value));
        for (opts, basis) in pulls {
            let opts: Vec<&str> = opts.iter().chain(extra).copied().collect();
            let mut run = Differential::new(tree)
                .name(&format!("{name} with {}", client.version))
                .client(client.clone());
            if let Some(basis) = basis {
                run = run.basis(*basis);
            }
            for (key, value) in params {
                run = run.param(key, value);
            }
            run.run(&opts, &PROTOCOLS);
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

#[test]
fn negotiated_choices_pull_like_rsyncd() {
    let tree = tree();
    // Nothing named: the strongest checksum both know; with -z, the
    // first compressor both know.
    pull_everywhere(&tree, "negotiated", &[], PULLS);
    pull_everywhere(&tree, "negotiated -z", &["-z"], &PULLS[..2]);
    pull_everywhere(
        &tree,
        "negotiated level",
        &["--compress-level=1"],
        &PULLS[1..2],
    );
}

#[test]
fn client_name_lists_pull_like_rsyncd() {
    let tree = tree();
    for list in ["md5 md4", "xxh64", "sha1", "md4", "xxh3 none"] {
        let name = format!("RSYNC_CHECKSUM_LIST={list}");
        pull_with(
            &tree,
            &name,
            &[],
            PULLS,
            &[("RSYNC_CHECKSUM_LIST", list)],
            &[],
        );
    }
    for list in ["lz4", "zlibx zlib", "zlib", "none"] {
        let name = format!("RSYNC_COMPRESS_LIST={list}");
        let env = [("RSYNC_COMPRESS_LIST", list)];
        pull_with(&tree, &name, &["-z"], &PULLS[..2], &env, &[]);
    }
}

#[test]
fn refused_choices_are_refused_like_rsyncd() {
    let tree = tree();
    let refuse = |what| [("refuse options", what)];
    // A named choice the module refuses ends the pull; without it the
    // names are still negotiated.
    for (extra, refused) in [
        (&["--checksum-choice=md5"][..], "checksum-choice"),
        (&[][..], "checksum-choice"),
        (&["--compress-choice=zstd"][..], "compress-choice"),
        (&["-z"][..], "compress"),
    ] {
        let name = format!("{} refusing {refused}", extra.join(" "));
        pull_with(&tree, &name, extra, &PULLS[..1], &[], &refuse(refused));
    }
}

/// A compressible file of repeats, whose literal data deflate finds again
/// in the matched blocks before it.
fn repeats(tree: &TestTree) {
    let chunk = crate::support::tree::Rng::new(6).bytes(70_000);
    tree.file("repeats.bin", &chunk.repeat(40));
}

/// The copy with a few bytes changed far apart, so long blocks match
/// between them.
fn basis_with_holes(source: &std::path::Path, dest: &std::path::Path) {
    basis_copy(source, dest);
    let path = dest.join("repeats.bin");
    let mut data = std::fs::read(&path).expect("reading the basis");
    for at in [500_000, 1_500_000, 2_500_000] {
        data[at..at + 4].copy_from_slice(b"XXXX");
    }
    std::fs::write(&path, data).expect("writing the basis");
}

/// Blocks longer than 0xFFFF bytes enter zlib's history whole from 31 on,
/// in pieces repeating the block's start before.
#[test]
fn long_blocks_under_zlib_pull_like_rsyncd() {
    let tree = TestTree::new();
    repeats(&tree);
    let opts = ["--compress-choice=zlib", "--block-size=131072"];
    pull_everywhere(
        &tree,
        "long zlib blocks",
        &opts,
        &[(PULLS[1].0, Some(basis_with_holes))],
    );
}
