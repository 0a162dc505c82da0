//! Errors during a transfer: files that vanish after the file list was
//! sent, and files that shrink while being sent (which the client repairs
//! in its redo phase). The same thing is done to a tree served by upserv and
//! to an identical tree served by rsyncd, at the same moment of the pull;
//! the two pulls must end alike: same exit code, same messages, same tree.

use crate::support::client::comparable_lines;
use crate::support::snapshot::Volatile;
use crate::support::tree::Rng;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A first file large enough that a rate-limited client is still busy with
/// it when the test changes what follows.
fn tree() -> TestTree {
    let tree = TestTree::new();
    let mut rng = Rng::new(5);
    // Larger than any socket buffer, so the server is still sending it.
    tree.file("a-first.bin", &rng.bytes(24 << 20))
        .mtime(1_700_000_000);
    tree.file("b-second.bin", &rng.bytes(600 << 10))
        .mtime(1_700_000_001);
    tree.file("c-third.txt", b"third\n").mtime(1_700_000_002);
    tree
}

struct Outcome {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    dest: PathBuf,
    _scratch: tempfile::TempDir,
}

/// Pulls with a slow client; once the first file has started arriving,
/// `meddle` changes the source tree; then the pull runs to its end.
fn pull_while(server: &dyn Server, source: &Path, meddle: fn(&Path)) -> Outcome {
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("dest");
    std::fs::create_dir_all(&dest).expect("dest");
    let child: Child = Command::new("rsync")
        .args(["-a", "--bwlimit=8000", "--protocol=29"])
        .arg(server.url("m/"))
        .arg(format!("{}/", dest.display()))
        .env("LC_ALL", "C")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rsync client");
    wait_until("the pull to start", || {
        std::fs::read_dir(&dest)
            .expect("dest dir")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("a-first.bin"))
    });
    meddle(source);
    let out = child.wait_with_output().expect("rsync finished");
    let paths = [source];
    Outcome {
        code: out.status.code(),
        stdout: comparable_lines(&String::from_utf8_lossy(&out.stdout), &paths),
        stderr: comparable_lines(&String::from_utf8_lossy(&out.stderr), &paths),
        dest,
        _scratch: scratch,
    }
}

fn compare(meddle: fn(&Path)) -> (Outcome, Outcome) {
    let (ref_tree, cand_tree) = (tree(), tree());
    let rsyncd = Rsyncd::start(&[Module::new("m", ref_tree.root())]);
    let upserv = Upserv::start(&[Module::new("m", cand_tree.root())]);
    let reference = pull_while(&rsyncd, ref_tree.root(), meddle);
    let candidate = pull_while(&upserv, cand_tree.root(), meddle);
    assert_eq!(reference.code, candidate.code, "exit codes");
    assert_eq!(reference.stdout, candidate.stdout, "stdout");
    assert_eq!(reference.stderr, candidate.stderr, "stderr");
    let volatile = Volatile {
        file_mtimes: false,
        dir_mtimes: false,
        link_mtimes: false,
        root_mtime: true,
    };
    let diffs = Snapshot::of(&reference.dest).diff(
        &Snapshot::of(&candidate.dest),
        volatile,
        ["rsyncd", "upserv"],
    );
    assert!(diffs.is_empty(), "trees differ: {diffs:?}");
    (reference, candidate)
}

#[test]
fn a_file_that_vanishes_after_the_list_is_reported_and_skipped() {
    let (_, upserv) = compare(|source| {
        std::fs::remove_file(source.join("b-second.bin")).expect("removing");
    });
    assert!(!upserv.dest.join("b-second.bin").exists());
    assert!(upserv.dest.join("c-third.txt").exists());
    assert!(
        upserv
            .stdout
            .iter()
            .chain(&upserv.stderr)
            .any(|l| l.contains("file has vanished")),
        "no vanished message: {:?} {:?}",
        upserv.stdout,
        upserv.stderr
    );
}

#[test]
fn a_file_that_shrinks_while_sent_is_redone_and_ends_up_right() {
    let (_, upserv) = compare(|source| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(source.join("a-first.bin"))
            .expect("opening the first file");
        file.set_len(20 << 20).expect("shrinking it");
    });
    assert_eq!(
        std::fs::metadata(upserv.dest.join("a-first.bin"))
            .expect("pulled")
            .len(),
        20 << 20
    );
}

const NOBODY: (u32, u32) = (65534, 65534);

#[test]
fn unreadable_files_and_directories_are_reported_like_rsyncd() {
    let tree = unreadable_tree();
    for pair in &pull_unreadable(&tree, &[]) {
        let c = &pair.candidate;
        assert_eq!(c.code, 23, "{}", c.stderr);
        assert!(c.stderr.contains("Permission denied (13)"), "{}", c.stderr);
        assert!(!pair.candidate_tree.paths().any(|p| p == b"secret.txt"));
    }
}

#[test]
fn ignore_nonreadable_leaves_them_out_silently_like_rsyncd() {
    let tree = unreadable_tree();
    for pair in &pull_unreadable(&tree, &[("ignore nonreadable", "yes")]) {
        let c = &pair.candidate;
        assert_eq!((c.code, c.stderr.as_str()), (0, ""));
        let pulled: Vec<&[u8]> = pair.candidate_tree.paths().collect();
        assert!(pulled.contains(&&b"sub/ok.txt"[..]), "{pulled:?}");
        for unreadable in [&b"secret.txt"[..], b"locked", b"unlistable"] {
            assert!(!pulled.contains(&unreadable), "{pulled:?}");
        }
    }
}

/// A tree with an unreadable file, an unreadable directory and one that can
/// be entered but not listed, on a path anyone may walk.
fn unreadable_tree() -> TestTree {
    let tree = TestTree::new();
    tree.file("readable.txt", b"fine\n").mode(0o644);
    tree.file("secret.txt", b"no\n").mode(0o000);
    tree.file("locked/inside.txt", b"unseen\n").mode(0o644);
    tree.dir("locked").mode(0o000);
    tree.file("unlistable/known.txt", b"x\n").mode(0o644);
    tree.dir("unlistable").mode(0o311);
    tree.dir("sub").mode(0o755);
    tree.file("sub/ok.txt", b"ok\n").mode(0o644);
    let mut dir = tree.root().to_path_buf();
    while dir != Path::new("/") {
        let mode = std::fs::metadata(&dir).expect("tree dir").permissions();
        use std::os::unix::fs::PermissionsExt;
        if mode.mode() & 0o005 != 0o005 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode.mode() | 0o055))
                .expect("opening the path to the tree");
        }
        dir.pop();
    }
    tree
}

/// Pulls `tree` from upserv and rsyncd, both running as nobody (as root,
/// nothing is unreadable), with these extra module parameters.
fn pull_unreadable(tree: &TestTree, params: &[(&str, &str)]) -> Vec<Pair> {
    let builds = tempfile::tempdir().expect("builds dir");
    std::os::unix::fs::chown(builds.path(), Some(NOBODY.0), Some(NOBODY.1)).expect("chown");
    let launch = Launch {
        builds: Some(builds.path()),
        run_as: Some(NOBODY),
        ..Launch::default()
    };
    let mut differential = Differential::new(tree)
        .name("unreadable entries")
        .param("uid", "65534")
        .param("gid", "65534")
        .upserv_launch(&launch)
        .stderr_exact();
    for (key, value) in params {
        differential = differential.param(key, value);
    }
    differential.run(&["-a", "-i"], &ProtocolSet::ALL)
}
