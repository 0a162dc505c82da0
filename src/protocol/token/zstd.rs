//! The zstd token stream of `--compress-choice=zstd` (rsync: token.c
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

/// The highest level we compress at, whatever the client asks: zstd's
/// compressor grows with the level, to about 15 MB per connection at 9, 94 MB
/// at 19 and 870 MB at 22 (measured with ZSTD_sizeof_CCtx after 4 MiB). The
/// receiver decodes any level, so only the ratio differs from rsyncd's.
const MAX_LEVEL: i32 = 9;

/// One connection's zstd compressor and its output buffer.
pub(crate) struct ZstdCoder {
    z: Encoder<'static>,
    /// One chunk's worth of compressed output.
    buf: Vec<u8>,
}

impl ZstdCoder {
    /// A compressor at the client's `--compress-level`, clamped to the
    /// levels zstd knows as rsync does (rsync: token.c init_compression_level),
    /// and to [`MAX_LEVEL`].
    pub(crate) fn new(level: Option<i32>) -> io::Result<ZstdCoder> {
        Ok(ZstdCoder {
            z: Encoder::new(effective_level(level))?,
            buf: vec![0; MAX_DATA_COUNT],
        })
    }

    /// The token writer for the next file; the stream goes on.
    pub(crate) fn start_file<'a, W: WireWrite>(&'a mut self, out: &'a mut W) -> ZstdTokens<'a, W> {
        ZstdTokens {
            out,
            z: self,
            literal_open: false,
            runs: BlockRuns::default(),
        }
    }
}

/// The level for the client's `--compress-level`: rsync's default for none
/// or 0.
fn effective_level(level: Option<i32>) -> i32 {
    match level {
        None | Some(0) => DEFAULT_LEVEL,
        Some(n) => n.clamp(*zstd::compression_level_range().start(), MAX_LEVEL),
    }
}

/// One file's zstd token stream.
pub(crate) struct ZstdTokens<'a, W: WireWrite> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::token::receive_file;
    use zstd::stream::raw::Decoder;

    #[test]
    fn levels_are_clamped_and_capped() {
        assert_eq!(effective_level(None), DEFAULT_LEVEL);
        assert_eq!(effective_level(Some(0)), DEFAULT_LEVEL);
        assert_eq!(effective_level(Some(-5)), -5);
        assert_eq!(
            effective_level(Some(i32::MIN)),
            *zstd::compression_level_range().start()
        );
        assert_eq!(effective_level(Some(22)), MAX_LEVEL);
    }

    /// Two files through one compressor, decoded by one decompressor as
    /// rsync's receiver does: each file complete at its END_FLAG.
    #[test]
    fn one_stream_runs_through_every_file() {
        let blocks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 1000]).collect();
        let text: Vec<u8> = b"zstd remembers earlier files. ".repeat(3000);
        let mut coder = ZstdCoder::new(Some(99)).unwrap();
        let mut decoder = Decoder::new().unwrap();
        let mut buf = vec![0u8; 1 << 17];
        for round in 0..2 {
            let mut stream = Vec::new();
            let mut t = coder.start_file(&mut stream);
            t.literal(&text).unwrap();
            t.matched(2, &blocks[2]).unwrap();
            t.literal(b"tail").unwrap();
            t.finish().unwrap();
            if round == 1 {
                // The second copy refers back to the first file.
                assert!(stream.len() < 200, "{} bytes", stream.len());
            }
            let mut rest = &stream[..];
            let file = receive_file(&mut rest, &blocks, |chunk, out| {
                let mut input = InBuffer::around(chunk);
                while input.pos() < chunk.len() {
                    let mut output = OutBuffer::around(&mut buf[..]);
                    decoder.run(&mut input, &mut output).unwrap();
                    let n = output.pos();
                    out.extend_from_slice(&buf[..n]);
                }
            });
            let mut expected = text.clone();
            expected.extend_from_slice(&blocks[2]);
            expected.extend_from_slice(b"tail");
            assert_eq!(file, expected, "file {round}");
            assert!(rest.is_empty());
        }
    }
}
