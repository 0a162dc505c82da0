//! The sending side of one pull, from the checksum seed to the goodbye
//! (rsync: main.c do_server_sender, rsync: sender.c send_files, rsync: match.c match_sums).
//!
//! The client's generator asks for files by index, each with the block
//! checksums of its basis; we answer with the index, the checksum head and
//! a token stream built by [`crate::delta::Matcher`], then the whole-file
//! sum. Phase markers (-1) are echoed; from protocol 29 on there is a
//! second, "redo" phase for files whose checksum failed. Then the
//! statistics, and from 31 on one more exchange of end markers.

use super::filter::{FilterList, Filters, MAX_WIRE_RULE_LEN};
use super::flist::shared::{self, BuildLists, Built, Shape, Which};
use super::flist::{self, Builder, DirWalk, Encoder, Feed, ListSource, Reporter};
use super::glob;
use super::io::{Conn, MsgTag};
use super::memo::{BuildMemo, FileRequest, Session};
use super::ndx::{NdxCodec, NDX_DEL_STATS, NDX_DONE};
use super::options::{Compression, Options};
use super::setup::{self, SetupError};
use super::token::{Codec, TokenWriter, Tokens};
use super::wire::{WireRead, WireWrite};
use crate::delta::strong::{spoil_file_sum, Digest, StrongSum, STRONG_SUM_LEN};
use crate::delta::{BlockSums, MatchError, MatchMode, Matcher};
use crate::source::Source;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// rsync's OLD_MAX_BLOCK_SIZE: the largest block length below protocol 30.
pub(crate) const OLD_MAX_BLOCK_LEN: i32 = 1 << 29;
/// rsync's MAX_BLOCK_SIZE: the largest block length from protocol 30 on
/// (rsync: generator.c sum_sizes_sqroot).
pub(crate) const MAX_BLOCK_LEN: i32 = 1 << 17;
/// The largest `--files-from` file read from a module, and the most name
/// bytes a client may send for `--files-from=-`.
pub const MAX_FILES_FROM_LEN: u64 = 64 * 1024 * 1024;
/// The largest block we match against: the matcher holds two blocks in
/// memory. rsync's generator picks about the square root of the file size,
/// so this covers files up to 64 TiB; larger blocks (`--block-size`) get
/// the file whole instead.
pub(crate) const MAX_MATCH_BLOCK_LEN: i32 = 8 << 20;
/// The most checksum bytes (weak + strong) we hold for one file. Beyond it
/// the sums are read and dropped and the file goes whole, so a client's
/// claims never decide how much memory we allocate. Held sums and their
/// index take about six times their wire size, and every worker may hold
/// a set: 4 MiB keeps a connection near 25 MiB, and still covers the
/// default block size (the square root of the size) of files up to
/// about 40 GiB.
pub(crate) const MAX_SUM_BYTES: usize = 4 * 1024 * 1024;

const ITEM_BASIS_TYPE_FOLLOWS: u16 = 1 << 11;
const ITEM_XNAME_FOLLOWS: u16 = 1 << 12;
const ITEM_IS_NEW: u16 = 1 << 13;
const ITEM_TRANSFER: u16 = 1 << 15;
const FNAMECMP_FNAME: u8 = 0x80;

/// Why a pull ended early.
#[derive(Debug)]
pub(crate) enum TransferError {
    /// The connection failed or timed out.
    Io(io::Error),
    /// The client broke the protocol; the text says how.
    Protocol(String),
    /// The pull cannot go on (the client was told why).
    Fatal(String),
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::Io(e) => write!(f, "{e}"),
            TransferError::Protocol(s) | TransferError::Fatal(s) => f.write_str(s),
        }
    }
}

impl From<io::Error> for TransferError {
    fn from(e: io::Error) -> Self {
        TransferError::Io(e)
    }
}

fn protocol_error<T>(text: impl Into<String>) -> Result<T, TransferError> {
    Err(TransferError::Protocol(text.into()))
}

/// What one pull moved, for the transfer log line.
#[derive(Debug, Default, Clone)]
pub struct TransferStats {
    pub(crate) files_listed: usize,
    pub(crate) files_sent: u64,
    pub(crate) literal_bytes: u64,
    pub(crate) matched_bytes: u64,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
}

