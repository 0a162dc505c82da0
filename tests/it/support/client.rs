//! The real rsync client: which binary, which protocol, one pull with a
//! deadline, and what its output says (itemized lines, `--stats` numbers,
//! a normalised form for comparing two pulls).
//!
//! The client is `rsync` from PATH, or an older one named by the
//! `UPSERV_TEST_RSYNC_OLD` environment variable (see `tests/tools/old-rsync.sh`).
//! Nothing here knows which server answered.

use super::proc::{run_with_deadline, Finished};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable naming an older rsync client binary.
pub const OLD_CLIENT_ENV: &str = "UPSERV_TEST_RSYNC_OLD";
/// A pull that takes longer than this is killed and the test fails.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(60);
/// Variables that would change how the client connects or what it sends.
const SCRUBBED_ENV: &[&str] = &[
    "RSYNC_CONNECT_PROG",
    "RSYNC_PROXY",
    "RSYNC_PASSWORD",
    "RSYNC_RSH",
    "RSYNC_OLD_ARGS",
    "RSYNC_PROTECT_ARGS",
];

/// The protocol a pull asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// No `--protocol`: whatever the client negotiates by itself.
    Default,
    /// `--protocol=N`.
    V(u32),
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Default => write!(f, "client default"),
            Protocol::V(n) => write!(f, "{n}"),
        }
    }
}

