//! delta (work in progress).
