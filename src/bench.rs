//! `upserv bench` and `cargo bench --bench delta`: the delta engine's
//! throughput on this machine, on synthetic basis/target pairs or on a
//! given FILE against a BASIS.
//!
//! Owns the timing and the file reading of the benchmark; the synthetic
//! inputs are pure helpers in `delta::bench`. Only the matcher is timed: the
//! basis sums are computed beforehand, as a receiver would send them (block
//! length and strong-sum length as rsync's generator picks at protocol 29).
//! Every case runs with each digest a client can choose, since the strong
//! sum is what a matching block costs and the whole-file sum what every byte
//! costs. Last, MD4 alone on each of its SIMD paths this CPU runs (the one
//! the matcher uses marked), since which one a server gets depends on its
//! CPU. It must not assert anything about speed; it reports.
//!
//! With `--clients N` it measures a classroom instead: N identical laptops
//! asking for one file against the same basis, each on its own thread as
//! each connection is, through the daemon's own path for builds (the delta
//! memo in front of the matcher, then the plain token writer, into a sink
//! instead of a socket); then the same without the memo, as N laptops cost
//! when nothing is shared. It reports the process's CPU time for each.

use crate::delta::bench::{disk_image, edit, edits_for, sums_for, Prng};
use crate::delta::md4x::{md4_many_with, Path as Md4Path, MAX_LANES};
use crate::delta::{BlockSums, MatchMode, Matcher, StrongSum, SumKind, TokenSink};
use crate::protocol::memo::{BuildMemo, FileRequest, Memo, Session, MEMO_MAX_BYTES};
use crate::protocol::share::TreeId;
use crate::protocol::token::{TokenWriter, Tokens};
use crate::protocol::wire::WireWrite;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A fixed non-zero checksum seed, so block sums carry one as on the wire.
const SEED: u32 = 0x5eed_1234;
/// Seed of the generator of the synthetic data: every run sees the same bytes.
const DATA_SEED: u64 = 0x0123_4567_89ab_cdef;
/// The digests measured, each under its rsync name ("md4" is the default,
/// with the seeded whole-file sum; a named md4 costs the same).
pub(crate) const DIGESTS: [SumKind; 6] = [
    SumKind::Md4Auto,
    SumKind::Md5,
    SumKind::Sha1,
    SumKind::Xxh64,
    SumKind::Xxh3,
    SumKind::Xxh128,
];
/// Bytes per megabyte in the reported rate.
const MEGA: f64 = 1_000_000.0;
/// The most laptops `--clients` stands for: one thread each, as the
/// daemon's workers are, and a thousand is more than any classroom.
pub const MAX_CLIENTS: u32 = 1024;
/// The protocol the clients' requests carry (part of the memo's key): the
/// one whose block length `sums_for` picks.
const CLIENTS_PROTOCOL: u32 = 29;
/// The build the clients pull, for the memo's key.
const CLIENTS_BUILD: &str = "bench";

/// One measured case.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// What was matched against what, and the digest.
    pub(crate) name: String,
    /// Bytes of the file matched.
    pub(crate) bytes: u64,
    /// Wall time of the matcher.
    pub(crate) seconds: f64,
    /// CPU time the matcher's thread used: on a busy machine a steadier
    /// measure than the wall time.
    pub(crate) cpu_seconds: f64,
    /// `bytes / seconds`, in millions of bytes per second.
    pub(crate) mb_per_s: f64,
    /// Bytes the matcher sent as literal data.
    pub(crate) literal_bytes: u64,
    /// Bytes covered by matched blocks.
    pub(crate) matched_bytes: u64,
}

impl BenchResult {
    /// Column titles lined up with the `Display` of a result.
    pub const HEADER: &'static str =
        "case                          bytes   seconds       MB/s   cpu s  cpu MB/s        literal        matched";
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<22} {:>12} {:>9.3} {:>10.1} {:>7.3} {:>9.1} {:>14} {:>14}",
            self.name,
            self.bytes,
            self.seconds,
            self.mb_per_s,
            self.cpu_seconds,
            self.bytes as f64 / self.cpu_seconds.max(f64::MIN_POSITIVE) / MEGA,
            self.literal_bytes,
            self.matched_bytes
        )
    }
}

/// Measure the matcher on synthetic `size`-byte files (unchanged, 1% of
/// blocks edited, entirely different, each with every digest; then a
/// mostly-zero disk image), or, with `pair = Some((file, basis))`, on FILE
/// against BASIS with every digest.
pub fn run(size: u64, pair: Option<(&Path, &Path)>) -> io::Result<Vec<BenchResult>> {
    match pair {
        Some((file, basis)) => run_pair(file, basis),
        None => run_synthetic(size),
    }
}

