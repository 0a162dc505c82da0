//! Unpacking through the cache: hostile archives are refused and leave
//! nothing behind, the metadata table records what the archive says (root
//! owners, set-id bits, devices), and the plain and olpc layouts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::support::builds::private_leftovers;
use crate::support::scratch::{scratch_dir, Scratch};
use crate::support::upstream::{tar_of, tree_listing, Entry, Upstream};
use tar::EntryType;
use upserv::cache::{BuildGuard, Cache, CacheConfig, Layout};

fn cache(dir: &Path, up: &Upstream) -> Cache {
    let mut cfg = CacheConfig::new(dir.join("builds"));
    cfg.upstream = Some(up.url("/b/{name}.tar"));
    cfg.fetch_timeout = Duration::from_secs(10);
    cfg.fetch_attempts = 1;
    Cache::open(cfg).unwrap()
}

/// A test's scratch directory (named after `test`), its upstream, and a
/// [`cache`] of builds there.
fn start(test: &str) -> (Scratch, Upstream, Cache) {
    let dir = scratch_dir(test);
    let up = Upstream::start();
    let cache = cache(&dir, &up);
    (dir, up, cache)
}

/// Build `name`, a tar archive of `entries`, put on `up` and acquired.
fn unpacked(up: &Upstream, cache: &Cache, name: &str, entries: &[Entry]) -> BuildGuard {
    up.put(&format!("/b/{name}.tar"), tar_of(entries));
    cache.acquire(name, &mut |_| {}).unwrap().unwrap()
}

#[test]
fn hostile_archives_are_refused_leaving_nothing() {
    let (dir, up, cache) = start("hostile");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_str = outside.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        ("dotdot", vec![Entry::file("../evil", b"x")], "`..`"),
        (
            "deep-dotdot",
            vec![Entry::dir("a"), Entry::file("a/../../evil", b"x")],
            "`..`",
        ),
        (
            "absolute",
            vec![Entry::file("/tmp/upserv-evil", b"x")],
            "absolute path",
        ),
        (
            "through-symlink",
            vec![
                Entry::symlink("link", &outside_str),
                Entry::file("link/evil", b"x"),
            ],
            "not a directory",
        ),
        (
            "dir-through-symlink",
            vec![Entry::symlink("link", &outside_str), Entry::dir("link/sub")],
            "not a directory",
        ),
        (
            "hard-link-out",
            vec![
                Entry::file("ok", b"x"),
                Entry::hard_link("h", "../../etc/passwd"),
            ],
            "hard link target",
        ),
        (
            "hard-link-absolute",
            vec![Entry::hard_link("h", "/etc/passwd")],
            "hard link target",
        ),
        (
            "under-a-device",
            vec![
                Entry::device("console", EntryType::Char, 5, 1),
                Entry::file("console/evil", b"x"),
            ],
            "not a directory",
        ),
    ];
    for (name, entries, reason) in cases {
        up.put(&format!("/b/{name}.tar"), tar_of(&entries));
        let err = cache.acquire(name, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("refused"), "{name}: {err}");
        assert!(err.contains(reason), "{name}: {err}");
        assert!(
            !dir.join("builds").join(name).exists(),
            "{name} was installed"
        );
        assert_eq!(
            private_leftovers(&dir.join("builds")),
            Vec::<String>::new(),
            "{name} left files"
        );
    }
    assert_eq!(tree_listing(&outside), Vec::<String>::new());
    assert!(cache.list_modules().is_empty());
}

