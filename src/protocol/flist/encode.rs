//! The file list on the wire (rsync: flist.c send_file_entry): per-entry
//! flags, name compression against the previous name, the attributes the
//! options ask for, the end marker, the uid/gid name lists (rsync:
//! uidlist.c send_id_lists) and the I/O-error word or value.
//!
//! From protocol 30 on: flags may go as a varint, sizes and times as
//! varlongs, ids and device numbers as varints; a hard-linked file after
//! the first of its group carries only the index of that first one;
//! nanoseconds of mtimes follow from 31 on; specials carry no device number
//! from 31 on; the I/O error ends the list instead of following the id
//! lists when the client handles it there.

use super::{Entry, FileList, FLAG_CONTENT_DIR, FLAG_IMPLIED_DIR, FLAG_TOP_DIR};
use crate::delta::Digest;
use crate::protocol::options::Options;
use crate::protocol::setup::Setup;
use crate::protocol::wire::WireWrite;
use std::collections::{HashMap, HashSet};
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
/// A directory whose contents are not listed (30+, directories only).
const XMIT_NO_CONTENT_DIR: u16 = 1 << 8;
/// The first of a group of hard links (30+).
const XMIT_HLINK_FIRST: u16 = 1 << 12;
/// With XMIT_EXTENDED_FLAGS and nothing else: the list ends with an I/O
/// error value (31+, or 30 with the safe file list).
const XMIT_IO_ERROR_ENDLIST: u16 = 1 << 12;
/// The mtime has nanoseconds (31+).
const XMIT_MOD_NSEC: u16 = 1 << 13;
/// The access time is the previous one's (`--atimes`, non-directories).
const XMIT_SAME_ATIME: u16 = 1 << 14;
/// The owner's name follows its id (30+, incremental recursion).
const XMIT_USER_NAME_FOLLOWS: u16 = 1 << 10;
/// The group's name follows its id (30+, incremental recursion).
const XMIT_GROUP_NAME_FOLLOWS: u16 = 1 << 11;

