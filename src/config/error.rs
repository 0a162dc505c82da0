//! Where a configuration problem was found, and the error and warning types
//! that carry it.
//!
//! Owns only the shape and wording of locations (`FILE:LINE`, `FILE`, an
//! option name, an environment variable). It must not decide what is wrong:
//! the parser and the command-line overrides write the messages.

use std::fmt;
use std::path::PathBuf;

/// Where a setting came from, as shown in front of every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a configuration file (1-based; the first line of a
    /// continued line).
    Line { file: PathBuf, line: u32 },
    /// A configuration file as a whole (it could not be read, say).
    File(PathBuf),
    /// A command-line option such as `--upstream`.
    Option(&'static str),
    /// An environment variable such as `RUST_LOG`.
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Line { file, line } => write!(f, "{}:{}", file.display(), line),
            Origin::File(file) => write!(f, "{}", file.display()),
            Origin::Option(name) | Origin::Env(name) => f.write_str(name),
        }
    }
}

/// A configuration that upserv refuses to run with. Displays as
/// `ORIGIN: what is wrong`, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) origin: Origin,
    pub(crate) message: String,
}

impl ConfigError {
    pub(crate) fn new(origin: Origin, message: impl Into<String>) -> Self {
        ConfigError {
            origin,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Something in the configuration that upserv ignores or doubts but can run
/// with. Returned to the caller, which decides where to log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub(crate) origin: Origin,
    pub(crate) message: String,
    /// A parameter neither upserv nor rsyncd knows: likely a typo, which
    /// `check-config` treats as an error (the daemon, like rsyncd, ignores it).
    pub unknown_parameter: bool,
}

impl ConfigWarning {
    pub(crate) fn new(origin: Origin, message: impl Into<String>) -> Self {
        ConfigWarning {
            origin,
            message: message.into(),
            unknown_parameter: false,
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}
