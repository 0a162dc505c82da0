//! The daemon's own counters and the connections being served, for
//! `upserv status` and the metrics.
//!
//! Workers write here only at coarse points: a connection is registered
//! when a worker takes it and removed when it ends; its bytes go through an
//! atomic that the connection bumps once per write to the socket. No lock is
//! taken while a transfer runs; readers lock the registry briefly to copy it.

use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One connection a worker serves.
struct Active {
    id: u64,
    peer: IpAddr,
    module: Option<String>,
    started: Instant,
    sent: Arc<AtomicU64>,
}

#[derive(Default)]
struct Registry {
    active: Vec<Active>,
    /// Bytes sent by the connections that have ended.
    finished_sent: u64,
}

/// Everything the daemon counts; one per daemon, shared with its workers,
/// the control socket and the metrics responder.
#[derive(Default)]
pub struct Stats {
    connections_total: AtomicU64,
    literal_bytes: AtomicU64,
    matched_bytes: AtomicU64,
    next_id: AtomicU64,
    registry: Mutex<Registry>,
}

/// A connection as `upserv status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionView {
    pub(crate) peer: IpAddr,
    pub(crate) module: Option<String>,
    pub(crate) bytes_sent: u64,
    pub(crate) seconds: u64,
}

/// The daemon's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DaemonReport {
    pub(crate) connections_total: u64,
    pub(crate) connections: Vec<ConnectionView>,
    /// Every byte sent to clients, by ended and running connections.
    pub(crate) bytes_sent: u64,
    pub(crate) literal_bytes: u64,
    pub(crate) matched_bytes: u64,
}

/// Registers a connection while alive; its bytes count into the total
/// when it goes.
pub(crate) struct ConnTicket {
    stats: Arc<Stats>,
    id: u64,
    sent: Arc<AtomicU64>,
}

impl ConnTicket {
    /// The counter for the connection's [`crate::protocol::io::Conn`].
    pub(crate) fn sent_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        let mut registry = self.stats.registry.lock();
        registry.active.retain(|a| a.id != self.id);
        registry.finished_sent += self.sent.load(Ordering::Relaxed);
    }
}

impl Stats {
    pub fn new() -> Arc<Stats> {
        Arc::new(Stats::default())
    }

    /// A worker starts serving a connection from `peer` for `module`
    /// (`None`: the module list).
    pub(crate) fn open(self: &Arc<Self>, peer: IpAddr, module: Option<String>) -> ConnTicket {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sent = Arc::new(AtomicU64::new(0));
        self.registry.lock().active.push(Active {
            id,
            peer,
            module,
            started: Instant::now(),
            sent: Arc::clone(&sent),
        });
        ConnTicket {
            stats: Arc::clone(self),
            id,
            sent,
        }
    }

    /// A finished transfer's literal and matched bytes.
    pub(crate) fn count_transfer(&self, literal: u64, matched: u64) {
        self.literal_bytes.fetch_add(literal, Ordering::Relaxed);
        self.matched_bytes.fetch_add(matched, Ordering::Relaxed);
    }

    pub(crate) fn report(&self) -> DaemonReport {
        let registry = self.registry.lock();
        let connections: Vec<ConnectionView> = registry
            .active
            .iter()
            .map(|a| ConnectionView {
                peer: a.peer,
                module: a.module.clone(),
                bytes_sent: a.sent.load(Ordering::Relaxed),
                seconds: a.started.elapsed().as_secs(),
            })
            .collect();
        let running: u64 = connections.iter().map(|c| c.bytes_sent).sum();
        DaemonReport {
            connections_total: self.connections_total.load(Ordering::Relaxed),
            bytes_sent: registry.finished_sent + running,
            connections,
            literal_bytes: self.literal_bytes.load(Ordering::Relaxed),
            matched_bytes: self.matched_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_ended_connections_stay_in_the_total() {
        let stats = Stats::new();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let one = stats.open(peer, Some("build-1".into()));
        let two = stats.open(peer, None);
        one.sent_counter().fetch_add(100, Ordering::Relaxed);
        two.sent_counter().fetch_add(5, Ordering::Relaxed);
        let report = stats.report();
        assert_eq!(report.connections.len(), 2);
        assert_eq!(report.connections[0].module.as_deref(), Some("build-1"));
        assert_eq!(report.bytes_sent, 105);
        drop(one);
        let report = stats.report();
        assert_eq!(report.connections.len(), 1);
        assert_eq!(report.bytes_sent, 105);
        assert_eq!(report.connections_total, 2);
    }
}
