#!/usr/bin/env python3
"""Outbound HTTP: `GET /external-api` (a handler that fetches a JSON document
from an upstream and answers it) served by evicorn's examples/external and by
FastAPI + one shared httpx.AsyncClient under uvicorn and under Granian, against
a local nginx over plain HTTP and over HTTPS; and nginx hit directly by wrk
(the limit of this machine for the upstream alone).

    python3 bench/fetch/run.py [--rounds 3] [--duration 10] [--warmup 2]
                               [--only NAME,...] [--evicorn-bin OLD/evicorn] [--quick]
                               [--docs] [--report RESULTS_DIR]

Contenders (--only takes names, or a kind or a scheme, comma-separated):

  evicorn-http, evicorn-https   <build>/evicorn with examples/external
                                (EVICORN_EXTERNAL_API_URL = the upstream)
  old-http                      --evicorn-bin: a second evicorn (e.g. built from
                                the commit before the new client) with its own
                                external.so, plain HTTP only; skipped without it
  uvicorn-http, uvicorn-https   bench/fetch/apps/fastapi_fetch.py under uvicorn
                                (uvloop, httptools)
  granian-http, granian-https   the same app under Granian (ASGI, uvloop, one
                                runtime thread)
  nginx-http, nginx-https       wrk straight at the upstream's file

The upstream: Debian's nginx (nginx-light), one worker, serving a static JSON
file ({"message":"Hello, World!"}) on two 127.0.0.1 ports, plain and TLS
(TLS 1.3 with a P-256 certificate signed by a CA made with openssl for the
run; --h2 offers HTTP/2 on the TLS port too), keep-alive without limit. Every
HTTPS client trusts that CA through SSL_CERT_FILE (evicorn's client and the
FastAPI app honour it).

Placement: every server under test runs one worker under `taskset -c 0`
(--server-cpu) together with the upstream nginx, as a service and its
upstream would share a machine; wrk (`-t1 -c<connections>`, keep-alive) runs
under `taskset -c 1` (--client-cpu), as does this script. Every thread of
every process is checked to be where it should be after each run. Each of
--rounds rounds runs every contender once, the order rotated every round,
each measured run after a warm-up of its own. Per run: wrk's req/s, latency
and errors; the CPU time (utime+stime of every process, from /proc, before
and after) of the server and, separately, of nginx, per request; nginx's
accepted connections (stub_status) per 1,000 requests, which shows whether
the client reused its upstream connections; and how both cores were shared
(/proc/stat). A run where processes outside the benchmark or steal took more
than --disturb-limit of either core is done again up to --retries times, the
least disturbed kept. Medians over the rounds, and the ratios the targets
name.

Output: bench/fetch/results/<UTC timestamp>/ (gitignored): commands.txt,
logs/, raw/ (wrk's output), summary.json and summary.md (the section for
docs/benchmarks.md). --docs also puts the section into docs/benchmarks.md
(replacing its "## Outbound HTTP" section, or appending one). --report DIR
measures nothing: it writes DIR's summary.md again from its summary.json
(with --docs: and the docs).

Needs wrk, taskset, nginx (apt-get install nginx-light) and openssl, and
Python 3's standard library; the Python peers get a venv
(build/venv-bench-fetch, bench/fetch/requirements.txt, pinned).
"""
import argparse
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
SECTION_TITLE = "## Outbound HTTP"
DOC = b'{"message":"Hello, World!"}'
rel = benchlib.rel

# name -> (kind, scheme, title)
CONTENDERS = {
    "evicorn-http": ("evicorn", "http", "evicorn"),
    "evicorn-https": ("evicorn", "https", "evicorn"),
    "old-http": ("old", "http", "evicorn, old client"),
    "uvicorn-http": ("uvicorn", "http", "FastAPI+httpx, uvicorn"),
    "uvicorn-https": ("uvicorn", "https", "FastAPI+httpx, uvicorn"),
    "granian-http": ("granian", "http", "FastAPI+httpx, Granian"),
    "granian-https": ("granian", "https", "FastAPI+httpx, Granian"),
    "nginx-http": ("nginx", "http", "nginx alone (the limit)"),
    "nginx-https": ("nginx", "https", "nginx alone (the limit)"),
}
ALL = list(CONTENDERS)
# (title, numerator, denominator, what is compared, at least / at most)
TARGETS = [
    ("HTTP: evicorn ≥ 5× FastAPI+httpx (uvicorn), req/s", "evicorn-http", "uvicorn-http",
     "rps", 5.0),
    ("HTTP: evicorn ≥ 5× FastAPI+httpx (Granian), req/s", "evicorn-http", "granian-http",
     "rps", 5.0),
    ("HTTPS: evicorn ≥ 5× FastAPI+httpx (uvicorn), req/s", "evicorn-https", "uvicorn-https",
     "rps", 5.0),
    ("HTTPS: evicorn ≥ 5× FastAPI+httpx (Granian), req/s", "evicorn-https", "granian-https",
     "rps", 5.0),
    ("HTTPS within 1.3× of HTTP, evicorn's CPU per request", "evicorn-https", "evicorn-http",
     "server_us", -1.3),
]


