//! The Debian package as `cargo deb` builds it into `target/debian/`: its
//! files and their modes (`dpkg-deb -c`), its control data and maintainer
//! scripts (`dpkg-deb -I`), a default configuration that upserv itself
//! accepts, and systemd units that `systemd-analyze security --offline=yes`
//! rates at most [`MAX_EXPOSURE`] ("OK").
//!
//! The package is built before the tests (`.ci/run` runs `cargo deb`):
//! building a release binary from inside `cargo test` would wait on cargo's
//! own lock. A missing or stale package fails the test, never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest exposure `systemd-analyze security` calls OK.
const MAX_EXPOSURE: f64 = 2.5;
/// Every unit the package installs, and whether its score is held to
/// [`MAX_EXPOSURE`] (the socket unit runs no process and has no score).
const UNITS: [(&str, bool); 3] = [
    ("upserv.service", true),
    ("upserv@.service", true),
    ("upserv.socket", false),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to completion: (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files the package is made from, besides the binary.
fn package_sources() -> Vec<PathBuf> {
    let mut sources = vec![root().join("Cargo.toml"), root().join("src/upserv.8")];
    let mut dirs = vec![root().join("packaging")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    sources
}

/// The package `cargo deb` built, checked to be newer than what it is made of.
fn package() -> PathBuf {
    let dir = root().join("target/debian");
    let version = env!("CARGO_PKG_VERSION");
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries.map(|e| e.unwrap().path()).find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("upserv_{version}-")) && name.ends_with(".deb")
        })
    });
    let deb = found.unwrap_or_else(|| {
        panic!(
            "no upserv_{version}-*.deb in {}: build it with `cargo deb` \
             (`cargo install --locked cargo-deb`; .ci/run does both)",
            dir.display()
        )
    });
    let built = modified(&deb);
    for source in package_sources() {
        assert!(
            modified(&source) <= built,
            "{} is stale: {} changed since; run `cargo deb` again",
            deb.display(),
            source.display()
        );
    }
    deb
}

#[test]
fn the_package_holds_the_binary_man_page_config_units_logrotate_and_xinetd_example() {
    let deb = package();
    let (ok, listing, err) = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(ok, "dpkg-deb -c: {err}");
    let expected = [
        ("-rwxr-xr-x", "./usr/bin/upserv"),
        ("-rw-r--r--", "./usr/share/man/man8/upserv.8.gz"),
        ("-rw-r--r--", "./etc/upserv.conf"),
        ("-rw-r--r--", "./etc/logrotate.d/upserv"),
        ("-rw-r--r--", "./lib/systemd/system/upserv.service"),
        ("-rw-r--r--", "./lib/systemd/system/upserv.socket"),
        ("-rw-r--r--", "./lib/systemd/system/upserv@.service"),
        (
            "-rw-r--r--",
            "./usr/share/doc/upserv/examples/xinetd.d/rsync",
        ),
    ];
    for (mode, path) in expected {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} missing from the package:\n{listing}"));
        assert!(line.starts_with(mode), "{path}: {line}");
        assert!(line.contains(" 0/0 "), "{path} belongs to root: {line}");
    }

    let (ok, info, err) = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(ok, "dpkg-deb -I: {err}");
    assert!(info.contains(" Package: upserv\n"), "{info}");
    let depends = info
        .lines()
        .find(|l| l.starts_with(" Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{info}"));
    assert!(depends.contains("adduser"), "{depends}");
    for script in ["postinst", "postrm", "prerm"] {
        assert!(info.contains(&format!("  {script} ")), "{script}:\n{info}");
    }
    let (ok, conffiles, err) = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert!(ok, "dpkg-deb -I conffiles: {err}");
    assert!(
        conffiles.lines().any(|l| l == "/etc/upserv.conf"),
        "{conffiles}"
    );
    let (ok, postinst, err) = run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    assert!(ok, "dpkg-deb -I postinst: {err}");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(postinst.contains("/var/lib/upserv/builds"), "{postinst}");
}

/// The package unpacked into a fresh directory.
fn unpacked(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    assert!(ok, "dpkg-deb -x: {err}");
    dir
}

#[test]
fn the_packaged_binary_accepts_the_packaged_configuration() {
    let dir = unpacked(&package());
    let bin = dir.path().join("usr/bin/upserv");
    let conf = dir.path().join("etc/upserv.conf");
    let (ok, settings, err) = run(Command::new(&bin)
        .arg("check-config")
        .arg("--config")
        .arg(&conf));
    assert!(ok, "check-config of the packaged upserv.conf: {err}");
    assert!(
        settings.contains("builds dir = /var/lib/upserv/builds"),
        "{settings}"
    );
    // The units start the binary and the file the package installs.
    for (unit, _) in UNITS {
        let text = std::fs::read_to_string(dir.path().join("lib/systemd/system").join(unit))
            .unwrap_or_else(|e| panic!("{unit}: {e}"));
        if let Some(exec) = text.lines().find(|l| l.starts_with("ExecStart=")) {
            assert!(
                exec.starts_with("ExecStart=/usr/bin/upserv ")
                    && exec.ends_with(" --config /etc/upserv.conf"),
                "{unit}: {exec}"
            );
        }
    }
}

/// The exposure `systemd-analyze security --offline=yes` gives `unit`.
fn exposure(unit: &Path) -> (f64, String) {
    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit));
    let all = format!("{out}{err}");
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level for "))
        .unwrap_or_else(|| panic!("no overall exposure for {}:\n{all}", unit.display()));
    let after = line.rsplit(": ").next().unwrap();
    let score = after
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    (score, all)
}

#[test]
fn systemd_rates_the_packaged_service_units_ok() {
    let dir = unpacked(&package());
    for (unit, scored) in UNITS {
        let path = dir.path().join("lib/systemd/system").join(unit);
        let (ok, _, err) = run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path));
        // Offline, `verify` cannot find /usr/bin/upserv; anything else it
        // says about the unit's syntax is a failure.
        let problems: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("/usr/bin/upserv") && !l.trim().is_empty())
            .collect();
        assert!(ok || problems.is_empty(), "{unit}: {err}");
        if scored {
            let (score, report) = exposure(&path);
            assert!(
                score <= MAX_EXPOSURE,
                "{unit} is rated {score}, above {MAX_EXPOSURE}:\n{report}"
            );
        }
    }
}
