//! The arguments a client sends after `@RSYNCD: OK`, parsed into the options
//! that matter to a sender (rsync's options.c, as `server_options()` builds
//! them on the client and `parse_arguments()` reads them on the server).
//!
//! Every option rsync knows is recognised, so that a client never gets a
//! silent difference: options that change what a sender does are applied or
//! refused with a message naming them; options that only concern the
//! receiving side are accepted and ignored, as rsyncd's sender ignores them.

use crate::delta::SumKind;
use std::fmt;
use std::sync::OnceLock;

/// Most arguments a client may send (rsync's MAX_ARGS * 16 for daemons is far
/// more; no stock client sends more than a few dozen options plus its paths).
pub const MAX_ARGS: usize = 4096;
/// Longest single argument (rsync's BIGPATHBUFLEN is 4096 + 1024).
pub const MAX_ARG_LEN: usize = 5 * 1024;

/// What a module imposes on every pull, whatever the client asked: rsyncd's
/// `ignore errors`, `numeric ids` and `ignore nonreadable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleImposed {
    pub ignore_errors: bool,
    pub numeric_ids: bool,
    pub ignore_nonreadable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// `-z`: deflate with matched data inserted into the history.
    Zlib,
    /// `-zz` / `--new-compress`: deflate without history insertion.
    ZlibX,
    /// `--compress-choice=zstd`: one zstd stream for the whole transfer.
    Zstd,
    /// `--compress-choice=lz4`: each chunk an LZ4 block of its own.
    Lz4,
}

/// What a pulling client asked for. Field names follow rsync's option names.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub server: bool,
    pub sender: bool,
    pub verbose: u8,
    pub dry_run: bool,
    pub recurse: bool,
    pub dirs: bool,
    pub list_only: bool,
    pub links: bool,
    pub copy_links: bool,
    pub copy_dirlinks: bool,
    pub copy_unsafe_links: bool,
    pub safe_links: bool,
    pub hard_links: bool,
    pub perms: bool,
    pub executability: bool,
    pub owner: bool,
    pub group: bool,
    pub devices: bool,
    pub specials: bool,
    pub times: bool,
    pub checksum: bool,
    pub cvs_exclude: bool,
    pub ignore_times: bool,
    pub relative: bool,
    pub implied_dirs: bool,
    pub one_file_system: u8,
    pub whole_file: bool,
    pub numeric_ids: bool,
    pub ignore_errors: bool,
    pub compression: Compression,
    pub compress_level: Option<i32>,
    pub block_size: Option<u32>,
    pub timeout: Option<u32>,
    pub checksum_seed: Option<u32>,
    /// `--checksum-choice`: the digest of block and whole-file sums, and
    /// that of `-c` file checksums (`X,Y` names them apart).
    pub xfer_sum: SumKind,
    pub file_sum: SumKind,
    /// The module's `numeric ids`: no names in the id lists.
    pub names_withheld: bool,
    /// The module's `ignore nonreadable`: what upserv cannot read is left
    /// out of the file list.
    pub skip_unreadable: bool,
    /// Every option the client sent, once each, in the order first sent
    /// (ids of [`catalogue`]): what a module's `refuse options` look at.
    pub given: Vec<&'static str>,
    /// Which [`catalogue`] positions `given` holds, one bit each.
    given_seen: Vec<u64>,
    pub inplace: bool,
    /// 0, 1 for `--append`, 2 for `--append-verify` (sent as `--append --append`).
    pub append: u8,
    pub protect_args: bool,
    /// `--files-from`: `-` for names sent over the connection, else a file
    /// in the module.
    pub files_from: Option<Vec<u8>>,
    pub from0: bool,
    pub missing_args: MissingArgs,
    pub prune_empty_dirs: bool,
    pub max_size: Option<u64>,
    pub min_size: Option<u64>,
    /// The source paths, after the `.` that ends the options.
    pub paths: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MissingArgs {
    #[default]
    Error,
    Ignore,
    Delete,
}

