#!/usr/bin/env python3
"""Static files: a 1 KiB, a 50 KiB and a 1 MiB file from a folder, served by
evicorn (--static), nginx (sendfile, with and without open_file_cache), h2o
and Granian's static mount; and the 50 KiB file through FastAPI's
FileResponse under evicorn (the ASGI bridge, pathsend), uvicorn and Granian.

    python3 bench/static/run.py [--rounds 3] [--duration 10] [--warmup 2]
                                [--only NAME,...] [--quick] [--docs]
                                [--report RESULTS_DIR]

Contenders (--only takes names, or a group: static, fileresponse):

  static folder, GET /static/f1k.bin, /static/f50k.bin, /static/f1m.bin
    evicorn         <build>/evicorn --static /static=DIR (no plugins); skipped,
                    and said so, while the binary has no --static
    nginx           Debian's nginx: sendfile on, tcp_nopush on, one worker,
                    no access log, keep-alive without limit, open_file_cache
                    off (its default): the reference of the ratios
    nginx-ofc       the same nginx with open_file_cache max=1000 inactive=20s:
                    what caching open descriptors is worth
    h2o             Debian's h2o 2.2.5, file.dir, num-threads 1, no access log
    granian-static  Granian's own static mount (--static-path-route /static
                    --static-path-mount DIR) in front of a trivial ASGI app
                    (apps/plain.py)
  FastAPI FileResponse, GET /file (apps/fileresponse.py, the 50 KiB file)
    evicorn-app     <build>/evicorn fileresponse:app (pathsend when the
                    bridge offers it)
    uvicorn         uvicorn, uvloop and httptools
    granian         Granian, ASGI, uvloop, one runtime thread

The folder: a temp dir with f1k.bin, f50k.bin and f1m.bin of random bytes
(1,024, 51,200 and 1,048,576 bytes). Before measuring, one GET per file and
server checks the status is 200 and the body's SHA-256 is the file's; a
server that answers anything else is not measured (and says why). During a
run wrk's non-2xx answers and socket errors are counted, and the bytes it
read per response must be at least the file's size: a run that fails either
is reported, not taken into the medians.

Placement: every server runs one worker (one process or thread serving
connections) under `taskset -c 0` (--server-cpu), every thread of every
process checked after start and after each run; wrk (`-t1`, keep-alive,
--connections for 1 and 50 KiB, --connections-large for 1 MiB) runs under
`taskset -c 1` (--client-cpu), as does this script. Each of --rounds rounds
runs every contender on every size once, the contenders' order rotated
every round, each measured run after a warm-up of its own. Per run: wrk's
req/s, latency, errors and bytes read; the body MB/s (10^6 bytes); the
server's CPU time (utime+stime of all its processes, from /proc, before and
after) per request and requests per server CPU-second (the load generator's
core may be the limit for small files: this says what the server itself
spends); and how both cores were shared (/proc/stat). A run where processes
outside the benchmark or steal took more than --disturb-limit of either core
is done again up to --retries times, the least disturbed kept. Medians over
the rounds; ratios to nginx and the targets.

Output: bench/static/results/<UTC timestamp>/ (gitignored): commands.txt,
logs/ (the servers' output, nginx's and h2o's configurations and error
logs), raw/ (wrk's output), summary.json, summary.md (the section for
docs/benchmarks.md) and static.png (bench/charts.py's style). --docs also
puts the section into docs/benchmarks.md (replacing its "## Static files"
section, or appending one), with bench/static/notes.md after it, and the
chart into docs/img/. --report DIR measures nothing: it writes DIR's
summary.md and chart again from its summary.json (with --docs: and the docs).

Needs wrk, taskset, nginx (nginx-light), h2o, Python 3's standard library;
the Python servers get a venv (build/venv-bench-static,
bench/static/requirements.txt, pinned); the chart needs matplotlib here or
in /usr/bin/python3.
"""
import argparse
import hashlib
import json
import os
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
APPS = os.path.join(HERE, "apps")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
NOTES = os.path.join(HERE, "notes.md")
SECTION_TITLE = "## Static files"
CHART = "static.png"
rel = benchlib.rel

# size key -> (file name, bytes, title)
SIZES = {
    "1k": ("f1k.bin", 1024, "1 KiB"),
    "50k": ("f50k.bin", 50 * 1024, "50 KiB"),
    "1m": ("f1m.bin", 1024 * 1024, "1 MiB"),
}
# name -> (group, kind, title)
CONTENDERS = {
    "evicorn": ("static", "evicorn", "evicorn --static"),
    "nginx": ("static", "nginx", "nginx"),
    "nginx-ofc": ("static", "nginx", "nginx, open_file_cache on"),
    "h2o": ("static", "h2o", "h2o"),
    "granian-static": ("static", "granian", "Granian static mount"),
    "evicorn-app": ("fileresponse", "evicorn", "evicorn (ASGI bridge)"),
    "uvicorn": ("fileresponse", "uvicorn", "uvicorn"),
    "granian": ("fileresponse", "granian", "Granian"),
}
ALL = list(CONTENDERS)
GROUP_SIZES = {"static": list(SIZES), "fileresponse": ["50k"]}
# (title, (numerator, size), (denominator, size), at least)
TARGETS = [
    ("static 1 KiB: evicorn ≥ 1.0× nginx", ("evicorn", "1k"), ("nginx", "1k"), 1.0),
    ("static 50 KiB: evicorn ≥ 1.0× nginx", ("evicorn", "50k"), ("nginx", "50k"), 1.0),
    ("static 1 MiB: evicorn ≥ 1.0× nginx", ("evicorn", "1m"), ("nginx", "1m"), 1.0),
    ("FastAPI FileResponse 50 KiB: evicorn ≥ 2× uvicorn", ("evicorn-app", "50k"),
     ("uvicorn", "50k"), 2.0),
    ("FastAPI FileResponse 50 KiB: evicorn ≥ 1.2× Granian", ("evicorn-app", "50k"),
     ("granian", "50k"), 1.2),
]