/// Everything the sender needs to know about one pull.
pub(crate) struct Pull<'a> {
    pub(crate) opts: &'a Options,
    pub(crate) protocol: u32,
    pub(crate) source: &'a Source,
    pub(crate) module: &'a str,
    /// Source paths relative to the module root, already sanitised.
    pub(crate) paths: Vec<Vec<u8>>,
    /// The module's own filter rules.
    pub(crate) daemon_filters: FilterList,
    /// The seed when the client sets none: a build's shared seed; `None`
    /// for the time-based one.
    pub(crate) seed: Option<u32>,
    /// For builds: the daemon's delta memo.
    pub(crate) memo: Option<BuildMemo>,
    /// For builds: the file lists shared between connections.
    pub(crate) lists: Option<BuildLists>,
    /// The I/O timeout in seconds the client is told at 31+ (rsync:
    /// main.c start_server, MSG_IO_TIMEOUT), so that it adopts a shorter
    /// one; 0 for none.
    pub(crate) io_timeout: u32,
}

impl Reporter for Conn {
    fn report(&mut self, tag: MsgTag, text: &str) -> io::Result<()> {
        self.send_msg(tag, text.as_bytes())
    }

    fn tick(&mut self) -> io::Result<()> {
        self.maybe_keepalive()
    }
}

/// The checksum seed: the client's `--checksum-seed`, else the module's
/// (a build's), else one derived from the time and process as rsync does.
fn choose_seed(opts: &Options, module_seed: Option<u32>) -> u32 {
    opts.checksum_seed.or(module_seed).unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32 ^ d.subsec_nanos());
        now ^ (std::process::id() << 6)
    })
}

/// How long a refused client gets to acknowledge the message before the
/// connection is reset.
const REFUSAL_DELIVERY: Duration = Duration::from_secs(2);

/// Tells the client about an option error the way rsyncd does: the protocol
/// setup is finished so that the message can travel multiplexed, and the
/// connection ends in a reset once the client has it.
pub(crate) fn refuse(conn: &mut Conn, protocol: u32, message: &str) -> io::Result<()> {
    setup::run_for_refusal(conn, protocol)?;
    conn.start_multiplex();
    conn.send_msg(MsgTag::Error, format!("rsync: {message}\n").as_bytes())?;
    conn.reset_after_delivery(REFUSAL_DELIVERY)
}

/// Runs one pull on a connection whose handshake is done. A client that
/// breaks the protocol is told why before the connection closes.
pub(crate) fn run(conn: &mut Conn, pull: Pull) -> Result<TransferStats, TransferError> {
    let result = transfer(conn, pull);
    if let Err(TransferError::Protocol(text)) = &result {
        let line = format!("rsync: [sender] {text}\n");
        let _ = conn.send_msg(MsgTag::Error, line.as_bytes());
        let _ = conn.flush();
    }
    result
}

