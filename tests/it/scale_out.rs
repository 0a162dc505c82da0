//! More than one box: the real HAProxy spreading clients over upserv boxes
//! with the PROXY protocol (`send-proxy-v2` and `send-proxy`), and the real
//! nginx caching the upstream in front of them, all started here on
//! loopback with the configurations the README shows.
//!
//! Clients come from distinct loopback addresses (`rsync --address`), so
//! that a box judging the balancer's address (127.0.0.1) instead of the
//! client's is caught: by its log, by `hosts deny` and by `max connections
//! per host`.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use crate::support::builds::{assert_pulled_tree, small_tree_and_archive};
use crate::support::live::LiveClient;
use crate::support::proc::Daemon;
use crate::support::rsyncd::free_port;
use crate::support::scratch::scratch_dir;
use crate::support::upstream::{compress, Behavior, Upstream};
use crate::support::*;
use tempfile::TempDir;

/// nginx's slice size in the README's configuration: each slice is cached
/// on its own, so a resumed download is served from the cached slices.
const SLICE: &str = "1m";

/// A process the test started with a configuration file of its own in a
/// temporary directory; killed when dropped.
struct Helper {
    _daemon: Daemon,
    port: u16,
    dir: TempDir,
}

impl Helper {
    /// Writes `config` and starts `argv`, `@PORT@`, `@DIR@` and (in `argv`)
    /// `@CONF@` filled in with a free port, the directory and the file, then
    /// waits until the port takes connections.
    fn start(what: &str, config: &str, file: &str, argv: &[&str]) -> Helper {
        let dir = tempfile::Builder::new()
            .prefix(&format!("upserv-{what}-"))
            .tempdir()
            .expect("a directory for the helper");
        let port = free_port();
        let dir_text = dir.path().to_string_lossy().into_owned();
        let conf = dir.path().join(file);
        let text = config
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", &dir_text);
        std::fs::write(&conf, text).expect("writing the helper's configuration");
        let conf_text = conf.to_string_lossy().into_owned();
        let args: Vec<String> = argv
            .iter()
            .map(|a| {
                a.replace("@CONF@", &conf_text)
                    .replace("@DIR@", &dir_text)
                    .replace("@PORT@", &port.to_string())
            })
            .collect();
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..]);
        let mut daemon =
            Daemon::spawn(&mut cmd, |_| {}).unwrap_or_else(|e| panic!("starting {what}: {e}"));
        wait_until(&format!("{what} listening on port {port}"), || {
            if let Some(status) = daemon.exited() {
                panic!("{what} exited with {status}:\n{}", daemon.stderr_text());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Helper {
            _daemon: daemon,
            port,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{path}", self.port)
    }
}

/// HAProxy in TCP mode, round robin over `boxes`, each sent the PROXY
/// header `send` (`send-proxy-v2` or `send-proxy`).
fn haproxy(boxes: &[u16], send: &str) -> Helper {
    let servers: String = boxes
        .iter()
        .enumerate()
        .map(|(i, port)| format!("    server box{i} 127.0.0.1:{port} {send}\n"))
        .collect();
    let config = format!("{HAPROXY_CONF}{servers}");
    Helper::start(
        "haproxy",
        &config,
        "haproxy.cfg",
        &["haproxy", "-db", "-f", "@CONF@"],
    )
}

/// The README's HAProxy configuration, without its `server` lines.
const HAPROXY_CONF: &str = "\
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend rsync
    bind 127.0.0.1:@PORT@
    default_backend upserv
backend upserv
    balance roundrobin
";

/// nginx caching `origin` with the README's configuration; its access log
/// records the `Range` each request asked for.
fn nginx(origin: &Upstream) -> Helper {
    // As root, nginx's workers would otherwise run as nobody and could not
    // write the cache in this private directory.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let config = format!(
        "{user}daemon off;\nworker_processes 1;\npid @DIR@/nginx.pid;\nerror_log @DIR@/error.log;\n\
         events {{ worker_connections 256; }}\n{}",
        NGINX_HTTP
            .replace("ORIGIN", &origin.url(""))
            .replace("SLICE", SLICE)
    );
    Helper::start(
        "nginx",
        &config,
        "nginx.conf",
        &[
            "nginx",
            "-p",
            "@DIR@",
            "-c",
            "@CONF@",
            "-e",
            "@DIR@/error.log",
        ],
    )
}

/// The README's nginx `http` block.
const NGINX_HTTP: &str = "\
http {
    log_format ranges '$request \"$http_range\" $status $upstream_cache_status';
    access_log @DIR@/access.log ranges;
    client_body_temp_path @DIR@/body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    proxy_cache_path @DIR@/cache levels=1:2 keys_zone=builds:10m max_size=10g inactive=30d use_temp_path=off;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            slice SLICE;
            proxy_cache builds;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
            proxy_http_version 1.1;
            proxy_cache_valid 200 206 30d;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10m;
            proxy_cache_lock_age 10m;
            proxy_pass ORIGIN;
        }
    }
}
";

