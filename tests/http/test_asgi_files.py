"""The ASGI file extensions through the bridge: http.response.pathsend and
http.response.zerocopysend (tests/asgi_app/files.py, a bare ASGI app, and
Starlette's FileResponse in it). The scope offers both; the file's bytes
leave by sendfile(2) and never pass through Python; HEAD and Range
requests, misplaced messages and a file that vanished behave as a client
and an app rely on.

Runs on both stacks. Starlette sends FileResponse by path only from 0.47
on: on an older one (Debian's 0.26) the tests that need that are skipped,
and its FileResponse is checked to stream as before.
"""
import os
import re
import time

import httpx
import pytest

from evicorn_harness import Conn, python_module_built

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "asgi_app"))

pytestmark = pytest.mark.skipif(not python_module_built(),
                                reason="evicorn's Python module is not built")


def starlette_version():
    try:
        from importlib.metadata import version
        return tuple(int(p) for p in re.findall(r"\d+", version("starlette"))[:2])
    except Exception:
        return None


# Starlette's FileResponse uses pathsend when offered from 0.47 on.
STARLETTE_PATHSEND = (starlette_version() or (0, 0)) >= (0, 47)
needs_pathsend_starlette = pytest.mark.skipif(
    not STARLETTE_PATHSEND,
    reason="Starlette %s streams FileResponse through http.response.body (it sends "
           "http.response.pathsend from 0.47 on)" % (starlette_version(),))

DATA = bytes(range(256)) * 4096 + b"the end"  # 1 MiB and a bit
MTIME = 1700000000
FILE_EXTENSIONS = {"http.response.pathsend": {}, "http.response.zerocopysend": {}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    for name, data in (("data.bin", DATA), ("empty.txt", b""), ("small.txt", b"small\n")):
        (d / name).write_bytes(data)
        os.utime(d / name, (MTIME, MTIME))
    return d


@pytest.fixture
def srv(make_server, folder):
    """evicorn files:app, one worker, serving the folder (its working
    directory)."""
    s = make_server("files:app", "--app-dir", APP_DIR, "--workers", "1", "--no-access-log",
                    cwd=str(folder), ready_timeout=20.0)
    deadline = time.monotonic() + 20
    while True:
        try:
            with httpx.Client(timeout=2.0) as c:
                if c.get(s.url("/extensions")).status_code == 200:
                    return s
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "app not serving\n" + s.output()
        time.sleep(0.05)


def client(srv):
    return httpx.Client(base_url=srv.url(""), timeout=20.0)


def seen(srv, key):
    with client(srv) as c:
        return c.get("/seen", params={"key": key}).json()


def raw(method, target, extra=""):
    return ("%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (method, target, extra)).encode()


# ---- the scope --------------------------------------------------------------------


def test_scope_offers_pathsend_and_zerocopysend(srv):
    with client(srv) as c:
        assert c.get("/extensions").json() == FILE_EXTENSIONS


# ---- pathsend ---------------------------------------------------------------------


def test_pathsend_sends_the_whole_file_with_the_apps_length(srv):
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "data.bin"})
        assert r.status_code == 200 and r.content == DATA
        assert r.headers["content-length"] == str(len(DATA))
        assert "transfer-encoding" not in r.headers
        # The connection is reused for the next response.
        r = c.get("/pathsend", params={"name": "small.txt"})
        assert r.content == b"small\n"


def test_pathsend_without_content_length_is_chunked(srv):
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "data.bin", "chunked": "1"})
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["transfer-encoding"] == "chunked"


def test_pathsend_of_an_empty_file(srv):
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "empty.txt"})
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")
        assert c.get("/pathsend", params={"name": "small.txt"}).content == b"small\n"


def test_pathsend_of_a_relative_path_is_from_the_working_directory(srv):
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "data.bin", "relative": "1"})
    assert r.status_code == 200 and r.content == DATA


def test_pathsend_after_the_head_left(srv):
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "data.bin", "later": "1"})
    assert r.status_code == 200 and r.content == DATA


