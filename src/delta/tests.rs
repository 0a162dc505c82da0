//! Tests of the delta engine as a whole: a randomized comparison with a slow,
//! obviously-correct reference of rsync's match.c written here, whole-file
//! sums against an independent MD4, rebuilds, the bounded candidate walk, and
//! differential runs against the real rsync binary (skipped without one).
//!
//! Owns no production code.

use super::bench::{edit, Prng};
use super::matcher::MatchError;
use super::*;
use md4::{Digest, Md4};
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::Command;

/// rsync 3.5.0's MAX_CHAIN_LEN, restated so the reference does not borrow
/// the code under test.
const REF_MAX_CHAIN: usize = 1024;

// ---------------------------------------------------------------------------
// The reference: rsync's algorithm on a slice, computed the slow way.

/// The weak sum from its definition, in wide signed arithmetic.
fn ref_weak(data: &[u8]) -> u32 {
    let n = data.len() as i64;
    let mut s1: i64 = 0;
    let mut s2: i64 = 0;
    for (i, &b) in data.iter().enumerate() {
        let x = b as i8 as i64;
        s1 += x;
        s2 += (n - i as i64) * x;
    }
    (s1.rem_euclid(1 << 16) | (s2.rem_euclid(1 << 16) << 16)) as u32
}

fn ref_strong(data: &[u8], seed: u32, strong_len: usize) -> Vec<u8> {
    let mut md = Md4::new();
    md.update(data);
    if seed != 0 {
        md.update(seed.to_le_bytes());
    }
    md.finalize()[..strong_len].to_vec()
}

fn ref_file_sum(seed: u32, data: &[u8]) -> [u8; 16] {
    let mut md = Md4::new();
    md.update(seed.to_le_bytes());
    md.update(data);
    md.finalize().into()
}

struct RefSums {
    block_len: usize,
    weak: Vec<u32>,
    strong: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

fn ref_sums(basis: &[u8], block_len: usize, strong_len: usize, seed: u32) -> RefSums {
    let mut sums = RefSums {
        block_len,
        weak: Vec::new(),
        strong: Vec::new(),
        lens: Vec::new(),
    };
    for block in basis.chunks(block_len) {
        sums.weak.push(ref_weak(block));
        sums.strong.push(ref_strong(block, seed, strong_len));
        sums.lens.push(block.len());
    }
    sums
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Literal(u64),
    Block { at: u64, index: u32 },
}

fn push_literal(toks: &mut Vec<Tok>, n: u64) {
    if n == 0 {
        return;
    }
    if let Some(Tok::Literal(m)) = toks.last_mut() {
        *m += n;
    } else {
        toks.push(Tok::Literal(n));
    }
}

/// rsync: match.c hash_search, offset by offset: the weak and strong sums are
/// recomputed from scratch, candidates found by scanning every block.
fn reference(target: &[u8], sums: &RefSums, seed: u32, inplace: bool) -> Vec<Tok> {
    let len = target.len();
    let count = sums.weak.len();
    let mut toks = Vec::new();
    if len == 0 || count == 0 {
        push_literal(&mut toks, len as u64);
        return toks;
    }
    let blen = sums.block_len;
    let strong_len = sums.strong[0].len();
    let end = len as i64 + 1 - sums.lens[count - 1] as i64;
    let mut same_offset = vec![false; count];
    let (mut off, mut last, mut want) = (0usize, 0usize, 0usize);
    let (mut aligned_off, mut aligned_i) = (0usize, 0usize);
    loop {
        let l = blen.min(len - off);
        let here = &target[off..off + l];
        let weak = ref_weak(here);
        let strong = ref_strong(here, seed, strong_len);
        let matches =
            |i: usize| sums.weak[i] == weak && sums.lens[i] == l && sums.strong[i] == strong;
        let mut found = None;
        let mut tried = 0;
        for i in (0..count).rev() {
            if inplace && i * blen < off && !same_offset[i] {
                continue;
            }
            if sums.weak[i] != weak {
                continue;
            }
            tried += 1;
            if tried > REF_MAX_CHAIN {
                break;
            }
            if matches(i) {
                found = Some(i);
                break;
            }
        }
        if let Some(mut i) = found {
            let mut at = off;
            if inplace {
                while aligned_off < off {
                    aligned_off += blen;
                    aligned_i += 1;
                }
                let zeros = weak == 0 && l == blen && aligned_off + l <= len;
                if (off == aligned_off || zeros) && aligned_i < count && matches(aligned_i) {
                    i = aligned_i;
                    let there = target.get(aligned_off..aligned_off + l).unwrap_or(&[]);
                    let realigned = off == aligned_off
                        || (ref_weak(there) == sums.weak[i]
                            && ref_strong(there, seed, strong_len) == sums.strong[i]);
                    if realigned {
                        at = aligned_off;
                        same_offset[i] = true;
                        want = i;
                    }
                }
            }
            if i != want
                && want < count
                && (!inplace || want * blen >= at || same_offset[want])
                && matches(want)
            {
                i = want;
            }
            want = i + 1;
            push_literal(&mut toks, (at - last) as u64);
            toks.push(Tok::Block {
                at: at as u64,
                index: i as u32,
            });
            last = at + sums.lens[i];
            off = last;
        } else {
            off += 1;
        }
        if off as i64 >= end {
            break;
        }
    }
    push_literal(&mut toks, (len - last) as u64);
    toks
}

// ---------------------------------------------------------------------------
// Plumbing: a recording sink and an awkward reader.

#[derive(Default)]
struct Recorder {
    toks: Vec<Tok>,
    pos: u64,
    literal: Vec<u8>,
    /// The bytes handed with each matched block, in order.
    matched: Vec<u8>,
}

impl TokenSink for Recorder {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        push_literal(&mut self.toks, data.len() as u64);
        self.literal.extend_from_slice(data);
        self.pos += data.len() as u64;
        Ok(())
    }

