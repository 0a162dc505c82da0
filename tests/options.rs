//! The client-option matrix: every option a pulling client uses, pulled from
//! upserv and from a real `rsync --daemon` serving the same tree, at
//! protocols 27, 28, 29 and the client's default. Each row must give the
//! same tree, exit code, itemized changes and statistics (see
//! `common::differential`). Adding a case is one line.

mod common;

use common::differential::BasisFn;
use common::tree::Device;
use common::*;
use std::path::Path;

/// A fixed tree with every kind of entry, plus a random one around it.
fn standard(tree: &TestTree) {
    tree.random(&RandomSpec::SMALL, 7);
    tree.file("top.txt", b"top level file\n")
        .mode(0o644)
        .mtime(1_600_000_000);
    tree.file("dir/inner.txt", b"inside a directory\n")
        .mode(0o600)
        .owner(1234, 5678);
    tree.file(
        "dir/sub/deep.bin",
        &common::tree::Rng::new(3).bytes(64 * 1024),
    )
    .mode(0o755);
    tree.file("big.bin", &common::tree::Rng::new(4).bytes(300 * 1024));
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
    Case::new("partial", &["-a", "--partial", "-i"], standard, EDITED),
    Case::new("inplace", &["-a", "--inplace", "-i", "--stats"], standard, EDITED),
    Case::new("append", &["-a", "--append", "-i", "--stats"], standard, TRUNCATED),
    Case::new("append verify", &["-a", "--append-verify", "-i", "--stats"], standard, TRUNCATED),
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
];

#[test]
fn every_option_pulls_like_rsyncd() {
    run_cases(CASES, &ProtocolSet::ALL);
}