def test_head_with_pathsend_has_the_headers_and_no_body(srv):
    with Conn.tcp(srv.port) as conn:
        r = conn.request(raw("HEAD", "/pathsend?name=data.bin"), head=True)
        assert r.status == 200 and r.header("content-length") == str(len(DATA))
        # Nothing of the file follows: the next answer on the connection is
        # the next request's.
        r = conn.request(raw("GET", "/pathsend?name=small.txt"))
        assert (r.status, r.body) == (200, b"small\n")


def test_range_on_a_pathsend_response_is_the_apps_to_answer(srv):
    """The server does not cut an app's response: the app that ignores
    Range answers 200 with the whole file, and that is what goes out."""
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "data.bin"}, headers={"Range": "bytes=0-9"})
    assert r.status_code == 200 and r.content == DATA
    assert "content-range" not in r.headers


def test_pathsend_of_a_missing_file_before_the_head_left_is_a_500(srv):
    """The file vanished between the app's stat and its pathsend: the app's
    send() raises the open's error; its head had not left, so the client
    gets a clean 500."""
    with client(srv) as c:
        r = c.get("/pathsend", params={"name": "data.bin", "gone": "1", "key": "early"})
    assert r.status_code == 500
    err = seen(srv, "early")
    assert err.startswith("FileNotFoundError: [Errno 2]") and "data.bin.gone" in err, err


def test_pathsend_of_a_missing_file_after_the_head_ends_the_connection(srv):
    """The head (with its Content-Length) has left: nothing more is sent,
    and the connection is closed at once rather than left hanging."""
    with Conn.tcp(srv.port) as conn:
        conn.send(raw("GET", "/pathsend?name=data.bin&gone=1&later=1&key=late"))
        t0 = time.monotonic()
        rest = conn.read_until_close(5.0)
        assert time.monotonic() - t0 < 5.0
    head, _, body = rest.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), rest[:200]
    assert b"content-length: %d" % len(DATA) in head.lower()
    assert body == b""
    assert seen(srv, "late").startswith("FileNotFoundError")


# ---- zerocopysend -----------------------------------------------------------------


def test_zerocopysend_pieces_then_a_body(srv):
    """Two pieces of a file at offsets, then bytes: in that order, with the
    app's Content-Length. The app closed its file before the server sent
    a byte of it."""
    with client(srv) as c:
        r = c.get("/zerocopy", params={"name": "data.bin", "pieces": "10:100,1000:50"})
        assert r.status_code == 200
        assert r.content == DATA[10:110] + DATA[1000:1050] + b"tail"
        assert r.headers["content-length"] == str(100 + 50 + 4)
        r = c.get("/zerocopy", params={"name": "data.bin", "pieces": "0:%d,0:1" % len(DATA)})
        assert r.content == DATA + DATA[:1] + b"tail"


def test_zerocopysend_without_offset_reads_from_the_position_and_moves_it(srv):
    with client(srv) as c:
        r = c.get("/zerocopy/position", params={"name": "data.bin"})
    assert r.status_code == 200
    assert r.content == DATA[5:25] + b"|25|" + DATA[25:]


def test_head_with_zerocopysend_has_no_body(srv):
    with Conn.tcp(srv.port) as conn:
        r = conn.request(raw("HEAD", "/zerocopy?name=data.bin&pieces=10:100"), head=True)
        assert r.status == 200 and r.header("content-length") == "104"
        r = conn.request(raw("GET", "/pathsend?name=small.txt"))
        assert (r.status, r.body) == (200, b"small\n")


# ---- misplaced messages (RuntimeError in the app, as uvicorn) ----------------------


@pytest.mark.parametrize("what,status,body,error", [
    ("pathsend-first", 200, b"recovered",
     "RuntimeError: Expected ASGI message 'http.response.start', but got "
     "'http.response.pathsend'."),
    ("zerocopy-first", 200, b"recovered",
     "RuntimeError: Expected ASGI message 'http.response.start', but got "
     "'http.response.zerocopysend'."),
    ("pathsend-after-end", 200, b"done",
     "RuntimeError: Unexpected ASGI message 'http.response.pathsend' sent, after response "
     "already completed."),
    ("body-after-pathsend", 200, None, "no error"),
    ("count-past-end", 200, b"recovered",
     "RuntimeError: 'http.response.zerocopysend': "),
])
def test_misplaced_file_messages(srv, what, status, body, error):
    with client(srv) as c:
        r = c.get("/order", params={"what": what})
    assert r.status_code == status
    if body is None:  # the file itself: the body sent after it is ignored
        with open(os.path.join(APP_DIR, "files.py"), "rb") as f:
            body = f.read()
    assert r.content == body
    assert seen(srv, what).startswith(error)


