//! rsync's wildcard matcher, on byte strings.
//!
//! Owns the pattern language rsync uses in filter rules: `?` (one byte but
//! `/`), `*` (a run of bytes without `/`), `**` and longer star runs (any run of
//! bytes), `[...]` classes with ranges, `!`/`^` negation and `[:name:]` POSIX
//! classes (ASCII, as in the C locale), and backslash escapes. It also owns
//! the variants rsync: exclude.c matches with: a text made of several parts joined
//! virtually (so a directory prefix and a name need not be copied together),
//! matched whole, by its trailing N path elements, or at the start and after
//! every slash.
//!
//! The search follows (rsync: lib/wildmatch.c): a failed `*` reports whether
//! later attempts can still succeed, so hopeless branches are cut instead of
//! retried. On top of that matching draws on a step budget the caller gives,
//! and patterns have a limit on star groups, so a hostile pattern costs
//! bounded time and stack.
//!
//! It must not allocate while matching, and knows nothing of rules, lists or
//! files: `filter` decides which text and which variant to use.

/// Most groups of consecutive `*` a pattern may hold. Each group is one level
/// of recursion while matching, so this bounds the stack a pattern can use;
/// real patterns hold a handful.
pub(crate) const MAX_STAR_GROUPS: usize = 256;

/// Most steps (pattern elements compared, star positions tried) one call of
/// [`wildmatch`] may take. Ordinary patterns on paths of a few thousand bytes
/// stay far below it; a match that runs out counts as no match.
pub(crate) const MATCH_STEP_BUDGET: u32 = 1 << 20;

/// Most parts a joined text may have: a directory prefix, its slash, the name
/// and a trailing slash.
pub(crate) const MAX_TEXT_PARTS: usize = 4;

/// How many groups of consecutive `*` `pattern` holds. An escaped `\*` is a
/// literal star, no wildcard, and ends a group.
pub(crate) fn star_groups(pattern: &[u8]) -> usize {
    let mut groups = 0;
    let mut prev_star = false;
    let mut bytes = pattern.iter();
    while let Some(&b) = bytes.next() {
        let star = b == b'*';
        if star && !prev_star {
            groups += 1;
        }
        prev_star = star;
        if b == b'\\' {
            bytes.next();
        }
    }
    groups
}

/// Whether `pattern` matches the whole of `text`. A pattern with more than
/// [`MAX_STAR_GROUPS`] star groups matches nothing: callers hand in what
/// clients send (a wildcard argument's components), and the limit is what
/// bounds the recursion.
pub fn wildmatch(pattern: &[u8], text: &[u8]) -> bool {
    if star_groups(pattern) > MAX_STAR_GROUPS {
        return false;
    }
    let mut budget = MATCH_STEP_BUDGET;
    wildmatch_joined(pattern, &Joined::new(&[text]), Anchor::Whole, &mut budget)
}

/// Which part of a joined text a pattern is matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The whole text.
    Whole,
    /// The last N slash-separated elements (fails when there are fewer).
    TrailingElements(usize),
    /// The text from its start, or from just after any slash in it.
    AnySlash,
}

/// A text made of up to [`MAX_TEXT_PARTS`] byte strings, read as if joined.
pub(crate) struct Joined<'a> {
    parts: [&'a [u8]; MAX_TEXT_PARTS],
    /// Offset just past each part in the joined text.
    ends: [usize; MAX_TEXT_PARTS],
    count: usize,
}

impl<'a> Joined<'a> {
    /// Joins `parts`; parts beyond [`MAX_TEXT_PARTS`] are a caller bug and
    /// are left out rather than panicking.
    pub(crate) fn new(parts: &[&'a [u8]]) -> Self {
        let mut joined = Joined {
            parts: [&[]; MAX_TEXT_PARTS],
            ends: [0; MAX_TEXT_PARTS],
            count: 0,
        };
        debug_assert!(parts.len() <= MAX_TEXT_PARTS);
        let mut end = 0;
        for part in parts.iter().take(MAX_TEXT_PARTS) {
            end += part.len();
            joined.parts[joined.count] = part;
            joined.ends[joined.count] = end;
            joined.count += 1;
        }
        joined
    }

    fn len(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            self.ends[self.count - 1]
        }
    }

