//! What an archive becomes when a real client pulls it: an OS tree with
//! root-owned, set-id files and device nodes, unpacked by an upserv that
//! runs as an unprivileged user, must reach a root client exactly as the
//! archive describes it (and as rsyncd serves the tree root extracted with
//! `tar --same-owner`); `layout = olpc` gives olpc-update its `root/` and
//! `contents`; hostile archives are refused with an `@ERROR:` the client
//! prints, leaving nothing behind.

use std::path::Path;

use crate::support::builds::{private_leftovers, tar_tree, untar_as_root, upserv_for};
use crate::support::scratch::scratch_dir;
use crate::support::snapshot::Kind;
use crate::support::tree::Device;
use crate::support::upstream::{compress, tar_of, tree_listing, Entry, Upstream};
use crate::support::*;

/// The unprivileged user upserv runs as in the field: nobody/nogroup.
const NOBODY: (u32, u32) = (65534, 65534);
/// olpc-update's rsync options for the tree (recursive, links, hard links,
/// perms, owner, group, devices, times, compression).
const OLPC_UPDATE_OPTS: &[&str] = &["-rlHpogDtz", "--no-motd", "-i", "--stats"];
/// The pristine tree's directory name in the olpc archive.
const PRISTINE_HASH: &str = "0b5c2a8e7d41";

/// A file of [`os_tree`]: path, contents, owner, mode, mtime.
type FileSpec = (&'static str, &'static [u8], (u32, u32), u32, i64);

/// An OS-like tree, made as root: set-id programs, root- and user-owned
/// entries, a private home, a sticky /tmp, device nodes, a FIFO, a hard
/// link and symlinks (one pointing outside the tree).
fn os_tree() -> TestTree {
    let tree = TestTree::new();
    let files: [FileSpec; 7] = [
        ("bin/su", b"#!su\n", (0, 0), 0o4755, 1_500_000_001),
        ("bin/wall", b"#!wall\n", (0, 5), 0o2755, 1_500_000_002),
        ("usr/bin/sudo", b"#!sudo\n", (0, 0), 0o4711, 1_500_000_003),
        (
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\n",
            (0, 0),
            0o644,
            1_500_000_004,
        ),
        (
            "etc/shadow",
            b"root:*:1::::::\n",
            (0, 42),
            0o640,
            1_500_000_005,
        ),
        (
            "etc/secret",
            b"nobody may read this\n",
            (0, 0),
            0o000,
            1_500_000_006,
        ),
        (
            "home/olpc/.profile",
            b"export PS1='$ '\n",
            (500, 500),
            0o644,
            1_500_000_008,
        ),
    ];
    for (path, contents, (uid, gid), mode, mtime) in files {
        tree.file(path, contents)
            .owner(uid, gid)
            .mode(mode)
            .mtime(mtime);
    }
    tree.hard_link("etc/passwd-", "etc/passwd");
    tree.symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .owner(0, 0)
        .mtime(1_500_000_007);
    tree.symlink("home/olpc/Desktop", "../../tmp")
        .owner(500, 500)
        .mtime(1_500_000_009);
    tree.device("dev/console", Device::Char, 5, 1)
        .owner(0, 5)
        .mode(0o600)
        .mtime(1_500_000_010);
    tree.device("dev/sda", Device::Block, 8, 0)
        .owner(0, 6)
        .mode(0o660)
        .mtime(1_500_000_011);
    tree.fifo("dev/initctl")
        .owner(0, 0)
        .mode(0o600)
        .mtime(1_500_000_012);
    tree.dir("tmp")
        .owner(0, 0)
        .mode(0o1777)
        .mtime(1_500_000_013);
    tree.dir("var/mail")
        .owner(0, 8)
        .mode(0o2775)
        .mtime(1_500_000_014);
    tree.dir("home/olpc")
        .owner(500, 500)
        .mode(0o700)
        .mtime(1_500_000_015);
    for dir in ["bin", "usr/bin", "usr", "etc", "home", "dev", "var"] {
        tree.dir(dir).owner(0, 0).mode(0o755).mtime(1_500_000_100);
    }
    tree.dir("").owner(0, 0).mode(0o755).mtime(1_500_000_200);
    tree.settle();
    tree
}