def log(msg):
    print("[static %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def median(xs):
    return benchlib.median([x for x in xs if x is not None])


def sizes_of(name):
    return GROUP_SIZES[CONTENDERS[name][0]]


def url_path(name, size):
    return "/file" if CONTENDERS[name][0] == "fileresponse" else "/static/" + SIZES[size][0]


# ---- the folder and the servers' configurations ------------------------------------

def make_folder(tmp):
    """www/static/ with the three files of random bytes; {size: sha256}."""
    d = os.path.join(tmp, "www", "static")
    os.makedirs(d)
    for p in (os.path.join(tmp, "www"), d):
        os.chmod(p, 0o755)  # nginx's and h2o's workers run as nobody under root
    hashes = {}
    for size, (fname, n, _) in SIZES.items():
        data = os.urandom(n)
        path = os.path.join(d, fname)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        hashes[size] = hashlib.sha256(data).hexdigest()
    return d, hashes


NGINX_CONF = """worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    server_tokens off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    default_type application/octet-stream;
    %(open_file_cache)s
    server {
        listen 127.0.0.1:%(port)d backlog=4096;
        root %(www)s;
        location /static/ { }
    }
}
"""
OPEN_FILE_CACHE = {"nginx": "open_file_cache off;",
                   "nginx-ofc": "open_file_cache max=1000 inactive=20s;"}

H2O_CONF = """listen:
  host: 127.0.0.1
  port: %(port)d
num-threads: 1
max-connections: 16384
http1-request-timeout: 600
error-log: %(prefix)s/error.log
hosts:
  default:
    paths:
      /static:
        file.dir: %(dir)s
"""


def evicorn_has_static(binary):
    """Whether this evicorn knows --static (its --help lists it)."""
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"^\s*--static\s", out.stdout + out.stderr, re.M) is not None


def server_argv(name, ctx, port):
    """(argv, cwd, env) of one contender's server; writes its config first
    when it has one."""
    tmp = ctx["tmp"]
    host = "127.0.0.1"
    env = benchlib.clean_env()
    if name in ("nginx", "nginx-ofc"):
        prefix = os.path.join(tmp, name)
        os.makedirs(os.path.join(prefix, "tmp"))
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % {"port": port, "www": os.path.dirname(ctx["dir"]),
                                  "open_file_cache": OPEN_FILE_CACHE[name]})
        return (["nginx", "-c", conf, "-p", prefix + "/", "-e",
                 os.path.join(prefix, "error.log"), "-g", "daemon off;"], prefix, env)
    if name == "h2o":
        prefix = os.path.join(tmp, name)
        os.makedirs(prefix)
        conf = os.path.join(prefix, "h2o.conf")
        with open(conf, "w") as f:
            f.write(H2O_CONF % {"port": port, "prefix": prefix, "dir": ctx["dir"]})
        return (["h2o", "-m", "worker", "-c", conf], prefix, env)
    common = ["--host", host, "--port", str(port), "--plugins", ctx["plugins"], "--workers",
              "1", "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "600"]
    if name == "evicorn":
        return ([ctx["evicorn_bin"]] + common + ["--static", "/static=" + ctx["dir"]], tmp, env)
    env["VIRTUAL_ENV"] = ctx["venv"]
    env["PATH"] = os.path.join(ctx["venv"], "bin") + os.pathsep + env.get("PATH", "")
    env["STATIC_BENCH_FILE"] = os.path.join(ctx["dir"], SIZES["50k"][0])
    vpy = ctx["vpy"]
    if name == "evicorn-app":
        return ([ctx["evicorn_bin"], "fileresponse:app"] + common, APPS, env)
    if name == "uvicorn":
        return ([vpy, "-m", "uvicorn", "fileresponse:app", "--host", host, "--port", str(port),
                 "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                 "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "600"],
                APPS, env)
    granian = [vpy, "-m", "granian", "--interface", "asgi", "--host", host, "--port",
               str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
               "--no-ws", "--log-level", "warning"]
    if name == "granian":
        return (granian + ["fileresponse:app"], APPS, env)
    if name == "granian-static":
        return (granian + ["--static-path-route", "/static", "--static-path-mount", ctx["dir"],
                           "plain:app"], APPS, env)
    raise ValueError(name)


def shown(argv, ctx):
    out = []
    for a in argv:
        if ctx.get("vpy"):
            a = a.replace(ctx["vpy"], rel(ctx["venv"]) + "/bin/python")
        a = a.replace(ctx["tmp"], "$TMP").replace(ROOT + "/", "")
        out.append(a if a and " " not in a else "'%s'" % a)
    return re.sub(r"--port \d+", "--port $PORT", " ".join(out))


# ---- servers -----------------------------------------------------------------------

LIVE = []


def stop(server):
    try:
        server.stop()
    finally:
        if server in LIVE:
            LIVE.remove(server)


def http_get(port, path, timeout=10.0):
    """One GET on a fresh connection: (status, body), the body decoded
    (Granian's static mount answers chunked). Raises OSError."""
    import socket

    parser = benchlib.ResponseParser()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                   % path).encode())
        while True:
            data = s.recv(65536)
            try:
                done = parser.feed(data)
            except ValueError as e:
                raise OSError(str(e))
            if done:
                return done[0][0], done[0][1]
            if not data:
                raise OSError("connection closed before a whole response")


