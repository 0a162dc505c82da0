//! The metadata table of a build: what the archive said about each entry.
//!
//! upserv unpacks as an unprivileged user, so the disk cannot hold root
//! owners, setuid bits or device nodes. The table keeps them: for each entry
//! (a `/`-separated byte path relative to the served root, `""` for the root
//! itself) the full `st_mode`, uid, gid, user and group names, mtime and device
//! numbers. Device nodes, FIFOs and sockets exist only here.
//!
//! On disk it is one gzip stream (whose CRC catches damage) holding a small
//! binary format, written once at unpack time and only ever read afterwards.
//! In memory all paths share one byte arena and the entries are one sorted
//! `Vec`, so a 50 000-entry OS image costs a few megabytes.
//!
//! This module must not touch the build tree itself, and must never trust the
//! file it loads: every count and length is checked before use.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// File-type bits of `st_mode`, as Linux and rsync define them.
pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFSOCK: u32 = 0o140000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFBLK: u32 = 0o060000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFCHR: u32 = 0o020000;
pub(crate) const S_IFIFO: u32 = 0o010000;

const MAGIC: &[u8; 8] = b"UPSVMETA";
const FORMAT_VERSION: u32 = 1;
const END_MARK: &[u8; 4] = b"END!";
/// Longest path accepted in a table (Linux's PATH_MAX).
pub(crate) const MAX_PATH_LEN: usize = 4096;
/// Most entries a table may hold; far above any OS image, far below memory trouble.
pub(crate) const MAX_ENTRIES: usize = 4_000_000;
/// Most distinct user and group names in one table.
const MAX_OWNER_NAMES: usize = 65_536;
/// Longest user or group name (tar's ustar field is 32 bytes; PAX may carry more).
const MAX_OWNER_NAME_LEN: usize = 255;
/// Upper bound for the capacity reserved from a count read from the file.
const MAX_RESERVE: usize = 1 << 16;
/// Marks "no name" in an entry's user or group index.
pub(crate) const NO_NAME: u32 = u32::MAX;

/// What the archive recorded about one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta<'a> {
    /// Full `st_mode`: file type and permission bits (with setuid etc.).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// User name, when the archive carried one.
    pub user: Option<&'a str>,
    /// Group name, when the archive carried one.
    pub group: Option<&'a str>,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Device numbers of block and character devices, else 0.
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl EntryMeta<'_> {
    /// Whether this entry exists only in the table (device, FIFO or socket).
    pub fn is_table_only(&self) -> bool {
        is_table_only_mode(self.mode)
    }
}

fn is_table_only_mode(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK)
}

#[cfg(test)]
/// One entry as the unpacker collects it, before the table is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MetaRecord {
    pub(crate) path: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) mtime: i64,
    pub(crate) rdev_major: u32,
    pub(crate) rdev_minor: u32,
}

/// One entry's fields without its path, owner names as indices into an
/// [`OwnerNames`] list ([`NO_NAME`] for none): what the unpacker keeps per
/// entry, a few dozen bytes whatever the names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) user: u32,
    pub(crate) group: u32,
    pub(crate) mtime: i64,
    pub(crate) rdev_major: u32,
    pub(crate) rdev_minor: u32,
}

/// One entry in memory: its path lives in the table's arena.
#[derive(Clone, Copy, Debug)]
struct Slot {
    path_start: u32,
    path_len: u32,
    raw: RawEntry,
}

/// The loaded table of one build; shared read-only between connections.
#[derive(Debug, Default)]
pub struct MetaTable {
    arena: Vec<u8>,
    /// Sorted by path bytes, no duplicates.
    slots: Vec<Slot>,
    owners: Vec<Box<str>>,
    /// Indices into `slots` of table-only entries, sorted by (parent, name).
    table_only: Vec<u32>,
}

