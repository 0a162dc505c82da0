//! Differential pulls: the same client, options and protocol against the
//! reference rsyncd and the candidate server, then every observable result
//! compared: the destination tree, the exit code, the itemized lines, the rest
//! of stdout (normalised), the error codes, and the `--stats` data counts.
//!
//! A mismatch fails with one report naming the case, protocol, client,
//! servers, command lines, both outputs and both daemons' last log lines.
//! This module decides what "the same" means; how to run a pull, start a
//! daemon or build a tree lives in the sibling modules.

use super::client::{
    comparable_lines, is_itemized, Client, Protocol, ProtocolSet, PullResult, Stats,
};
use super::conf::Module;
use super::proc::last_lines;
use super::rsyncd::{reference_older_than, rsyncd_inetd, Rsyncd, UPSERV_PROTOCOL};
use super::snapshot::{render_differences, Snapshot, Volatile};
use super::tree::{basis_copy, TestTree};
use super::upserv::{Launch, Upserv, UpservServe};
use super::Server;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

/// Environment variable that picks the default candidate server:
/// `upserv` (the default), `serve` (inetd-style), `rsyncd` (a second
/// reference, to check a new test case before upserv can pass it) or
/// `rsyncd-inetd`.
pub const CANDIDATE_ENV: &str = "UPSERV_TEST_CANDIDATE";
/// Lines of each daemon's log shown in a report.
const LOG_TAIL_LINES: usize = 20;
/// The two sides, as reports name them.
const ROLES: [&str; 2] = ["reference", "candidate"];
/// Lines of each client output shown in a report.
const OUTPUT_TAIL_LINES: usize = 40;
/// From this protocol on the sender echoes every itemized entry, which
/// makes the client print names in one stream (rsync: generator.c itemize).
const ORDERED_OUTPUT_PROTOCOL: u32 = 29;
/// From this many `-v`s on, the client's generator prints lines of its own.
const CHATTY_VERBOSITY: usize = 2;
/// From this protocol on the client may be given incremental recursion,
/// and then its generator deletes while its receiver itemizes.
const INC_RECURSE_PROTOCOL: u32 = 30;
/// Short options that take a value, so letters after them are not flags.
const SHORT_OPTS_WITH_VALUE: &str = "BefMT@";

/// Builds a basis in a destination (second path) from the source tree's
/// root (first path) before a delta pull, e.g. [`super::tree::basis_edited`].
pub type BasisFn = fn(&Path, &Path);

/// Which server plays the candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// `upserv daemon`.
    Upserv,
    /// `upserv serve`, one process per connection.
    UpservServe,
    /// A second reference rsyncd.
    Rsyncd,
    /// rsyncd in inetd mode behind the harness's listener: checks the
    /// plumbing that `UpservServe` relies on.
    RsyncdInetd,
}

impl Candidate {
    /// The candidate chosen by [`CANDIDATE_ENV`], upserv when unset.
    pub fn from_env() -> Candidate {
        match std::env::var(CANDIDATE_ENV).as_deref() {
            Ok("rsyncd") => Candidate::Rsyncd,
            Ok("serve") => Candidate::UpservServe,
            Ok("rsyncd-inetd") => Candidate::RsyncdInetd,
            Ok("upserv") | Err(_) => Candidate::Upserv,
            Ok(other) => {
                panic!("{CANDIDATE_ENV}={other}: expected upserv, serve, rsyncd or rsyncd-inetd")
            }
        }
    }

    fn start(self, side: &Side, upserv: &UpservSetup) -> Box<dyn Server> {
        let args: Vec<&str> = upserv.args.iter().map(String::as_str).collect();
        let globals: Vec<(&str, &str)> = upserv
            .globals
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let launch = Launch {
            builds: upserv.builds.as_deref(),
            args: &args,
            globals: &globals,
            run_as: upserv.run_as,
            ..Launch::default()
        };
        match self {
            Candidate::Upserv => Box::new(Upserv::launch(&side.modules, &launch)),
            Candidate::UpservServe => Box::new(UpservServe::launch(&side.modules, &launch)),
            Candidate::Rsyncd => Box::new(Rsyncd::start(&side.modules)),
            Candidate::RsyncdInetd => Box::new(rsyncd_inetd(&side.modules)),
        }
    }
}

