//! What a running daemon says about itself: the downloads in progress, the
//! connections being served and the cache, gathered from [`Stats`] and the
//! cache into one [`Report`], written as text for `upserv status`, as JSON
//! for `upserv status --json`, or in the Prometheus text format.
//!
//! Must not do I/O: the control socket and the metrics responder carry the
//! text.

use super::stats::{DaemonReport, Stats};
use crate::cache::human_size;
use crate::cache::stats::{DownloadView, REQUEST_RESULTS};
use crate::cache::{CacheReport, CacheWatch};
use crate::protocol::memo::{Memo, MemoCounts};
use crate::protocol::share::Counts;
use crate::protocol::SharedLists;
use std::fmt::Write;
use std::sync::Arc;

/// What status and metrics read: the daemon's counters and its cache.
#[derive(Clone)]
pub struct Observed {
    pub stats: Arc<Stats>,
    pub cache: Option<CacheWatch>,
    /// The delta memo of the builds, with a cache.
    pub memo: Option<Arc<Memo>>,
    /// The file lists the builds' connections share, with a cache.
    pub lists: Option<Arc<SharedLists>>,
}

impl Observed {
    pub(crate) fn report(&self) -> Report {
        Report {
            daemon: self.stats.report(),
            cache: self.cache.as_ref().map(CacheWatch::report),
            memo: self.memo.as_ref().map(|m| m.counts()),
            lists: self.lists.as_ref().map(|l| l.counts()),
        }
    }
}

/// The daemon at one moment.
pub(crate) struct Report {
    pub(crate) daemon: DaemonReport,
    pub(crate) cache: Option<CacheReport>,
    pub(crate) memo: Option<MemoCounts>,
    pub(crate) lists: Option<Counts>,
}

/// The downloads in progress, one line each, as `status` and `list` show
/// them; nothing when there are none.
pub(crate) fn download_lines(downloads: &[DownloadView]) -> String {
    let mut out = String::new();
    for d in downloads {
        let _ = write!(
            out,
            "  {:<32} {:<11} {:>8}",
            d.name,
            d.stage,
            human_size(d.done)
        );
        match (d.total, d.percent()) {
            (Some(total), Some(percent)) => {
                let _ = write!(out, " of {:>8} {percent:>3}%", human_size(total));
            }
            _ => out.push_str(&" ".repeat(17)),
        }
        let _ = write!(out, " {:>8}/s", human_size(d.rate as u64));
        match d.eta_seconds() {
            Some(eta) => {
                let _ = write!(out, "  ETA {:>6}", duration_text(eta));
            }
            None => out.push_str("  ETA      ?"),
        }
        let _ = writeln!(out, "  {} waiting", d.waiters);
    }
    out
}

/// `75` → `1m15s`, `3700` → `1h01m`.
fn duration_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