/// `support::builds`'s small tree and its archive, gzip-compressed.
fn tree_and_archive() -> (TestTree, Vec<u8>) {
    let (tree, archive) = small_tree_and_archive();
    (tree, compress(&archive, &["gzip", "-c"]))
}

/// An upserv box with `proxy protocol = yes` and the given extra globals.
fn proxied_box(
    modules: &[Module],
    builds: &Path,
    upstream: Option<&str>,
    globals: &[(&str, &str)],
) -> Upserv {
    let mut all = vec![("proxy protocol", "yes")];
    all.extend_from_slice(globals);
    let args: Vec<&str> = upstream.map_or(Vec::new(), |url| vec!["--upstream", url]);
    Upserv::launch(
        modules,
        &Launch {
            builds: Some(builds),
            args: &args,
            globals: &all,
            ..Launch::default()
        },
    )
}

/// `rsync --address=ADDR` options for a client on that loopback address.
fn from_address(addr: &str, opts: &[&str]) -> Vec<String> {
    let mut all = vec![format!("--address={addr}")];
    all.extend(opts.iter().map(|o| o.to_string()));
    all
}

fn pull_from(addr: &str, url: &str, dest: &Path, opts: &[&str]) -> PullResult {
    let opts = from_address(addr, opts);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    pull(url, dest, &opts, Protocol::Default)
}

/// A pull of `url` from the loopback address `addr` that must bring all
/// of `tree` to `dest`.
fn pull_tree_from(addr: &str, url: &str, dest: &Path, tree: &TestTree) {
    pull_from(addr, url, dest, &["-a"]).assert_ok();
    assert_pulled_tree(tree, dest);
}

/// A pull of `m/` straight from a box that wants PROXY headers fails.
fn assert_direct_pull_fails(server: &dyn Server, dest: &Path) {
    let direct = pull(&server.url("m/"), dest, &["-a"], Protocol::Default);
    assert_ne!(direct.code, 0, "{}", direct.stderr);
}

/// A static module over a small tree.
fn static_tree() -> (TestTree, Module) {
    let tree = TestTree::new();
    tree.file("hello", b"hello\n");
    tree.file("sub/data", &[3u8; 5000]);
    tree.settle();
    let module = Module::new("m", tree.root());
    (tree, module)
}

fn served_lines<'a>(log: &'a str, module: &str) -> Vec<&'a str> {
    let mark = format!(": module {module}: ");
    log.lines().filter(|l| l.contains(&mark)).collect()
}