/// What one server serves and what the client asks it for.
#[derive(Clone, Debug)]
pub struct Side {
    pub modules: Vec<Module>,
    /// The part of the URL after `rsync://host:port/`, e.g. `m/` or `m/sub`.
    pub url_path: String,
}

/// How far the candidate's literal data may stray from the reference's on
/// a delta pull: both implement rsync's matching, but a different search
/// order may pick different (equally valid) blocks.
#[derive(Clone, Copy, Debug)]
pub struct StatsPolicy {
    pub literal_margin_percent: u64,
    pub literal_margin_bytes: u64,
}

/// Default literal-data margin: this share of the reference's literal data...
const LITERAL_MARGIN_PERCENT: u64 = 10;
/// ...but never less than this many bytes (a few blocks' worth).
const LITERAL_MARGIN_BYTES: u64 = 4096;

impl Default for StatsPolicy {
    fn default() -> StatsPolicy {
        StatsPolicy {
            literal_margin_percent: LITERAL_MARGIN_PERCENT,
            literal_margin_bytes: LITERAL_MARGIN_BYTES,
        }
    }
}

/// The results of one protocol's pair of pulls, for extra assertions. The
/// destination directories (the snapshots' roots) live as long as it does.
pub struct Pair {
    pub protocol: Protocol,
    pub reference: PullResult,
    pub candidate: PullResult,
    pub reference_tree: Snapshot,
    pub candidate_tree: Snapshot,
    _scratch: Arc<TempDir>,
}

/// A differential run over a tree, configured by chained calls.
pub struct Differential<'t> {
    tree: &'t TestTree,
    name: String,
    reference: Side,
    candidate_side: Option<Side>,
    candidate: Candidate,
    client: Client,
    basis: Option<BasisFn>,
    upserv: UpservSetup,
    stats_policy: StatsPolicy,
    stderr_exact: bool,
}

/// What upserv gets besides the modules, when it is the candidate.
#[derive(Default)]
struct UpservSetup {
    builds: Option<PathBuf>,
    args: Vec<String>,
    globals: Vec<(String, String)>,
    run_as: Option<(u32, u32)>,
}

