"""Differential test: the WSGI apps in tests/wsgi_app served by evicorn
(`evicorn APP --interface wsgi`) and by gunicorn (`python -m gunicorn -k
gthread --threads 4 -w 1 APP`, --chdir tests/wsgi_app) of the same
interpreter, the one running these tests (evicorn serves with it through
VIRTUAL_ENV). Both get the same requests; the status, the decoded body
and the key headers (content-type, content-length, location, set-cookie,
allow, the apps' own headers) must be the same. Each case also checks
the answer itself, so both servers being wrong the same way fails too.

Framing may differ, and is not compared as such: evicorn gives a
one-item list (what Flask and most apps return) a Content-Length, where
gunicorn sends it chunked unless the app set one; so the bodies are
compared after de-chunking, and a Content-Length one side sent must be
the length of the other side's body. The servers' own headers (date,
server, connection) are theirs.

Needs Flask and gunicorn (the PyPI stack of tests/requirements-asgi.txt);
skipped when either is not importable.
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from evicorn_harness import (evicorn_bin, free_port, python_module_built, stop_group,
                             time_scale, wait_http_ready)

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "wsgi_app"))
PYTHON = sys.executable
SCALE = time_scale()


def missing(*modules):
    try:
        rc = subprocess.run([PYTHON, "-c", "import " + ", ".join(modules)],
                            capture_output=True, timeout=30).returncode
    except (OSError, subprocess.SubprocessError):
        rc = 1
    return None if rc == 0 else "%s not importable by %s" % (" or ".join(modules), PYTHON)


GUNICORN_MISSING = missing("gunicorn")
FLASK_MISSING = missing("flask")

pytestmark = [
    pytest.mark.skipif(not python_module_built(), reason="evicorn's Python module is not built"),
    pytest.mark.skipif(GUNICORN_MISSING is not None, reason=str(GUNICORN_MISSING)),
]
needs_flask = pytest.mark.skipif(FLASK_MISSING is not None, reason=str(FLASK_MISSING))


# ---- the two servers -------------------------------------------------------------






def gunicorn_quiet_flags():
    """gunicorn 25+ opens a control socket in ~/.gunicorn by default: not
    for a test (two servers would share it)."""
    try:
        out = subprocess.run([PYTHON, "-m", "gunicorn", "--help"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return ["--no-control-socket"] if "--no-control-socket" in out else []


class Pair:
    """evicorn and gunicorn serving one app; their logs in files."""

    def __init__(self, tmp, app, ready_path):
        self.app, self.tmp, self.ready_path = app, tmp, ready_path
        self.procs, self.clients = [], []
        self.ev_log, self.gu_log = str(tmp / "evicorn.log"), str(tmp / "gunicorn.log")

    def start(self):
        env = dict(os.environ)
        if sys.prefix != sys.base_prefix:
            env.setdefault("VIRTUAL_ENV", sys.prefix)  # evicorn serves with this venv too
        plugins = str(self.tmp / "plugins")
        os.makedirs(plugins, exist_ok=True)
        self.ev_port, self.gu_port = free_port(), free_port()
        with open(self.ev_log, "wb") as log:
            self.procs.append(subprocess.Popen(
                [evicorn_bin(), self.app, "--interface", "wsgi", "--app-dir", APP_DIR,
                 "--host", "127.0.0.1", "--port", str(self.ev_port), "--plugins", plugins,
                 "--threads", "4", "--no-access-log", "--limit-body", "16M"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        with open(self.gu_log, "wb") as log:
            self.procs.append(subprocess.Popen(
                [PYTHON, "-m", "gunicorn", "-k", "gthread", "--threads", "4", "-w", "1",
                 "-b", "127.0.0.1:%d" % self.gu_port, "--chdir", APP_DIR]
                + gunicorn_quiet_flags() + [self.app],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        wait_http_ready(self.ev_port, self.procs[0], self.ready_path, log=self.ev_log)
        wait_http_ready(self.gu_port, self.procs[1], self.ready_path, log=self.gu_log)
        for port in (self.ev_port, self.gu_port):
            self.clients.append(httpx.Client(base_url="http://127.0.0.1:%d" % port,
                                             timeout=20 * SCALE, follow_redirects=False))
        return self

    def stop(self):
        for c in self.clients:
            c.close()
        for p in self.procs:
            stop_group(p)

    def log(self, which):
        with open(self.ev_log if which == "evicorn" else self.gu_log, errors="replace") as f:
            return f.read()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    pair = Pair(tmp_path_factory.mktemp("plain"), "plain:app", "/hello")
    try:
        yield pair.start()
    finally:
        pair.stop()


@pytest.fixture(scope="module")
def flask(tmp_path_factory):
    if FLASK_MISSING:
        pytest.skip(FLASK_MISSING)
    pair = Pair(tmp_path_factory.mktemp("flask"), "flask_app:app", "/")
    try:
        yield pair.start()
    finally:
        pair.stop()


# ---- one request to both ------------------------------------------------------------

KEY_HEADERS = ("content-type", "location", "allow", "cache-control", "x-custom", "x-app",
               "x-second", "content-encoding")


class Answer:
    def __init__(self, r, body):
        self.status = r.status_code
        self.body = body
        self.headers = r.headers
        self.key = {name: r.headers.get_list(name) for name in KEY_HEADERS}
        self.key["set-cookie"] = r.headers.get_list("set-cookie")
        # Werkzeug builds Allow from a set: its order is per process
        self.key["allow"] = [sorted(m.strip() for v in self.key["allow"] for m in v.split(","))]
        self.length = r.headers.get("content-length")
        self.chunked = r.headers.get("transfer-encoding") == "chunked"

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%s %r %r>" % (self.status, self.key, self.body[:200])


def exchange(client, method, path, kw):
    kw = dict(kw)
    if callable(kw.get("content")):
        kw["content"] = kw["content"]()  # a fresh generator: a chunked body
    try:
        with client.stream(method, path, **kw) as r:
            body = b"".join(r.iter_raw())
    except httpx.HTTPError as e:
        return ("error", type(e).__name__)
    return Answer(r, body)


def same(pair, method, path, head=False, **kw):
    """The request to evicorn, then to gunicorn; asserts the same status,
    body and key headers, and framing that says the same length; returns
    evicorn's answer."""
    ev, gu = (exchange(c, method, path, kw) for c in pair.clients)
    assert not isinstance(ev, tuple) and not isinstance(gu, tuple), (ev, gu)
    assert (ev.status, ev.body, ev.key) == (gu.status, gu.body, gu.key)
    if not head:
        for a, b in ((ev, gu), (gu, ev)):
            if a.length is not None:
                assert int(a.length) == len(b.body), (ev.headers, gu.headers)
    return ev


