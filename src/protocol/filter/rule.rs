//! One filter rule: how its pattern is stored and how it matches a name.
//!
//! Owns the rule flags, the rewriting rsync applies when a rule is added
//! (rsync: exclude.c add_rule: a trailing `/` means directories only, anchoring to
//! a merge file's directory, the daemon's `dir/` to `dir/***`, noting where
//! `**` and `***` sit) and the matching of one rule against one name
//! (rule_matches: last component or whole path, anchored or not, negation).
//!
//! It must not know about lists, merge files or which rule wins: that is the
//! list's job. It never allocates while matching.

use super::super::wildmatch::{
    litmatch_joined, star_groups, wildmatch_joined, Anchor, Joined, MAX_STAR_GROUPS,
};
use super::flags::{flag, xflag, ParseFlags, RuleFlags};

/// The suffix the daemon appends to excluded directories.
const SLASH_WILD3_SUFFIX: &[u8] = b"/***";

/// A rule whose pattern has been rewritten for matching.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(crate) pattern: Box<[u8]>,
    pub(crate) flags: RuleFlags,
    /// Slashes in the pattern (not counting a stripped trailing one).
    slash_count: usize,
}

/// Why a rule could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuildError {
    TooManyStars,
}

/// The name a rule is matched against.
#[derive(Clone, Copy)]
pub(super) struct Name<'a> {
    /// The transfer root's path within the module ("" for the module root).
    pub(crate) transfer_root: &'a [u8],
    /// The name without a leading slash.
    pub(crate) path: &'a [u8],
    /// The name was given from the module root (it had a leading slash), so
    /// the transfer root is not put in front of it.
    pub(crate) rooted: bool,
}

impl<'a> Name<'a> {
    /// A name as the file-list builder passes it; a leading slash means the
    /// name is already module-relative.
    pub(crate) fn new(transfer_root: &'a [u8], name: &'a [u8]) -> Self {
        match name.split_first() {
            Some((b'/', rest)) => Name {
                transfer_root,
                path: rest,
                rooted: true,
            },
            _ => Name {
                transfer_root,
                path: name,
                rooted: false,
            },
        }
    }
}

/// Builds a rule from `pattern` and the flags its text gave it, as rsync
/// adds a rule to a list. `dir` is the module-relative directory of the merge
/// file being read ("" elsewhere), used for anchored per-directory rules.
/// Returns `None` for a rule the sender must drop (one for the other side).
pub(super) fn build(
    pattern: &[u8],
    mut flags: RuleFlags,
    xflags: ParseFlags,
    dir: &[u8],
) -> Result<Option<Rule>, BuildError> {
    let sides = flags & flag::SIDES;
    // Per-directory files are read while sending: receiver-only rules go.
    // The daemon's own rules are read before the side is known, when rsync
    // still counts itself a receiver: sender-only rules go.
    if (xflags.any(xflag::ANCHORED2ABS) && sides == flag::RECEIVER_SIDE)
        || (xflags.any(xflag::ABS_IF_SLASH) && sides == flag::SENDER_SIDE)
    {
        return Ok(None);
    }
    let mut pat = pattern;
    if pat.len() > 1 && pat.last() == Some(&b'/') {
        pat = &pat[..pat.len() - 1];
        flags |= flag::DIRECTORY;
    }
    let mut slash_count = count_slashes(pat);
    let mut out = Vec::with_capacity(dir.len() + 1 + pat.len() + SLASH_WILD3_SUFFIX.len());
    let leading_slash = pat.first() == Some(&b'/');
    let makes_absolute = (xflags.any(xflag::ANCHORED2ABS | xflag::ABS_IF_SLASH) && leading_slash)
        || (xflags.any(xflag::ABS_IF_SLASH) && slash_count > 0);
    if !flags.any(flag::ABS_PATH | flag::MERGE_FILE) && makes_absolute {
        flags |= flag::ABS_PATH;
        if leading_slash && !dir.is_empty() {
            out.push(b'/');
            out.extend_from_slice(dir);
            slash_count += 1 + count_slashes(dir);
        }
    }
    out.extend_from_slice(pat);
    let dir_exclude = flags.any(flag::DIRECTORY) && !flags.any(flag::INCLUDE);
    if xflags.any(xflag::DIR2WILD3) && dir_exclude {
        flags &= !flag::DIRECTORY;
        out.extend_from_slice(SLASH_WILD3_SUFFIX);
        slash_count += 1;
    }
    flags |= wildcard_flags(&out);
    if star_groups(&out) > MAX_STAR_GROUPS {
        return Err(BuildError::TooManyStars);
    }
    Ok(Some(Rule {
        pattern: out.into_boxed_slice(),
        flags,
        slash_count,
    }))
}

