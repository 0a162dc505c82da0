//! protocol (work in progress).

pub mod filter;
pub mod wildmatch;
