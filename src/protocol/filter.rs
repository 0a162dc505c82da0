//! Placeholder for filter rules (being written on the `filter` branch).

use crate::source::Source;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FilterLevel {
    /// No filtering (names given on the command line).
    None,
    /// Only the module's own rules.
    Daemon,
    /// The module's rules, then the client's.
    All,
}

#[derive(Default)]
pub struct Filters;

pub struct DirScope;

impl Filters {
    pub fn excluded(&self, _name: &[u8], _is_dir: bool, _level: FilterLevel) -> bool {
        false
    }
    pub fn enter_dir(&mut self, _src: &Source, _real_dir: &[u8], _dir_name: &[u8]) -> DirScope {
        DirScope
    }
    pub fn leave_dir(&mut self, _scope: DirScope) {}
    pub fn add_wire_rule(&mut self, _rule: &[u8], _protocol: u32) -> Result<(), String> {
        Ok(())
    }
}
