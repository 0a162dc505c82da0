//! The syntax of single values, shared by the configuration file and the
//! command line: sizes, booleans, whole numbers, seconds, the list forms
//! rsyncd uses, and build names.
//!
//! Functions here know nothing of which parameter or option a value belongs
//! to; callers put that context in front of the [`ValueError`] message.

use std::fmt;

/// The longest timeout upserv accepts, in seconds (about 31 years). Far above
/// any sensible value, yet small enough that adding it to an `Instant` can
/// never overflow.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 1_000_000_000;

/// The suffixes `parse_size` knows, smallest first, with their multipliers.
const SIZE_UNITS: [(&str, u64); 4] = [
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
];

/// A value that does not have the expected form. The message says what was
/// expected and quotes what was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// Parses a size in bytes: plain digits, or digits followed by `K`, `M`, `G`
/// or `T` (binary multiples: `1K` is 1024), optionally followed by `B` or
/// `iB`, in any case, with optional spaces before the unit. `16G`, `500MiB`,
/// `1 tb` and `1048576` are all sizes; fractions are not.
pub(crate) fn parse_size(text: &str) -> Result<u64, ValueError> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let bad = || {
        ValueError(format!(
            "`{text}` is not a size (expected plain bytes or a whole number with K, M, G or T, e.g. 500M, 16G)"
        ))
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let multiplier = size_multiplier(unit.trim_start()).ok_or_else(bad)?;
    let too_large = || ValueError(format!("`{text}` is too large (more than 2^64 bytes)"));
    let count: u64 = digits.parse().map_err(|_| too_large())?;
    count.checked_mul(multiplier).ok_or_else(too_large)
}

/// The multiplier of a size unit such as `G`, `gb` or `GiB`; `None` when the
/// unit is not one `parse_size` knows.
fn size_multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_uppercase();
    if unit.is_empty() || unit == "B" {
        return Some(1);
    }
    let prefix = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == prefix)
        .map(|&(_, multiplier)| multiplier)
}

/// Writes a size the way `parse_size` reads it back: the largest unit that
/// divides it exactly (`16G`, `1536K`), or plain bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .rev()
        .find(|&&(_, multiplier)| bytes != 0 && bytes.is_multiple_of(multiplier))
        .map(|&(name, multiplier)| format!("{}{}", bytes / multiplier, name))
        .unwrap_or_else(|| bytes.to_string())
}

/// Parses an rsyncd boolean: yes/no, true/false or 1/0, in any case.
pub(crate) fn parse_bool(text: &str) -> Result<bool, ValueError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(ValueError(format!(
            "`{}` is not a boolean (expected yes/no, true/false or 1/0)",
            text.trim()
        ))),
    }
}

/// Writes a boolean the way rsyncd.conf files usually do.
pub(crate) fn format_bool(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// Parses a whole number of 0 or more.
pub(crate) fn parse_whole(text: &str) -> Result<u64, ValueError> {
    let text = text.trim();
    let negative = text
        .strip_prefix('-')
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    if negative {
        return Err(ValueError(format!(
            "`{text}` is negative (expected a whole number of 0 or more)"
        )));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError(format!("`{text}` is not a whole number")));
    }
    text.parse()
        .map_err(|_| ValueError(format!("`{text}` is too large")))
}

/// Parses a number of seconds, at most [`MAX_TIMEOUT_SECS`].
pub(crate) fn parse_seconds(text: &str) -> Result<u64, ValueError> {
    let seconds = parse_whole(text)?;
    if seconds > MAX_TIMEOUT_SECS {
        return Err(ValueError(format!(
            "`{}` seconds is too long (at most {MAX_TIMEOUT_SECS})",
            text.trim()
        )));
    }
    Ok(seconds)
}

