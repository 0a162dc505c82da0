//! The delta memo: a classroom of laptops holding the same build sends the
//! same block sums for the same files (builds give every client the same
//! checksum seed), so the result of matching one file against one set of
//! sums is kept and replayed instead of searched for again.
//!
//! Owns the memo ([`Memo`]: its key and values, on the table of
//! [`super::share`], which keeps the entries, their memory, the LRU order
//! and who computes what) and one connection's use of it ([`Session`]). It must not
//! know the wire or compression: it sits between the sender and the token
//! writer, so `-z` still compresses per connection, and it hands the token
//! writer exactly the calls the matcher would (the same literal pieces, the
//! same blocks, in the same order), so a replay produces the same stream.
//!
//! - The key: the build, the file's path and identity (size, mtime, inode,
//!   device), the protocol, the sum kind and seed, the sum head, the match
//!   mode, and SHA-256 over all the sums: a request whose sums differ in any
//!   byte computes its own.
//! - The value ([`Delta`]): the matcher's calls as lengths and block
//!   indices (offsets follow from them), never the file's bytes, and the
//!   whole-file sum, so a replay hashes nothing and reads only the literal
//!   ranges (and, for a compressed stream, the matched ones as well, which
//!   the compressor's dictionary needs).
//! - Concurrency: the first request for a key computes it, recording the
//!   calls without sending them, then replays them to its own client like
//!   everyone else; identical requests meanwhile wait for the matching
//!   only (at most [`MEMO_WAIT_LIMIT`]), never for a slow client. When it
//!   fails they compute for themselves. Nothing is computed twice while it
//!   succeeds.
//! - Limits: entries are counted by their memory against the memo's limit
//!   ([`MEMO_MAX_BYTES`] in the daemon) and evicted least recently used
//!   first; a file whose calls would take more than a [`ENTRY_SHARE`]th of
//!   it is not kept. [`Memo::drop_build`] forgets a build whose tree left the
//!   cache.
//!
//! Only builds use it: a build's files never change under a name and
//! identity, while a static module's may.

use super::share::{BuildKey, Claim, Counts, Table, TreeId, ENTRY_OVERHEAD};
use crate::delta::{BlockSums, MatchError, MatchMode, MatchOutcome, Matcher, StrongSum, TokenSink};
use sha2::digest::Digest as _;
use sha2::Sha256;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;
use std::time::Duration;

/// The memory the daemon's memo may hold: the recorded calls and keys of
/// all entries. A 64 MiB file against 8 KiB blocks records about 100 KiB,
/// so this keeps a few hundred large files, or every file of a build.
pub(crate) const MEMO_MAX_BYTES: u64 = 32 << 20;

/// One entry may take at most this fraction of the memo's limit (a
/// quarter): a file matched in more calls is computed, sent and not kept,
/// and its recording stops as soon as it passes that.
pub(crate) const ENTRY_SHARE: u64 = 4;

/// How long a request waits for an identical one to finish computing
/// before it computes for itself (a computing connection whose client
/// stops reading must not hold up the others for its whole timeout).
pub(crate) const MEMO_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// One call the matcher made on its sink. Literal pieces are the matcher's
/// own (a window's worth at most, far below 4 GiB), blocks are at most
/// `MAX_MATCH_BLOCK_LEN` long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Literal(u32),
    Matched { block: u32, len: u32 },
}

/// One file's result against one set of sums.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delta {
    calls: Vec<Call>,
    outcome: MatchOutcome,
}

impl Delta {
    /// The memory it takes in the memo, with the path of its key.
    fn memory(&self, path_len: usize) -> u64 {
        (self.calls.len() * std::mem::size_of::<Call>() + path_len) as u64
    }

