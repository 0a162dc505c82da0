//! Scratch directories for one test: fresh, empty, removed when dropped,
//! and readable by any user.
//!
//! They live under the system's temporary directory, never under the
//! checkout: the reference rsyncd may read what a test puts there as
//! another user (`nobody`), which fails when the checkout sits under a
//! mode-0700 home. All tests run in one process, so names are made unique
//! by a random suffix, not by the process id.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tempfile::TempDir;

/// A fresh directory for one test; see the module doc.
pub struct Scratch(TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh, empty directory named after `test`, mode 0755.
pub fn scratch_dir(test: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("upserv-{test}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a scratch directory for {test}: {e}"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("opening the scratch directory to every user");
    Scratch(dir)
}
