//! Modules as a test declares them, and the rsyncd.conf-syntax files written
//! for the reference rsyncd and for upserv from the same declaration.
//!
//! Only text generation lives here; starting the daemons does not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One `[name]` section: a directory served under a name, plus any module
/// parameters the test wants on both servers (`exclude`, `hosts allow`, ...).
#[derive(Clone, Debug)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
    pub params: Vec<(String, String)>,
}

impl Module {
    pub fn new(name: &str, path: &Path) -> Module {
        Module {
            name: name.to_string(),
            path: path.to_path_buf(),
            params: Vec::new(),
        }
    }

    /// Adds `key = value` to this module's section.
    pub fn param(mut self, key: &str, value: &str) -> Module {
        self.params.push((key.to_string(), value.to_string()));
        self
    }
}

/// Global settings (defaults for every module) that make rsyncd behave as
/// upserv is meant to, per rsyncd.conf(5) of the reference source:
/// - `use chroot = no`: no chroot, so absolute and outward symlink values
///   are served as they are and names resolve through the host's files;
/// - `munge symlinks = no`: its default is on for a module without chroot,
///   which would strip a `/rsyncd-munged/` prefix from values on the way out;
/// - `numeric ids = no`: owners travel by name as well (already the default
///   without chroot);
/// - `uid = root`, `gid = root`: the default for a root daemon is "nobody",
///   which could not read 0600 files;
/// - `read only = yes`: the default, stated because upserv insists on it;
/// - `reverse lookup = no`: only spares a DNS query per connection.
///
/// `insecure links` stays at its default (no): the daemon still follows
/// in-module symlinks owned by root or the module's uid, root here.
const RSYNCD_GLOBALS: &[(&str, &str)] = &[
    ("use chroot", "no"),
    ("munge symlinks", "no"),
    ("numeric ids", "no"),
    ("uid", "root"),
    ("gid", "root"),
    ("read only", "yes"),
    ("reverse lookup", "no"),
];

/// The reference daemon's configuration: [`RSYNCD_GLOBALS`], its own log and
/// lock files (never the system's), then the modules.
pub fn rsyncd_conf(modules: &[Module], log_file: &Path, lock_file: &Path) -> String {
    let mut text = String::new();
    for (key, value) in RSYNCD_GLOBALS {
        push_param(&mut text, key, value);
    }
    push_param(&mut text, "log file", &log_file.to_string_lossy());
    push_param(&mut text, "lock file", &lock_file.to_string_lossy());
    push_modules(&mut text, modules);
    text
}

/// upserv's configuration: the given globals, then the same modules. rsyncd's
/// tuning knobs are left out on purpose; upserv behaves that way by design.
pub fn upserv_conf(globals: &[(&str, &str)], modules: &[Module]) -> String {
    let mut text = String::new();
    for (key, value) in globals {
        push_param(&mut text, key, value);
    }
    push_modules(&mut text, modules);
    text
}

fn push_modules(text: &mut String, modules: &[Module]) {
    for module in modules {
        let _ = writeln!(text, "\n[{}]", module.name);
        push_param(text, "path", &module.path.to_string_lossy());
        for (key, value) in &module.params {
            push_param(text, key, value);
        }
    }
}

fn push_param(text: &mut String, key: &str, value: &str) {
    let _ = writeln!(text, "{key} = {value}");
}
