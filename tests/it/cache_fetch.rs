//! The build cache against a loopback upstream: one download per build,
//! shared downloads, cached builds never waiting, resume, 404 memory,
//! failures, checksums and every archive format.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::support::scratch::scratch_dir;
use crate::support::upstream::{
    compress, digest_file, refused_url, sample_build, tar_of, tree_listing, Behavior, Entry,
    Upstream,
};
use crate::support::wait::WAIT_LIMIT;
use upserv::cache::{Cache, CacheConfig};

/// Settings fetching `/b/NAME{ending}` from `upstream`, three attempts.
fn config(dir: &Path, upstream: &Upstream, ending: &str) -> CacheConfig {
    settings(dir, &upstream.url(&format!("/b/{{name}}{ending}")), 3)
}

/// Settings whose `upstream` lists these mirrors' templates, in order.
fn mirrored(dir: &Path, upstream: &str) -> CacheConfig {
    settings(dir, upstream, 2)
}

/// Builds in `dir/builds` from the `upstream` templates, with `attempts`
/// per download and short timeouts.
fn settings(dir: &Path, upstream: &str, attempts: u32) -> CacheConfig {
    let mut cfg = CacheConfig::new(dir.join("builds"));
    cfg.upstream = Some(upstream.to_string());
    cfg.fetch_timeout = Duration::from_secs(10);
    cfg.fetch_attempts = attempts;
    cfg.retry_backoff = Duration::from_millis(10);
    cfg
}

/// A cache fetching `/b/NAME.tar` from `up`, checked against the sum file
/// `/b/NAME.tar{sum_ending}`.
fn checked_cache(dir: &Path, up: &Upstream, sum_ending: &str) -> Cache {
    let mut cfg = config(dir, up, ".tar");
    cfg.upstream_checksum = Some(up.url(&format!("/b/{{name}}.tar{sum_ending}")));
    Cache::open(cfg).unwrap()
}

/// The README of build `name`, acquired from `cache`.
fn readme(cache: &Cache, name: &str) -> Vec<u8> {
    let guard = cache.acquire(name, &mut |_| {}).unwrap().unwrap();
    std::fs::read(guard.root().join("README")).unwrap()
}

fn expected_listing() -> Vec<String> {
    ["README", "bin/", "bin/tool", "latest"]
        .map(String::from)
        .to_vec()
}

#[test]
fn one_get_for_one_build_and_its_tree() {
    let dir = scratch_dir("one-get");
    let up = Upstream::start();
    up.put("/b/build-1.tar", sample_build("build-1", "first"));
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();

    let mut lines = Vec::new();
    let guard = cache
        .acquire("build-1", &mut |l| lines.push(l.to_string()))
        .unwrap()
        .unwrap();
    assert_eq!(guard.name(), "build-1");
    assert_eq!(guard.root(), dir.join("builds/build-1"));
    assert_eq!(tree_listing(guard.root()), expected_listing());
    assert_eq!(
        std::fs::read(guard.root().join("README")).unwrap(),
        b"first"
    );
    assert_eq!(
        std::fs::read_link(guard.root().join("latest")).unwrap(),
        Path::new("bin/tool")
    );
    assert!(
        lines[0].starts_with("upserv: fetching build-1 from upstream: "),
        "{lines:?}"
    );

    let meta = guard.meta().expect("a table for a fetched build");
    assert_eq!(meta.get(b"bin/tool").unwrap().mode, 0o100755);
    assert_eq!(meta.get(b"").unwrap().mode, 0o040755);
    assert_eq!(meta.get(b"latest").unwrap().mode & 0o170000, 0o120000);

    let again = cache
        .acquire("build-1", &mut |_| panic!("no progress for a cached build"))
        .unwrap()
        .unwrap();
    assert!(
        Arc::ptr_eq(&meta, &again.meta().unwrap()),
        "one table, shared"
    );
    drop((guard, again));
    assert_eq!(up.gets("/b/build-1.tar"), 1);
    assert_eq!(cache.list_modules(), ["build-1"]);
    // Names that can never be builds are unknown modules, not fetched.
    assert!(cache.acquire(".upserv", &mut |_| {}).unwrap().is_none());
    assert!(cache.acquire("../x", &mut |_| {}).unwrap().is_none());
    assert_eq!(up.gets("/b/.upserv.tar"), 0);
}

