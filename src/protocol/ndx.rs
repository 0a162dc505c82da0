//! File indices on the wire (rsync: io.c write_ndx, read_ndx): a 32-bit
//! integer below protocol 30; from 30 on, a byte-sized difference from the
//! previous index of the same sign where it fits, `0` for NDX_DONE, and
//! negative values behind a `0xFF` prefix. Each direction keeps its own
//! previous values.

use super::wire::{WireRead, WireWrite};
use std::io;

/// The end of a phase (and of the run).
pub(crate) const NDX_DONE: i32 = -1;
/// The client's deletion counts follow (31+, with `--delete`).
pub(crate) const NDX_DEL_STATS: i32 = -3;

/// One direction's state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NdxCodec {
    protocol: u32,
    prev_positive: i32,
    prev_negative: i32,
}

impl NdxCodec {
    pub(crate) fn new(protocol: u32) -> NdxCodec {
        NdxCodec {
            protocol,
            prev_positive: -1,
            prev_negative: 1,
        }
    }

    pub(crate) fn write(&mut self, out: &mut impl WireWrite, ndx: i32) -> io::Result<()> {
        if self.protocol < 30 {
            return out.write_i32(ndx);
        }
        let mut b = [0u8; 6];
        let mut n = 0;
        let (value, diff) = if ndx >= 0 {
            let diff = ndx.wrapping_sub(self.prev_positive);
            self.prev_positive = ndx;
            (ndx, diff)
        } else if ndx == NDX_DONE {
            return out.write_u8(0);
        } else {
            b[0] = 0xff;
            n = 1;
            let value = ndx.wrapping_neg();
            let diff = value.wrapping_sub(self.prev_negative);
            self.prev_negative = value;
            (value, diff)
        };
        if diff > 0 && diff < 0xfe {
            b[n] = diff as u8;
            n += 1;
        } else if !(0..=0x7fff).contains(&diff) {
            let v = value as u32;
            b[n] = 0xfe;
            b[n + 1] = ((v >> 24) as u8) | 0x80;
            b[n + 2] = v as u8;
            b[n + 3] = (v >> 8) as u8;
            b[n + 4] = (v >> 16) as u8;
            n += 5;
        } else {
            b[n] = 0xfe;
            b[n + 1] = (diff >> 8) as u8;
            b[n + 2] = diff as u8;
            n += 3;
        }
        out.write_all(&b[..n])
    }

    pub(crate) fn read(&mut self, input: &mut impl WireRead) -> io::Result<i32> {
        if self.protocol < 30 {
            return input.read_i32();
        }
        let mut first = input.read_u8()?;
        let negative = first == 0xff;
        if negative {
            first = input.read_u8()?;
        } else if first == 0 {
            return Ok(NDX_DONE);
        }
        let prev = if negative {
            self.prev_negative
        } else {
            self.prev_positive
        };
        let value: u32 = if first == 0xfe {
            let mut b = [0u8; 2];
            input.read_exact(&mut b)?;
            if b[0] & 0x80 != 0 {
                let mut rest = [0u8; 2];
                input.read_exact(&mut rest)?;
                u32::from_le_bytes([b[1], rest[0], rest[1], b[0] & 0x7f])
            } else {
                (u32::from(b[0]) << 8 | u32::from(b[1])).wrapping_add(prev as u32)
            }
        } else {
            u32::from(first).wrapping_add(prev as u32)
        };
        let value = i32::try_from(value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid file index {value}"),
            )
        })?;
        if negative {
            self.prev_negative = value;
            Ok(-value)
        } else {
            self.prev_positive = value;
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(protocol: u32, values: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = NdxCodec::new(protocol);
        for &v in values {
            w.write(&mut out, v).unwrap();
        }
        let mut r = NdxCodec::new(protocol);
        let mut rd: &[u8] = &out;
        for &v in values {
            assert_eq!(r.read(&mut rd).unwrap(), v);
        }
        assert!(rd.is_empty());
        out
    }

    #[test]
    fn small_steps_are_one_byte() {
        assert_eq!(round_trip(30, &[0, 1, 5, -1]), [1, 1, 4, 0]);
        assert_eq!(round_trip(29, &[0, -1]).len(), 8);
    }

    #[test]
    fn larger_steps_and_negatives() {
        // 0 -> diff 1; 300 -> 0xFE + two bytes; back to 2 -> full form.
        let out = round_trip(31, &[0, 300, 2, 1_000_000, -2, -3, 0x7fff_ffff]);
        assert_eq!(&out[..4], &[1, 0xfe, 0x01, 0x2c]);
        assert_eq!(&out[4..9], &[0xfe, 0x80, 2, 0, 0]);
    }

    #[test]
    fn an_index_beyond_i32_is_refused() {
        // The largest index, then a step past it.
        let bytes = [0xfe, 0xff, 0xff, 0xff, 0xff, 5];
        let mut rd: &[u8] = &bytes;
        let mut r = NdxCodec::new(30);
        assert_eq!(r.read(&mut rd).unwrap(), i32::MAX);
        assert!(r.read(&mut rd).is_err());
    }
}
