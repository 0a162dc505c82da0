//! Shared support for upserv's whole-program tests: source trees, the
//! reference `rsync --daemon`, upserv started as a daemon, per connection or
//! for one command, the real rsync client (run once, watched, or held
//! still), tree snapshots, the differential comparison that ties them
//! together, a loopback HTTP upstream with archive builders, hand-made
//! protocol clients, and the one polling helper. See
//! `tests/it/harness_selftest.rs` for use, and `tests/README.md`.
//!
//! Nothing here may use upserv's library: the tests judge the binary from
//! outside, as a client would.

pub mod builds;
pub mod client;
pub mod conf;
pub mod differential;
pub mod inetd;
pub mod live;
pub mod proc;
pub mod procfs;
pub mod raw;
pub mod relay;
pub mod rsyncd;
pub mod scratch;
pub mod snapshot;
pub mod tree;
pub mod upserv;
pub mod upstream;
pub mod wait;

// What most tests use, for `use crate::support::*`.
pub use client::{pull, Client, Protocol, ProtocolSet, PullResult, Stats};
pub use conf::Module;
pub use differential::{run_cases, Candidate, Case, Differential, Pair, Side};
pub use rsyncd::Rsyncd;
pub use snapshot::{assert_same, Snapshot};
pub use tree::{basis_copy, basis_edited, RandomSpec, TestTree};
pub use upserv::{run_upserv, upserv_command, Launch, Upserv, UpservServe};
pub use wait::{wait_until, WAIT_LIMIT};

/// A running server a client can pull from.
pub trait Server {
    /// Which server this is and where it listens, for reports.
    fn describe(&self) -> String;
    /// `rsync://127.0.0.1:PORT/` followed by `path` (`module/` or `module/sub`).
    fn url(&self, path: &str) -> String;
    /// The last `lines` lines of the server's log, for reports.
    fn log_tail(&self, lines: usize) -> String;
    /// The protocol a client must ask for when the test wants the client's
    /// default: a server that would otherwise negotiate more than upserv's
    /// 29 gets `--protocol=29` from its clients, so both sides of a
    /// comparison speak the same protocol.
    fn client_protocol(&self) -> Option<u32> {
        None
    }
}
