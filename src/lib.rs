//! upserv: an rsync daemon for school servers.
//!
//! Laptops pull OS builds with a stock `rsync` client from `rsync://server/NAME/`.
//! upserv speaks the daemon side of the rsync protocol (versions 27 to 32) itself and
//! fetches builds it does not hold from an HTTP(S) upstream.
//!
//! The map, following one pull from the socket inwards:
//!
//! - [`daemon`]: the process: a gatekeeper thread takes each connection
//!   through its opening (PROXY header behind a load balancer, greeting,
//!   module name) and hands it to a fixed pool of workers (`pool`); the
//!   session admits it (hosts, limits, login, the module's `policy`), reads
//!   the client's arguments and runs the pull; signals, pid file, reload;
//!   what it tells about itself (`stats`, `report`): the control socket
//!   for `upserv status` and the Prometheus metrics.
//! - [`cli`]: the command line; [`logging`]: where log lines go.
//! - [`config`]: rsyncd.conf-style configuration and sizes.
//! - [`cache`]: builds on demand: the coordinator thread, the upstream fetch,
//!   unpacking, the store with its access times and eviction, the builds'
//!   checksum seeds; the listing
//!   and pinning the admin commands print.
//! - [`protocol`]: the rsync wire, without policy: integers and multiplexing,
//!   server arguments, the protocol setup (compat flags, negotiated names),
//!   the file list, filters, the sender loop, token streams, the memo
//!   that replays a build's deltas for identical requests, and the file
//!   lists a build's connections share.
//! - [`source`]: what the sender reads: a tree on disk, plus for builds the
//!   metadata table that overrides owners, modes and device entries.
//! - [`meta`]: that metadata table, which `cache` writes and `source` reads.
//! - [`delta`]: the algorithm, without I/O: rolling sum, MD4 sums, block matching;
//!   [`bench`](mod@bench): its throughput on this machine, and with the
//!   memo a classroom's (`upserv bench`).
//! - [`output`]: command results on stdout, ending quietly at a closed pipe;
//!   [`sys`]: the user and group databases and the process's ids.
//!
//! The admin commands that print and draw progress bars (`fetch`, `list`,
//! `pin`, `gc`, ...) are the binary's (`src/admin.rs`), not the library's.
//!
//! Layers, lowest first: a module imports only from layers below its own
//! (`tests/layers.rs` checks this, and that no files import one another
//! round a loop):
//!
//! `sys` `output` < `delta` < `meta` < `source` < `protocol` < `bench` `cache` <
//! `config` < `logging` < `cli` < `daemon`

#![warn(unreachable_pub)]

pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delta;
pub mod logging;
pub mod meta;
pub mod output;
pub mod protocol;
pub mod source;
pub mod sys;
