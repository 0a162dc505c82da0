//! Limits that keep one client, or many, from starving the others or
//! growing the daemon: connection limits (global, per module as in rsyncd,
//! per client address), handshake and idle deadlines, argument and filter
//! limits, repeated source paths; and the daemon's descriptors, threads and
//! memory before and after silent clients, clients that never read, a
//! thousand dropped connections and a flood of module-list requests.
//!
//! Every loop here is bounded and talks to loopback only.

use crate::support::client::{rsync, stderr};
use crate::support::procfs::{await_fd_count, fd_count, peak_rss_kib, rss_kib, thread_count};
use crate::support::raw::{file_request, Raw};
use crate::support::tree::sparse_file;
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Growth of the daemon's resident memory tolerated after a storm: the
/// allocator keeps some freed memory, but nothing may scale with the storm.
const RSS_SLACK_KIB: u64 = 8 * 1024;

fn tree() -> TestTree {
    let tree = TestTree::new();
    tree.file("hello.txt", b"hello\n");
    tree.file("sub/deep.txt", b"deep\n");
    tree
}

fn conf(globals: &str, tree: &TestTree, module_params: &str) -> String {
    format!(
        "{globals}\n[m]\npath = {}\n{module_params}\n",
        tree.root().display()
    )
}

/// A real pull of `m/` that must work; returns how long it took.
fn assert_pull_works(server: &Upserv) -> Duration {
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("d");
    let r = pull(&server.url("m/"), &dest, &["-a"], Protocol::Default);
    r.assert_ok();
    assert_eq!(
        std::fs::read(dest.join("hello.txt")).expect("pulled"),
        b"hello\n"
    );
    r.elapsed
}

/// upserv serving the module of `conf` with `workers` workers.
fn with_workers(conf: &str, workers: &str) -> Upserv {
    Upserv::launch(
        &[],
        &Launch {
            conf: Some(conf),
            args: &["--workers", workers],
            ..Launch::default()
        },
    )
}

/// Descriptors and threads of the daemon, to compare before and after.
fn census(server: &Upserv) -> (usize, usize) {
    (fd_count(server.pid()), thread_count(server.pid()))
}

/// What the daemon holds once it has served a pull, to compare with after
/// a storm.
struct Baseline {
    /// Descriptors and threads.
    census: (usize, usize),
    /// Resident memory, KiB.
    rss: u64,
}

impl Baseline {
    /// A pull that must work, then the daemon's census and memory.
    fn take(server: &Upserv) -> Baseline {
        assert_pull_works(server);
        Baseline {
            census: census(server),
            rss: rss_kib(server.pid()),
        }
    }

    /// Waits for the descriptors to come back (a refused or listed
    /// connection is logged before its socket closes), then compares the
    /// census, and the memory within [`RSS_SLACK_KIB`].
    fn assert_back(&self, server: &Upserv) {
        await_fd_count(server.pid(), self.census.0);
        assert_eq!(census(server), self.census, "descriptors and threads");
        let grown = rss_kib(server.pid()).saturating_sub(self.rss);
        assert!(grown < RSS_SLACK_KIB, "RSS grew by {grown} KiB");
    }
}

/// A pull of `m/` from `server` is refused with `message`.
fn assert_pull_refused(server: &dyn Server, message: &str) {
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("d");
    pull(&server.url("m/"), &dest, &["-a"], Protocol::Default).assert_refused(message);
}

// -------------------------------------------------- connection limits

#[test]
fn module_max_connections_refuse_like_rsyncd() {
    let tree = tree();
    let clients = Client::all();
    // One module per client, so that no slot is still being freed when the
    // next client tries; rsyncd counts in a lock file, which modules share
    // unless each has its own.
    let locks = tempfile::tempdir().expect("lock dir");
    let modules: Vec<Module> = (0..clients.len())
        .map(|i| {
            let lock = locks.path().join(format!("m{i}.lock"));
            Module::new(&format!("m{i}"), tree.root())
                .param("max connections", "1")
                .param("lock file", &lock.display().to_string())
        })
        .collect();
    let rsyncd = Rsyncd::start(&modules);
    let upserv = Upserv::start(&modules);
    for (i, client) in clients.iter().enumerate() {
        let module = format!("m{i}");
        for port in [rsyncd.port(), upserv.port()] {
            // A connection past `@RSYNCD: OK` holds the module's one slot.
            let mut holder = Raw::connect(port);
            let lines = holder.open_module(&module);
            let last = lines.last().map(String::as_str);
            assert_eq!(last, Some("@RSYNCD: OK\n"), "port {port}, {module}");
            let scratch = tempfile::tempdir().expect("scratch");
            let url = format!("rsync://127.0.0.1:{port}/{module}/");
            let dest = scratch.path().join("d");
            client
                .pull(&url, &dest, &["-a"], Protocol::Default)
                .assert_refused("@ERROR: max connections (1) reached -- try again later");
        }
    }
}

