//! Who may use a module, and what a client can reach through one.
//!
//! Access: `hosts allow`/`hosts deny` (addresses, CIDR, netmasks, IPv6,
//! global and per module), `auth users` with a `secrets file` (users,
//! `@group`, `:deny`, `:ro`, strict modes), `list = no`, and no ident or
//! DNS lookups. Confinement: `..`, absolute paths, symlinks pointing out of
//! the module, `-L`/`-k`/`--copy-unsafe-links` and `-R` tricks.
//!
//! Wherever rsyncd has the feature, the same module is served by a real
//! `rsync --daemon` and the outcomes compared, with the current client and,
//! when `UPSERV_TEST_RSYNC_OLD` names it, Debian's 3.2.7.

use crate::support::builds::upserv_for;
use crate::support::client::{rsync, stderr};
use crate::support::raw::Raw;
use crate::support::tree::files_containing;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Written into every file outside the modules: it must never arrive.
const MARKER: &[u8] = b"OUTSIDE-THE-MODULE-7f3a";

fn small_tree() -> TestTree {
    let tree = TestTree::new();
    tree.file("hello.txt", b"hello\n");
    tree.file("sub/deep.txt", b"deep\n");
    tree
}

/// The `@ERROR` line of a client's stderr, if any.
fn error_line(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with("@ERROR"))
        .map(str::to_string)
}

// ---------------------------------------------------------------- hosts

/// One hosts case: the module's rules and whether 127.0.0.1 gets in.
struct HostsCase {
    allow: &'static str,
    deny: &'static str,
    admitted: bool,
}

const HOSTS_CASES: &[HostsCase] = &[
    HostsCase {
        allow: "127.0.0.1",
        deny: "",
        admitted: true,
    },
    HostsCase {
        allow: "10.0.0.0/8",
        deny: "",
        admitted: false,
    },
    HostsCase {
        allow: "10.0.0.0/8, 127.0.0.0/8",
        deny: "",
        admitted: true,
    },
    HostsCase {
        allow: "127.0.0.0/255.0.0.0",
        deny: "",
        admitted: true,
    },
    HostsCase {
        allow: "127.0.0.2",
        deny: "",
        admitted: false,
    },
    HostsCase {
        allow: "",
        deny: "127.0.0.1",
        admitted: false,
    },
    HostsCase {
        allow: "",
        deny: "127.0.0.0/24",
        admitted: false,
    },
    HostsCase {
        allow: "",
        deny: "10.0.0.0/8 192.168.0.0/16",
        admitted: true,
    },
    // An allow match wins over a deny match.
    HostsCase {
        allow: "127.0.0.1",
        deny: "127.0.0.0/8",
        admitted: true,
    },
    // Allowed by neither list, with a deny list: the deny list decides.
    HostsCase {
        allow: "10.0.0.0/8",
        deny: "192.168.0.0/16",
        admitted: true,
    },
    HostsCase {
        allow: "10.0.0.0/8",
        deny: "127.0.0.1",
        admitted: false,
    },
    // rsyncd matches `*` against the host name, which always matches.
    HostsCase {
        allow: "",
        deny: "*",
        admitted: false,
    },
];

#[test]
fn hosts_rules_decide_like_rsyncd() {
    let tree = small_tree();
    for client in Client::all() {
        for case in HOSTS_CASES {
            let mut d = Differential::new(&tree)
                .name(&format!("allow={:?} deny={:?}", case.allow, case.deny))
                .client(client.clone())
                .stderr_exact();
            if !case.allow.is_empty() {
                d = d.param("hosts allow", case.allow);
            }
            if !case.deny.is_empty() {
                d = d.param("hosts deny", case.deny);
            }
            for pair in d.run(&["-a"], &ProtocolSet::V29) {
                let want = if case.admitted { 0 } else { 5 };
                assert_eq!(
                    pair.candidate.code, want,
                    "allow={:?} deny={:?} with {}:\n{}",
                    case.allow, case.deny, client.version, pair.candidate.stderr
                );
                if !case.admitted {
                    assert_eq!(
                        error_line(&pair.candidate.stderr).as_deref(),
                        Some("@ERROR: access denied to m from UNDETERMINED (127.0.0.1)")
                    );
                }
            }
        }
    }
}

