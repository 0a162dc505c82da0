//! A module's policy, read from its parameters once: who may use it (hosts,
//! login), how many at once, which client options it refuses, and what it
//! imposes on every pull whatever the client asked.

use super::access::Access;
use super::auth::AuthRules;
use super::refuse::Refusals;
use crate::config::ModuleParams;
use crate::protocol::options::Options;

/// Who may use a module, and how many at once.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) access: Access,
    /// Shown in module lists; when not, refused clients hear "Unknown module".
    pub(crate) list: bool,
    /// Connections to this module at once; 0 means no limit.
    pub(crate) max_connections: u32,
    /// `None`: no login.
    pub(crate) auth: Option<AuthRules>,
    /// `refuse options`.
    pub(crate) refusals: Refusals,
    /// `ignore errors`, `numeric ids`, `ignore nonreadable`.
    pub(crate) imposed: ModuleImposed,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_params(&ModuleParams::default())
    }
}

impl Policy {
    pub(crate) fn from_params(p: &ModuleParams) -> Policy {
        Policy {
            access: Access::new(&p.hosts_allow, &p.hosts_deny),
            list: p.list,
            max_connections: p.max_connections,
            auth: AuthRules::from_params(p),
            refusals: Refusals::new(&p.refuse_options),
            imposed: ModuleImposed {
                ignore_errors: p.ignore_errors,
                numeric_ids: p.numeric_ids,
                ignore_nonreadable: p.ignore_nonreadable,
            },
        }
    }
}

/// What a module imposes on every pull, whatever the client asked: rsyncd's
/// `ignore errors`, `numeric ids` and `ignore nonreadable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ModuleImposed {
    pub(crate) ignore_errors: bool,
    pub(crate) numeric_ids: bool,
    pub(crate) ignore_nonreadable: bool,
}

impl ModuleImposed {
    /// Applies what the module imposes to the client's options, as rsyncd
    /// sets its own options after parsing the client's.
    pub(crate) fn apply(self, opts: &mut Options) {
        opts.ignore_errors |= self.ignore_errors;
        opts.names_withheld = self.numeric_ids;
        opts.skip_unreadable = self.ignore_nonreadable;
    }
}
