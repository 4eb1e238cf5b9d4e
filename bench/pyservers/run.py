#!/usr/bin/env python3
"""Python servers on the current PyPI stack: evicorn against uvicorn, granian,
hypercorn and gunicorn, all run by one interpreter from one venv.

    python3 bench/pyservers/run.py [--runs 5] [--duration 10] [--quick] [SCENARIO...]

Scenarios (default: all, in this order):

  fastapi-json       FastAPI `async def` GET /json         evicorn uvicorn granian hypercorn
  fastapi-plaintext  FastAPI `async def` GET /plaintext    evicorn uvicorn granian hypercorn
  bare-asgi          a bare ASGI app (two send() calls)    evicorn uvicorn granian hypercorn
  flask-wsgi         Flask GET /                           evicorn (--interface wsgi) gunicorn
                                                           (gthread) granian (wsgi)
  reload             --reload under load: the app's VERSION rewritten --reloads times while 4
                     client threads send requests on fresh connections: evicorn, uvicorn

The venv: build/venv-bench, made from the `python3` first on PATH with
bench/pyservers/requirements.txt (pinned), and made again only when that file
or the interpreter changes (a hash file in the venv). evicorn's module comes
from <build>/python (PYTHONPATH), built by cmake for the same Python version.

Every server runs one worker, started with `taskset -c 0` (--server-cpu), so
every thread of every process is on CPU 0; this is checked in
/proc/<pid>/task/*/status (Cpus_allowed_list) after start and after every run.
The load comes from `taskset -c 1 wrk -t1 -c64 -d<duration>s` (--client-cpu).
Each of --runs rotations runs every server of a scenario once, the order
rotated every run, each measured run after a --warmup of its own. Per run:
wrk's req/s, and the server's CPU time (utime+stime of all its processes, from
/proc/<pid>/stat, before and after the run) per request. Medians, and
evicorn's ratio to each peer for req/s and for requests per server CPU-second.
How both cores were shared during each run is recorded (/proc/stat: the
server or wrk, other processes, interrupts, steal); a run where other
processes or steal took more than --disturb-limit of a core is done again,
up to --retries times, and the least disturbed attempt is kept.

Raw output goes to bench/pyservers/results/<UTC timestamp>/ (gitignored):
commands.txt, logs/, wrk/, reload/, summary.json, summary.md (the section for
docs/benchmarks.md) and pyservers.png (bench/charts.py). Every server runs in
its own process group and is stopped by its PID/group on any exit.

The script itself needs only Python 3's standard library (e.g. Debian's
/usr/bin/python3), plus wrk and taskset; the chart needs matplotlib in this
interpreter or in /usr/bin/python3 (python3-matplotlib).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
APPS = os.path.join(HERE, "apps")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
HELLO = b"Hello, World!"

ALL_SCENARIOS = ["fastapi-json", "fastapi-plaintext", "bare-asgi", "flask-wsgi", "reload"]
ALIASES = {"reload-under-load": "reload", "json": "fastapi-json",
           "plaintext": "fastapi-plaintext", "bare": "bare-asgi", "wsgi": "flask-wsgi",
           "flask": "flask-wsgi"}
ASGI_SERVERS = ["evicorn", "uvicorn", "granian", "hypercorn"]
WSGI_SERVERS = ["evicorn", "gunicorn", "granian"]
RELOAD_SERVERS = ["evicorn", "uvicorn"]
ALL_SERVERS = ["evicorn", "uvicorn", "granian", "hypercorn", "gunicorn"]


def check_json(body):
    try:
        return json.loads(body) == {"message": "Hello, World!"}
    except ValueError:
        return False


# name -> (app folder, path, interface, servers, body check, title)
THROUGHPUT = {
    "fastapi-json": ("fastapi_app", "/json", "asgi", ASGI_SERVERS, check_json,
                     "FastAPI, `async def` GET /json"),
    "fastapi-plaintext": ("fastapi_app", "/plaintext", "asgi", ASGI_SERVERS,
                          lambda b: b == HELLO, "FastAPI, `async def` GET /plaintext"),
    "bare-asgi": ("bare_asgi", "/", "asgi", ASGI_SERVERS, lambda b: b == HELLO,
                  "bare ASGI app (two send() calls), GET /"),
    "flask-wsgi": ("flask_wsgi", "/", "wsgi", WSGI_SERVERS, lambda b: b == HELLO,
                   "Flask (WSGI), GET /"),
}
VERSION_RE = re.compile(r'^VERSION = "[^"]*"$', re.M)


def log(msg):
    print("[pyservers %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---- the venv -------------------------------------------------------------------

venv_python = benchlib.venv_python
clean_env = benchlib.clean_env


def base_python():
    """The python3 first on PATH, resolved (a pyenv shim runs the real one)."""
    return benchlib.base_python("bench/pyservers/run.py")


def ensure_venv(venv, logpath):
    """build/venv-bench with the pinned requirements; made again when
    requirements.txt or the interpreter changed. Returns the venv's python."""
    return benchlib.ensure_venv(venv, REQUIREMENTS, "fastapi, uvicorn, granian", logpath,
                                prog="bench/pyservers/run.py", log=log)


def server_env(venv, build):
    env = clean_env()
    env["VIRTUAL_ENV"] = venv
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.path.join(build, "python")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc when the reload test rewrites app.py
    return env


