//! Splits the text of an rsyncd.conf-syntax file into logical lines: section
//! headers, `name = value` parameters and `&directive value` lines, each with
//! the number of the physical line it starts on.
//!
//! Follows rsync: params.c where it matters for real files:
//! - a comment is a line whose first non-blank character is `#` or `;`; a `#`
//!   anywhere else is part of the value, and a comment never continues;
//! - a line whose last non-blank character is `\` continues on the next line
//!   (the backslash and anything after it are dropped, the blanks before it
//!   and the next line's leading blanks are kept);
//! - in section and parameter names every run of blanks counts as one space;
//!   values are trimmed, their inner blanks kept, and carriage returns dropped;
//! - whatever follows the `]` of a section header is ignored.
//!
//! This module only knows the shape of lines. It must not know any parameter
//! names or values: that is the parser's job.

/// One logical line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    /// The physical line (1-based) the logical line starts on.
    pub(crate) number: u32,
    pub(crate) item: Item,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    /// `[name]`; `rest` is what followed the `]` on the line, trimmed.
    Section { name: String, rest: String },
    /// `name = value`.
    Param { name: String, value: String },
    /// `&name value` (rsync's `&include` and `&merge`), `=` optional.
    Directive { name: String, value: String },
}

/// A line that cannot be understood: its number and what is wrong.
pub(super) type LexError = (u32, String);

/// Splits `text` into logical lines, skipping blank lines and comments.
pub(super) fn lex(text: &str) -> Result<Vec<Line>, LexError> {
    let physical: Vec<&str> = text.lines().collect();
    let mut lines = Vec::new();
    let mut next = 0;
    while next < physical.len() {
        let start = next;
        let first = physical[start].trim_start();
        next += 1;
        if first.is_empty() || first.starts_with(['#', ';']) {
            continue;
        }
        let number = line_number(start);
        let item = if first.starts_with('[') && first.contains(']') {
            // A complete header never continues: rsync ignores the rest of it.
            section(first)
        } else {
            let joined = join_continued(first, &physical, &mut next);
            if joined.starts_with('[') {
                if !joined.contains(']') {
                    return Err((number, "section header without a closing `]`".into()));
                }
                section(&joined)
            } else if joined.starts_with('&') {
                directive(&joined)
            } else {
                param(&joined).ok_or_else(|| {
                    (
                        number,
                        format!(
                            "expected `name = value` or `[module]`, found `{}`",
                            joined.trim()
                        ),
                    )
                })?
            }
        };
        lines.push(Line { number, item });
    }
    Ok(lines)
}

/// The 1-based number of the physical line at index `index`. Files are
/// bounded far below 2^32 lines, so the saturation never shows.
fn line_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Joins `first` with the lines after it while the text so far ends in a
/// backslash, advancing `next` past the lines consumed.
fn join_continued(first: &str, physical: &[&str], next: &mut usize) -> String {
    let mut joined = first.to_owned();
    while let Some(kept) = joined.trim_end().strip_suffix('\\') {
        let kept_len = kept.len();
        joined.truncate(kept_len);
        match physical.get(*next) {
            Some(line) => {
                joined.push_str(line);
                *next += 1;
            }
            None => break,
        }
    }
    joined
}

/// A header `[name]...` (known to contain `]`).
fn section(text: &str) -> Item {
    let inner = &text[1..];
    let close = inner.find(']').unwrap_or(inner.len());
    Item::Section {
        name: collapse_blanks(&inner[..close]),
        rest: inner.get(close + 1..).unwrap_or("").trim().to_owned(),
    }
}

/// A directive `&name value` or `&name = value`: the name ends at the first
/// blank.
fn directive(text: &str) -> Item {
    let text = text.trim();
    let (name, value) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let value = value.trim_start();
    let value = value.strip_prefix('=').unwrap_or(value);
    Item::Directive {
        name: name.to_owned(),
        value: clean_value(value),
    }
}

/// A parameter `name = value`; `None` when there is no `=` or no name.
fn param(text: &str) -> Option<Item> {
    let (name, value) = text.split_once('=')?;
    let name = collapse_blanks(name);
    if name.is_empty() {
        return None;
    }
    Some(Item::Param {
        name,
        value: clean_value(value),
    })
}

