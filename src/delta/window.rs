//! The matcher's view of the file being sent: a bounded buffer sliding over
//! an `impl Read` (what rsync's fileio.c map_ptr gives match.c).
//!
//! Owns the buffer, reading, and the discovery that the file is shorter or
//! longer than announced. It must not decide what to send: the caller says
//! how far back it still needs bytes, and hands those it no longer needs to
//! the sink before the window slides past them.

use std::io::{self, Read};

/// Bytes read ahead beyond the two blocks the matcher may look at (rsync's
/// MAX_MAP_SIZE): big reads, and literal data handed on in big pieces.
pub(crate) const READ_AHEAD: usize = 256 * 1024;
/// A buffer grown for a file with huge blocks is given back afterwards when
/// it is more than this and several times what the next file needs.
const KEEP_BUFFER_MAX: usize = 8 * 1024 * 1024;
/// How much bigger than needed a kept buffer may be.
const KEEP_BUFFER_FACTOR: usize = 4;

/// A window over bytes `base .. base + filled` of the file.
pub(crate) struct Window<'b, R> {
    buf: &'b mut Vec<u8>,
    reader: R,
    /// File offset of `buf[0]`.
    base: u64,
    filled: usize,
    /// Where the file ends: the announced length, or less once a read hit
    /// the end early.
    len: u64,
    short: bool,
}

impl<'b, R: Read> Window<'b, R> {
    /// A window over `reader`, which should hold `file_len` bytes; `span` is
    /// how far beyond its first byte the caller needs to see (two blocks),
    /// `read_ahead` how much more to read at once.
    pub(crate) fn new(
        buf: &'b mut Vec<u8>,
        reader: R,
        file_len: u64,
        span: u64,
        read_ahead: usize,
    ) -> Self {
        let span = usize::try_from(span.min(file_len)).unwrap_or(usize::MAX / 2);
        let cap = span.saturating_add(read_ahead).max(1);
        if buf.len() < cap {
            buf.resize(cap, 0);
        } else if buf.len() > KEEP_BUFFER_MAX && buf.len() / KEEP_BUFFER_FACTOR > cap {
            buf.truncate(cap);
            buf.shrink_to_fit();
        }
        Window {
            buf,
            reader,
            base: 0,
            filled: 0,
            len: file_len,
            short: false,
        }
    }

    /// Where the file ends, as far as is known.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The file offset just past the bytes held.
    #[inline]
    pub(crate) fn end(&self) -> u64 {
        self.base + self.filled as u64
    }

    /// Whether the file ended before its announced length.
    pub(crate) fn is_short(&self) -> bool {
        self.short
    }

    /// The held bytes and the file offset of the first one.
    #[inline]
    pub(crate) fn held(&self) -> (&[u8], u64) {
        (&self.buf[..self.filled], self.base)
    }

    /// Bytes `from..to` of the file, which must be held.
    #[inline]
    pub(crate) fn bytes(&self, from: u64, to: u64) -> &[u8] {
        &self.buf[(from - self.base) as usize..(to - self.base) as usize]
    }

    /// Whether bytes up to `upto` (capped at the end of the file) are held.
    #[inline]
    pub(crate) fn holds(&self, upto: u64) -> bool {
        upto.min(self.len) <= self.end()
    }

    /// Forget the bytes before `keep_from` and read on until the buffer is
    /// full or the file ends. Reads never go past the announced length.
    pub(crate) fn fill(&mut self, keep_from: u64) -> io::Result<()> {
        let drop = (keep_from - self.base) as usize;
        self.buf.copy_within(drop..self.filled, 0);
        self.filled -= drop;
        self.base = keep_from;
        while self.filled < self.buf.len() && self.end() < self.len {
            let room = self.buf.len() - self.filled;
            let want = room.min(usize::try_from(self.len - self.end()).unwrap_or(room));
            match self
                .reader
                .read(&mut self.buf[self.filled..self.filled + want])
            {
                Ok(0) => {
                    self.len = self.end();
                    self.short = true;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// After the whole announced length was read: whether the file goes on.
    pub(crate) fn grew(&mut self) -> io::Result<bool> {
        if self.short {
            return Ok(false);
        }
        let mut probe = [0u8; 1];
        loop {
            match self.reader.read(&mut probe) {
                Ok(n) => return Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_and_keeps_what_is_asked() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = Vec::new();
        let mut w = Window::new(&mut buf, &data[..], data.len() as u64, 1000, READ_AHEAD);
        w.fill(0).unwrap();
        assert_eq!(w.end(), (1000 + READ_AHEAD) as u64);
        assert_eq!(w.bytes(10, 20), &data[10..20]);
        w.fill(200_000).unwrap();
        assert_eq!(w.bytes(200_000, 200_010), &data[200_000..200_010]);
        assert_eq!(w.end(), (200_000 + 1000 + READ_AHEAD) as u64);
        while w.end() < w.len() {
            let keep = w.end() - 10;
            w.fill(keep).unwrap();
        }
        assert_eq!(w.end(), data.len() as u64);
        assert!(!w.is_short());
        assert!(!w.grew().unwrap());
    }

    #[test]
    fn notices_short_and_long_files() {
        let data = [7u8; 100];
        let mut buf = Vec::new();
        let mut w = Window::new(&mut buf, &data[..], 150, 0, READ_AHEAD);
        w.fill(0).unwrap();
        assert!(w.is_short());
        assert_eq!((w.len(), w.end()), (100, 100));

        let mut w = Window::new(&mut buf, &data[..], 60, 0, READ_AHEAD);
        w.fill(0).unwrap();
        assert_eq!((w.len(), w.end()), (60, 60));
        assert!(w.grew().unwrap());
    }

    #[test]
    fn a_huge_buffer_is_given_back() {
        let mut buf = vec![0u8; 64 * 1024 * 1024];
        Window::new(&mut buf, &[][..], 10, 10, READ_AHEAD);
        assert!(buf.len() < KEEP_BUFFER_MAX);
    }
}
