//! Inputs the fuzz targets under `tests/fuzz/` found to crash upserv (or,
//! for the last one, that writing them showed to be unbounded), each fed
//! to the same public entry point its target uses. Every test here failed
//! before its fix; the expected answers come from rsync's behaviour
//! (rsync: options.c) or from upserv's documented limits, not from what upserv
//! printed.

use std::fs::{self, File};
use std::os::fd::OwnedFd;

use upserv::config::parse_config_str;
use upserv::daemon::session::{self, Outcome};
use upserv::daemon::Server;
use upserv::protocol::io::Conn;
use upserv::protocol::options::Options;
use upserv::protocol::sender::MAX_FILES_FROM_LEN;

fn args(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|a| a.to_vec()).collect()
}

/// `options`: a size suffix starting with a multi-byte character was split
/// inside the character. rsync refuses the value as an invalid size.
#[test]
fn size_with_a_multibyte_suffix_is_refused() {
    let crash: &[u8] = b"--min-size=0444444\xcf\x9bnorein-size=04444444dnoress";
    let err = Options::parse(&args(&[b"--server", b"--sender", crash, b".", b"m/"]))
        .expect_err("an invalid size");
    assert!(err.0.contains("--min-size: invalid size"), "{}", err.0);
}

/// `options` (found by reading the same function after the crash above):
/// a size past 2^63 overflowed when its `+1` was added. rsync says the
/// value is too large.
#[test]
fn size_past_two_to_the_63_is_refused() {
    for value in [
        &b"--max-size=99999999999999999999p+1"[..],
        b"--max-size=8192p",
    ] {
        let parsed = Options::parse(&args(&[b"--server", b"--sender", value, b".", b"m/"]));
        assert!(parsed.is_err(), "{}", String::from_utf8_lossy(value));
    }
    let largest = Options::parse(&args(&[
        b"--server",
        b"--sender",
        b"--max-size=8191p",
        b".",
        b"m/",
    ]))
    .expect("a size below 2^63");
    assert_eq!(largest.max_size, Some(8191 << 50));
}

/// What `config` checks: the printed settings read back the same.
fn assert_round_trip(text: &str) {
    let name = std::path::Path::new("/nonexistent/upserv.conf");
    let (settings, _) = parse_config_str(text, name).expect("the configuration parses");
    let printed = settings.to_string();
    let (again, _) = parse_config_str(&printed, name).expect("the printout parses");
    assert_eq!(again, settings, "printed:\n{printed}");
}

/// `config`: a path parameter whose value ends in a blank and a slash lost
/// the blank when `check-config`'s printout was read back (only `path`
/// itself was protected). The fuzzer's input, then the readable case.
#[test]
fn path_parameters_ending_in_a_blank_survive_the_printout() {
    // From the fuzzer; not UTF-8, so read as the target reads it.
    let crash: &[u8] = b"# every= kind\x90\nmotd file =~\x00 /etc/mo file =~\x00 /etc/motun/upserv.p a module \\\n  continued\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x01\x00\x00\x00\x00\x00\x00&\xf4\xf4\xf4\xf4\xf4\xf4\xfc\x0b\x0b\x0b\x0b\x0b\x0b /srv\x0b\x0b\x0b/\x0b";
    assert_round_trip(&String::from_utf8_lossy(crash));
    let text = "motd file = /srv/motd /\nlog file = /var/log/x\t/\n[m]\npath = /m /\n";
    assert_round_trip(text);
    let (settings, _) = parse_config_str(text, std::path::Path::new("/x.conf")).expect("parses");
    assert_eq!(
        settings.global.motd_file.as_deref(),
        Some(std::path::Path::new("/srv/motd "))
    );
}

/// A daemon with module `m` over a one-file tree in `dir`.
fn server_in(dir: &std::path::Path) -> Server {
    let root = dir.join("module");
    fs::create_dir_all(&root).expect("module dir");
    fs::write(root.join("a"), b"a file\n").expect("module file");
    let text = format!("[m]\npath = {}\n", root.display());
    let (settings, _) = parse_config_str(&text, &dir.join("t.conf")).expect("config");
    Server::new(&settings, None).expect("server")
}