impl Report {
    /// The text `upserv status` prints.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let downloads = self.cache.as_ref().map_or(&[][..], |c| &c.downloads[..]);
        let _ = writeln!(out, "downloads in progress: {}", downloads.len());
        out.push_str(&download_lines(downloads));
        let mirrors = self.cache.as_ref().map_or(&[][..], |c| &c.mirrors[..]);
        if !mirrors.is_empty() {
            let _ = writeln!(out, "upstream mirrors: {}", mirrors.len());
        }
        for m in mirrors {
            match m.down_for {
                Some(left) => {
                    let left = duration_text(left.as_secs());
                    let _ = writeln!(out, "  {}  down for {left} more (tried last)", m.template);
                }
                None => {
                    let _ = writeln!(out, "  {}  up", m.template);
                }
            }
        }
        let conns = &self.daemon.connections;
        let _ = writeln!(out, "connections: {}", conns.len());
        for c in conns {
            let _ = writeln!(
                out,
                "  {:<40} {:<32} {:>8} sent {:>6}s",
                c.peer.to_string(),
                c.module.as_deref().unwrap_or("(module list)"),
                human_size(c.bytes_sent),
                c.seconds
            );
        }
        match &self.cache {
            Some(cache) => {
                let sticky: Vec<&str> = sticky_names(cache).collect();
                let _ = write!(
                    out,
                    "cache: {} used of {} ({}%), {} builds, {} sticky",
                    human_size(cache.used()),
                    human_size(cache.budget),
                    cache.used().saturating_mul(100) / cache.budget.max(1),
                    cache.builds.len(),
                    sticky.len()
                );
                if !sticky.is_empty() {
                    let _ = write!(out, ": {}", sticky.join(", "));
                }
                out.push('\n');
            }
            None => out.push_str("cache: none\n"),
        }
        out
    }

    /// The same as [`Report::text`], as one JSON object.
    pub(crate) fn json(&self) -> String {
        let mut out = String::from("{\"downloads\":[");
        let downloads = self.cache.as_ref().map_or(&[][..], |c| &c.downloads[..]);
        for (i, d) in downloads.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"build\":{},\"stage\":{},\"bytes\":{},\"total\":{},\"percent\":{},\"rate\":{},\"eta_seconds\":{},\"waiting\":{}}}",
                comma(i),
                json_string(&d.name),
                json_string(d.stage),
                d.done,
                json_option(d.total),
                json_option(d.percent()),
                d.rate as u64,
                json_option(d.eta_seconds()),
                d.waiters
            );
        }
        out.push_str("],\"mirrors\":[");
        let mirrors = self.cache.as_ref().map_or(&[][..], |c| &c.mirrors[..]);
        for (i, m) in mirrors.iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"template\":{},\"down_seconds\":{}}}",
                comma(i),
                json_string(&m.template),
                json_option(m.down_for.map(|d| d.as_secs()))
            );
        }
        out.push_str("],\"connections\":[");
        for (i, c) in self.daemon.connections.iter().enumerate() {
            let module = c.module.as_deref().map_or("null".into(), json_string);
            let _ = write!(
                out,
                "{}{{\"address\":{},\"module\":{module},\"bytes_sent\":{},\"seconds\":{}}}",
                comma(i),
                json_string(&c.peer.to_string()),
                c.bytes_sent,
                c.seconds
            );
        }
        out.push_str("],\"cache\":");
        match &self.cache {
            Some(cache) => {
                let sticky: Vec<String> = sticky_names(cache).map(json_string).collect();
                let _ = write!(
                    out,
                    "{{\"used\":{},\"budget\":{},\"builds\":{},\"sticky\":[{}]}}",
                    cache.used(),
                    cache.budget,
                    cache.builds.len(),
                    sticky.join(",")
                );
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"memo\":");
        match &self.memo {
            Some(m) => {
                let _ = write!(
                    out,
                    "{{\"entries\":{},\"bytes\":{},\"replayed\":{},\"computed\":{},\"evicted\":{},\"dropped\":{}}}",
                    m.entries, m.bytes, m.replayed, m.computed, m.evicted, m.dropped
                );
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"lists\":");
        match &self.lists {
            Some(l) => {
                let _ = write!(
                    out,
                    "{{\"held\":{},\"bytes\":{},\"hits\":{},\"built\":{},\"evicted\":{},\"dropped\":{}}}",
                    l.held, l.bytes, l.hits, l.built, l.evicted, l.dropped
                );
            }
            None => out.push_str("null"),
        }
        out.push_str("}\n");
        out
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub(crate) fn prometheus(&self) -> String {
        let mut out = String::new();
        let d = &self.daemon;
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "upserv_connections_total",
            "counter",
            "Module connections served since the daemon started.",
            d.connections_total,
        );
        metric(
            "upserv_connections_active",
            "gauge",
            "Connections being served now.",
            d.connections.len() as u64,
        );
        metric(
            "upserv_bytes_sent_total",
            "counter",
            "Bytes sent to clients.",
            d.bytes_sent,
        );
        metric(
            "upserv_literal_bytes_total",
            "counter",
            "File data sent literally, in finished transfers.",
            d.literal_bytes,
        );
        metric(
            "upserv_matched_bytes_total",
            "counter",
            "File data the clients already had (matched blocks), in finished transfers.",
            d.matched_bytes,
        );
        if let Some(m) = &self.memo {
            metric(
                "upserv_memo_entries",
                "gauge",
                "Deltas of builds kept for identical requests.",
                m.entries,
            );
            metric(
                "upserv_memo_bytes",
                "gauge",
                "Memory the kept deltas take.",
                m.bytes,
            );
            metric(
                "upserv_memo_replayed_total",
                "counter",
                "Files sent by replaying a kept delta instead of matching.",
                m.replayed,
            );
            metric(
                "upserv_memo_computed_total",
                "counter",
                "Deltas computed and kept.",
                m.computed,
            );
        }
        if let Some(l) = &self.lists {
            metric(
                "upserv_lists_held",
                "gauge",
                "File lists of builds kept for connections that pull alike.",
                l.held,
            );
            metric(
                "upserv_lists_bytes",
                "gauge",
                "Memory the kept file lists take.",
                l.bytes,
            );
            metric(
                "upserv_lists_hits_total",
                "counter",
                "File lists taken from another connection instead of built.",
                l.hits,
            );
            metric(
                "upserv_lists_built_total",
                "counter",
                "File lists built for sharing.",
                l.built,
            );
        }
        let Some(c) = &self.cache else {
            return out;
        };
        metric(
            "upserv_cache_bytes",
            "gauge",
            "Disk used by cached builds.",
            c.used(),
        );
        metric(
            "upserv_cache_budget_bytes",
            "gauge",
            "The cache size: the disk budget of the builds directory.",
            c.budget,
        );
        metric(
            "upserv_builds_cached",
            "gauge",
            "Builds in the builds directory.",
            c.builds.len() as u64,
        );
        metric(
            "upserv_downloads_in_progress",
            "gauge",
            "Builds being downloaded or waiting for their download.",
            c.downloads.len() as u64,
        );
        metric(
            "upserv_download_bytes_total",
            "counter",
            "Bytes downloaded from the upstream.",
            c.download_bytes,
        );
        metric(
            "upserv_evictions_total",
            "counter",
            "Builds evicted from the cache.",
            c.evictions,
        );
        let name = "upserv_cache_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Build requests by result: cached (hit), download started (miss), download joined (wait), not found, failed.\n# TYPE {name} counter"
        );
        for (result, count) in REQUEST_RESULTS.iter().zip(c.requests) {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {count}");
        }
        out
    }
}

