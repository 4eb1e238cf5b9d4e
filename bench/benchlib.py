"""Shared helpers for the Python benchmarks in bench/: start one evicorn (or a
uvicorn/hypercorn peer, or any server command) pinned to a CPU, find its
worker, read its RSS, stop it by PID; free ports, medians, and wrk's output
parsed.

Only Debian's /usr/bin/python3 and its standard library are needed."""
import os
import re
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


def tree_cpu_ticks(pid):
    """utime+stime (clock ticks, all threads) of pid and its descendants that
    are alive now; divide by os.sysconf("SC_CLK_TCK") for seconds."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


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


def other_benchmarks(patterns=("bench/run", "bench/asgi/run.py", "bench/pyservers/run.py",
                               "hot_reload.py", "async_sleep.py")):
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
