"""Differential test: the FastAPI app in tests/asgi_app served by evicorn
(`evicorn main:app`) and by uvicorn (`python -m uvicorn main:app`) of the
same stack: the interpreter running these tests, Debian's python3 with
Debian's packages, or the venv with the newest FastAPI and uvicorn from
PyPI (tests/requirements-asgi.txt),
must answer the same requests with the same status, body and key headers
(content-type, content-length or chunked, location, set-cookie, a file's
validators and ranges, and the app's own headers; date and server are the
servers' own). Files (FileResponse, StaticFiles) leave evicorn by path
(http.response.pathsend) on a Starlette that uses it, and are streamed
through Python under uvicorn, or on Debian's Starlette under both: the
answers must not tell.

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
               "x-custom", "cache-control", "etag", "last-modified", "accept-ranges",
               "content-range", "content-disposition")

FILE_MTIME = 1700000000
FILES = {
    "report.txt": "".join("line %04d of the report\n" % i for i in range(400)).encode(),
    "data.bin": bytes(range(256)) * 1000 + b"end",
    "empty.txt": b"",
    "index.html": b"<!doctype html><p>assets home</p>\n",
    "404.html": b"<!doctype html><p>not here</p>\n",
    "sub/index.html": b"<!doctype html><p>sub folder</p>\n",
}






@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    files = tmp_path_factory.mktemp("files")
    for name, data in FILES.items():
        path = files / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (FILE_MTIME, FILE_MTIME))
    env = dict(os.environ, ASGI_APP_NO_YIELD_STATE="1", ASGI_APP_FILES=str(files))
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
    ("GET", "/file/report.txt", {}),
    ("HEAD", "/file/report.txt", {}),
    ("GET", "/file/data.bin", {}),
    ("GET", "/file/data.bin?download=1", {}),
    ("GET", "/file/empty.txt", {}),
    ("HEAD", "/file/empty.txt", {}),
    ("GET", "/file/data.bin", {"headers": {"Range": "bytes=100-199"}}),
    ("GET", "/file/data.bin", {"headers": {"Range": "bytes=-3"}}),
    ("HEAD", "/file/data.bin", {"headers": {"Range": "bytes=100-199"}}),
    ("GET", "/file/data.bin", {"headers": {"Range": "bytes=0-9", "If-Range": '"stale"'}}),
    ("GET", "/file/missing.txt", {}),
    ("GET", "/assets/report.txt", {}),
    ("HEAD", "/assets/data.bin", {}),
    ("GET", "/assets/data.bin", {"headers": {"Range": "bytes=256000-"}}),
    ("GET", "/assets/", {}),
    ("GET", "/assets/sub/", {}),
    ("GET", "/assets/sub", {"headers": {"Host": "h.example"}}),
    ("GET", "/assets/missing.txt", {}),
    ("POST", "/assets/report.txt", {}),
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


def test_file_answers_are_whole(servers):
    """The files themselves, as evicorn sends them."""
    ev_port, _ = servers
    status, body, headers = fetch(ev_port, "GET", "/file/data.bin", {})
    assert (status, body) == (200, FILES["data.bin"])
    assert headers["content-length"] == [str(len(FILES["data.bin"]))]
    assert headers["transfer-encoding"] == []
    status, body, headers = fetch(ev_port, "GET", "/file/empty.txt", {})
    assert (status, body, headers["content-length"]) == (200, b"", ["0"])
    status, body, _ = fetch(ev_port, "GET", "/assets/sub/", {})
    assert (status, body) == (200, FILES["sub/index.html"])
    status, body, _ = fetch(ev_port, "GET", "/assets/missing.txt", {})
    assert (status, body) == (404, FILES["404.html"])


def test_file_conditional_requests_like_uvicorn(servers):
    """If-None-Match and If-Modified-Since on StaticFiles: 304 under both."""
    ev_port, uv_port = servers
    _, _, headers = fetch(ev_port, "GET", "/assets/report.txt", {})
    (etag,), (modified,) = headers["etag"], headers["last-modified"]
    for cond in ({"If-None-Match": etag}, {"If-Modified-Since": modified},
                 {"If-None-Match": '"other"'}):
        ev = fetch(ev_port, "GET", "/assets/report.txt", {"headers": cond})
        uv = fetch(uv_port, "GET", "/assets/report.txt", {"headers": cond})
        assert ev == uv
        assert ev[0] == (200 if cond.get("If-None-Match") == '"other"' else 304)


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