impl MetaTable {
    /// Reads a table written by [`write_table`]. Any damage (bad CRC, bad
    /// counts, unsorted paths, trailing bytes) is an `InvalidData` error.
    pub fn load(path: &Path) -> io::Result<MetaTable> {
        let file = File::open(path)?;
        let mut input = BufReader::new(GzDecoder::new(BufReader::new(file)));
        let table = parse(&mut input).map_err(|e| {
            io::Error::new(e.kind(), format!("metadata table {}: {e}", path.display()))
        })?;
        let mut rest = [0u8; 1];
        match input.read(&mut rest) {
            Ok(0) => Ok(table),
            Ok(_) => Err(invalid(format!(
                "metadata table {}: trailing bytes",
                path.display()
            ))),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("metadata table {}: {e}", path.display()),
            )),
        }
    }

    #[cfg(test)]
    /// Builds a table in memory (the unpacker's records, or tests').
    /// Later records for the same path replace earlier ones.
    pub(crate) fn from_records(records: &[MetaRecord]) -> io::Result<MetaTable> {
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|&a, &b| records[a].path.cmp(&records[b].path).then(b.cmp(&a)));
        order.dedup_by(|later, first| records[*later].path == records[*first].path);
        let mut table = MetaTable::default();
        let mut names = OwnerNames::default();
        for index in order {
            let r = &records[index];
            let user = names.index_of(r.user.as_deref())?;
            let group = names.index_of(r.group.as_deref())?;
            table.push(
                &r.path,
                RawEntry {
                    mode: r.mode,
                    uid: r.uid,
                    gid: r.gid,
                    user,
                    group,
                    mtime: r.mtime,
                    rdev_major: r.rdev_major,
                    rdev_minor: r.rdev_minor,
                },
            )?;
        }
        table.owners = names.names;
        table.finish();
        Ok(table)
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The entry at `rel_path`; `""` or `"."` is the root directory itself.
    /// A leading `./` and a trailing `/` are ignored.
    pub fn get(&self, rel_path: &[u8]) -> Option<EntryMeta<'_>> {
        let key = normalize(rel_path);
        self.slots
            .binary_search_by(|slot| self.path(slot).cmp(key))
            .ok()
            .map(|i| self.entry(&self.slots[i]))
    }

    /// Entries that exist only in the table (devices, FIFOs, sockets) directly
    /// inside `dir_rel`, so that a directory walker can add them.
    pub fn table_only_children(
        &self,
        dir_rel: &[u8],
    ) -> impl Iterator<Item = (&[u8], EntryMeta<'_>)> + '_ {
        let dir = normalize(dir_rel);
        let parent_of = |i: &u32| parent(self.path(&self.slots[*i as usize]));
        let start = self.table_only.partition_point(|i| parent_of(i) < dir);
        let end = start + self.table_only[start..].partition_point(|i| parent_of(i) == dir);
        self.table_only[start..end].iter().map(move |&i| {
            let slot = &self.slots[i as usize];
            (file_name(self.path(slot)), self.entry(slot))
        })
    }

    /// All entries in path order (for checks and tests).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], EntryMeta<'_>)> + '_ {
        self.slots
            .iter()
            .map(move |slot| (self.path(slot), self.entry(slot)))
    }

    fn path(&self, slot: &Slot) -> &[u8] {
        let start = slot.path_start as usize;
        &self.arena[start..start + slot.path_len as usize]
    }

    fn owner(&self, index: u32) -> Option<&str> {
        self.owners.get(index as usize).map(|name| &**name)
    }

    fn entry(&self, slot: &Slot) -> EntryMeta<'_> {
        let raw = &slot.raw;
        EntryMeta {
            mode: raw.mode,
            uid: raw.uid,
            gid: raw.gid,
            user: self.owner(raw.user),
            group: self.owner(raw.group),
            mtime: raw.mtime,
            rdev_major: raw.rdev_major,
            rdev_minor: raw.rdev_minor,
        }
    }

    /// Appends an entry whose path must sort after every earlier one.
    fn push(&mut self, path: &[u8], raw: RawEntry) -> io::Result<()> {
        if path.len() > MAX_PATH_LEN {
            return Err(invalid(format!("path of {} bytes is too long", path.len())));
        }
        if self.slots.len() >= MAX_ENTRIES {
            return Err(invalid(format!("more than {MAX_ENTRIES} entries")));
        }
        if let Some(last) = self.slots.last() {
            if self.path(last).cmp(path) != Ordering::Less {
                return Err(invalid("paths are not sorted"));
            }
        }
        let start =
            u32::try_from(self.arena.len()).map_err(|_| invalid("paths exceed 4 GiB in total"))?;
        self.arena.extend_from_slice(path);
        // MAX_PATH_LEN keeps the length far below u32::MAX.
        self.slots.push(Slot {
            path_start: start,
            path_len: path.len() as u32,
            raw,
        });
        Ok(())
    }

    fn finish(&mut self) {
        self.arena.shrink_to_fit();
        self.slots.shrink_to_fit();
        let mut table_only: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| is_table_only_mode(self.slots[i as usize].raw.mode))
            .collect();
        table_only.sort_by(|&a, &b| {
            let (pa, pb) = (
                self.path(&self.slots[a as usize]),
                self.path(&self.slots[b as usize]),
            );
            parent(pa).cmp(parent(pb)).then(pa.cmp(pb))
        });
        self.table_only = table_only;
    }
}

