//! Encodings of the rsync wire for protocols 27–29: little-endian integers,
//! the "longint" 64-bit escape, short strings. Pure byte shuffling: no I/O,
//! no policy. Reading goes through [`WireRead`], which the connection and
//! test buffers implement; writing appends to a `Vec<u8>` or goes through
//! [`WireWrite`].

use std::io;

/// The marker that announces a 64-bit value in a "longint" (rsync: io.c write_longint).
const LONGINT_ESCAPE: i32 = -1;

/// Sources of wire bytes. `read_exact` fails with `UnexpectedEof` when the peer
/// closed the stream.
pub trait WireRead {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;

    fn read_u8(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn read_u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.read_exact(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn read_i32(&mut self) -> io::Result<i32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    /// rsync's read_longint: an int32, or -1 followed by a full 64-bit value.
    fn read_longint(&mut self) -> io::Result<i64> {
        let v = self.read_i32()?;
        if v != LONGINT_ESCAPE {
            return Ok(i64::from(v));
        }
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(i64::from_le_bytes(b))
    }
}

/// Sinks of wire bytes.
pub trait WireWrite {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;

    fn write_u8(&mut self, v: u8) -> io::Result<()> {
        self.write_all(&[v])
    }

    fn write_u16(&mut self, v: u16) -> io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    fn write_i32(&mut self, v: i32) -> io::Result<()> {
        self.write_all(&v.to_le_bytes())
    }

    /// rsync's write_longint: small non-negative values as an int32, anything
    /// else as the -1 escape followed by 64 bits.
    fn write_longint(&mut self, v: i64) -> io::Result<()> {
        if (0..=i64::from(i32::MAX)).contains(&v) {
            return self.write_i32(v as i32);
        }
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&LONGINT_ESCAPE.to_le_bytes());
        b[4..].copy_from_slice(&v.to_le_bytes());
        self.write_all(&b)
    }

    /// rsync's write_vstring: a one-byte length, or two bytes with the high
    /// bit set for lengths above 127 (at most 0x7fff).
    fn write_vstring(&mut self, s: &[u8]) -> io::Result<()> {
        let len = s.len().min(0x7fff);
        if len > 0x7f {
            self.write_u8((len >> 8) as u8 | 0x80)?;
        }
        self.write_u8(len as u8)?;
        self.write_all(&s[..len])
    }
}

impl WireWrite for Vec<u8> {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

impl WireRead for &[u8] {
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        io::Read::read_exact(self, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longint_small_values_are_four_bytes() {
        let mut out = Vec::new();
        out.write_longint(0x1234_5678).unwrap();
        assert_eq!(out, [0x78, 0x56, 0x34, 0x12]);
    }

    #[test]
    fn longint_large_and_negative_values_use_the_escape() {
        let mut out = Vec::new();
        out.write_longint(0x1_0000_0000).unwrap();
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0]);
        let mut rd: &[u8] = &out;
        assert_eq!(rd.read_longint().unwrap(), 0x1_0000_0000);

        let mut out = Vec::new();
        out.write_longint(-2).unwrap();
        assert_eq!(out.len(), 12);
        let mut rd: &[u8] = &out;
        assert_eq!(rd.read_longint().unwrap(), -2);
    }

    #[test]
    fn vstring_uses_two_bytes_above_127() {
        let mut out = Vec::new();
        out.write_vstring(b"abc").unwrap();
        assert_eq!(out, b"\x03abc");
        let long = vec![b'x'; 300];
        let mut out = Vec::new();
        out.write_vstring(&long).unwrap();
        assert_eq!(&out[..2], &[0x81, 0x2c]);
        assert_eq!(out.len(), 302);
    }
}
