//! Builds on demand, end to end: a real rsync client asks upserv for a
//! build that exists only upstream and gets the same tree, byte for byte
//! and attribute for attribute, as a real rsyncd serving the tree the
//! archive was made from. Also: every archive format, progress lines
//! before the protocol starts, ten clients sharing one download, cached
//! builds never waiting behind a download, resumed and restarted
//! downloads, a download slower than the handshake timeout, and the
//! errors a client prints for a missing build or a bad checksum.
//!
//! Archives are made by GNU tar from real trees (`support::builds`); the
//! upstream is the loopback fixture of `tests/it/support/upstream.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::builds::{
    assert_pulled_tree, private_leftovers, remove_sockets, small_build_upstream,
    small_tree_and_archive, tar_tree, upserv_checked, upserv_for,
};
use crate::support::live::LiveClient;
use crate::support::scratch::scratch_dir;
use crate::support::upstream::{compress, digest_file, refused_url, Behavior, Upstream};
use crate::support::*;

/// Seed of the random source tree: a failure must be reproducible.
const TREE_SEED: u64 = 20_250_301;
/// A small random tree with every kind of entry, one bigger file.
const SPEC: RandomSpec = RandomSpec {
    big_files: 1,
    big_size: 256 * 1024,
    ..RandomSpec::SMALL
};
/// What a real client pulls with: everything rsync -a keeps, hard links,
/// itemized changes and statistics; progress lines hidden.
const PULL_OPTS: &[&str] = &["-a", "-H", "-i", "--stats", "--no-motd"];
/// docs/builds.md: waiting clients see a progress line at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How much sooner than the interval a line may arrive, for scheduling
/// jitter between upserv's clock and the moment the client prints. Well
/// below the interval: unthrottled, upserv's job would report every 0.5 s.
const PROGRESS_JITTER: Duration = Duration::from_millis(500);
/// upserv's handshake deadline (`session::HANDSHAKE_TIMEOUT`); a download
/// may take longer than that.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A random tree without sockets (tar cannot hold them), its times settled,
/// and its archive as GNU tar writes it: one top directory, `tree/`.
fn tree_and_archive() -> (TestTree, Vec<u8>) {
    let tree = TestTree::new();
    tree.random(&SPEC, TREE_SEED);
    remove_sockets(tree.root());
    tree.settle();
    let parent = tree.root().parent().expect("a tree root has a parent");
    let archive = tar_tree(parent, "tree");
    (tree, archive)
}

/// Pulls `rsync://.../name/` from `server` into `dest` with [`PULL_OPTS`].
fn pull_build(server: &dyn Server, name: &str, dest: &Path) -> PullResult {
    let result = pull(
        &server.url(&format!("{name}/")),
        dest,
        PULL_OPTS,
        Protocol::Default,
    );
    result.assert_ok();
    result
}

#[test]
fn every_archive_format_pulls_like_rsyncd() {
    let (tree, archive) = tree_and_archive();
    let up = Upstream::start();
    let formats: [(&str, &[&str], Candidate); 6] = [
        ("tar.xz", &["xz", "-1", "-c"], Candidate::Upserv),
        ("tar.gz", &["gzip", "-c"], Candidate::Upserv),
        ("tgz", &["gzip", "-c"], Candidate::UpservServe),
        ("tar.bz2", &["bzip2", "-c"], Candidate::Upserv),
        (
            "tar.lzma",
            &["xz", "--format=lzma", "-c"],
            Candidate::Upserv,
        ),
        ("tar", &[], Candidate::Upserv),
    ];
    for (ending, tool, candidate) in formats {
        let name = format!("build-{}", ending.replace('.', "-"));
        let path = format!("/b/{name}.{ending}");
        let body = if tool.is_empty() {
            archive.clone()
        } else {
            compress(&archive, tool)
        };
        up.put(&path, body);
        let template = up.url(&format!("/b/{{name}}.{ending}"));
        // The main format at every protocol with every client; the others
        // at the client's default.
        let (protocols, clients) = if ending == "tar.xz" {
            (&ProtocolSet::ALL, Client::all())
        } else {
            (&ProtocolSet(&[Protocol::Default]), vec![Client::current()])
        };
        for client in clients {
            let before = up.gets(&path);
            Differential::new(&tree)
                .name(&format!("{name} from the upstream, {candidate:?}"))
                .candidate(candidate)
                .candidate_side(Side {
                    modules: Vec::new(),
                    url_path: format!("{name}/"),
                })
                .upserv_args(&["--upstream", &template])
                .client(client)
                .run(PULL_OPTS, protocols);
            // Each run starts an upserv on an empty builds directory.
            assert_eq!(
                up.gets(&path),
                before + 1,
                "{path}: one GET, whatever the pulls"
            );
        }
    }
}

