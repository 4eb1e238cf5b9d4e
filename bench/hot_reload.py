#!/usr/bin/python3
"""Hot reload under load: how long a plugin swap takes to show, and whether
any request fails meanwhile.

Starts one evicorn (--workers 1, pinned to --server-cpu) with --plugins a
temp folder holding a copy of the probe plugin (GET /probe/version -> "1").
From this process (pinned to --client-cpu), --conns keep-alive connections
hit GET /probe/version back to back without pause, the whole time. Every
--interval seconds the other version is staged under a hidden name in the
folder (ignored by the watcher) and renamed over probe.so with os.rename:
v1 -> v2 -> v1 ... The reload time is from the rename to the first response
that carries the new version. A failed request is any non-200 answer, a body
other than "1"/"2", a connection error or close, or no answer within 5 s.
An old version seen on a request sent after the new one was first seen
counts as a "regression". Targets: median reload time <= 50 ms, 0 failed.

With --signed, a fresh Ed25519 key pair signs both versions
(scripts/plugin-sign), evicorn runs with --plugin-pubkey, and each swap
stages the signature before the file, as docs/plugins.md tells operators.

    /usr/bin/python3 bench/hot_reload.py [--reloads 20] [--signed] [--json out.json]
"""
import argparse
import errno
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

REQUEST = b"GET /probe/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
REQUEST_TIMEOUT = 5.0


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = benchlib.ResponseParser()
        self.sent_at = None

    def send(self):
        self.sent_at = time.perf_counter()
        n = self.sock.send(REQUEST)
        if n != len(REQUEST):
            raise OSError("short send")


SIGN = os.path.join(benchlib.ROOT, "scripts", "plugin-sign")


def sign_versions(versions, keydir):
    """Signs a copy of each version with a new key; returns the public key
    and {version: (plugin copy, signature)}."""
    subprocess.run([SIGN, "keygen", keydir], check=True, capture_output=True)
    signed = {}
    for v, src in versions.items():
        copy = os.path.join(keydir, f"probe-{v}.so")
        shutil.copyfile(src, copy)
        subprocess.run([SIGN, "sign", os.path.join(keydir, "plugins.key"), copy], check=True,
                       capture_output=True)
        signed[v] = copy
    return os.path.join(keydir, "plugins.pub"), signed


def stage(src, folder, name="probe.so"):
    """Copies src to a hidden name in folder, then renames it over name
    (its signature, src.sig, first when there is one). Returns the time
    right after the rename of the plugin."""
    if os.path.exists(src + ".sig"):
        tmp = os.path.join(folder, f".{name}.sig.staging")
        shutil.copyfile(src + ".sig", tmp)
        os.rename(tmp, os.path.join(folder, name + ".sig"))
    tmp = os.path.join(folder, f".{name}.staging")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(folder, name))
    return time.perf_counter()