def check_answers(name, ctx, server):
    """None when every path of name answers 200 with the file's bytes, else
    what is wrong; the first path is retried for a while (a server still
    starting)."""
    paths = [(url_path(name, s), s) for s in sizes_of(name)]
    deadline = time.monotonic() + 60
    port = server.port
    for i, (path, size) in enumerate(paths):
        while True:
            try:
                status, body = http_get(port, path)
                if status != 200:
                    why = "GET %s answered %d %r" % (path, status, body[:80])
                elif hashlib.sha256(body).hexdigest() != ctx["hashes"][size]:
                    why = "GET %s answered %d bytes that are not the file's %d" % (
                        path, len(body), SIZES[size][1])
                else:
                    break
            except OSError as e:
                why = "GET %s: %s" % (path, e)
            if i > 0 or time.monotonic() > deadline:
                return why
            if server.proc.poll() is not None:
                return "exited with %d during start; see %s" % (server.proc.returncode,
                                                              rel(server.log_path))
            time.sleep(0.2)
    return None


def pathsend_offered(port):
    """The FastAPI app's /pathsend: whether the server offered the extension."""
    try:
        status, body = http_get(port, "/pathsend")
        return json.loads(body).get("pathsend") if status == 200 else None
    except (OSError, ValueError):
        return None


def start_server(name, ctx):
    """Starts one contender's server and checks its answers once. Returns
    the server (.status "ok", or "failed" with .note)."""
    args = ctx["args"]
    port = benchlib.free_port()
    argv, cwd, env = server_argv(name, ctx, port)
    s = benchlib.GroupServer(name, argv, cwd=cwd, env=env, cpu=args.server_cpu,
                             log_path=os.path.join(ctx["outdir"], "logs", "%s.log" % name),
                             port=port)
    envs = "".join("%s=%s " % (k, env[k]) for k in ("VIRTUAL_ENV", "STATIC_BENCH_FILE")
                   if k in env)
    ctx["commands"][name] = "cd %s && %s%s" % (shown([cwd], ctx), shown([envs], ctx).strip("'"),
                                              shown(s.command, ctx))
    LIVE.append(s)
    s.start()
    why = check_answers(name, ctx, s)
    if why:
        stop(s)
        s.status, s.note = "failed", why
        log("%s: not measured: %s" % (name, why))
        return s
    if CONTENDERS[name][0] == "fileresponse":
        ctx["pathsend"][name] = pathsend_offered(port)
    benchlib.check_pinning(name, s.proc.pid, args.server_cpu,
                           ctx["pinning"].setdefault(name, {}), log)
    log("%s: up on 127.0.0.1:%d (pid %d, CPU %d), answers checked" % (
        name, port, s.proc.pid, args.server_cpu))
    return s


# ---- runs --------------------------------------------------------------------------

def connections(size, args):
    return args.connections_large if size == "1m" else args.connections


def wrk_command(name, size, args, port, duration):
    return benchlib.taskset(args.client_cpu, [
        "wrk", "-t1", "-c%d" % connections(size, args), "-d%ds" % duration, "--timeout", "5s",
        "--latency", "http://127.0.0.1:%d%s" % (port, url_path(name, size))])


def one_run(name, size, ctx, server, duration, out_path):
    args = ctx["args"]
    cmd = wrk_command(name, size, args, server.port, duration)
    hz = os.sysconf("SC_CLK_TCK")
    s0, k0 = benchlib.cpu_times(args.server_cpu), benchlib.cpu_times(args.client_cpu)
    t0 = benchlib.tree_cpu_ticks(server.proc.pid)
    o0 = os.times()
    w0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - w0
    o1 = os.times()
    t1 = benchlib.tree_cpu_ticks(server.proc.pid)
    s1, k1 = benchlib.cpu_times(args.server_cpu), benchlib.cpu_times(args.client_cpu)
    with open(out_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + out.stdout + out.stderr)
    w = benchlib.parse_wrk(out.stdout, unit="ms")
    req = w["requests"] or 0
    read = benchlib.parse_wrk_read_bytes(out.stdout)
    nbytes = SIZES[size][1]
    server_s = (t1 - t0) / hz
    wrk_ticks = (o1.children_user + o1.children_system - o0.children_user -
                 o0.children_system) * hz
    r = {
        "rps": w["rps"], "requests": req, "p50_ms": w["p50"], "p99_ms": w["p99"],
        "errors": w["socket_errors"] + w["non2xx"], "non2xx": w["non2xx"],
        "read_bytes_per_response": read / req if read is not None and req else None,
        "mb_s": w["rps"] * nbytes / 1e6 if w["rps"] else None,
        "wall_s": round(wall, 3), "server_cpu_s": server_s,
        "server_us": server_s * 1e6 / req if req else None,
        "per_server_cpu_s": req / server_s if req and server_s else None,
    }
    # wrk's byte count is rounded to 3 significant digits: 1 % of slack
    short = r["read_bytes_per_response"] is None or r["read_bytes_per_response"] < 0.99 * nbytes
    why = []
    if out.returncode != 0 or not w["rps"]:
        why.append("wrk exited %d without a rate" % out.returncode)
    if r["errors"]:
        why.append("%d errors (%d non-2xx)" % (r["errors"], w["non2xx"]))
    if short and w["rps"]:
        why.append("responses of %s bytes on average, less than the file" % fmt_int(
            r["read_bytes_per_response"]))
    r["failed"] = "; ".join(why) or None
    r["server_core"] = benchlib.core_shares(s0, s1, t1 - t0)
    r["client_core"] = benchlib.core_shares(k0, k1, wrk_ticks)
    r["disturbance"] = max((r[c][k] or 0) for c in ("server_core", "client_core")
                           for k in ("other", "steal"))
    r["disturbed"] = r["disturbance"] > args.disturb_limit
    return r