def log(msg):
    print("[fetch %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def median(xs):
    return benchlib.median([x for x in xs if x is not None])


# ---- servers ---------------------------------------------------------------------

class Server(benchlib.PinnedServer):
    def __init__(self, name, argv, cwd, env, cpu, log_path, port):
        super().__init__(name, argv, cpu=cpu, port=port, log_path=log_path, cwd=cwd, env=env,
                         new_session=True)
        self.status, self.note = "ok", None

    def stop(self):
        pgid = self.proc.pid if self.proc is not None else None
        try:
            super().stop()
        finally:
            if pgid is not None:
                benchlib.kill_group_leftovers(pgid)


LIVE = []


def stop(server):
    try:
        server.stop()
    finally:
        if server in LIVE:
            LIVE.remove(server)


def check_pinning(name, pid, cpu, record):
    """Every thread of pid's tree on `cpu` alone; records what was not."""
    aff = benchlib.tree_affinity(pid)
    record["checks"] = record.get("checks", 0) + 1
    record["max_threads"] = max(record.get("max_threads", 0),
                                sum(len(v) for v in aff.values()))
    bad = {k: v for k, v in aff.items() if k != str(cpu)}
    if bad:
        desc = "; ".join("%s: %s" % (k, ", ".join("%d/%d" % t for t in v[:6]))
                         for k, v in bad.items())
        record.setdefault("unpinned", [])
        if desc not in record["unpinned"]:
            record["unpinned"].append(desc)
        log("warning: %s has threads not on CPU %s (pid/tid): %s" % (name, cpu, desc))
        return False
    return True


def make_pki(d):
    """A CA and a certificate for 127.0.0.1 it signed (P-256), in d."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*a):
        out = subprocess.run(["openssl"] + list(a), cwd=d, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (a[0], out.stderr.strip()))

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=evicorn bench CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {k: os.path.join(d, k) for k in ("ca.pem", "server.pem", "server.key")}


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
    tcp_nodelay on;
    default_type application/json;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    server {
        listen 127.0.0.1:%(http)d backlog=4096;
        listen 127.0.0.1:%(https)d ssl%(h2)s backlog=4096;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        root %(www)s;
        location = /data.json { }
        location = /nginx_status { stub_status; }
    }
}
"""


def start_nginx(ctx):
    args, tmp = ctx["args"], ctx["tmp"]
    prefix = os.path.join(tmp, "nginx")
    www = os.path.join(tmp, "www")
    for d in (prefix, os.path.join(prefix, "tmp"), www):
        os.makedirs(d, exist_ok=True)
    os.chmod(www, 0o755)
    with open(os.path.join(www, "data.json"), "wb") as f:
        f.write(DOC)
    os.chmod(os.path.join(www, "data.json"), 0o644)
    ports = {"http": benchlib.free_port(), "https": benchlib.free_port()}
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF % {"http": ports["http"], "https": ports["https"],
                              "h2": " http2" if args.h2 else "", "cert": ctx["pki"]["server.pem"],
                              "key": ctx["pki"]["server.key"], "www": www})
    s = Server("nginx", ["nginx", "-c", os.path.join(prefix, "nginx.conf"), "-p", prefix + "/",
                         "-e", os.path.join(prefix, "error.log"), "-g", "daemon off;"],
               prefix, benchlib.clean_env(), args.server_cpu,
               os.path.join(ctx["outdir"], "logs", "nginx.log"), ports["http"])
    ctx["commands"]["nginx"] = shown(s.command, ctx)
    LIVE.append(s)
    s.start()
    s.wait_ready("/data.json", timeout=15)
    ctx["nginx"], ctx["ports"] = s, ports
    ctx["urls"] = {"http": "http://127.0.0.1:%d/data.json" % ports["http"],
                   "https": "https://127.0.0.1:%d/data.json" % ports["https"]}
    check_pinning("nginx", s.proc.pid, args.server_cpu, ctx["pinning"].setdefault("nginx", {}))
    log("nginx: up on 127.0.0.1:%d (http) and :%d (https%s), pid %d" % (
        ports["http"], ports["https"], ", http2" if args.h2 else "", s.proc.pid))