impl<'t> Differential<'t> {
    /// Module `m` serving the tree's root, pulled as `m/`, with the
    /// candidate from [`CANDIDATE_ENV`] and the current client.
    pub fn new(tree: &'t TestTree) -> Differential<'t> {
        Differential {
            tree,
            name: "unnamed".to_string(),
            reference: Side {
                modules: vec![Module::new("m", tree.root())],
                url_path: "m/".to_string(),
            },
            candidate_side: None,
            candidate: Candidate::from_env(),
            client: Client::current(),
            basis: None,
            upserv: UpservSetup::default(),
            stats_policy: StatsPolicy::default(),
            stderr_exact: false,
        }
    }

    /// The case name shown in reports.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// What to pull (after `rsync://host:port/`) from both servers; several
    /// sources are separated by spaces.
    pub fn url_path(mut self, path: &str) -> Self {
        self.reference.url_path = path.to_string();
        self
    }

    /// Adds `key = value` to module `m` on both servers (on the reference
    /// only once [`Differential::candidate_side`] has replaced the other).
    pub fn param(mut self, key: &str, value: &str) -> Self {
        let m = self.reference.modules.remove(0).param(key, value);
        self.reference.modules.insert(0, m);
        self
    }

    pub fn candidate(mut self, candidate: Candidate) -> Self {
        self.candidate = candidate;
        self
    }

    /// Serves and pulls something else from the candidate, e.g. a build
    /// module whose metadata table should reproduce the reference tree.
    pub fn candidate_side(mut self, side: Side) -> Self {
        self.candidate_side = Some(side);
        self
    }

    pub fn client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    /// Fills each destination with a basis before its pull.
    pub fn basis(mut self, basis: BasisFn) -> Self {
        self.basis = Some(basis);
        self
    }

    /// Extra arguments for upserv (`--upstream URL`, `--workers N`, ...).
    pub fn upserv_args(mut self, args: &[&str]) -> Self {
        self.upserv.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Everything of `launch` for upserv: builds directory, arguments,
    /// global settings, the user it runs as.
    pub fn upserv_launch(mut self, launch: &Launch) -> Self {
        self.upserv = UpservSetup {
            builds: launch.builds.map(Path::to_path_buf),
            args: launch.args.iter().map(|a| a.to_string()).collect(),
            globals: launch
                .globals
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            run_as: launch.run_as,
        };
        self
    }

    /// Also requires stderr to match line for line (after normalising),
    /// not just the error codes it reports.
    pub fn stderr_exact(mut self) -> Self {
        self.stderr_exact = true;
        self
    }

    /// Runs every protocol of `protocols` the client speaks; panics with
    /// the report of every mismatching protocol.
    pub fn run(&self, opts: &[&str], protocols: &ProtocolSet) -> Vec<Pair> {
        self.run_checked(opts, protocols)
            .unwrap_or_else(|report| panic!("{report}"))
    }

    /// As [`Differential::run`], returning the report instead of panicking.
    pub fn run_checked(&self, opts: &[&str], protocols: &ProtocolSet) -> Result<Vec<Pair>, String> {
        self.tree.settle();
        let arena = self.arena();
        let mut pairs = Vec::new();
        let mut reports = String::new();
        for protocol in self.protocols_to_run(protocols) {
            let pair = self.pull_pair(&arena, opts, protocol);
            let mismatches = self.compare(&pair, &arena, opts);
            if !mismatches.is_empty() {
                reports.push_str(&self.report(&pair, &arena, opts, &mismatches));
            }
            pairs.push(pair);
        }
        if reports.is_empty() {
            Ok(pairs)
        } else {
            Err(reports)
        }
    }

    /// Starts both servers and makes the scratch space (with the basis).
    fn arena(&self) -> Arena<'_> {
        let candidate_side = self.candidate_side.as_ref().unwrap_or(&self.reference);
        let servers: [Box<dyn Server>; 2] = [
            Box::new(Rsyncd::start(&self.reference.modules)),
            self.candidate.start(candidate_side, &self.upserv),
        ];
        let scratch = tempfile::Builder::new()
            .prefix("pulls-")
            .tempdir()
            .expect("creating a directory for pull destinations");
        let basis = self.basis.map(|make| {
            let dir = scratch.path().join("basis");
            make(self.tree.root(), &dir);
            dir
        });
        Arena {
            servers,
            sides: [&self.reference, candidate_side],
            scratch: Arc::new(scratch),
            basis,
        }
    }

    /// The protocol a pull really ran at: both servers offer at most 29.
    fn effective_protocol(&self, protocol: Protocol) -> u32 {
        match protocol {
            Protocol::V(n) => n,
            Protocol::Default => self.client.max_protocol.min(UPSERV_PROTOCOL),
        }
    }

    /// The set's protocols, with those the client cannot speak replaced by
    /// its default (so an old client still runs at its own newest).
    fn protocols_to_run(&self, protocols: &ProtocolSet) -> Vec<Protocol> {
        let mut chosen: Vec<Protocol> = Vec::new();
        for &p in protocols.0 {
            let p = if self.client.speaks(p) {
                p
            } else {
                Protocol::Default
            };
            if !chosen.contains(&p) {
                chosen.push(p);
            }
        }
        chosen
    }

    /// Pulls from both servers into fresh destinations (basis copies when
    /// there is a basis) and snapshots them.
    fn pull_pair(&self, arena: &Arena, opts: &[&str], protocol: Protocol) -> Pair {
        let dir = arena
            .scratch
            .path()
            .join(format!("protocol-{protocol}").replace(' ', "-"));
        // From protocol 30 on both servers give the client incremental
        // recursion whenever it allows it, as a laptop pulls by default; a
        // test that wants the list in one piece names `--no-inc-recursive`.
        let pull_opts = opts.to_vec();
        let [reference, candidate] = [0, 1].map(|i| {
            let dest = dir.join(ROLES[i]).join("dest");
            std::fs::create_dir_all(dest.parent().expect("dest has a parent"))
                .unwrap_or_else(|e| panic!("creating {dest:?}: {e}"));
            if let Some(basis) = &arena.basis {
                basis_copy(basis, &dest);
            }
            let url = arena.sides[i]
                .url_path
                .split(' ')
                .map(|path| arena.servers[i].url(path))
                .collect::<Vec<_>>()
                .join(" ");
            let asked = match (protocol, arena.servers[i].client_protocol()) {
                (Protocol::Default, Some(p)) => Protocol::V(p.min(self.client.max_protocol)),
                _ => protocol,
            };
            let result = self.client.pull(&url, &dest, &pull_opts, asked);
            (result, Snapshot::of(&dest))
        });
        Pair {
            protocol,
            reference: reference.0,
            candidate: candidate.0,
            reference_tree: reference.1,
            candidate_tree: candidate.1,
            _scratch: Arc::clone(&arena.scratch),
        }
    }

    /// Every way the candidate's pull differs from the reference's.
    fn compare(&self, pair: &Pair, arena: &Arena, opts: &[&str]) -> Vec<String> {
        let (r, c) = (&pair.reference, &pair.candidate);
        let paths = arena.module_paths();
        let mut found = Vec::new();
        if r.code != c.code {
            found.push(format!(
                "exit code: {} (reference) vs {} (candidate)",
                r.code, c.code
            ));
        }
        let deleting_apart = self.effective_protocol(pair.protocol) >= INC_RECURSE_PROTOCOL
            && !opts.iter().any(|o| NO_INC_RECURSE.contains(o));
        compare_itemized(r, c, deleting_apart, &mut found);
        let racing = self.effective_protocol(pair.protocol) < ORDERED_OUTPUT_PROTOCOL
            || generator_chatter(opts);
        compare_other_stdout(r, c, &paths, racing, deleting_apart, &mut found);
        if r.error_codes() != c.error_codes() {
            found.push(format!(
                "error codes on stderr: {:?} (reference) vs {:?} (candidate)",
                r.error_codes(),
                c.error_codes()
            ));
        }
        if self.stderr_exact {
            let (rs, cs) = (
                comparable_lines(&r.stderr, &paths),
                comparable_lines(&c.stderr, &paths),
            );
            push_difference(&mut found, "stderr", &rs, &cs);
        }
        found.extend(compare_stats(r.stats(), c.stats(), self.stats_policy));
        let volatile = volatile_mtimes(opts, &arena.sides[0].url_path);
        let trees = pair
            .reference_tree
            .diff(&pair.candidate_tree, volatile, ROLES);
        if !trees.is_empty() {
            found.push(format!(
                "destination trees differ:\n{}",
                render_differences(&trees)
            ));
        }
        found
    }

    fn report(&self, pair: &Pair, arena: &Arena, opts: &[&str], mismatches: &[String]) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "\n===== differential mismatch: case `{}`, protocol {}, client {} ({:?})",
            self.name, pair.protocol, self.client.version, self.client.program
        );
        let _ = writeln!(text, "options: {opts:?}");
        for (i, role) in ROLES.iter().enumerate() {
            let (server, side) = (&arena.servers[i], arena.sides[i]);
            let _ = writeln!(
                text,
                "{role}: {} serving {}",
                server.describe(),
                side.url_path
            );
        }
        let _ = writeln!(text, "differences:");
        for mismatch in mismatches {
            let _ = writeln!(text, "  - {mismatch}");
        }
        for (role, result) in ROLES.iter().zip([&pair.reference, &pair.candidate]) {
            let _ = writeln!(
                text,
                "--- {role} pull (exit {}): {}",
                result.code, result.command
            );
            let _ = writeln!(
                text,
                "stdout:\n{}",
                last_lines(&result.stdout, OUTPUT_TAIL_LINES)
            );
            let _ = writeln!(
                text,
                "stderr:\n{}",
                last_lines(&result.stderr, OUTPUT_TAIL_LINES)
            );
        }
        for (role, server) in ROLES.iter().zip(&arena.servers) {
            let log = server.log_tail(LOG_TAIL_LINES);
            let _ = writeln!(
                text,
                "--- {role} daemon log (last {LOG_TAIL_LINES} lines):\n{log}"
            );
        }
        text
    }
}