fn count_slashes(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'/').count()
}

/// Whether the pattern is a wildcard one, and where its `**` sit.
fn wildcard_flags(pattern: &[u8]) -> RuleFlags {
    if !pattern.iter().any(|b| matches!(b, b'*' | b'[' | b'?')) {
        return RuleFlags::NONE;
    }
    let mut flags = flag::WILD;
    if let Some(first) = pattern.windows(2).position(|w| w == b"**") {
        flags |= flag::WILD2;
        if first == 0 {
            flags |= flag::WILD2_PREFIX;
        }
        if pattern.ends_with(b"***") {
            flags |= flag::WILD3_SUFFIX;
        }
    }
    flags
}

impl Rule {
    /// Whether this rule applies to `name`: its pattern matches (or, when
    /// negated, does not). A directory-only rule tested on a non-directory
    /// counts as not matching, before negation. Matching takes its steps
    /// from `budget`; the caller must treat a budget left at 0 as "gave up".
    pub(crate) fn matches(&self, name: &Name<'_>, is_dir: bool, budget: &mut u32) -> bool {
        if name.path.is_empty() || self.flags.any(flag::XATTR) {
            return false;
        }
        let hit = !self.flags.any(flag::NEGATE);
        let mut parts: [&[u8]; 4] = [&[]; 4];
        let mut count = 0;
        let mut path = name.path;
        if self.slash_count == 0 && !self.flags.any(flag::WILD2) {
            // No slash and no `**`: only the last component can match.
            if let Some(slash) = path.iter().rposition(|&b| b == b'/') {
                path = &path[slash + 1..];
            }
        } else if self.flags.any(flag::ABS_PATH) && !name.rooted && !name.transfer_root.is_empty() {
            parts[0] = name.transfer_root;
            parts[1] = b"/";
            count = 2;
        } else if self.flags.any(flag::WILD2_PREFIX) && !name.rooted {
            // Lets a leading "**/" match at the start of the path.
            parts[0] = b"/";
            count = 1;
        }
        parts[count] = path;
        count += 1;
        if is_dir {
            // Lets "dir/***" match the directory itself.
            if self.flags.any(flag::WILD3_SUFFIX) {
                parts[count] = b"/";
                count += 1;
            }
        } else if self.flags.any(flag::DIRECTORY) {
            return !hit;
        }
        let text = Joined::new(&parts[..count]);
        let (pattern, anchored) = match self.pattern.split_first() {
            Some((b'/', rest)) => (rest, true),
            _ => (&self.pattern[..], false),
        };
        let anchor = self.anchor(anchored);
        let matched = if self.flags.any(flag::WILD) {
            wildmatch_joined(pattern, &text, anchor, budget)
        } else {
            litmatch_joined(pattern, &text, anchor, budget)
        };
        if matched {
            hit
        } else {
            !hit
        }
    }

