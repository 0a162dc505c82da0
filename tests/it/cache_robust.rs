//! The build cache against damaged state and hostile archives: an access
//! record that cannot be read, archives nested deeper than the descriptor
//! limit, decompression bombs, huge path tables, tar archives cut at an entry
//! boundary, `NAME.sticky` requests, partial downloads and the trash in the
//! budget, the budget restored when a burst ends, a full disk during
//! unpacking, a lost or replaced metadata table, and the 404 records.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

use crate::support::scratch::scratch_dir;
use crate::support::upstream::{compress, sample_build, tar_of, tree_listing, Entry, Upstream};
use crate::support::wait::{wait_until, WAIT_LIMIT};
use tar::EntryType;
use upserv::cache::{Cache, CacheConfig};

/// The common default limit of open files that the deep-archive case needs.
const NOFILE: &str = "--nofile=1024:1024";

fn config(dir: &Path, up: &Upstream, template: &str) -> CacheConfig {
    let mut cfg = CacheConfig::new(dir.join("builds"));
    cfg.upstream = Some(up.url(template));
    cfg.fetch_timeout = Duration::from_secs(10);
    cfg.fetch_attempts = 1;
    cfg
}

/// Runs `work` on a thread of its own and fails the test if it does not
/// finish in time (the bug it checks for is a loop that never ends).
fn finishes<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(WAIT_LIMIT)
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

fn leftovers(builds: &Path) -> Vec<String> {
    ["unpack", "partial", "trash"]
        .iter()
        .flat_map(|sub| {
            tree_listing(&builds.join(".upserv").join(sub))
                .into_iter()
                .map(move |p| format!("{sub}/{p}"))
        })
        .collect()
}

