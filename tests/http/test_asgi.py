"""The ASGI bridge (plugins/asgi): `evicorn main:app` serving the unmodified
FastAPI app in tests/asgi_app, black-box.

Covers the ASGI 3 HTTP scope and events, FastAPI's features end to end
(parameters, Pydantic bodies and 422s, background tasks, streaming,
lifespan state, cookies, redirects, exceptions), misbehaving apps, client
disconnects, backpressure, lifespan failures, import errors, several
workers, graceful shutdown, and native C plugins next to the app.
test_asgi_diff.py compares the same app under uvicorn.
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

from evicorn_harness import (Conn, ConnClosed, evicorn_bin, get, python_module_built,
                             read_all_responses, time_scale)
from plugin_util import deploy, plugin_path, with_probe

# The stack under test: the interpreter running these tests serves the app
# too (VIRTUAL_ENV), so its pydantic is the app's.
try:
    import pydantic
    PYDANTIC2 = pydantic.VERSION.startswith("2")
except ImportError:
    PYDANTIC2 = False

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "asgi_app"))
BUILD = os.path.dirname(os.path.abspath(evicorn_bin()))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(BUILD, "plugins")

pytestmark = pytest.mark.skipif(not python_module_built(),
                                reason="evicorn's Python module is not built")


def serve(make_server, *args, app="main:app", ready_path="/json", timeout=20.0):
    """evicorn APP --app-dir tests/asgi_app ARGS, once the app answers."""
    srv = make_server(app, "--app-dir", APP_DIR, *args, ready_timeout=timeout)
    deadline = time.monotonic() + timeout
    while ready_path:
        try:
            with httpx.Client(timeout=2.0) as c:
                c.get(srv.url(ready_path))
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise AssertionError("app not serving\n" + srv.output())
            time.sleep(0.05)
    return srv


def client(srv, timeout=10.0):
    return httpx.Client(base_url=srv.url(""), timeout=timeout)


@pytest.fixture
def app_server(make_server):
    return serve(make_server, "--limit-body", "16M")


def run_to_exit(*args, env=None, timeout=30.0):
    """Runs evicorn until it exits on its own (startup failures)."""
    e = dict(os.environ)
    e.update(env or {})
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "evicorn-asgi-empty-plugins")
    os.makedirs(tmp, exist_ok=True)
    argv = [evicorn_bin(), "--host", "127.0.0.1", "--port", "0", "--plugins", tmp] + list(args)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=10)
        raise AssertionError("evicorn did not exit\n" + err)
    return p.returncode, out, err


# --------------------------------------------------------------------------
# Routes, parameters, bodies


def test_async_and_def_routes_with_typed_parameters(app_server):
    with client(app_server) as c:
        assert c.get("/").json() == {"Hello": "World"}
        r = c.get("/json")
        assert r.status_code == 200
        assert r.content == b'{"message":"Hello, World!"}'
        assert r.headers["content-type"] == "application/json"
        assert r.headers["content-length"] == "27"
        r = c.get("/plaintext")
        assert r.text == "Hello, World!"
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        # def endpoints run on a worker thread, not the event loop's
        assert c.get("/sync").json() == {"sync": True, "main_thread": False}
        assert c.get("/items/42", params={"q": "x y", "limit": "3", "short": "yes"}).json() == {
            "item_id": 42, "q": "x y", "limit": 3, "short": True}
        assert c.get("/files/a/b/c.txt").json() == {"file_path": "a/b/c.txt"}
        assert c.get("/tags?tag=a&tag=b&tag=a").json() == {"tags": ["a", "b", "a"]}
        r = c.get("/items/abc", params={"limit": "x"})
        assert r.status_code == 422
        assert [e["loc"] for e in r.json()["detail"]] == [["path", "item_id"], ["query", "limit"]]


def test_def_routes_reuse_the_worker_threads(app_server):
    # FastAPI runs def routes on anyio's worker threads, which live as long
    # as the loop's root task: one request after another reuses one thread
    # (a thread per request would be a new thread id each time).
    with client(app_server) as c:
        ids = {c.get("/sync/thread").json()["thread"] for _ in range(50)}
    assert len(ids) <= 2, ids


def test_pydantic_bodies_and_422s(app_server):
    with client(app_server) as c:
        r = c.post("/items/", json={"name": "hammer", "price": 9.5, "tags": ["tool"]})
        assert r.status_code == 201
        assert r.json() == {"item": {"name": "hammer", "price": 9.5, "tags": ["tool"],
                                     "description": None}, "total": 19.0}
        # The 422 shapes are pydantic's: this stack's (the interpreter
        # running these tests is the one serving the app).
        r = c.post("/items/", json={"name": "hammer"})
        assert r.status_code == 422
        if PYDANTIC2:
            assert r.json()["detail"] == [{"type": "missing", "loc": ["body", "price"],
                                           "msg": "Field required", "input": {"name": "hammer"}}]
        else:
            assert r.json()["detail"] == [{"loc": ["body", "price"], "msg": "field required",
                                           "type": "value_error.missing"}]
        r = c.post("/items/", json={"name": "x", "price": "cheap", "description": "d" * 60})
        assert r.status_code == 422
        assert {e["type"] for e in r.json()["detail"]} == (
            {"float_parsing", "string_too_long"} if PYDANTIC2 else
            {"type_error.float", "value_error.any_str.max_length"})
        r = c.post("/items/", content=b'{"name": ', headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == ("json_invalid" if PYDANTIC2 else
                                                 "value_error.jsondecode")
        # a def endpoint with a body, a path parameter and a query parameter
        r = c.put("/items/7?notify=true", json={"name": "saw", "price": 1})
        assert r.json() == {"item_id": 7, "name": "saw", "notify": True}


def test_large_and_chunked_request_bodies(app_server):
    big = os.urandom(5 * 1024 * 1024 + 17)
    with client(app_server, timeout=30) as c:
        r = c.post("/echo", content=big, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        assert r.json() == {"length": len(big), "sha256": hashlib.sha256(big).hexdigest(),
                            "content_type": "application/octet-stream"}
        r = c.post("/echo/raw", content=big[:300000])
        assert r.content == big[:300000]

        def slow_chunks():
            for i in range(8):
                time.sleep(0.02)
                yield big[i * 1000:(i + 1) * 1000]

        r = c.post("/echo/stream", content=slow_chunks())  # Transfer-Encoding: chunked
        assert r.status_code == 200
        got = r.json()
        assert got["length"] == 8000
        assert got["sha256"] == hashlib.sha256(big[:8000]).hexdigest()
        assert got["chunks"] > 1  # streamed to the app as it arrived
        # empty bodies, with and without a length
        assert c.post("/echo", content=b"").json()["length"] == 0


def test_body_over_the_limit_is_refused_before_the_app(make_server):
    srv = serve(make_server, "--limit-body", "1K")
    with client(srv) as c:
        r = c.post("/echo", content=b"x" * 5000)
        assert r.status_code == 413
        assert c.post("/echo", content=b"x" * 1000).json()["length"] == 1000


# --------------------------------------------------------------------------
# The scope


def test_scope_is_asgi_3_spec_2_4(make_server):
    srv = serve(make_server, "--root-path", "/api")
    with Conn.tcp(srv.port) as conn:
        r = conn.request(b"GET /scope?a=1&b=%20x HTTP/1.1\r\nHost: example.com\r\n"
                         b"X-Multi: one\r\nx-multi: two\r\nX-Upper: Value\r\n\r\n")
        s = json.loads(r.body)
        local_port = conn.sock.getsockname()[1]
    assert s["type"] == "http"
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert s["http_version"] == "1.1"
    assert s["method"] == "GET"
    assert s["scheme"] == "http"
    assert s["path"] == "/scope"
    assert s["raw_path"] == "/scope"
    assert s["query_string"] == "a=1&b=%20x"
    assert s["root_path"] == "/api"
    assert s["headers"] == [["host", "example.com"], ["x-multi", "one"], ["x-multi", "two"],
                            ["x-upper", "Value"]]
    assert s["client"] == ["127.0.0.1", local_port]
    assert s["server"] == ["127.0.0.1", srv.port]
    assert s["has_state"] is True


def test_raw_path_keeps_encoded_slashes_and_path_is_decoded(make_server):
    srv = serve(make_server, app="raw:app", ready_path="/")
    with Conn.tcp(srv.port) as conn:
        r = conn.request(b"GET /a%2Fb/caf%C3%A9?x=%2F HTTP/1.0\r\n\r\n")
    s = json.loads(r.body)
    assert s["path"] == "/a/b/caf\u00e9"
    assert s["raw_path"] == "/a%2Fb/caf%C3%A9"
    assert s["query_string"] == "x=%2F"


def test_headers_and_cookies(app_server):
    with client(app_server) as c:
        r = c.get("/headers", headers=[("User-Agent", "tester/1"), ("X-Token", "t0k"),
                                       ("X-Multi", "a"), ("X-Multi", "b")])
        assert r.json() == {"user_agent": "tester/1", "x_token": "t0k", "x_multi": ["a", "b"],
                            "host": "127.0.0.1:%d" % app_server.port}
        r = c.get("/cookies", headers={"Cookie": "session=s1; theme=blue"})
        assert r.json() == {"session": "s1", "theme": "blue"}
        r = c.get("/cookies/set")
        cookies = r.headers.get_list("set-cookie")
        assert len(cookies) == 2
        assert cookies[0].startswith("session=abc123;") and "HttpOnly" in cookies[0]
        assert cookies[1].startswith("theme=dark;") and "Max-Age=3600" in cookies[1]


def test_lifespan_state_is_a_shallow_copy_per_request(app_server):
    with client(app_server) as c:
        a = c.get("/state").json()
        b = c.get("/state").json()
    assert a["started"] == "yes" and a["pid_matches"] is True
    assert a["greeting"] == "hello from lifespan"
    # the dict is copied per request, the objects in it are shared
    assert b["counter"] == a["counter"] + 1


# --------------------------------------------------------------------------
# Responses


def test_http_exceptions_redirects_and_empty_responses(app_server):
    with client(app_server) as c:
        r = c.get("/http-exception")
        assert (r.status_code, r.json(), r.headers["x-error"]) == (
            404, {"detail": "Item not found"}, "yes")
        r = c.get("/teapot")
        assert r.status_code == 418 and r.json() == {"detail": {"reason": "short and stout"}}
        r = c.get("/redirect", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (307, "/json")
        assert c.get("/redirect", follow_redirects=True).json() == {"message": "Hello, World!"}
        r = c.get("/redirect/found", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (302, "https://example.com/elsewhere?x=1")
        r = c.get("/empty")
        assert r.status_code == 204 and r.content == b"" and "content-length" not in r.headers
        r = c.get("/custom-headers")
        assert r.headers["x-custom"] == "one" and r.headers["cache-control"] == "no-store"
        r = c.get("/large", params={"size": 3 * 1024 * 1024})
        assert len(r.content) == 3 * 1024 * 1024
        assert r.headers["content-length"] == str(3 * 1024 * 1024)


def test_head_and_keep_alive_pipelining(app_server):
    with Conn.tcp(app_server.port) as conn:
        r = conn.request(b"HEAD /large?size=1000 HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        assert r.status in (200, 405)
        reqs = b"".join(get("/items/%d" % i) for i in range(20))
        conn.send(reqs)
        for i in range(20):
            r = conn.read_response()
            assert r.status == 200
            assert json.loads(r.body)["item_id"] == i


def test_app_connection_header_is_read_as_its_token_list(app_server):
    # Connection: keep-alive followed by headers whose bytes hold "close"
    # keeps the connection; an explicit close option in a list closes it.
    with Conn.tcp(app_server.port) as conn:
        for _ in range(3):
            r = conn.request(get("/raw/connection-keep-alive"))
            assert r.status == 200 and r.body == b"kept"
            assert r.header("connection") is None
            assert r.header("x-note") == "closed"
        r = conn.request(get("/raw/connection-close"))
        assert r.body == b"closing" and r.header("connection") == "close"
        with pytest.raises((ConnClosed, OSError)):
            conn.request(get("/raw/connection-keep-alive"))


def test_unhandled_exception_is_a_500_and_logged(app_server):
    with client(app_server) as c:
        for path in ("/boom", "/boom/sync"):
            r = c.get(path)
            assert r.status_code == 500
            assert r.text == "Internal Server Error"
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert app_server.wait_for_log(r"RuntimeError: boom", 5)
    assert app_server.wait_for_log(r"ValueError: sync boom", 5)
    assert app_server.wait_for_log(r"Exception in ASGI application", 5)


def test_streaming_response_is_flushed_chunk_by_chunk(app_server):
    with client(app_server) as c:
        t0 = time.monotonic()
        arrivals = []
        with c.stream("GET", "/stream", params={"n": 5, "delay": 0.2}) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            for chunk in r.iter_raw():
                arrivals.append((time.monotonic() - t0, chunk))
        body = b"".join(c for _, c in arrivals)
        assert body == b"".join(b"line %d\n" % i for i in range(5))
        # the first line arrives long before the last one is produced
        assert arrivals[0][0] < 0.6 and arrivals[-1][0] > 0.9
        assert c.get("/stream/sync", params={"n": 3}).text == "sync line 0\nsync line 1\nsync line 2\n"


def test_server_sent_events_arrive_as_sent(app_server):
    with client(app_server) as c:
        with c.stream("GET", "/sse", params={"n": 3, "delay": 0.3}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            t0 = time.monotonic()
            lines = r.iter_lines()
            first = next(lines)
            assert first.rstrip("\n") == 'data: {"i": 0}'
            assert time.monotonic() - t0 < 0.25


def test_background_tasks_run_after_the_response(make_server, tmp_path, monkeypatch):
    log = tmp_path / "notifications.log"
    monkeypatch.setenv("ASGI_APP_BACKGROUND_LOG", str(log))
    srv = serve(make_server)
    with client(srv) as c:
        t0 = time.monotonic()
        r = c.post("/send-notification/ada@example.com")
        took = time.monotonic() - t0
        # The two tasks take 0.1 s, after the response: not done when it came.
        done_at_response = log.exists() and len(log.read_text().splitlines()) == 2
    assert r.json() == {"message": "Notification sent in the background"}
    assert not done_at_response or took < 0.09, took
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) == 2:
            break
        time.sleep(0.02)
    assert log.read_text().splitlines() == ["sync notification for ada@example.com",
                                            "async notification for ada@example.com"]


# --------------------------------------------------------------------------
# Misbehaving apps (as uvicorn treats them)


def test_app_returning_without_a_response_gets_a_500(app_server):
    with client(app_server) as c:
        r = c.get("/raw/no-response")
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert app_server.wait_for_log(r"ASGI callable returned without starting response", 5)


def test_exception_before_start_without_middleware_is_a_500_with_traceback(make_server):
    srv = serve(make_server, app="raw:app", ready_path="/")
    with client(srv) as c:
        r = c.get("/error-before-start")
        assert r.status_code == 500 and r.text == "Internal Server Error"
        assert c.get("/x").status_code == 200  # the worker goes on
    assert srv.wait_for_log(r"Exception in ASGI application", 5)
    assert srv.wait_for_log(r"ValueError: raw error before start", 5)


def test_exception_after_start_cuts_the_response(app_server):
    for path in ("/raw/error-after-start", "/raw/incomplete"):
        with Conn.tcp(app_server.port) as conn:
            conn.send(get(path))
            with pytest.raises((ConnClosed, AssertionError)):
                conn.read_response()
    with client(app_server) as c:
        assert c.get("/json").status_code == 200


def test_invalid_messages_raise_runtime_error_in_the_app(app_server):
    with client(app_server) as c:
        r = c.get("/raw/invalid")
        assert r.json() == [
            "RuntimeError: Expected ASGI message 'http.response.start', but got "
            "'http.response.body'.",
            "RuntimeError: Invalid HTTP header name.",
            "RuntimeError: Invalid HTTP header value.",
            "RuntimeError: Expected ASGI message 'http.response.start', but got "
            "'no.such.message'.",
        ]
        # once complete, further messages are ignored (ASGI)
        assert c.get("/result/after_complete").json()["result"] == "accepted"


def test_receive_after_the_response_is_a_disconnect(app_server):
    with client(app_server) as c:
        assert c.get("/raw/receive-after-response").text == "done"
        deadline = time.monotonic() + 3
        while c.get("/result/after_response").json()["result"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.get("/result/after_response").json()["result"] == "http.disconnect"


# --------------------------------------------------------------------------
# Disconnects and backpressure


def wait_result(c, key, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = c.get("/result/" + key).json()["result"]
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def test_request_is_disconnected_sees_the_client_leave(app_server):
    with client(app_server) as c:
        s = socket.create_connection(("127.0.0.1", app_server.port))
        s.sendall(get("/disconnect?key=d1"))
        assert wait_result(c, "d1", "waiting") == "waiting"
        time.sleep(0.1)
        s.close()
        assert wait_result(c, "d1", "disconnected") == "disconnected"


def test_send_after_disconnect_raises_oserror_not_logged(app_server):
    with client(app_server) as c:
        with Conn.tcp(app_server.port) as conn:
            conn.send(get("/raw/send-after-disconnect?sad1"))
            r_line = conn._read_line(time.monotonic() + 5)
            assert r_line.startswith(b"HTTP/1.1 200")
            time.sleep(0.1)
        assert wait_result(c, "sad1", "OSError: ClientDisconnected") == "OSError: ClientDisconnected"
        time.sleep(0.2)
    assert not app_server.wait_for_log(r"Exception in ASGI application", 0.2)


def test_slow_reader_makes_send_wait(app_server):
    """The app streams 32 MiB in 64 KiB sends to a client that reads
    nothing for a second: send() must make the app wait (bounded
    buffering), then resume when the client reads."""
    with client(app_server) as c, Conn.tcp(app_server.port, timeout=30) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        conn.send(get("/raw/backpressure"))
        time.sleep(1.0)
        stalled_at = int(c.get("/result/bp").json()["result"])
        time.sleep(0.5)
        assert int(c.get("/result/bp").json()["result"]) == stalled_at
        r = conn.read_response(timeout=30)
    assert len(r.body) == 512 * 65536
    # What the kernel's socket buffers, the host's output buffer (256 KiB)
    # and the bridge (256 KiB in flight) hold: a few MiB, not 32.
    assert stalled_at < 200, stalled_at


# --------------------------------------------------------------------------
# Lifespan, app loading, workers, shutdown


def test_no_request_reaches_the_app_before_startup_completes(make_server, monkeypatch):
    monkeypatch.setenv("ASGI_APP_STARTUP_DELAY", "1.0")
    srv = make_server("main:app", "--app-dir", APP_DIR)  # returns once the master listens
    t0 = time.monotonic()
    with client(srv) as c:
        r = c.get("/state")
    assert r.status_code == 200 and r.json()["started"] == "yes"
    assert time.monotonic() - t0 > 0.5  # it waited for the lifespan startup


def test_expect_100_continue_is_answered_only_when_the_app_reads(app_server):
    with Conn.tcp(app_server.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert conn._read_line(time.monotonic() + 5) == b"HTTP/1.1 100 Continue"
        assert conn._read_line(time.monotonic() + 5) == b""
        conn.send(b"hello")
        r = conn.read_response()
        assert r.status == 200 and json.loads(r.body)["length"] == 5
        # an app that answers without reading: no 100, and the connection ends
        conn.send(b"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        r = conn.read_response()
        assert r.status == 405 and r.header("connection") == "close"


def test_lifespan_startup_exception_with_on_exits_non_zero(tmp_path):
    code, _, err = run_to_exit("main:app", "--app-dir", APP_DIR, "--lifespan", "on",
                               env={"ASGI_APP_LIFESPAN_FAIL": "1"})
    assert code == 3
    assert "Application startup failed" in err
    assert "database unavailable" in err


def test_lifespan_startup_failed_with_auto_exits_non_zero():
    # Starlette turns the exception into lifespan.startup.failed: fatal in
    # auto mode too, as in uvicorn.
    code, _, err = run_to_exit("main:app", "--app-dir", APP_DIR,
                               env={"ASGI_APP_LIFESPAN_FAIL": "1"})
    assert code != 0
    assert "RuntimeError: database unavailable" in err


def test_app_raising_on_lifespan_scope_serves_without_lifespan_in_auto(make_server):
    srv = serve(make_server, app="raw:app", ready_path="/")
    assert srv.wait_for_log(r"ASGI 'lifespan' protocol appears unsupported", 5)
    with client(srv) as c:
        assert c.get("/ok").json()["path"] == "/ok"


def test_app_raising_on_lifespan_scope_fails_with_on():
    code, _, err = run_to_exit("raw:app", "--app-dir", APP_DIR, "--lifespan", "on")
    assert code != 0
    assert "this app does not do lifespan" in err


def test_lifespan_off_skips_startup(make_server):
    srv = serve(make_server, "--lifespan", "off")
    with client(srv) as c:
        assert c.get("/json").status_code == 200
        assert c.get("/state").status_code == 500  # startup never set app.state
    assert not srv.wait_for_log(r"Waiting for application startup", 0.2)


@pytest.mark.parametrize("app,message", [
    ("nosuchmodule:app", 'Could not import module "nosuchmodule"'),
    ("main:nosuchattr", 'Attribute "nosuchattr" not found in module "main"'),
    ("broken:app", "RuntimeError: cannot import this module"),
])
def test_import_errors_exit_1_with_the_reason(app, message):
    # uvicorn's status for an app it cannot load; a failed lifespan
    # startup is 3, as in uvicorn.
    code, _, err = run_to_exit(app, "--app-dir", APP_DIR)
    assert code == 1
    assert message in err
    assert "Traceback" in err or "Attribute" in message


def test_factory_and_asgi2_apps(make_server):
    srv = serve(make_server, "--factory", app="raw:create_app", ready_path="/")
    with client(srv) as c:
        assert c.get("/made").json()["path"] == "/made"
    srv2 = serve(make_server, app="raw:LegacyApp", ready_path="/")
    with client(srv2) as c:
        assert c.get("/old").text == "asgi2 /old"


def test_two_workers_and_graceful_shutdown_runs_lifespan_shutdown(make_server, tmp_path,
                                                                  monkeypatch):
    marker = tmp_path / "shutdown.marker"
    monkeypatch.setenv("ASGI_APP_SHUTDOWN_MARKER", str(marker))
    srv = serve(make_server, "--workers", "2")
    workers = srv.wait_workers(2)
    seen = set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        with client(srv) as c:  # a new connection each time: either worker
            seen.add(c.get("/state").json()["pid"])
    assert seen == set(workers)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0, srv.output()
    pids = sorted(int(x) for x in marker.read_text().split())
    assert pids == sorted(workers)
    assert srv.wait_for_log(r"Application shutdown complete", 1)


def test_shutdown_waits_for_a_request_in_flight(make_server, tmp_path, monkeypatch):
    marker = tmp_path / "shutdown.marker"
    monkeypatch.setenv("ASGI_APP_SHUTDOWN_MARKER", str(marker))
    srv = serve(make_server)
    result = {}

    def slow():
        with client(srv) as c:
            result["r"] = c.get("/sleep", params={"seconds": 1.0})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    srv.signal(signal.SIGTERM)
    t.join(10)
    assert result["r"].json() == {"slept": 1.0}
    assert srv.wait_exit(15) == 0
    assert marker.exists()


# --------------------------------------------------------------------------
# Native plugins next to the app


def test_native_plugin_routes_win_and_hot_reload_keeps_working(make_server):
    srv = serve(make_server)
    with client(srv) as c:
        assert c.get("/plaintext").text == "Hello, World!"
        assert c.get("/hits").json() == {"plaintext": 1}
        # hello.so takes /plaintext (static segments beat the app's catch-all)
        start = len(srv.stderr.snapshot())
        deploy(srv, os.path.join(PLUGINS, "hello.so"), "hello.so")
        assert srv.wait_for_log(r"plugin hello\.so: loaded", 5, start=start), srv.output()
        for _ in range(5):
            assert c.get("/plaintext").text == "Hello, World!"
        assert c.get("/hits").json() == {"plaintext": 1}  # the app never saw them
        # the app still gets everything else, including other methods on /plaintext
        assert c.post("/plaintext").status_code == 405

        # hot reload of a C plugin while the app is hammered
        with_probe(srv, "probe")
        assert c.get("/probe/version").text == "1"
        errors, stop = [], threading.Event()

        def hammer():
            with client(srv) as hc:
                while not stop.is_set():
                    try:
                        r = hc.get("/items/1")
                        if r.status_code != 200:
                            errors.append(r.status_code)
                    except httpx.HTTPError as e:
                        errors.append(repr(e))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            with_probe(srv, "probe_v2")
            deadline = time.monotonic() + 2
            while c.get("/probe/version").text != "2":
                assert time.monotonic() < deadline
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert errors == []
        # removing a plugin gives its routes back to the app
        start = len(srv.stderr.snapshot())
        os.unlink(os.path.join(srv.plugins, "hello.so"))
        assert srv.wait_for_log(r"plugin hello\.so: removed", 5, start=start)
        assert c.get("/plaintext").text == "Hello, World!"
        assert c.get("/hits").json() == {"plaintext": 2}


def test_many_concurrent_slow_requests(app_server):
    """200 requests each awaiting asyncio.sleep(0.5) finish together."""
    import asyncio

    async def main():
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=app_server.url(""), limits=limits,
                                     timeout=20) as c:
            t0 = time.monotonic()
            rs = await asyncio.gather(*[c.get("/sleep", params={"seconds": 0.5})
                                        for _ in range(200)])
            return time.monotonic() - t0, rs

    took, rs = asyncio.run(main())
    assert all(r.status_code == 200 for r in rs)
    assert took < 10.0 * time_scale(), took  # one at a time would take 100 s


def test_pipelined_and_closed_early_connections_do_not_leak(app_server):
    # Clients that close right after sending, many times: the worker keeps
    # serving (no stuck requests, no crash).
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", app_server.port))
        s.sendall(get("/sleep?seconds=0.01") * 3)
        s.close()
    with Conn.tcp(app_server.port) as conn:
        conn.send(get("/json", extra="Connection: close\r\n"))
        rs, rest = read_all_responses(conn)
        assert [r.status for r in rs] == [200]