    fn matched(&mut self, index: u32, data: &[u8]) -> io::Result<()> {
        self.toks.push(Tok::Block {
            at: self.pos,
            index,
        });
        self.matched.extend_from_slice(data);
        self.pos += data.len() as u64;
        Ok(())
    }
}

/// Rebuild the receiver's file: basis blocks for matches, literal bytes between.
fn rebuild(rec: &Recorder, basis: &[u8], block_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lit = 0;
    for tok in &rec.toks {
        match *tok {
            Tok::Literal(n) => {
                out.extend_from_slice(&rec.literal[lit..lit + n as usize]);
                lit += n as usize;
            }
            Tok::Block { index, .. } => {
                let start = index as usize * block_len;
                out.extend_from_slice(&basis[start..(start + block_len).min(basis.len())]);
            }
        }
    }
    out
}

/// Hands out data in random small pieces, now and then interrupted.
struct Awkward<'a> {
    data: &'a [u8],
    rng: Prng,
    max_piece: usize,
}

impl Read for Awkward<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rng.below(8) == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = (1 + self.rng.below(self.max_piece))
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn matcher_with_read_ahead(read_ahead: usize) -> Matcher {
    let mut m = Matcher::new();
    m.read_ahead = read_ahead;
    m
}

/// The generator's block sums of the whole of `basis`.
fn sums_of(basis: &[u8], blen: u32, strong_len: usize, strong: StrongSum) -> BlockSums {
    generate(basis, basis.len() as u64, blen, strong_len, strong).unwrap()
}

/// `matcher` sends all of `target` against `sums`, as usual (no in-place
/// or append mode); returns its outcome and the tokens it gave.
fn record_whole(
    matcher: &mut Matcher,
    target: &[u8],
    sums: &BlockSums,
    strong: StrongSum,
) -> (MatchOutcome, Recorder) {
    let len = target.len() as u64;
    record(matcher, target, len, sums, strong, MatchMode::Normal)
}

/// `matcher` sends `source`, announced as `len` bytes, against `sums`;
/// returns its outcome and the tokens it gave.
fn record(
    matcher: &mut Matcher,
    source: impl Read,
    len: u64,
    sums: &BlockSums,
    strong: StrongSum,
    mode: MatchMode,
) -> (MatchOutcome, Recorder) {
    let mut rec = Recorder::default();
    let out = matcher
        .send(source, len, sums, strong, mode, &mut rec)
        .unwrap();
    (out, rec)
}

// ---------------------------------------------------------------------------
// The randomized comparison.

fn random_basis(rng: &mut Prng, len: usize) -> Vec<u8> {
    let mut data = rng.bytes(len);
    match rng.below(5) {
        // Two symbols: weak-sum collisions and repeated blocks galore.
        0 => data.iter_mut().for_each(|b| *b &= 1),
        // Around the signed/unsigned boundary.
        1 => data.iter_mut().for_each(|b| *b = 0x7f + (*b & 1)),
        // Mostly zeros, a few islands.
        2 => {
            for (i, b) in data.iter_mut().enumerate() {
                if (i / 97) % 5 != 0 {
                    *b = 0;
                }
            }
        }
        // A short repeating pattern.
        3 => {
            let period = 1 + rng.below(40);
            for i in period..len {
                data[i] = data[i - period];
            }
        }
        _ => {}
    }
    data
}

fn random_target(rng: &mut Prng, basis: &[u8]) -> Vec<u8> {
    match rng.below(8) {
        0 => Vec::new(),
        1 => {
            let n = rng.below(3000);
            rng.bytes(n)
        }
        2 => basis[..rng.below(basis.len() + 1)].to_vec(),
        3 => {
            let mut t = basis[rng.below(basis.len() + 1)..].to_vec();
            t.extend_from_slice(basis);
            t
        }
        4 => basis.to_vec(),
        _ => {
            let edits = rng.below(12);
            edit(basis, edits, rng)
        }
    }
}

