//! Unit tests of filter lists and of the per-directory walk state.
//!
//! Expected verdicts come from rsync's documented rules (and were checked
//! against rsync 3.5.0 where the manual is silent); they are written by hand.

use std::fs;
use std::path::Path;

use super::*;

fn wire(rules: &[&str]) -> FilterList {
    let mut list = FilterList::new();
    for rule in rules {
        list.add_wire_rule(rule.as_bytes(), 29).unwrap();
    }
    list
}

fn verdict(list: &FilterList, name: &str, is_dir: bool) -> Verdict {
    list.check(name.as_bytes(), is_dir)
}

/// A scratch module directory, removed when dropped; the unit tests of the
/// file list use it too.
pub(crate) struct Scratch(tempfile::TempDir);

impl Scratch {
    /// A fresh, empty directory whose name starts with `upserv-{tag}-`.
    pub(crate) fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("upserv-{tag}-"))
            .tempdir()
            .unwrap();
        Scratch(dir)
    }

    /// Writes `contents` to `rel`, making its parent directories.
    pub(crate) fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
        self
    }

    /// Makes the directory `rel` and its parents.
    pub(crate) fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.path().join(rel)).unwrap();
        self
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

#[test]
fn first_matching_rule_wins() {
    let list = wire(&["+ keep.o", "- *.o", "+ *"]);
    assert_eq!(verdict(&list, "keep.o", false), Verdict::Include);
    assert_eq!(verdict(&list, "src/x.o", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "src/x.c", false), Verdict::Include);
    assert_eq!(verdict(&FilterList::new(), "x", false), Verdict::NoMatch);
}

#[test]
fn old_protocols_take_bare_patterns() {
    let mut list = FilterList::new();
    for rule in ["+ a*", "*.tmp", "- b"] {
        list.add_wire_rule(rule.as_bytes(), 28).unwrap();
    }
    assert_eq!(verdict(&list, "abc", false), Verdict::Include);
    assert_eq!(verdict(&list, "x.tmp", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "b", false), Verdict::Exclude);
    // "H x" is only a pattern before protocol 29.
    list.add_wire_rule(b"H x", 28).unwrap();
    assert_eq!(verdict(&list, "H x", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "x", false), Verdict::NoMatch);
}

#[test]
fn clear_rule_empties_the_list() {
    let list = wire(&["- a", "!", "- b"]);
    assert_eq!(verdict(&list, "a", false), Verdict::NoMatch);
    assert_eq!(verdict(&list, "b", false), Verdict::Exclude);
}

#[test]
fn the_sender_ignores_rules_for_the_receiver_only() {
    let list = wire(&["P prot", "-r recv", "H hid", "-sr both", "+ *"]);
    assert_eq!(verdict(&list, "prot", false), Verdict::Include);
    assert_eq!(verdict(&list, "recv", false), Verdict::Include);
    assert_eq!(verdict(&list, "hid", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "both", false), Verdict::Exclude);
    let list = wire(&["R risky", "S shown", "- *"]);
    assert_eq!(verdict(&list, "shown", false), Verdict::Include);
    assert_eq!(verdict(&list, "risky", false), Verdict::Exclude);
}

#[test]
fn wire_rules_stop_at_nul_and_have_a_length_limit() {
    let list = wire(&["- a\0ignored"]);
    assert_eq!(verdict(&list, "a", false), Verdict::Exclude);
    let mut list = FilterList::new();
    let long = vec![b'a'; MAX_WIRE_RULE_LEN + 1];
    assert_eq!(
        list.add_wire_rule(&long, 29).unwrap_err().kind(),
        FilterErrorKind::Limit
    );
    // Over-long patterns that still fit the wire are dropped, not fatal.
    let mut rule = b"- ".to_vec();
    rule.extend(std::iter::repeat_n(b'a', MAX_PATTERN_LEN + 1));
    list.add_wire_rule(&rule, 29).unwrap();
    assert!(list.is_empty());
}

#[test]
fn bad_wire_rules_are_errors() {
    let mut list = FilterList::new();
    for bad in ["x foo", "-", "-q foo", "! x", ". /etc/passwd", "merge x"] {
        let err = list.add_wire_rule(bad.as_bytes(), 29).unwrap_err();
        assert_eq!(err.kind(), FilterErrorKind::Syntax, "{bad}");
    }
}

