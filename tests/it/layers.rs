//! The shape of the code: no two files import each other (directly or
//! round a loop), and no module imports from a layer above its own, in the
//! order `src/lib.rs` documents under "Layers".
//!
//! The graph is built from the source text, file by file: every
//! `use crate::…`, `use super::…`, `use self::…` (and a `use child::…` of a
//! module's own child) and every `crate::…`/`super::…` path in code names a
//! module, and through it the file that defines the item, following `use`
//! re-exports to where the item is defined. A module file's `pub use` of
//! its own children is its public face, not an import of its own, and is
//! left out. The library (from `src/lib.rs`) and the binary (from
//! `src/main.rs`) are separate crates; the binary reaches the library only
//! as `upserv::`, which is not an edge here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// How many `use` re-exports one name may be followed through.
const MAX_REEXPORT_HOPS: usize = 16;

/// Source text with comments, strings and character literals blanked out
/// (newlines kept), so that only code is searched.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && !ident_before(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[j]);
                j += 1;
            }
            out.push(' ');
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    blank(&mut out, ch);
                }
                i += 1;
            }
            out.push_str("  ");
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), else a lifetime.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                out.push(' ');
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push(' ');
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One source file of one crate.
struct File {
    path: PathBuf,
    /// The file's module path within its crate (`["cache", "store"]`).
    module: Vec<String>,
    code: String,
}

/// One `use` leaf or code path, with the module it was written in.
struct PathRef {
    /// The module the path is relative to (inline modules included).
    scope: Vec<String>,
    segments: Vec<String>,
    /// Written in a `pub use` (a re-export).
    reexport: bool,
}

/// A crate: its files by module path, and what each file defines and imports.
struct Crate {
    files: Vec<File>,
    by_module: HashMap<Vec<String>, usize>,
    /// Inline modules (`mod tests { … }`) and the file holding them.
    inline: HashMap<Vec<String>, usize>,
    defined: Vec<BTreeSet<String>>,
    refs: Vec<Vec<PathRef>>,
    /// `use` bindings: file, name → the path it stands for.
    bindings: Vec<HashMap<String, PathRef>>,
    /// `#[macro_export]` macros live at the crate root, wherever written.
    exported_macros: HashMap<String, usize>,
}

fn read_crate(src: &Path, root: &str) -> Crate {
    let mut files = Vec::new();
    let mut todo = vec![(src.join(root), Vec::<String>::new())];
    while let Some((path, module)) = todo.pop() {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let code = code_only(&text);
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let dir = if matches!(stem.as_str(), "mod" | "lib" | "main") {
            path.parent().unwrap().to_path_buf()
        } else {
            path.parent().unwrap().join(&stem)
        };
        for name in declared_file_modules(&code) {
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let child = if flat.exists() { flat } else { nested };
            let mut child_module = module.clone();
            child_module.push(name);
            todo.push((child, child_module));
        }
        files.push(File { path, module, code });
    }
    let mut krate = Crate {
        by_module: files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect(),
        inline: HashMap::new(),
        defined: Vec::new(),
        refs: Vec::new(),
        bindings: Vec::new(),
        exported_macros: HashMap::new(),
        files,
    };
    for i in 0..krate.files.len() {
        let (defined, refs, inline) = scan(&krate.files[i]);
        for m in inline {
            krate.inline.insert(m, i);
        }
        for name in exported_macros(&krate.files[i].code) {
            krate.exported_macros.insert(name, i);
        }
        let mut bindings = HashMap::new();
        for r in &refs {
            if let Some(name) = r.segments.last().filter(|s| s.as_str() != "*") {
                bindings.insert(
                    name.clone(),
                    PathRef {
                        scope: r.scope.clone(),
                        segments: r.segments.clone(),
                        reexport: r.reexport,
                    },
                );
            }
        }
        krate.defined.push(defined);
        krate.refs.push(refs);
        krate.bindings.push(bindings);
    }
    krate
}

/// `mod NAME;` declarations (file modules).
fn declared_file_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if at > 0 && code[..at].ends_with(|c: char| is_ident(c)) {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|&c| is_ident(c))
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if !name.is_empty() && after.starts_with(';') {
            names.push(name);
        }
    }
    names
}