    /// Hands the sink the calls the matcher made, reading their bytes from
    /// `file`: the literal ranges always, the matched ones only when
    /// `with_matched_data` (a compressor needs them; the plain stream sends
    /// block numbers only and gets empty slices). `buf` is reused.
    pub(crate) fn replay<S: TokenSink>(
        &self,
        file: &File,
        with_matched_data: bool,
        buf: &mut Vec<u8>,
        sink: &mut S,
    ) -> Result<MatchOutcome, MatchError> {
        let mut offset = 0u64;
        for call in &self.calls {
            match *call {
                Call::Literal(len) => {
                    let data = read_at(file, offset, len, buf)?;
                    sink.literal(data).map_err(MatchError::Sink)?;
                    offset += u64::from(len);
                }
                Call::Matched { block, len } => {
                    let data = if with_matched_data {
                        read_at(file, offset, len, buf)?
                    } else {
                        &[]
                    };
                    sink.matched(block, data).map_err(MatchError::Sink)?;
                    offset += u64::from(len);
                }
            }
        }
        Ok(self.outcome.clone())
    }
}

fn read_at<'b>(
    file: &File,
    offset: u64,
    len: u32,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], MatchError> {
    let len = len as usize;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    file.read_exact_at(&mut buf[..len], offset)
        .map_err(MatchError::Read)?;
    Ok(&buf[..len])
}

/// Everything that decides a file's result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    build: Arc<str>,
    path: Box<[u8]>,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
    dev: u64,
    protocol: u32,
    sum_kind: &'static str,
    seed: u32,
    /// count, block length, strong length, remainder.
    head: [u32; 4],
    inplace: bool,
    sums: [u8; 32],
}

impl BuildKey for Key {
    fn build(&self) -> &str {
        &self.build
    }
}

/// SHA-256 over the head and every sum, in order.
fn digest_sums(sums: &BlockSums) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in [
        sums.count() as u32,
        sums.block_len(),
        sums.strong_len() as u32,
        sums.remainder(),
    ] {
        h.update(v.to_le_bytes());
    }
    for b in 0..sums.count() {
        h.update(sums.weak(b).to_le_bytes());
        h.update(sums.strong(b));
    }
    h.finalize().into()
}

/// What the memo did, for status and the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemoCounts {
    /// Entries held now, and their memory.
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    /// Files sent by replaying an entry (including after waiting).
    pub(crate) replayed: u64,
    /// Files computed for the others (kept, or too large to keep).
    pub(crate) computed: u64,
    /// Entries evicted for room, and dropped with their build.
    pub(crate) evicted: u64,
    pub(crate) dropped: u64,
}

/// The memo of one daemon; see the module comment.
pub struct Memo {
    table: Table<Key, Delta>,
}

impl Memo {
    /// A memo holding at most `limit` bytes, whose identical requests
    /// wait [`MEMO_WAIT_LIMIT`] for each other.
    pub(crate) fn new(limit: u64) -> Memo {
        Memo::with_wait(limit, MEMO_WAIT_LIMIT)
    }

    /// A memo whose identical requests wait `wait` for each other.
    pub(crate) fn with_wait(limit: u64, wait: Duration) -> Memo {
        Memo {
            table: Table::new(limit, ENTRY_SHARE, wait),
        }
    }

    /// The counters now.
    pub(crate) fn counts(&self) -> MemoCounts {
        let Counts {
            held,
            bytes,
            hits,
            built,
            evicted,
            dropped,
        } = self.table.counts();
        MemoCounts {
            entries: held,
            bytes,
            replayed: hits,
            computed: built,
            evicted,
            dropped,
        }
    }

    /// Forgets every entry of `build` (its tree left the cache); returns
    /// how many went. Computations under way finish for their waiters and
    /// are not kept.
    pub(crate) fn drop_build(&self, build: &str) -> u64 {
        self.table.drop_build(build)
    }

    /// A connection's handle on the memo for the build `name` served from
    /// `tree`. A tree other than the one seen before means the build was
    /// replaced or evicted by another process (the admin commands): its
    /// old entries are dropped here.
    pub(crate) fn for_build(memo: &Arc<Memo>, name: &str, tree: TreeId) -> BuildMemo {
        let dropped = memo.table.note_tree(name, tree);
        if dropped > 0 {
            log::info!("delta memo: dropped {dropped} entries of build {name}: a new tree");
        }
        BuildMemo {
            memo: Arc::clone(memo),
            build: name.into(),
        }
    }
}

