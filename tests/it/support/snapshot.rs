//! Snapshots of a directory tree as rsync would reproduce it, and readable
//! differences between two of them.
//!
//! A snapshot records, per path relative to its root: the entry type,
//! permission bits, mtime in seconds (lstat, so symlinks too), size, an MD4 of
//! the content, the symlink target, owner and group ids, device numbers, and
//! which entries are hard links of each other. atime, ctime, inode numbers and
//! directory sizes are deliberately left out: rsync does not carry them.

use md4::{Digest, Md4};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The most differences a report lists before it says how many it left out.
pub const MAX_REPORTED_DIFFERENCES: usize = 20;
/// Read size when hashing or comparing file contents.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// One entry of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Mode bits below the file type: permissions, setuid, setgid, sticky.
    pub perm: u32,
    pub mtime: i64,
    /// The mtime's nanoseconds (protocol 31 carries them); compared for
    /// regular files only.
    pub mtime_nsec: i64,
    /// Content length for files, target length for symlinks, 0 otherwise.
    pub size: u64,
    pub md4: Option<[u8; 16]>,
    pub target: Option<Vec<u8>>,
    pub uid: u32,
    pub gid: u32,
    /// (major, minor) for device nodes.
    pub rdev: Option<(u32, u32)>,
    /// For an entry hard-linked to others in the same tree: the first path
    /// (in byte order) of its group, so groups compare across trees.
    pub link_group: Option<Vec<u8>>,
}

/// Which mtimes may legitimately differ between two pulls, e.g. when the
/// options do not preserve times and the receiver stamped "now".
#[derive(Clone, Copy, Debug, Default)]
pub struct Volatile {
    pub file_mtimes: bool,
    pub dir_mtimes: bool,
    pub link_mtimes: bool,
    /// The destination directory itself, when the pull fills it rather
    /// than copying the source's top directory onto it.
    pub root_mtime: bool,
}

/// Every entry under a root, keyed by the path's bytes relative to it
/// (`"."` for the root itself).
#[derive(Clone, Debug)]
pub struct Snapshot {
    root: PathBuf,
    entries: BTreeMap<Vec<u8>, Node>,
}