#[test]
fn rule_count_is_limited() {
    let mut list = FilterList::new();
    for _ in 0..MAX_RULES_PER_LIST {
        list.add_wire_rule(b"- x", 29).unwrap();
    }
    let err = list.add_wire_rule(b"- x", 29).unwrap_err();
    assert_eq!(err.kind(), FilterErrorKind::Limit);
    // A clear frees room again.
    list.add_wire_rule(b"!", 29).unwrap();
    list.add_wire_rule(b"- x", 29).unwrap();
}

#[test]
fn cvs_exclude_adds_the_default_names() {
    let mut list = wire(&["+ core"]);
    list.add_cvs_exclude().unwrap();
    assert_eq!(verdict(&list, "a/b.o", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "CVS", true), Verdict::Exclude);
    assert_eq!(verdict(&list, "x~", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "#x", false), Verdict::Exclude);
    assert_eq!(verdict(&list, "core", false), Verdict::Include);
    assert_eq!(verdict(&list, ".git", true), Verdict::Exclude);
    assert_eq!(verdict(&list, ".git", false), Verdict::NoMatch);
    assert_eq!(verdict(&list, "x.c", false), Verdict::NoMatch);
}

#[test]
fn daemon_rules_match_from_the_module_root() {
    let rules = DaemonRules {
        filter: Some(b"- /pub/secret  + keep.key"),
        exclude: Some(b"private/ *.key"),
        ..DaemonRules::default()
    };
    let daemon = FilterList::from_daemon_rules(&rules).unwrap();
    let mut filters = Filters::new("/nonexistent", daemon, FilterList::new());
    filters.set_transfer_root(b"pub");
    assert!(filters.is_daemon_excluded(b"secret", false));
    assert!(!filters.is_daemon_excluded(b"x/secret", false));
    assert!(filters.is_daemon_excluded(b"a.key", false));
    // "private/" became "private/***": the directory and all inside it.
    assert!(filters.is_daemon_excluded(b"private", true));
    assert!(filters.is_daemon_excluded(b"x/private/y", false));
    assert!(!filters.is_daemon_excluded(b"private", false));
    // The earlier include wins over the exclude that follows it.
    assert!(!filters.is_daemon_excluded(b"keep.key", false));
    filters.set_transfer_root(b"");
    assert!(filters.is_daemon_excluded(b"pub/secret", false));
    assert!(!filters.is_daemon_excluded(b"secret", false));
}

#[test]
fn daemon_rules_keep_rsyncds_side_quirk() {
    // rsyncd reads its rules before it knows it sends, so it drops
    // sender-only rules and keeps receiver-only ones (checked against a
    // real rsync 3.5.0 daemon).
    let rules = DaemonRules {
        filter: Some(b"H hid.txt P prot.txt"),
        ..DaemonRules::default()
    };
    let daemon = FilterList::from_daemon_rules(&rules).unwrap();
    let filters = Filters::new("/nonexistent", daemon, FilterList::new());
    assert!(!filters.is_daemon_excluded(b"hid.txt", false));
    assert!(filters.is_daemon_excluded(b"prot.txt", false));
}

#[test]
fn daemon_include_and_exclude_files() {
    let scratch = Scratch::new("daemon-files");
    scratch.file("inc", "keep*\n# comment\n- drop.keep\n");
    scratch.file("exc", "*.keep\nlog/\n");
    let inc = scratch.path().join("inc");
    let exc = scratch.path().join("exc");
    let rules = DaemonRules {
        include_from: Some(&inc),
        exclude_from: Some(&exc),
        ..DaemonRules::default()
    };
    let daemon = FilterList::from_daemon_rules(&rules).unwrap();
    assert_eq!(daemon.check(b"keep.keep", false), Verdict::Include);
    assert_eq!(daemon.check(b"drop.keep", false), Verdict::Exclude);
    assert_eq!(daemon.check(b"a.keep", false), Verdict::Exclude);
    assert_eq!(daemon.check(b"log/x", false), Verdict::Exclude);
    let missing = scratch.path().join("missing");
    let rules = DaemonRules {
        exclude_from: Some(&missing),
        ..DaemonRules::default()
    };
    let err = FilterList::from_daemon_rules(&rules).unwrap_err();
    assert_eq!(err.kind(), FilterErrorKind::Io);
}

