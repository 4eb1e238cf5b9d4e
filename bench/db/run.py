#!/usr/bin/env python3
"""Databases: TechEmpower's four database tests on one PostgreSQL 15, served
by evicorn (examples/techempower) and by FastAPI + asyncpg under uvicorn and
under Granian, next to pgbench running the same statements.

    python3 bench/db/run.py [--rounds 5] [--duration 8] [--warmup 2] [--quick]
                            [--only NAME,...] [--connections 64] [--pool 8] [--docs]

Endpoints (--only takes these and contender names, comma-separated):

  db        GET /db                     one row by a random id
  queries   GET /queries?queries=20     20 rows, 20 statements
  fortunes  GET /fortunes               the fortune table as an HTML page
  updates   GET /updates?queries=20     20 rows read, then written back

Contenders:

  evicorn   build/evicorn serving build/plugins/techempower.so (a private copy),
            its pool of --pool connections (EVICORN_PG_POOL_SIZE); skipped, and
            said so, when the plugin is not built
  uvicorn   bench/db/apps/fastapi_db.py (FastAPI, asyncpg pool of --pool,
            Jinja2) under uvicorn with uvloop and httptools
  granian   the same app under Granian (ASGI, uvloop, one runtime thread)
  pgbench   pgbench -M prepared -c <pool> -j 1 with bench/db/pgbench/*.sql: the
            statements each endpoint sends, with no HTTP server at all (the
            physical limit of this machine for them)

PostgreSQL: a fresh cluster in a temp folder (tests/http/db_harness.py's
PgServer: initdb, trust on 127.0.0.1, a free port, fsync and
synchronous_commit off, the tables loaded by scripts/db-load: world 10,000
rows, fortune 12), run as `nobody` when started by root. Every process of it
is pinned to --pg-cpu (default 1, the load generator's core; -1: not pinned),
and children it forks later inherit that; the same placement for every
contender, pgbench included.

Placement: every HTTP server runs one worker under `taskset -c 0`
(--server-cpu), every thread checked; wrk (`-t1 -c<connections>`, keep-alive)
and pgbench run under `taskset -c 1` (--client-cpu), as does this script.
Each of --rounds rounds runs every endpoint against every contender, the
contenders' order rotated every round, each measured run after a warm-up of
its own. Per run: req/s (pgbench: transactions/s without its connection
time), latency, errors, the server's CPU time (utime+stime of all its
processes from /proc, before and after), PostgreSQL's (all its processes,
including backends that exited: the postmaster's cutime+cstime), the load
generator's, and how both cores were shared (/proc/stat). A run where
processes outside the benchmark or steal took more than --disturb-limit of
the machine is done again up to --retries times, the least disturbed kept.
Medians over the rounds; evicorn's ratio to every other contender.

Output: bench/db/results/<UTC timestamp>/ (gitignored): commands.txt, logs/,
raw/ (wrk's and pgbench's output), rounds/round-N.json (every run of a round),
summary.json, summary.md (the section for docs/benchmarks.md) and db.png,
db_cpu.png (bench/charts.py's style). --docs also puts the section into
docs/benchmarks.md (replacing its "## Databases" section, or appending one),
with bench/db/notes.md after it, and the charts into docs/img/. --report DIR
measures nothing: it writes DIR's summary.md and charts again from its
summary.json (with --docs: and the docs).

Needs wrk, taskset, PostgreSQL 15's server binaries and pgbench (Debian
postgresql, postgresql-client), Python 3's standard library; the Python
peers get a venv (build/venv-bench-db, bench/db/requirements.txt, pinned);
the charts need matplotlib here or in /usr/bin/python3.
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
BENCH = os.path.dirname(HERE)
sys.path.insert(0, BENCH)
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
sys.path.insert(0, os.path.join(ROOT, "tests", "http"))
APPS = os.path.join(HERE, "apps")
PGBENCH_DIR = os.path.join(HERE, "pgbench")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
NOTES = os.path.join(HERE, "notes.md")
SECTION_TITLE = "## Databases"
rel = benchlib.rel

QUERIES = 20
# name -> (HTTP path, pgbench script, title)
ENDPOINTS = {
    "db": ("/db", "db.sql", "GET /db"),
    "queries": ("/queries?queries=%d" % QUERIES, "queries%d.sql" % QUERIES,
                "GET /queries?queries=%d" % QUERIES),
    "fortunes": ("/fortunes", "fortunes.sql", "GET /fortunes"),
    "updates": ("/updates?queries=%d" % QUERIES, "updates%d.sql" % QUERIES,
                "GET /updates?queries=%d" % QUERIES),
}
ALL_ENDPOINTS = list(ENDPOINTS)
HTTP_CONTENDERS = ["evicorn", "uvicorn", "granian"]
ALL_CONTENDERS = HTTP_CONTENDERS + ["pgbench"]
TITLE = {"evicorn": "evicorn", "uvicorn": "FastAPI+asyncpg, uvicorn",
         "granian": "FastAPI+asyncpg, Granian", "pgbench": "pgbench (no HTTP)"}
# (endpoint, peer, minimum ratio of evicorn's req/s to the peer's, what it is)
TARGETS = [
    ("db", "pgbench", 0.9, "`/db` ≥ 0.9× pgbench, same statement"),
    ("db", "uvicorn", 3.0, "`/db` ≥ 3× FastAPI+asyncpg (uvicorn)"),
    ("db", "granian", 3.0, "`/db` ≥ 3× FastAPI+asyncpg (Granian)"),
    ("queries", "pgbench", 0.8, "`/queries?queries=20` ≥ 0.8× pgbench, 20 statements "
                                "pipelined"),
    ("fortunes", "uvicorn", 3.0, "`/fortunes` ≥ 3× FastAPI+asyncpg+Jinja2 (uvicorn)"),
    ("fortunes", "granian", 3.0, "`/fortunes` ≥ 3× FastAPI+asyncpg+Jinja2 (Granian)"),
]


def log(msg):
    print("[db %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def median(xs):
    return benchlib.median([x for x in xs if x is not None])


# ---- checks of the answers ------------------------------------------------------

def _json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _world(o):
    return isinstance(o, dict) and isinstance(o.get("id"), int) and \
        isinstance(o.get("randomNumber"), int) and 1 <= o["id"] <= 10000


def check_body(endpoint, body):
    """None when body is a right answer for endpoint, else what is wrong."""
    if endpoint == "db":
        return None if _world(_json(body)) else "not a world row: %r" % body[:80]
    if endpoint in ("queries", "updates"):
        o = _json(body)
        if not isinstance(o, list) or len(o) != QUERIES or not all(map(_world, o)):
            return "not an array of %d world rows: %r" % (QUERIES, body[:80])
        return None
    text = body.decode("utf-8", "replace")
    rows = text.count("<tr>")
    if rows != 14 or "&lt;script&gt;" not in text or "フレームワークのベンチマーク" not in text \
            or "Additional fortune added at request time." not in text:
        return "not the fortunes page (%d rows): %r" % (rows, body[:80])
    return None


# ---- servers ----------------------------------------------------------------------

class Server(benchlib.PinnedServer):
    """One HTTP contender, in its own process group, pinned with taskset."""

    def __init__(self, name, argv, cwd, env, cpu, log_path, port):
        super().__init__(name, argv, cpu=cpu, port=port, log_path=log_path, cwd=cwd, env=env,
                         new_session=True)
        self.status, self.note = "ok", None
        self.pin_checks, self.max_threads, self.unpinned = 0, 0, []
        self.broken = {}  # endpoint -> why it is not measured

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
    """Every thread of pid's processes on `cpu` alone; counts the check in
    record (pin_checks, max_threads, unpinned)."""
    aff = benchlib.tree_affinity(pid)
    record["pin_checks"] = record.get("pin_checks", 0) + 1
    record["max_threads"] = max(record.get("max_threads", 0), sum(len(v) for v in aff.values()))
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


def server_argv(name, ctx, port):
    """(argv, cwd, env) of one HTTP contender."""
    host = "127.0.0.1"
    env = benchlib.clean_env()
    env["DATABASE_URL"] = ctx["db_url"]
    env["EVICORN_PG_POOL_SIZE"] = str(ctx["args"].pool)
    if name == "evicorn":
        return ([ctx["evicorn_bin"], "--host", host, "--port", str(port), "--plugins",
                 ctx["plugins"], "--workers", "1", "--no-access-log", "--log-level", "warning",
                 "--timeout-keep-alive", "600"], ctx["tmp"], env)
    vpy = ctx["vpy"]
    env["VIRTUAL_ENV"] = ctx["venv"]
    env["PATH"] = os.path.join(ctx["venv"], "bin") + os.pathsep + env.get("PATH", "")
    if name == "uvicorn":
        return ([vpy, "-m", "uvicorn", "fastapi_db:app", "--host", host, "--port", str(port),
                 "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                 "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "600"],
                APPS, env)
    if name == "granian":
        return ([vpy, "-m", "granian", "--interface", "asgi", "--host", host, "--port",
                 str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
                 "--no-ws", "--log-level", "warning", "fastapi_db:app"], APPS, env)
    raise ValueError(name)


def shown(argv, ctx):
    out = []
    for a in argv:
        if ctx.get("vpy"):
            a = a.replace(ctx["vpy"], rel(ctx["venv"]) + "/bin/python")
        if ctx.get("db_url"):
            a = a.replace(ctx["db_url"], "$DATABASE_URL")
        a = a.replace(ctx["tmp"], "$TMP").replace(ROOT + "/", "")
        out.append(a)
    line = " ".join(out)
    return re.sub(r"--port \d+", "--port $PORT", line)


def start_server(name, ctx):
    """Starts one HTTP contender and checks every endpoint's answer once.
    Returns the Server (.status "ok", or "failed"/"missing" with .note)."""
    args = ctx["args"]
    port = benchlib.free_port()
    argv, cwd, env = server_argv(name, ctx, port)
    s = Server(name, argv, cwd, env, args.server_cpu,
               os.path.join(ctx["outdir"], "logs", "%s.log" % name), port)
    extra = "".join("%s=%s " % (k, v) for k, v in sorted(env.items())
                    if (k.startswith("EVICORN_PG_") and k != "EVICORN_PG_POOL_SIZE")
                    or k.startswith("TECHEMPOWER_"))
    ctx["commands"][name] = "cd %s && DATABASE_URL=$DATABASE_URL EVICORN_PG_POOL_SIZE=%d %s%s" % (
        shown([cwd], ctx), args.pool, extra, shown(s.command, ctx))
    LIVE.append(s)
    s.start()
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        if s.proc.poll() is not None:
            last = "exited with %d during start; see %s" % (s.proc.returncode,
                                                          rel(s.log_path))
            break
        try:
            status, body = benchlib.http_get(port, ENDPOINTS["db"][0], timeout=10)
            if status == 200:
                last = None
                break
            last = "GET /db answered %d %r" % (status, body[:80])
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    if last:
        stop(s)
        s.status, s.note = "failed", last
        log("%s: did not start: %s" % (name, last))
        return s
    for ep in args.endpoints:
        try:
            status, body = benchlib.http_get(port, ENDPOINTS[ep][0], timeout=10)
            why = check_body(ep, body) if status == 200 else "answered %d %r" % (status,
                                                                                body[:80])
        except OSError as e:
            why = str(e)
        if why:
            s.broken[ep] = why
            log("%s: %s: %s (not measured)" % (name, ENDPOINTS[ep][2], why))
    check_pinning(name, s.proc.pid, args.server_cpu, ctx["pinning"].setdefault(name, {}))
    log("%s: up on 127.0.0.1:%d (pid %d, CPU %d)" % (name, port, s.proc.pid, args.server_cpu))
    return s


# ---- PostgreSQL -------------------------------------------------------------------

def start_postgres(ctx):
    from db_harness import PgServer

    args = ctx["args"]
    pg = PgServer(max_connections=max(100, 4 * args.pool + 20))
    pg.start()
    ctx["pg"] = pg
    if args.pg_cpu >= 0:
        n = benchlib.pin_tree(pg.pid, {args.pg_cpu})
        log("PostgreSQL: %d threads pinned to CPU %d" % (n, args.pg_cpu))
    else:  # it inherited this script's pinning: give it every CPU
        benchlib.pin_tree(pg.pid, set(range(os.cpu_count() or 1)))
    rows = pg.psql("SELECT (SELECT count(*) FROM world), (SELECT count(*) FROM fortune), "
                   "version(), current_setting('shared_buffers'), "
                   "current_setting('synchronous_commit'), current_setting('fsync'), "
                   "current_setting('max_connections'), "
                   "current_setting('shared_preload_libraries')")[0]
    ctx["pg_info"] = {"world_rows": int(rows[0]), "fortune_rows": int(rows[1]),
                      "version": rows[2], "shared_buffers": rows[3],
                      "synchronous_commit": rows[4], "fsync": rows[5],
                      "max_connections": int(rows[6]), "preload": rows[7],
                      "bindir": pg.bindir}
    log("PostgreSQL on 127.0.0.1:%d (pid %d): world %s rows, fortune %s rows; %s" % (
        pg.port, pg.pid, rows[0], rows[1], rows[2].split(" on ")[0]))
    return pg


def all_ticks():
    """{pid: (command name, utime+stime ticks)} of every process now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                text = f.read()
            comm = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            out[int(pid)] = (comm, int(fields[11]) + int(fields[12]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def busiest_others(a, b, mine, hz, wall):
    """The processes outside the benchmark that used the most CPU between two
    all_ticks() readings (those alive at both): [(name, share of a core)]."""
    use = {}
    for pid, (comm, t1) in b.items():
        if pid in mine or pid not in a:
            continue
        d = t1 - a[pid][1]
        if d > 0:
            use[comm] = use.get(comm, 0) + d
    top = sorted(use.items(), key=lambda x: -x[1])[:3]
    return [(c, round(t / hz / wall, 3)) for c, t in top if wall and t / hz / wall >= 0.02]


def pg_ticks(ctx):
    return benchlib.tree_cpu_ticks(ctx["pg"].pid, reaped=True)


# ---- one run ------------------------------------------------------------------------

def parse_pgbench(text):
    r = {}
    m = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", text, re.M)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    r["requests"] = int(m.group(1)) if m else None
    m = re.search(r"^latency average = ([\d.]+) ms", text, re.M)
    r["latency_avg_ms"] = float(m.group(1)) if m else None
    m = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    r["failed"] = int(m.group(1)) if m else 0
    return r


def load_command(name, ep, ctx, duration, port=None):
    args = ctx["args"]
    if name == "pgbench":
        return benchlib.taskset(args.client_cpu, [
            ctx["pgbench"], "-n", "-M", "prepared", "-c", str(args.pool), "-j", "1",
            "-T", str(duration), "-f", os.path.join(PGBENCH_DIR, ENDPOINTS[ep][1]),
            ctx["db_url"]])
    return benchlib.taskset(args.client_cpu, [
        "wrk", "-t1", "-c%d" % args.connections, "-d%ds" % duration, "--timeout", "5s",
        "--latency", "http://127.0.0.1:%d%s" % (port, ENDPOINTS[ep][0])])


def one_run(name, ep, ctx, duration, out_path, server=None):
    """One load run against a contender: the load generator's numbers, and the
    CPU time of the server, of PostgreSQL and of the load generator, and
    how both cores were shared."""
    args = ctx["args"]
    cmd = load_command(name, ep, ctx, duration, server.port if server else None)
    hz = os.sysconf("SC_CLK_TCK")
    spid = server.proc.pid if server else None
    c0, k0 = benchlib.cpu_times(args.server_cpu), benchlib.cpu_times(args.client_cpu)
    s0 = benchlib.tree_cpu_ticks(spid, reaped=True) if spid else 0
    p0 = pg_ticks(ctx)
    a0 = all_ticks()
    o0 = os.times()
    w0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    wall = time.monotonic() - w0
    o1 = os.times()
    a1 = all_ticks()
    p1 = pg_ticks(ctx)
    s1 = benchlib.tree_cpu_ticks(spid, reaped=True) if spid else 0
    c1, k1 = benchlib.cpu_times(args.server_cpu), benchlib.cpu_times(args.client_cpu)
    with open(out_path, "w") as f:
        f.write("$ " + shown(cmd, ctx) + "\n" + out.stdout + out.stderr)
    if name == "pgbench":
        p = parse_pgbench(out.stdout)
        r = {"rps": p["rps"] or 0.0, "requests": p["requests"] or 0, "p50_ms": None,
             "p99_ms": None, "latency_avg_ms": p["latency_avg_ms"], "errors": p["failed"]
             + (0 if out.returncode == 0 else 1)}
    else:
        w = benchlib.parse_wrk(out.stdout, unit="ms")
        r = {"rps": w["rps"] or 0.0, "requests": w["requests"] or 0, "p50_ms": w["p50"],
             "p99_ms": w["p99"], "latency_avg_ms": None,
             "errors": w["socket_errors"] + w["non2xx"]}
    client_ticks = (o1.children_user + o1.children_system - o0.children_user -
                    o0.children_system) * hz
    server_s, pg_s, client_s = (s1 - s0) / hz, (p1 - p0) / hz, client_ticks / hz
    n = r["requests"]
    r.update({
        "returncode": out.returncode, "wall_s": round(wall, 3),
        "server_cpu_s": server_s if spid else None, "pg_cpu_s": pg_s, "client_cpu_s": client_s,
        "server_us_per_req": server_s * 1e6 / n if spid and n else None,
        "pg_us_per_req": pg_s * 1e6 / n if n else None,
        "client_us_per_req": client_s * 1e6 / n if n else None,
        "req_per_server_cpu_s": n / server_s if spid and n and server_s else None,
        "req_per_pg_cpu_s": n / pg_s if n and pg_s else None,
        "pg_cores": pg_s / wall if wall else None,
    })
    # Each core: who it was given to (the server on the server's core; the
    # load generator, and PostgreSQL when pinned there, on the client's).
    pg_own = {args.server_cpu: 0, args.client_cpu: 0}
    if args.pg_cpu in pg_own:
        pg_own[args.pg_cpu] = p1 - p0
    r["server_core"] = benchlib.core_shares(c0, c1, (s1 - s0) + pg_own[args.server_cpu])
    r["client_core"] = benchlib.core_shares(k0, k1, client_ticks + pg_own[args.client_cpu])
    # What ran on the machine that was none of them (wherever PostgreSQL ran).
    busy = sum(c1[k] - c0[k] + k1[k] - k0[k] for k in ("user", "nice", "system"))
    total = sum(c1[k] - c0[k] + k1[k] - k0[k] for k in c0)
    others = busy - (s1 - s0) - (p1 - p0) - client_ticks
    r["others_share"] = round(max(0.0, others / total), 4) if total else None
    r["disturbance"] = max(r["others_share"] or 0, r["server_core"]["steal"] or 0,
                           r["client_core"]["steal"] or 0)
    r["disturbed"] = r["disturbance"] > args.disturb_limit
    mine = set(benchlib.tree_pids(os.getpid())) | set(benchlib.tree_pids(ctx["pg"].pid))
    for s in LIVE:
        if s.proc is not None:
            mine |= set(benchlib.tree_pids(s.proc.pid))
    r["others_seen"] = busiest_others(a0, a1, mine, hz, wall)
    return r


def core_line(r):
    c, k = r["server_core"], r["client_core"]
    return ("core %d busy %3.0f%%, core %d busy %3.0f%%, PostgreSQL %.2f cores, others %2.0f%%" % (
        0, 100 * (1 - (c["idle"] or 0)), 1, 100 * (1 - (k["idle"] or 0)), r["pg_cores"] or 0,
        100 * (r["others_share"] or 0))) + ("  [%s]" % ", ".join(
            "%s %.0f%%" % (c, 100 * x) for c, x in r["others_seen"]) if r.get("others_seen")
            else "")


def measured_run(name, ep, ctx, rnd, server=None):
    args = ctx["args"]
    stem = "%s-%s-round%d" % (ep, name, rnd + 1)
    if args.warmup > 0:
        one_run(name, ep, ctx, args.warmup, os.path.join(ctx["outdir"], "raw",
                                                         stem + "-warmup.txt"), server)
    best = None
    for attempt in range(args.retries + 1):
        fname = stem + (".txt" if attempt == 0 else ".again%d.txt" % attempt)
        r = one_run(name, ep, ctx, args.duration, os.path.join(ctx["outdir"], "raw", fname),
                    server)
        r["attempts"] = attempt + 1
        if best is None or r["disturbance"] < best["disturbance"]:
            best = dict(r)
        if not r["disturbed"] or (server and server.proc.poll() is not None):
            break
        log("%s: disturbed (%.0f%% taken by others or stolen)%s" % (
            stem, 100 * r["disturbance"], "; again" if attempt < args.retries else
            "; kept the least disturbed attempt"))
    best["attempts"] = r["attempts"]
    if server:
        best["pinned"] = check_pinning(name, server.proc.pid, args.server_cpu,
                                       ctx["pinning"].setdefault(name, {}))
    if args.pg_cpu >= 0:
        best["pg_pinned"] = check_pinning("postgres", ctx["pg"].pid, args.pg_cpu,
                                          ctx["pinning"].setdefault("postgres", {}))
    return best


# ---- summary ------------------------------------------------------------------------

def summarize(runs):
    keys = ["rps", "server_us_per_req", "pg_us_per_req", "client_us_per_req",
            "req_per_server_cpu_s", "req_per_pg_cpu_s", "pg_cores", "pg_cpu_s",
            "server_cpu_s", "p50_ms", "p99_ms", "latency_avg_ms"]
    out = {k + "_median": median([r[k] for r in runs]) for k in keys}
    out["server_core_busy_median"] = median([1 - (r["server_core"]["idle"] or 0) for r in runs])
    out["client_core_busy_median"] = median([1 - (r["client_core"]["idle"] or 0) for r in runs])
    out["errors"] = sum(r["errors"] for r in runs)
    out["disturbed_runs"] = sum(1 for r in runs if r["disturbed"])
    return out


def build_summary(results, ctx):
    """results: {endpoint: {contender: {"status", "note", "runs"}}}."""
    eps = {}
    for ep, by in results.items():
        cont = {}
        for name, d in by.items():
            s = {"status": d["status"], "note": d["note"], "runs": d["runs"]}
            if d["runs"]:
                s.update(summarize(d["runs"]))
            cont[name] = s
        ev = cont.get("evicorn", {})
        ratios = {}
        for name, s in cont.items():
            if name == "evicorn" or not s.get("runs") or not ev.get("runs"):
                continue
            ratios[name] = {
                "rps": ev["rps_median"] / s["rps_median"] if s["rps_median"] else None,
                "req_per_server_cpu_s": (ev["req_per_server_cpu_s_median"] /
                                         s["req_per_server_cpu_s_median"])
                if s.get("req_per_server_cpu_s_median") and
                ev.get("req_per_server_cpu_s_median") else None,
                "req_per_pg_cpu_s": (ev["req_per_pg_cpu_s_median"] /
                                     s["req_per_pg_cpu_s_median"])
                if s.get("req_per_pg_cpu_s_median") and ev.get("req_per_pg_cpu_s_median")
                else None,
            }
        eps[ep] = {"path": ENDPOINTS[ep][0], "title": ENDPOINTS[ep][2],
                   "pgbench_script": "bench/db/pgbench/" + ENDPOINTS[ep][1],
                   "contenders": cont, "ratios": ratios}
    targets = []
    for ep, peer, want, what in TARGETS:
        rt = eps.get(ep, {}).get("ratios", {}).get(peer)
        ratio = rt["rps"] if rt else None
        cont = eps.get(ep, {}).get("contenders", {})
        busy = {n: (cont[n].get("server_core_busy_median"), cont[n].get("client_core_busy_median"))
                for n in ("evicorn", peer) if cont.get(n, {}).get("runs")}
        targets.append({"endpoint": ep, "peer": peer, "target": want, "what": what,
                        "ratio": ratio, "busy": busy,
                        "ratio_per_server_cpu_s": rt["req_per_server_cpu_s"] if rt else None,
                        "verdict": None if ratio is None else ("met" if ratio >= want
                                                               else "missed")})
    return eps, targets


def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def fmt_ratio(v):
    return "–" if v is None else "%.2f×" % v


def fmt_pct(v):
    return "–" if v is None else "%.0f %%" % (100 * v)


def summary_md(summary):
    a = summary["args"]
    pg = summary["postgres"]
    v = summary["versions"]
    ev = summary["evicorn"]
    pgcpu = ("pinned to CPU %d, the load generator's core" % a["pg_cpu"]
             if a["pg_cpu"] == a["client_cpu"] else
             "pinned to CPU %d" % a["pg_cpu"] if a["pg_cpu"] >= 0 else "not pinned")
    lines = ["%s (`bench/db/run.py`)" % SECTION_TITLE, ""]
    if a["quick"] or a["duration"] < 5:
        lines += ["> **A short run** (%d round%s of %d s per contender and endpoint): it "
                  "checks the harness end to end; these are not figures to quote." % (
                      a["rounds"], "" if a["rounds"] == 1 else "s", a["duration"]), ""]
    lines.append(
        "TechEmpower's database tests on one PostgreSQL %s, sharing this 2-core machine with "
        "the servers and the load generator: %s. Contenders: evicorn serving "
        "`examples/techempower` (its SDK pool, `EVICORN_PG_POOL_SIZE=%d`), the same four "
        "routes in FastAPI with an asyncpg pool of %d and Jinja2 (`bench/db/apps/"
        "fastapi_db.py`) under uvicorn and under Granian, and **pgbench** sending the same "
        "statements with no HTTP at all (`-M prepared -c %d -j 1`, `bench/db/pgbench/*.sql`). "
        "Every HTTP server runs one worker under `taskset -c %d`; wrk (`-t1 -c%d`, keep-alive) "
        "and pgbench run under `taskset -c %d`. %d round%s, each endpoint against every "
        "contender in turn (the order rotated every round), %d s measured after a %d s "
        "warm-up of its own; medians. *Server CPU* is utime+stime of all the server's "
        "processes, *PostgreSQL CPU* of all postgres processes (backends that exited "
        "included), both from `/proc`, per request." % (
            pg.get("version", "?").split()[1] if pg.get("version") else "?", pgcpu, a["pool"],
            a["pool"], a["pool"], a["server_cpu"], a["connections"], a["client_cpu"],
            a["rounds"], "" if a["rounds"] == 1 else "s", a["duration"], a["warmup"]))
    lines.append("")
    lines.append("| | |")
    lines.append("| --- | --- |")
    m = summary["machine"]
    lines.append("| machine | %s, %s cores (%s guest), %s, %s |" % (
        m.get("cpu_model", "?"), m.get("cpus"), m.get("hypervisor", "?"), m.get("memory", "?"),
        m.get("os", "?")))
    lines.append("| evicorn | %s (%s, commit %s)%s |" % (
        summary.get("evicorn_version") or "not built", ev.get("CMAKE_BUILD_TYPE", "?"),
        ev.get("commit", "?"), "; `techempower.so` sha256 %s…" % summary["plugin_sha256"]
        if summary.get("plugin_sha256") else ""))
    lines.append("| PostgreSQL | %s; a fresh cluster (`tests/http/db_harness.py`), `fsync=%s`, "
                 "`synchronous_commit=%s`, `shared_buffers=%s`%s; world %s rows, fortune %s "
                 "(`scripts/db-load`) |" % (
                     pg.get("version", "?").split(",")[0], pg.get("fsync"),
                     pg.get("synchronous_commit"), pg.get("shared_buffers"),
                     ", `shared_preload_libraries=%s`" % pg["preload"] if pg.get("preload")
                     else "", pg.get("world_rows"), pg.get("fortune_rows")))
    lines.append("| Python peers | Python %s: FastAPI %s, Starlette %s, asyncpg %s, Jinja2 %s, "
                 "orjson %s; uvicorn %s (uvloop %s, httptools %s); Granian %s |" % (
                     v.get("python"), v.get("fastapi"), v.get("starlette"), v.get("asyncpg"),
                     v.get("jinja2"), v.get("orjson"), v.get("uvicorn"), v.get("uvloop"),
                     v.get("httptools"), v.get("granian")))
    lines.append("| load | wrk %s; pgbench %s |" % (summary["wrk"], summary["pgbench"]))
    lines.append("")
    lines.append("| endpoint | contender | req/s | evicorn ÷ it | server CPU µs/req | "
                 "req per server CPU-s | evicorn ÷ it | PostgreSQL CPU µs/req | PostgreSQL "
                 "CPU-s per run (cores) | load gen. µs/req | core %d / core %d busy | "
                 "p50 / p99 ms | errors |" % (a["server_cpu"], a["client_cpu"]))
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
                 "---: | ---: |")
    for ep, d in summary["endpoints"].items():
        for name, s in d["contenders"].items():
            label = "**%s**" % TITLE[name] if name == "evicorn" else TITLE[name]
            if not s.get("runs"):
                lines.append("| %s | %s | %s | | | | | | | | | | |" % (
                    d["title"], label, s["status"] + (": " + s["note"] if s["note"] else "")))
                continue
            r = d["ratios"].get(name, {})
            lat = ("%s / %s" % (fmt(s["p50_ms_median"], "%.2f"), fmt(s["p99_ms_median"],
                                                                      "%.2f"))
                   if name != "pgbench" else "avg %s" % fmt(s["latency_avg_ms_median"], "%.2f"))
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | "
                         "%d |" % (
                             d["title"], label, fmt(s["rps_median"]),
                             "" if name == "evicorn" else fmt_ratio(r.get("rps")),
                             fmt(s["server_us_per_req_median"], "%.1f"),
                             fmt(s["req_per_server_cpu_s_median"]),
                             "" if name == "evicorn" else fmt_ratio(r.get(
                                 "req_per_server_cpu_s")),
                             fmt(s["pg_us_per_req_median"], "%.1f"),
                             "%s (%s)" % (fmt(s.get("pg_cpu_s_median"), "%.2f"),
                                          fmt(s["pg_cores_median"], "%.2f")),
                             fmt(s["client_us_per_req_median"], "%.1f"),
                             fmt_pct(s["server_core_busy_median"]),
                             fmt_pct(s["client_core_busy_median"]), lat, s["errors"]))
    lines.append("")
    lines.append("![req/s and requests per server CPU-second per endpoint](img/db.png)")
    lines.append("")
    lines.append("![CPU time per request: server, PostgreSQL, load generator](img/db_cpu.png)")
    lines.append("")
    lines.append("### Targets")
    lines.append("")
    lines.append("| target | measured: req/s ratio (per server CPU-second) | core %d / core %d "
                 "busy: evicorn; peer | verdict |" % (a["server_cpu"], a["client_cpu"]))
    lines.append("| --- | --- | --- | --- |")
    for t in summary["targets"]:
        busy = t.get("busy") or {}
        lines.append("| %s | %s%s | %s | %s |" % (
            t["what"], fmt_ratio(t["ratio"]),
            " (%s)" % fmt_ratio(t["ratio_per_server_cpu_s"])
            if t["ratio_per_server_cpu_s"] is not None else "",
            "; ".join("%s / %s" % (fmt_pct(busy[n][0]), fmt_pct(busy[n][1]))
                      for n in ("evicorn", t["peer"]) if n in busy),
            "**%s**" % t["verdict"] if t["verdict"] else "not measured"))
    lines.append("")
    runs = [r for d in summary["endpoints"].values() for s in d["contenders"].values()
            for r in s.get("runs", [])]
    if runs:
        def spread(get):
            xs = [get(r) for r in runs if get(r) is not None]
            return "%.0f %% (max %.0f %%)" % (100 * median(xs), 100 * max(xs)) if xs else "–"
        over = sum(1 for r in runs if r["disturbed"])
        lines.append(
            "How the machine was shared during the measured runs (`/proc/stat`, medians over "
            "the runs): processes outside the benchmark took %s of the two cores, the "
            "hypervisor stole %s of core %d and %s of core %d, interrupts took %s of core %d "
            "and %s of core %d. A run where others or steal took more than %.0f %% was done "
            "again up to %d time%s, keeping the least disturbed attempt: %d of %d runs kept "
            "were still over that." % (
                spread(lambda r: r["others_share"]),
                spread(lambda r: r["server_core"]["steal"]), a["server_cpu"],
                spread(lambda r: r["client_core"]["steal"]), a["client_cpu"],
                spread(lambda r: r["server_core"]["irq"]), a["server_cpu"],
                spread(lambda r: r["client_core"]["irq"]), a["client_cpu"],
                100 * a["disturb_limit"], a["retries"], "" if a["retries"] == 1 else "s",
                over, len(runs)))
        lines.append("")
        pin = summary["pinning"]
        lines.append("Pinning, checked in `/proc/<pid>/task/*/status` after start and after "
                     "every run: %s." % "; ".join(
                         "%s %d checks, %s" % (n, p.get("pin_checks", 0),
                                               "all threads pinned" if not p.get("unpinned")
                                               else "**not pinned: %s**" % "; ".join(
                                                   p["unpinned"]))
                         for n, p in pin.items()))
        lines.append("")
        lines.append("All runs (req/s): " + "; ".join(
            "%s %s: %s" % (ep, name, ", ".join("%.0f" % r["rps"] for r in s["runs"]))
            for ep, d in summary["endpoints"].items()
            for name, s in d["contenders"].items() if s.get("runs")) + ".")
        lines.append("")
    if summary["notes"]:
        lines.append("Notes:")
        lines.append("")
        for n in summary["notes"]:
            lines.append("- " + n)
        lines.append("")
    lines.append("Run `%s`, as:" % summary["stamp"])
    lines.append("")
    lines.append("```sh")
    lines.append(summary["command"])
    lines.append("```")
    lines.append("")
    lines.append("Contenders, as started (`$PORT` a free port, `$TMP` the run's temp folder "
                 "with a private copy of the plugin, `$DATABASE_URL` the cluster's "
                 "`postgresql://postgres@127.0.0.1:PORT/hello_world`), and the load:")
    lines.append("")
    lines.append("```sh")
    for key, cmd in summary["commands"].items():
        lines.append("# %s" % key)
        lines.append(cmd)
    lines.append("```")
    return "\n".join(lines) + "\n"


