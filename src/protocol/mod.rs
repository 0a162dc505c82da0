//! The rsync wire protocol, sender side, protocols 27 to 29. No policy lives
//! here: which tree to serve and who may pull it is the daemon's business.

pub mod io;
pub mod wire;
pub mod filter;
pub mod flist;
pub mod options;
pub mod token;
pub mod deflate;
pub mod sender;
