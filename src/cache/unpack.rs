//! Unpacking a build archive into scratch space, with its metadata records.
//!
//! The archive is read as a stream (the decompressor feeds the tar reader;
//! nothing holds the whole archive) into `.upserv/unpack/NAME/tree/`. Every
//! entry path is cleaned first: absolute paths and `..` components refuse the
//! archive. Nothing is ever created through a symlink or under a non-directory:
//! each entry's parents must be directories that this unpacking created, and a
//! file is always created fresh (`O_EXCL`), never opened through whatever
//! already sits at its path. Symlinks are stored as they are.
//!
//! Files are created owner-writable and readable, without set-id bits; what
//! the archive says (owners, full modes, mtimes, devices) goes to the metadata
//! records instead, and devices, FIFOs and sockets exist only there.
//!
//! The records hold no paths: each path is kept once, as a key of the map of
//! what was unpacked, and the table is written entry by entry from the sorted
//! keys, so memory grows with the bytes of the paths only once (and those
//! are bounded, see [`MAX_ARCHIVE_PATH_BYTES`]).
//!
//! This module must not publish anything: it leaves a finished module tree
//! and its metadata table in scratch space, and on error removes that
//! scratch space entirely.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::store::remove_tree;
use super::types::Layout;
use crate::meta::{
    OwnerNames, RawEntry, TableWriter, MAX_PATH_LEN, NO_NAME, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO,
    S_IFLNK, S_IFMT, S_IFREG,
};

/// Most entries one archive may hold; bounds the memory of the records.
pub(crate) const MAX_ARCHIVE_ENTRIES: usize = 4_000_000;
/// Most bytes of paths one archive may hold in total: every path stays in
/// memory (once) until the table is written. An OS image of 200 000 entries
/// has about 20 MB; 400 000 paths of 1500 bytes (600 MB) are refused.
pub(crate) const MAX_ARCHIVE_PATH_BYTES: u64 = 64 << 20;
/// Memory the xz and lzma decoders may take: `xz -9` needs 65 MiB; a header
/// asking for a larger dictionary than this is refused, not obeyed.
pub(crate) const MAX_DECODER_MEMORY: u64 = 256 << 20;
/// Longest part of a path that error messages show.
const MAX_SHOWN_PATH: usize = 200;
/// Size of a tar block; the end of an archive is two blocks of zeros.
const TAR_BLOCK: usize = 512;
/// Copy buffer for file contents.
const COPY_BUFFER: usize = 64 * 1024;
/// Read buffer between the archive file and the decompressor.
const READ_BUFFER: usize = 256 * 1024;
/// Disk modes: readable by the server, never set-id; the real ones are recorded.
const DIR_DISK_MODE: u32 = 0o755;
const FILE_DISK_MODE: u32 = 0o644;
const EXEC_DISK_MODE: u32 = 0o755;
/// Metadata given to directories the archive implies but never lists.
const IMPLIED_DIR_MODE: u32 = S_IFDIR | 0o755;

/// Compression of an archive, from the URL's ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Lzma,
}

impl ArchiveKind {
    /// The kind named by a URL's path ending; `None` for anything else.
    pub(crate) fn from_url(url: &str) -> Option<ArchiveKind> {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let endings = [
            (".tar", ArchiveKind::Tar),
            (".tar.gz", ArchiveKind::Gzip),
            (".tgz", ArchiveKind::Gzip),
            (".tar.bz2", ArchiveKind::Bzip2),
            (".tar.xz", ArchiveKind::Xz),
            (".tar.lzma", ArchiveKind::Lzma),
        ];
        endings
            .iter()
            .find(|(ending, _)| path.ends_with(ending))
            .map(|&(_, kind)| kind)
    }