fn transfer(conn: &mut Conn, pull: Pull) -> Result<TransferStats, TransferError> {
    let seed = choose_seed(pull.opts, pull.seed);
    let setup = match setup::run(conn, pull.opts, pull.protocol, seed) {
        Ok(s) => s,
        Err(SetupError::Io(e)) => return Err(e.into()),
        Err(SetupError::NoCommonChoice(what)) => {
            conn.flush()?;
            return Err(TransferError::Fatal(format!(
                "failed to negotiate a {what} choice"
            )));
        }
    };
    conn.start_multiplex();
    if pull.io_timeout != 0 && pull.protocol >= 31 {
        conn.send_msg_bytes(MsgTag::IoTimeout, &pull.io_timeout.to_le_bytes())?;
    }
    if pull.protocol >= 30 {
        conn.start_multiplex_in(pull.protocol >= 31);
    }
    // The sums and compressor the setup settled on, for everything after.
    let mut negotiated = pull.opts.clone();
    negotiated.xfer_sum = setup.xfer_sum;
    negotiated.file_sum = setup.file_sum;
    negotiated.compression = setup.compression;
    let pull = Pull {
        opts: &negotiated,
        ..pull
    };
    let opts = pull.opts;
    let mut shape = pull
        .lists
        .as_ref()
        .map(|l| l.shape(opts, pull.protocol, seed));
    let client_filters = receive_filter_rules(conn, opts, pull.protocol, shape.as_mut())?;
    let mut filters = Filters::new(
        pull.source.root(),
        pull.daemon_filters.clone(),
        client_filters,
    );
    // As rsyncd: `--from0` (which a client sends with every --files-from)
    // makes the per-directory merge files NUL-separated too.
    filters.set_nul_separated_merge_files(opts.from0);

    let (base, names) = match &opts.files_from {
        None => (
            Vec::new(),
            glob::expand_all(pull.source, &filters, &pull.paths),
        ),
        Some(from) => {
            let mut base = pull.paths.first().cloned().unwrap_or_default();
            while base.last() == Some(&b'/') {
                base.pop();
            }
            let names = match read_files_from(conn, from, opts, pull.protocol, pull.source) {
                Ok(n) => n,
                Err(e) => {
                    let text = format!("rsync: [sender] --files-from: {e}");
                    return fatal(conn, pull.protocol, RERR_FILEIO, text);
                }
            };
            (base, names)
        }
    };
    let share = shape.map(|mut shape| {
        shape.add(&base);
        for name in &names {
            shape.add(name);
        }
        shape.finish(setup.inc_recurse())
    });
    let started = Instant::now();
    // The whole list, or the first of an incremental pull, built in the
    // order rsync walks and sent in it, then sorted. The whole list of a
    // build is shared; the first list of an incremental pull is each
    // connection's own (it enters the filter scopes the later lists use).
    let first = if setup.inc_recurse() {
        Builder::new(
            opts,
            pull.protocol,
            pull.source,
            &mut filters,
            conn,
            pull.module,
        )
        .incremental()
        .build_first(&base, &names)
        .map(|(mut list, top_scope)| {
            let order = list.sort_keeping_walk_order();
            (Arc::new(Built::new(list, Some(order))), top_scope)
        })
    } else {
        shared::obtain(share.as_ref(), Which::Whole, conn, |reporter| {
            let (mut list, _) = Builder::new(
                opts,
                pull.protocol,
                pull.source,
                &mut filters,
                reporter,
                pull.module,
            )
            .build_first(&base, &names)?;
            let order = list.sort_keeping_walk_order();
            if share.is_some() {
                list.shrink_to_fit();
            }
            Ok(Built::new(list, Some(order)))
        })
        .map(|built| (built, None))
    };
    let (first, top_scope) = match first {
        Ok(built) => built,
        Err(e) => {
            let text = format!("rsync: [sender] {e}");
            return fatal(conn, pull.protocol, RERR_UNSUPPORTED, text);
        }
    };
    let build_ms = started.elapsed().as_millis().max(1) as i64;
    let started = Instant::now();
    let mut encoder = Encoder::new(opts, &setup);
    if setup.inc_recurse() {
        encoder = encoder.incremental();
        encoder.start_list(1);
    }
    let list = Arc::clone(&first.list);
    let io_error = encoder.send_list(conn, &list, first.walk_order.as_deref(), list.io_error)?;
    if io_error != 0 {
        conn.send_msg_bytes(MsgTag::IoError, &io_error.to_le_bytes())?;
    }
    let xfer_ms = started.elapsed().as_millis() as i64;
    // The order it was built in is not needed again.
    drop(first);
    let mut ndx_out = NdxCodec::new(pull.protocol);
    let feed = if setup.inc_recurse() {
        let walk = DirWalk::new(&list, top_scope)?;
        let from = ListSource {
            opts,
            protocol: pull.protocol,
            source: pull.source,
            module: pull.module,
            filters,
            share: share.as_ref(),
        };
        Feed::incremental(from, walk, encoder, list, conn, &mut ndx_out)?
    } else if list.is_empty() {
        conn.flush()?;
        return Ok(TransferStats::default());
    } else {
        Feed::whole(list)
    };

    // From 30 on, a negotiated "none" (or a level that turns the chosen
    // compressor off) means no compression; below, a level alone means -z.
    let codec = if pull.protocol >= 30 && opts.compression == Compression::None {
        None
    } else {
        Codec::for_options(opts.compression, opts.compress_level, pull.protocol)?
    };
    let mut sender = FileSender {
        conn,
        feed,
        pull: &pull,
        strong_sum: StrongSum {
            kind: opts.xfer_sum,
            seed,
        },
        matcher: Matcher::new(),
        memo: Session::new(pull.memo.clone()),
        codec,
        stats: TransferStats::default(),
        ndx_in: NdxCodec::new(pull.protocol),
        ndx_out,
    };
    sender.send_files()?;

    let total_size = sender.feed.window.total_size() as i64;
    sender.stats.files_listed = sender.feed.window.total_entries() as usize;
    sender.conn.flush()?;
    let read = sender.conn.bytes_read() as i64;
    let written = sender.conn.bytes_written() as i64;
    let mut totals = vec![read, written, total_size];
    if pull.protocol >= 29 {
        totals.extend([build_ms, xfer_ms]);
    }
    for v in totals {
        if pull.protocol >= 30 {
            sender.conn.write_varlong(v, 3)?;
        } else {
            sender.conn.write_longint(v)?;
        }
    }
    sender.conn.flush()?;
    sender.read_goodbye()?;
    let mut stats = sender.stats;
    stats.bytes_read = conn.bytes_read();
    stats.bytes_written = conn.bytes_written();
    Ok(stats)
}

