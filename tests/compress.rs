//! Real-client tests of compressed pulls (`-z`, `-zz`, `--compress-level`):
//! the stock `rsync` client pulls the same trees from upserv and from
//! `rsync --daemon` at protocols 27, 28, 29 and its default, fresh and onto
//! an older basis, and both results must be the same tree with the same
//! exit status and no failed verification.
//!
//! Owns only its own small helpers (temporary trees, the two daemons, a
//! client run with a time limit); the shared harness in `tests/common` is
//! meant to replace them. Must not rely on fixed ports or sleeps standing
//! in for a condition that can be awaited.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long one client run may take before it counts as hung.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The pause between attempts to reach a starting rsyncd.
const CONNECT_RETRY: Duration = Duration::from_millis(25);
const PROTOCOLS: [Option<u32>; 4] = [Some(27), Some(28), Some(29), None];
/// A block length above 0xffff: below protocol 31 both sides put such a
/// block into the deflate history with its first 0xffff bytes repeated.
const BIG_BLOCK: usize = 100_000;
/// A block length small enough that one file holds more than 65536 blocks,
/// the longest run one token can carry.
const TINY_BLOCK: usize = 16;

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("upserv-compress-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic incompressible bytes (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn text(lines: usize, salt: &str) -> Vec<u8> {
    (0..lines)
        .flat_map(|i| {
            format!("{salt} line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes()
        })
        .collect()
}

fn write(path: &Path, data: &[u8], mtime: i64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    set_mtime(path, mtime);
}

fn set_mtime(path: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
    // A read-only handle will do, and is the only kind a directory gives.
    fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// One pull scenario: the module's files, the basis files the client
/// already holds, and the client options that go with them.
struct Scenario {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    basis: Vec<(&'static str, Vec<u8>)>,
    block_size: Option<usize>,
}

/// Mixed small files: compressible and not, empty, in a subdirectory, and
/// a text whose basis differs by an insertion.
fn mixed() -> Scenario {
    let old_text = text(8000, "basis");
    let mut new_text = old_text.clone();
    new_text.splice(100_000..100_000, b"a few new words".repeat(50));
    Scenario {
        name: "mixed",
        files: vec![
            ("text.txt", new_text),
            ("random.bin", noise(200_000, 1)),
            ("empty", Vec::new()),
            ("sub/small.txt", b"hello\n".to_vec()),
            ("sub/more.txt", text(3000, "more")),
        ],
        basis: vec![("text.txt", old_text), ("random.bin", noise(150_000, 1))],
        block_size: None,
    }
}

/// Blocks over 0xffff bytes, reordered, with literal data between them
/// that repeats the part of the previous block the receiver's deflate
/// window holds (its start, by the quirk) and the part it does not (its
/// true end): a sender whose history differs from the receiver's corrupts
/// the file.
fn big_blocks() -> Scenario {
    let blocks: Vec<Vec<u8>> = (0..6).map(|i| noise(BIG_BLOCK, 10 + i)).collect();
    let pad = |mut v: Vec<u8>, seed| {
        let fill = noise(BIG_BLOCK - v.len(), seed);
        v.extend_from_slice(&fill);
        v
    };
    let in_window = pad(blocks[1][10_000..34_465].to_vec(), 20);
    let beyond_window = pad(blocks[3][70_000..].to_vec(), 21);
    let mut file = Vec::new();
    for part in [
        &blocks[0],
        &blocks[1],
        &in_window,
        &blocks[3],
        &beyond_window,
        &blocks[5],
        &blocks[4],
    ] {
        file.extend_from_slice(part);
    }
    file.extend_from_slice(&blocks[2][..5000]);
    Scenario {
        name: "big-blocks",
        files: vec![("big.bin", file)],
        basis: vec![("big.bin", blocks.concat())],
        block_size: Some(BIG_BLOCK),
    }
}

/// More than 65536 consecutive matching blocks around one changed block.
fn long_runs() -> Scenario {
    let basis = noise(1_200_000, 3);
    let mut file = basis.clone();
    file[600_000..600_000 + TINY_BLOCK].copy_from_slice(&noise(TINY_BLOCK, 4));
    Scenario {
        name: "long-runs",
        files: vec![("runs.bin", file)],
        basis: vec![("runs.bin", basis)],
        block_size: Some(TINY_BLOCK),
    }
}

/// A daemon process killed when the test ends.
struct Daemon {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a stream into the shared log, passing each line to `lines`.
fn drain(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>, lines: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            log.lock().unwrap().push_str(&format!("{line}\n"));
            let _ = lines.send(line);
        }
    });
}

fn start_upserv(dir: &TempDir, module: &Path) -> Daemon {
    let conf = dir.path("upserv.conf");
    fs::write(&conf, format!("[m]\npath = {}\n", module.display())).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_upserv"))
        .args(["daemon", "--config"])
        .arg(&conf)
        .args(["--listen", "127.0.0.1:0", "--builds"])
        .arg(dir.path("builds"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start upserv");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    drain(child.stdout.take().unwrap(), log.clone(), tx.clone());
    drain(child.stderr.take().unwrap(), log.clone(), tx);
    let deadline = Instant::now() + START_TIMEOUT;
    let port = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "upserv did not say where it listens:\n{}",
                log.lock().unwrap()
            )
        });
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    Daemon { child, port, log }
}