#[test]
fn six_clients_through_haproxy_share_one_download_through_nginx() {
    const CLIENTS: usize = 6;
    let (tree, archive) = tree_and_archive();
    let dir = scratch_dir("scale-six");
    let origin = Upstream::start();
    // The origin holds back half of the body until every client waits, so
    // that both boxes ask nginx for the build at the same time.
    origin.put("/b/build-six.tar.gz", archive.clone());
    origin.gate_after("/b/build-six.tar.gz", archive.len() / 2);
    let cache = nginx(&origin);
    let template = format!("http://127.0.0.1:{}/b/{{name}}.tar.gz", cache.port);
    let boxes: Vec<Upserv> = (0..2)
        .map(|i| {
            let builds = dir.join(format!("builds-{i}"));
            std::fs::create_dir_all(&builds).unwrap();
            // At debug level a box logs each client that asks for a module.
            let globals = [("workers", "8"), ("log level", "debug")];
            proxied_box(&[], &builds, Some(&template), &globals)
        })
        .collect();
    let balancer = haproxy(&[boxes[0].port(), boxes[1].port()], "send-proxy-v2");
    let addrs: Vec<String> = (2..2 + CLIENTS).map(|n| format!("127.0.0.{n}")).collect();
    let clients: Vec<LiveClient> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let opts = from_address(addr, &["-aH"]);
            let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
            LiveClient::start(
                &balancer.url("build-six/"),
                &dir.join(format!("dest-{i}")),
                &opts,
            )
        })
        .collect();
    origin.wait_at_gate(1);
    for addr in &addrs {
        let asks = format!("{addr}: asks for module build-six");
        wait_until(&format!("{addr} at a box"), || {
            boxes.iter().any(|b| b.log().contains(&asks))
        });
    }
    origin.open_gate();
    for client in clients {
        client.finish().assert_ok();
    }
    for i in 0..CLIENTS {
        assert_pulled_tree(&tree, &dir.join(format!("dest-{i}")));
    }
    assert_eq!(
        origin.gets("/b/build-six.tar.gz"),
        1,
        "the origin must see one GET for two boxes; nginx log:\n{}",
        std::fs::read_to_string(cache.dir.path().join("access.log")).unwrap_or_default()
    );
    let logs: Vec<String> = boxes.iter().map(Upserv::log).collect();
    for (i, log) in logs.iter().enumerate() {
        assert!(
            !served_lines(log, "build-six").is_empty(),
            "box {i} served no client:\n{log}"
        );
        assert!(
            !log.contains("127.0.0.1: module"),
            "box {i} logged the balancer's address:\n{log}"
        );
    }
    for addr in &addrs {
        let line = format!("{addr}: module build-six: ");
        let boxes_naming = logs.iter().filter(|l| l.contains(&line)).count();
        assert_eq!(boxes_naming, 1, "{addr} in the logs:\n{}", logs.join("\n"));
    }
}

#[test]
fn hosts_deny_and_the_per_host_limit_judge_the_client_behind_haproxy() {
    let (tree, module) = static_tree();
    let module = module.param("hosts deny", "127.0.0.3");
    let dir = scratch_dir("scale-deny");
    let origin = Upstream::start();
    let (_, archive) = tree_and_archive();
    origin.put("/b/build-held.tar.gz", archive.clone());
    origin.gate_after("/b/build-held.tar.gz", archive.len() / 2);
    let template = origin.url("/b/{name}.tar.gz");
    let builds = dir.join("builds");
    std::fs::create_dir_all(&builds).unwrap();
    let upserv = proxied_box(
        &[module],
        &builds,
        Some(&template),
        &[("max connections per host", "1")],
    );
    let balancer = haproxy(&[upserv.port()], "send-proxy-v2");

    pull_tree_from("127.0.0.2", &balancer.url("m/"), &dir.join("ok"), &tree);
    let denied = pull_from("127.0.0.3", &balancer.url("m/"), &dir.join("no"), &["-a"]);
    denied.assert_refused("@ERROR: access denied to m from UNDETERMINED (127.0.0.3)");
    upserv.await_log("denied on module m from 127.0.0.3", 1);

    // 127.0.0.2 holds its one connection while a build downloads.
    let held = LiveClient::start(
        &balancer.url("build-held/"),
        &dir.join("held"),
        &["-a", "--address=127.0.0.2"],
    );
    origin.wait_at_gate(1);
    held.wait_for_fetching("build-held");
    let second = pull_from("127.0.0.2", &balancer.url("m/"), &dir.join("2nd"), &["-a"]);
    second.assert_refused("@ERROR: max connections per host (1) reached -- try again later");
    // Another client behind the same balancer is not counted with it.
    pull_from(
        "127.0.0.4",
        &balancer.url("m/"),
        &dir.join("other"),
        &["-a"],
    )
    .assert_ok();
    origin.open_gate();
    held.finish().assert_ok();
}

