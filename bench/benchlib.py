"""Shared helpers for the Python benchmarks in bench/: start one evicorn (or a
uvicorn/hypercorn peer, or any server command) pinned to a CPU, find its
worker, read its RSS and CPU time, pin a process tree, stop it by PID; free
ports, medians, wrk's output parsed, how a core was shared; the pinned venvs
of the Python peers, the machine's and the build's facts for a summary, and
a section of docs/benchmarks.md replaced in place.

Only Debian's /usr/bin/python3 and its standard library are needed."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pin_self(cpu):
    """Pins this process (the load generator) to one CPU, when it exists."""
    if cpu is None or cpu < 0:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        print(f"warning: cannot pin to CPU {cpu}: {e}", file=sys.stderr)


def taskset(cpu, cmd):
    """cmd run pinned to one CPU with taskset; unpinned when cpu is None or
    negative."""
    if cpu is None or cpu < 0:
        return list(cmd)
    return ["taskset", "-c", str(cpu)] + list(cmd)


def raise_nofile(need):
    """Raises RLIMIT_NOFILE as far as the hard limit allows; returns the soft
    limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, soft)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def children(pid):
    """Direct children of pid, from /proc (all of its threads)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def vmrss_kib(pid):
    """VmRSS of pid in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def http_get(port, path, timeout=5.0):
    """One GET on a fresh connection: (status, body bytes). Raises OSError."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise OSError(f"not an HTTP response: {data[:60]!r}")
    return int(head.split()[1]), body


# wrk's time units, as seconds and as milliseconds.
WRK_TIME_UNITS = {
    "s": {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0},
    "ms": {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0},
}


def parse_wrk_time(text, unit="s"):
    """A wrk duration such as "238.00us" in `unit` (s or ms); None if it is
    not one."""
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * WRK_TIME_UNITS[unit][m.group(2)] if m else None


def parse_wrk(text, unit="s"):
    """One wrk --latency output: req/s, latency percentiles p50, p75, p90 and
    p99 (in `unit`, s or ms), requests, socket errors and non-2xx answers.
    What wrk did not print is None (errors: 0)."""
    r = {}
    m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    r["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", text, re.M)
        r[f"p{pct}"] = parse_wrk_time(m.group(1), unit) if m else None
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+)", text, re.M)
    r["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    return r


WRK_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def parse_wrk_read_bytes(text):
    """The bytes wrk read in a run ("... requests in 3.00s, 1.63GB read"),
    from its binary units; None if it did not say. Divided by the requests
    it tells what one response weighed: a server answering small errors
    fast shows it."""
    m = re.search(r"requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read", text)
    return float(m.group(1)) * WRK_SIZE_UNITS[m.group(2)] if m else None


class PinnedServer:
    """One server process, started under `taskset -c cpu` (unless cpu is None
    or negative) with its output appended to log_path, and always stopped by
    PID: the process group of a server started in its own session
    (new_session), else SIGTERM to the process. Use as a context manager.
    .command is the command line it runs (or will run), .port its port, and
    .worker the process holding the connections once wait_ready returned."""

    def __init__(self, name, argv, cpu=0, port=None, log_path=None, cwd=None, env=None,
                 new_session=False):
        self.name = name
        self.argv = list(argv)
        self.cpu = cpu
        self.port = port
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.new_session = new_session
        self.proc = None
        self.worker = None
        self._log = None

    @property
    def command(self):
        return taskset(self.cpu, self.argv)

    def start(self):
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, start_new_session=self.new_session)
        return self

    def wait_ready(self, path, timeout=30.0, want_status=200):
        """Waits until GET path answers want_status."""
        self._wait_answering(path, timeout, want_status, poll=0.1)
        self.worker = self.proc.pid  # taskset execs the server: one process
        return self

    def _wait_answering(self, path, timeout, want_status, poll):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start"
                                   + self._see_log())
            try:
                status, body = http_get(self.port, path, timeout=5.0)
                if status == want_status:
                    break
                last = f"status {status}: {body[:80]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(poll)
        else:
            raise RuntimeError(f"{self.name} not ready on {path} after {timeout}s ({last})"
                               + self._see_log())

    def _see_log(self):
        return f"; see {self.log_path}" if self.log_path else ""

    def stop(self):
        if self.proc is None:
            return
        if self.new_session:
            self._stop_group()
        else:
            self._stop_process()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self.proc = None

    def _stop_group(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass

    def _stop_process(self):
        kids = children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for k in kids:  # a worker left behind by a killed master
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Evicorn(PinnedServer):
    """One evicorn master (+ its worker), started pinned to a CPU and always
    stopped by PID."""

    def __init__(self, binary, plugins, cpu=0, port=None, log_path=None, extra=()):
        port = port or free_port()
        super().__init__("evicorn", [binary, "--host", "127.0.0.1", "--port", str(port),
                                     "--plugins", plugins, "--no-access-log", "--workers", "1",
                                     "--log-level", "warning"] + list(extra),
                         cpu=cpu, port=port, log_path=log_path)
        self.binary = binary
        self.plugins = plugins
        self.extra = list(extra)

    def wait_ready(self, path, timeout=15.0, want_status=200):
        """Waits until GET path answers want_status; then finds the worker."""
        self._wait_answering(path, timeout, want_status, poll=0.05)
        kids = children(self.proc.pid)
        if len(kids) != 1:
            raise RuntimeError(f"expected one worker under master {self.proc.pid}, found {kids}")
        self.worker = kids[0]
        return self


class GroupServer(PinnedServer):
    """A PinnedServer in its own session (process group), stopped through
    the group, and any member that outlived the leader (a master's worker)
    with it. .status is "ok" until the caller marks it otherwise (with a
    .note saying why)."""

    def __init__(self, name, argv, cwd=None, env=None, cpu=0, log_path=None, port=None):
        super().__init__(name, argv, cpu=cpu, port=port, log_path=log_path, cwd=cwd, env=env,
                         new_session=True)
        self.status, self.note = "ok", None

    def stop(self):
        pgid = self.proc.pid if self.proc is not None else None
        try:
            super().stop()
        finally:
            if pgid is not None:
                kill_group_leftovers(pgid)


def check_pinning(name, pid, cpu, record, log=None):
    """Every thread of pid's processes on `cpu` alone? Counts the check in
    record (checks, max_threads, and unpinned: what was elsewhere, as
    "cpus: pid/tid, ..."), warns through log (a function of one string);
    returns True when all were on `cpu`."""
    aff = tree_affinity(pid)
    record["checks"] = record.get("checks", 0) + 1
    record["max_threads"] = max(record.get("max_threads", 0), sum(len(v) for v in aff.values()))
    bad = {k: v for k, v in aff.items() if k != str(cpu)}
    if not bad:
        return True
    desc = "; ".join("%s: %s" % (k, ", ".join("%d/%d" % t for t in v[:6]))
                     for k, v in bad.items())
    record.setdefault("unpinned", [])
    if desc not in record["unpinned"]:
        record["unpinned"].append(desc)
    (log or (lambda m: print(m, file=sys.stderr)))(
        "warning: %s has threads not on CPU %s (pid/tid): %s" % (name, cpu, desc))
    return False


def exit_on_signals():
    """SIGTERM/SIGINT/SIGHUP raise SystemExit, so `with Evicorn(...)` blocks
    and finally clauses stop the servers."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, handler)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


class ResponseParser:
    """Incremental HTTP/1.1 response parser for one connection: feed() bytes,
    get back the responses completed so far as (status, body, close) tuples.
    Knows Content-Length and chunked bodies; a response with neither and no
    1xx/204/304 status is taken to end at EOF (feed(b"") signals EOF)."""

    def __init__(self):
        self.buf = b""
        self.eof_body = None  # (status,) while reading an until-EOF body

    def feed(self, data):
        out = []
        if self.eof_body is not None:
            if data:
                self.buf += data
                return out
            out.append((self.eof_body, self.buf, True))
            self.buf, self.eof_body = b"", None
            return out
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            head = self.buf[:end].decode("latin-1").split("\r\n")
            try:
                status = int(head[0].split()[1])
            except (IndexError, ValueError):
                raise ValueError(f"bad status line {head[0]!r}")
            length, chunked, close = None, False, False
            for line in head[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection" and "close" in value:
                    close = True
            rest = self.buf[end + 4:]
            if status < 200 or status in (204, 304):
                body, used = b"", 0
            elif chunked:
                body, used = self._chunked(rest)
                if body is None:
                    return out
            elif length is not None:
                if len(rest) < length:
                    return out
                body, used = rest[:length], length
            else:
                self.buf, self.eof_body = rest, status
                return out
            self.buf = rest[used:]
            if status >= 200:
                out.append((status, body, close))

    @staticmethod
    def _chunked(data):
        body, pos = b"", 0
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return None, 0
            size = int(data[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                end = data.find(b"\r\n\r\n", pos - 2)
                if end < 0:
                    return None, 0
                return body, end + 4
            if len(data) < pos + size + 2:
                return None, 0
            body += data[pos:pos + size]
            pos += size + 2


class Peer(PinnedServer):
    """uvicorn or hypercorn (one worker, uvloop) serving bench/peers/
    fastapi_app.py, started pinned to a CPU in its own process group and
    always stopped by PID. The same interface as Evicorn: start(),
    wait_ready(path), .port, .worker (the process holding the connections),
    .command, stop()."""

    KINDS = ("uvicorn", "hypercorn")

    def __init__(self, kind, cpu=0, port=None, log_path=None):
        if kind not in self.KINDS:
            raise ValueError(f"unknown peer {kind}")
        port = port or free_port()
        py = "/usr/bin/python3"
        if kind == "uvicorn":
            argv = [py, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port",
                    str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                    "--workers", "1", "--log-level", "warning", "--backlog", "2048",
                    "--timeout-keep-alive", "600"]
        else:
            argv = [py, "-m", "hypercorn", "fastapi_app:app", "--bind", f"127.0.0.1:{port}",
                    "--workers", "1", "--worker-class", "uvloop", "--backlog", "2048",
                    "--keep-alive", "600"]
        super().__init__(kind, argv, cpu=cpu, port=port, log_path=log_path,
                         cwd=os.path.join(ROOT, "bench", "peers"), new_session=True)
        self.kind = kind


def tree_pids(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def tree_rss_kib(pid):
    """Summed VmRSS of pid and its descendants (KiB); kernel threads and
    processes that vanished count 0."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += vmrss_kib(p)
        except (OSError, RuntimeError):
            pass
    return total


def tree_cpu_ticks(pid, reaped=False):
    """utime+stime (clock ticks, all threads) of pid and its descendants that
    are alive now; divide by os.sysconf("SC_CLK_TCK") for seconds. With
    reaped, pid's cutime+cstime too: the time of the children it has waited
    for, so a process that forks short-lived children (PostgreSQL's
    postmaster and its backends) is counted whole across a before/after
    pair even when children exit in between."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            if reaped and p == pid:
                total += int(fields[13]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            pass
    return total


def pin_tree(pid, cpus):
    """Sets the CPU affinity of every thread of pid and its descendants to
    cpus (a set); children they fork later inherit it. Returns the number
    of threads set."""
    n = 0
    for p in tree_pids(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                os.sched_setaffinity(int(t), cpus)
                n += 1
            except OSError:
                pass
    return n


def tree_affinity(pid):
    """{Cpus_allowed_list: [(pid, tid), ...]} over every thread of pid and its
    descendants: what a server pinned with taskset should show as one key."""
    out = {}
    for p in tree_pids(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith("Cpus_allowed_list:"):
                            out.setdefault(line.split(":", 1)[1].strip(), []).append(
                                (p, int(t)))
                            break
            except OSError:
                pass
    return out


def cpu_times(cpu):
    """One CPU's clock ticks since boot by kind, from /proc/stat: user, nice,
    system, idle, iowait, irq, softirq, steal (guest time is in user)."""
    keys = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return dict(zip(keys, v + [0] * (len(keys) - len(v))))
    return dict.fromkeys(keys, 0)


def core_shares(c0, c1, own_ticks):
    """How one core was shared between two cpu_times() readings: its
    owner's share (own_ticks: the CPU time of the process that core was
    given to), what other processes took (user+nice+system that was not the
    owner's), interrupts (irq+softirq: mostly loopback traffic), what the
    hypervisor took (steal) and idle, each a fraction of the core's time."""
    d = {k: c1[k] - c0[k] for k in c0}
    total = sum(d.values())

    def share(ticks):
        return round(max(0.0, ticks / total), 4) if total else None
    return {"owner": share(own_ticks),
            "other": share(d["user"] + d["nice"] + d["system"] - own_ticks),
            "irq": share(d["irq"] + d["softirq"]), "steal": share(d["steal"]),
            "idle": share(d["idle"] + d["iowait"])}


def other_benchmarks(patterns=("bench/run", "bench/asgi/run.py", "bench/pyservers/run.py",
                               "bench/ws/run.py", "bench/db/run.py", "bench/fetch/run.py",
                               "bench/static/run.py",
                               "hot_reload.py",
                               "async_sleep.py")):
    """Processes of other benchmarks on this machine (a wrk, or a command line
    naming one of patterns), not this process nor its children."""
    me = os.getpid()
    mine = set(tree_pids(me))
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in mine:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv:
            continue
        cmd = " ".join(argv)
        if os.path.basename(argv[0]) == "wrk" or any(
                p in a for a in argv[:3] for p in patterns):
            found.append(f"{pid} {cmd[:80]}")
    return found


def wait_quiet(limit, log=sys.stderr):
    """Waits up to `limit` seconds until other_benchmarks() finds none;
    True if quiet, False if it gave up (a warning is printed)."""
    deadline = time.monotonic() + limit
    warned = False
    while True:
        busy = other_benchmarks()
        if not busy:
            return True
        if time.monotonic() > deadline:
            if limit > 0:
                print(f"warning: measuring while other benchmarks run: {busy}", file=log)
            return False
        if not warned:
            print(f"waiting up to {limit:.0f}s for other benchmarks to finish: {busy}", file=log)
            warned = True
        time.sleep(2)


# ---- the venvs of the Python peers, and what the summaries say about the machine

def rel(path):
    """path relative to the repository when it is inside it."""
    return os.path.relpath(path, ROOT) if os.path.isabs(path) and path.startswith(ROOT) else path


def clean_env():
    """os.environ without the variables that would point a Python at another
    venv or module folder."""
    env = dict(os.environ)
    for k in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(k, None)
    return env


def venv_python(venv):
    return os.path.join(venv, "bin", "python")


def base_python(prog="bench"):
    """(the python3 first on PATH, the interpreter it really runs (a pyenv
    shim runs another), its version); exits naming prog when there is none."""
    py = shutil.which("python3")
    if not py:
        sys.exit("%s: no python3 on PATH" % prog)
    out = subprocess.run([py, "-c", "import sys, platform; print(sys.executable); "
                          "print(platform.python_version())"],
                         capture_output=True, text=True, env=clean_env())
    if out.returncode != 0:
        sys.exit("%s: %s does not run: %s" % (prog, py, out.stderr.strip()))
    exe, version = out.stdout.split()
    return py, exe, version


def requirement_files(requirements):
    """requirements and the files it includes with -r, recursively."""
    out, todo = [], [requirements]
    while todo:
        path = todo.pop(0)
        out.append(path)
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*-r\s+(\S+)", line)
                if m:
                    todo.append(os.path.normpath(os.path.join(os.path.dirname(path),
                                                              m.group(1))))
    return out


VENV_HASH_FILE = ".bench-requirements.sha256"


def ensure_venv(venv, requirements, imports, logpath, prog="bench", log=None):
    """A venv at `venv` of the python3 first on PATH with `requirements`
    pip-installed (pinned); made again only when a requirement file (or one
    it includes with -r) or the interpreter changed (a hash file in the
    venv), or when `imports` (a comma-separated module list) do not import.
    Returns the venv's python; exits naming prog and the log on failure."""
    import hashlib

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    py, exe, version = base_python(prog)
    h = hashlib.sha256()
    for path in requirement_files(requirements):
        with open(path, "rb") as f:
            h.update(f.read())
    h.update(("\n%s %s\n" % (exe, version)).encode())
    digest = h.hexdigest()
    stamp = os.path.join(venv, VENV_HASH_FILE)
    vpy = venv_python(venv)
    try:
        with open(stamp) as f:
            same = f.read().strip() == digest
    except OSError:
        same = False
    if same and subprocess.run([vpy, "-c", "import " + imports], env=clean_env(),
                               capture_output=True).returncode == 0:
        log("venv %s is up to date (Python %s, %s)" % (rel(venv), version, rel(requirements)))
        return vpy
    log("making %s from %s (Python %s) and pip install -r %s (log: %s)" % (
        rel(venv), exe, version, rel(requirements), rel(logpath)))
    with open(logpath, "ab") as logf:
        for cmd in ([py, "-m", "venv", "--clear", venv],
                    [vpy, "-m", "pip", "install", "--disable-pip-version-check", "-r",
                     requirements]):
            logf.write(("$ %s\n" % " ".join(cmd)).encode())
            logf.flush()
            if subprocess.run(cmd, stdout=logf, stderr=logf, env=clean_env()).returncode != 0:
                sys.exit("%s: `%s` failed; see %s" % (prog, " ".join(cmd), rel(logpath)))
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return vpy


def kill_group_leftovers(pgid):
    """Members of a stopped server's process group that outlived its leader
    (a worker of a killed master): SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def deb_version(pkg):
    """The installed version of a Debian package, or None."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                              capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


def evicorn_build_info(build):
    """The build type (and Python, sanitizers) of a build tree, and the
    repository's commit (marked when the work tree has changes)."""
    info = {}
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                m = re.match(r"(CMAKE_BUILD_TYPE|EVICORN_PYTHON|EVICORN_SANITIZE):\w+=(.*)", line)
                if m:
                    info[m.group(1)] = m.group(2).strip()
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--"],
                               capture_output=True).returncode != 0
        info["commit"] = commit + (" with uncommitted changes" if dirty else "")
    except OSError:
        pass
    return info


def machine():
    """CPU count and model, hypervisor, kernel, OS and memory."""
    import platform

    info = {"cpus": os.cpu_count(), "kernel": platform.release()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for key, name in (("Model name", "cpu_model"), ("Hypervisor vendor", "hypervisor")):
            m = re.search(r"^%s:\s*(.+)$" % key, out, re.M)
            if m:
                info[name] = m.group(1).strip()
    except OSError:
        pass
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            info["memory"] = "%.0f GiB" % (kib / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    return info


def splice_section(docs, title, text):
    """Replaces the section of the Markdown file docs whose heading line
    starts with title (up to the next heading of the same level) with text,
    or appends text when there is no such section."""
    level = title.split(" ", 1)[0] + " "
    with open(docs) as f:
        lines = f.read().rstrip("\n").split("\n")
    start = next((i for i, l in enumerate(lines) if l.startswith(title)), None)
    if start is None:
        new = lines + [""] + text.rstrip("\n").split("\n")
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(level)),
                   len(lines))
        new = lines[:start] + text.rstrip("\n").split("\n") + ([""] + lines[end:]
                                                              if end < len(lines) else [])
    with open(docs, "w") as f:
        f.write("\n".join(new) + "\n")
