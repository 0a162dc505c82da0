//! The arguments a client sends after `@RSYNCD: OK`, parsed into the options
//! that matter to a sender (rsync: options.c server_options builds them on
//! the client, rsync: options.c parse_arguments reads them on the server).
//!
//! Every option rsync knows is a row of [`OPTIONS`]: its name, letter,
//! whether it takes a value, and its [`Effect`], so that a client never gets
//! a silent difference: options that change what a sender does are applied
//! or refused with a message naming them; options that only concern the
//! receiving side are accepted and ignored, as rsyncd's sender ignores them.
//! The rows also carry what a module's `refuse options` match against; the
//! daemon decides what it refuses.

use crate::delta::SumKind;
use std::fmt;

/// Most arguments a client may send (rsyncd's limit, MAX_ARGS * 16 in
/// rsync: io.c read_args, is far more; no stock client sends more than a few
/// dozen options plus its paths).
pub(crate) const MAX_ARGS: usize = 4096;
/// Longest single argument (rsync's BIGPATHBUFLEN, the line buffer of
/// rsync: clientserver.c rsync_module, is 4096 + 1024).
pub(crate) const MAX_ARG_LEN: usize = 5 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Compression {
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
    pub(crate) server: bool,
    pub(crate) sender: bool,
    pub(crate) verbose: u8,
    pub(crate) dry_run: bool,
    pub(crate) recurse: bool,
    pub(crate) dirs: bool,
    pub(crate) list_only: bool,
    pub(crate) links: bool,
    pub(crate) copy_links: bool,
    pub(crate) copy_dirlinks: bool,
    pub(crate) copy_unsafe_links: bool,
    pub(crate) safe_links: bool,
    pub(crate) hard_links: bool,
    pub(crate) perms: bool,
    pub(crate) executability: bool,
    pub(crate) owner: bool,
    pub(crate) group: bool,
    pub(crate) devices: bool,
    pub(crate) specials: bool,
    pub(crate) times: bool,
    /// `-A` and `-X`: asked for, never served (see [`Options::check_protocol`]).
    pub(crate) acls: bool,
    pub(crate) xattrs: bool,
    /// `-U`: access times of non-directories go in the file list.
    pub(crate) atimes: bool,
    pub(crate) checksum: bool,
    pub(crate) cvs_exclude: bool,
    pub(crate) ignore_times: bool,
    pub relative: bool,
    /// `--qsort`: the client sorts with qsort, which rules out incremental
    /// recursion (rsync: compat.c set_allow_inc_recurse).
    pub(crate) qsort: bool,
    pub(crate) implied_dirs: bool,
    pub(crate) one_file_system: u8,
    pub(crate) whole_file: bool,
    pub(crate) numeric_ids: bool,
    pub(crate) ignore_errors: bool,
    pub(crate) compression: Compression,
    /// The compressor was named (`--compress-choice`, `--old-compress`,
    /// `--new-compress`, `-zz`): from protocol 30 on, only a plain `-z` (or
    /// a level alone) is negotiated.
    pub(crate) compress_named: bool,
    pub(crate) compress_level: Option<i32>,
    /// The client's capability letters, the value of its `-e` argument
    /// (`.LsfxCIvu`; rsync: compat.c setup_protocol reads them).
    pub(crate) client_info: Vec<u8>,
    pub(crate) block_size: Option<u32>,
    pub(crate) timeout: Option<u32>,
    pub(crate) checksum_seed: Option<u32>,
    /// `--checksum-choice`: the digest of block and whole-file sums, and
    /// that of `-c` file checksums (`X,Y` names them apart).
    pub(crate) xfer_sum: SumKind,
    pub(crate) file_sum: SumKind,
    /// The module's `numeric ids`: no names in the id lists.
    pub(crate) names_withheld: bool,
    /// The module's `ignore nonreadable`: what upserv cannot read is left
    /// out of the file list.
    pub(crate) skip_unreadable: bool,
    /// Every option the client sent, once each, in the order first sent:
    /// what a module's `refuse options` look at.
    pub(crate) given: Vec<&'static ClientOption>,
    /// Which rows of [`OPTIONS`] `given` holds, one bit each.
    given_seen: Vec<u64>,
    pub(crate) inplace: bool,
    /// 0, 1 for `--append`, 2 for `--append-verify` (sent as `--append --append`).
    pub(crate) append: u8,
    pub(crate) protect_args: bool,
    /// `--files-from`: `-` for names sent over the connection, else a file
    /// in the module.
    pub(crate) files_from: Option<Vec<u8>>,
    pub(crate) from0: bool,
    pub(crate) missing_args: MissingArgs,
    pub(crate) prune_empty_dirs: bool,
    pub max_size: Option<u64>,
    pub(crate) min_size: Option<u64>,
    /// `--bwlimit`: what the sender may write, in bytes per second
    /// (whole KiB, as rsync rounds it); `None` is unlimited.
    pub(crate) bwlimit: Option<u64>,
    /// The source paths, after the `.` that ends the options.
    pub paths: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum MissingArgs {
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

/// How an option takes its value (rsync's popt `argInfo`): none, or one it
/// requires, given as `--name=VALUE`, `--name VALUE`, `-xVALUE` or
/// `-x VALUE`. rsync has no option whose value is optional, so neither has
/// this table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    None,
    Required,
}

/// A `bool` field of [`Options`] that an option sets or clears.
type Flag = fn(&mut Options) -> &mut bool;
/// A counter of [`Options`]: repeating the option counts up (`-vv`).
type Counter = fn(&mut Options) -> &mut u8;
/// Reads an option's value (the option's name is for the error message).
type Reader = fn(&mut Options, &'static str, &[u8]) -> Result<(), OptionError>;

/// What an option does to the [`Options`] a sender works from.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// Nothing: it concerns only the receiving side, the client or the
    /// transport, and rsyncd's sender ignores it too.
    Ignore,
    On(Flag),
    Off(Flag),
    /// One more, saturating.
    Count(Counter),
    Zero(Counter),
    /// Changes more than one field, or a field that is not a flag.
    Run(fn(&mut Options)),
    Read(Reader),
    /// An option upserv cannot honour: the client is told why.
    Reject(Rejected),
}

/// Why an option is turned away, whatever the module allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rejected {
    /// It would delete files on the server, and every module is read-only.
    ReadOnly,
    /// upserv does not implement it.
    Unsupported,
    /// rsyncd on Linux is built without it (`--crtimes`: Linux has no
    /// settable creation times) and refuses it as if configured to.
    NotBuilt,
}

