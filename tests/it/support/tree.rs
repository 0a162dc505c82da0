//! Source trees for the tests, built in a temporary directory: files with
//! chosen content, modes, times and owners, directories, symlinks, hard
//! links, device nodes, FIFOs and sockets; a seeded random tree generator; and
//! "basis" copies with small edits for delta pulls.
//!
//! We run as root, so owners and device nodes are real. Everything is
//! deterministic for a given seed; nothing here reads the clock or /dev/urandom.

use std::cell::RefCell;
use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// A small, seeded pseudo-random generator (SplitMix64): reproducible trees
/// without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must not be zero.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.fill(&mut buf);
        buf
    }
}

/// A tree under construction, in a temporary directory removed on drop.
pub struct TestTree {
    _dir: TempDir,
    root: PathBuf,
    /// Directory times set so far: adding entries to a directory later
    /// changes its mtime, so [`TestTree::settle`] applies them again.
    dir_times: RefCell<Vec<(PathBuf, i64)>>,
}

impl Default for TestTree {
    fn default() -> TestTree {
        TestTree::new()
    }
}

/// Character or block device.
#[derive(Clone, Copy, Debug)]
pub enum Device {
    Char,
    Block,
}

impl TestTree {
    /// An empty tree; its root is a fresh directory with ordinary permissions.
    pub fn new() -> TestTree {
        let dir = tempfile::Builder::new()
            .prefix("tree-")
            .tempdir()
            .expect("creating a temporary directory for a test tree");
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).expect("creating the tree root");
        TestTree {
            _dir: dir,
            root,
            dir_times: RefCell::new(Vec::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of `rel` inside the tree.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// A regular file with `content`, creating missing parent directories.
    pub fn file(&self, rel: impl AsRef<Path>, content: &[u8]) -> Entry<'_> {
        let path = self.with_parent(rel.as_ref());
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
        self.entry(path)
    }

    /// A directory (and its missing parents).
    pub fn dir(&self, rel: impl AsRef<Path>) -> Entry<'_> {
        let path = self.path(rel);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {path:?}: {e}"));
        self.entry(path)
    }

    /// A symlink whose value is `target`, verbatim.
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> Entry<'_> {
        let path = self.with_parent(rel.as_ref());
        std::os::unix::fs::symlink(target, &path)
            .unwrap_or_else(|e| panic!("creating symlink {path:?}: {e}"));
        self.entry(path)
    }

    /// A hard link at `rel` to the existing entry `existing`.
    pub fn hard_link(&self, rel: impl AsRef<Path>, existing: impl AsRef<Path>) -> Entry<'_> {
        let path = self.with_parent(rel.as_ref());
        let original = self.path(existing);
        std::fs::hard_link(&original, &path)
            .unwrap_or_else(|e| panic!("linking {path:?} to {original:?}: {e}"));
        self.entry(path)
    }

    pub fn device(&self, rel: impl AsRef<Path>, kind: Device, major: u32, minor: u32) -> Entry<'_> {
        let file_type = match kind {
            Device::Char => libc::S_IFCHR,
            Device::Block => libc::S_IFBLK,
        };
        self.mknod(rel.as_ref(), file_type, libc::makedev(major, minor))
    }

    pub fn fifo(&self, rel: impl AsRef<Path>) -> Entry<'_> {
        self.mknod(rel.as_ref(), libc::S_IFIFO, 0)
    }

    /// A Unix socket inode; mknod makes one without binding, which keeps
    /// clear of the 108-byte limit on socket paths.
    pub fn socket(&self, rel: impl AsRef<Path>) -> Entry<'_> {
        self.mknod(rel.as_ref(), libc::S_IFSOCK, 0)
    }

    fn mknod(&self, rel: &Path, file_type: libc::mode_t, dev: libc::dev_t) -> Entry<'_> {
        let path = self.with_parent(rel);
        let c_path = c_path(&path);
        // SAFETY: a valid NUL-terminated path; mknod only reads it.
        let rc = unsafe { libc::mknod(c_path.as_ptr(), file_type | 0o644, dev) };
        if rc != 0 {
            panic!("mknod {path:?}: {}", std::io::Error::last_os_error());
        }
        self.entry(path)
    }

    fn with_parent(&self, rel: &Path) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {parent:?}: {e}"));
        }
        path
    }

    fn entry(&self, path: PathBuf) -> Entry<'_> {
        Entry { tree: self, path }
    }

    /// Gives directories times in the past, deepest first: the time
    /// recorded for them, or [`SETTLED_DIR_MTIME`] for those made just now
    /// (a test's own `tar -x` keeps the archive's times). Entries added
    /// after a directory's time was set then do not disturb it, and a pull
    /// that changes a directory always changes its time, even within the
    /// second the tree was made.
    pub fn settle(&self) {
        let recorded = self.dir_times.borrow().clone();
        let recent = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
        let mut times: Vec<(PathBuf, i64)> = all_dirs(self.root())
            .into_iter()
            .filter(|d| !recorded.iter().any(|(p, _)| p == d))
            .filter(|d| {
                std::fs::symlink_metadata(d)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t > recent)
            })
            .map(|d| (d, SETTLED_DIR_MTIME))
            .collect();
        times.extend(recorded);
        times.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mtime) in times {
            set_mtime(&path, mtime);
        }
    }

    /// Fills the tree with random entries as `spec` describes, reproducibly
    /// for a given `seed`.
    pub fn random(&self, spec: &RandomSpec, seed: u64) {
        let mut gen = Generator {
            tree: self,
            spec,
            rng: Rng::new(seed),
            files: Vec::new(),
            dirs: vec![PathBuf::new()],
        };
        gen.fill_dir(Path::new(""), 0);
        gen.add_one_of_each();
        gen.add_big_files();
        gen.dress_dir(Path::new(""));
        self.settle();
    }
}

