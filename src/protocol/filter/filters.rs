//! All the filtering of one transfer: the daemon's list and the client's,
//! the transfer root names are relative to, and the per-directory merge
//! files entered and left as the tree is walked (see the module
//! documentation of [`super`] for the order of calls).

use std::path::PathBuf;

use super::files;
use super::list::{Files, FilterList};
use super::{FilterError, Verdict};

/// Proof of one [`Filters::push_dir`], to hand back to
/// [`Filters::pop_dir`].
#[derive(Debug)]
#[must_use = "every pushed directory must be popped"]
pub struct DirToken {
    depth: u32,
}

/// All the filtering of one transfer: the daemon's rules, checked first and
/// hiding what they exclude, then the client's.
#[derive(Debug)]
pub struct Filters {
    module_root: PathBuf,
    daemon: FilterList,
    client: FilterList,
    transfer_root: Vec<u8>,
    depth: u32,
}

impl Filters {
    /// `module_root` is the module's directory on disk, where merge files
    /// are looked for.
    pub fn new(module_root: impl Into<PathBuf>, daemon: FilterList, client: FilterList) -> Self {
        Filters {
            module_root: module_root.into(),
            daemon,
            client,
            transfer_root: Vec::new(),
            depth: 0,
        }
    }

    /// Sets the module-relative directory that names are relative to (see
    /// the module documentation); `""` is the module root.
    pub fn set_transfer_root(&mut self, dir: &[u8]) {
        self.daemon.set_transfer_root(dir);
        self.client.set_transfer_root(dir);
        self.transfer_root = files::resolve(b"", dir);
    }

    /// With `--from0`, rsync reads per-directory merge files as
    /// NUL-separated rather than line-separated.
    pub(crate) fn set_nul_separated_merge_files(&mut self, on: bool) {
        self.daemon.set_nul_lines(on);
        self.client.set_nul_lines(on);
    }

    /// Whether `name` stays out of the file list (rsync's check with all
    /// filters): the daemon's rules, then the client's.
    pub fn is_excluded(&self, name: &[u8], is_dir: bool) -> bool {
        self.is_daemon_excluded(name, is_dir) || self.client.check(name, is_dir) == Verdict::Exclude
    }

    /// Whether the daemon's rules hide `name`; such names are treated as
    /// nonexistent.
    pub fn is_daemon_excluded(&self, name: &[u8], is_dir: bool) -> bool {
        self.daemon.check(name, is_dir) == Verdict::Exclude
    }

    /// Enters directory `dir` (named like an entry, `""` or `"."` for the
    /// transfer root): reads its per-directory merge files. An error ends
    /// the transfer.
    pub fn push_dir(&mut self, dir: &[u8]) -> Result<DirToken, FilterError> {
        let rel = files::resolve(&self.transfer_root, dir);
        self.depth += 1;
        let daemon_files = Files::Module {
            root: &self.module_root,
            hide: None,
        };
        if let Err(e) = self.daemon.push_dir(&rel, daemon_files) {
            self.daemon.pop_dir();
            self.depth -= 1;
            return Err(e);
        }
        let client_files = Files::Module {
            root: &self.module_root,
            hide: (!self.daemon.is_empty()).then_some(&self.daemon),
        };
        if let Err(e) = self.client.push_dir(&rel, client_files) {
            self.client.pop_dir();
            self.daemon.pop_dir();
            self.depth -= 1;
            return Err(e);
        }
        Ok(DirToken { depth: self.depth })
    }

    /// Leaves the directory `token` was given for (and any entered after it
    /// and not left, which would be a caller bug).
    pub fn pop_dir(&mut self, token: DirToken) {
        debug_assert_eq!(token.depth, self.depth, "directories popped out of order");
        while self.depth >= token.depth && self.depth > 0 {
            self.client.pop_dir();
            self.daemon.pop_dir();
            self.depth -= 1;
        }
    }
}
