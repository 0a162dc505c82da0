//! Waiting for what another process or thread brings about: the one
//! polling helper of the tests, with one deadline for all of them.
//!
//! Where a test can be told (a channel, a condition variable, a pipe that
//! ends), it waits on that instead; polling is for what leaves no notice,
//! such as a file that grows, a log line, or a count in /proc.

use std::time::{Duration, Instant};

/// Longest any test waits for a condition before failing. Generous, since
/// the tests also run under qemu-user on a busy machine; it only costs time
/// when something is already broken.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Pause between two looks at a condition.
const POLL: Duration = Duration::from_millis(10);

/// Looks at `check` until it yields a value, or `limit` passes (`None`).
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `done` is true; panics after [`WAIT_LIMIT`] naming `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = poll(WAIT_LIMIT, || done().then_some(()));
    assert!(
        waited.is_some(),
        "timed out after {WAIT_LIMIT:?} waiting for {what}"
    );
}
