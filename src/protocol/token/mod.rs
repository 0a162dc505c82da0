//! Token streams: how the delta reaches the client (rsync: token.c), in the form
//! the client's options ask for: [`plain`] without compression, [`zlib`]
//! for `-z`/`-zz` (zlib and zlibx), [`zstd`] and [`lz4`] for
//! `--compress-choice`. [`Codec`] is a connection's compressor, [`Tokens`]
//! one file's stream.
//!
//! The compressed forms share their framing, which lives here: compressed
//! bytes in DEFLATED_DATA chunks of at most [`MAX_DATA_COUNT`] bytes, matched
//! blocks as [`BlockRuns`], END_FLAG at the end of a file.

pub(crate) mod lz4;
pub(crate) mod plain;
pub(crate) mod zlib;
pub(crate) mod zstd;

use super::options::Compression;
use super::wire::WireWrite;
use crate::delta::TokenSink;
pub(crate) use plain::SimpleTokens;
use std::io;

/// The largest literal run in one token (rsync's CHUNK_SIZE): recent clients
/// refuse longer ones.
pub(crate) const CHUNK_SIZE: usize = 32 * 1024;

/// Flag byte that ends a file's token stream.
const END_FLAG: u8 = 0x00;
/// Flag byte of a block number sent in full as an int32 ...
const TOKEN_LONG: u8 = 0x20;
/// ... and of a run of consecutive blocks starting there.
const TOKENRUN_LONG: u8 = 0x21;
/// Flag of a compressed data chunk; its low 6 bits are the high bits of
/// the chunk's length, a second byte holds the low 8.
const DEFLATED_DATA: u8 = 0x40;
/// Flag of a block number given as a distance (its low 6 bits) from the
/// last block of the previous run ...
const TOKEN_REL: u8 = 0x80;
/// ... and of a run of consecutive blocks starting there.
const TOKENRUN_REL: u8 = 0xc0;
/// The largest distance the relative forms can carry.
const MAX_REL_DISTANCE: i64 = 0x3f;
/// A run carries its extra block count in 16 bits.
const MAX_RUN_EXTRA: u32 = 0xffff;
/// The largest compressed chunk: its length must fit in 14 bits.
const MAX_DATA_COUNT: usize = 16383;

/// A token sink that also knows how to end a file's stream.
pub(crate) trait TokenWriter: TokenSink {
    fn finish(&mut self) -> io::Result<()>;
}

/// One connection's compressor, kept from file to file.
pub(crate) enum Codec {
    Zlib(zlib::Deflater),
    Zstd(zstd::ZstdCoder),
    Lz4(lz4::Lz4Coder),
}

impl Codec {
    /// The compressor the client's options ask for, or `None` for the
    /// plain token stream; `protocol` decides a deflate detail.
    pub(crate) fn for_options(
        compression: Compression,
        level: Option<i32>,
        protocol: u32,
    ) -> io::Result<Option<Codec>> {
        Ok(match compression {
            Compression::Zstd => Some(Codec::Zstd(zstd::ZstdCoder::new(level)?)),
            Compression::Lz4 => Some(Codec::Lz4(lz4::Lz4Coder::new())),
            _ => zlib::Deflater::for_options(compression, level, protocol).map(Codec::Zlib),
        })
    }

    /// The token writer for the next file.
    pub(crate) fn start_file<'a, W: WireWrite>(&'a mut self, out: &'a mut W) -> Tokens<'a, W> {
        match self {
            Codec::Zlib(d) => Tokens::Deflated(d.start_file(out)),
            Codec::Zstd(z) => Tokens::Zstd(z.start_file(out)),
            Codec::Lz4(l) => Tokens::Lz4(l.start_file(out)),
        }
    }
}

/// The token stream of one file, in the form the client asked for.
pub(crate) enum Tokens<'a, W: WireWrite> {
    Simple(SimpleTokens<'a, W>),
    Deflated(zlib::DeflatedTokens<'a, W>),
    Zstd(zstd::ZstdTokens<'a, W>),
    Lz4(lz4::Lz4Tokens<'a, W>),
}

impl<'a, W: WireWrite> Tokens<'a, W> {
    /// The stream of the next file: plain without a codec.
    pub(crate) fn new(codec: Option<&'a mut Codec>, out: &'a mut W) -> Self {
        match codec {
            None => Tokens::Simple(SimpleTokens::new(out)),
            Some(codec) => codec.start_file(out),
        }
    }

    fn inner(&mut self) -> &mut dyn TokenWriter {
        match self {
            Tokens::Simple(t) => t,
            Tokens::Deflated(t) => t,
            Tokens::Zstd(t) => t,
            Tokens::Lz4(t) => t,
        }
    }
}

impl<W: WireWrite> TokenSink for Tokens<'_, W> {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner().literal(data)
    }

    fn matched(&mut self, block_index: u32, data: &[u8]) -> io::Result<()> {
        self.inner().matched(block_index, data)
    }
}

impl<W: WireWrite> TokenWriter for Tokens<'_, W> {
    fn finish(&mut self) -> io::Result<()> {
        self.inner().finish()
    }
}

