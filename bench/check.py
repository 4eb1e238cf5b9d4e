#!/usr/bin/python3
"""Checks that a benchmarked server is up and answers the benchmark routes
as expected: GET /plaintext -> "Hello, World!" (text/plain) and GET /json ->
{"message":"Hello, World!"} (application/json).

    check.py PORT [--wait SECONDS]

Exit 0 when both routes are right, 1 when a route answers wrongly, 2 when
the server did not answer within the wait (default 0: one try)."""
import argparse
import http.client
import json
import sys
import time


def fetch(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        c.close()


def check(port):
    problems = []
    st, ct, body = fetch(port, "/plaintext")
    if st != 200 or body != b"Hello, World!" or not ct.startswith("text/plain"):
        problems.append(f"/plaintext: {st} {ct!r} {body[:80]!r}")
    st, ct, body = fetch(port, "/json")
    try:
        ok = json.loads(body) == {"message": "Hello, World!"}
    except ValueError:
        ok = False
    if st != 200 or not ok or not ct.startswith("application/json"):
        problems.append(f"/json: {st} {ct!r} {body[:80]!r}")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--wait", type=float, default=0.0)
    a = ap.parse_args()
    deadline = time.monotonic() + a.wait
    while True:
        try:
            problems = check(a.port)
        except OSError as e:
            if time.monotonic() >= deadline:
                print(f"port {a.port}: no answer: {e}", file=sys.stderr)
                return 2
            time.sleep(0.1)
            continue
        for p in problems:
            print(f"port {a.port}: wrong answer on {p}", file=sys.stderr)
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
