//! One file list per build and list shape, shared between connections:
//! laptops pulling a build at once with the same options get one list
//! built once; options that change the list (`-c`, an exclude) get their
//! own. Each pull is compared with the same pull from a real
//! `rsync --daemon` serving the same tree (trees, exit codes, itemized
//! lines), and the daemon's counters (`upserv status --json`, `lists`)
//! say how many lists were built and how many taken from another
//! connection. The lists go with their build when it is evicted, and a
//! refetched build gets lists of its own.

use crate::support::builds::{tar_tree, upserv_for};
use crate::support::scratch::{scratch_dir, Scratch};
use crate::support::tree::Rng;
use crate::support::upstream::Upstream;
use crate::support::*;
use std::path::{Path, PathBuf};

/// Options of every pull: archive, deleting what the build lacks, itemized.
const BASE_OPTS: &[&str] = &["-a", "-i", "--delete", "--no-motd"];

/// The option sets the laptops pull with: each shapes the list its own way.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Plain,
    /// `-c`: file sums in the list.
    Checksum,
    /// `--exclude=*.o`: fewer entries.
    Exclude,
}

impl Shape {
    fn opts(self) -> Vec<&'static str> {
        let extra: &[&str] = match self {
            Shape::Plain => &[],
            Shape::Checksum => &["-c"],
            Shape::Exclude => &["--exclude=*.o"],
        };
        BASE_OPTS.iter().chain(extra).copied().collect()
    }
}

/// What a laptop holds before it pulls.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Laptop {
    Empty,
    /// The build already.
    Current,
    /// The build with one byte of every other file changed, sizes and
    /// times kept: only `-c` finds those files changed.
    HalfDisguised,
}

/// Directories of the build besides its top: an incremental pull sends
/// one list for each.
const DIRS: &[&str] = &[
    "bin",
    "lib",
    "lib/mods",
    "share",
    "share/doc",
    "share/locale",
];

/// The build: text files and objects in a few directories.
fn build_tree() -> TestTree {
    let tree = TestTree::new();
    let mut rng = Rng::new(0x5EED_1157);
    for (i, dir) in ["", "bin", "lib/mods", "share/doc", "share/locale"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let ext = if i % 2 == 0 { "txt" } else { "o" };
        let len = 50 + rng.below(4000) as usize;
        tree.file(format!("{dir}/f{i}.{ext}"), &rng.bytes(len))
            .mtime(1_700_000_000 + i as i64);
    }
    for dir in DIRS {
        tree.dir(dir).mtime(1_700_000_500);
    }
    tree.dir("").mtime(1_700_000_600);
    tree.settle();
    tree
}

fn prepare(laptop: Laptop, build: &Path, dest: &Path) {
    match laptop {
        Laptop::Empty => std::fs::create_dir_all(dest).expect("an empty laptop"),
        Laptop::Current => basis_copy(build, dest),
        Laptop::HalfDisguised => {
            basis_copy(build, dest);
            let files = Snapshot::of(dest)
                .paths()
                .map(|p| dest.join(String::from_utf8_lossy(p).as_ref()))
                .filter(|p| p.is_file())
                .collect::<Vec<PathBuf>>();
            for file in files.iter().step_by(2) {
                flip_first_byte(file);
            }
        }
    }
}

/// Changes the first byte of `path`, keeping its size and times.
fn flip_first_byte(path: &Path) {
    use std::os::unix::fs::FileExt;
    let mtime = std::fs::metadata(path).and_then(|m| m.modified());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("opening a file");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 0).expect("reading a file");
    f.write_all_at(&[b[0] ^ 0x5a], 0).expect("writing a file");
    f.set_modified(mtime.expect("an mtime"))
        .expect("keeping the mtime");
}

