#!/usr/bin/env python3
"""WebSockets: evicorn's native WebSocket routes and its ASGI bridge against
Kore, uvicorn and Granian, with bench/ws/wsload (a C client) as the load.

    python3 bench/ws/run.py [--runs 5] [--duration 10] [--quick] [--docs] [SCENARIO...]
    bench/run ws                            # the same, run by the suite

Scenarios (default: all, in this order):

  echo-small    32-byte text messages, each connection sends one, waits for its
                echo, sends the next; over 1, 64 and 1,000 connections
  echo-large    the same with 16 KiB messages
  echo-deflate  16 KiB messages with permessage-deflate offered (no context
                takeover either way, so every message is compressed on its own);
                servers that decline the offer are shown as such
  broadcast     10,000 receivers in one room and one sender: the time from a
                send until the last receiver has the message (native:
                examples/chat /ws/chat/{room}; Python: the FastAPI app's room)
  idle          server RSS per idle WebSocket connection at 10,000 (RSS of the
                server's processes after opening them minus before, / 10,000);
                also evicorn's idle HTTP keep-alive connections, for comparison

Servers (--servers): evicorn (native: examples/chat as build/plugins/chat.so,
with hello.so for GET /plaintext), kore (bench/ws/kore, built with `kodev
build`), uvicorn (`--ws websockets --loop uvloop --http httptools`), granian
(ASGI, uvloop, one runtime thread) and bridge (`python -m evicorn app:app`,
evicorn's ASGI bridge); the three Python servers serve the same FastAPI app,
bench/ws/apps/fastapi_ws/app.py, from one venv (<build>/venv-ws, made from
the python3 first on PATH with bench/ws/requirements.txt: the pinned stack of
bench/pyservers plus websockets). evicorn's Python module comes from
<build>/python (PYTHONPATH), as in bench/pyservers. A server that refuses the
WebSocket handshake (the bridge, before its WebSocket support) is reported as
pending, with the status it answered, and the rest of the run goes on.

Every server runs one worker under `taskset -c 0` (--server-cpu) and every
thread of every one of its processes is checked to be on that CPU after start
and after every run; wsload runs under `taskset -c 1` (--client-cpu), as does
this script. Each of --runs rotations runs every server once per scenario and
connection count, the order rotated every run, each run with fresh
connections and a warm-up of its own (--warmup) before --duration measured
seconds. Per run: round trips per second, latency percentiles, the server's
CPU time over the measured window (utime+stime of all its processes, from
/proc/<pid>/stat, sampled when wsload says the window opens and ends), so
round trips per server CPU-second, and how both cores were shared (/proc/stat:
the server or wsload, other processes, interrupts, steal). A run where other
processes or steal took more than --disturb-limit of either core is done
again, up to --retries times, keeping the least disturbed attempt. Medians
over the runs, and the ratios the targets name.

Output: bench/ws/results/<UTC timestamp>/ (gitignored): commands.txt, logs/,
runs/ (every wsload output), summary.json, summary.md (the section for
docs/benchmarks.md) and ws_echo.png, ws_broadcast_idle.png (bench/charts.py).
--docs also puts the section into docs/benchmarks.md (replacing its
"## WebSockets" section, or appending one) with bench/ws/notes.md after it,
and the charts into docs/img/.

The script needs only Python 3's standard library, taskset and, for Kore,
kodev; the charts need matplotlib here or in /usr/bin/python3.
"""
import argparse
import importlib.util
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
APP_DIR = os.path.join(HERE, "apps", "fastapi_ws")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
KORE_DIR = os.path.join(HERE, "kore")
NOTES = os.path.join(HERE, "notes.md")
SECTION_TITLE = "## WebSockets"


