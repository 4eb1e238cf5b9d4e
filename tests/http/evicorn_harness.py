"""Black-box harness for evicorn: start the real binary, talk raw HTTP/1.1.

Everything here has a timeout: no helper can block a test forever.
"""
import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.normpath(os.path.join(HERE, "..", "..", "build", "evicorn"))

NOT_FOUND_BODY = b'{"detail":"Not Found"}'

READY_RE = re.compile(r"evicorn running on (\S+) \(workers: (\d+), pid (\d+)\)")


def time_scale():
    """EVICORN_TIME_SCALE (default 1): a multiplier for the harness's own
    waits, for servers run under a slow wrapper such as valgrind."""
    try:
        scale = float(os.environ.get("EVICORN_TIME_SCALE", "1"))
    except ValueError:
        return 1.0
    return scale if scale >= 1.0 else 1.0


def env_wrapper():
    """EVICORN_WRAPPER: a command the server is started under (e.g.
    "valgrind --trace-children=yes ..."); it must exec the server in the same
    process, as valgrind and prlimit do, so the PIDs stay the server's."""
    return shlex.split(os.environ.get("EVICORN_WRAPPER", ""))


SOCK_TIMEOUT = 5.0 * time_scale()


def python_module_built():
    """Whether the build has evicorn's Python module (build/python/evicorn),
    which serves an APP inside the interpreter the server picks."""
    build = os.path.dirname(os.path.abspath(evicorn_bin()))
    return bool(glob.glob(os.path.join(build, "python", "evicorn", "_core*.so")))


def evicorn_bin():
    path = os.environ.get("EVICORN_BIN") or DEFAULT_BIN
    if not os.path.isfile(path):
        raise RuntimeError("evicorn binary not found at %s (set EVICORN_BIN)" % path)
    return path


# --------------------------------------------------------------------------
# Process helpers


def children_of(pid):
    """PIDs of the direct children of `pid` (via /proc, falling back to ps)."""
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
        return sorted(set(kids))
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True,
                             text=True, timeout=5).stdout
        return sorted(int(x) for x in out.split())
    except (OSError, subprocess.SubprocessError):
        return []


def pid_alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


class LogCapture:
    """Collects the lines of one pipe in a background thread."""

    def __init__(self, pipe, name):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def wait_for(self, regex, timeout, start=0):
        """First match of regex in lines[start:], waiting up to timeout
        (times EVICORN_TIME_SCALE); or None."""
        rx = re.compile(regex) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout * time_scale()
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(min(left, 0.1))

    def wait_for_lines(self, regex, n, timeout, start=0):
        """Waits until n lines of lines[start:] match regex (up to timeout
        times EVICORN_TIME_SCALE); returns the index after the n-th, or
        None. Lines are counted, not their texts: workers write the same
        line alike."""
        rx = re.compile(regex) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout * time_scale()
        with self.cond:
            i, found = start, 0
            while True:
                while i < len(self.lines):
                    found += bool(rx.search(self.lines[i]))
                    i += 1
                    if found == n:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(min(left, 0.1))

    def join(self, timeout=2.0):
        self.thread.join(timeout)


