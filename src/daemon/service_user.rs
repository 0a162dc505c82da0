//! The service user: the builds directory belongs to the user the daemon
//! runs as. An admin command started as root becomes that owner before it
//! touches anything, so that what it creates (builds, lock files, the
//! access record) stays the daemon's to serve and evict. The daemon itself
//! warns when it runs as root.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys::{become_user, euid};

/// When running as root and `builds` belongs to another user, becomes that
/// user (its group alone as the group list, then the group, then the user).
/// A builds directory that does not exist yet, or root's own, changes
/// nothing.
pub fn become_owner(builds: &Path) -> Result<(), String> {
    if euid() != 0 {
        return Ok(());
    }
    let meta = match std::fs::metadata(builds) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("builds dir {}: {e}", builds.display())),
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Ok(());
    }
    become_user(uid, gid).map_err(|(what, e)| {
        format!(
            "cannot switch to uid {uid} gid {gid}, the owner of {}: {what}: {e}",
            builds.display()
        )
    })
}

/// Logs a warning when the daemon runs as root.
pub fn warn_if_root() {
    if euid() == 0 {
        log::warn!(
            "running as root: run upserv as the owner of its builds directory (root is only needed for ports below 1024; CAP_NET_BIND_SERVICE is enough)"
        );
    }
}
