"""Differential test: the FastAPI app in tests/asgi_app served by evicorn
(`evicorn main:app`) and by uvicorn (`python -m uvicorn main:app`) of the
same stack: the interpreter running these tests, Debian's python3 with
Debian's packages, or the venv with the newest FastAPI and uvicorn from
PyPI (tests/requirements-asgi.txt),
must answer the same requests with the same status, body and key headers
(content-type, content-length or chunked, location, set-cookie and the
app's own headers; date and server are the servers' own).

Debian's uvicorn (0.17) predates lifespan state, which Starlette refuses to
start without when the lifespan yields a dict: both servers run the app
with ASGI_APP_NO_YIELD_STATE=1.
"""
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from evicorn_harness import (evicorn_bin, free_port, python_module_built, stop_group,
                             wait_http_ready)

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "asgi_app"))
BUILD = os.path.dirname(os.path.abspath(evicorn_bin()))
PYTHON = sys.executable


def have_uvicorn():
    try:
        return subprocess.run([PYTHON, "-c", "import uvicorn, fastapi"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


pytestmark = [
    pytest.mark.skipif(not python_module_built(), reason="evicorn's Python module is not built"),
    pytest.mark.skipif(not have_uvicorn(), reason="uvicorn/fastapi not installed for %s" % PYTHON),
]

KEY_HEADERS = ("content-type", "content-length", "transfer-encoding", "location", "x-error",
               "x-custom", "cache-control")






@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    env = dict(os.environ, ASGI_APP_NO_YIELD_STATE="1")
    plugins = str(tmp_path_factory.mktemp("plugins"))
    ev_port, uv_port = free_port(), free_port()
    procs = []
    try:
        ev = subprocess.Popen(
            [evicorn_bin(), "main:app", "--app-dir", APP_DIR, "--host", "127.0.0.1", "--port",
             str(ev_port), "--plugins", plugins, "--no-access-log", "--limit-body", "16M"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(ev)
        uv = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "main:app", "--app-dir", APP_DIR, "--host", "127.0.0.1",
             "--port", str(uv_port), "--no-access-log"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(uv)
        wait_http_ready(ev_port, ev, "/json")
        wait_http_ready(uv_port, uv, "/json")
        yield ev_port, uv_port
    finally:
        for p in procs:
            stop_group(p)


def slow_body():
    for i in range(5):
        time.sleep(0.01)
        yield b"chunk %d;" % i


# (method, path, kwargs for httpx)
CASES = [
    ("GET", "/", {}),
    ("GET", "/json", {}),
    ("GET", "/plaintext", {}),
    ("GET", "/sync", {}),
    ("GET", "/items/5?q=hello%20world&limit=3&short=on", {}),
    ("GET", "/items/abc?limit=x", {}),
    ("GET", "/items/5?short=maybe", {}),
    ("GET", "/files/dir/sub/name.txt", {}),
    ("GET", "/files/caf%C3%A9%20au%20lait", {}),
    ("GET", "/tags?tag=a&tag=b&tag=a", {}),
    ("GET", "/headers", {"headers": [("User-Agent", "diff/1"), ("X-Token", "abc"),
                                     ("X-Multi", "1"), ("X-Multi", "2"),
                                     ("Host", "example.org")]}),
    ("GET", "/cookies", {"headers": {"Cookie": "session=s; theme=dark"}}),
    ("GET", "/cookies", {}),
    ("GET", "/cookies/set", {}),
    ("GET", "/http-exception", {}),
    ("GET", "/teapot", {}),
    ("GET", "/boom", {}),
    ("GET", "/boom/sync", {}),
    ("GET", "/redirect", {}),
    ("GET", "/redirect/found", {}),
    ("GET", "/empty", {}),
    ("GET", "/custom-headers", {}),
    ("GET", "/large?size=200000", {}),
    ("GET", "/stream?n=4", {}),
    ("GET", "/stream/sync?n=2", {}),
    ("GET", "/sse?n=2&delay=0", {}),
    ("GET", "/nonexistent", {}),
    ("POST", "/json", {}),
    ("DELETE", "/items/3", {}),
    ("POST", "/items/", {"json": {"name": "n", "price": 1.25, "tags": ["a"]}}),
    ("POST", "/items/", {"json": {"name": "n"}}),
    ("POST", "/items/", {"json": {"name": "n", "price": "x", "description": "d" * 80}}),
    ("POST", "/items/", {"content": b'{"name": "n", "price":',
                         "headers": {"content-type": "application/json"}}),
    ("POST", "/items/", {"content": b"not json", "headers": {"content-type": "text/plain"}}),
    ("PUT", "/items/7?notify=1", {"json": {"name": "saw", "price": 3}}),
    ("POST", "/echo", {"content": os.urandom(300000)}),
    ("POST", "/echo", {"content": b""}),
    ("POST", "/echo/stream", {"content": slow_body}),
    ("POST", "/echo/raw", {"content": b"\x00\x01binary\xff" * 1000}),
    ("POST", "/send-notification/x@example.com", {}),
    ("GET", "/raw/unknown", {}),
]
# Not compared here (test_asgi.py covers them):
#  - /raw/invalid: uvicorn 0.17 marks the response started before it
#    validates the headers, so after an invalid header its answer is broken;
#  - /raw/no-response: below, framing aside.


def key_headers(r):
    out = {name: r.headers.get_list(name) for name in KEY_HEADERS}
    out["set-cookie"] = r.headers.get_list("set-cookie")
    return out


def fetch(port, method, path, kw):
    kw = dict(kw)
    if callable(kw.get("content")):
        kw["content"] = kw["content"]()
    with httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10,
                      follow_redirects=False) as c:
        try:
            r = c.request(method, path, **kw)
        except httpx.HTTPError as e:
            return ("error", type(e).__name__)
        return (r.status_code, r.content, key_headers(r))


@pytest.mark.parametrize("method,path,kw", CASES, ids=["%s %s" % (m, p) for m, p, _ in CASES])
def test_same_answer_as_uvicorn(servers, method, path, kw):
    ev_port, uv_port = servers
    ev = fetch(ev_port, method, path, kw)
    uv = fetch(uv_port, method, path, kw)
    assert ev == uv


def test_same_scope_as_uvicorn(servers):
    ev_port, uv_port = servers
    got = []
    for port in servers:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /scope?x=%2F&y=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        import json
        scope = json.loads(data.split(b"\r\n\r\n", 1)[1])
        scope.pop("asgi")       # uvicorn 0.17 says spec 2.3; evicorn 2.4
        scope.pop("has_state")  # uvicorn 0.17 has no lifespan state
        scope["client"][1] = None
        scope["server"][1] = None
        got.append(scope)
    assert got[0] == got[1]


def test_missing_response_is_the_same_500(servers):
    """The app returned without a response: uvicorn's 500. Debian's uvicorn
    (0.17) sends it chunked, current uvicorn with a Content-Length, as
    evicorn does; both close the connection."""
    got = []
    for port in servers:
        with httpx.Client(timeout=10) as c:
            r = c.get("http://127.0.0.1:%d/raw/no-response" % port)
        got.append((r.status_code, r.content, r.headers["content-type"],
                    r.headers.get("connection")))
    assert got[0] == got[1] == (500, b"Internal Server Error", "text/plain; charset=utf-8",
                                "close")


def test_cut_responses_fail_alike(servers):
    """An exception after the response started: both servers cut it."""
    results = [fetch(port, "GET", "/raw/error-after-start", {}) for port in servers]
    assert results[0][0] == "error" and results[1][0] == "error", results