#[test]
fn progress_lines_reach_a_client_without_no_motd_every_two_seconds() {
    let (tree, archive, up) = small_build_upstream(&["build-p"]);
    let dir = scratch_dir("builds-progress");
    // About five seconds of download: room for two or three lines.
    let piece = archive.len() / 16 + 1;
    up.set_behavior(
        "/b/build-p.tar",
        Behavior {
            pace: Some((piece, Duration::from_millis(330))),
            ..Behavior::default()
        },
    );
    let upserv = upserv_for(&up, "/b/{name}.tar", &dir.join("builds"), &[]);
    let dest = dir.join("dest");
    let finished = LiveClient::start(&upserv.url("build-p/"), &dest, &["-aH"]).finish();
    finished.assert_ok();
    assert_pulled_tree(&tree, &dest);

    let progress: Vec<&(Instant, String)> = finished
        .lines
        .iter()
        .filter(|(_, l)| l.starts_with("upserv: "))
        .collect();
    assert_eq!(
        progress.len(),
        finished.lines.len(),
        "-aH without -v prints nothing but the progress lines:\n{}",
        finished.stdout
    );
    assert!(
        progress.len() >= 2,
        "a five-second download shows at least two lines:\n{}",
        finished.stdout
    );
    let first = &progress[0].1;
    assert!(
        first.starts_with("upserv: fetching build-p from upstream: ") && first.ends_with(" MiB)"),
        "first line {first:?}"
    );
    for pair in progress.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap + PROGRESS_JITTER >= PROGRESS_INTERVAL,
            "two progress lines {gap:?} apart:\n{}",
            finished.stdout
        );
    }
}

#[test]
fn ten_clients_share_one_download() {
    const CLIENTS: usize = 10;
    let (tree, archive) = small_tree_and_archive();
    let dir = scratch_dir("builds-ten");
    let up = Upstream::start();
    let body = compress(&archive, &["gzip", "-c"]);
    // The gate must hold back part of the body, or the download completes.
    let gate = body.len() / 2;
    up.put("/b/build-ten.tar.gz", body);
    up.gate_after("/b/build-ten.tar.gz", gate);
    // A worker per client, so that none waits in the queue.
    let upserv = upserv_for(
        &up,
        "/b/{name}.tar.gz",
        &dir.join("builds"),
        &["--workers", "12"],
    );
    let clients: Vec<LiveClient> = (0..CLIENTS)
        .map(|i| {
            LiveClient::start(
                &upserv.url("build-ten/"),
                &dir.join(format!("dest-{i}")),
                &["-aH"],
            )
        })
        .collect();
    // Every client is waiting for the download before any byte more comes.
    up.wait_at_gate(1);
    for client in &clients {
        client.wait_for_fetching("build-ten");
    }
    up.open_gate();
    for client in clients {
        client.finish().assert_ok();
    }
    for i in 0..CLIENTS {
        assert_pulled_tree(&tree, &dir.join(format!("dest-{i}")));
    }
    assert_eq!(up.gets("/b/build-ten.tar.gz"), 1);
}

#[test]
fn a_cached_build_is_served_while_a_slow_download_waits() {
    let (tree, _, up) = small_build_upstream(&["cached", "slow"]);
    let dir = scratch_dir("builds-no-wait");
    let upserv = upserv_for(&up, "/b/{name}.tar", &dir.join("builds"), &[]);
    pull_build(&upserv, "cached", &dir.join("first"));

    up.gate_after("/b/slow.tar", 1000);
    let mut slow = LiveClient::start(&upserv.url("slow/"), &dir.join("slow"), &["-aH"]);
    slow.wait_for_fetching("slow");
    let cached = pull_build(&upserv, "cached", &dir.join("second"));
    assert!(
        slow.is_running(),
        "the slow pull ended although its download was held"
    );
    assert_pulled_tree(&tree, &dir.join("second"));
    assert!(
        !private_leftovers(upserv.builds()).is_empty(),
        "the slow download is still in progress"
    );
    up.open_gate();
    slow.finish().assert_ok();
    assert_pulled_tree(&tree, &dir.join("slow"));
    assert!(cached.elapsed < Duration::from_secs(10), "{cached:?}");
}