    fn reader(self, file: File) -> io::Result<Box<dyn Read>> {
        let input = BufReader::with_capacity(READ_BUFFER, file);
        Ok(match self {
            ArchiveKind::Tar => Box::new(input),
            ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
            ArchiveKind::Xz => {
                let stream = liblzma::stream::Stream::new_auto_decoder(
                    MAX_DECODER_MEMORY,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
            }
            ArchiveKind::Lzma => {
                let stream = liblzma::stream::Stream::new_lzma_decoder(MAX_DECODER_MEMORY)
                    .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
            }
        })
    }
}

/// A module tree ready to publish: rename `table` to the build's metadata
/// table, then `tree` to `DIR/NAME`.
#[derive(Debug)]
pub struct Unpacked {
    pub tree: PathBuf,
    /// The metadata table, paths relative to the module root.
    pub table: PathBuf,
    pub(crate) entries: usize,
}

/// How to arrange the module, and whom to tell how far unpacking got.
pub struct Plan<'a> {
    pub layout: Layout,
    /// The olpc manifest, copied to `contents` (olpc layout only).
    pub contents: Option<&'a Path>,
    /// Called after each archive entry with the number of entries so far.
    pub on_entry: &'a mut dyn FnMut(u64),
    /// Most bytes of file contents to write (the cache size): counted as
    /// they are written, so an archive that unpacks to more stops there
    /// instead of filling the disk first. Apparent sizes are counted, not
    /// disk blocks; the finished tree's blocks are checked before publishing.
    pub max_bytes: u64,
}

/// Unpacks `archive` into `scratch` (created afresh). On error, `scratch` is
/// removed and the error names the archive entry at fault.
pub fn unpack(
    archive: &Path,
    kind: ArchiveKind,
    scratch: &Path,
    plan: &mut Plan,
) -> io::Result<Unpacked> {
    remove_tree(scratch)?;
    let result = unpack_into(archive, kind, scratch, plan);
    if result.is_err() {
        if let Err(e) = remove_tree(scratch) {
            log::warn!("{e}");
        }
    }
    result
}

fn unpack_into(
    archive: &Path,
    kind: ArchiveKind,
    scratch: &Path,
    plan: &mut Plan,
) -> io::Result<Unpacked> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_DISK_MODE)
        .create(scratch)?;
    let tree = scratch.join("tree");
    DirBuilder::new().mode(DIR_DISK_MODE).create(&tree)?;
    let file = File::open(archive)?;
    let mut extractor = Extractor::new(tree.clone(), plan.max_bytes);
    let mut reader = tar::Archive::new(kind.reader(file)?);
    for (count, entry) in (1u64..).zip(reader.entries()?) {
        extractor.extract(&mut entry?)?;
        (plan.on_entry)(count);
    }
    check_end(reader.into_inner())?;
    let entries = extractor.records.len();
    let root = choose_root(&extractor, plan.layout)?;
    let table = scratch.join("table");
    extractor.write_table(&table, &root, plan.layout)?;
    let root_dir = tree.join(Path::new(std::ffi::OsStr::from_bytes(&root)));
    let module = match plan.layout {
        Layout::Plain => root_dir,
        Layout::Olpc => arrange_olpc(scratch, &root_dir, plan.contents)?,
    };
    fs::set_permissions(
        &module,
        std::os::unix::fs::PermissionsExt::from_mode(DIR_DISK_MODE),
    )?;
    Ok(Unpacked {
        tree: module,
        table,
        entries,
    })
}

/// The tar reader stops at the first block of zeros, or quietly at the end of
/// its input; only the first is a finished archive, and a second zero block
/// must follow. Without them the archive was cut (at an entry boundary,
/// where nothing else shows it) and must not be published as complete.
fn check_end(mut rest: impl Read) -> io::Result<()> {
    let mut block = [0u8; TAR_BLOCK];
    let cut = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the archive is cut short: its end-of-archive blocks are missing",
        )
    };
    match rest.read_exact(&mut block) {
        Ok(()) if block.iter().all(|&b| b == 0) => Ok(()),
        Ok(()) => Err(cut()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(cut()),
        Err(e) => Err(e),
    }
}

fn arrange_olpc(scratch: &Path, root_dir: &Path, contents: Option<&Path>) -> io::Result<PathBuf> {
    let module = scratch.join("module");
    DirBuilder::new().mode(DIR_DISK_MODE).create(&module)?;
    fs::rename(root_dir, module.join("root"))?;
    match contents {
        Some(manifest) => {
            fs::copy(manifest, module.join("contents"))?;
        }
        None => log::warn!("layout = olpc without `upstream contents`: no manifest"),
    }
    Ok(module)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    TableOnly,
}

/// Where one path stands: what is there and which record describes it.
#[derive(Clone, Copy, Debug)]
struct Known {
    kind: Kind,
    record: usize,
}

