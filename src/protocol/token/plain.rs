//! The plain token stream, used without compression: literal runs as a
//! length and the bytes (at most [`CHUNK_SIZE`] each), a matched block as
//! `-(index + 1)`, and 0 at the end (rsync: token.c simple_send_token).

use super::{TokenWriter, CHUNK_SIZE};
use crate::delta::TokenSink;
use crate::protocol::wire::WireWrite;
use std::io;

pub(crate) struct SimpleTokens<'a, W: WireWrite> {
    out: &'a mut W,
}

impl<'a, W: WireWrite> SimpleTokens<'a, W> {
    pub(crate) fn new(out: &'a mut W) -> Self {
        SimpleTokens { out }
    }
}

impl<W: WireWrite> TokenSink for SimpleTokens<'_, W> {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(CHUNK_SIZE) {
            self.out.write_i32(chunk.len() as i32)?;
            self.out.write_all(chunk)?;
        }
        Ok(())
    }

    fn matched(&mut self, block_index: u32, _data: &[u8]) -> io::Result<()> {
        self.out.write_i32(-(block_index as i32) - 1)
    }
}

impl<W: WireWrite> TokenWriter for SimpleTokens<'_, W> {
    fn finish(&mut self) -> io::Result<()> {
        self.out.write_i32(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_runs_are_chunked_and_matches_negative() {
        let mut out = Vec::new();
        let mut t = SimpleTokens::new(&mut out);
        t.literal(&vec![9u8; CHUNK_SIZE + 3]).unwrap();
        t.matched(0, b"").unwrap();
        t.matched(5, b"").unwrap();
        t.finish().unwrap();
        let mut expect = Vec::new();
        expect.extend_from_slice(&(CHUNK_SIZE as i32).to_le_bytes());
        expect.extend(std::iter::repeat_n(9u8, CHUNK_SIZE));
        expect.extend_from_slice(&3i32.to_le_bytes());
        expect.extend_from_slice(&[9, 9, 9]);
        expect.extend_from_slice(&(-1i32).to_le_bytes());
        expect.extend_from_slice(&(-6i32).to_le_bytes());
        expect.extend_from_slice(&0i32.to_le_bytes());
        assert_eq!(out, expect);
    }
}