#[test]
fn a_second_missing_build_waits_its_turn_and_says_so() {
    let (tree, _, up) = small_build_upstream(&["first", "second"]);
    let dir = scratch_dir("builds-queue");
    up.gate_after("/b/first.tar", 1000);
    let upserv = upserv_for(&up, "/b/{name}.tar", &dir.join("builds"), &[]);
    let first = LiveClient::start(&upserv.url("first/"), &dir.join("first"), &["-aH"]);
    first.wait_for_fetching("first");
    let second = LiveClient::start(&upserv.url("second/"), &dir.join("second"), &["-aH"]);
    second.wait_for_line("upserv: second waits for another download to finish");
    assert_eq!(up.gets("/b/second.tar"), 0, "one download at a time");
    up.open_gate();
    first.finish().assert_ok();
    second.finish().assert_ok();
    assert_pulled_tree(&tree, &dir.join("first"));
    assert_pulled_tree(&tree, &dir.join("second"));
}

/// A body cut halfway once, then a pull: `ignore_range` decides whether
/// the retry resumes (206) or restarts (200). Either way the result is the
/// tree, and the second request asked for the rest.
/// Where the upstream template points in [`pull_after_a_cut`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// At the archive itself.
    Direct,
    /// At a mirror that redirects to it, as download mirrors do.
    Mirror,
}

fn pull_after_a_cut(name: &str, ignore_range: bool, origin: Origin) {
    let (tree, archive) = small_tree_and_archive();
    let dir = scratch_dir(name);
    let up = Upstream::start();
    let half = archive.len() / 2;
    let path = format!("/b/{name}.tar");
    up.put(&format!("{path}.md5"), digest_file("md5sum", &archive));
    up.put(&path, archive);
    up.set_behavior(
        &path,
        Behavior {
            cut: Some((half, 1)),
            ignore_range,
            ..Behavior::default()
        },
    );
    let served_from = match origin {
        Origin::Direct => "/b",
        Origin::Mirror => "/mirror",
    };
    if origin == Origin::Mirror {
        for ending in [".tar", ".tar.md5"] {
            up.set_behavior(
                &format!("/mirror/{name}{ending}"),
                Behavior {
                    redirect: Some(format!("/b/{name}{ending}")),
                    ..Behavior::default()
                },
            );
        }
    }
    let checksum = up.url(&format!("{served_from}/{{name}}.tar.md5"));
    let upstream = up.url(&format!("{served_from}/{{name}}.tar"));
    let builds = dir.join("builds");
    let upserv = upserv_checked(&upstream, &checksum, &builds);
    pull_build(&upserv, name, &dir.join("dest"));
    assert_pulled_tree(&tree, &dir.join("dest"));
    up.assert_asked_again_from(&path, half);
    if origin == Origin::Mirror {
        assert_eq!(up.gets(&format!("/mirror/{name}.tar")), 2);
    }
    assert!(
        upserv.log().contains("md5 verified"),
        "the log says the checksum was verified:\n{}",
        upserv.log()
    );
    assert_eq!(private_leftovers(&builds), Vec::<String>::new());
}

/// Download mirrors answer with redirects: followed for the archive and
/// its checksum, and again when a cut download resumes.
#[test]
fn a_redirecting_mirror_is_followed_also_when_resuming() {
    pull_after_a_cut("build-redirect", false, Origin::Mirror);
}

#[test]
fn a_cut_download_resumes_with_range() {
    pull_after_a_cut("build-cut", false, Origin::Direct);
}

#[test]
fn a_cut_download_restarts_when_range_is_ignored() {
    pull_after_a_cut("build-norange", true, Origin::Direct);
}

#[test]
fn a_download_longer_than_the_handshake_timeout_is_served() {
    let (tree, _, up) = small_build_upstream(&["build-long"]);
    let dir = scratch_dir("builds-long");
    up.gate_after("/b/build-long.tar", 1000);
    let upserv = upserv_for(&up, "/b/{name}.tar", &dir.join("builds"), &[]);
    let client = LiveClient::start(&upserv.url("build-long/"), &dir.join("dest"), &["-aH"]);
    client.wait_for_fetching("build-long");
    // The download outlasts the handshake deadline: time itself is what is
    // tested here, so this waits rather than awaiting a condition.
    std::thread::sleep(HANDSHAKE_TIMEOUT + Duration::from_secs(2));
    up.open_gate();
    client.finish().assert_ok();
    assert_pulled_tree(&tree, &dir.join("dest"));
}