/// The protocols a differential test runs at.
#[derive(Clone, Copy, Debug)]
pub struct ProtocolSet(pub &'static [Protocol]);

impl ProtocolSet {
    /// 27, 28, 29 and the client's own default: every protocol upserv serves.
    pub const ALL: ProtocolSet = ProtocolSet(&[
        Protocol::V(27),
        Protocol::V(28),
        Protocol::V(29),
        Protocol::Default,
    ]);
    /// Protocol 29 only, for cases where the older protocols add nothing.
    pub const V29: ProtocolSet = ProtocolSet(&[Protocol::V(29)]);
}

/// An rsync client binary and the newest protocol it speaks.
#[derive(Clone, Debug)]
pub struct Client {
    pub program: PathBuf,
    /// The first line of `--version`.
    pub version: String,
    pub max_protocol: u32,
    /// Variables set for its runs (`RSYNC_CHECKSUM_LIST`, ...).
    pub env: Vec<(String, String)>,
}

impl Client {
    /// `rsync` from PATH.
    pub fn current() -> Client {
        static CURRENT: OnceLock<Client> = OnceLock::new();
        CURRENT
            .get_or_init(|| Client::at(Path::new("rsync")))
            .clone()
    }

    /// The older client named by `UPSERV_TEST_RSYNC_OLD`, if set and not
    /// empty; when not, says so on stderr (shown with the test's output), since the
    /// cases for it are then left out.
    pub fn old() -> Option<Client> {
        let program = std::env::var_os(OLD_CLIENT_ENV).filter(|p| !p.is_empty());
        let Some(program) = program else {
            eprintln!("{OLD_CLIENT_ENV} is not set: the older client's cases are left out");
            return None;
        };
        Some(Client::at(Path::new(&program)))
    }

    /// The current client, then the old one when configured.
    pub fn all() -> Vec<Client> {
        std::iter::once(Client::current())
            .chain(Client::old())
            .collect()
    }

    /// The client at `program`; panics when it does not run.
    pub fn at(program: &Path) -> Client {
        let output = Command::new(program)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("running {program:?} --version: {e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.lines().next().unwrap_or_default().trim().to_string();
        let max_protocol = version
            .split("protocol version")
            .nth(1)
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no protocol version in {program:?} --version: {text}"));
        Client {
            program: program.to_path_buf(),
            version,
            max_protocol,
            env: Vec::new(),
        }
    }

    /// The release, `(3, 5, 0)` from `rsync  version 3.5.0  protocol ...`.
    pub fn release(&self) -> (u32, u32, u32) {
        let number = self
            .version
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or_default();
        let mut parts = number.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        });
        let mut next = || parts.next().unwrap_or(0);
        (next(), next(), next())
    }

    /// The same client with `name=value` in its environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Client {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Whether this client can be asked for `protocol`.
    pub fn speaks(&self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Default => true,
            Protocol::V(n) => n <= self.max_protocol,
        }
    }

    /// Pulls `url` into the directory `dest` with `opts`, at `protocol`;
    /// panics, with what the client printed, if it runs past [`PULL_TIMEOUT`].
    ///
    /// The client runs in `dest`'s parent and names the destination as
    /// `NAME/`, so that messages mentioning it read the same for two pulls
    /// into different places. Paths inside `opts` should be absolute.
    pub fn pull(&self, url: &str, dest: &Path, opts: &[&str], protocol: Protocol) -> PullResult {
        self.pull_within(url, dest, opts, protocol, PULL_TIMEOUT)
            .unwrap_or_else(|report| panic!("{report}"))
    }

    /// As [`Client::pull`] with a deadline of `timeout`; a client still
    /// running then is killed and the error says so, with its output.
    pub fn pull_within(
        &self,
        url: &str,
        dest: &Path,
        opts: &[&str],
        protocol: Protocol,
        timeout: Duration,
    ) -> Result<PullResult, String> {
        let parent = dest
            .parent()
            .unwrap_or_else(|| panic!("destination {dest:?} has no parent"));
        let mut name = dest
            .file_name()
            .unwrap_or_else(|| panic!("destination {dest:?} has no name"))
            .to_os_string();
        name.push("/");
        let mut cmd = Command::new(&self.program);
        cmd.current_dir(parent).env("LC_ALL", "C").args(opts);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Protocol::V(n) = protocol {
            cmd.arg(format!("--protocol={n}"));
        }
        // Several sources travel as one space-separated string.
        cmd.args(url.split(' ')).arg(&name);
        // Debug shows the directory and environment changes too, runnable.
        let command = format!("{cmd:?}");
        let finished = run_with_deadline(&mut cmd, timeout)
            .map_err(|e| format!("starting the rsync client: {e}\ncommand: {command}"))?;
        let stdout = String::from_utf8_lossy(&finished.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&finished.stderr).into_owned();
        if finished.timed_out {
            return Err(format!(
                "rsync client hung: killed after {timeout:?}\ncommand: {command}\n\
                 --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            ));
        }
        Ok(PullResult {
            itemized: stdout
                .lines()
                .filter(|l| is_itemized(l))
                .map(str::to_string)
                .collect(),
            command,
            code: finished.code,
            stdout,
            stderr,
            elapsed: finished.elapsed,
        })
    }
}

/// [`Client::pull`] with the current client.
pub fn pull(url: &str, dest: &Path, opts: &[&str], protocol: Protocol) -> PullResult {
    Client::current().pull(url, dest, opts, protocol)
}

/// What one run of the client produced.
#[derive(Clone, Debug)]
pub struct PullResult {
    /// The command line, runnable from a shell, for reports.
    pub command: String,
    /// Exit code; `-N` when signal N ended the client.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The `-i` lines of stdout, in order.
    pub itemized: Vec<String>,
    pub elapsed: Duration,
}

impl PullResult {
    /// The `--stats` numbers, when stdout has them.
    pub fn stats(&self) -> Option<Stats> {
        Stats::parse(&self.stdout)
    }

    /// Panics with the command and both outputs unless the client exited 0.
    pub fn assert_ok(&self) -> &PullResult {
        assert!(
            self.code == 0,
            "rsync exited with {}\ncommand: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the server refused the pull before the transfer: exit
    /// code 5 (error starting the client-server protocol) and `message` in
    /// the client's stderr.
    pub fn assert_refused(&self, message: &str) -> &PullResult {
        assert!(
            self.code == 5 && self.stderr.contains(message),
            "expected exit code 5 and {message:?}, got {}\ncommand: {}\n--- stderr ---\n{}",
            self.code,
            self.command,
            self.stderr
        );
        self
    }

    /// Exit codes named in `rsync error: ... (code N)` lines, in order.
    /// The codes of the `rsync error:` lines on stderr, sorted: the
    /// client's processes may each print one, in either order.
    pub fn error_codes(&self) -> Vec<i32> {
        let mut codes: Vec<i32> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("rsync error:"))
            .filter_map(|l| {
                let rest = &l[l.find("(code ")? + "(code ".len()..];
                rest[..rest.find(')')?].parse().ok()
            })
            .collect();
        codes.sort_unstable();
        codes
    }
}

/// Whether `line` is an itemized change line (`-i`): an 11-character (9 in
/// 2.6.x) `YXcstpoguax` field, or `*deleting`, then a space and the name.
pub fn is_itemized(line: &str) -> bool {
    let Some((field, _)) = line.split_once(' ') else {
        return false;
    };
    let bytes = field.as_bytes();
    if field == "*deleting" {
        return true;
    }
    (9..=11).contains(&bytes.len())
        && b"<>ch.*".contains(&bytes[0])
        && b"fdLDS".contains(&bytes[1])
        && bytes[2..]
            .iter()
            .all(|b| b.is_ascii_alphabetic() || b"+.? ".contains(b))
}

/// The numbers of `--stats`. Older clients lack the created/deleted lines
/// and say "written"/"read" for "sent"/"received".
/// Parsing expects rsync's default number format (no `-h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub created: Option<u64>,
    pub deleted: Option<u64>,
    pub transferred: u64,
    pub total_size: u64,
    pub transferred_size: u64,
    pub literal: u64,
    pub matched: u64,
    pub file_list_size: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Stats {
    /// Reads the `--stats` block out of a client's stdout.
    pub fn parse(stdout: &str) -> Option<Stats> {
        let field = |label: &str| stats_field(stdout, label);
        Some(Stats {
            files: field("Number of files:")?,
            created: field("Number of created files:"),
            deleted: field("Number of deleted files:"),
            transferred: field("Number of regular files transferred:")
                .or_else(|| field("Number of files transferred:"))?,
            total_size: field("Total file size:")?,
            transferred_size: field("Total transferred file size:")?,
            literal: field("Literal data:")?,
            matched: field("Matched data:")?,
            file_list_size: field("File list size:")?,
            bytes_sent: field("Total bytes sent:").or_else(|| field("Total bytes written:"))?,
            bytes_received: field("Total bytes received:")
                .or_else(|| field("Total bytes read:"))?,
        })
    }
}

/// The number after `label` at the start of a line, thousands separators
/// removed.
fn stats_field(stdout: &str, label: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.starts_with(label))?;
    let value = line[label.len()..].trim_start();
    let end = value
        .find(|c: char| !c.is_ascii_digit() && c != ',')
        .unwrap_or(value.len());
    value[..end].replace(',', "").parse().ok()
}

/// Random characters rsync appends to a temporary file's name (mkstemp).
const TEMP_SUFFIX_LEN: usize = 6;

/// Lines of stats output that depend on timing or on how the server framed
/// its multiplexed stream; the data counts are checked by a policy instead.
/// The `sent/wrote ... bytes/sec` summary is dropped for the same reason.
const UNSTABLE_PREFIXES: &[&str] = &[
    "File list generation time:",
    "File list transfer time:",
    "File list size:",
    "Total bytes sent:",
    "Total bytes received:",
    "Total bytes written:",
    "Total bytes read:",
    "Literal data:",
    "Matched data:",
];

/// Output lines made comparable across two pulls from different servers:
/// progress redraws collapsed, timing and framing-dependent lines dropped,
/// rates, durations, pids, ports and loopback addresses masked (with the
/// padding of progress lines), rsync's source locations and version tags
/// removed, and each of `paths` (the servers' module directories) replaced
/// by `<module>`.
pub fn comparable_lines(text: &str, paths: &[&Path]) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.rsplit('\r').next().unwrap_or(line);
            if UNSTABLE_PREFIXES.iter().any(|p| line.starts_with(p))
                || ((line.starts_with("sent ") || line.starts_with("wrote "))
                    && line.contains("bytes/sec"))
            {
                return None;
            }
            let line = line.split("  speedup is ").next().unwrap_or(line);
            Some(mask_line(line, paths))
        })
        .collect()
}