#[test]
fn a_freed_module_slot_serves_the_next_client() {
    let tree = tree();
    let server = Upserv::with_conf(&conf("", &tree, "max connections = 1"));
    let mut holder = Raw::connect(server.port());
    holder.open_module("m");
    drop(holder);
    // The holder's connection has ended once its one log line is written.
    server.await_log("failed: connection closed by client", 1);
    assert_pull_works(&server);
}

#[test]
fn global_max_connections_count_every_module() {
    let tree = tree();
    let text = format!(
        "max connections = 1\n[m]\npath = {root}\nmax connections = 0\n[n]\npath = {root}\n",
        root = tree.root().display()
    );
    let server = Upserv::with_conf(&text);
    let mut holder = Raw::connect(server.port());
    holder.open_module("n");
    assert_pull_refused(
        &server,
        "@ERROR: max connections (1) reached -- try again later",
    );
}

/// In the inetd model each connection is a process of its own: the
/// server-wide limit is counted across them, as the module limits are.
#[test]
fn global_max_connections_hold_across_serve_processes() {
    let tree = tree();
    let modules = [Module::new("m", tree.root()), Module::new("n", tree.root())];
    let server = UpservServe::launch(
        &modules,
        &Launch {
            globals: &[("max connections", "1")],
            ..Launch::default()
        },
    );
    let mut holder = Raw::connect(server.port());
    assert_eq!(
        holder.open_module("n").last().map(String::as_str),
        Some("@RSYNCD: OK\n")
    );
    assert_pull_refused(
        &server,
        "@ERROR: max connections (1) reached -- try again later",
    );
    drop(holder);
}

#[test]
fn module_limits_hold_across_serve_processes() {
    let tree = tree();
    let server = UpservServe::start(&[Module::new("m", tree.root()).param("max connections", "1")]);
    let mut holder = Raw::connect(server.port());
    assert_eq!(
        holder.open_module("m").last().map(String::as_str),
        Some("@RSYNCD: OK\n")
    );
    assert_pull_refused(&server, "max connections (1) reached");
    drop(holder);
}

/// Connects from `source` and reports whether the daemon greeted us (the
/// connection is kept) or closed at once.
fn greeted_from(source: &str, port: u16) -> (bool, Raw) {
    let mut raw = Raw::connect_from(source, port);
    let first = raw.line();
    (first.starts_with("@RSYNCD:"), raw)
}

#[test]
fn one_address_gets_a_few_connections_and_the_others_are_unaffected() {
    let tree = tree();
    let server = Upserv::with_conf(&conf("max connections per host = 3", &tree, ""));
    let before = Baseline::take(&server);
    // Another host (127.0.0.2) holds three silent connections.
    let mut held: Vec<Raw> = (0..3)
        .map(|_| {
            let (greeted, raw) = greeted_from("127.0.0.2", server.port());
            assert!(greeted);
            raw
        })
        .collect();
    // Its next pull is refused with the reason...
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("d");
    let opts = ["-a", "--address=127.0.0.2"];
    pull(&server.url("m/"), &dest, &opts, Protocol::Default)
        .assert_refused("@ERROR: max connections per host (3) reached -- try again later");
    await_fd_count(server.pid(), before.census.0 + 3);
    // ...four more still hear why, then the address is just closed on.
    let outcomes: Vec<bool> = (0..10)
        .map(|_| {
            let (greeted, raw) = greeted_from("127.0.0.2", server.port());
            held.push(raw);
            greeted
        })
        .collect();
    let expected: Vec<bool> = (0..10).map(|i| i < 4).collect();
    assert_eq!(outcomes, expected);
    server.await_log("127.0.0.2: closed at once", 1);
    // 127.0.0.1 is another host: served as if nothing happened.
    assert_pull_works(&server);
    drop(held);
    server.await_log("127.0.0.2: failed: connection closed by client", 7);
    before.assert_back(&server);
}

// ------------------------------------------------------ silent clients