def pieces(data, size):
    def gen():
        for i in range(0, len(data), size):
            yield data[i:i + size]
    return gen


# ---- the plain app ---------------------------------------------------------------------


def test_plain_simple_responses(plain):
    r = same(plain, "GET", "/hello")
    assert (r.status, r.body, r.key["x-app"]) == (200, b"Hello, World!", ["plain"])
    r = same(plain, "GET", "/gen?n=40")
    assert r.body == b"".join(b"chunk %d\n" % i for i in range(40)) and r.chunked
    r = same(plain, "GET", "/write")
    assert r.body == b"written 1\nwritten 2\nreturned\n"
    r = same(plain, "GET", "/write-only")
    assert (r.body, r.length) == (b"only written", "12")
    r = same(plain, "GET", "/status?s=201+Created")
    assert (r.status, r.key["x-custom"]) == (201, ["one", "two"])
    r = same(plain, "GET", "/empty")
    assert (r.status, r.body) == (204, b"")
    r = same(plain, "GET", "/nowhere")
    assert (r.status, r.body) == (404, b"no such route: /nowhere")
    r = same(plain, "GET", "/closing?key=d-ok&mode=ok")
    assert r.body == b"part 0\npart 1\npart 2\n"


def test_plain_content_length_cuts_the_body_alike(plain):
    r = same(plain, "GET", "/short-length")
    assert (r.body, r.length) == (b"01234", "5")
    r = same(plain, "GET", "/short-length-gen")
    assert (r.body, r.length) == (b"abcdefg", "7")


def test_plain_file_wrapper(plain):
    size = 250001
    r = same(plain, "GET", "/file?size=%d&key=d-file" % size)
    assert r.body == bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    assert r.length == str(size)
    for c in plain.clients:
        assert c.get("/file-closed", params={"key": "d-file"}).json() == {"closed": True}


BODY = b"".join(b"line %d %s\n" % (i, b"y" * (i % 61)) for i in range(3000)) + b"end"


