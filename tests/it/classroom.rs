//! A classroom at the cost of one laptop: many laptops holding the same
//! old build pull the new one at once. Every laptop of a build gets the
//! same checksum seed, so identical requests share one delta (the memo);
//! a laptop whose basis differs in one byte gets its own. Each pull is
//! compared with the same pull from a real `rsync --daemon` serving the
//! same tree: trees, exit codes, itemized lines and data counts.

use crate::support::builds::{tar_tree, upserv_for};
use crate::support::scratch::{scratch_dir, Scratch};
use crate::support::tree::Rng;
use crate::support::upstream::Upstream;
use crate::support::*;
use std::path::{Path, PathBuf};

/// The build's big file: large enough for a few hundred blocks.
const IMAGE_LEN: usize = 3 << 20;
/// Small files beside it.
const SMALL_FILES: usize = 40;
/// Options of every pull: archive, deleting what the build lacks, itemized,
/// and the data counts.
const PULL_OPTS: &[&str] = &["-a", "-i", "--delete", "--stats", "--no-motd"];

/// What a laptop holds before it pulls.
#[derive(Clone, Copy, Debug)]
enum Laptop {
    /// The previous build (the same on every such laptop).
    OldBuild,
    /// The previous build with one byte of the image changed.
    OldBuildOneByteOff,
    /// Nothing.
    Empty,
    /// The new build already.
    Current,
}

/// The class: most hold the old build, a few differ.
const CLASS: &[Laptop] = &[
    Laptop::OldBuild,
    Laptop::OldBuild,
    Laptop::OldBuild,
    Laptop::OldBuild,
    Laptop::OldBuildOneByteOff,
    Laptop::OldBuildOneByteOff,
    Laptop::Empty,
    Laptop::Empty,
    Laptop::Current,
];

/// The new build: an image and small files in a few directories.
fn new_build() -> TestTree {
    let tree = TestTree::new();
    let mut rng = Rng::new(0xC1A5_5000);
    tree.dir("boot").mtime(1_700_000_000);
    tree.dir("usr/share/doc").mtime(1_700_000_000);
    tree.file("boot/image.img", &rng.bytes(IMAGE_LEN))
        .mtime(1_700_000_100);
    for i in 0..SMALL_FILES {
        let dir = ["usr/share/doc", "boot", ""][i % 3];
        let len = 100 + rng.below(20_000) as usize;
        tree.file(format!("{dir}/f{i}.txt"), &rng.bytes(len))
            .mtime(1_700_000_200 + i as i64);
    }
    tree.settle();
    tree
}

/// Puts what `laptop` holds at `dest`.
fn prepare(laptop: Laptop, build: &Path, dest: &Path) {
    match laptop {
        Laptop::OldBuild => old_build(build, dest),
        Laptop::OldBuildOneByteOff => {
            old_build(build, dest);
            flip_byte(&dest.join("boot/image.img"), IMAGE_LEN as u64 / 3);
        }
        Laptop::Empty => std::fs::create_dir_all(dest).expect("creating an empty laptop"),
        Laptop::Current => basis_copy(build, dest),
    }
}

/// The previous build: the new one with edits, its image older (so that
/// every laptop asks for it, edited or not).
fn old_build(build: &Path, dest: &Path) {
    basis_edited(build, dest);
    crate::support::tree::set_mtime(&dest.join("boot/image.img"), 1_600_000_000);
}

/// Changes one byte of `path`, keeping its times.
fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let meta = std::fs::metadata(path).expect("the image");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("opening the image");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("reading the image");
    f.write_all_at(&[b[0] ^ 0x5a], at)
        .expect("writing the image");
    f.set_modified(meta.modified().expect("mtime"))
        .expect("keeping the mtime");
}

/// Pulls `url` into each destination at once, one client per laptop.
fn pull_all(client: &Client, url: &str, dests: &[PathBuf], protocol: Protocol) -> Vec<PullResult> {
    std::thread::scope(|s| {
        let pulls: Vec<_> = dests
            .iter()
            .map(|dest| s.spawn(move || client.pull(url, dest, PULL_OPTS, protocol)))
            .collect();
        pulls
            .into_iter()
            .map(|p| p.join().expect("a pull thread"))
            .collect()
    })
}