def check_evicorn(vpy, env, build, tries=12):
    """evicorn imports in the venv from <build>/python; retried for a while
    (the build tree may be being rebuilt). Returns evicorn's version."""
    code = ("import evicorn, sys; evicorn._load_core(); "
            "print(evicorn.__version__, evicorn.__file__)")
    last = ""
    for i in range(tries):
        out = subprocess.run([vpy, "-c", code], capture_output=True, text=True, env=env)
        if out.returncode == 0:
            version, where = out.stdout.split()
            if not os.path.abspath(where).startswith(os.path.join(build, "python")):
                log("warning: evicorn imported from %s, not %s/python" % (where, build))
            return version
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        if i + 1 < tries:
            log("evicorn does not import yet (%s); retrying in 5 s" % last)
            time.sleep(5)
    sys.exit("bench/pyservers/run.py: `import evicorn` fails in %s with PYTHONPATH=%s/python:\n"
             "  %s\nBuild evicorn's module for this Python version (%s), e.g.:\n"
             "  cmake -S . -B %s -DCMAKE_BUILD_TYPE=Release -DEVICORN_PYTHON=$(command -v python3)"
             "\n  cmake --build %s -j2" % (rel(os.path.dirname(os.path.dirname(vpy))), rel(build),
                                          last, base_python()[2], rel(build), rel(build)))


def pip_versions(vpy, env):
    names = ["fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "granian",
             "hypercorn", "gunicorn", "flask", "werkzeug", "watchfiles", "h11"]
    code = ("import importlib.metadata as m, json, platform\n"
            "out = {'python': platform.python_version(), "
            "'python_implementation': platform.python_implementation()}\n"
            "for n in %r:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))" % names)
    out = subprocess.run([vpy, "-c", code], capture_output=True, text=True, env=env)
    return json.loads(out.stdout) if out.returncode == 0 else {}


deb_version = benchlib.deb_version
evicorn_build_info = benchlib.evicorn_build_info
machine = benchlib.machine
rel = benchlib.rel


# ---- servers --------------------------------------------------------------------

def granian_flags(vpy, env):
    """Which optional granian flags this granian has."""
    out = subprocess.run([vpy, "-m", "granian", "--help"], capture_output=True, text=True,
                         env=env).stdout
    return {f for f in ("--runtime-threads", "--no-ws", "--loop", "--blocking-threads")
            if f in out}


def server_argv(name, interface, vpy, port, args, gflags, notes, reload_dir=None):
    """The command line of one server (without taskset)."""
    host = "127.0.0.1"
    if name == "evicorn":
        argv = [vpy, "-m", "evicorn", "app:app", "--host", host, "--port", str(port),
                "--workers", "1", "--no-access-log", "--log-level", "warning"]
        if interface == "wsgi":
            argv += ["--interface", "wsgi", "--threads", str(args.wsgi_threads)]
        if reload_dir:
            argv += ["--reload", "--reload-dir", reload_dir]
        return argv
    if name == "uvicorn":
        argv = [vpy, "-m", "uvicorn", "app:app", "--host", host, "--port", str(port)]
        if not reload_dir:  # uvicorn ignores --workers with --reload, and says so
            argv += ["--workers", "1"]
        argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
                 "warning"]
        if reload_dir:
            argv += ["--reload", "--reload-dir", reload_dir]
        return argv
    if name == "granian":
        argv = [vpy, "-m", "granian", "--interface", interface, "--host", host, "--port",
                str(port), "--workers", "1"]
        for flag, value, why in (
                ("--runtime-threads", "1", "one Rust runtime thread"),
                ("--no-ws", None, "no websockets (asgi)"),
                ("--loop", "uvloop", "uvloop (asgi)"),
                ("--blocking-threads", str(args.wsgi_threads), "the WSGI thread count")):
            if interface == "wsgi" and flag in ("--no-ws", "--loop"):
                continue
            if interface == "asgi" and flag == "--blocking-threads":
                continue
            if flag in gflags:
                argv += [flag] + ([value] if value else [])
            else:
                note = "granian has no %s (%s): its default is used" % (flag, why)
                if note not in notes:
                    notes.append(note)
        return argv + ["--log-level", "warning", "app:app"]
    if name == "hypercorn":
        return [vpy, "-m", "hypercorn", "app:app", "--bind", "%s:%d" % (host, port),
                "--workers", "1", "--worker-class", "uvloop", "--log-level", "warning"]
    if name == "gunicorn":
        return [vpy, "-m", "gunicorn", "-k", "gthread", "--threads", str(args.wsgi_threads),
                "-w", "1", "--bind", "%s:%d" % (host, port), "--log-level", "warning",
                "app:app"]
    raise ValueError(name)


class Server(benchlib.PinnedServer):
    """One server of one scenario, in its own process group."""

    def __init__(self, name, argv, cwd, port, env, cpu, log_path):
        super().__init__(name, argv, cpu=cpu, port=port, log_path=log_path, cwd=cwd, env=env,
                         new_session=True)
        self.status = "ok"
        self.note = None
        self.runs = []
        self.pin_checks = 0
        self.max_threads = 0
        self.unpinned = []
        self.route_failed = False

    def stop(self):
        pgid = self.proc.pid if self.proc is not None else None
        try:
            super().stop()
        finally:
            if pgid is not None:
                kill_group_leftovers(pgid)


kill_group_leftovers = benchlib.kill_group_leftovers


LIVE = []  # servers started and not yet stopped: stopped on any exit


def stop(server):
    try:
        server.stop()
    finally:
        if server in LIVE:
            LIVE.remove(server)


def check_pinning(server, cpu):
    """Every thread of every process of the server on `cpu` alone."""
    if server.proc is None:
        return True
    aff = benchlib.tree_affinity(server.proc.pid)
    threads = sum(len(v) for v in aff.values())
    server.pin_checks += 1
    server.max_threads = max(server.max_threads, threads)
    bad = {k: v for k, v in aff.items() if k != str(cpu)}
    if bad:
        desc = "; ".join("%s: %s" % (k, ", ".join("%d/%d" % t for t in v[:6])) for k, v in
                         bad.items())
        if desc not in server.unpinned:
            server.unpinned.append(desc)
        log("warning: %s has threads not pinned to CPU %d (pid/tid): %s" % (server.name, cpu,
                                                                          desc))
        return False
    return True