@pytest.mark.parametrize("mode", ["read", "readn", "readline", "readline-size", "readlines",
                                  "iter"])
def test_plain_input_is_read_alike(plain, mode):
    for content in (BODY, pieces(BODY, 40000), b"", BODY[:3000]):
        r = same(plain, "POST", "/echo?mode=%s&n=999" % mode, content=content)
        sent = content if isinstance(content, bytes) else BODY
        got = r.json()
        assert (got["length"], got["sha256"]) == (len(sent), hashlib.sha256(sent).hexdigest())


def raw_environ(port, request):
    """The environ /environ dumps for one raw request (the connection
    closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out = b""
        while True:
            size, _, body = body.partition(b"\r\n")
            size = int(size, 16)
            if size == 0:
                break
            out, body = out + body[:size], body[size + 2:]
        body = out
    env = json.loads(body)
    # each server's own: its name and ports, and gunicorn's RAW_URI (an
    # extension PEP 3333 does not name)
    for k in ("SERVER_SOFTWARE", "SERVER_PORT", "REMOTE_PORT", "RAW_URI"):
        env["str"].pop(k, None)
    return env


ENVIRON_REQUESTS = {
    "length": (b"POST /environ/caf%C3%A9%20x/a%2Fb?q=%20x&r=%2F HTTP/1.1\r\n"
               b"Host: example.org\r\nX-Multi: one\r\nx-multi: two\r\n"
               b"X-Under: dash\r\nX_Under: underscore\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 3\r\n"
               b"Connection: close\r\n\r\nabc"),
    "chunked": (b"PUT /environ HTTP/1.1\r\nHost: example.org\r\n"
                b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
                b"Cookie: a=1\r\nConnection: close\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n"),
    "http10": b"GET /environ?x HTTP/1.0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(ENVIRON_REQUESTS))
def test_plain_environ_alike(plain, name):
    """The same environ from both but for each server's own keys."""
    ev, gu = (raw_environ(port, ENVIRON_REQUESTS[name])
              for port in (plain.ev_port, plain.gu_port))
    assert ev == gu
    s = ev["str"]
    assert ev["checks"]["wsgi.version"] == [1, 0]
    assert ev["checks"]["wsgi.input_terminated"] is True
    if name == "length":
        assert s["PATH_INFO"] == "/environ/caf\u00c3\u00a9 x/a/b"
        assert s["QUERY_STRING"] == "q=%20x&r=%2F"
        assert s["HTTP_X_MULTI"] == "one,two"
        assert s["HTTP_X_UNDER"] == "dash"
        assert (s["CONTENT_TYPE"], s["CONTENT_LENGTH"]) == ("text/plain", "3")
        assert s["HTTP_HOST"] == "example.org"
    elif name == "chunked":
        assert (s["REQUEST_METHOD"], s["CONTENT_TYPE"]) == ("PUT", "application/json")
        assert "CONTENT_LENGTH" not in s
        assert (s["HTTP_TRANSFER_ENCODING"], s["HTTP_COOKIE"]) == ("chunked", "a=1")
    else:
        assert (s["SERVER_PROTOCOL"], s["QUERY_STRING"]) == ("HTTP/1.0", "x")
        assert "HTTP_HOST" not in s


def test_plain_exceptions_before_the_headers_are_500s(plain):
    """Both answer 500 and close; the page is each server's own (gunicorn
    an HTML one, evicorn plain text)."""
    got = []
    for c in plain.clients:
        r = c.get("/raise-before")
        got.append((r.status_code, r.headers.get("connection")))
    assert got == [(500, "close"), (500, "close")]
    for which in ("evicorn", "gunicorn"):
        deadline = time.monotonic() + 5 * SCALE
        while "ValueError: plain error before start_response" not in plain.log(which):
            assert time.monotonic() < deadline, plain.log(which)
            time.sleep(0.05)


@pytest.mark.parametrize("path", ["/raise-after", "/exc-info-late?key=d-late",
                                  "/closing?key=d-raise&mode=raise"])
def test_plain_exceptions_after_the_headers_cut_the_response_alike(plain, path):
    results = [exchange(c, "GET", path, {}) for c in plain.clients]
    assert results[0] == results[1] == ("error", "RemoteProtocolError"), results