fn run_pair(file: &Path, basis: &Path) -> io::Result<Vec<BenchResult>> {
    let basis_len = std::fs::metadata(basis)?.len();
    let mut results = Vec::new();
    for kind in DIGESTS {
        let sum = StrongSum { kind, seed: SEED };
        let sums = sums_for(BufReader::new(File::open(basis)?), basis_len, sum)?;
        let source = File::open(file)?;
        let len = source.metadata()?.len();
        let name = format!("{} vs basis, {}", file.display(), kind.name());
        results.push(measure(&name, source, len, &sums, sum)?);
    }
    Ok(results)
}

fn run_synthetic(size: u64) -> io::Result<Vec<BenchResult>> {
    let len = usize::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large here"))?;
    let mut rng = Prng::new(DATA_SEED);
    let edits = edits_for(size);
    let basis = rng.bytes(len);
    let edited = edit(&basis, edits, &mut rng);
    let other = rng.bytes(len);
    let mut results = Vec::new();
    for kind in DIGESTS {
        let sum = StrongSum { kind, seed: SEED };
        let sums = sums_for(&basis[..], size, sum)?;
        let name = kind.name();
        for (case, data) in [
            ("unchanged", &basis),
            ("1% edited", &edited),
            ("all different", &other),
        ] {
            let name = format!("{case}, {name}");
            results.push(measure(&name, &data[..], data.len() as u64, &sums, sum)?);
        }
    }
    drop((edited, other));

    let md4 = StrongSum::md4_auto(SEED);
    let disk = disk_image(len, &mut rng);
    let sums = sums_for(&disk[..], size, md4)?;
    let mut changed = edit(&disk, edits, &mut rng);
    let fresh = (len / 50).min(changed.len());
    let at = rng.below(changed.len() - fresh + 1);
    rng.fill(&mut changed[at..at + fresh]);
    let n = changed.len() as u64;
    results.push(measure("disk image, 2% new", &changed[..], n, &sums, md4)?);
    results.extend(md4_paths(&basis, sums.block_len() as usize));
    Ok(results)
}

fn measure(
    name: &str,
    source: impl Read,
    len: u64,
    sums: &BlockSums,
    sum: StrongSum,
) -> io::Result<BenchResult> {
    let mut matcher = Matcher::new();
    let mut sink = Discard::default();
    let started = Instant::now();
    let cpu_started = thread_cpu_seconds();
    let outcome = matcher
        .send(source, len, sums, sum, MatchMode::Normal, &mut sink)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let cpu_seconds = thread_cpu_seconds() - cpu_started;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = outcome.source_len;
    Ok(BenchResult {
        name: name.to_string(),
        bytes,
        seconds,
        cpu_seconds,
        mb_per_s: bytes as f64 / seconds.max(f64::MIN_POSITIVE) / MEGA,
        literal_bytes: outcome.literal_bytes,
        matched_bytes: outcome.matched_bytes,
    })
}

/// MD4 alone, on each path this CPU runs (`delta::md4x`): `data` in blocks
/// of `block_len`, hashed with a seed as the matcher hashes consecutive
/// blocks, `MAX_LANES` at a time. The path the matcher uses is marked.
fn md4_paths(data: &[u8], block_len: usize) -> Vec<BenchResult> {
    let seed = SEED.to_le_bytes();
    let blocks: Vec<&[u8]> = data.chunks_exact(block_len.max(1)).collect();
    let bytes = (blocks.len() * block_len) as u64;
    let mut digests = [[0u8; 16]; MAX_LANES];
    Md4Path::available()
        .into_iter()
        .map(|path| {
            let started = Instant::now();
            let cpu_started = thread_cpu_seconds();
            for group in blocks.chunks(MAX_LANES) {
                md4_many_with(path, group, &seed, &mut digests);
                std::hint::black_box(&digests);
            }
            let cpu_seconds = thread_cpu_seconds() - cpu_started;
            let seconds = started.elapsed().as_secs_f64();
            let used = if path == Md4Path::best() {
                " (used)"
            } else {
                ""
            };
            BenchResult {
                name: format!("md4 only, {}{used}", path.name()),
                bytes,
                seconds,
                cpu_seconds,
                mb_per_s: bytes as f64 / seconds.max(f64::MIN_POSITIVE) / MEGA,
                literal_bytes: 0,
                matched_bytes: 0,
            }
        })
        .collect()
}

/// N laptops pulling one file, with or without the memo.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientsResult {
    pub clients: u32,
    /// Whether the requests went through the delta memo.
    pub memo: bool,
    /// Bytes of the file each client was sent.
    pub bytes: u64,
    /// Wall time from starting the first client to the last one's end.
    pub seconds: f64,
    /// CPU time the whole process used meanwhile (all threads).
    pub cpu_seconds: f64,
    /// How many of the requests ran the matcher (the others were replays).
    pub matcher_runs: u64,
}

