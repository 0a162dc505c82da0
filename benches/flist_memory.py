#!/usr/bin/env python3
"""Peak memory of one connection's file list: upserv against rsyncd, run by hand.

Owns: making a tree of many small entries (or taking one given with --tree),
serving it from `upserv serve` and from `rsync --daemon`, each started for
one connection over the client's remote-shell pipe (`rsync -e`), pulling it
with the real rsync client as a dry run (`-n -a`, so the list dominates)
and printing each server's peak resident set (the maximum resident set /usr/bin/time
reports for the server process) and wall time, once with incremental recursion and once
without (`--no-inc-recursive`).

Must not: judge the numbers (it reports, never fails), touch anything
outside its temporary directory (except reading --tree), or end processes
it did not start.

  benches/flist_memory.py                     # a generated tree of 137k entries
  benches/flist_memory.py --tree /usr --upserv target/release/upserv
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time

# The generated tree: DIRS directories of FILES files each, three deep.
DIRS = 1370
FILES = 99


def make_tree(root):
    for d in range(DIRS):
        path = os.path.join(root, f"g{d // 100:02}", f"h{d % 100:02}", f"d{d}")
        os.makedirs(path, exist_ok=True)
        for f in range(FILES):
            with open(os.path.join(path, f"file-{f:03}.txt"), "w") as out:
                out.write("x")


# The client's remote shell runs this with "HOST rsync --server --daemon ."
# after our arguments: it drops those and runs the server under
# /usr/bin/time, which writes the server's peak RSS (KiB) to the report.
WRAPPER = """#!/bin/sh
report=$1; shift
n=0
for a in "$@"; do [ "$a" = "--" ] && break; n=$((n + 1)); done
set -- "$@"
args=""
i=0
for a in "$@"; do
  [ $i -ge $n ] && break
  args="$args '$a'"
  i=$((i + 1))
done
eval exec /usr/bin/time -o "$report" -f %M $args
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="serve this directory instead of a generated one")
    parser.add_argument("--upserv", default="target/release/upserv")
    parser.add_argument("--rsync", default="rsync")
    args = parser.parse_args()
    upserv = os.path.abspath(args.upserv)
    with tempfile.TemporaryDirectory(prefix="upserv-flist-mem-") as work:
        tree = args.tree
        if tree is None:
            tree = os.path.join(work, "tree")
            print(f"making {DIRS * (FILES + 1)} entries in {tree}", file=sys.stderr)
            make_tree(tree)
        conf = os.path.join(work, "rsyncd.conf")
        with open(conf, "w") as out:
            out.write("use chroot = no\nnumeric ids = no\nuid = root\ngid = root\n")
            out.write(f"log file = {work}/log\n[m]\npath = {tree}\nread only = yes\n")
        wrapper = os.path.join(work, "peak")
        with open(wrapper, "w") as out:
            out.write(WRAPPER)
        os.chmod(wrapper, 0o755)
        servers = {
            "rsyncd": [args.rsync, "--server", "--daemon", f"--config={conf}", "."],
            "upserv": [upserv, "serve", "--config", conf, "--builds", work],
        }
        print(f"{'server':8} {'recursion':12} {'peak RSS':>10} {'wall':>7}")
        for recursion, extra in [("incremental", []), ("whole list", ["--no-inc-recursive"])]:
            for name, argv in servers.items():
                report = os.path.join(work, f"{name}.peak")
                if os.path.exists(report):
                    os.remove(report)
                # The remote shell gets "HOST rsync --server --daemon ."; the
                # wrapper ignores it and runs the server after "--".
                shell = " ".join(shlex.quote(a) for a in [wrapper, report, *argv, "--"])
                dest = os.path.join(work, "dest")
                started = time.monotonic()
                done = subprocess.run(
                    [args.rsync, "-n", "-a", *extra, "-e", shell, "localhost::m/", dest],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                wall = time.monotonic() - started
                if done.returncode != 0:
                    print(f"{name}: exit {done.returncode}: {done.stderr.strip()}", file=sys.stderr)
                    continue
                with open(report) as f:
                    peak = int(f.read().split()[-1])
                print(f"{name:8} {recursion:12} {peak / 1024:8.1f} MiB {wall:6.2f}s")


if __name__ == "__main__":
    main()