    /// The byte at `i`, which must be below `len()`.
    fn at(&self, i: usize) -> u8 {
        let mut start = 0;
        for k in 0..self.count {
            if i < self.ends[k] {
                return self.parts[k][i - start];
            }
            start = self.ends[k];
        }
        0
    }

    fn has_slash_from(&self, from: usize) -> bool {
        (from..self.len()).any(|i| self.at(i) == b'/')
    }

    /// Where the last `count` elements start, or `None` when the text has
    /// fewer elements.
    fn trailing_elements_start(&self, mut count: usize) -> Option<usize> {
        let mut i = self.len();
        while i > 0 {
            i -= 1;
            if self.at(i) == b'/' {
                count -= 1;
                if count == 0 {
                    return Some(i + 1);
                }
            }
        }
        (count == 1).then_some(0)
    }
}

/// Matches `pattern` against the part of `text` that `anchor` selects,
/// taking its steps from `budget`; when the budget runs out the answer is
/// no match (and the budget is left at 0).
pub(crate) fn wildmatch_joined(
    pattern: &[u8],
    text: &Joined<'_>,
    anchor: Anchor,
    budget: &mut u32,
) -> bool {
    let start = match anchor {
        Anchor::TrailingElements(0) => return false,
        Anchor::TrailingElements(n) => match text.trailing_elements_start(n) {
            Some(start) => start,
            None => return false,
        },
        Anchor::Whole | Anchor::AnySlash => 0,
    };
    let mut outcome = match_from(pattern, text, start, budget);
    if outcome == Outcome::Match || anchor != Anchor::AnySlash || outcome == Outcome::AbortAll {
        return outcome == Outcome::Match;
    }
    // Retry just after each slash; a result other than a plain failure means
    // no later start can do better.
    for i in start..text.len() {
        if text.at(i) != b'/' {
            continue;
        }
        outcome = match_from(pattern, text, i + 1, budget);
        if outcome != Outcome::NoMatch && outcome != Outcome::AbortToStarStar {
            break;
        }
    }
    outcome == Outcome::Match
}

/// Compares `literal` byte for byte with the part of `text` that `anchor`
/// selects (`AnySlash` is not used for literals and is taken as `Whole`),
/// taking a step from `budget` per byte compared.
pub(crate) fn litmatch_joined(
    literal: &[u8],
    text: &Joined<'_>,
    anchor: Anchor,
    budget: &mut u32,
) -> bool {
    let start = match anchor {
        Anchor::TrailingElements(0) => return false,
        Anchor::TrailingElements(n) => match text.trailing_elements_start(n) {
            Some(start) => start,
            None => return false,
        },
        Anchor::Whole | Anchor::AnySlash => 0,
    };
    if text.len() - start != literal.len() {
        return false;
    }
    let cost = u32::try_from(literal.len()).unwrap_or(u32::MAX);
    if *budget < cost {
        *budget = 0;
        return false;
    }
    *budget -= cost;
    literal
        .iter()
        .enumerate()
        .all(|(k, &b)| text.at(start + k) == b)
}

/// The result of one matching attempt, with rsync's two ways of saying that
/// retrying from a later position cannot help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Match,
    NoMatch,
    /// The text ran out (or the budget did): nothing later can match.
    AbortAll,
    /// A single `*` met a slash: only an enclosing `**` may try further on.
    AbortToStarStar,
}

/// The pattern byte at `i`, or 0 past its end (patterns never hold a NUL,
/// so 0 marks the end the way the C string's terminator does).
fn pat_at(pattern: &[u8], i: usize) -> u8 {
    pattern.get(i).copied().unwrap_or(0)
}