/// rsync's exit codes (errcode.h) for the fatal errors a sender reports.
const RERR_SYNTAX: i32 = 1;
const RERR_PROTOCOL: i32 = 2;
const RERR_UNSUPPORTED: i32 = 4;
const RERR_FILEIO: i32 = 11;
/// How long a sender that reported an error exit at 31+ waits for the
/// client to answer it (rsync: io.c noop_io_until_death gives 60 s).
const ERROR_EXIT_WAIT: Duration = Duration::from_secs(60);

/// Ends a pull with an error the client prints (rsync's fatal errors on
/// the sender: the message, then the connection closes). From 31 on the
/// exit code follows in a message of its own and the client's answer is
/// awaited, so that the client reports the message and the code rather
/// than a broken connection (rsync: cleanup.c _exit_cleanup).
fn fatal<T>(conn: &mut Conn, protocol: u32, code: i32, text: String) -> Result<T, TransferError> {
    conn.send_msg(MsgTag::Error, format!("{text}\n").as_bytes())?;
    if protocol >= 31 {
        // rsync: log.c log_exit's line, which the client can now show.
        let what = match code {
            RERR_SYNTAX => "syntax or usage error",
            RERR_PROTOCOL => "protocol incompatibility",
            RERR_UNSUPPORTED => "requested action not supported",
            _ => "error in file IO",
        };
        let line = format!("rsync error: {what} (code {code}) [sender=upserv]\n");
        conn.send_msg(MsgTag::Error, line.as_bytes())?;
        conn.send_msg_bytes(MsgTag::ErrorExit, &code.to_le_bytes())?;
        conn.flush()?;
        conn.set_deadline(Some(Instant::now() + ERROR_EXIT_WAIT));
        // Whatever the client still sends is dropped until its answer,
        // its close or the deadline ends the wait.
        while conn.read_u8().is_ok() {}
    }
    conn.flush()?;
    Err(TransferError::Fatal(text))
}

