"""What the harness scripts share (run.py, streams.py, access_log.py): the
paths, the bench key and bodies, processes and their ports, memory and CPU
read from /proc, the gateway's config derived from conf/bench.yaml, oha
runs and their medians, and a report section replaced in place."""

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "kikaku-edge"  # --bin overrides
KEY = "kikaku_bench_key"
BODY_GATEWAY = json.dumps({"model": "seedream-4.0", "prompt": "a cat", "size": "1K"})
# What the gateway sends upstream for that body (alias resolved, defaults filled):
# the direct and nginx runs send it as is.
BODY_UPSTREAM = json.dumps({"model": "seedream-4-0-250828", "prompt": "a cat", "size": "1024x1024"})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pids):
    """User + system CPU time consumed so far by these processes (all threads)."""
    ticks = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid):
    """A process and its descendants (nginx workers, uvicorn workers)."""
    out = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        kids = []
    for k in kids:
        out.extend(children(int(k)))
    return out


class Proc:
    def __init__(self, args, env=None, cwd=None):
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)

    def pids(self):
        return children(self.p.pid)

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(timeout=10)
        except Exception:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except Exception:
                pass


def write_gateway_conf(cfg, dir_, public, admin, name, access_log="off"):
    """Point a bench.yaml-derived config at the harness's ports and data
    directory, access log off (or to `access_log`), and write it to
    `dir_/name`."""
    cfg["listeners"] = {"public": {"address": f"127.0.0.1:{public}"},
                        "admin": {"address": f"127.0.0.1:{admin}"}}
    cfg["data_dir"] = str(Path(dir_) / "data")
    cfg["logging"] = {"access_log": access_log}
    path = Path(dir_) / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def gateway_conf(dir_, public, admin, sim_port, threads=None, access_log="off"):
    """conf/bench.yaml, pointed at the external simulator, plus a pass-through
    route; `threads` overrides its `server.threads`."""
    cfg = yaml.safe_load((ROOT / "conf" / "bench.yaml").read_text())
    if threads:
        cfg.setdefault("server", {})["threads"] = threads
    cfg.pop("simulators", None)
    cfg.pop("storage", None)
    cfg["routes"] = [r for r in cfg["routes"] if "handler" in r and r["handler"]["type"] in (
        "image_generation", "image_usage", "image_logs")]
    cfg["upstreams"] = {"ark": {"endpoints": [{"address": f"127.0.0.1:{sim_port}"}],
                                "keepalive": {"enabled": True, "idle_seconds": 60}}}
    cfg["routes"].append({"name": "passthrough", "match": {"path_prefix": "/healthz"},
                          "upstream": "ark"})
    return write_gateway_conf(cfg, dir_, public, admin, "gateway.yaml", access_log)


def oha(url, seconds, conns, body=None, headers=(), rate=None, method="POST"):
    """Run oha; returns its JSON summary."""
    args = ["oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-c", str(conns),
            "-m", method, url]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        args += ["-d", body, "-T", "application/json"]
    if rate:
        args += ["-q", str(rate)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed: {out.stderr[-500:]}")
    return json.loads(out.stdout)


def summarize(j):
    s = j["summary"]
    p = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {})
    # Requests still in flight when the duration ends are cut off by oha
    # itself ("aborted due to deadline"): not failures of the target.
    failed = {k: v for k, v in j.get("errorDistribution", {}).items() if "aborted due to deadline" not in k}
    errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(failed.values())
    return {
        "rps": s.get("requestsPerSec") or 0.0,
        "p50": (p.get("p50") or 0) * 1000,
        "p90": (p.get("p90") or 0) * 1000,
        "p99": (p.get("p99") or 0) * 1000,
        "errors": errors,
        "requests": sum(codes.values()) + sum(failed.values()),
    }


def measured(proc, run):
    """Summarize one oha run, with the CPU time `proc` spent per request."""
    pids = proc.pids() if proc else []
    before = cpu_seconds(pids)
    r = summarize(run())
    if pids and r["requests"]:
        r["cpu_us"] = (cpu_seconds(pids) - before) * 1e6 / r["requests"]
    return r


def median_of(runs):
    """One row from several rounds of the same point: the median of each
    figure, errors and requests summed."""
    if len(runs) == 1:
        return runs[0]
    out = {}
    for field in ("rps", "p50", "p90", "p99", "cpu_us"):
        vals = sorted(r[field] for r in runs if field in r)
        if vals:
            out[field] = vals[len(vals) // 2]
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["rounds"] = len(runs)
    return out


def rounds(points, n, measure):
    """Measure every point once per round, round after round (so a slow
    minute on the shared machine hits every target alike); the median row
    of each point."""
    got = {key: [] for key in points}
    for _ in range(n):
        for key in points:
            got[key].append(measure(key))
    return {key: median_of(runs) for key, runs in got.items()}


def scenario_args(ap):
    """The options every separately run scenario takes: --seconds, --rounds, --out."""
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))


def run_scenario(prefix, scenario, bins, args):
    """`scenario(bins, tmp, procs, seconds, rounds)` in a fresh temporary
    directory; every process it started is stopped, whatever happens."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    procs = []
    try:
        return scenario(bins, tmp, procs, args.seconds, args.rounds)
    finally:
        for p in reversed(procs):
            p.stop()


def write_section(out, begin, end, lines, number, script, detail=""):
    """A section measured on its own: `lines` with a footer naming the
    script, the time, the revision (and `detail`), put in place in the
    report at `out`; returns the block."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    block = [begin, *lines, f"_Section {number} measured separately by `benches/harness/{script}` on {when}, "
             f"kikaku-edge `{rev}`{detail}._", end]
    replace_section(out, begin, end, block)
    return block


def replace_section(out, begin, end, block, before="## Goals"):
    """Put `block` (lines, markers included) into the report at `out`:
    over the part between the markers when there is one, else before the
    heading `before` (or at the end)."""
    out = Path(out)
    text = out.read_text() if out.exists() else ""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: "\n".join(block), text)
    else:
        at = text.find(before)
        text = (text[:at] + "\n".join(block) + "\n\n" + text[at:]) if at >= 0 else text + "\n".join(block) + "\n"
    out.write_text(text)


def nginx_conf(dir_, port, upstream_port, location_extra="", workers=2, connections=4096):
    conf = f"""
worker_processes {workers};
pid {dir_}/nginx.pid;
error_log {dir_}/nginx-error.log;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {dir_}/body;
  proxy_temp_path {dir_}/proxy;
  fastcgi_temp_path {dir_}/fastcgi;
  uwsgi_temp_path {dir_}/uwsgi;
  scgi_temp_path {dir_}/scgi;
  upstream sim {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";{location_extra}
    }}
  }}
}}
"""
    path = Path(dir_) / "nginx.conf"
    path.write_text(conf)
    return path