/// The two servers of a run, what each serves, and where pulls land.
struct Arena<'d> {
    servers: [Box<dyn Server>; 2],
    sides: [&'d Side; 2],
    scratch: Arc<TempDir>,
    basis: Option<PathBuf>,
}

impl Arena<'_> {
    /// Both sides' module directories, which messages may name.
    fn module_paths(&self) -> Vec<&Path> {
        self.sides
            .iter()
            .flat_map(|s| s.modules.iter().map(|m| m.path.as_path()))
            .collect()
    }
}

/// `deleting_apart`: the deletion lines are compared as a stream of their
/// own (see [`is_deletion`]).
fn compare_itemized(r: &PullResult, c: &PullResult, deleting_apart: bool, found: &mut Vec<String>) {
    let (r, c) = (
        ItemizedStreams::of(&r.itemized, deleting_apart),
        ItemizedStreams::of(&c.itemized, deleting_apart),
    );
    push_difference(found, "itemized lines", &r.ordered, &c.ordered);
    push_difference(
        found,
        "deletion lines (protocol 30+, in their own order)",
        &r.deletions,
        &c.deletions,
    );
    push_difference(
        found,
        "itemized lines of received files (protocol < 29)",
        &r.received,
        &c.received,
    );
    push_difference(
        found,
        "itemized hard-link lines (sorted)",
        &r.hard_links,
        &c.hard_links,
    );
}

