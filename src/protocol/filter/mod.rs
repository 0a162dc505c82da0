//! Filter rules: which names the sender leaves out of the file list.
//!
//! Owns rsync's include/exclude machinery for a sending daemon (rsync: exclude.c):
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
//! The order of calls, as rsync: flist.c makes them for each top-level argument:
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
mod filters;
mod flags;
mod list;
mod parse;
mod rule;

use std::fmt;
use std::path::Path;

pub use self::filters::{DirToken, Filters};
pub use self::list::{
    FilterList, CHECK_STEP_BUDGET, MAX_DIR_MERGES, MAX_MERGE_DEPTH, MAX_PATTERN_LEN,
    MAX_RULES_PER_LIST, MAX_RULE_BYTES_PER_LIST, MAX_WIRE_RULE_LEN,
};

/// What a list says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Include,
    Exclude,
    /// No rule applies; the name is included.
    NoMatch,
}

/// The broad cause of a [`FilterError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterErrorKind {
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

    #[cfg(test)]
    pub(crate) fn kind(&self) -> FilterErrorKind {
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

#[cfg(test)]
pub(crate) mod tests;