#[test]
fn daemon_exclusions_win_over_client_includes() {
    let rules = DaemonRules {
        exclude: Some(b"*.key"),
        ..DaemonRules::default()
    };
    let daemon = FilterList::from_daemon_rules(&rules).unwrap();
    let filters = Filters::new("/nonexistent", daemon, wire(&["+ *", "- a"]));
    assert!(filters.is_excluded(b"x.key", false));
    assert!(!filters.is_excluded(b"a", false));
    let filters = Filters::new("/nonexistent", FilterList::new(), wire(&["- a"]));
    assert!(filters.is_excluded(b"a", false));
    assert!(!filters.is_daemon_excluded(b"a", false));
}

#[test]
fn per_directory_rules_are_inherited_and_popped() {
    let scratch = Scratch::new("perdir");
    scratch
        .file(".f", "- *.tmp\n")
        .file("sub/.f", "+ keep.tmp\n- *.log\n")
        .file("other/x", "");
    let mut filters = Filters::new(scratch.path(), FilterList::new(), wire(&[": .f"]));
    let root = filters.push_dir(b"").unwrap();
    assert!(filters.is_excluded(b"a.tmp", false));
    assert!(!filters.is_excluded(b"a.log", false));
    let sub = filters.push_dir(b"sub").unwrap();
    assert!(filters.is_excluded(b"sub/a.tmp", false));
    assert!(filters.is_excluded(b"sub/a.log", false));
    assert!(!filters.is_excluded(b"sub/keep.tmp", false));
    filters.pop_dir(sub);
    let other = filters.push_dir(b"other").unwrap();
    assert!(!filters.is_excluded(b"other/a.log", false));
    assert!(filters.is_excluded(b"other/keep.tmp", false));
    filters.pop_dir(other);
    filters.pop_dir(root);
    assert!(!filters.is_excluded(b"a.tmp", false));
}

#[test]
fn no_inherit_anchors_clear_and_exclude_self() {
    let scratch = Scratch::new("perdir-mods");
    scratch
        .file(".n", "- *.tmp\n")
        .file("sub/x", "")
        .file(".a", "- /top\n")
        .file("d/.a", "- /here\n")
        .file("d/e/.a", "!\n- other\n");
    let client = wire(&[":n .n", ":e .a"]);
    let mut filters = Filters::new(scratch.path(), FilterList::new(), client);
    let root = filters.push_dir(b".").unwrap();
    assert!(filters.is_excluded(b"a.tmp", false));
    assert!(filters.is_excluded(b".a", false));
    assert!(filters.is_excluded(b"top", true));
    let sub = filters.push_dir(b"sub").unwrap();
    assert!(!filters.is_excluded(b"sub/a.tmp", false), "not inherited");
    filters.pop_dir(sub);
    let d = filters.push_dir(b"d").unwrap();
    // Anchored rules stay at the level of their file.
    assert!(!filters.is_excluded(b"d/top", false));
    assert!(filters.is_excluded(b"d/here", false));
    let e = filters.push_dir(b"d/e").unwrap();
    assert!(!filters.is_excluded(b"d/e/here", false));
    // The clear dropped what d/e inherited; its own rule still applies.
    assert!(filters.is_excluded(b"d/e/other", false));
    filters.pop_dir(e);
    filters.pop_dir(d);
    filters.pop_dir(root);
}

#[test]
fn rsync_filter_scan_starts_at_the_module_root() {
    let scratch = Scratch::new("perdir-scan");
    scratch
        .file(".rsync-filter", "- /a/b/rootrule\n- anywhere\n")
        .file("a/.rsync-filter", "- parentrule\n")
        .file("a/b/.rsync-filter", "- own\n")
        .file("a/b/c/x", "");
    let client = wire(&[": /.rsync-filter", "- .rsync-filter"]);
    let mut filters = Filters::new(scratch.path(), FilterList::new(), client);
    filters.set_transfer_root(b"a/b");
    let root = filters.push_dir(b"").unwrap();
    for name in ["rootrule", "anywhere", "parentrule", "own", ".rsync-filter"] {
        assert!(filters.is_excluded(name.as_bytes(), false), "{name}");
    }
    assert!(filters.is_excluded(b"c/anywhere", false));
    assert!(!filters.is_excluded(b"c/rootrule", false));
    filters.pop_dir(root);
    assert!(!filters.is_excluded(b"parentrule", false));
}

