//! The effective settings as text (what `upserv check-config` prints): one
//! `name = value` per line, rsyncd.conf-style, so that the output is itself a
//! configuration that reads back into the same settings.
//!
//! The `[global]` section shows every global parameter and every module
//! default; each module shows its `path` and only the parameters that differ
//! from the defaults. Must not decide values, only write them.

use std::fmt;

use super::assign::{global_value, module_value, path_text};
use super::params::{GLOBAL_PARAMS, MODULE_PARAMS};
use super::{Module, ModuleParams, Settings};

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# upserv effective settings")?;
        match &self.source {
            Some(path) => writeln!(f, "# configuration file: {}", path.display())?,
            None => writeln!(f, "# no configuration file: defaults and command line")?,
        }
        writeln!(f, "[global]")?;
        for param in GLOBAL_PARAMS {
            if let Some(value) = global_value(param, &self.global) {
                write_param(f, param.name(), &value)?;
            }
        }
        let defaults = &self.global.module_defaults;
        for param in MODULE_PARAMS {
            if let Some(value) = module_value(param, defaults) {
                write_param(f, param.name(), &value)?;
            }
        }
        for module in &self.modules {
            write_module(f, module, defaults)?;
        }
        Ok(())
    }
}

/// A module section: the header, `path`, and what differs from `defaults`.
fn write_module(
    f: &mut fmt::Formatter<'_>,
    module: &Module,
    defaults: &ModuleParams,
) -> fmt::Result {
    writeln!(f)?;
    writeln!(f, "[{}]", module.name)?;
    write_param(f, "path", &path_text(Some(&module.path)))?;
    for param in MODULE_PARAMS {
        let value = module_value(param, &module.params);
        if value.is_some() && value != module_value(param, defaults) {
            write_param(f, param.name(), value.as_deref().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// One `name = value` line; an empty value is written as `name =`.
fn write_param(f: &mut fmt::Formatter<'_>, name: &str, value: &str) -> fmt::Result {
    if value.is_empty() {
        writeln!(f, "{name} =")
    } else {
        writeln!(f, "{name} = {value}")
    }
}