struct Extractor {
    tree: PathBuf,
    /// Every path, held once; each names its record.
    known: HashMap<Box<[u8]>, Known>,
    records: Vec<RawEntry>,
    owners: OwnerNames,
    buffer: Vec<u8>,
    /// Bytes of paths remembered so far (see [`MAX_ARCHIVE_PATH_BYTES`]).
    path_bytes: u64,
    /// Bytes of file contents written so far, and the most allowed.
    written: u64,
    max_bytes: u64,
}

/// The archive's own view of an entry, PAX overrides applied.
struct Header {
    mode: u32,
    uid: u32,
    gid: u32,
    user: Option<String>,
    group: Option<String>,
    mtime: i64,
    rdev_major: u32,
    rdev_minor: u32,
}

impl Extractor {
    fn new(tree: PathBuf, max_bytes: u64) -> Extractor {
        Extractor {
            tree,
            known: HashMap::new(),
            records: Vec::new(),
            owners: OwnerNames::default(),
            buffer: vec![0; COPY_BUFFER],
            path_bytes: 0,
            written: 0,
            max_bytes,
        }
    }

    fn extract<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> io::Result<()> {
        self.check_limit()?;
        let raw = entry.path_bytes().into_owned();
        let path = clean_path(&raw).map_err(|why| refuse(&raw, why))?;
        let kind = entry.header().entry_type();
        let header = read_header(entry).map_err(|e| refuse(&raw, &e.to_string()))?;
        let context = |e: io::Error| {
            if is_disk_full(&e) {
                // Not the archive's fault: the caller keeps it for a later try.
                io::Error::new(e.kind(), format!("archive entry {:?}: {e}", show(&raw)))
            } else {
                refuse(&raw, &e.to_string())
            }
        };
        match kind {
            EntryType::Directory => self.make_dir(&path, header).map_err(context),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.make_file(&path, header, entry).map_err(context)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.make_symlink(&path, header, &target).map_err(context)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = clean_path(&target)
                    .map_err(|why| refuse(&raw, &format!("hard link target: {why}")))?;
                self.make_hard_link(&path, &target).map_err(context)
            }
            EntryType::Char => self
                .make_table_only(&path, header, S_IFCHR)
                .map_err(context),
            EntryType::Block => self
                .make_table_only(&path, header, S_IFBLK)
                .map_err(context),
            EntryType::Fifo => self
                .make_table_only(&path, header, S_IFIFO)
                .map_err(context),
            other => {
                log::debug!("skipping archive entry {:?} of type {other:?}", show(&raw));
                Ok(())
            }
        }
    }

    fn disk_path(&self, rel: &[u8]) -> PathBuf {
        self.tree.join(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }

    /// Makes sure every parent of `rel` is a directory this unpacking made,
    /// creating missing ones (with implied metadata like the entry's).
    fn ensure_parents(&mut self, rel: &[u8], mtime: i64) -> io::Result<()> {
        let mut end = 0;
        while let Some(offset) = rel[end..].iter().position(|&b| b == b'/') {
            end += offset;
            let parent = &rel[..end];
            match self.known.get(parent) {
                Some(known) if known.kind == Kind::Dir => {}
                Some(_) => {
                    return Err(io::Error::other(format!(
                        "it lies under {}, which is not a directory",
                        show(parent)
                    )))
                }
                None => {
                    let implied = implied_dir(mtime);
                    DirBuilder::new()
                        .mode(DIR_DISK_MODE)
                        .create(self.disk_path(parent))?;
                    self.remember(parent, Kind::Dir, implied);
                }
            }
            end += 1;
        }
        Ok(())
    }

    /// Clears the way for a non-directory at `rel`: refuses to replace a
    /// directory, unlinks (never follows) any earlier non-directory.
    fn clear_for_leaf(&mut self, rel: &[u8], mtime: i64) -> io::Result<()> {
        self.ensure_parents(rel, mtime)?;
        match self.known.get(rel).map(|k| k.kind) {
            Some(Kind::Dir) => Err(io::Error::other("it would replace a directory")),
            Some(Kind::File | Kind::Symlink) => fs::remove_file(self.disk_path(rel)),
            Some(Kind::TableOnly) | None => Ok(()),
        }
    }

    fn make_dir(&mut self, rel: &[u8], header: Header) -> io::Result<()> {
        let record = header.record(S_IFDIR, &mut self.owners)?;
        if rel.is_empty() {
            self.remember(rel, Kind::Dir, record);
            return Ok(());
        }
        self.ensure_parents(rel, header.mtime)?;
        match self.known.get(rel).map(|k| k.kind) {
            Some(Kind::Dir) => {}
            Some(_) => return Err(io::Error::other("it would replace a non-directory")),
            None => DirBuilder::new()
                .mode(DIR_DISK_MODE)
                .create(self.disk_path(rel))?,
        }
        self.remember(rel, Kind::Dir, record);
        Ok(())
    }

    fn make_file(&mut self, rel: &[u8], header: Header, data: &mut impl Read) -> io::Result<()> {
        if rel.is_empty() {
            return Err(io::Error::other("a file cannot be the root"));
        }
        self.clear_for_leaf(rel, header.mtime)?;
        let disk_mode = if header.mode & 0o111 != 0 {
            EXEC_DISK_MODE
        } else {
            FILE_DISK_MODE
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(disk_mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.disk_path(rel))?;
        loop {
            let n = match data.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.written += n as u64;
            if self.written > self.max_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the archive unpacks to more than the cache size of {} bytes",
                        self.max_bytes
                    ),
                ));
            }
            out.write_all(&self.buffer[..n])?;
        }
        let record = header.record(S_IFREG, &mut self.owners)?;
        self.remember(rel, Kind::File, record);
        Ok(())
    }

    fn make_symlink(&mut self, rel: &[u8], header: Header, target: &[u8]) -> io::Result<()> {
        if rel.is_empty() || target.is_empty() {
            return Err(io::Error::other("bad symlink"));
        }
        self.clear_for_leaf(rel, header.mtime)?;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), self.disk_path(rel))?;
        let record = header.record(S_IFLNK, &mut self.owners)?;
        self.remember(rel, Kind::Symlink, record);
        Ok(())
    }

    fn make_hard_link(&mut self, rel: &[u8], target: &[u8]) -> io::Result<()> {
        let Some(&Known { kind, record }) = self.known.get(target) else {
            return Err(io::Error::other(format!(
                "hard link to {}, which is not in the archive before it",
                show(target)
            )));
        };
        if kind == Kind::Dir || rel.is_empty() {
            return Err(io::Error::other("hard link to a directory"));
        }
        let linked = self.records[record];
        if rel == target {
            return Ok(());
        }
        self.clear_for_leaf(rel, linked.mtime)?;
        if kind != Kind::TableOnly {
            // std's hard_link uses linkat without AT_SYMLINK_FOLLOW: a link to a
            // symlink links the symlink itself.
            fs::hard_link(self.disk_path(target), self.disk_path(rel))?;
        }
        self.remember(rel, kind, linked);
        Ok(())
    }

    fn make_table_only(&mut self, rel: &[u8], header: Header, file_type: u32) -> io::Result<()> {
        if rel.is_empty() {
            return Err(io::Error::other("a device cannot be the root"));
        }
        self.clear_for_leaf(rel, header.mtime)?;
        let record = header.record(file_type, &mut self.owners)?;
        self.remember(rel, Kind::TableOnly, record);
        Ok(())
    }

    fn remember(&mut self, rel: &[u8], kind: Kind, record: RawEntry) {
        match self.known.get_mut(rel) {
            Some(known) => {
                known.kind = kind;
                self.records[known.record] = record;
            }
            None => {
                self.path_bytes += rel.len() as u64;
                self.known.insert(
                    rel.into(),
                    Known {
                        kind,
                        record: self.records.len(),
                    },
                );
                self.records.push(record);
            }
        }
    }

    fn check_limit(&self) -> io::Result<()> {
        if self.records.len() >= MAX_ARCHIVE_ENTRIES {
            return Err(io::Error::other(format!(
                "the archive has more than {MAX_ARCHIVE_ENTRIES} entries"
            )));
        }
        if self.path_bytes > MAX_ARCHIVE_PATH_BYTES {
            return Err(io::Error::other(format!(
                "the archive's paths take more than {MAX_ARCHIVE_PATH_BYTES} bytes in total"
            )));
        }
        Ok(())
    }

    /// Writes the table of the entries under `root`, re-rooted for the
    /// module's layout, straight to `path`: the paths are sorted by
    /// reference, never copied all at once.
    fn write_table(&self, path: &Path, root: &[u8], layout: Layout) -> io::Result<()> {
        let mut under: Vec<(&[u8], usize)> = self
            .known
            .iter()
            .filter_map(|(path, known)| Some((strip_root(path, root)?, known.record)))
            .collect();
        under.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut writer = TableWriter::create(path, self.owners.names(), under.len())?;
        let mut rerooted = Vec::new();
        for (rest, record) in under {
            rerooted.clear();
            if layout == Layout::Olpc {
                rerooted.extend_from_slice(b"root");
                if !rest.is_empty() {
                    rerooted.push(b'/');
                }
            }
            rerooted.extend_from_slice(rest);
            writer.push(&rerooted, &self.records[record])?;
        }
        writer.finish()
    }
}

