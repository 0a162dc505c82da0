//! The client's `--bwlimit`: how fast the sender may write to the socket.
//!
//! As rsyncd does (rsync: io.c sleep_for_bwlimit), the limit is an average
//! over time: each write adds to a backlog that the elapsed time pays off
//! at the allowed rate, and the writer sleeps once the backlog is worth a
//! tenth of a second. Sleeping in such steps keeps the kernel's rounding of
//! short sleeps from slowing the transfer below the limit, and each write
//! is capped at an eighth of a second's worth, so a burst is bounded by
//! [`MIN_SLEEP`] plus one write.

use std::time::{Duration, Instant};

/// The writer sleeps only once it is this far ahead of the rate.
pub(crate) const MIN_SLEEP: Duration = Duration::from_millis(100);
/// One write carries at most this fraction of a second's allowance
/// (rsync: options.c, `bwlimit_writemax`)...
const WRITES_PER_SECOND: u64 = 8;
/// ...but never fewer bytes than this.
const MIN_WRITE: u64 = 512;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The pace of one connection's writes.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// Bytes per second, never 0.
    rate: u64,
    /// Bytes written that the time elapsed until `since` has not paid off.
    backlog: u64,
    since: Option<Instant>,
}

impl Throttle {
    /// A throttle at `rate` bytes per second; `None` for no limit (0).
    pub(crate) fn new(rate: u64) -> Option<Throttle> {
        (rate != 0).then_some(Throttle {
            rate,
            backlog: 0,
            since: None,
        })
    }

    /// The most one write should carry.
    pub(crate) fn max_write(&self) -> usize {
        let cap = (self.rate / WRITES_PER_SECOND).max(MIN_WRITE);
        usize::try_from(cap).unwrap_or(usize::MAX)
    }

    /// Accounts for `n` bytes just written and sleeps while the connection
    /// is more than [`MIN_SLEEP`] ahead of the rate.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.backlog = self.backlog.saturating_add(n as u64);
        let now = Instant::now();
        if let Some(since) = self.since {
            let paid = self.bytes_in(now.duration_since(since));
            self.backlog = self.backlog.saturating_sub(paid);
        }
        let ahead = self.time_for(self.backlog);
        if ahead < MIN_SLEEP {
            self.since = Some(now);
            return;
        }
        std::thread::sleep(ahead);
        let woke = Instant::now();
        // Whatever the sleep fell short of stays owed; oversleeping earns
        // no credit, so the average never exceeds the rate.
        let slept = woke.duration_since(now);
        self.backlog = self.bytes_in(ahead.saturating_sub(slept));
        self.since = Some(woke);
    }

    /// Bytes the rate allows in `d`.
    fn bytes_in(&self, d: Duration) -> u64 {
        let bytes = d.as_nanos() * u128::from(self.rate) / NANOS_PER_SEC;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// How long the rate takes for `bytes`.
    fn time_for(&self, bytes: u64) -> Duration {
        let nanos = u128::from(bytes) * NANOS_PER_SEC / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unlimited() {
        assert!(Throttle::new(0).is_none());
    }

    #[test]
    fn writes_are_capped_at_an_eighth_of_a_second() {
        assert_eq!(Throttle::new(8 << 20).unwrap().max_write(), 1 << 20);
        assert_eq!(Throttle::new(1024).unwrap().max_write(), 512);
    }

    #[test]
    fn a_burst_below_a_tenth_of_a_second_passes_at_once() {
        let mut t = Throttle::new(1 << 20).unwrap();
        let start = Instant::now();
        t.wrote(50 << 10);
        assert!(start.elapsed() < MIN_SLEEP);
    }

    #[test]
    fn the_average_stays_under_the_rate() {
        // 400 KiB at 1 MiB/s: at least 400 ms less the last unslept step.
        let rate = 1 << 20;
        let mut t = Throttle::new(rate).unwrap();
        let start = Instant::now();
        let chunk = t.max_write();
        let total = 400usize << 10;
        for _ in 0..total / chunk {
            t.wrote(chunk);
        }
        let floor = t.time_for(total as u64) - MIN_SLEEP;
        assert!(start.elapsed() >= floor, "{:?}", start.elapsed());
    }
}
