"""The example plugins (examples/) and the SDK under them, black-box.

Each example must answer exactly as the FastAPI seed it replaces: bodies to
the byte, content types, statuses, and timing (async waits do not block,
sync work does not stall the loop). The SDK's conversions are checked
against FastAPI itself: the test-only plugin tests/plugins/sdk_probe and an
equivalent FastAPI app get the same requests and must give the same
answers.
"""
import asyncio
import concurrent.futures
import json
import os
import random
import re
import resource
import socket
import threading
import time

import httpx
import pytest

from evicorn_harness import Server, get, time_scale

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.normpath(os.path.join(HERE, "..", "..", "build"))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(BUILD, "plugins")
SDK_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(PLUGINS)), "test-plugins-sdk")
EXAMPLES = ("hello", "weather", "calculate", "external", "tasks")

HELLO_ROOT = b'{"Hello":"World"}'
HELLO_JSON = b'{"message":"Hello, World!"}'


def py_json(value):
    """Bytes of value as FastAPI's JSONResponse writes it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def raise_fd_limit(want=8192):
    """Room for 1000+ sockets here and in the server (which inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


raise_fd_limit()

# The database examples (techempower, todo) serve only with a database
# configured; here none is, so each is skipped with one log line while the
# others serve (test_database_examples_skipped_with_one_line).
for _var in ("DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE"):
    os.environ.pop(_var, None)
NO_DATABASE_RE = re.compile(r"plugin \S+/(techempower|todo)\.so refused: startup failed: "
                            r"no database configured")


# examples/proxy is refused the same way without EVICORN_PROXY_UPSTREAM.
NO_UPSTREAM_RE = re.compile(r"plugin \S+/proxy\.so refused: startup failed: "
                            r"no upstream configured")


def unexpected_errors(srv):
    return [l for l in srv.stderr.snapshot()
            if ("ERROR" in l or "CRITICAL" in l) and not NO_DATABASE_RE.search(l)
            and not NO_UPSTREAM_RE.search(l)]


def start(make_server, *args, plugins=PLUGINS, names=EXAMPLES):
    """A server on the given plugins folder, once every plugin is loaded."""
    for name in names:
        path = os.path.join(plugins, name + ".so")
        assert os.path.isfile(path), "%s is not built" % path
    srv = make_server("--plugins", plugins, *args)
    for name in names:
        m = srv.wait_for_log(r"plugin %s\.so: loaded" % name, timeout=5.0)
        assert m, "%s.so did not load\n%s" % (name, srv.output())
    return srv


def client(srv, timeout=10.0):
    return httpx.Client(base_url="http://127.0.0.1:%d" % srv.port, timeout=timeout)


@pytest.fixture
def examples(make_server):
    return start(make_server)


# --------------------------------------------------------------------------
# hello


@pytest.mark.parametrize("path,ctype,body", [
    ("/", "application/json", HELLO_ROOT),
    ("/plaintext", "text/plain; charset=utf-8", b"Hello, World!"),
    ("/json", "application/json", HELLO_JSON),
])
def test_hello_routes_answer_exact_bytes(examples, path, ctype, body):
    with examples.connect() as c:
        r = c.request(get(path))
    assert r.status == 200, r
    assert r.header("content-type") == ctype, r
    assert r.header("content-length") == str(len(body)), r
    assert r.body == body, r


def test_hello_serves_many_keepalive_requests_on_one_connection(examples):
    with examples.connect() as c:
        for i in range(200):
            r = c.request(get(["/", "/plaintext", "/json"][i % 3]))
            assert r.status == 200, r


def test_hello_head_has_no_body(examples):
    with examples.connect() as c:
        r = c.request(b"HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        assert r.status == 200, r
        assert r.header("content-length") == str(len(HELLO_JSON)), r
        # The connection is still in step: the next answer is whole.
        assert c.request(get("/")).body == HELLO_ROOT


# --------------------------------------------------------------------------
# weather


def weather_body(city):
    return py_json({"city": city, "temperature": "25°C"})


def test_weather_waits_one_second_then_names_the_city(examples):
    with examples.connect() as c:
        t0 = time.monotonic()
        r = c.request(get("/weather/Paris"))
        took = time.monotonic() - t0
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    assert r.body == weather_body("Paris"), r
    assert "°".encode() in r.body
    assert 1.0 <= took < 1.5, took


@pytest.mark.parametrize("raw,city", [
    ("/weather/S%C3%A3o%20Paulo", "São Paulo"),
    ("/weather/%E6%9D%B1%E4%BA%AC", "東京"),
    ("/weather/a%22b%5Cc%09d", 'a"b\\c\td'),
])
def test_weather_city_is_decoded_and_json_escaped(examples, raw, city):
    with examples.connect() as c:
        r = c.request(get(raw))
    assert r.status == 200, r
    assert r.body == weather_body(city), r
    assert json.loads(r.body)["city"] == city


def test_weather_utf8_city_through_an_ordinary_client(examples):
    with client(examples) as cl:
        r = cl.get("/weather/Zürich")
    assert r.status_code == 200
    assert r.content == weather_body("Zürich")


def test_database_examples_skipped_with_one_line(examples):
    """Without a database the PostgreSQL examples are refused with one line
    each saying what to set, and everything else serves."""
    for name in ("techempower", "todo"):
        assert examples.wait_for_log(r"plugin \S+/%s\.so refused" % name, 5.0), examples.output()
    lines = [l for l in examples.stderr.snapshot() if NO_DATABASE_RE.search(l)]
    assert sorted(NO_DATABASE_RE.search(l).group(1) for l in lines) == ["techempower", "todo"], \
        examples.output()
    assert all("set DATABASE_URL" in l for l in lines)
    with examples.connect() as c:
        assert c.request(get("/json")).body == HELLO_JSON
        assert c.request(get("/db")).status == 404


def test_weather_client_leaving_early_is_harmless(examples):
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", examples.port), timeout=2)
        s.sendall(get("/weather/gone"))
        s.close()
    time.sleep(1.3)  # past the timers of the requests that were left
    with examples.connect() as c:
        r = c.request(get("/json"))
    assert r.body == HELLO_JSON
    assert not unexpected_errors(examples), examples.output()


async def one_weather(port, city):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("GET /weather/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      % city).encode())
        await writer.drain()
        return await reader.read()  # until the server closes
    finally:
        writer.close()


async def many_weather(port, n):
    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(one_weather(port, "c%d" % i) for i in range(n)),
                       return_exceptions=True), timeout=10)
    return results, time.monotonic() - t0


def test_weather_1000_concurrent_requests_on_one_worker_take_one_second(make_server):
    srv = start(make_server, "--workers", "1", names=("weather",))
    results, took = asyncio.run(many_weather(srv.port, 1000))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    for i, raw in enumerate(results):
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), raw[:200]
        assert body == weather_body("c%d" % i), raw[:300]
    # Waiting in turn would take 1000 s; all at once, one second plus what
    # a shared, noisy machine adds to connecting and parsing 1000 clients.
    assert took < 3 * time_scale(), "1000 concurrent /weather requests took %.2f s" % took