#[test]
fn matcher_agrees_with_the_reference_on_random_cases() {
    let totals = compare_random_cases(0x5eed_0001, 400, |rng| {
        let blen = [1, 2, 3, 5, 8, 16, 64, 100, 333, 700][rng.below(10)];
        let len = rng.below((blen * 300).min(6000) + 1);
        let basis = random_basis(rng, len);
        let target = random_target(rng, &basis);
        // Fields in the order of the draws.
        let case = Case {
            blen,
            strong_len: if rng.below(3) == 0 { rng.below(17) } else { 16 },
            seed: if rng.below(4) == 0 {
                0
            } else {
                rng.next_u64() as u32
            },
            mode: match rng.below(7) {
                0..=2 => MatchMode::Normal,
                3..=5 => MatchMode::Inplace,
                _ => MatchMode::Append {
                    verify: rng.below(2) == 0,
                },
            },
            read_ahead: [1, 5, 64, 1000, 300_000][rng.below(5)],
        };
        (basis, target, case)
    });
    // The cases must exercise both outcomes, or they prove little.
    assert!(totals.0 > 100_000 && totals.1 > 100_000, "{totals:?}");
}

/// How one randomized case sums its basis and matches its target.
struct Case {
    blen: usize,
    strong_len: usize,
    seed: u32,
    mode: MatchMode,
    read_ahead: usize,
}

/// `count` comparisons with the reference, each case made by `make` from
/// one generator seeded with `seed`; returns the literal and matched byte
/// totals.
fn compare_random_cases(
    seed: u64,
    count: usize,
    mut make: impl FnMut(&mut Prng) -> (Vec<u8>, Vec<u8>, Case),
) -> (u64, u64) {
    let mut rng = Prng::new(seed);
    let mut totals = (0u64, 0u64);
    for n in 0..count {
        let (basis, target, case) = make(&mut rng);
        let what = format!(
            "case {n}: len {} target {} blen {} strong {} {:?} ra {}",
            basis.len(),
            target.len(),
            case.blen,
            case.strong_len,
            case.mode,
            case.read_ahead
        );
        let found = check_case(&basis, &target, &case, &mut rng, &what);
        totals.0 += found.0;
        totals.1 += found.1;
    }
    totals
}

/// One comparison; returns the literal and matched byte counts.
fn check_case(basis: &[u8], target: &[u8], case: &Case, rng: &mut Prng, what: &str) -> (u64, u64) {
    let &Case {
        blen,
        strong_len,
        seed,
        mode,
        read_ahead,
    } = case;
    let sums = match mode {
        MatchMode::Append { .. } => {
            let count = basis.len().div_ceil(blen);
            BlockSums::new(blen as u32, (basis.len() % blen) as u32, strong_len, count)
        }
        _ => sums_of(basis, blen as u32, strong_len, StrongSum::md4_auto(seed)),
    };
    let reader = Awkward {
        data: target,
        rng: Prng::new(rng.next_u64()),
        max_piece: 1 + rng.below(5000),
    };
    let (out, rec) = record(
        &mut matcher_with_read_ahead(read_ahead),
        reader,
        target.len() as u64,
        &sums,
        StrongSum::md4_auto(seed),
        mode,
    );

    let (expected, summed) = match mode {
        MatchMode::Append { verify } => {
            let prefix = basis.len().min(target.len());
            let mut toks = Vec::new();
            push_literal(&mut toks, (target.len() - prefix) as u64);
            let summed = if verify { target } else { &target[prefix..] };
            (toks, summed)
        }
        _ => {
            let reference_sums = ref_sums(basis, blen, strong_len, seed);
            let inplace = mode == MatchMode::Inplace;
            (reference(target, &reference_sums, seed, inplace), target)
        }
    };
    assert_eq!(rec.toks, expected, "{what}");
    assert_eq!(out.file_sum, ref_file_sum(seed, summed), "{what}");
    let matched: u64 = expected
        .iter()
        .map(|t| match t {
            Tok::Block { index, .. } => sums.len_of(*index as usize) as u64,
            Tok::Literal(_) => 0,
        })
        .sum();
    assert_eq!(out.matched_bytes, matched, "{what}");
    assert_eq!(
        out.literal_bytes + out.matched_bytes + prefix_of(mode, basis, target),
        target.len() as u64
    );
    assert_eq!(
        (out.source_len, out.size_changed),
        (target.len() as u64, false),
        "{what}"
    );
    // Matched blocks carry the sender's bytes, whatever the basis holds.
    let mut sent = rec.literal.clone();
    sent.extend_from_slice(&rec.matched);
    assert_eq!(
        sent.len() as u64 + prefix_of(mode, basis, target),
        target.len() as u64
    );
    if strong_len == 16 && !matches!(mode, MatchMode::Append { .. }) {
        assert_eq!(rebuild(&rec, basis, blen), target, "{what}");
    }
    (out.literal_bytes, out.matched_bytes)
}

fn prefix_of(mode: MatchMode, basis: &[u8], target: &[u8]) -> u64 {
    match mode {
        MatchMode::Append { .. } => basis.len().min(target.len()) as u64,
        _ => 0,
    }
}

#[test]
fn generate_agrees_with_the_reference_sums() {
    let mut rng = Prng::new(11);
    for blen in [1usize, 7, 700, 5000] {
        let basis = random_basis(&mut rng, 3000);
        let seed = rng.next_u64() as u32;
        let sums = generate(&basis[..], 3000, blen as u32, 5, StrongSum::md4_auto(seed)).unwrap();
        let reference_sums = ref_sums(&basis, blen, 5, seed);
        assert_eq!(sums.count(), reference_sums.weak.len());
        for i in 0..sums.count() {
            assert_eq!(sums.weak(i), reference_sums.weak[i]);
            assert_eq!(sums.strong(i), &reference_sums.strong[i][..]);
            assert_eq!(sums.len_of(i) as usize, reference_sums.lens[i]);
        }
    }
}