def wait_answer(server, path, timeout):
    """The first answer of the server to GET path: (status, body). Raises
    RuntimeError when the server exits first or does not answer in time."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError("exited with %d during start; see %s" % (
                server.proc.returncode, rel(server.log_path)))
        try:
            return benchlib.http_get(server.port, path, timeout=5.0)
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError("no answer on %s after %.0f s (%s); see %s" % (
        path, timeout, last, rel(server.log_path)))


def launch(server, path, check, cpu, tries=3, skip_on_exit2=None):
    """Starts the server and waits for its first answer to GET path, which
    must be 200 with the right body. A server that exits or does not answer
    is started again (the build tree may be being rebuilt); one that answers
    wrong is not. False if it is not up (server.status/.note say why)."""
    for attempt in range(1, tries + 1):
        LIVE.append(server)
        server.start()
        try:
            status, body = wait_answer(server, path, 60)
        except RuntimeError as e:
            rc = server.proc.poll()
            stop(server)
            if rc == 2 and skip_on_exit2:
                server.status, server.note = "skipped", skip_on_exit2
                log("%s: skipped: %s" % (server.name, skip_on_exit2))
                return False
            server.status, server.note = "failed", str(e)
            log("%s: did not start (try %d of %d): %s" % (server.name, attempt, tries, e))
            if attempt < tries:
                time.sleep(5)
            continue
        if status != 200 or not check(body):
            stop(server)
            server.status = "failed"
            server.note = "GET %s answered %d %r; see %s" % (path, status, body[:60],
                                                            rel(server.log_path))
            log("%s: %s" % (server.name, server.note))
            return False
        server.status, server.note = "ok", None
        check_pinning(server, cpu)
        return True
    return False


def shown_argv(argv, venv, tmp=None):
    out = []
    for a in argv:
        a = a.replace(venv_python(venv), rel(venv) + "/bin/python")
        if tmp:
            a = a.replace(tmp, "$TMP")
        out.append(a.replace(ROOT + "/", ""))
    s = " ".join(out)
    return re.sub(r"(--port |--bind 127\.0\.0\.1:)\d+", r"\g<1>$PORT", s)


def shown_command(server, venv, tmp=None):
    return "cd %s && PYTHONPATH=%s %s" % (
        shown_argv([server.cwd], venv, tmp), rel(server.env["PYTHONPATH"]),
        shown_argv(server.command, venv, tmp))


# ---- wrk --------------------------------------------------------------------------

def run_wrk(server, path, duration, args, out_path):
    """One wrk run: its numbers, the server's CPU time, and how both cores
    were shared meanwhile."""
    cmd = benchlib.taskset(args.client_cpu, [
        "wrk", "-t1", "-c%d" % args.conns, "-d%ds" % duration, "--latency",
        "http://127.0.0.1:%d%s" % (server.port, path)])
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
    wrk = benchlib.parse_wrk(out.stdout, unit="ms")
    requests = wrk["requests"] or 0
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s = (t1 - t0) / hz
    wrk_ticks = (o1.children_user + o1.children_system - o0.children_user -
                 o0.children_system) * hz
    r = {
        "rps": wrk["rps"] or 0.0,
        "requests": requests,
        "p50_ms": wrk["p50"],
        "p99_ms": wrk["p99"],
        "socket_errors": wrk["socket_errors"],
        "non2xx": wrk["non2xx"],
        "wall_s": round(wall, 3),
        "server_cpu_s": cpu_s,
        "cpu_us_per_request": cpu_s * 1e6 / requests if requests and cpu_s else None,
        "requests_per_cpu_s": requests / cpu_s if requests and cpu_s else None,
    }
    # Each core over the run: its owner's share (the server on the server's
    # core, wrk on the client's), what other processes took (user+system time
    # that was not the owner's), interrupts (irq+softirq: mostly the loopback
    # traffic), what the hypervisor took (steal), idle.
    r["server_core"] = benchlib.core_shares(s0, s1, t1 - t0)
    r["client_core"] = benchlib.core_shares(k0, k1, wrk_ticks)
    r["disturbance"] = max((r[c][k] or 0) for c in ("server_core", "client_core")
                           for k in ("other", "steal"))
    r["disturbed"] = r["disturbance"] > args.disturb_limit
    return r


def measured_run(s, path, args, outdir, stem):
    """A measured run; a disturbed one (other processes or the hypervisor
    took more than --disturb-limit of either core) is done again, up to
    --retries times, and the least disturbed attempt is kept."""
    best = None
    for attempt in range(args.retries + 1):
        name = stem + (".txt" if attempt == 0 else ".again%d.txt" % attempt)
        r = run_wrk(s, path, args.duration, args, os.path.join(outdir, "wrk", name))
        r["attempts"] = attempt + 1
        if best is None or r["disturbance"] < best["disturbance"]:
            best = dict(r)
        if not r["disturbed"] or s.proc.poll() is not None:
            break
        if args.retries:
            log("%s: disturbed (%.0f%% of a core taken by others or stolen)%s" % (
                stem, 100 * r["disturbance"], "; again" if attempt < args.retries else
                "; kept the least disturbed attempt"))
    best["attempts"] = r["attempts"]
    return best


def core_line(r):
    c, k = r["server_core"], r["client_core"]
    return ("server core: server %3.0f%% other %2.0f%% irq %2.0f%% steal %2.0f%%; "
            "client core: wrk %3.0f%% other %2.0f%% steal %2.0f%%" % (
                100 * (c["owner"] or 0), 100 * (c["other"] or 0), 100 * (c["irq"] or 0),
                100 * (c["steal"] or 0), 100 * (k["owner"] or 0), 100 * (k["other"] or 0),
                100 * (k["steal"] or 0)))


def median(xs):
    return benchlib.median([x for x in xs if x is not None])


def summarize_server(s):
    runs = s.runs
    return {
        "status": s.status, "note": s.note, "runs": runs,
        "rps_median": median([r["rps"] for r in runs]),
        "cpu_us_per_request_median": median([r["cpu_us_per_request"] for r in runs]),
        "requests_per_cpu_s_median": median([r["requests_per_cpu_s"] for r in runs]),
        "p50_ms_median": median([r["p50_ms"] for r in runs]),
        "p99_ms_median": median([r["p99_ms"] for r in runs]),
        "errors": sum(r["socket_errors"] + r["non2xx"] for r in runs),
        "disturbed_runs": sum(1 for r in runs if r["disturbed"]),
        "pin_checks": s.pin_checks, "max_threads": s.max_threads, "unpinned": s.unpinned,
    }


def ratios(servers):
    ev = servers.get("evicorn")
    out = {}
    if not ev or not ev["runs"]:
        return out
    for name, s in servers.items():
        if name == "evicorn" or not s["runs"]:
            continue
        out[name] = {
            "rps": (ev["rps_median"] / s["rps_median"]) if s["rps_median"] else None,
            "requests_per_cpu_s": (ev["requests_per_cpu_s_median"] /
                                   s["requests_per_cpu_s_median"])
            if s["requests_per_cpu_s_median"] and ev["requests_per_cpu_s_median"] else None,
        }
    return out


def throughput_group(app, interface, scens, names, args, ctx):
    """Starts the servers of one app, runs its scenarios, stops them.
    Returns {scenario: {server: summary}} and {server: command shown}."""
    vpy, env, venv, outdir, gflags, notes = (ctx["vpy"], ctx["env"], ctx["venv"],
                                             ctx["outdir"], ctx["gflags"], ctx["notes"])
    appdir = os.path.join(APPS, app)
    first = scens[0]
    path, check = THROUGHPUT[first][1], THROUGHPUT[first][4]
    per_scen = {sc: {} for sc in scens}
    commands = {}
    started = []
    try:
        for name in names:
            port = benchlib.free_port()
            s = Server(name, server_argv(name, interface, vpy, port, args, gflags, notes),
                       appdir, port, env, args.server_cpu,
                       os.path.join(outdir, "logs", "%s-%s.log" % (app, name)))
            commands[name] = shown_command(s, venv)
            skip = ("`--interface wsgi` is not in this evicorn yet (it exited 2 on the flag)"
                    if name == "evicorn" and interface == "wsgi" else None)
            log("%s: starting %s" % (app, name))
            if launch(s, path, check, args.server_cpu, skip_on_exit2=skip):
                started.append(s)
            for sc in scens:
                per_scen[sc][name] = s
        for sc in scens:
            path = THROUGHPUT[sc][1]
            check = THROUGHPUT[sc][4]
            for s in started:  # this route answers right (a wrong route spoils no other)
                if s.route_failed and s.proc is not None and s.proc.poll() is None:
                    s.status, s.note, s.route_failed = "ok", None, False
                if s.status != "ok":
                    continue
                try:
                    status, body = benchlib.http_get(s.port, path)
                except OSError as e:
                    status, body = None, str(e).encode()
                if status != 200 or not check(body):
                    s.status, s.note = "failed", "GET %s answered %s %r" % (path, status,
                                                                          body[:80])
                    s.route_failed = True
                    log("%s: %s" % (s.name, s.note))
            for run in range(args.runs):
                live = [s for s in started if s.status == "ok"]
                if not live:
                    break
                k = run % len(live)
                for s in live[k:] + live[:k]:
                    benchlib.wait_quiet(args.quiet_wait)
                    stem = "%s-%s-run%d" % (sc, s.name, run + 1)
                    if args.warmup > 0:
                        run_wrk(s, path, args.warmup, args,
                                os.path.join(outdir, "wrk", stem + "-warmup.txt"))
                        check_pinning(s, args.server_cpu)
                    r = measured_run(s, path, args, outdir, stem)
                    r["pinned"] = check_pinning(s, args.server_cpu)
                    if s.proc.poll() is not None:
                        s.status = "failed"
                        s.note = "exited with %d during run %d" % (s.proc.returncode, run + 1)
                        log("%s: %s" % (s.name, s.note))
                        continue
                    s.runs.append(r)
                    print("%-17s %-9s run %d: %7.0f req/s %6.1f us CPU/req  (%s)%s" % (
                        sc, s.name, run + 1, r["rps"], r["cpu_us_per_request"] or 0,
                        core_line(r), " disturbed" if r["disturbed"] else ""), flush=True)
            # this scenario's results; the servers go on to the app's next one
            for name, s in list(per_scen[sc].items()):
                per_scen[sc][name] = summarize_server(s)
                s.runs, s.pin_checks, s.max_threads, s.unpinned = [], 0, 0, []
    finally:
        for s in started:
            stop(s)
    return per_scen, commands


# ---- reload under load --------------------------------------------------------

class ReloadClient:
    """`threads` client threads pinned to `cpu`, each sending GET path on a
    fresh connection, one after another, until stopped. A failed request
    (refused, reset, timed out, not 200) is followed by a 10 ms pause, so a
    thread does not spin on a closed port. records: (sent, answered, status
    or None, body or error name), monotonic seconds."""

    def __init__(self, port, path, cpu, threads):
        self.port, self.path, self.cpu = port, path, cpu
        self.records = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]

    def loop(self):
        benchlib.pin_self(self.cpu)  # this thread only (Linux affinity is per thread)
        while not self.done.is_set():
            t0 = time.monotonic()
            try:
                status, body = benchlib.http_get(self.port, self.path, timeout=10.0)
                rec = (t0, time.monotonic(), status, body.decode(errors="replace"))
            except (OSError, ValueError, IndexError) as e:
                rec = (t0, time.monotonic(), None, type(e).__name__)
            self.records.append(rec)
            if rec[2] != 200:
                time.sleep(0.01)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=15)


def write_version(appdir, version):
    """Rewrites VERSION in app.py as an editor saving atomically does (a new
    file renamed over it); returns the monotonic time right after."""
    path = os.path.join(appdir, "app.py")
    with open(path) as f:
        text = f.read()
    new = VERSION_RE.sub('VERSION = "%s"' % version, text, count=1)
    tmp = os.path.join(appdir, ".app.py.saving")
    with open(tmp, "w") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return time.monotonic()


def reload_server(name, args, ctx, tmp):
    vpy, env, venv, outdir = ctx["vpy"], ctx["env"], ctx["venv"], ctx["outdir"]
    appdir = os.path.join(tmp, "%s-app" % name)
    shutil.copytree(os.path.join(APPS, "fastapi_app"), appdir,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    write_version(appdir, "v0")
    port = benchlib.free_port()
    s = Server(name, server_argv(name, "asgi", vpy, port, args, ctx["gflags"], ctx["notes"],
                                 reload_dir=appdir),
               appdir, port, env, args.server_cpu,
               os.path.join(outdir, "logs", "reload-%s.log" % name))
    command = shown_command(s, venv, tmp)
    res = {"command": command, "status": "ok", "note": None, "reloads": []}
    log("reload: starting %s" % name)
    if not launch(s, "/version", lambda b: b == b"v0", args.server_cpu):
        res.update(status=s.status, note=s.note)
        return res
    client = None
    try:
        client = ReloadClient(port, "/version", args.client_cpu, args.reload_clients).start()
        t_begin = time.monotonic()
        time.sleep(args.reload_settle)
        saves = []
        for i in range(1, args.reloads + 1):
            version = "v%d" % i
            benchlib.wait_quiet(args.quiet_wait)
            t_save = write_version(appdir, version)
            saves.append((t_save, version))
            deadline = t_save + args.reload_timeout
            seen = False
            scanned = 0
            while time.monotonic() < deadline and not seen:
                time.sleep(0.005)
                recs = client.records
                n = len(recs)
                seen = any(r[3] == version for r in recs[scanned:n])
                scanned = n
            if not seen:
                log("reload %s %d: no answer with %s within %.0f s" % (name, i, version,
                                                                        args.reload_timeout))
            time.sleep(args.reload_settle)  # the old worker drains; failures still count
            check_pinning(s, args.server_cpu)
            if s.proc.poll() is not None:
                res.update(status="failed", note="exited with %d after reload %d" % (
                    s.proc.returncode, i))
                break
        t_end = time.monotonic()
    finally:
        if client:
            client.stop()
        stop(s)
    recs = sorted(client.records)
    with open(os.path.join(outdir, "reload", "%s.csv" % name), "w") as f:
        f.write("sent_s,answered_s,status,body_or_error\n")
        for r in recs:
            f.write("%.6f,%.6f,%s,%s\n" % (r[0] - t_begin, r[1] - t_begin,
                                          "" if r[2] is None else r[2], r[3]))
    failed = lambda r: r[2] != 200  # noqa: E731
    res["baseline"] = {
        "requests": sum(1 for r in recs if r[1] < saves[0][0]) if saves else len(recs),
        "failed": sum(1 for r in recs if failed(r) and (not saves or r[1] < saves[0][0])),
    }
    prev = "v0"
    for i, (t_save, version) in enumerate(saves):
        t_next = saves[i + 1][0] if i + 1 < len(saves) else t_end + 30
        window = [r for r in recs if t_save <= r[1] < t_next]
        new = [r[1] for r in window if r[3] == version]
        first_new = min(new) if new else None
        res["reloads"].append({
            "version": version,
            "save_to_new_code_ms": (first_new - t_save) * 1000 if first_new else None,
            "requests": len(window),
            "failed": sum(1 for r in window if failed(r)),
            "errors": sorted({r[3] if r[2] is None else str(r[2]) for r in window
                              if failed(r)}),
            "max_latency_ms": max((r[1] - r[0]) * 1000 for r in window) if window else None,
            "old_code_after_new": sum(1 for r in window if r[3] == prev and first_new
                                      and r[0] > first_new),
        })
        prev = version
    rl = res["reloads"]
    res.update({
        "save_to_new_code_ms_median": median([r["save_to_new_code_ms"] for r in rl]),
        "failed_per_reload_median": median([r["failed"] for r in rl]),
        "failed_total": sum(r["failed"] for r in rl),
        "max_latency_ms_median": median([r["max_latency_ms"] for r in rl]),
        "reloads_done": sum(1 for r in rl if r["save_to_new_code_ms"] is not None),
        "requests_total": len(recs),
        "pin_checks": s.pin_checks, "max_threads": s.max_threads, "unpinned": s.unpinned,
    })
    for r in rl:
        print("reload    %-9s %-4s: new code after %s ms, %d failed of %d, max latency %s ms" % (
            name, r["version"], "%.0f" % r["save_to_new_code_ms"]
            if r["save_to_new_code_ms"] is not None else "-", r["failed"], r["requests"],
            "%.0f" % r["max_latency_ms"] if r["max_latency_ms"] is not None else "-"),
            flush=True)
    return res


# ---- summary -------------------------------------------------------------------------

def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def fmt_ratio(v):
    return "–" if v is None else "%.2f×" % v


def summary_md(summary):
    a = summary["args"]
    v = summary["versions"]
    ev = summary["evicorn"]
    lines = ["## Python servers on the current PyPI stack (`bench/pyservers/run.py`)", ""]
    if a["quick"]:
        lines += ["> **A `--quick` run** (%d run of %d s per server and scenario): it checks "
                  "the script end to end; these are not figures to quote." % (
                      a["runs"], a["duration"]), ""]
    lines.append(
        "evicorn (`python -m evicorn`, its module from `%s/python`, a %s build of %s) against "
        "uvicorn, granian, hypercorn and gunicorn, every server run by the same interpreter "
        "(Python %s, from the `python3` first on PATH) from one venv, `%s`, with the pinned "
        "packages of `bench/pyservers/requirements.txt`. Each server runs one worker, "
        "started with `taskset -c %d`: every thread of every one of its processes was checked "
        "to be on CPU %d alone (`Cpus_allowed_list` in `/proc/<pid>/task/*/status`, after start "
        "and after each run: %d checks, %s). The load: `taskset -c %d wrk -t1 -c%d -d%ds` "
        "after a %d s warm-up of its own, %d run%s per server and scenario with the order "
        "rotated every run; medians. *Server CPU* is utime+stime of all the server's processes "
        "(`/proc/<pid>/stat`) over the measured run, per request. Ratios are evicorn's median "
        "divided by the peer's." % (
            rel(a["build"]), ev.get("CMAKE_BUILD_TYPE", "?"), ev.get("commit", "?"),
            v.get("python", "?"), rel(a["venv"]), a["server_cpu"], a["server_cpu"],
            summary["pinning"]["checks"],
            "all pinned" if not summary["pinning"]["unpinned"] else
            "**some not pinned: see below**", a["client_cpu"], a["conns"], a["duration"],
            a["warmup"], a["runs"], "" if a["runs"] == 1 else "s"))
    lines.append("")
    lines.append("| server | version |")
    lines.append("| --- | --- |")
    lines.append("| evicorn | %s (%s, commit %s) |" % (summary["evicorn_version"],
                                                       ev.get("CMAKE_BUILD_TYPE", "?"),
                                                       ev.get("commit", "?")))
    for n, extra in (("uvicorn", "uvloop %s, httptools %s" % (v.get("uvloop"),
                                                              v.get("httptools"))),
                     ("granian", None), ("hypercorn", "h11 %s, uvloop worker" % v.get("h11")),
                     ("gunicorn", "gthread worker")):
        lines.append("| %s | %s%s |" % (n, v.get(n), " (%s)" % extra if extra else ""))
    lines.append("")
    lines.append("Apps (`bench/pyservers/apps/`): FastAPI %s (Starlette %s, pydantic %s), Flask "
                 "%s (Werkzeug %s); wrk %s; Python %s." % (
                     v.get("fastapi"), v.get("starlette"), v.get("pydantic"), v.get("flask"),
                     v.get("werkzeug"), summary["wrk"], v.get("python")))
    lines.append("")
    lines.append("| scenario | server | req/s | evicorn ÷ it | server CPU µs/req | "
                 "req per server CPU-s | evicorn ÷ it | p50 ms | p99 ms | errors |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for sc, data in summary["scenarios"].items():
        for name, s in data["servers"].items():
            if s["status"] != "ok" or not s["runs"]:
                lines.append("| %s | %s | %s | | | | | | | |" % (
                    sc, name, "skipped" if s["status"] == "skipped" else "failed"))
                continue
            r = data["ratios"].get(name, {})
            bold = "**%s**" if name == "evicorn" else "%s"
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                sc, bold % name, fmt(s["rps_median"]),
                "" if name == "evicorn" else fmt_ratio(r.get("rps")),
                fmt(s["cpu_us_per_request_median"], "%.1f"),
                fmt(s["requests_per_cpu_s_median"]),
                "" if name == "evicorn" else fmt_ratio(r.get("requests_per_cpu_s")),
                fmt(s["p50_ms_median"], "%.2f"), fmt(s["p99_ms_median"], "%.2f"), s["errors"]))
    lines.append("")
    lines.append("![req/s and requests per server CPU-second, per scenario and server]"
                 "(img/pyservers.png)")
    lines.append("")
    runs = [r for d in summary["scenarios"].values() for s in d["servers"].values()
            for r in s["runs"]]
    if runs:
        def spread(core, key):
            xs = [r[core][key] for r in runs if r[core][key] is not None]
            return "%.0f%% (max %.0f%%)" % (100 * benchlib.median(xs), 100 * max(xs)) \
                if xs else "–"
        over = sum(1 for r in runs if r["disturbed"])
        if a["retries"]:
            retried = ("A run where other processes or steal took more than %.0f%% of either "
                       "core was done again, up to %d times, keeping the least disturbed "
                       "attempt: %d of %d runs kept were still over that." % (
                           100 * a["disturb_limit"], a["retries"], over, len(runs)))
        else:
            retried = ("Runs were not done again (`--retries 0`): %d of %d had other processes "
                       "or steal over %.0f%% of a core." % (over, len(runs),
                                                             100 * a["disturb_limit"]))
        lines.append(
            "How the two cores were shared during the measured runs (`/proc/stat`; medians "
            "over the runs): the servers' core lent %s to other processes and %s to the "
            "hypervisor (steal), and spent %s in interrupts; the client core lent %s to other "
            "processes and %s to the hypervisor. %s" % (
                spread("server_core", "other"), spread("server_core", "steal"),
                spread("server_core", "irq"), spread("client_core", "other"),
                spread("client_core", "steal"), retried))
        lines.append("")
    lines.append("All runs (req/s): " + "; ".join(
        "%s %s: %s" % (sc, name, ", ".join("%.0f" % r["rps"] for r in s["runs"]))
        for sc, d in summary["scenarios"].items() for name, s in d["servers"].items()
        if s["runs"]) + ".")
    lines.append("")
    rl = summary.get("reload")
    if rl:
        lines.append(
            "`--reload` under load: each server watches its own temp copy of "
            "`apps/fastapi_app`; %d client threads pinned to CPU %d send `GET /version` on a "
            "fresh connection each, one after another (a failed request is followed by a 10 ms "
            "pause), while `VERSION` in `app.py` is rewritten %d times (a new file renamed over "
            "it, as an editor saves; %.1f s between a reload's first new answer and the next "
            "save). Per reload: the time from the save to the first answer with the new "
            "version, the requests that failed (refused, reset, timed out or not 200) from that "
            "save to the next, and the slowest request in that time; medians over the "
            "reloads." % (a["reload_clients"], a["client_cpu"], a["reloads"],
                          a["reload_settle"]))
        lines.append("")
        lines.append("| server | save → new code, ms (median) | failed requests per reload "
                     "(median; total) | slowest request, ms (median) | requests | "
                     "reloads seen |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, r in rl.items():
            if r["status"] != "ok" and not r.get("reloads"):
                lines.append("| %s | %s: %s | | | | |" % (name, r["status"], r["note"]))
                continue
            lines.append("| %s | %s | %s; %d | %s | %d | %d of %d |" % (
                "**%s**" % name if name == "evicorn" else name,
                fmt(r["save_to_new_code_ms_median"]), fmt(r["failed_per_reload_median"]),
                r["failed_total"], fmt(r["max_latency_ms_median"]), r["requests_total"],
                r["reloads_done"], len(r["reloads"])))
        lines.append("")
        lines.append("Per reload (save → new code ms / failed): " + "; ".join(
            "%s: %s" % (name, ", ".join("%s/%d" % (fmt(x["save_to_new_code_ms"]), x["failed"])
                                        for x in r.get("reloads", [])))
            for name, r in rl.items()) + ".")
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
    lines.append("Servers, as started (`$PORT` a free port, `$TMP` the run's temp folder):")
    lines.append("")
    lines.append("```sh")
    for key, cmd in summary["commands"].items():
        lines.append("# %s" % key)
        lines.append(cmd)
    lines.append("```")
    return "\n".join(lines) + "\n"


def draw_chart(outdir):
    """pyservers.png from summary.json, with bench/charts.py; in this
    interpreter, else in /usr/bin/python3 (Debian's python3-matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and \
                os.path.exists("/usr/bin/python3"):
            out = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--chart",
                                  outdir], capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            return out.returncode == 0 and os.path.exists(os.path.join(outdir, "pyservers.png"))
        log("no matplotlib (apt-get install python3-matplotlib): no chart drawn")
        return False
    import charts
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    charts.pyservers(charts._plt(), summary, os.path.join(outdir, "pyservers.png"))
    return True