impl Header {
    fn record(&self, file_type: u32, owners: &mut OwnerNames) -> io::Result<RawEntry> {
        let is_device = matches!(file_type, S_IFCHR | S_IFBLK);
        Ok(RawEntry {
            mode: file_type | (self.mode & !S_IFMT & 0o7777),
            uid: self.uid,
            gid: self.gid,
            user: owners.index_of(self.user.as_deref())?,
            group: owners.index_of(self.group.as_deref())?,
            mtime: self.mtime,
            rdev_major: if is_device { self.rdev_major } else { 0 },
            rdev_minor: if is_device { self.rdev_minor } else { 0 },
        })
    }
}

fn implied_dir(mtime: i64) -> RawEntry {
    RawEntry {
        mode: IMPLIED_DIR_MODE,
        uid: 0,
        gid: 0,
        user: NO_NAME,
        group: NO_NAME,
        mtime,
        rdev_major: 0,
        rdev_minor: 0,
    }
}

fn read_header<R: Read>(entry: &mut tar::Entry<R>) -> io::Result<Header> {
    let h = entry.header();
    let mut header = Header {
        mode: h.mode()?,
        uid: id32(h.uid()?)?,
        gid: id32(h.gid()?)?,
        user: owner_name(h.username_bytes()),
        group: owner_name(h.groupname_bytes()),
        // Base-256 negative times arrive wrapped in a u64; the cast undoes that.
        mtime: h.mtime()? as i64,
        rdev_major: 0,
        rdev_minor: 0,
    };
    // Only devices carry numbers; other entries often leave the fields blank.
    if matches!(h.entry_type(), EntryType::Char | EntryType::Block) {
        header.rdev_major = h.device_major()?.unwrap_or(0);
        header.rdev_minor = h.device_minor()?.unwrap_or(0);
    }
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            let value = extension.value_bytes();
            match extension.key_bytes() {
                b"uid" => header.uid = id32(parse_decimal(value)? as u64)?,
                b"gid" => header.gid = id32(parse_decimal(value)? as u64)?,
                b"uname" => header.user = owner_name(Some(value)),
                b"gname" => header.group = owner_name(Some(value)),
                b"mtime" => header.mtime = parse_decimal(value)?,
                _ => {}
            }
        }
    }
    Ok(header)
}