/// rsync: exclude.c recv_filter_list: (length, rule) pairs ended by a zero length,
/// then the CVS rules when the client asked for `-C`. Each rule as sent
/// goes into the pull's `shape`, when its list may be shared.
fn receive_filter_rules(
    conn: &mut Conn,
    opts: &Options,
    protocol: u32,
    mut shape: Option<&mut Shape>,
) -> Result<FilterList, TransferError> {
    let mut list = FilterList::new();
    let mut rule = Vec::new();
    loop {
        let len = conn.read_i32()?;
        if len == 0 {
            break;
        }
        if len < 0 || len as usize > MAX_WIRE_RULE_LEN {
            return fatal(
                conn,
                protocol,
                RERR_PROTOCOL,
                format!("rsync: [sender] filter rule of {len} bytes is too long"),
            );
        }
        rule.resize(len as usize, 0);
        conn.read_exact(&mut rule)?;
        if let Some(shape) = shape.as_deref_mut() {
            shape.add(&rule);
        }
        if let Err(e) = list.add_wire_rule(&rule, protocol) {
            return fatal(conn, protocol, RERR_SYNTAX, format!("rsync: [sender] {e}"));
        }
    }
    if opts.cvs_exclude {
        if let Err(e) = list.add_cvs_exclude() {
            return fatal(conn, protocol, RERR_SYNTAX, format!("rsync: [sender] {e}"));
        }
    }
    Ok(list)
}

/// The names of `--files-from`: NUL-terminated over the connection up to
/// an empty one (`-`), or lines of a file in the module (rsync's read_line
/// with comments skipped; NULs with `--from0`). Each is sanitised like a
/// command-line path; their number and length are bounded.
fn read_files_from(
    conn: &mut Conn,
    from: &[u8],
    opts: &Options,
    protocol: u32,
    source: &Source,
) -> io::Result<Vec<Vec<u8>>> {
    let sanitize = |n: &[u8]| crate::source::sanitize_path(n, opts.relative);
    let mut names = Vec::new();
    if from == b"-" {
        // Below protocol 31 the names come outside the frames.
        let unframed = protocol == 30;
        if unframed {
            conn.stop_multiplex_in();
        }
        // Counted as the file variant is: without it a client could make
        // us hold millions of names of 4 KiB each.
        let mut total = 0u64;
        loop {
            let name = conn.read_arg(flist::MAX_PATH_LEN, true)?;
            if name.is_empty() {
                if unframed {
                    conn.start_multiplex_in(false);
                }
                return Ok(names);
            }
            total += name.len() as u64 + 1;
            if total > MAX_FILES_FROM_LEN {
                return Err(io::Error::other(format!(
                    "names longer than {MAX_FILES_FROM_LEN} bytes in all"
                )));
            }
            if names.len() >= flist::MAX_ENTRIES {
                return Err(io::Error::other("too many names"));
            }
            names.push(sanitize(&name));
        }
    }
    let path = source.resolve(&crate::source::sanitize_path(from, false), true)?;
    let text = source.read_small_file(&path, MAX_FILES_FROM_LEN)?;
    let separator = if opts.from0 { b'\0' } else { b'\n' };
    for line in text.split(|&b| b == separator) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || (!opts.from0 && matches!(line[0], b'#' | b';')) {
            continue;
        }
        if line.len() >= flist::MAX_PATH_LEN || names.len() >= flist::MAX_ENTRIES {
            return Err(io::Error::other("name too long or too many names"));
        }
        names.push(sanitize(line));
    }
    Ok(names)
}

/// One request from the client's generator.
struct Request {
    ndx: i32,
    iflags: u16,
    basis_type: u8,
    xname: Option<Vec<u8>>,
}

struct FileSender<'a, 'p> {
    conn: &'a mut Conn,
    /// The lists the client may name files of, and those to come.
    feed: Feed<'a>,
    pull: &'a Pull<'p>,
    strong_sum: StrongSum,
    matcher: Matcher,
    memo: Session,
    /// The connection's compressor when the client asked for `-z`.
    codec: Option<Codec>,
    stats: TransferStats,
    /// File indices from the client, and to it.
    ndx_in: NdxCodec,
    ndx_out: NdxCodec,
}

impl FileSender<'_, '_> {
    fn send_files(&mut self) -> Result<(), TransferError> {
        let max_phase = if self.pull.protocol >= 29 { 2 } else { 1 };
        let mut phase = 0;
        loop {
            self.feed.fill(self.conn, &mut self.ndx_out)?;
            let Some(req) = self.read_request()? else {
                if self.feed.list_done() {
                    // Incremental recursion: the client finished a list,
                    // not a phase.
                    self.ndx_out.write(self.conn, NDX_DONE)?;
                    continue;
                }
                phase += 1;
                if phase > max_phase {
                    break;
                }
                self.ndx_out.write(self.conn, NDX_DONE)?;
                continue;
            };
            self.feed.fill(self.conn, &mut self.ndx_out)?;
            if req.iflags & ITEM_TRANSFER == 0 {
                self.echo(&req)?;
                continue;
            }
            if phase == 2 {
                return protocol_error("got transfer request in phase 2");
            }
            if self.pull.opts.dry_run {
                self.echo(&req)?;
                continue;
            }
            self.send_one(&req)?;
        }
        self.ndx_out.write(self.conn, NDX_DONE)?;
        Ok(())
    }