fn compare_other_stdout(
    r: &PullResult,
    c: &PullResult,
    paths: &[&Path],
    racing: bool,
    deleting_apart: bool,
    found: &mut Vec<String>,
) {
    let (r, c) = (
        OtherStdout::of(r, paths, racing, deleting_apart),
        OtherStdout::of(c, paths, racing, deleting_apart),
    );
    push_difference(
        found,
        "stdout besides itemized lines",
        &r.ordered,
        &c.ordered,
    );
    push_difference(
        found,
        "deletion lines of -v (protocol 30+, in their own order)",
        &r.deletions,
        &c.deletions,
    );
    push_difference(
        found,
        "stdout lines of racing processes (sorted)",
        &r.unordered,
        &c.unordered,
    );
}

fn push_difference(found: &mut Vec<String>, what: &str, r: &[String], c: &[String]) {
    if let Some(d) = first_difference(r, c) {
        found.push(format!("{what}: {d}"));
    }
}

/// Options with which the client asks for no incremental recursion.
const NO_INC_RECURSE: &[&str] = &["--no-inc-recursive", "--no-i-r"];

/// Whether `line` says the client deleted something: printed by the client's
/// generator itself (rsync: log.c log_delete), never echoed by the sender.
/// From protocol 30 on, with incremental recursion, the generator deletes in
/// each directory when that directory's list arrives (rsync: generator.c
/// generate_files calls delete_in_dir), while the receiver prints the lines
/// of earlier lists: the two processes' lines interleave differently from
/// run to run, rsyncd against rsyncd on the same tree (a tree of a few
/// thousand entries shows it on every run). Each process's own lines keep
/// their order, so the deletion lines are compared as one ordered stream
/// and the rest as another: only how the two interleave is left out.
fn is_deletion(line: &str) -> bool {
    line.starts_with("*deleting ") || line.starts_with("deleting ")
}

