"""Differential test: a FastAPI app written as current ones are
(tests/asgi_app/modern.py: Annotated dependencies, a lifespan yielding
state, pydantic 2 models, streaming and server-sent events, uploads, files,
CORS and GZip middleware, background tasks, exception handlers, response
models), served by evicorn (`evicorn modern:app`) and by uvicorn
(`python -m uvicorn modern:app --loop uvloop --http httptools`) of the same
interpreter. Both must answer the same requests with the same status, the
same bytes on the wire (compressed as sent, and decoded) and the same
headers (date and server are the servers' own). Each test also checks the
answer itself, so both servers being wrong the same way fails too.

Needs FastAPI 0.100+ and pydantic 2 (the PyPI stack of
tests/requirements-asgi.txt); skipped on older stacks such as Debian's.
"""
import email.utils
import gzip
import hashlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import namedtuple

import httpx
import pytest

from evicorn_harness import (evicorn_bin, free_port, python_module_built, stop_group,
                             wait_http_ready)

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "asgi_app"))
PYTHON = sys.executable

FILE_MTIME = 1700000000  # 2023-11-14 22:13:20 GMT
TOKEN = {"X-Token": "secret-token"}
ORIGIN = "https://app.example.com"
IDENTITY = {"Accept-Encoding": "identity"}


def _version(name):
    try:
        from importlib.metadata import version
        return tuple(int(p) for p in re.findall(r"\d+", version(name))[:2])
    except Exception:
        return None


def stack_problem():
    """Why this interpreter cannot run the modern app, or None."""
    fastapi, pydantic = _version("fastapi"), _version("pydantic")
    if fastapi is None or fastapi < (0, 100):
        return "needs FastAPI >= 0.100 (found %s)" % (fastapi,)
    if pydantic is None or pydantic < (2, 0):
        return "needs pydantic >= 2 (found %s)" % (pydantic,)
    for module in ("uvicorn", "uvloop", "httptools", "python_multipart"):
        if importlib.util.find_spec(module) is None:
            return "%s is not installed for %s" % (module, PYTHON)
    return None


pytestmark = [
    pytest.mark.skipif(not python_module_built(), reason="evicorn's Python module is not built"),
    pytest.mark.skipif(stack_problem() is not None, reason=str(stack_problem())),
]


# ---- the two servers -----------------------------------------------------------






