#!/usr/bin/env python3
"""Scenario 8: what the access log costs. The image route (every filter)
and the pass-through route at full speed (64 connections, simulator at
0 ms), each through a gateway with the access log off and one writing it
to a file, in alternating rounds: requests/s and CPU µs per request side by
side. The goal (issue 20): the log on costs at most 5% of requests/s.

    .venv/bin/python3 benches/harness/access_log.py                       # updates section 8
    .venv/bin/python3 benches/harness/access_log.py --bin before=/tmp/a --bin after=target/release/kikaku-edge

With several `--bin`, every binary is measured in the same rounds (a
before/after comparison) and the table is printed, not written.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support as h  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- access-log:begin -->", "<!-- access-log:end -->"
ROUTES = ("image route", "pass-through")


def scenario(bins, tmp, procs, secs=10, n_rounds=3):
    """`bins`: name → binary. Returns {(name, route, "off"|"on"): row}."""
    sim = h.free_port()
    first = next(iter(bins.values()))
    procs.append(h.Proc([str(first), "sim-ark", "--listen", f"127.0.0.1:{sim}"]))
    h.wait_port(sim)
    targets = {}
    for name, bin_ in bins.items():
        for log in ("off", "on"):
            d = Path(tmp) / f"log-{name}-{log}"
            d.mkdir()
            pub, adm = h.free_port(), h.free_port()
            target = "off" if log == "off" else str(d / "access.log")
            gw = h.Proc([str(bin_), "serve", "-c", str(h.gateway_conf(d, pub, adm, sim, access_log=target))])
            procs.append(gw)
            h.wait_port(pub)
            targets[(name, log)] = (pub, gw)

    def measure(key):
        name, route, log = key
        pub, gw = targets[(name, log)]
        if route == "image route":
            run = lambda: h.oha(f"http://127.0.0.1:{pub}/v1/images/generations", secs, 64, h.BODY_GATEWAY,
                                [f"Authorization: Bearer {h.KEY}"])
        else:
            run = lambda: h.oha(f"http://127.0.0.1:{pub}/healthz", secs, 64, method="GET")
        return h.measured(gw, run)

    points = [(name, route, log) for route in ROUTES for name in bins for log in ("off", "on")]
    return h.rounds(points, n_rounds, measure)


def section(rows):
    """Section 8 of BENCHMARKS.md (or the comparison table)."""
    lines = ["## 8. The access log on and off (64 connections, simulator at 0 ms)", "",
             "The same build with `logging.access_log: off` and with it written to a file, in alternating "
             "rounds. Goal: the log on costs at most 5% of requests/s.", "",
             "| | route | log | requests/s | proxy CPU µs/request | p99 ms | on vs off: requests/s | CPU |",
             "|---|---|---|---|---|---|---|---|"]
    names = list(dict.fromkeys(k[0] for k in rows))
    for route in ROUTES:
        for name in names:
            off = rows.get((name, route, "off"))
            for log in ("off", "on"):
                r = rows.get((name, route, log))
                if not r:
                    continue
                cmp_rps = cmp_cpu = "—"
                if log == "on" and off and off["rps"]:
                    cmp_rps = f"{r['rps'] / off['rps'] - 1:+.1%}"
                    if "cpu_us" in r and "cpu_us" in off:
                        cmp_cpu = f"{r['cpu_us'] - off['cpu_us']:+.1f} µs"
                cpu = f"{r['cpu_us']:.1f}" if "cpu_us" in r else "—"
                lines.append(f"| {name} | {route} | {log} | {r['rps']:.0f} | {cpu} | {r['p99']:.2f} | "
                             f"{cmp_rps} | {cmp_cpu} |")
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", default=[],
                    help="NAME=PATH (repeatable); default the release build, as kikaku-edge")
    h.scenario_args(ap)
    args = ap.parse_args()
    bins = dict(b.split("=", 1) for b in args.bin) or {"kikaku-edge": str(h.BIN)}
    rows = h.run_scenario("kikaku-access-log-", scenario, bins, args)
    lines = section(rows)
    if len(bins) > 1:
        print("\n".join(lines))
        return
    block = h.write_section(args.out, MARK_BEGIN, MARK_END, lines, 8, "access_log.py", f", {args.rounds} rounds of {args.seconds} s")
    print("\n".join(block))


if __name__ == "__main__":
    main()
