"""A plain PEP 3333 app (no framework), for what a framework would hide
from the server: how wsgi.input is read, iterables and their close(),
exceptions before and after the headers, the write() callable, exc_info,
wsgi.errors, wsgi.file_wrapper, a Content-Length the body overruns.

Served by tests/http/test_wsgi.py (evicorn --interface wsgi) and by
tests/http/test_wsgi_diff.py (evicorn and gunicorn). Routes dispatch on
PATH_INFO; results some routes record (chunks produced, close() called)
are read back through /result?key=K, keyed by the caller's key.
"""
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs

# key -> what a route recorded (see /result)
RESULTS = {}
LOCK = threading.Lock()

CHUNK = 64 * 1024


def record(key, **values):
    with LOCK:
        RESULTS.setdefault(key, {}).update(values)


def bump(key, name):
    with LOCK:
        d = RESULTS.setdefault(key, {})
        d[name] = d.get(name, 0) + 1


def query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def respond(start_response, status, body, ctype="text/plain; charset=utf-8", extra=()):
    if not isinstance(body, bytes):
        body = json.dumps(body, sort_keys=True).encode()
        ctype = "application/json"
    start_response(status, [("Content-Type", ctype)] + list(extra))
    return [body]


def huge_chunk(i):
    """Chunk i of /huge: its index, repeated, so lost or reordered chunks show."""
    return i.to_bytes(4, "big") * (CHUNK // 4)


# ---- routes -------------------------------------------------------------------


def hello(environ, start_response):
    return respond(start_response, "200 OK", b"Hello, World!", extra=[("X-App", "plain")])


def environ_dump(environ, start_response):
    strs = {k: v for k, v in environ.items() if isinstance(v, str)}
    inp, err = environ["wsgi.input"], environ["wsgi.errors"]
    checks = {
        # PEP 3333: every CGI key is a native string, the wsgi.* keys typed
        "cgi_keys_all_str": all(isinstance(v, str) for k, v in environ.items()
                                if not k.startswith("wsgi.") and "." not in k),
        "wsgi.version": list(environ["wsgi.version"]),
        "wsgi.version_is_tuple": type(environ["wsgi.version"]) is tuple,
        "wsgi.url_scheme": environ["wsgi.url_scheme"],
        "wsgi.multithread": environ["wsgi.multithread"],
        "wsgi.multiprocess": environ["wsgi.multiprocess"],
        "wsgi.run_once": environ["wsgi.run_once"],
        "wsgi.input_terminated": environ.get("wsgi.input_terminated"),
        "flags_are_bool": all(type(environ[k]) is bool for k in (
            "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once")),
        "input_methods": all(callable(getattr(inp, m, None))
                             for m in ("read", "readline", "readlines", "__iter__")),
        "errors_methods": all(callable(getattr(err, m, None))
                              for m in ("write", "writelines", "flush")),
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
    }
    return respond(start_response, "200 OK", {"str": strs, "checks": checks})


def echo(environ, start_response):
    """The body read the way ?mode= says; its size and sha256."""
    q = query(environ)
    mode = q.get("mode", "read")
    inp = environ["wsgi.input"]
    pieces = []
    if mode == "read":
        pieces.append(inp.read())
    elif mode == "readn":
        n = int(q.get("n", "1000"))
        while True:
            b = inp.read(n)
            if not b:
                break
            assert len(b) <= n, (len(b), n)
            pieces.append(b)
    elif mode == "readline":
        while True:
            line = inp.readline()
            if not line:
                break
            pieces.append(line)
    elif mode == "readline-size":
        n = int(q.get("n", "10"))
        while True:
            line = inp.readline(n)
            if not line:
                break
            assert len(line) <= n
            pieces.append(line)
    elif mode == "readlines":
        pieces.extend(inp.readlines())
    elif mode == "iter":
        pieces.extend(inp)
    elif mode == "content-length":
        # what a strict PEP 3333 app does: read exactly CONTENT_LENGTH
        pieces.append(inp.read(int(environ.get("CONTENT_LENGTH") or 0)))
    else:
        return respond(start_response, "400 Bad Request", b"unknown mode")
    body = b"".join(pieces)
    lines = [p for p in pieces if p.endswith(b"\n")]
    out = {"mode": mode, "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
           "pieces": len(pieces), "newline_pieces": len(lines),
           "after_end": len(inp.read())}  # reads at the end give b""
    return respond(start_response, "200 OK", out)


def upload_progress(environ, start_response):
    """Reads the body in 64 KiB reads, recording how much it has read so
    far (in /result) as it goes."""
    key = query(environ).get("key", "progress")
    record(key, read=0, done=False)
    inp, h, total = environ["wsgi.input"], hashlib.sha256(), 0
    while True:
        b = inp.read(CHUNK)
        if not b:
            break
        h.update(b)
        total += len(b)
        record(key, read=total)
    record(key, done=True)
    return respond(start_response, "200 OK", {"length": total, "sha256": h.hexdigest()})


def generated(environ, start_response):
    n = int(query(environ).get("n", "5"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(n):
        yield b"chunk %d\n" % i


def huge(environ, start_response):
    """64 MiB in 64 KiB chunks; how many were produced is in /result."""
    q = query(environ)
    key = q.get("key", "huge")
    n = int(q.get("chunks", "1024"))
    record(key, produced=0, done=False)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def gen():
        for i in range(n):
            bump(key, "produced")
            yield huge_chunk(i)
        record(key, done=True)

    return gen()


class Closing:
    """An iterable whose close() is recorded; ?mode=ok yields three chunks,
    raise raises after the first, forever yields until the client is gone
    (bounded: 30 s); ?delay=S sleeps before the first."""

    def __init__(self, key, mode, delay):
        self.key, self.mode, self.delay = key, mode, delay
        record(key, closed=False, yielded=0, mode=mode)

    def __iter__(self):
        time.sleep(self.delay)
        deadline = time.monotonic() + 30
        for i in range(3):
            bump(self.key, "yielded")
            yield b"part %d\n" % i
            if self.mode == "raise":
                raise RuntimeError("closing iterable failed after part 0")
        while self.mode == "forever" and time.monotonic() < deadline:
            bump(self.key, "yielded")
            time.sleep(0.005)
            yield b"more\n"

    def close(self):
        record(self.key, closed=True)


def closing(environ, start_response):
    q = query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(q.get("key", "closing"), q.get("mode", "ok"), float(q.get("delay", "0")))


def result(environ, start_response):
    key = query(environ).get("key", "")
    with LOCK:
        value = dict(RESULTS.get(key, {}))
    return respond(start_response, "200 OK", value)


def raise_before(environ, start_response):
    time.sleep(float(query(environ).get("delay", "0")))
    raise ValueError("plain error before start_response")


def raise_after(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk\n"
    raise RuntimeError("plain error after the first chunk")


def misbehave(environ, start_response):
    """Apps that break PEP 3333: each is a 500 (nothing was sent yet)."""
    kind = query(environ).get("kind")
    if kind == "str-item":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]
    if kind == "no-start":
        return [b"start_response was never called"]
    if kind == "bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"x"]
    if kind == "empty-then-raise":
        # headers go with the first non-empty string: nothing was sent
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b""
            raise ValueError("failed after an empty string")

        return gen()
    raise LookupError(kind)


def lazy_start(environ, start_response):
    """start_response called from inside the iterable (allowed: the
    headers go with the first string)."""
    def gen():
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lazy", "yes")])
        yield b""
        yield b"lazy body"

    return gen()


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written 1\n")
    write(b"written 2\n")
    return [b"returned\n"]


def write_only(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    write(b"only written")
    return []


def exc_info_late(environ, start_response):
    """start_response with exc_info after the headers were sent must
    re-raise that exception (PEP 3333)."""
    key = query(environ).get("key", "exc_late")
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"headers sent\n"
    try:
        raise KeyError("late failure")
    except KeyError as exc:
        try:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        except KeyError as again:
            record(key, reraised=again is exc)
            raise
        record(key, reraised=False)
    yield b"not reached\n"


def exc_info_early(environ, start_response):
    """exc_info before anything was sent: the new status replaces the old."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
    try:
        raise KeyError("early failure")
    except KeyError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain"),
                                                   ("X-Second", "yes")], sys.exc_info())
    return [b"replaced\n"]


def errors(environ, start_response):
    err = environ["wsgi.errors"]
    err.write("wsgi.errors line one from the app\n")
    err.writelines(["wsgi.errors line two\n", "wsgi.errors line three\n"])
    err.flush()
    return respond(start_response, "200 OK", b"logged")


FILES = {}


def file_bytes(size):
    return bytes(range(256)) * (size // 256) + b"z" * (size % 256)


def file_wrapper(environ, start_response):
    q = query(environ)
    size = int(q.get("size", "100000"))
    key = q.get("key", "file")
    fd, path = tempfile.mkstemp(prefix="wsgi-file-")
    with os.fdopen(fd, "wb") as f:
        f.write(file_bytes(size))
    f = open(path, "rb")
    os.unlink(path)
    with LOCK:
        FILES[key] = f
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](f, 8192)


def file_closed(environ, start_response):
    key = query(environ).get("key", "file")
    with LOCK:
        f = FILES.get(key)
    return respond(start_response, "200 OK", {"closed": f.closed if f else None})


def short_length(environ, start_response):
    """Content-Length 5, body longer: cut to 5 bytes (as gunicorn does)."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"01234", b"56789"]


def short_length_gen(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
    yield b"abcd"
    yield b"efgh"
    yield b"ijkl"


def sleep(environ, start_response):
    seconds = float(query(environ).get("s", "0.5"))
    t0 = time.monotonic()
    time.sleep(seconds)
    return respond(start_response, "200 OK", {"slept": seconds,
                                              "thread": threading.get_ident(),
                                              "took": time.monotonic() - t0})


def no_read(environ, start_response):
    """Answers without reading the request body."""
    return respond(start_response, "200 OK", b"did not read")


def status(environ, start_response):
    q = query(environ)
    return respond(start_response, q.get("s", "200 OK"), b"status\n",
                   extra=[("X-Custom", "one"), ("X-Custom", "two")])


def big_close(environ, start_response):
    """A large body in one string, with Connection: close (a hop-by-hop
    header PEP 3333 keeps from apps, which evicorn honours)."""
    size = int(query(environ).get("size", "1000000"))
    return respond(start_response, "200 OK", b"c" * size, ctype="application/octet-stream",
                   extra=[("Connection", "close")])


def empty(environ, start_response):
    start_response("204 No Content", [])
    return []


ROUTES = {
    "/": hello,
    "/hello": hello,
    "/echo": echo,
    "/upload-progress": upload_progress,
    "/gen": generated,
    "/huge": huge,
    "/closing": closing,
    "/result": result,
    "/raise-before": raise_before,
    "/raise-after": raise_after,
    "/misbehave": misbehave,
    "/lazy": lazy_start,
    "/write": write_callable,
    "/write-only": write_only,
    "/exc-info-late": exc_info_late,
    "/exc-info-early": exc_info_early,
    "/errors": errors,
    "/file": file_wrapper,
    "/file-closed": file_closed,
    "/short-length": short_length,
    "/short-length-gen": short_length_gen,
    "/sleep": sleep,
    "/no-read": no_read,
    "/status": status,
    "/empty": empty,
    "/big-close": big_close,
}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/environ" or path.startswith("/environ/"):
        return environ_dump(environ, start_response)
    route = ROUTES.get(path)
    if route is None:
        return respond(start_response, "404 Not Found", b"no such route: " +
                       path.encode("latin-1"))
    return route(environ, start_response)
