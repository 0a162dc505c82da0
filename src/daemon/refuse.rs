//! A module's `refuse options`: which client options it turns away, decided
//! the way rsyncd decides (rsync: options.c set_refuse_options, and the
//! implied-option checks of rsync: options.c parse_arguments).
//!
//! Owns the matching of rules to the rows of the option table and the
//! refusal message. It must not parse arguments ([`crate::protocol::options`]
//! does, and records what was given) nor talk to the client.
//!
//! Rules are matched with wildmatch against each option's long name and its
//! short letter; `!` accepts again what earlier rules refused; `a` and
//! `archive` stand for `-a` and every option it implies. A rule without
//! wildcards names one option; a few options (`-e`, `-0`, `-s`, `-n`,
//! `--iconv`, `--checksum-seed`, ...: the table's exact-only rows) only
//! answer to such exact rules.
//! Options implied by others are refused with them: any `--delete-*` implies
//! `--delete`, `--append` implies `--inplace`, which implies `--partial`.

use crate::protocol::options::{lookup, Compression, MissingArgs, OptionError, Options, OPTIONS};
use crate::protocol::wildmatch::wildmatch;
use std::collections::HashSet;

/// Refused whatever the module says, after its rules: upserv has no
/// `charset`, never sends what a device reads as file contents (rsyncd
/// refuses that unless a module accepts it), and a client never chooses the
/// daemon's log file.
const ALWAYS_REFUSED: &[&str] = &[
    "iconv",
    "copy-devices",
    "write-devices",
    "log-file*",
    "insecure-links",
];

/// What `-a` and `archive` stand for in a rule.
const ARCHIVE_RULE: &str = "[ardlptgoD]";

/// The options that say when to delete; each implies `--delete`, as
/// `--delete-excluded` does.
const DELETE_WHEN: &[&str] = &[
    "del",
    "delete-before",
    "delete-during",
    "delete-delay",
    "delete-after",
];

/// The options a module refuses, by [`ClientOption::name`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Refusals {
    refused: HashSet<&'static str>,
}

impl Refusals {
    /// The refusals of a module whose `refuse options` are `rules`.
    pub(crate) fn new(rules: &[String]) -> Refusals {
        let mut refusals = Refusals::default();
        for rule in rules {
            match rule.strip_prefix('!').filter(|r| !r.is_empty()) {
                Some(accepted) => refusals.apply(accepted, true),
                None => refusals.apply(rule, false),
            }
        }
        for rule in ALWAYS_REFUSED {
            refusals.apply(rule, false);
        }
        refusals
    }

    fn apply(&mut self, rule: &str, accept: bool) {
        let (pattern, wild) = if rule == "a" || rule == "archive" {
            (ARCHIVE_RULE, true)
        } else {
            (rule, rule.contains(['*', '?', '[']))
        };
        for option in OPTIONS {
            let named = option
                .long()
                .is_some_and(|l| wildmatch(pattern.as_bytes(), l.as_bytes()))
                || option
                    .letter
                    .is_some_and(|c| wildmatch(pattern.as_bytes(), &[c]));
            if !named || (wild && option.exact_only) {
                continue;
            }
            if accept {
                self.refused.remove(option.name);
            } else {
                self.refused.insert(option.name);
            }
            if !wild {
                break;
            }
        }
    }

    fn is_refused(&self, id: &str) -> bool {
        self.refused.contains(id)
    }

    /// Whether the module takes `opts`; if not, the message rsyncd gives
    /// for the first refused option, given or implied.
    pub(crate) fn check(&self, opts: &Options) -> Result<(), OptionError> {
        if let Some(option) = opts.given.iter().find(|o| self.is_refused(o.name)) {
            return Err(option.refusal());
        }
        let given = |name: &str| opts.was_given(name);
        let when_given = DELETE_WHEN.iter().any(|w| given(w));
        let deleting = when_given
            || given("delete")
            || given("delete-excluded")
            || opts.missing_args == MissingArgs::Delete;
        let implied = [
            ("compress", opts.compression != Compression::None),
            ("delete", deleting),
            ("inplace", opts.append > 0),
            (
                "partial",
                opts.inplace || opts.append > 0 || given("partial-dir"),
            ),
        ];
        if let Some((name, _)) = implied
            .iter()
            .find(|(name, implied)| *implied && self.is_refused(name))
        {
            return Err(refusal_of(name));
        }
        // `--delete` without a when: rsyncd picks before or during, and
        // complains only when both are refused.
        if deleting
            && !when_given
            && self.is_refused("delete-before")
            && self.is_refused("delete-during")
        {
            return Err(refusal_of("delete-before"));
        }
        Ok(())
    }
}

