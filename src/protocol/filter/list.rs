//! An ordered filter list with its per-directory merge state.
//!
//! Owns what rsync: exclude.c keeps in filter_list, cvs_filter_list and the
//! per-directory "mergelists": turning parsed rules into list entries (clear
//! rules, merge files read in place, dir-merge rules, the CVS rules), the
//! stack of rules read from per-directory files while the sender walks the
//! tree (inherited or not, the scan of parent directories for a merge name
//! that reaches above the transfer root), the limits on rules, and the
//! first-match-wins check of a name.
//!
//! It must not decide which names are checked or in which order directories
//! are visited: the file-list builder drives it through `Filters`.

use std::ffi::OsStr;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::files::{
    for_each_piece, is_ancestor_or_self, open_beneath, open_operator, read_bounded, resolve,
    split_last, Splitting,
};
use super::flags::{flag, xflag, ParseFlags, RuleFlags};
use super::parse::{next_token, Token, TokenError};
use super::rule::{build, BuildError, Name, Rule};
use super::{DaemonRules, FilterError, FilterErrorKind, Verdict};

/// Most entries a list may hold at once, counting the rules of the merge
/// files currently in effect.
pub const MAX_RULES_PER_LIST: usize = 50_000;

/// Most pattern bytes a list may hold at once.
pub const MAX_RULE_BYTES_PER_LIST: usize = 16 << 20;

/// Longest rule a client may send: rsync reads each into a buffer of
/// 4096 + 1024 bytes and gives up on anything that does not fit.
pub const MAX_WIRE_RULE_LEN: usize = 5119;

/// Longest pattern kept; rsync discards (with a warning) patterns that do
/// not fit in a path buffer.
pub const MAX_PATTERN_LEN: usize = 4095;

/// Most matching steps spent on one name across all rules of a list. A
/// real rule set needs a small fraction of it; a hostile one is cut short
/// here and the name counts as excluded.
pub const CHECK_STEP_BUDGET: u32 = 1 << 24;

/// Deepest nesting of merge files read from within merge files (rsync's).
pub const MAX_MERGE_DEPTH: usize = 32;

/// Most per-directory merge rules active at once.
pub const MAX_DIR_MERGES: usize = 64;

/// The names `-C` ignores everywhere, from rsync's manual.
const CVS_DEFAULT_IGNORES: &[&str] = &[
    "RCS",
    "SCCS",
    "CVS",
    "CVS.adm",
    "RCSLOG",
    "cvslog.*",
    "tags",
    "TAGS",
    ".make.state",
    ".nse_depinfo",
    "*~",
    "#*",
    ".#*",
    ",*",
    "_$*",
    "*$",
    "*.old",
    "*.bak",
    "*.BAK",
    "*.orig",
    "*.rej",
    ".del-*",
    "*.a",
    "*.olb",
    "*.o",
    "*.obj",
    "*.so",
    "*.exe",
    "*.Z",
    "*.elc",
    "*.ln",
    "core",
    ".svn/",
    ".git/",
    ".hg/",
    ".bzr/",
];

/// One element of a list.
#[derive(Debug, Clone)]
enum Entry {
    Rule(Rule),
    /// A dir-merge rule: the rules read for it so far, by slot number.
    DirMerge(usize),
    /// A `-C` rule: the CVS ignore list goes here.
    Cvs,
}

/// The rules one directory's merge file contributed to a dir-merge rule.
#[derive(Debug, Clone)]
struct Frame {
    depth: u32,
    entries: Vec<Entry>,
    /// Whether the rules of the directories above still apply here.
    inherits: bool,
}

/// A dir-merge rule in effect, with the rules read for it per directory.
#[derive(Debug, Clone)]
struct Slot {
    /// The file to read in each directory; a path until its first use.
    name: Vec<u8>,
    /// The dir-merge rule's flags, passed on to the rules read for it.
    template: RuleFlags,
    needs_setup: bool,
    /// Cleared when the rule that created the slot is cleared away.
    active: bool,
    /// The walk depth at which the rule that created it was read.
    created_depth: u32,
    frames: Vec<Frame>,
}

/// Entries being collected for one list or one merge file.
#[derive(Default)]
struct RuleBuf {
    entries: Vec<Entry>,
    /// A clear rule was read: what came before no longer applies.
    cleared: bool,
}