impl fmt::Display for ClientsResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} clients, memo {} cpu {:.3} s, wall {:.3} s, matcher ran {} of {}, {} bytes each",
            self.clients,
            if self.memo { "on," } else { "off," },
            self.cpu_seconds,
            self.seconds,
            self.matcher_runs,
            self.clients,
            self.bytes
        )
    }
}

/// What N laptops cost without the memo over what they cost with it, in
/// CPU time: the line `upserv bench --clients` ends with.
pub fn clients_ratio(with: &ClientsResult, without: &ClientsResult) -> String {
    format!(
        "cpu without the memo / with it: {:.2}",
        without.cpu_seconds / with.cpu_seconds.max(f64::MIN_POSITIVE)
    )
}

/// Measure `clients` identical requests for FILE against BASIS (`pair`),
/// or for a 1%-edited copy of `size` generated bytes against them, with
/// the memo and then without; see the module comment.
pub fn run_clients(
    clients: u32,
    size: u64,
    pair: Option<(&Path, &Path)>,
) -> io::Result<[ClientsResult; 2]> {
    if !(1..=MAX_CLIENTS).contains(&clients) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{clients} clients: expected 1 to {MAX_CLIENTS}"),
        ));
    }
    let strong = StrongSum::md4_auto(SEED);
    let (sums, _generated, file) = match pair {
        Some((file, basis)) => {
            let len = std::fs::metadata(basis)?.len();
            let sums = sums_for(BufReader::new(File::open(basis)?), len, strong)?;
            (sums, None, file.to_path_buf())
        }
        None => {
            let (generated, sums) = Generated::new(size, strong)?;
            let path = generated.path.clone();
            (sums, Some(generated), path)
        }
    };
    let with = classroom(clients, &file, &sums, strong, true)?;
    let without = classroom(clients, &file, &sums, strong, false)?;
    if with.bytes != without.bytes {
        return Err(io::Error::other(
            "the memo's replay sent another stream than the matcher",
        ));
    }
    Ok([with, without])
}

/// A generated file on disk (each client opens it, as the sender opens a
/// file), removed when dropped.
struct Generated {
    path: PathBuf,
}

impl Generated {
    /// The 1%-edited copy of `size` generated bytes, on disk, and the sums
    /// of those bytes as its basis.
    fn new(size: u64, strong: StrongSum) -> io::Result<(Generated, BlockSums)> {
        let len = usize::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large here"))?;
        let mut rng = Prng::new(DATA_SEED);
        let basis = rng.bytes(len);
        let edited = edit(&basis, edits_for(size), &mut rng);
        let path = std::env::temp_dir().join(format!("upserv-bench-{}", std::process::id()));
        let generated = Generated { path };
        File::options()
            .write(true)
            .create_new(true)
            .open(&generated.path)?
            .write_all(&edited)?;
        Ok((generated, sums_for(&basis[..], size, strong)?))
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `clients` threads, each sending `file` once as a connection does,
/// through one fresh memo when `memo`, and measures them together.
fn classroom(
    clients: u32,
    file: &Path,
    sums: &BlockSums,
    strong: StrongSum,
    memo: bool,
) -> io::Result<ClientsResult> {
    let shared = std::sync::Arc::new(Memo::new(MEMO_MAX_BYTES));
    let tree = TreeId::of(file)?;
    let build = memo.then(|| Memo::for_build(&shared, CLIENTS_BUILD, tree));
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    let sent: Vec<io::Result<u64>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let build = build.clone();
                s.spawn(move || one_client(file, sums, strong, build))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a client panicked")))
            })
            .collect()
    });
    let cpu_seconds = process_cpu_seconds() - cpu_started;
    let seconds = started.elapsed().as_secs_f64();
    let mut bytes = None;
    for sent in sent {
        let sent = sent?;
        if *bytes.get_or_insert(sent) != sent {
            return Err(io::Error::other("two clients were sent different streams"));
        }
    }
    Ok(ClientsResult {
        clients,
        memo,
        bytes: bytes.unwrap_or(0),
        seconds,
        cpu_seconds,
        matcher_runs: u64::from(clients).saturating_sub(shared.counts().replayed),
    })
}

/// One laptop's request, sent as the sender sends a file of a build:
/// the memo's session, the plain token writer, then the whole-file sum.
/// Returns the bytes sent.
fn one_client(
    path: &Path,
    sums: &BlockSums,
    strong: StrongSum,
    build: Option<BuildMemo>,
) -> io::Result<u64> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut sink = Discard::default();
    let mut tokens = Tokens::new(None, &mut sink);
    let req = FileRequest {
        path: b"file",
        size,
        sums,
        strong,
        mode: MatchMode::Normal,
        protocol: CLIENTS_PROTOCOL,
        with_matched_data: false,
    };
    let outcome = Session::new(build)
        .send(&mut Matcher::new(), &file, req, &mut tokens)
        .map_err(|e| io::Error::other(e.to_string()))?;
    tokens.finish()?;
    sink.write_all(&outcome.file_sum)?;
    Ok(sink.bytes)
}