/// The integer part of a PAX decimal such as `1234567890.5` or `-12`.
fn parse_decimal(value: &[u8]) -> io::Result<i64> {
    let whole = value.split(|&b| b == b'.').next().unwrap_or_default();
    std::str::from_utf8(whole)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| io::Error::other("bad number in PAX header"))
}

fn id32(id: u64) -> io::Result<u32> {
    u32::try_from(id).map_err(|_| io::Error::other(format!("owner id {id} too large")))
}

fn owner_name(raw: Option<&[u8]>) -> Option<String> {
    let raw = raw.filter(|r| !r.is_empty())?;
    match std::str::from_utf8(raw) {
        Ok(name) => Some(name.to_string()),
        Err(_) => {
            log::warn!("ignoring non-UTF-8 owner name {:?}", show(raw));
            None
        }
    }
}

/// `a/./b//c/` → `a/b/c`; `./` → `` (the root). Absolute paths and `..` are refused.
pub fn clean_path(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut clean = Vec::with_capacity(raw.len());
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path contains `..`"),
            _ => {
                if !clean.is_empty() {
                    clean.push(b'/');
                }
                clean.extend_from_slice(part);
            }
        }
    }
    if clean.contains(&0) {
        return Err("path contains a NUL byte");
    }
    if clean.len() > MAX_PATH_LEN {
        return Err("path longer than 4096 bytes");
    }
    Ok(clean)
}