def nginx_accepts(ctx):
    """nginx's accepted connections so far (stub_status)."""
    try:
        status, body = benchlib.http_get(ctx["ports"]["http"], "/nginx_status")
        m = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)", body)
        return int(m.group(1)) if status == 200 and m else None
    except OSError:
        return None


def server_argv(name, ctx, port):
    """(argv, cwd, env) of one contender's server."""
    kind, scheme, _ = CONTENDERS[name]
    host = "127.0.0.1"
    env = benchlib.clean_env()
    env.pop("SSL_CERT_FILE", None)
    if scheme == "https":
        env["SSL_CERT_FILE"] = ctx["pki"]["ca.pem"]
    if kind in ("evicorn", "old"):
        env["EVICORN_EXTERNAL_API_URL"] = ctx["urls"][scheme]
        return ([ctx["bins"][kind], "--host", host, "--port", str(port), "--plugins",
                 ctx["plugin_dirs"][kind], "--workers", "1", "--no-access-log", "--log-level",
                 "warning", "--timeout-keep-alive", "600"], ctx["tmp"], env)
    env["EXTERNAL_API_URL"] = ctx["urls"][scheme]
    env["VIRTUAL_ENV"] = ctx["venv"]
    env["PATH"] = os.path.join(ctx["venv"], "bin") + os.pathsep + env.get("PATH", "")
    vpy = ctx["vpy"]
    if kind == "uvicorn":
        return ([vpy, "-m", "uvicorn", "fastapi_fetch:app", "--host", host, "--port", str(port),
                 "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                 "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "600"],
                APPS, env)
    if kind == "granian":
        return ([vpy, "-m", "granian", "--interface", "asgi", "--host", host, "--port",
                 str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
                 "--no-ws", "--log-level", "warning", "fastapi_fetch:app"], APPS, env)
    raise ValueError(name)


def shown(argv, ctx):
    out = []
    for a in argv:
        if ctx.get("vpy"):
            a = a.replace(ctx["vpy"], rel(ctx["venv"]) + "/bin/python")
        a = a.replace(ctx["tmp"], "$TMP").replace(ROOT + "/", "")
        for scheme, url in ctx.get("urls", {}).items():
            a = a.replace(url, "%s://127.0.0.1:$%s_PORT/data.json" % (scheme, scheme.upper()))
        out.append(a)
    line = " ".join(a if a and " " not in a else "'%s'" % a for a in out)
    return re.sub(r"--port \d+", "--port $PORT", line)


def start_server(name, ctx):
    """Starts one contender's server and checks its answer once."""
    args = ctx["args"]
    port = benchlib.free_port()
    argv, cwd, env = server_argv(name, ctx, port)
    s = Server(name, argv, cwd, env, args.server_cpu,
               os.path.join(ctx["outdir"], "logs", "%s.log" % name), port)
    envs = " ".join("%s=%s" % (k, env[k]) for k in ("SSL_CERT_FILE", "EVICORN_EXTERNAL_API_URL",
                                                    "EXTERNAL_API_URL") if k in env)
    ctx["commands"][name] = "cd %s && %s %s" % (shown([cwd], ctx), shown([envs], ctx).strip("'"),
                                                 shown(s.command, ctx))
    LIVE.append(s)
    s.start()
    deadline = time.monotonic() + 60
    last = "no answer"
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            last = "exited with %d during start; see %s" % (s.proc.returncode, rel(s.log_path))
            break
        try:
            status, body = benchlib.http_get(port, "/external-api", timeout=10)
            if status == 200 and json.loads(body) == json.loads(DOC):
                last = None
                break
            last = "GET /external-api answered %d %r" % (status, body[:120])
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.2)
    if last:
        stop(s)
        s.status, s.note = "failed", last
        log("%s: did not start: %s" % (name, last))
        return s
    check_pinning(name, s.proc.pid, args.server_cpu, ctx["pinning"].setdefault(name, {}))
    log("%s: up on 127.0.0.1:%d (pid %d, CPU %d)" % (name, port, s.proc.pid, args.server_cpu))
    return s


