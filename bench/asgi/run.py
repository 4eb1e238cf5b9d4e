#!/usr/bin/python3
"""FastAPI through evicorn's ASGI bridge, against uvicorn and hypercorn.

    /usr/bin/python3 bench/asgi/run.py [--runs 5] [--duration 10] [--quick]

One app for every server: tests/asgi_app/main.py, unmodified (its /json and
/plaintext are `async def`, /sleep awaits asyncio.sleep(1)). Every server
runs one worker pinned to CPU 0; the load generators run pinned to CPU 1:

  * wrk -t1 -c64 -d<duration>s on /json and /plaintext, each server in turn,
    --runs times, the order rotated every run; medians and ratios;
  * 2000 concurrent connections, each one GET /sleep (asyncio.sleep(1)),
    --rounds times: wall time until the last answer, and how many succeeded.

Before each measurement the script waits (up to --quiet-wait seconds) until
no other wrk or bench/run is running, so two benchmarks never share the CPUs.
Every server is stopped by its PID (process group), on any exit. Raw output
goes to bench/asgi/results/<UTC timestamp>/, with summary.json and
summary.md (the section for docs/benchmarks.md).

Only Debian's /usr/bin/python3 with python3-uvicorn, python3-hypercorn,
python3-uvloop, python3-httptools and wrk are needed, plus a built evicorn
(evicorn's Python module in build/python, run by the same interpreter).
"""
import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
APP_DIR = os.path.join(ROOT, "tests", "asgi_app")
PYTHON = "/usr/bin/python3"
SERVER_CPU = 0
CLIENT_CPU = 1
# Debian's uvicorn (0.17) and hypercorn (0.13) predate lifespan state; the
# app then yields none (the benchmark routes do not use it).
APP_ENV = {"ASGI_APP_NO_YIELD_STATE": "1"}


def others_running():
    """Other benchmarks on this machine (wrk, bench/run), not ours."""
    mine = {os.getpid()}
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in mine:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        exe = os.path.basename(argv[0]).decode(errors="replace") if argv else ""
        cmd = b" ".join(argv).decode(errors="replace")
        if exe == "wrk" or "bench/run" in cmd or "weather_10k" in cmd or "hot_reload.py" in cmd:
            found.append("%s %s" % (pid, cmd[:80]))
    return found


def wait_quiet(limit):
    deadline = time.monotonic() + limit
    warned = False
    while True:
        busy = others_running()
        if not busy:
            return True
        if time.monotonic() > deadline:
            print("warning: measuring while other benchmarks run: %s" % busy, file=sys.stderr)
            return False
        if not warned:
            print("waiting for other benchmarks to finish: %s" % busy, file=sys.stderr)
            warned = True
        time.sleep(2)


def cpu_ticks(pid):
    """utime+stime of pid and its children processes (all threads)."""
    total = 0
    for p in [pid] + benchlib.children(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def shown_command(server):
    """As started, with paths relative to the repository."""
    return "cd %s && %s" % (os.path.relpath(server.cwd, ROOT),
                            " ".join(server.command).replace(ROOT + "/", ""))


def make_servers(build, tmp, logdir, app):
    """The three servers, each pinned to SERVER_CPU in its own process group,
    logging to <logdir>/<name>.log."""
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins, exist_ok=True)
    p1, p2, p3 = benchlib.free_port(), benchlib.free_port(), benchlib.free_port()
    env = dict(os.environ, **APP_ENV)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(build, "python")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))

    def server(name, argv, cwd, port):
        return benchlib.PinnedServer(name, argv, cpu=SERVER_CPU, port=port,
                                     log_path=os.path.join(logdir, "%s.log" % name), cwd=cwd,
                                     env=env, new_session=True)

    return [
        # The same interpreter as the peers: evicorn's module from the build
        # tree, run by PYTHON (build/evicorn would pick the venv or PATH's).
        server("evicorn", [PYTHON, "-m", "evicorn", app, "--app-dir", APP_DIR,
                           "--host", "127.0.0.1", "--port", str(p1), "--plugins", plugins,
                           "--workers", "1", "--no-access-log", "--log-level", "warning"],
               ROOT, p1),
        server("uvicorn", [PYTHON, "-m", "uvicorn", app, "--app-dir", APP_DIR, "--host",
                           "127.0.0.1", "--port", str(p2), "--workers", "1", "--loop", "uvloop",
                           "--http", "httptools", "--no-access-log", "--log-level", "warning"],
               ROOT, p2),
        server("hypercorn", [PYTHON, "-m", "hypercorn", app, "--bind",
                             "127.0.0.1:%d" % p3, "--workers", "1", "--worker-class", "uvloop",
                             "--backlog", "2048"],
               APP_DIR, p3),
    ]


