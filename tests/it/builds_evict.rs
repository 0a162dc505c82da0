//! The builds directory under its budget, with real clients and the admin
//! commands as a user runs them next to a running daemon: the least
//! recently pulled build goes first, never a sticky one (`upserv pin`, or
//! `touch NAME.sticky`), never one a client is pulling right now, and the
//! order survives a restart. Also `upserv fetch`, `list`, `pin`, `unpin`
//! and `gc [--dry-run]`: their output and exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::builds::{next_second, private_leftovers, tar_tree, upserv_for};
use crate::support::live::StalledClient;
use crate::support::scratch::scratch_dir;
use crate::support::upstream::Upstream;
use crate::support::*;

/// Three builds fit in this budget, four do not (see [`build_tree`]).
const BUDGET: &str = "400K";
/// Content of each build's big file: 100 KiB, 25 blocks of 4 KiB.
const BIG_FILE: usize = 100 * 1024;
const PULL_OPTS: &[&str] = &["-a", "--no-motd"];
/// How long a clean stop may take (SIGTERM lets transfers finish).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A build of about 108 KiB on disk: its directory, a small README and
/// a 100 KiB file whose bytes are `fill`.
fn build_tree(name: &str, fill: u8) -> (TestTree, Vec<u8>) {
    let tree = TestTree::new();
    tree.file("README", name.as_bytes()).mtime(1_650_000_000);
    tree.file("image.bin", &vec![fill; BIG_FILE])
        .mtime(1_650_000_100);
    tree.dir("").mtime(1_650_000_200);
    tree.settle();
    let archive = tar_tree(tree.root().parent().expect("a parent"), "tree");
    (tree, archive)
}

/// The scene: an upstream with builds `b1`..`b7`, a builds directory and
/// an (empty) config file for the admin commands.
struct Scene {
    dir: crate::support::scratch::Scratch,
    up: Upstream,
    trees: Vec<TestTree>,
}

impl Scene {
    fn new(test: &str) -> Scene {
        let dir = scratch_dir(test);
        std::fs::write(dir.join("upserv.conf"), "").expect("writing an empty config");
        let up = Upstream::start();
        let trees = (1..=7u8)
            .map(|i| {
                let (tree, archive) = build_tree(&format!("b{i}"), i);
                up.put(&format!("/b/b{i}.tar"), archive);
                tree
            })
            .collect();
        Scene { dir, up, trees }
    }

    fn builds(&self) -> PathBuf {
        self.dir.join("builds")
    }

    /// The daemon, once it serves: it logs that it listens before its
    /// cache has finished the startup recovery, which holds the lock that
    /// admin commands take too, so a module listing is awaited first.
    fn daemon(&self) -> Upserv {
        let upserv = upserv_for(
            &self.up,
            "/b/{name}.tar",
            &self.builds(),
            &["--cache-size", BUDGET],
        );
        let dest = self.dir.join("startup-listing");
        pull(&upserv.url(""), &dest, &[], Protocol::Default).assert_ok();
        upserv
    }

    /// `upserv COMMAND ARGS --config C --builds B --cache-size 400K --upstream U`.
    fn admin(&self, args: &[&str]) -> (i32, String, String) {
        let all = self.admin_args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_upserv(&all)
    }

