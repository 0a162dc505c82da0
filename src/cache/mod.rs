//! cache (work in progress).
