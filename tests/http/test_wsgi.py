"""The WSGI side of the bridge (`evicorn APP --interface wsgi`, PEP 3333),
black-box: the plain app in tests/wsgi_app/plain.py (no framework, so
nothing hides the server's behaviour) and, when Flask is installed for
the interpreter that serves, tests/wsgi_app/flask_app.py.

Covers the environ, wsgi.input read every way PEP 3333 allows (with and
without a Content-Length, below and above the bridge's 64 KiB prefetch,
and as it arrives), large uploads and --limit-body, Expect: 100-continue,
backpressure on a slow reader, close() after a normal end, an exception
and a client that left, exceptions before and after the headers, apps
that break PEP 3333, write(), exc_info, wsgi.errors, wsgi.file_wrapper,
a Content-Length the body overruns, HEAD, the thread pool's concurrency
and its bound, keep-alive and pipelining (unread bodies included), the
worker's memory over many requests, and startup failures. The Flask
tests skip when Flask is not installed for the interpreter that serves
(Debian's stack has none; test_wsgi_diff.py runs Flask on the PyPI
stack). test_wsgi_diff.py compares the apps under gunicorn.

A test marked xfail(strict=True) names a known divergence; it fails
(XPASS) once the server is fixed, to be unmarked then.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from evicorn_harness import (Conn, ConnClosed, KeepAliveLoad, Server, evicorn_bin, get,
                             python_module_built, time_scale)

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "wsgi_app"))
SCALE = time_scale()


def serving_python():
    """The interpreter evicorn serves the app with: the active venv's."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and os.path.isfile(os.path.join(venv, "bin", "python")):
        return os.path.join(venv, "bin", "python")
    return "python3"


def flask_problem():
    try:
        ok = subprocess.run([serving_python(), "-c", "import flask"], capture_output=True,
                            timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError) as e:
        return "cannot run %s: %s" % (serving_python(), e)
    return None if ok else "Flask is not installed for %s" % serving_python()


FLASK_PROBLEM = flask_problem()
needs_flask = pytest.mark.skipif(FLASK_PROBLEM is not None, reason=str(FLASK_PROBLEM))

pytestmark = pytest.mark.skipif(not python_module_built(),
                                reason="evicorn's Python module is not built")


def wait_app(srv, path="/hello", timeout=20.0):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        try:
            with httpx.Client(timeout=2.0 * SCALE) as c:
                if c.get(srv.url(path)).status_code < 500:
                    return srv
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("WSGI app not serving\n" + srv.output())
        time.sleep(0.05)


def serve(make_server, *args, app="plain:app", ready_path="/hello"):
    """evicorn APP --interface wsgi --app-dir tests/wsgi_app ARGS, once the app answers."""
    srv = make_server(app, "--interface", "wsgi", "--app-dir", APP_DIR, *args,
                      ready_timeout=20.0)
    return wait_app(srv, ready_path)


@pytest.fixture(scope="module")
def wsgi():
    """The plain app on one worker with 4 threads and a 16 MiB body limit,
    shared by the tests that need nothing else."""
    srv = Server("plain:app", "--interface", "wsgi", "--app-dir", APP_DIR, "--threads", "4",
                 "--limit-body", "16M", ready_timeout=20.0)
    try:
        srv.start()
        wait_app(srv)
        yield srv
    finally:
        srv.stop()


def client(srv, timeout=10.0):
    return httpx.Client(base_url=srv.url(""), timeout=timeout * SCALE)


def result(c, key):
    return c.get("/result", params={"key": key}).json()


def wait_result(c, key, pred, timeout=5.0):
    deadline = time.monotonic() + timeout * SCALE
    while True:
        got = result(c, key)
        if pred(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def raw_environ(port, request):
    with Conn.tcp(port) as conn:
        r = conn.request(request)
        assert r.status == 200, r
        return json.loads(r.body), conn.sock.getsockname()[1]


def run_to_exit(*args, timeout=30.0):
    """Runs evicorn until it exits on its own (startup failures)."""
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "evicorn-wsgi-empty-plugins")
    os.makedirs(tmp, exist_ok=True)
    argv = [evicorn_bin(), "--host", "127.0.0.1", "--port", "0", "--plugins", tmp] + list(args)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=10)
        raise AssertionError("evicorn did not exit\n" + err)
    return p.returncode, out, err