# ---- charts -----------------------------------------------------------------------------

def draw_charts(outdir):
    """db.png and db_cpu.png from summary.json, in bench/charts.py's style;
    in this interpreter, else in /usr/bin/python3 (python3-matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
                os.path.exists("/usr/bin/python3"):
            out = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--chart",
                                  outdir], capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            return out.returncode == 0
        log("no matplotlib (apt-get install python3-matplotlib): no charts drawn")
        return False
    import numpy as np
    import charts

    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    plt = charts._plt()
    color = {"evicorn": charts.COLOR["evicorn"], "uvicorn": charts.COLOR["uvicorn"],
             "granian": charts.COLOR["granian"], "pgbench": "#7f7f7f"}
    eps = [e for e, d in summary["endpoints"].items()
           if any(s.get("runs") for s in d["contenders"].values())]
    if not eps:
        return False
    names = [n for n in ALL_CONTENDERS if any(
        summary["endpoints"][e]["contenders"].get(n, {}).get("runs") for e in eps)]
    a = summary["args"]
    labels = [summary["endpoints"][e]["title"].replace("GET ", "") for e in eps]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, ylabel, title, who in (
            (axes[0], "rps_median", "requests/s (median of rounds)", "Throughput", names),
            (axes[1], "req_per_server_cpu_s_median", "requests per server CPU-second",
             "Requests per server CPU-second", [n for n in names if n != "pgbench"])):
        for i, n in enumerate(who):
            vals = [summary["endpoints"][e]["contenders"].get(n, {}).get(key) or 0 for e in eps]
            bars = ax.bar(np.arange(len(eps)) + (i - (len(who) - 1) / 2) * (0.8 / len(who)),
                          vals, 0.8 / len(who), color=color[n], label=TITLE[n])
            for b, e in zip(bars, eps):
                s = summary["endpoints"][e]["contenders"].get(n)
                if s is not None and not s.get("runs"):
                    ax.annotate(s["status"], (b.get_x() + b.get_width() / 2, 0), ha="center",
                                va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(np.arange(len(eps)), labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(
            lambda v, _: f"{v / 1000:.0f}k" if v >= 10000 or v == 0 else
            f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"))
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color[n]) for n in names]
    fig.legend(handles, [TITLE[n] for n in names], loc="lower center", ncol=len(names),
               fontsize=8, frameon=False)
    fig.suptitle("PostgreSQL %s on CPU %s; servers on CPU %d, wrk -c%d / pgbench -c%d on CPU %d;"
                 " pool %d; medians of %d round(s)" % (
                     (summary["postgres"].get("version") or "? ?").split()[1],
                     a["pg_cpu"] if a["pg_cpu"] >= 0 else "0-1", a["server_cpu"],
                     a["connections"], a["pool"], a["client_cpu"], a["pool"], a["rounds"]),
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(os.path.join(outdir, "db.png"))
    plt.close(fig)

    # where the CPU went, per request: stacked server / PostgreSQL / load generator
    fig, axes = plt.subplots(1, len(eps), figsize=(2.6 * len(eps) + 1, 3.8), squeeze=False)
    parts = (("server_us_per_req_median", "HTTP server", "#d62728"),
             ("pg_us_per_req_median", "PostgreSQL", "#336791"),
             ("client_us_per_req_median", "wrk / pgbench", "#bbbbbb"))
    for ax, e in zip(axes[0], eps):
        cont = summary["endpoints"][e]["contenders"]
        who = [n for n in names if cont.get(n, {}).get("runs")]
        bottom = np.zeros(len(who))
        for key, label, col in parts:
            vals = np.array([cont[n].get(key) or 0 for n in who])
            ax.bar(np.arange(len(who)), vals, 0.6, bottom=bottom, color=col, label=label)
            bottom += vals
        ax.set_xticks(np.arange(len(who)), [n for n in who], fontsize=7, rotation=20)
        ax.set_title(summary["endpoints"][e]["title"].replace("GET ", ""), fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("CPU µs per request (median)")
    h, l_ = axes[0][0].get_legend_handles_labels()
    fig.legend(h, l_, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Where the CPU time of a request goes (both cores)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(os.path.join(outdir, "db_cpu.png"))
    plt.close(fig)
    return True


def section_text(summary_text):
    text = summary_text.rstrip("\n") + "\n"
    if os.path.exists(NOTES):
        with open(NOTES) as f:
            text += "\n" + f.read().rstrip("\n") + "\n"
    return text


def write_docs(outdir):
    docs = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(os.path.join(outdir, "summary.md")) as f:
        benchlib.splice_section(docs, SECTION_TITLE, section_text(f.read()))
    img = os.path.join(ROOT, "docs", "img")
    os.makedirs(img, exist_ok=True)
    for png in ("db.png", "db_cpu.png"):
        if os.path.exists(os.path.join(outdir, png)):
            shutil.copy(os.path.join(outdir, png), os.path.join(img, png))
    log("wrote the %s section of %s and its charts in docs/img" % (SECTION_TITLE, rel(docs)))


def report(outdir, docs):
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    md = summary_md(summary)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(md)
    draw_charts(outdir)
    if docs:
        write_docs(outdir)
    return md


# ---- main --------------------------------------------------------------------------------

def pip_versions(vpy, env):
    names = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "granian", "asyncpg",
             "jinja2", "orjson"]
    code = ("import importlib.metadata as m, json, platform\n"
            "out = {'python': platform.python_version()}\n"
            "for n in %r:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))" % names)
    out = subprocess.run([vpy, "-c", code], capture_output=True, text=True, env=env)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Endpoints: %s. Contenders: %s." % (
                                     " ".join(ALL_ENDPOINTS), " ".join(ALL_CONTENDERS)))
    ap.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    ap.add_argument("--duration", type=int, default=8, help="measured s per run (8)")
    ap.add_argument("--warmup", type=int, default=2, help="s of load before each run (2)")
    ap.add_argument("--only", default="",
                    help="comma-separated endpoints and/or contenders to run (default: all)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--pool", type=int, default=8,
                    help="PostgreSQL connections of every contender: evicorn's "
                         "EVICORN_PG_POOL_SIZE, the asyncpg pool, pgbench -c (8)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--pg-cpu", type=int, default=1,
                    help="the CPU every PostgreSQL process is pinned to (1: the load "
                         "generator's; -1: not pinned)")
    ap.add_argument("--disturb-limit", type=float, default=0.15)
    ap.add_argument("--retries", type=int, default=1,
                    help="times a disturbed run is done again (1)")
    ap.add_argument("--quick", action="store_true",
                    help="--rounds 1 --duration 3 --warmup 1 --retries 0")
    ap.add_argument("--quiet-wait", type=float, default=600,
                    help="s to wait for other benchmarks to end before each run (600; 0: no)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree: evicorn and plugins/techempower.so (build)")
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "venv-bench-db"))
    ap.add_argument("--docs", action="store_true",
                    help="put the section into docs/benchmarks.md and the charts into docs/img")
    ap.add_argument("--report", metavar="RESULTS_DIR",
                    help="measure nothing: write RESULTS_DIR's summary.md and charts again "
                         "from its summary.json (with --docs: and the docs)")
    ap.add_argument("--chart", metavar="RESULTS_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup, args.retries = 1, 3, 1, 0
    args.build = os.path.abspath(args.build)
    args.venv = os.path.abspath(args.venv)
    only = [x for x in args.only.split(",") if x]
    for x in only:
        if x not in ALL_ENDPOINTS and x not in ALL_CONTENDERS:
            ap.error("--only: unknown %r (endpoints: %s; contenders: %s)" % (
                x, " ".join(ALL_ENDPOINTS), " ".join(ALL_CONTENDERS)))
    args.endpoints = [e for e in ALL_ENDPOINTS if e in only] or list(ALL_ENDPOINTS)
    args.contenders = [c for c in ALL_CONTENDERS if c in only] or list(ALL_CONTENDERS)
    return args


def main():
    args = parse_args()
    if args.chart:
        sys.exit(0 if draw_charts(os.path.abspath(args.chart)) else 1)
    if args.report:
        print(report(os.path.abspath(args.report), args.docs))
        return
    benchlib.exit_on_signals()
    for tool, pkg in (("wrk", "wrk"), ("taskset", "util-linux"), ("psql", "postgresql-client")):
        if not shutil.which(tool):
            sys.exit("bench/db/run.py: %s is not installed (apt-get install %s)" % (tool, pkg))
    ncpu = os.cpu_count() or 1
    if max(args.server_cpu, args.client_cpu, args.pg_cpu) >= ncpu:
        sys.exit("bench/db/run.py: need CPUs %d and %d (have %d)" % (
            args.server_cpu, args.client_cpu, ncpu))
    from db_harness import pg_bindir
    pgbench = os.path.join(pg_bindir(), "pgbench")
    if not os.path.exists(pgbench):
        pgbench = shutil.which("pgbench")
    if "pgbench" in args.contenders and not pgbench:
        sys.exit("bench/db/run.py: pgbench not found (apt-get install postgresql)")

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    for d in ("logs", "raw", "rounds"):
        os.makedirs(os.path.join(outdir, d))
    command = " ".join(["python3", "bench/db/run.py"] +
                       [x.replace(ROOT + "/", "") for x in sys.argv[1:]])
    tmp = tempfile.mkdtemp(prefix="evicorn-db-bench-")
    os.chmod(tmp, 0o700)
    ctx = {"args": args, "outdir": outdir, "tmp": tmp, "commands": {}, "pinning": {},
           "pgbench": pgbench, "vpy": None, "venv": args.venv}
    notes = []
    versions = {}
    contenders = list(args.contenders)
    # evicorn: the binary and a private copy of the plugin (a rebuild of the
    # shared build tree must not reload it mid-run)
    evicorn_version = None
    if "evicorn" in contenders:
        ebin = os.path.join(args.build, "evicorn")
        so = os.path.join(args.build, "plugins", "techempower.so")
        if not (os.path.exists(ebin) and os.path.exists(so)):
            contenders.remove("evicorn")
            notes.append("evicorn: not measured: %s is not built (it needs libpq-dev and the "
                         "SDK's PostgreSQL pool: `cmake --build %s -j2`, then run this "
                         "again)" % (rel(so), rel(args.build)))
            log(notes[-1])
        else:
            ctx["evicorn_bin"] = ebin
            ctx["plugins"] = os.path.join(tmp, "plugins")
            os.mkdir(ctx["plugins"], 0o700)
            shutil.copy(so, ctx["plugins"])
            with open(so, "rb") as f:
                ctx["plugin_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
            out = subprocess.run([ebin, "--version"], capture_output=True, text=True)
            evicorn_version = (out.stdout.strip() or out.stderr.strip()).splitlines()[0] \
                if out.returncode == 0 else None
    if any(c in contenders for c in ("uvicorn", "granian")):
        ctx["vpy"] = benchlib.ensure_venv(args.venv, REQUIREMENTS,
                                          "fastapi, uvicorn, granian, asyncpg, jinja2, orjson",
                                          os.path.join(outdir, "logs", "venv.log"),
                                          prog="bench/db/run.py", log=log)
        versions = pip_versions(ctx["vpy"], benchlib.clean_env())
    summary = {
        "stamp": stamp, "command": command,
        "args": dict(vars(args)), "versions": versions, "evicorn_version": evicorn_version,
        "evicorn": benchlib.evicorn_build_info(args.build), "machine": benchlib.machine(),
        "wrk": benchlib.deb_version("wrk") or "?",
        "pgbench": benchlib.deb_version("postgresql-15") or "?",
        "commands": ctx["commands"], "notes": notes, "pinning": ctx["pinning"],
        "plugin_sha256": ctx.get("plugin_sha256"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("EVICORN_")},
    }
    # this script, wrk and pgbench stay off the servers' core
    benchlib.pin_self(args.client_cpu)
    results = {ep: {} for ep in args.endpoints}
    servers = {}
    try:
        start_postgres(ctx)
        ctx["db_url"] = ctx["pg"].url
        summary["postgres"] = dict(ctx["pg_info"], cpu=args.pg_cpu)
        for name in contenders:
            if name == "pgbench":
                ctx["commands"]["pgbench (shown for /db)"] = shown(
                    load_command("pgbench", "db", ctx, args.duration), ctx)
                continue
            log("starting %s" % name)
            servers[name] = start_server(name, ctx)
        ctx["commands"]["wrk (shown for /db)"] = shown(
            load_command("wrk", "db", ctx, args.duration, 0), ctx).replace(":0/", ":$PORT/")
        for ep in args.endpoints:
            for name in args.contenders:
                s = servers.get(name)
                if name == "evicorn" and name not in contenders:
                    st, note = "not built", None
                elif s is not None and s.status != "ok":
                    st, note = s.status, s.note
                elif s is not None and ep in s.broken:
                    st, note = "failed", s.broken[ep]
                else:
                    st, note = "ok", None
                results[ep][name] = {"status": st, "note": note, "runs": []}
        for rnd in range(args.rounds):
            round_runs = []
            for ep in args.endpoints:
                live = [n for n in args.contenders if results[ep][n]["status"] == "ok"]
                if not live:
                    continue
                k = rnd % len(live)
                for name in live[k:] + live[:k]:
                    s = servers.get(name)
                    if s is not None and s.proc.poll() is not None:
                        results[ep][name].update(status="failed", note="exited with %d" %
                                                 s.proc.returncode)
                        continue
                    benchlib.wait_quiet(args.quiet_wait)
                    r = measured_run(name, ep, ctx, rnd, s)
                    r.update(round=rnd + 1, endpoint=ep, contender=name)
                    results[ep][name]["runs"].append(r)
                    round_runs.append(r)
                    print("round %d %-8s %-8s %8.0f req/s  server %6s µs/req  PostgreSQL %6.1f "
                          "µs/req  (%s)%s" % (
                              rnd + 1, ep, name, r["rps"], fmt(r["server_us_per_req"], "%.1f"),
                              r["pg_us_per_req"] or 0, core_line(r),
                              " errors %d" % r["errors"] if r["errors"] else ""), flush=True)
            with open(os.path.join(outdir, "rounds", "round-%d.json" % (rnd + 1)), "w") as f:
                json.dump(round_runs, f, indent=1)
    finally:
        for s in list(LIVE):
            stop(s)
        pg = ctx.get("pg")
        if pg is not None:
            try:
                shutil.copy(pg.log_path, os.path.join(outdir, "logs", "postgres.log"))
            except (OSError, TypeError):
                pass
            pg.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(outdir, "commands.txt"), "w") as f:
            f.write("$ %s\n" % command)
            for key, c in ctx["commands"].items():
                f.write("%s: %s\n" % (key, c))
    summary["endpoints"], summary["targets"] = build_summary(results, ctx)
    for p in ctx["pinning"].values():
        p.setdefault("unpinned", [])
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = report(outdir, args.docs)
    print()
    print(md)
    print("results in %s" % rel(outdir))


if __name__ == "__main__":
    main()