/// The archive of a tree made by root, as GNU tar writes it (`tree/...`).
fn archive_of(tree: &TestTree) -> Vec<u8> {
    tar_tree(tree.root().parent().expect("a parent"), "tree")
}

/// Checks a few entries of a pulled OS tree by hand, against what
/// [`os_tree`] made: the exact attributes a root client must end up with.
fn check_os_entries(pulled: &Snapshot) {
    let node = |rel: &str| {
        pulled
            .get(rel)
            .unwrap_or_else(|| panic!("{rel} was not pulled"))
    };
    let su = node("bin/su");
    assert_eq!(
        (su.kind, su.perm, su.uid, su.gid),
        (Kind::File, 0o4755, 0, 0)
    );
    assert_eq!(su.mtime, 1_500_000_001);
    assert_eq!(node("bin/wall").perm, 0o2755);
    assert_eq!(node("usr/bin/sudo").perm, 0o4711);
    assert_eq!(node("etc/secret").perm, 0o000);
    let console = node("dev/console");
    assert_eq!(
        (
            console.kind,
            console.perm,
            console.uid,
            console.gid,
            console.rdev
        ),
        (Kind::CharDevice, 0o600, 0, 5, Some((5, 1)))
    );
    let sda = node("dev/sda");
    assert_eq!((sda.kind, sda.rdev), (Kind::BlockDevice, Some((8, 0))));
    assert_eq!(node("dev/initctl").kind, Kind::Fifo);
    let tmp = node("tmp");
    assert_eq!((tmp.kind, tmp.perm), (Kind::Dir, 0o1777));
    let home = node("home/olpc");
    assert_eq!((home.perm, home.uid, home.gid), (0o700, 500, 500));
    let localtime = node("etc/localtime");
    assert_eq!(
        localtime.target.as_deref(),
        Some(&b"/usr/share/zoneinfo/UTC"[..])
    );
    assert_eq!(node("home/olpc/Desktop").uid, 500);
    assert_eq!(
        node("etc/passwd-").link_group,
        Some(b"etc/passwd".to_vec()),
        "the hard link stays one"
    );
}

#[test]
fn a_non_root_upserv_serves_owners_set_id_bits_and_devices_exactly() {
    let source = os_tree();
    let archive = archive_of(&source);
    // The reference: the archive unpacked by root, served by rsyncd.
    let extracted = TestTree::new();
    untar_as_root(&archive, extracted.root());

    let dir = scratch_dir("builds-nonroot");
    let builds = dir.join("builds");
    std::fs::create_dir(&builds).expect("creating the builds directory");
    std::os::unix::fs::chown(&builds, Some(NOBODY.0), Some(NOBODY.1)).expect("chown builds");
    let up = Upstream::start();
    up.put("/b/build-os.tar", archive);
    let upstream = up.url("/b/{name}.tar");
    let args = ["--upstream", upstream.as_str()];
    let launch = Launch {
        builds: Some(&builds),
        args: &args,
        run_as: Some(NOBODY),
        ..Launch::default()
    };
    let cases: [(&[&str], &ProtocolSet); 2] = [
        (
            &["-a", "-D", "-H", "-i", "--stats", "--no-motd"],
            &ProtocolSet::ALL,
        ),
        (
            &[
                "-a",
                "-D",
                "-H",
                "--numeric-ids",
                "-i",
                "--stats",
                "--no-motd",
            ],
            &ProtocolSet::V29,
        ),
    ];
    let mut runs = 0;
    for client in Client::all() {
        for (opts, protocols) in cases {
            let pairs = Differential::new(&extracted)
                .name("OS tree unpacked by a non-root upserv")
                .url_path("m/tree/")
                .candidate_side(Side {
                    modules: Vec::new(),
                    url_path: "build-os/".to_string(),
                })
                .upserv_launch(&launch)
                .client(client.clone())
                .run(opts, protocols);
            for pair in &pairs {
                pair.candidate.assert_ok();
                // The archive's own tree, attribute for attribute.
                assert_same(&Snapshot::of(source.root()), &pair.candidate_tree);
                check_os_entries(&pair.candidate_tree);
            }
            runs += 1;
        }
    }
    assert_eq!(
        up.gets("/b/build-os.tar"),
        1,
        "{runs} runs, one builds directory"
    );

    // The disk holds none of it: upserv could not have made it so.
    let on_disk = Snapshot::of(&builds.join("build-os"));
    let su = on_disk.get("bin/su").expect("bin/su on disk");
    assert_eq!(
        (su.uid, su.perm & 0o7000),
        (NOBODY.0, 0),
        "no set-id on disk"
    );
    assert!(on_disk.get("dev/console").is_none(), "no device on disk");
}

