//! The client-option matrix: every option a pulling client uses, pulled from
//! upserv and from a real `rsync --daemon` serving the same tree, at
//! protocols 27 to 31 and the client's default (32 for rsync 3.4 and
//! later). Each row must give the
//! same tree, exit code, itemized changes and statistics (see
//! `crate::support::differential`). Adding a case is one line.

use crate::support::differential::BasisFn;
use crate::support::tree::Device;
use crate::support::*;
use std::path::Path;

/// A fixed tree with every kind of entry, plus a random one around it.
fn standard(tree: &TestTree) {
    tree.random(&RandomSpec::SMALL, 7);
    fixed(tree);
}

/// Only the fixed entries: the random tree has symlink loops, which make
/// rsyncd itself recurse without end under `-L`.
fn fixed(tree: &TestTree) {
    tree.file("top.txt", b"top level file\n")
        .mode(0o644)
        .mtime(1_600_000_000);
    // Protocol 30 sends 64-bit mtimes, 31 their nanoseconds.
    tree.file("dir/before-1970.txt", b"an old file\n")
        .mtime_ns(-86_400 * 400, 250_000_000);
    tree.file("nanoseconds.txt", b"a precise time\n")
        .mtime_ns(1_700_000_000, 123_456_789);
    tree.file("dir/inner.txt", b"inside a directory\n")
        .mode(0o600)
        .owner(1234, 5678);
    tree.file(
        "dir/sub/deep.bin",
        &crate::support::tree::Rng::new(3).bytes(64 * 1024),
    )
    .mode(0o755);
    tree.file(
        "big.bin",
        &crate::support::tree::Rng::new(4).bytes(300 * 1024),
    );
    tree.file("setuid", b"#!/bin/sh\n").mode(0o4755);
    tree.symlink("dir/link-up", "../top.txt");
    tree.symlink("dangling", "does/not/exist");
    tree.hard_link("dir/hard", "top.txt");
    tree.device("dev/null-ish", Device::Char, 1, 3);
    tree.fifo("dev/fifo");
    tree.dir("empty");
}

