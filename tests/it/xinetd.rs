//! upserv behind a real xinetd, configured with the entry the Debian package
//! ships as an example (`packaging/xinetd/rsync`: `service rsync`, `server_args = server`, a non-root `user`): a real
//! rsync client pulls through it, and the result must equal a pull of the
//! same tree from the reference rsyncd.
//!
//! The entry is read from that file, so the shipped one is the tested one.
//! Only what a test must change is changed: `disable` (the example comes
//! disabled), the server path (the binary
//! cargo built, through `UPSERV_TEST_RUNNER` under qemu), the account (no
//! `upserv` user exists here, so `nobody`), `--config` in `server_args`, and
//! a loopback port. The test skips, saying why, when xinetd is not installed
//! or we are not root; under CI (`CI` set) a missing xinetd is a failure,
//! since `.ci/run` installs it. It must not touch the system's xinetd.

use crate::support::client::{Client, Protocol, PullResult};
use crate::support::conf::upserv_conf;
use crate::support::differential::{compare_stats, StatsPolicy};
use crate::support::proc::{last_lines, Daemon};
use crate::support::rsyncd::{await_greeting, free_port, Readiness};
use crate::support::snapshot::{render_differences, Volatile};
use crate::support::tree::Rng;
use crate::support::upserv::upserv_argv;
use crate::support::{Module, Rsyncd, Server, Snapshot, TestTree};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// The account xinetd runs upserv as here, standing in for `upserv`.
const TEST_USER: &str = "nobody";
const TEST_GROUP: &str = "nogroup";
const TEST_UID: u32 = 65534;
/// Attributes of the shipped entry that the test replaces, and why: the
/// example is disabled until an administrator enables it, the binary lives
/// in the build tree, the account `upserv` does not exist.
const REPLACED: [&str; 5] = ["disable", "server", "server_args", "user", "group"];
/// xinetd started on a fresh port each, in case another process takes the
/// port between our probe and xinetd's bind.
const START_ATTEMPTS: u32 = 3;
/// Where the shipped entry begins.
const ENTRY_START: &str = "service rsync";
/// How long xinetd may take to listen (10 s; with
/// `-dontfork` it stays up even when it could not bind the port), and upserv
/// to greet (it may run under qemu).
const XINETD_READY: Readiness = Readiness {
    listen: Duration::from_secs(10),
    greeting_timeout: Duration::from_secs(30),
};
/// Lines of logs shown when something fails.
const LOG_LINES: usize = 30;

#[test]
fn a_pull_through_xinetd_equals_a_pull_from_rsyncd() {
    let Some(xinetd) = xinetd_or_skip() else {
        return;
    };
    let tree = sample_tree();
    let modules = [Module::new("m", tree.root()).param("comment", "builds for the classroom")];
    let served = XinetdUpserv::start(&xinetd, &modules);
    let reference = Rsyncd::start(&modules);

    let listing = [&served as &dyn Server, &reference].map(list_modules);
    assert_eq!(
        listing[0],
        listing[1],
        "module list through xinetd vs rsyncd\n{}",
        served.logs()
    );
    assert!(listing[0].contains("builds for the classroom"));

    let scratch = tempfile::tempdir().expect("scratch directory for pulls");
    let mut mismatches = Vec::new();
    for client in Client::all() {
        for protocol in [Protocol::V(27), Protocol::Default] {
            let label = format!("{} at protocol {protocol}", client.version);
            let dir = scratch
                .path()
                .join(label.replace(|c: char| !c.is_alphanumeric(), "-"));
            let servers: [(&dyn Server, &str); 2] = [(&reference, "rsyncd"), (&served, "xinetd")];
            let [reference_pull, xinetd_pull] = servers.map(|(server, name)| {
                let dest = dir.join(name);
                std::fs::create_dir_all(&dest).expect("creating a pull destination");
                let opts = ["-a", "-i", "--stats"];
                let result = client.pull(&server.url("m/"), &dest, &opts, protocol);
                (result, Snapshot::of(&dest))
            });
            let found = compare(&reference_pull, &xinetd_pull);
            mismatches.extend(found.into_iter().map(|m| format!("{label}: {m}")));
        }
    }
    assert!(
        mismatches.is_empty(),
        "pulls through xinetd differ from rsyncd's:\n{}\n{}",
        mismatches.join("\n"),
        served.logs()
    );
    // The peer address comes from the socket xinetd hands over as stdin.
    assert!(
        served.upserv_log().contains("127.0.0.1: "),
        "upserv serve logs each connection, with the client's address, to \
         its default log file\n{}",
        served.logs()
    );
}