/// An entry just created; its setters apply at once and can be chained.
pub struct Entry<'a> {
    tree: &'a TestTree,
    path: PathBuf,
}

impl Entry<'_> {
    /// Permission bits, including setuid/setgid/sticky. Not for symlinks.
    pub fn mode(self, mode: u32) -> Self {
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {:?}: {e}", self.path));
        self
    }

    /// Modification time in seconds since the epoch (symlinks included).
    pub fn mtime(self, secs: i64) -> Self {
        set_mtime(&self.path, secs);
        if self.path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            self.tree
                .dir_times
                .borrow_mut()
                .push((self.path.clone(), secs));
        }
        self
    }

    /// Modification time with nanoseconds (files and symlinks).
    pub fn mtime_ns(self, secs: i64, nsec: i64) -> Self {
        set_mtime_ns(&self.path, secs, nsec);
        self
    }

    /// Owner and group (symlinks included). chown clears setuid and setgid
    /// bits, so the mode is put back afterwards.
    pub fn owner(self, uid: u32, gid: u32) -> Self {
        let meta = self
            .path
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("lstat {:?}: {e}", self.path));
        std::os::unix::fs::lchown(&self.path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {:?}: {e}", self.path));
        if meta.file_type().is_symlink() {
            self
        } else {
            self.mode(meta.permissions().mode() & 0o7777)
        }
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes())
        .unwrap_or_else(|_| panic!("path {path:?} contains a NUL byte"))
}

/// Sets the mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64) {
    set_mtime_ns(path, secs, 0);
}

/// Sets the mtime (and atime) of `path` to `secs` and `nsec` nanoseconds
/// without following a symlink.
pub fn set_mtime_ns(path: &Path, secs: i64, nsec: i64) {
    let time = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nsec as _,
    };
    set_times(path, [time, time], "mtime");
}

/// Sets the access time of `path` alone to `secs`, without following a
/// symlink.
pub fn set_atime(path: &Path, secs: i64) {
    let atime = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let keep = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    set_times(path, [atime, keep], "atime");
}