#[test]
fn without_upstream_a_missing_build_is_unknown() {
    let dir = scratch_dir("no-upstream");
    let cache = Cache::open(CacheConfig::new(dir.join("builds"))).unwrap();
    assert!(cache.acquire("build-1", &mut |_| {}).unwrap().is_none());
    // A tree an administrator put there is served, with no table.
    std::fs::create_dir_all(dir.join("builds/manual/etc")).unwrap();
    let guard = cache.acquire("manual", &mut |_| {}).unwrap().unwrap();
    assert!(guard.meta().is_none());
    assert_eq!(cache.list_modules(), ["manual"]);
}

#[test]
fn ten_concurrent_acquires_share_one_download() {
    let dir = scratch_dir("ten");
    let up = Upstream::start();
    up.put("/b/build-10.tar", sample_build("build-10", "ten"));
    up.gate_after("/b/build-10.tar", 4096);
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();

    let waiting = Arc::new((Mutex::new(0usize), Condvar::new()));
    let workers: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            let waiting = Arc::clone(&waiting);
            thread::spawn(move || {
                let mut counted = false;
                let guard = cache.acquire("build-10", &mut |_| {
                    if !counted {
                        counted = true;
                        *waiting.0.lock().unwrap() += 1;
                        waiting.1.notify_all();
                    }
                });
                guard.map(|g| g.map(|g| tree_listing(g.root())))
            })
        })
        .collect();
    // All ten hear about the download in progress before it may finish.
    let count = waiting.0.lock().unwrap();
    let (count, timeout) = waiting
        .1
        .wait_timeout_while(count, WAIT_LIMIT, |c| *c < 10)
        .unwrap();
    assert!(
        !timeout.timed_out(),
        "only {} of 10 acquires were waiting",
        *count
    );
    drop(count);
    up.open_gate();
    for worker in workers {
        assert_eq!(worker.join().unwrap().unwrap().unwrap(), expected_listing());
    }
    assert_eq!(up.gets("/b/build-10.tar"), 1);
}

#[test]
fn cached_acquire_does_not_wait_for_a_download() {
    let dir = scratch_dir("no-wait");
    let up = Upstream::start();
    up.put("/b/cached.tar", sample_build("cached", "c"));
    up.put("/b/slow.tar", sample_build("slow", "s"));
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();
    drop(cache.acquire("cached", &mut |_| {}).unwrap().unwrap());

    up.gate_after("/b/slow.tar", 1000);
    let slow_cache = cache.clone();
    let slow = thread::spawn(move || slow_cache.acquire("slow", &mut |_| {}).map(|g| g.is_some()));
    up.wait_at_gate(1);

    // On a thread, so that a cached acquire stuck behind the download fails
    // the test instead of hanging it.
    let (done, result) = std::sync::mpsc::channel();
    let cached_cache = cache.clone();
    thread::spawn(move || {
        let guard = cached_cache.acquire("cached", &mut |_| {});
        let _ = done.send(guard.map(|g| g.map(|g| tree_listing(g.root()))));
    });
    let listing = result
        .recv_timeout(WAIT_LIMIT)
        .expect("the cached acquire waited for the download");
    assert_eq!(listing.unwrap().unwrap(), expected_listing());
    assert!(
        !slow.is_finished(),
        "the slow download finished while its body was held"
    );
    up.open_gate();
    assert_eq!(slow.join().unwrap(), Ok(true));
}

