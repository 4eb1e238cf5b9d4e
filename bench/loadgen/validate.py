#!/usr/bin/python3
"""Checks bench/loadgen against servers whose latency is known.

  1. delay: a server that answers every request after a fixed 10 ms
     (asyncio, keep-alive): loadgen's p50 must be ~10 ms (10-12 ms passes).
  2. stall: the same server without the delay, stopped with SIGSTOP for 1 s
     in the middle of the run: the requests that were due during the pause
     are charged for it, so p99 must be near a second and max at least 1 s,
     while p50 stays small.

    /usr/bin/python3 bench/loadgen/validate.py --loadgen build/bench/loadgen/loadgen [--json out]

The server runs pinned to --server-cpu, loadgen to --client-cpu; the server
is stopped by its PID on any exit. Exit status 0 when both checks pass."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib  # noqa: E402

SERVER = r'''
import asyncio, sys
delay = float(sys.argv[2])
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            if delay:
                await asyncio.sleep(delay)
            w.write(RESP)
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
'''


def start_server(port, delay, cpu):
    p = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", SERVER, str(port),
                          str(delay)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    if p.stdout.readline().strip() != b"ready":
        raise RuntimeError("validation server did not start")
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGCONT)
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def loadgen(args, port, rate, duration, pause_at=None, server=None):
    cmd = ["taskset", "-c", str(args.client_cpu), args.loadgen, "-r", str(rate), "-c", "32",
           "-d", str(duration), "-w", "1", f"http://127.0.0.1:{port}/"]
    lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    if pause_at is not None:
        time.sleep(1 + pause_at)  # warm-up, then into the measured part
        os.killpg(server.pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.killpg(server.pid, signal.SIGCONT)
    out, _ = lg.communicate(timeout=duration + 60)
    res = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    res["command"] = " ".join(cmd)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    benchlib.exit_on_signals()
    out = {}
    ok = True

    port = benchlib.free_port()
    srv = start_server(port, 0.010, args.server_cpu)
    try:
        r = loadgen(args, port, args.rate, args.duration)
    finally:
        stop(srv)
    p50 = r["latency_p50_us"] / 1e3
    good = 10.0 <= p50 <= 12.0 and r["completed"] == r["scheduled"]
    ok &= good
    out["delay"] = dict(r, passed=good, expected="p50 10-12 ms")
    print(f"fixed 10 ms delay at {args.rate} req/s: p50 {p50:.2f} ms, p99 "
          f"{r['latency_p99_us'] / 1e3:.2f} ms, {int(r['completed'])}/{int(r['scheduled'])} "
          f"answered: {'pass' if good else 'FAIL'} (expected p50 10-12 ms)")

    port = benchlib.free_port()
    srv = start_server(port, 0.0, args.server_cpu)
    try:
        r = loadgen(args, port, args.rate, args.duration, pause_at=args.duration / 2 - 0.5,
                    server=srv)
    finally:
        stop(srv)
    p50, p99, mx = (r["latency_p50_us"] / 1e3, r["latency_p99_us"] / 1e3,
                    r["latency_max_us"] / 1e3)
    # 1 s of a 5 s run is stalled: ~20 % of the requests wait, up to 1 s.
    good = p50 < 5 and p99 >= 700 and mx >= 950 and r["completed"] == r["scheduled"]
    ok &= good
    out["stall"] = dict(r, passed=good, expected="p50 < 5 ms, p99 >= 700 ms, max >= 950 ms")
    print(f"SIGSTOP for 1 s at {args.rate} req/s: p50 {p50:.2f} ms, p90 "
          f"{r['latency_p90_us'] / 1e3:.1f} ms, p99 {p99:.1f} ms, max {mx:.1f} ms, "
          f"{int(r['completed'])}/{int(r['scheduled'])} answered: {'pass' if good else 'FAIL'} "
          f"(expected p50 < 5 ms, p99 >= 700 ms, max >= 950 ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