/// A number in `upserv status --json`'s memo object.
fn memo_count(builds: &Path, field: &str) -> u64 {
    let (code, out, err) = run_upserv(&["status", "--json", "--builds", path_str(builds)]);
    assert_eq!(code, 0, "upserv status --json: {err}");
    let memo = &out[out
        .find("\"memo\":{")
        .unwrap_or_else(|| panic!("no memo in {out}"))..];
    let key = format!("\"{field}\":");
    let rest = &memo[memo
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in {out}"))
        + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a count")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Compares one laptop's pull from upserv with its twin's from rsyncd,
/// and its tree with the build.
fn compare(laptop: Laptop, build: &Path, ours: (&PullResult, &Path), theirs: (&PullResult, &Path)) {
    let what = format!("{laptop:?} laptop ({})", ours.0.command);
    assert_eq!(ours.0.code, 0, "{what}: {}", ours.0.stderr);
    assert_eq!(
        theirs.0.code, 0,
        "rsyncd twin of the {what}: {}",
        theirs.0.stderr
    );
    // A replayed delta that did not fit would show as a failed
    // verification and a second pass, here and in the data counts.
    assert_eq!(ours.0.stderr, "", "{what}");
    assert_eq!(ours.0.itemized, theirs.0.itemized, "{what}: itemized lines");
    let (a, b) = (
        ours.0.stats().expect("stats"),
        theirs.0.stats().expect("stats"),
    );
    assert_eq!(
        (a.literal, a.matched, a.transferred),
        (b.literal, b.matched, b.transferred),
        "{what}: literal, matched data and files transferred"
    );
    assert_same(&Snapshot::of(build), &Snapshot::of(ours.1));
    assert_same(&Snapshot::of(theirs.1), &Snapshot::of(ours.1));
}

/// The new build, served by upserv from its builds directory and by
/// rsyncd, and a scratch directory for the laptops. Fields drop in order:
/// the servers go before the trees they serve.
struct Room {
    upserv: Upserv,
    rsyncd: Rsyncd,
    builds: PathBuf,
    dir: Scratch,
    build: TestTree,
}

impl Room {
    fn new(test: &str) -> Room {
        let build = new_build();
        let dir = scratch_dir(test);
        let builds = dir.join("builds");
        std::fs::create_dir_all(&builds).expect("the builds dir");
        basis_copy(build.root(), &builds.join("build-2"));
        let upserv = Upserv::start_with(&[], Some(&builds), &[]);
        let rsyncd = Rsyncd::start(&[Module::new("build-2", build.root())]);
        Room {
            upserv,
            rsyncd,
            builds,
            dir,
            build,
        }
    }

    /// A laptop holding `laptop` at `name` pulls the build from `server`
    /// at protocol 29, with `extra` options.
    fn pull_one(
        &self,
        server: &dyn Server,
        laptop: Laptop,
        name: &str,
        extra: &[&str],
    ) -> (PullResult, PathBuf) {
        let dest = self.dir.join(name);
        prepare(laptop, self.build.root(), &dest);
        let opts: Vec<&str> = PULL_OPTS.iter().chain(extra).copied().collect();
        let r = Client::current().pull(&server.url("build-2/"), &dest, &opts, Protocol::V(29));
        (r, dest)
    }

    /// The same laptop pulls from upserv at `name` and from rsyncd beside
    /// it; both results are compared.
    fn pull_twins(&self, laptop: Laptop, name: &str, extra: &[&str]) -> (PullResult, PathBuf) {
        let (ours, ours_dest) = self.pull_one(&self.upserv, laptop, name, extra);
        let twin_name = format!("{name}-rsyncd");
        let (twin, twin_dest) = self.pull_one(&self.rsyncd, laptop, &twin_name, extra);
        compare(
            laptop,
            self.build.root(),
            (&ours, &ours_dest),
            (&twin, &twin_dest),
        );
        (ours, ours_dest)
    }
}

/// The whole class pulls from upserv at once, then from rsyncd at once;
/// each laptop's result is its rsyncd twin's and the build. The memo
/// served the identical requests: replayed, not computed again.
#[test]
fn a_classroom_pulls_one_build_at_once() {
    let room = Room::new("classroom-at-once");
    let Room {
        upserv,
        rsyncd,
        builds,
        dir,
        build,
    } = &room;

    let mut rounds = 0;
    for client in Client::all() {
        for protocol in [Protocol::V(29), Protocol::Default] {
            rounds += 1;
            let replayed_before = memo_count(builds, "replayed");
            let dests = |side: &str| -> Vec<PathBuf> {
                CLASS
                    .iter()
                    .enumerate()
                    .map(|(i, &laptop)| {
                        let dest = dir.join(format!("{rounds}-{side}-{i}"));
                        prepare(laptop, build.root(), &dest);
                        dest
                    })
                    .collect()
            };
            let (ours, theirs) = (dests("upserv"), dests("rsyncd"));
            let got = pull_all(&client, &upserv.url("build-2/"), &ours, protocol);
            let reference = match protocol {
                Protocol::Default => Protocol::V(rsyncd.client_protocol().unwrap_or(29)),
                p => p,
            };
            let want = pull_all(&client, &rsyncd.url("build-2/"), &theirs, reference);
            for (i, &laptop) in CLASS.iter().enumerate() {
                compare(
                    laptop,
                    build.root(),
                    (&got[i], &ours[i]),
                    (&want[i], &theirs[i]),
                );
            }
            // At least the image of the old-build laptops after the first
            // (three), of the second one a byte off, and every file of the
            // second empty laptop were replayed.
            let replayed = memo_count(builds, "replayed") - replayed_before;
            let least = 3 + 1 + (SMALL_FILES as u64 + 1);
            assert!(
                replayed >= least,
                "{} at protocol {protocol}: {replayed} files replayed, expected {least} or more\n{}",
                client.version,
                upserv.log()
            );
        }
    }
}

/// A laptop whose basis differs from the class's in one byte sends sums
/// that differ in one sum: it gets a delta of its own, correct, and what
/// the class's replays leave alone.
#[test]
fn sums_that_differ_in_one_byte_get_their_own_delta() {
    let room = Room::new("classroom-one-byte");
    // The class first: its deltas are in the memo.
    room.pull_twins(Laptop::OldBuild, "class", &[]);
    let computed = memo_count(&room.builds, "computed");
    // Then the odd one.
    room.pull_twins(Laptop::OldBuildOneByteOff, "odd", &[]);
    assert_eq!(
        memo_count(&room.builds, "computed"),
        computed + 1,
        "the image alone differs, and is computed again"
    );
}

/// Budget for one build of [`small_build`] but not two.
const BUDGET: &str = "200K";

/// A build of about 120 KiB for the upstream.
fn small_build(fill: u8) -> (TestTree, Vec<u8>) {
    let tree = TestTree::new();
    let mut rng = Rng::new(u64::from(fill));
    tree.file("image.bin", &rng.bytes(100 * 1024))
        .mtime(1_650_000_100);
    tree.file("README", &[fill; 100]).mtime(1_650_000_000);
    tree.dir("").mtime(1_650_000_200);
    tree.settle();
    let archive = tar_tree(tree.root().parent().expect("a parent"), "tree");
    (tree, archive)
}

/// When the daemon evicts a build to make room for another, the memo
/// forgets it (the status counts it, the log says so).
#[test]
fn the_memo_goes_with_its_evicted_build() {
    let dir = scratch_dir("classroom-evict");
    let up = Upstream::start();
    let (b1, archive) = small_build(1);
    up.put("/b/b1.tar", archive);
    let (b2, archive) = small_build(2);
    up.put("/b/b2.tar", archive);
    let builds = dir.join("builds");
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &["--cache-size", BUDGET]);
    for i in 0..2 {
        let dest = dir.join(format!("b1-{i}"));
        pull(&upserv.url("b1/"), &dest, PULL_OPTS, Protocol::Default).assert_ok();
        assert_same(&Snapshot::of(b1.root()), &Snapshot::of(&dest));
    }
    assert!(memo_count(&builds, "entries") >= 2, "{}", upserv.log());
    assert!(memo_count(&builds, "replayed") >= 2, "{}", upserv.log());
    assert_eq!(memo_count(&builds, "dropped"), 0);

    let dest = dir.join("b2");
    pull(&upserv.url("b2/"), &dest, PULL_OPTS, Protocol::Default).assert_ok();
    assert_same(&Snapshot::of(b2.root()), &Snapshot::of(&dest));
    // b1 goes at b2's install, or when its last connection lets it go.
    wait_until("b1 evicted and forgotten", || {
        memo_count(&builds, "dropped") >= 2
    });
    assert!(!builds.join("b1").exists(), "b1 was evicted for b2");
    assert!(
        upserv.log().contains("delta memo: dropped"),
        "{}",
        upserv.log()
    );
}

/// A client's own `--checksum-seed` wins over the build's, as with rsyncd:
/// its request is not the class's, so it is computed, not replayed, and
/// its result is its rsyncd twin's.
#[test]
fn a_client_seed_wins_over_the_build_seed() {
    let room = Room::new("classroom-client-seed");
    let (class, class_dest) = room.pull_one(&room.upserv, Laptop::OldBuild, "class", &[]);
    class.assert_ok();
    let computed = memo_count(&room.builds, "computed");
    let seeded = ["--checksum-seed=4242"];
    let (_, own_dest) = room.pull_twins(Laptop::OldBuild, "own-seed", &seeded);
    assert_same(&Snapshot::of(&class_dest), &Snapshot::of(&own_dest));
    assert!(
        memo_count(&room.builds, "computed") > computed,
        "the client's seed makes other sums: computed afresh"
    );
}