#[test]
fn a_refused_unlisted_module_is_unknown_like_rsyncd() {
    let tree = small_tree();
    let pairs = Differential::new(&tree)
        .param("hosts allow", "10.0.0.0/8")
        .param("list", "no")
        .stderr_exact()
        .run(&["-a"], &ProtocolSet::V29);
    for pair in pairs {
        assert_eq!(pair.candidate.code, 5);
        assert_eq!(
            error_line(&pair.candidate.stderr).as_deref(),
            Some("@ERROR: Unknown module 'm'")
        );
    }
}

fn pull_code(server: &Upserv, path: &str) -> (i32, String) {
    let scratch = tempfile::tempdir().expect("scratch");
    let r = pull(
        &server.url(path),
        &scratch.path().join("d"),
        &["-a"],
        Protocol::Default,
    );
    (r.code, r.stderr)
}

#[test]
fn global_hosts_rules_are_module_defaults_and_apply_to_builds() {
    let tree = small_tree();
    let root = tree.root().display();
    let conf = format!(
        "hosts deny = 127.0.0.1\n\
         [inherits]\npath = {root}\n\
         [overrides]\npath = {root}\nhosts deny =\n"
    );
    let server = Upserv::with_conf(&conf);
    std::fs::create_dir(server.dir().join("builds/build-1")).expect("a build");
    std::fs::write(server.dir().join("builds/build-1/f"), b"f").expect("a build file");
    assert_eq!(pull_code(&server, "inherits/").0, 5);
    assert_eq!(pull_code(&server, "build-1/").0, 5);
    let (code, err) = pull_code(&server, "overrides/");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn ipv6_clients_match_ipv6_rules() {
    let tree = small_tree();
    let root = tree.root().display();
    let conf = format!(
        "[exact]\npath = {root}\nhosts allow = ::1\n\
         [net]\npath = {root}\nhosts allow = ::/64 fe80::/10\n\
         [zero]\npath = {root}\nhosts allow = ::/0\n\
         [v4only]\npath = {root}\nhosts allow = 127.0.0.1 0.0.0.0/0\n\
         [denied]\npath = {root}\nhosts deny = ::1/128\n\
         [mask]\npath = {root}\nhosts allow = ::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n"
    );
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipping");
        return;
    }
    let server = Upserv::launch(
        &[],
        &Launch {
            conf: Some(&conf),
            listen: Some("[::1]:0"),
            ..Launch::default()
        },
    );
    for (module, admitted) in [
        ("exact", true),
        ("net", true),
        ("zero", true),
        ("v4only", false),
        ("denied", false),
        ("mask", true),
    ] {
        let (code, err) = pull_code(&server, &format!("{module}/"));
        assert_eq!(code == 0, admitted, "module {module}: {err}");
        if !admitted {
            assert!(
                err.contains(&format!(
                    "@ERROR: access denied to {module} from UNDETERMINED (::1)"
                )),
                "{err}"
            );
        }
    }
}

#[test]
fn address_wildcards_match_the_address_text() {
    // rsyncd reads `127.0.0.*` as a host-name pattern, which without a
    // host name matches nothing; upserv never has host names, so it gives
    // such address-only patterns the meaning an administrator means.
    let tree = small_tree();
    let root = tree.root().display();
    let conf = format!(
        "[star]\npath = {root}\nhosts allow = 127.0.0.*\nhosts deny = *\n\
         [class]\npath = {root}\nhosts allow = 127.0.0.[02-9]\n\
         [other]\npath = {root}\nhosts deny = 127.0.1.*\n"
    );
    let server = Upserv::with_conf(&conf);
    assert_eq!(pull_code(&server, "star/").0, 0);
    assert_eq!(pull_code(&server, "class/").0, 5);
    assert_eq!(pull_code(&server, "other/").0, 0);
}

