//! Owner and group names for the file list's id lists: names a build's
//! metadata table gave first, then the system's databases.

use std::collections::HashMap;

/// Owner and group names for the id lists: names from a build's metadata
/// table first, then the system's user and group databases.
#[derive(Default)]
pub(super) struct IdNames {
    users: HashMap<u32, Option<Box<[u8]>>>,
    groups: HashMap<u32, Option<Box<[u8]>>>,
}

impl IdNames {
    pub(super) fn note_user(&mut self, id: u32, name: &[u8]) {
        self.users.entry(id).or_insert_with(|| Some(name.into()));
    }

    pub(super) fn note_group(&mut self, id: u32, name: &[u8]) {
        self.groups.entry(id).or_insert_with(|| Some(name.into()));
    }

    /// The memory the names hold, roughly: each slot of the maps and the
    /// names' bytes.
    pub(super) fn memory(&self) -> u64 {
        let slot = std::mem::size_of::<(u32, Option<Box<[u8]>>)>() + 8;
        let names = |m: &HashMap<u32, Option<Box<[u8]>>>| -> usize {
            m.capacity() * slot + m.values().flatten().map(|n| n.len()).sum::<usize>()
        };
        (names(&self.users) + names(&self.groups)) as u64
    }

    pub(super) fn user(&self, id: u32) -> Option<Vec<u8>> {
        match self.users.get(&id) {
            Some(name) => name.as_ref().map(|n| n.to_vec()),
            None => crate::sys::user_name(id),
        }
    }

    pub(super) fn group(&self, id: u32) -> Option<Vec<u8>> {
        match self.groups.get(&id) {
            Some(name) => name.as_ref().map(|n| n.to_vec()),
            None => crate::sys::group_name(id),
        }
    }
}
