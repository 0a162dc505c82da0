//! Throughput of the block matcher on this machine, for `upserv bench` and
//! `cargo bench --bench delta`: synthetic basis/target pairs, or a given
//! FILE against a BASIS.
//!
//! Owns the synthetic inputs and the timing. Only the matcher is timed: the
//! basis sums are computed beforehand, as a receiver would send them (block
//! length and strong-sum length as rsync's generator picks at protocol 29).
//! Every case runs with rsync's default MD4 sums; the unchanged and the
//! edited file (or the given pair) also with each other digest a client can
//! choose, since the strong sum is what a matching block costs.
//! It must not assert anything about speed; it reports.

use super::matcher::{MatchMode, Matcher, TokenSink};
use super::strong::{StrongSum, SumKind};
use super::sums::{block_len_for, generate, strong_len_for, BlockSums};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::Instant;

/// The protocol whose block sizes the benchmark uses.
const PROTOCOL: u32 = 29;
/// A fixed non-zero checksum seed, so block sums carry one as on the wire.
const SEED: u32 = 0x5eed_1234;
/// Seed of the generator of the synthetic data: every run sees the same bytes.
const DATA_SEED: u64 = 0x0123_4567_89ab_cdef;
/// "1% changed": one small edit per this many blocks.
const BLOCKS_PER_EDIT: u64 = 100;
/// Longest single edit (overwrite, insertion or deletion).
const MAX_EDIT: usize = 64;
/// The disk image is zeros except for this share (in percent) of data.
const DISK_DATA_PERCENT: u64 = 10;
/// Size range of the disk image's data regions.
const DISK_REGION_MIN: usize = 64 * 1024;
const DISK_REGION_MAX: usize = 1024 * 1024;
/// The digests measured besides the default, each under its rsync name.
/// (A named md4 computes the same block sums as the default.)
const OTHER_DIGESTS: [SumKind; 5] = [
    SumKind::Md5,
    SumKind::Sha1,
    SumKind::Xxh64,
    SumKind::Xxh3,
    SumKind::Xxh128,
];
/// Bytes per megabyte in the reported rate.
const MEGA: f64 = 1_000_000.0;

/// One measured case.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// What was matched against what.
    pub name: String,
    /// Bytes of the file matched.
    pub bytes: u64,
    /// Wall time of the matcher.
    pub seconds: f64,
    /// CPU time the matcher's thread used: on a busy machine a steadier
    /// measure than the wall time.
    pub cpu_seconds: f64,
    /// `bytes / seconds`, in millions of bytes per second.
    pub mb_per_s: f64,
    /// Bytes the matcher sent as literal data.
    pub literal_bytes: u64,
    /// Bytes covered by matched blocks.
    pub matched_bytes: u64,
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
/// blocks edited, entirely different, a mostly-zero disk image), or, with
/// `pair = Some((file, basis))`, on FILE against BASIS.
pub fn run(size: u64, pair: Option<(&Path, &Path)>) -> io::Result<Vec<BenchResult>> {
    match pair {
        Some((file, basis)) => run_pair(file, basis),
        None => run_synthetic(size),
    }
}

