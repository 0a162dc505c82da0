//! The cache across processes and crashes: kill -9 in the middle of a
//! download, leftovers of an unpacking that died, and two `serve`-mode
//! processes asking for the same missing build.
//!
//! Child processes are this test binary run again with `--exact
//! child_process_entry` and the job in an environment variable.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::support::scratch::scratch_dir;
use crate::support::upstream::{sample_build, tree_listing, Behavior, Upstream};
use crate::support::wait::{wait_until, WAIT_LIMIT};
use upserv::cache::{Cache, CacheConfig};

const CHILD_ENV: &str = "UPSERV_CACHE_TEST_CHILD";

fn config(builds: &Path, template: &str, serve: bool) -> CacheConfig {
    let mut cfg = CacheConfig::new(builds);
    cfg.upstream = Some(template.to_string());
    cfg.fetch_timeout = Duration::from_secs(10);
    cfg.fetch_attempts = 1;
    cfg.cross_process_lock = serve;
    cfg
}

/// The body of the child processes; does nothing when run as a plain test.
#[test]
fn child_process_entry() {
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return;
    };
    let fields: Vec<&str> = job.split('\t').collect();
    let [builds, template, name, serve] = fields[..] else {
        panic!("bad child job {job:?}");
    };
    let cache = Cache::open(config(Path::new(builds), template, serve == "serve")).unwrap();
    let result = cache.acquire(name, &mut |line| println!("CHILD progress {line}"));
    match result {
        Ok(Some(guard)) => println!("CHILD ok {}", guard.root().display()),
        Ok(None) => println!("CHILD none"),
        Err(e) => println!("CHILD error {e}"),
    }
}

/// Starts a child acquiring `name`; its `CHILD ...` lines go to `lines`.
fn spawn_child(
    builds: &Path,
    template: &str,
    name: &str,
    serve: bool,
    lines: &mpsc::Sender<String>,
) -> Child {
    let mode = if serve { "serve" } else { "daemon" };
    let job = format!("{}\t{template}\t{name}\t{mode}", builds.display());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cache_process::child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, job)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let lines = lines.clone();
    thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // libtest prints "test NAME ... " before the test's first line.
            if let Some(at) = line.find("CHILD ") {
                let _ = lines.send(line[at + "CHILD ".len()..].to_string());
            }
        }
    });
    child
}

fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(WAIT_LIMIT)
        .expect("a line from a child process")
}

/// Waits until the file at `path` holds `len` bytes (another process writes it).
fn wait_for_len(path: &Path, len: u64) {
    wait_until(&format!("{} to reach {len} bytes", path.display()), || {
        std::fs::metadata(path).map_or(0, |m| m.len()) >= len
    });
}

#[test]
fn kill_9_during_download_then_resume() {
    let dir = scratch_dir("kill9");
    let builds = dir.join("builds");
    let up = Upstream::start();
    let archive = sample_build("build-k", "survived");
    let half = archive.len() / 2;
    up.put("/b/build-k.tar", archive);
    up.gate_after("/b/build-k.tar", half);
    let template = up.url("/b/{name}.tar");
    let (tx, _lines) = mpsc::channel();

    let mut child = spawn_child(&builds, &template, "build-k", false, &tx);
    up.wait_at_gate(1);
    wait_for_len(&builds.join(".upserv/partial/build-k.part"), half as u64);
    assert!(!builds.join("build-k").exists(), "a half build is visible");
    child.kill().unwrap();
    child.wait().unwrap();
    up.set_behavior("/b/build-k.tar", Behavior::default());
    up.open_gate();

    let cache = Cache::open(config(&builds, &template, false)).unwrap();
    assert!(cache.list_modules().is_empty());
    let guard = cache.acquire("build-k", &mut |_| {}).unwrap().unwrap();
    assert_eq!(
        std::fs::read(guard.root().join("README")).unwrap(),
        b"survived"
    );
    assert_eq!(
        up.ranges("/b/build-k.tar"),
        [None, Some(format!("bytes={half}-"))]
    );
}

#[test]
fn crash_during_unpack_leaves_nothing_visible_and_completes() {
    let dir = scratch_dir("unpack-crash");
    let builds = dir.join("builds");
    let up = Upstream::start();
    let archive = sample_build("build-u", "unpacked");
    let len = archive.len();
    up.put("/b/build-u.tar", archive.clone());
    let template = up.url("/b/{name}.tar");

    // What a process killed while unpacking leaves: a complete download, a
    // half-written scratch tree, and trash from an interrupted eviction.
    let private = builds.join(".upserv");
    for sub in ["partial", "unpack/build-u/tree/bin", "trash/old.1.2"] {
        std::fs::create_dir_all(private.join(sub)).unwrap();
    }
    std::fs::write(private.join("partial/build-u.part"), &archive).unwrap();
    let info = format!("url {}\nlength {len}\n", up.url("/b/build-u.tar"));
    std::fs::write(private.join("partial/build-u.info"), info).unwrap();
    std::fs::write(private.join("unpack/build-u/tree/bin/tool"), b"half").unwrap();
    std::fs::write(private.join("trash/old.1.2/file"), b"x").unwrap();

    let cache = Cache::open(config(&builds, &template, false)).unwrap();
    assert!(cache.list_modules().is_empty());
    assert_eq!(tree_listing(&private.join("unpack")), Vec::<String>::new());
    // The trash is emptied in the background.
    wait_until("the trash to be emptied", || {
        tree_listing(&private.join("trash")).is_empty()
    });
    assert!(
        private.join("partial/build-u.part").exists(),
        "the download is kept"
    );

    let guard = cache.acquire("build-u", &mut |_| {}).unwrap().unwrap();
    assert_eq!(
        std::fs::read(guard.root().join("README")).unwrap(),
        b"unpacked"
    );
    // Only the range after the complete file was asked for: nothing downloaded again.
    assert_eq!(up.ranges("/b/build-u.tar"), [Some(format!("bytes={len}-"))]);
    assert!(!private.join("partial/build-u.part").exists());
}

#[test]
fn two_serve_processes_download_once() {
    let dir = scratch_dir("serve-two");
    let builds = dir.join("builds");
    let up = Upstream::start();
    up.put("/b/build-s.tar", sample_build("build-s", "shared"));
    up.gate_after("/b/build-s.tar", 1000);
    let template = up.url("/b/{name}.tar");
    let (tx, lines) = mpsc::channel();

    let mut children = [
        spawn_child(&builds, &template, "build-s", true, &tx),
        spawn_child(&builds, &template, "build-s", true, &tx),
    ];
    up.wait_at_gate(1);
    loop {
        let line = next_line(&lines);
        assert!(!line.starts_with("error"), "{line}");
        if line == "progress upserv: waiting for another download of build-s to finish" {
            break;
        }
    }
    up.open_gate();
    let mut finished = Vec::new();
    while finished.len() < 2 {
        let line = next_line(&lines);
        if !line.starts_with("progress ") {
            finished.push(line);
        }
    }
    let expected = format!("ok {}", builds.join("build-s").display());
    assert_eq!(finished, [expected.clone(), expected]);
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(up.gets("/b/build-s.tar"), 1);
}
