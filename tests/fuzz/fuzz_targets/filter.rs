//! Filter rules as a client sends them (and, when the first byte says so,
//! as a module's `filter`, `include` and `exclude` parameters), then names
//! checked against them while walking the module tree, which holds a
//! per-directory merge file. Input: one choice byte, rules one per line,
//! a NUL, names one per line (a trailing `/` marks a directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use upserv::protocol::filter::{DaemonRules, FilterList, Filters};

/// A name as the file-list builder passes it: no empty, `.` or `..`
/// components, no leading or trailing slash.
fn clean_name(raw: &[u8]) -> (Vec<u8>, bool) {
    let is_dir = raw.ends_with(b"/");
    let parts: Vec<&[u8]> = upserv_fuzz::split(raw, b'/')
        .filter(|c| !matches!(*c, b"" | b"." | b".."))
        .collect();
    (parts.join(&b'/'), is_dir)
}

/// The module's own rules from the first three lines, when asked for.
fn daemon_list(lines: &[&[u8]], wanted: bool) -> Option<FilterList> {
    if !wanted {
        return FilterList::from_daemon_rules(&DaemonRules::default()).ok();
    }
    let line = |i: usize| lines.get(i).copied();
    let rules = DaemonRules {
        filter: line(0),
        include: line(1),
        exclude: line(2),
        ..DaemonRules::default()
    };
    FilterList::from_daemon_rules(&rules).ok()
}

fn check_all(filters: &Filters, names: &[u8]) {
    for raw in upserv_fuzz::split(names, b'\n') {
        let (name, is_dir) = clean_name(raw);
        if !name.is_empty() {
            let _ = filters.is_excluded(&name, is_dir);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let protocol = [27, 28, 29, 29][usize::from(choice & 3)];
    let (rules, names) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &b""[..]),
    };
    let lines: Vec<&[u8]> = upserv_fuzz::split(rules, b'\n').collect();
    let Some(daemon) = daemon_list(&lines, choice & 4 != 0) else {
        return;
    };
    let mut client = FilterList::new();
    for line in &lines {
        if client.add_wire_rule(line, protocol).is_err() {
            return;
        }
    }
    if choice & 8 != 0 && client.add_cvs_exclude().is_err() {
        return;
    }
    let mut filters = Filters::new(upserv_fuzz::module_root(), daemon, client);
    filters.set_transfer_root(b"");
    let Ok(root) = filters.push_dir(b"") else {
        return;
    };
    check_all(&filters, names);
    if let Ok(dir) = filters.push_dir(b"dir") {
        check_all(&filters, names);
        filters.pop_dir(dir);
    }
    filters.pop_dir(root);
});
