//! Reads configuration files section by section into settings, the way
//! rsync: loadparm.c does:
//! - parameters before the first section or in a `[global]` section are
//!   global; module parameters there become defaults for the modules that
//!   *follow* (each module starts from the defaults as they stand at its
//!   header);
//! - a section named like an earlier one (ignoring case and blanks) goes on
//!   with that module;
//! - a global parameter inside a module is ignored with a warning;
//! - `&merge FILE|DIR` reads the file (or the directory's `*.inc` files, in
//!   name order) as if it stood in place of the directive;
//! - `&include FILE|DIR` reads the file (or the directory's `*.conf` files)
//!   starting from the current defaults in the global context, keeps the
//!   modules it defines, and then puts every global value and default back as
//!   it was, continuing in the global context.
//!
//! Relative paths, in directives and in path parameters, are taken from the
//! folder of the file they are written in (rsyncd takes them from its
//! current directory, which for a service is an accident). This module owns the reading order and the locations of
//! messages; what each parameter means lives in `params`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::assign::{set_global, set_module, GlobalDraft, SetResult};
use super::error::{ConfigError, ConfigWarning, Origin};
use super::lexer::{collapse_blanks, lex, Item, Line};
use super::params::{lookup, name_key, nearest_name, GlobalParam, ModuleParam, Param};
use super::{Module, ModuleParams, Settings};

/// The largest configuration file read, including each included file.
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// How deep `&include`/`&merge` may nest; deeper is taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 8;
/// The section name that means "back to the global settings".
const GLOBAL_SECTION: &str = "global";

/// Everything `&include` saves and puts back: the global values and the
/// module defaults (with a default `path`, which rsyncd allows).
#[derive(Debug, Clone, Default)]
struct Defaults {
    draft: GlobalDraft,
    path: Option<PathBuf>,
}

/// A module while the files are read.
#[derive(Debug)]
struct ModuleDraft {
    name: String,
    /// Where the module's first header is, for "no path" errors.
    origin: Origin,
    path: Option<PathBuf>,
    params: ModuleParams,
}

/// Which section the lines being read belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Global,
    Module(usize),
}

/// The state of reading one configuration (a file and what it includes).
#[derive(Debug)]
pub(super) struct Loader {
    defaults: Defaults,
    modules: Vec<ModuleDraft>,
    context: Context,
    warnings: Vec<ConfigWarning>,
    depth: usize,
    /// Inside an `&include`, where global values do not outlive the file.
    isolated: bool,
}

impl Loader {
    pub(super) fn new() -> Self {
        Loader {
            defaults: Defaults::default(),
            modules: Vec::new(),
            context: Context::Global,
            warnings: Vec::new(),
            depth: 0,
            isolated: false,
        }
    }

    /// Reads the main configuration file.
    pub(super) fn load_main(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = read_text(path).map_err(|error| match error {
            ReadError::Line(line, message) => ConfigError::new(line_origin(path, line), message),
            ReadError::File(message) => ConfigError::new(Origin::File(path.to_owned()), message),
        })?;
        self.load_text(&text, path)
    }

    /// Reads configuration text that came from `file`.
    pub(super) fn load_text(&mut self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let lines = lex(text)
            .map_err(|(line, message)| ConfigError::new(line_origin(file, line), message))?;
        for line in lines {
            self.line(file, line)?;
        }
        Ok(())
    }