/// An argument upserv cannot honour; the message goes to the client as an
/// rsync error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(pub String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arity {
    Flag,
    Value,
}

/// Every long option of rsync 3.x with whether it takes a value. Short
/// aliases are listed in [`SHORT`].
const LONG: &[(&str, Arity)] = {
    use Arity::{Flag as F, Value as V};
    &[
        ("help", F),
        ("version", F),
        ("verbose", F),
        ("no-verbose", F),
        ("no-v", F),
        ("info", V),
        ("debug", V),
        ("stderr", V),
        ("msgs2stderr", F),
        ("no-msgs2stderr", F),
        ("quiet", F),
        ("motd", F),
        ("no-motd", F),
        ("stats", F),
        ("human-readable", F),
        ("no-human-readable", F),
        ("no-h", F),
        ("dry-run", F),
        ("archive", F),
        ("recursive", F),
        ("no-recursive", F),
        ("no-r", F),
        ("inc-recursive", F),
        ("no-inc-recursive", F),
        ("i-r", F),
        ("no-i-r", F),
        ("dirs", F),
        ("no-dirs", F),
        ("no-d", F),
        ("old-dirs", F),
        ("old-d", F),
        ("perms", F),
        ("no-perms", F),
        ("no-p", F),
        ("executability", F),
        ("acls", F),
        ("no-acls", F),
        ("no-A", F),
        ("xattrs", F),
        ("no-xattrs", F),
        ("no-X", F),
        ("times", F),
        ("no-times", F),
        ("no-t", F),
        ("atimes", F),
        ("no-atimes", F),
        ("no-U", F),
        ("open-noatime", F),
        ("no-open-noatime", F),
        ("crtimes", F),
        ("no-crtimes", F),
        ("no-N", F),
        ("omit-dir-times", F),
        ("no-omit-dir-times", F),
        ("no-O", F),
        ("omit-link-times", F),
        ("no-omit-link-times", F),
        ("no-J", F),
        ("modify-window", V),
        ("super", F),
        ("no-super", F),
        ("fake-super", F),
        ("owner", F),
        ("no-owner", F),
        ("no-o", F),
        ("group", F),
        ("no-group", F),
        ("no-g", F),
        ("no-D", F),
        ("devices", F),
        ("no-devices", F),
        ("copy-devices", F),
        ("write-devices", F),
        ("no-write-devices", F),
        ("specials", F),
        ("no-specials", F),
        ("drop-D", F),
        ("no-drop-D", F),
        ("confine-root", V),
        ("links", F),
        ("no-links", F),
        ("no-l", F),
        ("copy-links", F),
        ("copy-unsafe-links", F),
        ("safe-links", F),
        ("insecure-links", F),
        ("no-insecure-links", F),
        ("munge-links", F),
        ("no-munge-links", F),
        ("copy-dirlinks", F),
        ("keep-dirlinks", F),
        ("hard-links", F),
        ("no-hard-links", F),
        ("no-H", F),
        ("relative", F),
        ("no-relative", F),
        ("no-R", F),
        ("implied-dirs", F),
        ("no-implied-dirs", F),
        ("i-d", F),
        ("no-i-d", F),
        ("chmod", V),
        ("ignore-times", F),
        ("size-only", F),
        ("one-file-system", F),
        ("no-one-file-system", F),
        ("no-x", F),
        ("update", F),
        ("existing", F),
        ("ignore-non-existing", F),
        ("ignore-existing", F),
        ("max-size", V),
        ("min-size", V),
        ("max-alloc", V),
        ("sparse", F),
        ("no-sparse", F),
        ("no-S", F),
        ("preallocate", F),
        ("inplace", F),
        ("no-inplace", F),
        ("append", F),
        ("append-verify", F),
        ("no-append", F),
        ("del", F),
        ("delete", F),
        ("delete-before", F),
        ("delete-during", F),
        ("delete-delay", F),
        ("delete-after", F),
        ("delete-excluded", F),
        ("delete-missing-args", F),
        ("ignore-missing-args", F),
        ("remove-sent-files", F),
        ("remove-source-files", F),
        ("force", F),
        ("no-force", F),
        ("ignore-errors", F),
        ("no-ignore-errors", F),
        ("max-delete", V),
        ("filter", V),
        ("exclude", V),
        ("include", V),
        ("exclude-from", V),
        ("include-from", V),
        ("cvs-exclude", F),
        ("whole-file", F),
        ("no-whole-file", F),
        ("no-W", F),
        ("checksum", F),
        ("no-checksum", F),
        ("no-c", F),
        ("checksum-choice", V),
        ("cc", V),
        ("block-size", V),
        ("compare-dest", V),
        ("copy-dest", V),
        ("link-dest", V),
        ("fuzzy", F),
        ("no-fuzzy", F),
        ("no-y", F),
        ("compress", F),
        ("old-compress", F),
        ("new-compress", F),
        ("no-compress", F),
        ("no-z", F),
        ("compress-choice", V),
        ("zc", V),
        ("skip-compress", V),
        ("compress-level", V),
        ("zl", V),
        ("compress-threads", V),
        ("zt", V),
        ("progress", F),
        ("no-progress", F),
        ("partial", F),
        ("no-partial", F),
        ("partial-dir", V),
        ("delay-updates", F),
        ("no-delay-updates", F),
        ("prune-empty-dirs", F),
        ("no-prune-empty-dirs", F),
        ("no-m", F),
        ("log-file", V),
        ("log-file-format", V),
        ("out-format", V),
        ("log-format", V),
        ("itemize-changes", F),
        ("no-itemize-changes", F),
        ("no-i", F),
        ("bwlimit", V),
        ("no-bwlimit", F),
        ("backup", F),
        ("no-backup", F),
        ("backup-dir", V),
        ("suffix", V),
        ("list-only", F),
        ("read-batch", V),
        ("write-batch", V),
        ("only-write-batch", V),
        ("files-from", V),
        ("from0", F),
        ("no-from0", F),
        ("old-args", F),
        ("no-old-args", F),
        ("secluded-args", F),
        ("no-secluded-args", F),
        ("protect-args", F),
        ("no-protect-args", F),
        ("no-s", F),
        ("trust-sender", F),
        ("numeric-ids", F),
        ("no-numeric-ids", F),
        ("usermap", V),
        ("groupmap", V),
        ("chown", V),
        ("timeout", V),
        ("no-timeout", F),
        ("contimeout", V),
        ("no-contimeout", F),
        ("fsync", F),
        ("stop-after", V),
        ("time-limit", V),
        ("stop-at", V),
        ("rsh", V),
        ("rsync-path", V),
        ("temp-dir", V),
        ("iconv", V),
        ("no-iconv", F),
        ("ipv4", F),
        ("ipv6", F),
        ("8-bit-output", F),
        ("no-8-bit-output", F),
        ("no-8", F),
        ("mkpath", F),
        ("no-mkpath", F),
        ("qsort", F),
        ("use-qsort", F),
        ("copy-as", V),
        ("address", V),
        ("port", V),
        ("sockopts", V),
        ("password-file", V),
        ("early-input", V),
        ("blocking-io", F),
        ("no-blocking-io", F),
        ("outbuf", V),
        ("remote-option", V),
        ("protocol", V),
        ("checksum-seed", V),
        ("server", F),
        ("sender", F),
        ("config", V),
        ("daemon", F),
        ("dparam", V),
        ("detach", F),
        ("no-detach", F),
    ]
};