#[test]
fn proxy_v1_from_haproxy_send_proxy_names_the_client() {
    let (tree, module) = static_tree();
    let dir = scratch_dir("scale-v1");
    let upserv = proxied_box(&[module], &dir, None, &[]);
    let balancer = haproxy(&[upserv.port()], "send-proxy");
    pull_tree_from("127.0.0.5", &balancer.url("m/"), &dir.join("dest"), &tree);
    upserv.await_log("127.0.0.5: module m: ", 1);
    let log = upserv.log();
    assert_eq!(
        served_lines(&log, "m")
            .iter()
            .filter(|l| l.contains("127.0.0.5: module m: "))
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn a_direct_connection_without_the_header_is_refused() {
    let (_tree, module) = static_tree();
    let dir = scratch_dir("scale-direct");
    let upserv = proxied_box(&[module], &dir, None, &[]);
    assert_direct_pull_fails(&upserv, &dir.join("dest"));
    assert!(!dir.join("dest").join("hello").exists());
    wait_until("the refusal in the log", || {
        upserv
            .log()
            .contains("127.0.0.1: refused: invalid PROXY protocol header")
    });
}

#[test]
fn proxy_protocol_from_takes_headers_only_from_the_balancers_listed() {
    let (tree, module) = static_tree();
    let dir = scratch_dir("scale-from");
    // Two boxes, each with a builds dir of its own, as two daemons need.
    let elsewhere = proxied_box(
        std::slice::from_ref(&module),
        &dir.join("builds-elsewhere"),
        None,
        &[("proxy protocol from", "127.0.0.9, 10.0.0.0/8")],
    );
    let listed = proxied_box(
        &[module],
        &dir.join("builds-listed"),
        None,
        &[("proxy protocol from", "127.0.0.9 127.0.0.1")],
    );
    let to_elsewhere = haproxy(&[elsewhere.port()], "send-proxy-v2");
    let to_listed = haproxy(&[listed.port()], "send-proxy-v2");
    let refused = pull_from(
        "127.0.0.6",
        &to_elsewhere.url("m/"),
        &dir.join("refused"),
        &["-a"],
    );
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(!dir.join("refused").join("hello").exists());
    elsewhere.await_log("127.0.0.1: refused: not a trusted PROXY protocol peer", 1);
    pull_tree_from("127.0.0.6", &to_listed.url("m/"), &dir.join("ok"), &tree);
    // The served line is written when the connection ends, which may be
    // after the client has exited.
    listed.await_log("127.0.0.6: module m: ", 1);
}

#[test]
fn a_resumed_download_survives_the_nginx_cache() {
    let (tree, archive) = tree_and_archive();
    let dir = scratch_dir("scale-resume");
    let origin = Upstream::start();
    let cut = archive.len() / 3;
    origin.put("/b/build-cut.tar.gz", archive);
    // The first answer breaks off; nginx passes the break on to upserv,
    // which resumes with a Range request.
    origin.set_behavior(
        "/b/build-cut.tar.gz",
        Behavior {
            cut: Some((cut, 1)),
            ..Behavior::default()
        },
    );
    let cache = nginx(&origin);
    let template = format!("http://127.0.0.1:{}/b/{{name}}.tar.gz", cache.port);
    let builds = dir.join("builds");
    std::fs::create_dir_all(&builds).unwrap();
    let upserv = Upserv::start_with(&[], Some(&builds), &["--upstream", &template]);
    pull(
        &upserv.url("build-cut/"),
        &dir.join("dest"),
        &["-aH"],
        Protocol::Default,
    )
    .assert_ok();
    assert_pulled_tree(&tree, &dir.join("dest"));
    let access = std::fs::read_to_string(cache.dir.path().join("access.log")).unwrap();
    let resumed: Vec<&str> = access
        .lines()
        .filter(|l| l.contains("build-cut") && l.contains("\"bytes="))
        .collect();
    assert!(
        !resumed.is_empty() && !resumed.iter().any(|l| l.contains("\"bytes=0-\"")),
        "upserv did not resume through nginx:\n{access}"
    );
    assert!(origin
        .ranges("/b/build-cut.tar.gz")
        .iter()
        .all(|r| r.as_deref().is_some_and(|r| r.starts_with("bytes=0-"))));
}

#[test]
fn serve_mode_reads_the_header_from_its_socket() {
    let (tree, module) = static_tree();
    let dir = scratch_dir("scale-serve");
    let serve = UpservServe::launch(
        &[module],
        &Launch {
            globals: &[("proxy protocol", "yes")],
            ..Launch::default()
        },
    );
    let balancer = haproxy(&[serve.port()], "send-proxy");
    pull_tree_from("127.0.0.7", &balancer.url("m/"), &dir.join("dest"), &tree);
    wait_until("the client's address in the serve log", || {
        serve.log_tail(50).contains("127.0.0.7: module m: ")
    });
    assert_direct_pull_fails(&serve, &dir.join("direct"));
    assert!(serve.stderr_text().is_empty(), "{}", serve.stderr_text());
}

/// The reference: rsyncd with `proxy protocol = yes`, trusting headers from
/// loopback (where HAProxy connects from), over `modules`.
fn rsyncd_proxied(modules: &[Module]) -> Helper {
    let conf = crate::support::conf::rsyncd_conf(
        modules,
        Path::new("@DIR@/rsyncd.log"),
        Path::new("@DIR@/rsyncd.lock"),
    );
    let config = format!("proxy protocol = yes\nproxy protocol hosts = 127.0.0.1\n{conf}");
    Helper::start(
        "rsyncd",
        &config,
        "rsyncd.conf",
        &[
            "rsync",
            "--daemon",
            "--no-detach",
            "--config=@CONF@",
            "--address=127.0.0.1",
            "--port=@PORT@",
        ],
    )
}

/// What a client's refusal comes down to: its exit code and the lines it
/// printed, without rsync's source locations and version.
fn refusal(result: &PullResult) -> (i32, Vec<String>) {
    let lines = result
        .stderr
        .lines()
        .map(|l| l.split(" at ").next().unwrap_or(l).to_string())
        .collect();
    (result.code, lines)
}

#[test]
fn through_haproxy_upserv_admits_and_refuses_as_rsyncd_does() {
    let (tree, module) = static_tree();
    let module = module.param("hosts deny", "127.0.0.3");
    let dir = scratch_dir("scale-reference");
    let upserv = proxied_box(std::slice::from_ref(&module), &dir, None, &[]);
    let rsyncd = rsyncd_proxied(&[module]);
    let sides = [
        (
            "upserv",
            haproxy(&[upserv.port()], "send-proxy-v2"),
            upserv.url("m/"),
        ),
        (
            "rsyncd",
            haproxy(&[rsyncd.port], "send-proxy-v2"),
            rsyncd.url("m/"),
        ),
    ];
    let mut refusals = Vec::new();
    for (name, balancer, direct_url) in &sides {
        let ok = dir.join(format!("{name}-ok"));
        pull_from("127.0.0.2", &balancer.url("m/"), &ok, &["-a"]).assert_ok();
        assert_pulled_tree(&tree, &ok);
        let denied = pull_from(
            "127.0.0.3",
            &balancer.url("m/"),
            &dir.join(format!("{name}-denied")),
            &["-a"],
        );
        let direct = pull(
            direct_url,
            &dir.join(format!("{name}-direct")),
            &["-a"],
            Protocol::Default,
        );
        refusals.push((refusal(&denied), refusal(&direct)));
    }
    assert_eq!(
        refusals[0].0, refusals[1].0,
        "hosts deny: upserv, then rsyncd"
    );
    assert_eq!(refusals[0].1, refusals[1].1, "direct: upserv, then rsyncd");
    assert!(refusals[0].0 .1.iter().any(|l| l.contains("(127.0.0.3)")));
}

/// Bytes the kernel holds unread on the box's side of the connection from
/// loopback port `client_port` to `box_port` (from /proc/net/tcp).
fn unread_by_box(box_port: u16, client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{box_port:04X}");
    let remote = format!(":{client_port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
        if !l.ends_with(&local) || !r.ends_with(&remote) {
            return None;
        }
        u64::from_str_radix(queues.split(':').nth(1)?, 16).ok()
    })
}

/// Writes `parts` one by one, each only once the box has taken the one
/// before, then reads until the box closes.
fn talk_in_parts(box_port: u16, parts: &[&[u8]]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", box_port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let client_port = stream.local_addr().unwrap().port();
    for part in parts {
        wait_until("the box to take what came before", || {
            unread_by_box(box_port, client_port) == Some(0)
        });
        stream.write_all(part).unwrap();
    }
    stream.set_read_timeout(Some(WAIT_LIMIT)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

#[test]
fn the_gatekeeper_takes_a_header_in_pieces_and_not_a_byte_more() {
    let (_tree, module) = static_tree();
    let module = module.param("hosts deny", "10.1.2.3 2001:db8::7");
    let dir = scratch_dir("scale-pieces");
    let upserv = proxied_box(&[module], &dir, None, &[]);
    let mut v2 = V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 10, 1, 2, 3, 10, 0, 0, 1, 0xc8, 0x22, 3, 0x69,
    ]);
    // The header ends in the same write as the client's first lines.
    let mut tail = v2[20..].to_vec();
    tail.extend_from_slice(b"@RSYNCD: 29.0\nm\n");
    let answer = talk_in_parts(upserv.port(), &[&v2[..5], &v2[5..20], &tail]);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("@RSYNCD: "), "{answer}");
    assert!(
        answer.ends_with("@ERROR: access denied to m from UNDETERMINED (10.1.2.3)\n"),
        "{answer}"
    );
    let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 873\r\n@RSYNCD: 29.0\nm\n";
    let answer = talk_in_parts(upserv.port(), &[&v1[..9], &v1[9..30], &v1[30..]]);
    assert!(
        String::from_utf8_lossy(&answer)
            .ends_with("@ERROR: access denied to m from UNDETERMINED (2001:db8::7)\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn an_oversized_or_late_header_is_refused_without_a_word() {
    let (_tree, module) = static_tree();
    let dir = scratch_dir("scale-oversized");
    // A module timeout given globally shortens the handshake limit.
    let upserv = proxied_box(&[module], &dir, None, &[("timeout", "2")]);
    let long = format!("PROXY UNKNOWN {}", "x".repeat(200));
    assert!(talk_in_parts(upserv.port(), &[long.as_bytes()]).is_empty());
    let mut v2 = V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0x02, 0x01]);
    assert!(talk_in_parts(upserv.port(), &[&v2]).is_empty());
    assert!(talk_in_parts(upserv.port(), &[b"PROXY TCP4 10.1"]).is_empty());
    wait_until("three refusals in the log", || {
        let log = upserv.log();
        log.contains("version 1 line longer than 107 bytes")
            && log.contains("version 2 address block of 513 bytes, more than 512")
            && log.contains("failed: handshake took too long")
    });
}