/// Itemized lines split by the order they are bound to. The client's
/// generator and receiver run concurrently: from protocol 29 on every line
/// comes in the order the sender echoes entries back, but below 29 the
/// receiver itemizes the files it receives (`>f?????????`) while the
/// generator itemizes the rest, and at any protocol a hard link (`-H`) is
/// itemized whenever the receiver has finished its group's first file.
/// Deletions go apart when asked (see [`is_deletion`]).
struct ItemizedStreams {
    ordered: Vec<String>,
    received: Vec<String>,
    hard_links: Vec<String>,
    deletions: Vec<String>,
}

impl ItemizedStreams {
    fn of(lines: &[String], deleting_apart: bool) -> ItemizedStreams {
        let mut streams = ItemizedStreams {
            ordered: Vec::new(),
            received: Vec::new(),
            hard_links: Vec::new(),
            deletions: Vec::new(),
        };
        for line in lines {
            let field = line.split(' ').next().unwrap_or_default();
            let stream = if deleting_apart && is_deletion(line) {
                &mut streams.deletions
            } else if field.starts_with('h') {
                &mut streams.hard_links
            } else if field.contains('?') {
                &mut streams.received
            } else {
                &mut streams.ordered
            };
            stream.push(line.clone());
        }
        streams.hard_links.sort();
        streams
    }
}

/// Stdout without the itemized lines, made comparable, split into what
/// must come in the same order and what may not. From protocol 29 on, the
/// client's receiver prints every name in the order the sender echoes them;
/// below 29 the generator prints directories, links and devices while the
/// receiver prints files, concurrently. Hard-link lines (`a => b`) come
/// whenever the receiver finishes a group's first file, at any protocol.
/// With `-vv` and more (or `--debug`, `--info`) the generator prints lines
/// of its own (`NAME is uptodate`, debug output) at the same time.
/// Deletion lines (`deleting NAME`) go apart when asked, as itemized ones.
struct OtherStdout {
    ordered: Vec<String>,
    unordered: Vec<String>,
    deletions: Vec<String>,
}

