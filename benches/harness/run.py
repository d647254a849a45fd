#!/usr/bin/env python3
"""Performance harness: kikaku-edge against nginx (plain proxy_pass) and
LiteLLM's proxy, on one upstream (the Ark simulator), side by side in one run.

    .venv/bin/python3 benches/harness/run.py          # full run, writes BENCHMARKS.md
    .venv/bin/python3 benches/harness/run.py --quick  # short smoke: 2 s per point

Needs: a release build (`cargo build --release --features harness-baseline`,
which adds the bare Pingora proxy of the baseline rows), nginx (Debian), oha
(`cargo install oha`), and optionally LiteLLM (in `.venv-litellm`, or on PATH);
`make harness` runs scripts/harness-prereqs.sh, which installs all of them;
whatever is missing is reported in the table as not run.

Scenarios (issue 6): (1) image route with every filter, at full speed;
(2) the same at fixed rates, for added latency; (3) a pass-through route;
(4) 256 MiB PUT and GET through `/s3` and the S3 endpoint against the same
backend directly and through nginx (curl, SigV4 by `--aws-sigv4`); (5) a config reload every
second under load; (6) RSS idle and with 1,000 open keep-alive connections;
(7) RSS while 500 image streams are held open (streams.py, which also runs alone);
(8) the access log on against off (access_log.py, which also runs alone);
(9) RSS per idle connection (10,000) and 5,000 image requests in flight
(connections.py, which also runs alone).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import access_log
import connections
import knobs
import streams
from support import (BIN, BODY_GATEWAY, BODY_UPSTREAM, KEY, ROOT, Proc, free_port, gateway_conf, measured, nginx_conf,
                     oha, rounds, rss_kib, summarize, wait_port, write_gateway_conf)

# scripts/harness-prereqs.sh installs LiteLLM into its own venv.
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
# The one-worker rows of scenarios 1 and 3.
NGINX_1, KIKAKU_1 = "nginx, 1 worker", "kikaku-edge, 1 thread"
# A bare Pingora proxy (benches/harness/pingora_baseline.rs), same build and
# allocator: what Pingora itself costs, so the gap to nginx splits in two.
PINGORA_2, PINGORA_1 = "bare Pingora", "bare Pingora, 1 thread"


def litellm_conf(dir_, sim_port):
    cfg = {
        "model_list": [{
            "model_name": "seedream-4.0",
            "litellm_params": {"model": "openai/seedream-4-0-250828",
                               "api_base": f"http://127.0.0.1:{sim_port}/api/v3",
                               "api_key": "sim-key"},
        }],
        "general_settings": {"master_key": "sk-bench-master"},
        "litellm_settings": {"set_verbose": False},
    }
    path = Path(dir_) / "litellm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


BACKEND_ID, BACKEND_SECRET = "bench-backend", "bench-backend-secret"
S3_ID, S3_SECRET = "KIKAKUDEMOACCESSKEY0", "kikaku-demo-secret-key-for-local-use-only"


def storage_backend_conf(dir_, public, admin, s3_port):
    """A kikaku-edge process used only as the S3 backend (its embedded
    s3s-fs server), so the gateway under test and the backend are separate
    processes, as with MinIO."""
    cfg = {
        "listeners": {"public": {"address": f"127.0.0.1:{public}"}, "admin": {"address": f"127.0.0.1:{admin}"}},
        "data_dir": str(Path(dir_) / "data"),
        "logging": {"access_log": "off"},
        "storage": {"backend": {"upstream": "s3", "region": "us-east-1", "access_key_id": BACKEND_ID,
                                "secret_access_key": BACKEND_SECRET},
                    "embedded": {"listen": f"127.0.0.1:{s3_port}"}},
        "upstreams": {"s3": {"endpoints": [{"address": f"127.0.0.1:{s3_port}"}]}},
        "routes": [],
    }
    path = Path(dir_) / "backend.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def storage_gateway_conf(dir_, public, admin, s3_port):
    """conf/bench.yaml's storage routes, with the backend in another process."""
    cfg = yaml.safe_load((ROOT / "conf" / "bench.yaml").read_text())
    cfg.pop("simulators", None)
    cfg["storage"] = {"backend": {"upstream": "s3", "region": "us-east-1", "access_key_id": BACKEND_ID,
                                  "secret_access_key": BACKEND_SECRET}}
    cfg["upstreams"] = {"s3": {"endpoints": [{"address": f"127.0.0.1:{s3_port}"}],
                               "timeouts": {"connect_ms": 2000, "read_ms": 120000, "write_ms": 120000}}}
    cfg["routes"] = [r for r in cfg["routes"] if r["handler"]["type"] in ("s3_endpoint", "storage_api")]
    return write_gateway_conf(cfg, dir_, public, admin, "storage-gateway.yaml")