/// CPU time (user and system) used by the whole process so far.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is
    // plain data for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always a valid target.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU time used by the calling thread so far (0 where it cannot be read).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if ok {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}

/// A sink that only lets the data go by, as a fast socket would, counting
/// the bytes of a token stream.
#[derive(Default)]
struct Discard {
    bytes: u64,
}

impl WireWrite for Discard {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        std::hint::black_box(data);
        self.bytes += data.len() as u64;
        Ok(())
    }
}

impl TokenSink for Discard {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        std::hint::black_box(data);
        Ok(())
    }

    fn matched(&mut self, _block_index: u32, data: &[u8]) -> io::Result<()> {
        std::hint::black_box(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_cases_make_sense() {
        let results = run(4 << 20, None).unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names[..4],
            [
                "unchanged, md4",
                "1% edited, md4",
                "all different, md4",
                "unchanged, md5"
            ]
        );
        assert_eq!(
            names[15..19],
            [
                "unchanged, xxh128",
                "1% edited, xxh128",
                "all different, xxh128",
                "disk image, 2% new"
            ]
        );
        // Then MD4 alone on each path, the one in use marked.
        let paths = Md4Path::available();
        let md4_rows: Vec<String> = paths
            .iter()
            .map(|p| {
                let used = if *p == Md4Path::best() { " (used)" } else { "" };
                format!("md4 only, {}{used}", p.name())
            })
            .collect();
        assert_eq!(names[19..], md4_rows);
        // 4 MiB in blocks of 2048: every byte hashed on every path.
        assert!(results[19..].iter().all(|r| r.bytes == 4 << 20));
        // Every digest matches what the default does.
        for three in results[..18].chunks(3) {
            for (r, md4) in three.iter().zip(&results[..3]) {
                assert_eq!(r.matched_bytes, md4.matched_bytes, "{r}");
                assert_eq!(r.literal_bytes, md4.literal_bytes, "{r}");
            }
        }
        let unchanged = &results[0];
        assert_eq!(
            (unchanged.literal_bytes, unchanged.matched_bytes),
            (0, 4 << 20)
        );
        // 4 MiB in blocks of 2048: 20 edits spoil at most 40 blocks.
        let edited = &results[1];
        assert!(edited.literal_bytes > 0 && edited.literal_bytes < 40 * 2048 + 20 * 64);
        // Random data never matches random blocks.
        assert_eq!(results[2].matched_bytes, 0);
        for r in &results[..19] {
            assert_eq!(r.literal_bytes + r.matched_bytes, r.bytes, "{r}");
        }
        assert!(results[18].matched_bytes > results[18].bytes / 2);
    }

    #[test]
    fn clients_share_one_matching_through_the_memo() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Prng::new(11);
        let basis = rng.bytes(200_000);
        let file = edit(&basis, 3, &mut rng);
        let (fp, bp) = (dir.path().join("file"), dir.path().join("basis"));
        std::fs::write(&fp, &file).unwrap();
        std::fs::write(&bp, &basis).unwrap();
        let [with, without] = run_clients(3, 0, Some((&fp, &bp))).unwrap();
        assert_eq!((with.memo, with.matcher_runs), (true, 1));
        assert_eq!((without.memo, without.matcher_runs), (false, 3));
        // Tokens and the whole-file sum: more than the edits, far less
        // than the file.
        assert!(
            with.bytes > 3 && with.bytes < file.len() as u64 / 4,
            "{with}"
        );
        assert_eq!(with.bytes, without.bytes);
        assert!(run_clients(0, 0, Some((&fp, &bp))).is_err());
        assert!(run_clients(MAX_CLIENTS + 1, 0, Some((&fp, &bp))).is_err());
    }

    #[test]
    fn a_file_pair_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Prng::new(7);
        let basis = rng.bytes(300_000);
        let file = edit(&basis, 3, &mut rng);
        let (fp, bp) = (dir.path().join("file"), dir.path().join("basis"));
        std::fs::write(&fp, &file).unwrap();
        std::fs::write(&bp, &basis).unwrap();
        let results = run(0, Some((&fp, &bp))).unwrap();
        assert_eq!(results.len(), DIGESTS.len());
        assert_eq!(results[0].bytes, file.len() as u64);
        // Blocks of 700: three edits spoil at most six blocks.
        assert!(results[0].literal_bytes <= 6 * 700 + 3 * 64);
        assert!(results[0].matched_bytes > 0);
    }
}