def file_bytes(n):
    return hashlib.sha256(b"seed").digest() * (n // 32) + b"z" * (n % 32)


CONTENTS = {
    "report.txt": "".join("line %04d of the report\n" % i for i in range(400)).encode(),
    "data.bin": file_bytes(200000),
    "tiny.txt": b"tiny\n",
    # /site: StaticFiles(html=True); each page under GZip's minimum size.
    "site/index.html": b"<!doctype html><title>Home</title><p>home page</p>\n",
    "site/docs/index.html": b"<!doctype html><title>Docs</title><p>the docs</p>\n",
    "site/404.html": b"<!doctype html><title>Missing</title><p>no such page</p>\n",
    "site/style.css": b"body { margin: 0 }\n" * 200,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The files /download, /static and /site serve, with a known mtime."""
    d = tmp_path_factory.mktemp("files")
    contents = dict(CONTENTS)
    for name, data in contents.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (FILE_MTIME, FILE_MTIME))
    return str(d), contents


@pytest.fixture(scope="module")
def servers(tmp_path_factory, files):
    env = dict(os.environ, MODERN_APP_FILES=files[0])
    if sys.prefix != sys.base_prefix:
        env.setdefault("VIRTUAL_ENV", sys.prefix)  # evicorn serves with this venv too
    plugins = str(tmp_path_factory.mktemp("plugins"))
    ev_port, uv_port = free_port(), free_port()
    procs, clients = [], []
    try:
        ev = subprocess.Popen(
            [evicorn_bin(), "modern:app", "--app-dir", APP_DIR, "--host", "127.0.0.1", "--port",
             str(ev_port), "--plugins", plugins, "--no-access-log", "--limit-body", "16M"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(ev)
        uv = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "modern:app", "--app-dir", APP_DIR, "--host", "127.0.0.1",
             "--port", str(uv_port), "--loop", "uvloop", "--http", "httptools",
             "--no-access-log"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(uv)
        wait_http_ready(ev_port, ev, "/health")
        wait_http_ready(uv_port, uv, "/health")
        for port in (ev_port, uv_port):
            clients.append(httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10,
                                        follow_redirects=False))
        yield clients
    finally:
        for c in clients:
            c.close()
        for p in procs:
            stop_group(p)


# ---- one request to both ----------------------------------------------------------

Answer = namedtuple("Answer", "status headers raw body")
OWN_HEADERS = ("date", "server")


def exchange(client, method, path, **kw):
    """The answer as sent (raw, after de-chunking) and decoded (body), on
    the client's keep-alive connection (HEADs too: the connection must stay
    usable after one)."""
    if callable(kw.get("content")):
        kw["content"] = kw["content"]()  # a fresh generator: a chunked body
    try:
        with client.stream(method, path, **kw) as r:
            raw = b"".join(r.iter_raw())
    except httpx.HTTPError as e:
        return Answer("error", type(e).__name__, b"", b"")
    headers = tuple(sorted((k.lower(), v) for k, v in r.headers.multi_items()
                           if k.lower() not in OWN_HEADERS))
    body = gzip.decompress(raw) if r.headers.get("content-encoding") == "gzip" else raw
    return Answer(r.status_code, headers, raw, body)


def same(servers, method, path, normalize=None, **kw):
    """Sends the request to evicorn, then to uvicorn; asserts the answers
    are the same (after `normalize`, if given); returns evicorn's."""
    ev, uv = (exchange(c, method, path, **kw) for c in servers)
    if normalize:
        ev, uv = normalize(ev), normalize(uv)
    assert ev == uv
    return ev


def header(answer, name):
    values = [v for k, v in answer.headers if k == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None


def headers(answer, name):
    return [v for k, v in answer.headers if k == name]


def as_json(answer):
    return json.loads(answer.body)


# ---- table of requests: same answer, expected status ------------------------------------

CASES = [
    ("GET", "/health", {}, 200),
    ("GET", "/ping", {}, 200),
    ("HEAD", "/ping", {}, 200),
    ("GET", "/nope", {}, 404),
    ("DELETE", "/health", {}, 405),
    ("GET", "/items/0", {}, 422),
    ("GET", "/items/abc", {}, 422),
    ("GET", "/items/999", {}, 404),
    ("GET", "/items?skip=-1&limit=0", {}, 422),
    ("GET", "/items?q=ABC", {}, 422),
    ("GET", "/items?q=hammer&limit=5", {}, 200),
    ("GET", "/colors/red?shade=3", {"headers": {"User-Agent": "modern/1"}}, 200),
    ("GET", "/colors/blue", {}, 422),
    ("GET", "/colors/green?shade=10", {}, 422),
    ("GET", "/search?tag=a&tag=b&exact=yes", {}, 200),
    ("GET", "/search?tag=a&tag=b&tag=c&tag=d", {}, 422),
    ("GET", "/search?exact=maybe", {}, 422),
    ("POST", "/items", {"json": {"name": "saw", "price": 1}}, 422),
    ("POST", "/items", {"json": {"name": "saw", "price": 1}, "headers": {"X-Token": "nope"}}, 401),
    ("POST", "/items", {"json": {"name": "saw", "price": 1, "colour": "red"}, "headers": TOKEN},
     422),
    ("POST", "/items", {"json": {"name": " admin ", "price": 1}, "headers": TOKEN}, 422),
    ("POST", "/items", {"content": b'{"name": "saw", "price":', "headers": dict(
        TOKEN, **{"Content-Type": "application/json"})}, 422),
    ("POST", "/items", {"content": b'{"name": "saw", "price": 1}', "headers": dict(
        TOKEN, **{"Content-Type": "text/plain"})}, 422),
    ("POST", "/items", {"json": [], "headers": TOKEN}, 422),
    ("PUT", "/items/998", {"json": {"name": "saw", "price": 1}, "headers": TOKEN}, 404),
    ("POST", "/users", {"json": {"username": "Bob!", "password": "short"}}, 422),
    ("GET", "/quota/someone", {}, 200),
    ("GET", "/quota/greedy", {}, 429),
    ("GET", "/me", {}, 401),
    ("GET", "/me", {"headers": {"Cookie": "session=s-ann; flash=hi"}}, 200),
    ("POST", "/login", {"data": {"username": "ann", "password": "wrong"}}, 401),
    ("POST", "/login", {"data": {"username": "an"}}, 422),
    ("GET", "/orders/424242", {}, 404),
    ("GET", "/text?n=3", {}, 200),
    ("GET", "/text?n=1000", {}, 200),
    ("GET", "/text?n=1000", {"headers": IDENTITY}, 200),
    ("GET", "/page?title=Modern", {}, 200),
    ("GET", "/big?n=3", {}, 200),
    ("GET", "/big", {}, 200),
    ("GET", "/big", {"headers": IDENTITY}, 200),
    ("GET", "/big?n=30000", {}, 200),
    ("GET", "/stream/async?n=4", {}, 200),
    ("GET", "/stream/async?n=200&size=100", {}, 200),
    ("GET", "/stream/async?n=0", {}, 200),
    ("GET", "/stream/sync?n=3", {}, 200),
    ("GET", "/events?n=2", {}, 200),
    ("GET", "/events?n=2", {"headers": {"Last-Event-ID": "7"}}, 200),
    ("GET", "/events?n=1", {"headers": {"Last-Event-ID": "x"}}, 422),
    ("GET", "/events/manual?n=3", {}, 200),
    ("GET", "/items.jsonl?n=2", {}, 200),
    ("GET", "/items.jsonl?n=40", {}, 200),
    ("POST", "/events/release/none", {}, 404),
    ("POST", "/upload", {"data": {"note": "no file"}}, 422),
    ("POST", "/upload", {"files": {"file": ("a.txt", b"abc", "text/plain")}}, 422),
    ("GET", "/download/tiny.txt", {}, 200),
    ("GET", "/download/missing.txt", {}, 404),
    ("GET", "/download/..%2Fmodern.py", {}, 404),
    ("GET", "/download/Bad.TXT", {}, 422),
    ("HEAD", "/download/report.txt", {}, 200),
    ("HEAD", "/download/data.bin", {}, 200),
    ("GET", "/download/data.bin", {"headers": {"Range": "bytes=100-199"}}, 206),
    ("GET", "/download/data.bin", {"headers": {"Range": "bytes=-50"}}, 206),
    ("GET", "/download/report.txt", {"headers": {"Range": "bytes=0-9"}}, 206),
    ("HEAD", "/download/data.bin", {"headers": {"Range": "bytes=0-9"}}, 206),
    ("GET", "/download/data.bin", {"headers": {"Range": "bytes=999999-"}}, 416),
    ("GET", "/download/data.bin", {"headers": {"Range": "lines=1-2"}}, 400),
    ("GET", "/static/tiny.txt", {}, 200),
    ("GET", "/static/data.bin", {"headers": {"Range": "bytes=10-19"}}, 206),
    ("HEAD", "/static/report.txt", {}, 200),
    ("GET", "/static/missing.txt", {}, 404),
    ("POST", "/static/tiny.txt", {}, 405),
    ("OPTIONS", "/items", {"headers": {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "x-token, content-type"}},
     200),
    ("OPTIONS", "/items", {"headers": {"Origin": "https://evil.example",
                                       "Access-Control-Request-Method": "DELETE"}}, 400),
    ("GET", "/health", {"headers": {"Origin": ORIGIN, "X-Request-ID": "cors-1"}}, 200),
    ("GET", "/health", {"headers": {"Origin": "https://evil.example"}}, 200),
    ("DELETE", "/items/997", {"headers": TOKEN}, 404),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/v2/ping", {"headers": {"Host": "h.example"}}, 200),
    ("GET", "/v2/openapi.json", {}, 200),
    ("GET", "/v2/nope", {}, 404),
    ("GET", "/whoami?x=1&y=%C3%A9", {"headers": {"Host": "h.example"}}, 200),
    ("GET", "/whoami", {"headers": {"Host": "api.example.org:8443"}}, 200),
    ("GET", "/whoami", {"headers": {"Host": "api.example.org", "X-Forwarded-Proto": "https",
                                    "X-Forwarded-For": "203.0.113.9"}}, 200),
]


@pytest.mark.parametrize("method,path,kw,status", CASES,
                         ids=["%s %s %d" % (m, p, i) for i, (m, p, _, _) in enumerate(CASES)])
def test_same_answer_as_uvicorn(servers, method, path, kw, status):
    answer = same(servers, method, path, **kw)
    assert answer.status == status, answer
    length = header(answer, "content-length")
    if method == "HEAD":
        assert answer.raw == b""
    elif length is not None:
        assert int(length) == len(answer.raw)
    if answer.status == 422:
        # FastAPI's own handler, overridden: pydantic 2's error shape.
        errors = as_json(answer)["detail"]
        assert header(answer, "x-validation-errors") == str(len(errors))
        for err in errors:
            assert {"type", "loc", "msg", "input"} <= set(err) <= {
                "type", "loc", "msg", "input", "ctx", "url"}, err


# ---- what each feature must answer ---------------------------------------------


def test_lifespan_state_reaches_routes(servers):
    """The dict the lifespan yields is request.state in every request."""
    answer = same(servers, "GET", "/health")
    assert as_json(answer) == {"ok": True, "started_at": "lifespan"}
    assert header(answer, "x-request-id") == "generated"
    assert header(answer, "vary") == "Origin"


def test_pydantic2_validation_errors(servers):
    """Constraints, nested models, field validators and extra="forbid" fail
    with pydantic 2's error types and context, all in one 422."""
    body = {"name": "x", "price": -1, "quantity": 101, "tags": [{"name": "  "}, {"n": 1}],
            "owner": {"name": "o", "email": "bad"}, "colour": "red"}
    answer = same(servers, "POST", "/items", json=body, headers=TOKEN)
    assert answer.status == 422
    assert header(answer, "content-type") == "application/json"
    errors = as_json(answer)["detail"]
    got = {(e["type"], tuple(e["loc"])) for e in errors}
    assert got == {
        ("string_too_short", ("body", "name")),
        ("greater_than", ("body", "price")),
        ("less_than_equal", ("body", "quantity")),
        ("string_too_short", ("body", "tags", 0, "name")),
        ("missing", ("body", "tags", 1, "name")),
        ("extra_forbidden", ("body", "tags", 1, "n")),
        ("string_pattern_mismatch", ("body", "owner", "email")),
        ("extra_forbidden", ("body", "colour")),
    }
    by_type = {e["type"]: e for e in errors}
    assert by_type["greater_than"]["ctx"] == {"gt": 0.0}
    assert by_type["greater_than"]["input"] == -1
    assert by_type["greater_than"]["msg"] == "Input should be greater than 0"
    assert header(answer, "x-validation-errors") == "8"

    answer = same(servers, "POST", "/items", json={"name": "Root", "price": 2}, headers=TOKEN)
    (err,) = as_json(answer)["detail"]
    assert err["type"] == "value_error" and err["loc"] == ["body", "name"]
    assert err["msg"] == "Value error, name 'Root' is reserved"

    answer = same(servers, "POST", "/items", content=b'{"name": ', headers=dict(
        TOKEN, **{"Content-Type": "application/json"}))
    (err,) = as_json(answer)["detail"]
    assert err["type"] == "json_invalid" and err["loc"] == ["body", 9]

    answer = same(servers, "GET", "/items/0")
    (err,) = as_json(answer)["detail"]
    assert (err["type"], err["loc"], err["ctx"]) == ("greater_than_equal", ["path", "item_id"],
                                                     {"ge": 1})


def test_header_dependency_and_http_exception_headers(servers):
    """A required header dependency: missing is a 422, wrong is the
    HTTPException's 401 with its WWW-Authenticate header."""
    answer = same(servers, "POST", "/items", json={"name": "saw", "price": 1})
    (err,) = as_json(answer)["detail"]
    assert (err["type"], err["loc"]) == ("missing", ["header", "x-token"])
    answer = same(servers, "POST", "/items", json={"name": "saw", "price": 1},
                  headers={"X-Token": "wrong"})
    assert answer.status == 401
    assert as_json(answer) == {"detail": "Invalid X-Token"}
    assert header(answer, "www-authenticate") == "Bearer"


def test_create_and_read_item(servers):
    """201 with Location; the stored item read back without the fields the
    client never set (response_model_exclude_unset); the listing's
    sub-dependencies (pagination, query constraints)."""
    item = {"name": "  claw hammer ", "price": 12.5, "tags": [{"name": " tools "}],
            "owner": {"name": "Ann", "email": "ann@example.com"}}
    answer = same(servers, "POST", "/items", json=item,
                  headers=dict(TOKEN, **{"X-Request-ID": "create-1"}))
    assert answer.status == 201
    created = as_json(answer)
    assert created == {"id": created["id"], "name": "Claw Hammer", "price": 12.5, "quantity": 1,
                       "description": None, "tags": [{"name": "tools"}],
                       "owner": {"name": "Ann", "email": "ann@example.com"}}
    location = header(answer, "location")
    assert location == "/items/%d" % created["id"]
    assert header(answer, "x-request-id") == "create-1"

    answer = same(servers, "GET", location)
    assert as_json(answer) == {"id": created["id"], "name": "Claw Hammer", "price": 12.5,
                               "tags": [{"name": "tools"}],
                               "owner": {"name": "Ann", "email": "ann@example.com"}}

    answer = same(servers, "PUT", location, json={"name": "mallet", "price": 3, "quantity": 2},
                  headers=TOKEN)
    assert as_json(answer)["name"] == "Mallet" and as_json(answer)["quantity"] == 2
    answer = same(servers, "GET", location)
    assert as_json(answer) == {"id": created["id"], "name": "Mallet", "price": 3.0,
                               "quantity": 2, "description": None, "tags": [], "owner": None}

    answer = same(servers, "GET", "/items?q=mallet&skip=0&limit=5")
    assert as_json(answer) == {"page": {"skip": 0, "limit": 5}, "count": 1, "names": ["Mallet"]}


def test_response_model_drops_secret(servers):
    """The response model leaves the password out."""
    answer = same(servers, "POST", "/users",
                  json={"username": "bob_1", "password": "correct horse", "full_name": "Bob"})
    assert answer.status == 201
    assert answer.body == b'{"username":"bob_1","full_name":"Bob"}'


def test_yield_dependency_tears_down_after_response(servers):
    """A dependency with yield: the endpoint sees its setup, not its
    teardown; the next request sees the teardown. An exception handled by
    an app handler passes through the dependency first."""
    answer = same(servers, "GET", "/audit", headers={"X-Request-ID": "audit-1"})
    log = as_json(answer)["audit"]
    assert log[0] == "startup"
    assert log[-1] == "open audit-1"
    answer = same(servers, "GET", "/quota/greedy", headers={"X-Request-ID": "audit-2"})
    assert answer.status == 429
    assert as_json(answer) == {"error": "quota exceeded", "who": "greedy"}
    assert header(answer, "retry-after") == "30"
    answer = same(servers, "GET", "/audit", headers={"X-Request-ID": "audit-3"})
    log = as_json(answer)["audit"]
    assert log[-6:] == ["open audit-1", "close audit-1", "open audit-2", "failed audit-2",
                        "close audit-2", "open audit-3"]


def test_background_task_effect_is_seen_later(servers):
    """The response leaves before the background tasks run; a later request
    sees what they did."""
    answer = same(servers, "POST", "/orders?sku=widget")
    assert answer.status == 202
    order = as_json(answer)
    assert order["status"] == "pending" and order["notified"] is False
    # Each server runs its tasks at its own pace: wait for each to settle,
    # then compare what both say.
    for client in servers:
        deadline = time.monotonic() + 5
        while True:
            answer = exchange(client, "GET", "/orders/%d" % order["id"])
            if answer.status == 200 and as_json(answer)["notified"]:
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
    answer = same(servers, "GET", "/orders/%d" % order["id"])
    assert as_json(answer) == {"id": order["id"], "sku": "widget", "status": "fulfilled",
                               "notified": True}


def test_form_login_redirect_and_cookies(servers):
    """A form POST answered by a 303 with two Set-Cookie headers."""
    answer = same(servers, "POST", "/login", data={"username": "ann", "password": "hunter22"})
    assert answer.status == 303
    assert header(answer, "location") == "/me"
    assert sorted(headers(answer, "set-cookie")) == [
        "flash=welcome; Path=/me; SameSite=lax",
        "session=s-ann; HttpOnly; Max-Age=3600; Path=/; SameSite=lax",
    ]
    answer = same(servers, "GET", "/me", headers={"Cookie": "session=s-ann; flash=welcome"})
    assert as_json(answer) == {"user": "ann", "flash": "welcome"}


def test_gzip_large_bodies_only(servers):
    """GZip: a large body is compressed (Content-Length of the compressed
    bytes, Vary: Accept-Encoding), a small one and one for a client that
    does not accept gzip are not."""
    big = same(servers, "GET", "/big")
    assert header(big, "content-encoding") == "gzip"
    assert header(big, "vary") == "Accept-Encoding, Origin"
    assert int(header(big, "content-length")) == len(big.raw) < len(big.body)
    assert len(as_json(big)["rows"]) == 2000
    plain = same(servers, "GET", "/big", headers=IDENTITY)
    assert header(plain, "content-encoding") is None
    assert plain.body == big.body
    assert int(header(plain, "content-length")) == len(plain.body)
    small = same(servers, "GET", "/big?n=3")
    assert header(small, "content-encoding") is None
    assert header(small, "vary") == "Origin"
    assert as_json(small)["rows"][2] == {"i": 2, "name": "row 2", "even": True}


def test_streaming_responses(servers):
    """Streaming responses are chunked; sync and async generators; gzip
    applies to a long stream, not to server-sent events."""
    answer = same(servers, "GET", "/stream/async?n=3", headers=IDENTITY)
    assert header(answer, "transfer-encoding") == "chunked"
    assert header(answer, "content-length") is None
    assert answer.body == b"async chunk 0\nasync chunk 1\nasync chunk 2\n"
    answer = same(servers, "GET", "/stream/sync?n=2")
    assert header(answer, "transfer-encoding") == "chunked"
    assert header(answer, "content-type") == "text/csv; charset=utf-8"
    assert header(answer, "x-rows") == "2"
    assert answer.body == b"sync chunk 0\nsync chunk 1\n"
    answer = same(servers, "GET", "/stream/async?n=200&size=100")
    assert header(answer, "content-encoding") == "gzip"
    assert header(answer, "transfer-encoding") == "chunked"
    assert answer.body == b"".join(b"async chunk %d\n" % i + b"." * 100 for i in range(200))
    answer = same(servers, "GET", "/events?n=40")
    assert header(answer, "content-encoding") is None
    assert header(answer, "content-type") == "text/event-stream; charset=utf-8"


def test_fastapi_server_sent_events(servers):
    """FastAPI's EventSourceResponse frames yielded events; Last-Event-ID
    (an Annotated Header) resumes."""
    answer = same(servers, "GET", "/events?n=2", headers={"Last-Event-ID": "4"})
    assert header(answer, "content-type") == "text/event-stream; charset=utf-8"
    assert header(answer, "cache-control") == "no-cache"
    assert header(answer, "x-accel-buffering") == "no"
    assert header(answer, "transfer-encoding") == "chunked"
    assert answer.body == (b'event: tick\ndata: {"i": 5, "square": 25}\nid: 5\n\n'
                           b'event: tick\ndata: {"i": 6, "square": 36}\nid: 6\n\n'
                           b"event: end\ndata: bye\n\n")


def test_json_lines_stream(servers):
    """A generator endpoint without a response class streams JSON Lines,
    each line validated by the item model."""
    answer = same(servers, "GET", "/items.jsonl?n=2", headers=IDENTITY)
    assert header(answer, "content-type") == "application/jsonl"
    assert [json.loads(line) for line in answer.body.splitlines()] == [
        {"id": 1, "name": "Item 0", "price": 0.5, "quantity": 1, "description": None,
         "tags": [], "owner": None},
        {"id": 2, "name": "Item 1", "price": 1.5, "quantity": 1, "description": None,
         "tags": [], "owner": None},
    ]


def read_event(lines):
    event = []
    for line in lines:
        if line == "":
            if event:
                return event
            continue
        event.append(line)
    return event


def sse_with_gate(client, gate):
    """Reads the first events, and only then lets the app send the rest: a
    server that held the stream back would make the app time out."""
    events = []
    with client.stream("GET", "/events/manual?n=3&gate=" + gate) as r:
        status, ctype = r.status_code, r.headers.get("content-type")
        lines = r.iter_lines()
        events.append(read_event(lines))
        events.append(read_event(lines))
        released = client.post("/events/release/" + gate)
        assert released.status_code == 200, released
        while True:
            event = read_event(lines)
            if not event:
                break
            events.append(event)
    return status, ctype, events


def test_server_sent_events_arrive_incrementally(servers):
    ev, uv = (sse_with_gate(c, "gate-1") for c in servers)
    assert ev == uv
    assert ev == (200, "text/event-stream; charset=utf-8", [
        ["retry: 1000"],
        ["id: 0", "event: tick", 'data: {"i": 0}'],
        ["event: gate", "data: released"],
        ["id: 1", "event: tick", 'data: {"i": 1}'],
        ["id: 2", "event: tick", 'data: {"i": 2}'],
    ])


def test_cors(servers):
    """Preflight from an allowed origin: 200 with the allowed methods and
    headers; from another: 400. A simple request from the allowed origin
    gets the credentials and exposed headers; another origin gets none."""
    answer = same(servers, "OPTIONS", "/items", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-token, content-type"})
    assert answer.status == 200 and answer.body == b"OK"
    assert header(answer, "access-control-allow-origin") == ORIGIN
    assert header(answer, "access-control-allow-methods") == "GET, POST, PUT"
    assert header(answer, "access-control-allow-headers") == (
        "Accept, Accept-Language, Content-Language, Content-Type, X-Token")
    assert header(answer, "access-control-allow-credentials") == "true"
    assert header(answer, "access-control-max-age") == "600"
    assert "Origin" in header(answer, "vary")
    answer = same(servers, "OPTIONS", "/items", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"})
    assert answer.status == 400
    assert answer.body == b"Disallowed CORS origin, method"
    assert header(answer, "access-control-allow-origin") is None

    answer = same(servers, "GET", "/health", headers={"Origin": ORIGIN,
                                                      "X-Request-ID": "cors-2"})
    assert header(answer, "access-control-allow-origin") == ORIGIN
    assert header(answer, "access-control-allow-credentials") == "true"
    assert header(answer, "access-control-expose-headers") == "X-Request-ID"
    assert header(answer, "x-request-id") == "cors-2"
    answer = same(servers, "GET", "/health", headers={"Origin": "https://evil.example"})
    assert answer.status == 200
    assert header(answer, "access-control-allow-origin") is None


def test_upload_one_file_with_fields(servers):
    """multipart/form-data: a file larger than one read, and form fields."""
    data = file_bytes(1500000)
    answer = same(servers, "POST", "/upload", data={"note": "quarterly", "public": "true"},
                  files={"file": ("report.bin", data, "application/octet-stream")})
    assert answer.status == 200
    assert as_json(answer) == {
        "file": {"filename": "report.bin", "content_type": "application/octet-stream",
                 "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "note": "quarterly", "public": True}


def test_upload_many_files(servers):
    files = [("files", ("a.txt", b"alpha\n", "text/plain")),
             ("files", ("b.json", b'{"b": 2}', "application/json")),
             ("files", ("c.bin", file_bytes(70000), "application/octet-stream"))]
    answer = same(servers, "POST", "/uploads", data={"tags": ["x", "y"]}, files=files)
    got = as_json(answer)
    assert got["tags"] == ["x", "y"]
    assert [(f["filename"], f["content_type"], f["size"], f["sha256"]) for f in got["files"]] == [
        (name, ctype, len(data), hashlib.sha256(data).hexdigest())
        for _, (name, data, ctype) in files]
    answer = same(servers, "POST", "/upload/raw",
                  files={"data": ("x", b"\x00\xff" * 5000, "application/octet-stream")})
    assert as_json(answer) == {"size": 10000,
                               "sha256": hashlib.sha256(b"\x00\xff" * 5000).hexdigest()}


def file_validators(data):
    etag = '"%s"' % hashlib.md5(("%s-%d" % (float(FILE_MTIME), len(data))).encode()).hexdigest()
    return etag, email.utils.formatdate(FILE_MTIME, usegmt=True)


# ---- files: the same file, however it left ---------------------------------------
#
# evicorn offers http.response.pathsend, uvicorn does not: Starlette's
# FileResponse hands evicorn the path of a whole file (which leaves by
# sendfile, with the app's Content-Length), and streams it through
# Python under uvicorn. GZipMiddleware compresses (and marks with Vary) only
# what it streams: a file sent by path goes out as it is. So a whole file's
# answer is compared on what a client of either gets: the status, the
# decoded bytes and the file's headers; the framing where uvicorn's is not
# compressed. Ranges, HEAD and 304 are streamed by Starlette under both.

FILE_HEADERS = ("content-type", "etag", "last-modified", "accept-ranges", "content-range",
                "content-disposition", "cache-control", "location")


def file_view(answer):
    return (answer.status, answer.body,
            tuple((k, v) for k, v in answer.headers if k in FILE_HEADERS))


def same_file(servers, method, path, **kw):
    """Sends the request to both; asserts the same file answer (see above)
    and that evicorn's is whole: never compressed, never chunked, its
    Content-Length that of the bytes sent; returns evicorn's."""
    ev, uv = (exchange(c, method, path, **kw) for c in servers)
    assert file_view(ev) == file_view(uv)
    if header(uv, "content-encoding") is None:
        assert header(ev, "content-length") == header(uv, "content-length")
    assert header(ev, "content-encoding") is None
    assert header(ev, "transfer-encoding") is None
    if method == "HEAD" or ev.status == 304:
        assert ev.raw == b""
    else:
        assert header(ev, "content-length") == str(len(ev.raw))
    return ev


REPORT_ETAG, REPORT_MODIFIED = file_validators(CONTENTS["report.txt"])
FILE_CASES = [
    ("GET", "/download/report.txt", {}, 200),
    ("GET", "/download/report.txt", {"headers": IDENTITY}, 200),
    ("GET", "/download/data.bin", {}, 200),
    ("GET", "/download/data.bin?attachment=1", {"headers": IDENTITY}, 200),
    ("HEAD", "/download/data.bin", {}, 200),
    ("GET", "/download/data.bin", {"headers": {"Range": "bytes=0-9",
                                               "If-Range": '"not-the-etag"'}}, 200),
    ("GET", "/download/data.bin", {"headers": {"Range": "bytes=0-9", "If-Range": REPORT_ETAG}},
     200),
    ("GET", "/download/report.txt", {"headers": {"Range": "bytes=0-9", "If-Range": REPORT_ETAG}},
     206),
    ("GET", "/download/report.txt", {"headers": {"Range": "bytes=10-"}}, 206),
    ("HEAD", "/download/report.txt", {"headers": {"Range": "bytes=10-"}}, 206),
    ("GET", "/static/report.txt", {}, 200),
    ("GET", "/static/data.bin", {"headers": IDENTITY}, 200),
    ("HEAD", "/static/data.bin", {}, 200),
    ("GET", "/static/report.txt", {"headers": {"If-None-Match": REPORT_ETAG}}, 304),
    ("GET", "/static/report.txt", {"headers": {"If-Modified-Since": REPORT_MODIFIED}}, 304),
    ("HEAD", "/static/report.txt", {"headers": {"If-None-Match": REPORT_ETAG}}, 304),
    ("GET", "/static/report.txt", {"headers": {"If-None-Match": '"other"'}}, 200),
    ("GET", "/static/report.txt", {"headers": {"Range": "bytes=0-99"}}, 206),
    ("GET", "/static/report.txt", {"headers": {"Range": "bytes=99999-"}}, 416),
    ("GET", "/static/nope.txt", {}, 404),
    ("HEAD", "/static/nope.txt", {}, 404),
    ("GET", "/site/", {}, 200),
    ("HEAD", "/site/", {}, 200),
    ("GET", "/site/index.html", {}, 200),
    ("GET", "/site/docs/", {}, 200),
    ("GET", "/site/docs", {"headers": {"Host": "h.example"}}, 307),
    ("GET", "/site/style.css", {}, 200),
    ("GET", "/site/style.css", {"headers": {"Range": "bytes=5-9"}}, 206),
    ("GET", "/site/missing.html", {}, 404),
    ("GET", "/site/docs/missing/", {}, 404),
]


@pytest.mark.parametrize("method,path,kw,status", FILE_CASES,
                         ids=["%s %s %d" % (m, p, i) for i, (m, p, _, _) in enumerate(FILE_CASES)])
def test_same_file_as_uvicorn(servers, files, method, path, kw, status):
    answer = same_file(servers, method, path, **kw)
    assert answer.status == status, answer


def test_site_folder_index_and_not_found_page(servers, files):
    """StaticFiles(html=True): a folder is its index.html, a folder named
    without its slash is redirected, a missing page is 404.html with status
    404."""
    contents = files[1]
    answer = same_file(servers, "GET", "/site/")
    assert answer.body == contents["site/index.html"]
    assert header(answer, "content-type") == "text/html; charset=utf-8"
    answer = same_file(servers, "GET", "/site/docs/")
    assert answer.body == contents["site/docs/index.html"]
    answer = same_file(servers, "GET", "/site/docs", headers={"Host": "h.example"})
    assert header(answer, "location") == "http://h.example/site/docs/"
    answer = same_file(servers, "GET", "/site/missing.html")
    assert answer.status == 404 and answer.body == contents["site/404.html"]
    answer = same_file(servers, "GET", "/site/style.css")
    assert answer.body == contents["site/style.css"]
    assert header(answer, "content-type") == "text/css; charset=utf-8"


def test_file_response(servers, files):
    """FileResponse: Content-Length, ETag, Last-Modified, Accept-Ranges; a
    HEAD with the same headers and no body; a download's
    Content-Disposition; a text file gzipped when streamed (uvicorn), sent
    as it is when sent by path (evicorn)."""
    data = files[1]["data.bin"]
    etag, modified = file_validators(data)
    answer = same_file(servers, "GET", "/download/data.bin", headers=IDENTITY)
    assert answer.status == 200 and answer.body == data
    assert header(answer, "content-length") == str(len(data))
    assert header(answer, "content-type") == "application/octet-stream"
    assert header(answer, "etag") == etag
    assert header(answer, "last-modified") == modified
    assert header(answer, "accept-ranges") == "bytes"
    assert header(answer, "cache-control") == "public, max-age=60"
    head = same(servers, "HEAD", "/download/data.bin", headers=IDENTITY)
    assert head.status == 200 and head.raw == b""
    # A streamed GET passes through GZip's streaming path, which adds Vary.
    assert [h for h in head.headers if h[0] != "vary"] == [
        h for h in answer.headers if h[0] != "vary"]
    answer = same_file(servers, "GET", "/download/data.bin?attachment=1", headers=IDENTITY)
    assert header(answer, "content-disposition") == 'attachment; filename="data.bin"'

    report = files[1]["report.txt"]
    ev, uv = (exchange(c, "GET", "/download/report.txt") for c in servers)
    # uvicorn: Starlette streams the file through GZip, which compresses it.
    assert header(uv, "content-encoding") == "gzip"
    # evicorn: the file leaves by path (pathsend), which GZip lets by.
    assert header(ev, "content-encoding") is None
    assert header(ev, "content-length") == str(len(report))
    for answer in (ev, uv):
        assert header(answer, "content-type") == "text/plain; charset=utf-8"
        assert answer.body == report
        assert header(answer, "etag") == file_validators(report)[0]


def test_file_ranges(servers, files):
    """Range requests: one range is a 206 with Content-Range (never
    compressed); several are multipart/byteranges; one past the end a 416;
    an If-Range that does not match gets the whole file."""
    data = files[1]["data.bin"]
    etag, _ = file_validators(data)
    answer = same(servers, "GET", "/download/data.bin", headers={"Range": "bytes=100-199"})
    assert answer.status == 206
    assert answer.body == data[100:200]
    assert header(answer, "content-range") == "bytes 100-199/%d" % len(data)
    assert header(answer, "content-length") == "100"
    assert header(answer, "content-encoding") is None
    answer = same(servers, "GET", "/download/data.bin", headers={"Range": "bytes=-50"})
    assert answer.body == data[-50:]
    answer = same(servers, "GET", "/download/data.bin",
                  headers={"Range": "bytes=0-9", "If-Range": etag})
    assert answer.status == 206 and answer.body == data[:10]
    answer = same_file(servers, "GET", "/download/data.bin",
                       headers={"Range": "bytes=0-9", "If-Range": '"stale"', **IDENTITY})
    assert answer.status == 200 and answer.body == data
    answer = same(servers, "GET", "/download/data.bin", headers={"Range": "bytes=999999-"})
    assert answer.status == 416
    assert header(answer, "content-range") == "bytes */%d" % len(data)

    def boundary(answer):
        """The multipart boundary is random: the same placeholder, of the
        same length, for both."""
        ctype = header(answer, "content-type") or ""
        b = ctype.partition("boundary=")[2]
        if not b:
            return answer
        x = "x" * len(b)
        return answer._replace(
            headers=tuple((k, v.replace(b, x)) for k, v in answer.headers),
            raw=answer.raw.replace(b.encode(), x.encode()),
            body=answer.body.replace(b.encode(), x.encode()))

    answer = same(servers, "GET", "/download/data.bin", normalize=boundary,
                  headers={"Range": "bytes=0-4, 1000-1004"})
    assert answer.status == 206
    assert header(answer, "content-type") == "multipart/byteranges; boundary=" + "x" * 26
    assert header(answer, "content-length") == str(len(answer.raw))
    assert data[0:5] in answer.body and data[1000:1005] in answer.body
    assert b"Content-Range: bytes 1000-1004/%d" % len(data) in answer.body


def test_static_files(servers, files):
    """StaticFiles: the same validators, a 304 for a matching
    If-None-Match or If-Modified-Since, Range."""
    data = files[1]["tiny.txt"]
    etag, modified = file_validators(data)
    answer = same(servers, "GET", "/static/tiny.txt")
    assert answer.body == data
    assert (header(answer, "etag"), header(answer, "last-modified")) == (etag, modified)
    for cond in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        answer = same(servers, "GET", "/static/tiny.txt", headers=cond)
        assert answer.status == 304 and answer.raw == b""
        assert header(answer, "etag") == etag
    answer = same(servers, "GET", "/static/tiny.txt", headers={"If-None-Match": '"other"'})
    assert answer.status == 200 and answer.body == data
    answer = same(servers, "GET", "/static/data.bin", headers={"Range": "bytes=10-19"})
    assert answer.status == 206 and answer.body == files[1]["data.bin"][10:20]


def test_delete_is_204_without_body(servers):
    """status_code=204: no body and no body framing."""
    answer = same(servers, "POST", "/items", json={"name": "doomed", "price": 1}, headers=TOKEN)
    location = header(answer, "location")
    answer = same(servers, "DELETE", location, headers=TOKEN)
    assert answer.status == 204 and answer.raw == b""
    assert header(answer, "transfer-encoding") is None
    assert header(answer, "content-length") in (None, "0")
    assert same(servers, "GET", location).status == 404


def test_urls_the_app_builds(servers):
    """request.url and url_for follow the Host header; X-Forwarded-Proto
    and X-Forwarded-For from 127.0.0.1 (trusted by default) set the scheme
    and the client."""
    answer = same(servers, "GET", "/whoami?q=1", headers={"Host": "api.example.org:8443"})
    assert as_json(answer) == {
        "url": "http://api.example.org:8443/whoami?q=1",
        "base_url": "http://api.example.org:8443/",
        "item_url": "http://api.example.org:8443/items/7",
        "scheme": "http", "client_host": "127.0.0.1", "root_path": "", "http_version": "1.1"}
    answer = same(servers, "GET", "/whoami", headers={
        "Host": "api.example.org", "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9"})
    got = as_json(answer)
    assert got["url"] == "https://api.example.org/whoami"
    assert got["item_url"] == "https://api.example.org/items/7"
    assert (got["scheme"], got["client_host"]) == ("https", "203.0.113.9")


def test_client_behind_a_chain_of_proxies(servers):
    """Client -> proxy -> proxy on 127.0.0.1 -> server: the client is the
    nearest address that is not a trusted proxy (uvicorn's rule)."""
    answer = same(servers, "GET", "/whoami", headers={
        "Host": "api.example.org", "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.9, 127.0.0.1"})
    assert as_json(answer)["client_host"] == "203.0.113.9"


def test_mounted_sub_application(servers):
    """A FastAPI app mounted under /v2 sees root_path "/v2" and builds its
    URLs and its OpenAPI servers entry with it."""
    answer = same(servers, "GET", "/v2/ping", headers={"Host": "h.example"})
    assert as_json(answer) == {"pong": True, "root_path": "/v2", "path": "/v2/ping",
                               "url": "http://h.example/v2/ping",
                               "self": "http://h.example/v2/ping"}
    answer = same(servers, "GET", "/v2/openapi.json")
    spec = as_json(answer)
    assert spec["servers"] == [{"url": "/v2"}]
    assert list(spec["paths"]) == ["/ping"]
    answer = same(servers, "GET", "/openapi.json")
    spec = as_json(answer)
    assert header(answer, "content-encoding") == "gzip"
    assert spec["info"]["title"] == "modern"
    assert "/items/{item_id}" in spec["paths"]
    assert "/v2/ping" not in spec["paths"]


def endless_until_gone(client, rid):
    """Reads a few events of an endless stream, then goes away."""
    with client.stream("GET", "/events/endless", headers={"X-Request-ID": rid}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [read_event(lines) for _ in range(3)]
    client.close()
    return got


def test_stream_cleanup_when_client_goes_away(servers):
    """A client leaving an endless stream ends the generator and tears down
    its dependencies; a later request sees it."""
    for c in servers:
        port = c.base_url.port
        with httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10) as own:
            assert endless_until_gone(own, "gone-1") == [["data: 0"], ["data: 1"], ["data: 2"]]
    deadline = time.monotonic() + 5
    while True:
        logs = [as_json(exchange(c, "GET", "/audit"))["audit"] for c in servers]
        tails = [[e for e in log if e.endswith("gone-1")] for log in logs]
        if all(len(t) == 3 for t in tails):
            break
        assert time.monotonic() < deadline, tails
        time.sleep(0.05)
    assert tails[0] == tails[1]
    assert tails[0] == ["open gone-1", "stream ended gone-1", "close gone-1"]


def raw_exchange(port, data, pause_after_head=False, timeout=5.0):
    """Sends raw bytes on one connection and reads until the server closes
    it or goes quiet; returns the status lines and bodies it saw."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        if pause_after_head:
            head, _, body = data.partition(b"\r\n\r\n")
            s.sendall(head + b"\r\n\r\n")
            first = s.recv(65536)
            s.sendall(body)
        else:
            first = b""
            s.sendall(data)
        out = first
        s.settimeout(0.5)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
    return first, out


def test_expect_100_continue_upload(servers, files):
    """A client that waits for 100 Continue before sending a multipart
    upload gets it, then the answer."""
    boundary = "----modern"
    data = files[1]["data.bin"]
    body = ("--%s\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nexpect\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (boundary, boundary)).encode()
    body += data + ("\r\n--%s--\r\n" % boundary).encode()
    request = (b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Type: multipart/form-data; boundary=" + boundary.encode() +
               b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    got = []
    for c in servers:
        first, out = raw_exchange(c.base_url.port, request, pause_after_head=True)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first
        final = out[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        status, _, rest = final.partition(b"\r\n")
        got.append((status, json.loads(rest.partition(b"\r\n\r\n")[2])))
    assert got[0] == got[1]
    assert got[0] == (b"HTTP/1.1 200 OK", {
        "file": {"filename": "d.bin", "content_type": "application/octet-stream",
                 "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "note": "expect", "public": False})


def test_chunked_upload(servers, files):
    """A multipart upload sent with Transfer-Encoding: chunked."""
    data = files[1]["data.bin"]
    boundary = "chunky"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nchunked\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.bin\"\r\n"
            "\r\n" % (boundary, boundary)).encode() + data + (
                "\r\n--%s--\r\n" % boundary).encode()

    def pieces():
        for i in range(0, len(body), 30000):
            yield body[i:i + 30000]

    answer = same(servers, "POST", "/upload", content=pieces,
                  headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    assert as_json(answer) == {
        "file": {"filename": "c.bin", "content_type": None,
                 "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "note": "chunked", "public": False}


def test_unread_body_then_next_request(servers):
    """A route that never reads the request body (405 from StaticFiles):
    the next request on the connection is still answered."""
    body = b"x" * 200000
    request = (b"POST /static/tiny.txt HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body + b"GET /health HTTP/1.1\r\nHost: t\r\n"
               b"Connection: close\r\n\r\n")
    got = []
    for c in servers:
        _, out = raw_exchange(c.base_url.port, request)
        got.append(re.findall(rb"HTTP/1.1 (\d+) ", out))
    assert got[0] == got[1]
    assert got[0] == [b"405", b"200"]


@pytest.mark.parametrize("path,extra", [
    ("/ping", b""),
    ("/download/report.txt", b""),
    ("/static/report.txt", b""),
    ("/download/data.bin", b"Range: bytes=0-9\r\n"),
])
def test_keep_alive_after_head(servers, path, extra):
    """A HEAD, then a GET on the same connection: both answered, whether
    the app sent the body (which the server drops) or only the headers."""
    request = (b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"
               b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    got = []
    for c in servers:
        _, out = raw_exchange(c.base_url.port, request)
        got.append((re.findall(rb"HTTP/1.1 (\d+) ", out), out.endswith(b'{"pong":true}')))
    status = b"206" if extra else b"200"
    assert got[0] == got[1] == ([status, b"200"], True)