def test_plain_misbehaving_apps(plain):
    """Apps breaking PEP 3333 before anything was sent: evicorn answers
    500 for all. gunicorn agrees for a missing start_response and a header
    value with a line break; for a str body it sends the 200 headers before
    checking the type, and it sends them for a leading empty string
    (PEP 3333: not before the first non-empty one), so there it cuts a
    200 instead."""
    for kind in ("no-start", "bad-header"):
        got = [c.get("/misbehave", params={"kind": kind}) for c in plain.clients]
        assert [(r.status_code, r.headers.get("connection")) for r in got] == [
            (500, "close"), (500, "close")], kind
        assert "injected" not in got[0].headers
    for kind in ("str-item", "empty-then-raise"):
        ev, gu = (exchange(c, "GET", "/misbehave?kind=" + kind, {}) for c in plain.clients)
        assert (ev.status, ev.body) == (500, b"Internal Server Error"), kind
        assert gu == ("error", "RemoteProtocolError"), kind
    r = same(plain, "GET", "/lazy")
    assert (r.status, r.body, r.headers["x-lazy"]) == (200, b"lazy body", "yes")


def test_plain_exc_info_before_the_headers(plain):
    """PEP 3333: start_response(..., exc_info) before anything was sent
    replaces the status and the headers. evicorn does; gunicorn replaces
    the status but keeps the first call's headers too (X-First, and
    Content-Type twice), so only the status and body are compared."""
    ev, gu = (exchange(c, "GET", "/exc-info-early", {}) for c in plain.clients)
    assert (ev.status, ev.body) == (gu.status, gu.body) == (503, b"replaced\n")
    assert ev.headers.get_list("content-type") == ["text/plain"]
    assert ev.headers.get("x-second") == "yes" and "x-first" not in ev.headers


def test_plain_head(plain):
    """No body from either. evicorn keeps the Content-Length the GET
    would have (RFC 9110 9.3.2); gunicorn, which would send the GET
    chunked, sends neither."""
    r = same(plain, "HEAD", "/hello", head=True)
    assert r.body == b""
    assert plain.clients[0].head("/hello").headers["content-length"] == "13"


# ---- the Flask app ------------------------------------------------------------------------

UPLOAD = os.urandom(2 * 1024 * 1024 + 3)
BIG = os.urandom(3 * 1024 * 1024 + 1)


def js(value):
    return lambda r: r.json() == value


# (method, path, httpx kwargs, expected status, check of the answer)
FLASK_CASES = [
    ("GET", "/", {}, 200, lambda r: r.body == b"Hello, Flask!"
     and r.key["content-type"] == ["text/html; charset=utf-8"]),
    ("GET", "/json", {}, 200, js({"message": "Hello, World!", "items": [1, 2, 3],
                                  "nested": {"ok": True}})),
    ("POST", "/form", {"data": {"name": "Ada", "tag": ["x", "y"]}}, 200,
     js({"fields": {"name": ["Ada"], "tag": ["x", "y"]},
         "content_type": "application/x-www-form-urlencoded"})),
    ("POST", "/upload", {"files": {"file": ("u.bin", UPLOAD, "application/octet-stream")},
                         "data": {"k": "v"}}, 200,
     js({"filename": "u.bin", "mimetype": "application/octet-stream", "size": len(UPLOAD),
         "sha256": hashlib.sha256(UPLOAD).hexdigest(), "fields": {"k": ["v"]}})),
    ("GET", "/redirect", {}, 302, lambda r: r.key["location"] == ["/json"]),
    ("GET", "/redirect/permanent", {}, 308,
     lambda r: r.key["location"] == ["https://example.com/new?x=1"]),
    ("GET", "/cookies/set", {}, 200, lambda r: len(r.key["set-cookie"]) == 2
     and r.key["set-cookie"][0].startswith("session=abc123;")),
    ("GET", "/cookies", {"headers": {"Cookie": "session=s1; theme=blue"}}, 200,
     js({"session": "s1", "theme": "blue"})),
    ("GET", "/nowhere", {}, 404, lambda r: b"<h1>Not Found</h1>" in r.body),
    ("GET", "/form", {}, 405, lambda r: r.key["allow"] == [["OPTIONS", "POST"]]),
    ("POST", "/methods", {}, 405, lambda r: b"Method Not Allowed" in r.body
     and r.key["allow"] == [["DELETE", "GET", "HEAD", "OPTIONS", "PUT"]]),
    ("GET", "/abort", {}, 500, lambda r: b"<h1>Internal Server Error</h1>" in r.body),
    ("GET", "/boom", {}, 500, lambda r: b"<h1>Internal Server Error</h1>" in r.body),
    ("GET", "/teapot", {}, 418, lambda r: r.json() == {"detail": "short and stout"}
     and r.key["x-custom"] == ["tea"]),
    ("GET", "/stream?n=6&tag=z", {}, 200,
     lambda r: r.body == b"".join(b"line %d of z\n" % i for i in range(6)) and r.chunked),
    ("GET", "/args?a=1&b=x%20y&b=3", {}, 200,
     js({"args": {"a": ["1"], "b": ["x y", "3"]}, "path": "/args",
         "full_path": "/args?a=1&b=x%20y&b=3"})),
    ("POST", "/body", {"content": BIG}, 200,
     js({"length": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest(),
         "content_length": len(BIG)})),
    ("POST", "/body", {"content": pieces(BIG, 100000)}, 200,
     js({"length": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest(),
         "content_length": None})),
    ("POST", "/body", {"content": b""}, 200,
     js({"length": 0, "sha256": hashlib.sha256(b"").hexdigest(), "content_length": 0})),
    ("GET", "/large?size=500000", {}, 200, lambda r: r.body == b"x" * 500000),
    ("GET", "/headers", {"headers": {"User-Agent": "diff/1", "X-Token": "tk",
                                     "Host": "example.org"}}, 200,
     lambda r: r.json() == {"user_agent": "diff/1", "x_token": "tk", "host": "example.org",
                            "scheme": "http", "remote_addr": "127.0.0.1"}
     and r.key["cache-control"] == ["no-store"]),
    # both trust X-Forwarded-Proto from 127.0.0.1 by default
    ("GET", "/headers", {"headers": {"X-Forwarded-Proto": "https", "Host": "example.org"}},
     200, lambda r: r.json()["scheme"] == "https"),
    ("PUT", "/methods", {}, 200, js({"method": "PUT"})),
    ("DELETE", "/methods", {}, 200, js({"method": "DELETE"})),
    ("OPTIONS", "/json", {}, 200, lambda r: r.key["allow"] == [["GET", "HEAD", "OPTIONS"]]),
]


