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
//! never start with `/` or `./`, never end with `/` and have no empty, `.`
//! or `..` components (rsync cleans them the same way). `is_dir` says
//! whether the entry goes into the list as a directory (a symlink is not
//! one unless it is followed).
//!
//! The order of calls, as flist.c makes them for each top-level argument:
//! 1. Dot dirs (`mod/a/b/`, `.`, `..`) are never checked. Any other
//!    argument is checked with [`Filters::is_daemon_excluded`] (a hit means
//!    "no such file"); with `--relative` so is each leading directory
//!    (`a`, `a/b` for `a/b/c`, with `is_dir` true). Then with
//!    [`Filters::is_excluded`]: a hit skips the argument silently, and with
//!    it any implied directories.
//! 2. With `--relative`, the implied directories (`a`, `a/b`) are sent
//!    subject to the daemon's rules only (`is_daemon_excluded`), and each
//!    is entered with [`Filters::push_dir`], outermost first; they may stay
//!    entered for a following argument below the same directories.
//! 3. The argument itself goes into the list unchecked; when it is a
//!    directory, [`Filters::push_dir`] with its name (`""` or `"."` for a
//!    dot dir), then every entry read from it is checked with
//!    [`Filters::is_excluded`] and the kept subdirectories are walked the
//!    same way, each between its own `push_dir` and [`Filters::pop_dir`].
//!    An excluded directory is not entered.
//!
//! Matching has no allocation; a name costs at most [`CHECK_STEP_BUDGET`]
//! matching steps per list (some tens of milliseconds), after which it is
//! treated as excluded, so a hostile rule set cannot stall the sender.
//!
//! # Wire
//!
//! At protocol 29 the client sends its rules before the file list as items
//! of an int32 length followed by that many bytes, ended by a zero length;
//! each item goes to [`FilterList::add_wire_rule`]. An item longer than
//! [`MAX_WIRE_RULE_LEN`] ends the transfer (rsync's overflow exit), and any
//! error from a rule ends it too (rsync exits with code 1). Clients send
//! `-F` as `: /.rsync-filter` and `-FF` as that plus `- .rsync-filter`; they
//! expand their own `merge` files and never send `protect`/`risk` rules
//! (only the receiver uses them), so a merge rule from the wire is refused
//! and receiver-only rules are ignored. `-C` is not sent as rules: the
//! client passes `-C` among the server arguments, and the sender then calls
//! [`FilterList::add_cvs_exclude`] after the last wire rule. The sender
//! reads neither `$HOME/.cvsignore` nor `$CVSIGNORE`: a daemon's
//! environment is no business of the client's.

mod files;
mod flags;
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
