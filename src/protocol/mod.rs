//! The rsync wire protocol, sender side, protocols 27 to 32. No policy lives
//! here: which tree to serve and who may pull it is the daemon's business.
//!
//! - [`io`]: the connection's bytes (non-blocking, full duplex, multiplexed
//!   output), paced by [`bwlimit`]; [`wire`]: integer and string encodings.
//! - [`options`]: the client's arguments; [`glob`]: wildcards in them.
//! - [`setup`]: compat flags, checksum and compression negotiation, seed;
//!   [`ndx`]: file indices on the wire.
//! - [`filter`] and [`wildmatch`]: include/exclude rules.
//! - [`flist`]: the file list: building, sorting, encoding.
//! - [`sender`]: the per-file loop; [`token`]: how deltas are encoded,
//!   plain or compressed; [`memo`]: deltas of builds kept and replayed
//!   for identical requests; [`share`]: the table behind the file lists
//!   builds share between connections (`flist::shared`).

pub use flist::shared::SharedLists;

pub(crate) mod bwlimit;
pub mod filter;
pub(crate) mod flist;
pub(crate) mod glob;
pub mod io;
pub mod memo;
pub(crate) mod ndx;
pub mod options;
pub mod sender;
pub(crate) mod setup;
pub(crate) mod share;
pub(crate) mod token;
pub mod wildmatch;
pub(crate) mod wire;