#[test]
fn cut_body_resumes_with_range_and_verifies() {
    let dir = scratch_dir("resume");
    let up = Upstream::start();
    let archive = sample_build("build-r", "resumed");
    let half = archive.len() / 2;
    up.put("/b/build-r.tar.md5", digest_file("md5sum", &archive));
    up.put("/b/build-r.tar", archive);
    up.cut_once("/b/build-r.tar", half);
    let cache = checked_cache(&dir, &up, ".md5");
    assert_eq!(readme(&cache, "build-r"), b"resumed");
    up.assert_asked_again_from("/b/build-r.tar", half);
}

#[test]
fn ignored_range_restarts_from_zero() {
    let dir = scratch_dir("restart");
    let up = Upstream::start();
    let archive = sample_build("build-i", "restarted");
    let half = archive.len() / 2;
    up.put("/b/build-i.tar.sha256", digest_file("sha256sum", &archive));
    up.put("/b/build-i.tar", archive);
    up.set_behavior(
        "/b/build-i.tar",
        Behavior {
            cut: Some((half, 1)),
            ignore_range: true,
            ..Behavior::default()
        },
    );
    let cache = checked_cache(&dir, &up, ".sha256");

    let guard = cache.acquire("build-i", &mut |_| {}).unwrap().unwrap();
    assert_eq!(
        std::fs::read(guard.root().join("README")).unwrap(),
        b"restarted"
    );
    assert_eq!(tree_listing(guard.root()), expected_listing());
    up.assert_asked_again_from("/b/build-i.tar", half);
}

#[test]
fn not_found_is_remembered_for_the_ttl() {
    let dir = scratch_dir("404");
    let up = Upstream::start();
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();
    for _ in 0..3 {
        let err = cache.acquire("build-404", &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "build-404 not found upstream");
    }
    assert_eq!(up.gets("/b/build-404.tar"), 1);
    drop(cache);

    // Once the memory has expired (a zero TTL here), the upstream is asked again.
    let mut cfg = config(&dir, &up, ".tar");
    cfg.not_found_ttl = Duration::ZERO;
    let cache = Cache::open(cfg).unwrap();
    assert!(cache.acquire("build-404", &mut |_| {}).is_err());
    assert_eq!(up.gets("/b/build-404.tar"), 2);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let dir = scratch_dir("500");
    let up = Upstream::start();
    up.put("/b/build-e.tar", sample_build("build-e", "e"));
    up.answer_status("/b/build-e.tar", 500);
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();
    let err = cache
        .acquire("build-e", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("fetching build-e from upstream failed: "),
        "{err}"
    );
    assert!(err.contains("HTTP 500"), "{err}");
    assert_eq!(up.gets("/b/build-e.tar"), 3);
    assert!(cache.list_modules().is_empty());

    // An unreachable upstream says so too.
    let mut cfg = config(&dir, &up, ".tar");
    cfg.upstream = Some("http://127.0.0.1:1/b/{name}.tar".into());
    cfg.fetch_attempts = 1;
    let err = Cache::open(cfg)
        .unwrap()
        .acquire("build-e", &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("upstream request for http://127.0.0.1:1/b/build-e.tar failed"),
        "{err}"
    );
}

#[test]
fn wrong_checksum_is_never_served() {
    let dir = scratch_dir("checksum");
    let up = Upstream::start();
    let archive = sample_build("build-c", "checked");
    up.put(
        "/b/build-c.tar.md5",
        b"0123456789abcdef0123456789abcdef  build-c.tar\n".to_vec(),
    );
    up.put("/b/build-c.tar", archive.clone());
    let cache = checked_cache(&dir, &up, ".md5");
    let err = cache
        .acquire("build-c", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not match the upstream checksum"),
        "{err}"
    );
    assert!(cache.list_modules().is_empty());
    assert!(!dir.join("builds/build-c").exists());
    assert!(!dir.join("builds/.upserv/partial/build-c.part").exists());

    up.put("/b/build-c.tar.md5", digest_file("md5sum", &archive));
    assert_eq!(readme(&cache, "build-c"), b"checked");
}