    /// `args` and the options that point an admin command at this scene.
    fn admin_args(&self, args: &[&str]) -> Vec<String> {
        let conf = self.dir.join("upserv.conf");
        let builds = self.builds();
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--config".into(),
            conf.to_str().expect("a UTF-8 path").into(),
            "--builds".into(),
            builds.to_str().expect("a UTF-8 path").into(),
            "--cache-size".into(),
            BUDGET.into(),
            "--upstream".into(),
            self.up.url("/b/{name}.tar"),
        ]);
        all
    }

    /// `upserv serve` per connection, as xinetd runs it.
    fn serve(&self) -> UpservServe {
        let upstream = self.up.url("/b/{name}.tar");
        UpservServe::start_with(
            &[],
            Some(&self.builds()),
            &["--upstream", &upstream, "--cache-size", BUDGET],
        )
    }

    /// Pulls build `name` (`b1` → tree 0) and checks what arrived.
    fn pull(&self, server: &dyn Server, name: &str, dest: &str) {
        let dest = self.dir.join(dest);
        pull(
            &server.url(&format!("{name}/")),
            &dest,
            PULL_OPTS,
            Protocol::Default,
        )
        .assert_ok();
        assert_same(&Snapshot::of(self.tree(name).root()), &Snapshot::of(&dest));
    }

    /// Pulls each of `names` into `NAME-first`, a second apart, so that
    /// their access times are ordered.
    fn pull_in_turn(&self, server: &dyn Server, names: &[&str]) {
        for name in names {
            self.pull(server, name, &format!("{name}-first"));
            next_second();
        }
    }

    /// A client of `server` held in the middle of its pull of `name`, into
    /// `NAME-held`, once `upserv list` shows the build in use.
    fn hold(&self, server: &dyn Server, name: &str) -> StalledClient {
        let held = StalledClient::start(
            &server.url(&format!("{name}/")),
            &self.dir.join(format!("{name}-held")),
            &["-a", "-i", "--no-motd"],
        );
        wait_until(&format!("{name} to be in use"), || self.is_busy(name));
        held
    }

    /// Lets the client of [`Scene::hold`] go on: it must get all of `name`.
    fn release_whole(&self, held: StalledClient, name: &str) {
        assert_eq!(held.release(), 0);
        let dest = self.dir.join(format!("{name}-held"));
        assert_same(&Snapshot::of(self.tree(name).root()), &Snapshot::of(&dest));
    }

    fn tree(&self, name: &str) -> &TestTree {
        let index: usize = name[1..].parse().expect("a build named bN");
        &self.trees[index - 1]
    }

    /// The cached builds, sorted.
    fn cached(&self) -> Vec<String> {
        cached_builds(&self.builds())
    }

    /// `upserv list` as a table: name → (sticky, busy).
    fn listed(&self) -> Vec<(String, String, String)> {
        let (code, stdout, stderr) = self.admin(&["list"]);
        assert_eq!(code, 0, "upserv list: {stderr}");
        parse_list(&stdout)
    }

    fn is_busy(&self, name: &str) -> bool {
        self.listed()
            .iter()
            .any(|(n, _, busy)| n == name && busy == "yes")
    }
}

