#!/usr/bin/env python3
"""Scenario 7: the gateway's memory while it holds many image streams.

N clients (500 by default) each ask for a streamed batch of two images
(`stream: true`) at once. The simulator (a process of its own) takes
LATENCY ms (3 s by default) to make each image: for the first LATENCY
every request waits for its first image (nothing sent yet), for the
second each stream is open with one event delivered. The gateway's RSS is
sampled every 100 ms through both phases. The same N requests not
streamed (one JSON answer, sent by the simulator after one LATENCY) are
the comparison.

    .venv/bin/python3 benches/harness/streams.py   # updates section 7 of BENCHMARKS.md

run.py runs it as part of the whole report (and its smoke, with 50
streams at 500 ms).
"""

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support as h  # noqa: E402

BODY = {"model": "seedream-4.0", "prompt": "two boats", "size": "1K",
        "sequential_image_generation": "auto", "sequential_image_generation_options": {"max_images": 2}}
MARK_BEGIN, MARK_END = "<!-- streams:begin -->", "<!-- streams:end -->"


async def one(port, stream):
    """One request over its own connection; the image events and whether
    the answer ended properly (`[DONE]`, or a whole JSON document)."""
    body = json.dumps(dict(BODY, stream=stream)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/images/generations HTTP/1.1\r\nHost: bench\r\n"
                 b"Authorization: Bearer " + h.KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    data = await reader.read()  # to the close
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.1 200")
    if stream:
        return ok and b"data: [DONE]" in rest, rest.count(b"event: image_generation.partial_succeeded")
    return ok, rest.count(b'"url"')


async def many(port, n, stream):
    return await asyncio.gather(*(one(port, stream) for _ in range(n)))


def sample(pids, stop, out):
    while not stop.is_set():
        out.append((time.time(), h.rss_kib(pids)))
        time.sleep(0.1)


def held(gw, port, n, latency_s, stream):
    """Run N requests at once; the gateway's RSS before, peak in each
    phase, and after; and how many answers came back whole."""
    pids = gw.pids()
    before = h.rss_kib(pids)
    samples, stop = [], threading.Event()
    t = threading.Thread(target=sample, args=(pids, stop, samples))
    start = time.time()
    t.start()
    results = asyncio.run(many(port, n, stream))
    elapsed = time.time() - start
    time.sleep(0.5)
    stop.set()
    t.join()
    after = h.rss_kib(pids)
    waiting = max((r for at, r in samples if at - start < latency_s), default=0)
    streaming = max((r for at, r in samples if at - start >= latency_s), default=0)
    return {"n": n, "before": before, "waiting": waiting, "streaming": streaming, "after": after,
            "whole": sum(1 for ok, images in results if ok and images == 2), "elapsed": elapsed}


def scenario(bin_, tmp, procs, n=500, latency_ms=3000):
    """Start a simulator and a gateway (conf/bench.yaml's image route) and
    measure N held requests, streamed then not."""
    sim = h.free_port()
    procs.append(h.Proc([str(bin_), "sim-ark", "--listen", f"127.0.0.1:{sim}",
                         "--latency-ms", str(latency_ms), "--image-interval-ms", str(latency_ms)]))
    h.wait_port(sim)
    pub, adm = h.free_port(), h.free_port()
    d = Path(tmp) / "kikaku-streams"
    d.mkdir()
    gw = h.Proc([str(bin_), "serve", "-c", str(h.gateway_conf(d, pub, adm, sim))])
    procs.append(gw)
    h.wait_port(pub)
    asyncio.run(many(pub, 4, True))  # warm: connections, code paths
    idle = h.rss_kib(gw.pids())
    rows = {}
    for stream in (True, False):
        rows["streamed" if stream else "not streamed"] = held(gw, pub, n, latency_ms / 1000, stream)
    return {"n": n, "latency_ms": latency_ms, "idle": idle, "rows": rows}


def section(r):
    """Section 7 of BENCHMARKS.md."""
    mib = lambda k: f"{k / 1024:.1f} MiB"
    lat = r["latency_ms"] / 1000
    lines = [f"## 7. Resident memory while {r['n']} image streams are held", "",
             f"{r['n']} clients each ask at once for a batch of two images (`stream: true`); the simulator takes "
             f"{lat:g} s per image. For the first {lat:g} s every request waits for its first image; for the next "
             f"{lat:g} s each stream is open with one event delivered. Gateway RSS sampled every 100 ms. For "
             "comparison, the same requests not streamed: one JSON answer, which the simulator sends after one "
             f"latency ({lat:g} s). Idle after warm-up: "
             f"{mib(r['idle'])}.", "",
             "| | before | peak, waiting for the first image | peak, second phase | after | "
             "peak above before, per request | answers whole | wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for name, x in r["rows"].items():
        per = (max(x["waiting"], x["streaming"]) - x["before"]) / x["n"]
        lines.append(f"| {name} | {mib(x['before'])} | {mib(x['waiting'])} | {mib(x['streaming'])} | "
                     f"{mib(x['after'])} | {per:.0f} KiB | {x['whole']} of {x['n']} | {x['elapsed']:.1f} s |")
    lines += ["", "The streamed run goes first, so the other starts from the memory it left allocated "
              "(the allocator keeps freed pages for reuse).", ""]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(h.BIN))
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--latency-ms", type=int, default=3000)
    ap.add_argument("--out", default=str(h.ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kikaku-streams-")
    procs = []
    try:
        r = scenario(Path(args.bin), tmp, procs, args.streams, args.latency_ms)
    finally:
        for p in reversed(procs):
            p.stop()
    block = h.write_section(args.out, MARK_BEGIN, MARK_END, section(r), 7, "streams.py", f" (`{Path(args.bin).name}` of `{Path(args.bin).parent.name}`)")
    print("\n".join(block))


if __name__ == "__main__":
    main()
