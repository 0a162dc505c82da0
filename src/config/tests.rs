//! Tests of whole configurations: reading files (with includes), the
//! locations in errors and warnings, the effective-settings text, and how
//! the command-line overrides and `RUST_LOG` combine with the file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("upserv-config-test-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn parse(text: &str) -> Result<(Settings, Vec<ConfigWarning>), ConfigError> {
    parse_config_str(text, Path::new("test.conf"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

fn warnings(text: &str) -> Vec<String> {
    parse(text)
        .unwrap()
        .1
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const EXAMPLE: &str = "\
# upserv at a school
port = 8730
motd file = /etc/upserv.motd
builds dir = /srv/builds
upstream = https://builds.example.org/{name}.tree.tar.xz
upstream checksum = https://builds.example.org/{name}.tree.tar.xz.md5
cache size = 20G
workers = 4
fetch timeout = 30
hosts allow = 10.0.0.0/8, 192.168.0.0/16
max connections = 10
uid = nobody

[os]
    path = /srv/os/
    comment = OS images
    exclude = *.tmp - /private/***
    timeout = 600

[global]
    list = no

[hidden]
    path = /srv/hidden
    auth users = alice, bob
    secrets file = /etc/upserv.secrets
";

#[test]
fn a_typical_file() {
    let (settings, warnings) = parse(EXAMPLE).unwrap();
    let global = &settings.global;
    // `port` alone listens on both families, as rsyncd does.
    assert_eq!(global.listen, super::dual_stack(8730));
    assert_eq!(global.motd_file, Some(PathBuf::from("/etc/upserv.motd")));
    assert_eq!(global.builds_dir, PathBuf::from("/srv/builds"));
    assert_eq!(
        global.upstream.as_deref(),
        Some("https://builds.example.org/{name}.tree.tar.xz")
    );
    assert_eq!(global.cache_size, 21_474_836_480);
    assert_eq!(global.workers, 4);
    assert_eq!(global.fetch_timeout, Duration::from_secs(30));
    assert_eq!(global.layout, Layout::Plain);
    assert_eq!(global.log_level, LevelFilter::Info);
    // The defaults as they stand at the end: `list = no` came late.
    let defaults = &global.module_defaults;
    assert_eq!(
        defaults.hosts_allow,
        strings(&["10.0.0.0/8", "192.168.0.0/16"])
    );
    assert_eq!(defaults.max_connections, 10);
    assert!(!defaults.list);

    let os = settings.module("os").unwrap();
    assert_eq!(os.path, PathBuf::from("/srv/os"));
    assert_eq!(os.params.comment, "OS images");
    assert_eq!(os.params.exclude, strings(&["*.tmp", "- /private/***"]));
    assert_eq!(os.params.timeout, Some(Duration::from_secs(600)));
    assert_eq!(os.params.max_connections, 10);
    assert_eq!(os.params.hosts_allow, defaults.hosts_allow);
    assert!(os.params.list, "[os] comes before `list = no`");

    let hidden = settings.module("hidden").unwrap();
    assert!(!hidden.params.list);
    assert_eq!(hidden.params.auth_users, strings(&["alice", "bob"]));
    assert_eq!(
        hidden.params.secrets_file,
        Some(PathBuf::from("/etc/upserv.secrets"))
    );
    assert_eq!(settings.modules.len(), 2);
    assert!(settings.module("OS").is_none(), "lookup is case-sensitive");

    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("test.conf:12: `uid` ignored"),
        "{warnings:?}"
    );
}

#[test]
fn build_modules_get_the_final_defaults() {
    let (settings, _) = parse(EXAMPLE).unwrap();
    let build = settings.build_module("build-812");
    assert_eq!(build.path, PathBuf::from("/srv/builds/build-812"));
    assert_eq!(build.params, settings.global.module_defaults);
}

#[test]
fn no_file_means_defaults() {
    let (settings, warnings) = parse("").unwrap();
    assert!(warnings.is_empty());
    assert!(settings.modules.is_empty());
    let global = settings.global;
    assert_eq!(
        global.listen,
        [
            "[::]:873".parse::<std::net::SocketAddr>().unwrap(),
            "0.0.0.0:873".parse().unwrap()
        ]
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(global.builds_dir, cwd.join("builds"));
    assert_eq!(global.cache_size, 17_179_869_184);
    assert_eq!(global.workers, 8);
    assert_eq!(global.fetch_timeout, Duration::from_secs(60));
    assert_eq!(global.module_defaults.timeout, None);
    assert_eq!(global.module_defaults.max_connections, 0);
    assert!(global.module_defaults.list);
    assert!(global.module_defaults.strict_modes);
}

#[test]
fn a_repeated_section_goes_on_with_the_first() {
    let text = "[Mod]\npath = /a\n[other]\npath = /b\n[ m o d ]\ncomment = more\n";
    let (settings, warnings) = parse(text).unwrap();
    assert_eq!(settings.modules.len(), 2);
    let first = settings.module("Mod").unwrap();
    assert_eq!(first.path, PathBuf::from("/a"));
    assert_eq!(first.params.comment, "more");
    assert!(warnings[0]
        .to_string()
        .starts_with("test.conf:5: module [m o d] continues the one defined at test.conf:1"));
}

#[test]
fn global_section_names_ignore_case_and_blanks() {
    let text = "[a]\npath = /a\n[ GLO bal ]\ncomment = x\n[b]\npath = /b\n";
    let (settings, _) = parse(text).unwrap();
    assert_eq!(settings.module("a").unwrap().params.comment, "");
    assert_eq!(settings.module("b").unwrap().params.comment, "x");
    assert!(settings.module("GLO bal").is_none());
}

#[test]
fn a_default_path_is_inherited() {
    let (settings, _) = parse("path = /srv/all\n[a]\n").unwrap();
    assert_eq!(
        settings.module("a").unwrap().path,
        PathBuf::from("/srv/all")
    );
}

#[test]
fn errors_name_file_and_line() {
    let cases = [
        (
            "[m]\npath = /m\nread only = no\n",
            "test.conf:3: `read only = no` is not supported",
        ),
        ("read only = false\n", "test.conf:1: `read only = no`"),
        (
            "\n\n[m]\ncomment = no path\n",
            "test.conf:3: module [m] has no `path`",
        ),
        ("cache size = 16X\n", "test.conf:1: `16X` is not a size"),
        (
            "cache size = 0\n",
            "test.conf:1: the cache size must be more than 0",
        ),
        (
            "workers = many\n",
            "test.conf:1: `many` is not a whole number",
        ),
        ("workers = 0\n", "test.conf:1: `0` workers"),
        (
            "[m]\npath = /m\nlist = perhaps\n",
            "test.conf:3: `perhaps` is not a boolean",
        ),
        ("layout = tree\n", "test.conf:1: `tree` is not a layout"),
        (
            "upstream = https://h/build.tar.xz\n",
            "test.conf:1: `https://h/build.tar.xz` has no `{name}`",
        ),
        (
            "upstream contents = https://h/contents\n",
            "test.conf:1: `https://h/contents` has no `{name}`",
        ),
        (
            "upstream checksum = https://h/{name}.crc\n",
            "test.conf:1: `https://h/{name}.crc` does not end in .md5 or .sha256",
        ),
        (
            "fetch timeout = 0\n",
            "test.conf:1: the fetch timeout must be at least 1 second",
        ),
        (
            "[a/b]\npath = /x\n",
            "test.conf:1: module name `a/b` contains `/`",
        ),
        ("[ ]\n", "test.conf:1: empty section name"),
        ("x = 1\nnonsense\n", "test.conf:2: expected `name = value`"),
        (
            "[m]\npath = /m\nmax connections = -1\n",
            "test.conf:3: a negative `max connections`",
        ),
        (
            "pre-xfer exec = /bin/check\n",
            "test.conf:1: `pre-xfer exec` is not supported",
        ),
        (
            "write only = yes\n",
            "test.conf:1: `write only = yes` is not supported",
        ),
        ("&frob x\n", "test.conf:1: unknown directive `&frob`"),
    ];
    for (text, expected) in cases {
        let message = error(text);
        assert!(message.starts_with(expected), "{text:?}: {message}");
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn an_empty_refused_hook_is_fine() {
    assert!(warnings("early exec =\n").is_empty());
}

#[test]
fn warnings_name_file_and_line() {
    let text = "frobnicate = 1\nmax_connections = 3\n[m]\npath = /m\nport = 99\nuse chroot = yes\n[n] trailing\npath = /n\nauth users = x\n";
    let found = warnings(text);
    let expected = [
        "test.conf:1: unknown parameter `frobnicate`",
        "test.conf:2: unknown parameter `max_connections` (did you mean `max connections`?)",
        "test.conf:5: `port` is a global parameter; ignored in module [m]",
        "test.conf:6: `use chroot` ignored: upserv never chroots",
        "test.conf:7: text after `[n]` ignored: `trailing`",
        "test.conf:7: module [n] has `auth users` but no `secrets file`",
    ];
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for (warning, start) in found.iter().zip(expected) {
        assert!(warning.starts_with(start), "{warning} / {start}");
    }
    let (settings, _) = parse(text).unwrap();
    assert_eq!(
        settings.global.listen,
        Global::default().listen,
        "`port` in [m] is ignored"
    );
}

#[test]
fn continued_lines_report_their_first_line() {
    let text = "comment = a \\\n  b\nworkers = \\\n  zero\n";
    assert!(error(text).starts_with("test.conf:3: `zero` is not a whole number"));
}

#[test]
fn rsyncd_extras_are_kept() {
    let text = "\
[m]
path = /m
filter = - /foo  - /bar
include = keep/
include from = /etc/inc
exclude from = /etc/exc
refuse options = delete c !delete-during
ignore errors = yes
ignore nonreadable = 1
numeric ids = TRUE
reverse lookup = no
forward lookup = 0
strict modes = no
auth digest = SHA256
hosts deny = *
auth users = , @Some Group:deny, admin
";
    let (settings, warnings) = parse(text).unwrap();
    let p = &settings.module("m").unwrap().params;
    assert_eq!(p.filter.as_deref(), Some("- /foo  - /bar"));
    assert_eq!(p.include, strings(&["keep/"]));
    assert_eq!(p.include_from, Some(PathBuf::from("/etc/inc")));
    assert_eq!(p.exclude_from, Some(PathBuf::from("/etc/exc")));
    assert_eq!(
        p.refuse_options,
        strings(&["delete", "c", "!delete-during"])
    );
    assert!(p.ignore_errors && p.ignore_nonreadable && p.numeric_ids);
    assert!(!p.reverse_lookup && !p.forward_lookup && !p.strict_modes);
    assert_eq!(p.auth_digest.as_deref(), Some("sha256"));
    assert_eq!(p.hosts_deny, strings(&["*"]));
    assert_eq!(p.auth_users, strings(&["@Some Group:deny", "admin"]));
    // auth users without a secrets file is the only warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn listen_address_and_port_from_the_file() {
    let (settings, _) = parse("address = 192.168.1.5\n").unwrap();
    assert_eq!(settings.global.listen, ["192.168.1.5:873".parse().unwrap()]);
    let (settings, warnings) = parse("listen = [::]:873 0.0.0.0:873\nport = 1\n").unwrap();
    let both: Vec<std::net::SocketAddr> =
        vec!["[::]:873".parse().unwrap(), "0.0.0.0:873".parse().unwrap()];
    assert_eq!(settings.global.listen, both);
    assert!(warnings[0]
        .to_string()
        .starts_with("test.conf:2: `listen` is given too"));
}

#[test]
fn effective_settings_text() {
    let text = "\
builds dir = /srv/builds
cache size = 1536M
hosts allow = 10.0.0.0/8
[os]
path = /srv/os
comment = OS images
hosts allow = 10.0.0.0/8
timeout = 60
";
    let (settings, _) = parse(text).unwrap();
    // Written by hand: every global and default, then only what [os] changes
    // (its `hosts allow` equals the default, so it is not repeated).
    let expected = "\
# upserv effective settings
# configuration file: test.conf
[global]
listen = [::]:873 0.0.0.0:873
motd file =
pid file =
log file =
log level = info
syslog facility =
builds dir = /srv/builds
upstream =
upstream checksum =
upstream contents =
layout = plain
cache size = 1536M
workers = 8
fetch timeout = 60
fetch min rate = 1K
max connections per host =
proxy protocol = no
proxy protocol from =
metrics listen =
comment =
list = yes
hosts allow = 10.0.0.0/8
hosts deny =
max connections = 0
timeout = 0
auth users =
secrets file =
strict modes = yes
auth digest =
filter =
include from =
include =
exclude from =
exclude =
refuse options =
ignore errors = no
ignore nonreadable = no
numeric ids = no
reverse lookup = yes
forward lookup = yes

[os]
path = /srv/os
comment = OS images
timeout = 60
";
    assert_eq!(settings.to_string(), expected);
}

#[test]
fn effective_settings_read_back_the_same() {
    let text = format!(
        "{EXAMPLE}\
listen = 127.0.0.1:8730, [::1]:8730
layout = olpc
upstream contents = http://h/{{name}}/contents
log level = debug
[odd one]
path = /srv/with space /
auth users = , @Some Group:deny, admin
hosts deny = 10.1.0.0/16 badhost
exclude = + keep - *
refuse options = delete
filter = - /foo  - /bar
max connections = 2
auth digest = md5
secrets file = /etc/s
"
    );
    let (settings, _) = parse(&text).unwrap();
    assert_eq!(
        settings.module("odd one").unwrap().path,
        PathBuf::from("/srv/with space ")
    );
    let written = settings.to_string();
    let (again, warnings) = parse(&written).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(again, settings, "{written}");
}

#[test]
fn include_and_merge() {
    let scratch = Scratch::new();
    let d = scratch.0.join("conf.d");
    scratch.write("conf.d/b.conf", "comment = from b\n[b]\npath = /b\n");
    scratch.write(
        "conf.d/a.conf",
        "workers = 3\n[a]\npath = /a\n[main]\ncomment = reopened\n",
    );
    scratch.write("conf.d/ignored.txt", "this is not read = at all\n");
    scratch.write("conf.d/defaults.inc", "max connections = 7\n");
    let main = scratch.write(
        "main.conf",
        &format!(
            "[main]\npath = /main\n&merge {d}\n&include {d}\n[after]\npath = /after\n",
            d = d.display()
        ),
    );
    let (settings, warnings) = parse_config_file(&main).unwrap();
    let names: Vec<&str> = settings.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["main", "a", "b", "after"]);
    // &merge ran inside [main]: its `max connections` went to that module.
    let main_module = settings.module("main").unwrap();
    assert_eq!(main_module.params.max_connections, 7);
    assert_eq!(main_module.params.comment, "reopened");
    // Each included file starts from the same defaults...
    assert_eq!(settings.module("a").unwrap().params.comment, "");
    assert_eq!(settings.module("b").unwrap().params.comment, "from b");
    // ...and nothing set in them survives the include.
    assert_eq!(settings.module("after").unwrap().params.comment, "");
    assert_eq!(settings.global.workers, DEFAULT_WORKERS);
    let a_conf = d.join("a.conf");
    let expected = format!(
        "{}:1: `workers` set in an &include'd file has no effect outside it",
        a_conf.display()
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().starts_with(&expected)),
        "{warnings:?}"
    );
}

#[test]
fn merged_globals_stay() {
    let scratch = Scratch::new();
    let inc = scratch.write("g.inc", "workers = 5\nhosts deny = 10.9.0.0/16\n");
    let main = scratch.write(
        "main.conf",
        &format!("&merge = {}\n[m]\npath = /m\n", inc.display()),
    );
    let (settings, _) = parse_config_file(&main).unwrap();
    assert_eq!(settings.global.workers, 5);
    assert_eq!(
        settings.module("m").unwrap().params.hosts_deny,
        strings(&["10.9.0.0/16"])
    );
}

#[test]
fn errors_inside_included_files_name_that_file() {
    let scratch = Scratch::new();
    let bad = scratch.write("bad.conf", "\n[m]\npath = /m\nread only = no\n");
    let main = scratch.write("main.conf", &format!("# x\n&include {}\n", bad.display()));
    let message = parse_config_file(&main).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:4: `read only = no`", bad.display())),
        "{message}"
    );

    let missing = scratch.0.join("missing.conf");
    let main = scratch.write(
        "main2.conf",
        &format!("# x\n&include {}\n", missing.display()),
    );
    let message = parse_config_file(&main).unwrap_err().to_string();
    let expected = format!("{}:2: cannot read `{}`", main.display(), missing.display());
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn include_loops_are_stopped() {
    let scratch = Scratch::new();
    let looping = scratch.0.join("loop.conf");
    scratch.write("loop.conf", &format!("&merge {}\n", looping.display()));
    let message = parse_config_file(&looping).unwrap_err().to_string();
    assert!(message.contains("nested more than 8 deep"), "{message}");
}

#[test]
fn unreadable_and_non_utf8_files() {
    let scratch = Scratch::new();
    let missing = scratch.0.join("nope.conf");
    let message = parse_config_file(&missing).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: cannot read:", missing.display())),
        "{message}"
    );
    let message = parse_config_file(&scratch.0).unwrap_err().to_string();
    assert!(message.ends_with("not a regular file"), "{message}");
    let latin1 = scratch.0.join("latin1.conf");
    fs::write(&latin1, b"[m]\npath = /m\ncomment = caf\xe9\n").unwrap();
    let message = parse_config_file(&latin1).unwrap_err().to_string();
    assert_eq!(message, format!("{}:3: not valid UTF-8", latin1.display()));
}

#[test]
fn load_uses_the_default_file_only_when_it_exists() {
    let scratch = Scratch::new();
    let default = scratch.0.join("upserv.conf");
    let (settings, _) = load_with(&Overrides::default(), &default, None).unwrap();
    assert_eq!(settings.source, None);
    assert_eq!(settings.global, Global::default());

    scratch.write("upserv.conf", "workers = 2\n");
    let (settings, _) = load_with(&Overrides::default(), &default, None).unwrap();
    assert_eq!(settings.source.as_deref(), Some(default.as_path()));
    assert_eq!(settings.global.workers, 2);

    let named = Overrides {
        config: Some(scratch.0.join("other.conf")),
        ..Overrides::default()
    };
    let message = load_with(&named, &default, None).unwrap_err().to_string();
    assert!(message.contains("other.conf: cannot read"), "{message}");
}

#[test]
fn the_command_line_wins() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "upserv.conf",
        "builds dir = /srv/b\nport = 8730\nupstream = https://h/{name}.tar\ncache size = 1G\nworkers = 2\nlog level = warn\n",
    );
    let overrides = Overrides {
        config: Some(config),
        builds_dir: Some("/tmp/b".into()),
        listen: vec!["127.0.0.1:9999".parse().unwrap()],
        upstream: Some("http://mirror/{name}.tar.gz".into()),
        cache_size: Some(2 << 30),
        workers: Some(16),
        log_level: Some(LevelFilter::Trace),
    };
    let (settings, _) = load_with(&overrides, Path::new("/nonexistent"), Some("error")).unwrap();
    let global = settings.global;
    assert_eq!(global.builds_dir, PathBuf::from("/tmp/b"));
    assert_eq!(global.listen, ["127.0.0.1:9999".parse().unwrap()]);
    assert_eq!(
        global.upstream.as_deref(),
        Some("http://mirror/{name}.tar.gz")
    );
    assert_eq!(global.cache_size, 2_147_483_648);
    assert_eq!(global.workers, 16);
    assert_eq!(global.log_level, LevelFilter::Trace);
}

#[test]
fn command_line_values_are_checked_naming_the_option() {
    let overrides = Overrides {
        upstream: Some("https://h/fixed.tar.xz".into()),
        ..Overrides::default()
    };
    let message = load_with(&overrides, Path::new("/nonexistent"), None)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("--upstream: `https://h/fixed.tar.xz` has no `{name}`"),
        "{message}"
    );
}

#[test]
fn log_level_order() {
    let scratch = Scratch::new();
    let config = scratch.write("upserv.conf", "log level = warn\n");
    let from_file = Overrides {
        config: Some(config),
        ..Overrides::default()
    };
    let level = |overrides: &Overrides, env: Option<&str>| {
        let (settings, warnings) = load_with(overrides, Path::new("/nonexistent"), env).unwrap();
        (settings.global.log_level, warnings.len())
    };
    assert_eq!(level(&Overrides::default(), None), (LevelFilter::Info, 0));
    assert_eq!(level(&from_file, None), (LevelFilter::Warn, 0));
    assert_eq!(level(&from_file, Some("DEBUG")), (LevelFilter::Debug, 0));
    assert_eq!(level(&from_file, Some("")), (LevelFilter::Warn, 0));
    assert_eq!(
        level(&from_file, Some("upserv=debug")),
        (LevelFilter::Warn, 1)
    );
    let mut both = from_file.clone();
    both.log_level = Some(LevelFilter::Error);
    assert_eq!(level(&both, Some("debug")), (LevelFilter::Error, 0));
    let (_, warnings) = load_with(&from_file, Path::new("/nonexistent"), Some("x=y")).unwrap();
    assert!(warnings[0]
        .to_string()
        .starts_with("RUST_LOG: `x=y` is not a log level"));
}

#[test]
fn reads_like_rsyncd() {
    // The module listing rsync 3.5.0's daemon gives for this file is
    // "a\tone # two ; three    four" and "b c\tsecond def" (`hidden` is
    // unlisted), and its log calls `max_connections` an unknown parameter.
    let text = "\
max_connections = 3
[a]
path = /tmp/m
comment = one # two ; three \\
   four
[ b  c ]
path = /tmp/m
comment = bee
[B C]
comment = second def
[global]
list = no
[hidden]
path = /tmp/m
";
    let (settings, warnings) = parse(text).unwrap();
    let listed: Vec<(&str, &str)> = settings
        .modules
        .iter()
        .filter(|m| m.params.list)
        .map(|m| (m.name.as_str(), m.params.comment.as_str()))
        .collect();
    assert_eq!(
        listed,
        [("a", "one # two ; three    four"), ("b c", "second def")]
    );
    assert!(settings.module("hidden").is_some());
    assert!(warnings[0]
        .to_string()
        .contains("unknown parameter `max_connections`"));
    assert_eq!(settings.global.module_defaults.max_connections, 0);
}

#[test]
fn max_connections_per_host_is_unset_a_number_or_refused() {
    let (settings, _) = parse("max connections per host = 3\n").unwrap();
    assert_eq!(settings.global.max_connections_per_host, Some(3));
    let (settings, _) = parse("max connections per host = 0\n").unwrap();
    assert_eq!(settings.global.max_connections_per_host, Some(0));
    let (settings, _) = parse("workers = 2\n").unwrap();
    assert_eq!(settings.global.max_connections_per_host, None);
    assert!(parse("max connections per host = some\n").is_err());
    let (settings, _) = parse("max connections per host = 7\n").unwrap();
    let (again, _) = parse(&settings.to_string()).unwrap();
    assert_eq!(again.global.max_connections_per_host, Some(7));
}

#[test]
fn proxy_protocol_and_its_trusted_peers() {
    let (settings, warnings) = parse("workers = 2\n").unwrap();
    assert!(!settings.global.proxy_protocol);
    assert!(settings.global.proxy_protocol_from.is_empty());
    assert!(warnings.is_empty());
    let text = "proxy protocol = yes\nproxy protocol from = 10.0.0.5, 10.0.1.0/24\n";
    let (settings, warnings) = parse(text).unwrap();
    assert!(settings.global.proxy_protocol);
    assert_eq!(
        settings.global.proxy_protocol_from,
        ["10.0.0.5", "10.0.1.0/24"]
    );
    assert!(warnings.is_empty());
    let (again, _) = parse(&settings.to_string()).unwrap();
    assert_eq!(again.global, settings.global);
    // rsyncd's name for the list is read, not ignored.
    let (settings, warnings) = parse("proxy protocol hosts = 10.0.0.5\n").unwrap();
    assert_eq!(settings.global.proxy_protocol_from, ["10.0.0.5"]);
    assert!(warnings.is_empty());
    assert!(parse("proxy protocol = perhaps\n").is_err());
}

#[test]
fn several_mirrors_and_the_minimum_rate() {
    let (settings, _) = parse(
        "upstream = https://a/{name}.tar.xz \t http://b/x/{name}.tar.gz\n\
         upstream checksum = https://a/{name}.tar.xz.md5  http://b/x/{name}.tar.gz.sha256\n\
         fetch min rate = 4K\n",
    )
    .unwrap();
    let global = &settings.global;
    // Blanks between templates become single spaces, as check-config shows them.
    assert_eq!(
        global.upstream.as_deref(),
        Some("https://a/{name}.tar.xz http://b/x/{name}.tar.gz")
    );
    assert_eq!(
        global.upstream_checksum.as_deref(),
        Some("https://a/{name}.tar.xz.md5 http://b/x/{name}.tar.gz.sha256")
    );
    assert_eq!(global.fetch_min_rate, 4096);
    assert_eq!(parse("").unwrap().0.global.fetch_min_rate, 1024);
    assert_eq!(
        parse("fetch min rate = 0\n")
            .unwrap()
            .0
            .global
            .fetch_min_rate,
        0
    );
    let text = settings.to_string();
    assert!(
        text.contains("\nupstream = https://a/{name}.tar.xz http://b/x/{name}.tar.gz\n")
            && text.contains("\nfetch min rate = 4K\n"),
        "{text}"
    );
    // Each mirror's template is checked.
    assert_eq!(
        error("upstream = https://a/{name}.tar https://b/build.tar\n"),
        "test.conf:1: `https://b/build.tar` has no `{name}` where the build name goes"
    );
    assert!(error("fetch min rate = fast\n").starts_with("test.conf:1: "));
}

#[test]
fn checksums_pair_with_mirrors_one_for_all_or_one_each() {
    let scratch = Scratch::new();
    let load = |text: &str, upstream: Option<&str>| {
        let overrides = Overrides {
            config: Some(scratch.write("upserv.conf", text)),
            upstream: upstream.map(str::to_string),
            ..Overrides::default()
        };
        load_with(&overrides, Path::new("/nonexistent"), None).map(|(s, _)| s.global)
    };
    let three = "upstream = http://a/{name}.tar http://b/{name}.tar http://c/{name}.tar\n";
    assert!(load(
        &format!("{three}upstream checksum = http://a/{{name}}.md5\n"),
        None
    )
    .is_ok());
    let two_sums = "upstream contents = http://a/{name}/c http://b/{name}/c\n";
    let message = load(&format!("{three}{two_sums}"), None)
        .unwrap_err()
        .to_string();
    assert!(
        message.ends_with(
            "upserv.conf: `upstream contents` lists 2 templates but `upstream` lists 3 mirrors: give one for all, or one per mirror in the same order"
        ),
        "{message}"
    );
    // Two mirrors on the command line pair with the file's two templates.
    let global = load(two_sums, Some("http://x/{name}.tar  http://y/{name}.tar")).unwrap();
    assert_eq!(
        global.upstream.as_deref(),
        Some("http://x/{name}.tar http://y/{name}.tar")
    );
}

#[test]
fn syslog_facility_by_name() {
    let (settings, _) = parse("syslog facility = LOCAL3\n").unwrap();
    let facility = settings.global.syslog_facility.unwrap();
    assert_eq!((facility.name, facility.code), ("local3", libc::LOG_LOCAL3));
    assert!(settings
        .to_string()
        .contains("\nsyslog facility = local3\n"));
    let error = parse("syslog facility = loud\n").unwrap_err().to_string();
    assert!(error.contains("`loud` is not a syslog facility"), "{error}");
}

#[test]
fn relative_paths_are_taken_from_the_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let conf = dir.path().join("sub/upserv.conf");
    std::fs::write(
        &conf,
        "builds dir = builds\nlog file = ../log/upserv.log\npid file = /run/u.pid\n[m]\npath = tree\n",
    )
    .unwrap();
    let (settings, _) = super::parse_config_file(&conf).unwrap();
    let sub = dir.path().join("sub");
    assert_eq!(settings.global.builds_dir, sub.join("builds"));
    assert_eq!(
        settings.global.log_file,
        Some(sub.join("../log/upserv.log"))
    );
    assert_eq!(settings.global.pid_file, Some(PathBuf::from("/run/u.pid")));
    assert_eq!(settings.modules[0].path, sub.join("tree"));
}

#[test]
fn unknown_parameters_are_marked_for_check_config() {
    let (_, warnings) = parse("upstrem = https://h/{name}.tar\nuse chroot = no\n").unwrap();
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].unknown_parameter);
    assert!(warnings[0].message.contains("did you mean `upstream`?"));
    assert!(!warnings[1].unknown_parameter);
}

#[test]
fn metrics_listen_is_off_an_address_or_refused() {
    let (settings, _) = parse("workers = 2\n").unwrap();
    assert_eq!(settings.global.metrics_listen, None);
    let (settings, _) = parse("metrics listen = 127.0.0.1:9873\n").unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:9873".parse().unwrap();
    assert_eq!(settings.global.metrics_listen, Some(addr));
    let (again, _) = parse(&settings.to_string()).unwrap();
    assert_eq!(again.global.metrics_listen, Some(addr));
    let err = parse("metrics listen = localhost\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not ADDR:PORT"), "{err}");
}
