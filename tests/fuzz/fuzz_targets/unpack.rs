//! The build cache's unpacker on an archive from the upstream: tar, bare or
//! compressed. Whatever the archive holds, nothing may appear outside the
//! scratch directory, a refused archive leaves no scratch behind, and an
//! accepted one yields a loadable metadata table of clean paths.
//!
//! Input: one choice byte (compression and layout), then the archive.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use upserv::cache::unpack::{clean_path, unpack, ArchiveKind, Plan};
use upserv::cache::Layout;
use upserv::meta::MetaTable;

/// Mostly bare tar: the compressors are libraries of their own, fuzzed
/// elsewhere; here they only need to be wired up right.
const KINDS: [ArchiveKind; 8] = [
    ArchiveKind::Tar,
    ArchiveKind::Tar,
    ArchiveKind::Tar,
    ArchiveKind::Tar,
    ArchiveKind::Gzip,
    ArchiveKind::Bzip2,
    ArchiveKind::Xz,
    ArchiveKind::Lzma,
];

/// Tight, so that a small input expanding into a large file is refused fast.
const MAX_UNPACKED_BYTES: u64 = 4 << 20;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list the work directory")
        .map(|e| {
            e.expect("read the work directory")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, archive)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(choice & 7)];
    let layout = if choice & 8 != 0 {
        Layout::Olpc
    } else {
        Layout::Plain
    };
    let work = upserv_fuzz::scratch().join("unpack");
    let outside = work.join("outside");
    fs::create_dir_all(&outside).expect("create the canary directory");
    let archive_path = work.join("archive");
    fs::write(&archive_path, archive).expect("write the archive");
    let scratch = work.join("scratch");
    let mut on_entry = |_: u64| {};
    let mut plan = Plan {
        layout,
        contents: None,
        on_entry: &mut on_entry,
        max_bytes: MAX_UNPACKED_BYTES,
    };
    let result = unpack(&archive_path, kind, &scratch, &mut plan);
    assert!(
        names_in(&outside).is_empty(),
        "something was written outside the scratch directory"
    );
    match result {
        Err(_) => assert_eq!(
            names_in(&work),
            ["archive", "outside"],
            "refused archive left files"
        ),
        Ok(unpacked) => {
            assert!(unpacked.tree.starts_with(&scratch), "tree outside scratch");
            assert!(
                unpacked.table.starts_with(&scratch),
                "table outside scratch"
            );
            let table = MetaTable::load(&unpacked.table).expect("the table loads");
            for (path, _) in table.iter() {
                assert_eq!(clean_path(path).as_deref(), Ok(path));
            }
            fs::remove_dir_all(&scratch).expect("remove the scratch directory");
        }
    }
});
