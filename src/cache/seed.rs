//! The checksum seed of a build: the same for every laptop pulling one
//! build on one day, so that identical requests are identical to the byte
//! and their deltas can be shared, yet not predictable from outside.
//!
//! Owns the secret behind it, `DIR/.upserv/seed`: [`SECRET_LEN`] random
//! bytes made at the first use, mode 0600, put in place by one hard link
//! so that two processes starting at once agree on one secret. A secret
//! that is damaged (wrong length), readable by others or unreadable is
//! replaced by a new one, with a warning; when even that fails the process
//! keeps its new secret in memory (the seed then differs between
//! processes, which costs sharing, never correctness).
//!
//! The seed is the first four bytes of SHA-256 over the secret, the build
//! name and the UTC day ([`SEED_PERIOD`]).

use sha2::digest::Digest;
use sha2::Sha256;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the secret.
pub(crate) const SECRET_LEN: usize = 32;

/// How long one seed lasts: a UTC day. A laptop learning the seed of today
/// learns nothing about tomorrow's.
pub const SEED_PERIOD: u64 = 24 * 60 * 60;

/// The secret of one builds directory.
pub(crate) struct SeedSecret {
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for SeedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedSecret(..)")
    }
}

impl SeedSecret {
    /// Reads the secret at `path`, or makes it when it is missing, damaged
    /// or exposed. Never fails: see the module comment.
    pub(crate) fn load_or_create(path: &Path) -> SeedSecret {
        match read_secret(path) {
            Ok(Some(secret)) => return SeedSecret { secret },
            Ok(None) => {}
            Err(why) => log::warn!("seed secret {}: {why}; making a new one", path.display()),
        }
        let secret = match random_secret() {
            Ok(s) => s,
            Err(e) => {
                // Without randomness the seed would be predictable: fall
                // back to the time and process, as rsync's own seeds are.
                log::warn!("no random bytes for the seed secret: {e}");
                fallback_secret()
            }
        };
        match install(path, &secret) {
            Ok(Some(theirs)) => SeedSecret { secret: theirs },
            Ok(None) => SeedSecret { secret },
            Err(e) => {
                log::warn!(
                    "cannot write the seed secret {}: {e}; builds get a seed of this process only",
                    path.display()
                );
                SeedSecret { secret }
            }
        }
    }

    /// The seed of `build` at `unix_secs`.
    pub(crate) fn seed(&self, build: &str, unix_secs: u64) -> u32 {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update((build.len() as u64).to_le_bytes());
        h.update(build.as_bytes());
        h.update((unix_secs / SEED_PERIOD).to_le_bytes());
        let d = h.finalize();
        // Zero would read as "no seed" to some code paths; never use it.
        u32::from_le_bytes([d[0], d[1], d[2], d[3]]).max(1)
    }
}

/// `Ok(None)`: there is none yet. `Err`: there is one we must not use.
fn read_secret(path: &Path) -> Result<Option<[u8; SECRET_LEN]>, String> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("unreadable ({e})")),
    };
    let meta = file.metadata().map_err(|e| format!("unreadable ({e})"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "mode {:o} lets others read it",
            meta.mode() & 0o777
        ));
    }
    let mut secret = [0u8; SECRET_LEN];
    let mut extra = [0u8; 1];
    file.read_exact(&mut secret)
        .map_err(|_| format!("damaged (shorter than {SECRET_LEN} bytes)"))?;
    match file.read(&mut extra) {
        Ok(0) => Ok(Some(secret)),
        Ok(_) => Err(format!("damaged (longer than {SECRET_LEN} bytes)")),
        Err(e) => Err(format!("unreadable ({e})")),
    }
}

fn random_secret() -> io::Result<[u8; SECRET_LEN]> {
    let mut secret = [0u8; SECRET_LEN];
    File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(secret)
}

fn fallback_secret() -> [u8; SECRET_LEN] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(now.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.finalize().into()
}

/// Puts `secret` at `path`: written to a scratch file (mode 0600 from its
/// creation), then linked to its name, so nobody ever reads half of it.
/// When another process linked its own first, returns that one instead. A
/// damaged file in the way is replaced by renaming over it.
fn install(path: &Path, secret: &[u8; SECRET_LEN]) -> io::Result<Option<[u8; SECRET_LEN]>> {
    let scratch = scratch_path(path);
    let written = write_scratch(&scratch, secret).and_then(|()| {
        match fs::hard_link(&scratch, path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_secret(path) {
                Ok(Some(theirs)) => Ok(Some(theirs)),
                // Still the damaged one: ours replaces it.
                _ => fs::rename(&scratch, path).map(|()| None),
            },
            Err(e) => Err(e),
        }
    });
    let _ = fs::remove_file(&scratch);
    written
}

fn write_scratch(scratch: &Path, secret: &[u8; SECRET_LEN]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(scratch)?;
    f.write_all(secret)?;
    f.sync_all()
}

/// A scratch name no other process or thread uses.
fn scratch_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn one_secret_per_directory_kept_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        let a = SeedSecret::load_or_create(&path);
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = SeedSecret::load_or_create(&path);
        assert_eq!(a.secret, b.secret);
        assert_eq!(a.seed("build-1", 100), b.seed("build-1", 200));
        // Other builds and other days get other seeds.
        assert_ne!(a.seed("build-1", 100), a.seed("build-2", 100));
        assert_ne!(a.seed("build-1", 100), a.seed("build-1", 100 + SEED_PERIOD));
        // Only the scratch files' owner ever sees them; none is left.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_or_exposed_secret_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        let first = SeedSecret::load_or_create(&path);
        fs::write(&path, b"short").unwrap();
        let second = SeedSecret::load_or_create(&path);
        assert_ne!(first.secret, second.secret);
        assert_eq!(fs::read(&path).unwrap(), second.secret);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let third = SeedSecret::load_or_create(&path);
        assert_ne!(second.secret, third.secret);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn racing_processes_agree_on_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        let secrets: Vec<[u8; SECRET_LEN]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SeedSecret::load_or_create(&path).secret))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.iter().all(|s| *s == secrets[0]));
    }
}
