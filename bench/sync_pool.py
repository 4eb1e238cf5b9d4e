#!/usr/bin/python3
"""An async route's latency while the sync thread pool is saturated.

One evicorn worker (pinned to --server-cpu) serves the hello plugin (async
routes, run on the event loop) and the calculate plugin (POST /calculate/,
a sync route: 2 s of blocking work on the thread pool, --threads threads).
bench/loadgen (pinned to --client-cpu) sends GET /plaintext at a fixed
--rate, open loop, twice:

  idle       nothing else runs;
  saturated  --sync-conns client threads (twice the pool by default) keep
             POST /calculate/ requests going back to back on keep-alive
             connections, so every pool thread is busy and as many requests
             again wait in the pool's queue. The measurement starts once the
             first sync answers are back (the pool has been full for 2 s).

Reported: the async route's p50/p90/p99/p99.9/max in both phases, and the
sync answers per second during the saturated phase (a full pool gives
threads / 2 s).

    /usr/bin/python3 bench/sync_pool.py --loadgen build/bench/loadgen/loadgen [--json out]
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

BODY = b'{"a": 1, "b": 2.5}'


class Saturator:
    """conns threads, each POSTing /calculate/ in a loop on one keep-alive
    connection until stopped; answer times are kept."""

    def __init__(self, port, conns):
        self.port, self.conns = port, conns
        self.stop_flag = threading.Event()
        self.answers = []  # (time, status)
        self.errors = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(conns)]

    def run(self):
        c = None
        while not self.stop_flag.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                c.request("POST", "/calculate/", BODY, {"content-type": "application/json"})
                r = c.getresponse()
                r.read()
                with self.lock:
                    self.answers.append((time.monotonic(), r.status))
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.05)
        if c is not None:
            c.close()

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()

    def rate_between(self, t0, t1):
        with self.lock:
            n = sum(1 for t, st in self.answers if t0 <= t <= t1 and st == 200)
        return n / (t1 - t0) if t1 > t0 else None


def run_loadgen(args, port):
    cmd = ["taskset", "-c", str(args.client_cpu), args.loadgen, "-r", str(args.rate), "-c",
           str(args.conns), "-d", str(args.duration), "-w", str(args.warmup),
           f"http://127.0.0.1:{port}/plaintext"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120)
    res = {"command": " ".join(cmd[3:])}
    for line in out.stdout.splitlines():
        k, _, v = line.partition("=")
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    if out.returncode != 0 or "latency_p99_us" not in res:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr.strip()}")
    return res


def show(label, r):
    return (f"{label}: p50 {r['latency_p50_us']:.0f} us, p90 {r['latency_p90_us']:.0f} us, "
            f"p99 {r['latency_p99_us']:.0f} us, p99.9 {r['latency_p99_9_us']:.0f} us, max "
            f"{r['latency_max_us']:.0f} us, {int(r['completed'])}/{int(r['scheduled'])} answered")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(benchlib.ROOT, "build", "evicorn"))
    ap.add_argument("--plugins", default=os.path.join(benchlib.ROOT, "build", "plugins"))
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--rate", type=int, default=5000, help="async requests per second")
    ap.add_argument("--conns", type=int, default=64, help="loadgen connections")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--threads", type=int, default=40, help="evicorn --threads")
    ap.add_argument("--sync-conns", type=int, default=0, help="default: 2 x --threads")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--log")
    args = ap.parse_args()
    sync_conns = args.sync_conns or 2 * args.threads

    benchlib.exit_on_signals()
    benchlib.pin_self(args.client_cpu)
    folder = tempfile.mkdtemp(prefix="evicorn-sync-pool-")
    res = {"rate": args.rate, "threads": args.threads, "sync_conns": sync_conns,
           "duration_s": args.duration, "warmup_s": args.warmup}
    sat = None
    try:
        for name in ("hello.so", "calculate.so"):
            shutil.copy(os.path.join(args.plugins, name), folder)
        with benchlib.Evicorn(args.bin, folder, cpu=args.server_cpu, log_path=args.log,
                              extra=["--threads", str(args.threads)]) as srv:
            srv.wait_ready("/plaintext", timeout=20)
            res["server_command"] = " ".join(srv.command)
            res["idle"] = run_loadgen(args, srv.port)
            print(show("idle", res["idle"]), flush=True)

            sat = Saturator(srv.port, sync_conns)
            sat.start()
            t_wait = time.monotonic() + 30
            while not sat.answers and time.monotonic() < t_wait:
                time.sleep(0.05)
            if not sat.answers:
                raise RuntimeError("no answer from POST /calculate/ within 30 s")
            t0 = time.monotonic()
            res["saturated"] = run_loadgen(args, srv.port)
            t1 = time.monotonic()
            rate = sat.rate_between(t0, t1)
            res["sync_answers_per_s"] = rate
            res["sync_answers_per_s_full_pool"] = args.threads / 2.0
            res["sync_errors"] = sat.errors
            print(show("saturated", res["saturated"]) +
                  f"; sync answers {rate:.1f}/s (a full pool: {args.threads / 2.0:g}/s), "
                  f"{sat.errors} sync errors", flush=True)
            sat.stop()
    finally:
        if sat:
            sat.stop()
        shutil.rmtree(folder, ignore_errors=True)
    i, s = res["idle"], res["saturated"]
    res["p99_ratio"] = s["latency_p99_us"] / i["latency_p99_us"] if i["latency_p99_us"] else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