def measured_run(name, size, ctx, rnd, server):
    args = ctx["args"]
    raw = os.path.join(ctx["outdir"], "raw")
    if args.warmup > 0:
        one_run(name, size, ctx, server, args.warmup,
                os.path.join(raw, "%s-%s-round%d-warmup.txt" % (name, size, rnd + 1)))
    best = None
    for attempt in range(args.retries + 1):
        stem = "%s-%s-round%d%s.txt" % (name, size, rnd + 1,
                                        "" if attempt == 0 else ".again%d" % attempt)
        r = one_run(name, size, ctx, server, args.duration, os.path.join(raw, stem))
        if best is None or r["disturbance"] < best["disturbance"]:
            best = r
        if not r["disturbed"]:
            break
        log("%s %s round %d: disturbed (%.0f%% of a core taken by others or stolen)%s" % (
            name, size, rnd + 1, 100 * r["disturbance"],
            "; again" if attempt < args.retries else ""))
    best["attempts"] = attempt + 1
    best["pinned"] = benchlib.check_pinning(name, server.proc.pid, args.server_cpu,
                                            ctx["pinning"].setdefault(name, {}), log)
    return best


def core_line(r):
    c, k = r["server_core"], r["client_core"]
    return ("core 0: server %3.0f%% irq %2.0f%% other %2.0f%%; core 1: wrk %3.0f%% "
            "other %2.0f%%" % (100 * (c["owner"] or 0), 100 * (c["irq"] or 0),
                              100 * (c["other"] or 0), 100 * (k["owner"] or 0),
                              100 * (k["other"] or 0)))


# ---- summary -----------------------------------------------------------------------

def summarize(runs):
    """Medians over the runs that did not fail; the failed ones counted."""
    good = [r for r in runs if not r["failed"]]
    keys = ("rps", "mb_s", "server_us", "per_server_cpu_s", "p50_ms", "p99_ms",
            "read_bytes_per_response")
    out = {k + "_median": median([r[k] for r in good]) for k in keys}
    out["rps_min"] = min((r["rps"] for r in good), default=None)
    out["rps_max"] = max((r["rps"] for r in good), default=None)
    out["runs_ok"] = len(good)
    out["runs_failed"] = len(runs) - len(good)
    out["failures"] = sorted({r["failed"] for r in runs if r["failed"]})
    out["disturbed_runs"] = sum(1 for r in runs if r["disturbed"])
    out["server_core_owner_median"] = median([r["server_core"]["owner"] for r in good])
    out["client_core_owner_median"] = median([r["client_core"]["owner"] for r in good])
    return out


def cell(results, name, size):
    return (results.get(name) or {}).get("sizes", {}).get(size) or {}


def build_targets(results):
    out = []
    for title, (a, sa), (b, sb), limit in TARGETS:
        va = cell(results, a, sa).get("rps_median")
        vb = cell(results, b, sb).get("rps_median")
        ratio = va / vb if va and vb else None
        out.append({"title": title, "a": [a, sa], "b": [b, sb], "ratio": ratio, "limit": limit,
                    "met": None if ratio is None else ratio >= limit})
    return out


def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def fmt_int(v):
    return "–" if v is None else "{:,.0f}".format(v)


def pct(share):
    return "–" if share is None else "%.0f%%" % (100 * share)


def ratio(a, b, spec="%.2f×"):
    return spec % (a / b) if a and b else "–"


