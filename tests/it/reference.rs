//! The man page `src/upserv.8` is the reference for every command, option
//! and configuration parameter: this test fails when the
//! binary knows one that the page does not document.
//!
//! What the binary knows is read from the binary itself: the commands and
//! options of `upserv --help`, and the parameter names of `upserv
//! check-config` (which prints every global and module parameter with its
//! effective value). A name counts as documented when the page sets it in
//! bold, as man pages do for literal names. This test must not judge the
//! wording; a reader does that.

use crate::support::upserv::upserv_command;
use std::collections::BTreeSet;
use std::path::Path;

/// The man page, relative to the crate root.
const MAN_PAGE: &str = "src/upserv.8";

#[test]
fn the_man_page_documents_every_command_option_and_parameter() {
    let page = bold_terms(&man_page());
    let help = upserv_stdout(&["--help"]);
    let mut missing: Vec<String> = Vec::new();
    for command in help_commands(&help) {
        if !page.contains(&command) {
            missing.push(format!("command `{command}`"));
        }
    }
    for option in help_options(&help) {
        if !page.contains(&option) {
            missing.push(format!("option `{option}`"));
        }
    }
    for param in effective_parameters() {
        if !page.contains(&param) {
            missing.push(format!("parameter `{param}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "{MAN_PAGE} does not document (in bold): {}",
        missing.join(", ")
    );
}

#[test]
fn bold_terms_follow_roff_fonts() {
    let roff = ".B max connections\n.BR \"hosts allow\" \", \" \"hosts deny\"\n\
                .BI \\-\\-config \" PATH\"\n.RB [ \\-\\-dry\\-run ]\n.IR not \" bold\"\nplain text\n";
    let terms = bold_terms(roff);
    let expected: BTreeSet<String> = [
        "max connections",
        "hosts allow",
        "hosts deny",
        "--config",
        "--dry-run",
    ]
    .map(String::from)
    .into();
    assert_eq!(terms, expected);
}

fn man_page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MAN_PAGE);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"))
}

/// What `upserv ARGS` prints on stdout; it must succeed.
fn upserv_stdout(args: &[&str]) -> String {
    let out = upserv_command()
        .args(args)
        .output()
        .expect("running upserv");
    assert!(
        out.status.success(),
        "upserv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The commands of the help's usage lines: `  upserv NAME ...`.
fn help_commands(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| line.trim_start().strip_prefix("upserv "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|word| !word.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

/// Every `--name` on the help's option lines (those starting with `-`).
fn help_options(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_owned)
        .collect()
}

/// The parameter names `upserv check-config` prints for a configuration
/// with one module: every global and every module parameter.
fn effective_parameters() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("scratch directory");
    let conf = dir.path().join("upserv.conf");
    let module = dir.path().join("module");
    std::fs::create_dir(&module).expect("creating the module directory");
    std::fs::write(&conf, format!("[m]\npath = {}\n", module.display()))
        .expect("writing upserv.conf");
    let builds = dir.path().join("builds");
    let conf_text = conf.to_string_lossy();
    let builds_text = builds.to_string_lossy();
    let printed = upserv_stdout(&[
        "check-config",
        "--config",
        &conf_text,
        "--builds",
        &builds_text,
    ]);
    let names: BTreeSet<String> = printed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name.trim().to_owned())
        .collect();
    assert!(
        names.contains("builds dir") && names.contains("path"),
        "check-config printed no parameters:\n{printed}"
    );
    names
}

/// The terms a roff page sets in bold: the text of `.B` lines, and the bold
/// arguments of the alternating-font macros (`.BR`, `.RB`, `.BI`, `.IB`),
/// with roff's `\-` read as `-`.
fn bold_terms(roff: &str) -> BTreeSet<String> {
    let mut terms = BTreeSet::new();
    for line in roff.lines() {
        let Some((mac, rest)) = line.split_once(' ') else {
            continue;
        };
        let bold_first = match mac {
            ".B" => {
                terms.insert(unescape(rest.trim().trim_matches('"')));
                continue;
            }
            ".BR" | ".BI" => true,
            ".RB" | ".IB" => false,
            _ => continue,
        };
        for (i, arg) in roff_args(rest).iter().enumerate() {
            if (i % 2 == 0) == bold_first {
                terms.insert(unescape(arg));
            }
        }
    }
    terms
}

/// A macro's arguments: blank-separated, double quotes group blanks.
fn roff_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        args.push(current);
    }
    args
}

fn unescape(text: &str) -> String {
    text.replace("\\-", "-").replace("\\e", "\\")
}