fn exported_macros(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("#[macro_export]") {
        let rest = &code[at..];
        if let Some(m) = rest.find("macro_rules!") {
            let name: String = rest[m + 12..]
                .trim_start()
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            names.push(name);
        }
    }
    names
}

/// What a file defines, the paths it names and its inline modules.
fn scan(file: &File) -> (BTreeSet<String>, Vec<PathRef>, Vec<Vec<String>>) {
    let code = &file.code;
    let bytes: Vec<char> = code.chars().collect();
    let mut defined = BTreeSet::new();
    let mut refs = Vec::new();
    let mut inline = Vec::new();
    // The inline module stack: (name, brace depth at which it closes).
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let word_at =
        |i: usize| -> String { bytes[i..].iter().take_while(|&&c| is_ident(c)).collect() };
    while i < bytes.len() {
        let c = bytes[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            depth = depth.saturating_sub(1);
            if stack.last().is_some_and(|(_, d)| *d == depth) {
                stack.pop();
            }
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == '$')) {
            i += 1;
            continue;
        }
        let word = word_at(i);
        let after = i + word.len();
        let scope: Vec<String> = file
            .module
            .iter()
            .cloned()
            .chain(stack.iter().map(|(n, _)| n.clone()))
            .collect();
        let next_word = || {
            let rest: String = bytes[after..].iter().collect();
            let rest = rest.trim_start().trim_start_matches('!').trim_start();
            rest.chars()
                .take_while(|&c| is_ident(c))
                .collect::<String>()
        };
        match word.as_str() {
            "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "union" => {
                let name = next_word();
                if !name.is_empty() {
                    defined.insert(name);
                }
            }
            "macro_rules" => {
                defined.insert(next_word());
            }
            "mod" => {
                let name = next_word();
                let rest: String = bytes[after..].iter().collect();
                let tail = rest.trim_start()[name.len()..].trim_start();
                defined.insert(name.clone());
                if tail.starts_with('{') && stack.is_empty() {
                    let mut m = file.module.clone();
                    m.push(name.clone());
                    inline.push(m);
                }
                if tail.starts_with('{') {
                    stack.push((name, depth));
                }
            }
            "use" => {
                let end = bytes[after..]
                    .iter()
                    .position(|&c| c == ';')
                    .map_or(bytes.len(), |p| after + p);
                // Blanks go, except that `a as b` keeps its rename as `a@b`.
                let raw: String = bytes[after..end].iter().collect();
                let words: Vec<&str> = raw.split_whitespace().collect();
                let tree = words.join(" ").replace(" as ", "@").replace(' ', "");
                let before: String = bytes[i.saturating_sub(24)..i].iter().collect();
                let reexport = before.trim_end().ends_with("pub")
                    || before.trim_end().ends_with(')') && before.contains("pub(");
                for segments in expand_use(&tree) {
                    refs.push(PathRef {
                        scope: scope.clone(),
                        segments,
                        reexport,
                    });
                }
                i = end;
                continue;
            }
            "crate" | "super" if bytes.get(after) == Some(&':') => {
                let before: String = bytes[i.saturating_sub(4)..i].iter().collect();
                if before.ends_with("in ") {
                    i = after;
                    continue;
                }
                let mut j = after;
                let mut segments = vec![word.clone()];
                while bytes.get(j) == Some(&':') && bytes.get(j + 1) == Some(&':') {
                    let seg = word_at(j + 2);
                    if seg.is_empty() {
                        break;
                    }
                    j += 2 + seg.len();
                    segments.push(seg);
                }
                refs.push(PathRef {
                    scope,
                    segments,
                    reexport: false,
                });
                i = j;
                continue;
            }
            _ => {}
        }
        i = after;
    }
    (defined, refs, inline)
}

