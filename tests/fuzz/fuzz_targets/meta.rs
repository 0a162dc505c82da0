//! The metadata table reader on a table file from the builds directory,
//! which anyone who can write there may have changed. The input is the
//! table's content before compression (it is gzipped here, so the fuzzer
//! reaches the parser instead of the gzip checksum). Besides not panicking
//! and staying within the time and memory limits, a table that loads must
//! be what the reader promises: paths sorted without duplicates, each found
//! again by `get`, and each device, FIFO or socket listed by its directory.
#![no_main]

use std::fs;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use upserv::meta::MetaTable;

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(at) => &path[..at],
        None => b"",
    }
}

fuzz_target!(|data: &[u8]| {
    let path = upserv_fuzz::scratch().join("table");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("compress in memory");
    fs::write(&path, gz.finish().expect("compress in memory")).expect("write the table");
    let Ok(table) = MetaTable::load(&path) else {
        return;
    };
    let mut previous: Option<&[u8]> = None;
    for (path, entry) in table.iter() {
        assert!(previous.is_none_or(|p| p < path), "paths out of order");
        previous = Some(path);
        assert_eq!(table.get(path), Some(entry), "an entry not found again");
        if entry.is_table_only() && !path.is_empty() {
            let name = &path[parent(path).len()..];
            let name = name.strip_prefix(b"/").unwrap_or(name);
            assert!(
                table
                    .table_only_children(parent(path))
                    .any(|(child, _)| child == name),
                "a table-only entry missing from its directory"
            );
        }
    }
});