/// A tar archive (GNU long names allowed) of `(path, kind, data)` entries.
fn long_tar<'a>(entries: impl IntoIterator<Item = (String, EntryType, &'a [u8])>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_device_major(1).unwrap();
        header.set_device_minor(3).unwrap();
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &path, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs (needs root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `upserv ARGS` under a limit of 1024 open files: (exit code, stderr).
fn upserv_limited(args: &[&str]) -> (i32, String) {
    let out = Command::new("prlimit")
        .arg(NOFILE)
        .arg("--")
        .args(crate::support::upserv::upserv_argv())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreadable_access_record_is_read_as_empty() {
    let dir = scratch_dir("robust-access");
    let up = Upstream::start();
    up.put("/b/one.tar", sample_build("one", "first"));
    // A directory where the record belongs: every read of it fails.
    std::fs::create_dir_all(dir.join("builds/.upserv/access")).unwrap();
    let cfg = config(&dir, &up, "/b/{name}.tar");
    let served = finishes("opening the cache and serving", move || {
        let cache = Cache::open(cfg).unwrap();
        let guard = cache.acquire("one", &mut |_| {}).unwrap().unwrap();
        std::fs::read(guard.root().join("README")).unwrap()
    });
    assert_eq!(served, b"first");
}

#[test]
fn names_ending_in_sticky_are_not_builds() {
    let dir = scratch_dir("robust-sticky");
    let up = Upstream::start();
    up.put("/b/one.tar", sample_build("one", "first"));
    up.put("/b/one.sticky.tar", sample_build("x", "pin"));
    let cache = Cache::open(config(&dir, &up, "/b/{name}.tar")).unwrap();
    assert!(cache.acquire("one.sticky", &mut |_| {}).unwrap().is_none());
    assert_eq!(up.gets("/b/one.sticky.tar"), 0, "it was fetched");
    std::fs::create_dir(dir.join("builds/two.sticky")).unwrap();
    drop(cache.acquire("one", &mut |_| {}).unwrap().unwrap());
    assert_eq!(cache.list_modules(), ["one"]);
    assert!(!dir.join("builds/one.sticky").exists());
}

#[test]
fn deep_archives_under_the_descriptor_limit() {
    let dir = scratch_dir("robust-deep");
    let up = Upstream::start();
    let builds = dir.join("builds");
    std::fs::write(dir.join("upserv.conf"), "").unwrap();
    // 5000 nested directories in one entry, and a legitimate 1900-level build.
    let deep = format!("deep/{}", "a/".repeat(5000));
    up.put(
        "/b/deep.tar.gz",
        compress(
            &long_tar([(deep, EntryType::Directory, &b""[..])]),
            &["gzip", "-c"],
        ),
    );
    let legit = format!("tall/{}", "b/".repeat(1900));
    let file = format!("{legit}end");
    up.put(
        "/b/tall.tar.gz",
        compress(
            &long_tar([
                (legit, EntryType::Directory, &b""[..]),
                (file, EntryType::Regular, &b"bottom"[..]),
            ]),
            &["gzip", "-c"],
        ),
    );
    let url = up.url("/b/{name}.tar.gz");
    let common = |command: &str, extra: &[&str]| {
        let mut args = vec![
            command.to_string(),
            "--config".into(),
            dir.join("upserv.conf").to_str().unwrap().into(),
            "--builds".into(),
            builds.to_str().unwrap().into(),
            "--upstream".into(),
            url.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        upserv_limited(&args)
    };
    let (code, err) = common("fetch", &["deep"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("could not be unpacked"), "{err}");
    assert_eq!(leftovers(&builds), Vec::<String>::new());
    let (code, err) = common("fetch", &["tall"]);
    assert_eq!(code, 0, "{err}");
    let bottom = builds.join("tall").join("b/".repeat(1900)).join("end");
    assert_eq!(std::fs::read(bottom).unwrap(), b"bottom");
    let (code, err) = common("gc", &["--cache-size", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(!builds.join("tall").exists(), "{err}");
    assert_eq!(leftovers(&builds), Vec::<String>::new());
    let (code, err) = common("gc", &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_decompression_bomb_stops_at_the_budget() {
    let dir = scratch_dir("robust-bomb");
    let _disk = Tmpfs::mount(&dir.join("builds"), "24m");
    let up = Upstream::start();
    let zeros = vec![0u8; 64 << 20];
    let bomb = tar_of(&[Entry::dir("b"), Entry::file("b/zeros", &zeros)]);
    drop(zeros);
    up.put("/b/bomb.tar.gz", compress(&bomb, &["gzip", "-c"]));
    let mut cfg = config(&dir, &up, "/b/{name}.tar.gz");
    cfg.cache_size = 8 << 20;
    let cache = Cache::open(cfg).unwrap();
    let err = cache.acquire("bomb", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("more than the cache size"), "{err}");
    assert!(!dir.join("builds/bomb").exists());
    assert_eq!(leftovers(&dir.join("builds")), Vec::<String>::new());
}

#[test]
fn an_lzma_dictionary_beyond_the_memory_limit_is_refused() {
    let dir = scratch_dir("robust-lzma");
    let up = Upstream::start();
    let mut archive = compress(&sample_build("l", "lzma"), &["xz", "--format=lzma", "-c"]);
    // The .lzma header's dictionary size (bytes 1..5): 1 GiB.
    archive[1..5].copy_from_slice(&(1u32 << 30).to_le_bytes());
    up.put("/b/big-dict.tar.lzma", archive);
    let cache = Cache::open(config(&dir, &up, "/b/{name}.tar.lzma")).unwrap();
    let err = cache
        .acquire("big-dict", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory limit"), "{err}");
    assert!(cache.list_modules().is_empty());
}

#[test]
fn path_bytes_of_an_archive_are_bounded() {
    let dir = scratch_dir("robust-paths");
    let up = Upstream::start();
    // 46 000 device entries (nothing on disk) with 1500-byte paths: 69 MB.
    let top: Vec<String> = "pqrst".chars().map(|c| c.to_string().repeat(250)).collect();
    let top = top.join("/");
    let entries = (0..46_000).map(|i| {
        let name = format!("{top}/{i:0>8}{}", "g".repeat(242));
        (name, EntryType::Char, &b""[..])
    });
    let archive = compress(&long_tar(entries), &["gzip", "-1", "-c"]);
    up.put("/b/paths.tar.gz", archive);
    let cache = Cache::open(config(&dir, &up, "/b/{name}.tar.gz")).unwrap();
    let err = cache.acquire("paths", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("paths take more than"), "{err}");
    assert_eq!(leftovers(&dir.join("builds")), Vec::<String>::new());
}

#[test]
fn a_tar_cut_at_an_entry_boundary_is_refused() {
    let dir = scratch_dir("robust-cut");
    let up = Upstream::start();
    let whole = sample_build("c", "cut");
    // tar_of ends with exactly the two zero blocks.
    assert!(whole[whole.len() - 1024..].iter().all(|&b| b == 0));
    up.put("/b/cut.tar", whole[..whole.len() - 1024].to_vec());
    up.put("/b/half-end.tar", whole[..whole.len() - 512].to_vec());
    up.put("/b/whole.tar", whole);
    let cache = Cache::open(config(&dir, &up, "/b/{name}.tar")).unwrap();
    for name in ["cut", "half-end"] {
        let err = cache.acquire(name, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("cut short"), "{name}: {err}");
    }
    assert!(cache.acquire("whole", &mut |_| {}).unwrap().is_some());
    assert_eq!(cache.list_modules(), ["whole"]);
    assert_eq!(leftovers(&dir.join("builds")), Vec::<String>::new());
}

/// An archive whose build takes about 200 KiB on disk.
fn sized_build(top: &str, fill: u8) -> Vec<u8> {
    tar_of(&[
        Entry::dir(top),
        Entry::file(&format!("{top}/data"), &vec![fill; 200_000]),
    ])
}

/// Sets a file's mtime to `secs_ago` seconds ago.
fn age(path: &Path, secs_ago: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

#[test]
fn partial_downloads_count_and_are_evicted_oldest_first() {
    let dir = scratch_dir("robust-partial");
    let up = Upstream::start();
    up.put("/b/slow.tar", sized_build("slow", 2));
    let partial = dir.join("builds/.upserv/partial");
    std::fs::create_dir_all(&partial).unwrap();
    // A download left by an earlier run, large enough to break the budget.
    std::fs::write(partial.join("stale.part"), vec![1u8; 600_000]).unwrap();
    std::fs::write(partial.join("stale.info"), b"x").unwrap();
    age(&partial.join("stale.part"), 3600);
    let mut cfg = config(&dir, &up, "/b/{name}.tar");
    cfg.cache_size = 500_000;
    let cache = Cache::open(cfg).unwrap();
    assert!(!partial.join("stale.part").exists(), "startup kept it");

    std::fs::write(partial.join("stale.part"), vec![1u8; 600_000]).unwrap();
    age(&partial.join("stale.part"), 3600);
    let evicted = cache.gc(true).unwrap();
    let names: Vec<&str> = evicted.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["stale"]);

    // The one downloading now stays; the stale one goes.
    up.gate_after("/b/slow.tar", 100_000);
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.acquire("slow", &mut |_| {}).map(|g| g.is_some()))
    };
    up.wait_at_gate(1);
    wait_until("the download to be written", || {
        std::fs::metadata(partial.join("slow.part")).is_ok_and(|m| m.len() >= 100_000)
    });
    age(&partial.join("slow.part"), 7200);
    let evicted = cache.gc(false).unwrap();
    let names: Vec<&str> = evicted.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["stale"]);
    assert!(!partial.join("stale.part").exists());
    assert!(partial.join("slow.part").exists());
    up.open_gate();
    assert!(waiter.join().unwrap().unwrap());
}

#[test]
fn the_budget_is_restored_when_a_burst_ends() {
    let dir = scratch_dir("robust-burst");
    let up = Upstream::start();
    let names = ["a", "b", "c", "d"];
    for (i, name) in names.iter().enumerate() {
        up.put(&format!("/b/{name}.tar"), sized_build(name, i as u8));
    }
    let mut cfg = config(&dir, &up, "/b/{name}.tar");
    cfg.cache_size = 450_000;
    let cache = Cache::open(cfg).unwrap();
    // Every build is in use while the next one is installed.
    let guards: Vec<_> = names
        .iter()
        .map(|name| cache.acquire(name, &mut |_| {}).unwrap().unwrap())
        .collect();
    assert_eq!(cache.list_modules().len(), 4);
    drop(guards);
    wait_until("eviction down to the budget", || {
        cache.list_modules().len() <= 2
    });
    wait_until("the trash to be emptied", || {
        leftovers(&dir.join("builds")).is_empty()
    });
}

#[test]
fn serve_mode_restores_the_budget_when_the_last_process_releases() {
    let dir = scratch_dir("robust-burst-serve");
    let up = Upstream::start();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        up.put(&format!("/b/{name}.tar"), sized_build(name, i as u8));
    }
    let mut cfg = config(&dir, &up, "/b/{name}.tar");
    cfg.cache_size = 250_000;
    cfg.cross_process_lock = true;
    // Two serve processes: the first installs all three builds while it
    // serves them; the second serves `a`, the oldest, and ends last.
    let first = Cache::open(cfg.clone()).unwrap();
    let second = Cache::open(cfg).unwrap();
    let mut guards = vec![first.acquire("a", &mut |_| {}).unwrap().unwrap()];
    let held = second.acquire("a", &mut |_| {}).unwrap().unwrap();
    for name in ["b", "c"] {
        guards.push(first.acquire(name, &mut |_| {}).unwrap().unwrap());
    }
    drop(guards);
    drop(first);
    // `a` is still served, and the newer builds wait for it to go first.
    assert_eq!(second.list_modules(), ["a", "b", "c"]);
    drop(held);
    drop(second);
    let cache = Cache::open(config(&dir, &up, "/b/{name}.tar")).unwrap();
    assert_eq!(cache.list_modules(), ["c"]);
}

/// A read-only bind mount of `source` at `target`, undone when dropped.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn mount(source: &Path, target: &Path) -> ReadOnlyBind {
        std::fs::create_dir_all(target).unwrap();
        for args in [vec!["--bind"], vec!["-o", "remount,bind,ro"]] {
            let status = Command::new("mount")
                .args(&args)
                .arg(source)
                .arg(target)
                .status()
                .unwrap();
            assert!(status.success(), "mount {args:?} (needs root)");
        }
        ReadOnlyBind(target.to_path_buf())
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn the_trash_counts_until_it_is_gone() {
    let dir = scratch_dir("robust-trash");
    let up = Upstream::start();
    up.put("/b/a.tar", sized_build("a", 1));
    up.put("/b/b.tar", sized_build("b", 2));
    // Trash that cannot be deleted (read-only): 400 KB that stay.
    let stuck = dir.join("stuck");
    std::fs::create_dir_all(&stuck).unwrap();
    std::fs::write(stuck.join("data"), vec![3u8; 400_000]).unwrap();
    let trash = dir.join("builds/.upserv/trash/old.1.2");
    let _bind = ReadOnlyBind::mount(&stuck, &trash);
    let mut cfg = config(&dir, &up, "/b/{name}.tar");
    cfg.cache_size = 700_000;
    let cache = Cache::open(cfg).unwrap();
    drop(cache.acquire("a", &mut |_| {}).unwrap().unwrap());
    drop(cache.acquire("b", &mut |_| {}).unwrap().unwrap());
    // Two builds alone fit; with the trash they do not.
    assert_eq!(cache.list_modules(), ["b"]);
    assert!(trash.join("data").exists());
}

#[test]
fn a_full_disk_during_unpacking_keeps_the_download() {
    let dir = scratch_dir("robust-enospc");
    let builds = dir.join("builds");
    let _disk = Tmpfs::mount(&builds, "4m");
    let up = Upstream::start();
    let data = vec![7u8; 2 << 20];
    let archive = compress(
        &tar_of(&[Entry::dir("big"), Entry::file("big/data", &data)]),
        &["gzip", "-c"],
    );
    up.put("/b/big.tar.gz", archive);
    // A tree an administrator put there fills most of the disk.
    std::fs::create_dir(builds.join("filler")).unwrap();
    std::fs::write(builds.join("filler/data"), vec![1u8; 3 << 20]).unwrap();
    let cache = Cache::open(config(&dir, &up, "/b/{name}.tar.gz")).unwrap();
    let err = cache.acquire("big", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("could not be unpacked"), "{err}");
    assert_eq!(up.gets("/b/big.tar.gz"), 1);
    std::fs::remove_dir_all(builds.join("filler")).unwrap();
    let guard = cache.acquire("big", &mut |_| {}).unwrap().unwrap();
    assert_eq!(std::fs::read(guard.root().join("data")).unwrap(), data);
    assert_eq!(up.gets("/b/big.tar.gz"), 1, "downloaded again");
    drop(guard);
    assert_eq!(leftovers(&builds), Vec::<String>::new());
}

/// A cache that has fetched build `one` (a sample build) once.
fn with_build_one(
    test: &str,
) -> (
    crate::support::scratch::Scratch,
    Upstream,
    CacheConfig,
    Cache,
) {
    let dir = scratch_dir(test);
    let up = Upstream::start();
    up.put("/b/one.tar", sample_build("one", "first"));
    let cfg = config(&dir, &up, "/b/{name}.tar");
    let cache = Cache::open(cfg.clone()).unwrap();
    drop(cache.acquire("one", &mut |_| {}).unwrap().unwrap());
    (dir, up, cfg, cache)
}

#[test]
fn a_directory_in_place_of_a_table_does_not_stop_startup() {
    let (dir, up, cfg, cache) = with_build_one("robust-metadir");
    drop(cache);
    let table = dir.join("builds/.upserv/meta/one");
    std::fs::remove_file(&table).unwrap();
    std::fs::create_dir_all(table.join("sub")).unwrap();
    for _ in 0..2 {
        drop(Cache::open(cfg.clone()).unwrap());
    }
    let cache = Cache::open(cfg).unwrap();
    let guard = cache.acquire("one", &mut |_| {}).unwrap().unwrap();
    assert!(guard.meta().is_some());
    assert_eq!(up.gets("/b/one.tar"), 2);
}

#[test]
fn a_build_upserv_unpacked_is_refetched_without_its_table() {
    let (dir, up, cfg, cache) = with_build_one("robust-table");
    // A tree an administrator put there has no table and needs none.
    std::fs::create_dir(dir.join("builds/hand")).unwrap();
    std::fs::write(dir.join("builds/hand/README"), b"mine").unwrap();
    let hand = cache.acquire("hand", &mut |_| {}).unwrap().unwrap();
    assert!(hand.meta().is_none());
    drop(hand);

    // Lost while running: the next acquire fetches it again.
    let table = dir.join("builds/.upserv/meta/one");
    std::fs::remove_file(&table).unwrap();
    let guard = cache.acquire("one", &mut |_| {}).unwrap().unwrap();
    assert!(guard.meta().is_some(), "served with the disk's metadata");
    assert_eq!(up.gets("/b/one.tar"), 2);
    drop(guard);
    drop(cache);

    // Lost while stopped: startup removes the build.
    std::fs::remove_file(&table).unwrap();
    let cache = Cache::open(cfg.clone()).unwrap();
    assert_eq!(cache.list_modules(), ["hand"]);
    drop(cache);

    // Without an upstream it is refused with a clear error.
    drop(
        Cache::open(cfg.clone())
            .unwrap()
            .acquire("one", &mut |_| {})
            .unwrap(),
    );
    std::fs::remove_file(&table).unwrap();
    let mut offline = cfg;
    offline.upstream = None;
    offline.cross_process_lock = true;
    let cache = Cache::open(offline).unwrap();
    let err = cache.acquire("one", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("metadata table is missing"), "{err}");
}

#[test]
fn missing_records_are_pruned_at_most_once_a_ttl() {
    let dir = scratch_dir("robust-missing");
    let up = Upstream::start();
    let cfg = config(&dir, &up, "/b/{name}.tar");
    let missing = dir.join("builds/.upserv/missing");
    let cache = Cache::open(cfg.clone()).unwrap();
    assert!(cache.acquire("x1", &mut |_| {}).is_err());
    // An expired record appears: the next miss does not list them all.
    std::fs::write(missing.join("old"), b"").unwrap();
    age(&missing.join("old"), 3600);
    assert!(cache.acquire("x2", &mut |_| {}).is_err());
    assert!(
        missing.join("old").exists(),
        "the second miss scanned the records"
    );
    drop(cache);
    let cache = Cache::open(cfg).unwrap();
    assert!(cache.acquire("x3", &mut |_| {}).is_err());
    assert!(!missing.join("old").exists(), "expired records stay");
    for name in ["x1", "x2", "x3"] {
        assert!(missing.join(name).exists(), "{name} was forgotten");
    }
}