/// Interns user and group names while a table is built.
#[derive(Debug, Default)]
pub(crate) struct OwnerNames {
    names: Vec<Box<str>>,
    index: std::collections::HashMap<Box<str>, u32>,
}

impl OwnerNames {
    /// The index of `name` ([`NO_NAME`] for none), added when new.
    pub(crate) fn index_of(&mut self, name: Option<&str>) -> io::Result<u32> {
        let Some(name) = name else { return Ok(NO_NAME) };
        if let Some(&i) = self.index.get(name) {
            return Ok(i);
        }
        if self.names.len() >= MAX_OWNER_NAMES || name.len() > MAX_OWNER_NAME_LEN {
            return Err(invalid("too many or too long user/group names"));
        }
        let i = self.names.len() as u32;
        self.names.push(name.into());
        self.index.insert(name.into(), i);
        Ok(i)
    }

    /// The names in index order.
    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }
}

#[cfg(test)]
/// Writes `records` as a table file at `path` (sorted, later duplicates win).
/// The file is written in place: callers write to a scratch path and rename.
pub(crate) fn write_table(path: &Path, records: &[MetaRecord]) -> io::Result<()> {
    let table = MetaTable::from_records(records)?;
    let mut writer = TableWriter::create(path, &table.owners, table.slots.len())?;
    for slot in &table.slots {
        writer.push(table.path(slot), &slot.raw)?;
    }
    writer.finish()
}

/// Writes a table file entry by entry, straight to disk, so that the
/// unpacker never holds a second copy of every path.
pub(crate) struct TableWriter {
    out: GzEncoder<BufWriter<File>>,
    /// Entries announced and not yet written.
    remaining: usize,
    /// The last path written (reused): paths must come sorted and unique.
    last: Option<Vec<u8>>,
}

impl TableWriter {
    /// Starts the file at `path` with its owner names and the number of
    /// entries that [`TableWriter::push`] will write.
    pub(crate) fn create(
        path: &Path,
        owners: &[Box<str>],
        entries: usize,
    ) -> io::Result<TableWriter> {
        if entries > MAX_ENTRIES {
            return Err(invalid(format!("more than {MAX_ENTRIES} entries")));
        }
        let file = File::create(path)?;
        let mut out = GzEncoder::new(BufWriter::new(file), Compression::default());
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&(owners.len() as u32).to_le_bytes())?;
        for name in owners {
            out.write_all(&(name.len() as u16).to_le_bytes())?;
            out.write_all(name.as_bytes())?;
        }
        out.write_all(&(entries as u32).to_le_bytes())?;
        Ok(TableWriter {
            out,
            remaining: entries,
            last: None,
        })
    }

    pub(crate) fn push(&mut self, path: &[u8], raw: &RawEntry) -> io::Result<()> {
        if path.len() > MAX_PATH_LEN {
            return Err(invalid(format!("path of {} bytes is too long", path.len())));
        }
        if self.remaining == 0 {
            return Err(invalid("more entries than announced"));
        }
        match &mut self.last {
            Some(last) if last.as_slice() >= path => return Err(invalid("paths are not sorted")),
            Some(last) => {
                last.clear();
                last.extend_from_slice(path);
            }
            None => self.last = Some(path.to_vec()),
        }
        self.remaining -= 1;
        let out = &mut self.out;
        out.write_all(&(path.len() as u32).to_le_bytes())?;
        out.write_all(path)?;
        for word in [raw.mode, raw.uid, raw.gid, raw.user, raw.group] {
            out.write_all(&word.to_le_bytes())?;
        }
        out.write_all(&raw.mtime.to_le_bytes())?;
        out.write_all(&raw.rdev_major.to_le_bytes())?;
        out.write_all(&raw.rdev_minor.to_le_bytes())
    }

    /// Ends the file and syncs it to disk.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if self.remaining != 0 {
            return Err(invalid("fewer entries than announced"));
        }
        self.out.write_all(END_MARK)?;
        let file = self
            .out
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

