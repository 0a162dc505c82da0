//! The protocol setup between the client's arguments and the file list
//! (rsync: compat.c setup_protocol): from protocol 30 on, the compat flags
//! we grant from the client's capability letters, then the negotiation of
//! the checksum and compression names (rsync: compat.c
//! negotiate_the_strings); at every protocol, the checksum seed.
//!
//! What is decided here holds for the whole pull: the sums, the
//! compressor, and which 30+ encodings the file list uses.

use super::io::Conn;
use super::options::{Compression, Options};
use super::wire::{WireRead, WireWrite};
use crate::delta::SumKind;
use std::io;

/// The receiver may send incremental file lists (never granted here).
pub(crate) const CF_INC_RECURSE: u32 = 1 << 0;
/// The receiver can set times on symlinks.
pub(crate) const CF_SYMLINK_TIMES: u32 = 1 << 1;
/// Symlink targets go through `--iconv`.
pub(crate) const CF_SYMLINK_ICONV: u32 = 1 << 2;
/// A file list may end with an I/O-error value (`f`).
pub(crate) const CF_SAFE_FLIST: u32 = 1 << 3;
/// The xattr abbreviation is off (`x`).
pub(crate) const CF_AVOID_XATTR_OPTIM: u32 = 1 << 4;
/// MD5 block sums put the seed first (`C`).
pub(crate) const CF_CHKSUM_SEED_FIX: u32 = 1 << 5;
/// `--inplace` with a partial dir (`I`).
pub(crate) const CF_INPLACE_PARTIAL_DIR: u32 = 1 << 6;
/// File-list flags as varints, and checksum and compression names
/// negotiated (`v`).
pub(crate) const CF_VARINT_FLIST_FLAGS: u32 = 1 << 7;
/// The id lists end with the name of id 0 (`u`).
pub(crate) const CF_ID0_NAMES: u32 = 1 << 8;

/// The longest name list either side sends (rsync's MAX_NSTR_STRLEN
/// buffer).
pub(crate) const MAX_NAME_LIST_LEN: usize = 256;

/// The checksums we offer, strongest first, as rsyncd lists them; the
/// first of these the client also names is the one both sides use.
const CHECKSUMS: &[(&str, SumKind)] = &[
    ("xxh128", SumKind::Xxh128),
    ("xxh3", SumKind::Xxh3),
    ("xxh64", SumKind::Xxh64),
    ("md5", SumKind::Md5),
    ("md4", SumKind::Md4),
    ("sha1", SumKind::Sha1),
    ("none", SumKind::None),
];

/// The compressors we offer, in rsyncd's order.
///
/// rsyncd never settles on the last of them, `none`: its pick keeps a name
/// only when its rank is below the count of compressor numbers, which
/// `none`'s rank equals (rsync: compat.c parse_negotiate_str), so a client
/// that offers only `none` fails to negotiate.
const COMPRESSIONS: &[(&str, Compression)] = &[
    ("zstd", Compression::Zstd),
    ("lz4", Compression::Lz4),
    ("zlibx", Compression::ZlibX),
    ("zlib", Compression::Zlib),
    ("none", Compression::None),
];

/// What the setup decided.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    pub(crate) protocol: u32,
    /// The compat flags sent (0 below protocol 30).
    pub(crate) compat: u32,
    /// Block and whole-file sums.
    pub(crate) xfer_sum: SumKind,
    /// `-c` file checksums.
    pub(crate) file_sum: SumKind,
    pub(crate) compression: Compression,
}

impl Setup {
    /// File-list flags as varints (rsync's xfer_flags_as_varint).
    pub(crate) fn varint_flags(&self) -> bool {
        self.compat & CF_VARINT_FLIST_FLAGS != 0
    }

    /// The list may end with the I/O-error value (use_safe_inc_flist).
    pub(crate) fn safe_flist(&self) -> bool {
        self.protocol >= 31 || self.compat & CF_SAFE_FLIST != 0
    }

