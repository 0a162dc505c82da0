//! The filter-rule tokenizer: one rule's prefix, modifiers and pattern.
//!
//! Owns the rule syntax rsync accepts (rsync: exclude.c parse_rule_tok): short and
//! long rule names (`-`/`exclude`, `+`/`include`, `.`/`merge`, `:`/`dir-merge`,
//! `H`/`hide`, `S`/`show`, `P`/`protect`, `R`/`risk`, `!`/`clear`), the
//! modifier letters, the old `- `/`+ ` prefixes of protocols before 29 and of
//! `--exclude`-style lists, prefix-less merge files, and word splitting.
//!
//! It must not build rules or touch lists and files: it only says what the
//! text at hand is, so the list code can act on it.

use super::flags::{flag, xflag, ParseFlags, RuleFlags};

/// One rule as written: its flags, its pattern and the text after it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub(crate) flags: RuleFlags,
    pub(crate) pattern: &'a [u8],
    pub(crate) rest: &'a [u8],
}

/// Why a rule could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenError {
    UnknownRule,
    InvalidModifier(u8),
    TrailingAfterClear,
    UnexpectedEnd,
    SidedRuleInSidedMerge,
}

impl TokenError {
    pub(super) fn describe(self) -> String {
        match self {
            TokenError::UnknownRule => "unknown filter rule".to_string(),
            TokenError::InvalidModifier(m) => {
                format!("invalid modifier '{}' in filter rule", m.escape_ascii())
            }
            TokenError::TrailingAfterClear => "'!' rule has trailing characters".to_string(),
            TokenError::UnexpectedEnd => "unexpected end of filter rule".to_string(),
            TokenError::SidedRuleInSidedMerge => {
                "specified-side merge file contains specified-side filter".to_string()
            }
        }
    }
}

/// C's `isspace` in the C locale.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Reads the next rule from `text`, or `None` when only (word-split)
/// whitespace is left. `template` holds the flags of the merge rule whose
/// file is being read (0 elsewhere).
pub(super) fn next_token(
    text: &[u8],
    template: RuleFlags,
    xflags: ParseFlags,
) -> Result<Option<Token<'_>>, TokenError> {
    let mut s = text;
    if template.any(flag::WORD_SPLIT) {
        let skip = s.iter().take_while(|&&b| is_c_space(b)).count();
        s = &s[skip..];
    }
    if s.is_empty() {
        return Ok(None);
    }
    let mut flags = template & flag::FROM_CONTAINER;
    let start = if template.any(flag::NO_PREFIXES) {
        if s[0] == b'!' && template.any(flag::CVS_IGNORE) {
            flags |= flag::CLEAR_LIST;
        }
        0
    } else if xflags.any(xflag::OLD_PREFIXES) {
        old_prefix(s, &mut flags)
    } else {
        new_prefix(s, template, &mut flags)?
    };
    if template.any(flag::SIDES) {
        if flags.any(flag::SIDES) {
            return Err(TokenError::SidedRuleInSidedMerge);
        }
        flags |= template & flag::SIDES;
    }
    let rest = &s[start..];
    let len = if template.any(flag::WORD_SPLIT) {
        rest.iter()
            .position(|&b| is_c_space(b))
            .unwrap_or(rest.len())
    } else {
        rest.len()
    };
    if flags.any(flag::CLEAR_LIST) {
        let prefixes_allowed = !template.any(flag::NO_PREFIXES) && !xflags.any(xflag::OLD_PREFIXES);
        if prefixes_allowed && len > 0 {
            return Err(TokenError::TrailingAfterClear);
        }
        // "!name" in a prefix-less list is a pattern, not a clear.
        if len > 1 {
            flags &= !flag::CLEAR_LIST;
        }
    } else if len == 0 && !flags.any(flag::CVS_IGNORE) {
        return Err(TokenError::UnexpectedEnd);
    }
    Ok(Some(Token {
        flags,
        pattern: &rest[..len],
        rest: &rest[len..],
    }))
}

/// The old syntax: an optional `- ` or `+ `; a leading `!` may clear.
fn old_prefix(s: &[u8], flags: &mut RuleFlags) -> usize {
    match s {
        [b'-', b' ', ..] => {
            *flags &= !flag::INCLUDE;
            2
        }
        [b'+', b' ', ..] => {
            *flags |= flag::INCLUDE;
            2
        }
        [b'!', ..] => {
            *flags |= flag::CLEAR_LIST;
            0
        }
        _ => 0,
    }
}

