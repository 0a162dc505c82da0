//! Reading merge files: where they are, opening them safely, splitting them.
//!
//! Owns the module-relative path arithmetic for merge-file names (joined to
//! a directory, `..` never climbing above the module root), opening a file
//! inside the module without following any symlink, reading it with a size
//! limit, and cutting its bytes into rules the way rsync's parse_filter_file
//! does (lines ended by LF, CR or CRLF, or NUL with `--from0`; words when the
//! merge rule asks for word splitting; comments; over-long lines dropped).
//!
//! It must not interpret rules: the list code does that with each piece.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::parse::is_c_space;

/// Largest merge file read, in bytes. Filter files are small text files; a
/// bigger one is refused rather than loaded.
pub(crate) const MAX_MERGE_FILE_BYTES: u64 = 1 << 20;

/// Longest line of a merge file that is kept, as rsync's line buffer
/// (4096 + 1024 bytes with its terminator) allows; longer lines are dropped.
pub(crate) const MAX_MERGE_LINE_LEN: usize = 5119;

/// Joins `name` to the module-relative directory `dir` (or to the module
/// root when `name` starts with `/`) and normalises the result: no empty or
/// `.` components, `..` removing the previous component but never climbing
/// above the root. The result has no leading or trailing slash.
pub(super) fn resolve(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + name.len() + 1);
    if name.first() != Some(&b'/') {
        push_components(&mut out, dir);
    }
    push_components(&mut out, name);
    out
}

fn push_components(out: &mut Vec<u8>, path: &[u8]) {
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                let keep = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(keep);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(component);
            }
        }
    }
}

/// Splits a normalised module-relative path into its directory ("" for the
/// root) and its last component.
pub(super) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (&[], path),
    }
}

/// Whether the normalised path `ancestor` is `dir` or one of its parents.
pub(super) fn is_ancestor_or_self(ancestor: &[u8], dir: &[u8]) -> bool {
    ancestor.is_empty()
        || dir == ancestor
        || (dir.starts_with(ancestor) && dir.get(ancestor.len()) == Some(&b'/'))
}

/// Opens the regular file at the normalised module-relative path `rel`
/// beneath `root`, refusing symlinks in every component so the name cannot
/// lead out of the module, and anything but a regular file.
pub(super) fn open_beneath(root: &Path, rel: &[u8]) -> io::Result<File> {
    crate::source::open_regular_beneath(root, rel)
}

/// Opens a file the operator named in the configuration.
pub(super) fn open_operator(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Reads all of `file`, refusing files above [`MAX_MERGE_FILE_BYTES`].
pub(super) fn read_bounded(file: File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_MERGE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MERGE_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_MERGE_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// How a merge file's bytes are cut into rules.
#[derive(Clone, Copy)]
pub(super) struct Splitting {
    /// Every whitespace-separated word is a rule (no comments).
    pub(crate) words: bool,
    /// Lines end at NUL instead of CR/LF (`--from0`).
    pub(crate) nul_lines: bool,
}

/// One piece of a merge file to parse as a rule, with its line number
/// (`None` when splitting into words, where lines are not counted).
pub(super) struct Piece<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) line: Option<usize>,
}

/// Calls `each` with every piece of `bytes` that holds a rule. Pieces longer
/// than [`MAX_MERGE_LINE_LEN`] are reported through `too_long` and skipped.
pub(super) fn for_each_piece<E>(
    bytes: &[u8],
    splitting: Splitting,
    mut too_long: impl FnMut(Option<usize>),
    mut each: impl FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut pos = 0;
    let mut line = 0;
    while pos < bytes.len() {
        line += 1;
        let (piece, next) = cut_piece(bytes, pos, splitting);
        pos = next;
        let number = (!splitting.words).then_some(line);
        if piece.len() > MAX_MERGE_LINE_LEN {
            too_long(number);
            continue;
        }
        // A NUL inside a line ends the rule, as it ends a C string.
        let text = match piece.iter().position(|&b| b == 0) {
            Some(nul) => &piece[..nul],
            None => piece,
        };
        let comment = !splitting.words && matches!(text.first(), Some(b';' | b'#'));
        if !text.is_empty() && !comment {
            each(Piece { text, line: number })?;
        }
    }
    Ok(())
}