/// Runs `run` with the launch of an upserv in olpc layout with builds in
/// `builds`, fetching archives from the path `template` on `up` and their
/// manifests from `/c/{name}.contents`.
fn olpc_launch<R>(
    up: &Upstream,
    template: &str,
    builds: &Path,
    run: impl FnOnce(&Launch) -> R,
) -> R {
    let upstream = up.url(template);
    let contents = up.url("/c/{name}.contents");
    let args = ["--upstream", upstream.as_str()];
    let globals = [("layout", "olpc"), ("upstream contents", contents.as_str())];
    run(&Launch {
        builds: Some(builds),
        args: &args,
        globals: &globals,
        ..Launch::default()
    })
}

#[test]
fn olpc_layout_serves_root_and_contents_from_the_pristine_tree() {
    let source = TestTree::new();
    let pristine = format!("versions/pristine/{PRISTINE_HASH}");
    source
        .file(format!("{pristine}/etc/issue"), b"OLPC OS\n")
        .mtime(1_400_000_001);
    source
        .file(format!("{pristine}/bin/sh"), &[1u8; 5000])
        .mode(0o755)
        .mtime(1_400_000_002);
    source
        .file(format!("{pristine}/bin/ping"), b"ping")
        .mode(0o4755)
        .mtime(1_400_000_003);
    source
        .device(format!("{pristine}/dev/null"), Device::Char, 1, 3)
        .mode(0o666)
        .mtime(1_400_000_004);
    source.symlink("versions/run", format!("pristine/{PRISTINE_HASH}"));
    source.file("versions/boot-note", b"not part of the tree");
    for d in ["etc", "bin", "dev", ""] {
        source.dir(format!("{pristine}/{d}")).mtime(1_400_000_100);
    }
    source.dir("versions/pristine").mtime(1_400_000_200);
    source.dir("versions").mtime(1_400_000_300);
    source.settle();
    let manifest = b"[\"contents\", {\"etc/issue\": [\"sha256\", 420]}]\n".to_vec();

    let dir = scratch_dir("builds-olpc");
    let up = Upstream::start();
    up.put(
        "/b/build-o.tar.bz2",
        compress(&archive_of(&source), &["bzip2", "-c"]),
    );
    up.put("/c/build-o.contents", manifest.clone());
    let builds = dir.join("builds");
    olpc_launch(&up, "/b/{name}.tar.bz2", &builds, |launch| {
        Differential::new(&source)
            .name("olpc layout: NAME/root/ is the pristine tree")
            .url_path(&format!("m/{pristine}/"))
            .candidate_side(Side {
                modules: Vec::new(),
                url_path: "build-o/root/".to_string(),
            })
            .upserv_launch(launch)
            .run(OLPC_UPDATE_OPTS, &ProtocolSet::V29);

        // The manifest, as olpc-update fetches it, and the module's top level.
        let upserv = Upserv::launch(&[], launch);
        let file = dir.join("fetched-contents");
        pull(
            &upserv.url("build-o/contents"),
            &file,
            &["--no-motd"],
            Protocol::Default,
        )
        .assert_ok();
        assert_eq!(
            std::fs::read(file.join("contents")).expect("the pulled manifest"),
            manifest
        );
        let top = pull(
            &upserv.url("build-o/"),
            &dir.join("top"),
            &["--no-motd", "--list-only"],
            Protocol::Default,
        );
        top.assert_ok();
        let names: Vec<&str> = top
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        assert_eq!(names, [".", "contents", "root"], "{}", top.stdout);
        assert_eq!(up.gets("/b/build-o.tar.bz2"), 1);
        assert_eq!(up.gets("/c/build-o.contents"), 1);
    });
}