    /// The settings read, with modules checked for a `path`.
    pub(super) fn finish(
        self,
        source: Option<&Path>,
    ) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
        let mut warnings = self.warnings;
        let mut modules = Vec::with_capacity(self.modules.len());
        for draft in self.modules {
            modules.push(finish_module(draft, &mut warnings)?);
        }
        let settings = Settings {
            global: self.defaults.draft.resolve(),
            modules,
            source: source.map(Path::to_path_buf),
        };
        Ok((settings, warnings))
    }

    fn line(&mut self, file: &Path, line: Line) -> Result<(), ConfigError> {
        let origin = line_origin(file, line.number);
        match line.item {
            Item::Section { name, rest } => self.section(&name, &rest, origin),
            Item::Param { name, value } => self.param(&name, &value, origin),
            Item::Directive { name, value } => self.directive(&name, &value, origin),
        }
    }

    fn section(&mut self, name: &str, rest: &str, origin: Origin) -> Result<(), ConfigError> {
        if !rest.is_empty() && !rest.starts_with(['#', ';']) {
            self.warn(&origin, format!("text after `[{name}]` ignored: `{rest}`"));
        }
        if name.is_empty() {
            return Err(ConfigError::new(origin, "empty section name `[]`"));
        }
        if name_key(name) == GLOBAL_SECTION {
            self.context = Context::Global;
            return Ok(());
        }
        if name.contains('/') {
            return Err(ConfigError::new(
                origin,
                format!("module name `{name}` contains `/`"),
            ));
        }
        let existing = self
            .modules
            .iter()
            .position(|module| name_key(&module.name) == name_key(name));
        let index = match existing {
            Some(index) => {
                let first = self.modules[index].origin.clone();
                self.warn(
                    &origin,
                    format!("module [{name}] continues the one defined at {first}"),
                );
                index
            }
            None => self.new_module(name, origin),
        };
        self.context = Context::Module(index);
        Ok(())
    }

    fn new_module(&mut self, name: &str, origin: Origin) -> usize {
        self.modules.push(ModuleDraft {
            name: collapse_blanks(name),
            origin,
            path: self.defaults.path.clone(),
            params: self.defaults.draft.global.module_defaults.clone(),
        });
        self.modules.len() - 1
    }

    fn param(&mut self, name: &str, value: &str, origin: Origin) -> Result<(), ConfigError> {
        let outcome = match lookup(name) {
            None => {
                let hint = nearest_name(name)
                    .map(|known| format!(" (did you mean `{known}`?)"))
                    .unwrap_or_default();
                let mut warning =
                    ConfigWarning::new(origin, format!("unknown parameter `{name}`{hint}"));
                warning.unknown_parameter = true;
                self.warnings.push(warning);
                return Ok(());
            }
            Some(Param::Ignored(reason)) => Ok(Some(format!("`{name}` ignored: {reason}"))),
            Some(Param::Refused(reason)) if !value.is_empty() => {
                Err(format!("`{name}` is not supported: {reason}"))
            }
            Some(Param::Refused(_)) => Ok(None),
            Some(Param::Global(param)) => {
                let value = relative_to(&origin, value, param.is_path());
                self.global_param(name, param, &value)
            }
            Some(Param::Module(param)) => {
                let value = relative_to(&origin, value, param.is_path());
                self.module_param(param, &value)
            }
        };
        match outcome {
            Ok(Some(warning)) => {
                self.warn(&origin, warning);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(message) => Err(ConfigError::new(origin, message)),
        }
    }

    fn global_param(&mut self, name: &str, param: GlobalParam, value: &str) -> SetResult {
        if let Context::Module(index) = self.context {
            let module = &self.modules[index].name;
            return Ok(Some(format!(
                "`{name}` is a global parameter; ignored in module [{module}]"
            )));
        }
        let warning = set_global(param, value, &mut self.defaults.draft)?;
        if self.isolated {
            return Ok(Some(format!(
                "`{name}` set in an &include'd file has no effect outside it (use &merge)"
            )));
        }
        Ok(warning)
    }

    fn module_param(&mut self, param: ModuleParam, value: &str) -> SetResult {
        match self.context {
            Context::Global => {
                let defaults = &mut self.defaults;
                set_module(
                    param,
                    value,
                    &mut defaults.draft.global.module_defaults,
                    &mut defaults.path,
                )
            }
            Context::Module(index) => {
                let module = &mut self.modules[index];
                set_module(param, value, &mut module.params, &mut module.path)
            }
        }
    }

    fn directive(&mut self, name: &str, value: &str, origin: Origin) -> Result<(), ConfigError> {
        let include = match name.to_ascii_lowercase().as_str() {
            "&include" => true,
            "&merge" => false,
            _ => {
                return Err(ConfigError::new(
                    origin,
                    format!("unknown directive `{name}` (expected &include or &merge)"),
                ))
            }
        };
        if value.is_empty() {
            return Err(ConfigError::new(
                origin,
                format!("`{name}` needs a file or directory"),
            ));
        }
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::new(
                origin,
                format!("`{name}` nested more than {MAX_INCLUDE_DEPTH} deep (do files include each other?)"),
            ));
        }
        let suffix = if include { ".conf" } else { ".inc" };
        let target = relative_to(&origin, value, true);
        let files = directive_files(Path::new(target.as_ref()), suffix)
            .map_err(|message| ConfigError::new(origin.clone(), message))?;
        self.depth += 1;
        let result = if include {
            self.include(&files, &origin)
        } else {
            self.read_each(&files, &origin)
        };
        self.depth -= 1;
        result
    }

    /// `&include`: each file starts from the defaults as they are now, and
    /// they are all put back afterwards.
    fn include(&mut self, files: &[PathBuf], origin: &Origin) -> Result<(), ConfigError> {
        let saved = self.defaults.clone();
        let was_isolated = self.isolated;
        self.isolated = true;
        let mut result = Ok(());
        for file in files {
            self.defaults = saved.clone();
            self.context = Context::Global;
            result = self.read_each(std::slice::from_ref(file), origin);
            if result.is_err() {
                break;
            }
        }
        self.defaults = saved;
        self.isolated = was_isolated;
        self.context = Context::Global;
        result
    }

    /// Reads each file in turn as part of the current configuration.
    fn read_each(&mut self, files: &[PathBuf], origin: &Origin) -> Result<(), ConfigError> {
        for file in files {
            let text = read_text(file).map_err(|error| match error {
                ReadError::Line(line, message) => {
                    ConfigError::new(line_origin(file, line), message)
                }
                ReadError::File(message) => {
                    ConfigError::new(origin.clone(), format!("{}: {message}", file.display()))
                }
            })?;
            self.load_text(&text, file)?;
        }
        Ok(())
    }

    fn warn(&mut self, origin: &Origin, message: String) {
        self.warnings
            .push(ConfigWarning::new(origin.clone(), message));
    }
}

