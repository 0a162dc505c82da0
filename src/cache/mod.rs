//! Placeholder with the agreed API (builds on demand are being written on
//! the `cache` branch).
pub mod meta;

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone)]
pub struct Cache;

pub struct BuildGuard {
    root: PathBuf,
    name: String,
}

impl BuildGuard {
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn meta(&self) -> Option<Arc<meta::MetaTable>> {
        None
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug)]
pub struct CacheError(pub String);

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Cache {
    pub fn list_modules(&self) -> Vec<String> {
        Vec::new()
    }
    pub fn acquire(
        &self,
        _name: &str,
        _progress: &mut dyn FnMut(&str),
    ) -> Result<Option<BuildGuard>, CacheError> {
        Ok(None)
    }
}
