#!/usr/bin/python3
"""Memory per idle keep-alive connection of a running server.

Against a server already started (by bench/run) on --port, whose process
tree is rooted at --pid: samples the summed VmRSS of the tree (master and
workers), opens N connections (batches, from this process pinned to
--client-cpu), sends one GET --path on each and reads its answer, so each
connection has served a request and sits idle in keep-alive; waits --settle
seconds, samples the RSS again, then checks how many connections the server
still holds open (a closed one reads EOF). The figure is the growth over N.

    /usr/bin/python3 bench/idle_conns.py --port P --pid PID [-n 10000] [--json out]
"""
import argparse
import json
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from async_sleep import open_connections  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's root process")
    ap.add_argument("--name", default="server")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/plaintext")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.n <= 0:
        ap.error("-n must be positive")

    benchlib.exit_on_signals()
    benchlib.pin_self(args.client_cpu)
    limit = benchlib.raise_nofile(args.n + 256)
    if limit < args.n + 64:
        sys.exit(f"RLIMIT_NOFILE is {limit}: too low for {args.n} connections")

    res = {"name": args.name, "n": args.n, "path": args.path}
    time.sleep(0.3)
    res["pids"] = benchlib.tree_pids(args.pid)
    res["rss_before_kib"] = benchlib.tree_rss_kib(args.pid)
    deadline = time.monotonic() + args.timeout
    t0 = time.perf_counter()
    socks = []
    try:
        socks = open_connections(args.port, args.n, args.batch, deadline)
        res["connect_s"] = time.perf_counter() - t0
        req = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        ep = select.epoll(sizehint=args.n)
        parsers = {}
        for s in socks:
            s.send(req)
            ep.register(s.fileno(), select.EPOLLIN)
            parsers[s.fileno()] = benchlib.ResponseParser()
        ok = failed = 0
        pending = len(socks)
        while pending and time.monotonic() < deadline:
            for fd, _ in ep.poll(0.5):
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                done = parsers[fd].feed(data) if data else None
                if data and not done:
                    continue
                ep.unregister(fd)
                pending -= 1
                if done and done[0][0] == 200 and not done[0][2]:
                    ok += 1
                else:
                    failed += 1
        ep.close()
        res["answered_ok"] = ok
        res["failed"] = failed + pending
        time.sleep(args.settle)
        res["rss_after_kib"] = benchlib.tree_rss_kib(args.pid)
        # Still open? A connection the server closed is readable (EOF).
        ep = select.epoll(sizehint=args.n)
        for s in socks:
            ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        closed = len({fd for fd, _ in ep.poll(0.2)})
        ep.close()
        res["still_open"] = len(socks) - closed
    except (OSError, TimeoutError) as e:
        res["error"] = str(e)
        res.setdefault("rss_after_kib", benchlib.tree_rss_kib(args.pid))
        res.setdefault("still_open", 0)
    finally:
        for s in socks:
            s.close()
    res["rss_per_conn_kib"] = (res["rss_after_kib"] - res["rss_before_kib"]) / args.n
    print(f"{args.name}: {res.get('answered_ok', 0)}/{args.n} answered, "
          f"{res['still_open']} still open after {args.settle:g} s; RSS {res['rss_before_kib']:,}"
          f" -> {res['rss_after_kib']:,} KiB: {res['rss_per_conn_kib']:.2f} KiB per connection"
          + (f" ({res['error']})" if "error" in res else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if "error" not in res and res["still_open"] == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
