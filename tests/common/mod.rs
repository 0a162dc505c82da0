//! Shared support for upserv's whole-program tests: source trees, the
//! reference `rsync --daemon`, upserv started as a daemon or per connection,
//! the real rsync client, tree snapshots, and the differential comparison
//! that ties them together. See `tests/harness_selftest.rs` for use.
//!
//! Each test binary includes this with `mod common;` and uses a part of it,
//! hence the `dead_code` allowance. Nothing here may depend on upserv's
//! library: the tests judge the binary from outside, as a client would.
#![allow(dead_code)]

pub mod client;
pub mod conf;
pub mod differential;
pub mod inetd;
pub mod proc;
pub mod rsyncd;
pub mod snapshot;
pub mod tree;
pub mod upserv;

// Re-exported for `use common::*`; each test binary uses only some of them.
#[allow(unused_imports)]
pub use client::{pull, Client, Protocol, ProtocolSet, PullResult, Stats};
#[allow(unused_imports)]
pub use conf::Module;
#[allow(unused_imports)]
pub use differential::{differential, run_cases, Candidate, Case, Differential, Pair, Side};
#[allow(unused_imports)]
pub use rsyncd::{rsyncd_inetd, Rsyncd};
#[allow(unused_imports)]
pub use snapshot::{assert_same, Snapshot};
#[allow(unused_imports)]
pub use tree::{basis_copy, basis_edited, RandomSpec, TestTree};
#[allow(unused_imports)]
pub use upserv::{Launch, Upserv, UpservServe};

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