/// Every way the candidate's pull (xinetd) differs from the reference's.
fn compare(reference: &(PullResult, Snapshot), candidate: &(PullResult, Snapshot)) -> Vec<String> {
    let ((r, r_tree), (c, c_tree)) = (reference, candidate);
    let mut found = Vec::new();
    if r.code != 0 || c.code != 0 {
        found.push(format!(
            "exit codes {} (rsyncd) and {} (xinetd); stderr:\n{}\n{}",
            r.code, c.code, r.stderr, c.stderr
        ));
    }
    // Below protocol 29 the client itemizes from two processes at once, so
    // only the set of lines is stable.
    let sorted = |p: &PullResult| {
        let mut lines = p.itemized.clone();
        lines.sort();
        lines
    };
    if sorted(r) != sorted(c) {
        found.push(format!(
            "itemized lines differ:\n{:#?}\nvs\n{:#?}",
            r.itemized, c.itemized
        ));
    }
    found.extend(compare_stats(r.stats(), c.stats(), StatsPolicy::default()));
    let diffs = r_tree.diff(c_tree, Volatile::default(), ["rsyncd", "xinetd"]);
    if !diffs.is_empty() {
        found.push(format!("trees differ:\n{}", render_differences(&diffs)));
    }
    found
}

/// `rsync rsync://127.0.0.1:PORT/`: the module list.
fn list_modules(server: &dyn Server) -> String {
    let out = Command::new("rsync")
        .env("LC_ALL", "C")
        .arg(server.url(""))
        .output()
        .expect("running rsync for the module list");
    assert!(
        out.status.success(),
        "listing {}: {}",
        server.describe(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small tree a non-root server can read in full: plain files, an
/// executable, a symlink, another owner, set times. Its temporary parent
/// is opened to others so that `nobody` can reach it.
fn sample_tree() -> TestTree {
    let tree = TestTree::new();
    let parent = tree.root().parent().expect("the tree has a parent");
    open_to_others(parent);
    tree.file("docs/readme.txt", b"read me first\n")
        .mode(0o644)
        .mtime(1_600_000_000);
    tree.file("bin/tool", &Rng::new(873).bytes(150_000))
        .mode(0o755)
        .mtime(1_600_000_100);
    tree.file("owned-by-1000", b"someone else's\n")
        .owner(1000, 1000)
        .mtime(1_600_000_200);
    tree.symlink("latest", "docs/readme.txt")
        .mtime(1_600_000_300);
    for (dir, mtime) in [
        ("docs", 1_500_000_000),
        ("bin", 1_500_000_100),
        ("", 1_500_000_200),
    ] {
        tree.dir(dir).mode(0o755).mtime(mtime);
    }
    tree.settle();
    tree
}

/// rwxr-xr-x on a directory the test made.
fn open_to_others(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 755 {dir:?}: {e}"));
}

/// The xinetd binary, or `None` after saying why the test is skipped.
fn xinetd_or_skip() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: xinetd needs root to run a service as another user");
        return None;
    }
    let found = find_program("xinetd");
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "xinetd is not installed, but .ci/run installs it under CI"
        );
        eprintln!("skipped: xinetd is not installed (apt-get install xinetd)");
    }
    found
}

/// `name` as an absolute path: as given when it has a slash, else the first
/// match in PATH or the sbin directories (xinetd lives in /usr/sbin).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// xinetd on a loopback port, starting `upserv server` per connection.
struct XinetdUpserv {
    daemon: Daemon,
    port: u16,
    dir: TempDir,
}

impl XinetdUpserv {
    /// Starts xinetd on a free loopback port, trying a fresh port when
    /// another process took the one probed before xinetd could bind it.
    fn start(xinetd: &Path, modules: &[Module]) -> XinetdUpserv {
        let dir = tempfile::Builder::new()
            .prefix("xinetd-")
            .tempdir()
            .expect("creating the xinetd state directory");
        open_to_others(dir.path());
        let builds = dir.path().join("builds");
        std::fs::create_dir(&builds).expect("creating the builds directory");
        std::os::unix::fs::chown(&builds, Some(TEST_UID), Some(TEST_UID))
            .expect("giving the builds directory to nobody");
        let conf = dir.path().join("upserv.conf");
        let builds_text = builds.to_string_lossy();
        std::fs::write(&conf, upserv_conf(&[("builds dir", &builds_text)], modules))
            .expect("writing upserv.conf");
        let shipped = shipped_entry();
        let mut failures = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let entry = test_entry(&shipped, &conf, port, &dir.path().join("service.log"));
            let xinetd_conf = dir.path().join("xinetd.conf");
            std::fs::write(&xinetd_conf, &entry).expect("writing xinetd.conf");
            let mut cmd = Command::new(xinetd);
            cmd.arg("-dontfork")
                .arg("-f")
                .arg(&xinetd_conf)
                .arg("-filelog")
                .arg(dir.path().join("xinetd.log"))
                .arg("-pidfile")
                .arg(dir.path().join("xinetd.pid"));
            let mut daemon = Daemon::spawn(&mut cmd, |_| {}).expect("starting xinetd");
            match await_greeting(&mut daemon, "xinetd", port, XINETD_READY) {
                Ok(()) => return XinetdUpserv { daemon, port, dir },
                Err(why) => failures.push_str(&format!(
                    "port {port}: {why}\nconfiguration:\n{entry}\nstderr:\n{}\n",
                    daemon.stderr_text()
                )),
            }
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        panic!(
            "xinetd with upserv did not answer:\n{failures}--- xinetd messages\n{}\n--- upserv log\n{}",
            last_lines(&read("xinetd.log"), LOG_LINES),
            last_lines(&read("builds/.upserv/upserv.log"), LOG_LINES),
        )
    }