/// Short options and the long option each stands for.
const SHORT: &[(u8, &str)] = &[
    (b'V', "version"),
    (b'v', "verbose"),
    (b'q', "quiet"),
    (b'h', "human-readable"),
    (b'n', "dry-run"),
    (b'a', "archive"),
    (b'r', "recursive"),
    (b'd', "dirs"),
    (b'p', "perms"),
    (b'E', "executability"),
    (b'A', "acls"),
    (b'X', "xattrs"),
    (b't', "times"),
    (b'U', "atimes"),
    (b'N', "crtimes"),
    (b'O', "omit-dir-times"),
    (b'J', "omit-link-times"),
    (b'@', "modify-window"),
    (b'o', "owner"),
    (b'g', "group"),
    (b'D', "devices+specials"),
    (b'l', "links"),
    (b'L', "copy-links"),
    (b'k', "copy-dirlinks"),
    (b'K', "keep-dirlinks"),
    (b'H', "hard-links"),
    (b'R', "relative"),
    (b'I', "ignore-times"),
    (b'x', "one-file-system"),
    (b'u', "update"),
    (b'S', "sparse"),
    (b'f', "filter"),
    (b'C', "cvs-exclude"),
    (b'W', "whole-file"),
    (b'c', "checksum"),
    (b'B', "block-size"),
    (b'y', "fuzzy"),
    (b'z', "compress"),
    (b'P', "partial+progress"),
    (b'm', "prune-empty-dirs"),
    (b'i', "itemize-changes"),
    (b'b', "backup"),
    (b'0', "from0"),
    (b's', "secluded-args"),
    (b'e', "rsh"),
    (b'T', "temp-dir"),
    (b'4', "ipv4"),
    (b'6', "ipv6"),
    (b'8', "8-bit-output"),
    (b'M', "remote-option"),
    (b'F', "filter-shortcut"),
];

