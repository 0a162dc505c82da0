#!/usr/bin/env python3
"""Side-by-side performance of upserv and rsync --daemon, run by hand.

Owns: building (or taking) upserv, making a big random file and a basis with
scattered edits, starting both servers on the same directory, pulling from
each in turn with the real rsync client, and printing what each server
cost: wall time, server CPU time and peak memory per connection, absolute
and as upserv/rsyncd ratios. Each scenario runs once per client variant:
--protocol=29 and the client's default protocol (no --protocol, as laptops
pull), each without and with -z (zstd at its default level where both
sides negotiate compression names, zlib at 29); the negotiated protocol and
compression of each server are printed with the table.

Must not: judge the numbers (it reports, never fails on them), touch anything
outside its temporary directory, or end processes it did not start.

Until upserv serves, check the script end to end against a second rsyncd:

  benches/compare.py --size 64M --rounds 1 --upserv-cmd \\
    'rsync --daemon --no-detach --config={rsyncd_conf} --port={port} --address=127.0.0.1'

Placeholders in --upserv-cmd: {upserv_conf} {rsyncd_conf} {builds} {port}.
With {port} the script picks a free port and waits for a connection to
succeed; without it, it waits for the 'listening on 127.0.0.1:PORT' log line.
"""

import argparse
import json
import os
import random
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SEED = 20240601
# Scattered edits of this many bytes make up the changed 1% of the basis.
EDIT_LEN = 4096
CHANGED_FRACTION = 0.01
# How often memory is sampled while clients run.
SAMPLE_INTERVAL = 0.01
# Bounds on waiting for a server to come up and for its children to go.
STARTUP_TIMEOUT = 20.0
REAP_TIMEOUT = 30.0
POLL_INTERVAL = 0.01
# A pull taking longer than this is killed and reported.
PULL_TIMEOUT = 1800
CHUNK = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
# Client variants: the protocol asked for, and compression. "zstd" names
# zstd outright, so that both servers compress alike even at protocol 29.
PROTOCOL_CHOICES = {"29": ["--protocol=29"], "default": []}
COMPRESS_CHOICES = {"none": [], "z": ["-z"], "zstd": ["--compress-choice=zstd"]}
DEFAULT_COMPRESS = ["none", "z"]
# The client's options when a caller names none: the original scenarios.
DEFAULT_CLIENT_OPTS = ("--protocol=29",)
# What the client prints about a connection with --debug=proto,nstr.
NEGOTIATED = re.compile(r"Protocol versions: remote=\d+, negotiated=(\d+)")
COMPRESSION = re.compile(r"Client (?:negotiated )?compress: (.+)")
RSYNCD_GLOBALS = """use chroot = no
munge symlinks = no
numeric ids = no
uid = root
gid = root
read only = yes
reverse lookup = no
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse_size(text):
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    match = re.fullmatch(r"(\d+)([KMGT]?)i?B?", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 256M, 1G or bytes")
    return int(match.group(1)) * units[match.group(2)]


def choice_list(choices):
    """An argparse type: a comma-separated list of keys of `choices`."""

    def parse(text):
        picked = [c.strip() for c in text.split(",") if c.strip()]
        unknown = [c for c in picked if c not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(
                f"{text!r}: pick from {', '.join(choices)}, comma-separated"
            )
        return picked

    return parse


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--upserv", help="upserv binary (default: cargo build --release)")
    which.add_argument("--upserv-cmd", help="command template standing in for upserv")
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--protocols",
        type=choice_list(PROTOCOL_CHOICES),
        default=list(PROTOCOL_CHOICES),
        help="client protocols, comma-separated: 29, default (default: both)",
    )
    parser.add_argument(
        "--compress",
        type=choice_list(COMPRESS_CHOICES),
        default=DEFAULT_COMPRESS,
        help="compression, comma-separated: none, z, zstd (default: none,z)",
    )
    parser.add_argument(
        "--classroom",
        action="store_true",
        help="run the classroom scene instead: --laptops clients at once pull one build",
    )
    parser.add_argument("--laptops", type=int, default=30)
    return parser.parse_args()


# ---------------------------------------------------------------- the data


def make_data(workdir, size):
    """big.img (random) in the served directory, and basis.img beside it:
    the same bytes with CHANGED_FRACTION of them rewritten in EDIT_LEN runs."""
    served = os.path.join(workdir, "served")
    os.mkdir(served)
    source = os.path.join(served, "big.img")
    basis = os.path.join(workdir, "basis.img")
    rng = random.Random(SEED)
    log(f"writing {size} random bytes")
    with open(source, "wb") as out:
        remaining = size
        while remaining:
            n = min(CHUNK, remaining)
            out.write(rng.randbytes(n))
            remaining -= n
    shutil.copyfile(source, basis)
    edits = max(1, round(size * CHANGED_FRACTION / EDIT_LEN))
    with open(basis, "r+b") as out:
        for _ in range(edits):
            out.seek(rng.randrange(max(1, size - EDIT_LEN)))
            out.write(rng.randbytes(min(EDIT_LEN, size)))
    stat = os.stat(source)
    # Older than the source so that rsync's quick check does not skip it.
    os.utime(basis, (stat.st_atime, stat.st_mtime - 3600))
    log(f"basis: {edits} edits of {EDIT_LEN} bytes")
    return served, basis


def write_configs(workdir, served):
    rsyncd_conf = os.path.join(workdir, "rsyncd.conf")
    upserv_conf = os.path.join(workdir, "upserv.conf")
    module = f"\n[bench]\npath = {served}\n"
    with open(rsyncd_conf, "w") as out:
        out.write(RSYNCD_GLOBALS)
        out.write(f"log file = {os.path.join(workdir, 'rsyncd.log')}\n")
        out.write(f"lock file = {os.path.join(workdir, 'rsyncd.lock')}\n")
        out.write(module)
    with open(upserv_conf, "w") as out:
        out.write(module)
    builds = os.path.join(workdir, "builds")
    os.mkdir(builds)
    return {"rsyncd_conf": rsyncd_conf, "upserv_conf": upserv_conf, "builds": builds}


# ---------------------------------------------------------------- servers


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process in its own process group; stderr is drained into
    a list by a thread, and the first 'listening on' port is recorded."""

    def __init__(self, name, argv, port=None):
        self.name = name
        self.argv = argv
        self.lines = []
        self.listening = threading.Event()
        self.port = port
        # Resident memory before the first connection, the base of upserv's
        # per-connection figure (its allocator keeps freed memory, so the
        # RSS before a later round already holds earlier connections').
        self.fresh_idle_kib = None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        if port is None:
            self._await_log_line()
        else:
            self._await_connection()

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            match = LISTENING.search(line)
            if match and self.port is None:
                self.port = int(match.group(1))
                self.listening.set()

    def _await_log_line(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.listening.wait(POLL_INTERVAL):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail("never logged 'listening on 127.0.0.1:PORT'")

    def _await_connection(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail(f"never accepted a connection on port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    if conn.recv(64).startswith(b"@RSYNCD:"):
                        return
            except OSError:
                time.sleep(POLL_INTERVAL)

    def fail(self, why):
        code = self.proc.poll()
        state = f"exited with {code}" if code is not None else "still running"
        self.stop()
        log(f"{self.name}: {why} ({state})\ncommand: {shlex.join(self.argv)}")
        log("stderr:\n" + "".join(self.lines[-20:]))
        # SystemExit unwinds through main's cleanup of servers and files.
        sys.exit(1)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait()


def upserv_argv(args):
    if args.upserv_cmd:
        return args.upserv_cmd, "{port}" in args.upserv_cmd
    binary = args.upserv or build_upserv()
    template = (
        f"{shlex.quote(binary)} daemon --config {{upserv_conf}} "
        "--listen 127.0.0.1:0 --builds {builds}"
    )
    return template, False


def build_upserv():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log("building upserv (release)")
    subprocess.run(["cargo", "build", "--release", "--bin", "upserv"], cwd=root, check=True)
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release", "upserv")


def start_servers(args, paths, started):
    """Starts upserv, then rsyncd, appending each to `started` as soon as it
    runs so that the caller stops it even when the other fails to start."""
    template, wants_port = upserv_argv(args)
    port = free_port() if wants_port else None
    argv = shlex.split(template.format(port=port, **paths))
    started.append(Server("upserv", argv, port))
    rsyncd_port = free_port()
    started.append(Server(
        "rsyncd",
        [
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={paths['rsyncd_conf']}",
            f"--port={rsyncd_port}",
            "--address=127.0.0.1",
        ],
        rsyncd_port,
    ))
    return started


# ---------------------------------------------------------------- /proc


def proc_stat(pid):
    """(utime+stime, cutime+cstime) of pid in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    own = (int(rest[11]) + int(rest[12])) / CLOCK_TICKS
    reaped = (int(rest[13]) + int(rest[14])) / CLOCK_TICKS
    return own, reaped


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root):
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def await_no_children(server):
    deadline = time.monotonic() + REAP_TIMEOUT
    while descendants(server.proc.pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)


class MemorySampler:
    """Samples, until stopped: the peak summed RSS of the server and its
    descendants, and the peak VmHWM of any one descendant."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_total_kib = 0
        self.peak_child_hwm_kib = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            children = descendants(self.pid)
            total = status_kib(self.pid, "VmRSS")
            for child in children:
                total += status_kib(child, "VmRSS")
                self.peak_child_hwm_kib = max(self.peak_child_hwm_kib, status_kib(child, "VmHWM"))
            self.peak_total_kib = max(self.peak_total_kib, total)
            self.done.wait(SAMPLE_INTERVAL)

    def stop(self):
        self.done.set()
        self.thread.join()


def group_rss_kib(pid):
    return status_kib(pid, "VmRSS") + sum(status_kib(c, "VmRSS") for c in descendants(pid))


# ---------------------------------------------------------------- one round


def prepare_dests(workdir, label, clients, basis):
    dests = []
    for i in range(clients):
        dest = os.path.join(workdir, "pulls", label, f"client-{i}")
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        if basis:
            # The receiver writes a new file and renames it over this link,
            # so the shared basis is never modified.
            os.link(basis, os.path.join(dest, "big.img"))
        dests.append(dest)
    # Earlier pulls' dirty pages would otherwise be written back while this
    # one is timed, charging one server for the other's output.
    os.sync()
    return dests


def run_clients(port, dests, client_opts=DEFAULT_CLIENT_OPTS, module="bench"):
    url = f"rsync://127.0.0.1:{port}/{module}/"
    procs = [
        subprocess.Popen(
            ["rsync", "-a", *client_opts, url, dest + "/"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for dest in dests
    ]
    failures = []
    for proc, dest in zip(procs, dests):
        try:
            _, err = proc.communicate(timeout=PULL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"{dest}: exit {proc.returncode}: {err.decode(errors='replace')}")
    return failures


def measure(server, is_rsyncd, dests, source_size, run=run_clients):
    """One scenario round against one server: wall seconds, server CPU
    seconds, peak memory per connection in KiB, the peak resident memory
    of the whole server (daemon and all its processes) in KiB, and any
    failures. `run(port, dests)` runs the clients."""
    await_no_children(server)
    pid = server.proc.pid
    own_before, reaped_before = proc_stat(pid)
    if server.fresh_idle_kib is None:
        server.fresh_idle_kib = group_rss_kib(pid)
    if not is_rsyncd:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    sampler = MemorySampler(pid)
    started = time.monotonic()
    failures = run(server.port, dests)
    wall = time.monotonic() - started
    await_no_children(server)
    sampler.stop()
    own_after, reaped_after = proc_stat(pid)
    cpu = (own_after - own_before) + (reaped_after - reaped_before)
    if is_rsyncd:
        per_conn = sampler.peak_child_hwm_kib
        total = sampler.peak_total_kib
    else:
        total = max(sampler.peak_total_kib, status_kib(pid, "VmHWM"))
        per_conn = max(0, total - server.fresh_idle_kib) / len(dests)
    for dest in dests:
        pulled = os.path.join(dest, "big.img")
        if not os.path.exists(pulled) or os.path.getsize(pulled) != source_size:
            failures.append(f"{pulled}: missing or wrong size")
    return wall, cpu, per_conn, total, failures


# ---------------------------------------------------------------- report


def fmt(value, unit):
    if value is None:
        return "-"
    if unit == "MiB":
        return f"{value / 1024:.1f}"
    return f"{value:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def print_table(results, args, upserv_argv_text, notes=()):
    print()
    print(f"upserv: {upserv_argv_text}")
    print(
        f"file: {args.size} bytes random, basis: {CHANGED_FRACTION:.0%} rewritten in "
        f"{EDIT_LEN}-byte runs; median of {args.rounds} round(s)"
    )
    for note in notes:
        print(note)
    header = f"{'scenario':<34}{'metric':<26}{'upserv':>10}{'rsyncd':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    metrics = [
        ("wall time (s)", 0, "s"),
        ("server CPU (s)", 1, "s"),
        ("peak mem/conn (MiB)", 2, "MiB"),
        ("peak server RSS (MiB)", 3, "MiB"),
    ]
    for scenario, per_server in results.items():
        for i, (name, index, unit) in enumerate(metrics):
            u = median_of(per_server["upserv"], index)
            r = median_of(per_server["rsyncd"], index)
            label = scenario if i == 0 else ""
            print(f"{label:<34}{name:<26}{fmt(u, unit):>10}{fmt(r, unit):>10}{ratio(u, r):>8}")
    print()


def median_of(rounds, index):
    values = [r[index] for r in rounds]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- main


def main():
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="upserv-compare-")
    log(f"working in {workdir}")
    servers = []
    try:
        served, basis = make_data(workdir, args.size)
        paths = write_configs(workdir, served)
        if args.classroom:
            basis = make_classroom_build(workdir, paths, served, basis)
        upserv, rsyncd = start_servers(args, paths, servers)
        log(f"upserv on port {upserv.port}, rsyncd on port {rsyncd.port}")
        if args.classroom:
            results, notes = run_classroom(args, workdir, basis, upserv, rsyncd), ()
        else:
            results, notes = run_variants(args, workdir, basis, upserv, rsyncd)
        print_table(results, args, shlex.join(upserv.argv), notes)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def client_variants(args):
    """(label, client options) for each protocol and compression asked for."""
    variants = []
    for protocol in args.protocols:
        for compress in args.compress:
            label = f"p{protocol}" + {"none": "", "z": " -z"}.get(compress, f" {compress}")
            variants.append((label, PROTOCOL_CHOICES[protocol] + COMPRESS_CHOICES[compress]))
    return variants


def negotiated(server, client_opts):
    """What a client with `client_opts` and this server settle on: the
    protocol and compression, as the client reports them."""
    probe = subprocess.run(
        ["rsync", "-a", *client_opts, "--debug=proto,nstr", "--list-only",
         f"rsync://127.0.0.1:{server.port}/bench/"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=PULL_TIMEOUT,
    )
    text = (probe.stdout + probe.stderr).decode(errors="replace")
    protocol = NEGOTIATED.search(text)
    compression = COMPRESSION.search(text)
    return (
        f"protocol {protocol.group(1) if protocol else '?'}, "
        f"compression {compression.group(1).strip() if compression else 'none'}"
    )


def run_variants(args, workdir, basis, upserv, rsyncd):
    """Every scenario under every client variant; returns the results by
    scenario name (the variant's label leading) and one note per variant
    saying what each server negotiated."""
    results, notes = {}, []
    for label, client_opts in client_variants(args):
        opts_text = " ".join(client_opts) or "(no --protocol)"
        notes.append(
            f"{label}: rsync -a {opts_text}: upserv {negotiated(upserv, client_opts)}; "
            f"rsyncd {negotiated(rsyncd, client_opts)}"
        )
        results.update(run_scenarios(args, workdir, basis, upserv, rsyncd, client_opts, label))
    return results, notes


def run_scenarios(args, workdir, basis, upserv, rsyncd, client_opts=DEFAULT_CLIENT_OPTS, tag=""):
    prefix = f"{tag}: " if tag else ""
    scenarios = [
        (f"{prefix}full, 1 client", 1, None),
        (f"{prefix}full, {args.clients} clients", args.clients, None),
        (f"{prefix}1% delta, 1 client", 1, basis),
        (f"{prefix}1% delta, {args.clients} clients", args.clients, basis),
    ]
    results = {}
    for name, clients, scenario_basis in scenarios:

        def run(port, dests, client_opts=client_opts):
            return run_clients(port, dests, client_opts)

        def dests_for(server, clients=clients, scenario_basis=scenario_basis):
            return prepare_dests(workdir, server.name, clients, scenario_basis)

        results[name] = alternate_rounds(args, name, upserv, rsyncd, dests_for, run)
    return results


def alternate_rounds(args, name, upserv, rsyncd, dests_for, run=run_clients):
    """args.rounds rounds of one scenario, each server in turn with the
    destinations dests_for(server) gives; who goes first alternates so that
    cache warmth favours neither."""
    per_server = {"upserv": [], "rsyncd": []}
    for round_no in range(args.rounds):
        order = [(upserv, False), (rsyncd, True)]
        if round_no % 2:
            order.reverse()
        for server, is_rsyncd in order:
            dests = dests_for(server)
            wall, cpu, mem, total, failures = measure(server, is_rsyncd, dests, args.size, run)
            for failure in failures:
                log(f"WARNING {name}, {server.name}: {failure}")
            per_server[server.name].append((wall, cpu, mem, total))
            log(
                f"{name}, round {round_no + 1}, {server.name}: "
                f"{wall:.2f}s wall, {cpu:.2f}s CPU"
            )
    return per_server


# ---------------------------------------------------------------- classroom

# The classroom scene: a class of laptops holding the previous build pulls
# the new one at once. upserv serves it as a build (where identical
# requests share one delta); rsyncd serves the same directory as a module.
CLASSROOM_BUILD = "classroom-2"
SMALL_FILES = 300
SMALL_FILE_MAX = 16 << 10
# One small file in this many differs in the previous build.
SMALL_CHANGED_EVERY = 10


def make_classroom_build(workdir, paths, served, basis):
    """The build in the builds dir: big.img plus SMALL_FILES small files
    (rsyncd's module names the same directory), and the previous build
    beside it: basis.img for big.img and every tenth small file changed.
    Returns the previous build's directory."""
    rng = random.Random(SEED + 1)
    build = os.path.join(paths["builds"], CLASSROOM_BUILD)
    os.rename(served, build)
    old = os.path.join(workdir, "previous-build")
    os.mkdir(old)
    os.rename(basis, os.path.join(old, "big.img"))
    for i in range(SMALL_FILES):
        name = os.path.join("doc", f"{i % 10}", f"file-{i}.txt")
        data = rng.randbytes(rng.randrange(100, SMALL_FILE_MAX))
        for root in (build, old):
            os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(build, name), "wb") as out:
            out.write(data)
        if i % SMALL_CHANGED_EVERY == 0:
            data = data[: len(data) // 2] + rng.randbytes(64) + data[len(data) // 2 + 64 :]
        with open(os.path.join(old, name), "wb") as out:
            out.write(data)
        # The previous build is older: rsync's quick check asks for every
        # file it changed.
        stat = os.stat(os.path.join(build, name))
        if i % SMALL_CHANGED_EVERY == 0:
            os.utime(os.path.join(old, name), (stat.st_atime, stat.st_mtime - 3600))
        else:
            os.utime(os.path.join(old, name), (stat.st_atime, stat.st_mtime))
    with open(paths["rsyncd_conf"], "a") as out:
        out.write(f"\n[{CLASSROOM_BUILD}]\npath = {build}\n")
    return old


def classroom_dests(workdir, label, laptops, old):
    """Each laptop holds the previous build, hard-linked (the receiver
    renames new files over the links, so the previous build stays)."""
    dests = []
    for i in range(laptops):
        dest = os.path.join(workdir, "pulls", label, f"laptop-{i}")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(old, dest, copy_function=os.link)
        dests.append(dest)
    os.sync()
    return dests


def run_classroom(args, workdir, old, upserv, rsyncd):
    """The class at protocol 29 and at the client's default, each server
    in turn, every laptop started at once."""
    results = {}
    for label, protocol_args in (("29", ("--protocol=29",)), ("default", ())):
        name = f"classroom {args.laptops}, {label}"

        def run(port, dests, protocol_args=protocol_args):
            return run_clients(port, dests, protocol_args, CLASSROOM_BUILD)

        def dests_for(server):
            return classroom_dests(workdir, server.name, args.laptops, old)

        results[name] = alternate_rounds(args, name, upserv, rsyncd, dests_for, run)
    return results


if __name__ == "__main__":
    main()