/// Splits a host list as rsyncd's `hosts allow`/`hosts deny` do: on spaces,
/// tabs and commas, dropping empty items.
pub(crate) fn split_hosts(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits a list as rsyncd's `auth users` does: on spaces and commas, or,
/// when the value starts with a comma, on commas only (so that an item may
/// hold a space); items are trimmed and empty ones dropped.
pub(crate) fn split_conf_list(text: &str) -> Vec<String> {
    let text = text.trim_start();
    match text.strip_prefix(',') {
        Some(rest) => rest
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
        None => split_hosts(text),
    }
}

/// Writes a list so that `split_conf_list` reads back the same items: with
/// the leading-comma form when an item holds a space.
pub(crate) fn format_conf_list(items: &[String]) -> String {
    if items.iter().any(|item| item.contains(char::is_whitespace)) {
        format!(", {}", items.join(", "))
    } else {
        items.join(", ")
    }
}

/// Splits a daemon `include`/`exclude` value into rules as rsyncd does: one
/// pattern per whitespace-separated word, where a word that is just `-` or
/// `+` is a prefix for the next word (kept as `- word` / `+ word`).
pub(crate) fn split_filter_words(text: &str) -> Result<Vec<String>, ValueError> {
    let mut rules = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-" || word == "+" {
            let pattern = words.next().ok_or_else(|| {
                ValueError(format!("`{word}` at the end has no pattern after it"))
            })?;
            rules.push(format!("{word} {pattern}"));
        } else {
            rules.push(word.to_owned());
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_spelling() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("16G"), Ok(17_179_869_184));
        assert_eq!(parse_size("16g"), Ok(17_179_869_184));
        assert_eq!(parse_size("16GB"), Ok(17_179_869_184));
        assert_eq!(parse_size("16GiB"), Ok(17_179_869_184));
        assert_eq!(parse_size("16gib"), Ok(17_179_869_184));
        assert_eq!(parse_size(" 500 M "), Ok(524_288_000));
        assert_eq!(parse_size("1T"), Ok(1_099_511_627_776));
        assert_eq!(parse_size("3k"), Ok(3072));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("256M"), Ok(268_435_456));
    }

    #[test]
    fn sizes_refuse_garbage_and_overflow() {
        for bad in [
            "", "G", "12Q", "1.5G", "-1", "12 G B", "1GiBB", "1iB", "0x10", "1 2",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        // 2^64 - 1 is the largest byte count; 2^24 T is exactly 2^64.
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("18446744073709551616").is_err());
        assert_eq!(parse_size("16777215T"), Ok((16_777_215u64) << 40));
        assert!(parse_size("16777216T").is_err());
        let message = parse_size("12Q").unwrap_err().to_string();
        assert!(message.contains("`12Q`"), "{message}");
    }

    #[test]
    fn sizes_format_to_what_they_parse_from() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(1024), "1K");
        assert_eq!(format_size(1536 * 1024), "1536K");
        assert_eq!(format_size(17_179_869_184), "16G");
        assert_eq!(format_size(1 << 40), "1T");
        for bytes in [0, 1, 1023, 1024, 1 << 30, (1 << 30) + 1, u64::MAX, 5 << 41] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }

    #[test]
    fn booleans() {
        for yes in ["yes", "YES", "True", "1", " yes "] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["no", "No", "FALSE", "0"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["", "y", "2", "on", "unset"] {
            assert!(parse_bool(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn whole_numbers_and_seconds() {
        assert_eq!(parse_whole("0"), Ok(0));
        assert_eq!(parse_whole(" 42 "), Ok(42));
        assert!(parse_whole("-1").unwrap_err().0.contains("negative"));
        assert!(parse_whole("4 # four").is_err());
        assert!(parse_whole("+4").is_err());
        assert!(parse_whole("-").is_err());
        assert!(parse_whole("99999999999999999999").is_err());
        assert_eq!(parse_seconds("600"), Ok(600));
        assert_eq!(parse_seconds("1000000000"), Ok(1_000_000_000));
        assert!(parse_seconds("1000000001").is_err());
    }

    #[test]
    fn host_lists_split_on_spaces_and_commas() {
        assert_eq!(
            split_hosts(" 10.0.0.0/8,192.168.1.1\t, fe80::%eth0/64  *.school.lan "),
            [
                "10.0.0.0/8",
                "192.168.1.1",
                "fe80::%eth0/64",
                "*.school.lan"
            ]
        );
        assert!(split_hosts(" , ").is_empty());
    }

    #[test]
    fn conf_lists_honour_the_leading_comma_form() {
        assert_eq!(
            split_conf_list("tridge, susan joe"),
            ["tridge", "susan", "joe"]
        );
        assert_eq!(
            split_conf_list(" , joe:deny, @Some Group:deny,, admin "),
            ["joe:deny", "@Some Group:deny", "admin"]
        );
        let items = split_conf_list(", @Some Group, bob");
        assert_eq!(split_conf_list(&format_conf_list(&items)), items);
        let plain = split_conf_list("a b");
        assert_eq!(format_conf_list(&plain), "a, b");
    }

    #[test]
    fn filter_words_keep_their_prefix() {
        assert_eq!(
            split_filter_words("*.tmp - /secret/*** + keep.txt  .git/").unwrap(),
            ["*.tmp", "- /secret/***", "+ keep.txt", ".git/"]
        );
        assert!(split_filter_words("").unwrap().is_empty());
        assert!(split_filter_words("a -").is_err());
    }
}