/// The piece starting at `start` and where the next one starts.
fn cut_piece(bytes: &[u8], start: usize, splitting: Splitting) -> (&[u8], usize) {
    let mut end = start;
    while end < bytes.len() {
        let b = bytes[end];
        let ends_line = if splitting.nul_lines {
            b == 0
        } else {
            b == b'\n' || b == b'\r'
        };
        if ends_line || (splitting.words && is_c_space(b)) {
            let crlf = !splitting.nul_lines && b == b'\r' && bytes.get(end + 1) == Some(&b'\n');
            return (&bytes[start..end], end + 1 + usize::from(crlf));
        }
        end += 1;
    }
    (&bytes[start..end], end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn pieces(bytes: &[u8], words: bool, nul_lines: bool) -> Vec<(String, Option<usize>)> {
        let mut out = Vec::new();
        let splitting = Splitting { words, nul_lines };
        for_each_piece(
            bytes,
            splitting,
            |_| {},
            |p| {
                out.push((String::from_utf8_lossy(p.text).into_owned(), p.line));
                Ok::<(), Infallible>(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn resolve_stays_inside_the_module() {
        assert_eq!(resolve(b"a/b", b".f"), b"a/b/.f");
        assert_eq!(resolve(b"a/b", b"/.f"), b".f");
        assert_eq!(resolve(b"a/b", b"../.f"), b"a/.f");
        assert_eq!(resolve(b"a/b", b"../../../../x/./y"), b"x/y");
        assert_eq!(resolve(b"", b"a//b/"), b"a/b");
        assert_eq!(resolve(b"a", b".."), b"");
    }

    #[test]
    fn path_helpers() {
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
        assert!(is_ancestor_or_self(b"", b"a"));
        assert!(is_ancestor_or_self(b"a", b"a/b"));
        assert!(is_ancestor_or_self(b"a/b", b"a/b"));
        assert!(!is_ancestor_or_self(b"a/b", b"a/bc"));
        assert!(!is_ancestor_or_self(b"a/b", b"a"));
    }

    #[test]
    fn lines_comments_and_line_endings() {
        let got = pieces(b"- a\r\n# c\n;c\n\n+ b\rx\0y\n\0z", false, false);
        let want = vec![
            ("- a".to_string(), Some(1)),
            ("+ b".to_string(), Some(5)),
            ("x".to_string(), Some(6)),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn words_and_nul_lines() {
        let got = pieces(b" a\tb\n#c ", true, false);
        let words: Vec<String> = got.into_iter().map(|(t, _)| t).collect();
        assert_eq!(words, ["a", "b", "#c"]);
        let got = pieces(b"- a b\0+ c\n", false, true);
        let lines: Vec<String> = got.into_iter().map(|(t, _)| t).collect();
        assert_eq!(lines, ["- a b", "+ c\n"]);
    }

    #[test]
    fn over_long_lines_are_skipped() {
        let mut bytes = vec![b'x'; MAX_MERGE_LINE_LEN + 1];
        bytes.extend_from_slice(b"\nok\n");
        bytes.extend(std::iter::repeat_n(b'y', MAX_MERGE_LINE_LEN));
        let mut skipped = Vec::new();
        let mut kept = Vec::new();
        let splitting = Splitting {
            words: false,
            nul_lines: false,
        };
        for_each_piece(
            &bytes,
            splitting,
            |line| skipped.push(line),
            |p| {
                kept.push(p.text.len());
                Ok::<(), Infallible>(())
            },
        )
        .unwrap();
        assert_eq!(skipped, [Some(1)]);
        assert_eq!(kept, [2, MAX_MERGE_LINE_LEN]);
    }

    #[test]
    fn open_beneath_refuses_symlinks_and_non_files() {
        let root = std::env::temp_dir().join(format!("upserv-filter-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"- x\n").unwrap();
        std::os::unix::fs::symlink("d", root.join("link")).unwrap();
        std::os::unix::fs::symlink("f", root.join("d/flink")).unwrap();
        let fifo =
            std::ffi::CString::new(root.join("d/fifo").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: `fifo` is a valid C string naming a path in our scratch dir.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let read = |rel: &[u8]| open_beneath(&root, rel).and_then(read_bounded);
        assert_eq!(read(b"d/f").unwrap(), b"- x\n");
        assert!(read(b"link/f").is_err());
        assert!(read(b"d/flink").is_err());
        assert!(read(b"d").is_err());
        assert!(read(b"d/fifo").is_err());
        assert!(read(b"d/missing").is_err());
        assert!(read(b"").is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn read_bounded_refuses_big_files() {
        let path = std::env::temp_dir().join(format!("upserv-filter-big-{}", std::process::id()));
        std::fs::write(&path, vec![b'#'; MAX_MERGE_FILE_BYTES as usize + 1]).unwrap();
        let err = read_bounded(File::open(&path).unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        std::fs::remove_file(&path).unwrap();
    }
}
