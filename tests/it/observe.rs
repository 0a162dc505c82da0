//! What an administrator sees of a running daemon: `upserv status` (text
//! and JSON) during a real download that a laptop waits for, `upserv list`'s
//! totals and downloads, the Prometheus metrics read by the real
//! `prometheus_client` text parser after real pulls, the metrics responder
//! under silent and flooding connections, and the cache result in each
//! connection's log line.
//!
//! JSON is read by Python's `json` module and metrics by the
//! `prometheus-client` package, so that neither is judged by upserv's own
//! code.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::builds::upserv_for;
use crate::support::live::LiveClient;
use crate::support::scratch::scratch_dir;
use crate::support::upstream::{refused_url, sample_build, Upstream};
use crate::support::*;

/// upserv's `metrics::SCRAPE_TIMEOUT`: how long a silent scraper may keep
/// one of the responder's places.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// upserv's `metrics::MAX_SCRAPES`.
const MAX_SCRAPES: usize = 4;
/// Connections a flood opens at once: far beyond [`MAX_SCRAPES`].
const FLOOD: usize = 100;

/// Runs `python3 -c script` with `input` on stdin; its stdout.
fn python(script: &str, input: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed on:\n{input}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `upserv status --json` read by Python's json module: `key=value` lines
/// for the fields the tests look at.
fn status_fields(builds: &Path) -> HashMap<String, String> {
    let (code, stdout, stderr) =
        run_upserv(&["status", "--json", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 0, "upserv status --json: {stderr}");
    let script = r#"
import json, sys
d = json.load(sys.stdin)
print("downloads=%d" % len(d["downloads"]))
for x in d["downloads"]:
    for k in ("build", "stage", "bytes", "total", "percent", "waiting", "rate", "eta_seconds"):
        print("download.%s=%s" % (k, x[k]))
print("connections=%d" % len(d["connections"]))
for c in d["connections"]:
    for k in ("address", "module", "bytes_sent", "seconds"):
        print("connection.%s=%s" % (k, c[k]))
for k in ("used", "budget", "builds"):
    print("cache.%s=%s" % (k, d["cache"][k]))
print("cache.sticky=%s" % ",".join(d["cache"]["sticky"]))
print("mirrors=%d" % len(d["mirrors"]))
for i, m in enumerate(d["mirrors"]):
    print("mirror%d.template=%s" % (i, m["template"]))
    print("mirror%d.down_seconds=%s" % (i, m["down_seconds"]))
"#;
    python(script, &stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn status_shows_a_download_the_laptops_wait_for() {
    let dir = scratch_dir("observe-status");
    let up = Upstream::start();
    let body = sample_build("top", "status");
    let gate = body.len() / 2;
    up.put("/b/build-st.tar", body.clone());
    up.gate_after("/b/build-st.tar", gate);
    up.put("/b/pinned.tar", sample_build("top", "pinned"));
    let builds = dir.join("builds");
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &["--cache-size", "10M"]);
    // A cached, sticky build, so that the cache part has something to say.
    let (code, _, stderr) = run_upserv(&[
        "fetch",
        "pinned",
        "--builds",
        builds.to_str().unwrap(),
        "--upstream",
        &up.url("/b/{name}.tar"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run_upserv(&["pin", "pinned", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");

    // Two laptops: the first starts the download, the second joins it.
    let laptop = LiveClient::start(&upserv.url("build-st/"), &dir.join("dest"), &["-a"]);
    laptop.wait_for_line("upserv: fetching build-st from upstream: ");
    up.wait_at_gate(1);
    let second = LiveClient::start(&upserv.url("build-st/"), &dir.join("dest2"), &["-a"]);
    second.wait_for_line("upserv: fetching build-st from upstream: ");
    // The job reports its bytes every half second: wait until the status
    // has caught up with the gate.
    let mut fields = HashMap::new();
    wait_until("status showing the bytes up to the gate", || {
        fields = status_fields(&builds);
        fields.get("download.bytes") == Some(&gate.to_string())
    });
    let expect = |key: &str, value: String| {
        assert_eq!(fields.get(key), Some(&value), "{key} in {fields:?}");
    };
    expect("downloads", "1".into());
    expect("download.build", "build-st".into());
    expect("download.stage", "downloading".into());
    expect("download.total", body.len().to_string());
    expect(
        "download.percent",
        (gate as u64 * 100 / body.len() as u64).to_string(),
    );
    expect("download.waiting", "2".into());
    expect("connections", "2".into());
    expect("connection.address", "127.0.0.1".into());
    expect("connection.module", "build-st".into());
    expect("cache.budget", (10u64 << 20).to_string());
    expect("cache.builds", "1".into());
    expect("cache.sticky", "pinned".into());
    let used: u64 = fields["cache.used"].parse().unwrap();
    assert!(used > 70_000, "the pinned build holds a 70 kB file: {used}");
    let seconds: u64 = fields["connection.seconds"].parse().unwrap();
    assert!(seconds < 60, "{seconds}");

    // The text form and `list` say the same.
    let (code, text, stderr) = run_upserv(&["status", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("downloads in progress: 1\n"), "{text}");
    assert!(text.contains("build-st"), "{text}");
    assert!(text.contains("2 waiting"), "{text}");
    assert!(text.contains("connections: 2\n"), "{text}");
    assert!(text.contains("1 builds, 1 sticky: pinned"), "{text}");
    let (code, list, stderr) = run_upserv(&[
        "list",
        "--builds",
        builds.to_str().unwrap(),
        "--cache-size",
        "10M",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(list.contains("\ntotal: 1 builds, "), "{list}");
    assert!(list.contains(" of 10.0M ("), "{list}");
    assert!(list.contains("downloads in progress: 1\n"), "{list}");
    assert!(list.contains("  build-st "), "{list}");

    up.open_gate();
    laptop.finish().assert_ok();
    second.finish().assert_ok();
    wait_until("status without the download", || {
        let fields = status_fields(&builds);
        fields["downloads"] == "0" && fields["cache.builds"] == "2"
    });
    let log = upserv.log();
    assert!(log.contains("module build-st: cache miss: "), "{log}");
    assert!(log.contains("module build-st: cache wait: "), "{log}");
}

#[test]
fn status_without_a_daemon_says_so_and_list_falls_back_to_partial_files() {
    let dir = scratch_dir("observe-no-daemon");
    let builds = dir.join("builds");
    std::fs::create_dir_all(builds.join(".upserv/partial")).unwrap();
    std::fs::write(builds.join(".upserv/partial/build-p.part"), [0u8; 3000]).unwrap();
    let (code, stdout, stderr) = run_upserv(&["status", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("no daemon answers on "), "{stderr}");
    let (code, list, stderr) = run_upserv(&["list", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(list.contains("downloads in progress: 1\n"), "{list}");
    assert!(list.contains("build-p"), "{list}");
    assert!(list.contains("partial"), "{list}");
}

/// The metrics port a daemon announced in its log.
fn metrics_port(upserv: &Upserv) -> u16 {
    const MARK: &str = "metrics on http://127.0.0.1:";
    let log = upserv.log();
    let rest = &log[log.find(MARK).expect("the metrics line in the log") + MARK.len()..];
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

/// `GET path` on the metrics port: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to metrics");
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT * 4)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Every sample of a scrape, as the Prometheus client library parses it:
/// `name{labels}` → value.
fn scrape(port: u16) -> HashMap<String, f64> {
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    assert family.documentation, family.name
    for s in family.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, s.value))
"#;
    python(script, &body)
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn start_with_metrics(up: &Upstream, builds: &Path) -> Upserv {
    let url = up.url("/b/{name}.tar");
    Upserv::launch(
        &[],
        &Launch {
            builds: Some(builds),
            args: &["--upstream", &url],
            globals: &[("metrics listen", "127.0.0.1:0")],
            ..Launch::default()
        },
    )
}

#[test]
fn metrics_count_real_pulls_as_a_prometheus_parser_reads_them() {
    let dir = scratch_dir("observe-metrics");
    let up = Upstream::start();
    let body = sample_build("top", "metrics");
    up.put("/b/build-m.tar", body.clone());
    let upserv = start_with_metrics(&up, &dir.join("builds"));
    let port = metrics_port(&upserv);
    let pull_ok = |name: &str, dest: &str| {
        pull(
            &upserv.url(&format!("{name}/")),
            &dir.join(dest),
            &["-a"],
            Protocol::Default,
        )
        .assert_ok();
    };
    pull_ok("build-m", "first");
    pull_ok("build-m", "second");
    let missing = pull(
        &upserv.url("build-gone/"),
        &dir.join("third"),
        &["-a"],
        Protocol::Default,
    );
    assert_ne!(missing.code, 0);

    let mut m = HashMap::new();
    wait_until("the connections to end", || {
        m = scrape(port);
        m["upserv_connections_active{}"] == 0.0
    });
    let value = |key: &str| *m.get(key).unwrap_or_else(|| panic!("{key} in {m:?}"));
    // The parser names counter samples with their `_total` suffix.
    assert_eq!(value("upserv_connections_total{}"), 3.0);
    assert!(value("upserv_bytes_sent_total{}") > 70_000.0, "{m:?}");
    assert!(value("upserv_literal_bytes_total{}") >= 70_000.0, "{m:?}");
    assert_eq!(value("upserv_matched_bytes_total{}"), 0.0);
    assert_eq!(value("upserv_cache_requests_total{result=\"hit\"}"), 1.0);
    assert_eq!(value("upserv_cache_requests_total{result=\"miss\"}"), 1.0);
    assert_eq!(value("upserv_cache_requests_total{result=\"wait\"}"), 0.0);
    assert_eq!(
        value("upserv_cache_requests_total{result=\"notfound\"}"),
        1.0
    );
    assert_eq!(value("upserv_cache_requests_total{result=\"error\"}"), 0.0);
    assert_eq!(value("upserv_download_bytes_total{}"), body.len() as f64);
    assert_eq!(value("upserv_builds_cached{}"), 1.0);
    assert!(value("upserv_cache_bytes{}") > 70_000.0, "{m:?}");
    assert_eq!(value("upserv_cache_budget_bytes{}"), (16u64 << 30) as f64);
    assert_eq!(value("upserv_downloads_in_progress{}"), 0.0);
    assert_eq!(value("upserv_evictions_total{}"), 0.0);

    let log = upserv.log();
    assert!(log.contains("module build-m: cache miss: "), "{log}");
    assert!(log.contains("module build-m: cache hit: "), "{log}");
    let (status, _) = http_get(port, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

#[test]
fn a_silent_scraper_holds_nothing_and_a_flood_is_bounded() {
    let dir = scratch_dir("observe-flood");
    let up = Upstream::start();
    let upserv = start_with_metrics(&up, &dir.join("builds"));
    let port = metrics_port(&upserv);
    scrape(port);
    let before = threads(upserv.pid());

    // A connection that never sends its request does not delay another
    // scrape, which would otherwise wait for its timeout.
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    scrape(port);
    assert!(
        started.elapsed() < SCRAPE_TIMEOUT / 2,
        "a scrape waited {:?} behind a silent connection",
        started.elapsed()
    );

    // A flood of silent connections: a few keep a place until their
    // timeout, the rest are closed at once; no thread is added.
    let flooded = Instant::now();
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut closed = 0;
    wait_until("the connections beyond the limit to be closed", || {
        closed = 0;
        for stream in &mut flood {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            if matches!(stream.read(&mut byte), Ok(0)) {
                closed += 1;
            }
        }
        closed >= FLOOD - MAX_SCRAPES
    });
    assert!(
        flooded.elapsed() < SCRAPE_TIMEOUT,
        "the connections beyond the limit were closed only after {:?}, by their timeout",
        flooded.elapsed()
    );
    let during = threads(upserv.pid());
    assert!(
        during <= before,
        "{during} threads during the flood, {before} before: one thread answers"
    );
    drop(flood);
    drop(silent);
    // Once the flood is gone, scrapes are answered again.
    wait_until("a scrape after the flood", || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(SCRAPE_TIMEOUT * 2)).unwrap();
        let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200 OK")
    });
}

/// upserv's `control::CONTROL_TIMEOUT`: the whole time a client of the
/// control socket has to send its request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn a_slow_client_of_the_control_socket_is_cut_off_and_status_still_answers() {
    use std::os::unix::net::UnixStream;
    let dir = scratch_dir("observe-control");
    let builds = dir.join("builds");
    std::fs::create_dir_all(&builds).unwrap();
    let _upserv = Upserv::start_with(&[], Some(&builds), &[]);
    let socket = builds.join(".upserv/control.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "the daemon's user and group only");

    // A byte at a time, never a whole line: cut off after the timeout in
    // all, not after a timeout per byte.
    let mut trickle = UnixStream::connect(&socket).unwrap();
    let started = Instant::now();
    let cut_off = loop {
        if trickle.write_all(b"s").is_err() {
            break started.elapsed();
        }
        trickle
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        match trickle.read(&mut byte) {
            Ok(0) | Ok(_) => break started.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break started.elapsed(),
        }
        assert!(
            started.elapsed() < CONTROL_TIMEOUT * 5,
            "a trickling client still held the control socket after {:?}",
            started.elapsed()
        );
    };
    assert!(
        cut_off >= CONTROL_TIMEOUT / 2,
        "cut off at once: {cut_off:?}"
    );

    // A silent client delays `status` by its timeout at most.
    let _silent = UnixStream::connect(&socket).unwrap();
    let (code, text, stderr) = run_upserv(&["status", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("connections: 0\n"), "{text}");
}

/// A pull of a build that fails after the build was found still says, in
/// its log line, how the cache answered: here a client that hangs up
/// right after its arguments, from a build that was cached (a hit).
#[test]
fn a_failed_pull_of_a_build_still_logs_the_cache_result() {
    let dir = scratch_dir("observe-failed-hit");
    let builds = dir.join("builds");
    std::fs::create_dir_all(builds.join("build-f")).unwrap();
    std::fs::write(builds.join("build-f/hello"), b"hello\n").unwrap();
    let upserv = Upserv::start_with(&[], Some(&builds), &[]);
    let stream = TcpStream::connect(("127.0.0.1", upserv.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (&stream)
        .write_all(b"@RSYNCD: 29.0\nbuild-f\n--server\n--sender\n-r\n.\nbuild-f/\n\n")
        .unwrap();
    // Everything up to the checksum seed, then hang up before the filter
    // list the sender waits for.
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("@RSYNCD: OK\n") {
        assert_eq!((&stream).read(&mut byte).unwrap(), 1, "{seen:?}");
        seen.push(byte[0]);
    }
    let mut seed = [0u8; 4];
    (&stream).read_exact(&mut seed).unwrap();
    drop(stream);
    wait_until("the failed pull's log line", || {
        upserv.log().contains("module build-f: cache hit: failed")
    });
}

/// A mirror that refused a download shows as down in `status` (and the one
/// that served it as up), text and JSON alike.
#[test]
fn status_shows_which_mirror_is_down() {
    let dir = scratch_dir("observe-mirrors");
    let up = Upstream::start();
    up.put("/b/build-mi.tar", sample_build("top", "mirrors"));
    let first = refused_url("/b/{name}.tar");
    let second = up.url("/b/{name}.tar");
    let builds = dir.join("builds");
    let mirrors = format!("{first} {second}");
    let upserv = Upserv::start_with(&[], Some(&builds), &["--upstream", &mirrors]);
    pull(
        &upserv.url("build-mi/"),
        &dir.join("dest"),
        &["-a"],
        Protocol::Default,
    )
    .assert_ok();
    let fields = status_fields(&builds);
    assert_eq!(fields["mirrors"], "2");
    assert_eq!(fields["mirror0.template"], first);
    assert_eq!(fields["mirror1.template"], second);
    assert_ne!(fields["mirror0.down_seconds"], "None");
    assert_eq!(fields["mirror1.down_seconds"], "None");
    let (code, text, stderr) = run_upserv(&["status", "--builds", builds.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(&format!("  {first}  down for "))
            && text.contains(&format!("  {second}  up\n")),
        "{text}"
    );
}
