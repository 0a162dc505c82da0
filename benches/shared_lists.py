#!/usr/bin/env python3
"""A classroom's file lists: one tree served by one `upserv daemon` both as a
static module (each connection builds its own list) and as a build (the
connections share one list per list shape), run by hand.

Owns: making a tree of many small files, a builds dir holding it and a
configuration whose static module is the same tree, starting one daemon per
run, pulling with N real rsync clients at once as dry runs (`-n -a`, with
and without `-c`: the list dominates, `-c` reads every file for its sum)
and printing, per run, the daemon's CPU seconds (user + system, from
/proc), its peak resident set (VmHWM) and the wall time.

Must not: judge the numbers (it reports, never fails), touch anything
outside its temporary directory, or end processes it did not start.

  benches/shared_lists.py --upserv target/debug/upserv --clients 30
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

DIRS = 200
FILES = 100
FILE_LEN = 4096


def make_tree(root):
    block = os.urandom(FILE_LEN)
    for d in range(DIRS):
        path = os.path.join(root, f"g{d // 20:02}", f"d{d:03}")
        os.makedirs(path, exist_ok=True)
        for f in range(FILES):
            with open(os.path.join(path, f"file-{f:03}.txt"), "wb") as out:
                out.write(bytes([f]) + block[1:])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        kib = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    return kib / 1024


def start_daemon(upserv, conf, builds, log):
    proc = subprocess.Popen(
        [upserv, "daemon", "--config", conf, "--builds", builds,
         "--listen", "127.0.0.1:0", "--workers", "64"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.time() + 30
    while time.time() < deadline:
        text = open(log).read()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        if m:
            return proc, int(m.group(1))
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"the daemon did not start:\n{open(log).read()}")


def run(args, tmp, conf, builds, module, opts):
    log = os.path.join(tmp, f"daemon-{module}-{len(opts)}.log")
    proc, port = start_daemon(args.upserv, conf, builds, log)
    try:
        # One file first, so the module is opened before the class comes;
        # the class's lists are built while it pulls.
        url = f"rsync://127.0.0.1:{port}/{module}/"
        subprocess.run([args.rsync, "-n", "-a", "--no-motd",
                        url + "g00/d000/file-000.txt", os.path.join(tmp, "warm")],
                       check=True, stdout=subprocess.DEVNULL)
        before = cpu_seconds(proc.pid)
        started = time.time()
        pulls = [subprocess.Popen([args.rsync, "-n", "-a", "--no-motd", *opts, url,
                                   os.path.join(tmp, f"dest-{i}")],
                                  stdout=subprocess.DEVNULL)
                 for i in range(args.clients)]
        codes = [p.wait() for p in pulls]
        wall = time.time() - started
        cpu = cpu_seconds(proc.pid) - before
        peak = peak_rss_mib(proc.pid)
        if any(codes):
            print(f"  (exit codes {codes})")
        return cpu, peak, wall
    finally:
        proc.terminate()
        proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upserv", default="target/debug/upserv")
    p.add_argument("--rsync", default="rsync")
    p.add_argument("--clients", type=int, default=30)
    args = p.parse_args()
    args.upserv = os.path.abspath(args.upserv)
    with tempfile.TemporaryDirectory(prefix="upserv-shared-lists-") as tmp:
        builds = os.path.join(tmp, "builds")
        tree = os.path.join(builds, "b")
        make_tree(tree)
        conf = os.path.join(tmp, "upserv.conf")
        with open(conf, "w") as f:
            f.write(f"[s]\npath = {tree}\n")
        print(f"{DIRS * FILES} files of {FILE_LEN} bytes in {DIRS} directories, "
              f"{args.clients} clients at once, dry runs")
        print(f"{'pull':<38} {'daemon CPU s':>12} {'peak RSS MiB':>13} {'wall s':>8}")
        for opts in ([], ["-c"], ["--no-inc-recursive"]):
            for module, what in (("s", "static (own lists)"), ("b", "build (shared)")):
                cpu, peak, wall = run(args, tmp, conf, builds, module, opts)
                label = f"{what} {' '.join(opts)}"
                print(f"{label:<38} {cpu:>12.2f} {peak:>13.1f} {wall:>8.2f}")


if __name__ == "__main__":
    main()