@needs_flask
@pytest.mark.parametrize("method,path,kw,status,check", FLASK_CASES,
                         ids=["%s %s" % (c[0], c[1]) for c in FLASK_CASES])
def test_flask_same_answer_as_gunicorn(flask, method, path, kw, status, check):
    r = same(flask, method, path, **kw)
    assert r.status == status, r
    assert check(r), r


@needs_flask
def test_flask_head(flask):
    r = same(flask, "HEAD", "/", head=True)
    assert (r.status, r.body) == (200, b"")
    # Werkzeug sets the length itself, and both keep it for HEAD
    for c in flask.clients:
        assert c.head("/").headers["content-length"] == "13"


@needs_flask
def test_flask_view_exception_is_logged_by_both(flask):
    for c in flask.clients:
        assert c.get("/boom").status_code == 500
    for which in ("evicorn", "gunicorn"):
        deadline = time.monotonic() + 5 * SCALE
        while "RuntimeError: flask view failed" not in flask.log(which):
            assert time.monotonic() < deadline, flask.log(which)
            time.sleep(0.05)


@needs_flask
def test_flask_status_codes_as_gunicorn_with_rfc_reason_phrases(flask):
    """Same status code; evicorn's reason phrase is RFC 9110's where
    gunicorn echoes Werkzeug's upper-case one (informative only)."""
    got = [c.get("/nowhere") for c in flask.clients]
    assert [r.status_code for r in got] == [404, 404]
    assert [r.reason_phrase for r in got] == ["Not Found", "NOT FOUND"]


def test_forwarded_for_is_applied_by_evicorn_only(plain):
    """A documented difference, not a bug: evicorn (as uvicorn) puts a
    trusted proxy's X-Forwarded-For into REMOTE_ADDR; gunicorn leaves
    REMOTE_ADDR the peer's and only reads X-Forwarded-Proto (apps use
    werkzeug's ProxyFix for the rest)."""
    got = []
    for c in plain.clients:
        env = c.get("/environ", headers={"X-Forwarded-For": "203.0.113.7",
                                         "X-Forwarded-Proto": "https"}).json()
        got.append((env["str"]["REMOTE_ADDR"], env["checks"]["wsgi.url_scheme"]))
    assert got == [("203.0.113.7", "https"), ("127.0.0.1", "https")]