def summary_md(summary):
    a = summary["args"]
    v = summary["versions"]
    res = summary["results"]
    lines = ["%s (`bench/static/run.py`)" % SECTION_TITLE, ""]
    if a.get("quick") or a["duration"] < 5 or a["rounds"] < 3:
        lines += ["> **A short run** (%d round(s) of %d s): it checks the harness end to end; "
                  "these are not figures to quote." % (a["rounds"], a["duration"]), ""]
    runs = [r for x in res.values() for r in x.get("runs", [])]
    disturbed = sum(1 for r in runs if r["disturbed"])
    if disturbed:
        lines += ["> %d of the %d measured runs were disturbed: other processes or the "
                  "hypervisor took more than %.0f%% of a core even in the less disturbed of "
                  "its attempts (the *disturbed* column of the last table). Read the "
                  "figures as indicative." % (disturbed, len(runs), 100 * a["disturb_limit"]),
                  ""]
    lines += [
        "Three files of random bytes (1 KiB, 50 KiB, 1 MiB) in one folder, served at "
        "`/static/` by evicorn's `--static`, nginx (`sendfile on`, `tcp_nopush on`; "
        "`open_file_cache` off, its default, and on), h2o (`file.dir`) and Granian's static "
        "mount; and the 50 KiB file through FastAPI's `FileResponse` "
        "(`bench/static/apps/fileresponse.py`) under evicorn's ASGI bridge, uvicorn and "
        "Granian. nginx and h2o as configured for it: one worker (h2o: `num-threads: 1`), "
        "no access log, keep-alive without a request limit (nginx: `keepalive_requests "
        "100000000`, `keepalive_timeout 600s`, `tcp_nodelay on`; the configurations are in "
        "the results' `logs/`). Every server runs one worker on CPU %d; wrk runs on CPU %d, `-t1`, "
        "keep-alive, %d connections for 1 and 50 KiB, %d for 1 MiB. Every server's answer "
        "to each file was checked once (status 200, the file's SHA-256) before measuring, "
        "and every run's non-2xx answers, socket errors and bytes read per response: a "
        "failed run is counted, not taken into the medians. Medians of %d rounds of %d s, "
        "each after a %d s warm-up; run %s." % (
            a["server_cpu"], a["client_cpu"], a["connections"], a["connections_large"],
            a["rounds"], a["duration"], a["warmup"], summary["stamp"]),
        "",
        "![req/s and requests per server CPU-second, per file size and server](img/%s)" % CHART,
        "",
        "### Static folder: req/s (median) and the ratio to nginx",
        "",
        "| Server | 1 KiB | × nginx | 50 KiB | × nginx | 1 MiB | MB/s | × nginx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    statics = [n for n in ALL if CONTENDERS[n][0] == "static" and n in res]
    for name in statics:
        r = res[name]
        title = CONTENDERS[name][2]
        if r["status"] != "ok":
            lines.append("| %s | %s | | | | | | |" % (title, r.get("note") or r["status"]))
            continue
        row = [title]
        for size in SIZES:
            c, ref = cell(res, name, size), cell(res, "nginx", size)
            row.append(fmt_int(c.get("rps_median")))
            if size == "1m":
                row.append(fmt(c.get("mb_s_median"), "%.0f"))
            row.append("" if name == "nginx" else ratio(c.get("rps_median"),
                                                         ref.get("rps_median")))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "### Static folder: what the server spent",
        "",
        "Requests per server CPU-second (utime+stime of all the server's processes over the "
        "run), and server CPU µs per request: on small files wrk's core can be the limit "
        "before the server's, and this is what the server itself costs.",
        "",
        "| Server | 1 KiB req/CPU-s | µs/req | 50 KiB req/CPU-s | µs/req | 1 MiB req/CPU-s | "
        "µs/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in statics:
        if res[name]["status"] != "ok":
            continue
        row = [CONTENDERS[name][2]]
        for size in SIZES:
            c = cell(res, name, size)
            row += [fmt_int(c.get("per_server_cpu_s_median")), fmt(c.get("server_us_median"),
                                                                   "%.1f")]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "### Would a descriptor cache be worth it? nginx, open_file_cache off and on",
        "",
        "The same nginx and files, `open_file_cache max=1000 inactive=20s` on or off (off: "
        "an open(2), fstat(2) and close(2) per request).",
        "",
        "| File | req/s off | req/s on | on ÷ off | CPU µs/req off | CPU µs/req on | "
        "µs saved per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in SIZES:
        off, on = cell(res, "nginx", size), cell(res, "nginx-ofc", size)
        uoff, uon = off.get("server_us_median"), on.get("server_us_median")
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            SIZES[size][2], fmt_int(off.get("rps_median")), fmt_int(on.get("rps_median")),
            ratio(on.get("rps_median"), off.get("rps_median"), "%.3f×"), fmt(uoff, "%.2f"),
            fmt(uon, "%.2f"), fmt(uoff - uon if uoff is not None and uon is not None
                                  else None, "%+.2f")))
    lines += [
        "",
        "### FastAPI FileResponse, the 50 KiB file",
        "",
        "| Server | pathsend offered | req/s (median) | min – max | × uvicorn | × Granian | "
        "req per server CPU-s | server CPU µs/req | p50 | p99 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    uv, gr = cell(res, "uvicorn", "50k"), cell(res, "granian", "50k")
    for name in [n for n in ALL if CONTENDERS[n][0] == "fileresponse" and n in res]:
        r = res[name]
        title = CONTENDERS[name][2]
        if r["status"] != "ok":
            lines.append("| %s | | %s | | | | | | | |" % (title, r.get("note") or r["status"]))
            continue
        c = cell(res, name, "50k")
        ps = summary.get("pathsend", {}).get(name)
        lines.append("| %s | %s | %s | %s – %s | %s | %s | %s | %s | %s ms | %s ms |" % (
            title, "?" if ps is None else "yes" if ps else "no", fmt_int(c.get("rps_median")),
            fmt_int(c.get("rps_min")), fmt_int(c.get("rps_max")),
            "" if name == "uvicorn" else ratio(c.get("rps_median"), uv.get("rps_median")),
            "" if name == "granian" else ratio(c.get("rps_median"), gr.get("rps_median")),
            fmt_int(c.get("per_server_cpu_s_median")), fmt(c.get("server_us_median"), "%.1f"),
            fmt(c.get("p50_ms_median"), "%.2f"), fmt(c.get("p99_ms_median"), "%.2f")))
    lines += ["", "### Targets", "", "| Target | Ratio (medians of req/s) | |",
              "| --- | ---: | --- |"]
    for t in summary["targets"]:
        verdict = ("not measured" if t["met"] is None else "**met**" if t["met"]
                   else "**not met**")
        lines.append("| %s | %s | %s |" % (t["title"], fmt(t["ratio"], "%.2f×"), verdict))
    lines += [
        "",
        "### Every run's medians",
        "",
        "| Server | File | req/s | min – max | MB/s | p50 | p99 | bytes read per response | "
        "wrk's core | server's core | runs ok / failed | disturbed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ALL:
        r = res.get(name)
        if r is None or r["status"] != "ok":
            continue
        for size in sizes_of(name):
            c = cell(res, name, size)
            lines.append("| %s | %s | %s | %s – %s | %s | %s ms | %s ms | %s | %s | %s | "
                         "%d / %d | %d |" % (
                             CONTENDERS[name][2], SIZES[size][2], fmt_int(c.get("rps_median")),
                             fmt_int(c.get("rps_min")), fmt_int(c.get("rps_max")),
                             fmt(c.get("mb_s_median"), "%.0f"), fmt(c.get("p50_ms_median"),
                                                                   "%.2f"),
                             fmt(c.get("p99_ms_median"), "%.2f"),
                             fmt_int(c.get("read_bytes_per_response_median")),
                             pct(c.get("client_core_owner_median")),
                             pct(c.get("server_core_owner_median")),
                             c.get("runs_ok", 0), c.get("runs_failed", 0),
                             c.get("disturbed_runs", 0)))
            for why in c.get("failures", []):
                lines.append("| | | failed: %s | | | | | | | | | |" % why)
    m = summary["machine"]
    ev = summary["evicorn"]
    lines += ["", "Machine: %s, %s CPUs%s, %s, Linux %s, %s. %s (%s build, commit %s); "
              "nginx %s; h2o %s; wrk %s; Python %s, FastAPI %s, Starlette %s, uvicorn %s "
              "(uvloop %s, httptools %s), Granian %s." % (
                  m.get("cpu_model", "?"), m.get("cpus", "?"),
                  " (%s guest)" % m["hypervisor"] if m.get("hypervisor") else "",
                  m.get("os", "?"), m.get("kernel", "?"), m.get("memory", "?"),
                  summary.get("evicorn_version") or "?", ev.get("CMAKE_BUILD_TYPE", "?"),
                  ev.get("commit", "?"), summary.get("nginx") or "?", summary.get("h2o") or "?",
                  summary.get("wrk") or "?", v.get("python", "–"), v.get("fastapi", "–"),
                  v.get("starlette", "–"), v.get("uvicorn", "–"), v.get("uvloop", "–"),
                  v.get("httptools", "–"), v.get("granian", "–")),
              "", "Run as:", "", "```sh", summary["command"], "```", "",
              "Servers, as started (`$TMP` is the run's temp folder, `$PORT` a free port; "
              "`$TMP/www/static` holds the three files):", "", "```sh"]
    for key, c in summary["commands"].items():
        lines.append("%s  # %s" % (c, key))
    lines += ["```", "", "Load, one run (shown for the 50 KiB file):", "", "```sh",
              "taskset -c %d wrk -t1 -c%d -d%ds --timeout 5s --latency "
              "http://127.0.0.1:$PORT/static/f50k.bin" % (a["client_cpu"], a["connections"],
                                                          a["duration"]),
              "```"]
    notes = summary.get("notes") or []
    if notes:
        lines += [""] + ["- %s" % n for n in notes]
    return "\n".join(lines) + "\n"


# ---- chart -------------------------------------------------------------------------

def draw_chart(outdir):
    """static.png from summary.json in bench/charts.py's style: req/s (top)
    and requests per server CPU-second (bottom) for each file size of the
    folder and for FileResponse; in this interpreter, else in
    /usr/bin/python3 (python3-matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
                os.path.exists("/usr/bin/python3"):
            out = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--chart",
                                  outdir], capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            return out.returncode == 0
        log("no matplotlib (apt-get install python3-matplotlib): no chart drawn")
        return False
    import charts

    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    res = summary["results"]
    color = {"evicorn": charts.COLOR["evicorn"], "nginx": charts.COLOR["nginx"],
             "nginx-ofc": "#98df8a", "h2o": charts.COLOR["h2o"],
             "granian-static": charts.COLOR["granian"], "evicorn-app": charts.COLOR["evicorn"],
             "uvicorn": charts.COLOR["uvicorn"], "granian": charts.COLOR["granian"]}
    panels = [("static", s, "/static/%s" % SIZES[s][0]) for s in SIZES] + [
        ("fileresponse", "50k", "FileResponse, 50 KiB")]
    panels = [p for p in panels if any(cell(res, n, p[1]).get("rps_median")
                                       for n in ALL if CONTENDERS[n][0] == p[0])]
    if not panels:
        return False
    plt = charts._plt()
    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels) + 1, 5.6),
                             squeeze=False)

    def k(v, _):
        return f"{v / 1000:.0f}k" if v >= 10000 or v == 0 else \
            f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    for col, (group, size, title) in enumerate(panels):
        names = [n for n in ALL if CONTENDERS[n][0] == group and n in res]
        for row, key, ylabel in ((0, "rps_median", "requests/s (median)"),
                                 (1, "per_server_cpu_s_median", "requests per server CPU-s")):
            ax = axes[row][col]
            vals = [cell(res, n, size).get(key) or 0 for n in names]
            bars = ax.bar(range(len(names)), vals, 0.7, color=[color[n] for n in names])
            for b, n in zip(bars, names):
                if not cell(res, n, size).get(key):
                    ax.annotate("not measured", (b.get_x() + b.get_width() / 2, 0),
                                ha="center", va="bottom", fontsize=6, rotation=90)
            ax.set_xticks(range(len(names)), [CONTENDERS[n][2].replace(", ", ",\n").replace(
                " static mount", "\nstatic").replace(" (ASGI bridge)", "").replace(
                " --static", "") for n in names], fontsize=7, rotation=30, ha="right")
            ax.yaxis.set_major_formatter(plt.FuncFormatter(k))
            ax.grid(True, axis="y", alpha=0.3)
            if row == 0:
                ax.set_title(title, fontsize=9)
            if col == 0:
                ax.set_ylabel(ylabel)
    a = summary["args"]
    fig.suptitle("Static files: one server worker on CPU %d, wrk -t1 on CPU %d "
                 "(-c%d, 1 MiB: -c%d); medians of %d round(s)" % (
                     a["server_cpu"], a["client_cpu"], a["connections"],
                     a["connections_large"], a["rounds"]), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(os.path.join(outdir, CHART))
    plt.close(fig)
    return True


# ---- docs --------------------------------------------------------------------------

def write_docs(outdir):
    docs = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(os.path.join(outdir, "summary.md")) as f:
        text = f.read().rstrip("\n") + "\n"
    if os.path.exists(NOTES):
        with open(NOTES) as f:
            text += "\n" + f.read().rstrip("\n") + "\n"
    benchlib.splice_section(docs, SECTION_TITLE, text)
    img = os.path.join(ROOT, "docs", "img")
    os.makedirs(img, exist_ok=True)
    if os.path.exists(os.path.join(outdir, CHART)):
        shutil.copy(os.path.join(outdir, CHART), os.path.join(img, CHART))
    log("wrote the %s section of %s and docs/img/%s" % (SECTION_TITLE, rel(docs), CHART))


def report(outdir, docs):
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    md = summary_md(summary)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(md)
    draw_chart(outdir)
    if docs:
        write_docs(outdir)
    return md


# ---- main --------------------------------------------------------------------------

def pip_versions(vpy):
    names = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "granian", "anyio"]
    code = ("import importlib.metadata as m, json, platform\n"
            "out = {'python': platform.python_version()}\n"
            "for n in %r:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))" % names)
    out = subprocess.run([vpy, "-c", code], capture_output=True, text=True,
                         env=benchlib.clean_env())
    return json.loads(out.stdout) if out.returncode == 0 else {}


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((out.stdout or out.stderr).strip().splitlines() or [None])[0]
    except (OSError, subprocess.TimeoutExpired):
        return None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Contenders: %s." % " ".join(ALL))
    ap.add_argument("--rounds", type=int, help="rounds (3)")
    ap.add_argument("--duration", type=int, help="measured s per run (10)")
    ap.add_argument("--warmup", type=int, help="s of load before each run (2)")
    ap.add_argument("--only", default="",
                    help="comma-separated contenders or groups (static, fileresponse); "
                         "default: all")
    ap.add_argument("--connections", type=int, default=64,
                    help="wrk connections for the 1 and 50 KiB files (64)")
    ap.add_argument("--connections-large", type=int, default=16,
                    help="wrk connections for the 1 MiB file (16)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--disturb-limit", type=float, default=0.15)
    ap.add_argument("--retries", type=int, help="times a disturbed run is redone (1)")
    ap.add_argument("--quick", action="store_true",
                    help="--rounds 1 --duration 3 --warmup 1 --retries 0")
    ap.add_argument("--quiet-wait", type=float, default=600,
                    help="s to wait for other benchmarks to end before each run (600; 0: no)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree: evicorn, and its python/ module (build)")
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "venv-bench-static"))
    ap.add_argument("--docs", action="store_true",
                    help="put the section into docs/benchmarks.md and the chart into docs/img")
    ap.add_argument("--report", metavar="RESULTS_DIR",
                    help="measure nothing: write RESULTS_DIR's summary.md and chart again "
                         "from its summary.json (with --docs: and the docs)")
    ap.add_argument("--chart", metavar="RESULTS_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for key, full, quick in (("rounds", 3, 1), ("duration", 10, 3), ("warmup", 2, 1),
                             ("retries", 1, 0)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.build = os.path.abspath(args.build)
    args.venv = os.path.abspath(args.venv)
    only = [x for x in args.only.split(",") if x]
    picked = []
    for x in only:
        hit = [n for n, (group, _, _) in CONTENDERS.items() if x in (n, group)]
        if not hit:
            ap.error("--only: unknown %r (contenders: %s)" % (x, " ".join(ALL)))
        picked += hit
    args.contenders = [n for n in ALL if n in picked] if only else list(ALL)
    return args


def main():
    args = parse_args()
    if args.chart:
        sys.exit(0 if draw_chart(os.path.abspath(args.chart)) else 1)
    if args.report:
        print(report(os.path.abspath(args.report), args.docs))
        return
    benchlib.exit_on_signals()
    prog = "bench/static/run.py"
    for tool, pkg in (("wrk", "wrk"), ("taskset", "util-linux"), ("nginx", "nginx-light"),
                      ("h2o", "h2o")):
        if not shutil.which(tool):
            sys.exit("%s: %s is not installed (apt-get install %s)" % (prog, tool, pkg))
    if max(args.server_cpu, args.client_cpu) >= (os.cpu_count() or 1):
        sys.exit("%s: need CPUs %d and %d" % (prog, args.server_cpu, args.client_cpu))
    benchlib.raise_nofile(4096)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    for d in ("logs", "raw"):
        os.makedirs(os.path.join(outdir, d))
    command = " ".join(["python3", prog] + [x.replace(ROOT + "/", "") for x in sys.argv[1:]])
    tmp = tempfile.mkdtemp(prefix="evicorn-static-bench-")
    os.chmod(tmp, 0o711)  # the workers of nginx and h2o (nobody, under root) reach www/ only
    ctx = {"args": args, "outdir": outdir, "tmp": tmp, "commands": {}, "pinning": {},
           "pathsend": {}, "vpy": None, "venv": args.venv,
           "evicorn_bin": os.path.join(args.build, "evicorn")}
    ctx["dir"], ctx["hashes"] = make_folder(tmp)
    ctx["plugins"] = os.path.join(tmp, "plugins")  # empty and private: evicorn refuses others
    os.mkdir(ctx["plugins"], 0o700)
    notes = []
    contenders = list(args.contenders)
    skipped = {}
    evicorn_kinds = [n for n in contenders if CONTENDERS[n][1] == "evicorn"]
    if evicorn_kinds and not os.path.exists(ctx["evicorn_bin"]):
        for n in evicorn_kinds:
            skipped[n] = "%s is not built" % rel(ctx["evicorn_bin"])
    elif "evicorn" in contenders and not evicorn_has_static(ctx["evicorn_bin"]):
        skipped["evicorn"] = "this evicorn has no --static yet"
    for n, why in skipped.items():
        contenders.remove(n)
        notes.append("%s: not measured: %s." % (CONTENDERS[n][2], why))
        log(notes[-1])
    if any(CONTENDERS[n][1] in ("uvicorn", "granian") or n == "evicorn-app"
           for n in contenders):
        ctx["vpy"] = benchlib.ensure_venv(args.venv, REQUIREMENTS, "fastapi, uvicorn, granian",
                                          os.path.join(outdir, "logs", "venv.log"),
                                          prog=prog, log=log)
    summary = {
        "stamp": stamp, "command": command, "args": dict(vars(args)),
        "versions": pip_versions(ctx["vpy"]) if ctx["vpy"] else {},
        "evicorn_version": first_line([ctx["evicorn_bin"], "--version"]),
        "evicorn": benchlib.evicorn_build_info(args.build), "machine": benchlib.machine(),
        "nginx": benchlib.deb_version("nginx-light") or benchlib.deb_version("nginx"),
        "h2o": benchlib.deb_version("h2o"), "wrk": benchlib.deb_version("wrk"),
        "files": {s: {"name": SIZES[s][0], "bytes": SIZES[s][1], "sha256": ctx["hashes"][s]}
                  for s in SIZES},
        "commands": ctx["commands"], "notes": notes, "pinning": ctx["pinning"],
        "pathsend": ctx["pathsend"],
    }
    benchlib.pin_self(args.client_cpu)  # this script and wrk stay off the servers' core
    results = {n: {"status": "ok", "note": None, "runs": []} for n in args.contenders}
    for n, why in skipped.items():
        results[n].update(status="not measured", note=why)
    servers = {}
    try:
        for name in contenders:
            s = start_server(name, ctx)
            servers[name] = s
            if s.status != "ok":
                results[name].update(status=s.status, note=s.note)
        if ctx["pathsend"].get("evicorn-app") is False:
            notes.append("evicorn's ASGI bridge did not offer http.response.pathsend: "
                         "FileResponse read and sent the file in chunks through it.")
        for rnd in range(args.rounds):
            live = [n for n in contenders if results[n]["status"] == "ok"]
            if not live:
                break
            k = rnd % len(live)
            for name in live[k:] + live[:k]:
                s = servers[name]
                for size in sizes_of(name):
                    if s.proc.poll() is not None:
                        results[name].update(status="failed", note="exited with %d" %
                                             s.proc.returncode)
                        break
                    benchlib.wait_quiet(args.quiet_wait)
                    r = measured_run(name, size, ctx, rnd, s)
                    r["round"], r["size"] = rnd + 1, size
                    results[name]["runs"].append(r)
                    print("round %d %-15s %-4s %9s req/s %7s MB/s  server %6s µs/req  (%s)%s" % (
                        rnd + 1, name, size, fmt_int(r["rps"]), fmt(r["mb_s"]),
                        fmt(r["server_us"], "%.1f"), core_line(r),
                        "  FAILED: " + r["failed"] if r["failed"] else ""), flush=True)
    finally:
        for s in list(LIVE):
            stop(s)
        for name in ("nginx", "nginx-ofc", "h2o"):
            for fname, dst in (("error.log", "%s-error.log"), ("nginx.conf", "%s.conf"),
                               ("h2o.conf", "%s.conf")):
                src = os.path.join(tmp, name, fname)
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(outdir, "logs", dst % name))
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(outdir, "commands.txt"), "w") as f:
            f.write("$ %s\n" % command)
            for key, c in ctx["commands"].items():
                f.write("%s: %s\n" % (key, c))
    for name, r in results.items():
        r["sizes"] = {size: summarize([x for x in r["runs"] if x["size"] == size])
                      for size in sizes_of(name)}
    summary["results"] = results
    summary["targets"] = build_targets(results)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = report(outdir, args.docs)
    print()
    print(md)
    print("results in %s" % rel(outdir))


if __name__ == "__main__":
    main()
