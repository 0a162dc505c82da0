//! Wildcards in source arguments, expanded by the server as rsyncd does
//! (rsync: util1.c glob_expand): `rsync rsync://host/mod/*.iso dest/` names every
//! matching entry of the module. Each path component with `*`, `?` or `[`
//! is matched against the directory's names with rsync's wildmatch; an
//! argument that matches nothing is kept as it is, so the client hears that
//! it does not exist. Names the module's own rules exclude never match.

use super::filter::Filters;
use super::wildmatch::wildmatch;
use crate::source::{self, Source};

/// The most names all of a pull's arguments may expand to together.
pub(crate) const MAX_MATCHES: usize = 100_000;

fn has_wildcard(component: &[u8]) -> bool {
    component.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Expands every argument (sanitised paths relative to the module root).
/// Matches beyond [`MAX_MATCHES`] in all are dropped.
pub(crate) fn expand_all(source: &Source, filters: &Filters, args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for arg in args {
        let components: Vec<&[u8]> = arg.split(|&b| b == b'/').collect();
        if !components.iter().any(|c| has_wildcard(c)) {
            out.push(arg.clone());
            continue;
        }
        let before = out.len();
        expand_from(source, filters, Vec::new(), &components, &mut out);
        if out.len() == before {
            out.push(arg.clone());
        } else if arg.ends_with(b"/") {
            for f in &mut out[before..] {
                f.push(b'/');
            }
        }
    }
    out
}

/// Matches `rest` below the directory `prefix`, appending complete matches.
fn expand_from(
    source: &Source,
    filters: &Filters,
    prefix: Vec<u8>,
    rest: &[&[u8]],
    found: &mut Vec<Vec<u8>>,
) {
    let Some((&component, rest)) = rest.split_first() else {
        found.push(prefix);
        return;
    };
    if found.len() >= MAX_MATCHES {
        return;
    }
    if component.is_empty() {
        // A trailing or doubled slash.
        return expand_from(source, filters, prefix, rest, found);
    }
    if !has_wildcard(component) {
        let next = source::join(&prefix, component);
        return expand_from(source, filters, next, rest, found);
    }
    let Ok((real_dir, st)) = source.stat_confined(&prefix) else {
        return;
    };
    if !st.is_dir() {
        return;
    }
    let Ok(names) = source.read_dir(&real_dir) else {
        return;
    };
    for name in names {
        if !wildmatch(component, &name) {
            continue;
        }
        let candidate = source::join(&prefix, &name);
        let is_dir = matches!(source.stat_confined(&candidate), Ok((_, st)) if st.is_dir());
        // A slash after the component (even a trailing one) asks for a directory.
        let followed_by_slash = !rest.is_empty();
        if (followed_by_slash && !is_dir) || filters.is_daemon_excluded(&candidate, is_dir) {
            continue;
        }
        expand_from(source, filters, candidate, rest, found);
    }
}