# ---- main ------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Scenarios: " + " ".join(ALL_SCENARIOS))
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="any of: %s (default: all)" % " ".join(ALL_SCENARIOS))
    ap.add_argument("--runs", type=int, default=5, help="rotations (default 5)")
    ap.add_argument("--duration", type=int, default=10, help="s per measured wrk run (10)")
    ap.add_argument("--warmup", type=int, default=3, help="s of wrk before each measured run (3)")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma-separated subset of %s" % ",".join(ALL_SERVERS))
    ap.add_argument("--wsgi-threads", type=int, default=4,
                    help="app threads of each WSGI server: gunicorn --threads, granian "
                         "--blocking-threads, evicorn --threads (4)")
    ap.add_argument("--reloads", type=int, default=5, help="file saves per server (5)")
    ap.add_argument("--reload-clients", type=int, default=4)
    ap.add_argument("--reload-settle", type=float, default=2.0,
                    help="s after the first new answer before the next save (2)")
    ap.add_argument("--reload-timeout", type=float, default=30.0)
    ap.add_argument("--disturb-limit", type=float, default=0.15,
                    help="share of either core that other processes or steal may take before "
                         "a run counts as disturbed (0.15)")
    ap.add_argument("--retries", type=int, default=2,
                    help="times a disturbed run is done again (2; --quick: 0)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="--runs 1 --duration 3 --warmup 1 --reloads 3 --reload-settle 1 "
                         "--retries 0")
    ap.add_argument("--quiet-wait", type=float, default=600,
                    help="s to wait for other benchmarks (wrk, bench/run) to end before each "
                         "run (600; 0: do not wait)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree with evicorn's module in python/ (build)")
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "venv-bench"))
    ap.add_argument("--chart", metavar="RESULTS_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 3, 1
        args.reloads, args.reload_settle, args.retries = 3, 1.0, 0
    args.build = os.path.abspath(args.build)
    args.venv = os.path.abspath(args.venv)
    scens = []
    for s in args.scenarios:
        s = ALIASES.get(s, s)
        if s not in ALL_SCENARIOS:
            ap.error("unknown scenario %r (known: %s)" % (s, " ".join(ALL_SCENARIOS)))
        if s not in scens:
            scens.append(s)
    args.scenarios = [s for s in ALL_SCENARIOS if s in scens] or list(ALL_SCENARIOS)
    args.servers = [s for s in args.servers.split(",") if s]
    for s in args.servers:
        if s not in ALL_SERVERS:
            ap.error("unknown server %r" % s)
    if "evicorn" not in args.servers:
        args.servers.insert(0, "evicorn")
    return args


def main():
    args = parse_args()
    if args.chart:
        sys.exit(0 if draw_chart(os.path.abspath(args.chart)) else 1)
    benchlib.exit_on_signals()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit("bench/pyservers/run.py: %s is not installed (apt-get install %s)" % (
                tool, "wrk" if tool == "wrk" else "util-linux"))
    ncpu = os.cpu_count() or 1
    if max(args.server_cpu, args.client_cpu) >= ncpu:
        sys.exit("bench/pyservers/run.py: need CPUs %d and %d (have %d)" % (
            args.server_cpu, args.client_cpu, ncpu))

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    for d in ("logs", "wrk", "reload"):
        os.makedirs(os.path.join(outdir, d))
    vpy = ensure_venv(args.venv, os.path.join(outdir, "logs", "venv.log"))
    env = server_env(args.venv, args.build)
    evicorn_version = check_evicorn(vpy, env, args.build)
    versions = pip_versions(vpy, env)
    gflags = granian_flags(vpy, env)
    notes = []
    ctx = {"vpy": vpy, "env": env, "venv": args.venv, "outdir": outdir, "gflags": gflags,
           "notes": notes}
    wrk_version = deb_version("wrk") or "?"
    command = " ".join(["python3", rel(os.path.abspath(__file__))] +
                       [a.replace(ROOT + "/", "") for a in sys.argv[1:]])
    summary = {
        "stamp": stamp, "command": command,
        "args": dict(vars(args), build=args.build, venv=args.venv),
        "versions": versions, "evicorn_version": evicorn_version,
        "evicorn": evicorn_build_info(args.build), "wrk": wrk_version, "machine": machine(),
        "scenarios": {}, "reload": {}, "commands": {}, "notes": notes,
    }
    log("venv Python %s: %s" % (versions.get("python"), ", ".join(
        "%s %s" % (k, v) for k, v in versions.items() if k not in ("python",
                                                                   "python_implementation"))))
    log("evicorn %s from %s/python; scenarios: %s; %d run(s) of %d s (+%d s warm-up)" % (
        evicorn_version, rel(args.build), " ".join(args.scenarios), args.runs, args.duration,
        args.warmup))
    # This script and its client threads stay off the servers' core.
    benchlib.pin_self(args.client_cpu)
    tmp = tempfile.mkdtemp(prefix="evicorn-pyservers-")
    commands = summary["commands"]
    try:
        benchlib.wait_quiet(args.quiet_wait)
        groups = []  # (app, interface, scenarios), in scenario order
        for sc in args.scenarios:
            if sc == "reload":
                continue
            app, _, interface = THROUGHPUT[sc][:3]
            if groups and groups[-1][0] == app:
                groups[-1][2].append(sc)
            else:
                groups.append((app, interface, [sc]))
        for app, interface, scens in groups:
            names = [n for n in THROUGHPUT[scens[0]][3] if n in args.servers]
            per_scen, cmds = throughput_group(app, interface, scens, names, args, ctx)
            for name, c in cmds.items():
                commands["%s: %s" % (app, name)] = c
            for sc in scens:
                servers = per_scen[sc]
                summary["scenarios"][sc] = {
                    "app": app, "path": THROUGHPUT[sc][1], "interface": interface,
                    "title": THROUGHPUT[sc][5], "servers": servers,
                    "ratios": ratios(servers)}
                for name, s in servers.items():
                    if s["status"] == "skipped":
                        note = "%s, %s: skipped: %s." % (sc, name, s["note"])
                        if note not in notes:
                            notes.append(note)
                    elif s["status"] != "ok":
                        notes.append("%s, %s: %s." % (sc, name, s["note"]))
        if "reload" in args.scenarios:
            for name in [n for n in RELOAD_SERVERS if n in args.servers]:
                r = reload_server(name, args, ctx, tmp)
                summary["reload"][name] = r
                commands["reload: %s" % name] = r["command"]
                if r["status"] != "ok":
                    notes.append("reload, %s: %s: %s." % (name, r["status"], r["note"]))
    finally:
        for s in list(LIVE):
            stop(s)
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(outdir, "commands.txt"), "w") as f:
            f.write("$ %s\n" % command)
            for key, c in commands.items():
                f.write("%s: %s\n" % (key, c))
    checks = [s["pin_checks"] for d in summary["scenarios"].values()
              for s in d["servers"].values()] + [r.get("pin_checks", 0)
                                                 for r in summary["reload"].values()]
    unpinned = ["%s %s: %s" % (sc, name, u) for sc, d in summary["scenarios"].items()
                for name, s in d["servers"].items() for u in s["unpinned"]]
    unpinned += ["reload %s: %s" % (name, u) for name, r in summary["reload"].items()
                 for u in r.get("unpinned", [])]
    summary["pinning"] = {"cpu": args.server_cpu, "checks": sum(checks), "unpinned": unpinned}
    if unpinned:
        notes.append("threads not pinned to CPU %d: %s" % (args.server_cpu, "; ".join(unpinned)))
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = summary_md(summary)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(md)
    drawn = draw_chart(outdir)
    print()
    print(md)
    if drawn:
        print("chart: %s (docs/benchmarks.md shows it as img/pyservers.png)" % rel(
            os.path.join(outdir, "pyservers.png")))
    print("results in %s" % rel(outdir))


if __name__ == "__main__":
    main()