fn strip_root<'a>(path: &'a [u8], root: &[u8]) -> Option<&'a [u8]> {
    if root.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(root)?;
    match rest.first() {
        None => Some(rest),
        Some(b'/') => Some(&rest[1..]),
        Some(_) => None,
    }
}

/// The archive path whose subtree becomes the module (or its `root/`).
fn choose_root(extractor: &Extractor, layout: Layout) -> io::Result<Vec<u8>> {
    let top = single_top_dir(extractor);
    if layout == Layout::Olpc {
        if let Some(pristine) = pristine_root(extractor, top.as_deref())? {
            return Ok(pristine);
        }
    }
    Ok(top.unwrap_or_default())
}

/// The one top-level directory all entries sit under, if there is one.
fn single_top_dir(extractor: &Extractor) -> Option<Vec<u8>> {
    let mut top: Option<&[u8]> = None;
    for path in extractor.known.keys().filter(|p| !p.is_empty()) {
        let first = path.split(|&b| b == b'/').next().unwrap_or_default();
        match top {
            None => top = Some(first),
            Some(seen) if seen == first => {}
            Some(_) => return None,
        }
    }
    let top = top?;
    let is_dir = extractor
        .known
        .get(top)
        .is_some_and(|k| k.kind == Kind::Dir);
    is_dir.then(|| top.to_vec())
}

/// `[top/]versions/pristine/<N>` when the archive holds exactly one such tree.
fn pristine_root(extractor: &Extractor, top: Option<&[u8]>) -> io::Result<Option<Vec<u8>>> {
    let mut found = Vec::new();
    for base in top.into_iter().chain(std::iter::once(&b""[..])) {
        let prefix = if base.is_empty() {
            b"versions/pristine/".to_vec()
        } else {
            [base, b"/versions/pristine/"].concat()
        };
        for (path, known) in &extractor.known {
            let Some(rest) = path.strip_prefix(prefix.as_slice()) else {
                continue;
            };
            if known.kind == Kind::Dir && !rest.is_empty() && !rest.contains(&b'/') {
                found.push(path.to_vec());
            }
        }
        if !found.is_empty() {
            break;
        }
    }
    found.sort();
    found.dedup();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(io::Error::other(format!(
            "the archive holds {n} versions/pristine/ trees; expected one"
        ))),
    }
}

/// Whether unpacking failed for want of disk space rather than for the archive.
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn refuse(raw: &[u8], why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("archive entry {:?} refused: {why}", show(raw)),
    )
}

/// A path as error messages show it: its end, when it is long (a client
/// reads the message on one line; the end names the entry best).
fn show(bytes: &[u8]) -> String {
    match bytes.len().checked_sub(MAX_SHOWN_PATH) {
        Some(cut) if cut > 0 => format!("...{}", String::from_utf8_lossy(&bytes[cut..])),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(clean_path(b"./").unwrap(), b"");
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"a/../../b").is_err());
        assert!(clean_path(b"..").is_err());
        assert_eq!(clean_path(b"a/..b").unwrap(), b"a/..b");
    }

    #[test]
    fn kinds_by_url_ending() {
        let kind = ArchiveKind::from_url;
        assert_eq!(kind("http://h/x.tree.tar.xz"), Some(ArchiveKind::Xz));
        assert_eq!(kind("http://h/x.tar.lzma?sig=1"), Some(ArchiveKind::Lzma));
        assert_eq!(kind("http://h/x.tgz"), Some(ArchiveKind::Gzip));
        assert_eq!(kind("http://h/x.tar.gz"), Some(ArchiveKind::Gzip));
        assert_eq!(kind("http://h/x.tar.bz2"), Some(ArchiveKind::Bzip2));
        assert_eq!(kind("http://h/x.tar"), Some(ArchiveKind::Tar));
        assert_eq!(kind("http://h/x.zip"), None);
    }

    #[test]
    fn strips_roots() {
        assert_eq!(strip_root(b"a/b", b"a"), Some(&b"b"[..]));
        assert_eq!(strip_root(b"a", b"a"), Some(&b""[..]));
        assert_eq!(strip_root(b"ab/c", b"a"), None);
        assert_eq!(strip_root(b"x", b""), Some(&b"x"[..]));
    }
}