#[test]
fn every_archive_format_unpacks() {
    let dir = scratch_dir("formats");
    let up = Upstream::start();
    let formats: [(&str, &[&str]); 6] = [
        (".tar", &["cat"]),
        (".tar.gz", &["gzip", "-c"]),
        (".tgz", &["gzip", "-c"]),
        (".tar.bz2", &["bzip2", "-c"]),
        (".tar.xz", &["xz", "-c"]),
        (".tar.lzma", &["xz", "--format=lzma", "-c"]),
    ];
    for (number, (ending, tool)) in formats.iter().enumerate() {
        let name = format!("fmt-{number}");
        let marker = format!("format {ending}");
        up.put(
            &format!("/b/{name}{ending}"),
            compress(&sample_build(&name, &marker), tool),
        );
        let cache = Cache::open(config(&dir, &up, ending)).unwrap();
        let guard = cache
            .acquire(&name, &mut |_| {})
            .unwrap_or_else(|e| panic!("{ending}: {e}"))
            .unwrap();
        assert_eq!(tree_listing(guard.root()), expected_listing(), "{ending}");
        assert_eq!(
            std::fs::read(guard.root().join("README")).unwrap(),
            marker.as_bytes()
        );
        assert_eq!(
            std::fs::read(guard.root().join("bin/tool")).unwrap(),
            vec![7u8; 70_000]
        );
    }
}

#[test]
fn a_build_larger_than_the_cache_is_refused() {
    let dir = scratch_dir("too-large");
    let up = Upstream::start();
    up.put("/b/big.tar", sample_build("big", "big"));
    let mut cfg = config(&dir, &up, ".tar");
    cfg.cache_size = 16 * 1024;
    let cache = Cache::open(cfg).unwrap();
    let err = cache.acquire("big", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("more than the whole cache size"), "{err}");
    assert!(cache.list_modules().is_empty());
}

#[test]
fn bad_upstream_template_is_a_config_error() {
    let dir = scratch_dir("template");
    let mut cfg = CacheConfig::new(dir.join("builds"));
    cfg.upstream = Some("http://h/{name}.zip".into());
    let err = Cache::open(cfg).err().unwrap().to_string();
    assert!(err.contains("does not end in .tar"), "{err}");
}

#[test]
fn a_stalled_upstream_times_out_with_a_clear_error() {
    let dir = scratch_dir("stall");
    let up = Upstream::start();
    up.put("/b/stuck.tar", sample_build("stuck", "s"));
    up.gate_after("/b/stuck.tar", 1000);
    let mut cfg = config(&dir, &up, ".tar");
    cfg.fetch_timeout = Duration::from_millis(200);
    cfg.fetch_attempts = 1;
    let cache = Cache::open(cfg).unwrap();
    let err = cache.acquire("stuck", &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.starts_with("fetching stuck from upstream failed: download of "),
        "{err}"
    );
    assert!(err.contains("timeout"), "{err}");
    assert!(cache.list_modules().is_empty());
    // What arrived is kept for the next attempt to resume.
    let part = dir.join("builds/.upserv/partial/stuck.part");
    assert_eq!(std::fs::metadata(part).unwrap().len(), 1000);
}

/// Runs `acquire` on a thread so that a download that never ends fails
/// the test instead of hanging it; the error text.
fn acquire_error(cache: &Cache, name: &str) -> String {
    let (done, result) = std::sync::mpsc::channel();
    let cache = cache.clone();
    let name = name.to_string();
    thread::spawn(move || {
        let outcome = cache.acquire(&name, &mut |_| {}).map(|g| g.is_some());
        let _ = done.send(outcome);
    });
    result
        .recv_timeout(WAIT_LIMIT)
        .expect("the download did not end")
        .expect_err("the download succeeded")
        .to_string()
}

