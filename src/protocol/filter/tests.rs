//! Unit tests of filter lists (placeholder).
