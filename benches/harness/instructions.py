#!/usr/bin/env python3
"""Instructions per request of the gateway under callgrind: a figure that
repeats run after run on this noisy shared machine, for judging a change to
the request path (BENCHMARKS.md, "Profile").

    .venv/bin/python3 benches/harness/instructions.py image      # the image route
    .venv/bin/python3 benches/harness/instructions.py pass       # the pass-through route

Starts the simulator (natively) and the release gateway under
`valgrind --tool=callgrind` on the harness's gateway config with one thread,
sends 300 warm-up requests, zeroes the counters, sends N (default 2,000) with
oha over 8 connections, and dumps. Prints instructions per request and leaves
the profile in target/callgrind.<route>.out* for `callgrind_annotate`.
`--endpoints N` puts N simulators in the pool, `--pool YAML` adds settings
to it (`--pool '{balance: least_conn}'`).
Counts user-space instructions only: system calls, and the kernel's share of
each, are not in it (use the harness's CPU µs/request for those), and a
`rep movsb` copy counts one instruction per byte.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("route", choices=["image", "pass"])
    ap.add_argument("-n", type=int, default=2000, help="requests counted")
    ap.add_argument("--bin", default=str(support.BIN))
    ap.add_argument("--endpoints", type=int, default=1, help="simulators in the upstream pool")
    ap.add_argument("--pool", default="{}", help="YAML settings added to the pool (e.g. '{balance: least_conn}')")
    args = ap.parse_args()
    out = support.ROOT / "target" / f"callgrind.{args.route}.out"
    for f in glob.glob(f"{out}*"):
        os.remove(f)
    tmp = tempfile.mkdtemp(prefix="kikaku-callgrind-")
    procs = []
    try:
        sims = [support.free_port() for _ in range(args.endpoints)]
        for sim in sims:
            procs.append(support.Proc([args.bin, "sim-ark", "--listen", f"127.0.0.1:{sim}"]))
            support.wait_port(sim)
        sim = sims[0]
        pub, adm = support.free_port(), support.free_port()
        d = Path(tmp) / "gw"
        d.mkdir()
        conf = support.gateway_conf(d, pub, adm, sim)
        cfg = yaml.safe_load(conf.read_text())
        cfg["server"] = {"threads": 1}
        cfg["upstreams"]["ark"]["endpoints"] = [{"address": f"127.0.0.1:{p}"} for p in sims]
        cfg["upstreams"]["ark"].update(yaml.safe_load(args.pool))
        conf.write_text(yaml.safe_dump(cfg))
        gw = support.Proc(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                       args.bin, "serve", "-c", str(conf)])
        procs.append(gw)
        support.wait_port(pub, timeout=120)
        if args.route == "pass":
            target = ["-m", "GET", f"http://127.0.0.1:{pub}/healthz"]
        else:
            target = ["-m", "POST", "-d", support.BODY_GATEWAY, "-T", "application/json",
                      "-H", f"Authorization: Bearer {support.KEY}",
                      f"http://127.0.0.1:{pub}/v1/images/generations"]

        def load(n):
            r = subprocess.run(["oha", "--no-tui", "-n", str(n), "-c", "8"] + target,
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"oha failed: {r.stderr[-300:]}")

        load(300)
        time.sleep(1)
        subprocess.run(["callgrind_control", "-z", str(gw.p.pid)], capture_output=True, check=True)
        load(args.n)
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "-d", str(gw.p.pid)], capture_output=True, check=True)
        time.sleep(2)
    finally:
        for p in reversed(procs):
            p.stop()
    dumps = [f for f in glob.glob(f"{out}.*") if re.search(r"\.\d+$", f)]
    if not dumps:
        sys.exit("callgrind wrote no dump")
    dump = max(dumps, key=os.path.getmtime)
    summary = next(l for l in open(dump) if l.startswith("summary:"))
    total = int(summary.split()[1])
    print(f"{args.route}: {total / args.n:,.0f} instructions/request ({dump})")


if __name__ == "__main__":
    main()
