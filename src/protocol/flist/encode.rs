//! The file list on the wire for protocols 27–29 (rsync: flist.c's
//! send_file_entry): per-entry flags, name compression against the previous
//! name, the attributes the options ask for, the end marker, the uid/gid
//! name lists (rsync: uidlist.c) and the I/O-error word.

use super::{Entry, FileList, FLAG_TOP_DIR};
use crate::delta::Digest;
use crate::protocol::options::Options;
use crate::protocol::wire::WireWrite;
use std::io;

const XMIT_TOP_DIR: u16 = 1 << 0;
const XMIT_SAME_MODE: u16 = 1 << 1;
const XMIT_EXTENDED_FLAGS: u16 = 1 << 2;
const XMIT_SAME_RDEV_PRE28: u16 = 1 << 2;
const XMIT_SAME_UID: u16 = 1 << 3;
const XMIT_SAME_GID: u16 = 1 << 4;
const XMIT_SAME_NAME: u16 = 1 << 5;
const XMIT_LONG_NAME: u16 = 1 << 6;
const XMIT_SAME_TIME: u16 = 1 << 7;
const XMIT_SAME_RDEV_MAJOR: u16 = 1 << 8;
const XMIT_HLINKED: u16 = 1 << 9;
const XMIT_SAME_DEV_PRE30: u16 = 1 << 10;
const XMIT_RDEV_MINOR_8_PRE30: u16 = 1 << 11;

/// Writes the list in rsync's flist encoding for protocols 27–29, the
/// end marker, the uid/gid name lists and the I/O-error word.
pub struct Encoder<'a> {
    opts: &'a Options,
    protocol: u32,
    last_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    rdev: u64,
    rdev_major: u32,
    dev: u64,
    first: bool,
}