fn parse(input: &mut impl Read) -> io::Result<MetaTable> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a metadata table"));
    }
    let version = read_u32(input)?;
    if version != FORMAT_VERSION {
        return Err(invalid(format!("unknown format version {version}")));
    }
    let mut table = MetaTable::default();
    let owner_count = read_count(input, MAX_OWNER_NAMES)?;
    table.owners.reserve(owner_count.min(MAX_RESERVE));
    let mut buf = Vec::new();
    for _ in 0..owner_count {
        let mut len = [0u8; 2];
        input.read_exact(&mut len)?;
        let len = u16::from_le_bytes(len) as usize;
        if len > MAX_OWNER_NAME_LEN {
            return Err(invalid("owner name too long"));
        }
        read_bytes(input, len, &mut buf)?;
        let name = std::str::from_utf8(&buf).map_err(|_| invalid("owner name not UTF-8"))?;
        table.owners.push(name.into());
    }
    let entry_count = read_count(input, MAX_ENTRIES)?;
    table.slots.reserve(entry_count.min(MAX_RESERVE));
    for _ in 0..entry_count {
        let path_len = read_u32(input)? as usize;
        if path_len > MAX_PATH_LEN {
            return Err(invalid("path too long"));
        }
        read_bytes(input, path_len, &mut buf)?;
        if !is_clean_path(&buf) {
            return Err(invalid("a path is not in its clean form"));
        }
        let mut words = [0u32; 5];
        for word in &mut words {
            *word = read_u32(input)?;
        }
        let [mode, uid, gid, user, group] = words;
        for owner in [user, group] {
            if owner != NO_NAME && owner as usize >= table.owners.len() {
                return Err(invalid("owner name index out of range"));
            }
        }
        let mut mtime = [0u8; 8];
        input.read_exact(&mut mtime)?;
        let rdev_major = read_u32(input)?;
        let rdev_minor = read_u32(input)?;
        table.push(
            &buf,
            RawEntry {
                mode,
                uid,
                gid,
                user,
                group,
                mtime: i64::from_le_bytes(mtime),
                rdev_major,
                rdev_minor,
            },
        )?;
    }
    let mut end = [0u8; 4];
    input.read_exact(&mut end)?;
    if &end != END_MARK {
        return Err(invalid("missing end mark"));
    }
    table.finish();
    Ok(table)
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut word = [0u8; 4];
    input.read_exact(&mut word)?;
    Ok(u32::from_le_bytes(word))
}

fn read_count(input: &mut impl Read, limit: usize) -> io::Result<usize> {
    let count = read_u32(input)? as usize;
    if count > limit {
        return Err(invalid(format!("count {count} exceeds {limit}")));
    }
    Ok(count)
}