#[test]
fn olpc_layout_without_a_pristine_tree_serves_the_archive_as_root() {
    let source = TestTree::new();
    source
        .file("etc/issue", b"plain tree\n")
        .mtime(1_400_000_001);
    source
        .file("boot/vmlinuz", &[9u8; 3000])
        .mtime(1_400_000_002);
    source.dir("etc").mtime(1_400_000_100);
    source.dir("boot").mtime(1_400_000_100);
    source.dir("").mtime(1_400_000_200);
    source.settle();
    let dir = scratch_dir("builds-olpc-plain");
    let up = Upstream::start();
    up.put("/b/build-q.tar", archive_of(&source));
    up.put("/c/build-q.contents", b"manifest\n".to_vec());
    let builds = dir.join("builds");
    olpc_launch(&up, "/b/{name}.tar", &builds, |launch| {
        Differential::new(&source)
            .name("olpc layout without versions/pristine")
            .candidate_side(Side {
                modules: Vec::new(),
                url_path: "build-q/root/".to_string(),
            })
            .upserv_launch(launch)
            .run(OLPC_UPDATE_OPTS, &ProtocolSet::V29)
    });
    assert_eq!(
        std::fs::read(builds.join("build-q/contents")).expect("the stored manifest"),
        b"manifest\n"
    );
}

/// The names directly in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {dir:?}: {e}"))
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing_behind() {
    let dir = scratch_dir("builds-hostile");
    let outside = dir.join("outside");
    std::fs::create_dir(&outside).expect("creating the outside directory");
    std::fs::write(outside.join("target"), b"keep me").expect("writing the bait");
    let absolute = format!("{}/planted-abs", outside.display());
    let outside_text = outside.display().to_string();
    let cases: Vec<(&str, Vec<Entry>, String)> = vec![
        (
            "dotdot",
            vec![
                Entry::dir("top"),
                Entry::file("top/../../../escape", b"x"),
            ],
            "archive entry \"top/../../../escape\" refused: path contains `..`".into(),
        ),
        (
            "absolute",
            vec![Entry::dir("top"), Entry::file(&absolute, b"x")],
            format!("archive entry \"{absolute}\" refused: absolute path"),
        ),
        (
            "hardlink-out",
            vec![
                Entry::dir("top"),
                Entry::hard_link("top/passwd", "../../../outside/target"),
            ],
            "archive entry \"top/passwd\" refused: hard link target: path contains `..`".into(),
        ),
        (
            "through-symlink",
            vec![
                Entry::dir("top"),
                Entry::symlink("top/out", &outside_text),
                Entry::file("top/out/planted", b"x"),
            ],
            "archive entry \"top/out/planted\" refused: it lies under top/out, which is not a directory".into(),
        ),
        (
            "through-dotdot-symlink",
            vec![
                Entry::dir("top"),
                Entry::symlink("top/up", "../.."),
                Entry::file("top/up/planted", b"x"),
            ],
            "archive entry \"top/up/planted\" refused: it lies under top/up, which is not a directory".into(),
        ),
    ];
    let up = Upstream::start();
    for (name, entries, _) in &cases {
        up.put(&format!("/b/evil-{name}.tar"), tar_of(entries));
    }
    let builds = dir.join("builds");
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &[]);
    for (name, _, why) in &cases {
        let dest = dir.join(format!("dest-{name}"));
        let result = pull(
            &upserv.url(&format!("evil-{name}/")),
            &dest,
            &["-a", "--no-motd"],
            Protocol::Default,
        );
        assert_eq!(result.code, 5, "{result:?}");
        let expected = format!("@ERROR: build evil-{name} could not be unpacked: {why}");
        assert!(
            result.stderr.lines().any(|l| l == expected),
            "the client printed no {expected:?}:\n{}",
            result.stderr
        );
        assert!(!dest.exists(), "a refused pull left {dest:?}");
    }
    assert_eq!(
        tree_listing(&outside),
        ["target"],
        "nothing planted outside"
    );
    assert_eq!(
        std::fs::read(outside.join("target")).expect("the bait"),
        b"keep me"
    );
    assert_eq!(
        names_in(&dir),
        ["builds", "outside"],
        "nothing next to the builds directory"
    );
    assert_eq!(names_in(&builds), [".upserv"], "no build was installed");
    assert_eq!(private_leftovers(&builds), Vec::<String>::new());
}