/// A run of consecutive matched blocks not yet sent.
#[derive(Clone, Copy)]
struct Run {
    first: u32,
    last: u32,
}

/// Matched blocks of a compressed stream, sent as runs of consecutive block
/// numbers, relative to the previous run's last block when close enough.
#[derive(Default)]
struct BlockRuns {
    run: Option<Run>,
    /// Where the receiver's block counter stands: the last block sent.
    last_run_end: u32,
}

impl BlockRuns {
    /// Adds a matched block, sending the pending run first unless the block
    /// extends it.
    fn add<W: WireWrite>(&mut self, out: &mut W, block_index: u32) -> io::Result<()> {
        match &mut self.run {
            Some(run)
                if u64::from(block_index) == u64::from(run.last) + 1
                    && block_index - run.first <= MAX_RUN_EXTRA =>
            {
                run.last = block_index;
            }
            _ => {
                self.flush(out)?;
                self.run = Some(Run {
                    first: block_index,
                    last: block_index,
                });
            }
        }
        Ok(())
    }

    /// Sends the pending run, if any.
    fn flush<W: WireWrite>(&mut self, out: &mut W) -> io::Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let distance = i64::from(run.first) - i64::from(self.last_run_end);
        let extra = run.last - run.first;
        if (0..=MAX_REL_DISTANCE).contains(&distance) {
            let flag = if extra == 0 { TOKEN_REL } else { TOKENRUN_REL };
            out.write_u8(flag + distance as u8)?;
        } else {
            let first = i32::try_from(run.first).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("block number {} does not fit the token stream", run.first),
                )
            })?;
            let flag = if extra == 0 {
                TOKEN_LONG
            } else {
                TOKENRUN_LONG
            };
            out.write_u8(flag)?;
            out.write_i32(first)?;
        }
        if extra != 0 {
            // `add` starts a new run before the count would overflow.
            out.write_u16(extra as u16)?;
        }
        self.last_run_end = run.last;
        Ok(())
    }
}

/// Frames compressed bytes as DEFLATED_DATA chunks.
fn send_chunks<W: WireWrite>(out: &mut W, data: &[u8]) -> io::Result<()> {
    for chunk in data.chunks(MAX_DATA_COUNT) {
        let len = chunk.len();
        out.write_all(&[DEFLATED_DATA | (len >> 8) as u8, len as u8])?;
        out.write_all(chunk)?;
    }
    Ok(())
}

/// A receiver of the compressed token forms without history (zstd, lz4),
/// after rsync: token.c recv_compressed_token_num: it rebuilds one file from a
/// stream, the basis `blocks` and the codec's `unpack` of each chunk.
#[cfg(test)]
pub(crate) fn receive_file(
    stream: &mut &[u8],
    blocks: &[Vec<u8>],
    mut unpack: impl FnMut(&[u8], &mut Vec<u8>),
) -> Vec<u8> {
    fn take<'a>(stream: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (head, rest) = stream.split_at(n);
        *stream = rest;
        head
    }
    let mut file = Vec::new();
    let mut token = 0i64;
    loop {
        let flag = take(stream, 1)[0];
        if flag & 0xc0 == DEFLATED_DATA {
            let len = (usize::from(flag & 0x3f) << 8) | usize::from(take(stream, 1)[0]);
            assert!(len <= MAX_DATA_COUNT);
            unpack(take(stream, len), &mut file);
            continue;
        }
        let (first, run) = match flag {
            END_FLAG => return file,
            f if f & TOKEN_REL != 0 => (token + i64::from(f & 0x3f), f & 0x40 != 0),
            TOKEN_LONG | TOKENRUN_LONG => {
                let b = take(stream, 4);
                (
                    i64::from(i32::from_le_bytes(b.try_into().unwrap())),
                    flag & 1 != 0,
                )
            }
            f => panic!("unknown flag byte {f:#04x}"),
        };
        let extra = if run {
            i64::from(u16::from_le_bytes(take(stream, 2).try_into().unwrap()))
        } else {
            0
        };
        for index in first..=first + extra {
            file.extend_from_slice(&blocks[index as usize]);
        }
        token = first + extra;
    }
}
