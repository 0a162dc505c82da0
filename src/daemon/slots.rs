//! Connection slots for `max connections`: how many connections use one
//! module (or the whole server) at once.
//!
//! The daemon counts in memory. In `serve` mode every connection is its
//! own process, so slots are byte-range locks in files under
//! `BUILDS/.upserv/connections/`, as rsyncd's lock file does: a process
//! holds slot `i` by locking bytes `4i..4i+4`, and the kernel frees it when
//! the process ends, however it ends.
//!
//! Must not decide limits or what a refusal says; it only counts.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key under which the whole server's connections are counted; no
/// module name can be spelled like this in a lock file name.
pub(crate) const SERVER_KEY: &str = "@server";
/// Bytes per slot in a lock file (rsyncd uses the same).
const SLOT_BYTES: i64 = 4;

pub struct Slots {
    mode: Mode,
}

enum Mode {
    InProcess(Mutex<HashMap<String, u32>>),
    LockFiles(PathBuf),
}

/// A held slot; dropping it frees the slot.
pub(crate) struct SlotGuard {
    /// `None` when there was no limit, so nothing was taken.
    _held: Option<Held>,
}

impl SlotGuard {
    /// A guard that holds nothing: for no limit, or when counting failed.
    pub(crate) fn unlimited() -> SlotGuard {
        SlotGuard { _held: None }
    }
}

enum Held {
    Counted {
        slots: Arc<Slots>,
        key: String,
    },
    /// The open lock file: closing it frees the slot.
    Locked {
        _file: File,
    },
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Held::Counted { slots, key } = self {
            if let Mode::InProcess(counts) = &slots.mode {
                let mut counts = counts.lock();
                if let Some(n) = counts.get_mut(key.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(key.as_str());
                    }
                }
            }
        }
    }
}

impl Slots {
    /// Counting in this process (the daemon).
    pub(crate) fn in_process() -> Arc<Slots> {
        Arc::new(Slots {
            mode: Mode::InProcess(Mutex::new(HashMap::new())),
        })
    }

    /// Counting across processes with lock files in `dir` (serve mode).
    pub fn lock_files(dir: &Path) -> Arc<Slots> {
        Arc::new(Slots {
            mode: Mode::LockFiles(dir.to_path_buf()),
        })
    }

    /// Takes one of `max` slots of `key`; `Ok(None)` when all are taken.
    /// `max == 0` means no limit (and takes nothing).
    pub(crate) fn claim(self: &Arc<Self>, key: &str, max: u32) -> io::Result<Option<SlotGuard>> {
        if max == 0 {
            return Ok(Some(SlotGuard::unlimited()));
        }
        match &self.mode {
            Mode::InProcess(counts) => {
                let mut counts = counts.lock();
                let n = counts.entry(key.to_string()).or_insert(0);
                if *n >= max {
                    return Ok(None);
                }
                *n += 1;
                Ok(Some(SlotGuard {
                    _held: Some(Held::Counted {
                        slots: Arc::clone(self),
                        key: key.to_string(),
                    }),
                }))
            }
            Mode::LockFiles(dir) => {
                Ok(
                    lock_a_slot(&dir.join(file_name(key)), max)?.map(|f| SlotGuard {
                        _held: Some(Held::Locked { _file: f }),
                    }),
                )
            }
        }
    }
}

/// A file name for `key`: plain names as they are, anything else in hex.
fn file_name(key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-@".contains(&b));
    if plain {
        format!("{key}.lock")
    } else {
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        format!("%{hex}.lock")
    }
}

fn lock_a_slot(path: &Path, max: u32) -> io::Result<Option<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    for i in 0..i64::from(max) {
        // SAFETY: flock is plain data; fcntl reads it.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as _;
        lock.l_whence = libc::SEEK_SET as _;
        lock.l_start = (i * SLOT_BYTES) as _;
        lock.l_len = SLOT_BYTES as _;
        // SAFETY: F_SETLK with a valid flock on a descriptor we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
            return Ok(Some(file));
        }
        let err = io::Error::last_os_error();
        let busy = matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES));
        if !busy {
            return Err(err);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_slots_count_and_free() {
        let slots = Slots::in_process();
        let a = slots.claim("m", 2).unwrap().unwrap();
        let _b = slots.claim("m", 2).unwrap().unwrap();
        assert!(slots.claim("m", 2).unwrap().is_none());
        assert!(slots.claim("other", 2).unwrap().is_some());
        drop(a);
        assert!(slots.claim("m", 2).unwrap().is_some());
        assert!(slots.claim("m", 0).unwrap().is_some());
    }

    #[test]
    fn lock_file_slots_are_held_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("m"));
        let slots = Slots::lock_files(dir.path());
        // POSIX locks do not conflict within one process, so the other
        // holder is a child (python's lockf is fcntl's F_SETLK) that locks
        // slot 0 and waits for its stdin to close.
        let spawned = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import fcntl,sys\n\
                 f=open(sys.argv[1],'a+')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB, 4, 0)\n\
                 print('held', flush=True)\n\
                 sys.stdin.read()\n",
            )
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut holder) = spawned else {
            eprintln!("python3 is missing: skipping the cross-process lock test");
            return;
        };
        let mut out = holder.stdout.take().unwrap();
        let mut buf = [0u8; 5];
        std::io::Read::read_exact(&mut out, &mut buf).unwrap();
        assert_eq!(&buf, b"held\n");
        assert!(slots.claim("m", 1).unwrap().is_none());
        let guard = slots.claim("m", 2).unwrap();
        assert!(guard.is_some());
        drop(holder.stdin.take());
        holder.wait().unwrap();
    }

    #[test]
    fn odd_keys_become_hex_file_names() {
        assert_eq!(file_name("build-1"), "build-1.lock");
        assert_eq!(file_name(SERVER_KEY), "@server.lock");
        assert_eq!(file_name("a b"), "%612062.lock");
        assert_eq!(file_name(".x"), "%2e78.lock");
    }
}