#[test]
fn host_names_never_admit_and_are_warned_about() {
    let tree = small_tree();
    let root = tree.root().display();
    let conf = format!("[m]\npath = {root}\nhosts allow = localhost\n");
    let server = Upserv::with_conf(&conf);
    server.await_log("`localhost` needs a DNS lookup", 1);
    // rsyncd would resolve the name and let 127.0.0.1 in; upserv never
    // looks names up, so the rule admits nobody.
    assert_eq!(pull_code(&server, "m/").0, 5);
}

#[test]
fn no_ident_or_reverse_lookup_ever_reaches_the_client() {
    // rsyncd once asked the client's identd (port 113); a listener there
    // must see no connection while upserv serves pulls, even with host
    // names in its rules.
    let Ok(identd) = std::net::TcpListener::bind("127.0.0.1:113") else {
        eprintln!("cannot bind 127.0.0.1:113 here: skipping");
        return;
    };
    identd.set_nonblocking(true).expect("nonblocking");
    let tree = small_tree();
    let root = tree.root().display();
    let conf = format!(
        "[m]\npath = {root}\nhosts allow = client.example.org 127.0.0.1\n\
         [n]\npath = {root}\nhosts deny = *.example.org\n"
    );
    let server = Upserv::with_conf(&conf);
    assert_eq!(pull_code(&server, "m/").0, 0);
    assert_eq!(pull_code(&server, "n/").0, 5);
    match identd.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to the ident port: {other:?}"),
    }
}

// ----------------------------------------------------------------- auth