/// A number in the `lists` object of `upserv status --json`.
fn lists_count(builds: &Path, field: &str) -> u64 {
    let builds = builds.to_str().expect("a UTF-8 path");
    let (code, out, err) = run_upserv(&["status", "--json", "--builds", builds]);
    assert_eq!(code, 0, "upserv status --json: {err}");
    let lists = &out[out
        .find("\"lists\":{")
        .unwrap_or_else(|| panic!("no lists in {out}"))..];
    let key = format!("\"{field}\":");
    let rest = &lists[lists
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in {out}"))
        + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("a count")
}

/// The lists one pull of the whole build asks for: the whole list, or
/// with incremental recursion one per directory (the first list is each
/// connection's own).
fn lists_per_pull(incremental: bool) -> u64 {
    if incremental {
        DIRS.len() as u64
    } else {
        1
    }
}

/// The reference's protocol for a pull at `protocol`.
fn reference(rsyncd: &Rsyncd, protocol: Protocol) -> Protocol {
    match protocol {
        Protocol::Default => Protocol::V(rsyncd.client_protocol().unwrap_or(29)),
        p => p,
    }
}

/// Pulls each (shape, laptop) at once from `url` into its destination.
fn pull_all(
    client: &Client,
    url: &str,
    class: &[(Shape, Laptop)],
    dests: &[PathBuf],
    protocol: Protocol,
) -> Vec<PullResult> {
    std::thread::scope(|s| {
        let pulls: Vec<_> = class
            .iter()
            .zip(dests)
            .map(|(&(shape, _), dest)| {
                s.spawn(move || client.pull(url, dest, &shape.opts(), protocol))
            })
            .collect();
        pulls
            .into_iter()
            .map(|p| p.join().expect("a pull thread"))
            .collect()
    })
}

/// One laptop's pull from upserv against its twin's from rsyncd.
fn compare(what: &str, ours: (&PullResult, &Path), theirs: (&PullResult, &Path)) {
    assert_eq!(
        ours.0.code, 0,
        "{what} ({}): {}",
        ours.0.command, ours.0.stderr
    );
    assert_eq!(
        theirs.0.code, 0,
        "rsyncd twin of {what}: {}",
        theirs.0.stderr
    );
    assert_eq!(ours.0.stderr, "", "{what}");
    assert_eq!(ours.0.itemized, theirs.0.itemized, "{what}: itemized lines");
    assert_same(&Snapshot::of(theirs.1), &Snapshot::of(ours.1));
}

/// A build in a builds dir, served by upserv and by rsyncd.
struct Scene {
    build: TestTree,
    dir: Scratch,
    builds: PathBuf,
    upserv: Upserv,
    rsyncd: Rsyncd,
}

impl Scene {
    fn new(name: &str) -> Scene {
        let build = build_tree();
        let dir = scratch_dir(name);
        let builds = dir.join("builds");
        std::fs::create_dir_all(&builds).expect("the builds dir");
        basis_copy(build.root(), &builds.join("build-2"));
        let upserv = Upserv::start_with(&[], Some(&builds), &[]);
        let rsyncd = Rsyncd::start(&[Module::new("build-2", build.root())]);
        Scene {
            build,
            dir,
            builds,
            upserv,
            rsyncd,
        }
    }

    /// Destinations for the class on one side, prepared.
    fn dests(&self, round: &str, side: &str, class: &[(Shape, Laptop)]) -> Vec<PathBuf> {
        class
            .iter()
            .enumerate()
            .map(|(i, &(_, laptop))| {
                let dest = self.dir.join(format!("{round}-{side}-{i}"));
                prepare(laptop, self.build.root(), &dest);
                dest
            })
            .collect()
    }

    /// The class pulls from upserv at once, then from rsyncd at once; each
    /// result is its twin's. Returns how many lists upserv built and how
    /// many it took from another connection meanwhile.
    fn round(
        &self,
        client: &Client,
        round: &str,
        class: &[(Shape, Laptop)],
        protocol: Protocol,
    ) -> (u64, u64) {
        let (built, hits) = (self.count("built"), self.count("hits"));
        let (ours, theirs) = (
            self.dests(round, "upserv", class),
            self.dests(round, "rsyncd", class),
        );
        let got = pull_all(client, &self.upserv.url("build-2/"), class, &ours, protocol);
        let reference = reference(&self.rsyncd, protocol);
        let want = pull_all(
            client,
            &self.rsyncd.url("build-2/"),
            class,
            &theirs,
            reference,
        );
        for (i, (shape, laptop)) in class.iter().enumerate() {
            let what = format!(
                "{round}: {laptop:?} laptop with {shape:?} at {protocol}, {}",
                client.version
            );
            compare(&what, (&got[i], &ours[i]), (&want[i], &theirs[i]));
        }
        (self.count("built") - built, self.count("hits") - hits)
    }

    fn count(&self, field: &str) -> u64 {
        lists_count(&self.builds, field)
    }
}

/// A class pulls one build at once, with three option sets: each set's
/// lists are built once and taken by the rest of its laptops, and every
/// laptop's result is its rsyncd twin's. A class with the older client
/// comes after: it may take lists the first class left (its options and
/// capabilities may be the same), never more than one build per set.
#[test]
fn a_class_shares_one_list_per_option_set() {
    let scene = Scene::new("shared-lists-class");
    let class = [
        (Shape::Plain, Laptop::Empty),
        (Shape::Plain, Laptop::Current),
        (Shape::Plain, Laptop::HalfDisguised),
        (Shape::Plain, Laptop::Empty),
        (Shape::Checksum, Laptop::Current),
        (Shape::Checksum, Laptop::HalfDisguised),
        (Shape::Checksum, Laptop::HalfDisguised),
        (Shape::Exclude, Laptop::Empty),
        (Shape::Exclude, Laptop::Empty),
        (Shape::Exclude, Laptop::HalfDisguised),
    ];
    for (n, client) in Client::all().iter().enumerate() {
        for (protocol, incremental) in [(Protocol::V(29), false), (Protocol::Default, true)] {
            let round = format!("{n}-at-{protocol}");
            let (built, hits) = scene.round(client, &round, &class, protocol);
            let per_pull = lists_per_pull(incremental);
            let claims = class.len() as u64 * per_pull;
            let what = format!("lists built and shared: {round}\n{}", scene.upserv.log());
            if n == 0 {
                assert_eq!(
                    (built, hits),
                    (3 * per_pull, claims - 3 * per_pull),
                    "{what}"
                );
            } else {
                assert!(built <= 3 * per_pull && built + hits == claims, "{what}");
            }
        }
    }
}

/// Pulls one after the other whose options change the list: each builds
/// its own and gets what rsyncd sends. With `-c` taking the plain list
/// (no sums) every file would look changed; with the exclude taking it,
/// the objects would come.
#[test]
fn options_that_change_the_list_get_their_own() {
    let scene = Scene::new("shared-lists-shapes");
    for (protocol, incremental) in [(Protocol::V(29), false), (Protocol::Default, true)] {
        for (shape, laptop) in [
            (Shape::Plain, Laptop::Current),
            (Shape::Checksum, Laptop::HalfDisguised),
            (Shape::Checksum, Laptop::Current),
            (Shape::Exclude, Laptop::Empty),
        ] {
            let round = format!("{shape:?}-{laptop:?}-{protocol}");
            let client = Client::current();
            let (built, hits) = scene.round(&client, &round, &[(shape, laptop)], protocol);
            // The second -c pull takes the first one's lists.
            let again = laptop == Laptop::Current && shape == Shape::Checksum;
            let want = if again { (0, 1) } else { (1, 0) };
            let per_pull = lists_per_pull(incremental);
            assert_eq!(
                (built, hits),
                (want.0 * per_pull, want.1 * per_pull),
                "{round}\n{}",
                scene.upserv.log()
            );
        }
    }
}

/// Budget for one build of [`small_build`] but not two.
const BUDGET: &str = "200K";

/// A build of about 120 KiB for the upstream: `fill` makes it differ;
/// a second edition has one file more.
fn small_build(fill: u8, second_edition: bool) -> (TestTree, Vec<u8>) {
    let tree = TestTree::new();
    let mut rng = Rng::new(u64::from(fill));
    tree.file("image.bin", &rng.bytes(100 * 1024))
        .mtime(1_650_000_100);
    tree.file("doc/README", &[fill; 100])
        .mtime(1_650_000_000 + i64::from(fill));
    if second_edition {
        tree.file("doc/NEWS", b"new\n").mtime(1_650_000_050);
    }
    tree.dir("doc").mtime(1_650_000_150);
    tree.dir("").mtime(1_650_000_200);
    tree.settle();
    let archive = tar_tree(tree.root().parent().expect("a parent"), "tree");
    (tree, archive)
}

/// When the daemon evicts a build to make room for another, its lists go
/// (the status counts them out, the log says so); when a build is
/// refetched with other contents by another process, the daemon serves
/// the new tree, not the old tree's list.
#[test]
fn lists_go_with_their_build() {
    let dir = scratch_dir("shared-lists-evict");
    let up = Upstream::start();
    let (b1, archive) = small_build(1, false);
    up.put("/b/b1.tar", archive);
    let (b2, archive) = small_build(2, false);
    up.put("/b/b2.tar", archive);
    let builds = dir.join("builds");
    let template = "/b/{name}.tar";
    let upserv = upserv_for(&up, template, &builds, &["--cache-size", BUDGET]);
    let opts = ["-a", "-i", "--no-motd"];
    let pull_b1 = |name: &str, want: &TestTree| {
        let dest = dir.join(name);
        pull(&upserv.url("b1/"), &dest, &opts, Protocol::V(29)).assert_ok();
        assert_same(&Snapshot::of(want.root()), &Snapshot::of(&dest));
    };
    pull_b1("b1-0", &b1);
    pull_b1("b1-1", &b1);
    assert_eq!(lists_count(&builds, "held"), 1, "{}", upserv.log());
    assert_eq!(lists_count(&builds, "hits"), 1, "{}", upserv.log());
    let one_list = lists_count(&builds, "bytes");
    assert!(one_list > 0);

    let dest = dir.join("b2");
    pull(&upserv.url("b2/"), &dest, &opts, Protocol::V(29)).assert_ok();
    assert_same(&Snapshot::of(b2.root()), &Snapshot::of(&dest));
    // b1 goes at b2's install, or when its last connection lets it go.
    wait_until("b1 evicted and its list dropped", || {
        lists_count(&builds, "dropped") >= 1
    });
    assert!(!builds.join("b1").exists(), "b1 was evicted for b2");
    assert_eq!(lists_count(&builds, "held"), 1, "b2's alone");
    assert!(lists_count(&builds, "bytes") < 2 * one_list);
    assert!(
        upserv.log().contains("shared lists: dropped"),
        "{}",
        upserv.log()
    );

    // b2 again, then replaced upstream and refetched by the admin
    // command, another process: the daemon is not told, and must see
    // the new tree for itself.
    let (b2_new, archive) = small_build(2, true);
    up.put("/b/b2.tar", archive);
    let upstream = format!("--upstream={}", up.url(template));
    let builds_str = builds.to_str().expect("a UTF-8 path");
    let (code, _, err) = run_upserv(&[
        "refetch",
        "--builds",
        builds_str,
        &upstream,
        "--cache-size",
        BUDGET,
        "b2",
    ]);
    assert_eq!(code, 0, "upserv refetch: {err}");
    let dest = dir.join("b2-new");
    pull(&upserv.url("b2/"), &dest, &opts, Protocol::V(29)).assert_ok();
    assert_same(&Snapshot::of(b2_new.root()), &Snapshot::of(&dest));
}