class BigResponse:
    """Reads one response whose body may be tens of MiB without holding it
    (Conn's reader keeps the body in one bytes object): the head, then the
    body hashed as it arrives, chunked or with a Content-Length."""

    def __init__(self, conn, timeout=30.0):
        self.sock = conn.sock
        self.buf = bytearray(conn.buf)
        conn.buf = b""
        self.deadline = time.monotonic() + timeout * SCALE

    def _fill(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        data = self.sock.recv(262144)
        if not data:
            raise ConnClosed("connection closed")
        self.buf += data

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _take(self, n, sink):
        while n:
            if not self.buf:
                self._fill()
            k = min(n, len(self.buf))
            sink(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k

    def read(self):
        """(status, {header: value}, body length, sha256 of the body)."""
        status = int(self._line().split()[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            name, value = line.split(b":", 1)
            headers[name.decode().lower()] = value.strip().decode("latin-1")
        h = hashlib.sha256()
        total = [0]

        def sink(b):
            h.update(b)
            total[0] += len(b)

        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                self._take(size, sink)
                assert self._line() == b""
        else:
            self._take(int(headers["content-length"]), sink)
        return status, headers, total[0], h.hexdigest()


# --------------------------------------------------------------------------
# Responses


def test_hello_is_one_message_with_a_content_length(wsgi):
    with client(wsgi) as c:
        r = c.get("/hello")
    assert r.status_code == 200
    assert r.content == b"Hello, World!"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-app"] == "plain"
    # a one-item list: the body is known, so it gets a Content-Length
    assert r.headers["content-length"] == "13"
    assert "transfer-encoding" not in r.headers
    assert r.headers["server"] == "evicorn"


def test_generator_response_is_chunked_and_complete(wsgi):
    with client(wsgi) as c:
        r = c.get("/gen", params={"n": 50})
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.headers
        assert r.content == b"".join(b"chunk %d\n" % i for i in range(50))
        assert c.get("/gen", params={"n": 0}).content == b""


def test_app_status_and_repeated_headers(wsgi):
    with client(wsgi) as c:
        r = c.get("/status", params={"s": "201 Created"})
        assert r.status_code == 201 and r.content == b"status\n"
        assert r.headers.get_list("x-custom") == ["one", "two"]
        r = c.get("/status", params={"s": "404 Not Found"})
        assert r.status_code == 404
        r = c.get("/empty")
        assert r.status_code == 204 and r.content == b""
        assert "content-length" not in r.headers
        assert c.get("/nowhere").status_code == 404


def test_the_status_line_carries_the_servers_reason_phrase(wsgi):
    """The app's status code is kept; the reason phrase is RFC 9110's, or
    none for a code it does not assign (the phrase is informative only:
    RFC 9112 section 4; Granian does the same, gunicorn echoes the app's)."""
    with Conn.tcp(wsgi.port) as conn:
        r = conn.request(get("/status?s=299+Fine"))
        assert (r.status, r.reason) == (299, "")
        r = conn.request(get("/status?s=404+NOT+FOUND"))
        assert (r.status, r.reason) == (404, "Not Found")


def test_write_callable(wsgi):
    with Conn.tcp(wsgi.port) as conn:
        r = conn.request(get("/write"))
        assert r.status == 200
        assert r.body == b"written 1\nwritten 2\nreturned\n"
        assert r.header("transfer-encoding") == "chunked"
        # write() with the app's Content-Length and an empty iterable
        r = conn.request(get("/write-only"))
        assert (r.status, r.body, r.header("content-length")) == (200, b"only written", "12")
        # the connection is still in step
        assert conn.request(get("/hello")).body == b"Hello, World!"


def test_content_length_shorter_than_the_body_cuts_the_body(wsgi):
    """As gunicorn: the app's Content-Length wins, the rest is dropped, and
    the connection stays usable (no stray bytes before the next answer)."""
    with Conn.tcp(wsgi.port) as conn:
        r = conn.request(get("/short-length"))
        assert (r.status, r.header("content-length"), r.body) == (200, "5", b"01234")
        r = conn.request(get("/short-length-gen"))
        assert (r.status, r.header("content-length"), r.body) == (200, "7", b"abcdefg")
        assert conn.request(get("/hello")).body == b"Hello, World!"


def test_head_sends_no_body_and_keeps_the_connection(wsgi):
    with Conn.tcp(wsgi.port) as conn:
        r = conn.request(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        assert r.status == 200
        assert r.header("content-length") == "13"
        r = conn.request(b"HEAD /gen?n=3 HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        assert r.status == 200
        r = conn.request(b"HEAD /file?size=5000&key=head HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        assert (r.status, r.header("content-length")) == (200, "5000")
        # nothing of those bodies is on the wire: the next answer is next
        r = conn.request(get("/hello"))
        assert r.body == b"Hello, World!"
        conn.assert_open(0.2)


def test_file_wrapper_sends_the_file_and_closes_it(wsgi):
    size = 300001
    expected = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    with client(wsgi) as c:
        r = c.get("/file", params={"size": size, "key": "fw1"})
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        assert r.content == expected
        assert c.get("/file-closed", params={"key": "fw1"}).json() == {"closed": True}


# --------------------------------------------------------------------------
# The environ


def test_environ_follows_pep_3333(wsgi):
    body = b"a=1&b=2"
    env, client_port = raw_environ(wsgi.port, (
        b"POST /environ/caf%C3%A9%20x/a%2Fb?q=%20x&r=%2F&s=caf%C3%A9 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\nX-Multi: one\r\nx-multi: two\r\nX-Under: dash\r\n"
        b"X_Under: underscore\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 7\r\nUser-Agent: pep3333/1\r\n\r\n" + body))
    s, checks = env["str"], env["checks"]
    assert s["REQUEST_METHOD"] == "POST"
    assert s["SCRIPT_NAME"] == ""
    # percent-decoded bytes as a latin-1 str (PEP 3333's "bytes as str"),
    # %2F decoded too (as CGI and gunicorn do)
    assert s["PATH_INFO"] == "/environ/caf\u00c3\u00a9 x/a/b"
    assert s["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/caf\u00e9 x/a/b"
    assert s["QUERY_STRING"] == "q=%20x&r=%2F&s=caf%C3%A9"  # raw
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert s["SERVER_NAME"] == "127.0.0.1"
    assert s["SERVER_PORT"] == str(wsgi.port)
    assert s["REMOTE_ADDR"] == "127.0.0.1"
    assert s["REMOTE_PORT"] == str(client_port)
    assert s["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert s["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_TYPE" not in s and "HTTP_CONTENT_LENGTH" not in s
    assert s["HTTP_HOST"] == "example.com:8080"
    assert s["HTTP_USER_AGENT"] == "pep3333/1"
    assert s["HTTP_X_MULTI"] == "one,two"
    # a name with '_' is dropped: it would read as the '-' one
    assert s["HTTP_X_UNDER"] == "dash"
    assert s["wsgi.url_scheme"] == "http"
    assert checks == {
        "cgi_keys_all_str": True,
        "wsgi.version": [1, 0],
        "wsgi.version_is_tuple": True,
        "wsgi.url_scheme": "http",
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "flags_are_bool": True,
        "input_methods": True,
        "errors_methods": True,
        "file_wrapper_callable": True,
    }


def test_environ_without_body_headers_and_on_http_1_0(wsgi):
    env, _ = raw_environ(wsgi.port, b"GET /environ HTTP/1.0\r\n\r\n")
    s = env["str"]
    assert s["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert s["PATH_INFO"] == "/environ"
    assert s["QUERY_STRING"] == ""
    assert "CONTENT_TYPE" not in s and "CONTENT_LENGTH" not in s
    assert "HTTP_HOST" not in s


def test_url_scheme_and_client_from_a_trusted_proxy(wsgi):
    env, _ = raw_environ(wsgi.port, get("/environ", extra=(
        "X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.7\r\n")))
    assert env["checks"]["wsgi.url_scheme"] == "https"
    assert env["str"]["REMOTE_ADDR"] == "203.0.113.7"


@pytest.fixture(scope="module")
def alt():
    """Two workers, a root path, and a proxy evicorn does not trust."""
    srv = Server("plain:app", "--interface", "wsgi", "--app-dir", APP_DIR, "--workers", "2",
                 "--root-path", "/api", "--forwarded-allow-ips", "192.0.2.1",
                 ready_timeout=20.0)
    try:
        srv.start()
        wait_app(srv, "/api/hello")
        yield srv
    finally:
        srv.stop()


def test_script_name_is_the_root_path(alt):
    env, _ = raw_environ(alt.port, get("/api/environ/x%20y?z=1"))
    assert env["str"]["SCRIPT_NAME"] == "/api"
    assert env["str"]["PATH_INFO"] == "/environ/x y"
    assert env["str"]["QUERY_STRING"] == "z=1"


def test_multiprocess_with_two_workers(alt):
    env, _ = raw_environ(alt.port, get("/api/environ"))
    assert env["checks"]["wsgi.multiprocess"] is True
    assert env["checks"]["wsgi.multithread"] is True


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(alt):
    env, _ = raw_environ(alt.port, get("/api/environ", extra=(
        "X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.7\r\n")))
    assert env["checks"]["wsgi.url_scheme"] == "http"
    assert env["str"]["REMOTE_ADDR"] == "127.0.0.1"
    # the headers themselves still reach the app
    assert env["str"]["HTTP_X_FORWARDED_PROTO"] == "https"


# --------------------------------------------------------------------------
# wsgi.input


def lines_body(n, tail=b"tail without a newline"):
    return b"".join(b"line %d %s\n" % (i, b"x" * (i % 97)) for i in range(n)) + tail


SMALL = lines_body(40)       # below the 64 KiB the bridge reads before the app
LARGE = lines_body(5000)     # above: streamed while the app reads
MODES = [("read", {}), ("readn", {"n": 1000}), ("readn", {"n": 7}), ("readline", {}),
         ("readline-size", {"n": 10}), ("readlines", {}), ("iter", {}), ("content-length", {})]


@pytest.mark.parametrize("mode,params", MODES,
                         ids=["%s%s" % (m, p.get("n", "")) for m, p in MODES])
def test_input_read_every_way(wsgi, mode, params):
    nlines = {SMALL: 40, LARGE: 5000}
    with client(wsgi) as c:
        for body in (SMALL, LARGE):
            if mode == "readn" and params["n"] < 100 and body is LARGE:
                continue  # 40000 calls prove nothing more
            variants = [("length", body)]
            if mode != "content-length":
                variants.append(("chunked", iter([body[:1000], body[1000:1001], body[1001:]])))
            for how, content in variants:
                r = c.post("/echo", params=dict(params, mode=mode), content=content)
                assert r.status_code == 200, (how, r.text)
                got = r.json()
                assert got["length"] == len(body), (how, got)
                assert got["sha256"] == hashlib.sha256(body).hexdigest(), (how, got)
                assert got["after_end"] == 0
                if mode in ("readline", "readlines", "iter"):
                    assert got["pieces"] == nlines[body] + 1, (how, got)
                    assert got["newline_pieces"] == nlines[body], (how, got)


def test_empty_body_reads_as_empty(wsgi):
    with client(wsgi) as c:
        for mode in ("read", "readn", "readline", "readlines", "iter", "content-length"):
            got = c.post("/echo", params={"mode": mode}, content=b"").json()
            assert (got["length"], got["after_end"]) == (0, 0), (mode, got)
            got = c.post("/echo", params={"mode": mode}, content=iter([])).json()
            assert (got["length"], got["after_end"]) == (0, 0), (mode, got)
        got = c.get("/echo").json()
        assert (got["length"], got["after_end"]) == (0, 0)


def test_the_app_reads_the_body_as_it_arrives(wsgi):
    """wsgi.input is streamed: the app has read the first MiB while the
    client still holds back the rest."""
    body = os.urandom(2 * 1024 * 1024)
    with client(wsgi) as c, Conn.tcp(wsgi.port) as conn:
        conn.send(b"POST /upload-progress?key=up1 HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        conn.send(body[:1024 * 1024])
        got = wait_result(c, "up1", lambda r: r.get("read") == 1024 * 1024)
        assert got == {"read": 1024 * 1024, "done": False}
        conn.send(body[1024 * 1024:])
        r = conn.read_response()
        assert json.loads(r.body) == {"length": len(body),
                                      "sha256": hashlib.sha256(body).hexdigest()}


def test_large_uploads_arrive_whole(wsgi):
    big = os.urandom(6 * 1024 * 1024 + 13)
    digest = hashlib.sha256(big).hexdigest()

    def pieces():
        for i in range(0, len(big), 300000):
            yield big[i:i + 300000]

    with client(wsgi, timeout=30) as c:
        for mode in ("read", "readn"):
            got = c.post("/echo", params={"mode": mode, "n": 65536}, content=big).json()
            assert (got["length"], got["sha256"]) == (len(big), digest)
            got = c.post("/echo", params={"mode": mode, "n": 65536}, content=pieces()).json()
            assert (got["length"], got["sha256"]) == (len(big), digest)
            assert got["pieces"] > 1 or mode == "read"


def test_body_over_the_limit_is_413(make_server):
    srv = serve(make_server, "--limit-body", "1M")
    with client(srv) as c:
        # with a Content-Length over the limit: refused before the app
        r = c.post("/echo", content=b"x" * (2 * 1024 * 1024))
        assert r.status_code == 413
        assert r.headers["connection"] == "close"
        # one byte over
        r = c.post("/echo", content=b"y" * (1024 * 1024 + 1))
        assert r.status_code == 413
        # chunked: found out while the app reads
        r = c.post("/echo", content=iter([b"z" * 300000] * 7))
        assert r.status_code == 413
        # the worker goes on, and a body at the limit passes
        got = c.post("/echo", content=b"w" * (1024 * 1024)).json()
        assert got["length"] == 1024 * 1024
    # below the 64 KiB the bridge reads before the app runs
    srv2 = serve(make_server, "--limit-body", "1K")
    with client(srv2) as c:
        assert c.post("/echo", content=b"x" * 5000).status_code == 413
        assert c.post("/echo", content=b"x" * 1000).json()["length"] == 1000


def test_expect_100_continue_only_when_the_app_reads(wsgi):
    with Conn.tcp(wsgi.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert conn._read_line(time.monotonic() + 5 * SCALE) == b"HTTP/1.1 100 Continue"
        assert conn._read_line(time.monotonic() + 5 * SCALE) == b""
        conn.send(b"hello")
        r = conn.read_response()
        assert r.status == 200 and json.loads(r.body)["length"] == 5
        # chunked with Expect, on the same connection
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert conn._read_line(time.monotonic() + 5 * SCALE) == b"HTTP/1.1 100 Continue"
        assert conn._read_line(time.monotonic() + 5 * SCALE) == b""
        conn.send(b"3\r\nabc\r\n0\r\n\r\n")
        r = conn.read_response()
        assert r.status == 200 and json.loads(r.body)["length"] == 3
        # an app that answers without reading: no 100, and the connection
        # ends (the unread body cannot be skipped)
        conn.send(b"POST /no-read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        r = conn.read_response()
        assert r.status == 200 and r.body == b"did not read"
        assert r.header("connection") == "close"
        conn.assert_closed(3 * SCALE)


def test_client_leaving_mid_upload_is_not_an_app_error(wsgi):
    start = len(wsgi.stderr.snapshot())
    s = socket.create_connection(("127.0.0.1", wsgi.port))
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        s.sendall(b"q" * 200000)
        time.sleep(0.2)
    finally:
        s.close()
    with client(wsgi) as c:
        assert c.get("/hello").status_code == 200
    time.sleep(0.3)
    assert not wsgi.wait_for_log(r"Exception in WSGI application", 0.3, start=start), \
        wsgi.output()


# --------------------------------------------------------------------------
# Backpressure and close()


def test_slow_reader_stalls_the_app(wsgi):
    """/huge yields 64 MiB in 64 KiB chunks to a client that reads nothing
    for a second: the app must be held back (bounded buffering), then
    resume when the client reads, and every byte arrive in order."""
    n = 1024
    expected = hashlib.sha256()
    for i in range(n):
        expected.update(i.to_bytes(4, "big") * (65536 // 4))
    with client(wsgi) as c, Conn.tcp(wsgi.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        conn.send(get("/huge?key=bp1&chunks=%d" % n))
        time.sleep(1.0 * SCALE)
        stalled = result(c, "bp1")
        time.sleep(0.5 * SCALE)
        later = result(c, "bp1")
        assert later["done"] is False
        # the kernel's socket buffers, the host's output buffer and the
        # bridge's 256 KiB in flight: a few MiB, not 64
        assert stalled["produced"] < n // 4, stalled
        assert later["produced"] - stalled["produced"] <= 2, (stalled, later)
        status, headers, length, digest = BigResponse(conn, timeout=60).read()
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert length == n * 65536
        assert digest == expected.hexdigest()
        assert wait_result(c, "bp1", lambda r: r.get("done"))["produced"] == n


def test_close_is_called_after_a_normal_end(wsgi):
    with client(wsgi) as c:
        r = c.get("/closing", params={"key": "c-ok", "mode": "ok"})
        assert r.content == b"part 0\npart 1\npart 2\n"
        got = wait_result(c, "c-ok", lambda r: r.get("closed"))
        assert got == {"closed": True, "yielded": 3, "mode": "ok"}


def test_close_is_called_after_an_exception_and_the_response_is_cut(wsgi):
    start = len(wsgi.stderr.snapshot())
    with Conn.tcp(wsgi.port) as conn:
        conn.send(get("/closing?key=c-raise&mode=raise"))
        with pytest.raises(ConnClosed):
            conn.read_response()
    with client(wsgi) as c:
        got = wait_result(c, "c-raise", lambda r: r.get("closed"))
        assert got == {"closed": True, "yielded": 1, "mode": "raise"}
    assert wsgi.wait_for_log(r"RuntimeError: closing iterable failed", 5 * SCALE, start=start)


def test_close_is_called_when_the_client_leaves(wsgi):
    start = len(wsgi.stderr.snapshot())
    with Conn.tcp(wsgi.port) as conn:
        conn.send(get("/closing?key=c-gone&mode=forever"))
        head = conn._read_line(time.monotonic() + 5 * SCALE)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(0.1)
    with client(wsgi) as c:
        got = wait_result(c, "c-gone", lambda r: r.get("closed"), timeout=10)
        assert got["closed"] is True, got
        # the app stopped being iterated
        yielded = got["yielded"]
        time.sleep(0.2)
        assert result(c, "c-gone")["yielded"] == yielded
    # a client that left is nothing to report
    assert not wsgi.wait_for_log(r"Exception in WSGI application", 0.3, start=start)


def test_close_is_called_when_the_client_left_before_the_response(wsgi):
    start = len(wsgi.stderr.snapshot())
    s = socket.create_connection(("127.0.0.1", wsgi.port))
    try:
        s.sendall(get("/closing?key=c-early&mode=ok&delay=0.3"))
        time.sleep(0.05)
    finally:
        s.close()
    with client(wsgi) as c:
        got = wait_result(c, "c-early", lambda r: r.get("closed"), timeout=10)
    assert got["closed"] is True, got
    assert not wsgi.wait_for_log(r"Exception in WSGI application", 0.3, start=start)


# --------------------------------------------------------------------------
# Errors


def test_exception_before_start_response_is_a_500_with_traceback(wsgi):
    start = len(wsgi.stderr.snapshot())
    with Conn.tcp(wsgi.port) as conn:
        r = conn.request(get("/raise-before"))
        assert r.status == 500
        assert r.body == b"Internal Server Error"
        assert r.header("content-type") == "text/plain; charset=utf-8"
        assert r.header("connection") == "close"
    with client(wsgi) as c:
        assert c.get("/hello").status_code == 200  # the worker goes on
    assert wsgi.wait_for_log(r"Exception in WSGI application", 5 * SCALE, start=start)
    assert wsgi.wait_for_log(r"ValueError: plain error before start_response", 5 * SCALE,
                             start=start)
    assert wsgi.wait_for_log(r"Traceback \(most recent call last\)", 5 * SCALE, start=start)


def test_exception_after_the_first_chunk_cuts_the_response(wsgi):
    start = len(wsgi.stderr.snapshot())
    with Conn.tcp(wsgi.port) as conn:
        conn.send(get("/raise-after"))
        rest = conn.read_until_close(5 * SCALE)
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in head.lower()
    # the first chunk arrived, the terminating chunk never did
    assert b"first chunk\n" in body
    assert not body.endswith(b"0\r\n\r\n"), body
    assert wsgi.wait_for_log(r"RuntimeError: plain error after the first chunk", 5 * SCALE,
                             start=start)


@pytest.mark.parametrize("kind,message", [
    ("str-item", "TypeError: the WSGI app yielded str, not bytes"),
    ("no-start", "AssertionError: the WSGI app did not call start_response"),
    ("bad-header", "ValueError: start_response: invalid header"),
    ("empty-then-raise", "ValueError: failed after an empty string"),
])
def test_apps_breaking_pep_3333_get_a_500(wsgi, kind, message):
    start = len(wsgi.stderr.snapshot())
    with Conn.tcp(wsgi.port) as conn:
        r = conn.request(get("/misbehave?kind=" + kind))
        assert (r.status, r.body) == (500, b"Internal Server Error"), r
        assert b"Injected" not in r.raw
    assert wsgi.wait_for_log(message, 5 * SCALE, start=start), wsgi.output()


def test_start_response_from_inside_the_iterable(wsgi):
    with client(wsgi) as c:
        r = c.get("/lazy")
    assert (r.status_code, r.content, r.headers["x-lazy"]) == (200, b"lazy body", "yes")


def test_start_response_with_exc_info_after_the_headers_reraises(wsgi):
    with Conn.tcp(wsgi.port) as conn:
        conn.send(get("/exc-info-late?key=exc1"))
        rest = conn.read_until_close(5 * SCALE)
    assert rest.startswith(b"HTTP/1.1 200 OK")
    assert b"headers sent\n" in rest and b"not reached" not in rest
    with client(wsgi) as c:
        assert wait_result(c, "exc1", lambda r: "reraised" in r) == {"reraised": True}


def test_start_response_with_exc_info_before_the_headers_replaces_them(wsgi):
    with client(wsgi) as c:
        r = c.get("/exc-info-early")
    assert r.status_code == 503
    assert r.content == b"replaced\n"
    assert r.headers["x-second"] == "yes"
    assert "x-first" not in r.headers


def test_wsgi_errors_lines_go_to_the_log(wsgi):
    start = len(wsgi.stderr.snapshot())
    with client(wsgi) as c:
        assert c.get("/errors").content == b"logged"
    for line in ("wsgi.errors line one from the app", "wsgi.errors line two",
                 "wsgi.errors line three"):
        assert wsgi.wait_for_log(line, 5 * SCALE, start=start), wsgi.output()


# --------------------------------------------------------------------------
# The thread pool, keep-alive, pipelining


def test_sleeping_requests_run_concurrently(wsgi):
    """4 requests sleeping 0.5 s on --threads 4: together, not one by one."""
    out = [None] * 4

    def one(i):
        with client(wsgi) as c:
            out[i] = c.get("/sleep", params={"s": 0.5}).json()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20 * SCALE)
    took = time.monotonic() - t0
    assert all(o is not None for o in out), out
    assert len({o["thread"] for o in out}) == 4  # four pool threads
    assert took < 1.6 * SCALE, took  # one by one: 2 s


def test_keep_alive_and_pipelining_across_wsgi_responses(wsgi):
    reqs = [
        (get("/hello"), b"Hello, World!"),
        (get("/gen?n=3"), b"chunk 0\nchunk 1\nchunk 2\n"),
        (b"POST /echo?mode=readline HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\na\nb\nc\n",
         None),
        (get("/write"), b"written 1\nwritten 2\nreturned\n"),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"4\r\nwxyz\r\n0\r\n\r\n", None),
        (get("/short-length"), b"01234"),
        (get("/closing?key=pipe&mode=ok"), b"part 0\npart 1\npart 2\n"),
        (get("/sleep?s=0.05"), None),
        (get("/hello"), b"Hello, World!"),
    ]
    with Conn.tcp(wsgi.port) as conn:
        for _ in range(2):
            conn.send(b"".join(r for r, _ in reqs))
            for i, (_, want) in enumerate(reqs):
                r = conn.read_response(timeout=10 * SCALE)
                assert r.status == 200, (i, r)
                if want is not None:
                    assert r.body == want, (i, r)
                elif i == 2:
                    assert json.loads(r.body)["newline_pieces"] == 3
                elif i == 4:
                    assert json.loads(r.body)["length"] == 4
        conn.assert_open(0.2)


def test_nothing_follows_a_connection_close_response(wsgi):
    """The first answer (8 MB, Connection: close) sits unread in the
    buffers while the pipelined second one (0.3 s on the pool) completes:
    the connection must end after the first."""
    size = 8000000
    with Conn.tcp(wsgi.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        conn.send(get("/big-close?size=%d" % size) + get("/sleep?s=0.3"))
        time.sleep(1.0 * SCALE)
        big = BigResponse(conn, timeout=30)
        status, headers, length, digest = big.read()
        assert (status, headers["connection"], length) == (200, "close", size)
        assert digest == hashlib.sha256(b"c" * size).hexdigest()
        conn.buf = bytes(big.buf)
        conn.assert_closed(5 * SCALE)


def test_unread_bodies_keep_the_connection_in_step(wsgi):
    """An app that answers without reading the body: the body is skipped
    (or the connection closed), never taken for the next request."""
    small = b"GET /gen HTTP/1.1\r\nHost: smuggled\r\n\r\n"
    big = small * 5000  # 200 KiB
    for body_req in (
            b"POST /no-read HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(small)
            + small,
            b"POST /no-read HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big)
            + big,
            b"POST /no-read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)):
        with Conn.tcp(wsgi.port) as conn:
            conn.send(body_req + get("/status?s=202+Accepted"))
            r = conn.read_response(timeout=10 * SCALE)
            assert (r.status, r.body) == (200, b"did not read")
            try:
                r = conn.read_response(timeout=10 * SCALE)
            except ConnClosed:
                continue  # closing instead of skipping is fine too
            assert (r.status, r.body) == (202, b"status\n")
            conn.assert_open(0.2)


def test_the_pool_size_bounds_concurrency(make_server):
    """8 requests sleeping 0.3 s on --threads 2: four rounds."""
    srv = serve(make_server, "--threads", "2")
    out = []

    def one():
        with client(srv) as c:
            out.append(c.get("/sleep", params={"s": 0.3}).json()["thread"])

    threads = [threading.Thread(target=one) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30 * SCALE)
    took = time.monotonic() - t0
    assert len(out) == 8
    assert len(set(out)) == 2
    assert 1.1 < took < 4 * SCALE, took


def worker_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


@pytest.mark.skipif("detect_leaks" in os.environ.get("ASAN_OPTIONS", ""),
                    reason="ASan holds freed memory in quarantine (RSS grows by design); "
                           "LeakSanitizer checks for leaks in that build")
def test_worker_memory_stays_bounded(make_server):
    """Uploads, streamed responses, cut responses, clients that leave while
    the app sends or reads, many times over: the worker's memory does not
    grow with the number of requests."""
    srv = serve(make_server, "--threads", "4", "--no-access-log")
    [worker] = srv.wait_workers(1)
    body = os.urandom(100000)

    def drain(s):
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass

    def rounds(n):
        for i in range(n):
            for req, read in (
                    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body, drain),
                    (get("/gen?n=20", extra="Connection: close\r\n"), drain),
                    (get("/raise-after"), drain),
                    (get("/closing?key=mem&mode=forever"), lambda s: s.recv(100)),
                    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                     + body, None)):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5 * SCALE)
                try:
                    s.sendall(req)
                    if read:
                        read(s)
                finally:
                    s.close()

    rounds(30)
    time.sleep(0.3)
    before = worker_rss_kib(worker)
    rounds(150)
    time.sleep(0.3)
    after = worker_rss_kib(worker)
    # 150 rounds move 30 MB of request bodies; a leak of one per request shows
    assert after - before < 6 * 1024, (before, after)
    with client(srv) as c:
        assert c.get("/hello").status_code == 200


def test_keep_alive_load_without_failures(wsgi):
    with KeepAliveLoad(wsgi, get("/hello"), conns=4, body=b"Hello, World!",
                       seconds=1.0 * SCALE) as load:
        time.sleep(1.0 * SCALE)
    assert load.failures == []
    assert len(load.successes) > 50


# --------------------------------------------------------------------------
# Startup


@pytest.mark.parametrize("app,message", [
    ("nosuchmodule:app", 'Error loading WSGI app "nosuchmodule:app". '
                         'Could not import module "nosuchmodule"'),
    ("plain:nosuchattr", 'Error loading WSGI app "plain:nosuchattr". '
                         'Attribute "nosuchattr" not found in module "plain"'),
])
def test_app_that_cannot_be_imported_exits_1(app, message):
    code, _, err = run_to_exit(app, "--interface", "wsgi", "--app-dir", APP_DIR)
    assert code == 1, err
    assert message in err, err


def test_interface_wsgi_without_an_app_exits_2():
    code, _, err = run_to_exit("--interface", "wsgi", timeout=10)
    assert code == 2
    assert "--interface wsgi needs an APP" in err
    assert len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------
# Flask


@pytest.fixture(scope="module")
def flask_srv():
    if FLASK_PROBLEM:
        pytest.skip(FLASK_PROBLEM)
    srv = Server("flask_app:app", "--interface", "wsgi", "--app-dir", APP_DIR, "--threads", "4",
                 "--limit-body", "16M", ready_timeout=20.0)
    try:
        srv.start()
        wait_app(srv, "/")
        yield srv
    finally:
        srv.stop()


@needs_flask
def test_flask_routes(flask_srv):
    with client(flask_srv) as c:
        r = c.get("/")
        assert (r.status_code, r.text) == (200, "Hello, Flask!")
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["content-length"] == "13"
        r = c.get("/json")
        assert r.json() == {"message": "Hello, World!", "items": [1, 2, 3],
                            "nested": {"ok": True}}
        assert r.headers["content-type"] == "application/json"
        r = c.get("/args", params=[("a", "1"), ("b", "x y"), ("b", "z")])
        assert r.json()["args"] == {"a": ["1"], "b": ["x y", "z"]}
        assert r.json()["path"] == "/args"
        r = c.get("/headers", headers={"User-Agent": "flask-test/1", "X-Token": "t0k"})
        assert r.json()["user_agent"] == "flask-test/1"
        assert r.json()["x_token"] == "t0k"
        assert r.json()["host"] == "127.0.0.1:%d" % flask_srv.port
        assert r.headers["x-custom"] == "one" and r.headers["cache-control"] == "no-store"
        assert c.put("/methods").json() == {"method": "PUT"}


@needs_flask
def test_flask_forms_uploads_and_large_bodies(flask_srv):
    with client(flask_srv, timeout=30) as c:
        r = c.post("/form", data={"name": "Ada", "tag": ["x", "y"]})
        assert r.json() == {"fields": {"name": ["Ada"], "tag": ["x", "y"]},
                            "content_type": "application/x-www-form-urlencoded"}
        blob = os.urandom(3 * 1024 * 1024 + 5)
        r = c.post("/upload", files={"file": ("data.bin", blob, "application/octet-stream")},
                   data={"note": "n"})
        assert r.status_code == 200, r.text
        assert r.json() == {"filename": "data.bin", "mimetype": "application/octet-stream",
                            "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                            "fields": {"note": ["n"]}}
        big = os.urandom(5 * 1024 * 1024)
        r = c.post("/body", content=big)
        assert r.json() == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest(),
                            "content_length": len(big)}
        r = c.post("/body", content=iter([big[:100000], big[100000:]]))
        assert r.json()["length"] == len(big)
        assert r.json()["sha256"] == hashlib.sha256(big).hexdigest()


@needs_flask
def test_flask_redirects_cookies_and_errors(flask_srv):
    with client(flask_srv) as c:
        r = c.get("/redirect", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (302, "/json")
        r = c.get("/redirect/permanent", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (308, "https://example.com/new?x=1")
        r = c.get("/cookies/set")
        cookies = r.headers.get_list("set-cookie")
        assert len(cookies) == 2
        assert cookies[0].startswith("session=abc123;") and "HttpOnly" in cookies[0]
        assert "Max-Age=3600" in cookies[0]
        assert cookies[1].startswith("theme=dark;") and "Path=/x" in cookies[1]
        r = c.get("/cookies", headers={"Cookie": "session=s1; theme=blue"})
        assert r.json() == {"session": "s1", "theme": "blue"}
        r = c.get("/nowhere")
        assert r.status_code == 404 and b"Not Found" in r.content
        r = c.get("/form")
        assert r.status_code == 405
        assert sorted(m.strip() for m in r.headers["allow"].split(",")) == ["OPTIONS", "POST"]
        r = c.get("/abort")
        assert r.status_code == 500 and b"Internal Server Error" in r.content
        r = c.get("/boom")
        assert r.status_code == 500
        r = c.get("/teapot")
        assert (r.status_code, r.json(), r.headers["x-custom"]) == (
            418, {"detail": "short and stout"}, "tea")
    # Flask logs the view's exception itself, through wsgi.errors
    assert flask_srv.wait_for_log(r"RuntimeError: flask view failed", 5 * SCALE)


@needs_flask
def test_flask_streamed_response(flask_srv):
    with client(flask_srv) as c:
        t0 = time.monotonic()
        arrivals = []
        with c.stream("GET", "/stream", params={"n": 4, "delay": 0.25, "tag": "s"}) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            for chunk in r.iter_raw():
                arrivals.append((time.monotonic() - t0, chunk))
        body = b"".join(ch for _, ch in arrivals)
        assert body == b"".join(b"line %d of s\n" % i for i in range(4))
        # the first line leaves before the last one is produced
        assert arrivals[0][0] < arrivals[-1][0] - 0.4, arrivals
