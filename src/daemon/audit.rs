//! What `check-config` checks beyond the syntax: the things the settings
//! point at. Module paths must be directories, the builds directory must
//! be one or be creatable, secrets files must pass the `strict modes`
//! checks logins will make, filter files must read, and host names in
//! hosts lists are named (upserv never asks DNS, so they fail closed).
//!
//! Only looks: creates, changes and logs nothing.

use std::path::Path;

use super::access::Access;
use super::auth::read_secrets_file;
use super::daemon_filters;
use crate::config::{ModuleParams, Settings};

/// One problem found; an error makes the configuration unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub error: bool,
    pub message: String,
}

fn error(message: String) -> Finding {
    Finding {
        error: true,
        message,
    }
}

fn warning(message: String) -> Finding {
    Finding {
        error: false,
        message,
    }
}

/// Every problem in what `settings` points at, in the order of the file.
pub fn audit(settings: &Settings) -> Vec<Finding> {
    let mut found = Vec::new();
    builds_dir(&settings.global.builds_dir, &mut found);
    module_params("global", &settings.global.module_defaults, &mut found);
    for module in &settings.modules {
        let name = &module.name;
        match std::fs::metadata(&module.path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => found.push(error(format!(
                "[{name}] path {} is not a directory",
                module.path.display()
            ))),
            Err(e) => found.push(error(format!(
                "[{name}] path {}: {e}",
                module.path.display()
            ))),
        }
        module_params(name, &module.params, &mut found);
    }
    found
}

/// The builds directory: a directory, or absent with a parent to make it in.
fn builds_dir(dir: &Path, found: &mut Vec<Finding>) {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => found.push(error(format!(
            "builds dir {} is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.push(warning(format!(
            "builds dir {} does not exist yet; upserv will create it",
            dir.display()
        ))),
        Err(e) => found.push(error(format!("builds dir {}: {e}", dir.display()))),
    }
}

/// The checks of one module's parameters (or of the defaults, `global`).
fn module_params(name: &str, params: &ModuleParams, found: &mut Vec<Finding>) {
    if let Some(path) = &params.secrets_file {
        if let Err(message) = read_secrets_file(path, params.strict_modes) {
            found.push(error(format!("[{name}] {message}")));
        }
    }
    for problem in Access::new(&params.hosts_allow, &params.hosts_deny).problems() {
        found.push(warning(format!("[{name}] {problem}")));
    }
    if let Err(message) = daemon_filters(name, params) {
        found.push(error(message));
    }
}