#[test]
fn silent_clients_never_occupy_a_worker() {
    let tree = tree();
    let server = with_workers(&conf("", &tree, ""), "2");
    let before = Baseline::take(&server);
    let (fds, threads) = before.census;
    // Far more silent connections than workers; each has been greeted.
    let silent: Vec<Raw> = (0..100)
        .map(|_| {
            let mut raw = Raw::connect(server.port());
            assert!(raw.line().starts_with("@RSYNCD: 32.0"));
            raw
        })
        .collect();
    // A real client is served at once, not after the silent ones time out.
    let took = assert_pull_works(&server);
    assert!(took < Duration::from_secs(10), "the pull took {took:?}");
    assert_eq!(
        fd_count(server.pid()),
        fds + 100,
        "one descriptor per silent client"
    );
    assert_eq!(thread_count(server.pid()), threads, "no thread per client");
    drop(silent);
    server.await_log(
        "failed: connection closed by client during the handshake",
        100,
    );
    before.assert_back(&server);
}

/// The daemon's `timeout = 2` ended a connection opened at `started`: not
/// sooner, and not much later.
fn assert_timed_out_after_two_seconds(started: Instant) {
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn the_handshake_is_bounded_by_the_timeout() {
    let tree = tree();
    let server = Upserv::with_conf(&conf("timeout = 2", &tree, ""));
    // Silent before the module name: the gatekeeper's deadline.
    let started = Instant::now();
    let mut silent = Raw::connect(server.port());
    assert!(silent.line().starts_with("@RSYNCD:"));
    assert_eq!(silent.line(), "", "the daemon should close the connection");
    assert_timed_out_after_two_seconds(started);
    server.await_log("failed: handshake took too long", 1);
    // Silent after `@RSYNCD: OK`, in a worker: the module's deadline.
    let started = Instant::now();
    let mut quiet = Raw::connect(server.port());
    quiet.open_module("m");
    assert_eq!(quiet.rest(), "");
    assert_timed_out_after_two_seconds(started);
    server.await_log("module m: failed: handshake took too long", 1);
}

// -------------------------------------------------- clients that stall

/// A hand-made pull of `m/big.bin` that asks for the whole file and then
/// never reads a byte.
fn request_and_never_read(port: u16) -> TcpStream {
    let mut stream = Raw::start_pull(port, "m", &["--server", "--sender", ".", "m/big.bin"]);
    // No basis: all literal.
    stream
        .write_all(&file_request(0, &[0, 0, 0, 0]))
        .expect("request");
    stream
}

#[test]
fn a_client_that_never_reads_is_timed_out_and_leaves_nothing_behind() {
    let tree = tree();
    sparse_file(&tree.path("big.bin"), 256 << 20);
    let server = with_workers(&conf("", &tree, "timeout = 2"), "2");
    let before = Baseline::take(&server);
    let stalled = request_and_never_read(server.port());
    // The other worker still serves.
    assert_pull_works(&server);
    server.await_log("module m: failed: no I/O for 2 seconds", 1);
    drop(stalled);
    before.assert_back(&server);
    assert_pull_works(&server);
}

// ------------------------------------------------------------- storms

#[test]
fn a_thousand_dropped_connections_leave_no_trace() {
    let tree = tree();
    let server = Upserv::with_conf(&conf("", &tree, ""));
    let before = Baseline::take(&server);
    for _ in 0..1000 {
        drop(TcpStream::connect(("127.0.0.1", server.port())).expect("connect"));
    }
    server.await_log("127.0.0.1: failed:", 1000);
    before.assert_back(&server);
    assert_pull_works(&server);
}

fn list_modules(port: u16) -> String {
    let mut raw = Raw::connect(port);
    raw.line();
    raw.send(b"@RSYNCD: 29.0\n\n");
    raw.rest()
}

#[test]
fn a_flood_of_module_lists_costs_no_worker_and_no_memory() {
    let tree = tree();
    sparse_file(&tree.path("big.bin"), 64 << 20);
    let server = with_workers(&conf("", &tree, "comment = the module"), "1");
    let before = Baseline::take(&server);
    let port = server.port();
    // The only worker is busy with a slow pull all along.
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("slow");
    let url = server.url("m/big.bin");
    let slow = std::thread::spawn(move || {
        pull(&url, &dest, &["-a", "--bwlimit=20000"], Protocol::Default)
    });
    let floods: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..200)
                    .map(|_| list_modules(port))
                    .filter(|l| l == "m              \tthe module\n@RSYNCD: EXIT\n")
                    .count()
            })
        })
        .collect();
    let answered: usize = floods.into_iter().map(|t| t.join().expect("flood")).sum();
    assert_eq!(answered, 800);
    slow.join().expect("slow pull").assert_ok();
    server.await_log("module list", 800);
    before.assert_back(&server);
}

// ------------------------------------------- arguments, filters, paths