/// A secrets file with `mode`, owned by root (the tests run as root).
fn secrets_file(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("secrets file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path.display().to_string()
}

/// How the client gets its password.
#[derive(Clone, Copy, Debug)]
enum Password {
    Env,
    File,
}

struct Login {
    user: &'static str,
    password: &'static str,
    module: &'static str,
    ok: bool,
}

const LOGINS: &[Login] = &[
    Login {
        user: "alice",
        password: "wonder",
        module: "priv",
        ok: true,
    },
    Login {
        user: "alice",
        password: "wrong",
        module: "priv",
        ok: false,
    },
    Login {
        user: "bob",
        password: "builder",
        module: "priv",
        ok: false,
    },
    Login {
        user: "carol",
        password: "carolpw",
        module: "priv",
        ok: true,
    },
    Login {
        user: "zed",
        password: "x",
        module: "priv",
        ok: false,
    },
    // root matches no user rule but `@root`; the group's line has the password.
    Login {
        user: "root",
        password: "rootgroup",
        module: "priv",
        ok: true,
    },
    Login {
        user: "root",
        password: "nope",
        module: "priv",
        ok: false,
    },
    // Strict modes refuse a secrets file others can read; without them it works.
    Login {
        user: "alice",
        password: "wonder",
        module: "loose",
        ok: false,
    },
    Login {
        user: "alice",
        password: "wonder",
        module: "lax",
        ok: true,
    },
];

fn auth_modules(tree: &TestTree, dir: &Path) -> Vec<Module> {
    let secrets = "alice:wonder\nbob:builder\ncarol:carolpw\n@root:rootgroup\n";
    let tight = secrets_file(dir, "tight", secrets, 0o600);
    let readable = secrets_file(dir, "readable", secrets, 0o644);
    let users = "alice bob:deny carol:ro @root";
    vec![
        Module::new("priv", tree.root())
            .param("auth users", users)
            .param("secrets file", &tight),
        Module::new("loose", tree.root())
            .param("auth users", users)
            .param("secrets file", &readable),
        Module::new("lax", tree.root())
            .param("auth users", users)
            .param("secrets file", &readable)
            .param("strict modes", "no"),
    ]
}

/// One login attempt: the exit code, the `@ERROR` line, and whether the
/// pulled file arrived intact.
fn try_login(
    client: &Client,
    port: u16,
    login: &Login,
    how: Password,
    scratch: &Path,
) -> (i32, Option<String>, bool) {
    let dest = tempfile::tempdir_in(scratch).expect("dest");
    let url = format!("rsync://{}@127.0.0.1:{port}/{}/", login.user, login.module);
    let pwfile = dest.path().join("pw");
    std::fs::write(&pwfile, format!("{}\n", login.password)).expect("password file");
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let pwarg = format!("--password-file={}", pwfile.display());
    let target = dest.path().join("out");
    let target = target.to_str().expect("utf-8 path");
    let finished = match how {
        Password::Env => rsync(
            client,
            dest.path(),
            &["-a", &url, target],
            &[("RSYNC_PASSWORD", login.password)],
        ),
        Password::File => rsync(client, dest.path(), &["-a", &pwarg, &url, target], &[]),
    };
    let got = std::fs::read(dest.path().join("out/hello.txt")).ok();
    let text = stderr(&finished);
    (
        finished.code,
        error_line(&text),
        got.as_deref() == Some(b"hello\n"),
    )
}

#[test]
fn logins_succeed_and_fail_like_rsyncd_with_both_clients() {
    let tree = small_tree();
    let scratch = tempfile::tempdir().expect("scratch");
    let modules = auth_modules(&tree, scratch.path());
    let rsyncd = Rsyncd::start(&modules);
    let upserv = Upserv::start(&modules);
    for client in Client::all() {
        for login in LOGINS {
            for how in [Password::Env, Password::File] {
                let what = format!(
                    "{}@{} ({how:?}, {})",
                    login.user, login.module, client.version
                );
                let theirs = try_login(&client, rsyncd.port(), login, how, scratch.path());
                let ours = try_login(&client, upserv.port(), login, how, scratch.path());
                assert_eq!(ours, theirs, "{what}: upserv vs rsyncd\n{}", upserv.log());
                let want = if login.ok { 0 } else { 5 };
                assert_eq!(ours.0, want, "{what}: {:?}\n{}", ours.1, upserv.log());
                assert_eq!(ours.2, login.ok, "{what}: file content");
                if !login.ok {
                    let line = format!("@ERROR: auth failed on module {}", login.module);
                    assert_eq!(ours.1.as_deref(), Some(line.as_str()), "{what}");
                }
            }
        }
    }
    // The log says why, without the password.
    assert!(upserv.log().contains("for alice: password mismatch"));
    assert!(upserv.log().contains("for bob: denied by rule"));
    assert!(upserv.log().contains("for zed: no matching rule"));
    assert!(upserv.log().contains("must not be other-accessible"));
    assert!(!upserv.log().contains("wonder"));
}

/// Standard base64 without padding (RFC 4648), as rsync sends digests.
fn base64_unpadded(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::new();
    for &byte in data {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}

#[test]
fn an_old_client_without_a_digest_list_logs_in_with_md4() {
    // rsync before 3.2 sends `@RSYNCD: 29` with no digest list and answers
    // with MD4 over four zero bytes, the password and the challenge
    // (rsync: authenticate.c generate_hash with rsync: checksum.c's seeded sum_init).
    use md4::Digest as _;
    let tree = small_tree();
    let scratch = tempfile::tempdir().expect("scratch");
    let modules = auth_modules(&tree, scratch.path());
    let upserv = Upserv::start(&modules);
    let answer = |password: &str| {
        let mut raw = Raw::connect(upserv.port());
        assert!(raw
            .line()
            .starts_with("@RSYNCD: 32.0 sha512 sha256 md5 md4"));
        raw.send(b"@RSYNCD: 29\npriv\n");
        let line = raw.line();
        let challenge = line
            .strip_prefix("@RSYNCD: AUTHREQD ")
            .expect("a challenge")
            .trim()
            .to_string();
        let digest = md4::Md4::new()
            .chain_update([0u8; 4])
            .chain_update(password.as_bytes())
            .chain_update(challenge.as_bytes())
            .finalize();
        raw.send(format!("alice {}\n", base64_unpadded(&digest)).as_bytes());
        raw.line()
    };
    assert_eq!(answer("wonder"), "@RSYNCD: OK\n");
    assert_eq!(answer("wrong"), "@ERROR: auth failed on module priv\n");
}

#[test]
fn a_digest_floor_refuses_weaker_logins() {
    let tree = small_tree();
    let scratch = tempfile::tempdir().expect("scratch");
    let tight = secrets_file(scratch.path(), "s", "alice:wonder\n", 0o600);
    let module = |name: &str, floor: &str| {
        Module::new(name, tree.root())
            .param("auth users", "alice")
            .param("secrets file", &tight)
            .param("auth digest", floor)
    };
    let upserv = Upserv::start(&[module("strong", "sha256"), module("weak", "md5")]);
    let login = |m: &'static str| Login {
        user: "alice",
        password: "wonder",
        module: m,
        ok: true,
    };
    for client in Client::all() {
        // Both clients negotiate sha512 with upserv, which meets either floor.
        let got = try_login(
            &client,
            upserv.port(),
            &login("strong"),
            Password::Env,
            scratch.path(),
        );
        assert_eq!(got.0, 0, "{}: {:?}", client.version, got.1);
    }
    // A client announcing only md5 is refused by the sha256 floor.
    let mut raw = Raw::connect(upserv.port());
    raw.line();
    raw.send(b"@RSYNCD: 31.0 md5\nstrong\n");
    assert_eq!(raw.line(), "@ERROR: auth failed on module strong\n");
    let mut raw = Raw::connect(upserv.port());
    raw.line();
    raw.send(b"@RSYNCD: 31.0 md5\nweak\n");
    assert!(raw.line().starts_with("@RSYNCD: AUTHREQD "));
}

// ----------------------------------------------------------------- list

#[test]
fn list_no_hides_a_module_that_stays_reachable() {
    let tree = small_tree();
    let modules = [
        Module::new("shown", tree.root()).param("comment", "for all"),
        Module::new("hidden", tree.root()).param("list", "no"),
    ];
    let rsyncd = Rsyncd::start(&modules);
    let upserv = Upserv::start(&modules);
    for client in Client::all() {
        let listing = |port: u16| {
            let scratch = tempfile::tempdir().expect("scratch");
            let url = format!("rsync://127.0.0.1:{port}/");
            let f = rsync(&client, scratch.path(), &[&url], &[]);
            assert_eq!(f.code, 0);
            String::from_utf8_lossy(&f.stdout).into_owned()
        };
        let ours = listing(upserv.port());
        assert_eq!(ours, listing(rsyncd.port()));
        assert_eq!(ours, "shown          \tfor all\n");
        let scratch = tempfile::tempdir().expect("scratch");
        let r = client.pull(
            &upserv.url("hidden/"),
            &scratch.path().join("d"),
            &["-a"],
            Protocol::Default,
        );
        r.assert_ok();
    }
}

// ---------------------------------------------------------- confinement

/// A module tree with links in and out, and a directory outside it.
struct Confined {
    tree: TestTree,
    _outside: tempfile::TempDir,
    outside_name: String,
}

fn confined() -> Confined {
    let outside = tempfile::Builder::new()
        .prefix("outside-")
        .tempdir()
        .expect("outside dir");
    std::fs::create_dir(outside.path().join("dir")).expect("outside/dir");
    std::fs::write(outside.path().join("dir/secret"), MARKER).expect("secret");
    std::fs::write(outside.path().join("secret2"), MARKER).expect("secret2");
    let tree = TestTree::new();
    tree.file("sub/file", b"inside\n");
    tree.file("etc/passwd", b"the module's own passwd\n");
    tree.symlink("abslink", outside.path().join("dir"));
    // The same place by a relative path: up to / and down again.
    let depth = tree.root().components().count() - 1;
    let up = "../".repeat(depth);
    let rel = format!(
        "{up}{}",
        outside.path().display().to_string().trim_start_matches('/')
    );
    tree.symlink("rellink", format!("{rel}/dir"));
    tree.symlink("relfile", format!("{rel}/secret2"));
    tree.symlink("inlink", "sub");
    tree.symlink("infile", "sub/file");
    let outside_name = outside
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    Confined {
        tree,
        _outside: outside,
        outside_name,
    }
}

/// One way out, with the exit code each server gives (observed from the
/// real rsyncd 3.5.0) and whether both leave the same tree behind.
struct Escape {
    opts: &'static [&'static str],
    path: &'static str,
    rsyncd: i32,
    upserv: i32,
    same_tree: bool,
}