/// Which files merge rules may read.
#[derive(Clone, Copy)]
pub(super) enum Files<'a> {
    /// None: rules from the client may not make the daemon read files.
    Refused,
    /// Any path: the operator's configuration names them.
    Operator,
    /// Files inside the module, found without following symlinks, and not
    /// hidden by the daemon's rules.
    Module {
        root: &'a Path,
        hide: Option<&'a FilterList>,
    },
}

/// Where the text being parsed came from, for error messages.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Wire,
    Config,
    /// A merge file (shown by name and line, never by content, since the
    /// client may choose which file is read).
    File {
        path: &'a [u8],
        line: Option<usize>,
    },
}

/// The circumstances of one piece of parsing.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    files: Files<'a>,
    /// Module-relative directory of the merge file being read.
    dir: &'a [u8],
    /// Reading the parents of the first transfer directory.
    parent_scan: bool,
    merge_depth: usize,
    origin: Origin<'a>,
}

impl Ctx<'_> {
    fn error(&self, kind: FilterErrorKind, what: &str, text: &[u8]) -> FilterError {
        const SHOWN: usize = 200;
        let shown = String::from_utf8_lossy(&text[..text.len().min(SHOWN)]);
        let message = match self.origin {
            Origin::Wire if text.is_empty() => format!("{what} from the client"),
            Origin::Wire => format!("{what}: {shown}"),
            Origin::Config => format!("{what} in the module's filter configuration: {shown}"),
            Origin::File { path, line } => {
                let path = String::from_utf8_lossy(path);
                match line {
                    Some(line) => format!("{what} in {path} line {line}"),
                    None => format!("{what} in {path}"),
                }
            }
        };
        FilterError::new(kind, message)
    }
}

/// An ordered list of filter rules: the client's, or the daemon's own.
/// Cloning one gives an independent copy (a module's daemon rules can be
/// parsed once and cloned for each connection).
#[derive(Debug, Clone)]
pub struct FilterList {
    top: Vec<Entry>,
    slots: Vec<Slot>,
    cvs: Option<Vec<Entry>>,
    rule_count: usize,
    rule_bytes: usize,
    depth: u32,
    /// Skip rules meant for the receiver only (the client's rules).
    elide_receiver_only: bool,
    transfer_root: Vec<u8>,
    nul_lines: bool,
    /// Set once a check ran out of steps, so it is logged once.
    gave_up: WarnedOnce,
}

/// Whether a warning was already logged; lists are shared between
/// connections, so the flag is atomic, and a clone starts afresh.
#[derive(Debug, Default)]
struct WarnedOnce(AtomicBool);

impl Clone for WarnedOnce {
    fn clone(&self) -> Self {
        WarnedOnce::default()
    }
}

impl Default for FilterList {
    fn default() -> Self {
        FilterList::new()
    }
}

impl FilterList {
    /// An empty list for the client's rules.
    pub fn new() -> Self {
        FilterList {
            top: Vec::new(),
            slots: Vec::new(),
            cvs: None,
            rule_count: 0,
            rule_bytes: 0,
            depth: 0,
            elide_receiver_only: true,
            transfer_root: Vec::new(),
            nul_lines: false,
            gave_up: WarnedOnce::default(),
        }
    }

    /// Adds one rule as the client sent it in its filter list (the bytes of
    /// one length-prefixed item, without the length). At protocol 29 and
    /// later the full rule syntax applies; before 29 only `- `/`+ `
    /// prefixes and `!`. Errors are fatal to the transfer, as in rsync.
    pub fn add_wire_rule(&mut self, rule: &[u8], protocol: u32) -> Result<(), FilterError> {
        if rule.len() > MAX_WIRE_RULE_LEN {
            return Err(FilterError::new(
                FilterErrorKind::Limit,
                format!(
                    "filter rule of {} bytes exceeds the limit of {MAX_WIRE_RULE_LEN}",
                    rule.len()
                ),
            ));
        }
        let text = match rule.iter().position(|&b| b == 0) {
            Some(nul) => &rule[..nul],
            None => rule,
        };
        let xflags = if protocol >= 29 {
            ParseFlags::NONE
        } else {
            xflag::OLD_PREFIXES
        };
        let ctx = Ctx {
            files: Files::Refused,
            dir: b"",
            parent_scan: false,
            merge_depth: 0,
            origin: Origin::Wire,
        };
        self.parse_top(text, RuleFlags::NONE, xflags, ctx)
    }

