"""What the harness scripts share (run.py, streams.py): the paths, the
bench key, processes and their ports, memory and CPU read from /proc, and
the gateway's config derived from conf/bench.yaml."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "kikaku-edge"  # --bin overrides
KEY = "kikaku_bench_key"


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


def write_gateway_conf(cfg, dir_, public, admin, name):
    """Point a bench.yaml-derived config at the harness's ports and data
    directory, access log off, and write it to `dir_/name`."""
    cfg["listeners"] = {"public": {"address": f"127.0.0.1:{public}"},
                        "admin": {"address": f"127.0.0.1:{admin}"}}
    cfg["data_dir"] = str(Path(dir_) / "data")
    cfg["logging"] = {"access_log": "off"}
    path = Path(dir_) / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def gateway_conf(dir_, public, admin, sim_port, threads=None):
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
    return write_gateway_conf(cfg, dir_, public, admin, "gateway.yaml")