/// The short-only options: `-D`, `-P` and `-F` have no long name of their
/// own in rsync, so they go by these internal ones.
const SHORT_ONLY: [&str; 3] = ["devices+specials", "partial+progress", "filter-shortcut"];

/// The option's position in [`catalogue`] order, its name as the tables
/// spell it, and whether it takes a value.
fn lookup(name: &str) -> Option<(usize, &'static str, Arity)> {
    if let Some(at) = LONG.iter().position(|(n, _)| *n == name) {
        return Some((at, LONG[at].0, LONG[at].1));
    }
    let at = SHORT_ONLY.iter().position(|n| *n == name)?;
    Some((LONG.len() + at, SHORT_ONLY[at], Arity::Flag))
}

/// [`lookup`] of short option `c`, from a table made once: clients may send
/// megabytes of short options, so each costs an index, not a search.
fn short_option(c: u8) -> Option<(usize, &'static str, Arity)> {
    type Entry = Option<(usize, &'static str, Arity)>;
    static BY_LETTER: OnceLock<[Entry; 256]> = OnceLock::new();
    BY_LETTER.get_or_init(|| {
        let mut table: [Entry; 256] = [None; 256];
        for (letter, name) in SHORT {
            table[usize::from(*letter)] = lookup(name);
        }
        table
    })[usize::from(c)]
}

/// Every option a client can send, as `(id, long name, short letter)`: the
/// id is the long name, or for `-D`, `-P` and `-F` the internal name.
pub fn catalogue() -> impl Iterator<Item = (&'static str, Option<&'static str>, Option<u8>)> {
    let short_of = |name: &str| SHORT.iter().find(|(_, n)| *n == name).map(|(c, _)| *c);
    LONG.iter()
        .map(move |(name, _)| (*name, Some(*name), short_of(name)))
        .chain(SHORT_ONLY.iter().map(move |id| (*id, None, short_of(id))))
}

/// One digest name of `--checksum-choice=VALUE`, as rsync 3.x spells it;
/// an unknown one gets rsyncd's message.
fn parse_sum_kind(name: &[u8]) -> Result<SumKind, OptionError> {
    SumKind::from_name(name)
        .ok_or_else(|| OptionError(format!("unknown checksum name: {}", lossy(name))))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &[u8]) -> Result<T, OptionError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            OptionError(format!(
                "--{name}: invalid numeric value \"{}\"",
                lossy(value)
            ))
        })
}

/// The largest `--max-size`/`--min-size` accepted (rsync's SIZE_MAX / 2).
const MAX_SIZE_ARG: f64 = i64::MAX as f64;