#[test]
fn an_endless_body_stops_at_the_budget() {
    let dir = scratch_dir("endless");
    let up = Upstream::start();
    up.put("/b/endless.tar", sample_build("endless", "e"));
    up.set_behavior(
        "/b/endless.tar",
        Behavior {
            endless: true,
            ..Behavior::default()
        },
    );
    let mut cfg = config(&dir, &up, ".tar");
    cfg.cache_size = 1 << 20;
    let cache = Cache::open(cfg).unwrap();
    let err = acquire_error(&cache, "endless");
    assert!(
        err.starts_with("build endless needs ") && err.contains("more than the whole cache size"),
        "{err}"
    );
    // Final: not retried, and what arrived is gone (it can never fit).
    assert_eq!(up.gets("/b/endless.tar"), 1);
    assert!(!dir.join("builds/.upserv/partial/endless.part").exists());
    assert!(cache.list_modules().is_empty());
}

#[test]
fn a_redirect_loop_is_a_final_error() {
    let dir = scratch_dir("redirect-loop");
    let up = Upstream::start();
    up.set_behavior(
        "/b/loop.tar",
        Behavior {
            redirect: Some("/b/loop.tar".into()),
            ..Behavior::default()
        },
    );
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();
    let err = acquire_error(&cache, "loop");
    assert!(err.contains("too many redirects"), "{err}");
    // One attempt: the first request and the redirects it followed.
    assert_eq!(up.gets("/b/loop.tar"), 6);
}

#[test]
fn a_trickling_upstream_is_dropped_below_the_minimum_rate() {
    let dir = scratch_dir("trickle");
    let up = Upstream::start();
    up.put("/b/trickle.tar", sample_build("trickle", "t"));
    // About 1 KB/s, where 8 KiB/s are asked for.
    up.set_behavior(
        "/b/trickle.tar",
        Behavior {
            pace: Some((100, Duration::from_millis(100))),
            ..Behavior::default()
        },
    );
    let mut cfg = config(&dir, &up, ".tar");
    cfg.fetch_min_rate = 8 << 10;
    cfg.min_rate_window = Duration::from_secs(1);
    cfg.fetch_attempts = 1;
    let cache = Cache::open(cfg).unwrap();
    let err = acquire_error(&cache, "trickle");
    assert!(
        err.contains("was too slow: ") && err.contains("less than the minimum of 8192 bytes/s"),
        "{err}"
    );
    // What arrived stays for resuming.
    let part = dir.join("builds/.upserv/partial/trickle.part");
    assert!(std::fs::metadata(part).unwrap().len() > 0);
    assert!(cache.list_modules().is_empty());
}

#[test]
fn progress_keeps_showing_received_bytes_through_a_stall() {
    let dir = scratch_dir("stall-progress");
    let up = Upstream::start();
    let archive = sample_build("stalled", "s");
    let (len, half) = (archive.len(), archive.len() / 2);
    up.put("/b/stalled.tar", archive);
    up.cut_once("/b/stalled.tar", half);
    let mut cfg = config(&dir, &up, ".tar");
    cfg.fetch_attempts = 1;
    let cache = Cache::open(cfg).unwrap();
    assert!(cache.acquire("stalled", &mut |_| {}).is_err());

    // The resumed download sends 1000 more bytes, then stalls.
    up.gate_after("/b/stalled.tar", 1000);
    let (lines, seen) = std::sync::mpsc::channel();
    let waiting = cache.clone();
    let download = thread::spawn(move || {
        waiting
            .acquire("stalled", &mut |l| {
                let _ = lines.send(l.to_string());
            })
            .map(|g| g.is_some())
    });
    up.wait_at_gate(1);
    let percent = format!(": {}% ", (half + 1000) * 100 / len);
    let mut showing = 0;
    while showing < 2 {
        let line = seen
            .recv_timeout(WAIT_LIMIT)
            .expect("progress lines stopped during the stall");
        if line.contains(&percent) {
            showing += 1;
        }
    }
    up.open_gate();
    assert_eq!(download.join().unwrap(), Ok(true));
}