#[test]
fn unknown_and_local_headers_keep_the_balancers_address_as_in_rsyncd() {
    let (_tree, module) = static_tree();
    let module = module.param("hosts deny", "127.0.0.1");
    let dir = scratch_dir("scale-local");
    let upserv = proxied_box(std::slice::from_ref(&module), &dir, None, &[]);
    let rsyncd = rsyncd_proxied(&[module]);
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    for header in [&b"PROXY UNKNOWN\r\n"[..], &local] {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"@RSYNCD: 29.0\nm\n");
        let answers: Vec<String> = [upserv.port(), rsyncd.port]
            .iter()
            .map(|&port| {
                let answer = talk_in_parts(port, &[&bytes]);
                // The greetings differ (protocol and digests); the rest not.
                let answer = String::from_utf8_lossy(&answer).into_owned();
                answer
                    .split_once('\n')
                    .map(|(_, rest)| rest.to_string())
                    .unwrap_or(answer)
            })
            .collect();
        assert_eq!(answers[0], answers[1], "upserv, then rsyncd");
        assert_eq!(
            answers[0],
            "@ERROR: access denied to m from UNDETERMINED (127.0.0.1)\n"
        );
    }
}

#[test]
fn haproxy_health_checks_are_not_logged_as_failures() {
    let (_tree, module) = static_tree();
    let dir = scratch_dir("scale-checks");
    let upserv = proxied_box(&[module], &dir, None, &[("log level", "debug")]);
    let _balancer = haproxy(&[upserv.port()], "send-proxy-v2 check inter 100ms");
    let mark = "127.0.0.1: health check (a PROXY header without a client, then nothing)";
    wait_until("three health checks in the log", || {
        upserv.log().matches(mark).count() >= 3
    });
    // The one failure allowed is the test's own readiness probe, which
    // HAProxy passes on with a header naming 127.0.0.1.
    let log = upserv.log();
    assert!(log.matches(": failed: ").count() <= 1, "{log}");
}