/// A basis where every regular file was cut to half its length, so
/// `--append` has something to append to.
fn basis_truncated(source: &Path, dest: &Path) {
    basis_copy(source, dest);
    for entry in walk(dest) {
        let meta = std::fs::symlink_metadata(&entry).expect("basis entry");
        if meta.is_file() {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&entry)
                .expect("opening basis file");
            file.set_len(meta.len() / 2).expect("truncating basis file");
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading basis dir") {
        let path = entry.expect("dir entry").path();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Where the `--files-from` cases find their list: the option is a static
/// string, so the list lives at a fixed path the setup writes (the same
/// content every time).
const FILES_FROM: &str = "/tmp/upserv-options-files-from.list";

fn with_file_list(tree: &TestTree) {
    standard(tree);
    let list = "top.txt\ndir/sub/deep.bin\nempty\n# a comment\nnot-there\nREADME-0\n";
    std::fs::write(FILES_FROM, list).expect("writing the --files-from list");
}

/// `--exclude-from`'s list, at a fixed path for the same reason.
const EXCLUDE_FROM: &str = "/tmp/upserv-options-exclude-from.list";

fn with_exclude_list(tree: &TestTree) {
    standard(tree);
    std::fs::write(EXCLUDE_FROM, "*.bin\n# comment\n- dev/\n+ README-0/\n")
        .expect("writing the --exclude-from list");
}

/// Per-directory filter files for `-F` and `-FF`, and `.cvsignore` for `-C`.
fn with_filter_files(tree: &TestTree) {
    standard(tree);
    tree.file(".rsync-filter", b"- *.bin\n+ dir/\n");
    tree.file("dir/.rsync-filter", b"- inner.txt\n");
    tree.file("dir/.cvsignore", b"hard\n");
    tree.file("core", b"a CVS-ignored name\n");
    tree.file("dir/notes.o", b"object file\n");
    tree.file("dir/.git/config", b"[core]\n");
}

/// A `--files-from` list naming directories, for the case with `-F`.
const FILES_FROM_DIRS: &str = "/tmp/upserv-options-files-from-dirs.list";

/// Filter files and a `--files-from` list: the client then sends `--from0`
/// (its names come NUL-separated), and rsyncd reads the per-directory merge
/// files of the directories it enters NUL-separated too, so their lines do
/// not split into rules.
fn with_dir_list_and_filter_files(tree: &TestTree) {
    with_filter_files(tree);
    std::fs::write(FILES_FROM_DIRS, "top.txt\ndir/\n").expect("writing the --files-from list");
}

/// Symlinks inside the module for the link options: to a file, to a
/// directory, relative and absolute-within-the-transfer.
fn with_links(tree: &TestTree) {
    fixed(tree);
    tree.symlink("links/to-dir", "../dir");
    tree.symlink("links/to-file", "../top.txt");
    tree.symlink("links/up-and-back", "../links/to-file");
    tree.symlink("links/sub/unsafe", "../../top.txt");
}

/// A file owned by a user and group with names (nobody, nogroup): the
/// client says how it maps them with `--debug=own2`.
fn with_named_owner(tree: &TestTree) {
    fixed(tree);
    tree.file("nobodys.txt", b"owned by nobody\n")
        .owner(65534, 65534);
}

/// Empty directories and directories that become empty under a filter.
fn with_empty_dirs(tree: &TestTree) {
    standard(tree);
    tree.dir("hollow/a/b");
    tree.file("hollow/c/only.bin", b"filtered away\n");
    tree.file("hollow/d/kept.txt", b"kept\n");
}

const EDITED: Option<BasisFn> = Some(basis_edited);
const COPY: Option<BasisFn> = Some(basis_copy);
const TRUNCATED: Option<BasisFn> = Some(basis_truncated);

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case::new("archive", &["-a", "-i"], standard, None),
    Case::new("archive hard links", &["-aH", "-i"], standard, None),
    Case::new("recursive only", &["-r", "-i"], standard, None),
    Case::new("links", &["-rl", "-i"], standard, None),
    Case::new("perms", &["-rp", "-i"], standard, None),
    Case::new("times", &["-rt", "-i"], standard, None),
    Case::new("owner", &["-ro", "-i"], standard, None),
    Case::new("group", &["-rg", "-i"], standard, None),
    Case::new("numeric ids", &["-a", "--numeric-ids", "-i"], standard, None),
    Case::new("verbose", &["-av"], standard, None),
    Case::new("quiet", &["-aq"], standard, None),
    Case::new("stats", &["-a", "--stats"], standard, None),
    Case::new("list only", &["--list-only"], standard, None),
    Case::new("list only recursive", &["-r", "--list-only"], standard, None),
    Case::new("dry run", &["-ani"], standard, EDITED),
    Case::new("delta", &["-a", "-i", "--stats"], standard, EDITED),
    Case::new("checksum", &["-aci"], standard, EDITED),
    Case::new("checksum unchanged", &["-aci"], standard, COPY),
    Case::new("whole file", &["-aWi", "--stats"], standard, EDITED),
    Case::new("ignore times", &["-aIi", "--stats"], standard, COPY),
    Case::new("size only", &["-a", "--size-only", "-i"], standard, EDITED),
    Case::new("block size", &["-a", "--block-size=1024", "-i", "--stats"], standard, EDITED),
    Case::new("checksum seed", &["-a", "--checksum-seed=12345", "--stats"], standard, EDITED),
    Case::new("checksum choice md4", &["-a", "--checksum-choice=md4", "-i", "--stats"], standard, EDITED),
    Case::new("checksum choice md5", &["-a", "--checksum-choice=md5", "-i", "--stats"], standard, EDITED),
    Case::new("checksum choice md5,md4", &["-ac", "--checksum-choice=md5,md4", "-i", "--stats"], standard, EDITED),
    Case::new("checksum choice md4,md5", &["-ac", "--checksum-choice=md4,md5", "-i"], standard, COPY),
    Case::new("partial", &["-a", "--partial", "-i"], standard, EDITED),
    // In one list (also "append" and "append verify"): with incremental recursion the
    // client's generator and receiver race over hard-linked basis files
    // written in place, and its itemized output varies from run to run
    // whichever server sends (rsyncd against rsyncd: `dir/hard` itemized
    // or not, at 30, 31 and 32, with both clients).
    Case::new("inplace", &["-a", "--inplace", "--no-inc-recursive", "-i", "--stats"], standard, EDITED),
    Case::new("append", &["-a", "--append", "--no-inc-recursive", "-i", "--stats"], standard, TRUNCATED),
    Case::new("append verify", &["-a", "--append-verify", "--no-inc-recursive", "-i", "--stats"], standard, TRUNCATED),
    Case::new("delete", &["-a", "--delete", "-i"], standard, EDITED),
    Case::new("timeout", &["-a", "--timeout=30", "-i"], standard, None),
    Case::new("no motd", &["-a", "--no-motd", "-i"], standard, None),
    Case::new("one directory", &["-a", "-i"], standard, None).at("m/dir"),
    Case::new("one directory's contents", &["-a", "-i"], standard, None).at("m/dir/"),
    Case::new("single file", &["-a", "-i"], standard, None).at("m/top.txt"),
    Case::new("single file onto basis", &["-a", "-i", "--stats"], standard, EDITED).at("m/big.bin"),
    Case::new("several sources", &["-a", "-i"], standard, None).at("m/top.txt m/dir/sub m/empty/"),
    Case::new("module without slash", &["-a", "-i"], standard, None).at("m"),
    Case::new("missing source", &["-a", "-i"], standard, None).at("m/not-there"),
    Case::new("missing and present", &["-a", "-i"], standard, None).at("m/not-there m/top.txt"),
    Case::new("dirs without recursion", &["-dlpt", "-i"], standard, None),
    Case::new("files from", &["-a", "-i", "--files-from=/tmp/upserv-options-files-from.list"], with_file_list, None),
    Case::new("files from, recursive", &["-ar", "-i", "--files-from=/tmp/upserv-options-files-from.list"], with_file_list, None),
    Case::new("files from, not relative", &["-a", "-i", "--no-relative", "--files-from=/tmp/upserv-options-files-from.list"], with_file_list, None),
    Case::new("files from, NUL-separated", &["-a", "-i", "--from0", "--files-from=/tmp/upserv-options-files-from.list"], with_file_list, None),
    Case::new("files from with -R", &["-a", "-R", "-i", "--files-from=/tmp/upserv-options-files-from.list"], with_file_list, None).at("m/dir/"),
    Case::new("wildcards", &["-a", "-i"], standard, None).at("m/*.txt m/d*/s*"),
    Case::new("wildcard matching nothing", &["-a", "-i"], standard, None).at("m/nothing*"),
    Case::new("secluded args", &["-a", "-s", "-i"], standard, None).at("m/dir/"),
    // Compression.
    Case::new("compress", &["-az", "-i", "--stats"], standard, EDITED),
    Case::new("compress without history", &["-a", "-zz", "-i", "--stats"], standard, EDITED),
    Case::new("compress level 1", &["-a", "--compress-level=1", "-z", "-i"], standard, EDITED),
    Case::new("compress level 9", &["-az", "--compress-level=9", "-i"], standard, None),
    Case::new("compress level alone", &["-a", "--compress-level=9", "-i", "--stats"], standard, EDITED),
    Case::new("compress level 0", &["-az", "--compress-level=0", "-i", "--stats"], standard, EDITED),
    // Filters the client sends.
    Case::new("exclude", &["-a", "-i", "--exclude=*.bin"], standard, None),
    Case::new("include then exclude", &["-a", "-i", "--include=dir/***", "--exclude=*"], standard, None),
    Case::new("anchored and dir-only", &["-a", "-i", "--exclude=/dir/sub/", "--exclude=/empty"], standard, None),
    Case::new("character class and **", &["-a", "-i", "--exclude=[A-Z]*-0/**/*.img"], standard, None),
    Case::new("filter rules with modifiers", &["-a", "-i", "--filter=-! */", "--filter=+ *.txt", "--filter=-s *.bin", "--filter=- /dev/"], standard, None),
    Case::new("filter clear and show/hide", &["-a", "-i", "--filter=- *", "--filter=!", "--filter=H *.bin", "--filter=S big.bin"], standard, None),
    Case::new("exclude from", &["-a", "-i", "--exclude-from=/tmp/upserv-options-exclude-from.list"], with_exclude_list, None),
    Case::new("cvs exclude", &["-a", "-C", "-i"], with_filter_files, None),
    Case::new("per-directory filter files", &["-a", "-F", "-i"], with_filter_files, None),
    Case::new("filter files hidden too", &["-a", "-FF", "-i"], with_filter_files, None),
    Case::new("module exclude", &["-a", "-i"], standard, None).with(&[("exclude", "*.bin dev/")]),
    Case::new("module filter", &["-a", "-i"], standard, None).with(&[("filter", "- top.txt + dir/*** - dir/**")]),
    Case::new("delete excluded", &["-a", "-i", "--delete", "--delete-excluded", "--exclude=*.bin"], standard, EDITED),
    // The rest of the file list.
    Case::new("relative", &["-aR", "-i"], standard, None).at("m/dir/sub"),
    Case::new("relative with /./", &["-aR", "-i"], standard, None).at("m/dir/./sub/deep.bin"),
    Case::new("relative from ./", &["-aR", "-i"], standard, None).at("m/./dir/sub m/./top.txt"),
    Case::new("relative, no implied dirs", &["-aR", "--no-implied-dirs", "-i"], standard, None).at("m/dir/sub/deep.bin"),
    Case::new("devices and specials", &["-rD", "-i"], standard, None),
    Case::new("specials only", &["-r", "--specials", "-i"], standard, None),
    Case::new("one file system", &["-ax", "-i"], standard, None),
    Case::new("copy links", &["-aL", "-i"], with_links, None),
    // rsyncd 3.2.7 (use chroot = no) fails to stat what the unsafe links
    // point to: "readlink_stat(...) failed: Invalid cross-device link (18)".
    Case::new("copy unsafe links", &["-a", "--copy-unsafe-links", "-i"], with_links, None).at("m/links/")
        .reference_since((3, 5, 0), "rsyncd 3.2.7 fails --copy-unsafe-links with EXDEV"),
    Case::new("safe links", &["-a", "--safe-links", "-i"], with_links, None).at("m/links/"),
    Case::new("copy dirlinks", &["-ak", "-i"], with_links, None),
    Case::new("prune empty dirs", &["-am", "-i", "--exclude=*.bin"], with_empty_dirs, None),
    Case::new("max size", &["-a", "-i", "--max-size=10K"], standard, None),
    Case::new("min size", &["-a", "-i", "--min-size=10K"], standard, None),
    Case::new("ignore errors", &["-a", "-i", "--ignore-errors", "--delete"], standard, EDITED),
    // A module's refuse options: the same refusals, messages and exit codes.
    Case::new("refused checksum", &["-aci"], standard, None).with(&[("refuse options", "c delete")]),
    Case::new("refused archive", &["-ai"], standard, None).with(&[("refuse options", "a")]),
    Case::new("refused -D", &["-ai"], standard, None).with(&[("refuse options", "D")]),
    Case::new("refused delete, implied", &["-ai", "--delete-after"], standard, EDITED).with(&[("refuse options", "delete")]),
    Case::new("refused delete modes but one", &["-ai", "--delete-after"], standard, EDITED).with(&[("refuse options", "delete-* !delete-after")]),
    Case::new("refused partial, implied", &["-ai", "--inplace"], standard, EDITED).with(&[("refuse options", "partial")]),
    Case::new("refused compression", &["-azi"], standard, None).with(&[("refuse options", "compress")]),
    Case::new("refused by wildcard", &["-ai", "--numeric-ids"], standard, None).with(&[("refuse options", "numeric*")]),
    Case::new("iconv without a charset", &["-ai", "--iconv=utf8"], standard, None),
    Case::new("copy devices", &["-ai", "--copy-devices"], standard, None),
    // What a module imposes on every pull.
    Case::new("module numeric ids", &["-a", "-i", "--debug=own2"], with_named_owner, None).with(&[("numeric ids", "yes")]),
    Case::new("names of owners", &["-a", "-i", "--debug=own2"], with_named_owner, None),
    Case::new("module ignore errors", &["-aL", "-i", "--delete"], with_links, EDITED).with(&[("ignore errors", "yes")]),
    Case::new("module ignore nonreadable", &["-a", "-i"], standard, None).with(&[("ignore nonreadable", "yes")]),
    // Combinations users type.
    Case::new("avzH delete", &["-avzH", "--delete"], standard, EDITED),
    Case::new("rlptD -F", &["-rlptD", "-F", "-i"], with_filter_files, EDITED),
    Case::new("files from with -F", &["-a", "-i", "-F", "--files-from=/tmp/upserv-options-files-from-dirs.list"], with_dir_list_and_filter_files, None),
    Case::new("avc exclude-from", &["-avc", "--exclude-from=/tmp/upserv-options-exclude-from.list"], with_exclude_list, EDITED),
];

/// The protocols before incremental recursion.
const OLD_PROTOCOLS: ProtocolSet =
    ProtocolSet(&[Protocol::V(27), Protocol::V(28), Protocol::V(29)]);
/// 30, 31 and the client's own (32 for rsync 3.4 and later, the Debian
/// 3.2.7 client included).
const NEW_PROTOCOLS: ProtocolSet =
    ProtocolSet(&[Protocol::V(30), Protocol::V(31), Protocol::Default]);

/// The table runs in interleaved shares so the test threads can pull in
/// parallel (each case starts its own pair of servers).
const SHARES: usize = 4;

fn run_share(share: usize) {
    let cases: Vec<Case> = CASES
        .iter()
        .enumerate()
        .filter(|(i, _)| i % SHARES == share)
        .map(|(_, c)| c.clone())
        .collect();
    run_cases(&cases, &OLD_PROTOCOLS);
    run_cases(&cases, &NEW_PROTOCOLS);
}

#[test]
fn every_option_pulls_like_rsyncd_share_0() {
    run_share(0);
}

#[test]
fn every_option_pulls_like_rsyncd_share_1() {
    run_share(1);
}

#[test]
fn every_option_pulls_like_rsyncd_share_2() {
    run_share(2);
}

#[test]
fn every_option_pulls_like_rsyncd_share_3() {
    run_share(3);
}
