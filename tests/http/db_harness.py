"""Real database servers for the tests: PostgreSQL and Redis from Debian.

PgServer makes a fresh cluster (initdb) in a temporary folder and runs
postgres on a free 127.0.0.1 port, with the examples' schema and data
loaded by scripts/db-load; RedisServer runs redis-server the same way.
Both listen on loopback only, are stopped by PID (never by name) and
remove their folder; both are context managers, and the pytest fixtures
`pg` and `redis_server` (conftest.py) stop them whatever the tests do.

PostgreSQL refuses to run as root: under root the cluster belongs to the
`nobody` user and every server binary runs through setpriv as that user.

Every wait has a timeout (times EVICORN_TIME_SCALE).
"""
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from evicorn_harness import Server, time_scale

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(ROOT, "build", "plugins")
DB_LOAD = os.path.join(ROOT, "scripts", "db-load")

PG_USER = "postgres"
PG_DATABASE = "hello_world"

# psql's separators in PgServer.psql: ASCII unit and record separators,
# which no value in the tests contains.
FIELD_SEP = "\x1f"
ROW_SEP = "\x1e"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir():
    """The folder of Debian's PostgreSQL server binaries (the newest major
    under /usr/lib/postgresql), or of an initdb on PATH."""
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        m = re.search(r"/postgresql/(\d+)/bin/", path)
        if m:
            found.append((int(m.group(1)), os.path.dirname(path)))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise RuntimeError("PostgreSQL server binaries not found (Debian package postgresql; "
                       "scripts/install-deps installs it)")


def _kill_and_wait(proc, sig, timeout):
    """Sends sig to proc by PID and waits up to timeout; True once it exited."""
    if proc.poll() is not None:
        return True
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _stop_process(proc, first_signal):
    """first_signal, 15 s, then SIGKILL; the process is reaped either way."""
    if proc is None:
        return None
    if not _kill_and_wait(proc, first_signal, 15 * time_scale()):
        _kill_and_wait(proc, signal.SIGKILL, 10)
    return proc.returncode