class Server:
    """The real evicorn binary, started on 127.0.0.1 with an ephemeral port.

    Use as a context manager (or call start()/stop()); stop() always runs the
    SIGTERM -> wait 10 s -> SIGKILL sequence by PID."""

    def __init__(self, *args, listen=None, pass_fds=(), ready_timeout=10.0, wrapper=(),
                 plugins=None, cwd=None):
        self.extra = [str(a) for a in args]
        self.cwd = cwd
        # A plugins folder the caller made (and removes); default: a fresh
        # private one, removed at stop.
        self.given_plugins = plugins
        # Commands that exec the server in the same process (prlimit, env),
        # outside EVICORN_WRAPPER so that the limits also bind the wrapper.
        self.wrapper = [str(a) for a in wrapper]
        self.listen = listen  # replaces --host/--port (e.g. ["--uds", path])
        self.pass_fds = tuple(pass_fds)
        self.ready_timeout = ready_timeout  # wait_for scales it
        self.proc = None
        self.plugins = None
        self.port = None
        self.address = None
        self.workers = None
        self.pid = None
        self.known_workers = set()
        self.returncode = None

    # ---- lifecycle

    def start(self):
        binary = evicorn_bin()
        self.plugins = self.given_plugins or tempfile.mkdtemp(prefix="evicorn-plugins-")
        listen = self.listen if self.listen is not None else ["--host", "127.0.0.1", "--port", "0"]
        argv = (self.wrapper + env_wrapper() + [binary] + listen + ["--plugins", self.plugins]
                + self.extra)
        self.argv = argv
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, pass_fds=self.pass_fds,
                                         start_new_session=True, cwd=self.cwd)
        except OSError:
            if not self.given_plugins:
                shutil.rmtree(self.plugins, ignore_errors=True)
            self.plugins = None
            raise
        self.pid = self.proc.pid
        self.stdout = LogCapture(self.proc.stdout, "stdout")
        self.stderr = LogCapture(self.proc.stderr, "stderr")
        m = self.stderr.wait_for(READY_RE, self.ready_timeout)
        if not m:
            self.stop()
            raise AssertionError("evicorn did not report 'running on' within %.0f s\n%s"
                                 % (self.ready_timeout, self.output()))
        self.address = m.group(1)
        self.workers = int(m.group(2))
        assert int(m.group(3)) == self.pid, m.group(0)
        pm = re.match(r"http://127\.0\.0\.1:(\d+)$", self.address)
        if pm:
            self.port = int(pm.group(1))
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def worker_pids(self):
        kids = children_of(self.pid)
        self.known_workers.update(kids)
        return kids

    def wait_workers(self, n, timeout=5.0, exclude=()):
        """Waits until the master has n live children not in exclude."""
        deadline = time.monotonic() + timeout
        while True:
            kids = [p for p in self.worker_pids() if p not in exclude and pid_alive(p)]
            if len(kids) == n:
                return kids
            if time.monotonic() > deadline:
                raise AssertionError("expected %d worker(s), found %r\n%s"
                                     % (n, kids, self.output()))
            time.sleep(0.02)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self):
        """SIGTERM the master, wait up to 10 s, then SIGKILL; reap by PID only."""
        if self.proc is None:
            return self.returncode
        try:
            self.worker_pids()
        except Exception:
            pass
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10 * time_scale())
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        # Workers the master left behind (it was killed, say): by PID only.
        for pid in self.known_workers:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.stdout.join()
        self.stderr.join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if self.plugins and not self.given_plugins:
            shutil.rmtree(self.plugins, ignore_errors=True)
        self.plugins = None
        return self.returncode

    # ---- logs

    def wait_for_log(self, regex, timeout=5.0, stream="stderr", start=0):
        cap = self.stderr if stream == "stderr" else self.stdout
        return cap.wait_for(regex, timeout, start)

    def wait_for_log_lines(self, regex, n, timeout=5.0, start=0):
        """The index after the n-th line from start matching regex, or None."""
        return self.stderr.wait_for_lines(regex, n, timeout, start)

    def wait_for_access_log(self, regex, timeout=5.0, start=0):
        return self.stdout.wait_for(regex, timeout, start)

    def output(self):
        out = "--- argv: %s\n--- stderr:\n%s\n--- stdout:\n%s" % (
            " ".join(getattr(self, "argv", [])),
            "\n".join(self.stderr.snapshot()) if self.proc else "",
            "\n".join(self.stdout.snapshot()) if self.proc else "")
        return out

    # ---- clients

    def connect(self, timeout=SOCK_TIMEOUT):
        return Conn.tcp(self.port, timeout)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)


# --------------------------------------------------------------------------
# Raw HTTP/1.1 client side


class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.raw = raw

    def header(self, name):
        """The single value of `name`; asserts it appears at most once."""
        vals = self.header_all(name)
        assert len(vals) <= 1, "header %s appears %d times: %r" % (name, len(vals), self.raw)
        return vals[0] if vals else None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.raw[:300])


class ConnClosed(Exception):
    pass