# --------------------------------------------------------------------------
# calculate


def calculate(srv, body, ctype="application/json"):
    headers = {"content-type": ctype} if ctype else {}
    with client(srv) as cl:
        t0 = time.monotonic()
        r = cl.post("/calculate/", content=body, headers=headers)
        return r, time.monotonic() - t0


@pytest.mark.parametrize("body,answer", [
    (b'{"a":1,"b":2}', b'{"result":3}'),
    (b'{"a":1,"b":2.5}', b'{"result":3.5}'),
    (b'{"a":0.1,"b":0.2}', b'{"result":0.30000000000000004}'),
    (b'{"x":-7,"y":7}', b'{"result":0}'),
    (b'{"a":1.5e300,"b":1e300}', b'{"result":2.5e+300}'),
    (b'{}', b'{"result":0}'),
])
def test_calculate_sums_after_two_seconds_of_work(examples, body, answer):
    r, took = calculate(examples, body)
    assert r.status_code == 200, r.content
    assert r.headers["content-type"] == "application/json"
    assert r.content == answer
    assert took >= 2.0, took


VALIDATION_CASES = [
    ("a list is not a dict", b"[1,2]", "application/json",
     {"detail": [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]}),
    ("a string is not a dict", b'"x"', "application/json",
     {"detail": [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]}),
    ("a value that is not a number", b'{"a":1,"b":"x"}', "application/json",
     {"detail": [{"loc": ["body", "b"], "msg": "value is not a valid float",
                  "type": "type_error.float"}]}),
    ("every bad value is listed", b'{"a":[1],"b":2,"c":null}', "application/json",
     {"detail": [{"loc": ["body", "a"], "msg": "value is not a valid float",
                  "type": "type_error.float"},
                 {"loc": ["body", "c"], "msg": "none is not an allowed value",
                  "type": "type_error.none.not_allowed"}]}),
    ("no body", b"", "application/json",
     {"detail": [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]}),
    ("not JSON", b"nope", "application/json",
     {"detail": [{"loc": ["body", 0], "msg": "Expecting value: line 1 column 1 (char 0)",
                  "type": "value_error.jsondecode",
                  "ctx": {"msg": "Expecting value", "doc": "nope", "pos": 0, "lineno": 1,
                          "colno": 1}}]}),
    ("truncated JSON", b'{"a": 1,\n "b": }', "application/json",
     {"detail": [{"loc": ["body", 15], "msg": "Expecting value: line 2 column 7 (char 15)",
                  "type": "value_error.jsondecode",
                  "ctx": {"msg": "Expecting value", "doc": '{"a": 1,\n "b": }', "pos": 15,
                          "lineno": 2, "colno": 7}}]}),
    ("a form body is bytes, not a dict", b'{"a":1}', "application/x-www-form-urlencoded",
     {"detail": [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]}),
]


