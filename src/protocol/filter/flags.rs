//! The filter code's two flag sets, as types of their own so that one is
//! never passed for the other: [`RuleFlags`] (what a rule says, from its
//! text and what the list adds; rsync's FILTRULE_* bits under our own
//! names) and [`ParseFlags`] (how text is read, which depends on where it
//! comes from). The parser, the rules and the list all use them; this file
//! depends on none of them.

use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// Defines a set of flags `$name`, a `u32` newtype with `NONE`, `or`,
/// `any` and the bit operators, so that the two sets share one definition
/// and stay two types.
macro_rules! flag_set {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub(super) struct $name(u32);

        impl $name {
            pub(crate) const NONE: $name = $name(0);

            /// Both sets together (`|` for constants).
            pub(crate) const fn or(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }

            /// Whether any flag of `other` is set.
            pub(crate) fn any(self, other: $name) -> bool {
                self.0 & other.0 != 0
            }
        }

        impl BitOr for $name {
            type Output = $name;
            fn bitor(self, other: $name) -> $name {
                self.or(other)
            }
        }

        impl BitOrAssign for $name {
            fn bitor_assign(&mut self, other: $name) {
                self.0 |= other.0;
            }
        }

        impl BitAnd for $name {
            type Output = $name;
            fn bitand(self, other: $name) -> $name {
                $name(self.0 & other.0)
            }
        }

        impl BitAndAssign for $name {
            fn bitand_assign(&mut self, other: $name) {
                self.0 &= other.0;
            }
        }

        impl Not for $name {
            type Output = $name;
            fn not(self) -> $name {
                $name(!self.0)
            }
        }
    };
}

flag_set!(
    /// A set of rule flags; the names are in [`flag`].
    RuleFlags
);

flag_set!(
    /// A set of parsing switches; the names are in [`xflag`].
    ParseFlags
);

/// Rule flags (rsync's FILTRULE_* bits, under our own names).
pub(super) mod flag {
    use super::RuleFlags;

    pub(crate) const INCLUDE: RuleFlags = RuleFlags(1 << 0);
    /// Matches directories only (the pattern had a trailing slash).
    pub(crate) const DIRECTORY: RuleFlags = RuleFlags(1 << 1);
    pub(crate) const NEGATE: RuleFlags = RuleFlags(1 << 2);
    /// Matched against the path from the module root, not the transfer root.
    pub(crate) const ABS_PATH: RuleFlags = RuleFlags(1 << 3);
    pub(crate) const PERISHABLE: RuleFlags = RuleFlags(1 << 4);
    pub(crate) const MERGE_FILE: RuleFlags = RuleFlags(1 << 5);
    pub(crate) const PERDIR_MERGE: RuleFlags = RuleFlags(1 << 6);
    pub(crate) const NO_PREFIXES: RuleFlags = RuleFlags(1 << 7);
    pub(crate) const WORD_SPLIT: RuleFlags = RuleFlags(1 << 8);
    pub(crate) const NO_INHERIT: RuleFlags = RuleFlags(1 << 9);
    pub(crate) const CVS_IGNORE: RuleFlags = RuleFlags(1 << 10);
    pub(crate) const EXCLUDE_SELF: RuleFlags = RuleFlags(1 << 11);
    pub(crate) const SENDER_SIDE: RuleFlags = RuleFlags(1 << 12);
    pub(crate) const RECEIVER_SIDE: RuleFlags = RuleFlags(1 << 13);
    pub(crate) const CLEAR_LIST: RuleFlags = RuleFlags(1 << 14);
    pub(crate) const XATTR: RuleFlags = RuleFlags(1 << 15);
    pub(crate) const WILD: RuleFlags = RuleFlags(1 << 16);
    pub(crate) const WILD2: RuleFlags = RuleFlags(1 << 17);
    pub(crate) const WILD2_PREFIX: RuleFlags = RuleFlags(1 << 18);
    pub(crate) const WILD3_SUFFIX: RuleFlags = RuleFlags(1 << 19);

    pub(crate) const SIDES: RuleFlags = SENDER_SIDE.or(RECEIVER_SIDE);
    /// What rules read from a merge file take over from the merge rule.
    pub(crate) const FROM_CONTAINER: RuleFlags =
        ABS_PATH.or(INCLUDE).or(DIRECTORY).or(NEGATE).or(PERISHABLE);
}

/// Parsing switches that come from where the text is read, not from it.
pub(super) mod xflag {
    use super::ParseFlags;

    /// Only `- `, `+ ` and `!` are prefixes (protocol < 29, old-style lists).
    pub(crate) const OLD_PREFIXES: ParseFlags = ParseFlags(1 << 0);
    /// A leading `/` anchors at the merge file's directory; rules for the
    /// receiver only are dropped (per-directory merge files on the sender).
    pub(crate) const ANCHORED2ABS: ParseFlags = ParseFlags(1 << 1);
    /// Any slash makes the rule module-absolute; rules for the sender only
    /// are dropped (daemon configuration, parsed before the side is known).
    pub(crate) const ABS_IF_SLASH: ParseFlags = ParseFlags(1 << 2);
    /// An exclude of `dir/` becomes `dir/***` (daemon configuration).
    pub(crate) const DIR2WILD3: ParseFlags = ParseFlags(1 << 3);
}