fn sticky_names(cache: &CacheReport) -> impl Iterator<Item = &str> {
    cache
        .builds
        .iter()
        .filter(|b| b.sticky)
        .map(|b| b.name.as_str())
}

fn comma(i: usize) -> &'static str {
    if i == 0 {
        ""
    } else {
        ","
    }
}

fn json_option(value: Option<u64>) -> String {
    value.map_or_else(|| "null".into(), |v| v.to_string())
}

/// `text` as a JSON string: quotes, backslashes and control characters
/// escaped (RFC 8259, section 7).
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn durations_read_easily() {
        assert_eq!(duration_text(5), "5s");
        assert_eq!(duration_text(75), "1m15s");
        assert_eq!(duration_text(3700), "1h01m");
    }

    #[test]
    fn a_download_shows_its_share_rate_and_eta() {
        let d = DownloadView {
            name: "build-9".into(),
            stage: "downloading",
            done: 1 << 20,
            total: Some(4 << 20),
            rate: (512 << 10) as f64,
            waiters: 2,
        };
        assert_eq!(d.percent(), Some(25));
        assert_eq!(d.eta_seconds(), Some(6));
        let line = download_lines(&[d]);
        assert!(line.contains("build-9"), "{line}");
        assert!(line.contains(" 25%"), "{line}");
        assert!(line.contains("512.0K/s"), "{line}");
        assert!(line.contains("ETA     6s"), "{line}");
        assert!(line.ends_with("2 waiting\n"), "{line}");
    }
}