impl Snapshot {
    /// Captures `dir`; panics with the path when it cannot be read. A
    /// missing `dir` gives an empty snapshot: a pull that failed early
    /// leaves nothing behind, and that compares like anything else.
    pub fn of(dir: &Path) -> Snapshot {
        let mut entries = BTreeMap::new();
        if dir
            .symlink_metadata()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            return Snapshot {
                root: dir.to_path_buf(),
                entries,
            };
        }
        let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
        let mut pending = vec![(dir.to_path_buf(), b".".to_vec())];
        while let Some((path, rel)) = pending.pop() {
            let meta = path
                .symlink_metadata()
                .unwrap_or_else(|e| panic!("snapshot: lstat {path:?}: {e}"));
            let node = node_of(&path, &meta);
            if node.kind == Kind::Dir {
                push_children(&path, &rel, &mut pending);
            } else if meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            entries.insert(rel, node);
        }
        for mut group in inodes.into_values().filter(|g| g.len() > 1) {
            group.sort();
            for rel in &group {
                if let Some(node) = entries.get_mut(rel) {
                    node.link_group = Some(group[0].clone());
                }
            }
        }
        Snapshot {
            root: dir.to_path_buf(),
            entries,
        }
    }

    /// The entry at `rel` (as bytes, `"."` for the root).
    /// The directory captured.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn get(&self, rel: impl AsRef<[u8]>) -> Option<&Node> {
        self.entries.get(rel.as_ref())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Relative paths in byte order.
    pub fn paths(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.keys().map(Vec::as_slice)
    }

    /// Every difference between `self` and `other`, one readable line each,
    /// naming the two sides with `labels`.
    pub fn diff(&self, other: &Snapshot, volatile: Volatile, labels: [&str; 2]) -> Vec<String> {
        let mut out = Vec::new();
        let mut left = self.entries.iter().peekable();
        let mut right = other.entries.iter().peekable();
        loop {
            match (left.peek(), right.peek()) {
                (None, None) => break,
                (Some((a, _)), Some((b, _))) if a == b => {
                    let (rel, x) = left.next().expect("peeked");
                    let (_, y) = right.next().expect("peeked");
                    let fields = self.node_diff(other, rel, x, y, volatile, labels);
                    if !fields.is_empty() {
                        out.push(format!("{}: {}", show_path(rel), fields.join("; ")));
                    }
                }
                (Some((a, _)), Some((b, _))) if a < b => {
                    out.push(only_in(labels[0], left.next().expect("peeked")));
                }
                (Some(_), None) => out.push(only_in(labels[0], left.next().expect("peeked"))),
                _ => out.push(only_in(labels[1], right.next().expect("peeked"))),
            }
        }
        out
    }

    fn node_diff(
        &self,
        other: &Snapshot,
        rel: &[u8],
        x: &Node,
        y: &Node,
        volatile: Volatile,
        labels: [&str; 2],
    ) -> Vec<String> {
        let mut fields = Vec::new();
        let [l, r] = labels;
        if x.kind != y.kind {
            fields.push(format!("type {:?} ({l}) vs {:?} ({r})", x.kind, y.kind));
            return fields;
        }
        if x.perm != y.perm {
            fields.push(format!("mode {:04o} ({l}) vs {:04o} ({r})", x.perm, y.perm));
        }
        // Nanoseconds only of files: a client sets the time of what it
        // creates otherwise (links, devices) only sometimes, and then the
        // seconds agree by luck while the nanoseconds do not.
        let nsec_differ = x.kind == Kind::File && x.mtime_nsec != y.mtime_nsec;
        if (x.mtime != y.mtime || nsec_differ) && !mtime_volatile(rel, x.kind, volatile) {
            fields.push(format!(
                "mtime {}.{:09} ({l}) vs {}.{:09} ({r})",
                x.mtime, x.mtime_nsec, y.mtime, y.mtime_nsec
            ));
        }
        if (x.uid, x.gid) != (y.uid, y.gid) {
            fields.push(format!(
                "owner {}:{} ({l}) vs {}:{} ({r})",
                x.uid, x.gid, y.uid, y.gid
            ));
        }
        if x.target != y.target {
            let show = |t: &Option<Vec<u8>>| show_path(t.as_deref().unwrap_or_default());
            fields.push(format!(
                "target \"{}\" ({l}) vs \"{}\" ({r})",
                show(&x.target),
                show(&y.target)
            ));
        }
        if x.rdev != y.rdev {
            fields.push(format!("device {:?} ({l}) vs {:?} ({r})", x.rdev, y.rdev));
        }
        if x.kind == Kind::File && (x.size != y.size || x.md4 != y.md4) {
            let at = first_difference(
                &self.root.join(as_path(rel)),
                &other.root.join(as_path(rel)),
            );
            fields.push(format!(
                "content differs: size {} ({l}) vs {} ({r}), first different byte at {at}",
                x.size, y.size
            ));
        }
        if x.link_group != y.link_group {
            let show = |g: &Option<Vec<u8>>| match g {
                Some(first) => format!("linked with {}", show_path(first)),
                None => "not hard-linked".to_string(),
            };
            fields.push(format!(
                "{} ({l}) vs {} ({r})",
                show(&x.link_group),
                show(&y.link_group)
            ));
        }
        fields
    }
}

/// Panics with a readable list of differences unless `a` and `b` describe
/// the same tree (every field, mtimes included).
pub fn assert_same(a: &Snapshot, b: &Snapshot) {
    let labels = ["left", "right"];
    let diffs = a.diff(b, Volatile::default(), labels);
    if !diffs.is_empty() {
        panic!(
            "trees differ (left {:?}, right {:?}):\n{}",
            a.root,
            b.root,
            render_differences(&diffs)
        );
    }
}

/// The first [`MAX_REPORTED_DIFFERENCES`] lines of `diffs`, indented, and a
/// count of the rest.
pub fn render_differences(diffs: &[String]) -> String {
    let mut text = String::new();
    for line in diffs.iter().take(MAX_REPORTED_DIFFERENCES) {
        let _ = writeln!(text, "  {line}");
    }
    if diffs.len() > MAX_REPORTED_DIFFERENCES {
        let _ = writeln!(
            text,
            "  ... and {} more",
            diffs.len() - MAX_REPORTED_DIFFERENCES
        );
    }
    text
}

