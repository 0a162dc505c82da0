//! Placeholder with the agreed API (the delta engine is being written on the
//! `delta` branch): sends every file as literal data.
use md4::{Digest, Md4};
use std::io::{self, Read};

pub fn file_checksum(mut r: impl Read) -> io::Result<[u8; 16]> {
    let mut h = Md4::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

pub struct BlockSums {
    block_len: u32,
    remainder: u32,
    strong_len: usize,
    weak: Vec<u32>,
    strong: Vec<u8>,
}

impl BlockSums {
    pub fn new(block_len: u32, remainder: u32, strong_len: usize, count: usize) -> BlockSums {
        BlockSums {
            block_len,
            remainder,
            strong_len,
            weak: Vec::with_capacity(count),
            strong: Vec::with_capacity(count * strong_len),
        }
    }
    pub fn push(&mut self, weak: u32, strong: &[u8]) {
        self.weak.push(weak);
        self.strong.extend_from_slice(strong);
    }
    pub fn count(&self) -> usize {
        self.weak.len()
    }
    pub fn block_len(&self) -> u32 {
        self.block_len
    }
    pub fn remainder(&self) -> u32 {
        self.remainder
    }
    pub fn strong_len(&self) -> usize {
        self.strong_len
    }
}

pub trait TokenSink {
    fn literal(&mut self, data: &[u8]) -> io::Result<()>;
    fn matched(&mut self, block_index: u32, data: &[u8]) -> io::Result<()>;
}

pub enum MatchMode {
    Normal,
    Inplace,
    Append { verify: bool },
}

pub struct MatchOutcome {
    pub file_sum: [u8; 16],
    pub literal_bytes: u64,
    pub matched_bytes: u64,
}

pub enum MatchError {
    Read(io::Error),
    Sink(io::Error),
}

#[derive(Default)]
pub struct Matcher {
    buf: Vec<u8>,
}

impl Matcher {
    pub fn new() -> Matcher {
        Matcher {
            buf: vec![0u8; 256 * 1024],
        }
    }
    pub fn send<R: Read, S: TokenSink>(
        &mut self,
        mut source: R,
        _file_len: u64,
        _sums: &BlockSums,
        seed: u32,
        _mode: MatchMode,
        sink: &mut S,
    ) -> Result<MatchOutcome, MatchError> {
        let mut h = Md4::new();
        h.update(seed.to_le_bytes());
        let mut total = 0u64;
        loop {
            let n = source.read(&mut self.buf).map_err(MatchError::Read)?;
            if n == 0 {
                break;
            }
            h.update(&self.buf[..n]);
            sink.literal(&self.buf[..n]).map_err(MatchError::Sink)?;
            total += n as u64;
        }
        Ok(MatchOutcome {
            file_sum: h.finalize().into(),
            literal_bytes: total,
            matched_bytes: 0,
        })
    }
}
