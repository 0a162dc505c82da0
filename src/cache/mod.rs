//! Builds on demand: the build cache behind every build module.
//!
//! The rsync side asks [`Cache::acquire`] for a build by name and gets a
//! [`BuildGuard`]: a directory to serve plus, for builds that upserv unpacked
//! itself, the [`MetaTable`] whose owners, modes and device entries override
//! what the disk says. A build that is not cached is downloaded from the
//! upstream, verified, unpacked under `DIR/.upserv/` and published by one
//! rename; the builds directory is kept under its budget by evicting the least
//! recently used builds.
//!
//! The parts, each owning one thing:
//! - `store`: the layout of the builds directory, disk usage, the last-access
//!   record, busy marks and locks, and the eviction order.
//! - `fetch`: one HTTP(S) download attempt with resume, bounds and checksum check.
//! - `mirrors`: the upstream mirrors, which are down, and one download
//!   across them with its retries.
//! - `delete`: deleting trees of any depth with few descriptors.
//! - `unpack`: archives into a scratch tree plus the metadata records.
//! - `handle`: the [`Cache`] handle that worker threads use, and [`BuildGuard`].
//! - `coordinator`: the one thread that starts downloads, publishes and
//!   deletes builds; `job`: the thread of one download; `shared`: the state
//!   and operations these three have in common.
//! - `seed`: the secret behind each build's checksum seed.
//! - [`stats`]: counters and the downloads in progress, for status and metrics.
//! - `inventory`: the builds on disk and their pins, for the admin commands.
//! - `types`: the values these parts pass to one another and to callers.
//!
//! Decisions the rules of docs/builds.md leave open:
//! - A build without a metadata table (a tree an administrator put into the
//!   builds directory) is served with what the disk says: `meta()` is `None`.
//!   upserv marks each tree it publishes (`.upserv/installed/NAME`, holding
//!   the tree's inode), so a build it unpacked whose table is missing or
//!   damaged is never served that way: a daemon start deletes it, and
//!   `acquire` deletes and fetches it again (or, without an upstream,
//!   answers an error).
//! - An archive that is refused while unpacking is discarded with its
//!   partial download; an interrupted download is kept for resuming, and a
//!   finished one whose unpacking ran out of disk space is kept too, so the
//!   next attempt unpacks it without downloading it again.
//! - A tar archive without its end-of-archive blocks was cut short and is
//!   refused, even when it ends at an entry boundary.
//! - A download announced larger than the whole budget is refused before it
//!   starts; unpacking stops as soon as the file contents written exceed the
//!   budget (apparent sizes); an unpacked tree whose disk blocks exceed the
//!   budget is refused before it is published. A body without a length that
//!   grows past the budget is stopped and discarded (it can never fit); one
//!   that is cut, stalls or falls below the minimum rate is kept for resuming.
//! - Partial downloads and the trash count against the budget. Partial
//!   downloads are evicted like builds (oldest change first), never the one
//!   being downloaded; the trash is emptied by a thread of its own.
//! - Eviction runs at install, at startup, on `gc`, and when a connection
//!   releases a build while the last eviction had to keep builds in use
//!   (in serve mode a mark in the store says so across processes, and a
//!   process settles it before it ends); then a build newer than one still
//!   in use waits for that one to go.
//! - Last-access times are written at most once a minute per build, and
//!   when the last [`Cache`] handle goes (a clean stop), so a restart evicts
//!   in the same order; a crash loses at most the last minute of accesses.
//!   `serve` mode, one process per connection, keeps to the once-a-minute
//!   rule and so may lose up to a minute per build.
//! - A client whose build waits behind another build's download is told so
//!   at once, not left without a word.
//! - Busy marks are flocks on `.upserv/busy/NAME`, taken by every process, so
//!   `upserv gc` next to a running daemon never deletes a build being served.
//!
//! This module knows nothing of rsync: it must never format protocol messages
//! or look at client options. Its errors are plain sentences that the rsync
//! side puts after `@ERROR: `.

mod coordinator;
mod delete;
mod fetch;
mod handle;
mod inventory;
mod job;
mod mirrors;
mod seed;
mod shared;
pub(crate) mod stats;
mod store;
mod types;
pub mod unpack;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::meta::{EntryMeta, MetaTable};
pub use handle::{BuildGuard, Cache, CacheWatch};
pub use inventory::{list_builds, set_sticky, BuildEntry};
pub use mirrors::{check_paired, MirrorState, MIRROR_DOWN_FOR};
pub use seed::SEED_PERIOD;
pub use stats::{CacheReport, Lookup};
pub use types::{
    human_size, is_build_name, Evicted, Layout, Progress, Stage, Startup, MAX_BUILD_NAME_LEN,
    PROGRESS_INTERVAL,
};

/// Everything the cache needs to know; built by the caller from the settings.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// The builds directory (`builds dir`).
    pub builds_dir: PathBuf,
    /// URL templates with `{name}` for the build archive, one per mirror,
    /// separated by blanks and tried in order (`upstream`).
    pub upstream: Option<String>,
    /// URL templates for the archive's `.md5` or `.sha256` file: one for
    /// every mirror, or one per mirror in the same order (`upstream checksum`).
    pub upstream_checksum: Option<String>,
    /// URL templates for the olpc manifest, paired like the checksums
    /// (`upstream contents`).
    pub upstream_contents: Option<String>,
    /// `layout = plain | olpc`.
    pub layout: Layout,
    /// Disk budget for all build trees, in bytes (`cache size`).
    pub cache_size: u64,
    /// Connect timeout and per-read idle timeout of upstream requests (`fetch timeout`).
    pub fetch_timeout: Duration,
    /// Bytes per second a download must average over each `min_rate_window`
    /// (`fetch min rate`); 0: no minimum.
    pub fetch_min_rate: u64,
    /// The window of the minimum rate (60 s in production).
    pub min_rate_window: Duration,
    /// `serve` mode: one process per connection. Startup then skips the full
    /// scan (table checks and eviction happen at install time instead), so
    /// that opening the cache for one connection stays cheap.
    pub cross_process_lock: bool,
    /// How long a 404 from the upstream is remembered (60 s in production).
    pub not_found_ttl: Duration,
    /// Attempts per download before giving up (network errors, 5xx, cut bodies).
    pub fetch_attempts: u32,
    /// Pause before the second attempt; doubled for each later one.
    pub retry_backoff: Duration,
}

impl CacheConfig {
    /// Defaults for a builds directory (docs/builds.md): no upstream, plain
    /// layout, 16 GiB, 60 s fetch timeout, at least 1 KiB/s over each minute,
    /// 404s remembered for 60 s.
    pub fn new(builds_dir: impl Into<PathBuf>) -> CacheConfig {
        CacheConfig {
            builds_dir: builds_dir.into(),
            upstream: None,
            upstream_checksum: None,
            upstream_contents: None,
            layout: Layout::Plain,
            cache_size: 16 << 30,
            fetch_timeout: Duration::from_secs(60),
            fetch_min_rate: 1024,
            min_rate_window: Duration::from_secs(60),
            cross_process_lock: false,
            not_found_ttl: Duration::from_secs(60),
            fetch_attempts: 4,
            retry_backoff: Duration::from_secs(2),
        }
    }
}

/// A failure the client hears about. `Display` is the sentence that follows
/// `@ERROR: `, e.g. `build-812 not found upstream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheError {
    message: String,
    /// The upstream does not have the build (counted apart from failures).
    not_found: bool,
}

impl CacheError {
    pub(crate) fn new(message: impl Into<String>) -> CacheError {
        CacheError {
            message: message.into(),
            not_found: false,
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CacheError {}