@pytest.mark.parametrize("what,body,ctype,answer", VALIDATION_CASES,
                         ids=[c[0] for c in VALIDATION_CASES])
def test_calculate_refuses_bad_bodies_at_once_with_fastapis_422(examples, what, body, ctype,
                                                                answer):
    r, took = calculate(examples, body, ctype)
    assert r.status_code == 422, r.content
    assert r.headers["content-type"] == "application/json"
    assert r.json() == answer
    assert r.content == py_json(answer)
    assert took < 1.0, "validation must come before the work (%.2f s)" % took


def test_calculate_body_that_is_not_utf8_is_a_400(examples):
    r, _ = calculate(examples, b'{"a":"\xff"}')
    assert r.status_code == 400
    assert r.json() == {"detail": "There was an error parsing the body"}


def test_calculate_without_content_type_reads_json(examples):
    r, _ = calculate(examples, b'{"a":2,"b":2}', ctype=None)
    assert r.status_code == 200, r.content
    assert r.content == b'{"result":4}'


def test_calculate_wrong_method_is_405(examples):
    with client(examples) as cl:
        r = cl.get("/calculate/")
    assert r.status_code == 405


def test_loop_answers_under_100ms_while_the_pool_is_saturated(make_server):
    srv = start(make_server, "--threads", "2", names=("hello", "calculate"))
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        busy = [ex.submit(calculate, srv, b'{"a":%d}' % i) for i in range(4)]
        time.sleep(0.3)  # every pool thread is now asleep in a handler
        slowest = 0.0
        with srv.connect() as c:
            for _ in range(30):
                t0 = time.monotonic()
                r = c.request(get("/"))
                took = time.monotonic() - t0
                assert r.body == HELLO_ROOT
                slowest = max(slowest, took)
                time.sleep(0.05)
        assert not any(f.done() for f in busy), "the pool was not saturated"
        results = [f.result(timeout=15) for f in busy]
    assert slowest < 0.1, "GET / took %.0f ms while the pool was busy" % (slowest * 1000)
    assert sorted(r.content for r, _ in results) == [b'{"result":%d}' % i for i in range(4)]
    # Two threads, four jobs of 2 s: the last ones waited for a thread.
    assert max(t for _, t in results) >= 3.8