impl Rejected {
    fn error(self, option: &ClientOption) -> OptionError {
        let name = option.name;
        OptionError(match self {
            Rejected::ReadOnly => format!("ERROR: --{name} cannot be used with a read-only module"),
            Rejected::Unsupported => format!("--{name}: not supported by this server"),
            Rejected::NotBuilt => return option.refusal(),
        })
    }
}

/// One option a client may send: a row of [`OPTIONS`].
#[derive(Debug)]
pub(crate) struct ClientOption {
    /// The long name; for `-D`, `-P` and `-F`, which rsync has only as
    /// letters, a name of upserv's own (see [`ClientOption::long`]).
    pub(crate) name: &'static str,
    pub(crate) letter: Option<u8>,
    pub(crate) arg: Arg,
    effect: Effect,
    /// Wildcard `refuse options` rules pass it by; only a rule naming it
    /// exactly refuses it (rsync: options.c set_refuse_options marks these
    /// `a=`).
    pub(crate) exact_only: bool,
    letter_only: bool,
}

impl ClientOption {
    /// The name rsync knows the option by, if it has one besides its letter.
    /// rsyncd's words for a refused option: `--name (-c)`; the letter-only
    /// options have no long name, which the printf of rsync: options.c
    /// create_refuse_error shows as `(null)`.
    pub(crate) fn refusal(&self) -> OptionError {
        let mut text = format!(
            "The server is configured to refuse --{}",
            self.long().unwrap_or("(null)")
        );
        if let Some(c) = self.letter {
            text.push_str(&format!(" (-{})", c as char));
        }
        OptionError(text)
    }

    pub(crate) fn long(&self) -> Option<&'static str> {
        (!self.letter_only).then_some(self.name)
    }

    const fn short(mut self, letter: u8) -> ClientOption {
        self.letter = Some(letter);
        self
    }

    const fn exact(mut self) -> ClientOption {
        self.exact_only = true;
        self
    }

    const fn letter_only(mut self) -> ClientOption {
        self.letter_only = true;
        self
    }
}

/// A row for an option without a value.
const fn flag(name: &'static str, effect: Effect) -> ClientOption {
    ClientOption {
        name,
        letter: None,
        arg: Arg::None,
        effect,
        exact_only: false,
        letter_only: false,
    }
}

/// A row for an option that requires a value.
const fn value(name: &'static str, effect: Effect) -> ClientOption {
    ClientOption {
        arg: Arg::Required,
        ..flag(name, effect)
    }
}

