//! The cache's shared vocabulary: the types its parts (the handle, the
//! coordinator, the job thread, the shared state) pass to one another and
//! to their callers. Behaviour lives in those parts; this file holds only
//! the values and how they read.

use std::fs::File;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// Waiting clients see a progress line at most this often (docs/builds.md).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Where a fetch stands, for progress lines and bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub name: String,
    pub stage: Stage,
    pub done: u64,
    pub total: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// In this process, behind the download of another build.
    Queued,
    /// Another process holds the install lock.
    Waiting,
    Downloading,
    Unpacking,
}

impl Stage {
    /// The stage as `upserv status` shows it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Waiting => "waiting",
            Stage::Downloading => "downloading",
            Stage::Unpacking => "unpacking",
        }
    }
}

impl Progress {
    /// The line a waiting client sees.
    pub fn line(&self) -> String {
        let name = &self.name;
        match (self.stage, self.total) {
            (Stage::Queued, _) => {
                format!("upserv: {name} waits for another download to finish")
            }
            (Stage::Waiting, _) if self.done >= MIB => format!(
                "upserv: waiting for another download of {name} to finish ({} MiB so far)",
                self.done / MIB
            ),
            (Stage::Waiting, _) => {
                format!("upserv: waiting for another download of {name} to finish")
            }
            (Stage::Unpacking, _) if self.done > 0 => {
                format!("upserv: unpacking {name}: {} entries", self.done)
            }
            (Stage::Unpacking, _) => format!("upserv: unpacking {name}"),
            (Stage::Downloading, Some(total)) if total > 0 => format!(
                "upserv: fetching {name} from upstream: {}% ({} of {} MiB)",
                self.done.min(total) * 100 / total,
                self.done / MIB,
                total.div_ceil(MIB)
            ),
            (Stage::Downloading, _) => format!(
                "upserv: fetching {name} from upstream: {} MiB",
                self.done / MIB
            ),
        }
    }
}

/// A tree in scratch space, ready to publish; holds the install lock.
pub(super) struct Prepared {
    pub(super) name: String,
    pub(super) scratch: PathBuf,
    pub(super) tree: PathBuf,
    pub(super) table: PathBuf,
    pub(super) size: u64,
    /// For `upserv refetch` of a cached build: its idle lock, taken here in
    /// the job thread once no connection serves the old tree, so that the
    /// coordinator swaps the trees without waiting.
    pub(super) swap: Option<File>,
    pub(super) _lock: File,
}

/// One build that eviction removed (or, in a dry run, would remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub name: String,
    /// The partial download of `name`, not a build tree.
    pub download: bool,
    pub size: u64,
    pub last_access: i64,
}

/// What happens at [`super::Cache::open`] besides spawning the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Recovery, table checks and eviction (daemon; serve mode does less).
    Full,
    /// Recovery only: admin commands that report before they change anything.
    NoEviction,
    /// Nothing: commands that only read (`gc --dry-run`).
    ReadOnly,
}

/// The longest build name upserv accepts (docs/builds.md: `[A-Za-z0-9][A-Za-z0-9._+-]{0,127}`).
pub const MAX_BUILD_NAME_LEN: usize = 128;

/// Ending reserved for the pin marks beside the builds (`NAME.sticky`).
pub(crate) const STICKY_SUFFIX: &str = ".sticky";

/// True when `name` is a build name upserv may fetch: a letter or digit, then
/// up to 127 letters, digits, `.`, `_`, `+` or `-`, not ending in `.sticky`
/// (a build of that name would be taken for the pin mark of another).
pub fn is_build_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    first_ok
        && name.len() <= MAX_BUILD_NAME_LEN
        && !name.ends_with(STICKY_SUFFIX)
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// How an unpacked build is laid out as a module (docs/builds.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// The archive's tree is the module's root.
    #[default]
    Plain,
    /// olpc-update's layout: the tree under `root/`, the manifest as `contents`.
    Olpc,
}

impl Layout {
    /// The name used in the configuration file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::Olpc => "olpc",
        }
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "plain" => Ok(Layout::Plain),
            "olpc" => Ok(Layout::Olpc),
            _ => Err(format!(
                "`{}` is not a layout (expected plain or olpc)",
                text.trim()
            )),
        }
    }
}

/// `1536` → `1.5K`, `3221225472` → `3.0G`: binary units as `du -h` prints.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names() {
        let longest = format!("a{}", "b".repeat(127));
        for good in [
            "build-812",
            "os12.1_x",
            "1",
            "a+b",
            "b1.stickyx",
            "b1.sticky2",
            longest.as_str(),
        ] {
            assert!(is_build_name(good), "{good}");
        }
        let too_long = format!("a{}", "b".repeat(128));
        for bad in [
            "",
            ".hidden",
            "-x",
            "_x",
            "a/b",
            "..",
            "a b",
            "é",
            "b1.sticky",
            "b1.tar.sticky",
            too_long.as_str(),
        ] {
            assert!(!is_build_name(bad), "{bad}");
        }
    }

    #[test]
    fn sizes_read_as_du_prints_them() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(3 << 30), "3.0G");
    }
}