/// The URLs of `path` at each of `mirrors`, separated by spaces.
fn at_each(mirrors: &[&Upstream], path: &str) -> String {
    let urls: Vec<String> = mirrors.iter().map(|m| m.url(path)).collect();
    urls.join(" ")
}

#[test]
fn a_refusing_first_mirror_is_skipped_and_remembered() {
    let dir = scratch_dir("mirror-closed");
    let second = Upstream::start();
    second.put("/b/m1.tar", sample_build("m1", "from the second"));
    let upstream = format!(
        "{} {}",
        refused_url("/b/{name}.tar"),
        second.url("/b/{name}.tar")
    );
    let cache = Cache::open(mirrored(&dir, &upstream)).unwrap();
    assert_eq!(readme(&cache, "m1"), b"from the second");
    let states = cache.mirrors();
    assert!(states[0].down_for.is_some(), "{states:?}");
    assert_eq!(states[1].down_for, None);
}

#[test]
fn a_mirror_answering_503_is_skipped_and_not_asked_again_for_a_while() {
    let dir = scratch_dir("mirror-503");
    let (first, second) = (Upstream::start(), Upstream::start());
    for name in ["m1", "m2"] {
        let path = format!("/b/{name}.tar");
        let archive = sample_build(name, "second");
        first.put(&format!("{path}.md5"), b"nonsense".to_vec());
        second.put(&format!("{path}.md5"), digest_file("md5sum", &archive));
        second.put(&path, archive);
        first.answer_status(&path, 503);
    }
    let mut cfg = mirrored(&dir, &at_each(&[&first, &second], "/b/{name}.tar"));
    // Paired by position: each mirror's archive is checked against its own sum.
    cfg.upstream_checksum = Some(at_each(&[&first, &second], "/b/{name}.tar.md5"));
    let cache = Cache::open(cfg).unwrap();
    assert_eq!(readme(&cache, "m1"), b"second");
    assert_eq!(first.gets("/b/m1.tar"), 1);
    assert_eq!(first.gets("/b/m1.tar.md5"), 0);
    assert_eq!(second.gets("/b/m1.tar.md5"), 1);
    // The next download goes straight to the second mirror.
    assert_eq!(readme(&cache, "m2"), b"second");
    assert_eq!(first.gets("/b/m2.tar"), 0);
    assert!(cache.mirrors()[0].down_for.unwrap() > Duration::from_secs(60));
}

#[test]
fn not_found_at_one_mirror_is_not_final_but_at_all_it_is() {
    let dir = scratch_dir("mirror-404");
    let (first, second) = (Upstream::start(), Upstream::start());
    second.put("/b/only2.tar", sample_build("only2", "only at the second"));
    let cache = Cache::open(mirrored(
        &dir,
        &at_each(&[&first, &second], "/b/{name}.tar"),
    ))
    .unwrap();
    assert_eq!(readme(&cache, "only2"), b"only at the second");
    // A 404 does not make a mirror count as down.
    assert!(cache.mirrors().iter().all(|m| m.down_for.is_none()));

    let err = cache.acquire("nowhere", &mut |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "nowhere not found upstream");
    // Each mirror was asked once: a 404 is not retried.
    assert_eq!(first.gets("/b/nowhere.tar"), 1);
    assert_eq!(second.gets("/b/nowhere.tar"), 1);
}

