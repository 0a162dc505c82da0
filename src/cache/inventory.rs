//! The builds directory as the admin commands see it without a running
//! cache: which builds are there, how big, when last read, pinned or in use;
//! and pinning. Reading only through the store, so the rules stay there.

use std::path::Path;

use super::store::{self, Store};
use super::types::is_build_name;
use super::CacheError;

/// One cached build, as `upserv list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildEntry {
    pub name: String,
    /// Disk usage of the tree, in bytes.
    pub size: u64,
    /// Seconds since the epoch: the access record, else the tree's mtime.
    pub last_access: i64,
    pub sticky: bool,
    /// A connection of some process serves it now.
    pub busy: bool,
}

/// Every build in `builds_dir`, sorted by name.
pub fn list_builds(builds_dir: &Path) -> Result<Vec<BuildEntry>, CacheError> {
    let store = Store::open(builds_dir)
        .map_err(|e| CacheError::new(format!("builds dir {}: {e}", builds_dir.display())))?;
    let names = store
        .list_builds()
        .map_err(|e| CacheError::new(format!("cannot list {}: {e}", builds_dir.display())))?;
    let access = store.load_access();
    Ok(names
        .into_iter()
        .map(|name| BuildEntry {
            size: store::disk_usage(&store.build_dir(&name)).unwrap_or(0),
            last_access: access
                .get(&name)
                .unwrap_or_else(|| store.build_mtime(&name)),
            sticky: store.is_sticky(&name),
            busy: store.is_busy(&name),
            name,
        })
        .collect())
}

/// Pins (`sticky`) or unpins build `name`, cached or not (a pin may come
/// before the first fetch). Returns whether the build is cached now.
pub fn set_sticky(builds_dir: &Path, name: &str, sticky: bool) -> Result<bool, CacheError> {
    if !is_build_name(name) {
        return Err(CacheError::new(format!(
            "{name:?} is not a valid build name"
        )));
    }
    let store = Store::open(builds_dir)
        .map_err(|e| CacheError::new(format!("cannot change {name}.sticky: {e}")))?;
    let cached = store.is_build(name);
    store
        .set_sticky(name, sticky)
        .map_err(|e| CacheError::new(format!("cannot change {name}.sticky: {e}")))?;
    Ok(cached)
}