/// utimensat(2) on `path` with `times` (access, modification), not
/// following a symlink; `what` names the time set, for the panic.
fn set_times(path: &Path, times: [libc::timespec; 2], what: &str) {
    let c_path = c_path(path);
    // SAFETY: valid path and a two-element timespec array, as utimensat wants.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        panic!(
            "setting {what} of {path:?}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// What the random generator puts in a tree.
#[derive(Clone, Debug)]
pub struct RandomSpec {
    /// Levels of subdirectories below the root.
    pub depth: u32,
    /// Most entries in one directory.
    pub fan_out: u32,
    /// Largest ordinary file.
    pub max_size: u64,
    /// How many big files to scatter through the tree.
    pub big_files: u32,
    /// Largest big file; each is between half this and this.
    pub big_size: u64,
    /// Names with spaces, UTF-8, control characters and non-UTF-8 bytes.
    pub odd_names: bool,
    /// Symlinks (relative, absolute, dangling) and hard links.
    pub links: bool,
    /// Device nodes, FIFOs and sockets.
    pub specials: bool,
    /// Owners other than root, with and without names on this host.
    pub owners: bool,
    /// mtimes before 1970 and after 2038 (32-bit overflow at protocol < 30).
    pub odd_times: bool,
}

impl RandomSpec {
    /// A tree of a few dozen entries and a few MiB: quick enough to pull
    /// eight times in a test.
    pub const SMALL: RandomSpec = RandomSpec {
        depth: 3,
        fan_out: 6,
        max_size: 48 * 1024,
        big_files: 2,
        big_size: 3 * 1024 * 1024,
        odd_names: true,
        links: true,
        specials: true,
        owners: true,
        odd_times: true,
    };
}

impl Default for RandomSpec {
    fn default() -> RandomSpec {
        RandomSpec::SMALL
    }
}

/// Name stems, as bytes so that non-UTF-8 ones fit in.
const PLAIN_NAMES: &[&[u8]] = &[b"file", b"data.bin", b"notes.txt", b"README", b"a", b"Zeta"];
const ODD_NAMES: &[&[u8]] = &[
    b"with space",
    b"trailing space ",
    b"caf\xc3\xa9",
    b"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    b"odd\xff\xfebytes",
    b"tab\there",
    b"new\nline",
    b"back\\slash",
    b"#hash",
    b"-dash",
    b".hidden",
    b"quote'\"",
    b"glob*?[x]",
    b"long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name",
];
const FILE_MODES: &[u32] = &[0o644, 0o644, 0o600, 0o755, 0o444, 0o640, 0o4755, 0o2755];
const DIR_MODES: &[u32] = &[0o755, 0o755, 0o700, 0o775, 0o2775, 0o1777, 0o555];
/// root, daemon, bin, nobody/nogroup, and ids with no name on this host.
const OWNERS: &[(u32, u32)] = &[(0, 0), (1, 1), (2, 2), (65534, 65534), (4242, 4343)];
/// Sizes around rsync's 700-byte minimum block and power-of-two edges.
const EDGE_SIZES: &[u64] = &[
    0, 1, 699, 700, 701, 1023, 1024, 1025, 4096, 8191, 8192, 32768,
];
/// 2001-09-09 .. 2023-11-14: ordinary times.
const NORMAL_TIMES: (i64, i64) = (1_000_000_000, 1_700_000_000);
const ODD_TIMES: &[i64] = &[-31_536_000, 0, 2_147_483_647, 2_147_484_647, 4_000_000_000];
const SYMLINK_TARGETS: &[&[u8]] = &[
    b"/etc/hostname",
    b"../",
    b"dangling-target",
    b"..",
    b".",
    b"nested/../target with space",
    b"odd\xfftarget",
];
const WORDS: &[&[u8]] = &[
    b"rsync ",
    b"build ",
    b"laptop ",
    b"olpc ",
    b"server\n",
    b"the ",
    b"block ",
];

struct Generator<'a> {
    tree: &'a TestTree,
    spec: &'a RandomSpec,
    rng: Rng,
    /// Regular files made so far, as hard-link targets.
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Generator<'_> {
    /// Fills `dir` with up to `fan_out` entries; above the deepest level one
    /// or two of them are subdirectories, so every tree has some depth.
    fn fill_dir(&mut self, dir: &Path, level: u32) {
        let count = 1 + self.rng.below(u64::from(self.spec.fan_out.max(1)));
        let subdirs = if level < self.spec.depth {
            1 + self.rng.below(2)
        } else {
            0
        };
        for index in 0..count + subdirs {
            let rel = dir.join(self.name(index));
            let roll = self.rng.below(100);
            if index < subdirs {
                self.tree.dir(&rel);
                self.dirs.push(rel.clone());
                self.fill_dir(&rel, level + 1);
                self.dress_dir(&rel);
            } else if self.spec.links && roll < 10 {
                self.add_symlink(&rel);
            } else if self.spec.links && roll < 15 && !self.files.is_empty() {
                let existing = self.rng.pick(&self.files).clone();
                self.tree.hard_link(&rel, existing);
            } else if self.spec.specials && roll < 20 {
                self.add_special(&rel);
            } else {
                let size = self.file_size();
                self.add_file(&rel, size);
            }
        }
    }

    fn name(&mut self, index: u64) -> OsString {
        let stem = if self.spec.odd_names && self.rng.chance(40) {
            *self.rng.pick(ODD_NAMES)
        } else {
            *self.rng.pick(PLAIN_NAMES)
        };
        let mut name = stem.to_vec();
        name.extend_from_slice(format!("-{index}").as_bytes());
        OsString::from_vec(name)
    }

    fn file_size(&mut self) -> u64 {
        if self.rng.chance(40) {
            *self.rng.pick(EDGE_SIZES)
        } else {
            self.rng.below(self.spec.max_size + 1)
        }
    }

    fn add_file(&mut self, rel: &Path, size: u64) {
        let content = self.content(size);
        let entry = self.tree.file(rel, &content);
        let mode = *self.rng.pick(FILE_MODES);
        let entry = self.dress(entry).mode(mode);
        let mtime = self.mtime();
        entry.mtime(mtime);
        self.files.push(rel.to_path_buf());
    }

    /// Random bytes, text (compresses well), zeros (many equal blocks), or a
    /// short period repeated (equal weak sums at many offsets).
    fn content(&mut self, size: u64) -> Vec<u8> {
        let len = usize::try_from(size).expect("test file sizes fit in memory");
        match self.rng.below(8) {
            0 => vec![0; len],
            1 => self.rng.bytes(97).into_iter().cycle().take(len).collect(),
            2 | 3 => {
                let mut text = Vec::with_capacity(len);
                while text.len() < len {
                    let word = *self.rng.pick(WORDS);
                    text.extend_from_slice(word);
                }
                text.truncate(len);
                text
            }
            _ => self.rng.bytes(len),
        }
    }

    fn add_symlink(&mut self, rel: &Path) {
        let target: Vec<u8> = if !self.files.is_empty() && self.rng.chance(40) {
            let file = self.rng.pick(&self.files);
            let mut t = b"/".to_vec();
            t.extend_from_slice(file.as_os_str().as_bytes());
            // Relative to the tree root, as a path from the link's directory.
            let depth = rel.components().count().saturating_sub(1);
            let mut relative = b"../".repeat(depth);
            relative.extend_from_slice(&t[1..]);
            relative
        } else {
            self.rng.pick(SYMLINK_TARGETS).to_vec()
        };
        let entry = self.tree.symlink(rel, OsStr::from_bytes(&target));
        let entry = self.dress(entry);
        let mtime = self.mtime();
        entry.mtime(mtime);
    }

    fn add_special(&mut self, rel: &Path) {
        let entry = match self.rng.below(4) {
            0 => self.tree.device(rel, Device::Char, 1, 3),
            1 => self.tree.device(rel, Device::Block, 259, 65_537),
            2 => self.tree.fifo(rel),
            _ => self.tree.socket(rel),
        };
        let entry = self.dress(entry);
        let mtime = self.mtime();
        entry.mtime(mtime);
    }

    fn dress_dir(&mut self, rel: &Path) {
        let mode = *self.rng.pick(DIR_MODES);
        let entry = self.tree.entry(self.tree.path(rel));
        let entry = self.dress(entry).mode(mode);
        let mtime = self.mtime();
        entry.mtime(mtime);
    }

    /// Gives an entry a random owner when the spec asks for owners.
    fn dress<'t>(&mut self, entry: Entry<'t>) -> Entry<'t> {
        if self.spec.owners && self.rng.chance(50) {
            let (uid, gid) = *self.rng.pick(OWNERS);
            entry.owner(uid, gid)
        } else {
            entry
        }
    }

    fn mtime(&mut self) -> i64 {
        if self.spec.odd_times && self.rng.chance(5) {
            *self.rng.pick(ODD_TIMES)
        } else {
            let (low, high) = NORMAL_TIMES;
            low + self.rng.below((high - low) as u64) as i64
        }
    }

    /// Makes sure every feature the spec asks for occurs at least once,
    /// whatever the dice said: each odd name and odd time, each kind of
    /// special file, and a hard-link group spanning directories.
    fn add_one_of_each(&mut self) {
        let mut index = 0;
        let mut next_rel = |gen: &mut Self, stem: &[u8]| {
            index += 1;
            let dir = gen.rng.pick(&gen.dirs).clone();
            let mut name = stem.to_vec();
            name.extend_from_slice(format!("-x{index}").as_bytes());
            dir.join(OsStr::from_bytes(&name))
        };
        if self.spec.odd_names {
            for stem in ODD_NAMES {
                let rel = next_rel(self, stem);
                let size = self.file_size();
                self.add_file(&rel, size);
            }
        }
        if self.spec.odd_times {
            for &mtime in ODD_TIMES {
                let rel = next_rel(self, b"odd-time");
                self.tree.file(&rel, b"time").mtime(mtime);
            }
        }
        if self.spec.specials {
            let rel = next_rel(self, b"tty");
            self.tree.device(&rel, Device::Char, 4, 64);
            let rel = next_rel(self, b"disk");
            self.tree.device(&rel, Device::Block, 8, 1);
            let rel = next_rel(self, b"fifo");
            self.tree.fifo(&rel);
            let rel = next_rel(self, b"socket");
            self.tree.socket(&rel);
        }
        if self.spec.links {
            let first = next_rel(self, b"linked");
            self.add_file(&first, 5000);
            for _ in 0..2 {
                let rel = next_rel(self, b"linked");
                self.tree.hard_link(&rel, &first);
            }
            for target in SYMLINK_TARGETS {
                let rel = next_rel(self, b"symlink");
                self.tree.symlink(&rel, OsStr::from_bytes(target));
            }
        }
    }

    fn add_big_files(&mut self) {
        for index in 0..self.spec.big_files {
            let dir = self.rng.pick(&self.dirs).clone();
            let rel = dir.join(format!("big-{index}.img"));
            let half = self.spec.big_size / 2;
            let size = half + self.rng.below(self.spec.big_size - half + 1);
            self.add_file(&rel, size);
        }
    }
}