def run_wrk(server, path, duration, conns, out_path):
    cmd = benchlib.taskset(CLIENT_CPU, ["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
                                        "--latency", "http://127.0.0.1:%d%s" % (server.port, path)])
    t0 = cpu_ticks(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    t1 = cpu_ticks(server.proc.pid)
    with open(out_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + out)
    wrk = benchlib.parse_wrk(out, unit="ms")
    requests = wrk["requests"] or 0
    return {
        "rps": wrk["rps"] or 0.0,
        "requests": requests,
        "p50_ms": wrk["p50"],
        "p99_ms": wrk["p99"],
        "socket_errors": wrk["socket_errors"],
        "non2xx": wrk["non2xx"],
        "cpu_us_per_request": ((t1 - t0) / os.sysconf("SC_CLK_TCK") * 1e6 / requests
                               if requests else None),
    }


# ---- 2000 connections, each awaiting asyncio.sleep(1) on the server ----

SLEEP_CLIENT = r'''
import asyncio, json, sys, time
port, n, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
REQ = b"GET /sleep HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
async def one():
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(REQ)
        data = await r.read()
        w.close()
        return data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"slept":1.0}')
    except OSError:
        return False
async def main():
    t0 = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(n)]), timeout)
    return time.monotonic() - t0, sum(results)
try:
    wall, ok = asyncio.run(main())
except asyncio.TimeoutError:
    wall, ok = timeout, -1
print(json.dumps({"wall_s": wall, "ok": ok}))
'''


def run_sleep(server, conns, out_path):
    cmd = benchlib.taskset(CLIENT_CPU, [PYTHON, "-c", SLEEP_CLIENT, str(server.port), str(conns),
                                        "60"])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    with open(out_path, "w") as f:
        f.write(out.stdout + out.stderr)
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"wall_s": None, "ok": 0}
    if res.get("ok", 0) < 0:  # timed out as a whole
        res["ok"] = 0
    return res


def median(xs):
    """The median of the values that are not None (None if there are none)."""
    return benchlib.median([x for x in xs if x is not None])


def versions():
    def deb(pkg):
        try:
            return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                                  capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    return {
        "python": platform.python_version(),
        "fastapi": deb("python3-fastapi"), "starlette": deb("python3-starlette"),
        "uvicorn": deb("python3-uvicorn"), "hypercorn": deb("python3-hypercorn"),
        "uvloop": deb("python3-uvloop"), "httptools": deb("python3-httptools"),
        "wrk": deb("wrk"), "libpython": deb("libpython3.11"),
    }