fn match_from(pattern: &[u8], text: &Joined<'_>, mut ti: usize, budget: &mut u32) -> Outcome {
    let len = text.len();
    let mut pi = 0;
    while pi < pattern.len() {
        if *budget == 0 {
            return Outcome::AbortAll;
        }
        *budget -= 1;
        let pc = pattern[pi];
        if ti >= len && pc != b'*' {
            return Outcome::AbortAll;
        }
        match pc {
            b'*' => return match_star(pattern, pi, text, ti, budget),
            b'?' => {
                if text.at(ti) == b'/' {
                    return Outcome::NoMatch;
                }
            }
            b'[' => match match_class(pattern, pi, text.at(ti)) {
                Ok(next) => pi = next,
                Err(outcome) => return outcome,
            },
            b'\\' => {
                pi += 1;
                // A trailing backslash compares with the end marker, which
                // no text byte equals.
                if text.at(ti) != pat_at(pattern, pi) {
                    return Outcome::NoMatch;
                }
            }
            literal => {
                if text.at(ti) != literal {
                    return Outcome::NoMatch;
                }
            }
        }
        pi += 1;
        ti += 1;
    }
    if ti < len {
        Outcome::NoMatch
    } else {
        Outcome::Match
    }
}

/// Matches a star group starting at `pattern[pi]` and everything after it.
fn match_star(
    pattern: &[u8],
    mut pi: usize,
    text: &Joined<'_>,
    mut ti: usize,
    budget: &mut u32,
) -> Outcome {
    let first = pi;
    while pi < pattern.len() && pattern[pi] == b'*' {
        pi += 1;
    }
    let crosses_slashes = pi - first > 1;
    let rest = &pattern[pi..];
    if rest.is_empty() {
        return if crosses_slashes || !text.has_slash_from(ti) {
            Outcome::Match
        } else {
            Outcome::NoMatch
        };
    }
    while ti < text.len() {
        if *budget == 0 {
            return Outcome::AbortAll;
        }
        *budget -= 1;
        let outcome = match_from(rest, text, ti, budget);
        if outcome != Outcome::NoMatch {
            if !crosses_slashes || outcome != Outcome::AbortToStarStar {
                return outcome;
            }
        } else if !crosses_slashes && text.at(ti) == b'/' {
            return Outcome::AbortToStarStar;
        }
        ti += 1;
    }
    Outcome::AbortAll
}

/// Matches the class opening at `pattern[open]` against `byte`; on success
/// returns the index of the class's closing `]`.
fn match_class(pattern: &[u8], open: usize, byte: u8) -> Result<usize, Outcome> {
    let mut pi = open + 1;
    let mut pc = pat_at(pattern, pi);
    if pc == b'^' {
        pc = b'!';
    }
    let negated = pc == b'!';
    if negated {
        pi += 1;
        pc = pat_at(pattern, pi);
    }
    let mut prev: u8 = 0;
    let mut matched = false;
    // The first member may be `]` itself, so the end test comes after it.
    loop {
        if pc == 0 {
            return Err(Outcome::AbortAll);
        }
        if pc == b'\\' {
            pi += 1;
            pc = pat_at(pattern, pi);
            if pc == 0 {
                return Err(Outcome::AbortAll);
            }
            matched |= byte == pc;
        } else if pc == b'-'
            && prev != 0
            && pat_at(pattern, pi + 1) != 0
            && pat_at(pattern, pi + 1) != b']'
        {
            pi += 1;
            let mut high = pat_at(pattern, pi);
            if high == b'\\' {
                pi += 1;
                high = pat_at(pattern, pi);
                if high == 0 {
                    return Err(Outcome::AbortAll);
                }
            }
            matched |= prev <= byte && byte <= high;
            // A range cannot be the low end of another range.
            pc = 0;
        } else if pc == b'[' && pat_at(pattern, pi + 1) == b':' {
            let name_start = pi + 2;
            let mut close = name_start;
            while pat_at(pattern, close) != 0 && pat_at(pattern, close) != b']' {
                close += 1;
            }
            if pat_at(pattern, close) == 0 {
                return Err(Outcome::AbortAll);
            }
            if close == name_start || pattern[close - 1] != b':' {
                // Not a `[:name:]`: the `[` is an ordinary member and
                // parsing resumes at the `:`.
                matched |= byte == b'[';
            } else {
                match posix_class(&pattern[name_start..close - 1], byte) {
                    Some(is_member) => matched |= is_member,
                    None => return Err(Outcome::AbortAll),
                }
                pi = close;
                pc = 0;
            }
        } else {
            matched |= byte == pc;
        }
        prev = pc;
        pi += 1;
        pc = pat_at(pattern, pi);
        if pc == b']' {
            break;
        }
    }
    if matched == negated || byte == b'/' {
        Err(Outcome::NoMatch)
    } else {
        Ok(pi)
    }
}