/// The fast paths (the wanted block checked first, runs of blocks checked
/// several at a time) against the reference, on the inputs they care about:
/// long runs of matching blocks, files of exactly N blocks, a short last
/// block, repeated blocks (beyond the candidate limit too), tiny files,
/// shuffled blocks, short strong sums, and windows of every size.
#[test]
fn fast_paths_agree_with_the_reference() {
    let totals = compare_random_cases(0x5eed_0002, 300, |rng| {
        let blen = [1, 2, 3, 8, 64, 100, 700][rng.below(7)];
        let blocks = [0, 1, 2, 7, 8, 9, 17, 40, 1100][rng.below(9)];
        let tail = if rng.below(2) == 0 {
            0
        } else {
            rng.below(blen)
        };
        let len = (blocks * blen + tail).min(12_000);
        let mut basis = random_basis(rng, len);
        if rng.below(4) == 0 && len > 0 {
            // Every block alike: the weak-sum group is as long as the file.
            let period = blen.min(len);
            for i in period..len {
                basis[i] = basis[i - period];
            }
        }
        let target = match rng.below(6) {
            0 => basis.clone(),
            1 => {
                // Whole blocks in another order: the wanted block rarely fits.
                let mut chunks: Vec<&[u8]> = basis.chunks(blen).collect();
                for i in (1..chunks.len()).rev() {
                    chunks.swap(i, rng.below(i + 1));
                }
                chunks.concat()
            }
            2 => {
                let cut = rng.below(len + 1);
                let mut t = basis[cut..].to_vec();
                t.extend_from_slice(&basis[..cut]);
                t
            }
            _ => {
                let edits = rng.below(4);
                edit(&basis, edits, rng)
            }
        };
        // Fields in the order of the draws.
        let case = Case {
            blen,
            strong_len: [0, 1, 2, 16][rng.below(4)],
            seed: [0, rng.next_u64() as u32][rng.below(2)],
            mode: [MatchMode::Normal, MatchMode::Normal, MatchMode::Inplace][rng.below(3)],
            read_ahead: [1, 64, 1000, 300_000][rng.below(4)],
        };
        (basis, target, case)
    });
    assert!(totals.0 > 10_000 && totals.1 > 100_000, "{totals:?}");
}

/// The other digests take the same fast paths: the same tokens as MD4 gives
/// (with full-length sums no digest has false matches on these inputs).
#[test]
fn fast_paths_agree_for_every_digest() {
    let mut rng = Prng::new(0x5eed_0003);
    let basis = rng.bytes(100 * 700 + 300);
    let target = edit(&basis, 5, &mut rng);
    let tokens = |kind: SumKind| {
        let strong = StrongSum { kind, seed: 77 };
        let sums = sums_of(&basis, 700, 16, strong);
        let (out, rec) = record_whole(&mut Matcher::new(), &target, &sums, strong);
        let mut whole = FileSum::new(strong);
        whole.update(&target);
        assert_eq!(out.file_sum, whole.finish(), "{kind:?}");
        rec.toks
    };
    let md4 = tokens(SumKind::Md4Auto);
    assert!(md4.len() > 10, "{md4:?}");
    for kind in [
        SumKind::Md4,
        SumKind::Md5,
        SumKind::Sha1,
        SumKind::Xxh64,
        SumKind::Xxh3,
        SumKind::Xxh128,
    ] {
        assert_eq!(tokens(kind), md4, "{kind:?}");
    }
}

/// An unchanged file is matched by following the run after its first
/// block, not by searching at every block.
#[test]
fn runs_of_matching_blocks_are_followed() {
    let data = Prng::new(12).bytes(1000 * 700 + 123);
    let strong = StrongSum::md4_auto(5);
    let sums = sums_of(&data, 700, 2, strong);
    let mut matcher = Matcher::new();
    let (out, _) = record_whole(&mut matcher, &data, &sums, strong);
    assert_eq!(out.matched_bytes, data.len() as u64);
    // Block 0 is searched for; the last, short one is checked alone.
    assert_eq!(matcher.fast.followed, 999);
}

/// A run of zero blocks matches the same (highest) zero block of the basis
/// again and again, as from rsync; after the first two, without computing
/// a strong sum.
#[test]
fn repeated_blocks_are_recognised() {
    let mut rng = Prng::new(13);
    let mut basis = rng.bytes(20 * 700);
    basis[5 * 700..9 * 700].fill(0);
    let mut target = rng.bytes(100);
    target.extend_from_slice(&[0; 50 * 700]);
    target.extend_from_slice(&basis[..3 * 700]);
    let strong = StrongSum::md4_auto(6);
    let sums = sums_of(&basis, 700, 16, strong);
    let mut matcher = Matcher::new();
    let (_, rec) = record_whole(&mut matcher, &target, &sums, strong);
    let expected = reference(&target, &ref_sums(&basis, 700, 16, 6), 6, false);
    assert_eq!(rec.toks, expected);
    assert!(expected[1..51]
        .iter()
        .all(|t| matches!(t, Tok::Block { index: 8, .. })));
    assert_eq!(matcher.fast.repeated, 48);
}