/// A pull that upserv refuses: the client prints `@ERROR: {expected}`.
fn assert_refused(server: &dyn Server, name: &str, dest: &Path, expected: &str) {
    assert_eq!(refusal(server, name, dest), format!("@ERROR: {expected}"));
}

#[test]
fn a_build_missing_upstream_is_reported_and_remembered() {
    let dir = scratch_dir("builds-404");
    let up = Upstream::start();
    let upserv = upserv_for(&up, "/b/{name}.tar.xz", &dir.join("builds"), &[]);
    for attempt in 0..3 {
        assert_refused(
            &upserv,
            "build-404",
            &dir.join(format!("dest-{attempt}")),
            "build-404 not found upstream",
        );
    }
    assert_eq!(up.gets("/b/build-404.tar.xz"), 1, "the 404 is remembered");
    // Names that can never be builds are unknown modules, never fetched.
    assert_refused(
        &upserv,
        ".upserv",
        &dir.join("dot"),
        "Unknown module '.upserv'",
    );
    assert_eq!(up.gets("/b/.upserv.tar.xz"), 0);
}

/// The `@ERROR:` line of a pull that upserv refused: the client printed
/// it and exited with code 5 (error starting the client-server protocol).
fn refusal(server: &dyn Server, name: &str, dest: &Path) -> String {
    let result = pull(
        &server.url(&format!("{name}/")),
        dest,
        PULL_OPTS,
        Protocol::Default,
    );
    result.assert_refused("@ERROR: ");
    assert!(!dest.exists(), "a refused pull left {dest:?}");
    result
        .stderr
        .lines()
        .find(|l| l.starts_with("@ERROR: "))
        .unwrap_or_else(|| panic!("no @ERROR line:\n{}", result.stderr))
        .to_string()
}

#[test]
fn a_failing_upstream_is_reported() {
    let dir = scratch_dir("builds-403");
    let up = Upstream::start();
    up.put("/b/build-403.tar", b"never sent".to_vec());
    up.answer_status("/b/build-403.tar", 403);
    let upserv = upserv_for(&up, "/b/{name}.tar", &dir.join("builds"), &[]);
    let error = refusal(&upserv, "build-403", &dir.join("dest"));
    assert_eq!(
        error,
        format!(
            "@ERROR: fetching build-403 from upstream failed: upstream answered HTTP 403 for {}",
            up.url("/b/build-403.tar")
        )
    );
}

#[test]
fn an_unreachable_upstream_is_reported_after_the_retries() {
    let dir = scratch_dir("builds-unreachable");
    let upstream = refused_url("/b/{name}.tar");
    let upserv = Upserv::start_with(&[], Some(&dir.join("builds")), &["--upstream", &upstream]);
    let error = refusal(&upserv, "build-gone", &dir.join("dest"));
    let url = upstream.replace("{name}", "build-gone");
    assert!(
        error.starts_with(&format!(
            "@ERROR: fetching build-gone from upstream failed: upstream request for {url} failed: "
        )) && error.ends_with(&format!("(gave up on {url} after 4 attempts)")),
        "{error}"
    );
}

#[test]
fn a_download_with_a_wrong_checksum_is_never_served() {
    let (_tree, archive) = small_tree_and_archive();
    let dir = scratch_dir("builds-badsum");
    let up = Upstream::start();
    up.put(
        "/b/build-bad.tar.sha256",
        digest_file("sha256sum", b"another archive"),
    );
    up.put("/b/build-bad.tar", archive);
    let checksum = up.url("/b/{name}.tar.sha256");
    let upstream = up.url("/b/{name}.tar");
    let builds = dir.join("builds");
    let upserv = upserv_checked(&upstream, &checksum, &builds);
    let error = refusal(&upserv, "build-bad", &dir.join("dest"));
    assert!(
        error.starts_with("@ERROR: fetching build-bad from upstream failed: sha256 of ")
            && error.contains("does not match the upstream checksum"),
        "{error}"
    );
    assert!(!builds.join("build-bad").exists());
    assert_eq!(private_leftovers(&builds), Vec::<String>::new());
    let listing = pull(&upserv.url(""), &dir.join("list"), &[], Protocol::Default);
    assert!(!listing.stdout.contains("build-bad"), "{}", listing.stdout);
}