    /// rsync: main.c read_final_goodbye: the client's last word is one more
    /// end marker; from 31 on we answer it and it says it once more.
    fn read_goodbye(&mut self) -> Result<(), TransferError> {
        let mut ndx = self.read_goodbye_ndx()?;
        if self.pull.protocol >= 31 && ndx == NDX_DONE {
            self.ndx_out.write(self.conn, NDX_DONE)?;
            self.conn.flush()?;
            ndx = self.read_goodbye_ndx()?;
        }
        if ndx != NDX_DONE {
            return protocol_error(format!("invalid packet at end of run ({ndx})"));
        }
        Ok(())
    }

    fn read_goodbye_ndx(&mut self) -> Result<i32, TransferError> {
        let ndx = self.read_ndx()?;
        if self.pull.protocol >= 29 && ndx != NDX_DONE {
            self.conn.read_u16()?;
        }
        Ok(ndx)
    }

    /// rsync: rsync.c read_ndx_and_attrs. `None` is the end-of-phase marker.
    fn read_request(&mut self) -> Result<Option<Request>, TransferError> {
        let proto = self.pull.protocol;
        loop {
            let ndx = self.read_ndx()?;
            if ndx == NDX_DONE {
                return Ok(None);
            }
            if ndx < 0 {
                return protocol_error(format!("invalid file index {ndx}"));
            }
            let iflags = if proto >= 29 {
                self.conn.read_u16()?
            } else {
                ITEM_TRANSFER
            };
            // A protocol-29 generator's keep-alive: the list's length as index.
            let window = &mut self.feed.window;
            if proto < 30 && ndx as u32 == window.end() && iflags == ITEM_IS_NEW {
                self.conn.maybe_keepalive()?;
                continue;
            }
            if window.find(ndx as u32).is_none() {
                return protocol_error(format!("invalid file index {ndx}"));
            }
            let basis_type = if iflags & ITEM_BASIS_TYPE_FOLLOWS != 0 {
                self.conn.read_u8()?
            } else {
                FNAMECMP_FNAME
            };
            let xname = if iflags & ITEM_XNAME_FOLLOWS != 0 {
                let mut len = self.conn.read_u8()? as usize;
                if len & 0x80 != 0 {
                    len = ((len & 0x7f) << 8) | self.conn.read_u8()? as usize;
                }
                if len >= flist::MAX_PATH_LEN {
                    return protocol_error(format!("xname of {len} bytes is too long"));
                }
                let mut name = vec![0u8; len];
                self.conn.read_exact(&mut name)?;
                Some(name)
            } else {
                None
            };
            return Ok(Some(Request {
                ndx,
                iflags,
                basis_type,
                xname,
            }));
        }
    }

    /// The next index, after echoing any deletion counts the client sends
    /// (rsync: rsync.c read_ndx_and_attrs; rsync: main.c write_del_stats).
    fn read_ndx(&mut self) -> Result<i32, TransferError> {
        loop {
            let ndx = self.ndx_in.read(self.conn)?;
            if ndx != NDX_DEL_STATS || self.pull.protocol < 30 {
                return Ok(ndx);
            }
            let mut counts = [0i32; 5];
            for c in &mut counts {
                *c = self.conn.read_varint()?;
                if *c < 0 {
                    return protocol_error(format!("invalid deletion count {c}"));
                }
            }
            self.ndx_out.write(self.conn, NDX_DEL_STATS)?;
            for c in counts {
                self.conn.write_varint(c)?;
            }
        }
    }

