//! The LZ4 token stream of `--compress-choice=lz4` (rsync: token.c
//! send_compressed_token): literal data in pieces, each compressed into an
//! LZ4 block of its own that fits one DEFLATED_DATA chunk; the receiver
//! decompresses every chunk alone, so there is no history, no flush and no
//! level.
//!
//! Owns the LZ4 encoding only; what is literal and what matches is the
//! delta engine's business.

use super::{send_chunks, BlockRuns, TokenWriter, END_FLAG, MAX_DATA_COUNT};
use crate::delta::TokenSink;
use crate::protocol::wire::WireWrite;
use lz4_flex::block::{compress_into, get_maximum_output_size};
use std::io;

/// One connection's output buffer, big enough for any piece's block.
pub(crate) struct Lz4Coder {
    buf: Vec<u8>,
}

impl Default for Lz4Coder {
    fn default() -> Self {
        Lz4Coder::new()
    }
}

impl Lz4Coder {
    pub(crate) fn new() -> Lz4Coder {
        Lz4Coder {
            buf: vec![0; get_maximum_output_size(MAX_DATA_COUNT)],
        }
    }

    /// The token writer for the next file.
    pub(crate) fn start_file<'a, W: WireWrite>(&'a mut self, out: &'a mut W) -> Lz4Tokens<'a, W> {
        Lz4Tokens {
            out,
            buf: &mut self.buf,
            runs: BlockRuns::default(),
        }
    }
}

/// One file's LZ4 token stream.
pub(crate) struct Lz4Tokens<'a, W: WireWrite> {
    out: &'a mut W,
    buf: &'a mut Vec<u8>,
    runs: BlockRuns,
}

impl<W: WireWrite> TokenSink for Lz4Tokens<'_, W> {
    fn literal(&mut self, mut data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // The receiver takes the blocks before this data first.
        self.runs.flush(self.out)?;
        let mut piece = data.len().min(MAX_DATA_COUNT);
        while !data.is_empty() {
            let n = compress_into(&data[..piece], self.buf)
                .map_err(|e| io::Error::other(format!("lz4 compression failed: {e}")))?;
            if n > MAX_DATA_COUNT {
                // Incompressible: a smaller piece fits (as rsync halves it).
                piece /= 2;
                continue;
            }
            send_chunks(self.out, &self.buf[..n])?;
            data = &data[piece..];
            piece = data.len().min(MAX_DATA_COUNT);
        }
        Ok(())
    }

    fn matched(&mut self, block_index: u32, _data: &[u8]) -> io::Result<()> {
        self.runs.add(self.out, block_index)
    }
}

impl<W: WireWrite> TokenWriter for Lz4Tokens<'_, W> {
    fn finish(&mut self) -> io::Result<()> {
        self.runs.flush(self.out)?;
        self.out.write_u8(END_FLAG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::bench::Prng;
    use crate::protocol::token::receive_file;

    #[test]
    fn incompressible_literals_fit_chunks_and_blocks_interleave() {
        let blocks: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 700]).collect();
        let noise = Prng::new(1).bytes(100_000);
        let mut coder = Lz4Coder::new();
        let mut stream = Vec::new();
        let mut t = coder.start_file(&mut stream);
        t.literal(&noise).unwrap();
        t.matched(3, &blocks[3]).unwrap();
        t.matched(4, &blocks[4]).unwrap();
        t.literal(b"between").unwrap();
        t.matched(11, &blocks[11]).unwrap();
        t.finish().unwrap();

        let mut expected = noise.clone();
        for part in [&blocks[3][..], &blocks[4], b"between", &blocks[11]] {
            expected.extend_from_slice(part);
        }
        let mut rest = &stream[..];
        let file = receive_file(&mut rest, &blocks, |chunk, out| {
            out.extend(lz4_flex::block::decompress(chunk, CHUNK_OUT).unwrap())
        });
        assert_eq!(file, expected);
        assert!(rest.is_empty());
    }

    /// What rsync's receiver allows one chunk to unpack to.
    const CHUNK_OUT: usize = 32 * 1024;
}