const fn esc(opts: &'static [&'static str], path: &'static str, code: i32) -> Escape {
    Escape {
        opts,
        path,
        rsyncd: code,
        upserv: code,
        same_tree: true,
    }
}

/// upserv and rsyncd both refuse to leave the module, but differ in how an
/// outward symlink shows: rsyncd lists it as the directory it points to and
/// then fails to open it (code 23, an empty directory left behind); upserv
/// never follows it and lists the link itself, or leaves it out with
/// "symlink leads outside the module".
const fn differs(
    opts: &'static [&'static str],
    path: &'static str,
    rsyncd: i32,
    upserv: i32,
) -> Escape {
    Escape {
        opts,
        path,
        rsyncd,
        upserv,
        same_tree: false,
    }
}

const ESCAPES: &[Escape] = &[
    esc(&["-a"], "m/", 0),
    esc(&["-a"], "m/abslink/secret", 23),
    esc(&["-a"], "m/rellink/", 23),
    esc(&["-a"], "m/relfile", 0),
    esc(&["-a"], "m/inlink/", 0),
    esc(&["-a"], "m/../OUTSIDE/secret2", 23),
    esc(&["-a"], "m/../../../../../../../../etc/passwd", 0),
    esc(&["-a"], "m//etc/passwd", 0),
    esc(&["-a"], "m/./abslink/", 23),
    differs(&["-aL"], "m/", 23, 23),
    esc(&["-aL"], "m/abslink/secret", 23),
    esc(&["-aL"], "m/rellink/", 23),
    differs(&["-aL"], "m/relfile", 23, 23),
    esc(&["-aL"], "m/inlink/", 0),
    esc(&["-aL"], "m/infile", 0),
    differs(&["-ak"], "m/", 23, 0),
    esc(&["-ak"], "m/rellink/", 23),
    differs(&["-a", "--copy-unsafe-links"], "m/", 23, 23),
    differs(&["-a", "--copy-unsafe-links"], "m/relfile", 23, 23),
    esc(&["-aR"], "m/abslink/secret", 23),
    differs(&["-aR"], "m/./abslink/", 23, 0),
    differs(&["-aR"], "m/rellink/", 23, 0),
    esc(&["-aR"], "m/sub/../../OUTSIDE/secret2", 23),
    // The client itself rejects the name it did not ask for.
    esc(&["-aR"], "m/./sub/../../etc/passwd", 4),
];

