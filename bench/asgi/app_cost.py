#!/usr/bin/python3
"""What one request costs inside the FastAPI app alone, with no server.

    /usr/bin/python3 bench/asgi/app_cost.py [--path /json] [--requests N]
        [--app-dir DIR --app MODULE:ATTR]

Calls tests/asgi_app/main.py's app (or --app from --app-dir) directly (a prepared scope, a receive
that returns an empty body, a send that drops the messages) on a uvloop
loop, N times after a warm-up, and prints microseconds per request. This is
the floor under any ASGI server's cost per request for that route: the
server's own work (sockets, parsing, scope, send) comes on top of it.
bench/asgi/interp_cost runs it under callgrind to count instructions.
"""
import argparse
import asyncio
import os
import sys
import time

import importlib

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_APP_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "asgi_app")
os.environ.setdefault("ASGI_APP_NO_YIELD_STATE", "1")


def load_app(app_dir, spec):
    sys.path.insert(0, os.path.abspath(app_dir))
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


async def run(app, path, warmup, n):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    for _ in range(warmup):
        await app(dict(scope), receive, send)
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="/json")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--app-dir", default=DEFAULT_APP_DIR)
    ap.add_argument("--app", default="main:app", help="MODULE:ATTR in --app-dir")
    args = ap.parse_args()
    app = load_app(args.app_dir, args.app)
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    per = loop.run_until_complete(run(app, args.path, args.warmup, args.requests))
    print("%s %.1f us/request (%.0f requests/s on one core)" % (args.path, per * 1e6, 1 / per))


if __name__ == "__main__":
    main()