/// A client that hangs up while it waits for a download frees its worker
/// at once: with a single worker and the download stuck, a pull of a
/// static module right after still goes through.
#[test]
fn a_waiting_client_that_hangs_up_frees_its_worker() {
    let dir = scratch_dir("hangup");
    let builds = dir.join("builds");
    std::fs::create_dir_all(&builds).unwrap();
    let up = Upstream::start();
    up.put(
        "/b/build-h.tar",
        crate::support::upstream::sample_build("top", "hung up"),
    );
    up.gate_after("/b/build-h.tar", 1024);
    let tree = TestTree::new();
    tree.file("hello.txt", b"hello\n");
    let template = up.url("/b/{name}.tar");
    let upserv = Upserv::start_with(
        &[Module::new("m", tree.root())],
        Some(&builds),
        &["--upstream", &template, "--workers", "1"],
    );
    let waiting = LiveClient::start(&upserv.url("build-h/"), &dir.join("w"), &["-a"]);
    waiting.wait_for_fetching("build-h");
    up.wait_at_gate(1);
    drop(waiting); // kills the client
    let after = Client::current().pull_within(
        &upserv.url("m/"),
        &dir.join("s"),
        &["-a"],
        Protocol::Default,
        Duration::from_secs(20),
    );
    up.open_gate();
    after
        .expect("a pull after the waiting client hung up")
        .assert_ok();
}

/// `--upstream` with two mirrors: the first refuses connections (its port
/// was just closed), the second serves. The client gets the tree as rsyncd
/// serves it, and the log says the first mirror counts as down.
#[test]
fn a_refusing_first_mirror_is_skipped_for_the_second() {
    let (tree, _, second) = small_build_upstream(&["build-m"]);
    let dir = scratch_dir("builds-mirrors");
    let first = refused_url("/b/{name}.tar");
    let mirrors = format!("{first} {}", second.url("/b/{name}.tar"));
    let upserv = Upserv::start_with(&[], Some(&dir.join("builds")), &["--upstream", &mirrors]);
    pull_build(&upserv, "build-m", &dir.join("dest"));
    assert_pulled_tree(&tree, &dir.join("dest"));
    let log = upserv.log();
    assert!(
        log.contains(&format!(
            "mirror {first} counts as down for {} s",
            ::upserv::cache::MIRROR_DOWN_FOR.as_secs()
        )) && log.contains(&format!("from {}", second.url("/b/build-m.tar"))),
        "{log}"
    );
}

#[test]
fn a_build_missing_at_every_mirror_is_not_found_upstream() {
    let dir = scratch_dir("builds-mirrors-404");
    let (first, second) = (Upstream::start(), Upstream::start());
    let mirrors = format!(
        "{} {}",
        first.url("/b/{name}.tar"),
        second.url("/b/{name}.tar")
    );
    let upserv = Upserv::start_with(&[], Some(&dir.join("builds")), &["--upstream", &mirrors]);
    assert_refused(
        &upserv,
        "build-none",
        &dir.join("dest"),
        "build-none not found upstream",
    );
    assert_eq!(first.gets("/b/build-none.tar"), 1);
    assert_eq!(second.gets("/b/build-none.tar"), 1);
}

/// Half the archive arrives, then the upstream stalls: the client keeps
/// getting lines that show the half, not 0% and not silence.
#[test]
fn progress_lines_show_the_bytes_received_through_a_stall() {
    let (tree, archive, up) = small_build_upstream(&["build-st"]);
    let dir = scratch_dir("builds-stall-progress");
    let half = archive.len() / 2;
    let percent = format!(
        "upserv: fetching build-st from upstream: {}% ",
        half * 100 / archive.len()
    );
    up.gate_after("/b/build-st.tar", half);
    let upserv = upserv_for(&up, "/b/{name}.tar", &dir.join("builds"), &[]);
    let client = LiveClient::start(&upserv.url("build-st/"), &dir.join("dest"), &["-aH"]);
    up.wait_at_gate(1);
    wait_until(
        "two progress lines showing the half during the stall",
        || {
            let lines = client.lines();
            lines
                .iter()
                .filter(|(_, l)| l.starts_with(&percent))
                .count()
                >= 2
        },
    );
    up.open_gate();
    client.finish().assert_ok();
    assert_pulled_tree(&tree, &dir.join("dest"));
}