fn only_in(label: &str, (rel, node): (&Vec<u8>, &Node)) -> String {
    format!("{}: only in {label} ({:?})", show_path(rel), node.kind)
}

fn mtime_volatile(rel: &[u8], kind: Kind, volatile: Volatile) -> bool {
    match kind {
        Kind::Dir if rel == b"." => volatile.root_mtime || volatile.dir_mtimes,
        Kind::Dir => volatile.dir_mtimes,
        Kind::Symlink => volatile.link_mtimes,
        _ => volatile.file_mtimes,
    }
}

fn push_children(path: &Path, rel: &[u8], pending: &mut Vec<(PathBuf, Vec<u8>)>) {
    let listing =
        std::fs::read_dir(path).unwrap_or_else(|e| panic!("snapshot: listing {path:?}: {e}"));
    for child in listing {
        let child = child.unwrap_or_else(|e| panic!("snapshot: listing {path:?}: {e}"));
        let name = child.file_name();
        let child_rel = if rel == b"." {
            name.as_bytes().to_vec()
        } else {
            [rel, b"/", name.as_bytes()].concat()
        };
        pending.push((child.path(), child_rel));
    }
}

fn node_of(path: &Path, meta: &std::fs::Metadata) -> Node {
    let file_type = meta.file_type();
    let kind = if file_type.is_symlink() {
        Kind::Symlink
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else if file_type.is_char_device() {
        Kind::CharDevice
    } else if file_type.is_block_device() {
        Kind::BlockDevice
    } else if file_type.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    };
    let device = matches!(kind, Kind::CharDevice | Kind::BlockDevice);
    Node {
        kind,
        perm: meta.mode() & 0o7777,
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        size: if matches!(kind, Kind::File | Kind::Symlink) {
            meta.size()
        } else {
            0
        },
        md4: (kind == Kind::File).then(|| md4_of(path)),
        target: (kind == Kind::Symlink).then(|| {
            let target =
                std::fs::read_link(path).unwrap_or_else(|e| panic!("readlink {path:?}: {e}"));
            target.as_os_str().as_bytes().to_vec()
        }),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: device.then(|| (libc::major(meta.rdev()), libc::minor(meta.rdev()))),
        link_group: None,
    }
}

fn md4_of(path: &Path) -> [u8; 16] {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("snapshot: opening {path:?}: {e}"));
    let mut hasher = Md4::new();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("snapshot: reading {path:?}: {e}"));
        if n == 0 {
            return hasher.finalize().into();
        }
        hasher.update(&buf[..n]);
    }
}

/// The offset of the first byte where two files differ (or where the
/// shorter one ends), to point a delta bug at its block.
fn first_difference(a: &Path, b: &Path) -> String {
    let (Ok(mut fa), Ok(mut fb)) = (File::open(a), File::open(b)) else {
        return "unknown (a file could not be opened)".to_string();
    };
    let (mut ba, mut bb) = (vec![0; READ_CHUNK], vec![0; READ_CHUNK]);
    let mut offset: u64 = 0;
    loop {
        let (Ok(na), Ok(nb)) = (read_full(&mut fa, &mut ba), read_full(&mut fb, &mut bb)) else {
            return "unknown (read error)".to_string();
        };
        let common = na.min(nb);
        if let Some(i) = ba[..common]
            .iter()
            .zip(&bb[..common])
            .position(|(x, y)| x != y)
        {
            return (offset + i as u64).to_string();
        }
        if na != nb || na == 0 {
            return (offset + common as u64).to_string();
        }
        offset += na as u64;
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn as_path(rel: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(rel))
}

/// A path for humans: printable ASCII as is, other bytes as `\xNN`.
pub fn show_path(rel: &[u8]) -> String {
    let mut text = String::new();
    for &byte in rel {
        if byte.is_ascii_graphic() || byte == b' ' {
            text.push(byte as char);
        } else {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}