# ---- runs --------------------------------------------------------------------------

def target_url(name, ctx, server):
    kind, scheme, _ = CONTENDERS[name]
    if kind == "nginx":
        return ctx["urls"][scheme]
    return "http://127.0.0.1:%d/external-api" % server.port


def one_run(name, ctx, server, duration, out_path):
    args = ctx["args"]
    nginx = ctx["nginx"]
    cmd = benchlib.taskset(args.client_cpu, ["wrk", "-t1", "-c%d" % args.connections,
                                             "-d%ds" % duration, "--timeout", "5s", "--latency",
                                             target_url(name, ctx, server)])
    hz = os.sysconf("SC_CLK_TCK")
    a0 = nginx_accepts(ctx)
    s0, k0 = benchlib.cpu_times(args.server_cpu), benchlib.cpu_times(args.client_cpu)
    n0 = benchlib.tree_cpu_ticks(nginx.proc.pid)
    t0 = benchlib.tree_cpu_ticks(server.proc.pid) if server is not None else 0
    o0 = os.times()
    w0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - w0
    o1 = os.times()
    t1 = benchlib.tree_cpu_ticks(server.proc.pid) if server is not None else 0
    n1 = benchlib.tree_cpu_ticks(nginx.proc.pid)
    s1, k1 = benchlib.cpu_times(args.server_cpu), benchlib.cpu_times(args.client_cpu)
    a1 = nginx_accepts(ctx)
    with open(out_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + out.stdout + out.stderr)
    w = benchlib.parse_wrk(out.stdout, unit="ms")
    req = w["requests"] or 0
    server_s, nginx_s = (t1 - t0) / hz, (n1 - n0) / hz
    wrk_ticks = (o1.children_user + o1.children_system - o0.children_user -
                 o0.children_system) * hz
    direct = CONTENDERS[name][0] == "nginx"
    r = {
        "rps": w["rps"] or 0.0, "requests": req, "p50_ms": w["p50"], "p99_ms": w["p99"],
        "errors": w["socket_errors"] + w["non2xx"], "wall_s": round(wall, 3),
        "server_cpu_s": nginx_s if direct else server_s, "nginx_cpu_s": nginx_s,
        "server_us": (nginx_s if direct else server_s) * 1e6 / req if req else None,
        "nginx_us": nginx_s * 1e6 / req if req else None,
        # the 2 requests to /nginx_status are nginx's own, not the contender's
        "upstream_conns_per_1k": (a1 - a0 - 1) * 1000.0 / req if req and a0 is not None
        and a1 is not None and not direct else None,
    }
    r["per_server_cpu_s"] = req / r["server_cpu_s"] if req and r["server_cpu_s"] else None
    own = (n1 - n0) + (t1 - t0 if not direct else 0)
    r["server_core"] = benchlib.core_shares(s0, s1, own)
    r["client_core"] = benchlib.core_shares(k0, k1, wrk_ticks)
    r["disturbance"] = max((r[c][k] or 0) for c in ("server_core", "client_core")
                           for k in ("other", "steal"))
    r["disturbed"] = r["disturbance"] > args.disturb_limit
    return r


def measured_run(name, ctx, rnd, server):
    args = ctx["args"]
    raw = os.path.join(ctx["outdir"], "raw")
    if args.warmup > 0:
        one_run(name, ctx, server, args.warmup,
                os.path.join(raw, "%s-round%d-warmup.txt" % (name, rnd + 1)))
    best = None
    for attempt in range(args.retries + 1):
        stem = "%s-round%d%s.txt" % (name, rnd + 1, "" if attempt == 0 else
                                     ".again%d" % attempt)
        r = one_run(name, ctx, server, args.duration, os.path.join(raw, stem))
        r["attempts"] = attempt + 1
        if best is None or r["disturbance"] < best["disturbance"]:
            best = r
        if not r["disturbed"]:
            break
        log("%s round %d: disturbed (%.0f%% of a core taken by others or stolen)%s" % (
            name, rnd + 1, 100 * r["disturbance"], "; again" if attempt < args.retries else ""))
    best["attempts"] = attempt + 1
    pid_ok = True
    for who, s in (("nginx", ctx["nginx"]), (name, server)):
        if s is not None and s.proc is not None:
            pid_ok &= check_pinning(who, s.proc.pid, args.server_cpu,
                                    ctx["pinning"].setdefault(who, {}))
    best["pinned"] = pid_ok
    return best