/// Trims a value and drops carriage returns, as rsync: params.c does.
fn clean_value(value: &str) -> String {
    value.trim().replace('\r', "")
}

/// Trims a name and turns every run of blanks inside it into one space.
pub(super) fn collapse_blanks(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_at(number: u32, name: &str, value: &str) -> Line {
        Line {
            number,
            item: Item::Param {
                name: name.into(),
                value: value.into(),
            },
        }
    }

    fn section_at(number: u32, name: &str, rest: &str) -> Line {
        Line {
            number,
            item: Item::Section {
                name: name.into(),
                rest: rest.into(),
            },
        }
    }

    #[test]
    fn sections_params_and_comments() {
        let text = "# comment\n  ; another\n\nport = 873\n[ my   module ]  # trailing\n\tpath  =  /srv/x  \n";
        assert_eq!(
            lex(text).unwrap(),
            [
                param_at(4, "port", "873"),
                section_at(5, "my module", "# trailing"),
                param_at(6, "path", "/srv/x"),
            ]
        );
    }

    #[test]
    fn hash_inside_a_value_is_kept_and_only_the_first_equals_splits() {
        let text = "comment = build #812; a=b [x]\n";
        assert_eq!(
            lex(text).unwrap(),
            [param_at(1, "comment", "build #812; a=b [x]")]
        );
    }

    #[test]
    fn names_collapse_blanks() {
        let text = "  max \t  connections=4\n";
        assert_eq!(lex(text).unwrap(), [param_at(1, "max connections", "4")]);
    }

    #[test]
    fn continuation_keeps_inner_blanks_and_reports_the_first_line() {
        // By hand from rsync: params.c: the blank before the backslash stays, the
        // next line's leading blanks stay, the backslash goes.
        let text = "x = 1\nexclude = a \\\n   b\\  \nc\ny = 2\n";
        assert_eq!(
            lex(text).unwrap(),
            [
                param_at(1, "x", "1"),
                param_at(2, "exclude", "a    bc"),
                param_at(5, "y", "2")
            ]
        );
    }

    #[test]
    fn continuation_swallows_a_following_comment_line_but_a_comment_never_continues() {
        let text = "a = 1 \\\n# not a comment\n# comment \\\nb = 2\n";
        assert_eq!(
            lex(text).unwrap(),
            [param_at(1, "a", "1 # not a comment"), param_at(4, "b", "2")]
        );
    }

    #[test]
    fn continued_names_and_headers() {
        let text = "max \\\n connections = 3\n[long \\\n name]\n";
        assert_eq!(
            lex(text).unwrap(),
            [
                param_at(1, "max connections", "3"),
                section_at(3, "long name", "")
            ]
        );
    }

    #[test]
    fn a_complete_header_does_not_continue() {
        let text = "[m] \\\npath = /p\n";
        assert_eq!(
            lex(text).unwrap(),
            [section_at(1, "m", "\\"), param_at(2, "path", "/p")]
        );
    }

    #[test]
    fn backslash_on_the_last_line_is_dropped() {
        assert_eq!(lex("a = b \\").unwrap(), [param_at(1, "a", "b")]);
    }

    #[test]
    fn carriage_returns_and_empty_values() {
        let text = "comment =\r\npath = /a\r\n";
        assert_eq!(
            lex(text).unwrap(),
            [param_at(1, "comment", ""), param_at(2, "path", "/a")]
        );
    }

    #[test]
    fn directives_split_at_the_first_blank() {
        let text = "&include /etc/rsyncd.d\n&merge = /etc/x.inc\n";
        let lines = lex(text).unwrap();
        assert_eq!(
            lines[0].item,
            Item::Directive {
                name: "&include".into(),
                value: "/etc/rsyncd.d".into()
            }
        );
        assert_eq!(
            lines[1].item,
            Item::Directive {
                name: "&merge".into(),
                value: "/etc/x.inc".into()
            }
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        assert_eq!(lex("a = 1\njunk here\n").unwrap_err().0, 2);
        assert_eq!(lex("\n= value\n").unwrap_err().0, 2);
        assert_eq!(lex("x = 1\n[unclosed\n").unwrap_err().0, 2);
    }
}