/// A wanted block that a walk over its weak sum would not reach (beyond
/// the candidate limit) is not taken by the fast path either: it goes as
/// literal data, as from rsync.
#[test]
fn the_wanted_block_respects_the_candidate_limit() {
    let mut rng = Prng::new(4);
    let (base, mut basis) = colliding_basis(2000, 700, &mut rng);
    // Block 99 is unlike the others, so it is found by its own weak sum and
    // makes block 100 (the 1900th candidate of its family) the wanted one.
    let odd = rng.bytes(700);
    basis[99 * 700..100 * 700].copy_from_slice(&odd);
    let mut target = rng.bytes(1000);
    target.extend_from_slice(&odd);
    target.extend_from_slice(&colliding_block(&base, 100));
    target.extend_from_slice(&colliding_block(&base, 1500));
    target.extend_from_slice(&colliding_block(&base, 1501));
    let sums = sums_of(&basis, 700, 16, StrongSum::md4_auto(3));
    let (_, rec) = record_whole(&mut Matcher::new(), &target, &sums, StrongSum::md4_auto(3));
    let block = |at, index| Tok::Block { at, index };
    assert_eq!(
        rec.toks,
        vec![
            Tok::Literal(1000),
            block(1000, 99),
            Tok::Literal(700),
            block(2400, 1500),
            block(3100, 1501),
        ]
    );
    let expected = reference(&target, &ref_sums(&basis, 700, 16, 3), 3, false);
    assert_eq!(rec.toks, expected);
}

// ---------------------------------------------------------------------------
// Special cases.

#[test]
fn zero_target_against_zero_basis_matches_block_after_block() {
    const BLOCK: usize = 8192;
    const LEN: usize = 64 << 20;
    let zeros = vec![0u8; LEN];
    let sums = sums_of(&zeros, BLOCK as u32, 16, StrongSum::md4_auto(77));
    for mode in [MatchMode::Normal, MatchMode::Inplace] {
        let mut matcher = Matcher::new();
        let (out, rec) = record(
            &mut matcher,
            &zeros[..],
            LEN as u64,
            &sums,
            StrongSum::md4_auto(77),
            mode,
        );
        assert_eq!((out.literal_bytes, out.matched_bytes), (0, LEN as u64));
        // want_i makes every match the block after the previous one.
        let indices: Vec<u32> = rec
            .toks
            .iter()
            .filter_map(|t| match t {
                Tok::Block { index, .. } => Some(*index),
                Tok::Literal(_) => None,
            })
            .collect();
        let expected: Vec<u32> = (0..(LEN / BLOCK) as u32).collect();
        assert_eq!(indices, expected, "{mode:?}");
        assert!(matcher.window.len() <= 2 * BLOCK + window::READ_AHEAD);
    }
}

/// Block `j` of a weak-colliding family: `base` with +m, -2m, +m added at
/// three neighbouring bytes, which leaves both halves of the weak sum alone
/// (s1 gains m - 2m + m; s2 gains m·(w) - 2m·(w-1) + m·(w-2), w the weight).
fn colliding_block(base: &[u8], j: usize) -> Vec<u8> {
    let positions = base.len() - 2;
    let (p, m) = (j % positions, 1 + (j / positions) as u8);
    let mut block = base.to_vec();
    block[p] += m;
    block[p + 1] -= 2 * m;
    block[p + 2] += m;
    block
}

fn colliding_basis(blocks: usize, blen: usize, rng: &mut Prng) -> (Vec<u8>, Vec<u8>) {
    // Bytes between 0x20 and 0x5f: the changes never cross the sign boundary.
    let base: Vec<u8> = rng.bytes(blen).iter().map(|b| 0x20 + (b & 0x3f)).collect();
    let mut basis = Vec::new();
    for j in 0..blocks {
        basis.extend_from_slice(&colliding_block(&base, j));
    }
    (base, basis)
}

#[test]
fn weak_collisions_with_different_strong_sums_do_not_match() {
    let mut rng = Prng::new(3);
    let (base, basis) = colliding_basis(3, 700, &mut rng);
    let sums = sums_of(&basis, 700, 16, StrongSum::md4_auto(0));
    assert!((0..3).all(|i| sums.weak(i) == ref_weak(&base)));
    let (out, _) = record_whole(&mut Matcher::new(), &base, &sums, StrongSum::md4_auto(0));
    assert_eq!((out.literal_bytes, out.matched_bytes), (700, 0));
}

/// The target holds family members 1500 and 100 of 2000. Candidates are
/// tried from block 1999 down; 1500 is the 500th, within the limit of 1024;
/// 100 would be the 1900th, beyond it, so it goes as literal data.
fn capped_case() -> (Vec<u8>, Vec<u8>) {
    let mut rng = Prng::new(4);
    let (base, basis) = colliding_basis(2000, 700, &mut rng);
    let mut target = rng.bytes(1000);
    target.extend_from_slice(&colliding_block(&base, 1500));
    target.extend_from_slice(&rng.bytes(1000));
    target.extend_from_slice(&colliding_block(&base, 100));
    target.extend_from_slice(&rng.bytes(1000));
    (basis, target)
}