/// `a::{b, c::{d@e, self}, *}` (blanks gone, `as` written `@`) →
/// `[a,b]`, `[a,c,d]`, `[a,c]`, `[a,*]`.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim_start_matches("::");
    match tree.find('{') {
        None => {
            let path = tree.split('@').next().unwrap_or(tree);
            let mut segments: Vec<String> = path.split("::").map(str::to_owned).collect();
            if segments.last().is_some_and(|s| s == "self") {
                segments.pop();
            }
            vec![segments]
        }
        Some(open) => {
            let prefix = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut out = Vec::new();
            let mut level = 0;
            let mut start = 0;
            let bytes = inner.as_bytes();
            for (k, &b) in bytes.iter().enumerate() {
                match b {
                    b'{' => level += 1,
                    b'}' => level -= 1,
                    b',' if level == 0 => {
                        push_part(&mut out, prefix, &inner[start..k]);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            push_part(&mut out, prefix, &inner[start..]);
            out
        }
    }
}

fn push_part(out: &mut Vec<Vec<String>>, prefix: &str, part: &str) {
    if part.is_empty() {
        return;
    }
    out.extend(expand_use(&format!("{prefix}{part}")));
}

impl Crate {
    fn module_file(&self, module: &[String]) -> Option<usize> {
        self.by_module
            .get(module)
            .or_else(|| self.inline.get(module))
            .copied()
    }

    fn is_module(&self, module: &[String]) -> bool {
        self.by_module.contains_key(module) || self.inline.contains_key(module)
    }

    /// The file that defines what `r` names, or `None` outside the crate.
    fn resolve(&self, r: &PathRef, hops: usize) -> Option<usize> {
        let mut segs = r.segments.iter().map(String::as_str).peekable();
        let mut module: Vec<String> = match *segs.peek()? {
            "crate" => {
                segs.next();
                Vec::new()
            }
            "self" => {
                segs.next();
                r.scope.clone()
            }
            "super" => {
                let mut m = r.scope.clone();
                while segs.peek() == Some(&"super") {
                    segs.next();
                    m.pop();
                }
                m
            }
            first => {
                let mut child = r.scope.clone();
                child.push(first.to_owned());
                if !self.is_module(&child) {
                    return None;
                }
                r.scope.clone()
            }
        };
        for seg in segs {
            let mut deeper = module.clone();
            deeper.push(seg.to_owned());
            if self.is_module(&deeper) {
                module = deeper;
                continue;
            }
            return self.item_file(&module, seg, hops);
        }
        self.module_file(&module)
    }

    /// The file defining item `name` as seen in `module`, following `use`.
    fn item_file(&self, module: &[String], name: &str, hops: usize) -> Option<usize> {
        let file = self.module_file(module)?;
        if name == "*" || self.defined[file].contains(name) {
            return Some(file);
        }
        if module.is_empty() {
            if let Some(&f) = self.exported_macros.get(name) {
                return Some(f);
            }
        }
        match self.bindings[file].get(name) {
            Some(binding) if hops < MAX_REEXPORT_HOPS => {
                self.resolve(binding, hops + 1).or(Some(file))
            }
            _ => Some(file),
        }
    }

    /// File-level import edges: from → to.
    fn edges(&self) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for (from, refs) in self.refs.iter().enumerate() {
            for r in refs {
                let Some(to) = self.resolve(r, 0) else {
                    continue;
                };
                let own = &self.files[from].module;
                let target = &self.files[to].module;
                let descendant = target.len() > own.len() && target.starts_with(own);
                if to == from || (r.reexport && descendant) {
                    continue;
                }
                edges.entry(from).or_default().insert(to);
            }
        }
        edges
    }

    fn name(&self, file: usize) -> String {
        let path = &self.files[file].path;
        let src = path.ancestors().find(|p| p.ends_with("src"));
        let shown = src.and_then(|s| path.strip_prefix(s.parent()?).ok());
        shown.unwrap_or(path).display().to_string()
    }
}

/// The groups of files that import one another round a loop (strongly
/// connected components with more than one file), by Tarjan's algorithm.
fn cycles(edges: &BTreeMap<usize, BTreeSet<usize>>, count: usize) -> Vec<Vec<usize>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<usize, BTreeSet<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, at: usize) {
            self.index[at] = Some(self.next);
            self.low[at] = self.next;
            self.next += 1;
            self.stack.push(at);
            self.on_stack[at] = true;
            for &to in self.edges.get(&at).into_iter().flatten() {
                match self.index[to] {
                    None => {
                        self.visit(to);
                        self.low[at] = self.low[at].min(self.low[to]);
                    }
                    Some(i) if self.on_stack[to] => self.low[at] = self.low[at].min(i),
                    Some(_) => {}
                }
            }
            if Some(self.low[at]) == self.index[at] {
                let mut group = Vec::new();
                loop {
                    let f = self.stack.pop().unwrap();
                    self.on_stack[f] = false;
                    group.push(f);
                    if f == at {
                        break;
                    }
                }
                if group.len() > 1 {
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: vec![None; count],
        low: vec![0; count],
        stack: Vec::new(),
        on_stack: vec![false; count],
        next: 0,
        found: Vec::new(),
    };
    for f in 0..count {
        if walk.index[f].is_none() {
            walk.visit(f);
        }
    }
    walk.found
}

/// The layer order from `src/lib.rs`: the backquoted names on the lines
/// after "Layers", separated by `<`; names in one group share a layer.
fn layers(lib: &str) -> HashMap<String, usize> {
    let start = lib
        .find("//! Layers")
        .expect("src/lib.rs documents its layers (a `//! Layers` paragraph)");
    let mut order = HashMap::new();
    let mut level = 0;
    for line in lib[start..].lines().skip(1) {
        let Some(text) = line.strip_prefix("//!") else {
            break;
        };
        if !text.trim_start().starts_with('`') {
            continue;
        }
        for part in text.split('`').collect::<Vec<_>>().chunks(2) {
            if let [gap, name] = part {
                if gap.contains('<') {
                    level += 1;
                }
                order.insert(name.trim().to_owned(), level);
            } else if part[0].contains('<') {
                level += 1;
            }
        }
    }
    order
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn check(krate: &Crate) -> Vec<String> {
    let edges = krate.edges();
    let mut problems = Vec::new();
    for group in cycles(&edges, krate.files.len()) {
        let mut lines = vec!["files that import one another:".to_owned()];
        for &f in &group {
            let inside: Vec<String> = edges[&f]
                .iter()
                .filter(|t| group.contains(t))
                .map(|&t| krate.name(t))
                .collect();
            lines.push(format!("  {} imports {}", krate.name(f), inside.join(", ")));
        }
        problems.push(lines.join("\n"));
    }
    problems
}

#[test]
fn no_file_imports_a_file_that_imports_it() {
    let src = src_dir();
    let mut problems = check(&read_crate(&src, "lib.rs"));
    problems.extend(check(&read_crate(&src, "main.rs")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = src_dir();
    let order = layers(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let krate = read_crate(&src, "lib.rs");
    let top = |f: usize| krate.files[f].module.first().cloned();
    let mut problems = Vec::new();
    for f in 0..krate.files.len() {
        if let Some(module) = top(f) {
            if !order.contains_key(&module) {
                problems.push(format!("{}: module `{module}` has no layer", krate.name(f)));
            }
        }
    }
    for (from, tos) in krate.edges() {
        for to in tos {
            let (Some(a), Some(b)) = (top(from), top(to)) else {
                continue;
            };
            if a != b && order.get(&b) >= order.get(&a) {
                problems.push(format!(
                    "{} (layer of `{a}`) imports {} (layer of `{b}`, not below)",
                    krate.name(from),
                    krate.name(to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself: it sees cycles and upward imports in a small tree.
#[test]
fn the_checker_finds_a_cycle_and_an_upward_import() {
    let dir = std::env::temp_dir().join(format!("upserv-layers-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("low")).unwrap();
    fs::write(
        dir.join("lib.rs"),
        "//! Layers:\n//!\n//! `low` < `high`\n\npub mod high;\npub mod low;\n",
    )
    .unwrap();
    fs::write(dir.join("high.rs"), "pub struct H;\n").unwrap();
    fs::write(
        dir.join("low/mod.rs"),
        "mod a;\nmod b;\npub use a::A;\n// use crate::high::H; in a comment\n",
    )
    .unwrap();
    fs::write(
        dir.join("low/a.rs"),
        "use super::b::B;\nuse crate::high::H;\npub struct A;\n",
    )
    .unwrap();
    fs::write(dir.join("low/b.rs"), "pub struct B(super::A);\n").unwrap();
    let krate = read_crate(&dir, "lib.rs");
    let problems = check(&krate);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("a.rs") && problems[0].contains("b.rs"));
    let edges = krate.edges();
    let high = krate.by_module[&vec!["high".to_owned()]];
    assert!(edges.values().any(|tos| tos.contains(&high)));
    let order = layers(&fs::read_to_string(dir.join("lib.rs")).unwrap());
    assert!(order["low"] < order["high"]);
    fs::remove_dir_all(&dir).unwrap();
}