/// Reads exactly `len` bytes into `buf` (reused, so no allocation per entry).
fn read_bytes(input: &mut impl Read, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let got = input.take(len as u64).read_to_end(buf)?;
    if got != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Whether `path` is written the way the unpacker writes paths: `""` for the
/// root, else names without `.`, `..`, empty parts or NUL bytes. Any other
/// spelling could never be looked up, so a table holding one is damaged.
fn is_clean_path(path: &[u8]) -> bool {
    path.is_empty()
        || (!path.contains(&0)
            && path
                .split(|&b| b == b'/')
                .all(|part| !part.is_empty() && part != b"." && part != b".."))
}

/// `"."`, `"./x"` and `"x/"` name the same entries as `""`, `"x"` and `"x"`.
fn normalize(path: &[u8]) -> &[u8] {
    let mut path = path;
    while let Some(rest) = path.strip_prefix(b"./") {
        path = rest;
    }
    if path == b"." {
        return b"";
    }
    while let Some(rest) = path.strip_suffix(b"/") {
        path = rest;
    }
    path
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

fn file_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, mode: u32, uid: u32, user: Option<&str>) -> MetaRecord {
        MetaRecord {
            path: path.as_bytes().to_vec(),
            mode,
            uid,
            gid: uid + 1,
            user: user.map(String::from),
            group: None,
            mtime: -5,
            rdev_major: 0,
            rdev_minor: 0,
        }
    }

    fn sample() -> Vec<MetaRecord> {
        let mut console = rec("dev/console", S_IFCHR | 0o600, 0, Some("root"));
        console.rdev_major = 5;
        console.rdev_minor = 1;
        vec![
            rec("", S_IFDIR | 0o755, 0, Some("root")),
            rec("dev", S_IFDIR | 0o755, 0, Some("root")),
            console,
            rec("dev/initctl", S_IFIFO | 0o600, 0, None),
            rec("dev/pts", S_IFDIR | 0o755, 0, None),
            rec("dev/pts/ptmx", S_IFCHR | 0o666, 0, None),
            rec("bin/su", S_IFREG | 0o4755, 0, Some("root")),
            rec("home/olpc", S_IFDIR | 0o700, 500, Some("olpc")),
            rec("dev-x", S_IFBLK | 0o600, 0, None),
        ]
    }

    #[test]
    fn lookups_normalize_paths() {
        let table = MetaTable::from_records(&sample()).unwrap();
        assert_eq!(table.get(b"").unwrap().mode, S_IFDIR | 0o755);
        assert_eq!(table.get(b".").unwrap().mode, S_IFDIR | 0o755);
        assert_eq!(table.get(b"./bin/su").unwrap().mode, 0o104755);
        assert_eq!(table.get(b"dev/").unwrap().mode, S_IFDIR | 0o755);
        let olpc = table.get(b"home/olpc").unwrap();
        assert_eq!((olpc.uid, olpc.gid, olpc.user), (500, 501, Some("olpc")));
        assert_eq!(olpc.mtime, -5);
        assert!(table.get(b"bin").is_none());
        assert!(table.get(b"bin/s").is_none());
    }

    #[test]
    fn table_only_children_are_direct_children() {
        let table = MetaTable::from_records(&sample()).unwrap();
        let dev: Vec<_> = table
            .table_only_children(b"dev")
            .map(|(name, m)| (name.to_vec(), m.rdev_major, m.rdev_minor))
            .collect();
        assert_eq!(
            dev,
            vec![(b"console".to_vec(), 5, 1), (b"initctl".to_vec(), 0, 0)]
        );
        let root: Vec<_> = table.table_only_children(b".").map(|(n, _)| n).collect();
        assert_eq!(root, vec![b"dev-x".as_slice()]);
        assert_eq!(table.table_only_children(b"dev/pts").count(), 1);
        assert_eq!(table.table_only_children(b"bin").count(), 0);
    }

    #[test]
    fn later_duplicates_win() {
        let mut records = sample();
        records.push(rec("bin/su", S_IFREG | 0o755, 7, None));
        let table = MetaTable::from_records(&records).unwrap();
        assert_eq!(table.len(), sample().len());
        assert_eq!(table.get(b"bin/su").unwrap().uid, 7);
    }

    #[test]
    fn round_trip_and_damage() {
        let dir = std::env::temp_dir().join(format!("upserv-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.meta");
        write_table(&path, &sample()).unwrap();
        let table = MetaTable::load(&path).unwrap();
        let expected = MetaTable::from_records(&sample()).unwrap();
        assert!(table.iter().eq(expected.iter()));
        assert_eq!(table.get(b"dev/console").unwrap().user, Some("root"));

        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        assert!(MetaTable::load(&path).is_err());
        std::fs::write(&path, &bytes[..middle]).unwrap();
        assert!(MetaTable::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