/// A sink that only writes the calls down, until they would pass
/// `max_calls`.
struct Recording {
    calls: Vec<Call>,
    max_calls: usize,
    overflow: bool,
}

impl Recording {
    fn note(&mut self, len: usize, call: impl FnOnce(u32) -> Call) {
        if self.overflow {
            return;
        }
        match u32::try_from(len) {
            Ok(len) if self.calls.len() < self.max_calls => self.calls.push(call(len)),
            _ => {
                self.overflow = true;
                self.calls = Vec::new();
            }
        }
    }
}

impl TokenSink for Recording {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        self.note(data.len(), Call::Literal);
        Ok(())
    }

    fn matched(&mut self, block: u32, data: &[u8]) -> io::Result<()> {
        self.note(data.len(), |len| Call::Matched { block, len });
        Ok(())
    }
}

/// Which build a connection pulls, with the daemon's memo
/// ([`Memo::for_build`]).
#[derive(Clone)]
pub(crate) struct BuildMemo {
    memo: Arc<Memo>,
    build: Arc<str>,
}

/// One file to send, as the sender knows it.
pub(crate) struct FileRequest<'a> {
    /// The path in the module (with the file's identity, part of the key).
    pub(crate) path: &'a [u8],
    /// The length announced in the file list.
    pub(crate) size: u64,
    pub(crate) sums: &'a BlockSums,
    pub(crate) strong: StrongSum,
    pub(crate) mode: MatchMode,
    pub(crate) protocol: u32,
    /// The token writer compresses: matched blocks must carry their bytes.
    pub(crate) with_matched_data: bool,
}

/// One connection's use of the memo: none for static modules.
pub(crate) struct Session {
    memo: Option<BuildMemo>,
    /// Reused for the bytes of replayed calls.
    buf: Vec<u8>,
}

impl Session {
    pub(crate) fn new(memo: Option<BuildMemo>) -> Session {
        Session {
            memo,
            buf: Vec::new(),
        }
    }

    /// Sends `file` as [`Matcher::send`] would, through the memo when the
    /// pull has one: replayed when an identical request was computed,
    /// otherwise computed (and recorded for the next ones).
    pub(crate) fn send<S: TokenSink>(
        &mut self,
        matcher: &mut Matcher,
        file: &File,
        req: FileRequest,
        sink: &mut S,
    ) -> Result<MatchOutcome, MatchError> {
        let Some(key) = self.key(file, &req) else {
            return matcher.send(file, req.size, req.sums, req.strong, req.mode, sink);
        };
        let memo = &self.memo.as_ref().expect("a key needs a memo").memo;
        let claim = memo.table.claim(key, &mut || Ok(()));
        match claim.map_err(MatchError::Sink)? {
            Claim::Ready(delta) => delta.replay(file, req.with_matched_data, &mut self.buf, sink),
            Claim::Produce(None) => {
                matcher.send(file, req.size, req.sums, req.strong, req.mode, sink)
            }
            Claim::Produce(Some(producer)) => {
                // Computed apart from this connection's client, so that
                // the identical requests waiting meanwhile wait for the
                // matching only, never for a slow laptop; then sent to
                // this client like to every other.
                let max_bytes = memo.table.entry_limit().saturating_sub(ENTRY_OVERHEAD);
                let mut rec = Recording {
                    calls: Vec::new(),
                    max_calls: (max_bytes / std::mem::size_of::<Call>() as u64) as usize,
                    overflow: false,
                };
                let computed =
                    matcher.send(file, req.size, req.sums, req.strong, req.mode, &mut rec);
                match computed {
                    // A file that changed size while read is not what the
                    // key says, and one that failed to read must say so to
                    // its client: both are sent as computing them does.
                    Ok(outcome) if !rec.overflow && !outcome.size_changed => {
                        let delta = Arc::new(Delta {
                            calls: rec.calls,
                            outcome,
                        });
                        producer.keep(Arc::clone(&delta), delta.memory(req.path.len()));
                        delta.replay(file, req.with_matched_data, &mut self.buf, sink)
                    }
                    _ => {
                        drop(producer);
                        matcher.send(file, req.size, req.sums, req.strong, req.mode, sink)
                    }
                }
            }
        }
    }

