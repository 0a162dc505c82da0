//! Eviction: least recently accessed first, never sticky, busy or
//! just-installed builds, an order that survives restarts, and the admin
//! commands `pin`, `unpin` and `gc`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::scratch::scratch_dir;
use crate::support::upstream::{tar_of, Entry, Upstream};
use crate::support::wait_until;
use upserv::cache::{self, Cache, CacheConfig, Startup};

/// Disk usage as `du` measures it (blocks, hard links once).
fn du(path: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-s")
        .arg("-B1")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn build(name: &str, fill: u8) -> Vec<u8> {
    tar_of(&[
        Entry::dir(name),
        Entry::file(&format!("{name}/data"), &vec![fill; 200_000]),
    ])
}

fn config(dir: &Path, up: &Upstream, cache_size: u64) -> CacheConfig {
    let mut cfg = CacheConfig::new(dir.join("builds"));
    cfg.upstream = Some(up.url("/b/{name}.tar"));
    cfg.fetch_timeout = Duration::from_secs(10);
    cfg.fetch_attempts = 1;
    cfg.cache_size = cache_size;
    cfg
}

fn fetch(cache: &Cache, name: &str) {
    drop(cache.acquire(name, &mut |_| {}).unwrap().unwrap());
}

/// Waits until no build is marked in use. A released build can still look
/// busy for a moment: a process another test spawns at that instant holds a
/// copy of the lock's descriptor until it executes (the close-on-exec
/// window, long under qemu). The daemon spawns nothing, so only tests see it.
fn await_idle(dir: &Path) {
    wait_until("the released builds to be idle", || {
        cache::list_builds(&dir.join("builds"))
            .unwrap()
            .iter()
            .all(|b| !b.busy)
    });
}

#[test]
fn lru_with_sticky_busy_and_restarts() {
    let dir = scratch_dir("evict");
    let up = Upstream::start();
    for (fill, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        up.put(&format!("/b/{name}.tar"), build(name, fill as u8));
    }
    let cache = Cache::open(config(&dir, &up, 1 << 30)).unwrap();
    for name in ["a", "b", "c"] {
        fetch(&cache, name);
    }
    drop(cache);
    await_idle(&dir);
    let size = du(&dir.join("builds/a"));
    assert_eq!(du(&dir.join("builds/b")), size);
    let budget = size * 2 + size / 2;

    // Restart with a record saying: a oldest, then c, then b.
    std::fs::write(
        dir.join("builds/.upserv/access"),
        "1000 a\n3000 b\n2000 c\n",
    )
    .unwrap();
    let cache = Cache::open(config(&dir, &up, budget)).unwrap();
    assert_eq!(
        cache.list_modules(),
        ["b", "c"],
        "startup eviction takes the oldest"
    );

    fetch(&cache, "d");
    assert_eq!(
        cache.list_modules(),
        ["b", "d"],
        "install evicts the oldest, not the new one"
    );
    let record = std::fs::read_to_string(dir.join("builds/.upserv/access")).unwrap();
    assert!(
        record.contains("3000 b\n") && record.contains(" d\n"),
        "{record}"
    );
    // Evicted builds are pruned from the record at a later write.
    assert!(!record.contains(" a\n"), "{record}");

    // b sticky, d busy, e just installed: all over budget, none evicted.
    cache::set_sticky(&dir.join("builds"), "b", true).unwrap();
    assert!(dir.join("builds/b.sticky").exists());
    let serving_d = cache.acquire("d", &mut |_| {}).unwrap().unwrap();
    fetch(&cache, "e");
    assert_eq!(cache.list_modules(), ["b", "d", "e"]);

    // Released while over budget: evicted then, without waiting for a gc.
    drop(serving_d);
    wait_until("d to be evicted", || cache.list_modules() == ["b", "e"]);
    assert!(!dir.join("builds/.upserv/meta/d").exists());
    assert!(cache.gc(true).unwrap().is_empty());

    // With room for one build only, e would go, but a dry run deletes nothing.
    await_idle(&dir);
    let dry = Cache::open_with(config(&dir, &up, size), Startup::ReadOnly).unwrap();
    assert_eq!(dry.gc(true).unwrap().len(), 1);
    drop(dry);
    assert_eq!(
        cache.list_modules(),
        ["b", "e"],
        "a dry run deletes nothing"
    );
    let gc = Cache::open_with(config(&dir, &up, size), Startup::NoEviction).unwrap();
    assert_eq!(gc.gc(false).unwrap().len(), 1);
    drop(gc);
    assert_eq!(cache.list_modules(), ["b"]);
    drop(cache);

    // A restart with room for one build: the sticky one stays.
    fetch(&Cache::open(config(&dir, &up, budget)).unwrap(), "e");
    await_idle(&dir);
    let cache = Cache::open(config(&dir, &up, size)).unwrap();
    assert_eq!(cache.list_modules(), ["b"]);
    cache::set_sticky(&dir.join("builds"), "b", false).unwrap();
    assert!(!dir.join("builds/b.sticky").exists());
    let listed = cache::list_builds(&dir.join("builds")).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].sticky);
}

#[test]
fn damaged_table_is_not_served_and_removed_at_startup() {
    let dir = scratch_dir("damaged");
    let up = Upstream::start();
    up.put("/b/x.tar", build("x", 1));
    let cache = Cache::open(config(&dir, &up, 1 << 30)).unwrap();
    fetch(&cache, "x");
    drop(cache);
    let table = dir.join("builds/.upserv/meta/x");
    let mut bytes = std::fs::read(&table).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();

    // Serve mode skips the startup check: the acquire itself refuses it
    // (and, with an upstream, fetches it again; see cache_robust.rs).
    let mut serve = config(&dir, &up, 1 << 30);
    serve.cross_process_lock = true;
    serve.upstream = None;
    let err = Cache::open(serve)
        .unwrap()
        .acquire("x", &mut |_| {})
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "build x cannot be served: its metadata table is damaged"
    );

    // A daemon start removes it, and the next request fetches it again.
    let cache = Cache::open(config(&dir, &up, 1 << 30)).unwrap();
    assert!(cache.list_modules().is_empty());
    fetch(&cache, "x");
    assert_eq!(up.gets("/b/x.tar"), 2);
}