def curl(args, timeout=600):
    """Run curl; returns (http status, seconds)."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"] + args,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"curl {args[-1]}: {out.stderr.strip()}")
    code, secs = out.stdout.split()
    return int(code), float(secs)


def sigv4(id_, secret):
    return ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{id_}:{secret}",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]


def storage_scenario(tmp, procs, quick):
    """(4): MiB/s of PUT and GET of one large object, direct to the backend,
    through nginx, through the S3 endpoint, and through `/s3`; median of the repetitions."""
    mib = 64 if quick else 256
    reps = 1 if quick else 5
    blob = Path(tmp) / "blob.bin"
    with open(blob, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    d = Path(tmp) / "storage"
    d.mkdir()
    be_pub, be_adm, be_s3 = free_port(), free_port(), free_port()
    procs.append(Proc([str(BIN), "serve", "-c", str(storage_backend_conf(d, be_pub, be_adm, be_s3))]))
    wait_port(be_s3)
    gw_pub, gw_adm = free_port(), free_port()
    gw = Proc([str(BIN), "serve", "-c", str(storage_gateway_conf(d, gw_pub, gw_adm, be_s3))])
    procs.append(gw)
    wait_port(gw_pub)
    # nginx streaming both ways (no buffering, no size cap), keeping the
    # client's Host so the backend's SigV4 check still holds: the cost of
    # a plain proxy hop, to read the gateway's ratios against. Unbuffered,
    # nginx reads at most proxy_buffer_size (client_body_buffer_size up) at a
    # time; both are raised from their 4-16 KiB defaults to the backend's
    # 256 KiB pieces, as an operator streaming large objects would.
    ng = free_port()
    ng_dir = d / "nginx"
    ng_dir.mkdir()
    stream = """
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_buffer_size 256k;
      proxy_buffers 4 256k;
      proxy_busy_buffers_size 512k;
      client_body_buffer_size 256k;
      client_max_body_size 0;"""
    procs.append(Proc(["nginx", "-c", str(nginx_conf(ng_dir, ng, be_s3, stream)), "-g", "daemon off;"]))
    wait_port(ng)

    direct = f"http://127.0.0.1:{be_s3}/bench-direct"
    via_nginx = f"http://127.0.0.1:{ng}/bench-direct"
    endpoint = f"http://127.0.0.1:{gw_pub}/demo"
    bearer = ["-H", "Authorization: Bearer kikaku_s3_demo_key"]
    curl(["-X", "PUT"] + sigv4(BACKEND_ID, BACKEND_SECRET) + [direct])
    curl(["-X", "PUT"] + sigv4(S3_ID, S3_SECRET) + [endpoint])
    ways = {
        "direct": (lambda: ["-T", str(blob)] + sigv4(BACKEND_ID, BACKEND_SECRET) + [f"{direct}/blob.bin"],
                   lambda: sigv4(BACKEND_ID, BACKEND_SECRET) + [f"{direct}/blob.bin"]),
        "nginx": (lambda: ["-T", str(blob)] + sigv4(BACKEND_ID, BACKEND_SECRET) + [f"{via_nginx}/blob.bin"],
                  lambda: sigv4(BACKEND_ID, BACKEND_SECRET) + [f"{via_nginx}/blob.bin"]),
        "S3 endpoint": (lambda: ["-T", str(blob)] + sigv4(S3_ID, S3_SECRET) + [f"{endpoint}/blob.bin"],
                        lambda: sigv4(S3_ID, S3_SECRET) + [f"{endpoint}/blob.bin"]),
        "/s3 API": (lambda: bearer + ["-F", "key=blob.bin", "-F", f"file=@{blob}",
                                      f"http://127.0.0.1:{gw_pub}/s3/upload"],
                    lambda: bearer + [f"http://127.0.0.1:{gw_pub}/s3/files/blob.bin"]),
        "/s3 API, chunked form": (lambda: bearer + ["-H", "Transfer-Encoding: chunked", "-F", "key=chunked.bin",
                                                    "-F", f"file=@{blob}", f"http://127.0.0.1:{gw_pub}/s3/upload"],
                                  lambda: bearer + [f"http://127.0.0.1:{gw_pub}/s3/files/chunked.bin"]),
    }
    out = {"mib": mib, "reps": reps, "rows": {}}
    peak = 0
    # curl's form has a Content-Length, `key` first and the file last:
    # `/s3/upload` knows the file's size and sends one streamed PutObject.
    # Sent chunked, the size is unknown until the form ends and the file
    # goes as a multipart upload of 8 MiB parts; the like-for-like baseline
    # of that is the same multipart upload sent directly (boto3).
    mp = multipart_direct(f"http://127.0.0.1:{be_s3}", blob, mib, reps)
    if mp:
        out["multipart_direct_put"] = mp
    times = {(name, op): [] for name in ways for op in ("PUT", "GET")}
    # Every way once per repetition, PUTs then GETs, so a slow minute on
    # the shared machine hits every way alike; the median of each.
    for op in ("PUT", "GET"):
        for _ in range(reps):
            for name, (put, get) in ways.items():
                code, secs = curl((put if op == "PUT" else get)())
                if code not in (200, 201):
                    raise RuntimeError(f"{name} {op}: HTTP {code}")
                times[(name, op)].append(secs)
                peak = max(peak, rss_kib(gw.pids()))
    for name in ways:
        out["rows"][name] = {op: mib / sorted(times[(name, op)])[reps // 2] for op in ("PUT", "GET")}
    out["gateway_rss_kib"] = peak
    return out


def multipart_direct(endpoint, blob, mib, reps):
    """MiB/s of a multipart upload (8 MiB parts, sequential) straight to the
    backend with boto3; None when boto3 is not installed."""
    try:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
    except ImportError:
        return None
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=BACKEND_ID,
                      aws_secret_access_key=BACKEND_SECRET, region_name="us-east-1",
                      config=Config(s3={"payload_signing_enabled": False}))
    part = 8 << 20
    cfg = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=1, use_threads=False)
    times = []
    for _ in range(reps):
        t = time.time()
        s3.upload_file(str(blob), "bench-direct", "multipart.bin", Config=cfg)
        times.append(time.time() - t)
    times.sort()
    return mib / times[len(times) // 2]


def smoke_check(results, storage, held_streams, log_rows, conns, knob_rows):
    """What the CI smoke asserts: every target started and answered."""
    missing = [f"{key} {name}" for key in ("1", "3")
               for name in ("direct", "nginx", "kikaku-edge", NGINX_1, KIKAKU_1, PINGORA_2, PINGORA_1)
               if not (results.get((key, name, "0ms")) or {}).get("requests")]
    if storage is None or any(r["PUT"] <= 0 or r["GET"] <= 0 for r in storage["rows"].values()):
        missing.append("4 storage")
    if any(r["whole"] != r["n"] for r in held_streams["rows"].values()):
        missing.append("7 streams")
    if not all(r.get("requests") for r in log_rows.values()):
        missing.append("8 access log")
    if any(r["held"] != conns["n"] for r in conns["idle"].values()) or conns["held"]["errors"]:
        missing.append("9 connections")
    if len(knob_rows) != len(knobs.VARIANTS) or any(r["errors"] or not r["requests"] for r in knob_rows.values()):
        missing.append("10 knobs")
    if missing:
        sys.exit(f"harness smoke: no answers from {', '.join(missing)}")
    print("harness smoke: every target started and answered")


def version(args, containing=""):
    """The first line of a tool's version output (that holds `containing`)."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=60)
        lines = [l for l in (out.stdout + out.stderr).strip().splitlines() if containing in l]
        return lines[0].strip()
    except Exception as e:
        return f"not available ({e.__class__.__name__})"