class Conn:
    """One client socket with a read buffer; every operation is bounded."""

    def __init__(self, sock, timeout=SOCK_TIMEOUT):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.reset = False
        self.got_bytes = False  # whether any byte came since the last send

    @classmethod
    def tcp(cls, port, timeout=SOCK_TIMEOUT):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        return cls(s, timeout)

    @classmethod
    def unix(cls, path, timeout=SOCK_TIMEOUT):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.got_bytes = False
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads more bytes into buf; raises ConnClosed at EOF/reset,
        socket.timeout at the deadline."""
        if self.eof:
            raise ConnClosed("connection closed" + (" (reset)" if self.reset else ""))
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = self.reset = True
            raise ConnClosed("connection reset")
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.eof = True
            raise ConnClosed("connection closed")
        self.got_bytes = True
        self.buf += data

    def _read_line(self, deadline, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("line too long: %r" % self.buf[:200])
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, head=False, timeout=None):
        """Reads one full response. head=True: a response to HEAD (no body).
        Raises ConnClosed if the connection closes before a complete one."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        status_line = self._read_line(deadline)
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", status_line)
        assert m, "bad status line %r" % status_line
        version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1")
        headers = []
        raw = status_line + b"\r\n"
        while True:
            line = self._read_line(deadline)
            raw += line + b"\r\n"
            if line == b"":
                break
            assert b":" in line, "bad header line %r" % line
            n, v = line.split(b":", 1)
            assert n == n.strip() and n, "bad header name %r" % line
            headers.append((n.decode("latin-1").lower(), v.strip(b" \t").decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", raw)
        if head or status in (204, 304) or 100 <= status < 200:
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", te
            body = b""
            while True:
                size_line = self._read_line(deadline)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._read_line(deadline) != b"":
                        pass
                    break
                body += self._read_exact(size, deadline)
                assert self._read_exact(2, deadline) == b"\r\n"
            resp.body = body
        elif cl is not None:
            resp.body = self._read_exact(int(cl), deadline)
        else:
            resp.body = self.read_until_close(max(0.0, deadline - time.monotonic()))
        resp.raw += resp.body
        return resp

    def read_until_close(self, timeout=None):
        """All remaining bytes until the peer closes; asserts it closes in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            try:
                self._fill(deadline)
            except ConnClosed:
                data, self.buf = self.buf, b""
                return data
            except socket.timeout:
                raise AssertionError("connection not closed within %.1f s (got %r)"
                                     % (timeout if timeout is not None else self.timeout,
                                        self.buf[:300]))

    def assert_closed(self, timeout=3.0, allow_data=False):
        """Asserts the server closes (EOF or reset) within timeout; by default
        also that no further bytes arrive before it does. Returns elapsed s."""
        t0 = time.monotonic()
        rest = self.read_until_close(timeout)
        if not allow_data:
            assert rest == b"", "unexpected bytes before close: %r" % rest[:500]
        return time.monotonic() - t0

    def assert_open(self, wait=0.3):
        """Asserts nothing arrives and the connection stays open for `wait` s."""
        try:
            self._fill(time.monotonic() + wait)
        except socket.timeout:
            return
        except ConnClosed as e:
            raise AssertionError("connection closed unexpectedly: %s" % e)
        raise AssertionError("unexpected bytes: %r" % self.buf[:300])

    def request(self, data, head=False, timeout=None):
        self.send(data)
        return self.read_response(head=head, timeout=timeout)


def get(path="/", host="127.0.0.1", extra="", version="HTTP/1.1"):
    """Bytes of a simple GET request."""
    return ("GET %s %s\r\nHost: %s\r\n%s\r\n" % (path, version, host, extra)).encode("latin-1")


def read_all_responses(conn, timeout=3.0, head=False):
    """Reads responses until the server closes; returns (responses, trailing bytes).
    Asserts the connection closes within timeout."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection not closed within %.1f s after %d response(s)"
                                 % (timeout, len(out)))
        if conn.buf == b"":
            try:
                conn._fill(deadline)
            except ConnClosed:
                return out, b""
            except socket.timeout:
                continue
        try:
            out.append(conn.read_response(head=head, timeout=left))
        except ConnClosed:
            rest, conn.buf = conn.buf, b""
            return out, rest
        except socket.timeout:
            raise AssertionError("connection neither closed nor answered within %.1f s "
                                 "(got %d responses, pending %r)" % (timeout, len(out), conn.buf[:300]))


def assert_not_found(resp):
    assert resp.status == 404, resp
    assert resp.reason == "Not Found", resp
    assert resp.body == NOT_FOUND_BODY, resp
    assert resp.header("content-type") == "application/json", resp
    assert resp.header("content-length") == str(len(NOT_FOUND_BODY)), resp


def run_cli(*args, timeout=10.0, **kw):
    """Runs evicorn to completion (for flags that exit)."""
    return subprocess.run(env_wrapper() + [evicorn_bin()] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout * time_scale(),
                          stdin=subprocess.DEVNULL, **kw)


class KeepAliveLoad:
    """Threads sending one request in a loop on keep-alive connections, one
    thread per connection, counting failures: a connection error, a status
    other than 200, or (with body) a body other than `body`. After a failure
    the thread closes its connection and goes on on a new one.

    conns: how many connections the threads open themselves, or a list of
    (conn, tag) pairs already open, a tag saying which one it is (such as the
    worker that holds it); connections a thread opens are tagged None.
    Under lock, the threads record failures as (time, tag, repr of the
    response or error), successes as (time, tag), and every response's body
    as (time, body). A thread stops when the block exits or after `seconds`;
    scale multiplies that and the wait for the threads to end.

    retry_idle_close: behave as an HTTP client library does: a request on a
    reused connection that the server closed before sending a byte of the
    answer (it closed the connection as it sat idle, draining) is sent again
    on a new connection, as RFC 9112 section 9.3.1 allows for idempotent
    requests, and counted in `reconnects`, not as a failure; an answer with
    Connection: close ends its connection."""

    def __init__(self, srv, request, conns=4, body=None, seconds=30, scale=1.0,
                 retry_idle_close=False):
        self.srv, self.request, self.body = srv, request, body
        self.seconds, self.scale = seconds, scale
        self.retry_idle_close = retry_idle_close
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.failures = []  # (time, tag, repr)
        self.successes = []  # (time, tag)
        self.bodies = []  # (time, body)
        self.reconnects = 0
        tagged = [(None, None)] * conns if isinstance(conns, int) else conns
        self.threads = [threading.Thread(target=self._run, args=(c, tag), daemon=True)
                        for c, tag in tagged]

    def _send(self, conn, reused):
        """One request on conn; with retry_idle_close, once more on a new
        connection when a reused one was closed before any byte came.
        Returns the connection used and the response."""
        try:
            return conn, conn.request(self.request)
        except (ConnClosed, ConnectionResetError, BrokenPipeError):
            if not (self.retry_idle_close and reused and not conn.got_bytes):
                raise
        conn.close()
        with self.lock:
            self.reconnects += 1
        conn = self.srv.connect()
        return conn, conn.request(self.request)

    def _run(self, conn, tag):
        deadline = time.monotonic() + self.seconds * self.scale
        reused = conn is not None
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn, tag, reused = self.srv.connect(), None, False
                conn, r = self._send(conn, reused)
                reused = True
                ok = r.status == 200 and (self.body is None or r.body == self.body)
                with self.lock:
                    self.bodies.append((time.monotonic(), r.body))
                    if ok:
                        self.successes.append((time.monotonic(), tag))
                    else:
                        self.failures.append((time.monotonic(), tag, repr(r)))
                if self.retry_idle_close and (r.header("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, ConnClosed, AssertionError) as e:
                with self.lock:
                    self.failures.append((time.monotonic(), tag, repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10 * self.scale)
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def try_request(port, data=None, timeout=2.0):
    """One request on a fresh connection; returns the Response or the exception."""
    try:
        with Conn.tcp(port, timeout) as c:
            return c.request(data or get("/"), timeout=timeout)
    except (OSError, ConnClosed, AssertionError) as e:
        return e


def wait_serving(port, timeout=5.0):
    """Retries a GET until one succeeds; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = try_request(port, timeout=1.0)
        if isinstance(r, Response):
            return r
        last = r
        time.sleep(0.02)
    raise AssertionError("server not serving within %.1f s: %r" % (timeout, last))


# ---- servers of the differential tests (started with start_new_session)


def stop_group(proc, wait=10.0):
    """SIGTERM to proc's process group by PID, wait, then SIGKILL: always."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait * time_scale())
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_http_ready(port, proc, path, timeout=20.0, log=None):
    """Waits until GET path on 127.0.0.1:port answers 200; fails when proc
    exits first or the time runs out (with the tail of log, if given)."""
    import httpx
    deadline = time.monotonic() + timeout * time_scale()
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with httpx.Client(timeout=1.0 * time_scale()) as c:
                if c.get("http://127.0.0.1:%d%s" % (port, path)).status_code == 200:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    tail = ""
    if log:
        with open(log, errors="replace") as f:
            tail = "\n" + f.read()[-4000:]
    raise AssertionError("server on port %d not ready (exit %s)%s" % (port, proc.poll(), tail))



@contextlib.contextmanager
def serving_plugin_copy(plugin_path, prefix):
    """A Server on a private copy of one plugin file, once it is loaded;
    stopped and cleaned up after, and failing if a sanitizer reported."""
    plugins = tempfile.mkdtemp(prefix=prefix)
    shutil.copy(plugin_path, plugins)
    name = re.escape(os.path.basename(plugin_path))
    srv = Server(plugins=plugins)
    try:
        srv.start()
        assert srv.wait_for_log(r"plugin %s: loaded" % name, 10), srv.output()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(plugins, ignore_errors=True)
    reports = [line for line in srv.stderr.snapshot()
               if "Sanitizer" in line or "runtime error:" in line]
    assert not reports, srv.output()
