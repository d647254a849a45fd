#!/usr/bin/env python3
"""Scenario 10: Pingora's own knobs, on the bare baseline and on
kikaku-edge. Pass-through (`GET /healthz` of the simulator, 64
connections, 2 threads each) with each knob alone against the default,
in alternating rounds: CPU µs per request, requests/s, and the proxy's RSS
after 1,000 idle keep-alive connections.

- `steal=false`: one runtime per thread instead of the shared
  work-stealing one (kikaku-edge: `server.work_stealing: false`);
- `reuseport=true`: one single-threaded service per thread, each with its
  own `SO_REUSEPORT` listening socket (nginx's workers' model; kikaku-edge's
  default since this scenario, `server.reuse_port`);
- `pool=1024`: the upstream keep-alive pool eight times its default (128);
- mimalloc with kikaku-edge's settings (`src/alloc.rs`: purge at once, no
  eager arena commit) on the baseline, through mimalloc's environment.

Pingora's h1 buffers are constants of the crate (4 KiB header reads,
64 KiB body reads), not knobs: their one lever, the L4 read buffer, is
recorded in BENCHMARKS.md's sixth pass.

    .venv/bin/python3 benches/harness/knobs.py     # updates section 10 of BENCHMARKS.md
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import connections  # noqa: E402
import support as h  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- knobs:begin -->", "<!-- knobs:end -->"
MIMALLOC_AS_KIKAKU = {"MIMALLOC_PURGE_DELAY": "0", "MIMALLOC_ARENA_EAGER_COMMIT": "0"}
# (target, knob) → how the proxy is started: baseline arguments or gateway settings.
VARIANTS = [
    ("bare Pingora", "default"),
    ("bare Pingora", "steal=false"),
    ("bare Pingora", "reuseport=true"),
    ("bare Pingora", "pool=1024"),
    ("bare Pingora", "mimalloc as kikaku-edge"),
    ("kikaku-edge", "default"),
    ("kikaku-edge", "reuse_port=false"),
    ("kikaku-edge", "reuse_port=false, steal=false"),
]


def start(bin_, target, knob, sim, tmp, procs, threads=2):
    port = h.free_port()
    if target == "bare Pingora":
        args = [str(bin_.parent / "pingora-baseline"), f"127.0.0.1:{port}", f"127.0.0.1:{sim}", str(threads)]
        env = None
        if knob == "mimalloc as kikaku-edge":
            env = {**os.environ, **MIMALLOC_AS_KIKAKU}
        elif knob != "default":
            args.append(knob)
        proc = h.Proc(args, env=env)
    else:
        d = Path(tmp) / f"gw-{knob.replace('=', '-').replace(', ', '-')}"
        d.mkdir()
        conf = h.gateway_conf(d, port, h.free_port(), sim, threads=threads)
        if knob != "default":
            cfg = yaml.safe_load(conf.read_text())
            cfg.setdefault("server", {})["reuse_port"] = False
            cfg["server"]["work_stealing"] = "steal=false" not in knob
            conf.write_text(yaml.safe_dump(cfg, sort_keys=False))
        proc = h.Proc([str(bin_), "serve", "-c", str(conf)])
    procs.append(proc)
    h.wait_port(port)
    return port, proc


def scenario(bin_, tmp, procs, secs=5, n_rounds=3, idle_conns=1000):
    """`bin_`: kikaku-edge (pingora-baseline beside it). Returns {(target, knob): row}."""
    sim = h.free_port()
    procs.append(h.Proc([str(bin_), "sim-ark", "--listen", f"127.0.0.1:{sim}"]))
    h.wait_port(sim)
    targets = {v: start(bin_, *v, sim, tmp, procs) for v in VARIANTS}

    def measure(key):
        port, proc = targets[key]
        return h.measured(proc, lambda: h.oha(f"http://127.0.0.1:{port}/healthz", secs, 64, method="GET"))

    rows = h.rounds(VARIANTS, n_rounds, measure)
    for key, (port, proc) in targets.items():
        rows[key]["idle_kib"] = connections.idle_cost(proc, port, idle_conns)["per"]
    return rows


def section(rows, idle_conns):
    lines = ["## 10. Pingora's knobs (pass-through, 64 connections, 2 threads each)", "",
             "Each knob alone against the same target's default, in alternating rounds; "
             f"memory is the RSS added by {idle_conns:,} idle keep-alive connections.", "",
             "| target | knob | requests/s | CPU µs/request | vs default | p99 ms | KiB per idle connection |",
             "|---|---|---|---|---|---|---|"]
    for target, knob in VARIANTS:
        r = rows.get((target, knob))
        if not r:
            continue
        base = rows.get((target, "default"), {})
        vs = "—"
        if knob != "default" and "cpu_us" in r and "cpu_us" in base:
            vs = f"{r['cpu_us'] / base['cpu_us']:.2f}×"
        cpu = f"{r['cpu_us']:.1f}" if "cpu_us" in r else "—"
        lines.append(f"| {target} | {knob} | {r['rps']:.0f} | {cpu} | {vs} | {r['p99']:.2f} | "
                     f"{r.get('idle_kib', 0):.1f} |")
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="1 s, 1 round, 50 connections; print only")
    ap.add_argument("--bin", help="the kikaku-edge binary (pingora-baseline beside it)")
    ap.add_argument("--out", default=str(h.ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    bin_ = Path(args.bin).resolve() if args.bin else h.BIN
    if args.smoke:
        args.seconds, args.rounds, args.idle = 1, 1, 50
    tmp = tempfile.mkdtemp(prefix="kikaku-knobs-")
    procs = []
    try:
        rows = scenario(bin_, tmp, procs, args.seconds, args.rounds, args.idle)
    finally:
        for p in reversed(procs):
            p.stop()
    lines = section(rows, args.idle)
    if args.smoke:
        print("\n".join(lines))
        failed = sum(r["errors"] for r in rows.values())
        if failed or len(rows) != len(VARIANTS):
            sys.exit(f"knobs smoke: {failed} failed requests, {len(rows)} of {len(VARIANTS)} variants")
        return
    block = h.write_section(args.out, MARK_BEGIN, MARK_END, lines, 10, "knobs.py",
                            f", {args.rounds} rounds of {args.seconds} s")
    print("\n".join(block))


if __name__ == "__main__":
    main()