def run(args, folder, log_path):
    versions = {"1": args.probe, "2": args.probe_v2}
    extra = list(getattr(args, "server_args", ()))
    if args.signed:
        keydir = os.path.join(folder, ".keys")
        pub, versions = sign_versions(versions, keydir)
        extra += ["--plugin-pubkey", pub]
    stage(versions["1"], folder)
    res = {"reloads": [], "failed": 0, "regressions": 0, "requests": 0, "reconnects": 0}
    with benchlib.Evicorn(args.bin, folder, cpu=args.server_cpu, log_path=log_path,
                          extra=extra) as srv:
        srv.wait_ready("/probe/version", timeout=20)
        status, body = benchlib.http_get(srv.port, "/probe/version")
        if status != 200 or body != b"1":
            raise RuntimeError(f"probe answers {status} {body!r}, expected 200 '1'")
        res["server_command"] = " ".join(srv.command)

        ep = select.epoll()
        conns = {}

        def connect():
            c = Conn(srv.port)
            conns[c.sock.fileno()] = c
            ep.register(c.sock.fileno(), select.EPOLLIN)
            c.send()

        def drop(c):
            ep.unregister(c.sock.fileno())
            del conns[c.sock.fileno()]
            c.sock.close()

        for _ in range(args.conns):
            connect()

        current = "1"          # the version the folder holds
        switched_at = None      # when the current version was first seen
        target = None           # version being waited for
        t_rename = None
        next_action = time.perf_counter() + args.warmup
        reloads_left = args.reloads
        resp_times = []         # receive times since the rename, for the stall
        t_start = time.perf_counter()
        end_deadline = t_start + args.warmup + args.reloads * (args.interval + 5) + 10

        while True:
            now = time.perf_counter()
            if now > end_deadline:
                raise TimeoutError("hot-reload run overran its time limit")
            if target is None and now >= next_action:
                if reloads_left == 0:
                    break
                target = "2" if current == "1" else "1"
                t_rename = stage(versions[target], folder)
                resp_times = []
                reloads_left -= 1
            if target is not None and now - t_rename > args.reload_timeout:
                res["reloads"].append({"to": target, "ms": None})
                print(f"reload to v{target}: not seen within {args.reload_timeout} s",
                      file=sys.stderr)
                current, target = target, None
                switched_at = now
                next_action = now + args.interval
            for fd, _ in ep.poll(0.005):
                c = conns.get(fd)
                if c is None:
                    continue
                try:
                    data = c.sock.recv(65536)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        continue
                    data = None
                t = time.perf_counter()
                if not data:
                    # The server closed or reset a connection with a request
                    # in flight: that request failed.
                    res["failed"] += 1
                    drop(c)
                    connect()
                    continue
                try:
                    done = c.parser.feed(data)
                except ValueError:
                    res["failed"] += 1
                    drop(c)
                    connect()
                    continue
                if not done:
                    continue
                status, body, close = done[0]
                res["requests"] += 1
                text = body.decode("latin-1")
                if status != 200 or text not in ("1", "2"):
                    res["failed"] += 1
                    if res["failed"] <= 5:
                        print(f"failed request: {status} {body[:80]!r}", file=sys.stderr)
                elif target is not None and text == target:
                    ms = (t - t_rename) * 1000.0
                    gaps = [b - a for a, b in zip([t_rename] + resp_times, resp_times + [t])]
                    res["reloads"].append({"to": target, "ms": ms,
                                           "max_gap_ms": max(gaps) * 1000.0})
                    current, target = target, None
                    switched_at = t
                    next_action = t + args.interval
                elif (target is None and switched_at is not None and text != current
                      and c.sent_at > switched_at):
                    res["regressions"] += 1
                if target is not None:
                    resp_times.append(t)
                if close:
                    res["reconnects"] += 1
                    drop(c)
                    connect()
                else:
                    c.send()
            # A request unanswered for too long counts as failed.
            now = time.perf_counter()
            for c in list(conns.values()):
                if now - c.sent_at > REQUEST_TIMEOUT:
                    res["failed"] += 1
                    drop(c)
                    connect()
        res["duration_s"] = time.perf_counter() - t_start
        for c in list(conns.values()):
            drop(c)
        ep.close()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(benchlib.ROOT, "build", "evicorn"))
    ap.add_argument("--probe", default=os.path.join(benchlib.ROOT, "build", "test-plugins",
                                                    "probe.so"))
    ap.add_argument("--probe-v2", default=os.path.join(benchlib.ROOT, "build", "test-plugins",
                                                       "probe_v2.so"))
    ap.add_argument("--reloads", type=int, default=20, help="swaps, alternating v1/v2")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive client connections")
    ap.add_argument("--interval", type=float, default=0.5,
                    help="seconds between a swap showing and the next swap")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--reload-timeout", type=float, default=5.0)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--signed", action="store_true",
                    help="sign both versions and run evicorn with --plugin-pubkey")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--log", help="append the server's output here")
    args = ap.parse_args()

    benchlib.exit_on_signals()
    benchlib.pin_self(args.client_cpu)
    for p in (args.bin, args.probe, args.probe_v2):
        if not os.path.exists(p):
            sys.exit(f"missing {p}")

    folder = tempfile.mkdtemp(prefix="evicorn-hot-reload-")
    try:
        res = run(args, folder, args.log)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    times = [r["ms"] for r in res["reloads"] if r["ms"] is not None]
    gaps = [r["max_gap_ms"] for r in res["reloads"] if r.get("max_gap_ms") is not None]
    res.update({
        "reloads_done": len(res["reloads"]),
        "reloads_seen": len(times),
        "reload_ms_median": benchlib.median(times),
        "reload_ms_min": min(times) if times else None,
        "reload_ms_max": max(times) if times else None,
        "reload_ms_p90": benchlib.percentile(times, 90),
        "max_gap_ms_median": benchlib.median(gaps),
        "req_per_s": res["requests"] / res["duration_s"] if res["duration_s"] else None,
        "conns": args.conns,
        "interval_s": args.interval,
        "signed": args.signed,
        "plugin_bytes": os.path.getsize(args.probe),
        "targets": {"reload_ms_median": 50.0, "failed": 0},
        "client_cpu": args.client_cpu,
        "server_cpu": args.server_cpu,
    })
    res["reload_met"] = (res["reload_ms_median"] is not None
                         and res["reload_ms_median"] <= 50.0
                         and res["reloads_seen"] == res["reloads_done"])
    res["failed_met"] = res["failed"] == 0
    for i, r in enumerate(res["reloads"]):
        ms = "not seen" if r["ms"] is None else f"{r['ms']:.1f} ms"
        print(f"reload {i + 1} -> v{r['to']}: {ms}")
    med = res["reload_ms_median"]
    print(f"{res['reloads_seen']}/{res['reloads_done']} reloads seen; median "
          f"{'n/a' if med is None else f'{med:.1f}'} ms (min {res['reload_ms_min'] or 0:.1f}, "
          f"max {res['reload_ms_max'] or 0:.1f}), target <= 50 ms; {res['requests']} requests "
          f"({res['req_per_s']:.0f}/s over {args.conns} connections), failed "
          f"{res['failed']}, regressions {res['regressions']}, reconnects "
          f"{res['reconnects']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["failed_met"] and res["reloads_seen"] == res["reloads_done"] else 1


if __name__ == "__main__":
    sys.exit(main())
