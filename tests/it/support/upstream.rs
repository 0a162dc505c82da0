//! A loopback HTTP upstream for the cache tests, and archive builders.
//!
//! The server serves files from memory on 127.0.0.1, one thread per
//! connection, `Connection: close`. Per path it can answer a fixed status
//! (404, 500), ignore `Range`, cut the body after N bytes for the next K
//! requests, hold the body at a gate until the test opens it, or send a
//! body without a length that never ends. It counts
//! GET requests and records the `Range` headers it saw, and lets a test wait
//! (without sleeping) until a given number of requests has arrived. The
//! ETag of a file is its length, and `If-Range` is honoured with it.
//!
//! The builders make tar archives in memory, including hostile ones whose
//! names the `tar` crate would refuse to write (the raw header bytes are set).
//! This fixture must not depend on upserv's own code, so that what it checks
//! is independent of it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use super::wait::WAIT_LIMIT;

/// Longest request head the server reads.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes written per chunk of a body.
const CHUNK: usize = 16 * 1024;

/// How the server answers one path.
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Answer this status with an empty body instead of the file.
    pub status: Option<u16>,
    /// Answer `302 Found` pointing at this path of the same server.
    pub redirect: Option<String>,
    /// Answer 200 with the whole file even when asked for a range.
    pub ignore_range: bool,
    /// For this many more requests, close the connection after this many body bytes.
    pub cut: Option<(usize, u32)>,
    /// Send this many body bytes, then wait for [`Upstream::open_gate`].
    pub gate_after: Option<usize>,
    /// A slow link: the body goes in pieces of this many bytes with this
    /// pause before each piece after the first.
    pub pace: Option<(usize, Duration)>,
    /// Answer 200 without a `Content-Length` and send the file over and
    /// over until the client hangs up.
    pub endless: bool,
    /// Answer a range with at most this many bytes, and with
    /// `Content-Range: bytes START-END/*` (no total length).
    pub short_range: Option<usize>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    behavior: HashMap<String, Behavior>,
    gets: HashMap<String, usize>,
    ranges: Vec<(String, Option<String>)>,
    total_gets: usize,
    gate_open: bool,
    at_gate: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// The running server; stops when dropped.
pub struct Upstream {
    shared: Arc<Shared>,
    port: u16,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn_shared = Arc::clone(&accept_shared);
                thread::spawn(move || {
                    let _ = serve(&conn_shared, stream);
                });
            }
        });
        Upstream { shared, port }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.shared
            .state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), body);
    }

    pub fn set_behavior(&self, path: &str, behavior: Behavior) {
        self.shared
            .state
            .lock()
            .unwrap()
            .behavior
            .insert(path.to_string(), behavior);
    }

    /// Makes `path` send `bytes` of its body, then hold the rest until
    /// [`Upstream::open_gate`].
    pub fn gate_after(&self, path: &str, bytes: usize) {
        self.set_behavior(
            path,
            Behavior {
                gate_after: Some(bytes),
                ..Behavior::default()
            },
        );
    }

    /// Makes `path` close the connection after `bytes` of its body, once.
    pub fn cut_once(&self, path: &str, bytes: usize) {
        self.set_behavior(
            path,
            Behavior {
                cut: Some((bytes, 1)),
                ..Behavior::default()
            },
        );
    }

    /// Makes `path` answer `status` with an empty body.
    pub fn answer_status(&self, path: &str, status: u16) {
        self.set_behavior(
            path,
            Behavior {
                status: Some(status),
                ..Behavior::default()
            },
        );
    }

    /// GET requests seen for `path`.
    pub fn gets(&self, path: &str) -> usize {
        *self
            .shared
            .state
            .lock()
            .unwrap()
            .gets
            .get(path)
            .unwrap_or(&0)
    }

    /// The `Range` headers of the requests for `path`, in order.
    pub fn ranges(&self, path: &str) -> Vec<Option<String>> {
        let state = self.shared.state.lock().unwrap();
        state
            .ranges
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Panics unless `path` was asked for twice: whole, then from byte
    /// `from` on (the Range request that follows a cut).
    pub fn assert_asked_again_from(&self, path: &str, from: usize) {
        assert_eq!(
            self.ranges(path),
            [None, Some(format!("bytes={from}-"))],
            "requests for {path}"
        );
    }

    /// Waits until `count` responses are held at the gate.
    pub fn wait_at_gate(&self, count: usize) {
        self.wait_for(|s| s.at_gate >= count, "a request at the gate");
    }

    pub fn open_gate(&self) {
        self.shared.state.lock().unwrap().gate_open = true;
        self.shared.changed.notify_all();
    }

    fn wait_for(&self, done: impl Fn(&State) -> bool, what: &str) {
        let state = self.shared.state.lock().unwrap();
        let (_state, timeout) = self
            .shared
            .changed
            .wait_timeout_while(state, WAIT_LIMIT, |s| !done(s))
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "upstream: timed out waiting for {what}"
        );
    }
}