#[test]
fn too_many_or_too_long_arguments_end_the_connection() {
    let tree = tree();
    let server = Upserv::with_conf(&conf("", &tree, ""));
    let mut raw = Raw::connect(server.port());
    raw.open_module("m");
    let many = "x\n".repeat(5000);
    let _ = raw.stream.write_all(many.as_bytes());
    let _ = raw.rest();
    server.await_log("more than 4096 arguments", 1);

    let mut raw = Raw::connect(server.port());
    raw.open_module("m");
    let long = format!("--server\n{}\n", "y".repeat(6000));
    let _ = raw.stream.write_all(long.as_bytes());
    let _ = raw.rest();
    server.await_log("line longer than", 1);
    assert_pull_works(&server);
}

#[test]
fn too_many_filter_rules_are_refused() {
    let tree = tree();
    let server = Upserv::with_conf(&conf("", &tree, ""));
    let args = ["--server", "--sender", "-r", ".", "m/"];
    let mut stream = Raw::start_pull(server.port(), "m", &args);
    let rule = b"- x";
    let mut rules = Vec::with_capacity(60_000 * 7);
    for _ in 0..60_000 {
        rules.extend_from_slice(&(rule.len() as i32).to_le_bytes());
        rules.extend_from_slice(rule);
    }
    rules.extend_from_slice(&0i32.to_le_bytes());
    let _ = stream.write_all(&rules);
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    server.await_log("too many filter rules", 1);
    assert_pull_works(&server);
}

#[test]
fn repeating_a_source_thousands_of_times_costs_no_memory() {
    let tree = tree();
    for i in 0..2000 {
        tree.file(format!("many/f{i}"), b"");
    }
    let server = Upserv::with_conf(&conf("", &tree, ""));
    assert_pull_works(&server);
    let peak = peak_rss_kib(server.pid());
    let scratch = tempfile::tempdir().expect("scratch");
    let url = server.url("m/many/");
    let mut args = vec!["-r"];
    // The client sends at most about a thousand arguments; 900 copies of
    // the 2001-entry list would take some 200 MiB if each were listed.
    args.extend(std::iter::repeat_n(url.as_str(), 900));
    args.push("d");
    let f = rsync(&Client::current(), scratch.path(), &args, &[]);
    assert_eq!(f.code, 0, "{}", stderr(&f));
    assert_eq!(
        std::fs::read_dir(scratch.path().join("d"))
            .expect("dest")
            .count(),
        2000
    );
    let grown = peak_rss_kib(server.pid()).saturating_sub(peak);
    assert!(grown < 32 * 1024, "peak memory grew by {grown} KiB");
}

/// A hand-made request for `m/{file}` with a sum head of `count` blocks
/// of 700 bytes and 4-byte sums, all of which are then sent.
fn send_sums(server: &Upserv, file: &str, count: usize) {
    let path = format!("m/{file}");
    let args = ["--server", "--sender", ".", &path];
    let mut stream = Raw::start_pull(server.port(), "m", &args);
    let count_field = i32::try_from(count).expect("count");
    stream
        .write_all(&file_request(0, &[count_field, 700, 0, 0]))
        .expect("sum head");
    // The daemon answers while it reads: drain it so it never stalls.
    let mut reader = stream.try_clone().expect("clone");
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 64 * 1024];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    let chunk: Vec<u8> = (0..64 * 1024u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut left = count;
    while left > 0 {
        let n = left.min(64 * 1024);
        stream.write_all(&chunk[..n * 4]).expect("sums");
        left -= n;
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = drain.join();
}

#[test]
fn block_sums_a_client_sends_cost_bounded_memory() {
    let tree = tree();
    tree.file("onemb", &crate::support::tree::Rng::new(3).bytes(1 << 20));
    let server = Upserv::with_conf(&conf("", &tree, ""));
    assert_pull_works(&server);
    let start = peak_rss_kib(server.pid());
    // Eight million sums (32 MB) are over the budget: read and dropped.
    send_sums(&server, "onemb", 8_000_000);
    server.await_log("module m: failed", 1);
    let dropped = peak_rss_kib(server.pid()).saturating_sub(start);
    assert!(
        dropped < 16 * 1024,
        "dropped sums grew the peak by {dropped} KiB"
    );
    // A million (4 MB) are within it: held while the file is matched.
    send_sums(&server, "onemb", 1_000_000);
    server.await_log("module m: failed", 2);
    let held = peak_rss_kib(server.pid()).saturating_sub(start);
    assert!(held < 48 * 1024, "held sums grew the peak by {held} KiB");
    assert_pull_works(&server);
}