def summarize(results, sleep, servers, args, stamp):
    lines = ["## FastAPI through the ASGI bridge", ""]
    what = ("the same unmodified FastAPI app (`tests/asgi_app/main.py`; `/json` and "
            "`/plaintext` are `async def`)" if args.app == "main:app" else
            "the same app (`%s` in `tests/asgi_app`)" % args.app)
    lines.append("`python -m evicorn %s` (evicorn's module in the same interpreter, the ASGI "
                 "bridge `plugins/asgi` built in) against "
                 "uvicorn and hypercorn, all serving %s. One " % (args.app, what) +
                 "worker pinned to CPU 0, wrk pinned to CPU 1 (`taskset -c 1 wrk -t1 -c%d "
                 "-d%ds`), %d runs per server and route with the order rotated; medians. "
                 "Run `%s` of `bench/asgi/run.py`." % (args.conns, args.duration, args.runs, stamp))
    lines.append("")
    lines.append("| route | server | req/s (median) | vs uvicorn | p50 ms | p99 ms | server CPU "
                 "µs/req | errors |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for path in args.routes:
        base = median([r["rps"] for r in results[path]["uvicorn"]])
        for s in servers:
            rs = results[path][s.name]
            rps = median([r["rps"] for r in rs])
            lines.append("| `%s` | %s | %.0f | %s | %.2f | %.2f | %.1f | %d |" % (
                path, s.name, rps, ("%.2f×" % (rps / base)) if base else "-",
                median([r["p50_ms"] for r in rs]) or 0, median([r["p99_ms"] for r in rs]) or 0,
                median([r["cpu_us_per_request"] for r in rs]) or 0,
                sum(r["socket_errors"] + r["non2xx"] for r in rs)))
    lines.append("")
    lines.append("All runs (req/s): " + "; ".join(
        "%s %s: %s" % (path, s.name, ", ".join("%.0f" % r["rps"] for r in results[path][s.name]))
        for path in args.routes for s in servers) + ".")
    lines.append("")
    if args.rounds <= 0:
        return "\n".join(lines) + "\n"
    lines.append("`GET /sleep` (`await asyncio.sleep(1)`), %d concurrent connections opened at "
                 "once, one request each, %d rounds (median wall time until the last answer; "
                 "answers that were 200 with the right body):" % (args.sleep_conns, args.rounds))
    lines.append("")
    lines.append("| server | wall time (s) | successful |")
    lines.append("| --- | ---: | ---: |")
    for s in servers:
        rs = sleep[s.name]
        lines.append("| %s | %.2f | %s |" % (
            s.name, median([r["wall_s"] for r in rs]) or 0,
            " / ".join("%d of %d" % (r["ok"], args.sleep_conns) for r in rs)))
    lines.append("")
    lines.append("Servers, as started (each from the folder shown, with "
                 "`ASGI_APP_NO_YIELD_STATE=1`: Debian's uvicorn 0.17 and hypercorn 0.13 predate "
                 "lifespan state; the benchmark routes do not use it):")
    lines.append("")
    lines.append("```sh")
    for s in servers:
        lines.append(re.sub(r"(--port |--bind 127\.0\.0\.1:|--plugins )\S+",
                            lambda m: m.group(1) + ("$PLUGINS" if "plugins" in m.group(1)
                                                    else "$PORT"), shown_command(s)))
    lines.append("```")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--sleep-conns", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--routes", nargs="+", default=["/json", "/plaintext"])
    ap.add_argument("--servers", default="evicorn,uvicorn,hypercorn")
    ap.add_argument("--app", default="main:app",
                    help="module:attr in tests/asgi_app (bare:app: an app that costs nothing)")
    ap.add_argument("--quick", action="store_true", help="3 runs of 5 s, 1 sleep round")
    ap.add_argument("--quiet-wait", type=float, default=1800)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration, args.rounds, args.warmup = 3, 5, 1, 2
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit("bench/asgi/run.py: %s is not installed" % tool)
    if not glob.glob(os.path.join(args.build, "python", "evicorn", "_core*.so")):
        sys.exit("bench/asgi/run.py: evicorn's Python module is not built in %s/python"
                 % args.build)
    if args.app != "main:app":
        args.rounds = 0  # the /sleep scenario needs main:app
    nofile = benchlib.raise_nofile(args.sleep_conns + 100)
    if nofile < args.sleep_conns + 100:
        print("warning: RLIMIT_NOFILE %d is low for %d connections" % (nofile, args.sleep_conns),
              file=sys.stderr)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    os.makedirs(outdir)
    tmp = tempfile.mkdtemp(prefix="evicorn-asgi-bench-")
    wanted = args.servers.split(",")
    servers = [s for s in make_servers(args.build, tmp, outdir, args.app) if s.name in wanted]
    results = {p: {s.name: [] for s in servers} for p in args.routes}
    sleep = {s.name: [] for s in servers}
    with open(os.path.join(outdir, "commands.txt"), "w") as f:
        f.write("$ " + " ".join([sys.executable] + sys.argv) + "\n")
        for s in servers:
            f.write("%s: %s\n" % (s.name, shown_command(s)))
    meta = {"stamp": stamp, "args": vars(args), "versions": versions(),
            "cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
            "kernel": platform.release()}
    try:
        wait_quiet(args.quiet_wait)
        for s in servers:
            s.start().wait_ready(args.routes[0])
        for s in servers:  # warm up: imports, caches, JIT-less but still
            for path in args.routes:
                run_wrk(s, path, args.warmup, args.conns, os.path.join(outdir, "warmup.txt"))
        for path in args.routes:
            for run in range(args.runs):
                order = servers[run % len(servers):] + servers[:run % len(servers)]
                for s in order:
                    wait_quiet(args.quiet_wait)
                    r = run_wrk(s, path, args.duration, args.conns,
                                os.path.join(outdir, "wrk-%s-%s-%d.txt" % (
                                    path.strip("/"), s.name, run + 1)))
                    results[path][s.name].append(r)
                    print("%-10s %-10s run %d: %8.0f req/s  %5.1f us CPU/req" % (
                        path, s.name, run + 1, r["rps"], r["cpu_us_per_request"] or 0),
                        flush=True)
        for rnd in range(args.rounds):
            for s in servers:
                wait_quiet(args.quiet_wait)
                time.sleep(1)  # let the previous round's sockets go
                r = run_sleep(s, args.sleep_conns, os.path.join(outdir, "sleep-%s-%d.txt" % (
                    s.name, rnd + 1)))
                sleep[s.name].append(r)
                print("/sleep x%d %-10s round %d: %s s, %s ok" % (
                    args.sleep_conns, s.name, rnd + 1,
                    "%.2f" % r["wall_s"] if r["wall_s"] is not None else "-", r["ok"]), flush=True)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    meta["results"] = results
    meta["sleep"] = sleep
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(meta, f, indent=1)
    md = summarize(results, sleep, servers, args, stamp)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    print("results in %s" % os.path.relpath(outdir, ROOT))


if __name__ == "__main__":
    main()