#[test]
fn no_path_a_client_names_leaves_the_module() {
    let c = confined();
    let modules = [Module::new("m", c.tree.root())];
    let rsyncd = Rsyncd::start(&modules);
    let upserv = Upserv::start(&modules);
    let scratch = tempfile::tempdir().expect("scratch");
    let mut n = 0;
    for client in Client::all() {
        for e in ESCAPES {
            let path = e.path.replace("OUTSIDE", &c.outside_name);
            let what = format!("{:?} {path} ({})", e.opts, client.version);
            let mut run = |server: &dyn crate::support::Server| {
                n += 1;
                let dest = scratch.path().join(format!("d{n}"));
                let r = client.pull(&server.url(&path), &dest, e.opts, Protocol::V(29));
                let leaked = files_containing(&dest, MARKER);
                assert!(
                    leaked.is_empty(),
                    "{what}: {} leaked {leaked:?}",
                    server.describe()
                );
                (r, Snapshot::of(&dest))
            };
            let (theirs, their_tree) = run(&rsyncd);
            let (ours, our_tree) = run(&upserv);
            assert_eq!(theirs.code, e.rsyncd, "{what}: rsyncd\n{}", theirs.stderr);
            assert_eq!(ours.code, e.upserv, "{what}: upserv\n{}", ours.stderr);
            if e.same_tree {
                let volatile = crate::support::differential::volatile_mtimes(e.opts, &path);
                let diffs = their_tree.diff(&our_tree, volatile, ["rsyncd", "upserv"]);
                assert!(
                    diffs.is_empty(),
                    "{what}: trees differ:\n{}",
                    diffs.join("\n")
                );
            }
        }
    }
}