/// A path value as given, or, when relative, joined to the folder of the
/// file it was read from: a configuration means the same from any current
/// directory. Text without a file (tests) stays as given.
fn relative_to<'a>(origin: &Origin, value: &'a str, is_path: bool) -> std::borrow::Cow<'a, str> {
    let Origin::Line { file, .. } = origin else {
        return value.into();
    };
    let folder = file.parent().filter(|dir| !dir.as_os_str().is_empty());
    match folder {
        Some(dir) if is_path && !value.is_empty() && Path::new(value).is_relative() => {
            dir.join(value).to_string_lossy().into_owned().into()
        }
        _ => value.into(),
    }
}

/// A finished module, or an error when it has no path.
fn finish_module(
    draft: ModuleDraft,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Module, ConfigError> {
    let Some(path) = draft.path else {
        return Err(ConfigError::new(
            draft.origin,
            format!("module [{}] has no `path`", draft.name),
        ));
    };
    if !draft.params.auth_users.is_empty() && draft.params.secrets_file.is_none() {
        warnings.push(ConfigWarning::new(
            draft.origin.clone(),
            format!(
                "module [{}] has `auth users` but no `secrets file`, so nobody can log in",
                draft.name
            ),
        ));
    }
    Ok(Module {
        name: draft.name,
        path,
        params: draft.params,
    })
}

fn line_origin(file: &Path, line: u32) -> Origin {
    Origin::Line {
        file: file.to_owned(),
        line,
    }
}

/// The files a directive names: the file itself, or a directory's files
/// ending in `suffix`, sorted by name.
fn directive_files(target: &Path, suffix: &str) -> Result<Vec<PathBuf>, String> {
    let metadata = fs::metadata(target)
        .map_err(|error| format!("cannot read `{}`: {error}", target.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![target.to_owned()]);
    }
    let entries = fs::read_dir(target)
        .map_err(|error| format!("cannot list `{}`: {error}", target.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|error| format!("cannot list `{}`: {error}", target.display()))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().ends_with(suffix.as_bytes()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().map(|name| target.join(name)).collect())
}

/// Why a configuration file could not be read.
#[derive(Debug)]
enum ReadError {
    /// A problem with the file as a whole.
    File(String),
    /// A problem on one line (bad UTF-8).
    Line(u32, String),
}

/// The text of a configuration file, refusing files that are not regular,
/// too large, or not UTF-8.
fn read_text(path: &Path) -> Result<String, ReadError> {
    let cannot = |error: std::io::Error| ReadError::File(format!("cannot read: {error}"));
    let file = fs::File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(ReadError::File("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ReadError::File(format!(
            "larger than {MAX_CONFIG_BYTES} bytes; is this a configuration file?"
        )));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        ReadError::Line(
            u32::try_from(line).unwrap_or(u32::MAX),
            "not valid UTF-8".into(),
        )
    })
}
