#!/usr/bin/env python3
"""Scenario 9: what a connection costs in memory. N keep-alive
connections (10,000 by default) each send one `GET /healthz`, read the
answer and stay open, idle; the proxy's RSS before and after gives its
cost per idle connection. Then M image requests (5,000 by default) are held
in flight at once by a simulator (a process of its own) that takes 3 s to
answer: the gateway's peak RSS, and how many answers came back 200.

    .venv/bin/python3 benches/harness/connections.py   # updates section 9 of BENCHMARKS.md

Targets: nginx (2 workers), bare Pingora (2 threads, if built) and
kikaku-edge (conf/bench.yaml). A process may hold 20,000 descriptors here;
the client raises its own limit to that.
"""

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support as h  # noqa: E402

MARK_BEGIN, MARK_END = "<!-- connections:begin -->", "<!-- connections:end -->"


async def idle(port, n):
    """Open n connections, one answered request each; hold them."""
    conns = []

    async def one():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                       if l.lower().startswith(b"content-length:")), 0)
        await r.readexactly(length)
        conns.append((r, w))

    sem = asyncio.Semaphore(500)

    async def limited():
        async with sem:
            await one()

    await asyncio.gather(*(limited() for _ in range(n)))
    return conns


def idle_cost(proc, port, n):
    """RSS per idle connection (KiB) and how many connections were held."""
    pids = proc.pids()
    before = h.rss_kib(pids)

    async def run():
        conns = await idle(port, n)
        await asyncio.sleep(1)
        after = h.rss_kib(pids)
        for _, w in conns:
            w.close()
        return len(conns), after

    held, after = asyncio.run(run())
    return {"before": before, "after": after, "held": held, "per": (after - before) / max(held, 1)}


async def image(port):
    body = h.BODY_GATEWAY.encode()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"POST /v1/images/generations HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer " + h.KEY.encode() +
            b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\nConnection: close\r\n\r\n" + body)
    await w.drain()
    data = await r.read()
    w.close()
    return data.startswith(b"HTTP/1.1 200")


def held_images(proc, port, m):
    """M image requests at once against a 3 s simulator: peak RSS, answers 200."""
    pids = proc.pids()
    before = h.rss_kib(pids)
    peak, stop = [before], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], h.rss_kib(pids))
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    start = time.time()

    async def run():
        return await asyncio.gather(*(image(port) for _ in range(m)), return_exceptions=True)

    results = asyncio.run(run())
    elapsed = time.time() - start
    stop.set()
    t.join()
    ok = sum(1 for r in results if r is True)
    return {"m": m, "before": before, "peak": peak[0], "ok": ok, "errors": m - ok, "elapsed": elapsed}


def scenario(bin_, tmp, procs, n=10_000, m=5_000, latency_ms=3000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    sim0, slow = h.free_port(), h.free_port()
    procs.append(h.Proc([str(bin_), "sim-ark", "--listen", f"127.0.0.1:{sim0}"]))
    procs.append(h.Proc([str(bin_), "sim-ark", "--listen", f"127.0.0.1:{slow}", "--latency-ms", str(latency_ms)]))
    h.wait_port(sim0)
    h.wait_port(slow)
    targets = {}
    ng = h.free_port()
    d = Path(tmp) / "conn-nginx"
    d.mkdir()
    nginx = h.Proc(["nginx", "-c", str(h.nginx_conf(d, ng, sim0, connections=16384)), "-g", "daemon off;"])
    procs.append(nginx)
    h.wait_port(ng)
    targets["nginx"] = (nginx, ng)
    baseline = Path(bin_).parent / "pingora-baseline"
    if baseline.exists():
        port = h.free_port()
        bare = h.Proc([str(baseline), f"127.0.0.1:{port}", f"127.0.0.1:{sim0}", "2"])
        procs.append(bare)
        h.wait_port(port)
        targets["bare Pingora"] = (bare, port)
    for name, sim in (("kikaku-edge", sim0), ("kikaku-edge, slow", slow)):
        pub, adm = h.free_port(), h.free_port()
        d = Path(tmp) / f"conn-{name.replace(', ', '-')}"
        d.mkdir()
        gw = h.Proc([str(bin_), "serve", "-c", str(h.gateway_conf(d, pub, adm, sim))])
        procs.append(gw)
        h.wait_port(pub)
        targets[name] = (gw, pub)
    rows = {name: idle_cost(p, port, n) for name, (p, port) in targets.items() if name != "kikaku-edge, slow"}
    gw, pub = targets["kikaku-edge, slow"]
    return {"n": n, "idle": rows, "held": held_images(gw, pub, m), "latency_ms": latency_ms}


def section(r):
    kib = lambda k: f"{k / 1024:.1f} MiB"
    lines = [f"## 9. Memory per connection: {r['n']:,} idle keep-alive connections, "
             f"{r['held']['m']:,} image requests in flight", "",
             f"Each connection sends one `GET /healthz`, reads the answer and stays open. Goal (issue 20): "
             "≤ 20 KiB per idle connection.", "",
             "| | before | with the connections | connections held | per connection |", "|---|---|---|---|---|"]
    for name, x in r["idle"].items():
        lines.append(f"| {name} | {kib(x['before'])} | {kib(x['after'])} | {x['held']:,} | {x['per']:.1f} KiB |")
    x = r["held"]
    lines += ["", f"{x['m']:,} image requests at once, each on its own connection, against a simulator that answers "
              f"after {r['latency_ms'] / 1000:g} s: gateway RSS {kib(x['before'])} before, {kib(x['peak'])} at the peak; "
              f"{x['ok']:,} answered 200, {x['errors']} errors, in {x['elapsed']:.1f} s. Goal: 0 errors.", ""]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(h.BIN))
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=5_000)
    ap.add_argument("--out", default=str(h.ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kikaku-connections-")
    procs = []
    try:
        r = scenario(Path(args.bin), tmp, procs, args.connections, args.images)
    finally:
        for p in reversed(procs):
            p.stop()
    block = h.write_section(args.out, MARK_BEGIN, MARK_END, section(r), 9, "connections.py")
    print("\n".join(block))
    print(json.dumps(r), file=sys.stderr)


if __name__ == "__main__":
    main()