#[test]
fn the_module_own_etc_passwd_is_what_an_absolute_path_gets() {
    let c = confined();
    let upserv = Upserv::start(&[Module::new("m", c.tree.root())]);
    let scratch = tempfile::tempdir().expect("scratch");
    let dest = scratch.path().join("d");
    pull(
        &upserv.url("m//etc/passwd"),
        &dest,
        &["-a"],
        Protocol::Default,
    )
    .assert_ok();
    assert_eq!(
        std::fs::read(dest.join("passwd")).expect("pulled"),
        b"the module's own passwd\n"
    );
}

#[test]
fn serve_mode_applies_hosts_and_logins_too() {
    let tree = small_tree();
    let scratch = tempfile::tempdir().expect("scratch");
    let mut modules = auth_modules(&tree, scratch.path());
    modules.push(Module::new("walled", tree.root()).param("hosts allow", "10.0.0.0/8"));
    let server = UpservServe::start(&modules);
    let client = Client::current();
    let good = &LOGINS[0];
    let bad = &LOGINS[1];
    assert_eq!(
        try_login(&client, server.port(), good, Password::Env, scratch.path()).0,
        0
    );
    let refused = try_login(&client, server.port(), bad, Password::Env, scratch.path());
    assert_eq!(refused.0, 5);
    assert_eq!(
        refused.1.as_deref(),
        Some("@ERROR: auth failed on module priv")
    );
    let walled = pull(
        &server.url("walled/"),
        &scratch.path().join("w"),
        &["-a"],
        Protocol::Default,
    );
    walled.assert_refused("@ERROR: access denied to walled from UNDETERMINED (127.0.0.1)");
    assert!(server.stderr_text().is_empty(), "{}", server.stderr_text());
}

// ------------------------------------------------------------- link races

/// How long the swap race may run at most, and how many pulls it makes.
const RACE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
const RACE_PULLS: usize = 48;

/// A thread exchanging two paths with `renameat2(RENAME_EXCHANGE)` as fast
/// as it can: what a local user with write access to a static module can
/// do to a directory during pulls.
struct Swapper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Swapper {
    fn start(a: &Path, b: &Path) -> Swapper {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path");
        let (a, b) = (c(a), c(b));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: two valid C strings naming paths in the test tree.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
                swaps += 1;
            }
            swaps
        });
        Swapper { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("swapper")
    }
}