def main():
    global BIN
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 s per point (a smoke test)")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of scenarios 1-3 (each point once per round; medians reported)")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--no-storage", action="store_true", help="skip scenario 4")
    ap.add_argument("--bin", default=str(BIN), help="the kikaku-edge binary (default: the release build)")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke: --quick on the debug build, report to target/harness-smoke.md; "
                         "checks that everything starts and a table comes out, not the figures")
    args = ap.parse_args()
    if args.smoke:
        args.quick = True
        if args.bin == str(BIN):
            args.bin = str(ROOT / "target" / "debug" / "kikaku-edge")
        if args.out == str(ROOT / "BENCHMARKS.md"):
            args.out = str(ROOT / "target" / "harness-smoke.md")
    secs = 2 if args.quick else 10
    n_rounds = 1 if args.quick else args.rounds
    BIN = Path(args.bin)
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: cargo build --release")
    if not shutil.which("oha"):
        sys.exit("oha is missing: cargo install oha --locked")

    tmp = tempfile.mkdtemp(prefix="kikaku-harness-")
    procs = []
    results = {}
    try:
        sim0, sim50 = free_port(), free_port()
        procs.append(Proc([str(BIN), "sim-ark", "--listen", f"127.0.0.1:{sim0}"]))
        procs.append(Proc([str(BIN), "sim-ark", "--listen", f"127.0.0.1:{sim50}", "--latency-ms", "50"]))
        wait_port(sim0)
        wait_port(sim50)

        targets = {}
        for sim, label in [(sim0, "0ms"), (sim50, "50ms")]:
            targets[("direct", label)] = (f"http://127.0.0.1:{sim}/api/v3/images/generations", BODY_UPSTREAM,
                                          ["Authorization: Bearer sim-key"], None)
            ng = free_port()
            d = Path(tmp) / f"nginx-{label}"
            d.mkdir()
            nginx = Proc(["nginx", "-c", str(nginx_conf(d, ng, sim)), "-g", "daemon off;"])
            procs.append(nginx)
            wait_port(ng)
            targets[("nginx", label)] = (f"http://127.0.0.1:{ng}/api/v3/images/generations", BODY_UPSTREAM,
                                         ["Authorization: Bearer sim-key"], nginx)
            pub, adm = free_port(), free_port()
            d = Path(tmp) / f"kikaku-{label}"
            d.mkdir()
            conf = gateway_conf(d, pub, adm, sim)
            gw = Proc([str(BIN), "serve", "-c", str(conf)])
            procs.append(gw)
            wait_port(pub)
            targets[("kikaku-edge", label)] = (f"http://127.0.0.1:{pub}/v1/images/generations", BODY_GATEWAY,
                                               [f"Authorization: Bearer {KEY}"], gw)
            litellm = LITELLM if LITELLM.exists() else shutil.which("litellm")
            if not args.no_litellm and litellm:
                lp = free_port()
                ll = Proc([str(litellm), "--config", str(litellm_conf(d, sim)), "--port", str(lp),
                           "--host", "127.0.0.1", "--num_workers", "1"])
                procs.append(ll)
                try:
                    wait_port(lp, timeout=120)
                    targets[("LiteLLM", label)] = (f"http://127.0.0.1:{lp}/v1/images/generations",
                                                   json.dumps({"model": "seedream-4.0", "prompt": "a cat", "size": "1024x1024"}),
                                                   ["Authorization: Bearer sk-bench-master"], ll)
                except RuntimeError:
                    pass
        gw0 = targets[("kikaku-edge", "0ms")][3]

        # Rows of scenarios 1 and 3 only. nginx with one worker and
        # kikaku-edge with one thread: on two cores shared with the client
        # and the simulator, a second worker mostly adds preemption, and how
        # much differs between the two (BENCHMARKS.md, "Profile"). And the
        # bare Pingora proxy with two threads and with one.
        extra = {}
        ng = free_port()
        d = Path(tmp) / "nginx-1w"
        d.mkdir()
        nginx1 = Proc(["nginx", "-c", str(nginx_conf(d, ng, sim0, workers=1)), "-g", "daemon off;"])
        procs.append(nginx1)
        wait_port(ng)
        extra[(NGINX_1, "0ms")] = (f"http://127.0.0.1:{ng}/api/v3/images/generations", BODY_UPSTREAM,
                                 ["Authorization: Bearer sim-key"], nginx1)
        pub, adm = free_port(), free_port()
        d = Path(tmp) / "kikaku-1t"
        d.mkdir()
        gw1 = Proc([str(BIN), "serve", "-c", str(gateway_conf(d, pub, adm, sim0, threads=1))])
        procs.append(gw1)
        wait_port(pub)
        extra[(KIKAKU_1, "0ms")] = (f"http://127.0.0.1:{pub}/v1/images/generations", BODY_GATEWAY,
                                  [f"Authorization: Bearer {KEY}"], gw1)
        baseline = BIN.parent / "pingora-baseline"
        if baseline.exists():
            for name, threads in [(PINGORA_2, 2), (PINGORA_1, 1)]:
                port = free_port()
                # With kikaku-edge's listener model (`server.reuse_port`, its
                # default): a socket and a single-threaded runtime per thread.
                bare = Proc([str(baseline), f"127.0.0.1:{port}", f"127.0.0.1:{sim0}", str(threads),
                             "reuseport=true"])
                procs.append(bare)
                wait_port(port)
                extra[(name, "0ms")] = (f"http://127.0.0.1:{port}/api/v3/images/generations", BODY_UPSTREAM,
                                      ["Authorization: Bearer sim-key"], bare)
        else:
            print(f"{baseline} is missing (cargo build --release --features harness-baseline): "
                  "no bare Pingora rows", file=sys.stderr)

        # (6) idle RSS, before any load.
        idle = {name: rss_kib(t[3].pids()) for (name, label), t in targets.items() if t[3] and label == "0ms"}

        # (1) full speed, 64 connections; the proxy's CPU time per request
        # is read from /proc around each run.
        def full_speed(key):
            url, body, headers, proc = {**targets, **extra}[key]
            return measured(proc, lambda: oha(url, secs, 64, body, headers))

        for (name, label), r in rounds(list(targets) + list(extra), n_rounds, full_speed).items():
            results[("1", name, label)] = r

        # (2) fixed rates against the zero-latency simulator. At the same
        # rate every proxy faces the same load, so its CPU per request reads
        # without the full-speed runs' feedback (a slower proxy leaves the
        # client and the simulator idle, and then pays to wake them).
        for rate in (500, 1000):
            def fixed(key, rate=rate):
                url, body, headers, proc = targets[key]
                return measured(proc, lambda: oha(url, secs, 32, body, headers, rate=rate))

            zero = [k for k in targets if k[1] == "0ms"]
            for (name, label), r in rounds(zero, n_rounds, fixed).items():
                results[(f"2@{rate}", name, label)] = r

        # (3) pass-through: GET /healthz of the simulator.
        passes = {"direct": f"http://127.0.0.1:{sim0}/healthz",
                  "nginx": targets[("nginx", "0ms")][0].replace("/api/v3/images/generations", "/healthz"),
                  "kikaku-edge": targets[("kikaku-edge", "0ms")][0].replace("/v1/images/generations", "/healthz")}
        for name, (url, _, _, _) in extra.items():
            passes[name[0]] = url.replace("/api/v3/images/generations", "/healthz").replace(
                "/v1/images/generations", "/healthz")

        def pass_through(name):
            proc = {**targets, **extra}.get((name, "0ms"), (None,) * 4)[3]
            return measured(proc, lambda: oha(passes[name], secs, 64, method="GET"))

        for name, r in rounds(list(passes), n_rounds, pass_through).items():
            results[("3", name, "0ms")] = r

        # (5) a reload (SIGHUP) every second during load on the image route.
        url, body, headers, _ = targets[("kikaku-edge", "0ms")]
        loader = subprocess.Popen(["oha", "--no-tui", "--output-format", "json", "-z", f"{secs * 2}s", "-c", "32",
                                   "-m", "POST", url, "-d", body, "-T", "application/json"] +
                                  sum([["-H", h] for h in headers], []), stdout=subprocess.PIPE, text=True)
        reloads = 0
        t_end = time.time() + secs * 2 - 0.5
        while time.time() < t_end:
            time.sleep(1)
            os.kill(gw0.p.pid, signal.SIGHUP)
            reloads += 1
        out, _ = loader.communicate(timeout=secs * 2 + 120)
        results[("5", "kikaku-edge", "0ms")] = dict(summarize(json.loads(out)), reloads=reloads)

        # (6) RSS with 1,000 open keep-alive connections (pass-through, slow rate).
        held = {}
        for (name, label), t in targets.items():
            if label != "0ms" or not t[3]:
                continue
            url = t[0]
            loader = subprocess.Popen(["oha", "--no-tui", "--output-format", "json", "-z", f"{secs + 2}s", "-c", "1000",
                                       "-q", "2000", "-m", "POST", url, "-d", t[1], "-T", "application/json"] +
                                      sum([["-H", h] for h in t[2]], []),
                                      stdout=subprocess.PIPE, text=True)
            time.sleep(secs)
            held[name] = rss_kib(t[3].pids())
            loader.communicate(timeout=secs + 120)
        storage = None if args.no_storage else storage_scenario(tmp, procs, args.quick)
        held_streams = streams.scenario(BIN, tmp, procs, *((50, 500) if args.quick else (500, 3000)))
        log_rows = access_log.scenario({"kikaku-edge": BIN}, tmp, procs, secs, n_rounds)
        conns = connections.scenario(BIN, tmp, procs, *((200, 100, 500) if args.quick else (10_000, 5_000, 3000)))
        knob_rows = knobs.scenario(BIN, tmp, procs, *((1, 1, 50) if args.quick else (5, n_rounds, 1000)))
        write_report(args, results, idle, held, secs, storage, n_rounds, held_streams, log_rows, conns,
                     knob_rows)
        if args.smoke:
            smoke_check(results, storage, held_streams, log_rows, conns, knob_rows)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(args, results, idle, held, secs, storage, n_rounds, held_streams, log_rows, conns, knob_rows):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        "# Benchmarks",
        "",
        f"Written by `.venv/bin/python3 benches/harness/run.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Every figure below comes from this one run;",
        "compare within a table, not with other runs.",
        "",
        f"- Machine: {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        f"- kikaku-edge `{rev}` (`{BIN.relative_to(ROOT) if BIN.is_relative_to(ROOT) else BIN}`), {version(['nginx', '-v'])}, {version(['oha', '--version'])}, "
        f"LiteLLM {version([str(LITELLM) if LITELLM.exists() else 'litellm', '--version'], 'Version')}",
        f"- Load: oha, {secs} s per point; scenarios 1-3 in {n_rounds} round(s), every target once per round, "
        "each figure the median of its rounds. The client, the proxies and the simulator share the machine.",
        "- Proxy CPU µs/request: user + system CPU time of the proxy's processes (all threads, all "
        "workers; from /proc) during the run, divided by the requests answered. Less noisy than requests/s "
        "on a shared machine: it is the cost each proxy adds per request.",
        "- kikaku-edge runs `conf/bench.yaml`'s `server` section (2 threads); nginx runs 2 workers. Scenarios 1 "
        f"and 3 also run both with one (`{NGINX_1}`, `{KIKAKU_1}`); the goals compare like with like.",
        f"- `{PINGORA_2}` (2 threads) and `{PINGORA_1}`: a Pingora proxy that only picks the simulator and sets "
        "`Host` (`benches/harness/pingora_baseline.rs`), built and allocated like kikaku-edge and listening "
        "like it (a `SO_REUSEPORT` socket and a single-threaded runtime per thread, `reuseport=true`): "
        "Pingora's own cost per request.",
        *([f"- **Smoke run of a {BIN.parent.name} build: the figures say nothing about performance.**"]
          if BIN.parent.name != "release" else []),
        "- Image requests: `{\"model\":\"seedream-4.0\",\"prompt\":\"a cat\",\"size\":\"1K\"}` through kikaku-edge "
        "(key auth, rate limit, quota, validation, alias rewrite, accounting, request log); the already-rewritten "
        "body direct and through nginx (`proxy_pass`, keep-alive).",
        "",
    ]

    def table(title, key, names, label="0ms", added=True):
        lines.append(f"## {title}")
        lines.append("")
        lines.append("| | requests/s | p50 ms | p90 ms | p99 ms | added p50 / p99 ms | errors | proxy CPU µs/request |")
        lines.append("|---|---|---|---|---|---|---|---|")
        base = results.get((key, "direct", label))
        for n in names:
            r = results.get((key, n, label))
            if not r:
                lines.append(f"| {n} | not run | | | | | | |")
                continue
            add = f"{r['p50'] - base['p50']:.2f} / {r['p99'] - base['p99']:.2f}" if base and added and n != "direct" else "—"
            cpu = f"{r['cpu_us']:.1f}" if "cpu_us" in r else "—"
            lines.append(f"| {n} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {add} | {r['errors']} | {cpu} |")
        lines.append("")

    names = ["direct", "nginx", "kikaku-edge", "LiteLLM"]
    table("1. Image route, every filter, 64 connections (simulator at 0 ms)", "1",
          names + [NGINX_1, KIKAKU_1, PINGORA_2, PINGORA_1])
    table("1b. The same, simulator at 50 ms", "1", names, label="50ms")
    for rate in (500, 1000):
        table(f"2. Fixed rate {rate} requests/s (simulator at 0 ms)", f"2@{rate}", names)
    table("3. Pass-through route (GET /healthz of the simulator)", "3",
          ["direct", "nginx", "kikaku-edge", NGINX_1, KIKAKU_1, PINGORA_2, PINGORA_1])
    if storage:
        lines += [f"## 4. Storage streaming: one {storage['mib']} MiB object (curl; median of {storage['reps']})", "",
                  "The backend is the embedded s3s-fs server in a process of its own; `direct` signs to it with the "
                  "backend's credential, and `nginx` is the same request through a plain streaming `proxy_pass` "
                  "(buffering off): the cost of one proxy hop on loopback. The gateway verifies the client's SigV4 "
                  "(or key), checks the quota, re-signs and streams.", "",
                  "| | PUT MiB/s | GET MiB/s | PUT vs direct | GET vs direct |", "|---|---|---|---|---|"]
        base = storage["rows"]["direct"]
        for name, row in storage["rows"].items():
            put, get = (("—", "—") if name == "direct" else
                        (f"{row['PUT'] / base['PUT']:.2f}×", f"{row['GET'] / base['GET']:.2f}×"))
            lines.append(f"| {name} | {row['PUT']:.0f} | {row['GET']:.0f} | {put} | {get} |")
        mp = storage.get("multipart_direct_put")
        if mp:
            up = storage["rows"]["/s3 API, chunked form"]["PUT"]
            lines += ["", "`/s3 API` is curl's form with `key` before `file` (curl sends its Content-Length): the "
                      "file's size is known and it goes up as one streamed PutObject. Sent chunked (`/s3 API, chunked form`), "
                      "the size is unknown until the form ends and the file goes as a multipart upload (8 MiB "
                      f"parts); the same upload sent directly (boto3, parts one after the other): **{mp:.0f} MiB/s**, "
                      f"so the chunked form runs at **{up / mp:.2f}×** of direct multipart. Most of that time is the "
                      "backend's: s3s-fs copies every part into the final file at CompleteMultipartUpload."]
        lines += ["", f"Gateway peak RSS during these transfers: {storage['gateway_rss_kib'] / 1024:.1f} MiB.", ""]
    r = results.get(("5", "kikaku-edge", "0ms"))
    lines += ["## 5. Config reload every second under load", ""]
    if r:
        lines.append(f"{r['reloads']} reloads (SIGHUP) during {r['requests']} requests at {r['rps']:.0f}/s: **{r['errors']} failed**.")
    lines += ["", "## 6. Resident memory", "", "| | idle | 1,000 open connections |", "|---|---|---|"]
    for n in ["nginx", "kikaku-edge", "LiteLLM"]:
        if n in idle:
            lines.append(f"| {n} | {idle[n] / 1024:.1f} MiB | {held.get(n, 0) / 1024:.1f} MiB |")
    lines.append("")
    lines += [streams.MARK_BEGIN, *streams.section(held_streams), streams.MARK_END, ""]
    lines += [access_log.MARK_BEGIN, *access_log.section(log_rows), access_log.MARK_END, ""]
    lines += [connections.MARK_BEGIN, *connections.section(conns), connections.MARK_END, ""]
    lines += [knobs.MARK_BEGIN, *knobs.section(knob_rows, 50 if args.quick else 1000), knobs.MARK_END, ""]
    lines += goals(results, storage, log_rows, conns)
    lines += our_cost(results)
    lines += pingora_share(results)
    # Findings of the last profiling session (kept by hand, not measured here).
    notes = Path(__file__).with_name("profile.md")
    if notes.exists():
        lines += notes.read_text().rstrip("\n").splitlines() + [""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pingora_share(results):
    """How the gap to nginx splits: bare Pingora against nginx, kikaku-edge
    against bare Pingora (requests/s, and CPU per request in brackets)."""
    rows = []
    for key, route in (("1", "image route"), ("3", "pass-through")):
        for workers, ng, pg, kk in (("2 workers each", "nginx", PINGORA_2, "kikaku-edge"),
                                    ("1 worker each", NGINX_1, PINGORA_1, KIKAKU_1)):
            n, p, k = (results.get((key, x, "0ms")) for x in (ng, pg, kk))
            if not (n and p and k and n["rps"] and p["rps"]):
                continue
            cpu = lambda r: f"{r['cpu_us']:.1f}" if "cpu_us" in r else "?"
            rows.append(f"| {route}, {workers} | {p['rps'] / n['rps']:.0%} ({cpu(p)} vs {cpu(n)} µs) "
                        f"| {k['rps'] / p['rps']:.0%} ({cpu(k)} vs {cpu(p)} µs) | {k['rps'] / n['rps']:.0%} |")
    if not rows:
        return []
    return ["## Pingora's share of the gap", "",
            "The image rows of bare Pingora forward the already-rewritten body, like nginx: they show what "
            "Pingora costs to proxy, not to do the image route's work.", "",
            "| | bare Pingora vs nginx | kikaku-edge vs bare Pingora | kikaku-edge vs nginx |",
            "|---|---|---|---|"] + rows + [""]


def our_cost(results):
    """Our cost over bare Pingora, per route: CPU µs per request first,
    requests/s beside."""
    rows = []
    for key, route in (("1", "image route"), ("3", "pass-through")):
        for workers, pg, kk in (("2 threads each", PINGORA_2, "kikaku-edge"), ("1 thread each", PINGORA_1, KIKAKU_1)):
            p, k = results.get((key, pg, "0ms")), results.get((key, kk, "0ms"))
            if not (p and k and "cpu_us" in p and "cpu_us" in k):
                continue
            rows.append(f"| {route}, {workers} | {k['cpu_us']:.1f} | {p['cpu_us']:.1f} | "
                        f"**{k['cpu_us'] / p['cpu_us']:.2f}×** | {k['rps']:.0f} | {p['rps']:.0f} |")
    if not rows:
        return []
    return ["## Our cost over bare Pingora", "",
            "The image rows of bare Pingora forward the already-rewritten body: the ratio is what the image "
            "route's whole work costs on top of Pingora's proxying.", "",
            "| route | kikaku-edge CPU µs/request | bare Pingora CPU µs/request | ratio | kikaku-edge requests/s "
            "| bare Pingora requests/s |", "|---|---|---|---|---|---|"] + rows + [""]


def goals(results, storage, log_rows, conns):
    """Issue 20's goals, read against this run."""
    rows = []
    notes = yaml.safe_load(Path(__file__).with_name("goal_notes.yaml").read_text()) or {}

    def row(goal, value, ok, note, status=None):
        why = "" if ok else notes.get(note, "").strip().replace("\n", " ")
        rows.append(f"| {goal} | {value} | {status or ('met' if ok else 'not met')} | {why} |")

    for key, route, bound, note in (("3", "pass-through", 1.1, "pass-through"),
                                    ("1", "image route, every filter", 1.5, "image-route")):
        for workers, pg, kk in (("1 thread each", PINGORA_1, KIKAKU_1), ("2 threads each", PINGORA_2, "kikaku-edge")):
            p, k = results.get((key, pg, "0ms")), results.get((key, kk, "0ms"))
            if p and k and "cpu_us" in p and "cpu_us" in k:
                ratio = k["cpu_us"] / p["cpu_us"]
                row(f"{route} ≤ {bound}× bare Pingora's CPU per request ({workers})",
                    f"{ratio:.2f}× ({k['cpu_us']:.1f} vs {p['cpu_us']:.1f} µs)", ratio <= bound, note)
    costs = [(route, r["rps"] / log_rows[(n, route, "off")]["rps"] - 1)
             for (n, route, log), r in log_rows.items() if log == "on" and log_rows.get((n, route, "off"))]
    if costs:
        route, worst = min(costs, key=lambda c: c[1])
        row("access log on costs ≤ 5% of requests/s (worst route)", f"{worst:+.1%} ({route})", worst >= -0.05, "access-log")
    k, n, d = (results.get(("2@1000", x, "0ms")) for x in ("kikaku-edge", "nginx", "direct"))
    if k and n and d:
        ka, na = k["p99"] - d["p99"], n["p99"] - d["p99"]
        row("added p99 at 1,000 requests/s ≤ nginx's", f"{ka:.2f} ms (nginx {na:.2f} ms)", ka <= na, "p99")
    idle = conns["idle"].get("kikaku-edge")
    if idle:
        row(f"RSS ≤ 20 KiB per idle keep-alive connection ({conns['n']:,})", f"{idle['per']:.1f} KiB",
            idle["per"] <= 20, "idle-connection")
    held = conns["held"]
    row(f"{held['m']:,} image requests in flight, 0 errors", f"{held['errors']} errors", held["errors"] == 0, "in-flight")
    if storage:
        base, got = storage["rows"]["direct"], storage["rows"]
        for name, op in (("S3 endpoint", "PUT"), ("S3 endpoint", "GET"), ("/s3 API", "PUT"), ("/s3 API", "GET")):
            ratio, hop = got[name][op] / base[op], got["nginx"][op] / base[op]
            # The floor: at least the nginx hop where 0.9× is out of reach.
            status = "met" if ratio >= 0.9 else ("not met (at the nginx hop)" if ratio >= hop else None)
            row(f"S3 {op} through the {name} ≥ 0.9× direct (at least the nginx hop)",
                f"{ratio:.2f}× (nginx {hop:.2f}×)", ratio >= 0.9,
                f"s3-{'api' if name.startswith('/') else 'endpoint'}-{op.lower()}", status)
    k, ll = results.get(("1", "kikaku-edge", "0ms")), results.get(("1", "LiteLLM", "0ms"))
    if k and ll and ll["rps"]:
        row("≥ 100× LiteLLM's requests/s", f"{k['rps'] / ll['rps']:.0f}×", k["rps"] / ll["rps"] >= 100, "litellm")
    r5 = results.get(("5", "kikaku-edge", "0ms"))
    if r5:
        row("zero failed requests during reloads", str(r5["errors"]), r5["errors"] == 0, "reloads")
    return ["## Goals (issue 20), read against this run", "",
            "One Redis round trip per image admission is counted by the test suite, not here "
            "(`tests/state_backends.rs`: 2 EVALSHA per image request on one Redis, 3 on a Cluster).", "",
            "| goal | this run | | what dominates, and the next step (`benches/harness/goal_notes.yaml`) |",
            "|---|---|---|---|"] + rows + [""]


if __name__ == "__main__":
    main()