#[test]
fn the_candidate_walk_is_bounded_like_rsyncs() {
    let (basis, target) = capped_case();
    let sums = sums_of(&basis, 700, 16, StrongSum::md4_auto(9));
    let (out, rec) = record_whole(&mut Matcher::new(), &target, &sums, StrongSum::md4_auto(9));
    assert_eq!(
        rec.toks,
        vec![
            Tok::Literal(1000),
            Tok::Block {
                at: 1000,
                index: 1500
            },
            Tok::Literal(1000 + 700 + 1000),
        ]
    );
    assert_eq!(out.matched_bytes, 700);
}

#[test]
fn without_sums_everything_is_literal() {
    let data = Prng::new(5).bytes(700_000);
    for sums in [BlockSums::new(700, 0, 16, 0), BlockSums::new(0, 0, 16, 0)] {
        let (out, rec) = record_whole(
            &mut matcher_with_read_ahead(1000),
            &data,
            &sums,
            StrongSum::md4_auto(1),
        );
        assert_eq!(rec.toks, vec![Tok::Literal(700_000)]);
        assert_eq!(rec.literal, data);
        assert_eq!(out.file_sum, ref_file_sum(1, &data));
    }
}

#[test]
fn odd_sum_heads_do_not_panic() {
    let data = Prng::new(6).bytes(5000);
    // Remainder longer than a block; strong sums of length 0; block length 0
    // with sums; more blocks than the file holds.
    let mut heads = Vec::new();
    let mut long_tail = BlockSums::new(100, 300, 4, 3);
    let mut no_strong = BlockSums::new(100, 0, 0, 3);
    let mut zero_len = BlockSums::new(0, 0, 2, 2);
    for i in 0..3 {
        long_tail.push(ref_weak(&data[i * 100..i * 100 + 100]), &[0; 4]);
        no_strong.push(ref_weak(&data[i * 100..i * 100 + 100]), &[]);
    }
    zero_len.push(0, &[0, 0]);
    zero_len.push(0, &[0, 0]);
    heads.extend([long_tail, no_strong, zero_len]);
    heads.push(sums_of(&data, 4000, 16, StrongSum::md4_auto(0)));
    for sums in &heads {
        for mode in [
            MatchMode::Normal,
            MatchMode::Inplace,
            MatchMode::Append { verify: true },
        ] {
            for len in [0usize, 1, 99, 5000] {
                let (out, _) = record(
                    &mut Matcher::new(),
                    &data[..len],
                    len as u64,
                    sums,
                    StrongSum::md4_auto(0),
                    mode,
                );
                assert_eq!(out.source_len, len as u64);
            }
        }
    }
}

#[test]
fn a_file_that_shrank_is_sent_as_read_with_a_spoiled_sum() {
    let basis = Prng::new(8).bytes(100_000);
    let sums = sums_of(&basis, 1000, 16, StrongSum::md4_auto(3));
    let now = &basis[..60_500];
    let (out, rec) = record(
        &mut matcher_with_read_ahead(2000),
        now,
        100_000,
        &sums,
        StrongSum::md4_auto(3),
        MatchMode::Normal,
    );
    assert_eq!(out.source_len, 60_500);
    assert!(out.size_changed);
    assert_eq!(out.matched_bytes, 60_000);
    assert_eq!(out.literal_bytes, 500);
    assert_eq!(out.file_sum, [0; 16]);
    assert_eq!(rebuild(&rec, &basis, 1000), now);
}

#[test]
fn a_file_that_grew_is_sent_at_its_announced_length() {
    let data = Prng::new(9).bytes(10_000);
    let sums = sums_of(&data, 700, 16, StrongSum::md4_auto(3));
    let (out, _) = record(
        &mut Matcher::new(),
        &data[..],
        8_000,
        &sums,
        StrongSum::md4_auto(3),
        MatchMode::Normal,
    );
    assert_eq!((out.source_len, out.size_changed), (8_000, true));
    assert_eq!(out.literal_bytes + out.matched_bytes, 8_000);
    assert_eq!(out.file_sum, ref_file_sum(3, &data[..8_000]));
}

struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

struct FullSink;

