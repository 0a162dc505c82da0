//! The order of the file list (rsync: flist.c f_name_cmp): both sides sort the
//! entries with it, and file indices on the wire are positions in that
//! order, so one mistake shifts every index. It changed at protocol 29.

use std::cmp::Ordering;

/// The pieces `f_name_cmp` compares: an entry's directory, basename and
/// whether it is a directory.
#[derive(Clone, Copy)]
pub(crate) struct NameParts<'a> {
    dir: &'a [u8],
    base: &'a [u8],
    is_dir: bool,
}

impl<'a> NameParts<'a> {
    pub(crate) fn of(dir: &'a [u8], base: &'a [u8], is_dir: bool) -> NameParts<'a> {
        NameParts { dir, base, is_dir }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CmpType {
    Item,
    Path,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CmpState {
    Dir,
    Slash,
    Base,
    Trailing,
}

/// One side of the comparison walk in [`f_name_cmp`].
struct Cursor<'a> {
    parts: NameParts<'a>,
    text: &'a [u8],
    pos: usize,
    state: CmpState,
    kind: CmpType,
    path_type: CmpType,
}

impl<'a> Cursor<'a> {
    fn new(parts: NameParts<'a>, path_type: CmpType) -> Cursor<'a> {
        let mut c = Cursor {
            parts,
            text: b"",
            pos: 0,
            state: CmpState::Dir,
            kind: path_type,
            path_type,
        };
        if parts.dir.is_empty() {
            c.enter_base();
        } else {
            c.text = parts.dir;
        }
        c
    }

    /// Moves to the basename; a directory named "." sorts before its contents.
    fn enter_base(&mut self) {
        self.kind = if self.parts.is_dir {
            self.path_type
        } else {
            CmpType::Item
        };
        self.pos = 0;
        if self.kind == CmpType::Path && self.parts.base == b"." {
            self.kind = CmpType::Item;
            self.state = CmpState::Trailing;
            self.text = b"";
        } else {
            self.state = CmpState::Base;
            self.text = self.parts.base;
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn byte(&self) -> u8 {
        self.text[self.pos]
    }

    /// Advances past the end of the current piece. Returns true when the
    /// cursor has run out for good (the name is a prefix of the other).
    fn next_piece(&mut self) -> bool {
        match self.state {
            CmpState::Dir => {
                self.state = CmpState::Slash;
                self.text = b"/";
                self.pos = 0;
            }
            CmpState::Slash => self.enter_base(),
            CmpState::Base if self.kind == CmpType::Path => {
                self.state = CmpState::Trailing;
                self.text = b"/";
                self.pos = 0;
            }
            CmpState::Base | CmpState::Trailing => {
                self.state = CmpState::Trailing;
                self.kind = CmpType::Item;
                return true;
            }
        }
        false
    }
}

fn type_order(a: CmpType) -> Ordering {
    if a == CmpType::Path {
        Ordering::Greater
    } else {
        Ordering::Less
    }
}

/// rsync's `f_name_cmp`: compares two names as if joined into paths. From
/// protocol 29 on, a directory compares as if it had a trailing slash, sorts
/// after every non-directory at the same depth, and "." sorts first.
pub(crate) fn f_name_cmp(a: NameParts, b: NameParts, protocol: u32) -> Ordering {
    let path_type = if protocol >= 29 {
        CmpType::Path
    } else {
        CmpType::Item
    };
    let mut c1 = Cursor::new(a, path_type);
    let mut c2 = Cursor::new(b, path_type);
    if c1.kind != c2.kind {
        return type_order(c1.kind);
    }
    loop {
        if c1.at_end() {
            c1.next_piece();
            if !c2.at_end() && c1.kind != c2.kind {
                return type_order(c1.kind);
            }
        }
        if c2.at_end() {
            let done = c2.next_piece();
            if done && c1.at_end() {
                return Ordering::Equal;
            }
            if c1.kind != c2.kind {
                return type_order(c1.kind);
            }
        }
        let x = if c1.at_end() { 0 } else { c1.byte() };
        let y = if c2.at_end() { 0 } else { c2.byte() };
        if x != y {
            return x.cmp(&y);
        }
        c1.pos += 1;
        c2.pos += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (&[u8], &[u8]) {
        match s.rfind('/') {
            Some(p) => (&s.as_bytes()[..p], &s.as_bytes()[p + 1..]),
            None => (b"", s.as_bytes()),
        }
    }

    fn sorted(names: &[(&str, bool)], protocol: u32) -> Vec<String> {
        let mut v: Vec<(&str, bool)> = names.to_vec();
        v.sort_by(|a, b| {
            let (da, ba) = split(a.0);
            let (db, bb) = split(b.0);
            f_name_cmp(
                NameParts::of(da, ba, a.1),
                NameParts::of(db, bb, b.1),
                protocol,
            )
        });
        v.iter().map(|(n, _)| n.to_string()).collect()
    }

    const TREE: &[(&str, bool)] = &[
        ("b", false),
        ("a", true),
        ("a/x", false),
        (".", true),
        ("a.txt", false),
        ("a/sub", true),
        ("a/sub/z", false),
        ("a/y", false),
        ("c", true),
    ];

    #[test]
    fn protocol_29_order_puts_files_before_dirs_and_dot_first() {
        // Checked by hand against rsync: flist.c f_name_cmp's rules: "." first; at each level
        // files (in byte order) before directories; a directory's contents
        // follow it directly.
        assert_eq!(
            sorted(TREE, 29),
            [".", "a.txt", "b", "a", "a/x", "a/y", "a/sub", "a/sub/z", "c"]
        );
    }

    #[test]
    fn protocol_28_order_is_plain_byte_order_of_paths() {
        assert_eq!(
            sorted(TREE, 28),
            [".", "a", "a.txt", "a/sub", "a/sub/z", "a/x", "a/y", "b", "c"]
        );
    }

    #[test]
    fn directory_sorts_as_if_it_had_a_trailing_slash() {
        // "a-b" (0x2d) sorts before "a/" (0x2f) but "a0" (0x30) after it,
        // among directories at protocol 29.
        let names = [("a0", true), ("a", true), ("a-b", true)];
        assert_eq!(sorted(&names, 29), ["a-b", "a", "a0"]);
    }
}