/// Whether `byte` belongs to the POSIX class `name` (C-locale meanings), or
/// `None` for a name that is no class.
fn posix_class(name: &[u8], byte: u8) -> Option<bool> {
    let c = byte;
    Some(match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c.is_ascii_control(),
        b"digit" => c.is_ascii_digit(),
        b"graph" => c.is_ascii_graphic(),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => c.is_ascii_graphic() || c == b' ',
        b"punct" => c.is_ascii_punctuation(),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wm(p: &str, t: &str) -> bool {
        wildmatch(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn patterns_beyond_the_star_group_limit_match_nothing() {
        let at_limit = "*a".repeat(MAX_STAR_GROUPS);
        let text = "a".repeat(MAX_STAR_GROUPS);
        assert!(wm(&at_limit, &text));
        let beyond = "*a".repeat(MAX_STAR_GROUPS + 1);
        assert!(!wm(&beyond, &"a".repeat(MAX_STAR_GROUPS + 1)));
    }

    #[test]
    fn literals_and_question_marks() {
        assert!(wm("foo", "foo"));
        assert!(!wm("foo", "fo"));
        assert!(!wm("foo", "fooo"));
        assert!(wm("f?o", "fxo"));
        assert!(!wm("f?o", "f/o"));
        assert!(!wm("???", "ab"));
        assert!(wm("", ""));
        assert!(!wm("", "a"));
    }

    #[test]
    fn single_star_stays_within_a_component() {
        assert!(wm("*", "anything"));
        assert!(wm("*", ""));
        assert!(!wm("*", "a/b"));
        assert!(wm("*.o", "main.o"));
        assert!(!wm("*.o", "dir/main.o"));
        assert!(wm("a*/b", "abc/b"));
        assert!(!wm("a*/b", "a/x/b"));
        assert!(wm("*/*", "a/b"));
        assert!(!wm("*/*", "a/b/c"));
        assert!(wm("a*b*c", "aXbYc"));
        assert!(!wm("a*b*c", "aXbY/c"));
    }

    #[test]
    fn double_star_crosses_slashes() {
        assert!(wm("**", "a/b/c"));
        assert!(wm("a/**", "a/b/c"));
        assert!(wm("a/**", "a/"));
        assert!(!wm("a/**", "a"));
        assert!(wm("**/c", "a/b/c"));
        assert!(!wm("**/c", "c"));
        assert!(wm("a/**/c", "a/b/x/c"));
        assert!(!wm("a/**/c", "a/c"));
        assert!(wm("a**c", "ab/xc"));
        // Three or more stars behave as two.
        assert!(wm("a***", "a/b/c"));
        assert!(wm("x/***", "x/"));
        assert!(!wm("x/***", "x"));
    }

    #[test]
    fn stars_mixed_with_slashes_backtrack_correctly() {
        // The single star must give up at the slash so that ** can move on.
        assert!(wm("**/*.c", "src/lib/x.c"));
        assert!(!wm("**/*.c", "src/lib/x.c/y"));
        assert!(wm("**a*/b", "xx/ya/aZ/b"));
        assert!(wm("*/**/z", "a/b/c/z"));
        assert!(!wm("*/**/z", "a/z"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        assert!(wm("[abc]", "b"));
        assert!(!wm("[abc]", "d"));
        assert!(wm("[a-c]x", "bx"));
        assert!(!wm("[a-c]x", "dx"));
        assert!(wm("[!a-c]", "d"));
        assert!(wm("[^a-c]", "d"));
        assert!(!wm("[!a-c]", "a"));
        // `]` first is a member; `-` first or last is a member.
        assert!(wm("[]x]", "]"));
        assert!(wm("[!]x]", "a"));
        assert!(!wm("[!]x]", "]"));
        assert!(wm("[-a]", "-"));
        assert!(wm("[a-]", "-"));
        // After a range, `-` cannot start another range.
        assert!(wm("[a-c-e]", "-"));
        assert!(!wm("[a-c-e]", "d"));
        // Escapes inside a class, also as range ends.
        assert!(wm("[\\]]", "]"));
        assert!(wm("[\\a-\\c]", "b"));
        // A class never matches a slash, even negated.
        assert!(!wm("a[!x]b", "a/b"));
        assert!(!wm("a[/]b", "a/b"));
    }

    #[test]
    fn posix_classes() {
        assert!(wm("[[:alpha:]]", "q"));
        assert!(!wm("[[:alpha:]]", "1"));
        assert!(wm("[[:digit:][:upper:]]", "7"));
        assert!(wm("[[:digit:][:upper:]]", "Q"));
        assert!(!wm("[[:digit:][:upper:]]", "q"));
        assert!(wm("[[:space:]]", "\t"));
        assert!(wm("[[:punct:]]", "!"));
        assert!(wm("[[:xdigit:]]", "F"));
        assert!(!wm("[[:xdigit:]]", "g"));
        assert!(!wm("[[:alpha:]]", "\u{e9}"));
        // An unknown class name makes the whole match fail.
        assert!(!wm("[[:bogus:]]", "a"));
        assert!(!wm("*[[:bogus:]]", "aa"));
        // `[:` without `:]` is an ordinary `[` followed by members.
        assert!(wm("[[:a]", ":"));
        assert!(wm("[[:a]", "["));
        assert!(!wm("[[:a]", "b"));
    }

    #[test]
    fn malformed_patterns_never_match() {
        assert!(!wm("[abc", "a"));
        assert!(!wm("a[", "a["));
        assert!(!wm("foo\\", "foo\\"));
        assert!(!wm("foo\\", "foo"));
    }

    #[test]
    fn backslash_escapes_wildcards() {
        assert!(wm("\\*", "*"));
        assert!(!wm("\\*", "x"));
        assert!(wm("a\\?", "a?"));
        assert!(wm("\\[x]", "[x]"));
        assert!(wm("\\a", "a"));
    }

    fn joined(pattern: &[u8], text: &Joined<'_>, anchor: Anchor) -> bool {
        let mut budget = MATCH_STEP_BUDGET;
        wildmatch_joined(pattern, text, anchor, &mut budget)
    }

    fn literal(literal: &[u8], text: &Joined<'_>, anchor: Anchor) -> bool {
        let mut budget = MATCH_STEP_BUDGET;
        litmatch_joined(literal, text, anchor, &mut budget)
    }

    #[test]
    fn joined_texts_match_as_one_string() {
        let text = Joined::new(&[b"dir/sub", b"/", b"file.c"]);
        assert!(joined(b"dir/*/file.c", &text, Anchor::Whole));
        assert!(joined(b"*/file.c", &text, Anchor::TrailingElements(2)));
        assert!(!joined(b"dir/*.c", &text, Anchor::TrailingElements(2)));
        assert!(joined(b"sub/**", &text, Anchor::AnySlash));
        assert!(!joined(b"ub/**", &text, Anchor::AnySlash));
        assert!(!joined(b"a/b/c/d", &text, Anchor::TrailingElements(4)));
        assert!(literal(b"sub/file.c", &text, Anchor::TrailingElements(2)));
        assert!(literal(b"dir/sub/file.c", &text, Anchor::Whole));
        assert!(!literal(b"dir/sub/file", &text, Anchor::Whole));
        assert!(literal(
            b"dir/sub/file.c",
            &text,
            Anchor::TrailingElements(3)
        ));
    }

    #[test]
    fn running_out_of_budget_means_no_match() {
        let text = Joined::new(&[b"aaaa/bbbb"]);
        let mut budget = 3;
        assert!(!wildmatch_joined(b"**b", &text, Anchor::Whole, &mut budget));
        assert_eq!(budget, 0);
        let mut budget = 100;
        assert!(wildmatch_joined(b"**b", &text, Anchor::Whole, &mut budget));
        assert!(budget > 0);
        let mut budget = 8;
        assert!(!litmatch_joined(
            b"aaaa/bbbb",
            &text,
            Anchor::Whole,
            &mut budget
        ));
        assert_eq!(budget, 0);
    }

    #[test]
    fn star_groups_are_counted() {
        assert_eq!(star_groups(b"a"), 0);
        assert_eq!(star_groups(b"*"), 1);
        assert_eq!(star_groups(b"***"), 1);
        assert_eq!(star_groups(b"*a**b*"), 3);
    }

    #[test]
    fn hostile_patterns_finish_quickly() {
        let text = "a".repeat(4000);
        let mut pattern = String::new();
        for _ in 0..200 {
            pattern.push_str("*a");
        }
        pattern.push('b');
        assert!(!wm(&pattern, &text));
        let mut pattern = String::new();
        for _ in 0..100 {
            pattern.push_str("**a*/");
        }
        let text = "a/".repeat(2000) + "x";
        assert!(!wm(&pattern, &text));
        // The same pattern does match where it can.
        assert!(wm(&pattern, &"a/".repeat(100)));
    }

    /// One element of a generated pattern, rendered to rsync syntax for the
    /// matcher and interpreted directly by the reference below.
    #[derive(Clone, Copy, Debug)]
    enum Tok {
        Byte(u8),
        Escaped(u8),
        Any,
        Star,
        StarStar,
        Class(&'static [u8], bool),
    }

    fn render(toks: &[Tok]) -> Vec<u8> {
        let mut out = Vec::new();
        for tok in toks {
            match *tok {
                Tok::Byte(b) => out.push(b),
                Tok::Escaped(b) => out.extend_from_slice(&[b'\\', b]),
                Tok::Any => out.push(b'?'),
                Tok::Star => out.push(b'*'),
                Tok::StarStar => out.extend_from_slice(b"**"),
                Tok::Class(members, negated) => {
                    out.push(b'[');
                    if negated {
                        out.push(b'!');
                    }
                    out.extend_from_slice(members);
                    out.push(b']');
                }
            }
        }
        out
    }

    /// Plain backtracking over the documented meaning of each element.
    fn reference(toks: &[Tok], text: &[u8]) -> bool {
        let Some((first, rest)) = toks.split_first() else {
            return text.is_empty();
        };
        let one = |ok: bool| ok && reference(rest, &text[1..]);
        match *first {
            Tok::Byte(b) | Tok::Escaped(b) => !text.is_empty() && one(text[0] == b),
            Tok::Any => !text.is_empty() && one(text[0] != b'/'),
            Tok::Class(members, negated) => {
                !text.is_empty() && one(text[0] != b'/' && members.contains(&text[0]) != negated)
            }
            Tok::Star => {
                let run = text.iter().take_while(|&&b| b != b'/').count();
                (0..=run).any(|k| reference(rest, &text[k..]))
            }
            Tok::StarStar => (0..=text.len()).any(|k| reference(rest, &text[k..])),
        }
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn random_tok(rng: &mut Rng) -> Tok {
        const BYTES: &[u8] = b"ab/";
        match rng.below(10) {
            0..=3 => Tok::Byte(BYTES[rng.below(3)]),
            4 => Tok::Escaped(b"a*?"[rng.below(3)]),
            5 => Tok::Any,
            6 | 7 => Tok::Star,
            8 => Tok::StarStar,
            _ => Tok::Class([&b"a"[..], b"ab", b"/b"][rng.below(3)], rng.below(2) == 0),
        }
    }

    #[test]
    fn agrees_with_plain_backtracking() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let toks: Vec<Tok> = (0..rng.below(7)).map(|_| random_tok(&mut rng)).collect();
            // Two adjacent star tokens would render as one longer run.
            if toks.windows(2).any(|w| {
                matches!(w[0], Tok::Star | Tok::StarStar)
                    && matches!(w[1], Tok::Star | Tok::StarStar)
            }) {
                continue;
            }
            let text: Vec<u8> = (0..rng.below(8)).map(|_| b"ab/"[rng.below(3)]).collect();
            let pattern = render(&toks);
            assert_eq!(
                wildmatch(&pattern, &text),
                reference(&toks, &text),
                "pattern {:?} text {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn escaped_stars_are_no_star_groups() {
        assert_eq!(star_groups(b"a*b**c"), 2);
        assert_eq!(star_groups(b"\\*\\*x*"), 1);
        let literal = b"\\*".repeat(MAX_STAR_GROUPS + 1);
        let text = vec![b'*'; MAX_STAR_GROUPS + 1];
        assert!(wildmatch(&literal, &text));
    }
}