def core_line(r):
    c, k = r["server_core"], r["client_core"]
    return ("core 0: server+nginx %3.0f%% irq %2.0f%% other %2.0f%%; core 1: wrk %3.0f%% "
            "other %2.0f%%" % (100 * (c["owner"] or 0), 100 * (c["irq"] or 0),
                              100 * (c["other"] or 0), 100 * (k["owner"] or 0),
                              100 * (k["other"] or 0)))


# ---- summary -----------------------------------------------------------------------

def summarize(runs):
    keys = ("rps", "server_us", "nginx_us", "per_server_cpu_s", "p50_ms", "p99_ms",
            "upstream_conns_per_1k")
    out = {k + "_median": median([r[k] for r in runs]) for k in keys}
    out["rps_min"] = min((r["rps"] for r in runs), default=None)
    out["rps_max"] = max((r["rps"] for r in runs), default=None)
    out["errors"] = sum(r["errors"] for r in runs)
    out["disturbed_runs"] = sum(1 for r in runs if r["disturbed"])
    out["server_core_owner_median"] = median([r["server_core"]["owner"] for r in runs])
    out["client_core_owner_median"] = median([r["client_core"]["owner"] for r in runs])
    return out


def build_targets(results):
    out = []
    for title, a, b, key, limit in TARGETS:
        ra, rb = results.get(a, {}), results.get(b, {})
        va, vb = ra.get(key + "_median"), rb.get(key + "_median")
        ratio = va / vb if va and vb else None
        at_most = limit < 0
        met = None if ratio is None else (ratio <= -limit if at_most else ratio >= limit)
        out.append({"title": title, "a": a, "b": b, "key": key, "ratio": ratio,
                    "limit": abs(limit), "at_most": at_most, "met": met})
    return out


def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def fmt_int(v):
    return "–" if v is None else "{:,.0f}".format(v)


