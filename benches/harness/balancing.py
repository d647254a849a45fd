#!/usr/bin/env python3
"""Scenario 11: what each `balance` costs. A pass-through route (GET
/healthz) to a pool of four simulators, 64 connections, one gateway per
algorithm, in alternating rounds: requests/s and the gateway's CPU µs per
request, against round robin.

    .venv/bin/python3 benches/harness/balancing.py                  # updates section 11
    .venv/bin/python3 benches/harness/balancing.py --bin before=/tmp/old-kikaku-edge

With `--bin NAME=PATH`, that binary is measured too, with its default
balancing (a before/after comparison of round robin).
"""

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support as h  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- balancing:begin -->", "<!-- balancing:end -->"
ENDPOINTS = 4

# name → the pool's settings.
POOLS = {
    "round_robin": {},
    "random": {"balance": "random"},
    "least_conn": {"balance": "least_conn"},
    "peak_ewma": {"balance": "peak_ewma"},
    "consistent_hash (client_ip)": {"balance": "consistent_hash", "hash_on": "client_ip"},
    "consistent_hash (header)": {"balance": "consistent_hash", "hash_on": {"header": "x-user"}},
    "round_robin, no retries or ejection": {"retry": {"retries": 0}, "outlier": {"enabled": False}},
}


def conf(dir_, public, admin, sims, pool):
    """The pass-through route of gateway_conf, to a pool of `sims`."""
    path = h.gateway_conf(dir_, public, admin, sims[0])
    cfg = yaml.safe_load(path.read_text())
    cfg["upstreams"]["ark"]["endpoints"] = [{"address": f"127.0.0.1:{p}"} for p in sims]
    cfg["upstreams"]["ark"].update(pool)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def scenario(bins, tmp, procs, secs=10, n_rounds=3):
    """Returns {name: row} for every pool and every extra binary."""
    sims = [h.free_port() for _ in range(ENDPOINTS)]
    for p in sims:
        procs.append(h.Proc([str(h.BIN), "sim-ark", "--listen", f"127.0.0.1:{p}"]))
        h.wait_port(p)
    targets = {}
    runs = [(name, str(h.BIN), pool) for name, pool in POOLS.items()]
    runs += [(f"{name} (its round_robin)", path, {}) for name, path in bins.items()]
    for i, (name, bin_, pool) in enumerate(runs):
        d = Path(tmp) / f"pool-{i}"
        d.mkdir()
        pub, adm = h.free_port(), h.free_port()
        gw = h.Proc([bin_, "serve", "-c", str(conf(d, pub, adm, sims, pool))])
        procs.append(gw)
        h.wait_port(pub)
        targets[name] = (pub, gw)

    def measure(name):
        pub, gw = targets[name]
        return h.measured(gw, lambda: h.oha(f"http://127.0.0.1:{pub}/healthz", secs, 64, method="GET",
                                            headers=["x-user: bench"]))

    return h.rounds(list(targets), n_rounds, measure)


def section(rows):
    lines = [f"## 11. Balancing algorithms (pass-through, {ENDPOINTS} simulators, 64 connections)", "",
             "One gateway per `balance`, measured in alternating rounds; each pool with the default "
             "retries (2, budget 20%), passive ejection and metrics, unless the row says otherwise. "
             "The last column is the CPU per request against round robin's.", "",
             "| balance | requests/s | proxy CPU µs/request | p99 ms | errors | CPU vs round_robin |",
             "|---|---|---|---|---|---|"]
    base = rows.get("round_robin", {}).get("cpu_us")
    for name, r in rows.items():
        cpu = r.get("cpu_us")
        vs = f"{cpu / base:.3f}× ({cpu - base:+.1f} µs)" if cpu and base else "—"
        cpu_s = f"{cpu:.1f}" if cpu else "—"
        lines.append(f"| {name} | {r['rps']:.0f} | {cpu_s} | {r['p99']:.2f} | {r['errors']} | {vs} |")
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", default=[], help="NAME=PATH (repeatable): another build's round robin")
    h.scenario_args(ap)
    args = ap.parse_args()
    bins = dict(b.split("=", 1) for b in args.bin)
    rows = h.run_scenario("kikaku-balancing-", scenario, bins, args)
    lines = section(rows)
    detail = f", {args.rounds} rounds of {args.seconds} s"
    if bins:
        detail += "; " + ", ".join(f"`{n}` = {p}" for n, p in bins.items())
    block = h.write_section(args.out, MARK_BEGIN, MARK_END, lines, 11, "balancing.py", detail)
    print("\n".join(block))


if __name__ == "__main__":
    main()
