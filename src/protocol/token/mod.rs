//! Token streams: how the delta reaches the client (token.c). The simple
//! form, used without `-z`: literal runs as a length and the bytes (at most
//! [`CHUNK_SIZE`] each), a matched block as `-(index + 1)`, and 0 at the end.
//! The compressed form lives in [`zlib`]; [`Tokens`] is either.

pub mod zlib;

use super::wire::WireWrite;
use crate::delta::TokenSink;
use std::io;
use zlib::DeflatedTokens;

/// The largest literal run in one token (rsync's CHUNK_SIZE): recent clients
/// refuse longer ones.
pub const CHUNK_SIZE: usize = 32 * 1024;

/// A token sink that also knows how to end a file's stream.
pub trait TokenWriter: TokenSink {
    fn finish(&mut self) -> io::Result<()>;
}

pub struct SimpleTokens<'a, W: WireWrite> {
    out: &'a mut W,
}

impl<'a, W: WireWrite> SimpleTokens<'a, W> {
    pub fn new(out: &'a mut W) -> Self {
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

/// The token stream of one file, in the form the client asked for.
pub enum Tokens<'a, W: WireWrite> {
    Simple(SimpleTokens<'a, W>),
    Deflated(DeflatedTokens<'a, W>),
}

impl<W: WireWrite> TokenSink for Tokens<'_, W> {
    fn literal(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Tokens::Simple(t) => t.literal(data),
            Tokens::Deflated(t) => t.literal(data),
        }
    }

    fn matched(&mut self, block_index: u32, data: &[u8]) -> io::Result<()> {
        match self {
            Tokens::Simple(t) => t.matched(block_index, data),
            Tokens::Deflated(t) => t.matched(block_index, data),
        }
    }
}

impl<W: WireWrite> TokenWriter for Tokens<'_, W> {
    fn finish(&mut self) -> io::Result<()> {
        match self {
            Tokens::Simple(t) => t.finish(),
            Tokens::Deflated(t) => t.finish(),
        }
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