class _TempServer:
    """What both servers share: a private folder, an unprivileged user when
    run as root, a log file, a child process stopped by PID."""

    prefix = "evicorn-db-"

    def __init__(self, port=None, ready_timeout=30.0):
        self.port = port
        self.ready_timeout = ready_timeout
        self.dir = None
        self.proc = None
        self.log_path = None
        self._log = None
        self.as_root = os.geteuid() == 0

    # ---- helpers

    def _make_dir(self):
        self.dir = tempfile.mkdtemp(prefix=self.prefix)
        if self.as_root:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        os.chmod(self.dir, 0o700)

    def _as_user(self, argv):
        """argv run as nobody under root (setpriv execs it: same PID)."""
        if not self.as_root:
            return list(argv)
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"] + list(argv)

    def _run(self, argv, timeout=60):
        """Runs a helper command (as the server's user) to completion."""
        r = subprocess.run(self._as_user(argv), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout * time_scale(), cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                         r.stderr))
        return r.stdout

    def _spawn(self, argv):
        self._log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self._as_user(argv), stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.dir)
        except OSError:
            self._log.close()
            self._log = None
            raise

    def log(self):
        """What the server wrote so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def _wait_ready(self, probe):
        deadline = time.monotonic() + self.ready_timeout * time_scale()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if probe():
                return
            time.sleep(0.05)
        status = self.proc.poll()
        self.stop()
        raise RuntimeError("%s did not get ready within %.0f s (exit status %r)\n%s"
                           % (type(self).__name__, self.ready_timeout, status, self.log()))

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    # ---- lifecycle shared by both

    def stop(self):
        """Stops the server by PID (its fast shutdown, then SIGKILL after
        15 s); the data folder stays for start(). Returns the exit status."""
        status = _stop_process(self.proc, self.stop_signal)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return status

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        """stop() and remove the folder."""
        try:
            self.stop()
        finally:
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()
        return False


class PgServer(_TempServer):
    """PostgreSQL: a fresh cluster per instance, trust authentication on
    loopback, the examples' schema loaded (scripts/db-load).

        with PgServer() as pg:
            pg.url                      # postgresql://postgres@127.0.0.1:PORT/hello_world
            pg.psql("SELECT 1")         # [["1"]]
            pg.restart()                # same port, same data
    """

    prefix = "evicorn-pg-"
    stop_signal = signal.SIGINT  # postgres's fast shutdown

    def __init__(self, port=None, ready_timeout=30.0, load_schema=True, max_connections=200):
        super().__init__(port, ready_timeout)
        self.bindir = pg_bindir()
        self.load_schema = load_schema
        self.max_connections = max_connections
        self.initialized = False

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def socket_dir(self):
        return os.path.join(self.dir, "run")

    @property
    def url(self):
        return "postgresql://%s@127.0.0.1:%d/%s" % (PG_USER, self.port, PG_DATABASE)

    def env(self):
        """Environment variables naming the database, for a server process."""
        return {"DATABASE_URL": self.url}

    def _init(self):
        self._make_dir()
        self.log_path = os.path.join(self.dir, "postgres.log")
        os.mkdir(self.socket_dir, 0o700)
        if self.as_root:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.socket_dir, nobody.pw_uid, nobody.pw_gid)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", PG_USER,
                   "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"])
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "host all all 127.0.0.1/32 trust\n")

    def start(self):
        """Starts postgres (making and loading the cluster the first time);
        returns self once it accepts connections."""
        if self.dir is None:
            self._init()
        if self.port is None:
            self.port = free_port()
        self._spawn([os.path.join(self.bindir, "postgres"), "-D", self.data,
                     "-p", str(self.port),
                     "-c", "listen_addresses=127.0.0.1",
                     "-c", "unix_socket_directories=" + self.socket_dir,
                     "-c", "max_connections=%d" % self.max_connections,
                     "-c", "fsync=off",
                     "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off",
                     "-c", "shared_buffers=32MB",
                     # Counts executed statements, as TechEmpower's verifier
                     # does (pg_stat_statements, created in the database).
                     "-c", "shared_preload_libraries=pg_stat_statements",
                     "-c", "log_min_messages=warning",
                     "-c", "logging_collector=off"])
        self._wait_ready(self._accepts)
        if not self.initialized:
            try:
                self.psql("CREATE DATABASE %s" % PG_DATABASE, dbname="postgres")
                self.psql("CREATE EXTENSION pg_stat_statements")
                if self.load_schema:
                    self.load()
            except BaseException:
                self.stop()
                raise
            self.initialized = True
        return self

    def _accepts(self):
        r = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", PG_USER, "-d", "postgres", "-t", "1"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        return r.returncode == 0

    def load(self):
        """(Re)loads the examples' schema and data with scripts/db-load."""
        r = subprocess.run([DB_LOAD, self.url], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=120 * time_scale())
        if r.returncode != 0:
            raise RuntimeError("scripts/db-load failed (%d):\n%s%s"
                               % (r.returncode, r.stdout, r.stderr))

    def psql(self, sql, dbname=None, timeout=30):
        """Runs sql (one or more statements) with psql; returns the rows of
        the last one as lists of strings (SQL NULL is the empty string).
        Raises RuntimeError with psql's message on an error."""
        url = self.url if dbname is None else "postgresql://%s@127.0.0.1:%d/%s" % (
            PG_USER, self.port, dbname)
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-F", FIELD_SEP, "-R", ROW_SEP, "-d", url, "-c", sql],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout * time_scale())
        if r.returncode != 0:
            raise RuntimeError("psql %r failed (%d): %s" % (sql, r.returncode,
                                                              r.stderr.decode("utf-8", "replace")))
        out = r.stdout.decode("utf-8")
        if out.endswith("\n"):
            out = out[:-1]
        return [row.split(FIELD_SEP) for row in out.split(ROW_SEP) if row != ""]

    def statement_calls(self, pattern):
        """{query text: calls} from pg_stat_statements for the statements
        whose text matches the SQL LIKE pattern (reset with
        reset_statements())."""
        rows = self.psql("SELECT query, calls FROM pg_stat_statements WHERE query LIKE '%s'"
                         % pattern.replace("'", "''"))
        return {q: int(n) for q, n in rows}

    def reset_statements(self):
        self.psql("SELECT pg_stat_statements_reset()")

    def scalar(self, sql):
        """The single value sql returns."""
        rows = self.psql(sql)
        assert len(rows) == 1 and len(rows[0]) == 1, (sql, rows)
        return rows[0][0]