    fn anchor(&self, anchored: bool) -> Anchor {
        let wild2 = self.flags.any(flag::WILD2);
        if anchored {
            Anchor::Whole
        } else if self.slash_count > 0 && !wild2 {
            // "a/b" matches the last two elements of the path.
            Anchor::TrailingElements(self.slash_count + 1)
        } else if wild2 && !self.flags.any(flag::WILD2_PREFIX) {
            Anchor::AnySlash
        } else {
            Anchor::Whole
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, flags: RuleFlags) -> Rule {
        build(pattern.as_bytes(), flags, ParseFlags::NONE, b"")
            .unwrap()
            .unwrap()
    }

    fn hits(r: &Rule, name: &str, is_dir: bool) -> bool {
        matches(r, &Name::new(b"", name.as_bytes()), is_dir)
    }

    fn matches(r: &Rule, name: &Name<'_>, is_dir: bool) -> bool {
        let mut budget = u32::MAX;
        r.matches(name, is_dir, &mut budget)
    }

    #[test]
    fn plain_name_matches_last_component_only() {
        let r = rule("foo", RuleFlags::NONE);
        assert!(hits(&r, "foo", false));
        assert!(hits(&r, "a/b/foo", true));
        assert!(!hits(&r, "foo/bar", false));
        assert!(!hits(&r, "xfoo", false));
        let r = rule("*.o", RuleFlags::NONE);
        assert!(hits(&r, "src/main.o", false));
        assert!(!hits(&r, "main.o/x", false));
    }

    #[test]
    fn anchored_patterns_match_from_the_transfer_root() {
        let r = rule("/foo", RuleFlags::NONE);
        assert!(hits(&r, "foo", false));
        assert!(!hits(&r, "a/foo", false));
        let r = rule("/a/*", RuleFlags::NONE);
        assert!(hits(&r, "a/x", false));
        assert!(!hits(&r, "a/x/y", false));
        assert!(!hits(&r, "b/a/x", false));
    }

    #[test]
    fn inner_slash_matches_trailing_elements() {
        let r = rule("a/b", RuleFlags::NONE);
        assert!(hits(&r, "a/b", false));
        assert!(hits(&r, "x/a/b", false));
        assert!(!hits(&r, "xa/b", false));
        assert!(!hits(&r, "a/b/c", false));
        let r = rule("a/*/c", RuleFlags::NONE);
        assert!(hits(&r, "z/a/b/c", false));
        assert!(!hits(&r, "a/b/b/c", false));
    }

    #[test]
    fn double_star_patterns() {
        // Unanchored with an inner "**": tried at every slash.
        let r = rule("a/**/z", RuleFlags::NONE);
        assert!(hits(&r, "a/b/z", false));
        assert!(hits(&r, "x/a/b/c/z", false));
        assert!(!hits(&r, "a/z", false));
        // A leading "**" may match nothing before the first slash.
        let r = rule("**/z", RuleFlags::NONE);
        assert!(hits(&r, "z", false));
        assert!(hits(&r, "a/b/z", false));
        // "**" without a slash still sees the whole path.
        let r = rule("a**", RuleFlags::NONE);
        assert!(hits(&r, "b/a/c", false));
        assert!(!hits(&r, "b/c", false));
    }

    #[test]
    fn triple_star_suffix_matches_the_directory_and_its_contents() {
        let r = rule("/dir/***", RuleFlags::NONE);
        assert!(hits(&r, "dir", true));
        assert!(!hits(&r, "dir", false));
        assert!(hits(&r, "dir/x", false));
        assert!(hits(&r, "dir/x/y", true));
        assert!(!hits(&r, "dirx", true));
    }

    #[test]
    fn directory_only_and_negation() {
        let r = rule("foo/", RuleFlags::NONE);
        assert!(r.flags.any(flag::DIRECTORY));
        assert!(hits(&r, "a/foo", true));
        assert!(!hits(&r, "a/foo", false));
        // "-! */": everything that is not a directory.
        let r = rule("*/", flag::NEGATE);
        assert!(hits(&r, "file", false));
        assert!(!hits(&r, "dir", true));
        let r = rule("*.c", flag::NEGATE);
        assert!(hits(&r, "x.h", false));
        assert!(!hits(&r, "x.c", false));
        // A lone "/" keeps its slash and is an anchored empty name.
        let r = rule("/", RuleFlags::NONE);
        assert!(!r.flags.any(flag::DIRECTORY));
        assert!(!hits(&r, "a", true));
    }

    #[test]
    fn literal_backslashes_are_not_escapes_without_wildcards() {
        let r = rule("foo\\bar", RuleFlags::NONE);
        assert!(hits(&r, "foo\\bar", false));
        assert!(!hits(&r, "foobar", false));
        let r = rule("foo\\bar*", RuleFlags::NONE);
        assert!(hits(&r, "foobar", false));
    }

    #[test]
    fn empty_names_and_xattr_rules_never_match() {
        assert!(!hits(&rule("*", flag::NEGATE), "", false));
        assert!(!hits(&rule("*", flag::XATTR), "a", false));
    }

    #[test]
    fn absolute_rules_see_the_transfer_root() {
        let r = rule("/top/sub/x", flag::ABS_PATH);
        let name = Name::new(b"top/sub", b"x");
        assert!(matches(&r, &name, false));
        assert!(!hits(&r, "x", false));
        // A rooted name is already module-relative.
        assert!(matches(&r, &Name::new(b"elsewhere", b"/top/sub/x"), false));
    }

    #[test]
    fn per_directory_anchors_get_the_directory_prefix() {
        let r = build(b"/x", RuleFlags::NONE, xflag::ANCHORED2ABS, b"a/b")
            .unwrap()
            .unwrap();
        assert_eq!(&*r.pattern, b"/a/b/x");
        assert!(r.flags.any(flag::ABS_PATH));
        assert!(matches(&r, &Name::new(b"a", b"b/x"), false));
        assert!(!matches(&r, &Name::new(b"a", b"x"), false));
        // Unanchored per-directory rules stay as they are.
        let r = build(b"x/y", RuleFlags::NONE, xflag::ANCHORED2ABS, b"a")
            .unwrap()
            .unwrap();
        assert_eq!(&*r.pattern, b"x/y");
        assert!(!r.flags.any(flag::ABS_PATH));
    }

    #[test]
    fn daemon_rules_become_absolute_and_directories_get_wild3() {
        let daemon = xflag::ABS_IF_SLASH | xflag::DIR2WILD3;
        let r = build(b"secret/", RuleFlags::NONE, daemon, b"")
            .unwrap()
            .unwrap();
        assert_eq!(&*r.pattern, b"secret/***");
        assert!(!r.flags.any(flag::DIRECTORY));
        assert!(!r.flags.any(flag::ABS_PATH));
        let r = build(b"a/b", RuleFlags::NONE, daemon, b"")
            .unwrap()
            .unwrap();
        assert!(r.flags.any(flag::ABS_PATH));
        assert!(matches(&r, &Name::new(b"a", b"b"), false));
        // Includes keep their directory-only meaning.
        let r = build(b"keep/", flag::INCLUDE, daemon, b"")
            .unwrap()
            .unwrap();
        assert_eq!(&*r.pattern, b"keep");
        assert!(r.flags.any(flag::DIRECTORY));
    }

    #[test]
    fn rules_for_the_other_side_are_dropped_where_rsync_drops_them() {
        let per_dir = xflag::ANCHORED2ABS;
        let daemon = xflag::ABS_IF_SLASH;
        let recv = flag::RECEIVER_SIDE;
        let send = flag::SENDER_SIDE;
        assert!(build(b"a", recv, per_dir, b"").unwrap().is_none());
        assert!(build(b"a", send, per_dir, b"").unwrap().is_some());
        assert!(build(b"a", send | recv, per_dir, b"").unwrap().is_some());
        assert!(build(b"a", send, daemon, b"").unwrap().is_none());
        assert!(build(b"a", recv, daemon, b"").unwrap().is_some());
        assert!(build(b"a", recv, ParseFlags::NONE, b"").unwrap().is_some());
    }

    #[test]
    fn too_many_star_groups_are_refused() {
        let pattern = "*a".repeat(MAX_STAR_GROUPS + 1);
        assert_eq!(
            build(pattern.as_bytes(), RuleFlags::NONE, ParseFlags::NONE, b"").unwrap_err(),
            BuildError::TooManyStars
        );
    }
}