    fn upserv_log(&self) -> String {
        let path = self.dir.path().join("builds/.upserv/upserv.log");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// xinetd's own messages, its service log and upserv's log, for reports.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "--- xinetd messages\n{}\n--- xinetd stderr\n{}\n--- xinetd service log\n{}\n--- upserv log\n{}",
            last_lines(&read("xinetd.log").unwrap_or_default(), LOG_LINES),
            last_lines(&self.daemon.stderr_text(), LOG_LINES),
            last_lines(&read("service.log").unwrap_or_default(), LOG_LINES),
            last_lines(&self.upserv_log(), LOG_LINES),
        )
    }
}

impl Server for XinetdUpserv {
    fn describe(&self) -> String {
        format!("upserv under xinetd on port {}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{path}", self.port)
    }

    fn log_tail(&self, _lines: usize) -> String {
        self.logs()
    }
}

/// One `name op value` line of an xinetd service entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    name: String,
    op: String,
    value: String,
}

/// The xinetd entry the package ships: the attribute lines between the
/// braces that follow `service rsync`.
fn shipped_entry() -> Vec<Attribute> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED_ENTRY);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
    parse_entry(&text).unwrap_or_else(|why| panic!("{SHIPPED_ENTRY}: {why}"))
}

/// The example entry, relative to the repository.
const SHIPPED_ENTRY: &str = "packaging/xinetd/rsync";

fn parse_entry(text: &str) -> Result<Vec<Attribute>, String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != ENTRY_START)
        .skip(1);
    if lines.next() != Some("{") {
        return Err(format!("no `{ENTRY_START}` line followed by `{{`"));
    }
    let mut entry = Vec::new();
    for line in lines {
        if line == "}" {
            return Ok(entry);
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        entry.push(parse_attribute(line)?);
    }
    Err("no closing `}`".into())
}

fn parse_attribute(line: &str) -> Result<Attribute, String> {
    let mut words = line.split_whitespace();
    let (Some(name), Some(op)) = (words.next(), words.next()) else {
        return Err(format!("not `name = value`: {line:?}"));
    };
    if !["=", "+=", "-="].contains(&op) {
        return Err(format!("no `=`, `+=` or `-=` after the name in {line:?}"));
    }
    Ok(Attribute {
        name: name.to_owned(),
        op: op.to_owned(),
        value: words.collect::<Vec<_>>().join(" "),
    })
}

/// The shipped entry made runnable here: [`REPLACED`] attributes set for
/// this test, the rest kept, and a loopback port added (`UNLISTED`, since
/// /etc/services puts rsync on 873).
fn test_entry(shipped: &[Attribute], conf: &Path, port: u16, service_log: &Path) -> String {
    let value_of = |name: &str| {
        shipped
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    };
    assert_eq!(
        value_of("server_args"),
        Some("server"),
        "the classic `server_args = server`"
    );
    assert_eq!(value_of("user"), Some("upserv"), "a dedicated user");
    assert!(
        value_of("server").is_some_and(|s| s.ends_with("/upserv")),
        "`server` runs upserv"
    );
    let argv = upserv_argv();
    let server = find_program(&argv[0]).unwrap_or_else(|| panic!("{} not found", argv[0]));
    let mut server_args: Vec<String> = argv[1..].to_vec();
    server_args.extend(["server".to_owned(), "--config".to_owned()]);
    server_args.push(conf.to_string_lossy().into_owned());
    let mut text = format!("{ENTRY_START}\n{{\n");
    let mut line = |name: &str, op: &str, value: &str| {
        text.push_str(&format!("    {name:<15} {op} {value}\n"));
    };
    for a in shipped
        .iter()
        .filter(|a| !REPLACED.contains(&a.name.as_str()))
    {
        line(&a.name, &a.op, &a.value);
    }
    line("disable", "=", "no");
    line("server", "=", &server.to_string_lossy());
    line("server_args", "=", &server_args.join(" "));
    line("user", "=", TEST_USER);
    line("group", "=", TEST_GROUP);
    line("type", "=", "UNLISTED");
    line("port", "=", &port.to_string());
    line("bind", "=", "127.0.0.1");
    line("log_type", "=", &format!("FILE {}", service_log.display()));
    text.push_str("}\n");
    text
}

#[test]
fn the_entry_parser_reads_xinetd_syntax() {
    let text = "intro\nservice rsync\n{\n  disable = no\n  # a comment\n\n  log_on_failure  += HOST\n  server_args     = server --x\n}\n";
    let entry = parse_entry(text).expect("a well-formed entry");
    let pairs: Vec<(&str, &str, &str)> = entry
        .iter()
        .map(|a| (a.name.as_str(), a.op.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("disable", "=", "no"),
            ("log_on_failure", "+=", "HOST"),
            ("server_args", "=", "server --x"),
        ]
    );
    assert!(parse_entry("service rsync\n{\n  disable no\n}\n").is_err());
    assert!(parse_entry("service rsync\n  disable = no\n").is_err());
    assert!(parse_entry("service rsync\n{\n  disable = no\n").is_err());
}