/// `http://127.0.0.1:PORT` + `path` for a loopback port that was just
/// closed: connections to it are refused.
pub fn refused_url(path: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}{path}")
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.open_gate();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        reader.read_until(b'\n', &mut head)?;
        if head.len() == before || head.ends_with(b"\r\n\r\n") || head.len() > MAX_HEAD {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let range = headers.get("range").cloned();
    let if_range = headers.get("if-range").cloned();
    let (file, behavior) = {
        let mut state = shared.state.lock().unwrap();
        if method == "GET" {
            *state.gets.entry(path.to_string()).or_default() += 1;
            state.total_gets += 1;
            state.ranges.push((path.to_string(), range.clone()));
        }
        let mut behavior = state.behavior.get(path).cloned().unwrap_or_default();
        if let Some((bytes, times)) = behavior.cut {
            let entry = state.behavior.get_mut(path).unwrap();
            entry.cut = (times > 1).then_some((bytes, times - 1));
            behavior.cut = (times > 0).then_some((bytes, times));
        }
        shared.changed.notify_all();
        (state.files.get(path).cloned(), behavior)
    };
    let mut out = stream;
    if let Some(to) = &behavior.redirect {
        write!(
            out,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let Some(file) = file.filter(|_| behavior.status.is_none()) else {
        let status = behavior.status.unwrap_or(404);
        write!(
            out,
            "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    };
    let etag = format!("\"{:x}\"", file.len());
    // A range is only for the version the client names in `If-Range`.
    let (start, last) = match range
        .as_deref()
        .filter(|_| !behavior.ignore_range)
        .filter(|_| if_range.as_ref().is_none_or(|v| *v == etag))
        .and_then(parse_range)
    {
        Some((start, last)) => (Some(start), last),
        None => (None, None),
    };
    // A closed range (`bytes=A-B`, what a caching proxy's slices ask for)
    // ends at B or at the end of the file.
    let mut end = last.map_or(file.len(), |b| (b + 1).min(file.len()));
    if behavior.endless {
        write!(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
        loop {
            out.write_all(&file)?;
        }
    }
    match start {
        Some(start) if start >= file.len() => {
            write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                file.len()
            )?;
            return Ok(());
        }
        Some(start) => {
            // `short_range`: a shorter answer whose total is not given.
            let total = match behavior.short_range {
                Some(most) => {
                    end = (start + most).min(end);
                    "*".to_string()
                }
                None => file.len().to_string(),
            };
            write!(
                out,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                end - 1,
                end - start
            )?
        }
        None => write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            file.len()
        )?,
    }
    let body = &file[start.unwrap_or(0)..end];
    let limit = behavior.cut.map_or(body.len(), |(n, _)| n.min(body.len()));
    send_body(shared, &mut out, &body[..limit], &behavior)?;
    out.flush()
}

/// `bytes=A-` or `bytes=A-B`: the first byte and, if given, the last.
fn parse_range(header: &str) -> Option<(usize, Option<usize>)> {
    let (first, last) = header.strip_prefix("bytes=")?.split_once('-')?;
    let first = first.parse().ok()?;
    if last.is_empty() {
        return Some((first, None));
    }
    let last: usize = last.parse().ok()?;
    (last >= first).then_some((first, Some(last)))
}

fn send_body(
    shared: &Shared,
    out: &mut TcpStream,
    body: &[u8],
    behavior: &Behavior,
) -> std::io::Result<()> {
    let gate_after = behavior.gate_after;
    let gate = gate_after.unwrap_or(usize::MAX).min(body.len());
    if let Some((piece, pause)) = behavior.pace {
        for (i, chunk) in body[..gate].chunks(piece.max(1)).enumerate() {
            if i > 0 {
                thread::sleep(pause);
            }
            out.write_all(chunk)?;
            out.flush()?;
        }
    } else {
        for chunk in body[..gate].chunks(CHUNK) {
            out.write_all(chunk)?;
        }
    }
    if gate_after.is_some() {
        out.flush()?;
        let mut state = shared.state.lock().unwrap();
        state.at_gate += 1;
        shared.changed.notify_all();
        while !state.gate_open {
            state = shared.changed.wait(state).unwrap();
        }
    }
    for chunk in body[gate..].chunks(CHUNK) {
        out.write_all(chunk)?;
    }
    Ok(())
}

/// One entry of a test archive.
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub user: Option<&'static str>,
    pub group: Option<&'static str>,
    pub mtime: u64,
    pub data: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub device: Option<(u32, u32)>,
}

impl Entry {
    fn new(path: &[u8], kind: tar::EntryType, mode: u32) -> Entry {
        Entry {
            path: path.to_vec(),
            kind,
            mode,
            uid: 1000,
            gid: 1000,
            user: None,
            group: None,
            mtime: 1_300_000_000,
            data: Vec::new(),
            link: None,
            device: None,
        }
    }

    pub fn dir(path: &str) -> Entry {
        Entry::new(path.as_bytes(), tar::EntryType::Directory, 0o755)
    }

    pub fn file(path: &str, data: &[u8]) -> Entry {
        let mut entry = Entry::new(path.as_bytes(), tar::EntryType::Regular, 0o644);
        entry.data = data.to_vec();
        entry
    }

    pub fn symlink(path: &str, target: &str) -> Entry {
        let mut entry = Entry::new(path.as_bytes(), tar::EntryType::Symlink, 0o777);
        entry.link = Some(target.as_bytes().to_vec());
        entry
    }

    pub fn hard_link(path: &str, target: &str) -> Entry {
        let mut entry = Entry::new(path.as_bytes(), tar::EntryType::Link, 0o644);
        entry.link = Some(target.as_bytes().to_vec());
        entry
    }

    pub fn device(path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Entry {
        let mut entry = Entry::new(path.as_bytes(), kind, 0o600);
        entry.device = Some((major, minor));
        entry
    }

    pub fn owner(mut self, uid: u64, gid: u64, user: &'static str, group: &'static str) -> Entry {
        (self.uid, self.gid, self.user, self.group) = (uid, gid, Some(user), Some(group));
        self
    }

    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }
}

/// A ustar archive of `entries`, names written as raw bytes (so `..` and
/// absolute names can be built; each name must fit in 100 bytes).
pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        {
            let raw = header.as_old_mut();
            assert!(entry.path.len() < raw.name.len(), "test name too long");
            raw.name[..entry.path.len()].copy_from_slice(&entry.path);
            if let Some(link) = &entry.link {
                raw.linkname[..link.len()].copy_from_slice(link);
            }
        }
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        header.set_size(entry.data.len() as u64);
        if let Some(user) = entry.user {
            header.set_username(user).unwrap();
        }
        if let Some(group) = entry.group {
            header.set_groupname(group).unwrap();
        }
        if let Some((major, minor)) = entry.device {
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
        }
        header.set_cksum();
        builder.append(&header, entry.data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Compresses with an external tool (`gzip -c`, `xz --format=lzma -c`, ...),
/// so the decoders are checked against independent encoders.
pub fn compress(tar: &[u8], tool: &[&str]) -> Vec<u8> {
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool[0]));
    let mut stdin = child.stdin.take().unwrap();
    let input = tar.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    out
}

/// `md5sum`/`sha256sum` output for `data`: "HEX  -".
pub fn digest_file(tool: &str, data: &[u8]) -> Vec<u8> {
    compress(data, &[tool])
}

/// A small build tree: a top directory with a few files and a subdirectory.
pub fn sample_build(top: &str, marker: &str) -> Vec<u8> {
    tar_of(&[
        Entry::dir(top),
        Entry::file(&format!("{top}/README"), marker.as_bytes()),
        Entry::dir(&format!("{top}/bin")),
        Entry::file(&format!("{top}/bin/tool"), &[7u8; 70_000]).mode(0o755),
        Entry::symlink(&format!("{top}/latest"), "bin/tool"),
    ])
}

/// Every path under `root`, relative, sorted (directories end in `/`).
pub fn tree_listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