#[test]
fn symlinks_pointing_outside_are_stored_not_followed() {
    let (_dir, up, cache) = start("symlinks");
    let guard = unpacked(
        &up,
        &cache,
        "links",
        &[
            Entry::symlink("passwd", "/etc/passwd"),
            Entry::symlink("up", "../../.."),
            // A later file at a symlink's path replaces the link, not its target.
            Entry::symlink("replaced", "/etc/hostname"),
            Entry::file("replaced", b"mine"),
        ],
    );
    let root = guard.root();
    assert_eq!(
        std::fs::read_link(root.join("passwd")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(root.join("up")).unwrap(),
        Path::new("../../..")
    );
    assert!(std::fs::symlink_metadata(root.join("replaced"))
        .unwrap()
        .is_file());
    assert_eq!(std::fs::read(root.join("replaced")).unwrap(), b"mine");
    assert_ne!(std::fs::read("/etc/hostname").ok(), Some(b"mine".to_vec()));
}

#[test]
fn metadata_table_records_owners_modes_and_devices() {
    let (_dir, up, cache) = start("metadata");
    let root = |e: Entry| e.owner(0, 0, "root", "root");
    let guard = unpacked(
        &up,
        &cache,
        "os",
        &[
            root(Entry::dir("./")).mtime(1_111_111_111),
            root(Entry::dir("./bin")),
            root(Entry::file("./bin/su", b"#!su"))
                .mode(0o4755)
                .mtime(1_234_567_890),
            root(Entry::file("./bin/secret", b"s")).mode(0o000),
            Entry::file("./bin/ping", b"p")
                .owner(0, 20, "root", "dialout")
                .mode(0o2711),
            root(Entry::dir("./dev")),
            root(Entry::device("./dev/console", EntryType::Char, 5, 1)),
            root(Entry::device("./dev/sda", EntryType::Block, 8, 0)).mode(0o660),
            root(Entry::device("./dev/initctl", EntryType::Fifo, 0, 0)),
            Entry::dir("./home/olpc")
                .owner(500, 500, "olpc", "olpc")
                .mode(0o700),
            root(Entry::dir("./tmp")).mode(0o1777),
        ],
    );
    let meta = guard.meta().unwrap();

    let su = meta.get(b"bin/su").unwrap();
    assert_eq!(su.mode, 0o104755);
    assert_eq!(
        (su.uid, su.gid, su.user, su.group),
        (0, 0, Some("root"), Some("root"))
    );
    assert_eq!(su.mtime, 1_234_567_890);
    let ping = meta.get(b"bin/ping").unwrap();
    assert_eq!(
        (ping.mode, ping.gid, ping.group),
        (0o102711, 20, Some("dialout"))
    );
    assert_eq!(meta.get(b"bin/secret").unwrap().mode, 0o100000);
    let console = meta.get(b"dev/console").unwrap();
    assert_eq!(
        (console.mode, console.rdev_major, console.rdev_minor),
        (0o020600, 5, 1)
    );
    let sda = meta.get(b"dev/sda").unwrap();
    assert_eq!((sda.mode, sda.rdev_major, sda.rdev_minor), (0o060660, 8, 0));
    assert_eq!(meta.get(b"dev/initctl").unwrap().mode, 0o010600);
    let olpc = meta.get(b"home/olpc").unwrap();
    assert_eq!(
        (olpc.mode, olpc.uid, olpc.user),
        (0o040700, 500, Some("olpc"))
    );
    // `home` is only implied by the archive.
    assert_eq!(meta.get(b"home").unwrap().mode & 0o170000, 0o040000);
    assert_eq!(meta.get(b"tmp").unwrap().mode, 0o041777);
    assert_eq!(meta.get(b"").unwrap().mtime, 1_111_111_111);

    let devices: Vec<_> = meta
        .table_only_children(b"dev")
        .map(|(n, _)| n.to_vec())
        .collect();
    assert_eq!(
        devices,
        [b"console".to_vec(), b"initctl".to_vec(), b"sda".to_vec()]
    );

    // On disk: no devices, no set-id bits, everything readable by upserv.
    let disk = guard.root();
    assert_eq!(tree_listing(&disk.join("dev")), Vec::<String>::new());
    let su_disk = std::fs::metadata(disk.join("bin/su")).unwrap();
    assert_eq!(su_disk.permissions().mode() & 0o7000, 0);
    assert_eq!(su_disk.uid(), unsafe { libc::geteuid() });
    assert_eq!(std::fs::read(disk.join("bin/secret")).unwrap(), b"s");
}

#[test]
fn hard_links_stay_hard_links() {
    let (_dir, up, cache) = start("hardlinks");
    let guard = unpacked(
        &up,
        &cache,
        "hl",
        &[
            Entry::file("a", b"shared")
                .owner(0, 0, "root", "root")
                .mode(0o4755),
            Entry::hard_link("b", "a"),
        ],
    );
    let a = std::fs::metadata(guard.root().join("a")).unwrap();
    let b = std::fs::metadata(guard.root().join("b")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(guard.meta().unwrap().get(b"b").unwrap().mode, 0o104755);
}

#[test]
fn plain_layout_strips_only_a_single_top_directory() {
    let (_dir, up, cache) = start("plain");
    let guard = unpacked(
        &up,
        &cache,
        "two-tops",
        &[Entry::file("a/x", b"1"), Entry::file("b/y", b"2")],
    );
    assert_eq!(tree_listing(guard.root()), ["a/", "a/x", "b/", "b/y"]);
    assert!(guard.meta().unwrap().get(b"a/x").is_some());

    let guard = unpacked(
        &up,
        &cache,
        "one-top",
        &[Entry::dir("top/"), Entry::file("top/x", b"1")],
    );
    assert_eq!(tree_listing(guard.root()), ["x"]);
    assert!(guard.meta().unwrap().get(b"x").is_some());

    // A lone top-level file is not a directory to strip.
    let guard = unpacked(&up, &cache, "one-file", &[Entry::file("only", b"1")]);
    assert_eq!(tree_listing(guard.root()), ["only"]);
}

#[test]
fn olpc_layout_uses_the_pristine_tree_and_the_manifest() {
    let dir = scratch_dir("olpc");
    let up = Upstream::start();
    let mut cfg = CacheConfig::new(dir.join("builds"));
    cfg.upstream = Some(up.url("/b/{name}.tar"));
    cfg.upstream_contents = Some(up.url("/b/{name}.contents"));
    cfg.layout = Layout::Olpc;
    cfg.fetch_attempts = 1;
    let cache = Cache::open(cfg).unwrap();
    up.put(
        "/b/os860.tar",
        tar_of(&[
            Entry::dir("os860"),
            Entry::file("os860/boot/vmlinuz", b"outside the pristine tree"),
            Entry::dir("os860/versions/pristine/860").owner(0, 0, "root", "root"),
            Entry::file("os860/versions/pristine/860/bin/su", b"su")
                .owner(0, 0, "root", "root")
                .mode(0o4755),
        ]),
    );
    up.put("/b/os860.contents", b"manifest of 860\n".to_vec());
    up.put(
        "/b/os861.tar",
        tar_of(&[Entry::dir("os861"), Entry::file("os861/etc/issue", b"861")]),
    );
    up.put("/b/os861.contents", b"manifest of 861\n".to_vec());

    let guard = cache.acquire("os860", &mut |_| {}).unwrap().unwrap();
    assert_eq!(
        tree_listing(guard.root()),
        ["contents", "root/", "root/bin/", "root/bin/su"]
    );
    assert_eq!(
        std::fs::read(guard.root().join("contents")).unwrap(),
        b"manifest of 860\n"
    );
    let meta = guard.meta().unwrap();
    assert_eq!(meta.get(b"root/bin/su").unwrap().mode, 0o104755);
    assert_eq!(meta.get(b"root").unwrap().user, Some("root"));
    assert!(meta.get(b"contents").is_none());

    let guard = cache.acquire("os861", &mut |_| {}).unwrap().unwrap();
    assert_eq!(
        tree_listing(guard.root()),
        ["contents", "root/", "root/etc/", "root/etc/issue"]
    );
}