/// Every option of rsync 3.x, grouped about as rsync's own table (rsync:
/// rsync: options.c long_options) groups them, the letter-only ones last; the
/// order has no meaning. An option of a later protocol is one more row, or a
/// row whose effect changes.
pub(crate) static OPTIONS: &[ClientOption] = {
    use Effect::{Count, Ignore, Off, On, Read, Reject, Run, Zero};
    &[
        flag("help", Ignore),
        flag("version", Ignore).short(b'V'),
        flag("verbose", Count(|o| &mut o.verbose)).short(b'v'),
        flag("no-verbose", Zero(|o| &mut o.verbose)),
        flag("no-v", Zero(|o| &mut o.verbose)),
        value("info", Ignore),
        value("debug", Ignore),
        value("stderr", Ignore),
        flag("msgs2stderr", Ignore),
        flag("no-msgs2stderr", Ignore),
        flag("quiet", Ignore).short(b'q'),
        flag("motd", Ignore),
        flag("no-motd", Ignore),
        flag("stats", Ignore),
        flag("human-readable", Ignore).short(b'h'),
        flag("no-human-readable", Ignore),
        flag("no-h", Ignore),
        flag("dry-run", On(|o| &mut o.dry_run)).short(b'n').exact(),
        flag("archive", Run(archive)).short(b'a'),
        flag("recursive", On(|o| &mut o.recurse)).short(b'r'),
        flag("no-recursive", Off(|o| &mut o.recurse)),
        flag("no-r", Off(|o| &mut o.recurse)),
        flag("inc-recursive", Ignore),
        flag("no-inc-recursive", Ignore),
        flag("i-r", Ignore),
        flag("no-i-r", Ignore),
        flag("dirs", On(|o| &mut o.dirs)).short(b'd'),
        flag("no-dirs", Off(|o| &mut o.dirs)),
        flag("no-d", Off(|o| &mut o.dirs)),
        flag("old-dirs", On(|o| &mut o.dirs)),
        flag("old-d", On(|o| &mut o.dirs)),
        flag("perms", On(|o| &mut o.perms)).short(b'p'),
        flag("no-perms", Off(|o| &mut o.perms)),
        flag("no-p", Off(|o| &mut o.perms)),
        flag("executability", On(|o| &mut o.executability)).short(b'E'),
        flag("acls", On(|o| &mut o.acls)).short(b'A'),
        flag("no-acls", Off(|o| &mut o.acls)),
        flag("no-A", Ignore),
        flag("xattrs", On(|o| &mut o.xattrs)).short(b'X'),
        flag("no-xattrs", Off(|o| &mut o.xattrs)),
        flag("no-X", Ignore),
        flag("times", On(|o| &mut o.times)).short(b't'),
        flag("no-times", Off(|o| &mut o.times)),
        flag("no-t", Off(|o| &mut o.times)),
        flag("atimes", On(|o| &mut o.atimes)).short(b'U'),
        flag("no-atimes", Off(|o| &mut o.atimes)),
        flag("no-U", Ignore),
        flag("open-noatime", Ignore),
        flag("no-open-noatime", Ignore),
        flag("crtimes", Reject(Rejected::NotBuilt)).short(b'N'),
        flag("no-crtimes", Ignore),
        flag("no-N", Ignore),
        flag("omit-dir-times", Ignore).short(b'O'),
        flag("no-omit-dir-times", Ignore),
        flag("no-O", Ignore),
        flag("omit-link-times", Ignore).short(b'J'),
        flag("no-omit-link-times", Ignore),
        flag("no-J", Ignore),
        value("modify-window", Ignore).short(b'@'),
        flag("super", Ignore),
        flag("no-super", Ignore),
        flag("fake-super", Reject(Rejected::Unsupported)),
        flag("owner", On(|o| &mut o.owner)).short(b'o'),
        flag("no-owner", Off(|o| &mut o.owner)),
        flag("no-o", Off(|o| &mut o.owner)),
        flag("group", On(|o| &mut o.group)).short(b'g'),
        flag("no-group", Off(|o| &mut o.group)),
        flag("no-g", Off(|o| &mut o.group)),
        flag("no-D", Run(|o| (o.devices, o.specials) = (false, false))),
        flag("devices", On(|o| &mut o.devices)),
        flag("no-devices", Off(|o| &mut o.devices)),
        flag("copy-devices", Ignore).exact(),
        flag("write-devices", Ignore).exact(),
        flag("no-write-devices", Ignore),
        flag("specials", On(|o| &mut o.specials)),
        flag("no-specials", Off(|o| &mut o.specials)),
        flag("drop-D", Ignore),
        flag("no-drop-D", Ignore),
        value("confine-root", Ignore),
        flag("links", On(|o| &mut o.links)).short(b'l'),
        flag("no-links", Off(|o| &mut o.links)),
        flag("no-l", Off(|o| &mut o.links)),
        flag("copy-links", On(|o| &mut o.copy_links)).short(b'L'),
        flag("copy-unsafe-links", On(|o| &mut o.copy_unsafe_links)),
        flag("safe-links", On(|o| &mut o.safe_links)),
        flag("insecure-links", Ignore),
        flag("no-insecure-links", Ignore),
        flag("munge-links", Ignore),
        flag("no-munge-links", Ignore),
        flag("copy-dirlinks", On(|o| &mut o.copy_dirlinks)).short(b'k'),
        flag("keep-dirlinks", Ignore).short(b'K'),
        flag("hard-links", On(|o| &mut o.hard_links)).short(b'H'),
        flag("no-hard-links", Off(|o| &mut o.hard_links)),
        flag("no-H", Off(|o| &mut o.hard_links)),
        flag("relative", On(|o| &mut o.relative)).short(b'R'),
        flag("no-relative", Off(|o| &mut o.relative)),
        flag("no-R", Off(|o| &mut o.relative)),
        flag("implied-dirs", On(|o| &mut o.implied_dirs)),
        flag("no-implied-dirs", Off(|o| &mut o.implied_dirs)),
        flag("i-d", On(|o| &mut o.implied_dirs)),
        flag("no-i-d", Off(|o| &mut o.implied_dirs)),
        value("chmod", Reject(Rejected::Unsupported)),
        flag("ignore-times", On(|o| &mut o.ignore_times)).short(b'I'),
        flag("size-only", Ignore),
        flag("one-file-system", Count(|o| &mut o.one_file_system)).short(b'x'),
        flag("no-one-file-system", Zero(|o| &mut o.one_file_system)),
        flag("no-x", Zero(|o| &mut o.one_file_system)),
        flag("update", Ignore).short(b'u'),
        flag("existing", Ignore),
        flag("ignore-non-existing", Ignore),
        flag("ignore-existing", Ignore),
        value("max-size", Read(max_size)),
        value("min-size", Read(min_size)),
        value("max-alloc", Ignore),
        flag("sparse", Ignore).short(b'S'),
        flag("no-sparse", Ignore),
        flag("no-S", Ignore),
        flag("preallocate", Ignore),
        flag("inplace", On(|o| &mut o.inplace)),
        flag("no-inplace", Off(|o| &mut o.inplace)),
        flag("append", Run(|o| o.append = (o.append + 1).min(2))),
        flag("append-verify", Run(|o| o.append = 2)),
        flag("no-append", Zero(|o| &mut o.append)),
        flag("del", Ignore),
        flag("delete", Ignore),
        flag("delete-before", Ignore),
        flag("delete-during", Ignore),
        flag("delete-delay", Ignore),
        flag("delete-after", Ignore),
        flag("delete-excluded", Ignore),
        flag(
            "delete-missing-args",
            Run(|o| o.missing_args = MissingArgs::Delete),
        ),
        flag(
            "ignore-missing-args",
            Run(|o| o.missing_args = MissingArgs::Ignore),
        ),
        flag("remove-sent-files", Reject(Rejected::ReadOnly)),
        flag("remove-source-files", Reject(Rejected::ReadOnly)),
        flag("force", Ignore),
        flag("no-force", Ignore),
        flag("ignore-errors", On(|o| &mut o.ignore_errors)),
        flag("no-ignore-errors", Off(|o| &mut o.ignore_errors)),
        value("max-delete", Ignore),
        value("filter", Reject(Rejected::Unsupported)).short(b'f'),
        value("exclude", Reject(Rejected::Unsupported)),
        value("include", Reject(Rejected::Unsupported)),
        value("exclude-from", Reject(Rejected::Unsupported)),
        value("include-from", Reject(Rejected::Unsupported)),
        flag("cvs-exclude", On(|o| &mut o.cvs_exclude)).short(b'C'),
        flag("whole-file", On(|o| &mut o.whole_file)).short(b'W'),
        flag("no-whole-file", Off(|o| &mut o.whole_file)),
        flag("no-W", Off(|o| &mut o.whole_file)),
        flag("checksum", On(|o| &mut o.checksum)).short(b'c'),
        flag("no-checksum", Off(|o| &mut o.checksum)),
        flag("no-c", Off(|o| &mut o.checksum)),
        value("checksum-choice", Read(checksum_choice)),
        value("cc", Read(checksum_choice)),
        value("block-size", Read(block_size)).short(b'B'),
        value("compare-dest", Ignore),
        value("copy-dest", Ignore),
        value("link-dest", Ignore),
        flag("fuzzy", Ignore).short(b'y'),
        flag("no-fuzzy", Ignore),
        flag("no-y", Ignore),
        flag("compress", Run(compress)).short(b'z'),
        flag(
            "old-compress",
            Run(|o| (o.compression, o.compress_named) = (Compression::Zlib, true)),
        ),
        flag(
            "new-compress",
            Run(|o| (o.compression, o.compress_named) = (Compression::ZlibX, true)),
        ),
        flag("no-compress", Run(|o| o.compression = Compression::None)),
        flag("no-z", Run(|o| o.compression = Compression::None)),
        value("compress-choice", Read(compress_choice)),
        value("zc", Read(compress_choice)),
        value("skip-compress", Ignore),
        value("compress-level", Read(compress_level)),
        value("zl", Read(compress_level)),
        value("compress-threads", Ignore),
        value("zt", Ignore),
        flag("progress", Ignore),
        flag("no-progress", Ignore),
        flag("partial", Ignore),
        flag("no-partial", Ignore),
        value("partial-dir", Ignore),
        flag("delay-updates", Ignore),
        flag("no-delay-updates", Ignore),
        flag("prune-empty-dirs", On(|o| &mut o.prune_empty_dirs)).short(b'm'),
        flag("no-prune-empty-dirs", Off(|o| &mut o.prune_empty_dirs)),
        flag("no-m", Off(|o| &mut o.prune_empty_dirs)),
        value("log-file", Ignore),
        value("log-file-format", Ignore),
        value("out-format", Ignore),
        value("log-format", Ignore).exact(),
        flag("itemize-changes", Ignore).short(b'i'),
        flag("no-itemize-changes", Ignore),
        flag("no-i", Ignore),
        value("bwlimit", Read(bwlimit)),
        flag("no-bwlimit", Run(|o| o.bwlimit = None)),
        flag("backup", Ignore).short(b'b'),
        flag("no-backup", Ignore),
        value("backup-dir", Ignore),
        value("suffix", Ignore),
        flag("list-only", On(|o| &mut o.list_only)),
        value("read-batch", Reject(Rejected::Unsupported)),
        value("write-batch", Reject(Rejected::Unsupported)),
        value("only-write-batch", Reject(Rejected::Unsupported)),
        value("files-from", Read(files_from)),
        flag("from0", On(|o| &mut o.from0)).short(b'0').exact(),
        flag("no-from0", Off(|o| &mut o.from0)),
        flag("old-args", Ignore),
        flag("no-old-args", Ignore),
        flag("secluded-args", On(|o| &mut o.protect_args))
            .short(b's')
            .exact(),
        flag("no-secluded-args", Off(|o| &mut o.protect_args)),
        flag("protect-args", On(|o| &mut o.protect_args)).exact(),
        flag("no-protect-args", Off(|o| &mut o.protect_args)),
        flag("no-s", Off(|o| &mut o.protect_args)),
        flag("trust-sender", Ignore),
        flag("numeric-ids", On(|o| &mut o.numeric_ids)),
        flag("no-numeric-ids", Off(|o| &mut o.numeric_ids)),
        value("usermap", Reject(Rejected::Unsupported)),
        value("groupmap", Reject(Rejected::Unsupported)),
        value("chown", Reject(Rejected::Unsupported)),
        value("timeout", Read(timeout)),
        flag("no-timeout", Run(|o| o.timeout = None)),
        value("contimeout", Ignore),
        flag("no-contimeout", Ignore),
        flag("fsync", Ignore),
        value("stop-after", Ignore),
        value("time-limit", Ignore),
        value("stop-at", Ignore),
        // A client's server arguments carry its capability letters here
        // (`-e.LsfxC`); they matter from protocol 30 on.
        value("rsh", Read(client_info)).short(b'e').exact(),
        value("rsync-path", Ignore),
        value("temp-dir", Ignore).short(b'T'),
        value("iconv", Ignore).exact(),
        flag("no-iconv", Ignore).exact(),
        flag("ipv4", Ignore).short(b'4'),
        flag("ipv6", Ignore).short(b'6'),
        flag("8-bit-output", Ignore).short(b'8'),
        flag("no-8-bit-output", Ignore),
        flag("no-8", Ignore),
        flag("mkpath", Ignore),
        flag("no-mkpath", Ignore),
        flag("qsort", On(|o| &mut o.qsort)),
        flag("use-qsort", Ignore),
        value("copy-as", Ignore),
        value("address", Ignore),
        value("port", Ignore),
        value("sockopts", Ignore),
        value("password-file", Ignore),
        value("early-input", Reject(Rejected::Unsupported)),
        flag("blocking-io", Ignore),
        flag("no-blocking-io", Ignore),
        value("outbuf", Ignore),
        value("remote-option", Ignore).short(b'M'),
        value("protocol", Ignore),
        value("checksum-seed", Read(checksum_seed)).exact(),
        flag("server", On(|o| &mut o.server)).exact(),
        flag("sender", On(|o| &mut o.sender)).exact(),
        value("config", Reject(Rejected::Unsupported)),
        flag("daemon", Reject(Rejected::Unsupported)),
        value("dparam", Ignore),
        flag("detach", Ignore),
        flag("no-detach", Ignore),
        flag(
            "devices+specials",
            Run(|o| (o.devices, o.specials) = (true, true)),
        )
        .short(b'D')
        .letter_only(),
        flag("partial+progress", Ignore).short(b'P').letter_only(),
        flag("filter-shortcut", Reject(Rejected::Unsupported))
            .short(b'F')
            .letter_only(),
    ]
};

