//! Encodings of the rsync wire: little-endian integers, the "longint"
//! 64-bit escape of protocols 27–29, the variable-length integers of 30 and
//! later (rsync: io.c write_varint, write_varlong), short strings. Pure byte shuffling: no I/O,
//! no policy. Reading goes through [`WireRead`], which the connection and
//! test buffers implement; writing appends to a `Vec<u8>` or goes through
//! [`WireWrite`].

use std::io;

/// The marker that announces a 64-bit value in a "longint" (rsync: io.c write_longint).
const LONGINT_ESCAPE: i32 = -1;

/// Sources of wire bytes. `read_exact` fails with `UnexpectedEof` when the peer
/// closed the stream.
pub(crate) trait WireRead {
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

    #[cfg(test)]
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

    /// rsync's read_varint: the first byte's leading ones count the bytes
    /// that follow (at most four).
    fn read_varint(&mut self) -> io::Result<i32> {
        let first = self.read_u8()?;
        let extra = first.leading_ones() as usize;
        let mut b = [0u8; 5];
        if extra == 0 {
            b[0] = first;
        } else {
            if extra > 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "overflow in a varint",
                ));
            }
            self.read_exact(&mut b[..extra])?;
            b[extra] = first & ((1u16 << (8 - extra)) - 1) as u8;
        }
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// rsync's read_vstring: a one- or two-byte length (see
    /// [`WireWrite::write_vstring`]), then the bytes; longer than `max` is
    /// an error.
    fn read_vstring(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut len = usize::from(self.read_u8()?);
        if len & 0x80 != 0 {
            len = ((len & 0x7f) << 8) | usize::from(self.read_u8()?);
        }
        if len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("string of {len} bytes is longer than {max}"),
            ));
        }
        let mut s = vec![0u8; len];
        self.read_exact(&mut s)?;
        Ok(s)
    }
}

/// Encodes `x`, whose `max` low bytes matter, in rsync's variable-length
/// form: the first byte's high bits count the bytes that follow, the value
/// follows little-endian, and its top byte folds into the first byte when
/// it fits beside the count. At least `min` bytes in all.
fn var_bytes(x: u64, max: usize, min: usize) -> ([u8; 10], usize) {
    let mut b = [0u8; 10];
    b[1..9].copy_from_slice(&x.to_le_bytes());
    let mut cnt = max;
    while cnt > min && b[cnt] == 0 {
        cnt -= 1;
    }
    let bit = 1u8 << (7 + min - cnt);
    if b[cnt] >= bit {
        cnt += 1;
        b[0] = !(bit - 1);
    } else if cnt > min {
        b[0] = b[cnt] | !((u16::from(bit) * 2 - 1) as u8);
    } else {
        b[0] = b[cnt];
    }
    (b, cnt)
}

/// Sinks of wire bytes.
pub(crate) trait WireWrite {
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

    /// rsync's write_varint (protocol 30 and later): one to five bytes.
    fn write_varint(&mut self, v: i32) -> io::Result<()> {
        let (b, n) = var_bytes(u64::from(v as u32), 4, 1);
        self.write_all(&b[..n])
    }

    /// rsync's write_varlong: at least `min` bytes, at most 9.
    fn write_varlong(&mut self, v: i64, min: usize) -> io::Result<()> {
        let (b, n) = var_bytes(v as u64, 8, min);
        self.write_all(&b[..n])
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

    fn varint(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        out.write_varint(v).unwrap();
        out
    }

    fn varlong(v: i64, min: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.write_varlong(v, min).unwrap();
        out
    }

    #[test]
    fn varints_as_rsync_writes_them() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(0x7f), [0x7f]);
        assert_eq!(varint(0x80), [0x80, 0x80]);
        assert_eq!(varint(0x3fff), [0xbf, 0xff]);
        assert_eq!(varint(0x4000), [0xc0, 0x00, 0x40]);
        assert_eq!(varint(0x12345678), [0xf0, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(varint(-1), [0xf0, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn varints_read_back() {
        for v in [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 0x12345678, -1, i32::MIN] {
            let bytes = varint(v);
            let mut rd: &[u8] = &bytes;
            assert_eq!(rd.read_varint().unwrap(), v);
        }
        let mut rd: &[u8] = &[0xf8, 0, 0, 0, 0, 0];
        assert!(rd.read_varint().is_err());
    }

    #[test]
    fn varlongs_as_rsync_writes_them() {
        assert_eq!(varlong(0, 3), [0, 0, 0]);
        assert_eq!(varlong(0x7f_0000, 3), [0x7f, 0, 0]);
        assert_eq!(varlong(0x80_0000, 3), [0x80, 0, 0, 0x80]);
        assert_eq!(varlong(1_600_000_000, 4), [0x5f, 0x00, 0x10, 0x5e]);
        assert_eq!(varlong(1 << 32, 4), [0x81, 0, 0, 0, 0]);
        let pre_1970 = varlong(-1, 4);
        assert_eq!(
            pre_1970,
            [0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn vstring_reads_back() {
        let mut out = Vec::new();
        out.write_vstring(&[b'y'; 200]).unwrap();
        let mut rd: &[u8] = &out;
        assert_eq!(rd.read_vstring(256).unwrap(), vec![b'y'; 200]);
        let mut rd: &[u8] = &out;
        assert!(rd.read_vstring(100).is_err());
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