impl OtherStdout {
    /// `racing`: all lines may interleave, not only hard-link lines. Then
    /// a directory's `-v` line is left out too: below protocol 29 the
    /// client's receiver may create a directory before its generator gets
    /// to it, and the generator names only directories it creates itself,
    /// so whether the line appears depends on the client's own timing. (The
    /// directories themselves are checked with the trees.)
    fn of(pull: &PullResult, paths: &[&Path], racing: bool, deleting_apart: bool) -> OtherStdout {
        let rest: String = pull
            .stdout
            .lines()
            .filter(|l| !is_itemized(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let (mut unordered, rest): (Vec<String>, Vec<String>) = comparable_lines(&rest, paths)
            .into_iter()
            .partition(|l| racing || l.contains(" => "));
        let (deletions, ordered) = rest
            .into_iter()
            .partition(|l| deleting_apart && is_deletion(l));
        if racing {
            unordered.retain(|l| !l.ends_with('/'));
        }
        unordered.sort();
        OtherStdout {
            ordered,
            unordered,
            deletions,
        }
    }
}

/// The checks of `--stats` that stdout comparison cannot make: literal and
/// matched data, which may differ within `policy` once matching is involved.
pub fn compare_stats(r: Option<Stats>, c: Option<Stats>, policy: StatsPolicy) -> Vec<String> {
    let (r, c) = match (r, c) {
        (None, None) => return Vec::new(),
        (Some(r), Some(c)) => (r, c),
        (r, c) => {
            return vec![format!(
                "--stats: printed by the reference: {}, by the candidate: {}",
                r.is_some(),
                c.is_some()
            )]
        }
    };
    let mut found = Vec::new();
    if r.matched == 0 && c.matched == 0 {
        if r.literal != c.literal {
            found.push(format!(
                "literal data (no matches on either side): {} (reference) vs {} (candidate)",
                r.literal, c.literal
            ));
        }
        return found;
    }
    if r.matched > 0 && c.matched == 0 {
        found.push(format!(
            "matched data: {} (reference) vs 0 (candidate)",
            r.matched
        ));
    }
    let margin = policy
        .literal_margin_bytes
        .max(r.literal * policy.literal_margin_percent / 100);
    if r.literal.abs_diff(c.literal) > margin {
        found.push(format!(
            "literal data: {} (reference) vs {} (candidate), beyond the margin of {margin}",
            r.literal, c.literal
        ));
    }
    found
}

/// Which mtimes the options leave to the receiver's clock: file and link
/// times without `-t` (or `-a`), directory times also with `-O` or
/// `--no-implied-dirs`, link times
/// also with `-J`, and the destination directory's own when the URL names
/// the source directory itself (no trailing slash).
pub fn volatile_mtimes(opts: &[&str], url_path: &str) -> Volatile {
    let flags = short_flags(opts);
    let long = |name: &str| opts.contains(&name);
    let times =
        (flags.contains('a') || flags.contains('t') || long("--times") || long("--archive"))
            && !long("--no-times")
            && !long("--no-t");
    Volatile {
        file_mtimes: !times,
        // With --no-implied-dirs the client leaves the directories leading
        // to a `-R` name alone and its receiver makes them when a file
        // needs them, at the time of the pull (rsync: generator.c
        // recv_generator skips FLAG_IMPLIED_DIR entries).
        dir_mtimes: !times
            || flags.contains('O')
            || long("--omit-dir-times")
            || long("--no-implied-dirs"),
        link_mtimes: !times || flags.contains('J') || long("--omit-link-times"),
        // The destination's root is the source's "." only for a trailing
        // slash, and never with --files-from (whose names are listed alone).
        root_mtime: !url_path.ends_with('/') || opts.iter().any(|o| o.starts_with("--files-from")),
    }
}

/// Whether the options make the generator print lines of its own: `-vv`
/// or more, `--debug`, or `--info`.
fn generator_chatter(opts: &[&str]) -> bool {
    let verbosity =
        short_flags(opts).matches('v').count() + opts.iter().filter(|o| **o == "--verbose").count();
    verbosity >= CHATTY_VERBOSITY
        || opts
            .iter()
            .any(|o| o.starts_with("--debug") || o.starts_with("--info"))
}

/// The letters of all short-option clusters (`-avz`), stopping at an option
/// that takes a value and skipping a value given as the next argument.
fn short_flags(opts: &[&str]) -> String {
    let mut flags = String::new();
    let mut skip_next = false;
    for opt in opts {
        if std::mem::take(&mut skip_next) || opt.starts_with("--") || !opt.starts_with('-') {
            continue;
        }
        let cluster = &opt[1..];
        match cluster.find(|c| SHORT_OPTS_WITH_VALUE.contains(c)) {
            Some(at) => {
                flags.push_str(&cluster[..at]);
                skip_next = at + 1 == cluster.len();
            }
            None => flags.push_str(cluster),
        }
    }
    flags
}

/// Where two line sequences first differ, quoting both sides.
fn first_difference(r: &[String], c: &[String]) -> Option<String> {
    let at = r.iter().zip(c).position(|(a, b)| a != b);
    let at = match at {
        Some(at) => at,
        None if r.len() == c.len() => return None,
        None => r.len().min(c.len()),
    };
    let show = |lines: &[String]| {
        lines
            .get(at)
            .map_or("(end)".to_string(), |l| format!("{l:?}"))
    };
    Some(format!(
        "first difference at line {}: {} (reference) vs {} (candidate); {} vs {} lines",
        at + 1,
        show(r),
        show(c),
        r.len(),
        c.len()
    ))
}

/// One line of a case table: a named tree, the options to pull it with, and
/// an optional basis for delta pulls.
#[derive(Clone)]
pub struct Case {
    pub name: &'static str,
    pub opts: &'static [&'static str],
    pub setup: fn(&TestTree),
    pub basis: Option<BasisFn>,
    /// What to pull; `m/` (the whole module) unless [`Case::at`] says.
    pub url_path: &'static str,
    /// Parameters of module `m` on both servers ([`Case::with`]).
    pub params: &'static [(&'static str, &'static str)],
    /// The oldest reference rsync whose behaviour the case expects, and
    /// why ([`Case::reference_since`]).
    pub reference_since: Option<((u32, u32, u32), &'static str)>,
}

impl Case {
    /// A case on one line of a table.
    pub const fn new(
        name: &'static str,
        opts: &'static [&'static str],
        setup: fn(&TestTree),
        basis: Option<BasisFn>,
    ) -> Case {
        Case {
            name,
            opts,
            setup,
            basis,
            url_path: "m/",
            params: &[],
            reference_since: None,
        }
    }

    /// The same case, compared only with a reference rsync of release
    /// `min` or newer, because of `why` (an older one behaves otherwise).
    pub const fn reference_since(mut self, min: (u32, u32, u32), why: &'static str) -> Case {
        self.reference_since = Some((min, why));
        self
    }

    /// The same case with these module parameters on both servers.
    pub const fn with(mut self, params: &'static [(&'static str, &'static str)]) -> Case {
        self.params = params;
        self
    }

    /// The same case pulling `url_path` (space-separated for several sources).
    pub const fn at(mut self, url_path: &'static str) -> Case {
        self.url_path = url_path;
        self
    }

    /// Builds the case's tree and runs it with `client` against
    /// `candidate`; the report on a mismatch, the pairs otherwise.
    pub fn run_with(
        &self,
        client: &Client,
        protocols: &ProtocolSet,
        candidate: Candidate,
    ) -> Result<Vec<Pair>, String> {
        if let Some((min, why)) = self.reference_since {
            if let Some(report) = reference_older_than(min, why) {
                return Err(format!("case `{}`: {report}\n", self.name));
            }
        }
        let tree = TestTree::new();
        (self.setup)(&tree);
        let mut differential = Differential::new(&tree)
            .name(self.name)
            .url_path(self.url_path)
            .client(client.clone())
            .candidate(candidate);
        if let Some(basis) = self.basis {
            differential = differential.basis(basis);
        }
        for (key, value) in self.params {
            differential = differential.param(key, value);
        }
        differential.run_checked(self.opts, protocols)
    }
}

/// Runs every case against the candidate of [`CANDIDATE_ENV`] (upserv by
/// default); see [`run_cases_against`].
pub fn run_cases(cases: &[Case], protocols: &ProtocolSet) {
    run_cases_against(cases, protocols, Candidate::from_env());
}

/// Runs every case with every configured client (see [`Client::all`]) and
/// panics at the end with the reports of all that failed.
pub fn run_cases_against(cases: &[Case], protocols: &ProtocolSet, candidate: Candidate) {
    let mut failures = Vec::new();
    let clients = Client::all();
    for client in &clients {
        for case in cases {
            if let Err(report) = case.run_with(client, protocols, candidate) {
                failures.push(report);
            }
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} case runs failed:\n{}",
            failures.len(),
            cases.len() * clients.len(),
            failures.concat()
        );
    }
}
