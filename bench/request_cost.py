#!/usr/bin/python3
"""Instructions per request, counted by callgrind: the server's own cost
per request, free of the machine's noise.

For each binary given (--bin, and --baseline for another build to compare
with), evicorn runs one worker under `valgrind --tool=callgrind` serving
the hello plugin, and one client sends GET /plaintext on one keep-alive
connection, either one request at a time or --depth requests per write
(pipelined). The worker's instruction count is taken at two request counts,
--requests and 6x --requests, in two runs; the difference divided by the
difference in requests is the cost of one request, without the start-up and
shutdown the two runs share. callgrind counts instructions, not time:
the same binary, inputs and environment give the same count whatever else
the machine is doing (kernel work, the syscalls themselves, is not counted).

    /usr/bin/python3 bench/request_cost.py [--baseline build-baseline/build/evicorn]
"""
import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def drive(port, n, depth):
    """Sends n requests, depth per write, reading every response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    parser = benchlib.ResponseParser()
    done = 0
    while done < n:
        k = min(depth, n - done)
        s.sendall(REQUEST * k)
        got = 0
        while got < k:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("the server closed the connection")
            for status, _body, _close in parser.feed(data):
                if status != 200:
                    raise RuntimeError(f"status {status}")
                got += 1
        done += k
    s.close()


def worker_instructions(binary, plugin, requests, depth, workdir):
    plugins = os.path.join(workdir, "plugins")
    os.makedirs(plugins, exist_ok=True)
    shutil.copy(plugin, plugins)
    out = os.path.join(workdir, "callgrind.%p")
    port = benchlib.free_port()
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, "--trace-children=yes",
            binary, "--host", "127.0.0.1", "--port", str(port), "--plugins", plugins,
            "--no-access-log", "--workers", "1", "--log-level", "warning"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = benchlib.http_get(port, "/plaintext")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server under valgrind did not answer in 60 s")
            time.sleep(0.2)
        drive(port, requests - 1, depth)  # the readiness probe was one
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    files = sorted(glob.glob(os.path.join(workdir, "callgrind.*")))
    counts = {}
    for f in files:
        with open(f) as fh:
            for line in fh:
                if line.startswith("summary:") or line.startswith("totals:"):
                    counts[f] = int(line.split()[1])
                    break
        os.unlink(f)
    # The master serves nothing: the worker is the process with most work.
    return max(counts.values())


def cost(binary, plugin, requests, depth):
    per = []
    with tempfile.TemporaryDirectory(prefix="evicorn-cost-") as d1, \
            tempfile.TemporaryDirectory(prefix="evicorn-cost-") as d2:
        small = worker_instructions(binary, plugin, requests, depth, d1)
        big = worker_instructions(binary, plugin, 6 * requests, depth, d2)
        per.append((big - small) / (5 * requests))
    return per[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(benchlib.ROOT, "build", "evicorn"))
    ap.add_argument("--baseline", help="another build's evicorn, to compare with")
    ap.add_argument("--plugin", help="hello.so (default: beside each binary)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--depth", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (scripts/install-deps --valgrind)")
    bins = {"evicorn": args.bin}
    if args.baseline:
        bins["baseline"] = args.baseline
    res = {"requests": args.requests, "results": {}}
    for name, binary in bins.items():
        plugin = args.plugin or os.path.join(os.path.dirname(binary), "plugins", "hello.so")
        res["results"][name] = {"bin": binary}
        for depth in args.depth:
            ir = cost(binary, plugin, args.requests, depth)
            res["results"][name][f"depth_{depth}"] = ir
            print(f"{name}: {ir:,.0f} instructions per request (depth {depth})", flush=True)
    if args.baseline:
        for depth in args.depth:
            a = res["results"]["evicorn"][f"depth_{depth}"]
            b = res["results"]["baseline"][f"depth_{depth}"]
            print(f"depth {depth}: evicorn / baseline = {a / b:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