# --------------------------------------------------------------------------
# external


class Upstream:
    """A tiny HTTP server on 127.0.0.1 for the external example to call.
    mode: "json" (answers body as JSON), "text" (not JSON) or "silent"
    (accepts, reads, never answers). Every connection ends within 5 s."""

    def __init__(self, mode, body=b"{}", status=200):
        self.mode, self.body, self.status = mode, body, status
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.requests = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def url(self, path="/data"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def run(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                if self.mode == "silent":
                    self.stopping.wait(5)
                    return
                ctype = b"application/json" if self.mode == "json" else b"text/html"
                conn.sendall(b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s"
                             % (self.status, ctype, len(self.body), self.body))
            except OSError:
                pass

    def close(self):
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def upstreams():
    made = []

    def factory(*args, **kw):
        u = Upstream(*args, **kw)
        made.append(u)
        return u

    yield factory
    for u in made:
        u.close()


def external(srv):
    with client(srv) as cl:
        t0 = time.monotonic()
        r = cl.get("/external-api")
        return r, time.monotonic() - t0


def test_external_fetches_this_servers_json_by_default(make_server, monkeypatch):
    monkeypatch.delenv("EVICORN_EXTERNAL_API_URL", raising=False)
    monkeypatch.delenv("EVICORN_EXTERNAL_API_TIMEOUT", raising=False)
    srv = start(make_server)
    r, _ = external(srv)
    assert r.status_code == 200, r.content
    assert r.headers["content-type"] == "application/json"
    assert r.content == HELLO_JSON


def test_external_returns_the_upstream_json(make_server, monkeypatch, upstreams):
    doc = {"x": [1, 2.5, "é", None, True], "y": {"z": 0.1}}
    up = upstreams("json", body=json.dumps(doc).encode())
    monkeypatch.setenv("EVICORN_EXTERNAL_API_URL", up.url())
    srv = start(make_server, names=("external",))
    r, _ = external(srv)
    assert r.status_code == 200, r.content
    assert r.headers["content-type"] == "application/json"
    assert r.content == py_json(doc)
    assert up.requests == 1


def test_external_refused_upstream_is_502(make_server, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # bound but not listening: connections are refused
    try:
        monkeypatch.setenv("EVICORN_EXTERNAL_API_URL", "http://127.0.0.1:%d/json" % port)
        srv = start(make_server, names=("external",))
        r, took = external(srv)
    finally:
        s.close()
    assert r.status_code == 502, r.content
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert list(doc) == ["detail"] and doc["detail"].startswith("upstream request failed: ")
    assert took < 2.0


def test_external_silent_upstream_is_504_after_the_timeout(make_server, monkeypatch, upstreams):
    up = upstreams("silent")
    monkeypatch.setenv("EVICORN_EXTERNAL_API_URL", up.url())
    monkeypatch.setenv("EVICORN_EXTERNAL_API_TIMEOUT", "0.5")
    srv = start(make_server, names=("external",))
    r, took = external(srv)
    assert r.status_code == 504, r.content
    doc = r.json()
    assert list(doc) == ["detail"] and doc["detail"].startswith("upstream request timed out: ")
    assert 0.5 <= took < 2.0, took


def test_external_upstream_that_is_not_json_is_502(make_server, monkeypatch, upstreams):
    up = upstreams("text", body=b"<html>hi</html>")
    monkeypatch.setenv("EVICORN_EXTERNAL_API_URL", up.url())
    srv = start(make_server, names=("external",))
    r, _ = external(srv)
    assert r.status_code == 502, r.content
    assert r.json() == {"detail": "upstream answered with invalid JSON"}


def test_external_bad_timeout_setting_refuses_the_plugin(make_server, monkeypatch):
    monkeypatch.setenv("EVICORN_EXTERNAL_API_TIMEOUT", "soon")
    srv = make_server("--plugins", PLUGINS)
    m = srv.wait_for_log(r"external\.so refused: startup failed: .*EVICORN_EXTERNAL_API_TIMEOUT",
                         timeout=5)
    assert m, srv.output()
    assert srv.wait_for_log(r"plugin hello\.so: loaded", timeout=5)


# --------------------------------------------------------------------------
# tasks


def wait_for_lines(path, n, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")[:-1]
        except FileNotFoundError:
            lines = []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_tasks_answers_at_once_then_logs_the_email(make_server, monkeypatch, tmp_path):
    log = tmp_path / "notes.log"
    monkeypatch.setenv("EVICORN_NOTIFICATION_LOG", str(log))
    srv = start(make_server, names=("tasks",))
    with client(srv) as cl:
        t0 = time.monotonic()
        r = cl.post("/send-notification/alice@example.com")
        took = time.monotonic() - t0
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == b'{"message":"Notification sent in the background"}'
    assert took < 0.5
    t1 = time.monotonic()
    assert wait_for_lines(log, 1, 1.0) == [b"alice@example.com"]
    assert time.monotonic() - t1 < 1.0


def test_tasks_concurrent_notifications_keep_whole_lines(make_server, monkeypatch, tmp_path):
    log = tmp_path / "notes.log"
    monkeypatch.setenv("EVICORN_NOTIFICATION_LOG", str(log))
    srv = start(make_server, "--workers", "2", names=("tasks",))
    emails = ["user%03d@example.com" % i for i in range(60)]
    with concurrent.futures.ThreadPoolExecutor(12) as ex, client(srv) as cl:
        codes = list(ex.map(lambda e: cl.post("/send-notification/" + e).status_code, emails))
    assert codes == [200] * len(emails)
    lines = wait_for_lines(log, len(emails), 3.0)
    assert sorted(lines) == sorted(e.encode() for e in emails)


def test_tasks_newline_in_the_address_cannot_forge_a_line(make_server, monkeypatch, tmp_path):
    log = tmp_path / "notes.log"
    monkeypatch.setenv("EVICORN_NOTIFICATION_LOG", str(log))
    srv = start(make_server, names=("tasks",))
    with srv.connect() as c:
        r = c.request(b"POST /send-notification/a%0Ab@c HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 0\r\n\r\n")
    assert r.status == 200, r
    assert wait_for_lines(log, 1, 1.0) == [b"a b@c"]


# --------------------------------------------------------------------------
# The SDK against FastAPI itself


def fastapi_reference():
    """A FastAPI app with the endpoints sdk_probe.c mirrors."""
    from typing import Any, Dict, List, Optional

    from fastapi import Body, FastAPI, Query
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/sdk/items/{item_id}")
    def items(item_id: int, q: float = 1.0, flag: bool = False, s: Optional[str] = None):
        return {"item_id": item_id, "q": q, "flag": flag, "s": s}

    @app.get("/sdk/price/{price}")
    def price(price: float, n: int):
        return {"price": price, "n": n}

    @app.get("/sdk/tags")
    def tags(tag: List[str] = Query([])):
        return {"tag": tag}

    @app.post("/sdk/echo")
    def echo(body: Any = Body(...)):
        return body

    @app.post("/sdk/floats")
    def floats(data: Dict[str, float]):
        return {"result": sum(data.values())}

    return TestClient(app)


@pytest.fixture(scope="module")
def probe():
    """(evicorn with sdk_probe.so, FastAPI's TestClient) for the module."""
    path = os.path.join(SDK_PLUGINS, "sdk_probe.so")
    assert os.path.isfile(path), ("%s is not built (tests/plugins/sdk_probe/CMakeLists.txt "
                                  "must be added to the build)" % path)
    srv = Server("--plugins", SDK_PLUGINS).start()
    try:
        assert srv.wait_for_log(r"plugin sdk_probe\.so: loaded", timeout=5), srv.output()
        with fastapi_reference() as ref:
            yield srv, ref
    finally:
        srv.stop()


def ask_both(probe, method, target, body=b"", ctype="application/json"):
    """Sends the same request to evicorn and to FastAPI; returns both
    (status, content-type, body)."""
    srv, ref = probe
    head = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, target)
    if ctype:
        head += "Content-Type: %s\r\n" % ctype
    if method == "POST":
        head += "Content-Length: %d\r\n" % len(body)
    with srv.connect() as c:
        r = c.request(head.encode("latin-1") + b"\r\n" + body)
    mine = (r.status, r.header("content-type"), r.body)
    headers = {"content-type": ctype} if ctype else {}
    fr = ref.request(method, target, content=body if method == "POST" else None,
                     headers=headers)
    theirs = (fr.status_code, fr.headers.get("content-type"), fr.content)
    return mine, theirs


PARAM_TARGETS = [
    "/sdk/items/1",
    "/sdk/items/42?q=2.5&flag=yes&s=hello",
    "/sdk/items/abc?q=x&flag=maybe",
    "/sdk/items/1.0",
    "/sdk/items/%2B3",
    "/sdk/items/-3?q=%2B2.5",
    "/sdk/items/1_000?q=1_0.5",
    "/sdk/items/1__0",
    "/sdk/items/_1",
    "/sdk/items/%201%20",
    "/sdk/items/1?q=",
    "/sdk/items/1?q=.5&flag=TRUE",
    "/sdk/items/1?q=5.&flag=Off",
    "/sdk/items/1?q=1e3&flag=on&flag=off",
    "/sdk/items/1?flag=2",
    "/sdk/items/1?flag=",
    "/sdk/items/1?q=0x10",
    "/sdk/items/1?q=1e",
    "/sdk/items/1?q=0.1",
    "/sdk/items/1?q=1e16",
    "/sdk/items/1?q=1e-5",
    "/sdk/items/1?q=0.0001",
    "/sdk/items/1?q=123456789.123456789",
    "/sdk/items/1?q=1e22",
    "/sdk/items/1?q=-0.0",
    "/sdk/items/1?q=5e-324",
    "/sdk/items/1?q=1.7976931348623157e308",
    "/sdk/items/1?q=1234567890123456.7",
    "/sdk/items/1?s=a+b%20c%2Bd&s=last",
    "/sdk/items/1?s=%E2%82%AC",
    "/sdk/items/1?s=%FF%E2%82",
    "/sdk/items/1?s",
    "/sdk/items/1?&&s=x&&",
    "/sdk/price/9.99?n=3",
    "/sdk/price/cheap",
    "/sdk/price/nan?n=1",
    "/sdk/price/1?n=1.5",
    "/sdk/tags",
    "/sdk/tags?tag=a&tag=b+c&tag=",
]


@pytest.mark.parametrize("target", PARAM_TARGETS)
def test_sdk_parameters_convert_as_fastapi_does(probe, target):
    if "nan" in target:
        # FastAPI cannot send NaN back (it answers 500); check ours alone.
        srv, _ = probe
        with srv.connect() as c:
            r = c.request(get(target))
        assert r.status == 500, r
        return
    mine, theirs = ask_both(probe, "GET", target, ctype=None)
    assert mine == theirs


def test_sdk_integers_beyond_64_bits_are_not_valid(probe):
    # A documented limit: Python's ints have no size, ours are long long.
    srv, _ = probe
    with srv.connect() as c:
        r = c.request(get("/sdk/items/99999999999999999999"))
    assert r.status == 422, r
    assert json.loads(r.body) == {"detail": [{"loc": ["path", "item_id"],
                                              "msg": "value is not a valid integer",
                                              "type": "type_error.integer"}]}


BODY_CASES = [
    b'{"a":1,"b":[true,false,null],"c":{"d":"\xc3\xa9\\u00e9\\n\\u0000"}}',
    b'{"a":1,"b":2,"a":3}',
    b'[0.1, 1e16, 1E-5, -0.0, -0, 12345678901234567, 2.5e-300]',
    b'"\\ud83d\\ude00 \\/ \\"q\\" \\t\\u001f"',
    b'  42  ',
    b'\xef\xbb\xbf{"bom":1}',
    b"", b" ", b"nope", b"{", b"[", b"{}x", b"[1,]", b"[1 2]", b'{"a" 1}', b'{"a":1,}',
    b'{a:1}', b"{'a':1}", b'{"a":}', b'["a\x01"]', b'"\\x"', b'"\\u12"', b'"\\u12x4"',
    b'"\\ud800\\uzzzz"', b'"abc', b'"abc\\', b'tru', b'nul', b'-', b'-x', b'01', b'1.', b'.5',
    b'1e', b'1e+', b'[1,2', b'{"a":[1,{"b":}]}', b'\n\n  {"x": [1,\n 2,,]}',
    b'{"\xc3\xa9": "\xe2\x82\xac", "k": x}', b'"\xe6\x9d\xb1\xe4\xba\xac"x',
    b'\xff', b'{"a":"\xff"}',
]


def python_can_echo(body):
    """Whether FastAPI answers the echo at all (it crashes on NaN, huge
    numbers and lone surrogates, which JSON cannot carry back)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return True
    try:
        py_json(doc)
    except (ValueError, UnicodeEncodeError):
        return False

    def fits(v):
        if isinstance(v, bool) or v is None or isinstance(v, (str, float)):
            return True
        if isinstance(v, int):
            return -2 ** 63 <= v < 2 ** 63
        if isinstance(v, list):
            return all(fits(x) for x in v)
        return all(fits(x) for x in v.values())

    return fits(doc)


@pytest.mark.parametrize("body", BODY_CASES)
def test_sdk_json_bodies_and_errors_match_fastapi(probe, body):
    assert python_can_echo(body)
    mine, theirs = ask_both(probe, "POST", "/sdk/echo", body)
    assert mine == theirs


def mutations(seed, count):
    """Broken JSON documents made from valid ones, reproducibly."""
    rng = random.Random(seed)
    seeds = [
        '{"name": "Widget", "price": 9.99, "tags": ["a", "b"], "stock": {"n": 3}}',
        '[1, -2.5e3, true, false, null, "x\\ny", {"k": []}]',
        '{"nested": {"deeper": [{"deepest": "é€😀"}]}, "n": 0}',
    ]
    alphabet = '{}[]:,"\\ 0123456789.eE+-tfnaulrsx\n\tü'
    out = []
    while len(out) < count:
        doc = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(doc))
            op = rng.randrange(3)
            if op == 0:
                del doc[i]
            elif op == 1:
                doc.insert(i, rng.choice(alphabet))
            else:
                doc[i] = rng.choice(alphabet)
        body = "".join(doc).encode("utf-8")
        if python_can_echo(body):
            out.append(body)
    return out


def test_sdk_json_errors_match_fastapi_on_300_mutated_documents(probe):
    mismatches = []
    for body in mutations(20240501, 300):
        mine, theirs = ask_both(probe, "POST", "/sdk/echo", body)
        if mine != theirs:
            mismatches.append((body, mine, theirs))
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize("body,ctype", [
    (b'{"a":1,"b":"2.5","c":true}', "application/json"),
    (b'{"a":"x","b":null,"c":[1]}', "application/json"),
    (b'{"a":" 1_0 ","b":"inf"}', "application/json"),
    (b'[1, 2]', "application/json"),
    (b"{}", "application/json"),
    (b'{"a":1}', "text/plain"),
    (b'{"a":1}', "application/vnd.api+json; charset=utf-8"),
    (b'{"a":1}', "Application/JSON"),
    (b'{"a":1}', "nonsense"),
    (b'{"a":1}', None),
])
def test_sdk_float_coercion_matches_pydantic(probe, body, ctype):
    if b"inf" in body:
        # FastAPI cannot answer an infinite sum; ours refuses it too.
        srv, _ = probe
        with srv.connect() as c:
            r = c.request(b"POST /sdk/floats HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert r.status == 500, r
        return
    mine, theirs = ask_both(probe, "POST", "/sdk/floats", body, ctype=ctype)
    assert mine == theirs


def test_sdk_object_check_refuses_what_pydantic_would_turn_into_a_dict(probe):
    # A documented difference: pydantic 1 also accepts a list of pairs as a
    # dict (dict([["a", 1]])); the SDK wants an object.
    srv, _ = probe
    for body in (b"[]", b'[["a", 1]]'):
        with srv.connect() as c:
            r = c.request(b"POST /sdk/floats HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert r.status == 422, r
        assert json.loads(r.body) == {"detail": [{"loc": ["body"], "msg": "value is not a valid dict",
                                                  "type": "type_error.dict"}]}


def test_sdk_encoded_surrogates_are_not_utf8(probe):
    # Python decodes bodies with "surrogatepass" (and then fails to answer);
    # the SDK calls such a body undecodable, as for any invalid UTF-8.
    srv, _ = probe
    body = b'{"a":"\xed\xa0\x80"}'
    with srv.connect() as c:
        r = c.request(b"POST /sdk/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert r.status == 400, r
    assert json.loads(r.body) == {"detail": "There was an error parsing the body"}


@pytest.mark.parametrize("qs", [
    "s=%E2%82%AC%zz", "s=%FF%E2%82x", "s=%", "s=%4", "s=a&s=%C3%A9+%C3", "s=%2B+%2b", "%73=name",
    "s%3D=no&s=yes", "s=a%26b%3Dc",
])
def test_sdk_query_decoding_matches_urllib(probe, qs):
    # Starlette parses with urllib's parse_qsl; the last value wins.
    from urllib.parse import parse_qsl
    want = [v for k, v in parse_qsl(qs, keep_blank_values=True) if k == "s"]
    srv, _ = probe
    with srv.connect() as c:
        r = c.request(get("/sdk/items/1?" + qs))
    assert r.status == 200, r
    assert json.loads(r.body)["s"] == (want[-1] if want else None)


def test_sdk_async_handler_reads_the_body_like_a_sync_one(probe):
    srv, _ = probe
    for body in (b'{"a":[1,2]}', b"{oops", b""):
        answers = []
        for path in ("/sdk/echo", "/sdk/async-echo"):
            with srv.connect() as c:
                r = c.request(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
            answers.append((r.status, r.body))
        assert answers[0] == answers[1]


@pytest.mark.parametrize("target,status,detail", [
    ("/sdk/error/404", 404, "Not Found"),
    ("/sdk/error/409?detail=taken", 409, "taken"),
    ("/sdk/error/418?detail=a%22b%5Cc%0A", 418, 'a"b\\c\n'),
])
def test_sdk_respond_error_is_fastapis_http_exception(probe, target, status, detail):
    srv, _ = probe
    with srv.connect() as c:
        r = c.request(get(target))
    assert r.status == status, r
    assert r.header("content-type") == "application/json"
    assert r.body == py_json({"detail": detail})


@pytest.mark.parametrize("status,reason", [
    (413, "Content Too Large"), (414, "URI Too Long"), (416, "Range Not Satisfiable"),
    (422, "Unprocessable Content"), (501, "Not Implemented"), (418, "I'm a teapot"),
])
def test_sdk_default_detail_is_the_reason_the_server_writes(probe, status, reason):
    # The SDK (inside the plugin) and the server (the status line) take
    # reason phrases from one list, RFC 9110's names.
    srv, _ = probe
    with srv.connect() as c:
        r = c.request(get("/sdk/error/%d" % status))
    assert r.status == status, r
    assert r.reason == reason
    assert r.body == py_json({"detail": reason})


def test_sdk_streamed_response_arrives_in_order(probe):
    srv, _ = probe
    with srv.connect() as c:
        r = c.request(get("/sdk/stream?n=5"))
    assert r.status == 200, r
    assert r.header("transfer-encoding") == "chunked", r
    assert r.body == b"".join(b"chunk %d\n" % i for i in range(5))