/// rsync's size syntax for --max-size/--min-size: a number with an optional
/// K/M/G/T suffix (1024-based, or 1000-based with "B"), and an optional +1/-1.
fn parse_size_arg(name: &str, value: &[u8]) -> Result<u64, OptionError> {
    let text = std::str::from_utf8(value).unwrap_or("");
    let bad = || OptionError(format!("--{name}: invalid size \"{}\"", lossy(value)));
    let (body, adjust) = match text.rsplit_once(['+', '-']) {
        Some((b, "1")) if !b.is_empty() => (b, if text.contains('+') { 1i64 } else { -1 }),
        _ => (text, 0),
    };
    let digits_end = body
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(digits_end);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let lower = suffix.to_ascii_lowercase();
    // By characters, not bytes: the suffix may start with a multi-byte one.
    let mut chars = lower.chars();
    let unit = chars.next();
    let rest = chars.as_str();
    let base: f64 = if rest.starts_with('b') && !rest.starts_with("ib") {
        1000.0
    } else {
        1024.0
    };
    let mult = match unit {
        None | Some('b') => 1.0,
        Some('k') => base,
        Some('m') => base * base,
        Some('g') => base * base * base,
        Some('t') => base.powi(4),
        Some('p') => base.powi(5),
        _ => return Err(bad()),
    };
    let scaled = num * mult;
    // As rsync: a size beyond what the sender could ever count is an error,
    // not a value clamped to some maximum.
    if !(0.0..MAX_SIZE_ARG).contains(&scaled) {
        return Err(bad());
    }
    let bytes = (scaled as i64).checked_add(adjust).ok_or_else(bad)?;
    u64::try_from(bytes).map_err(|_| bad())
}

impl Options {
    /// Parses the server's argument list (everything the client sent, in order).
    /// Applies what the module imposes, as rsyncd sets its own options
    /// after parsing the client's.
    pub fn impose(&mut self, imposed: ModuleImposed) {
        self.ignore_errors |= imposed.ignore_errors;
        self.names_withheld = imposed.numeric_ids;
        self.skip_unreadable = imposed.ignore_nonreadable;
    }