impl<'a> Encoder<'a> {
    pub fn new(opts: &'a Options, protocol: u32) -> Encoder<'a> {
        Encoder {
            opts,
            protocol,
            last_name: Vec::new(),
            mode: 0,
            mtime: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            rdev_major: 0,
            dev: 0,
            first: true,
        }
    }

    pub fn send_list(&mut self, out: &mut impl WireWrite, list: &FileList) -> io::Result<()> {
        let names = &list.ids;
        let mut buf = Vec::with_capacity(64 * 1024);
        for e in &list.entries {
            self.encode(&mut buf, list, e)?;
            if buf.len() >= 32 * 1024 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        buf.write_u8(0)?;
        if !self.opts.numeric_ids {
            // A module's `numeric ids` withholds the names; the client,
            // not told, still reads the (empty) lists.
            let withheld = self.opts.names_withheld;
            if self.opts.owner {
                write_id_list(&mut buf, list.entries.iter().map(|e| e.uid), |id| {
                    names.user(id).filter(|_| !withheld)
                })?;
            }
            if self.opts.group {
                write_id_list(&mut buf, list.entries.iter().map(|e| e.gid), |id| {
                    names.group(id).filter(|_| !withheld)
                })?;
            }
        }
        buf.write_i32(if self.opts.ignore_errors {
            0
        } else {
            list.io_error
        })?;
        out.write_all(&buf)
    }

    fn encode(&mut self, out: &mut Vec<u8>, list: &FileList, e: &Entry) -> io::Result<()> {
        let proto = self.protocol;
        let mut xflags: u16 = if e.is_dir() && e.flags & FLAG_TOP_DIR != 0 {
            XMIT_TOP_DIR
        } else {
            0
        };
        if e.mode == self.mode {
            xflags |= XMIT_SAME_MODE;
        } else {
            self.mode = e.mode;
        }
        let rdev = libc::makedev(e.rdev_major, e.rdev_minor) as u64;
        if self.opts.devices && e.is_device() {
            if proto < 28 {
                if rdev == self.rdev {
                    xflags |= XMIT_SAME_RDEV_PRE28;
                } else {
                    self.rdev = rdev;
                }
            } else {
                if e.rdev_major == self.rdev_major {
                    xflags |= XMIT_SAME_RDEV_MAJOR;
                } else {
                    self.rdev_major = e.rdev_major;
                }
                if e.rdev_minor <= 0xff {
                    xflags |= XMIT_RDEV_MINOR_8_PRE30;
                }
            }
        } else if self.opts.specials && e.is_special() {
            if proto < 28 {
                xflags |= XMIT_SAME_RDEV_PRE28;
            } else {
                xflags |= XMIT_SAME_RDEV_MAJOR | XMIT_RDEV_MINOR_8_PRE30;
            }
        } else if proto < 28 {
            self.rdev = 0;
        }
        if !self.opts.owner || (e.uid == self.uid && !self.first) {
            xflags |= XMIT_SAME_UID;
        } else {
            self.uid = e.uid;
        }
        if !self.opts.group || (e.gid == self.gid && !self.first) {
            xflags |= XMIT_SAME_GID;
        } else {
            self.gid = e.gid;
        }
        if e.mtime == self.mtime {
            xflags |= XMIT_SAME_TIME;
        } else {
            self.mtime = e.mtime;
        }
        let extra = list.extra(e);
        if let Some((dev, _)) = extra.dev_ino {
            if dev == self.dev {
                if proto >= 28 {
                    xflags |= XMIT_SAME_DEV_PRE30;
                }
            } else {
                self.dev = dev;
            }
            xflags |= XMIT_HLINKED;
        }
        let name = list.name(e);
        let same = name
            .iter()
            .zip(&self.last_name)
            .take(255)
            .take_while(|(a, b)| a == b)
            .count();
        let rest = &name[same..];
        if same > 0 {
            xflags |= XMIT_SAME_NAME;
        }
        if rest.len() > 255 {
            xflags |= XMIT_LONG_NAME;
        }
        if proto >= 28 {
            if xflags == 0 && !e.is_dir() {
                xflags |= XMIT_TOP_DIR;
            }
            if xflags & 0xff00 != 0 || xflags == 0 {
                xflags |= XMIT_EXTENDED_FLAGS;
                out.write_u16(xflags)?;
            } else {
                out.write_u8(xflags as u8)?;
            }
        } else {
            if xflags & 0xff == 0 {
                xflags |= if e.is_dir() {
                    XMIT_LONG_NAME
                } else {
                    XMIT_TOP_DIR
                };
            }
            out.write_u8(xflags as u8)?;
        }
        if xflags & XMIT_SAME_NAME != 0 {
            out.write_u8(same as u8)?;
        }
        if xflags & XMIT_LONG_NAME != 0 {
            out.write_i32(rest.len() as i32)?;
        } else {
            out.write_u8(rest.len() as u8)?;
        }
        out.write_all(rest)?;
        out.write_longint(e.size as i64)?;
        if xflags & XMIT_SAME_TIME == 0 {
            out.write_i32(e.mtime as i32)?;
        }
        if xflags & XMIT_SAME_MODE == 0 {
            out.write_i32(e.mode as i32)?;
        }
        if self.opts.owner && xflags & XMIT_SAME_UID == 0 {
            out.write_i32(e.uid as i32)?;
        }
        if self.opts.group && xflags & XMIT_SAME_GID == 0 {
            out.write_i32(e.gid as i32)?;
        }
        if (self.opts.devices && e.is_device()) || (self.opts.specials && e.is_special()) {
            let rdev = if e.is_device() { rdev } else { 0 };
            if proto < 28 {
                if xflags & XMIT_SAME_RDEV_PRE28 == 0 {
                    out.write_i32(rdev as i32)?;
                }
            } else {
                let minor = if e.is_device() { e.rdev_minor } else { 0 };
                if xflags & XMIT_SAME_RDEV_MAJOR == 0 {
                    out.write_i32(e.rdev_major as i32)?;
                }
                if xflags & XMIT_RDEV_MINOR_8_PRE30 != 0 {
                    out.write_u8(minor as u8)?;
                } else {
                    out.write_i32(minor as i32)?;
                }
            }
        }
        if self.opts.links && e.is_symlink() {
            let link = list.link(e);
            out.write_i32(link.len() as i32)?;
            out.write_all(link)?;
        }
        if let Some((dev, ino)) = extra.dev_ino {
            if xflags & XMIT_SAME_DEV_PRE30 == 0 {
                out.write_longint(dev.wrapping_add(1) as i64)?;
            }
            out.write_longint(ino as i64)?;
        }
        if self.opts.checksum && (e.is_file() || proto < 28) {
            let zeros = Digest::zeros(self.opts.file_sum.digest_len());
            out.write_all(&extra.sum.unwrap_or(zeros))?;
        }
        self.last_name.clear();
        self.last_name.extend_from_slice(name);
        self.first = false;
        Ok(())
    }
}

/// rsync: uidlist.c send_one_list at protocol < 30: each id other than 0 that has a
/// name, as int32 id, byte length, name; then a 0 id.
fn write_id_list(
    out: &mut Vec<u8>,
    ids: impl Iterator<Item = u32>,
    name_of: impl Fn(u32) -> Option<Vec<u8>>,
) -> io::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id == 0 || !seen.insert(id) {
            continue;
        }
        if let Some(name) = name_of(id) {
            let len = name.len().min(255);
            out.write_i32(id as i32)?;
            out.write_u8(len as u8)?;
            out.write_all(&name[..len])?;
        }
    }
    out.write_i32(0)
}