    /// Appends what `-C` (`--cvs-exclude`) makes the sending side add after
    /// the client's rules: a `.cvsignore` dir-merge rule, then the default
    /// CVS ignore list.
    pub fn add_cvs_exclude(&mut self) -> Result<(), FilterError> {
        let ctx = Ctx {
            files: Files::Refused,
            dir: b"",
            parent_scan: false,
            merge_depth: 0,
            origin: Origin::Config,
        };
        self.parse_top(b":C", RuleFlags::NONE, ParseFlags::NONE, ctx)?;
        self.parse_top(b"-C", RuleFlags::NONE, ParseFlags::NONE, ctx)
    }

    /// Builds the daemon's list from a module's configuration, in rsyncd's
    /// order: `filter`, `include from`, `include`, `exclude from`, `exclude`.
    pub fn from_daemon_rules(rules: &DaemonRules<'_>) -> Result<FilterList, FilterError> {
        let mut list = FilterList {
            elide_receiver_only: false,
            ..FilterList::new()
        };
        let daemon = xflag::ABS_IF_SLASH | xflag::DIR2WILD3;
        let old = daemon | xflag::OLD_PREFIXES;
        let ctx = Ctx {
            files: Files::Operator,
            dir: b"",
            parent_scan: false,
            merge_depth: 0,
            origin: Origin::Config,
        };
        if let Some(text) = rules.filter {
            list.parse_top(text, flag::WORD_SPLIT, daemon, ctx)?;
        }
        if let Some(path) = rules.include_from {
            list.parse_top_file(path, flag::INCLUDE, old)?;
        }
        if let Some(text) = rules.include {
            list.parse_top(text, flag::INCLUDE | flag::WORD_SPLIT, old, ctx)?;
        }
        if let Some(path) = rules.exclude_from {
            list.parse_top_file(path, RuleFlags::NONE, old)?;
        }
        if let Some(text) = rules.exclude {
            list.parse_top(text, flag::WORD_SPLIT, old, ctx)?;
        }
        Ok(list)
    }