/// The byte at `i`, or 0 past the end (the rule text holds no NUL).
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// The full syntax: a rule name, modifiers, then one space or underscore.
/// Returns where the pattern starts.
fn new_prefix(s: &[u8], template: RuleFlags, flags: &mut RuleFlags) -> Result<usize, TokenError> {
    let (kind, mut i) = rule_kind(s)?;
    let mut side_given = false;
    match kind {
        b':' => *flags |= flag::PERDIR_MERGE | flag::MERGE_FILE,
        b'.' => *flags |= flag::MERGE_FILE,
        b'+' => *flags |= flag::INCLUDE,
        b'-' => {}
        b'S' | b'H' | b'R' | b'P' => {
            if kind == b'S' || kind == b'R' {
                *flags |= flag::INCLUDE;
            }
            *flags |= if kind == b'S' || kind == b'H' {
                flag::SENDER_SIDE
            } else {
                flag::RECEIVER_SIDE
            };
            side_given = true;
        }
        b'!' => *flags |= flag::CLEAR_LIST,
        _ => return Err(TokenError::UnknownRule),
    }
    if kind != b'!' {
        loop {
            i += 1;
            let m = at(s, i);
            if m == 0 || m == b' ' || m == b'_' {
                break;
            }
            if template.any(flag::WORD_SPLIT) && is_c_space(m) {
                // The whitespace stays in front of the pattern.
                i -= 1;
                break;
            }
            apply_modifier(m, side_given, flags)?;
        }
    }
    // Step over the separator (or the clear rule's last letter).
    if at(s, i) != 0 {
        i += 1;
    }
    Ok(i)
}

/// The rule's kind as its short letter, and the index of the last byte of
/// its name (modifiers follow it).
fn rule_kind(s: &[u8]) -> Result<(u8, usize), TokenError> {
    let long = |name: &[u8], kind: u8| {
        if !s.starts_with(name) {
            return Err(TokenError::UnknownRule);
        }
        match at(s, name.len()) {
            b',' => Ok((kind, name.len())),
            next if next == 0 || next == b'_' || is_c_space(next) => Ok((kind, name.len() - 1)),
            _ => Err(TokenError::UnknownRule),
        }
    };
    match s[0] {
        b'c' => long(b"clear", b'!'),
        b'd' => long(b"dir-merge", b':'),
        b'e' => long(b"exclude", b'-'),
        b'h' => long(b"hide", b'H'),
        b'i' => long(b"include", b'+'),
        b'm' => long(b"merge", b'.'),
        b'p' => long(b"protect", b'P'),
        b'r' => long(b"risk", b'R'),
        b's' => long(b"show", b'S'),
        short => Ok((short, usize::from(at(s, 1) == b','))),
    }
}