    /// rsync: sender.c send_files: from protocol 30 on a requested file
    /// that will not be sent is named to the client (MSG_NO_SEND), whose
    /// generator would otherwise wait for it, as it does with incremental
    /// recursion before finishing a directory.
    fn not_sending(&mut self, ndx: i32) -> Result<(), TransferError> {
        if self.pull.protocol >= 30 {
            self.conn
                .send_msg_bytes(MsgTag::NoSend, &ndx.to_le_bytes())?;
        }
        Ok(())
    }

    /// rsync: sender.c write_ndx_and_attrs.
    fn echo(&mut self, req: &Request) -> io::Result<()> {
        self.ndx_out.write(self.conn, req.ndx)?;
        if self.pull.protocol < 29 {
            return Ok(());
        }
        self.conn.write_u16(req.iflags)?;
        if req.iflags & ITEM_BASIS_TYPE_FOLLOWS != 0 {
            self.conn.write_u8(req.basis_type)?;
        }
        if let Some(x) = &req.xname {
            self.conn.write_vstring(x)?;
        }
        Ok(())
    }

    /// rsync: io.c read_sum_head + rsync: sender.c receive_sums, with limits. The block
    /// length is bounded by protocol; the sums are kept only while they fit
    /// in [`MAX_SUM_BYTES`] and their blocks in [`MAX_MATCH_BLOCK_LEN`],
    /// otherwise they are read and dropped and the file is sent whole. In
    /// append mode the client sends the head only. Returns the sums and the
    /// head to echo back.
    fn receive_sums(&mut self, append: bool) -> Result<(BlockSums, [i32; 4]), TransferError> {
        let count = self.conn.read_i32()?;
        let block_len = self.conn.read_i32()?;
        let strong_len = self.conn.read_i32()?;
        let remainder = self.conn.read_i32()?;
        if count < 0 {
            return protocol_error(format!("invalid checksum count {count}"));
        }
        let max_block_len = if self.pull.protocol >= 30 {
            MAX_BLOCK_LEN
        } else {
            OLD_MAX_BLOCK_LEN
        };
        if !(0..=max_block_len).contains(&block_len) || (count > 0 && block_len == 0) {
            return protocol_error(format!("invalid block length {block_len}"));
        }
        if !(0..=self.strong_sum.kind.digest_len() as i32).contains(&strong_len) {
            return protocol_error(format!("invalid checksum length {strong_len}"));
        }
        if remainder < 0 || remainder > block_len {
            return protocol_error(format!("invalid remainder length {remainder}"));
        }
        let strong_len = strong_len as usize;
        let head = [count, block_len, strong_len as i32, remainder];
        if append {
            if block_len > MAX_MATCH_BLOCK_LEN {
                return protocol_error(format!("block length {block_len} too large to append"));
            }
            let sums = BlockSums::new(
                block_len as u32,
                remainder as u32,
                strong_len,
                count as usize,
            );
            return Ok((sums, head));
        }
        let keep = (count as usize).saturating_mul(4 + strong_len) <= MAX_SUM_BYTES
            && block_len <= MAX_MATCH_BLOCK_LEN;
        let kept = if keep { count as usize } else { 0 };
        let mut sums = BlockSums::new(block_len as u32, remainder as u32, strong_len, kept);
        let mut strong = [0u8; STRONG_SUM_LEN];
        for _ in 0..count {
            let weak = self.conn.read_i32()? as u32;
            self.conn.read_exact(&mut strong[..strong_len])?;
            if keep {
                sums.push(weak, &strong[..strong_len]);
            }
        }
        // The head we echo describes the sums we use: without them the
        // client must not expect block references.
        Ok((
            sums,
            if keep {
                head
            } else {
                [0, block_len, strong_len as i32, remainder]
            },
        ))
    }

