//! The zstd token stream of `--compress-choice=zstd` (token.c
//! send_zstd_token).
//!
//! One zstd stream runs through the whole transfer: the receiver keeps its
//! decompressor from file to file, so the compressor is never reset. A
//! literal run is flushed (not ended) before the next matched block and at
//! the end of each file, so the receiver can decode everything sent so far;
//! matched data never enters zstd's history. The output goes out in
//! DEFLATED_DATA chunks as it comes.
//!
//! Owns the zstd encoding only; what is literal and what matches is the
//! delta engine's business.

use super::{send_chunks, BlockRuns, TokenWriter, END_FLAG, MAX_DATA_COUNT};
use crate::delta::TokenSink;
use crate::protocol::wire::WireWrite;
use std::io;
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

/// rsync's level when the client names none, or names 0 (zstd's own
/// default, ZSTD_CLEVEL_DEFAULT).
const DEFAULT_LEVEL: i32 = zstd::DEFAULT_COMPRESSION_LEVEL;

/// One connection's zstd compressor and its output buffer.
pub struct ZstdCoder {
    z: Encoder<'static>,
    /// One chunk's worth of compressed output.
    buf: Vec<u8>,
}

impl ZstdCoder {
    /// A compressor at the client's `--compress-level`, which rsync
    /// clamps to the levels zstd knows (token.c init_compression_level).
    pub fn new(level: Option<i32>) -> io::Result<ZstdCoder> {
        let level = match level {
            None | Some(0) => DEFAULT_LEVEL,
            Some(n) => {
                let known = zstd::compression_level_range();
                n.clamp(*known.start(), *known.end())
            }
        };
        Ok(ZstdCoder {
            z: Encoder::new(level)?,
            buf: vec![0; MAX_DATA_COUNT],
        })
    }

    /// The token writer for the next file; the stream goes on.
    pub fn start_file<'a, W: WireWrite>(&'a mut self, out: &'a mut W) -> ZstdTokens<'a, W> {
        ZstdTokens {
            out,
            z: self,
            literal_open: false,
            runs: BlockRuns::default(),
        }
    }
}

/// One file's zstd token stream.
pub struct ZstdTokens<'a, W: WireWrite> {
    out: &'a mut W,
    z: &'a mut ZstdCoder,
    /// Literal data went in since the last flush.
    literal_open: bool,
    runs: BlockRuns,
}

impl<W: WireWrite> ZstdTokens<'_, W> {
    /// Flushes the literal run so the receiver has all of it.
    fn close_literal(&mut self) -> io::Result<()> {
        if !self.literal_open {
            return Ok(());
        }
        self.literal_open = false;
        loop {
            let mut output = OutBuffer::around(&mut self.z.buf[..]);
            let left = self.z.z.flush(&mut output)?;
            let n = output.pos();
            send_chunks(self.out, &self.z.buf[..n])?;
            if left == 0 {
                return Ok(());
            }
        }
    }
}

impl<W: WireWrite> TokenSink for ZstdTokens<'_, W> {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // The receiver takes the blocks before this data first.
        self.runs.flush(self.out)?;
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            let mut output = OutBuffer::around(&mut self.z.buf[..]);
            self.z.z.run(&mut input, &mut output)?;
            let n = output.pos();
            send_chunks(self.out, &self.z.buf[..n])?;
        }
        self.literal_open = true;
        Ok(())
    }

    fn matched(&mut self, block_index: u32, _data: &[u8]) -> io::Result<()> {
        self.close_literal()?;
        self.runs.add(self.out, block_index)
    }
}

impl<W: WireWrite> TokenWriter for ZstdTokens<'_, W> {
    fn finish(&mut self) -> io::Result<()> {
        self.close_literal()?;
        self.runs.flush(self.out)?;
        self.out.write_u8(END_FLAG)
    }
}