fn apply_modifier(m: u8, side_given: bool, flags: &mut RuleFlags) -> Result<(), TokenError> {
    let is_merge = flags.any(flag::MERGE_FILE);
    let added = match m {
        b'-' | b'+' if is_merge && !flags.any(flag::NO_PREFIXES) => {
            if m == b'+' {
                flag::NO_PREFIXES | flag::INCLUDE
            } else {
                flag::NO_PREFIXES
            }
        }
        b'/' => flag::ABS_PATH,
        b'!' if !is_merge => flag::NEGATE,
        b'C' if !flags.any(flag::NO_PREFIXES) && !side_given => {
            flag::NO_PREFIXES | flag::WORD_SPLIT | flag::NO_INHERIT | flag::CVS_IGNORE
        }
        b'e' if is_merge => flag::EXCLUDE_SELF,
        b'n' if is_merge => flag::NO_INHERIT,
        b'w' if is_merge => flag::WORD_SPLIT,
        b'p' => flag::PERISHABLE,
        b'r' if !side_given => flag::RECEIVER_SIDE,
        b's' if !side_given => flag::SENDER_SIDE,
        b'x' => flag::XATTR,
        _ => return Err(TokenError::InvalidModifier(m)),
    };
    *flags |= added;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str) -> Result<(RuleFlags, String), TokenError> {
        tok_with(text, RuleFlags::NONE, ParseFlags::NONE)
    }

    fn tok_with(
        text: &str,
        template: RuleFlags,
        xflags: ParseFlags,
    ) -> Result<(RuleFlags, String), TokenError> {
        let t = next_token(text.as_bytes(), template, xflags)?.expect("a rule");
        Ok((t.flags, String::from_utf8_lossy(t.pattern).into_owned()))
    }

    #[test]
    fn short_and_long_names_agree() {
        use flag::*;
        let cases: &[(&str, &str, RuleFlags)] = &[
            ("- a", "exclude a", RuleFlags::NONE),
            ("+ a", "include a", INCLUDE),
            (". a", "merge a", MERGE_FILE),
            (": a", "dir-merge a", MERGE_FILE | PERDIR_MERGE),
            ("H a", "hide a", SENDER_SIDE),
            ("S a", "show a", SENDER_SIDE | INCLUDE),
            ("P a", "protect a", RECEIVER_SIDE),
            ("R a", "risk a", RECEIVER_SIDE | INCLUDE),
        ];
        for &(short, long, flags) in cases {
            assert_eq!(tok(short), Ok((flags, "a".into())), "{short}");
            assert_eq!(tok(long), Ok((flags, "a".into())), "{long}");
        }
    }

    #[test]
    fn separators_and_commas() {
        assert_eq!(tok("-_a b"), Ok((RuleFlags::NONE, "a b".into())));
        assert_eq!(tok("exclude_a"), Ok((RuleFlags::NONE, "a".into())));
        assert_eq!(tok("-,s a"), Ok((flag::SENDER_SIDE, "a".into())));
        assert_eq!(tok("exclude,s a"), Ok((flag::SENDER_SIDE, "a".into())));
        // Only one separator is eaten; the rest belongs to the pattern.
        assert_eq!(tok("-  a"), Ok((RuleFlags::NONE, " a".into())));
        assert_eq!(tok("- a "), Ok((RuleFlags::NONE, "a ".into())));
    }

    #[test]
    fn modifiers() {
        use flag::*;
        assert_eq!(tok("-/ a"), Ok((ABS_PATH, "a".into())));
        assert_eq!(tok("-! a"), Ok((NEGATE, "a".into())));
        assert_eq!(tok("-p a"), Ok((PERISHABLE, "a".into())));
        assert_eq!(tok("-x a"), Ok((XATTR, "a".into())));
        assert_eq!(
            tok("+sr a"),
            Ok((INCLUDE | SENDER_SIDE | RECEIVER_SIDE, "a".into()))
        );
        assert_eq!(
            tok(":n- .f"),
            Ok((
                MERGE_FILE | PERDIR_MERGE | NO_INHERIT | NO_PREFIXES,
                ".f".into()
            ))
        );
        assert_eq!(
            tok("dir-merge,+ .f"),
            Ok((
                MERGE_FILE | PERDIR_MERGE | NO_PREFIXES | INCLUDE,
                ".f".into()
            ))
        );
        assert_eq!(
            tok(":ew .f"),
            Ok((
                MERGE_FILE | PERDIR_MERGE | EXCLUDE_SELF | WORD_SPLIT,
                ".f".into()
            ))
        );
        let cvs = NO_PREFIXES | WORD_SPLIT | NO_INHERIT | CVS_IGNORE;
        assert_eq!(tok("-C"), Ok((cvs, "".into())));
        assert_eq!(tok(":C"), Ok((cvs | MERGE_FILE | PERDIR_MERGE, "".into())));
    }

    #[test]
    fn invalid_modifiers_are_rejected() {
        assert_eq!(tok("-e a"), Err(TokenError::InvalidModifier(b'e')));
        assert_eq!(tok("-n a"), Err(TokenError::InvalidModifier(b'n')));
        assert_eq!(tok("-w a"), Err(TokenError::InvalidModifier(b'w')));
        assert_eq!(tok("-- a"), Err(TokenError::InvalidModifier(b'-')));
        assert_eq!(tok(":!"), Err(TokenError::InvalidModifier(b'!')));
        assert_eq!(tok("Hs a"), Err(TokenError::InvalidModifier(b's')));
        assert_eq!(tok("Pr a"), Err(TokenError::InvalidModifier(b'r')));
        assert_eq!(tok("HC"), Err(TokenError::InvalidModifier(b'C')));
        assert_eq!(tok(":-+ a"), Err(TokenError::InvalidModifier(b'+')));
        assert_eq!(tok("-foo"), Err(TokenError::InvalidModifier(b'f')));
        // A tab is no separator outside word-split text.
        assert_eq!(tok("-\ta"), Err(TokenError::InvalidModifier(b'\t')));
    }

    #[test]
    fn unknown_rules_and_missing_patterns() {
        assert_eq!(tok("x a"), Err(TokenError::UnknownRule));
        assert_eq!(tok("excludes a"), Err(TokenError::UnknownRule));
        assert_eq!(tok("c a"), Err(TokenError::UnknownRule));
        assert_eq!(tok("foo"), Err(TokenError::UnknownRule));
        assert_eq!(tok("-"), Err(TokenError::UnexpectedEnd));
        assert_eq!(tok("- "), Err(TokenError::UnexpectedEnd));
        assert_eq!(tok("exclude"), Err(TokenError::UnexpectedEnd));
    }

    #[test]
    fn clear_rule() {
        assert_eq!(tok("!"), Ok((flag::CLEAR_LIST, "".into())));
        assert_eq!(tok("clear"), Ok((flag::CLEAR_LIST, "".into())));
        assert_eq!(tok("! "), Err(TokenError::TrailingAfterClear));
        assert_eq!(tok("!x"), Err(TokenError::TrailingAfterClear));
    }

    #[test]
    fn old_prefixes() {
        let old = xflag::OLD_PREFIXES;
        assert_eq!(
            tok_with("- a", RuleFlags::NONE, old),
            Ok((RuleFlags::NONE, "a".into()))
        );
        assert_eq!(
            tok_with("+ a", RuleFlags::NONE, old),
            Ok((flag::INCLUDE, "a".into()))
        );
        assert_eq!(
            tok_with("a", RuleFlags::NONE, old),
            Ok((RuleFlags::NONE, "a".into()))
        );
        assert_eq!(
            tok_with("-a", RuleFlags::NONE, old),
            Ok((RuleFlags::NONE, "-a".into()))
        );
        assert_eq!(
            tok_with("H a", RuleFlags::NONE, old),
            Ok((RuleFlags::NONE, "H a".into()))
        );
        assert_eq!(
            tok_with("a", flag::INCLUDE, old),
            Ok((flag::INCLUDE, "a".into()))
        );
        assert_eq!(
            tok_with("- a", flag::INCLUDE, old),
            Ok((RuleFlags::NONE, "a".into()))
        );
        // The clear rule keeps its "!" as the (unused) pattern.
        assert_eq!(
            tok_with("!", RuleFlags::NONE, old),
            Ok((flag::CLEAR_LIST, "!".into()))
        );
        assert_eq!(
            tok_with("!a", RuleFlags::NONE, old),
            Ok((RuleFlags::NONE, "!a".into()))
        );
    }

    #[test]
    fn word_split_text_yields_one_rule_per_word() {
        let template = flag::WORD_SPLIT;
        let text = b"  - /foo  + bar\t- baz";
        let first = next_token(text, template, ParseFlags::NONE)
            .unwrap()
            .unwrap();
        assert_eq!(first.pattern, b"/foo");
        let second = next_token(first.rest, template, ParseFlags::NONE)
            .unwrap()
            .unwrap();
        assert_eq!((second.flags, second.pattern), (flag::INCLUDE, &b"bar"[..]));
        let third = next_token(second.rest, template, ParseFlags::NONE)
            .unwrap()
            .unwrap();
        assert_eq!(third.pattern, b"baz");
        assert_eq!(next_token(third.rest, template, ParseFlags::NONE), Ok(None));
        // A tab after the prefix leaves an empty pattern.
        assert_eq!(
            next_token(b"-\tfoo", template, ParseFlags::NONE),
            Err(TokenError::UnexpectedEnd)
        );
    }

    #[test]
    fn prefixless_merge_files() {
        use flag::*;
        let cvs = NO_PREFIXES | WORD_SPLIT | NO_INHERIT | CVS_IGNORE;
        assert_eq!(
            tok_with("- a", NO_PREFIXES, ParseFlags::NONE),
            Ok((RuleFlags::NONE, "- a".into()))
        );
        assert_eq!(
            tok_with("a", NO_PREFIXES | INCLUDE, ParseFlags::NONE),
            Ok((INCLUDE, "a".into()))
        );
        assert_eq!(
            tok_with("!", cvs, ParseFlags::NONE),
            Ok((CLEAR_LIST, "!".into()))
        );
        assert_eq!(
            tok_with("!x", cvs, ParseFlags::NONE),
            Ok((RuleFlags::NONE, "!x".into()))
        );
        assert_eq!(
            tok_with("!", NO_PREFIXES, ParseFlags::NONE),
            Ok((RuleFlags::NONE, "!".into()))
        );
    }

    #[test]
    fn merge_templates_pass_on_their_flags_and_sides() {
        use flag::*;
        let template = MERGE_FILE | PERDIR_MERGE | ABS_PATH | SENDER_SIDE | NO_INHERIT;
        assert_eq!(
            tok_with("+ a", template, ParseFlags::NONE),
            Ok((INCLUDE | ABS_PATH | SENDER_SIDE, "a".into()))
        );
        assert_eq!(
            tok_with("H a", template, ParseFlags::NONE),
            Err(TokenError::SidedRuleInSidedMerge)
        );
    }
}