fn start_rsyncd(dir: &TempDir, module: &Path) -> Daemon {
    let conf = dir.path("rsyncd.conf");
    fs::write(
        &conf,
        format!(
            "use chroot = no\nuid = root\ngid = root\nnumeric ids = no\nmunge symlinks = no\n\
             log file = {}\n[m]\npath = {}\nread only = yes\n",
            dir.path("rsyncd.log").display(),
            module.display()
        ),
    )
    .unwrap();
    // rsyncd cannot be told to pick a port itself: take a free one.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("rsync")
        .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--config={}", conf.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsync --daemon");
    let daemon = Daemon {
        child,
        port,
        log: Arc::new(Mutex::new(String::new())),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rsyncd did not start listening on {port}"
        );
        thread::sleep(CONNECT_RETRY);
    }
    daemon
}

/// What a client run left behind.
struct Pull {
    code: i32,
    output: String,
    command: String,
}

/// The client: `rsync`, or the older one named by `UPSERV_TEST_RSYNC_OLD`
/// (as the shared harness will have it, e.g. Debian's 3.2.7).
fn client() -> String {
    std::env::var("UPSERV_TEST_RSYNC_OLD").unwrap_or_else(|_| "rsync".to_string())
}

/// Runs the real client; a run over [`PULL_TIMEOUT`] is killed and fails.
fn pull(port: u16, opts: &[String], dest: &Path) -> Pull {
    let mut cmd = Command::new(client());
    cmd.arg("-a")
        .args(opts)
        .arg(format!("rsync://127.0.0.1:{port}/m/"))
        .arg(format!("{}/", dest.display()));
    let command = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rsync");
    let pid = child.id() as libc::pid_t;
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if watch.recv_timeout(PULL_TIMEOUT) == Err(mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill(2) on the client we started; it has not been
            // reaped, since wait_with_output below still waits for it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return true;
        }
        false
    });
    let out = child.wait_with_output().expect("wait for rsync");
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "client hung and was killed: {command}"
    );
    Pull {
        code: out.status.code().unwrap_or(-1),
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
        command,
    }
}

/// Every entry under `root`: kind, permission bits, mtime and content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (char, u32, i64, Vec<u8>)> {
    let mut map = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                map.insert(rel, ('d', mode, meta.mtime(), Vec::new()));
                stack.push(path);
            } else {
                map.insert(rel, ('f', mode, meta.mtime(), fs::read(&path).unwrap()));
            }
        }
    }
    map
}

fn describe_difference(a: &Path, b: &Path) -> Option<String> {
    let (sa, sb) = (snapshot(a), snapshot(b));
    for (path, ea) in &sa {
        match sb.get(path) {
            None => return Some(format!("{} only from upserv", path.display())),
            Some(eb) if eb != ea => {
                return Some(format!(
                    "{} differs: upserv ({}, {:o}, {}, {} bytes) rsyncd ({}, {:o}, {}, {} bytes)",
                    path.display(),
                    ea.0,
                    ea.1,
                    ea.2,
                    ea.3.len(),
                    eb.0,
                    eb.1,
                    eb.2,
                    eb.3.len()
                ))
            }
            Some(_) => {}
        }
    }
    sb.keys()
        .find(|p| !sa.contains_key(*p))
        .map(|p| format!("{} only from rsyncd", p.display()))
}