impl TokenSink for FullSink {
    fn literal(&mut self, _: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn matched(&mut self, _: u32, _: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

#[test]
fn read_and_sink_failures_are_told_apart() {
    let data = vec![1u8; 5000];
    let sums = sums_of(&data, 700, 16, StrongSum::md4_auto(0));
    let mut rec = Recorder::default();
    let err = Matcher::new()
        .send(
            Failing,
            5000,
            &sums,
            StrongSum::md4_auto(0),
            MatchMode::Normal,
            &mut rec,
        )
        .unwrap_err();
    assert!(matches!(err, MatchError::Read(_)), "{err}");
    let err = Matcher::new()
        .send(
            &data[..],
            5000,
            &sums,
            StrongSum::md4_auto(0),
            MatchMode::Normal,
            &mut FullSink,
        )
        .unwrap_err();
    assert!(matches!(err, MatchError::Sink(_)), "{err}");
}

#[test]
fn one_matcher_serves_many_files() {
    let mut rng = Prng::new(10);
    let mut matcher = matcher_with_read_ahead(100);
    for round in 0..30 {
        let blen = [3usize, 50, 700][round % 3];
        let len = rng.below(20_000);
        let basis = random_basis(&mut rng, len);
        let target = random_target(&mut rng, &basis);
        let sums = sums_of(&basis, blen as u32, 16, StrongSum::md4_auto(1));
        let mode = [MatchMode::Normal, MatchMode::Inplace][round % 2];
        let (_, rec) = record(
            &mut matcher,
            &target[..],
            target.len() as u64,
            &sums,
            StrongSum::md4_auto(1),
            mode,
        );
        let expected = reference(
            &target,
            &ref_sums(&basis, blen, 16, 1),
            1,
            mode == MatchMode::Inplace,
        );
        assert_eq!(rec.toks, expected, "round {round}");
    }
}

// ---------------------------------------------------------------------------
// Differential runs against the real rsync: same inputs, the sender's
// `--debug=deltasum2` trace of matches, the generator's sum head, and the
// byte counts of `--stats`.

struct RsyncRun {
    matches: Vec<Tok>,
    count: usize,
    block_len: u32,
    remainder: u32,
    strong_len: usize,
    /// Bytes of the file rsync sent (twice as many after a redo).
    total: u64,
    literal: u64,
    matched: u64,
}

fn rsync_binary() -> Option<PathBuf> {
    let out = Command::new("rsync").arg("--version").output().ok()?;
    out.status.success().then(|| PathBuf::from("rsync"))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upserv-delta-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("dst")).unwrap();
    dir
}

/// Run rsync at protocol 29 from `target` onto `basis`; None without rsync.
fn run_rsync(
    name: &str,
    basis: &[u8],
    target: &[u8],
    seed: u32,
    extra: &[&str],
) -> Option<RsyncRun> {
    let Some(rsync) = rsync_binary() else {
        eprintln!("rsync not installed: skipping the differential check {name}");
        return None;
    };
    let dir = scratch_dir(name);
    let (src, dst) = (dir.join("src/f"), dir.join("dst/f"));
    std::fs::write(&src, target).unwrap();
    std::fs::write(&dst, basis).unwrap();
    let out = Command::new(rsync)
        .args([
            "--protocol=29",
            "--no-whole-file",
            "--ignore-times",
            "--stats",
        ])
        .arg("--debug=deltasum2")
        .arg(format!("--checksum-seed={seed}"))
        .args(extra)
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rsync failed:\n{text}");
    assert_eq!(std::fs::read(&dst).unwrap(), target, "rsync's own result");
    std::fs::remove_dir_all(&dir).unwrap();
    Some(parse_rsync(&text))
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    line[start..].split([' ', ',']).next().unwrap()
}

fn bytes_stat(text: &str, label: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(label)).unwrap();
    line[label.len()..]
        .trim()
        .trim_end_matches(" bytes")
        .replace(',', "")
        .parse()
        .unwrap()
}

fn parse_rsync(text: &str) -> RsyncRun {
    assert!(
        text.matches("hash search b=").count() <= 1,
        "one pass only:\n{text}"
    );
    let mut matches = Vec::new();
    let mut pos = 0u64;
    for line in text.lines().filter(|l| l.starts_with("match at ")) {
        let at: u64 = field(line, "match at ").parse().unwrap();
        let index: u32 = field(line, " j=").parse().unwrap();
        let len: u64 = field(line, " len=").parse().unwrap();
        push_literal(&mut matches, at - pos);
        matches.push(Tok::Block { at, index });
        pos = at + len;
    }
    let head = text.lines().find(|l| l.starts_with("count=")).unwrap();
    let literal = bytes_stat(text, "Literal data:");
    let matched = bytes_stat(text, "Matched data:");
    let total = bytes_stat(text, "Total transferred file size:");
    push_literal(&mut matches, total - pos);
    RsyncRun {
        matches,
        count: field(head, "count=").parse().unwrap(),
        block_len: field(head, "blength=").parse().unwrap(),
        remainder: field(head, " rem=").parse().unwrap(),
        strong_len: field(head, "s2length=").parse().unwrap(),
        total,
        literal,
        matched,
    }
}

/// Our matcher on the same input, with the sum head rsync's generator chose.
fn compare_with_rsync(name: &str, basis: &[u8], target: &[u8], mode: MatchMode, extra: &[&str]) {
    let seed = 0x0bad_5eed;
    let Some(theirs) = run_rsync(name, basis, target, seed, extra) else {
        return;
    };
    assert_eq!(
        theirs.total,
        target.len() as u64,
        "{name}: rsync made a second pass"
    );
    let len = basis.len() as u64;
    if !extra.iter().any(|a| a.starts_with("--block-size")) {
        assert_eq!(
            theirs.block_len,
            block_len_for(len, 29),
            "{name}: block length"
        );
    }
    assert_eq!(
        theirs.strong_len,
        strong_len_for(len, theirs.block_len, false, 16),
        "{name}"
    );
    let sums = sums_of(
        basis,
        theirs.block_len,
        theirs.strong_len,
        StrongSum::md4_auto(seed),
    );
    let (ours, rec) = record(
        &mut Matcher::new(),
        target,
        target.len() as u64,
        &sums,
        StrongSum::md4_auto(seed),
        mode,
    );
    assert_eq!(rec.toks, theirs.matches, "{name}: matches");
    assert_eq!(
        (ours.literal_bytes, ours.matched_bytes),
        (theirs.literal, theirs.matched),
        "{name}"
    );
}

fn rsync_disk_image(rng: &mut Prng, len: usize) -> Vec<u8> {
    let mut disk = vec![0u8; len];
    for _ in 0..12 {
        let n = 1000 + rng.below(60_000);
        let at = rng.below(len - n);
        rng.fill(&mut disk[at..at + n]);
    }
    disk
}

#[test]
fn same_matches_as_rsync_on_edited_random_data() {
    let mut rng = Prng::new(20);
    let basis = rng.bytes(2_000_000);
    let target = edit(&basis, 40, &mut rng);
    compare_with_rsync("edited", &basis, &target, MatchMode::Normal, &[]);
}

#[test]
fn same_matches_as_rsync_on_a_disk_image() {
    let mut rng = Prng::new(21);
    let basis = rsync_disk_image(&mut rng, 3_000_000);
    let mut target = edit(&basis, 20, &mut rng);
    target.truncate(2_999_000);
    compare_with_rsync("disk", &basis, &target, MatchMode::Normal, &[]);
}

#[test]
fn same_matches_as_rsync_with_the_candidate_limit() {
    let (basis, target) = capped_case();
    compare_with_rsync(
        "capped",
        &basis,
        &target,
        MatchMode::Normal,
        &["--block-size=700"],
    );
}

#[test]
fn same_matches_as_rsync_in_place() {
    let mut rng = Prng::new(22);
    // Data, a long run of zeros, data; the target shifts the zeros by an
    // insertion before them and edits here and there, so re-alignment of
    // zero runs and the backward limit both come into play.
    let mut basis = rng.bytes(300_000);
    basis.extend_from_slice(&vec![0u8; 600_000]);
    basis.extend_from_slice(&rng.bytes(300_000));
    let mut target = basis[..250_000].to_vec();
    target.extend_from_slice(&rng.bytes(333));
    target.extend_from_slice(&basis[250_000..]);
    let target = edit(&target, 10, &mut rng);
    compare_with_rsync(
        "inplace",
        &basis,
        &target,
        MatchMode::Inplace,
        &["--inplace"],
    );
    // Blocks moved backwards cannot be used in place.
    let mut moved = basis[600_000..].to_vec();
    moved.extend_from_slice(&basis[..600_000]);
    compare_with_rsync(
        "inplace-moved",
        &basis,
        &moved,
        MatchMode::Inplace,
        &["--inplace"],
    );
}

#[test]
fn same_literal_data_as_rsync_when_appending() {
    let mut rng = Prng::new(23);
    let target = rng.bytes(1_000_000);
    let basis = &target[..612_345];
    let Some(theirs) = run_rsync("append", basis, &target, 1, &["--append"]) else {
        return;
    };
    let sums = BlockSums::new(theirs.block_len, theirs.remainder, 2, theirs.count);
    assert_eq!(sums.basis_len(), 612_345);
    let (out, _) = record(
        &mut Matcher::new(),
        &target[..],
        1_000_000,
        &sums,
        StrongSum::md4_auto(1),
        MatchMode::Append { verify: true },
    );
    assert_eq!(
        (out.literal_bytes, out.matched_bytes),
        (theirs.literal, theirs.matched)
    );
    assert_eq!(out.literal_bytes, 1_000_000 - 612_345);
}

/// rsync's whole-file sum travels in a batch file right after the file's
/// tokens; ours must appear there, byte for byte.
#[test]
fn whole_file_sum_equals_rsyncs() {
    if rsync_binary().is_none() {
        eprintln!("rsync not installed: skipping");
        return;
    }
    let data = Prng::new(24).bytes(5000);
    let seed: u32 = 0x1234_5678;
    let dir = scratch_dir("batch");
    std::fs::write(dir.join("src/f"), &data).unwrap();
    let batch = dir.join("batch");
    let status = Command::new("rsync")
        .args(["--protocol=29", "--whole-file"])
        .arg(format!("--checksum-seed={seed}"))
        .arg(format!("--only-write-batch={}", batch.display()))
        .arg(dir.join("src/f"))
        .arg(dir.join("dst/f"))
        .status()
        .unwrap();
    assert!(status.success());
    let written = std::fs::read(&batch).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let sums = BlockSums::new(0, 0, 16, 0);
    let (ours, _) = record_whole(&mut Matcher::new(), &data, &sums, StrongSum::md4_auto(seed));
    assert!(
        contains(&written, &ours.file_sum),
        "sum not in rsync's batch"
    );
    // And it is the seeded sum, not the plain MD4 of the data.
    assert!(!contains(
        &written,
        &file_checksum(SumKind::Md4Auto, &data[..]).unwrap()
    ));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