    fn send_one(&mut self, req: &Request) -> Result<(), TransferError> {
        let proto = self.pull.protocol;
        let opts = self.pull.opts;
        let idx = req.ndx as u32;
        let (entry, path, full, sent_before) = match self.feed.window.find(idx) {
            Some(flist::Found::Entry { list, entry, sent }) if entry.is_file() => (
                entry.clone(),
                list.module_path(entry),
                list.full_name(entry, self.pull.module),
                *sent,
            ),
            _ => return protocol_error(format!("refusing to transfer non-file index {idx}")),
        };
        let entry = &entry;
        // A redo (the second request for a file) is never an append: the
        // client discarded what it had.
        let append = opts.append > 0 && !sent_before;
        let (sums, head) = self.receive_sums(append)?;
        let opened = if opts.copy_links || opts.copy_dirlinks || opts.copy_unsafe_links {
            self.pull
                .source
                .resolve(&path, true)
                .and_then(|real| self.pull.source.open(&real))
        } else {
            self.pull.source.open(&path)
        };
        let file = match opened {
            Ok(f) => f,
            Err(err) => {
                if err.kind() == io::ErrorKind::NotFound {
                    let tag = if proto < 28 {
                        MsgTag::Error
                    } else {
                        MsgTag::Info
                    };
                    self.conn
                        .send_msg(tag, format!("file has vanished: {full}\n").as_bytes())?;
                } else {
                    let text = format!(
                        "rsync: [sender] send_files failed to open {full}: {}\n",
                        flist::describe_os_error(&err)
                    );
                    self.conn.send_msg(MsgTag::Error, text.as_bytes())?;
                }
                return self.not_sending(req.ndx);
            }
        };
        let size = file.metadata().map(|m| m.len())?;
        if append && size < entry.size {
            let text = format!("skipped diminished file: {full}\n");
            self.conn.send_msg(MsgTag::Info, text.as_bytes())?;
            return self.not_sending(req.ndx);
        }
        let updating_basis = opts.inplace
            && if proto >= 29 {
                req.basis_type == FNAMECMP_FNAME
            } else {
                true
            };
        // Below protocol 30, --append always verifies (rsync: compat.c
        // setup_protocol); from 30 on only --append-verify does.
        let mode = if append {
            MatchMode::Append {
                verify: opts.append > 1 || proto < 30,
            }
        } else if updating_basis {
            MatchMode::Inplace
        } else {
            MatchMode::Normal
        };

        self.echo(req)?;
        for v in head {
            self.conn.write_i32(v)?;
        }

        let file_req = FileRequest {
            path: &path,
            size,
            sums: &sums,
            strong: self.strong_sum,
            mode,
            protocol: proto,
            with_matched_data: self.codec.is_some(),
        };
        let mut tokens = Tokens::new(self.codec.as_mut(), &mut *self.conn);
        let outcome = self
            .memo
            .send(&mut self.matcher, &file, file_req, &mut tokens);
        let outcome = match outcome {
            Ok(o) => o,
            Err(MatchError::Sink(e)) => return Err(e.into()),
            Err(MatchError::Read(e)) => {
                // As rsync: match.c does after a read error: end the file's stream
                // with a checksum the client is sure to reject.
                tokens.finish()?;
                let mut sum = Digest::zeros(self.strong_sum.kind.digest_len());
                spoil_file_sum(&mut sum);
                self.conn.write_all(&sum)?;
                let text = format!(
                    "rsync: [sender] read errors mapping {full}: {}\n",
                    flist::describe_os_error(&e)
                );
                self.conn.send_msg(MsgTag::Error, text.as_bytes())?;
                return Ok(());
            }
        };
        tokens.finish()?;
        self.conn.write_all(&outcome.file_sum)?;
        if outcome.source_len < size {
            // The file shrank while we read it: the matcher sent a checksum
            // the client rejects (it will ask again), and rsync's map_ptr
            // reports the short read as ENODATA.
            let text = format!(
                "rsync: [sender] read errors mapping {full}: {}\n",
                flist::describe_os_error(&io::Error::from_raw_os_error(libc::ENODATA))
            );
            self.conn.send_msg(MsgTag::Error, text.as_bytes())?;
        }
        if let Some(flist::Found::Entry { sent, .. }) = self.feed.window.find(idx) {
            *sent = true;
        }
        self.stats.files_sent += 1;
        self.stats.literal_bytes += outcome.literal_bytes;
        self.stats.matched_bytes += outcome.matched_bytes;
        Ok(())
    }
}