    /// Whether the list has no rules at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.top.is_empty()
    }

    /// Checks `name` (see `Filters` for the form) against the list: the
    /// first rule that applies decides. A check that needs more than
    /// [`CHECK_STEP_BUDGET`] steps gives up and answers `Exclude`.
    pub(crate) fn check(&self, name: &[u8], is_dir: bool) -> Verdict {
        let name = Name::new(&self.transfer_root, name);
        self.check_name(&name, is_dir)
    }

    fn check_name(&self, name: &Name<'_>, is_dir: bool) -> Verdict {
        self.check_with_budget(name, is_dir, CHECK_STEP_BUDGET)
    }

    fn check_with_budget(&self, name: &Name<'_>, is_dir: bool, mut budget: u32) -> Verdict {
        let verdict = self.check_entries(
            &self.top,
            name,
            is_dir,
            self.elide_receiver_only,
            &mut budget,
        );
        if budget > 0 {
            return verdict;
        }
        if !self.gave_up.0.swap(true, Ordering::Relaxed) {
            log::warn!(
                "filter rules too costly to match; excluding {} and any other name they cannot decide",
                String::from_utf8_lossy(name.path)
            );
        }
        Verdict::Exclude
    }

    pub(super) fn set_transfer_root(&mut self, dir: &[u8]) {
        self.transfer_root = resolve(b"", dir);
    }

    pub(super) fn set_nul_lines(&mut self, on: bool) {
        self.nul_lines = on;
    }

    /// Checks a module-relative path, as rsync checks merge-file names
    /// against the daemon's rules.
    fn hides(&self, path: &[u8]) -> bool {
        let name = Name {
            transfer_root: &self.transfer_root,
            path,
            rooted: true,
        };
        self.check_name(&name, false) == Verdict::Exclude
    }

    /// The first verdict among `entries`; stops early, leaving `budget` at
    /// 0, when the steps run out.
    fn check_entries(
        &self,
        entries: &[Entry],
        name: &Name<'_>,
        is_dir: bool,
        elide: bool,
        budget: &mut u32,
    ) -> Verdict {
        for entry in entries {
            let verdict = match entry {
                Entry::Rule(rule) => {
                    let receiver_only = rule.flags & flag::SIDES == flag::RECEIVER_SIDE;
                    if elide && receiver_only {
                        continue;
                    }
                    let applies = rule.matches(name, is_dir, budget);
                    if *budget == 0 {
                        return Verdict::NoMatch;
                    }
                    if !applies {
                        continue;
                    }
                    if rule.flags.any(flag::INCLUDE) {
                        Verdict::Include
                    } else {
                        Verdict::Exclude
                    }
                }
                Entry::DirMerge(id) => self.check_slot(*id, name, is_dir, budget),
                Entry::Cvs => match &self.cvs {
                    Some(cvs) => self.check_entries(cvs, name, is_dir, elide, budget),
                    None => Verdict::NoMatch,
                },
            };
            if verdict != Verdict::NoMatch || *budget == 0 {
                return verdict;
            }
        }
        Verdict::NoMatch
    }

    /// The newest directory's rules first, then those it inherits.
    fn check_slot(&self, id: usize, name: &Name<'_>, is_dir: bool, budget: &mut u32) -> Verdict {
        let Some(slot) = self.slots.get(id) else {
            return Verdict::NoMatch;
        };
        for frame in slot.frames.iter().rev() {
            let verdict = self.check_entries(&frame.entries, name, is_dir, false, budget);
            if verdict != Verdict::NoMatch || *budget == 0 {
                return verdict;
            }
            if !frame.inherits {
                break;
            }
        }
        Verdict::NoMatch
    }

    fn parse_top(
        &mut self,
        text: &[u8],
        template: RuleFlags,
        xflags: ParseFlags,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        let mut buf = RuleBuf {
            entries: mem::take(&mut self.top),
            cleared: false,
        };
        let result = self.parse_text(&mut buf, text, template, xflags, ctx);
        self.top = buf.entries;
        result
    }

    fn parse_top_file(
        &mut self,
        path: &Path,
        template: RuleFlags,
        xflags: ParseFlags,
    ) -> Result<(), FilterError> {
        let bytes = read_operator_file(path, template)?;
        let ctx = Ctx {
            files: Files::Operator,
            dir: b"",
            parent_scan: false,
            merge_depth: 1,
            origin: Origin::File {
                path: path.as_os_str().as_bytes(),
                line: None,
            },
        };
        let mut buf = RuleBuf {
            entries: mem::take(&mut self.top),
            cleared: false,
        };
        let result = self.parse_bytes(&mut buf, &bytes, template, xflags, ctx);
        self.top = buf.entries;
        result
    }

    /// Parses every rule in `text` into `out`.
    fn parse_text(
        &mut self,
        out: &mut RuleBuf,
        text: &[u8],
        template: RuleFlags,
        xflags: ParseFlags,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        let mut rest = text;
        loop {
            let token = match next_token(rest, template, xflags) {
                Ok(Some(token)) => token,
                Ok(None) => return Ok(()),
                Err(e) => return Err(token_error(e, text, ctx)),
            };
            rest = token.rest;
            self.add_token(out, &token, xflags, ctx)?;
        }
    }

    /// Parses a merge file's bytes piece by piece into `out`.
    fn parse_bytes(
        &mut self,
        out: &mut RuleBuf,
        bytes: &[u8],
        template: RuleFlags,
        xflags: ParseFlags,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        let splitting = Splitting {
            words: template.any(flag::WORD_SPLIT),
            nul_lines: self.nul_lines,
        };
        let too_long = |line: Option<usize>| {
            let at = Ctx {
                origin: with_line(ctx.origin, line),
                ..ctx
            };
            let e = at.error(
                FilterErrorKind::Limit,
                "discarding over-long filter rule",
                b"",
            );
            log::warn!("{e}");
        };
        for_each_piece(bytes, splitting, too_long, |piece| {
            let at = Ctx {
                origin: with_line(ctx.origin, piece.line),
                ..ctx
            };
            self.parse_text(out, piece.text, template, xflags, at)
        })
    }

    fn add_token(
        &mut self,
        out: &mut RuleBuf,
        token: &Token<'_>,
        xflags: ParseFlags,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        let mut flags = token.flags;
        let mut pattern = token.pattern;
        if pattern.len() > MAX_PATTERN_LEN {
            let e = ctx.error(
                FilterErrorKind::Limit,
                "discarding over-long filter rule",
                b"",
            );
            log::warn!("{e}");
            return Ok(());
        }
        if flags.any(flag::CLEAR_LIST) {
            self.clear(out);
            return Ok(());
        }
        if flags.any(flag::MERGE_FILE) {
            if pattern.is_empty() {
                pattern = b".cvsignore";
            }
            if flags.any(flag::EXCLUDE_SELF) {
                let (_, base) = split_last(pattern);
                self.add_rule(out, base, RuleFlags::NONE, ParseFlags::NONE, ctx)?;
                flags &= !flag::EXCLUDE_SELF;
            }
            if !flags.any(flag::PERDIR_MERGE) {
                return self.merge_file(out, pattern, flags, ctx);
            }
            if ctx.parent_scan {
                // Found above the transfer root: it applies from the
                // directory of the file that named it.
                let mut rooted = vec![b'/'];
                rooted.extend_from_slice(&resolve(ctx.dir, pattern));
                return self.add_rule(out, &rooted, flags, ParseFlags::NONE, ctx);
            }
        }
        self.add_rule(out, pattern, flags, xflags, ctx)?;
        if flags.any(flag::CVS_IGNORE) && !flags.any(flag::MERGE_FILE) {
            self.init_cvs(flags, ctx)?;
        }
        Ok(())
    }

    fn add_rule(
        &mut self,
        out: &mut RuleBuf,
        pattern: &[u8],
        flags: RuleFlags,
        xflags: ParseFlags,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        let rule = match build(pattern, flags, xflags, ctx.dir) {
            Ok(Some(rule)) => rule,
            Ok(None) => return Ok(()),
            Err(BuildError::TooManyStars) => {
                return Err(ctx.error(
                    FilterErrorKind::Limit,
                    "too many wildcards in filter rule",
                    pattern,
                ))
            }
        };
        let entry = if rule.flags.any(flag::PERDIR_MERGE) {
            match self.new_slot(&rule, ctx)? {
                Some(id) => Entry::DirMerge(id),
                None => return Ok(()),
            }
        } else if rule.flags.any(flag::CVS_IGNORE) {
            Entry::Cvs
        } else {
            Entry::Rule(rule)
        };
        self.push_entry(out, entry, ctx)
    }

    /// Starts a dir-merge rule, unless one for the same file name is
    /// already in effect (then the new rule is dropped, as rsync does).
    fn new_slot(&mut self, rule: &Rule, ctx: Ctx<'_>) -> Result<Option<usize>, FilterError> {
        let (_, base) = split_last(&rule.pattern);
        let active = self.slots.iter().filter(|s| s.active);
        let mut count = 0;
        for slot in active {
            if split_last(&slot.name).1 == base {
                return Ok(None);
            }
            count += 1;
        }
        if count >= MAX_DIR_MERGES {
            return Err(ctx.error(
                FilterErrorKind::Limit,
                "too many per-directory merge rules",
                &rule.pattern,
            ));
        }
        self.slots.push(Slot {
            name: rule.pattern.to_vec(),
            template: rule.flags,
            needs_setup: true,
            active: true,
            created_depth: self.depth,
            frames: Vec::new(),
        });
        Ok(Some(self.slots.len() - 1))
    }

    fn entry_bytes(&self, entry: &Entry) -> usize {
        match entry {
            Entry::Rule(rule) => rule.pattern.len(),
            Entry::DirMerge(id) => self.slots.get(*id).map_or(0, |s| s.name.len()),
            Entry::Cvs => 0,
        }
    }

    fn push_entry(
        &mut self,
        out: &mut RuleBuf,
        entry: Entry,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        let bytes = self.entry_bytes(&entry);
        if self.rule_count >= MAX_RULES_PER_LIST
            || self.rule_bytes + bytes > MAX_RULE_BYTES_PER_LIST
        {
            return Err(ctx.error(FilterErrorKind::Limit, "too many filter rules", b""));
        }
        self.rule_count += 1;
        self.rule_bytes += bytes;
        out.entries.push(entry);
        Ok(())
    }

    /// Forgets an entry that leaves the list.
    fn release(&mut self, entry: &Entry) {
        self.rule_count = self.rule_count.saturating_sub(1);
        self.rule_bytes = self.rule_bytes.saturating_sub(self.entry_bytes(entry));
        if let Entry::DirMerge(id) = entry {
            if let Some(slot) = self.slots.get_mut(*id) {
                slot.active = false;
            }
        }
    }

    fn clear(&mut self, out: &mut RuleBuf) {
        for entry in mem::take(&mut out.entries) {
            self.release(&entry);
        }
        out.cleared = true;
    }

    /// Reads a merge (`.`) file into `out` at this point of the list.
    fn merge_file(
        &mut self,
        out: &mut RuleBuf,
        name: &[u8],
        template: RuleFlags,
        ctx: Ctx<'_>,
    ) -> Result<(), FilterError> {
        if ctx.merge_depth >= MAX_MERGE_DEPTH {
            return Err(ctx.error(
                FilterErrorKind::Limit,
                "merge files nested too deeply",
                name,
            ));
        }
        let (bytes, shown) = match ctx.files {
            Files::Refused => {
                return Err(ctx.error(
                    FilterErrorKind::Syntax,
                    "merge rules are not accepted from the client",
                    name,
                ))
            }
            Files::Operator => {
                let path = Path::new(OsStr::from_bytes(name));
                (read_operator_file(path, template)?, name.to_vec())
            }
            Files::Module { root, hide } => {
                let rel = resolve(ctx.dir, name);
                if hide.is_some_and(|daemon| daemon.hides(&rel)) {
                    return Ok(());
                }
                let bytes = open_beneath(root, &rel)
                    .and_then(read_bounded)
                    .map_err(|e| {
                        let what = format!("failed to read merge file ({e})");
                        ctx.error(FilterErrorKind::Io, &what, name)
                    })?;
                (bytes, rel)
            }
        };
        let inner = Ctx {
            merge_depth: ctx.merge_depth + 1,
            origin: Origin::File {
                path: &shown,
                line: None,
            },
            ..ctx
        };
        // What a merged file holds is taken as written: no anchoring to a
        // directory, no dropping of rules for either side.
        self.parse_bytes(out, &bytes, template, ParseFlags::NONE, inner)
    }

    fn init_cvs(&mut self, template: RuleFlags, ctx: Ctx<'_>) -> Result<(), FilterError> {
        if self.cvs.is_some() {
            return Ok(());
        }
        let mut buf = RuleBuf::default();
        for pattern in CVS_DEFAULT_IGNORES {
            self.parse_text(
                &mut buf,
                pattern.as_bytes(),
                template,
                ParseFlags::NONE,
                ctx,
            )?;
        }
        self.cvs = Some(buf.entries);
        Ok(())
    }

    /// Enters the module-relative directory `dir`: reads its file for every
    /// dir-merge rule in effect (and, the first time a rule is used, the
    /// parent directories its name points above the transfer).
    pub(super) fn push_dir(&mut self, dir: &[u8], files: Files<'_>) -> Result<(), FilterError> {
        self.depth += 1;
        // Reading one file may start new dir-merge rules; they are read
        // for this directory too.
        let mut id = 0;
        while id < self.slots.len() {
            if self.slots[id].active {
                self.push_slot(id, dir, files)?;
            }
            id += 1;
        }
        Ok(())
    }

    fn push_slot(&mut self, id: usize, dir: &[u8], files: Files<'_>) -> Result<(), FilterError> {
        if self.slots[id].needs_setup {
            self.slots[id].needs_setup = false;
            self.scan_parents(id, dir, files)?;
        }
        let name = self.slots[id].name.clone();
        let template = self.slots[id].template;
        let buf = self.read_per_dir(dir, &name, template, files, false)?;
        let inherits = !template.any(flag::NO_INHERIT) && !buf.cleared;
        self.slots[id].frames.push(Frame {
            depth: self.depth,
            entries: buf.entries,
            inherits,
        });
        Ok(())
    }

    /// A dir-merge name with a slash names a directory and a file. The file
    /// name is used from then on; when the directory is the first transfer
    /// directory `dir` or above it, that file is read in each directory from
    /// there down to `dir`'s parent.
    fn scan_parents(&mut self, id: usize, dir: &[u8], files: Files<'_>) -> Result<(), FilterError> {
        let name = self.slots[id].name.clone();
        if !name.contains(&b'/') {
            return Ok(());
        }
        let resolved = resolve(dir, &name);
        let (top, base) = split_last(&resolved);
        self.slots[id].name = base.to_vec();
        if !is_ancestor_or_self(top, dir) {
            return Ok(());
        }
        let template = self.slots[id].template;
        let mut end = top.len();
        while end < dir.len() {
            let mut buf = self.read_per_dir(&dir[..end], base, template, files, true)?;
            if template.any(flag::NO_INHERIT) {
                self.clear(&mut buf);
            } else {
                self.slots[id].frames.push(Frame {
                    depth: self.depth,
                    entries: buf.entries,
                    inherits: !buf.cleared,
                });
            }
            let from = if end == 0 { 0 } else { end + 1 };
            end = dir[from..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(dir.len(), |slash| from + slash);
        }
        Ok(())
    }

    /// Reads `dir/name` as a per-directory merge file. A file that is
    /// missing, unreadable or hidden by the daemon counts as empty.
    fn read_per_dir(
        &mut self,
        dir: &[u8],
        name: &[u8],
        template: RuleFlags,
        files: Files<'_>,
        parent_scan: bool,
    ) -> Result<RuleBuf, FilterError> {
        let mut buf = RuleBuf::default();
        let Files::Module { root, hide } = files else {
            return Ok(buf);
        };
        if name.is_empty() {
            return Ok(buf);
        }
        let rel = resolve(dir, name);
        if hide.is_some_and(|daemon| daemon.hides(&rel)) {
            return Ok(buf);
        }
        let Ok(file) = open_beneath(root, &rel) else {
            return Ok(buf);
        };
        let ctx = Ctx {
            files,
            dir,
            parent_scan,
            merge_depth: 1,
            origin: Origin::File {
                path: &rel,
                line: None,
            },
        };
        let bytes = read_bounded(file).map_err(|e| {
            let what = format!("cannot read merge file ({e})");
            ctx.error(FilterErrorKind::Io, &what, b"")
        })?;
        self.parse_bytes(&mut buf, &bytes, template, xflag::ANCHORED2ABS, ctx)?;
        Ok(buf)
    }

    /// Leaves the directory entered last: its merge-file rules go, and so
    /// do the dir-merge rules they started.
    pub(super) fn pop_dir(&mut self) {
        let depth = self.depth;
        let mut popped = Vec::new();
        for slot in &mut self.slots {
            while slot.frames.last().is_some_and(|f| f.depth == depth) {
                popped.extend(slot.frames.pop());
            }
        }
        for frame in popped {
            for entry in &frame.entries {
                self.release(entry);
            }
        }
        let keep = self
            .slots
            .iter()
            .position(|s| s.created_depth >= depth && depth > 0)
            .unwrap_or(self.slots.len());
        self.slots.truncate(keep);
        self.depth = depth.saturating_sub(1);
    }
}

fn with_line(origin: Origin<'_>, line: Option<usize>) -> Origin<'_> {
    match origin {
        Origin::File { path, .. } => Origin::File { path, line },
        other => other,
    }
}

fn token_error(e: TokenError, text: &[u8], ctx: Ctx<'_>) -> FilterError {
    ctx.error(FilterErrorKind::Syntax, &e.describe(), text)
}

fn read_operator_file(path: &Path, template: RuleFlags) -> Result<Vec<u8>, FilterError> {
    open_operator(path).and_then(read_bounded).map_err(|e| {
        let kind = if template.any(flag::INCLUDE) {
            "include"
        } else {
            "exclude"
        };
        FilterError::new(
            FilterErrorKind::Io,
            format!("failed to open {kind} file {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_that_runs_out_of_steps_excludes() {
        let mut list = FilterList::new();
        list.add_wire_rule(b"+ *x*y*z", 29).unwrap();
        let name = Name::new(b"", b"aaaaaaaaaaaaxyz");
        assert_eq!(list.check_with_budget(&name, false, 1000), Verdict::Include);
        assert_eq!(list.check_with_budget(&name, false, 5), Verdict::Exclude);
        assert!(list.gave_up.0.load(Ordering::Relaxed));
    }
}