fn cached_builds(builds: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(builds)
        .expect("listing the builds directory")
        .map(|e| e.expect("an entry"))
        .filter(|e| e.file_type().expect("a type").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Rows of `upserv list`: (name, sticky, busy). The header names the
/// columns; a row is NAME SIZE DATE TIME STICKY BUSY; an empty line ends
/// the table (the totals and downloads follow).
fn parse_list(stdout: &str) -> Vec<(String, String, String)> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SIZE", "LAST", "ACCESS", "(UTC)", "STICKY", "BUSY"],
        "{stdout}"
    );
    lines
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 6, "a row of six fields: {line:?}");
            (
                fields[0].to_string(),
                fields[4].to_string(),
                fields[5].to_string(),
            )
        })
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn least_recently_pulled_goes_first_never_sticky_or_busy_and_the_order_survives_a_restart() {
    let scene = Scene::new("builds-evict");
    let upserv = scene.daemon();

    // b1, b2, b3 fit; then b1 is pulled again, so b2 is the oldest.
    scene.pull_in_turn(&upserv, &["b1", "b2", "b3"]);
    scene.pull(&upserv, "b1", "b1-again");
    next_second();
    scene.pull(&upserv, "b4", "b4-first");
    assert_eq!(scene.cached(), names(&["b1", "b3", "b4"]), "b2 was oldest");
    next_second();

    // b3 pulled again: known exactly only in the daemon's memory, which a
    // clean stop must write down.
    scene.pull(&upserv, "b3", "b3-again");
    next_second();
    assert_eq!(upserv.terminate(STOP_TIMEOUT), 0, "a clean stop");
    let upserv = scene.daemon();
    scene.pull(&upserv, "b5", "b5-first");
    assert_eq!(
        scene.cached(),
        names(&["b3", "b4", "b5"]),
        "b1 (pulled before b4 and b3) was oldest after the restart"
    );
    next_second();

    // b4 is being pulled (held in the middle), b3 pinned, b5 touched sticky:
    // nothing may go, so b6 pushes the cache over its budget with a warning.
    let mut held = scene.hold(&upserv, "b4");
    next_second();
    let (code, _, stderr) = scene.admin(&["pin", "b3"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    std::fs::write(scene.builds().join("b5.sticky"), b"").expect("touch b5.sticky");
    scene.pull(&upserv, "b6", "b6-first");
    assert_eq!(scene.cached(), names(&["b3", "b4", "b5", "b6"]));
    assert!(
        upserv
            .log()
            .contains("but the rest are sticky, in use or just installed"),
        "a warning when only exempt builds remain:\n{}",
        upserv.log()
    );
    let listed = scene.listed();
    assert_eq!(
        listed,
        [
            ("b3".into(), "yes".into(), "no".into()),
            ("b4".into(), "no".into(), "yes".into()),
            ("b5".into(), "yes".into(), "no".into()),
            ("b6".into(), "no".into(), "no".into()),
        ]
    );

    // The held pull completes, unharmed.
    assert!(held.is_running(), "the held client waited");
    scene.release_whole(held, "b4");
    // No longer in use while the cache is over budget: the daemon evicts it
    // then, without waiting for a gc.
    wait_until("b4 to be evicted", || {
        scene.cached() == names(&["b3", "b5", "b6"])
    });

    // A tree an administrator puts there breaks the budget again; b6 is
    // now the oldest build that may go.
    next_second();
    let hand = scene.builds().join("b7");
    std::fs::create_dir(&hand).expect("mkdir b7");
    std::fs::write(hand.join("image.bin"), vec![7u8; BIG_FILE]).expect("writing b7");
    let (code, stdout, stderr) = scene.admin(&["gc", "--dry-run"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(stdout.starts_with("would evict b6 ("), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(scene.cached(), names(&["b3", "b5", "b6", "b7"]));
    let (code, stdout, stderr) = scene.admin(&["gc"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("evicted b6 ("), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(scene.cached(), names(&["b3", "b5", "b7"]));

    // Asked for again, b4 comes back; b7 is then the only build that may go.
    scene.pull(&upserv, "b4", "b4-back");
    assert_eq!(
        scene.up.gets("/b/b4.tar"),
        2,
        "an evicted build is fetched again"
    );
    assert_eq!(scene.cached(), names(&["b3", "b4", "b5"]));
}

#[test]
fn serve_mode_never_evicts_a_build_another_process_serves() {
    let scene = Scene::new("builds-evict-serve");
    let serve = scene.serve();
    scene.pull_in_turn(&serve, &["b1", "b2", "b3"]);
    // b1, the oldest, is being pulled by another process.
    let held = scene.hold(&serve, "b1");
    scene.pull(&serve, "b4", "b4-first");
    assert_eq!(
        scene.cached(),
        names(&["b1", "b3", "b4"]),
        "b2 went: b1 is busy in another process"
    );
    scene.release_whole(held, "b1");
    assert_eq!(
        serve.stderr_text(),
        "",
        "serve mode writes nothing on stderr"
    );
}

#[test]
fn admin_commands_next_to_a_running_daemon() {
    let scene = Scene::new("builds-admin");
    let upserv = scene.daemon();
    let builds = scene.builds();

    let (code, stdout, stderr) = scene.admin(&["fetch", "b1", "b2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "b1: cached in {}\nb2: cached in {}\n",
            builds.join("b1").display(),
            builds.join("b2").display()
        )
    );
    // Not a terminal: plain progress lines, no bar.
    assert!(
        stderr.starts_with("upserv: fetching b1 from upstream: ") && !stderr.contains('\r'),
        "{stderr}"
    );
    scene.pull(&upserv, "b1", "b1");
    assert_eq!(
        scene.up.gets("/b/b1.tar"),
        1,
        "the daemon serves what fetch put there"
    );

    let (code, stdout, stderr) = scene.admin(&["fetch", "b1"]);
    assert_eq!(
        (code, stderr.as_str()),
        (0, ""),
        "a cached build: no progress"
    );
    assert_eq!(
        stdout,
        format!("b1: cached in {}\n", builds.join("b1").display())
    );
    assert_eq!(scene.up.gets("/b/b1.tar"), 1);

    let (code, stdout, stderr) = scene.admin(&["fetch", "nosuch", "b3"]);
    assert_eq!(code, 1, "one of the builds failed");
    assert_eq!(
        stdout,
        format!("b3: cached in {}\n", builds.join("b3").display())
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "upserv fetch: nosuch not found upstream"),
        "{stderr}"
    );

    let unconfigured = run_upserv(&[
        "fetch",
        "b4",
        "--config",
        scene.dir.join("upserv.conf").to_str().expect("UTF-8"),
        "--builds",
        builds.to_str().expect("UTF-8"),
    ]);
    assert_eq!(unconfigured.0, 1);
    assert!(
        unconfigured.2.contains("no upstream configured"),
        "{}",
        unconfigured.2
    );

    let all_plain = |listed: Vec<(String, String, String)>| {
        listed
            .iter()
            .all(|(_, sticky, busy)| sticky == "no" && busy == "no")
    };
    let listed = scene.listed();
    let listed_names: Vec<&str> = listed.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(listed_names, ["b1", "b2", "b3"]);
    assert!(all_plain(listed));

    let (code, stdout, stderr) = scene.admin(&["pin", "b2"]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));
    assert!(builds.join("b2.sticky").exists());
    assert!(scene
        .listed()
        .contains(&("b2".into(), "yes".into(), "no".into())));
    for _ in 0..2 {
        let (code, _, stderr) = scene.admin(&["unpin", "b2"]);
        assert_eq!((code, stderr.as_str()), (0, ""), "unpin is idempotent");
        assert!(!builds.join("b2.sticky").exists());
    }
    assert!(all_plain(scene.listed()));

    let (code, _, stderr) = scene.admin(&["pin", "b9"]);
    assert_eq!(code, 0);
    assert_eq!(stderr, "upserv: note: build b9 is not cached (yet)\n");
    assert!(
        builds.join("b9.sticky").exists(),
        "pinned ahead of its fetch"
    );
    let (code, _, stderr) = scene.admin(&["pin", "../b1"]);
    assert_eq!(code, 2, "a bad name is bad usage: {stderr}");
    assert!(stderr.contains("../b1"), "{stderr}");

    let (code, stdout, stderr) = scene.admin(&["gc", "--dry-run"]);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "nothing to evict\n", "")
    );
    assert_eq!(scene.cached(), names(&["b1", "b2", "b3"]));
    // The daemon still serves, and lists, every build.
    let listing = pull(
        &upserv.url(""),
        &scene.dir.join("listing"),
        &[],
        Protocol::Default,
    );
    listing.assert_ok();
    for name in ["b1", "b2", "b3"] {
        assert!(
            listing.stdout.lines().any(|l| l.trim_end() == name),
            "{name} in the module list:\n{}",
            listing.stdout
        );
    }
}

#[test]
fn evict_removes_one_idle_unpinned_build() {
    let scene = Scene::new("builds-evict-one");
    let upserv = scene.daemon();
    scene.pull(&upserv, "b1", "b1");
    scene.pull(&upserv, "b2", "b2");

    let (code, stdout, stderr) = scene.admin(&["evict", "b1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("evicted b1 ("), "{stdout}");
    assert_eq!(scene.cached(), names(&["b2"]));
    let (code, _, stderr) = scene.admin(&["evict", "b1"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "upserv: build b1 is not cached\n");

    let (code, _, _) = scene.admin(&["pin", "b2"]);
    assert_eq!(code, 0);
    let (code, _, stderr) = scene.admin(&["evict", "b2"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "upserv: build b2 is pinned; unpin it first\n");
    scene.admin(&["unpin", "b2"]);

    let held = scene.hold(&upserv, "b2");
    let (code, _, stderr) = scene.admin(&["evict", "b2"]);
    assert_eq!(code, 1);
    assert_eq!(stderr, "upserv: build b2 is in use; kept\n");
    assert_eq!(held.release(), 0);
    assert_eq!(scene.cached(), names(&["b2"]));

    // The daemon fetches an evicted build again on demand.
    scene.pull(&upserv, "b1", "b1-again");
    assert_eq!(scene.up.gets("/b/b1.tar"), 2);
}

#[test]
fn refetch_swaps_in_the_new_tree_only_when_complete_and_idle() {
    let scene = Scene::new("builds-refetch");
    let upserv = scene.daemon();
    scene.pull(&upserv, "b1", "b1");
    let (new_tree, archive) = build_tree("b1", 0x5a);
    scene.up.put("/b/b1.tar", archive);

    // A laptop is pulling the old tree: the new one waits, complete, in
    // scratch space until it is done.
    let held = scene.hold(&upserv, "b1");
    let args = scene.admin_args(&["refetch", "b1"]);
    let mut refetch = upserv_command()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting upserv refetch");
    let ready = scene.builds().join(".upserv/unpack/b1/table");
    wait_until("the new tree to be ready", || ready.exists());
    assert!(refetch.try_wait().expect("refetch status").is_none());
    let served = std::fs::read(scene.builds().join("b1/image.bin")).expect("old tree");
    assert_eq!(
        served,
        vec![1u8; BIG_FILE],
        "the old tree is still in place"
    );
    assert_eq!(held.release(), 0, "the pull of the old tree finishes whole");

    let done = refetch.wait_with_output().expect("refetch output");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&done.stdout), "b1: fetched again\n");
    assert_eq!(scene.up.gets("/b/b1.tar"), 2);
    let dest = scene.dir.join("b1-new");
    pull(&upserv.url("b1/"), &dest, PULL_OPTS, Protocol::Default).assert_ok();
    assert_same(&Snapshot::of(new_tree.root()), &Snapshot::of(&dest));
    assert!(private_leftovers(&scene.builds()).is_empty());
}

#[test]
fn a_build_larger_than_the_budget_is_refused() {
    let scene = Scene::new("builds-too-large");
    let upserv = upserv_for(
        &scene.up,
        "/b/{name}.tar",
        &scene.builds(),
        &["--cache-size", "50K"],
    );
    let result = pull(
        &upserv.url("b1/"),
        &scene.dir.join("dest"),
        PULL_OPTS,
        Protocol::Default,
    );
    assert_eq!(result.code, 5, "{result:?}");
    let error = result
        .stderr
        .lines()
        .find(|l| l.starts_with("@ERROR: "))
        .unwrap_or_else(|| panic!("no @ERROR line:\n{}", result.stderr));
    assert!(
        error.starts_with("@ERROR: build b1 needs ")
            && error.ends_with(", more than the whole cache size of 50.0K"),
        "{error}"
    );
    assert!(scene.cached().is_empty());
}

/// `upserv fetch` on a terminal draws one bar, redrawn in place, instead of
/// the plain lines it prints elsewhere. `script` (util-linux) provides the
/// terminal.
#[test]
fn fetch_on_a_terminal_draws_a_progress_bar() {
    let scene = Scene::new("builds-fetch-tty");
    let mut argv = crate::support::upserv::upserv_argv();
    argv.extend(scene.admin_args(&["fetch", "b1"]));
    let line: Vec<String> = argv
        .iter()
        .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
        .collect();
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &line.join(" "), "/dev/null"]);
    let done = crate::support::proc::run_with_deadline(&mut script, Duration::from_secs(60))
        .expect("running script(1) from util-linux");
    let text = String::from_utf8_lossy(&done.stdout);
    assert_eq!(done.code, 0, "{text}");
    assert!(
        text.contains("\rb1 [") && text.contains("] 100% ") && text.contains("\x1b[K"),
        "a bar redrawn in place: {text:?}"
    );
    assert!(
        !text.contains("upserv: fetching b1 from upstream"),
        "no plain lines on a terminal: {text:?}"
    );
    let cached = format!("b1: cached in {}", scene.builds().join("b1").display());
    assert!(text.contains(&cached), "{text:?}");
    assert_eq!(scene.up.gets("/b/b1.tar"), 1);
}