# ---- Starlette's FileResponse -----------------------------------------------------


def test_file_response_answers_get_head_and_range(srv):
    """On either stack: the whole file, its headers without a body, and a
    range."""
    with client(srv) as c:
        r = c.get("/starlette/data.bin")
        assert r.status_code == 200 and r.content == DATA
        assert r.headers["content-length"] == str(len(DATA))
        assert r.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
        h = c.head("/starlette/data.bin")
        assert h.status_code == 200 and h.content == b""
        assert h.headers["content-length"] == str(len(DATA))
        assert h.headers["etag"] == r.headers["etag"]
        r = c.get("/starlette/data.bin", headers={"Range": "bytes=1000-1099"})
        if STARLETTE_PATHSEND:  # Range support came with Starlette 0.39
            assert r.status_code == 206 and r.content == DATA[1000:1100]
        else:
            assert r.status_code == 200 and r.content == DATA


@needs_pathsend_starlette
def test_file_response_sends_the_path_for_a_whole_file(srv):
    with client(srv) as c:
        assert c.get("/starlette/data.bin", params={"key": "get"}).content == DATA
        assert c.head("/starlette/data.bin", params={"key": "head"}).status_code == 200
        r = c.get("/starlette/data.bin", params={"key": "range"},
                  headers={"Range": "bytes=0-9"})
        assert r.content == DATA[:10]
        r = c.get("/starlette/data.bin", params={"key": "relative", "relative": "1"})
        assert r.content == DATA
    assert seen(srv, "get") == ["http.response.start", "http.response.pathsend"]
    assert seen(srv, "relative") == ["http.response.start", "http.response.pathsend"]
    # HEAD and ranges are Starlette's own to stream.
    assert seen(srv, "head") == ["http.response.start", "http.response.body"]
    assert "http.response.pathsend" not in seen(srv, "range")


@pytest.mark.skipif(STARLETTE_PATHSEND, reason="Starlette %s sends the file by path"
                    % (starlette_version(),))
def test_older_starlette_streams_the_file_through_the_body(srv):
    with client(srv) as c:
        assert c.get("/starlette/data.bin", params={"key": "get"}).content == DATA
    types = seen(srv, "get")
    assert types[0] == "http.response.start" and set(types[1:]) == {"http.response.body"}


def worker_peak_rss(srv):
    (pid,) = srv.worker_pids()
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


@needs_pathsend_starlette
def test_a_large_file_is_not_read_through_python(srv, folder):
    """A 256 MiB (sparse) file through FileResponse: sent by path, whole and
    right, while the worker's memory stays far below the file's size."""
    size = 256 << 20
    marks = {0: b"first", size // 2: b"middle", size - 4: b"last"}
    path = folder / "big.bin"
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, mark in marks.items():
            f.seek(offset)
            f.write(mark)
    try:
        before = worker_peak_rss(srv)
        got, found = 0, {}
        with client(srv) as c:
            with c.stream("GET", "/starlette/big.bin", params={"key": "big"}) as r:
                assert r.status_code == 200
                assert r.headers["content-length"] == str(size)
                for chunk in r.iter_raw():
                    for offset, mark in marks.items():
                        if got <= offset < got + len(chunk):
                            found[offset] = chunk[offset - got:offset - got + len(mark)]
                    got += len(chunk)
        assert got == size
        # Marks split across two chunks are rare; at least the ones found agree.
        assert found and all(marks[o].startswith(v) for o, v in found.items()), found
        assert seen(srv, "big") == ["http.response.start", "http.response.pathsend"]
        assert worker_peak_rss(srv) - before < 64 << 20
    finally:
        path.unlink()