/// One connection whose client sent `input` (from a file, as a socket that
/// delivers everything at once) and whose output goes nowhere.
fn serve(server: &Server, dir: &std::path::Path, input: &[u8]) -> Outcome {
    let path = dir.join("input");
    fs::write(&path, input).expect("write the input");
    let rfd = OwnedFd::from(File::open(&path).expect("open the input"));
    let sink = fs::OpenOptions::new().write(true).open("/dev/null");
    let wfd = OwnedFd::from(sink.expect("open /dev/null"));
    let mut conn = Conn::new(rfd, wfd).expect("connection");
    session::run(server, &mut conn, None)
}

/// `--files-from=-` names were bounded in number and length but not in
/// total, so one connection could make the daemon hold gigabytes. Now they
/// are bounded like a `--files-from` file read from the module.
#[test]
fn files_from_names_over_the_connection_are_bounded_in_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server_in(dir.path());
    let mut input =
        b"@RSYNCD: 29.0\nm\n--server\n--sender\n-r\n--files-from=-\n--from0\n.\nm/\n\n".to_vec();
    input.extend_from_slice(&0i32.to_le_bytes()); // no filter rules
    let name = [b'a'; 4000];
    let names = MAX_FILES_FROM_LEN as usize / (name.len() + 1) + 1;
    for _ in 0..names {
        input.extend_from_slice(&name);
        input.push(0);
    }
    input.push(0);
    match serve(&server, dir.path(), &input) {
        Outcome::Failed { error, .. } => assert!(
            error.contains(&format!("names longer than {MAX_FILES_FROM_LEN} bytes")),
            "{error}"
        ),
        other => panic!("expected a failure, got: {other}"),
    }
}

/// `unpack`: a tar archive cut right after an entry's data, without the two
/// blocks of zeros that end an archive, was unpacked as complete (its seed
/// `cut`). A cut archive is now refused and leaves nothing behind.
#[test]
fn a_tar_without_its_end_blocks_is_refused() {
    use upserv::cache::unpack::{unpack, ArchiveKind, Plan};
    use upserv::cache::Layout;
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds/unpack/cut");
    let input = fs::read(seed).expect("the seed");
    let archive = dir.path().join("archive");
    fs::write(&archive, &input[1..]).expect("write the archive");
    let scratch = dir.path().join("scratch");
    let mut on_entry = |_: u64| {};
    let mut plan = Plan {
        layout: Layout::Plain,
        contents: None,
        on_entry: &mut on_entry,
        max_bytes: 1 << 20,
    };
    let err = unpack(&archive, ArchiveKind::Tar, &scratch, &mut plan).expect_err("a cut archive");
    assert!(err.to_string().contains("cut short"), "{err}");
    assert!(!scratch.exists());
}

/// `meta`: a table whose path was not in its clean form (`homehome/`, with
/// a trailing slash) loaded, and its entry could never be found again. Such
/// a table is now refused as damaged, like any other damage (the build is
/// then fetched again).
#[test]
fn a_table_path_in_another_spelling_is_refused() {
    use std::io::Write;
    use upserv::meta::MetaTable;
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [&b"homehome/"[..], b"./x", b"a//b", b"a/./b", b"a/..", b"."] {
        let mut raw = b"UPSVMETA".to_vec();
        raw.extend_from_slice(&1u32.to_le_bytes()); // version
        raw.extend_from_slice(&0u32.to_le_bytes()); // owner names
        raw.extend_from_slice(&1u32.to_le_bytes()); // entries
        raw.extend_from_slice(&(bad.len() as u32).to_le_bytes());
        raw.extend_from_slice(bad);
        for word in [0o40755u32, 0, 0, u32::MAX, u32::MAX] {
            raw.extend_from_slice(&word.to_le_bytes());
        }
        raw.extend_from_slice(&0i64.to_le_bytes()); // mtime
        raw.extend_from_slice(&[0; 8]); // device numbers
        raw.extend_from_slice(b"END!");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("compress");
        let path = dir.path().join("table");
        fs::write(&path, gz.finish().expect("compress")).expect("write");
        let err = MetaTable::load(&path).expect_err(&String::from_utf8_lossy(bad));
        assert!(err.to_string().contains("clean form"), "{err}");
    }
}