class RedisServer(_TempServer):
    """redis-server on a free 127.0.0.1 port, nothing persisted.

        with RedisServer() as r:
            r.url                       # redis://127.0.0.1:PORT
            r.command("SET", "k", "v")  # b"OK"
    """

    prefix = "evicorn-redis-"
    stop_signal = signal.SIGTERM

    def __init__(self, port=None, ready_timeout=15.0):
        super().__init__(port, ready_timeout)
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.isfile(self.binary):
            raise RuntimeError("redis-server not found (Debian package redis-server; "
                               "scripts/install-deps installs it)")

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def env(self):
        return {"REDIS_URL": self.url}

    def start(self):
        if self.dir is None:
            self._make_dir()
            self.log_path = os.path.join(self.dir, "redis.log")
        if self.port is None:
            self.port = free_port()
        self._spawn([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--daemonize", "no",
                     "--dir", self.dir, "--protected-mode", "yes"])
        self._wait_ready(self._pong)
        return self

    def _pong(self):
        try:
            return self.command("PING", timeout=1) == b"PONG"
        except (OSError, RuntimeError):
            return False

    def command(self, *args, timeout=5.0):
        """Sends one command; returns its reply: bytes for a status or bulk
        string, int, a list for an array, None for a nil; RuntimeError for
        an error reply."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(b"".join(parts))
            return _RespReader(s, time.monotonic() + timeout).reply()


class _RespReader:
    """Reads one RESP reply from a socket, within a deadline."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.buf = b""

    def _fill(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("redis reply timed out")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("bad redis reply %r" % line)


# --------------------------------------------------------------------------
# evicorn serving the database examples


@contextlib.contextmanager
def serving_plugins(names, env, ready_logs=(), timeout=10.0):
    """An evicorn Server over private copies of the named built plugins
    (EVICORN_PLUGINS), its environment changed by env ({name: value}, or
    None to unset), once each regex of ready_logs has been logged (e.g.
    r"plugin todo\\.so: loaded"). Stopped and cleaned up after, and failing
    if a sanitizer reported."""
    plugins = tempfile.mkdtemp(prefix="evicorn-db-plugins-")
    try:
        for name in names:
            path = os.path.join(PLUGINS, name + ".so")
            assert os.path.isfile(path), "%s is not built" % path
            shutil.copy(path, plugins)
        wrapper = ["env"]
        for k, v in env.items():
            wrapper += ["-u", k] if v is None else ["%s=%s" % (k, v)]
        srv = Server(plugins=plugins, wrapper=wrapper)
        try:
            srv.start()
            for rx in ready_logs:
                assert srv.wait_for_log(rx, timeout), srv.output()
            yield srv
        finally:
            srv.stop()
    finally:
        shutil.rmtree(plugins, ignore_errors=True)
    reports = [line for line in srv.stderr.snapshot()
               if "Sanitizer" in line or "runtime error:" in line]
    assert not reports, srv.output()


# Unsets every variable that could name a database.
NO_DATABASE = {k: None for k in ("DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE",
                                 "PGSERVICE", "PGUSER")}