def _load_pyservers():
    """bench/pyservers/run.py as a module: its venv and version helpers."""
    spec = importlib.util.spec_from_file_location(
        "pyservers_run", os.path.join(BENCH, "pyservers", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pys = _load_pyservers()
rel = pys.rel

ALL_SERVERS = ["evicorn", "kore", "uvicorn", "granian", "bridge"]
TITLE = {"evicorn": "evicorn (native)", "kore": "Kore", "uvicorn": "uvicorn",
         "granian": "Granian", "bridge": "evicorn ASGI bridge",
         "evicorn-http": "evicorn, HTTP keep-alive"}
ALL_SCENARIOS = ["echo-small", "echo-large", "echo-deflate", "broadcast", "idle"]
# name -> (title, message size attribute, deflate)
ECHO = {
    "echo-small": ("32-byte text messages", "small", False),
    "echo-large": ("16 KiB text messages", "large", False),
    "echo-deflate": ("16 KiB text messages, permessage-deflate", "large", True),
}
BROADCAST_SERVERS = ["evicorn", "uvicorn", "granian", "bridge"]
# (measurement, server, peer, target ratio)
TARGETS = [("echo", "evicorn", "kore", 1.0), ("echo", "evicorn", "uvicorn", 5.0),
           ("echo", "bridge", "uvicorn", 1.5), ("echo", "bridge", "granian", 1.0)]
IDLE_TARGET_KIB = 4.0


def log(msg):
    print("[ws %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def median(xs):
    return benchlib.median([x for x in xs if x is not None])


# ---- the venv ---------------------------------------------------------------------

def ensure_venv(venv, logpath):
    """<build>/venv-ws with the pinned requirements, made again when one of
    the requirement files or the interpreter changed. Returns its python."""
    return benchlib.ensure_venv(venv, REQUIREMENTS, "fastapi, uvicorn, granian, websockets",
                                logpath, prog="bench/ws/run.py", log=log)


def pip_versions(vpy, env):
    names = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "websockets", "granian"]
    code = ("import importlib.metadata as m, json, platform\n"
            "out = {'python': platform.python_version()}\n"
            "for n in %r:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))" % names)
    out = subprocess.run([vpy, "-c", code], capture_output=True, text=True, env=env)
    return json.loads(out.stdout) if out.returncode == 0 else {}


machine = benchlib.machine


# ---- servers -----------------------------------------------------------------------

class Server(benchlib.PinnedServer):
    """One server, in its own process group, pinned with taskset."""

    def __init__(self, name, argv, cwd, env, cpu, log_path, port):
        super().__init__(name, argv, cpu=cpu, port=port, log_path=log_path, cwd=cwd, env=env,
                         new_session=True)
        self.status, self.note = "ok", None
        self.pin_checks, self.max_threads, self.unpinned = 0, 0, []

    def stop(self):
        pgid = self.proc.pid if self.proc is not None else None
        try:
            super().stop()
        finally:
            if pgid is not None:
                pys.kill_group_leftovers(pgid)


LIVE = []


def stop(server):
    try:
        server.stop()
    finally:
        if server in LIVE:
            LIVE.remove(server)


def check_pinning(server, cpu):
    if server.proc is None or server.proc.poll() is not None:
        return True
    aff = benchlib.tree_affinity(server.proc.pid)
    server.pin_checks += 1
    server.max_threads = max(server.max_threads, sum(len(v) for v in aff.values()))
    bad = {k: v for k, v in aff.items() if k != str(cpu)}
    if bad:
        desc = "; ".join("%s: %s" % (k, ", ".join("%d/%d" % t for t in v[:6]))
                         for k, v in bad.items())
        if desc not in server.unpinned:
            server.unpinned.append(desc)
        log("warning: %s has threads not pinned to CPU %d (pid/tid): %s" % (server.name, cpu,
                                                                          desc))
        return False
    return True


def build_kore(tmp, port, logpath):
    """A copy of bench/ws/kore with the port set, built with kodev. Returns
    its folder, or None (the reason is in the log)."""
    # kodev takes the folder's name for the app's: conf/ws.conf, ws.so.
    app = os.path.join(tmp, "kore", "ws")
    if os.path.exists(app):
        shutil.rmtree(app)
    shutil.copytree(KORE_DIR, app)
    conf = os.path.join(app, "conf", "ws.conf")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(re.sub(r"bind 127\.0\.0\.1 \d+", "bind 127.0.0.1 %d" % port, text))
    with open(logpath, "ab") as logf:
        for cmd in (["kodev", "flavor", "prod"], ["kodev", "build"]):
            logf.write(("$ %s\n" % " ".join(cmd)).encode())
            logf.flush()
            if subprocess.run(cmd, cwd=app, stdout=logf, stderr=logf).returncode != 0:
                return None
    return app


def server_argv(name, ctx, port):
    """(argv, cwd, env) of one server."""
    host = "127.0.0.1"
    vpy, env, gflags = ctx["vpy"], ctx["env"], ctx["gflags"]
    if name == "evicorn":
        return ([ctx["evicorn_bin"], "--host", host, "--port", str(port), "--plugins",
                 ctx["plugins"], "--workers", "1", "--no-access-log", "--log-level", "warning",
                 "--timeout-keep-alive", "600", "--backlog", "4096"], ctx["tmp"],
                pys.clean_env())
    if name == "kore":
        return (["kore", "-c", "conf/ws.conf", "-f", "-n", "-r"], ctx["kore_dir"],
                pys.clean_env())
    if name == "uvicorn":
        return ([vpy, "-m", "uvicorn", "app:app", "--host", host, "--port", str(port),
                 "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--ws",
                 "websockets", "--no-access-log", "--log-level", "warning", "--backlog", "4096",
                 "--timeout-keep-alive", "600"], APP_DIR, env)
    if name == "granian":
        argv = [vpy, "-m", "granian", "--interface", "asgi", "--host", host, "--port",
                str(port), "--workers", "1"]
        for flag, value in (("--runtime-threads", "1"), ("--loop", "uvloop"),
                            ("--backlog", "4096")):
            if flag in gflags:
                argv += [flag, value]
        return argv + ["--log-level", "warning", "app:app"], APP_DIR, env
    if name == "bridge":
        return ([vpy, "-m", "evicorn", "app:app", "--host", host, "--port", str(port),
                 "--workers", "1", "--no-access-log", "--log-level", "warning",
                 "--timeout-keep-alive", "600", "--backlog", "4096"], APP_DIR, env)
    raise ValueError(name)


def granian_flags(vpy, env):
    out = subprocess.run([vpy, "-m", "granian", "--help"], capture_output=True, text=True,
                         env=env).stdout
    return {f for f in ("--runtime-threads", "--loop", "--backlog") if f in out}


def shown_command(s, ctx):
    argv = []
    for a in s.command:
        if ctx["vpy"]:
            a = a.replace(ctx["vpy"], rel(ctx["venv"]) + "/bin/python")
        a = a.replace(ctx["tmp"], "$TMP").replace(ROOT + "/", "")
        argv.append(a)
    line = " ".join(argv)
    line = re.sub(r"--port \d+", "--port $PORT", line)
    cwd = s.cwd.replace(ctx["tmp"], "$TMP").replace(ROOT + "/", "")
    env = ("PYTHONPATH=%s " % rel(s.env["PYTHONPATH"])) if s.env and s.env.get("PYTHONPATH") \
        else ""
    return "cd %s && %s%s" % (cwd, env, line)


def wait_http(server, timeout):
    """GET /plaintext answers 200 "Hello, World!"; RuntimeError if not."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError("exited with %d during start; see %s" % (
                server.proc.returncode, rel(server.log_path)))
        try:
            status, body = benchlib.http_get(server.port, "/plaintext", timeout=5.0)
            if status == 200 and body == b"Hello, World!":
                return
            raise RuntimeError("GET /plaintext answered %d %r" % (status, body[:60]))
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError("no answer after %.0f s (%s); see %s" % (timeout, last,
                                                                  rel(server.log_path)))


def start_server(name, ctx, args):
    """Starts one server and checks it: GET /plaintext, then one WebSocket
    echo. Returns the Server; .status is "ok", "pending" (it refused the
    WebSocket handshake: the bridge before its WebSocket support) or
    "failed", with .note saying why."""
    port = benchlib.free_port()
    if name == "kore":
        if not shutil.which("kodev") or not shutil.which("kore"):
            s = Server(name, ["kore"], HERE, None, args.server_cpu, None, port)
            s.status, s.note = "failed", "kore/kodev are not installed (scripts/install-deps " \
                                         "--bench)"
            return s
        kdir = build_kore(ctx["tmp"], port, os.path.join(ctx["outdir"], "logs", "kore-build.log"))
        if not kdir:
            s = Server(name, ["kore"], HERE, None, args.server_cpu, None, port)
            s.status, s.note = "failed", "kodev build failed (logs/kore-build.log)"
            return s
        ctx["kore_dir"] = kdir
    argv, cwd, env = server_argv(name, ctx, port)
    s = Server(name, argv, cwd, env, args.server_cpu,
               os.path.join(ctx["outdir"], "logs", "%s.log" % name), port)
    ctx["commands"][name] = shown_command(s, ctx)
    LIVE.append(s)
    s.start()
    try:
        wait_http(s, 60)
    except RuntimeError as e:
        stop(s)
        s.status, s.note = "failed", str(e)
        log("%s: did not start: %s" % (name, e))
        return s
    check_pinning(s, args.server_cpu)
    # One WebSocket round trip, to tell a server without WebSocket support.
    r = wsload(ctx, ["-c", "1", "-d", "0.3", "-w", "0", "-t", "10"], s, "/ws/echo", None)
    if r.get("opened") != 1 or r.get("round_trips", 0) < 1:
        st = r.get("first_status")
        if name == "bridge" and st and st != 101:
            s.status = "pending"
            s.note = ("the bridge answers %d to the WebSocket upgrade: its WebSocket support "
                      "has not landed in this build; rerun once it has" % st)
        else:
            s.status = "failed"
            s.note = "the WebSocket check failed: %s" % (r.get("error") or "no answer")
        log("%s: %s" % (name, s.note))
        stop(s)
        return s
    log("%s: up on 127.0.0.1:%d (pid %d, CPU %d)" % (name, port, s.proc.pid, args.server_cpu))
    return s


# ---- wsload -----------------------------------------------------------------------

def snapshot(server, args):
    return {"t": time.monotonic(),
            "server_ticks": benchlib.tree_cpu_ticks(server.proc.pid),
            "server_core": benchlib.cpu_times(args.server_cpu),
            "client_core": benchlib.cpu_times(args.client_cpu)}


def wsload(ctx, opts, server, path, out_path, timeout=None, events=False):
    """One wsload run against the server; its JSON result (with "window": the
    samples taken when the measured window opened and ended, with --events).
    {} with "error" when it printed nothing usable."""
    args = ctx["args"]
    argv = [ctx["wsload"]] + list(opts) + (["--events"] if events else [])
    if args.src:
        argv += ["--src", args.src]
    argv.append("ws://127.0.0.1:%d%s" % (server.port, path))
    cmd = benchlib.taskset(args.client_cpu, argv)
    ctx["last_wsload"] = " ".join(cmd)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result, window, lines = {}, {}, []
    deadline = time.monotonic() + (timeout or 600)
    try:
        for line in proc.stdout:
            lines.append(line)
            try:
                d = json.loads(line)
            except ValueError:
                continue
            ev = d.get("event")
            if ev == "measure_start":
                window["start"] = snapshot(server, args)
            elif ev == "measure_end":
                window["end"] = snapshot(server, args)
            elif ev is None:
                result = d
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        result.setdefault("error", "wsload timed out")
    err = proc.stderr.read()
    if out_path:
        with open(out_path, "w") as f:
            f.write("$ %s\n%s%s" % (" ".join(cmd), "".join(lines), err))
    if not result:
        result = {"error": "wsload printed no result (exit %s): %s" % (proc.returncode,
                                                                        err.strip()[:200])}
    result["exit"] = proc.returncode
    if window.get("start") and window.get("end"):
        result["window"] = window
    return result


def window_stats(r, args):
    """Server CPU over the measured window, round trips per server
    CPU-second, and how both cores were shared."""
    w = r.get("window")
    if not w:
        return
    a, b = w.pop("start"), w.pop("end")
    wall = b["t"] - a["t"]
    hz = os.sysconf("SC_CLK_TCK")
    cpu_s = (b["server_ticks"] - a["server_ticks"]) / hz
    r["window_s"] = round(wall, 3)
    r["server_cpu_s"] = cpu_s
    r["server_cpu_share"] = cpu_s / wall if wall else None
    rt = r.get("round_trips") or 0
    r["rt_per_server_cpu_s"] = rt / cpu_s if rt and cpu_s else None
    client_ticks = (r.get("client_cpu_s") or 0) * hz
    for core, own in (("server_core", b["server_ticks"] - a["server_ticks"]),
                      ("client_core", client_ticks)):
        r[core] = benchlib.core_shares(a[core], b[core], own)
    r["disturbance"] = max((r[c][k] or 0) for c in ("server_core", "client_core")
                           for k in ("other", "steal"))
    r["disturbed"] = r["disturbance"] > args.disturb_limit
    del r["window"]


def core_line(r):
    c, k = r.get("server_core") or {}, r.get("client_core") or {}
    return ("server core: server %3.0f%% other %2.0f%% irq %2.0f%% steal %2.0f%%; client core: "
            "wsload %3.0f%% other %2.0f%%" % (
                100 * (c.get("owner") or 0), 100 * (c.get("other") or 0),
                100 * (c.get("irq") or 0), 100 * (c.get("steal") or 0),
                100 * (k.get("owner") or 0), 100 * (k.get("other") or 0)))


# ---- echo ---------------------------------------------------------------------------

def echo_opts(scen, conns, args):
    _, size_attr, deflate = ECHO[scen]
    size = getattr(args, size_attr)
    opts = ["-c", str(conns), "-s", str(size), "-d", str(args.duration), "-w", str(args.warmup),
            "-t", "120"]
    if deflate:
        opts.append("-z")
    return opts


def echo_run(ctx, s, scen, conns, run):
    """A measured echo run, done again while disturbed (up to --retries)."""
    args = ctx["args"]
    best = None
    for attempt in range(args.retries + 1):
        stem = "%s-c%d-%s-run%d%s" % (scen, conns, s.name, run,
                                      "" if attempt == 0 else ".again%d" % attempt)
        benchlib.wait_quiet(args.quiet_wait)
        r = wsload(ctx, echo_opts(scen, conns, args), s, "/ws/echo",
                   os.path.join(ctx["outdir"], "runs", stem + ".json"),
                   timeout=args.duration + args.warmup + 240, events=True)
        window_stats(r, args)
        r["attempts"] = attempt + 1
        if best is None or r.get("disturbance", 0) < best.get("disturbance", 0):
            best = dict(r)
        if not r.get("disturbed") or s.proc.poll() is not None or r.get("error"):
            break
        if args.retries:
            log("%s: disturbed (%.0f%% of a core taken by others or stolen)%s" % (
                stem, 100 * r["disturbance"], "; again" if attempt < args.retries else
                "; kept the least disturbed attempt"))
    best["attempts"] = r["attempts"]
    best["pinned"] = check_pinning(s, args.server_cpu)
    return best


def summarize_echo(name, status, note, runs, deflate):
    ok = [r for r in runs if not r.get("error") and r.get("rate")]
    lat = [r.get("latency_us") or {} for r in ok]
    out = {
        "status": status, "note": note, "runs": runs,
        "rate_median": median([r["rate"] for r in ok]),
        "rate_min": min([r["rate"] for r in ok]) if ok else None,
        "rate_max": max([r["rate"] for r in ok]) if ok else None,
        "rt_per_server_cpu_s_median": median([r.get("rt_per_server_cpu_s") for r in ok]),
        "p50_us_median": median([x.get("p50") for x in lat]),
        "p99_us_median": median([x.get("p99") for x in lat]),
        "client_busy_median": median([r.get("client_cpu_share") for r in ok]),
        "server_busy_median": median([r.get("server_cpu_share") for r in ok]),
        # Each core's busy share counting its interrupts too: on loopback
        # the kernel's packet work runs in softirqs on the sending core.
        "server_core_busy_median": median([core_busy(r, "server_core") for r in ok]),
        "client_core_busy_median": median([core_busy(r, "client_core") for r in ok]),
        "errors": sum(1 for r in runs if r.get("error")),
        "disturbed_runs": sum(1 for r in ok if r.get("disturbed")),
    }
    if deflate and ok:
        out["deflate_negotiated"] = all(r.get("deflate_negotiated") == r.get("connections")
                                        for r in ok)
    cb, sb = out["client_core_busy_median"], out["server_core_busy_median"]
    if cb is not None and sb is not None:
        # Which core ran out first: the busier of the two, once near full.
        out["limit"] = ("client" if cb >= 0.85 and cb > sb else
                        "server" if sb >= 0.85 else "neither (latency-bound)")
    return out


def core_busy(r, core):
    """The owner's share of a core plus its interrupts (None if unknown)."""
    c = r.get(core)
    if not c or c.get("owner") is None:
        return None
    return min(1.0, c["owner"] + (c.get("irq") or 0))


def echo_ratios(by):
    ratios = {}
    for _, a, b, _t in TARGETS:
        ratios["%s/%s" % (a, b)] = {
            "rate": ratio(by.get(a), by.get(b), "rate_median"),
            "per_cpu": ratio(by.get(a), by.get(b), "rt_per_server_cpu_s_median")}
    return ratios


def ratio(a, b, key):
    x, y = (a or {}).get(key), (b or {}).get(key)
    return x / y if x and y else None


def run_echo(ctx, servers, scens):
    args = ctx["args"]
    res = {}
    for scen in scens:
        title, size_attr, deflate = ECHO[scen]
        res[scen] = {"title": title, "size": getattr(args, size_attr), "deflate": deflate,
                     "by_conns": {}}
        for conns in args.conns:
            live = [s for s in servers if s.status == "ok"]
            runs = {s.name: [] for s in live}
            skip = {}
            if deflate:
                # A server that declines permessage-deflate is shown as such.
                for s in live:
                    r = wsload(ctx, ["-c", "1", "-s", "64", "-d", "0.2", "-w", "0", "-z"], s,
                               "/ws/echo", None)
                    if r.get("opened") == 1 and not r.get("deflate_negotiated"):
                        skip[s.name] = "declines permessage-deflate"
            names = [s for s in live if s.name not in skip]
            for run in range(args.runs):
                k = run % len(names) if names else 0
                for s in names[k:] + names[:k]:
                    if s.proc.poll() is not None:
                        continue
                    r = echo_run(ctx, s, scen, conns, run + 1)
                    runs[s.name].append(r)
                    if r.get("error"):
                        log("%s c=%d %s run %d: error: %s" % (scen, conns, s.name, run + 1,
                                                              r["error"]))
                    print("%-12s c=%-5d %-8s run %d: %9.0f rt/s %9s rt/server-CPU-s p50 %7.0f us"
                          " p99 %8.0f us (%s)%s" % (
                              scen, conns, s.name, run + 1, r.get("rate") or 0,
                              "%.0f" % r["rt_per_server_cpu_s"] if r.get("rt_per_server_cpu_s")
                              else "-", (r.get("latency_us") or {}).get("p50") or 0,
                              (r.get("latency_us") or {}).get("p99") or 0, core_line(r),
                              " disturbed" if r.get("disturbed") else ""), flush=True)
            by = {}
            for s in servers:
                if s.status != "ok":
                    by[s.name] = {"status": s.status, "note": s.note, "runs": []}
                elif s.name in skip:
                    by[s.name] = {"status": "n/a", "note": skip[s.name], "runs": []}
                else:
                    by[s.name] = summarize_echo(s.name, "ok", None, runs[s.name], deflate)
            res[scen]["by_conns"][str(conns)] = {"servers": by, "ratios": echo_ratios(by)}
    return res


# ---- broadcast -----------------------------------------------------------------------

def run_broadcast(ctx, servers):
    args = ctx["args"]
    live = [s for s in servers if s.status == "ok" and s.name in BROADCAST_SERVERS]
    runs = {s.name: [] for s in live}
    opts = ["-m", "broadcast", "-c", str(args.broadcast_conns), "-r", str(args.broadcast_rounds),
            "-s", str(args.small), "-t", "120"]
    for run in range(args.runs):
        k = run % len(live) if live else 0
        for s in live[k:] + live[:k]:
            if s.proc.poll() is not None:
                continue
            benchlib.wait_quiet(args.quiet_wait)
            t0 = benchlib.tree_cpu_ticks(s.proc.pid)
            r = wsload(ctx, opts, s, "/ws/chat/bench",
                       os.path.join(ctx["outdir"], "runs", "broadcast-%s-run%d.json" % (
                           s.name, run + 1)), timeout=900)
            r["server_cpu_s"] = (benchlib.tree_cpu_ticks(s.proc.pid) - t0) / os.sysconf(
                "SC_CLK_TCK")
            r["pinned"] = check_pinning(s, args.server_cpu)
            runs[s.name].append(r)
            print("broadcast    n=%d %-8s run %d: last receiver after %s ms (medians of %d "
                  "rounds; connect %.1f s)%s" % (
                      args.broadcast_conns, s.name, run + 1,
                      "%.1f" % r["all_ms_median"] if r.get("rounds_complete") else "-",
                      r.get("rounds_complete") or 0, r.get("connect_s") or 0,
                      " error: %s" % r["error"] if r.get("error") else ""), flush=True)
            time.sleep(1)
    out = {"n": args.broadcast_conns, "rounds": args.broadcast_rounds, "servers": {}}
    for s in servers:
        if s.name not in BROADCAST_SERVERS:
            continue
        if s.status != "ok":
            out["servers"][s.name] = {"status": s.status, "note": s.note, "runs": []}
            continue
        rs = runs[s.name]
        ok = [r for r in rs if r.get("rounds_complete")]
        allr = [x for r in ok for x in r.get("rounds", []) if x["received"] == args.broadcast_conns]
        out["servers"][s.name] = {
            "status": "ok", "note": None, "runs": rs,
            "all_ms_median": median([r["all_ms_median"] for r in ok]),
            "p50_ms_median": median([r["p50_ms_median"] for r in ok]),
            "first_ms_median": median([x["first_ms"] for x in allr]),
            "all_ms_min": min([x["all_ms"] for x in allr]) if allr else None,
            "all_ms_max": max([x["all_ms"] for x in allr]) if allr else None,
            "connect_s_median": median([r.get("connect_s") for r in ok]),
            "errors": sum(1 for r in rs if r.get("error")),
        }
    return out


# ---- idle ------------------------------------------------------------------------------

def idle_once(ctx, s, n, http, stem):
    """Opens n idle connections to a running server and holds them while the
    server's RSS is read: (per-connection KiB, details)."""
    args = ctx["args"]
    time.sleep(args.idle_settle)
    before = benchlib.tree_rss_kib(s.proc.pid)
    argv = [ctx["wsload"], "-m", "idle", "-c", str(n), "-t", "300"]
    if http:
        argv.append("--http")
    if args.src:
        argv += ["--src", args.src]
    argv.append("ws://127.0.0.1:%d%s" % (s.port, "/plaintext" if http else "/ws/echo"))
    cmd = benchlib.taskset(args.client_cpu, argv)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    res = {"n": n, "rss_before_kib": before, "pids": benchlib.tree_pids(s.proc.pid)}
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        res["opened"] = ready.get("opened")
        res["connect_s"] = ready.get("connect_s")
        time.sleep(args.idle_settle)
        samples = []
        for _ in range(3):
            samples.append(benchlib.tree_rss_kib(s.proc.pid))
            time.sleep(0.3)
        res["rss_after_kib"] = max(samples)
        res["fds"] = sum(benchlib.fd_count(p) for p in benchlib.tree_pids(s.proc.pid))
        out, err = proc.communicate(timeout=120)  # closes stdin: wsload lets go
    except (subprocess.TimeoutExpired, ValueError) as e:
        proc.kill()
        out, err = proc.communicate()
        res["error"] = "wsload: %s" % e
    with open(os.path.join(ctx["outdir"], "runs", stem + ".json"), "w") as f:
        f.write("$ %s\n%s%s" % (" ".join(cmd), out, err))
    final = {}
    for line in out.splitlines():
        try:
            final = json.loads(line)
        except ValueError:
            pass
    res["closed_early"] = final.get("closed_early")
    res["pings_answered"] = final.get("pings_answered")
    if final.get("error") and "error" not in res:
        res["error"] = final["error"]
    if res.get("opened") == n and "rss_after_kib" in res:
        res["rss_per_conn_kib"] = (res["rss_after_kib"] - before) / n
    return res


def run_idle(ctx, names):
    """Each server started alone, fresh for every run."""
    args = ctx["args"]
    out = {"n": args.idle_conns, "servers": {}}
    plan = [(n, False) for n in names] + ([("evicorn", True)] if "evicorn" in names else [])
    for run in range(args.idle_runs):
        for name, http in plan:
            key = "evicorn-http" if http else name
            entry = out["servers"].setdefault(key, {"status": "ok", "note": None, "runs": []})
            if entry["status"] != "ok":
                continue
            benchlib.wait_quiet(args.quiet_wait)
            s = start_server(name, ctx, args)
            if s.status != "ok":
                entry["status"], entry["note"] = s.status, s.note
                continue
            try:
                r = idle_once(ctx, s, args.idle_conns, http, "idle-%s-run%d" % (key, run + 1))
                r["pinned"] = check_pinning(s, args.server_cpu)
            finally:
                stop(s)
            entry["runs"].append(r)
            print("idle         n=%d %-12s run %d: RSS %s -> %s KiB: %s KiB per connection "
                  "(%s opened, %s closed early)%s" % (
                      args.idle_conns, key, run + 1, r.get("rss_before_kib"),
                      r.get("rss_after_kib"), "%.2f" % r["rss_per_conn_kib"]
                      if r.get("rss_per_conn_kib") is not None else "-", r.get("opened"),
                      r.get("closed_early"), " error: %s" % r["error"] if r.get("error")
                      else ""), flush=True)
            time.sleep(1)
    for key, e in out["servers"].items():
        e["rss_per_conn_kib_median"] = median([r.get("rss_per_conn_kib") for r in e["runs"]])
    return out


# ---- targets and the summary --------------------------------------------------------

def targets(summary):
    """Every target: (text, measured text, met: True/False/None)."""
    out = []
    echo = summary.get("echo", {})
    for _, a, b, want in TARGETS:
        for scen, d in echo.items():
            for conns, c in d["by_conns"].items():
                sa, sb = c["servers"].get(a, {}), c["servers"].get(b, {})
                what = "%s ≥ %.1f× %s, %s, %s connection%s" % (
                    TITLE[a], want, TITLE[b], d["title"], conns, "" if conns == "1" else "s")
                key = [a, b, scen, conns]
                if sa.get("status") != "ok" or sb.get("status") != "ok" or \
                        not sa.get("rate_median") or not sb.get("rate_median"):
                    why = sa.get("note") if sa.get("status") != "ok" else sb.get("note")
                    out.append({"target": what, "measured": why or "not measured",
                                "met": None, "pending": sa.get("status") == "pending",
                                "key": key})
                    continue
                r = c["ratios"]["%s/%s" % (a, b)]
                met = r["rate"] is not None and r["rate"] >= want
                # Per server CPU-second counts where round trips per second
                # did not measure the servers: a client core (nearly) full in
                # either's runs, or the round trip's latency the limit.
                client_bound = sa.get("limit") == "neither (latency-bound)" or any(
                    (x.get("client_core_busy_median") or 0) >= 0.85 for x in (sa, sb))
                per_cpu_met = client_bound and r["per_cpu"] is not None and r["per_cpu"] >= want
                txt = "%.2f× in round trips/s (%.0f vs %.0f)" % (
                    r["rate"], sa["rate_median"], sb["rate_median"])
                if r["per_cpu"] is not None:
                    txt += "; %.2f× per server CPU-second" % r["per_cpu"]
                lim = sa.get("limit")
                if lim == "client":
                    txt += " (%s was bound by the client's core)" % TITLE[a]
                out.append({"target": what, "measured": txt, "met": met,
                            "met_per_cpu": per_cpu_met, "ratio": r["rate"],
                            "ratio_per_cpu": r["per_cpu"], "key": key})
    idle = summary.get("idle", {}).get("servers", {}).get("evicorn")
    if idle:
        v = idle.get("rss_per_conn_kib_median")
        out.append({"target": "evicorn (native) ≤ %.0f KiB per idle WebSocket connection "
                              "(%d connections)" % (IDLE_TARGET_KIB, summary["idle"]["n"]),
                    "measured": "%.2f KiB" % v if v is not None else (idle.get("note") or "–"),
                    "met": v is not None and v <= IDLE_TARGET_KIB})
    return out


def fmt(v, spec="%.0f", none="–"):
    return none if v is None else spec % v


def fmt_ratio(v):
    return "–" if v is None else "%.2f×" % v


def echo_cell(s, key, spec="{:,.0f}"):
    if not s:
        return "–"
    if s.get("status") == "pending":
        return "pending"
    if s.get("status") == "n/a":
        return "n/a"
    if s.get("status") != "ok":
        return "failed"
    v = s.get(key)
    return "–" if v is None else spec.format(v)


def summary_md(summary):
    a = summary["args"]
    v = {k: x for k, x in summary["versions"].items() if x}
    v = {k: v.get(k, "?") for k in ("uvicorn", "websockets", "uvloop", "granian", "python",
                                    "fastapi", "starlette")}
    ev = summary["evicorn"]
    servers = [n for n in ALL_SERVERS if n in summary["servers"]]
    lines = ["%s (`bench/ws/run.py`)" % SECTION_TITLE, ""]
    if a["quick"]:
        lines += ["> **A `--quick` run**: it checks the script end to end; these are not "
                  "figures to quote.", ""]
    lines.append(
        "Echo round trips, broadcast and idle connections over WebSocket: evicorn's native "
        "routes (`examples/chat`, a %s build of %s) against Kore %s (`bench/ws/kore/`, "
        "`kore_websocket_handshake` and `kore_websocket_send`), and the same FastAPI app "
        "(`bench/ws/apps/fastapi_ws/app.py`) on uvicorn %s (`--ws websockets`, websockets "
        "%s, uvloop %s), Granian %s (ASGI) and evicorn's ASGI bridge, all from one venv "
        "(Python %s, FastAPI %s, Starlette %s). The load is `bench/ws/wsload`, a "
        "single-threaded epoll client in C." % (
            ev.get("CMAKE_BUILD_TYPE", "?"), ev.get("commit", "?"), summary.get("kore", "?"),
            v.get("uvicorn"), v.get("websockets"), v.get("uvloop"), v.get("granian"),
            v.get("python"), v.get("fastapi"), v.get("starlette")))
    lines.append("")
    lines.append(
        "Each server runs one worker under `taskset -c %d`; every thread of every one of its "
        "processes was checked to be on CPU %d (`Cpus_allowed_list`, after start and after "
        "each run: %d checks, %s). wsload and this script run under `taskset -c %d`. Echo: "
        "each connection sends a message, waits for its echo, sends the next; %d run%s per "
        "server and connection count, the order rotated every run, each with fresh "
        "connections, %g s of warm-up and %g s measured; medians. *Server CPU* is utime+stime "
        "of all the server's processes (`/proc/<pid>/stat`) over the measured window. In "
        "parentheses: which core ran out first (the busier one, once above 85 %%; *neither*: "
        "the round trips were bound by latency), then how busy the server's and the client's "
        "cores were (the owner's CPU time plus the core's interrupts, where loopback's packet "
        "work runs): where the client's core ran out, round trips per server CPU-second "
        "compare the servers better than round trips per second." % (
            a["server_cpu"], a["server_cpu"], summary["pinning"]["checks"],
            "all pinned" if not summary["pinning"]["unpinned"] else
            "**some not pinned: see the notes**", a["client_cpu"], a["runs"],
            "" if a["runs"] == 1 else "s", a["warmup"], a["duration"]))
    lines.append("")
    m = summary.get("machine") or {}
    lines.append("Machine: %s, %s CPUs%s, Linux %s%s%s; wsload and the servers on loopback "
                 "(127.0.0.1)." % (
                     m.get("cpu_model", "?"), m.get("cpus", "?"),
                     " (a %s guest)" % m["hypervisor"] if m.get("hypervisor") else "",
                     m.get("kernel", "?"), ", %s" % m["os"] if m.get("os") else "",
                     ", %s of memory" % m["memory"] if m.get("memory") else ""))
    lines.append("")
    pend = [n for n in servers if summary["servers"][n]["status"] == "pending"]
    for n in pend:
        lines.append("**%s: pending.** %s." % (TITLE[n], summary["servers"][n]["note"]))
        lines.append("")
    echo = summary.get("echo", {})
    if echo:
        lines.append("### Echo round trips per second (medians)")
        lines.append("")
        ratio_cols = [("evicorn", "kore"), ("evicorn", "uvicorn"), ("bridge", "uvicorn"),
                      ("bridge", "granian")]
        lines.append("| messages | connections | " + " | ".join(TITLE[n] for n in servers) +
                     " | " + " | ".join("%s ÷ %s" % ("native" if x == "evicorn" else "bridge",
                                                     TITLE[y]) for x, y in ratio_cols) + " |")
        lines.append("| --- | ---: |" + " ---: |" * (len(servers) + len(ratio_cols)))
        for scen, d in echo.items():
            for conns, c in d["by_conns"].items():
                cells = [echo_cell(c["servers"].get(n), "rate_median") for n in servers]
                rs = [fmt_ratio(c["ratios"].get("%s/%s" % (x, y), {}).get("rate"))
                      for x, y in ratio_cols]
                lines.append("| %s | %s | %s | %s |" % (d["title"], conns, " | ".join(cells),
                                                         " | ".join(rs)))
        lines.append("")
        lines.append("### Round trips per server CPU-second (medians), and which core ran out")
        lines.append("")
        lines.append("| messages | connections | " + " | ".join(TITLE[n] for n in servers) +
                     " | native ÷ Kore | native ÷ uvicorn |")
        lines.append("| --- | ---: |" + " ---: |" * (len(servers) + 2))
        for scen, d in echo.items():
            for conns, c in d["by_conns"].items():
                cells = []
                for n in servers:
                    s = c["servers"].get(n) or {}
                    cell = echo_cell(s, "rt_per_server_cpu_s_median")
                    if s.get("status") == "ok" and s.get("limit"):
                        cell += " (%s; cores %s / %s)" % (
                            {"client": "client", "server": "server"}.get(s["limit"], "neither"),
                            fmt(100 * s["server_core_busy_median"], "%.0f %%")
                            if s.get("server_core_busy_median") is not None else "–",
                            fmt(100 * s["client_core_busy_median"], "%.0f %%")
                            if s.get("client_core_busy_median") is not None else "–")
                    cells.append(cell)
                rs = [fmt_ratio(c["ratios"].get(k, {}).get("per_cpu"))
                      for k in ("evicorn/kore", "evicorn/uvicorn")]
                lines.append("| %s | %s | %s | %s |" % (d["title"], conns, " | ".join(cells),
                                                         " | ".join(rs)))
        lines.append("")
        lines.append("### Echo latency, p50 / p99 in µs (medians of the runs)")
        lines.append("")
        lines.append("| messages | connections | " + " | ".join(TITLE[n] for n in servers) + " |")
        lines.append("| --- | ---: |" + " ---: |" * len(servers))
        for scen, d in echo.items():
            for conns, c in d["by_conns"].items():
                cells = []
                for n in servers:
                    s = c["servers"].get(n) or {}
                    if s.get("status") == "ok" and s.get("p50_us_median") is not None:
                        cells.append("%s / %s" % (fmt(s["p50_us_median"]),
                                                  fmt(s["p99_us_median"])))
                    else:
                        cells.append(echo_cell(s, "p50_us_median"))
                lines.append("| %s | %s | %s |" % (d["title"], conns, " | ".join(cells)))
        lines.append("")
        lines.append("![echo round trips per second and per server CPU-second](img/ws_echo.png)")
        lines.append("")
    bc = summary.get("broadcast")
    if bc:
        lines.append("### Broadcast to %s connections" % "{:,}".format(bc["n"]))
        lines.append("")
        lines.append(
            "%s receivers and one sender in one room (`/ws/chat/bench`): the sender sends a "
            "%d-byte text message, the server sends `{\"from\": id, \"text\": ...}` to every "
            "connection in the room (native: `evicorn_ws_group_broadcast`; FastAPI: a loop of "
            "`await ws.send_text()` over the room's connections, as FastAPI's documentation "
            "does it), and the round ends when the last receiver has it; %d rounds per run, "
            "0.2 s apart, fresh connections every run; medians of the rounds, then of the "
            "runs." % ("{:,}".format(bc["n"]), a["small"], bc["rounds"]))
        lines.append("")
        lines.append("| server | last receiver, ms | half of the receivers, ms | first, ms | "
                     "range of the rounds, ms | opening %s connections, s |" %
                     "{:,}".format(bc["n"]))
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for n in BROADCAST_SERVERS:
            s = bc["servers"].get(n)
            if not s:
                continue
            if s["status"] != "ok":
                lines.append("| %s | %s | | | | |" % (TITLE[n], s["status"]))
                continue
            lines.append("| %s | %s | %s | %s | %s–%s | %s |" % (
                TITLE[n], fmt(s["all_ms_median"], "%.1f"), fmt(s["p50_ms_median"], "%.1f"),
                fmt(s["first_ms_median"], "%.2f"), fmt(s["all_ms_min"], "%.1f"),
                fmt(s["all_ms_max"], "%.1f"), fmt(s["connect_s_median"], "%.2f")))
        lines.append("")
    idle = summary.get("idle")
    if idle:
        lines.append("### Idle connections: RSS per connection at %s" % "{:,}".format(idle["n"]))
        lines.append("")
        lines.append(
            "Each server started alone and fresh for every run; the summed VmRSS of its "
            "processes is read, %s connections are opened (the WebSocket handshake done, or "
            "for HTTP one `GET /plaintext` answered) and held idle, and after %g s the RSS is "
            "read again (the largest of three readings); (after − before) / %s; %d run%s, "
            "medians." % ("{:,}".format(idle["n"]), a["idle_settle"], "{:,}".format(idle["n"]),
                          a["idle_runs"], "" if a["idle_runs"] == 1 else "s"))
        lines.append("")
        lines.append("| server | KiB per idle connection | runs |")
        lines.append("| --- | ---: | --- |")
        for key, e in idle["servers"].items():
            if e["status"] != "ok":
                lines.append("| %s | %s | |" % (TITLE.get(key, key), e["status"]))
                continue
            lines.append("| %s | %s | %s |" % (
                TITLE.get(key, key), fmt(e["rss_per_conn_kib_median"], "%.2f"),
                ", ".join(fmt(r.get("rss_per_conn_kib"), "%.2f") for r in e["runs"])))
        lines.append("")
    if bc or idle:
        lines.append("![broadcast to 10,000 connections and RSS per idle connection]"
                     "(img/ws_broadcast_idle.png)")
        lines.append("")
    tg = summary.get("targets") or []
    if tg:
        lines.append("### Targets")
        lines.append("")
        lines.append("Each cell: the ratio of round trips per second, then (in parentheses) of "
                     "round trips per server CPU-second, and the verdict on the first; *met per "
                     "CPU*: missed in round trips per second while a client core was (nearly) "
                     "full in either server's runs or the round trip's latency was the limit, "
                     "and met per server CPU-second.")
        lines.append("")
        cols = [(scen, conns) for scen, d in echo.items() for conns in d["by_conns"]]
        short = {"echo-small": "32 B", "echo-large": "16 KiB", "echo-deflate": "16 KiB deflate"}
        lines.append("| target | " + " | ".join("%s, %s conn." % (short.get(sc, sc), c)
                                                 for sc, c in cols) + " |")
        lines.append("| --- |" + " ---: |" * len(cols))
        for _, x, y, want in TARGETS:
            cells = []
            for sc, c in cols:
                t = next((t for t in tg if t.get("key") == [x, y, sc, c]), None)
                if t is None or t["met"] is None:
                    cells.append("pending" if t and t.get("pending") else "n/a")
                    continue
                cells.append("%s (%s) %s" % (
                    fmt_ratio(t.get("ratio")), fmt_ratio(t.get("ratio_per_cpu")),
                    "**met**" if t["met"] else "met per CPU" if t.get("met_per_cpu")
                    else "**missed**"))
            lines.append("| %s ≥ %.1f× %s | %s |" % (TITLE[x], want, TITLE[y],
                                                     " | ".join(cells)))
        lines.append("")
        for t in tg:
            if t.get("key") is None:
                lines.append("%s: %s, **%s**." % (t["target"], t["measured"],
                                                 "met" if t["met"] else "missed"))
                lines.append("")
    runs = [r for d in echo.values() for c in d["by_conns"].values()
            for s in c["servers"].values() for r in s.get("runs", []) if r.get("server_core")]
    if runs:
        def spread(core, key):
            xs = [r[core][key] for r in runs if r[core].get(key) is not None]
            return "%.0f %% (max %.0f %%)" % (100 * benchlib.median(xs), 100 * max(xs)) \
                if xs else "–"
        over = sum(1 for r in runs if r.get("disturbed"))
        lines.append(
            "How the two cores were shared during the measured echo windows (`/proc/stat`; "
            "medians over the runs): the servers' core lent %s to other processes and %s to "
            "the hypervisor (steal), and spent %s in interrupts; the client core lent %s to "
            "other processes. A run where others or steal took more than %.0f %% of a core "
            "was done again up to %d time%s, keeping the least disturbed attempt: %d of %d "
            "runs kept were still over that." % (
                spread("server_core", "other"), spread("server_core", "steal"),
                spread("server_core", "irq"), spread("client_core", "other"),
                100 * a["disturb_limit"], a["retries"], "" if a["retries"] == 1 else "s",
                over, len(runs)))
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
    lines.append("Servers, as started (`$PORT` a free port, `$TMP` the run's temp folder, "
                 "holding a private copy of the plugins and Kore's module built with `kodev "
                 "flavor prod && kodev build` from a copy of `bench/ws/kore/`), and the load:")
    lines.append("")
    lines.append("```sh")
    for name, cmd in summary["commands"].items():
        lines.append("# %s" % name)
        lines.append(cmd)
    lines.append("```")
    return "\n".join(lines) + "\n"


# ---- charts and docs ----------------------------------------------------------------

def draw_charts(outdir):
    """ws_echo.png and ws_broadcast_idle.png from summary.json with
    bench/charts.py, here or in /usr/bin/python3."""
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
    import charts
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    charts.websockets(charts._plt(), summary, outdir)
    return True


def section_text(summary_text):
    """The section for docs/benchmarks.md: the summary, then the notes."""
    text = summary_text.rstrip("\n") + "\n"
    if os.path.exists(NOTES):
        with open(NOTES) as f:
            text += "\n" + f.read().rstrip("\n") + "\n"
    return text


def splice_docs(docs, text):
    """Replaces docs' "## WebSockets" section (up to the next "## " heading)
    with text, or appends it."""
    benchlib.splice_section(docs, SECTION_TITLE, text)


# ---- main ------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Scenarios: " + " ".join(ALL_SCENARIOS))
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    ap.add_argument("--runs", type=int, default=5, help="rotations (5)")
    ap.add_argument("--duration", type=float, default=10, help="measured s per echo run (10)")
    ap.add_argument("--warmup", type=float, default=2, help="s of echo before each run (2)")
    ap.add_argument("--conns", default="1,64,1000", help="echo connection counts (1,64,1000)")
    ap.add_argument("--small", type=int, default=32, help="small message bytes (32)")
    ap.add_argument("--large", type=int, default=16384, help="large message bytes (16384)")
    ap.add_argument("--broadcast-conns", type=int, default=10000)
    ap.add_argument("--broadcast-rounds", type=int, default=5)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--idle-runs", type=int, default=3)
    ap.add_argument("--idle-settle", type=float, default=2.0)
    ap.add_argument("--servers", default=",".join(ALL_SERVERS),
                    help="comma-separated subset of %s" % ",".join(ALL_SERVERS))
    ap.add_argument("--disturb-limit", type=float, default=0.15)
    ap.add_argument("--retries", type=int, default=1,
                    help="times a disturbed echo run is done again (1)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--src", help="local addresses for wsload (--src), e.g. 127.0.0.2,127.0.0.3")
    ap.add_argument("--quick", action="store_true",
                    help="--runs 1 --duration 2 --warmup 1 --idle-runs 1 --broadcast-rounds 2 "
                         "--retries 0")
    ap.add_argument("--quiet-wait", type=float, default=600,
                    help="s to wait for other benchmarks to end before each run (600; 0: no)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree: evicorn, plugins/, bench/ws/wsload, python/ (build)")
    ap.add_argument("--venv", help="the venv of the Python servers (<build>/venv-ws)")
    ap.add_argument("--docs", action="store_true",
                    help="put the section into docs/benchmarks.md and the charts into docs/img")
    ap.add_argument("--report", metavar="RESULTS_DIR",
                    help="measure nothing: write RESULTS_DIR's summary.md and charts again "
                         "from its summary.json (with --docs: and the docs)")
    ap.add_argument("--chart", metavar="RESULTS_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 2, 1
        args.idle_runs, args.broadcast_rounds, args.retries = 1, 2, 0
    args.build = os.path.abspath(args.build)
    args.venv = os.path.abspath(args.venv or os.path.join(args.build, "venv-ws"))
    args.conns = [int(x) for x in args.conns.split(",") if x]
    scens = []
    for s in args.scenarios:
        if s not in ALL_SCENARIOS:
            ap.error("unknown scenario %r (known: %s)" % (s, " ".join(ALL_SCENARIOS)))
        scens.append(s)
    args.scenarios = [s for s in ALL_SCENARIOS if s in scens] or list(ALL_SCENARIOS)
    args.servers = [s for s in args.servers.split(",") if s]
    for s in args.servers:
        if s not in ALL_SERVERS:
            ap.error("unknown server %r" % s)
    if "evicorn" not in args.servers:
        args.servers.insert(0, "evicorn")
    args.servers = [s for s in ALL_SERVERS if s in args.servers]
    return args


def main():
    args = parse_args()
    if args.chart:
        sys.exit(0 if draw_charts(os.path.abspath(args.chart)) else 1)
    if args.report:
        sys.exit(report_again(os.path.abspath(args.report), args.docs))
    benchlib.exit_on_signals()
    if not shutil.which("taskset"):
        sys.exit("bench/ws/run.py: taskset is not installed (util-linux)")
    ncpu = os.cpu_count() or 1
    if max(args.server_cpu, args.client_cpu) >= ncpu:
        sys.exit("bench/ws/run.py: need CPUs %d and %d (have %d)" % (
            args.server_cpu, args.client_cpu, ncpu))
    need = max(args.idle_conns, args.broadcast_conns + 1, max(args.conns)) + 256
    limit = benchlib.raise_nofile(need)
    if limit < need:
        log("warning: RLIMIT_NOFILE is %d; %d connections need about %d (servers inherit it)"
            % (limit, need - 256, need))
    evicorn_bin = os.path.join(args.build, "evicorn")
    wsload_bin = os.path.join(args.build, "bench", "ws", "wsload")
    for p in (evicorn_bin, wsload_bin, os.path.join(args.build, "plugins", "chat.so"),
              os.path.join(args.build, "plugins", "hello.so")):
        if not os.path.exists(p):
            sys.exit("bench/ws/run.py: no %s; build first: cmake -S . -B %s -DCMAKE_BUILD_TYPE="
                     "Release && cmake --build %s -j2" % (rel(p), rel(args.build),
                                                          rel(args.build)))

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    for d in ("logs", "runs"):
        os.makedirs(os.path.join(outdir, d))
    names = list(args.servers)
    py_needed = any(n in names for n in ("uvicorn", "granian", "bridge"))
    vpy = env = None
    versions, evicorn_version, gflags = {}, None, set()
    if py_needed:
        vpy = ensure_venv(args.venv, os.path.join(outdir, "logs", "venv.log"))
        env = pys.server_env(args.venv, args.build)
        versions = pip_versions(vpy, env)
        if "granian" in names:
            gflags = granian_flags(vpy, env)
        if "bridge" in names:
            evicorn_version = pys.check_evicorn(vpy, env, args.build)
    benchlib.pin_self(args.client_cpu)
    tmp = tempfile.mkdtemp(prefix="evicorn-ws-")
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    os.chmod(tmp, 0o700)
    os.chmod(plugins, 0o700)  # the server refuses plugin folders others can write
    for so in ("chat.so", "hello.so"):
        shutil.copy2(os.path.join(args.build, "plugins", so), plugins)
    command = " ".join(["python3", rel(os.path.abspath(__file__))] +
                       [a.replace(ROOT + "/", "") for a in sys.argv[1:]])
    notes = []
    ctx = {"args": args, "vpy": vpy, "env": env, "venv": args.venv, "outdir": outdir,
           "gflags": gflags, "tmp": tmp, "plugins": plugins, "evicorn_bin": evicorn_bin,
           "wsload": wsload_bin, "commands": {}, "notes": notes}
    summary = {
        "stamp": stamp, "command": command,
        "args": dict(vars(args)), "versions": versions, "evicorn_version": evicorn_version,
        "evicorn": pys.evicorn_build_info(args.build), "kore": pys.deb_version("kore"),
        "machine": machine(), "servers": {}, "commands": ctx["commands"], "notes": notes,
    }
    log("scenarios: %s; servers: %s; %d run(s), echo %g s (+%g s warm-up) over %s connections"
        % (" ".join(args.scenarios), " ".join(names), args.runs, args.duration, args.warmup,
           "/".join(map(str, args.conns))))
    servers = []
    try:
        benchlib.wait_quiet(args.quiet_wait)
        echo_scens = [s for s in args.scenarios if s in ECHO]
        if echo_scens or "broadcast" in args.scenarios:
            for n in names:
                if echo_scens or n in BROADCAST_SERVERS:
                    servers.append(start_server(n, ctx, args))
            for s in servers:
                summary["servers"][s.name] = {"status": s.status, "note": s.note}
            if echo_scens:
                summary["echo"] = run_echo(ctx, servers, echo_scens)
            if "broadcast" in args.scenarios:
                summary["broadcast"] = run_broadcast(ctx, servers)
            for s in servers:
                check_pinning(s, args.server_cpu)
                if s.status == "ok" and s.proc is not None and s.proc.poll() is not None:
                    notes.append("%s exited with %d during the run (see logs/%s.log)" % (
                        s.name, s.proc.returncode, s.name))
                stop(s)
        if "idle" in args.scenarios:
            idle_names = [n for n in names if summary["servers"].get(n, {}).get("status")
                          in (None, "ok")]
            for n in names:
                if n not in idle_names:
                    summary["servers"].setdefault(n, {"status": "?", "note": None})
            summary["idle"] = run_idle(ctx, idle_names)
            for n in names:
                if n not in idle_names:
                    st = summary["servers"][n]
                    summary["idle"]["servers"][n] = {"status": st["status"],
                                                     "note": st["note"], "runs": []}
            for key, e in summary["idle"]["servers"].items():
                base = key.replace("-http", "")
                st = summary["servers"].setdefault(base, {"status": e["status"],
                                                          "note": e["note"]})
                if e["status"] == "pending":
                    st.update(status="pending", note=e["note"])
    finally:
        for s in list(LIVE):
            stop(s)
        shutil.rmtree(tmp, ignore_errors=True)
    ctx["commands"]["wsload (echo, shown for 64 connections of 32 bytes)"] = (
        "taskset -c %d %s -c 64 -s %d -d %g -w %g -t 120 --events ws://127.0.0.1:$PORT/ws/echo"
        % (args.client_cpu, rel(wsload_bin), args.small, args.duration, args.warmup))
    ctx["commands"]["wsload (broadcast)"] = (
        "taskset -c %d %s -m broadcast -c %d -r %d -s %d -t 120 ws://127.0.0.1:$PORT/ws/chat/bench"
        % (args.client_cpu, rel(wsload_bin), args.broadcast_conns, args.broadcast_rounds,
           args.small))
    ctx["commands"]["wsload (idle)"] = (
        "taskset -c %d %s -m idle -c %d -t 300 [--http] ws://127.0.0.1:$PORT/ws/echo  "
        "# --http: /plaintext" % (args.client_cpu, rel(wsload_bin), args.idle_conns))
    allsrv = [s for s in servers]
    summary["pinning"] = {
        "cpu": args.server_cpu, "checks": sum(s.pin_checks for s in allsrv),
        "unpinned": ["%s: %s" % (s.name, u) for s in allsrv for u in s.unpinned]}
    if summary["pinning"]["unpinned"]:
        notes.append("threads not pinned to CPU %d: %s" % (
            args.server_cpu, "; ".join(summary["pinning"]["unpinned"])))
    summary["targets"] = targets(summary)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(outdir, "commands.txt"), "w") as f:
        f.write("$ %s\n" % command)
        for k, c in ctx["commands"].items():
            f.write("%s: %s\n" % (k, c))
    md = write_outputs(outdir, summary, args.docs)
    print()
    print(md)
    print("results in %s" % rel(outdir))


def write_outputs(outdir, summary, docs_too):
    """summary.md and the charts of a results folder; with docs_too, the
    section of docs/benchmarks.md and docs/img/ws_*.png. Returns the
    Markdown."""
    md = summary_md(summary)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(md)
    drawn = draw_charts(outdir)
    if docs_too:
        docs = os.path.join(ROOT, "docs", "benchmarks.md")
        splice_docs(docs, section_text(md))
        if drawn:
            for png in ("ws_echo.png", "ws_broadcast_idle.png"):
                if os.path.exists(os.path.join(outdir, png)):
                    shutil.copy2(os.path.join(outdir, png), os.path.join(ROOT, "docs", "img",
                                                                         png))
        log("wrote the %s section of %s" % (SECTION_TITLE, rel(docs)))
    return md


def report_again(outdir, docs_too):
    with open(os.path.join(outdir, "summary.json")) as f:
        summary = json.load(f)
    # The medians, limits and ratios again from the runs kept.
    for d in summary.get("echo", {}).values():
        for c in d["by_conns"].values():
            for name, s in c["servers"].items():
                if s.get("status") == "ok":
                    c["servers"][name] = summarize_echo(name, "ok", None, s["runs"], d["deflate"])
            c["ratios"] = echo_ratios(c["servers"])
    summary["targets"] = targets(summary)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    write_outputs(outdir, summary, docs_too)
    print("rewrote %s/summary.md" % rel(outdir))
    return 0


if __name__ == "__main__":
    main()