/// [`crate::protocol::options::ClientOption::refusal`] of the option called `name`, one of this module's constants.
fn refusal_of(name: &str) -> OptionError {
    match lookup(name) {
        Some((_, option)) => option.refusal(),
        None => OptionError(format!("The server is configured to refuse --{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        let mut all = vec!["--server", "--sender"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[".", "m/"]);
        let v: Vec<Vec<u8>> = all.iter().map(|a| a.as_bytes().to_vec()).collect();
        Options::parse(&v).expect("valid arguments")
    }

    fn check(rules: &str, args: &[&str]) -> Result<(), String> {
        let rules: Vec<String> = rules.split_whitespace().map(str::to_owned).collect();
        Refusals::new(&rules).check(&options(args)).map_err(|e| e.0)
    }

    #[test]
    fn no_rules_refuse_nothing_a_pull_sends() {
        assert_eq!(check("", &["-logDtprcze.iLsfxC", "--delete"]), Ok(()));
    }

    #[test]
    fn a_rule_names_an_option_by_long_name_or_letter() {
        let refused = Err("The server is configured to refuse --checksum (-c)".into());
        assert_eq!(check("c", &["-rc"]), refused);
        assert_eq!(check("checksum", &["-rc"]), refused);
        assert_eq!(check("c", &["-rt"]), Ok(()));
    }

    #[test]
    fn wildcards_and_negation_apply_in_order() {
        assert!(check("delete-*", &["-r", "--delete-after"]).is_err());
        assert_eq!(
            check("delete-* !delete-after", &["-r", "--delete-after"]),
            Ok(())
        );
        assert!(check("delete-* !delete-after", &["-r", "--delete-during"]).is_err());
        // A wildcard never reaches an exact-only option.
        assert_eq!(check("*", &["-n"]), Ok(()));
        assert!(check("*", &["-nr"]).is_err());
    }

    #[test]
    fn archive_stands_for_the_options_it_implies() {
        assert_eq!(
            check("a", &["-logDtpr"]),
            Err("The server is configured to refuse --links (-l)".into())
        );
        assert_eq!(
            check("D", &["-rD"]),
            Err("The server is configured to refuse --(null) (-D)".into())
        );
    }

    #[test]
    fn implied_options_are_refused_with_their_implier() {
        let delete = Err("The server is configured to refuse --delete".to_string());
        assert_eq!(check("delete", &["-r", "--delete-after"]), delete);
        assert_eq!(check("delete", &["-r", "--delete-excluded"]), delete);
        assert_eq!(check("delete", &["-r", "--delete-missing-args"]), delete);
        assert_eq!(
            check("compress", &["-r", "--new-compress"]),
            Err("The server is configured to refuse --compress (-z)".into())
        );
        assert_eq!(
            check("partial", &["-r", "--append"]),
            Err("The server is configured to refuse --partial".into())
        );
        assert_eq!(
            check("inplace", &["-r", "--append"]),
            Err("The server is configured to refuse --inplace".into())
        );
    }

    #[test]
    fn delete_without_a_when_needs_before_or_during() {
        assert_eq!(check("delete-before", &["-r", "--delete"]), Ok(()));
        assert_eq!(
            check("delete-before delete-during", &["-r", "--delete"]),
            Err("The server is configured to refuse --delete-before".into())
        );
    }

    #[test]
    fn iconv_and_copy_devices_are_refused_even_when_accepted() {
        assert_eq!(
            check("!iconv", &["-r", "--iconv=utf8"]),
            Err("The server is configured to refuse --iconv".into())
        );
        assert_eq!(
            check("!copy-devices", &["-r", "--copy-devices"]),
            Err("The server is configured to refuse --copy-devices".into())
        );
    }
}