#[test]
fn nested_dir_merge_rules_apply_below_their_directory() {
    let scratch = Scratch::new("perdir-nested");
    scratch
        .file(".f", ": .g\n")
        .file(".g", "- g-root\n")
        .file("s/.g", "- g-sub\n")
        .file("s/x", "");
    let mut filters = Filters::new(scratch.path(), FilterList::new(), wire(&[": .f"]));
    let root = filters.push_dir(b"").unwrap();
    assert!(filters.is_excluded(b"g-root", false));
    let sub = filters.push_dir(b"s").unwrap();
    assert!(filters.is_excluded(b"s/g-root", false));
    assert!(filters.is_excluded(b"s/g-sub", false));
    filters.pop_dir(sub);
    filters.pop_dir(root);
    // The .g rule went with the directory whose .f started it.
    let root = filters.push_dir(b"s").unwrap();
    assert!(!filters.is_excluded(b"s/g-sub", false));
    filters.pop_dir(root);
}

#[test]
fn cvsignore_files_are_word_split_and_not_inherited() {
    let scratch = Scratch::new("perdir-cvs");
    scratch.file(".cvsignore", "a.txt  b.txt\n").file("s/x", "");
    let mut client = FilterList::new();
    client.add_cvs_exclude().unwrap();
    let mut filters = Filters::new(scratch.path(), FilterList::new(), client);
    let root = filters.push_dir(b"").unwrap();
    assert!(filters.is_excluded(b"a.txt", false));
    assert!(filters.is_excluded(b"b.txt", false));
    assert!(filters.is_excluded(b"x.o", false));
    let sub = filters.push_dir(b"s").unwrap();
    assert!(!filters.is_excluded(b"s/a.txt", false));
    assert!(filters.is_excluded(b"s/x.o", false));
    filters.pop_dir(sub);
    filters.pop_dir(root);
}

#[test]
fn the_daemon_can_hide_merge_files_from_the_client() {
    let scratch = Scratch::new("perdir-hidden");
    scratch
        .file("secret", "- visible\n")
        .file("ok", "- visible\n");
    let rules = DaemonRules {
        exclude: Some(b"/secret"),
        ..DaemonRules::default()
    };
    let daemon = FilterList::from_daemon_rules(&rules).unwrap();
    let mut filters = Filters::new(scratch.path(), daemon, wire(&[": secret"]));
    let root = filters.push_dir(b"").unwrap();
    assert!(!filters.is_excluded(b"visible", false));
    filters.pop_dir(root);
    let daemon = FilterList::from_daemon_rules(&rules).unwrap();
    let mut filters = Filters::new(scratch.path(), daemon, wire(&[": ok"]));
    let root = filters.push_dir(b"").unwrap();
    assert!(filters.is_excluded(b"visible", false));
    filters.pop_dir(root);
}

#[test]
fn merge_files_in_the_tree_are_confined_to_the_module() {
    let scratch = Scratch::new("perdir-merge");
    scratch
        .file("m/.f", ". ../../../../inc\n")
        .file("inc", "- outside\n")
        .file("m/inc", "- inside\n")
        .file("m/.g", ". missing\n");
    let mut filters = Filters::new(scratch.path().join("m"), FilterList::new(), wire(&[": .f"]));
    let root = filters.push_dir(b"").unwrap();
    // "../../../../inc" cannot climb out of the module root "m".
    assert!(filters.is_excluded(b"inside", false));
    assert!(!filters.is_excluded(b"outside", false));
    filters.pop_dir(root);
    let mut filters = Filters::new(scratch.path().join("m"), FilterList::new(), wire(&[": .g"]));
    let err = filters.push_dir(b"").unwrap_err();
    assert_eq!(err.kind(), FilterErrorKind::Io);
}

#[test]
fn bad_merge_file_content_is_reported_without_echoing_it() {
    let scratch = Scratch::new("perdir-bad");
    scratch.file("d/.f", "# fine\nsecret-content here\n");
    let mut filters = Filters::new(scratch.path(), FilterList::new(), wire(&[": .f"]));
    let err = filters.push_dir(b"d").unwrap_err();
    assert_eq!(err.kind(), FilterErrorKind::Syntax);
    let message = err.to_string();
    assert!(message.contains("d/.f line 2"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    // The failed push left nothing behind: the next one works.
    scratch.file("d/.f", "- ok\n");
    let token = filters.push_dir(b"d").unwrap();
    assert!(filters.is_excluded(b"d/ok", false));
    filters.pop_dir(token);
}