fn run_pair(file: &Path, basis: &Path) -> io::Result<Vec<BenchResult>> {
    let basis_len = std::fs::metadata(basis)?.len();
    let mut results = Vec::new();
    for kind in std::iter::once(SumKind::Md4Auto).chain(OTHER_DIGESTS) {
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
    let block_len = block_len_for(size, PROTOCOL) as usize;
    let edits = (size / block_len as u64 / BLOCKS_PER_EDIT).max(1) as usize;
    let mut results = Vec::new();

    let md4 = StrongSum::md4_auto(SEED);
    let basis = rng.bytes(len);
    let sums = sums_for(&basis[..], size, md4)?;
    results.push(measure_bytes("unchanged", &basis, &sums, md4)?);
    let edited = edit(&basis, edits, &mut rng);
    results.push(measure_bytes("1% of blocks edited", &edited, &sums, md4)?);
    let other = rng.bytes(len);
    results.push(measure_bytes("all different", &other, &sums, md4)?);
    drop(other);
    for kind in OTHER_DIGESTS {
        let sum = StrongSum { kind, seed: SEED };
        let sums = sums_for(&basis[..], size, sum)?;
        let name = kind.name();
        results.push(measure_bytes(
            &format!("unchanged, {name}"),
            &basis,
            &sums,
            sum,
        )?);
        let name = format!("1% edited, {name}");
        results.push(measure_bytes(&name, &edited, &sums, sum)?);
    }
    drop((edited, basis));

    let disk = disk_image(len, &mut rng);
    let sums = sums_for(&disk[..], size, md4)?;
    let mut changed = edit(&disk, edits, &mut rng);
    let fresh = (len / 50).min(changed.len());
    let at = rng.below(changed.len() - fresh + 1);
    rng.fill(&mut changed[at..at + fresh]);
    results.push(measure_bytes("disk image, 2% new", &changed, &sums, md4)?);
    Ok(results)
}

/// The sums a protocol-29 receiver would send for `basis`.
fn sums_for(basis: impl Read, len: u64, sum: StrongSum) -> io::Result<BlockSums> {
    let block_len = block_len_for(len, PROTOCOL);
    let strong_len = strong_len_for(len, block_len, false, sum.kind.digest_len());
    generate(basis, len, block_len, strong_len, sum)
}

fn measure_bytes(
    name: &str,
    data: &[u8],
    sums: &BlockSums,
    sum: StrongSum,
) -> io::Result<BenchResult> {
    measure(name, data, data.len() as u64, sums, sum)
}

fn measure(
    name: &str,
    source: impl Read,
    len: u64,
    sums: &BlockSums,
    sum: StrongSum,
) -> io::Result<BenchResult> {
    let mut matcher = Matcher::new();
    let mut sink = Discard;
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

/// A sink that only lets the data go by, as a fast socket would.
struct Discard;

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

/// `data` with `count` small edits at random places, in order: overwrites,
/// insertions and deletions of 1..=64 bytes.
pub(crate) fn edit(data: &[u8], count: usize, rng: &mut Prng) -> Vec<u8> {
    let mut places: Vec<usize> = (0..count).map(|_| rng.below(data.len() + 1)).collect();
    places.sort_unstable();
    let mut out = Vec::with_capacity(data.len() + count * MAX_EDIT);
    let mut from = 0;
    for at in places {
        let at = at.max(from);
        out.extend_from_slice(&data[from..at]);
        let n = 1 + rng.below(MAX_EDIT);
        let mut fresh = [0u8; MAX_EDIT];
        rng.fill(&mut fresh[..n]);
        from = match rng.below(3) {
            0 => {
                out.extend_from_slice(&fresh[..n]);
                (at + n).min(data.len())
            }
            1 => {
                out.extend_from_slice(&fresh[..n]);
                at
            }
            _ => (at + n).min(data.len()),
        };
    }
    out.extend_from_slice(&data[from..]);
    out
}

/// Zeros with random data regions making up about a tenth of it.
fn disk_image(len: usize, rng: &mut Prng) -> Vec<u8> {
    let mut disk = vec![0u8; len];
    let mut data_left = len as u64 * DISK_DATA_PERCENT / 100;
    while data_left > 0 && len > 0 {
        let n = (DISK_REGION_MIN + rng.below(DISK_REGION_MAX - DISK_REGION_MIN))
            .min(data_left as usize)
            .min(len);
        let at = rng.below(len - n + 1);
        rng.fill(&mut disk[at..at + n]);
        data_left -= n as u64;
    }
    disk
}

/// SplitMix64: a tiny seeded generator, so synthetic data and randomized
/// tests are the same on every run.
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`); the tiny modulo bias does not matter here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
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
            names[..3],
            ["unchanged", "1% of blocks edited", "all different"]
        );
        assert_eq!(names[3..5], ["unchanged, md5", "1% edited, md5"]);
        assert_eq!(
            names[11..],
            [
                "unchanged, xxh128",
                "1% edited, xxh128",
                "disk image, 2% new"
            ]
        );
        // Every digest matches what the default does.
        for pair in results[3..13].chunks(2) {
            assert_eq!(
                pair[0].matched_bytes, results[0].matched_bytes,
                "{}",
                pair[0]
            );
            assert_eq!(
                pair[1].literal_bytes, results[1].literal_bytes,
                "{}",
                pair[1]
            );
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
        for r in &results {
            assert_eq!(r.literal_bytes + r.matched_bytes, r.bytes, "{r}");
        }
        assert!(results[13].matched_bytes > results[13].bytes / 2);
    }

    #[test]
    fn a_file_pair_is_measured() {
        let dir = std::env::temp_dir().join(format!("upserv-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = Prng::new(7);
        let basis = rng.bytes(300_000);
        let file = edit(&basis, 3, &mut rng);
        let (fp, bp) = (dir.join("file"), dir.join("basis"));
        std::fs::write(&fp, &file).unwrap();
        std::fs::write(&bp, &basis).unwrap();
        let results = run(0, Some((&fp, &bp))).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(results.len(), 1 + OTHER_DIGESTS.len());
        assert_eq!(results[0].bytes, file.len() as u64);
        // Blocks of 700: three edits spoil at most six blocks.
        assert!(results[0].literal_bytes <= 6 * 700 + 3 * 64);
        assert!(results[0].matched_bytes > 0);
    }
}