#[test]
fn a_directory_swapped_for_a_link_out_during_pulls_never_leaks() {
    let c = confined();
    // `d` and the outside directory hold the same names, so that whatever
    // a pull lists while `d` is the real directory, it may open after the
    // swap through the link.
    c.tree.file("d/secret", b"inside\n");
    c.tree.file("d/.rsync-filter", b"- nothing-here\n");
    for i in 0..20 {
        c.tree.file(format!("d/f{i}"), b"inside\n");
        std::fs::write(c._outside.path().join(format!("dir/f{i}")), MARKER).expect("outside");
    }
    std::fs::write(c._outside.path().join("dir/.rsync-filter"), b"- secret\n").expect("filter");
    c.tree.symlink("swap", c._outside.path().join("dir"));
    let list = c._outside.path().join("files-from");
    std::fs::write(&list, b"d/secret\nd/f1\nd/\n").expect("files-from");
    let from = format!("--files-from={}", list.display());
    // Every way the sender opens something: a file named by the client, a
    // directory listing, links resolved by -L/-k, -R's implied
    // directories, --files-from names, per-directory merge files (-F).
    let cases: [(&[&str], &str); 8] = [
        (&["-a"], "m/d/secret"),
        (&["-a"], "m/d/"),
        (&["-a"], "m/"),
        (&["-aL"], "m/"),
        (&["-ak"], "m/d/"),
        (&["-aR"], "m/d/f3"),
        (&["-a", "-F"], "m/"),
        (&["-a", from.as_str()], "m/"),
    ];
    let upserv = Upserv::start(&[Module::new("m", c.tree.root())]);
    let scratch = tempfile::tempdir().expect("scratch");
    let swapper = Swapper::start(&c.tree.path("d"), &c.tree.path("swap"));
    let started = std::time::Instant::now();
    let mut leaks = Vec::new();
    let mut pulls = 0;
    while pulls < RACE_PULLS && started.elapsed() < RACE_DEADLINE {
        let (opts, path) = cases[pulls % cases.len()];
        let dest = scratch.path().join(format!("d{pulls}"));
        pull(&upserv.url(path), &dest, opts, Protocol::Default);
        let leaked = files_containing(&dest, MARKER);
        if !leaked.is_empty() {
            leaks.push(format!("{opts:?} {path}: {leaked:?}"));
        }
        pulls += 1;
    }
    let swaps = swapper.stop();
    assert!(swaps > 0 && pulls >= 8, "{swaps} swaps, {pulls} pulls");
    assert!(
        leaks.is_empty(),
        "{} of {pulls} pulls leaked:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

// ------------------------------------------------------ stale build tables

/// A build's metadata table overrides owners and modes, never what a path
/// is on disk: after an admin replaced a directory with a link out of the
/// build and a device with a plain file, a pull walks through neither.
#[test]
fn a_build_table_never_decides_what_the_disk_holds() {
    use crate::support::upstream::{tar_of, Entry};
    let scratch = tempfile::tempdir().expect("scratch");
    let builds = scratch.path().join("builds");
    std::fs::create_dir(&builds).expect("builds");
    let outside = scratch.path().join("outside");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("conf"), MARKER).expect("secret");
    let up = crate::support::upstream::Upstream::start();
    up.put(
        "/b/build-t.tar",
        tar_of(&[
            Entry::dir("t"),
            Entry::dir("t/etc"),
            Entry::file("t/etc/conf", b"inside\n"),
            Entry::dir("t/dev"),
            Entry::device("t/dev/null", tar::EntryType::Char, 1, 3).mode(0o666),
        ]),
    );
    let upserv = upserv_for(&up, "/b/{name}.tar", &builds, &[]);
    let first = scratch.path().join("first");
    pull(&upserv.url("build-t/"), &first, &["-a"], Protocol::Default).assert_ok();
    let null = std::fs::symlink_metadata(first.join("dev/null")).expect("dev/null");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &null.file_type()
    ));

    let root = builds.join("build-t");
    std::fs::remove_dir_all(root.join("etc")).expect("rm etc");
    std::os::unix::fs::symlink(&outside, root.join("etc")).expect("etc link");
    std::fs::write(root.join("dev/null"), b"plain\n").expect("dev/null file");
    let second = scratch.path().join("second");
    let r = pull(&upserv.url("build-t/"), &second, &["-a"], Protocol::Default);
    assert_eq!(
        files_containing(&second, MARKER),
        Vec::<std::path::PathBuf>::new()
    );
    r.assert_ok();
    let etc = std::fs::symlink_metadata(second.join("etc")).expect("etc");
    assert!(etc.file_type().is_symlink(), "etc: {etc:?}");
    assert_eq!(
        std::fs::read(second.join("dev/null")).expect("dev/null"),
        b"plain\n"
    );
    let listed: Vec<_> = std::fs::read_dir(second.join("dev"))
        .expect("dev")
        .collect();
    assert_eq!(listed.len(), 1);
}