/// Both daemons serving one scenario's tree.
struct Servers {
    dir: TempDir,
    upserv: Daemon,
    rsyncd: Daemon,
    scenario: Scenario,
}

impl Servers {
    fn start(scenario: Scenario) -> Servers {
        let dir = TempDir::new(scenario.name);
        let module = dir.path("module");
        fs::create_dir_all(&module).unwrap();
        for (i, (name, data)) in scenario.files.iter().enumerate() {
            write(&module.join(name), data, 1_600_000_000 + i as i64);
        }
        set_mtime(&module.join("."), 1_600_000_000);
        let upserv = start_upserv(&dir, &module);
        let rsyncd = start_rsyncd(&dir, &module);
        Servers {
            dir,
            upserv,
            rsyncd,
            scenario,
        }
    }

    fn fresh_dest(&self, name: &str, with_basis: bool) -> PathBuf {
        let dest = self.dir.path(name);
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).unwrap();
        if with_basis {
            for (name, data) in &self.scenario.basis {
                write(&dest.join(name), data, 1_000_000_000);
            }
        }
        dest
    }

    /// Pulls with `opts` from both daemons and insists on the same result.
    fn compare(&self, opts: &[&str], protocol: Option<u32>, with_basis: bool) {
        let mut args: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        args.extend(protocol.map(|p| format!("--protocol={p}")));
        args.extend(
            self.scenario
                .block_size
                .map(|b| format!("--block-size={b}")),
        );
        let ours = self.fresh_dest("from-upserv", with_basis);
        let theirs = self.fresh_dest("from-rsyncd", with_basis);
        let a = pull(self.upserv.port, &args, &ours);
        let b = pull(self.rsyncd.port, &args, &theirs);
        let context = || {
            format!(
                "scenario {}, basis {with_basis}\n  upserv: {} -> {}\n{}\n  rsyncd: {} -> {}\n{}\n  upserv log:\n{}",
                self.scenario.name,
                a.command,
                a.code,
                a.output,
                b.command,
                b.code,
                b.output,
                self.upserv.log.lock().unwrap()
            )
        };
        assert_eq!(b.code, 0, "rsyncd failed: {}", context());
        assert_eq!(a.code, b.code, "exit codes differ: {}", context());
        assert!(!a.output.contains("failed verification"), "{}", context());
        if let Some(diff) = describe_difference(&ours, &theirs) {
            panic!("{diff}\n{}", context());
        }
    }
}

#[test]
fn compressed_full_pulls_match_rsyncd() {
    let servers = Servers::start(mixed());
    let option_sets: [&[&str]; 6] = [
        &["-z"],
        &["-zz"],
        &["-z", "--compress-level=1"],
        &["-z", "--compress-level=9"],
        &["--compress-level=9"],
        &["-z", "--compress-level=0"],
    ];
    for opts in option_sets {
        for protocol in PROTOCOLS {
            servers.compare(opts, protocol, false);
        }
    }
}

#[test]
fn compressed_delta_pulls_match_rsyncd() {
    let servers = Servers::start(mixed());
    for opts in [&["-z"][..], &["-zz"], &["-z", "--compress-level=1"]] {
        for protocol in PROTOCOLS {
            servers.compare(opts, protocol, true);
        }
    }
}

#[test]
fn compressed_pulls_of_blocks_over_64k_match_rsyncd() {
    let servers = Servers::start(big_blocks());
    for opts in [&["-z"][..], &["-zz"], &["-z", "--compress-level=9"]] {
        for protocol in PROTOCOLS {
            servers.compare(opts, protocol, true);
        }
    }
    servers.compare(&["-z"], Some(29), false);
}

#[test]
fn compressed_pulls_with_runs_over_65536_blocks_match_rsyncd() {
    let servers = Servers::start(long_runs());
    for opts in [&["-z"][..], &["-zz"]] {
        for protocol in [Some(27), Some(29)] {
            servers.compare(opts, protocol, true);
        }
    }
}
