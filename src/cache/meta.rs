//! Placeholder for the metadata table (being written on the `cache` branch).

pub struct EntryMeta<'a> {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub mtime: i64,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

pub struct MetaTable;

impl MetaTable {
    pub fn get(&self, _rel: &[u8]) -> Option<EntryMeta<'_>> {
        None
    }
    pub fn table_only_children(
        &self,
        _dir: &[u8],
    ) -> impl Iterator<Item = (&[u8], EntryMeta<'_>)> {
        std::iter::empty()
    }
}
