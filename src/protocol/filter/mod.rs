//! Filter rules: which names the sender leaves out of the file list.
//!
//! Owns rsync's include/exclude machinery for a sending daemon (exclude.c):
//! the client's rules as they arrive on the wire, the daemon's own rules from
//! the module configuration, the per-directory merge files (`-F`, `:C`, …)
//! read while the tree is walked, and the check of each name. Newer clients
//! (3.2.5 and later) verify the list they receive against their own rules,
//! so every decision here follows rsync's to the byte.
//!
//! It must not walk directories, stat files or talk to the peer: the
//! file-list builder does that and asks [`Filters`] about each name.
//!
//! # What the file-list builder passes
//!
//! Names are byte strings relative to the *transfer root*: the directory the
//! sender works from for the current top-level argument, which the builder
//! announces with [`Filters::set_transfer_root`] as a module-relative path
//! (`""` for the module root). Without `--relative`, a request for
//! `mod/a/b` has transfer root `a` and names `b`, `b/x`, …; a request for
//! `mod/a/b/` has transfer root `a/b` and names `x`, `sub`, `sub/y`, … With
//! `--relative`, the transfer root is the module root (or the part before a
//! `/./`) and names are the whole remaining path, `a/b`, `a/b/x`, … Names
//! never start with `./`, never end with `/` and have no empty, `.` or `..`
//! components. `is_dir` tells whether the entry is sent as a directory.
//!
//! The order of calls, as flist.c makes them:
//! - A top-level argument that is not a "dot dir" (`mod/a/b/`, `.`, `..` are
//!   dot dirs and are never checked) is checked with
//!   [`Filters::is_daemon_excluded`] first: if excluded it is reported as
//!   missing. Then with [`Filters::is_excluded`]: if excluded it is skipped
//!   silently. With `--relative`, each leading directory of the argument
//!   (`a`, `a/b` for `a/b/c`) is checked with `is_daemon_excluded(dir, true)`
//!   first and a hit also means "missing"; the implied directories themselves
//!   are sent subject to the daemon's rules only (`is_daemon_excluded`).
//! - Before reading a directory's entries, [`Filters::push_dir`] with the
//!   directory's name (`""` or `"."` for the transfer root itself, as for a
//!   `mod/a/b/` request); after its whole subtree is done,
//!   [`Filters::pop_dir`]. With `--relative`, the implied directories are
//!   pushed too, outermost first, before the argument's own directory.
//! - Each entry read from a directory is checked with
//!   [`Filters::is_excluded`]; an excluded directory is not entered.
//!
//! # Wire
//!
//! At protocol 29 the client sends its rules before the file list as items
//! of an int32 length followed by that many bytes, ended by a zero length;
//! each item goes to [`FilterList::add_wire_rule`]. An item longer than
//! [`MAX_WIRE_RULE_LEN`] ends the transfer (rsync's overflow exit). Clients
//! send `-F` as `: /.rsync-filter` and `-FF` as that plus `- .rsync-filter`;
//! they never send `protect`/`risk` rules (only the receiver uses them) and
//! expand their own `merge` files, so a merge rule from the wire is refused.
//! `-C` is not sent as rules: the client passes `-C` among the server
//! arguments, and the sender then calls [`FilterList::add_cvs_exclude`]
//! after the last wire rule.

mod files;
mod list;
mod parse;
mod rule;

use std::fmt;
use std::path::{Path, PathBuf};

pub use self::files::{MAX_MERGE_FILE_BYTES, MAX_MERGE_LINE_LEN};
pub use self::list::{
    FilterList, CHECK_STEP_BUDGET, MAX_DIR_MERGES, MAX_MERGE_DEPTH, MAX_PATTERN_LEN,
    MAX_RULES_PER_LIST, MAX_RULE_BYTES_PER_LIST, MAX_WIRE_RULE_LEN,
};

use self::list::Files;

/// What a list says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Include,
    Exclude,
    /// No rule applies; the name is included.
    NoMatch,
}

/// The broad cause of a [`FilterError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterErrorKind {
    /// A rule that does not parse (rsync exits with code 1).
    Syntax,
    /// A merge file that must exist could not be read (rsync's code 11).
    Io,
    /// One of this module's limits was exceeded.
    Limit,
}

/// A filter rule or merge file that cannot be used. Any of these ends the
/// transfer, as in rsync. Messages about merge files name the file and line
/// but never quote them: the client may choose which file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    kind: FilterErrorKind,
    message: String,
}

impl FilterError {
    fn new(kind: FilterErrorKind, message: String) -> Self {
        FilterError { kind, message }
    }

    pub fn kind(&self) -> FilterErrorKind {
        self.kind
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FilterError {}

/// A module's filter parameters, as rsyncd.conf spells them. The texts are
/// whitespace-separated rules; the paths name files the operator keeps
/// (read as they are, not confined to the module).
#[derive(Debug, Default, Clone, Copy)]
pub struct DaemonRules<'a> {
    pub filter: Option<&'a [u8]>,
    pub include_from: Option<&'a Path>,
    pub include: Option<&'a [u8]>,
    pub exclude_from: Option<&'a Path>,
    pub exclude: Option<&'a [u8]>,
}

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
    pub fn set_nul_separated_merge_files(&mut self, on: bool) {
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

#[cfg(test)]
mod tests;
