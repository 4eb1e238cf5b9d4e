"""examples/proxy (a streaming reverse proxy over the SDK's
evicorn_fetch_proxy) and examples/external over HTTPS, against real
upstreams: upstreams.py's nginx (HTTP, and HTTPS with a CA of its own) for
files and TLS, and a small Python HTTP server in its own process (free
127.0.0.1 port, stopped by PID) for the headers nginx never sends.

What a gateway owes its client (RFC 9110 7.6): the upstream's status,
end-to-end headers and body unchanged; hop-by-hop headers (and those the
Connection header names) dropped in both directions; a Via entry added;
a body of any size streamed at the client's pace; 502 (with a detail) when
the upstream cannot be reached. Without EVICORN_PROXY_UPSTREAM the plugin
refuses to load with one line.
"""
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from evicorn_harness import Conn
from upstreams import Nginx, tricky

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.normpath(os.path.join(HERE, "..", "..", "build"))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(BUILD, "plugins")

# The upstream: an HTTP/1.1 server (threads).
#   /answer/...  201 (or ?status=N) with the request it saw as JSON, and
#                end-to-end and hop-by-hop headers of every kind;
#   /big/N       N bytes (Content-Length), recording how many were sent;
#   /sent        how many bytes of the last /big were written so far, and
#                whether the connection was closed before the end;
#   /data        a JSON document;
#   /gz          a gzip-encoded JSON document naming the Accept-Encoding seen.
UPSTREAM = r'''
import gzip, http.server, json, sys
port = int(sys.argv[1])
state = {"sent": 0, "aborted": False}
DATA = json.dumps({"answer": 42}).encode()
CHUNK = bytes(range(256)) * 256

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path.startswith("/big/"):
            n = int(path[5:])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            state["sent"], state["aborted"] = 0, False
            try:
                while state["sent"] < n:
                    w = min(len(CHUNK), n - state["sent"])
                    self.wfile.write(CHUNK[:w])
                    state["sent"] += w
            except OSError:  # the proxy closed the connection
                state["aborted"] = True
                self.close_connection = True
        elif path == "/sent":
            self.reply(200, json.dumps(state).encode())
        elif path == "/data":
            self.reply(200, DATA)
        elif path == "/gz":
            doc = {"answer": 42, "accept-encoding": self.headers.get("Accept-Encoding")}
            self.reply(200, gzip.compress(json.dumps(doc).encode()),
                       extra=[("Content-Encoding", "gzip")])
        else:
            status = 201
            for item in query.split("&"):
                if item.startswith("status="):
                    status = int(item[7:])
            seen = {"method": self.command, "path": path, "query": query,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()]}
            self.reply(status, json.dumps(seen).encode(), extra=[
                ("X-Upstream", "yes"), ("Cache-Control", "max-age=60"), ("ETag", '"v1"'),
                ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                ("Connection", "X-Hop"), ("X-Hop", "dropped"), ("Keep-Alive", "timeout=5"),
                ("Proxy-Authenticate", "Basic"), ("Trailer", "X-Sum"),
                ("Via", "1.0 cache-1")])

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Upstream:
    """The upstream process on a free port; stop() ends it by PID."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise AssertionError("upstream did not start: %r" % self.proc.stderr.read())

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def sent(self):
        """Bytes of the last /big written so far."""
        return self.state()["sent"]

    def state(self):
        return httpx.get(self.url("/sent"), timeout=5).json()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def nginx():
    with Nginx() as ng:
        yield ng


@pytest.fixture
def plugin_dir():
    d = tempfile.mkdtemp(prefix="evicorn-proxy-plugins-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def serve(make_server, plugin_dir):
    """serve(name): a server whose plugins folder holds only examples/<name>,
    once it is loaded (or refused, loaded=False). At the end of the test
    each is stopped, and fails the test if a sanitizer reported."""
    started = []

    def start(name, loaded=True):
        src = os.path.join(PLUGINS, name + ".so")
        assert os.path.isfile(src), "%s is not built" % src
        shutil.copy(src, os.path.join(plugin_dir, name + ".so"))
        srv = make_server(plugins=plugin_dir)
        started.append(srv)
        regex = r"plugin %s\.so: loaded" % name if loaded else r"plugin \S+/%s\.so refused" % name
        assert srv.wait_for_log(regex, timeout=5.0), srv.output()
        return srv

    yield start
    for srv in started:
        srv.stop()
        reports = [line for line in srv.stderr.snapshot()
                   if "Sanitizer" in line or "runtime error:" in line]
        assert not reports, srv.output()


@pytest.fixture
def proxy(serve, upstream, monkeypatch):
    monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", upstream.url())
    return serve("proxy")


def raw_get(srv, target, headers=()):
    req = "GET %s HTTP/1.1\r\nHost: client.example\r\n%s\r\n" % (
        target, "".join("%s: %s\r\n" % h for h in headers))
    with Conn.tcp(srv.port, timeout=10) as c:
        return c.request(req.encode("latin-1"))


def seen_by_upstream(r):
    doc = json.loads(r.body)
    doc["headers"] = {k: v for k, v in doc["headers"]}
    return doc


# --------------------------------------------------------------------------
# examples/proxy


def test_status_headers_and_body_pass_through(proxy):
    r = raw_get(proxy, "/proxy/answer?status=203")
    assert r.status == 203, r
    assert r.header("content-type") == "application/json"
    assert r.header("x-upstream") == "yes"
    assert r.header("cache-control") == "max-age=60"
    assert r.header("etag") == '"v1"'
    assert r.header_all("set-cookie") == ["a=1", "b=2"]
    assert r.header("content-length") == str(len(r.body))
    assert seen_by_upstream(r)["path"] == "/answer"


def test_an_upstream_error_status_is_passed_not_replaced(proxy):
    r = raw_get(proxy, "/proxy/answer?status=404")
    assert r.status == 404, r
    assert r.header("x-upstream") == "yes"


def test_hop_by_hop_response_headers_are_removed(proxy):
    r = raw_get(proxy, "/proxy/answer")
    names = {n for n, _ in r.headers}
    for hop in ("x-hop", "keep-alive", "proxy-authenticate", "trailer"):
        assert hop not in names, r
    assert r.header("connection") in (None, "keep-alive"), r


def test_via_is_appended_to_the_upstreams(proxy):
    r = raw_get(proxy, "/proxy/answer")
    assert r.header("via") == "1.0 cache-1, 1.1 evicorn", r


def test_path_and_query_reach_the_upstream_as_sent(proxy):
    r = raw_get(proxy, "/proxy/answer/a%2Fb/c%20d?x=1&y=%20z&x=2")
    seen = seen_by_upstream(r)
    assert seen["path"] == "/answer/a%2Fb/c%20d"
    assert seen["query"] == "x=1&y=%20z&x=2"
    assert seen["method"] == "GET"


def test_safe_request_headers_are_forwarded_and_hop_by_hop_ones_are_not(proxy, upstream):
    r = raw_get(proxy, "/proxy/answer", headers=[
        ("X-Custom", "abc"), ("Accept", "application/json"), ("Cookie", "c=1"),
        ("User-Agent", "proxy-test"), ("Connection", "keep-alive, X-Drop-Me"),
        ("X-Drop-Me", "1"), ("Keep-Alive", "300"), ("Proxy-Authorization", "Basic eDp5"),
        ("TE", "trailers"), ("Via", "1.1 edge")])
    h = seen_by_upstream(r)["headers"]
    assert h["x-custom"] == "abc"
    assert h["accept"] == "application/json"
    assert h["cookie"] == "c=1"
    assert h["user-agent"] == "proxy-test"
    assert h["host"] == "127.0.0.1:%d" % upstream.port  # the upstream's, not the client's
    assert h["via"] == "1.1 edge, 1.1 evicorn"
    for hop in ("x-drop-me", "keep-alive", "proxy-authorization", "te"):
        assert hop not in h, h
    assert "x-drop-me" not in h.get("connection", "").lower(), h


def test_the_upstream_base_may_have_a_path(serve, upstream, monkeypatch):
    monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", upstream.url("/answer/v1/"))
    srv = serve("proxy")
    seen = seen_by_upstream(raw_get(srv, "/proxy/items/7?q=1"))
    assert (seen["path"], seen["query"]) == ("/answer/v1/items/7", "q=1")


@pytest.mark.parametrize("target", ["/proxy/a/../../secret", "/proxy/a/%2E%2E/secret",
                                    "/proxy/./x"])
def test_dot_segments_are_refused(proxy, target):
    """'..' could climb out of the upstream's base path."""
    r = raw_get(proxy, target)
    assert r.status == 400, r


def test_head_is_proxied_without_a_body(proxy):
    with Conn.tcp(proxy.port, timeout=10) as c:
        r = c.request(b"HEAD /proxy/data HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        assert r.status == 200, r
        assert r.header("content-type") == "application/json"
        # The connection is still in step.
        assert c.request(b"GET /proxy/data HTTP/1.1\r\nHost: x\r\n\r\n").status == 200


def test_a_large_body_streams_through_whole(serve, nginx, monkeypatch):
    monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", nginx.url(""))
    srv = serve("proxy")
    got, size = hashlib.sha256(), 0
    with httpx.stream("GET", "http://127.0.0.1:%d/proxy/big" % srv.port, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(Nginx.BIG)
        assert r.headers["via"] == "1.1 evicorn"
        for piece in r.iter_raw():
            got.update(piece)
            size += len(piece)
    assert size == Nginx.BIG
    assert got.hexdigest() == nginx.big_sha256


def test_an_encoded_body_passes_through_encoded(proxy):
    """The proxy does not decode: the client asked for gzip and gets the
    upstream's gzip bytes, with their Content-Encoding and length."""
    r = raw_get(proxy, "/proxy/gz", headers=[("Accept-Encoding", "gzip")])
    assert r.status == 200, r
    assert r.header("content-encoding") == "gzip", r
    assert r.header("content-length") == str(len(r.body))
    assert json.loads(gzip.decompress(r.body)) == {"answer": 42, "accept-encoding": "gzip"}


def test_a_slow_client_holds_the_upstream_back(proxy, upstream):
    """While the client reads nothing, the upstream is not read either: it
    gets stuck after what the sockets and buffers on the way can hold, not
    after the whole body."""
    n = 256 * 1024 * 1024
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /proxy/big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(2.0)
        stuck = upstream.sent()
        time.sleep(0.5)
        assert upstream.sent() == stuck  # nothing moves while the client sleeps
        assert stuck < n // 4, stuck
        # Reading again lets it flow.
        got = 0
        while got < 8 * 1024 * 1024:
            got += len(s.recv(1 << 20))
        assert upstream.sent() > stuck
    finally:
        s.close()


def test_a_client_that_leaves_cancels_the_upstream_request(proxy, upstream):
    n = 256 * 1024 * 1024
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(b"GET /proxy/big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(1.0)  # the proxy is paused, waiting for this client
    s.close()
    deadline = time.monotonic() + 5
    while not upstream.state()["aborted"] and time.monotonic() < deadline:
        time.sleep(0.1)
    st = upstream.state()
    assert st["aborted"] and st["sent"] < n, st
    r = raw_get(proxy, "/proxy/answer")  # and the worker goes on serving
    assert r.status == 201, r


def test_upstream_down_is_502_with_a_detail(serve, monkeypatch):
    monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", "http://127.0.0.1:%d" % free_port())
    srv = serve("proxy")
    r = raw_get(srv, "/proxy/anything")
    assert r.status == 502, r
    assert r.header("content-type") == "application/json"
    doc = json.loads(r.body)
    assert list(doc) == ["detail"] and doc["detail"].startswith("upstream request failed: "), doc


def test_an_upstream_too_slow_to_answer_is_504(serve, monkeypatch):
    with tricky() as t:
        monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", t.url(""))
        monkeypatch.setenv("EVICORN_PROXY_TIMEOUT", "0.5")
        srv = serve("proxy")
        r = raw_get(srv, "/proxy/slow-head?delay=3")
    assert r.status == 504, r
    assert json.loads(r.body)["detail"].startswith("upstream request timed out: ")


def test_an_upstream_that_fails_after_its_head_cuts_the_response_short(serve, monkeypatch):
    """The upstream's head (200, Content-Length: 1000000) and 64 KiB were
    passed on, then it reset the connection: all the proxy can do is close
    the client's connection too, so the client sees an incomplete body,
    never a complete one."""
    with tricky() as t:
        monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", t.url(""))
        srv = serve("proxy")
        with Conn.tcp(srv.port, timeout=10) as c:
            c.send(b"GET /proxy/reset HTTP/1.1\r\nHost: x\r\n\r\n")
            data = c.read_until_close(timeout=10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:300]
    assert b"content-length: 1000000" in head.lower()
    assert 0 < len(body) < 1000000
    assert srv.wait_for_log(r"upstream response cut off", 5.0), srv.output()


def test_without_an_upstream_the_plugin_refuses_with_one_line(serve, monkeypatch):
    monkeypatch.delenv("EVICORN_PROXY_UPSTREAM", raising=False)
    srv = serve("proxy", loaded=False)
    time.sleep(0.3)
    lines = [l for l in srv.stderr.snapshot() if "proxy.so" in l]
    assert len(lines) == 1, lines
    assert "startup failed: no upstream configured: set EVICORN_PROXY_UPSTREAM" in lines[0]
    assert raw_get(srv, "/proxy/x").status == 404


# --------------------------------------------------------------------------
# examples/external over HTTPS


def test_external_fetches_an_https_url(serve, nginx, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", nginx.ca_file)
    monkeypatch.setenv("EVICORN_EXTERNAL_API_URL", nginx.surl("/data"))
    srv = serve("external")
    r = raw_get(srv, "/external-api")
    assert r.status == 200, r
    assert json.loads(r.body) == json.loads(nginx.data)


def test_external_refuses_an_untrusted_certificate_with_502(serve, nginx,
                                                            monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the system's store: not nginx's CA
    monkeypatch.setenv("EVICORN_EXTERNAL_API_URL", nginx.surl("/data"))
    srv = serve("external")
    r = raw_get(srv, "/external-api")
    assert r.status == 502, r
    detail = json.loads(r.body)["detail"]
    assert detail.startswith("upstream request failed: ") and "TLS" in detail, detail


def test_proxy_to_an_https_upstream(serve, nginx, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", nginx.ca_file)
    monkeypatch.setenv("EVICORN_PROXY_UPSTREAM", nginx.surl(""))
    srv = serve("proxy")
    r = raw_get(srv, "/proxy/data")
    assert r.status == 200, r
    assert r.body == nginx.data
    # nginx answered over HTTP/2 (ALPN): the Via entry says so
    assert r.header("via") == "2 evicorn", r
