//! What /proc tells about a process the tests started: its open
//! descriptors, threads and resident memory (now and at its peak), to show
//! that nothing leaks.

use super::wait::{poll, WAIT_LIMIT};

/// Open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// Waits until process `pid` has `want` open descriptors. Closing a
/// socket leaves no other trace to wait for, so this polls (bounded).
pub fn await_fd_count(pid: u32, want: usize) {
    let mut now = 0;
    let settled = poll(WAIT_LIMIT, || {
        now = fd_count(pid);
        (now == want).then_some(())
    });
    assert!(
        settled.is_some(),
        "process {pid} kept {now} descriptors, expected {want}"
    );
}

/// Threads of process `pid`.
pub fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .count()
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Peak resident memory of process `pid` so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// The `field` line of /proc/`pid`/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} line"))
}