/// A basis for a delta pull: an exact copy of `source` at `dest`
/// (modes, owners, times, links and devices preserved).
pub fn basis_copy(source: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap_or_else(|e| panic!("creating {dest:?}: {e}"));
    let mut from = source.as_os_str().to_owned();
    from.push("/.");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(dest)
        .status()
        .expect("running cp -a");
    assert!(status.success(), "cp -a {from:?} {dest:?} failed: {status}");
}

/// Seed of the edits [`basis_edited`] makes, fixed so both servers' pulls
/// start from identical bases.
const BASIS_SEED: u64 = 0x0BA5_15ED;
/// One scattered edit per this many bytes of a file.
const BYTES_PER_EDIT: usize = 64 * 1024;
/// Largest single scattered edit.
const MAX_EDIT_LEN: u64 = 32;

/// A basis for a delta pull: a copy of `source` with small edits. Regular
/// files are left alone, touched, edited in scattered places, shifted by an
/// insertion, truncated, extended, replaced, or removed; two files that the
/// source lacks are added. Edited files get an older mtime so that rsync's
/// quick check does not skip them.
pub fn basis_edited(source: &Path, dest: &Path) {
    basis_copy(source, dest);
    let mut rng = Rng::new(BASIS_SEED);
    for file in regular_files(dest) {
        edit_file(&file, &mut rng);
    }
    for index in 0..2 {
        let extra = dest.join(format!("basis-only-{index}"));
        std::fs::write(&extra, rng.bytes(1000)).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
    }
}