#[test]
fn a_cut_download_resumes_at_the_mirror_that_sent_it() {
    let dir = scratch_dir("mirror-resume");
    let (first, second) = (Upstream::start(), Upstream::start());
    let archive = sample_build("cut", "resumed");
    let half = archive.len() / 2;
    first.put("/b/cut.tar", archive.clone());
    second.put("/b/cut.tar", archive);
    second.cut_once("/b/cut.tar", half);
    // The second mirror alone sends half, then the connection breaks.
    let mut cfg = mirrored(&dir, &second.url("/b/{name}.tar"));
    cfg.fetch_attempts = 1;
    assert!(Cache::open(cfg)
        .unwrap()
        .acquire("cut", &mut |_| {})
        .is_err());

    // With both mirrors, the rest comes from the second, not afresh from the first.
    let cache = Cache::open(mirrored(
        &dir,
        &at_each(&[&first, &second], "/b/{name}.tar"),
    ))
    .unwrap();
    assert_eq!(readme(&cache, "cut"), b"resumed");
    assert_eq!(first.gets("/b/cut.tar"), 0);
    second.assert_asked_again_from("/b/cut.tar", half);
}

/// After a cut, the upstream answers each range with only a part of the
/// rest and no total (`bytes START-END/*`): the length the first answer
/// announced still decides when the archive is whole.
#[test]
fn a_short_body_of_known_length_is_never_complete() {
    let dir = scratch_dir("short");
    let up = Upstream::start();
    let archive = sample_build("short", "whole at last");
    let (half, quarter) = (archive.len() / 2, archive.len() / 4 + 1);
    up.put("/b/short.tar", archive);
    up.set_behavior(
        "/b/short.tar",
        Behavior {
            cut: Some((half, 1)),
            short_range: Some(quarter),
            ..Behavior::default()
        },
    );
    let cache = Cache::open(config(&dir, &up, ".tar")).unwrap();
    assert_eq!(readme(&cache, "short"), b"whole at last");
    assert_eq!(tree_listing(&dir.join("builds/short")), expected_listing());
    assert_eq!(
        up.ranges("/b/short.tar"),
        [
            None,
            Some(format!("bytes={half}-")),
            Some(format!("bytes={}-", half + quarter))
        ]
    );
}

#[test]
fn a_stalling_first_mirror_is_left_for_the_second() {
    let dir = scratch_dir("mirror-stall");
    let (first, second) = (Upstream::start(), Upstream::start());
    for up in [&first, &second] {
        up.put("/b/s.tar", sample_build("s", "whole"));
    }
    first.gate_after("/b/s.tar", 1000);
    let mut cfg = mirrored(&dir, &at_each(&[&first, &second], "/b/{name}.tar"));
    cfg.fetch_timeout = Duration::from_millis(500);
    cfg.fetch_attempts = 1;
    let cache = Cache::open(cfg).unwrap();
    assert_eq!(readme(&cache, "s"), b"whole");
    assert_eq!(second.ranges("/b/s.tar"), [None]);
    assert!(cache.mirrors()[0].down_for.is_some());
}

/// The archive changed upstream after a cut: the validator the first answer
/// gave no longer matches, so the mirror sends the new archive whole.
#[test]
fn a_changed_archive_starts_over_instead_of_resuming() {
    let dir = scratch_dir("changed");
    let up = Upstream::start();
    let old = sample_build("changed", "old");
    let half = old.len() / 2;
    up.put("/b/changed.tar", old);
    up.cut_once("/b/changed.tar", half);
    let mut cfg = config(&dir, &up, ".tar");
    cfg.fetch_attempts = 1;
    let cache = Cache::open(cfg).unwrap();
    assert!(cache.acquire("changed", &mut |_| {}).is_err());

    up.put(
        "/b/changed.tar",
        tar_of(&[
            Entry::dir("changed"),
            Entry::file("changed/README", b"the new one"),
        ]),
    );
    assert_eq!(readme(&cache, "changed"), b"the new one");
    assert_eq!(tree_listing(&dir.join("builds/changed")), ["README"]);
    up.assert_asked_again_from("/b/changed.tar", half);
}
