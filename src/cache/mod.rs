//! Builds on demand (work in progress on the `cache` branch).
pub mod meta;