/// Writes the list in rsync's flist encoding, the end marker, the uid/gid
/// name lists and the I/O-error word or value.
pub(crate) struct Encoder<'a> {
    opts: &'a Options,
    protocol: u32,
    /// Flags as varints (the client's `v`).
    varint_flags: bool,
    /// The I/O error may end the list (the client's `f`, or 31+).
    safe_flist: bool,
    /// The id lists end with id 0's name (the client's `u`).
    id0_names: bool,
    /// From 30 on: the send index of the first entry of each hard-link
    /// group, by device and inode.
    first_links: HashMap<(u64, u64), u32>,
    /// The index of the next entry, counted in the order sent.
    sent: u32,
    /// The index of the current list's first entry.
    list_start: u32,
    /// Incremental recursion: names follow ids inline, the first time
    /// each id is sent, instead of lists after the file list.
    incremental: bool,
    named_users: HashSet<u32>,
    named_groups: HashSet<u32>,
    last_name: Vec<u8>,
    mode: u32,
    mtime: i64,
    atime: i64,
    uid: u32,
    gid: u32,
    rdev: u64,
    rdev_major: u32,
    dev: u64,
    first: bool,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(opts: &'a Options, setup: &Setup) -> Encoder<'a> {
        Encoder {
            opts,
            protocol: setup.protocol,
            varint_flags: setup.varint_flags(),
            safe_flist: setup.safe_flist(),
            id0_names: setup.id0_names(),
            first_links: HashMap::new(),
            sent: 0,
            list_start: 0,
            incremental: false,
            named_users: HashSet::new(),
            named_groups: HashSet::new(),
            last_name: Vec::new(),
            mode: 0,
            mtime: 0,
            atime: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            rdev_major: 0,
            dev: 0,
            first: true,
        }
    }

    /// For incremental recursion: names inline, and lists that start where
    /// [`Encoder::start_list`] says.
    pub(crate) fn incremental(mut self) -> Self {
        self.incremental = true;
        self
    }

    /// The next list's entries start at file index `start`. The previous
    /// entry's attributes and name carry over from list to list, as in
    /// rsync (its send_file_entry keeps them in statics).
    pub(crate) fn start_list(&mut self, start: u32) {
        self.sent = start;
        self.list_start = start;
    }

    /// Sends the list, in `order` (positions in the list: the order it
    /// was built in) or else in its own order, ending with `io_error` (the
    /// pull's I/O errors so far). Returns the I/O error still to report in
    /// a message of its own (protocol 30 without the safe file list), or 0.
    pub(crate) fn send_list(
        &mut self,
        out: &mut impl WireWrite,
        list: &FileList,
        order: Option<&[u32]>,
        io_error: i32,
    ) -> io::Result<i32> {
        let names = &list.ids;
        let in_order = |k: usize| match order {
            Some(order) => &list.entries[order[k] as usize],
            None => &list.entries[k],
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        for k in 0..list.entries.len() {
            self.encode(&mut buf, list, in_order(k))?;
            if buf.len() >= 32 * 1024 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        let io_error = if self.opts.ignore_errors { 0 } else { io_error };
        let ended_with_error = self.write_end(&mut buf, io_error)?;
        if !self.opts.numeric_ids && !self.incremental {
            // A module's `numeric ids` withholds the names (id 0's too);
            // the client, not told, still reads the (empty) lists.
            let withheld = self.opts.names_withheld;
            let id0 = self.id0_names;
            if self.opts.owner {
                let ids = (0..list.entries.len()).map(|k| in_order(k).uid);
                let name_of = |id| names.user(id).filter(|_| !withheld);
                write_id_list(
                    &mut buf,
                    self.protocol,
                    ids,
                    id0.then(|| names.user(0)),
                    name_of,
                )?;
            }
            if self.opts.group {
                let ids = (0..list.entries.len()).map(|k| in_order(k).gid);
                let name_of = |id| names.group(id).filter(|_| !withheld);
                write_id_list(
                    &mut buf,
                    self.protocol,
                    ids,
                    id0.then(|| names.group(0)),
                    name_of,
                )?;
            }
        }
        if self.protocol < 30 {
            buf.write_i32(io_error)?;
        }
        out.write_all(&buf)?;
        Ok(if self.protocol >= 30 && !ended_with_error {
            io_error
        } else {
            0
        })
    }

    /// rsync: flist.c write_end_of_flist. Returns whether the I/O error
    /// went with it.
    fn write_end(&self, out: &mut Vec<u8>, io_error: i32) -> io::Result<bool> {
        let with_error = self.protocol >= 30 && self.safe_flist && io_error != 0;
        if self.varint_flags {
            out.write_varint(0)?;
            out.write_varint(if with_error { io_error } else { 0 })?;
        } else if with_error {
            out.write_u16(XMIT_EXTENDED_FLAGS | XMIT_IO_ERROR_ENDLIST)?;
            out.write_varint(io_error)?;
        } else {
            out.write_u8(0)?;
        }
        Ok(with_error)
    }

    fn encode(&mut self, out: &mut Vec<u8>, list: &FileList, e: &Entry) -> io::Result<()> {
        let proto = self.protocol;
        let mut xflags: u16 = if !e.is_dir() {
            0
        } else if proto < 30 || e.flags & FLAG_CONTENT_DIR != 0 {
            if e.flags & FLAG_TOP_DIR != 0 {
                XMIT_TOP_DIR
            } else {
                0
            }
        } else if e.flags & FLAG_IMPLIED_DIR != 0 {
            XMIT_TOP_DIR | XMIT_NO_CONTENT_DIR
        } else {
            XMIT_NO_CONTENT_DIR
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
                if proto < 30 && e.rdev_minor <= 0xff {
                    xflags |= XMIT_RDEV_MINOR_8_PRE30;
                }
            }
        } else if self.specials_carry_rdev(e) {
            if proto < 28 {
                xflags |= XMIT_SAME_RDEV_PRE28;
            } else {
                xflags |= XMIT_SAME_RDEV_MAJOR;
                if proto < 30 {
                    xflags |= XMIT_RDEV_MINOR_8_PRE30;
                }
            }
        } else if proto < 28 {
            self.rdev = 0;
        }
        let mut user_name = None;
        let mut group_name = None;
        if !self.opts.owner || (e.uid == self.uid && !self.first) {
            xflags |= XMIT_SAME_UID;
        } else {
            self.uid = e.uid;
            if self.names_inline() && self.named_users.insert(e.uid) {
                user_name = list.ids.user(e.uid);
                if user_name.is_some() {
                    xflags |= XMIT_USER_NAME_FOLLOWS;
                }
            }
        }
        if !self.opts.group || (e.gid == self.gid && !self.first) {
            xflags |= XMIT_SAME_GID;
        } else {
            self.gid = e.gid;
            if self.names_inline() && self.named_groups.insert(e.gid) {
                group_name = list.ids.group(e.gid);
                if group_name.is_some() {
                    xflags |= XMIT_GROUP_NAME_FOLLOWS;
                }
            }
        }
        if e.mtime == self.mtime {
            xflags |= XMIT_SAME_TIME;
        } else {
            self.mtime = e.mtime;
        }
        if proto >= 31 && e.mtime_nsec != 0 {
            xflags |= XMIT_MOD_NSEC;
        }
        let extra = list.extra(e);
        if let Some(atime) = extra.atime {
            if atime == self.atime {
                xflags |= XMIT_SAME_ATIME;
            } else {
                self.atime = atime;
            }
        }
        // The send index of the first of this entry's hard-link group,
        // when it is not the first (30+).
        let mut first_link = None;
        if let Some((dev, ino)) = extra.dev_ino {
            if proto >= 30 {
                match self.first_links.get(&(dev, ino)) {
                    Some(&first) => first_link = Some(first),
                    None => {
                        self.first_links.insert((dev, ino), self.sent);
                        xflags |= XMIT_HLINK_FIRST;
                    }
                }
            } else if dev == self.dev {
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
        if self.varint_flags {
            let flags = if xflags == 0 {
                XMIT_EXTENDED_FLAGS
            } else {
                xflags
            };
            out.write_varint(i32::from(flags))?;
        } else if proto >= 28 {
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
            self.write_int30(out, rest.len() as i32)?;
        } else {
            out.write_u8(rest.len() as u8)?;
        }
        out.write_all(rest)?;
        self.last_name.clear();
        self.last_name.extend_from_slice(name);
        self.first = false;
        self.sent += 1;
        if let Some(first) = first_link {
            // A first in this list says everything; one in an earlier
            // list may be gone from the client's memory, so the entry
            // follows in full (rsync: flist.c send_file_entry).
            out.write_varint(first as i32)?;
            if first >= self.list_start {
                return Ok(());
            }
        }
        if proto >= 30 {
            out.write_varlong(e.size as i64, 3)?;
        } else {
            out.write_longint(e.size as i64)?;
        }
        if xflags & XMIT_SAME_TIME == 0 {
            if proto >= 30 {
                out.write_varlong(e.mtime, 4)?;
            } else {
                out.write_i32(e.mtime as i32)?;
            }
        }
        if xflags & XMIT_MOD_NSEC != 0 {
            out.write_varint(e.mtime_nsec as i32)?;
        }
        if xflags & XMIT_SAME_MODE == 0 {
            out.write_i32(e.mode as i32)?;
        }
        if let Some(atime) = extra.atime.filter(|_| xflags & XMIT_SAME_ATIME == 0) {
            out.write_varlong(atime, 4)?;
        }
        if self.opts.owner && xflags & XMIT_SAME_UID == 0 {
            self.write_int30(out, e.uid as i32)?;
            if let Some(name) = &user_name {
                write_inline_name(out, name)?;
            }
        }
        if self.opts.group && xflags & XMIT_SAME_GID == 0 {
            self.write_int30(out, e.gid as i32)?;
            if let Some(name) = &group_name {
                write_inline_name(out, name)?;
            }
        }
        if (self.opts.devices && e.is_device()) || self.specials_carry_rdev(e) {
            let rdev = if e.is_device() { rdev } else { 0 };
            if proto < 28 {
                if xflags & XMIT_SAME_RDEV_PRE28 == 0 {
                    out.write_i32(rdev as i32)?;
                }
            } else {
                let minor = if e.is_device() { e.rdev_minor } else { 0 };
                if xflags & XMIT_SAME_RDEV_MAJOR == 0 {
                    self.write_int30(out, e.rdev_major as i32)?;
                }
                if proto >= 30 {
                    out.write_varint(minor as i32)?;
                } else if xflags & XMIT_RDEV_MINOR_8_PRE30 != 0 {
                    out.write_u8(minor as u8)?;
                } else {
                    out.write_i32(minor as i32)?;
                }
            }
        }
        if self.opts.links && e.is_symlink() {
            let link = list.link(e);
            self.write_int30(out, link.len() as i32)?;
            out.write_all(link)?;
        }
        if let Some((dev, ino)) = extra.dev_ino.filter(|_| proto < 30) {
            if xflags & XMIT_SAME_DEV_PRE30 == 0 {
                out.write_longint(dev.wrapping_add(1) as i64)?;
            }
            out.write_longint(ino as i64)?;
        }
        if self.opts.checksum && (e.is_file() || proto < 28) {
            let zeros = Digest::zeros(self.opts.file_sum.digest_len());
            out.write_all(&extra.sum.unwrap_or(zeros))?;
        }
        Ok(())
    }

    /// Whether names go inline (incremental recursion, names not withheld).
    fn names_inline(&self) -> bool {
        self.incremental && !self.opts.numeric_ids && !self.opts.names_withheld
    }

    /// rsync's write_varint30: a varint from 30 on, else an int32.
    fn write_int30(&self, out: &mut Vec<u8>, v: i32) -> io::Result<()> {
        if self.protocol >= 30 {
            out.write_varint(v)
        } else {
            out.write_i32(v)
        }
    }

    /// Specials carry a (meaningless) device number below 31.
    fn specials_carry_rdev(&self, e: &Entry) -> bool {
        self.opts.specials && e.is_special() && self.protocol < 31
    }
}

/// rsync: uidlist.c send_one_list: each id other than 0 that has a name,
/// as id (int32 below 30, varint from 30 on), byte length, name; then id 0,
/// with its name (possibly empty) when the client asked for it.
fn write_id_list(
    out: &mut Vec<u8>,
    protocol: u32,
    ids: impl Iterator<Item = u32>,
    id0_name: Option<Option<Vec<u8>>>,
    name_of: impl Fn(u32) -> Option<Vec<u8>>,
) -> io::Result<()> {
    let write_one = |out: &mut Vec<u8>, id: u32, name: &[u8]| -> io::Result<()> {
        let len = name.len().min(255);
        if protocol >= 30 {
            out.write_varint(id as i32)?;
        } else {
            out.write_i32(id as i32)?;
        }
        out.write_u8(len as u8)?;
        out.write_all(&name[..len])
    };
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id == 0 || !seen.insert(id) {
            continue;
        }
        if let Some(name) = name_of(id) {
            write_one(out, id, &name)?;
        }
    }
    match id0_name {
        Some(name) => write_one(out, 0, &name.unwrap_or_default()),
        None if protocol >= 30 => out.write_varint(0),
        None => out.write_i32(0),
    }
}

/// An id's name inline (rsync: flist.c send_file_entry): byte length, name.
fn write_inline_name(out: &mut Vec<u8>, name: &[u8]) -> io::Result<()> {
    let len = name.len().min(255);
    out.write_u8(len as u8)?;
    out.write_all(&name[..len])
}
