//! What the fuzz targets share: a connection whose client side is a byte
//! string, a small module tree and the daemon state that serves it, a
//! scratch directory that disappears when the fuzzer exits, and a counting
//! allocator that bounds the heap one connection may take.
//!
//! Everything here is set up once per process and reused by every run of a
//! target, so a run costs only the code under test. It must not hide
//! failures: any setup problem panics at once (a fuzzer that cannot start is
//! a broken build, not a finding), and nothing here catches panics.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::{self, File};
use std::io::{Seek, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use upserv::config::parse_config_str;
use upserv::daemon::Server;
use upserv::protocol::io::Conn;

/// The module every session target asks for.
pub const MODULE: &str = "m";
/// A module over the same tree that asks for a login.
pub const AUTH_MODULE: &str = "s";
/// Its secrets: a user and a group, so both lookups run.
const SECRETS: &str = "alice:opensesame\n@wheel:grouppass\n";
/// The address sessions appear to come from.
pub const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Length of the tree's larger file: several blocks at any block length a
/// generator picks, small enough to send in well under a millisecond.
const BIG_FILE_LEN: usize = 8 * 1024;

/// Most heap one fuzzed connection may hold at once, above what it found
/// allocated: the connection's buffers, a file's block sums (capped by
/// `sender::MAX_SUM_BYTES`, 32 MiB) and their index, the matcher's window
/// of two blocks of at most 8 MiB, the deflater and the file list. Memory
/// per connection must stay bounded whatever the client sends.
pub const SESSION_HEAP_LIMIT: usize = 128 << 20;

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// The system allocator, counting the bytes held and their high-water mark
/// so a target can check how much heap one run took.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
            count_alloc(new_size);
        }
        new
    }
}

fn count_alloc(size: usize) {
    let held = HELD.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the most heap it held at once beyond what was held
/// before. Runs are single-threaded, so nothing else moves the counters.
pub fn heap_used_by(f: impl FnOnce()) -> usize {
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}

/// Serves one connection whose client sent `input`, and fails if it held
/// more than [`SESSION_HEAP_LIMIT`] of heap at any moment.
pub fn serve_bounded(input: &[u8]) {
    let used = heap_used_by(|| {
        let mut conn = conn_from(input);
        let _ = upserv::daemon::session::run(server(), &mut conn, Some(PEER));
    });
    assert!(
        used <= SESSION_HEAP_LIMIT,
        "one connection held {used} bytes of heap (limit {SESSION_HEAP_LIMIT})"
    );
}
static SERVER: OnceLock<Server> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Where scratch directories go: `UPSERV_FUZZ_TMP`, else memory-backed
/// `/dev/shm` (the unpack target creates and removes a tree per run, which
/// on a busy disk costs a hundred times more), else the temp directory.
fn scratch_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPSERV_FUZZ_TMP") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// A directory of this process's own, removed when the process exits
/// normally (libFuzzer ends a timed run with `exit`).
pub fn scratch() -> &'static Path {
    SCRATCH.get_or_init(|| {
        let base = scratch_base();
        let dir = base.join(format!("upserv-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
        // SAFETY: registering a plain function with no arguments.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

/// Deterministic bytes that compress a little and match in places, so
/// delta and deflate paths both see work.
fn tree_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if i % 512 < 128 {
                b"upserv "[i % 7]
            } else {
                state as u8
            }
        })
        .collect()
}

/// The module tree, in sorted file-list order: `.`, `big`, `dir`,
/// `dir/.rsync-filter`, `dir/hide.secret` (excluded by the module),
/// `dir/x`, `empty`, `link`, `small`.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("dir")).expect("create the module tree");
    fs::write(root.join("big"), tree_bytes(BIG_FILE_LEN)).expect("write big");
    fs::write(root.join("small"), b"a small file\n").expect("write small");
    fs::write(root.join("empty"), b"").expect("write empty");
    fs::write(root.join("dir/x"), tree_bytes(1500)).expect("write dir/x");
    fs::write(root.join("dir/.rsync-filter"), b"- *.o\n+ x\n").expect("write filter");
    fs::write(root.join("dir/hide.secret"), b"not for clients\n").expect("write secret");
    std::os::unix::fs::symlink("small", root.join("link")).expect("make link");
}

/// A daemon with two static modules over the tree: `m`, open to everyone,
/// and `s`, behind a login; with a MOTD, and without a build cache (fetching from an upstream is not
/// fuzzed here). Built from configuration text through the public
/// constructors, as `upserv daemon` builds it.
pub fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let root = scratch().join("module");
        make_tree(&root);
        let motd = scratch().join("motd");
        fs::write(&motd, "welcome\n").expect("write the motd");
        let secrets = scratch().join("secrets");
        fs::write(&secrets, SECRETS).expect("write the secrets file");
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600))
            .expect("make the secrets file private");
        let text = format!(
            "motd file = {motd}\n\
             [{MODULE}]\npath = {root}\ncomment = fuzzed\nfilter = - *.secret\n\
             [{AUTH_MODULE}]\npath = {root}\nauth users = alice, bob:deny, @wheel:ro\n\
             secrets file = {secrets}\n",
            motd = motd.display(),
            root = root.display(),
            secrets = secrets.display(),
        );
        let (settings, _) = parse_config_str(&text, &scratch().join("fuzz.conf"))
            .expect("the fuzz daemon's configuration");
        Server::new(&settings, None).expect("the fuzz daemon")
    })
}

/// The module's directory on disk (where per-directory merge files are).
pub fn module_root() -> &'static Path {
    &server().modules[0].path
}

/// A connection whose client has sent exactly `input` and then closed its
/// side, and which writes into `/dev/null`. The input sits in a memory file,
/// so it reads like a socket that delivers everything at once, and no
/// helper thread is needed.
pub fn conn_from(input: &[u8]) -> Conn {
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor is ours.
    let fd = unsafe { libc::memfd_create(c"upserv-fuzz-input".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(input).expect("fill the input memfd");
    file.rewind().expect("rewind the input memfd");
    let sink = fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null");
    Conn::new(OwnedFd::from(file), OwnedFd::from(sink)).expect("set up the connection")
}

/// Splits `data` at every `sep`, borrowing (the targets' way to turn one
/// byte string into a list of arguments, rules or names).
pub fn split(data: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    data.split(move |&b| b == sep)
}