fn mask_line(line: &str, paths: &[&Path]) -> String {
    let mut text = strip_source_location(line);
    for path in paths {
        text = text.replace(&*path.to_string_lossy(), "<module>");
    }
    text = mask_temp_names(&text);
    let mut previous = String::new();
    let mut progress = false;
    let mut words = Vec::new();
    for word in text.split(' ') {
        let masked = if word.ends_with("B/s") {
            progress = true;
            "<rate>".to_string()
        } else if is_duration(word) {
            "<time>".to_string()
        } else if word.starts_with("pid=") {
            "pid=<n>".to_string()
        } else if previous == "port" && is_number(word) {
            "<port>".to_string()
        } else {
            mask_number_after(
                &mask_number_after(word, "127.0.0.1:", "<address>"),
                "rsync[",
                "rsync[<pid>",
            )
        };
        previous = word.to_string();
        words.push(masked);
    }
    if progress {
        // Progress columns are padded to the width of the rate.
        words.retain(|w| !w.is_empty());
    }
    words.join(" ")
}

/// Replaces `prefix` and the digits after it by `replacement`.
fn mask_number_after(word: &str, prefix: &str, replacement: &str) -> String {
    let Some(at) = word.find(prefix) else {
        return word.to_string();
    };
    let rest = &word[at + prefix.len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if digits == 0 {
        return word.to_string();
    }
    format!("{}{replacement}{}", &word[..at], &rest[digits..])
}

/// Temporary files are named `.NAME.XXXXXX` with six random characters,
/// which `-vvv` lines show; any `.` and six alphanumerics ending a word
/// become `.XXXXXX` (on both sides alike, so real names lose nothing).
fn mask_temp_names(line: &str) -> String {
    let mut bytes = line.as_bytes().to_vec();
    let mut i = 0;
    while i + TEMP_SUFFIX_LEN < bytes.len() {
        let end = i + 1 + TEMP_SUFFIX_LEN;
        let suffix_ok = bytes[i + 1..end].iter().all(u8::is_ascii_alphanumeric);
        let word_ends = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if bytes[i] == b'.' && suffix_ok && word_ends && bytes[end..].first() != Some(&b'.') {
            bytes[i + 1..end].fill(b'X');
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn is_number(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit())
}

/// Removes ` at main.c(1234)` and turns `[sender=3.5.0]` into `[sender]`:
/// they name the server's build, not what happened.
fn strip_source_location(line: &str) -> String {
    let mut text = line.to_string();
    if let Some(at) = text.rfind(" at ") {
        let rest = &text[at + 4..];
        if let Some(close) = rest.find(')') {
            if rest[..close].contains(".c(") {
                text.replace_range(at..at + 4 + close + 1, "");
            }
        }
    }
    if let (Some(open), true) = (text.rfind('['), text.ends_with(']')) {
        if let Some(eq) = text[open..].find('=') {
            text.replace_range(open + eq..text.len() - 1, "");
        }
    }
    text
}

/// `0:00:01`-style durations printed by `--progress`.
fn is_duration(word: &str) -> bool {
    let parts: Vec<&str> = word.split(':').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}
/// Runs `client` with `args` and extra environment variables (such as
/// `RSYNC_PASSWORD`), in `cwd`, with the usual pull deadline.
pub fn rsync(client: &Client, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = Command::new(&client.program);
    cmd.current_dir(cwd).env("LC_ALL", "C").args(args);
    for var in [
        "RSYNC_PASSWORD",
        "RSYNC_CONNECT_PROG",
        "RSYNC_PROXY",
        "USER",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let finished = run_with_deadline(&mut cmd, PULL_TIMEOUT).expect("running rsync");
    assert!(!finished.timed_out, "rsync hung: {cmd:?}");
    finished
}

/// The text of a finished command's stderr.
pub fn stderr(f: &Finished) -> String {
    String::from_utf8_lossy(&f.stderr).into_owned()
}