fn edit_file(path: &Path, rng: &mut Rng) {
    let mut data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
    let meta = path.symlink_metadata().expect("lstat of a file just read");
    let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
    match rng.below(20) {
        0..=3 => return,
        4 | 5 => {}
        6..=12 => scatter_edits(&mut data, rng),
        13 | 14 => {
            let at = rng.below(data.len() as u64 + 1) as usize;
            let len = 1 + rng.below(100) as usize;
            let insert = rng.bytes(len);
            data.splice(at..at, insert);
        }
        15 => data.truncate(rng.below(data.len() as u64 + 1) as usize),
        16 => {
            let len = 1 + rng.below(3000) as usize;
            data.extend(rng.bytes(len));
        }
        17 => data = rng.bytes(data.len()),
        _ => {
            std::fs::remove_file(path).unwrap_or_else(|e| panic!("removing {path:?}: {e}"));
            return;
        }
    }
    std::fs::write(path, &data).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
    set_mtime(path, mtime - 1000);
}

fn scatter_edits(data: &mut [u8], rng: &mut Rng) {
    if data.is_empty() {
        return;
    }
    for _ in 0..1 + data.len() / BYTES_PER_EDIT {
        let at = rng.below(data.len() as u64) as usize;
        let len = (1 + rng.below(MAX_EDIT_LEN) as usize).min(data.len() - at);
        rng.fill(&mut data[at..at + len]);
    }
}

/// Regular files under `dir`, in a stable order.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {dir:?}: {e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("listing {dir:?}: {e}"));
            let kind = entry.file_type().expect("file type of a listed entry");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// The time [`TestTree::settle`] gives directories that have none of their own.
pub const SETTLED_DIR_MTIME: i64 = 1_650_000_000;

/// Every directory under `root` (itself included), not following symlinks.
fn all_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}
/// A file of `len` zero bytes, made sparse so that big ones cost no disk.
pub fn sparse_file(path: &Path, len: u64) {
    let f = std::fs::File::create(path).expect("creating a sparse file");
    f.set_len(len).expect("sizing the sparse file");
}

/// Every file under `dir` whose content contains `marker`.
pub fn files_containing(dir: &Path, marker: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&path, marker));
        } else if meta.is_file() {
            let mut content = Vec::new();
            if std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut content))
                .is_ok()
                && content.windows(marker.len()).any(|w| w == marker)
            {
                found.push(path);
            }
        }
    }
    found
}
