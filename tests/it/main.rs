//! upserv's integration tests: one test crate (one build, one link), one
//! module per area, and the support they share in `support`. Which module
//! tests what, how to run one, and what they need: `tests/README.md`.

mod access;
mod admin;
mod builds_archives;
mod builds_evict;
mod builds_fetch;
mod builds_process;
mod cache_evict;
mod cache_fetch;
mod cache_process;
mod cache_robust;
mod cache_unpack;
mod classroom;
mod codecs;
mod compress;
mod errors;
mod filter_rsync;
mod fuzz_regressions;
mod harness_selftest;
mod hostile;
mod increc;
mod layers;
mod limits;
mod observe;
mod operation;
mod options;
mod packaging;
mod parity;
mod protocol30;
mod reference;
mod scale_out;
mod shared_lists;
mod support;
mod transfer;
mod unprivileged;
mod xinetd;