def summary_md(summary):
    a = summary["args"]
    v = summary["versions"]
    res = summary["results"]
    lines = ["%s (`bench/fetch/run.py`)" % SECTION_TITLE, ""]
    if a.get("quick") or a["duration"] < 5 or a["rounds"] < 3:
        lines += ["> **A short run** (%d round(s) of %d s): it checks the harness end to end; "
                  "these are not figures to quote." % (a["rounds"], a["duration"]), ""]
    lines += [
        "`GET /external-api`: a handler that fetches a small JSON document "
        "(`%s`, %d bytes) from an upstream nginx and answers it as JSON: "
        "evicorn's `examples/external` against FastAPI with one shared "
        "`httpx.AsyncClient` (`bench/fetch/apps/fastapi_fetch.py`) under uvicorn and "
        "under Granian, over plain HTTP and over HTTPS (TLS to the upstream, "
        "verified against a CA made for the run and passed in `SSL_CERT_FILE`%s), "
        "and wrk straight at nginx (the limit). Every server and the upstream nginx "
        "share CPU 0, wrk runs on CPU 1 (%d connections, keep-alive). Medians of %d "
        "rounds of %d s, each after a %d s warm-up; run %s." % (
            DOC.decode(), len(DOC), "; HTTP/2 offered" if a.get("h2") else "",
            a["connections"], a["rounds"], a["duration"], a["warmup"], summary["stamp"]),
        "",
        "| Contender | Upstream | req/s (median) | min – max | server CPU µs/req | "
        "nginx CPU µs/req | req per server CPU-s | upstream conns per 1k req | p50 | p99 | "
        "errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ALL:
        r = res.get(name)
        if r is None:
            continue
        kind, scheme, title = CONTENDERS[name]
        if r["status"] != "ok" or not r.get("runs"):
            lines.append("| %s | %s | %s | | | | | | | | |" % (title, scheme.upper(),
                                                             r.get("note") or r["status"]))
            continue
        lines.append("| %s | %s | %s | %s – %s | %s | %s | %s | %s | %s ms | %s ms | %d |" % (
            title, scheme.upper(), fmt_int(r["rps_median"]), fmt_int(r["rps_min"]),
            fmt_int(r["rps_max"]), fmt(r["server_us_median"], "%.1f"),
            fmt(r["nginx_us_median"], "%.1f"), fmt_int(r["per_server_cpu_s_median"]),
            fmt(r["upstream_conns_per_1k_median"], "%.2f"), fmt(r["p50_ms_median"], "%.2f"),
            fmt(r["p99_ms_median"], "%.2f"), r["errors"]))
    lines += ["", "Server CPU is the contender's processes only (for nginx alone: nginx's); "
              "nginx's CPU per request is the upstream's share of the same requests. An "
              "upstream connection count near 0 per 1,000 requests means the client kept its "
              "connections alive and reused them.", "", "### Targets", "",
              "| Target | Ratio (medians) | |", "| --- | ---: | --- |"]
    for t in summary["targets"]:
        verdict = ("not measured" if t["met"] is None else "**met**" if t["met"]
                   else "**not met**")
        lines.append("| %s | %s | %s |" % (t["title"], fmt(t["ratio"], "%.2f×"), verdict))
    old, new = res.get("old-http"), res.get("evicorn-http")
    if old and new and old.get("runs") and new.get("runs"):
        lines += ["", "Before and after the new client, plain HTTP (the old build: `%s`): "
                  "%s → %s req/s (%s), %s → %s server CPU µs per request (%s), %s → %s "
                  "upstream connections per 1,000 requests." % (
                      summary.get("old_bin", "?"), fmt_int(old["rps_median"]),
                      fmt_int(new["rps_median"]),
                      fmt(new["rps_median"] / old["rps_median"], "%.2f×")
                      if old["rps_median"] else "–",
                      fmt(old["server_us_median"], "%.1f"), fmt(new["server_us_median"], "%.1f"),
                      fmt(new["server_us_median"] / old["server_us_median"], "%.2f×")
                      if old["server_us_median"] else "–",
                      fmt(old["upstream_conns_per_1k_median"], "%.1f"),
                      fmt(new["upstream_conns_per_1k_median"], "%.2f"))]
    m = summary["machine"]
    lines += ["", "Machine: %s, %s CPUs%s, %s, Linux %s. %s (%s, commit %s); "
              "nginx-light %s; wrk %s; %s; Python %s, FastAPI %s, httpx %s, uvicorn %s "
              "(uvloop %s, httptools %s), Granian %s." % (
                  m.get("cpu_model", "?"), m.get("cpus", "?"),
                  " (%s guest)" % m["hypervisor"] if m.get("hypervisor") else "",
                  m.get("os", "?"), m.get("kernel", "?"), summary.get("evicorn_version") or "?",
                  summary["evicorn"].get("CMAKE_BUILD_TYPE", "?"),
                  summary["evicorn"].get("commit", "?"), summary.get("nginx") or "?",
                  summary.get("wrk") or "?", summary.get("openssl") or "?", v.get("python", "–"),
                  v.get("fastapi", "–"), v.get("httpx", "–"), v.get("uvicorn", "–"),
                  v.get("uvloop", "–"), v.get("httptools", "–"), v.get("granian", "–")),
              "", "Run as:", "", "```sh", summary["command"], "```", "",
              "Servers, as started (`$TMP` is the run's temp folder, `$PORT` a free port):", "",
              "```sh"]
    for key, c in summary["commands"].items():
        lines.append("%s  # %s" % (c, key))
    lines += ["```", "", "Load, one run (shown for evicorn over HTTP):", "", "```sh",
              "taskset -c %d wrk -t1 -c%d -d%ds --timeout 5s --latency "
              "http://127.0.0.1:$PORT/external-api" % (a["client_cpu"], a["connections"],
                                                        a["duration"]),
              "```"]
    notes = summary.get("notes") or []
    if notes:
        lines += [""] + ["- %s" % n for n in notes]
    return "\n".join(lines) + "\n"


def write_docs(outdir):
    docs = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(os.path.join(outdir, "summary.md")) as f:
        text = f.read().rstrip("\n") + "\n"
    if os.path.exists(NOTES):
        with open(NOTES) as f:
            text += "\n" + f.read().rstrip("\n") + "\n"
    benchlib.splice_section(docs, SECTION_TITLE, text)
    log("wrote the %s section of %s" % (SECTION_TITLE, rel(docs)))


def report(outdir, docs):
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    md = summary_md(summary)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(md)
    if docs:
        write_docs(outdir)
    return md


# ---- main --------------------------------------------------------------------------

def pip_versions(vpy):
    names = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "granian", "httpx",
             "httpcore"]
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
        out = subprocess.run(cmd, capture_output=True, text=True)
        return ((out.stdout or out.stderr).strip().splitlines() or [None])[0]
    except OSError:
        return None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Contenders: %s." % " ".join(ALL))
    ap.add_argument("--rounds", type=int, help="rounds (3)")
    ap.add_argument("--duration", type=int, help="measured s per run (10)")
    ap.add_argument("--warmup", type=int, help="s of load before each run (2)")
    ap.add_argument("--only", default="",
                    help="comma-separated contenders, kinds (evicorn, old, uvicorn, granian, "
                         "nginx) or schemes (http, https); default: all")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--h2", action="store_true", help="offer HTTP/2 on nginx's TLS port")
    ap.add_argument("--disturb-limit", type=float, default=0.15)
    ap.add_argument("--retries", type=int, help="times a disturbed run is redone (1)")
    ap.add_argument("--quick", action="store_true",
                    help="--rounds 1 --duration 3 --warmup 1 --retries 0")
    ap.add_argument("--quiet-wait", type=float, default=600,
                    help="s to wait for other benchmarks to end before each run (600; 0: no)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree: evicorn and plugins/external.so (build)")
    ap.add_argument("--evicorn-bin", help="a second evicorn binary, measured as old-http")
    ap.add_argument("--evicorn-plugins",
                    help="its plugins folder (default: plugins/ next to --evicorn-bin)")
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "venv-bench-fetch"))
    ap.add_argument("--docs", action="store_true",
                    help="put the section into docs/benchmarks.md")
    ap.add_argument("--report", metavar="RESULTS_DIR",
                    help="measure nothing: write RESULTS_DIR's summary.md again from its "
                         "summary.json (with --docs: and the docs)")
    args = ap.parse_args()
    # --quick's values, unless given
    for key, full, quick in (("rounds", 3, 1), ("duration", 10, 3), ("warmup", 2, 1),
                             ("retries", 1, 0)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.build = os.path.abspath(args.build)
    args.venv = os.path.abspath(args.venv)
    only = [x for x in args.only.split(",") if x]
    picked = []
    for x in only:
        hit = [n for n, (kind, scheme, _) in CONTENDERS.items() if x in (n, kind, scheme)]
        if not hit:
            ap.error("--only: unknown %r (contenders: %s)" % (x, " ".join(ALL)))
        picked += hit
    args.contenders = [n for n in ALL if n in picked] if only else list(ALL)
    if args.evicorn_bin:
        args.evicorn_bin = os.path.abspath(args.evicorn_bin)
        args.evicorn_plugins = os.path.abspath(
            args.evicorn_plugins or os.path.join(os.path.dirname(args.evicorn_bin), "plugins"))
    return args


def main():
    args = parse_args()
    if args.report:
        print(report(os.path.abspath(args.report), args.docs))
        return
    benchlib.exit_on_signals()
    for tool, pkg in (("wrk", "wrk"), ("taskset", "util-linux"), ("nginx", "nginx-light"),
                      ("openssl", "openssl")):
        if not shutil.which(tool):
            sys.exit("bench/fetch/run.py: %s is not installed (apt-get install %s)" % (tool, pkg))
    if max(args.server_cpu, args.client_cpu) >= (os.cpu_count() or 1):
        sys.exit("bench/fetch/run.py: need CPUs %d and %d" % (args.server_cpu, args.client_cpu))

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    for d in ("logs", "raw"):
        os.makedirs(os.path.join(outdir, d))
    command = " ".join(["python3", "bench/fetch/run.py"] +
                       [x.replace(ROOT + "/", "") for x in sys.argv[1:]])
    tmp = tempfile.mkdtemp(prefix="evicorn-fetch-bench-")
    os.chmod(tmp, 0o711)  # nginx's worker (nobody, under root) reaches www/ only
    ctx = {"args": args, "outdir": outdir, "tmp": tmp, "commands": {}, "pinning": {},
           "vpy": None, "venv": args.venv, "bins": {}, "plugin_dirs": {}}
    notes = []
    contenders = list(args.contenders)
    # evicorn: the binaries and private copies of external.so (a rebuild of
    # a shared build tree must not reload it mid-run)
    for kind, binary, plugins in (("evicorn", os.path.join(args.build, "evicorn"),
                                   os.path.join(args.build, "plugins")),
                                  ("old", args.evicorn_bin, args.evicorn_plugins)):
        mine = [n for n in contenders if CONTENDERS[n][0] == kind]
        if not mine:
            continue
        so = os.path.join(plugins, "external.so") if plugins else None
        if not binary or not os.path.exists(binary) or not os.path.exists(so):
            for n in mine:
                contenders.remove(n)
            notes.append("%s: not measured: %s" % (
                ", ".join(mine), "no --evicorn-bin given" if not binary else
                "%s or %s is not built" % (rel(binary), rel(so))))
            log(notes[-1])
            continue
        ctx["bins"][kind] = binary
        ctx["plugin_dirs"][kind] = os.path.join(tmp, "plugins-" + kind)
        os.mkdir(ctx["plugin_dirs"][kind], 0o700)
        shutil.copy(so, ctx["plugin_dirs"][kind])
    if any(CONTENDERS[n][0] in ("uvicorn", "granian") for n in contenders):
        ctx["vpy"] = benchlib.ensure_venv(args.venv, REQUIREMENTS, "fastapi, uvicorn, granian, "
                                          "httpx", os.path.join(outdir, "logs", "venv.log"),
                                          prog="bench/fetch/run.py", log=log)
    summary = {
        "stamp": stamp, "command": command, "args": dict(vars(args)),
        "versions": pip_versions(ctx["vpy"]) if ctx["vpy"] else {},
        "evicorn_version": first_line([os.path.join(args.build, "evicorn"), "--version"]),
        "evicorn": benchlib.evicorn_build_info(args.build), "machine": benchlib.machine(),
        "old_bin": rel(args.evicorn_bin) if args.evicorn_bin else None,
        "nginx": benchlib.deb_version("nginx-light") or first_line(["nginx", "-v"]),
        "wrk": benchlib.deb_version("wrk"), "openssl": first_line(["openssl", "version"]),
        "commands": ctx["commands"], "notes": notes, "pinning": ctx["pinning"],
    }
    benchlib.pin_self(args.client_cpu)  # this script and wrk stay off the servers' core
    results = {n: {"status": "ok", "note": None, "runs": []} for n in args.contenders}
    for n in args.contenders:
        if n not in contenders:
            results[n].update(status="not measured", note="not measured")
    servers = {}
    try:
        ctx["pki"] = make_pki(tmp)
        start_nginx(ctx)
        for name in contenders:
            if CONTENDERS[name][0] == "nginx":
                continue
            s = start_server(name, ctx)
            servers[name] = s
            if s.status != "ok":
                results[name].update(status=s.status, note=s.note)
        for rnd in range(args.rounds):
            live = [n for n in contenders if results[n]["status"] == "ok"]
            if not live:
                break
            k = rnd % len(live)
            for name in live[k:] + live[:k]:
                s = servers.get(name)
                if s is not None and s.proc.poll() is not None:
                    results[name].update(status="failed", note="exited with %d" %
                                         s.proc.returncode)
                    continue
                benchlib.wait_quiet(args.quiet_wait)
                r = measured_run(name, ctx, rnd, s)
                r["round"] = rnd + 1
                results[name]["runs"].append(r)
                print("round %d %-14s %8.0f req/s  server %6s µs/req  nginx %5s µs/req  "
                      "upstream conns/1k %6s  (%s)%s" % (
                          rnd + 1, name, r["rps"], fmt(r["server_us"], "%.1f"),
                          fmt(r["nginx_us"], "%.1f"), fmt(r["upstream_conns_per_1k"], "%.2f"),
                          core_line(r), " errors %d" % r["errors"] if r["errors"] else ""),
                      flush=True)
    finally:
        for s in list(LIVE):
            stop(s)
        for name in ("nginx",):
            src = os.path.join(tmp, "nginx", "error.log")
            if os.path.exists(src):
                shutil.copy(src, os.path.join(outdir, "logs", "nginx-error.log"))
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(outdir, "commands.txt"), "w") as f:
            f.write("$ %s\n" % command)
            for key, c in ctx["commands"].items():
                f.write("%s: %s\n" % (key, c))
    for name, r in results.items():
        r.update(summarize(r["runs"]))
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