    /// Incremental recursion (rsync's inc_recurse).
    pub(crate) fn inc_recurse(&self) -> bool {
        self.compat & CF_INC_RECURSE != 0
    }

    /// The id lists end with id 0's name.
    pub(crate) fn id0_names(&self) -> bool {
        self.compat & CF_ID0_NAMES != 0
    }
}

/// Why the setup failed.
#[derive(Debug)]
pub(crate) enum SetupError {
    Io(io::Error),
    /// No name of the client's list is one we know; rsyncd exits without
    /// a word (the client prints the failure).
    NoCommonChoice(&'static str),
}

impl From<io::Error> for SetupError {
    fn from(e: io::Error) -> Self {
        SetupError::Io(e)
    }
}

/// The compat flags rsyncd grants for `client_info` (the letters of the
/// client's `-e` argument): symlink times and iconv always (a Linux build
/// with iconv), the rest as the client offers them. Incremental recursion
/// is decided apart ([`incremental_recursion`]).
pub(crate) fn compat_flags(client_info: &[u8]) -> u32 {
    let mut flags = CF_SYMLINK_TIMES | CF_SYMLINK_ICONV;
    for (letter, flag) in [
        (b'f', CF_SAFE_FLIST),
        (b'x', CF_AVOID_XATTR_OPTIM),
        (b'C', CF_CHKSUM_SEED_FIX),
        (b'I', CF_INPLACE_PARTIAL_DIR),
        (b'u', CF_ID0_NAMES),
        (b'v', CF_VARINT_FLIST_FLAGS),
    ] {
        if client_info.contains(&letter) {
            flags |= flag;
        }
    }
    flags
}

/// Whether a pull gets incremental recursion: as rsyncd, when it recurses,
/// the client can (its `i` letter) and did not ask for `--qsort` (rsync:
/// compat.c set_allow_inc_recurse), `-R` and `--files-from` included.
pub(crate) fn incremental_recursion(opts: &Options) -> bool {
    opts.recurse && !opts.qsort && opts.client_info.contains(&b'i')
}

/// Runs the setup for a pull: compat flags and negotiation from protocol
/// 30 on, then the seed.
pub(crate) fn run(
    conn: &mut Conn,
    opts: &Options,
    protocol: u32,
    seed: u32,
) -> Result<Setup, SetupError> {
    let mut setup = Setup {
        protocol,
        compat: 0,
        xfer_sum: opts.xfer_sum,
        file_sum: opts.file_sum,
        compression: opts.compression,
    };
    if protocol >= 30 {
        setup.compat = compat_flags(&opts.client_info);
        if incremental_recursion(opts) {
            setup.compat |= CF_INC_RECURSE;
        }
        conn.write_varint(setup.compat as i32)?;
        negotiate(conn, opts, &mut setup)?;
    }
    conn.write_i32(seed as i32)?;
    Ok(setup)
}

/// The setup before an error message, when the arguments were refused:
/// flags without negotiation (so the client neither sends nor expects
/// name lists), and a zero seed.
pub(crate) fn run_for_refusal(conn: &mut Conn, protocol: u32) -> io::Result<()> {
    if protocol >= 30 {
        conn.write_varint((CF_SYMLINK_TIMES | CF_SYMLINK_ICONV) as i32)?;
    }
    conn.write_i32(0)
}

/// Both lists go out before either is read, as rsync does, so neither
/// side waits for the other.
fn negotiate(conn: &mut Conn, opts: &Options, setup: &mut Setup) -> Result<(), SetupError> {
    let by_name = setup.varint_flags();
    let seed_first = setup.compat & CF_CHKSUM_SEED_FIX != 0;
    let sum_open = opts.xfer_sum == SumKind::Md4Auto;
    let compress_open = !opts.compress_named
        && (opts.compression != Compression::None || opts.compress_level.is_some());
    if by_name && sum_open {
        conn.write_vstring(name_list(CHECKSUMS).as_bytes())?;
    }
    if by_name && compress_open {
        conn.write_vstring(name_list(COMPRESSIONS).as_bytes())?;
    }
    if sum_open {
        let kind = if by_name {
            let theirs = conn.read_vstring(MAX_NAME_LIST_LEN)?;
            pick(CHECKSUMS, CHECKSUMS.len(), &theirs, SumKind::from_name)
                .ok_or(SetupError::NoCommonChoice("checksum"))?
        } else {
            SumKind::Md5
        };
        // rsync's own MD5 code seeds last for a client without the fix;
        // a negotiated MD5 goes through the same code.
        let kind = match kind {
            SumKind::Md5 if !seed_first => SumKind::Md5SeedLast,
            other => other,
        };
        setup.xfer_sum = kind;
        setup.file_sum = kind;
    }
    if compress_open {
        setup.compression = if by_name {
            let theirs = conn.read_vstring(MAX_NAME_LIST_LEN)?;
            pick(
                COMPRESSIONS,
                COMPRESSIONS.len() - 1,
                &theirs,
                compression_by_name,
            )
            .ok_or(SetupError::NoCommonChoice("compress"))?
        } else {
            Compression::Zlib
        };
    }
    Ok(())
}

fn name_list<T>(table: &[(&str, T)]) -> String {
    let names: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
    names.join(" ")
}

fn compression_by_name(name: &[u8]) -> Option<Compression> {
    COMPRESSIONS
        .iter()
        .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
        .map(|&(_, c)| c)
}

/// Of the names in `theirs` (space-separated), the one that comes first in
/// our `table` (rsync: compat.c parse_negotiate_str: each side prefers
/// its own order), among the first `pickable` of the table.
fn pick<T: Copy + PartialEq>(
    table: &[(&str, T)],
    pickable: usize,
    theirs: &[u8],
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Option<T> {
    theirs
        .split(|&b| b == b' ')
        .filter_map(parse)
        .filter_map(|value| table.iter().position(|&(_, v)| v == value))
        .filter(|&rank| rank < pickable)
        .min()
        .map(|rank| table[rank].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_client_letters() {
        assert_eq!(compat_flags(b""), CF_SYMLINK_TIMES | CF_SYMLINK_ICONV);
        let all = compat_flags(b".iLsfxCIvu");
        assert_eq!(all & CF_INC_RECURSE, 0);
        assert_eq!(all, 0x1fe);
    }

    #[test]
    fn our_order_decides_among_the_client_names() {
        let sum = |theirs: &[u8]| pick(CHECKSUMS, CHECKSUMS.len(), theirs, SumKind::from_name);
        assert_eq!(
            sum(b"xxh128 xxh3 xxh64 md5 md4 sha1"),
            Some(SumKind::Xxh128)
        );
        assert_eq!(sum(b"md4 md5"), Some(SumKind::Md5));
        assert_eq!(sum(b"sha1 xxhash"), Some(SumKind::Xxh64));
        assert_eq!(sum(b"blake3 sha1"), Some(SumKind::Sha1));
        assert_eq!(sum(b"blake3"), None);
        assert_eq!(sum(b""), None);
        let codec = |theirs: &[u8]| pick(COMPRESSIONS, 4, theirs, compression_by_name);
        assert_eq!(codec(b"zstd lz4 zlibx zlib"), Some(Compression::Zstd));
        assert_eq!(codec(b"zlib ZLIBX"), Some(Compression::ZlibX));
        assert_eq!(codec(b"none"), None);
    }

    #[test]
    fn lists_as_rsyncd_sends_them() {
        assert_eq!(name_list(CHECKSUMS), "xxh128 xxh3 xxh64 md5 md4 sha1 none");
        assert_eq!(name_list(COMPRESSIONS), "zstd lz4 zlibx zlib none");
    }
}