/// The row of each letter, or [`NO_ROW`]: made at compile time, so that each
/// of the megabytes of short options a client may send costs an index, not
/// a search.
static BY_LETTER: [u16; 256] = by_letter();
const NO_ROW: u16 = u16::MAX;

const fn by_letter() -> [u16; 256] {
    let mut table = [NO_ROW; 256];
    let mut row = 0;
    while row < OPTIONS.len() {
        if let Some(letter) = OPTIONS[row].letter {
            assert!(
                table[letter as usize] == NO_ROW,
                "two options share a letter"
            );
            table[letter as usize] = row as u16;
        }
        row += 1;
    }
    table
}

/// The row of the option called `name` (as [`ClientOption::name`] spells
/// it), and its position in [`OPTIONS`].
pub(crate) fn lookup(name: &str) -> Option<(usize, &'static ClientOption)> {
    OPTIONS
        .iter()
        .enumerate()
        .find(|(_, option)| option.name == name)
}

/// The row of short option `letter`, and its position in [`OPTIONS`].
fn by_short(letter: u8) -> Option<(usize, &'static ClientOption)> {
    let row = usize::from(BY_LETTER[usize::from(letter)]);
    OPTIONS.get(row).map(|option| (row, option))
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

/// The largest `--max-size`/`--min-size` accepted (SIZE_MAX / 2 in rsync:
/// rsync: options.c parse_size_arg).
const MAX_SIZE_ARG: f64 = i64::MAX as f64;

/// rsync's size syntax for --max-size/--min-size/--bwlimit (rsync:
/// options.c parse_size_arg): a number with an optional K/M/G/T suffix
/// (1024-based, or 1000-based with "B"; `default_unit` bytes without one),
/// and an optional +1/-1.
fn parse_size_arg(name: &str, value: &[u8], default_unit: f64) -> Result<u64, OptionError> {
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
        None => default_unit,
        Some('b') => 1.0,
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

/// `-a`: `-rlptgoD` (rsync: options.c parse_arguments).
fn archive(o: &mut Options) {
    o.recurse = true;
    o.links = true;
    o.perms = true;
    o.times = true;
    o.group = true;
    o.owner = true;
    o.devices = true;
    o.specials = true;
}

/// `-z` is zlib; `-zz`, or `-z` after another compression option, zlibx.
fn compress(o: &mut Options) {
    o.compression = match o.compression {
        Compression::None => Compression::Zlib,
        _ => {
            o.compress_named = true;
            Compression::ZlibX
        }
    }
}

fn compress_level(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.compress_level = Some(parse_number(name, v)?);
    Ok(())
}

fn compress_choice(o: &mut Options, _: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.compression = match v {
        b"zlib" => Compression::Zlib,
        b"zlibx" => Compression::ZlibX,
        b"zstd" => Compression::Zstd,
        b"lz4" => Compression::Lz4,
        b"none" => Compression::None,
        _ => return Err(OptionError(format!("unknown compress name: {}", lossy(v)))),
    };
    o.compress_named = true;
    Ok(())
}

fn client_info(o: &mut Options, _: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.client_info = v.to_vec();
    Ok(())
}

/// `X` for both digests, or `X,Y` for block sums and file checksums apart.
fn checksum_choice(o: &mut Options, _: &'static str, v: &[u8]) -> Result<(), OptionError> {
    let (xfer, file) = match v.iter().position(|&b| b == b',') {
        Some(comma) => (&v[..comma], &v[comma + 1..]),
        None => (v, v),
    };
    o.xfer_sum = parse_sum_kind(xfer)?;
    o.file_sum = parse_sum_kind(file)?;
    Ok(())
}

/// A number where 0 means none: `-B0` leaves the block size to upserv,
/// `--timeout=0` is no timeout.
fn zero_is_none(name: &str, v: &[u8]) -> Result<Option<u32>, OptionError> {
    let n: u32 = parse_number(name, v)?;
    Ok((n > 0).then_some(n))
}

fn block_size(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.block_size = zero_is_none(name, v)?;
    Ok(())
}

fn timeout(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.timeout = zero_is_none(name, v)?;
    Ok(())
}

/// The seed goes on the wire as 32 bits; a negative one as its two's
/// complement.
fn checksum_seed(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    let n: i64 = parse_number(name, v)?;
    o.checksum_seed = Some(n as u32);
    Ok(())
}

fn files_from(o: &mut Options, _: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.files_from = Some(v.to_vec());
    Ok(())
}

fn max_size(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.max_size = Some(parse_size_arg(name, v, 1.0)?);
    Ok(())
}

fn min_size(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    o.min_size = Some(parse_size_arg(name, v, 1.0)?);
    Ok(())
}

/// The smallest `--bwlimit` other than 0 (unlimited), in bytes per second
/// (rsync: options.c parse_arguments).
const MIN_BWLIMIT: u64 = 512;

/// `--bwlimit=RATE`: KiB per second without a suffix, rounded to whole KiB
/// as rsync does; 0 is unlimited.
fn bwlimit(o: &mut Options, name: &'static str, v: &[u8]) -> Result<(), OptionError> {
    let bytes = parse_size_arg(name, v, 1024.0)?;
    if bytes != 0 && bytes < MIN_BWLIMIT {
        return Err(OptionError(format!(
            "--{name}={} is too small (min: {MIN_BWLIMIT} or 0 for unlimited)",
            lossy(v)
        )));
    }
    let kib = bytes.saturating_add(512) / 1024;
    o.bwlimit = (kib != 0).then(|| kib.saturating_mul(1024));
    Ok(())
}

impl Options {
    /// Parses the server's argument list (everything the client sent, in
    /// order), in time linear in its size.
    pub fn parse(args: &[Vec<u8>]) -> Result<Options, OptionError> {
        let mut o = Options {
            implied_dirs: true,
            ..Options::default()
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if arg.as_slice() == b"." {
                o.paths = rest.as_slice().to_vec();
                break;
            }
            if let Some(long) = arg.strip_prefix(b"--") {
                o.long_option(long, &mut rest)?;
            } else if let Some(letters) = arg.strip_prefix(b"-").filter(|l| !l.is_empty()) {
                o.short_options(letters, &mut rest)?;
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
        // As rsync: options.c parse_arguments: a file list or a listing
        // without recursion still sends the directories it names.
        if (o.list_only && !o.recurse) || o.files_from.is_some() {
            o.dirs = true;
        }
        Ok(o)
    }

    /// `--name` or `--name=VALUE` (`text` is what follows the `--`); a
    /// required value not given inline is the next argument.
    fn long_option(
        &mut self,
        text: &[u8],
        rest: &mut std::slice::Iter<Vec<u8>>,
    ) -> Result<(), OptionError> {
        let (name, inline) = match text.iter().position(|&b| b == b'=') {
            Some(eq) => (&text[..eq], Some(&text[eq + 1..])),
            None => (text, None),
        };
        let (row, option) = std::str::from_utf8(name)
            .ok()
            .and_then(lookup)
            .ok_or_else(|| OptionError(format!("--{}: unknown option", lossy(name))))?;
        let name = option.name;
        let value = match (option.arg, inline) {
            (Arg::None, None) => None,
            (Arg::None, Some(_)) => {
                return Err(OptionError(format!(
                    "--{name}: option does not take an argument"
                )))
            }
            (Arg::Required, Some(v)) => Some(v),
            (Arg::Required, None) => Some(
                rest.next()
                    .ok_or_else(|| OptionError(format!("--{name}: missing argument")))?
                    .as_slice(),
            ),
        };
        self.take(row, option, value)
    }

    /// A group of short options (`letters` is what follows the `-`): the
    /// first that requires a value takes the rest of the group, or if
    /// nothing is left, the next argument.
    fn short_options(
        &mut self,
        letters: &[u8],
        rest: &mut std::slice::Iter<Vec<u8>>,
    ) -> Result<(), OptionError> {
        for (at, &letter) in letters.iter().enumerate() {
            let (row, option) = by_short(letter)
                .ok_or_else(|| OptionError(format!("-{}: unknown option", letter as char)))?;
            if option.arg == Arg::None {
                self.take(row, option, None)?;
                continue;
            }
            let value = match &letters[at + 1..] {
                [] => rest
                    .next()
                    .ok_or_else(|| OptionError(format!("-{}: missing argument", letter as char)))?,
                attached => attached,
            };
            return self.take(row, option, Some(value));
        }
        Ok(())
    }

    /// Records option `option` (row `row` of [`OPTIONS`]) as given and
    /// applies its effect.
    fn take(
        &mut self,
        row: usize,
        option: &'static ClientOption,
        value: Option<&[u8]>,
    ) -> Result<(), OptionError> {
        self.note_given(row, option);
        match option.effect {
            Effect::Ignore => {}
            Effect::On(flag) => *flag(self) = true,
            Effect::Off(flag) => *flag(self) = false,
            Effect::Count(counter) => {
                let n = counter(self);
                *n = n.saturating_add(1);
            }
            Effect::Zero(counter) => *counter(self) = 0,
            Effect::Run(run) => run(self),
            Effect::Read(read) => read(self, option.name, value.unwrap_or(b""))?,
            Effect::Reject(why) => return Err(why.error(option)),
        }
        Ok(())
    }

    /// Records `option` in `given` the first time it comes: a client may
    /// repeat options millions of times.
    fn note_given(&mut self, row: usize, option: &'static ClientOption) {
        let (word, bit) = (row / 64, 1u64 << (row % 64));
        if self.given_seen.len() <= word {
            self.given_seen.resize(word + 1, 0);
        }
        if self.given_seen[word] & bit == 0 {
            self.given_seen[word] |= bit;
            self.given.push(option);
        }
    }

    /// Turns away `-A` and `-X`, after the module's refusals as in rsyncd.
    /// Below protocol 30 with rsync's own words (rsync: compat.c
    /// setup_protocol): their data only exist in protocol 30 file lists.
    /// From 30 on rsyncd built with ACL and xattr support serves them;
    /// upserv does not, and says so.
    pub fn check_protocol(&self, protocol: u32) -> Result<(), OptionError> {
        for (asked, name) in [(self.acls, "acls"), (self.xattrs, "xattrs")] {
            if !asked {
                continue;
            }
            return Err(OptionError(if protocol < 30 {
                format!("--{name} requires protocol 30 or higher (negotiated {protocol}).")
            } else {
                format!("--{name}: not supported by this server (upserv serves no ACLs or xattrs)")
            }));
        }
        Ok(())
    }

    /// Whether the client sent option `name` (as [`ClientOption::name`]
    /// spells it).
    pub(crate) fn was_given(&self, name: &str) -> bool {
        self.given.iter().any(|option| option.name == name)
    }

    /// With `-s` (`--secluded-args`) the paths arrive a second time as
    /// `rsync`, `.`, then the paths, each ended by a NUL (rsync: rsync.c
    /// send_protected_args); they replace whatever the first list held.
    pub(crate) fn set_protected_paths(&mut self, args: &[Vec<u8>]) {
        self.paths = match args.iter().position(|a| a.as_slice() == b".") {
            Some(dot) => args[dot + 1..].to_vec(),
            None => Vec::new(),
        };
    }
}

impl Options {
    /// What of the options shapes the file list, in one canonical byte
    /// string: two pulls whose strings differ may list different entries
    /// or hold different values in them, so they must not share a list
    /// (`flist::shared`). Every field is named here, so that a new one
    /// needs a decision; when in doubt a field goes in (a missed share
    /// costs time, a wrong one serves a wrong list).
    pub(crate) fn list_shape(&self) -> Vec<u8> {
        let Options {
            // The walk: which entries, and what each holds.
            recurse,
            dirs,
            list_only,
            links,
            copy_links,
            copy_dirlinks,
            copy_unsafe_links,
            safe_links,
            hard_links,
            owner,
            group,
            devices,
            specials,
            acls,
            xattrs,
            atimes,
            checksum,
            cvs_exclude,
            relative,
            qsort,
            implied_dirs,
            one_file_system,
            numeric_ids,
            ignore_errors,
            names_withheld,
            skip_unreadable,
            files_from,
            from0,
            missing_args,
            prune_empty_dirs,
            max_size,
            min_size,
            file_sum,
            checksum_seed,
            paths,
            // Capabilities: the encoding and incremental recursion, which
            // the caller keys apart; in, as a client that differs here
            // may differ elsewhere.
            client_info,
            // Not in the list: the encoder writes what every entry holds
            // (mode, mtime) as these ask, per connection.
            perms: _,
            executability: _,
            times: _,
            // Not in the list: the transfer, the transport and the log.
            server: _,
            sender: _,
            verbose: _,
            dry_run: _,
            ignore_times: _,
            whole_file: _,
            compression: _,
            compress_named: _,
            compress_level: _,
            block_size: _,
            timeout: _,
            xfer_sum: _,
            inplace: _,
            append: _,
            bwlimit: _,
            // How the options and paths arrived; their effect is above.
            given: _,
            given_seen: _,
            protect_args: _,
        } = self;
        let mut out = Vec::new();
        let flags = [
            *recurse,
            *dirs,
            *list_only,
            *links,
            *copy_links,
            *copy_dirlinks,
            *copy_unsafe_links,
            *safe_links,
            *hard_links,
            *owner,
            *group,
            *devices,
            *specials,
            *acls,
            *xattrs,
            *atimes,
            *checksum,
            *cvs_exclude,
            *relative,
            *qsort,
            *implied_dirs,
            *numeric_ids,
            *ignore_errors,
            *names_withheld,
            *skip_unreadable,
            *from0,
            *prune_empty_dirs,
        ];
        out.extend(flags.map(u8::from));
        out.push(*one_file_system);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        field(format!("{missing_args:?} {max_size:?} {min_size:?}").as_bytes());
        // The file sums in the list (-c), their kind and seed.
        if *checksum {
            field(format!("{file_sum:?} {checksum_seed:?}").as_bytes());
        }
        field(&[u8::from(files_from.is_some())]);
        field(files_from.as_deref().unwrap_or_default());
        field(client_info);
        for path in paths {
            field(path);
        }
        out
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
    fn every_row_is_found_by_its_name_and_letter() {
        for (row, option) in OPTIONS.iter().enumerate() {
            assert_eq!(
                lookup(option.name).map(|(at, _)| at),
                Some(row),
                "{}",
                option.name
            );
            if let Some(c) = option.letter {
                assert_eq!(by_short(c).map(|(at, _)| at), Some(row), "-{}", c as char);
            }
            assert_eq!(
                option.long().is_none(),
                option.letter_only,
                "{}",
                option.name
            );
        }
        let letters = OPTIONS.iter().filter(|o| o.letter.is_some()).count();
        assert_eq!(
            (0..=255u8).filter(|&c| by_short(c).is_some()).count(),
            letters
        );
    }

    #[test]
    fn options_that_read_a_value_require_one() {
        for option in OPTIONS {
            if let Effect::Read(_) = option.effect {
                assert_eq!(option.arg, Arg::Required, "{}", option.name);
            }
        }
    }

    #[test]
    fn a_repeated_option_is_given_once() {
        let mut args = vec![b"--server".to_vec(), vec![b'v'; 100_000]];
        args[1][0] = b'-';
        args.extend(std::iter::repeat_n(b"--verbose".to_vec(), 1000));
        args.extend([b"-v".to_vec(), b".".to_vec(), b"m/".to_vec()]);
        let o = Options::parse(&args).unwrap();
        let given: Vec<&str> = o.given.iter().map(|option| option.name).collect();
        assert_eq!(given, ["server", "verbose"]);
        assert_eq!(o.verbose, u8::MAX);
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
        assert_eq!(parse_size_arg("max-size", b"100", 1.0).unwrap(), 100);
        assert_eq!(parse_size_arg("max-size", b"1k", 1.0).unwrap(), 1024);
        assert_eq!(parse_size_arg("max-size", b"1kb", 1.0).unwrap(), 1000);
        assert_eq!(
            parse_size_arg("max-size", b"2M", 1.0).unwrap(),
            2 * 1024 * 1024
        );
        assert_eq!(parse_size_arg("max-size", b"1k-1", 1.0).unwrap(), 1023);
        // Found by fuzzing: a multi-byte suffix, and sizes past 2^63.
        assert!(parse_size_arg("max-size", "1\u{3db}".as_bytes(), 1.0).is_err());
        assert!(parse_size_arg("max-size", b"99999999999999999999p+1", 1.0).is_err());
        assert!(parse_size_arg("max-size", b"8388608t", 1.0).is_err());
        assert_eq!(
            parse_size_arg("max-size", b"8388607t", 1.0).unwrap(),
            8_388_607 << 40
        );
        assert!(parse_size_arg("max-size", b"1q", 1.0).is_err());
    }

    #[test]
    fn bwlimit_is_kib_per_second_unless_told_otherwise() {
        let rate = |v: &str| parse(&["--server", "--sender", v, ".", "m"]).map(|o| o.bwlimit);
        assert_eq!(rate("--bwlimit=100").unwrap(), Some(100 * 1024));
        assert_eq!(rate("--bwlimit=1.5m").unwrap(), Some(1536 * 1024));
        assert_eq!(rate("--bwlimit=1000b").unwrap(), Some(1024));
        assert_eq!(rate("--bwlimit=0").unwrap(), None);
        assert!(rate("--bwlimit=100b").is_err());
        assert!(rate("--bwlimit=fast").is_err());
        let off = parse(&[
            "--server",
            "--sender",
            "--bwlimit=9",
            "--no-bwlimit",
            ".",
            "m",
        ]);
        assert_eq!(off.unwrap().bwlimit, None);
    }

    #[test]
    fn missing_server_is_an_error() {
        assert!(parse(&["--sender", ".", "m"]).is_err());
    }
}