    /// The memo key of a request, or `None` when it must not use the memo:
    /// no memo, append mode (the receiver's part decides), or a file
    /// whose size is not the listed one.
    fn key(&self, file: &File, req: &FileRequest) -> Option<Key> {
        let memo = self.memo.as_ref()?;
        let inplace = match req.mode {
            MatchMode::Normal => false,
            MatchMode::Inplace => true,
            MatchMode::Append { .. } => return None,
        };
        let meta = file.metadata().ok()?;
        if meta.len() != req.size {
            return None;
        }
        let sums = req.sums;
        Some(Key {
            build: Arc::clone(&memo.build),
            path: req.path.into(),
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ino: meta.ino(),
            dev: meta.dev(),
            protocol: req.protocol,
            sum_kind: req.strong.kind.name(),
            seed: req.strong.seed,
            head: [
                sums.count() as u32,
                sums.block_len(),
                sums.strong_len() as u32,
                sums.remainder(),
            ],
            inplace,
            sums: digest_sums(sums),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::generate;
    use crate::protocol::token::{Codec, TokenWriter, Tokens};
    use std::io::Write;

    /// A random-looking file, and a basis with a few edits.
    fn file_and_basis(len: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut x = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut data = data;
        let edits: Vec<usize> = (1000..len).step_by(len / 7 + 1).collect();
        // Each edited (literal) place repeats bytes of an unchanged
        // (matched) one just before it, for a compressor to refer back to.
        for &at in edits.iter().filter(|&&at| at >= 20_000 && at + 500 <= len) {
            data.copy_within(at - 10_000..at - 9_500, at);
        }
        let mut basis = data.clone();
        for at in edits {
            basis[at] ^= 0x55;
        }
        basis.truncate(len - len / 10);
        (data, basis)
    }

    /// The file, and its path: each send opens it afresh, as the sender does.
    fn temp_file(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(data).unwrap();
        (dir, path)
    }

    fn sums_of(basis: &[u8], strong: StrongSum) -> BlockSums {
        let len = basis.len() as u64;
        let block_len = crate::delta::block_len_for(len, 29);
        let strong_len = crate::delta::strong_len_for(len, block_len, false, 16);
        generate(basis, len, block_len, strong_len, strong).unwrap()
    }

    /// The token stream one session sends for the file, plain or with a
    /// fresh zlib codec.
    fn stream(
        session: &mut Session,
        file: &std::path::Path,
        size: u64,
        sums: &BlockSums,
        strong: StrongSum,
        compress: bool,
    ) -> (Vec<u8>, MatchOutcome) {
        let mut out = Vec::new();
        let mut codec = compress.then(|| {
            Codec::for_options(crate::protocol::options::Compression::Zlib, None, 29)
                .unwrap()
                .unwrap()
        });
        let mut tokens = Tokens::new(codec.as_mut(), &mut out);
        let req = FileRequest {
            path: b"dir/f",
            size,
            sums,
            strong,
            mode: MatchMode::Normal,
            protocol: 29,
            with_matched_data: compress,
        };
        let file = File::open(file).unwrap();
        let outcome = session
            .send(&mut Matcher::new(), &file, req, &mut tokens)
            .unwrap();
        tokens.finish().unwrap();
        (out, outcome)
    }

    fn build_memo(memo: &Arc<Memo>) -> BuildMemo {
        BuildMemo {
            memo: Arc::clone(memo),
            build: "build-1".into(),
        }
    }

    #[test]
    fn a_replay_sends_exactly_the_computed_stream() {
        let strong = StrongSum::md4_auto(77);
        for (len, seed) in [(0, 1), (1, 2), (700, 3), (300_000, 4), (1_500_000, 5)] {
            let (data, basis) = file_and_basis(len.max(1), seed);
            let data = &data[..len];
            let (_dir, file) = temp_file(data);
            let sums = sums_of(&basis, strong);
            for compress in [false, true] {
                let memo = Arc::new(Memo::new(MEMO_MAX_BYTES));
                let direct = stream(
                    &mut Session::new(None),
                    &file,
                    len as u64,
                    &sums,
                    strong,
                    compress,
                );
                let mut first = Session::new(Some(build_memo(&memo)));
                let computed = stream(&mut first, &file, len as u64, &sums, strong, compress);
                assert_eq!(memo.counts().computed, 1);
                let mut second = Session::new(Some(build_memo(&memo)));
                let replayed = stream(&mut second, &file, len as u64, &sums, strong, compress);
                assert_eq!(memo.counts().replayed, 1, "len {len}");
                assert_eq!(direct, computed, "len {len} compress {compress}");
                assert_eq!(direct, replayed, "len {len} compress {compress}");
            }
        }
    }

    #[test]
    fn sums_that_differ_in_one_byte_compute_their_own() {
        let strong = StrongSum::md4_auto(5);
        let (data, basis) = file_and_basis(200_000, 9);
        let (_dir, file) = temp_file(&data);
        let memo = Arc::new(Memo::new(MEMO_MAX_BYTES));
        let sums = sums_of(&basis, strong);
        let mut other_basis = basis.clone();
        other_basis[5] ^= 1;
        let other = sums_of(&other_basis, strong);
        let size = data.len() as u64;
        let mut s = Session::new(Some(build_memo(&memo)));
        stream(&mut s, &file, size, &sums, strong, false);
        let got = stream(&mut s, &file, size, &other, strong, false);
        let want = stream(&mut Session::new(None), &file, size, &other, strong, false);
        assert_eq!(got, want);
        assert_eq!(memo.counts().computed, 2);
        assert_eq!(memo.counts().replayed, 0);
        // Another seed is another key too.
        let reseeded = StrongSum::md4_auto(6);
        stream(
            &mut s,
            &file,
            size,
            &sums_of(&basis, reseeded),
            reseeded,
            false,
        );
        assert_eq!(memo.counts().computed, 3);
    }

    #[test]
    fn entries_are_evicted_by_memory_and_dropped_with_their_build() {
        let (data, basis) = file_and_basis(100_000, 3);
        let (_dir, file) = temp_file(&data);
        let size = data.len() as u64;
        // Entries of one file against one basis, each under its own seed.
        let fill = |memo: &Arc<Memo>, seeds: std::ops::Range<u32>| {
            let mut s = Session::new(Some(build_memo(memo)));
            for seed in seeds {
                let strong = StrongSum::md4_auto(seed);
                stream(&mut s, &file, size, &sums_of(&basis, strong), strong, false);
            }
        };
        let probe = Arc::new(Memo::new(MEMO_MAX_BYTES));
        fill(&probe, 1..2);
        let one = probe.counts().bytes;
        assert!(one > ENTRY_OVERHEAD);

        // Room for four such entries: the fifth evicts the oldest.
        let memo = Arc::new(Memo::new(4 * one + one / 2));
        fill(&memo, 1..6);
        let c = memo.counts();
        assert_eq!((c.entries, c.computed, c.evicted), (4, 5, 1));
        assert!(c.bytes <= 4 * one + one / 2);
        fill(&memo, 1..2);
        assert_eq!(memo.counts().replayed, 0, "the oldest went");
        fill(&memo, 5..6);
        assert_eq!(memo.counts().replayed, 1, "the newest stayed");

        // An entry larger than a quarter of the memo is sent, not kept.
        let small = Arc::new(Memo::new(ENTRY_SHARE * one - 1));
        fill(&small, 1..3);
        assert_eq!(small.counts().entries, 0);

        assert_eq!(memo.drop_build("build-2"), 0);
        assert_eq!(memo.drop_build("build-1"), 4);
        assert_eq!(memo.counts().entries, 0);
        assert_eq!(memo.counts().bytes, 0);
    }
}