    pub fn parse(args: &[Vec<u8>]) -> Result<Options, OptionError> {
        let mut o = Options {
            implied_dirs: true,
            ..Options::default()
        };
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg.as_slice() == b"." {
                o.paths = args[i..].to_vec();
                break;
            }
            if let Some(long) = arg.strip_prefix(b"--") {
                let (name, inline) = match long.iter().position(|&b| b == b'=') {
                    Some(eq) => (&long[..eq], Some(&long[eq + 1..])),
                    None => (long, None),
                };
                let name = std::str::from_utf8(name)
                    .map_err(|_| OptionError(format!("--{}: unknown option", lossy(name))))?;
                let Some((id, name, arity)) = lookup(name) else {
                    return Err(OptionError(format!("--{name}: unknown option")));
                };
                o.note_given(id, name);
                let value = match (arity, inline) {
                    (Arity::Flag, Some(_)) => {
                        return Err(OptionError(format!(
                            "--{name}: option does not take an argument"
                        )))
                    }
                    (Arity::Flag, None) => None,
                    (Arity::Value, Some(v)) => Some(v),
                    (Arity::Value, None) => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| OptionError(format!("--{name}: missing argument")))?;
                        i += 1;
                        Some(v.as_slice())
                    }
                };
                o.apply(name, value)?;
            } else if arg.len() > 1 && arg[0] == b'-' {
                let mut j = 1;
                while j < arg.len() {
                    let c = arg[j];
                    j += 1;
                    let (id, name, arity) = short_option(c)
                        .ok_or_else(|| OptionError(format!("-{}: unknown option", c as char)))?;
                    o.note_given(id, name);
                    if arity == Arity::Value {
                        let value = if j < arg.len() {
                            let v = &arg[j..];
                            j = arg.len();
                            v
                        } else {
                            let v = args.get(i).ok_or_else(|| {
                                OptionError(format!("-{}: missing argument", c as char))
                            })?;
                            i += 1;
                            v.as_slice()
                        };
                        o.apply(name, Some(value))?;
                    } else {
                        o.apply(name, None)?;
                    }
                }
            } else if o.protect_args {
                // With -s a protocol-29 client prints its argument list
                // with a NULL in it ("(null)" from printf) and sends the
                // real paths again, NUL-separated: see
                // [`Options::set_protected_paths`].
                break;
            } else {
                return Err(OptionError(format!(
                    "unexpected argument \"{}\" before the source paths",
                    lossy(arg)
                )));
            }
        }
        if !o.server {
            return Err(OptionError("missing --server".into()));
        }
        // As rsync's parse_arguments: a file list or a listing without
        // recursion still sends the directories it names.
        if (o.list_only && !o.recurse) || o.files_from.is_some() {
            o.dirs = true;
        }
        Ok(o)
    }

    /// With `-s` (`--secluded-args`) the paths arrive a second time as
    /// `rsync`, `.`, then the paths, each ended by a NUL (rsync's
    /// send_protected_args); they replace whatever the first list held.
    pub fn set_protected_paths(&mut self, args: &[Vec<u8>]) {
        self.paths = match args.iter().position(|a| a.as_slice() == b".") {
            Some(dot) => args[dot + 1..].to_vec(),
            None => Vec::new(),
        };
    }

    /// Records option `id` (its [`catalogue`] position) in `given` the
    /// first time it comes; a client may repeat options millions of times.
    fn note_given(&mut self, id: usize, name: &'static str) {
        let (word, bit) = (id / 64, 1u64 << (id % 64));
        if self.given_seen.len() <= word {
            self.given_seen.resize(word + 1, 0);
        }
        if self.given_seen[word] & bit == 0 {
            self.given_seen[word] |= bit;
            self.given.push(name);
        }
    }

    fn apply(&mut self, name: &'static str, value: Option<&[u8]>) -> Result<(), OptionError> {
        let v = value.unwrap_or(b"");
        match name {
            "server" => self.server = true,
            "sender" => self.sender = true,
            "verbose" => self.verbose = self.verbose.saturating_add(1),
            "no-verbose" | "no-v" => self.verbose = 0,
            "dry-run" => self.dry_run = true,
            "archive" => {
                self.recurse = true;
                self.links = true;
                self.perms = true;
                self.times = true;
                self.group = true;
                self.owner = true;
                self.devices = true;
                self.specials = true;
            }
            "recursive" => self.recurse = true,
            "no-recursive" | "no-r" => self.recurse = false,
            "dirs" | "old-dirs" | "old-d" => self.dirs = true,
            "no-dirs" | "no-d" => self.dirs = false,
            "list-only" => self.list_only = true,
            "links" => self.links = true,
            "no-links" | "no-l" => self.links = false,
            "copy-links" => self.copy_links = true,
            "copy-dirlinks" => self.copy_dirlinks = true,
            "copy-unsafe-links" => self.copy_unsafe_links = true,
            "safe-links" => self.safe_links = true,
            "hard-links" => self.hard_links = true,
            "no-hard-links" | "no-H" => self.hard_links = false,
            "perms" => self.perms = true,
            "no-perms" | "no-p" => self.perms = false,
            "executability" => self.executability = true,
            "owner" => self.owner = true,
            "no-owner" | "no-o" => self.owner = false,
            "group" => self.group = true,
            "no-group" | "no-g" => self.group = false,
            "devices+specials" => {
                self.devices = true;
                self.specials = true;
            }
            "devices" => self.devices = true,
            "no-devices" => self.devices = false,
            "specials" => self.specials = true,
            "no-specials" => self.specials = false,
            "no-D" => {
                self.devices = false;
                self.specials = false;
            }
            "times" => self.times = true,
            "no-times" | "no-t" => self.times = false,
            "checksum" => self.checksum = true,
            "no-checksum" | "no-c" => self.checksum = false,
            "cvs-exclude" => self.cvs_exclude = true,
            "ignore-times" => self.ignore_times = true,
            "relative" => self.relative = true,
            "no-relative" | "no-R" => self.relative = false,
            "implied-dirs" | "i-d" => self.implied_dirs = true,
            "no-implied-dirs" | "no-i-d" => self.implied_dirs = false,
            "one-file-system" => self.one_file_system = self.one_file_system.saturating_add(1),
            "no-one-file-system" | "no-x" => self.one_file_system = 0,
            "whole-file" => self.whole_file = true,
            "no-whole-file" | "no-W" => self.whole_file = false,
            "numeric-ids" => self.numeric_ids = true,
            "no-numeric-ids" => self.numeric_ids = false,
            "ignore-errors" => self.ignore_errors = true,
            "no-ignore-errors" => self.ignore_errors = false,
            "compress" => {
                self.compression = match self.compression {
                    Compression::None => Compression::Zlib,
                    _ => Compression::ZlibX,
                }
            }
            "old-compress" => self.compression = Compression::Zlib,
            "new-compress" => self.compression = Compression::ZlibX,
            "no-compress" | "no-z" => self.compression = Compression::None,
            "compress-level" | "zl" => self.compress_level = Some(parse_number(name, v)?),
            "compress-choice" | "zc" => match v {
                b"zlib" => self.compression = Compression::Zlib,
                b"zlibx" => self.compression = Compression::ZlibX,
                b"zstd" => self.compression = Compression::Zstd,
                b"lz4" => self.compression = Compression::Lz4,
                b"none" => self.compression = Compression::None,
                _ => return Err(OptionError(format!("unknown compress name: {}", lossy(v)))),
            },
            "checksum-choice" | "cc" => {
                let (xfer, file) = match v.iter().position(|&b| b == b',') {
                    Some(comma) => (&v[..comma], &v[comma + 1..]),
                    None => (v, v),
                };
                self.xfer_sum = parse_sum_kind(xfer)?;
                self.file_sum = parse_sum_kind(file)?;
            }
            "block-size" => {
                let n: u32 = parse_number(name, v)?;
                self.block_size = (n > 0).then_some(n);
            }
            "timeout" => {
                let n: u32 = parse_number(name, v)?;
                self.timeout = (n > 0).then_some(n);
            }
            "no-timeout" => self.timeout = None,
            "checksum-seed" => {
                let n: i64 = parse_number(name, v)?;
                self.checksum_seed = Some(n as u32);
            }
            "inplace" => self.inplace = true,
            "no-inplace" => self.inplace = false,
            "append" => self.append = (self.append + 1).min(2),
            "append-verify" => self.append = 2,
            "no-append" => self.append = 0,
            "secluded-args" | "protect-args" => self.protect_args = true,
            "no-secluded-args" | "no-protect-args" | "no-s" => self.protect_args = false,
            "files-from" => self.files_from = Some(v.to_vec()),
            "from0" => self.from0 = true,
            "no-from0" => self.from0 = false,
            "ignore-missing-args" => self.missing_args = MissingArgs::Ignore,
            "delete-missing-args" => self.missing_args = MissingArgs::Delete,
            "prune-empty-dirs" => self.prune_empty_dirs = true,
            "no-prune-empty-dirs" | "no-m" => self.prune_empty_dirs = false,
            "max-size" => self.max_size = Some(parse_size_arg(name, v)?),
            "min-size" => self.min_size = Some(parse_size_arg(name, v)?),
            "remove-source-files" | "remove-sent-files" => {
                return Err(OptionError(format!(
                    "ERROR: --{name} cannot be used with a read-only module"
                )))
            }
            "acls" | "xattrs" => {
                return Err(OptionError(format!(
                    "--{name} requires protocol 30 or higher (negotiated 29)."
                )))
            }
            "filter" | "exclude" | "include" | "exclude-from" | "include-from"
            | "filter-shortcut" | "usermap" | "groupmap" | "chown" | "only-write-batch"
            | "write-batch" | "read-batch" | "daemon" | "config" | "fake-super" | "crtimes"
            | "atimes" | "chmod" | "early-input" => {
                return Err(OptionError(format!(
                    "--{name}: not supported by this server"
                )))
            }
            // Options that only concern the receiving side, the client side,
            // or the transport: a sender has nothing to do for them.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptionError> {
        let v: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        Options::parse(&v)
    }

    #[test]
    fn every_short_option_has_a_table_entry() {
        for (c, name) in SHORT {
            assert!(lookup(name).is_some(), "-{} ({name})", *c as char);
            assert_eq!(short_option(*c).map(|(_, n, _)| n), Some(*name));
        }
    }

    #[test]
    fn typical_pull_arguments() {
        let o = parse(&[
            "--server",
            "--sender",
            "-vlogDtpre.iLsfxC",
            "--numeric-ids",
            ".",
            "mod/dir/",
        ])
        .unwrap();
        assert!(o.sender && o.recurse && o.links && o.owner && o.group);
        assert!(o.devices && o.specials && o.times && o.perms && o.numeric_ids);
        assert_eq!(o.verbose, 1);
        assert_eq!(o.paths, vec![b"mod/dir/".to_vec()]);
    }

    #[test]
    fn values_inline_attached_and_separate() {
        let o = parse(&[
            "--server",
            "--sender",
            "-B1024",
            "--timeout=30",
            "--checksum-seed",
            "7",
            ".",
            "m/",
        ])
        .unwrap();
        assert_eq!(o.block_size, Some(1024));
        assert_eq!(o.timeout, Some(30));
        assert_eq!(o.checksum_seed, Some(7));
    }

    #[test]
    fn append_twice_means_verify() {
        let o = parse(&["--server", "--sender", "--append", "--append", ".", "m/"]).unwrap();
        assert_eq!(o.append, 2);
    }

    #[test]
    fn compression_levels() {
        assert_eq!(
            parse(&["--server", "-z", ".", "m"]).unwrap().compression,
            Compression::Zlib
        );
        assert_eq!(
            parse(&["--server", "-zz", ".", "m"]).unwrap().compression,
            Compression::ZlibX
        );
        assert_eq!(
            parse(&["--server", "-z", "--new-compress", ".", "m"])
                .unwrap()
                .compression,
            Compression::ZlibX
        );
    }

    #[test]
    fn unknown_and_refused_options_name_themselves() {
        assert!(parse(&["--server", "--bogus", ".", "m"])
            .unwrap_err()
            .0
            .contains("--bogus"));
        assert!(parse(&["--server", "-Q", ".", "m"])
            .unwrap_err()
            .0
            .contains("-Q"));
        assert!(
            parse(&["--server", "--sender", "--remove-source-files", ".", "m"])
                .unwrap_err()
                .0
                .contains("remove-source-files")
        );
        assert!(parse(&["--server", "--timeout", "abc", ".", "m"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_arg("max-size", b"100").unwrap(), 100);
        assert_eq!(parse_size_arg("max-size", b"1k").unwrap(), 1024);
        assert_eq!(parse_size_arg("max-size", b"1kb").unwrap(), 1000);
        assert_eq!(parse_size_arg("max-size", b"2M").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size_arg("max-size", b"1k-1").unwrap(), 1023);
        // Found by fuzzing: a multi-byte suffix, and sizes past 2^63.
        assert!(parse_size_arg("max-size", "1\u{3db}".as_bytes()).is_err());
        assert!(parse_size_arg("max-size", b"99999999999999999999p+1").is_err());
        assert!(parse_size_arg("max-size", b"8388608t").is_err());
        assert_eq!(
            parse_size_arg("max-size", b"8388607t").unwrap(),
            8_388_607 << 40
        );
        assert!(parse_size_arg("max-size", b"1q").is_err());
    }

    #[test]
    fn missing_server_is_an_error() {
        assert!(parse(&["--sender", ".", "m"]).is_err());
    }
}
