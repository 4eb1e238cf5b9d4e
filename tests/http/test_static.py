"""Static file serving (--static PREFIX=DIR), black-box, to the specs.

RFC 9110: validators (8.8), conditional requests and their precedence (13,
13.2.2), range requests (14) and multipart/byteranges (14.6, with RFC 2046
5.1.1's delimiters), 304 (15.4.5), 412 (15.5.13), 416 (15.5.17),
content codings (8.4, 12.5.3); RFC 9112 framing, checked by keeping each
connection in use after the answer under test.

Every answer is read from a raw socket. Every answer is also checked for
leaks: the secret file outside the served folder, /etc/passwd and the
folder's real path never appear in it.
"""
import email.utils
import gzip
import hashlib
import os
import random
import shutil
import socket
import stat
import time
import types

import pytest

from evicorn_harness import (NOT_FOUND_BODY, Conn, Server, assert_not_found,
                             children_of, pid_alive)
from static_util import (ETAG_RE, BodyReader, byteranges_boundary, comma_list, parse_byteranges,
                         range_pieces, request, small_rcvbuf_socket, vm_rss_kib)

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.normpath(os.path.join(HERE, "..", "..", "build"))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(BUILD, "plugins")

MTIME = 1704164645  # the served files' modification time
LAST_MODIFIED = "Tue, 02 Jan 2024 03:04:05 GMT"
assert email.utils.formatdate(MTIME, usegmt=True) == LAST_MODIFIED

SECRET = b"evicorn-static-secret-5c1d9e0b"
PASSWD_MARK = b"root:x:0:"

DATA = random.Random(9110).randbytes(10000)
N = len(DATA)
INDEX = b"<!doctype html><title>root index</title>\n"
SUB_INDEX = b"<!doctype html><title>sub index</title>\n"
PAGE = b"<!doctype html><p>page</p>\n"
REAL = b"the real file behind alias.txt\n"
CSS = b"body { color: #123456; margin: 0 auto; }\n" * 40
CSS_GZ = gzip.compress(CSS, mtime=0)
# The server sends a .br sibling as it is, without decoding it: any bytes
# (of a length of their own) tell which file was chosen.
CSS_BR = b"\x1b\x8f\x01\x00BROTLI-SIBLING" + bytes(range(200))
OLD_CSS = b"p { color: red; }\n" * 10
OLD_CSS_GZ = gzip.compress(OLD_CSS, mtime=0)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
JSON_DOC = b'{"static":true}'
SPACE = b"a file with a space in its name\n"
DEEP_MOUNT = b"served by the /static/deep mount\n"
DEEP_FOLDER = b"served from DIR/deep by the /static mount\n"
DEEPER = b"DIR/deeper/which.txt\n"
STATICX = b"DIR/x/a.txt: /staticx is not /static\n"

HTML = "text/html; charset=utf-8"
CSS_TYPE = "text/css; charset=utf-8"
OCTET = "application/octet-stream"


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


# --------------------------------------------------------------------------
# The served tree:
#
#   base/secret.txt            outside DIR: must never be served
#   base/site/                 DIR, mounted at /static
#   base/deep/                 mounted at /static/deep (longer prefix)
#   base/plugins/hello.so      a plugin route outside the prefixes


def write(path, data, mtime=MTIME):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def make_site(base):
    base = str(base)
    site = os.path.join(base, "site")
    deep = os.path.join(base, "deep")
    plugins = os.path.join(base, "plugins")
    os.makedirs(plugins)
    write(os.path.join(base, "secret.txt"), SECRET + b"\n")
    files = {
        "index.html": INDEX, "data.bin": DATA, "page.html": PAGE, "real.txt": REAL,
        "style.css": CSS, "style.css.gz": CSS_GZ, "style.css.br": CSS_BR,
        "old.css": OLD_CSS, "image.png": PNG, "data.json": JSON_DOC,
        "noext": b"no extension\n", "file.zzunknownext": b"unknown extension\n",
        "with space.txt": SPACE, "sub/index.html": SUB_INDEX, "sub/page.html": PAGE,
        "nodir/file.txt": b"a folder without index.html\n", "deep/which.txt": DEEP_FOLDER,
        "deeper/which.txt": DEEPER, "x/a.txt": STATICX, "empty.txt": b"",
    }
    for name, data in files.items():
        write(os.path.join(site, name), data)
    # A precompressed sibling older than its original.
    write(os.path.join(site, "old.css.gz"), OLD_CSS_GZ, mtime=MTIME - 3600)
    write(os.path.join(deep, "which.txt"), DEEP_MOUNT)
    links = {
        "alias.txt": "real.txt",              # stays inside: served
        "link": "../secret.txt",              # leaves DIR
        "dirlink_root": "/",
        "dirlink_up": "..",
        "passwd_link": "/etc/passwd",
        "chain1": "sub/chain2",               # chain1 -> sub/chain2 -> ../link -> ../secret.txt
        "sub/chain2": "../link",
        "devnull": "/dev/null",
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(site, name))
    os.mkfifo(os.path.join(site, "fifo"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.path.join(site, "sock"))
    finally:
        sock.close()
    hello = os.path.join(PLUGINS, "hello.so")
    assert os.path.isfile(hello), "%s is not built" % hello
    shutil.copy(hello, plugins)
    return types.SimpleNamespace(base=base, dir=site, deep=deep, plugins=plugins)


def start_server(site, *extra):
    srv = Server("--static", "/static=" + site.dir, "--static", "/static/deep=" + site.deep,
                 *extra, plugins=site.plugins)
    srv.start()
    try:
        assert srv.wait_for_log(r"plugin hello\.so: loaded", 10), srv.output()
    except BaseException:
        srv.stop()
        raise
    return srv


def sanitizer_reports(srv):
    return [l for l in srv.stderr.snapshot() if "Sanitizer" in l or "runtime error:" in l]


def stop_clean(srv):
    """Stops srv (make_server's teardown then has nothing left to do) and
    fails on a sanitizer report, which comes at exit."""
    srv.stop()
    assert not sanitizer_reports(srv), srv.output()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    s = make_site(base)
    yield s
    shutil.rmtree(str(base), ignore_errors=True)


@pytest.fixture
def scratch(tmp_path):
    """tmp_path, removed after the test: no big file lingers."""
    yield tmp_path
    shutil.rmtree(str(tmp_path), ignore_errors=True)


@pytest.fixture(scope="module")
def srv(site):
    s = start_server(site, "--static-max-age", "60")
    try:
        yield s
    finally:
        s.stop()
    assert not sanitizer_reports(s), s.output()


# --------------------------------------------------------------------------
# Client helpers


def assert_no_leak(resp, site):
    raw = resp.raw
    assert SECRET not in raw, resp
    assert PASSWD_MARK not in raw, resp
    assert site.base.encode() not in raw, "the real path leaks: %r" % raw[:500]


def probe(c, site):
    """The connection is still in step: the next answer is exact."""
    r = c.request(request("GET", "/static/real.txt"))
    assert r.status == 200 and r.body == REAL, r
    assert_no_leak(r, site)


def fetch(srv, site, target, headers=(), method="GET", check_framing=True, timeout=None):
    """One request on a fresh connection; with check_framing, a second
    request on the same connection proves the first answer's length."""
    with srv.connect() as c:
        r = c.request(request(method, target, headers), head=(method == "HEAD"), timeout=timeout)
        assert_no_leak(r, site)
        if check_framing:
            probe(c, site)
    return r


def etag_of(srv, site, target, headers=()):
    r = fetch(srv, site, target, headers, check_framing=False)
    assert r.status == 200, r
    return r.header("etag")


def vary_tokens(resp):
    return [t for v in resp.header_all("vary") for t in comma_list(v)]


def assert_full(resp, body, ctype=OCTET):
    assert resp.status == 200, resp
    assert resp.body == body, resp
    assert resp.header("content-length") == str(len(body)), resp
    assert resp.header("content-type") == ctype, resp
    assert resp.header("content-range") is None, resp


def assert_304(resp, etag):
    assert resp.status == 304, resp
    assert resp.body == b"", resp
    assert resp.header("etag") == etag, resp
    # 304 has no content; a Content-Length, if any, is the 200's (RFC 9110 8.6).
    assert resp.header("content-length") in (None, str(N)), resp
    assert resp.header("transfer-encoding") is None, resp
    # Cache-Control is sent as a 200 would send it (RFC 9110 15.4.5).
    assert resp.header("cache-control") == "max-age=60", resp


# --------------------------------------------------------------------------
# Mounts and routing


def test_file_is_served_exactly(srv, site):
    r = fetch(srv, site, "/static/data.bin")
    assert_full(r, DATA)
    assert r.header("accept-ranges") == "bytes", r
    assert r.header("cache-control") == "max-age=60", r
    assert r.header("transfer-encoding") is None, r


def test_mount_root_with_slash_serves_index(srv, site):
    r = fetch(srv, site, "/static/")
    assert_full(r, INDEX, HTML)


def test_mount_root_without_slash_redirects(srv, site):
    r = fetch(srv, site, "/static")
    assert r.status == 301, r
    assert (r.header("location") or "").endswith("/static/"), r


def test_prefix_ends_at_a_segment_boundary(srv, site):
    # DIR/x/a.txt exists: a prefix match that ignored the boundary would serve it.
    r = fetch(srv, site, "/staticx/a.txt")
    assert_not_found(r)
    r = fetch(srv, site, "/staticx")
    assert_not_found(r)


def test_longest_prefix_wins(srv, site):
    r = fetch(srv, site, "/static/deep/which.txt")
    assert r.status == 200 and r.body == DEEP_MOUNT, r
    # /static/deeper is not under /static/deep: it is DIR/deeper.
    r = fetch(srv, site, "/static/deeper/which.txt")
    assert r.status == 200 and r.body == DEEPER, r


def test_plugin_routes_outside_the_prefix_still_serve(srv, site):
    r = fetch(srv, site, "/plaintext", check_framing=False)
    assert r.status == 200 and r.body == b"Hello, World!", r
    r = fetch(srv, site, "/", check_framing=False)
    assert r.status == 200 and r.body == b'{"Hello":"World"}', r


def test_static_mount_is_matched_before_plugin_routes(make_server, site, scratch):
    # A mount over hello's /plaintext owns that path: its folder has no
    # index.html, so /plaintext is a 404, and its files are served.
    folder = scratch / "over"
    write(str(folder / "a.txt"), b"static over a plugin route\n")
    srv = make_server("--static", "/plaintext=%s" % folder, plugins=site.plugins)
    assert srv.wait_for_log(r"plugin hello\.so: loaded", 10), srv.output()
    with srv.connect() as c:
        r = c.request(request("GET", "/plaintext/a.txt"))
        assert r.status == 200 and r.body == b"static over a plugin route\n", r
        assert_not_found(c.request(request("GET", "/plaintext")))
        r = c.request(request("GET", "/json"))
        assert r.status == 200 and r.body == b'{"message":"Hello, World!"}', r
    stop_clean(srv)


def test_query_string_is_not_part_of_the_path(srv, site):
    r = fetch(srv, site, "/static/data.bin?v=123&x=%2e%2e")
    assert_full(r, DATA)


def test_percent_encoded_path_is_decoded(srv, site):
    r = fetch(srv, site, "/static/with%20space.txt")
    assert r.status == 200 and r.body == SPACE, r
    r = fetch(srv, site, "/static/%69ndex.html")  # %69 = i
    assert_full(r, INDEX, HTML)


# --------------------------------------------------------------------------
# Methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(srv, site, method):
    with srv.connect() as c:
        body = b"x=1" if method in ("POST", "PUT", "PATCH") else b""
        r = c.request(request(method, "/static/data.bin", body=body))
        assert r.status == 405, r
        allow = [t.strip() for t in (r.header("allow") or "").split(",")]
        assert sorted(allow) == ["GET", "HEAD"], r
        assert DATA[:64] not in r.body, r
        assert_no_leak(r, site)
        if r.header("connection") != "close":
            probe(c, site)


# --------------------------------------------------------------------------
# Missing files and folders


@pytest.mark.parametrize("target", ["/static/missing.txt", "/static/sub/missing/",
                                    "/static/deep/missing.txt", "/static/nodir/missing.html"])
def test_missing_file_is_404_json(srv, site, target):
    assert_not_found(fetch(srv, site, target))


def test_folder_with_index_serves_it(srv, site):
    assert_full(fetch(srv, site, "/static/sub/"), SUB_INDEX, HTML)


def test_folder_with_index_and_query_serves_it(srv, site):
    assert_full(fetch(srv, site, "/static/sub/?page=2"), SUB_INDEX, HTML)


def test_folder_without_slash_redirects_to_slash(srv, site):
    r = fetch(srv, site, "/static/sub")
    assert r.status == 301, r
    assert (r.header("location") or "").endswith("/static/sub/"), r
    assert SUB_INDEX not in r.body, r


@pytest.mark.parametrize("target", ["/static/nodir/", "/static/nodir"])
def test_folder_without_index_is_404_never_a_listing(srv, site, target):
    r = fetch(srv, site, target)
    assert_not_found(r)
    assert b"file.txt" not in r.body, r


def test_file_with_trailing_slash_is_not_a_folder(srv, site):
    r = fetch(srv, site, "/static/data.bin/", check_framing=False)
    assert 400 <= r.status < 500, r


def test_max_age_flag_sets_cache_control(srv, site):
    for target in ("/static/data.bin", "/static/sub/", "/static/style.css"):
        assert fetch(srv, site, target).header("cache-control") == "max-age=60", target


# --------------------------------------------------------------------------
# Content-Type


@pytest.mark.parametrize("target,ctype", [
    ("/static/page.html", HTML),
    ("/static/style.css", CSS_TYPE),
    ("/static/image.png", "image/png"),
    ("/static/data.json", "application/json"),
    ("/static/noext", OCTET),
    ("/static/file.zzunknownext", OCTET),
    ("/static/data.bin", OCTET),
])
def test_content_type_from_extension(srv, site, target, ctype):
    r = fetch(srv, site, target)
    assert r.status == 200, r
    assert r.header("content-type") == ctype, r


# --------------------------------------------------------------------------
# Validators


def test_200_carries_strong_etag_and_last_modified(srv, site):
    r = fetch(srv, site, "/static/data.bin")
    etag = r.header("etag")
    assert etag and ETAG_RE.match(etag), r
    assert r.header("last-modified") == LAST_MODIFIED, r
    assert r.header("accept-ranges") == "bytes", r
    # Last-Modified is never later than the message's Date (8.8.2.1).
    date = email.utils.parsedate_to_datetime(r.header("date"))
    assert email.utils.parsedate_to_datetime(r.header("last-modified")) <= date, r
    # The same file gives the same validator; another file another one.
    assert fetch(srv, site, "/static/data.bin").header("etag") == etag
    assert fetch(srv, site, "/static/page.html").header("etag") != etag


def test_file_changed_in_place_gets_a_new_etag(make_server, scratch):
    folder = scratch / "site"
    path = str(folder / "f.txt")
    write(path, b"version one\n")
    srv = make_server("--static", "/s=%s" % folder)
    with srv.connect() as c:
        r1 = c.request(request("GET", "/s/f.txt"))
        assert r1.status == 200 and r1.body == b"version one\n", r1
        # Same size, new content, a later mtime: an edit in place.
        write(path, b"version two\n", mtime=MTIME + 60)
        r2 = c.request(request("GET", "/s/f.txt", [("If-None-Match", r1.header("etag"))]))
        assert r2.status == 200 and r2.body == b"version two\n", r2
        assert r2.header("etag") != r1.header("etag"), (r1, r2)
        assert r2.header("last-modified") == http_date(MTIME + 60), r2
        ims = [("If-Modified-Since", r1.header("last-modified"))]
        r3 = c.request(request("GET", "/s/f.txt", ims))
        assert r3.status == 200 and r3.body == b"version two\n", r3
    stop_clean(srv)


def test_empty_file(srv, site):
    r = fetch(srv, site, "/static/empty.txt")
    assert r.status == 200 and r.body == b"", r
    assert r.header("content-length") == "0", r
    # No byte of it can be addressed: 416, or the Range ignored (RFC 9110 14.2).
    r = fetch(srv, site, "/static/empty.txt", [("Range", "bytes=0-")])
    if r.status == 416:
        assert r.header("content-range") == "bytes */0", r
    else:
        assert r.status == 200 and r.body == b"" and r.header("content-length") == "0", r


# --------------------------------------------------------------------------
# Conditional requests (RFC 9110 13). {E}: data.bin's ETag, {LM} its date.

LM = LAST_MODIFIED
LM_MINUS_1 = http_date(MTIME - 1)
LM_PLUS_1 = http_date(MTIME + 1)
LM_PLUS_HOUR = http_date(MTIME + 3600)
LM_RFC850 = "Tuesday, 02-Jan-24 03:04:05 GMT"
LM_ASCTIME = "Tue Jan  2 03:04:05 2024"

CONDITIONALS = [
    # If-None-Match: weak comparison (13.1.2)
    ("inm-same", [("If-None-Match", "{E}")], 304),
    ("inm-weak-prefix", [("If-None-Match", "W/{E}")], 304),
    ("inm-star", [("If-None-Match", "*")], 304),
    ("inm-list", [("If-None-Match", '"nope", {E}')], 304),
    ("inm-list-weak", [("If-None-Match", 'W/"nope", W/{E}')], 304),
    ("inm-other", [("If-None-Match", '"nope"')], 200),
    ("inm-others", [("If-None-Match", '"a", "b", W/"c"')], 200),
    # If-Modified-Since (13.1.3)
    ("ims-equal", [("If-Modified-Since", LM)], 304),
    ("ims-later", [("If-Modified-Since", LM_PLUS_HOUR)], 304),
    ("ims-earlier", [("If-Modified-Since", LM_MINUS_1)], 200),
    ("ims-invalid", [("If-Modified-Since", "yesterday")], 200),
    ("ims-garbage-date", [("If-Modified-Since", "Tue, 99 Foo 2024 99:99:99 GMT")], 200),
    ("ims-rfc850", [("If-Modified-Since", LM_RFC850)], 304),
    ("ims-asctime", [("If-Modified-Since", LM_ASCTIME)], 304),
    ("ims-ignored-with-inm", [("If-None-Match", '"nope"'), ("If-Modified-Since", LM)], 200),
    # If-Match: strong comparison (13.1.1)
    ("im-same", [("If-Match", "{E}")], 200),
    ("im-star", [("If-Match", "*")], 200),
    ("im-list", [("If-Match", '"nope", {E}')], 200),
    ("im-other", [("If-Match", '"nope"')], 412),
    ("im-weak-never-matches", [("If-Match", "W/{E}")], 412),
    # If-Unmodified-Since (13.1.4)
    ("ius-equal", [("If-Unmodified-Since", LM)], 200),
    ("ius-later", [("If-Unmodified-Since", LM_PLUS_1)], 200),
    ("ius-earlier", [("If-Unmodified-Since", LM_MINUS_1)], 412),
    ("ius-invalid", [("If-Unmodified-Since", "not a date")], 200),
    # Precedence (13.2.2)
    ("im-fails-before-inm", [("If-Match", '"nope"'), ("If-None-Match", "{E}")], 412),
    ("im-passes-ius-ignored", [("If-Match", "{E}"), ("If-Unmodified-Since", LM_MINUS_1)], 200),
    ("im-fails-ius-passes", [("If-Match", '"nope"'), ("If-Unmodified-Since", LM)], 412),
    ("ius-fails-before-inm", [("If-Unmodified-Since", LM_MINUS_1), ("If-None-Match", "{E}")], 412),
    ("ius-passes-inm-matches", [("If-Unmodified-Since", LM), ("If-None-Match", "{E}")], 304),
    ("inm-matches-ims-ignored", [("If-None-Match", "{E}"), ("If-Modified-Since", LM_MINUS_1)], 304),
    ("im-star-inm-star", [("If-Match", "*"), ("If-None-Match", "*")], 304),
    ("inm-before-range", [("If-None-Match", "{E}"), ("Range", "bytes=0-9")], 304),
    ("ims-before-range", [("If-Modified-Since", LM), ("Range", "bytes=0-9")], 304),
    ("im-fails-before-range", [("If-Match", '"nope"'), ("Range", "bytes=0-9")], 412),
    ("ius-fails-before-range", [("If-Unmodified-Since", LM_MINUS_1), ("Range", "bytes=0-9")], 412),
    ("im-passes-then-range", [("If-Match", "{E}"), ("Range", "bytes=0-9")], 206),
    ("ius-passes-then-range", [("If-Unmodified-Since", LM), ("Range", "bytes=0-9")], 206),
    ("inm-fails-then-range", [("If-None-Match", '"nope"'), ("Range", "bytes=0-9")], 206),
    ("ims-fails-then-range", [("If-Modified-Since", LM_MINUS_1), ("Range", "bytes=0-9")], 206),
    ("im-passes-if-range-old", [("If-Match", "{E}"), ("If-Range", '"old"'),
                                ("Range", "bytes=0-9")], 200),
]


@pytest.fixture(scope="module")
def data_200(srv, site):
    r = fetch(srv, site, "/static/data.bin")
    assert r.status == 200, r
    return r


@pytest.fixture(scope="module")
def data_etag(data_200):
    return data_200.header("etag")


@pytest.mark.parametrize("name,headers,status", CONDITIONALS, ids=[c[0] for c in CONDITIONALS])
def test_conditional_request(srv, site, data_etag, name, headers, status):
    hs = [(n, v.replace("{E}", data_etag)) for n, v in headers]
    r = fetch(srv, site, "/static/data.bin", hs)
    assert r.status == status, (hs, r)
    if status == 200:
        assert_full(r, DATA)
        assert r.header("etag") == data_etag, r
    elif status == 206:
        assert r.header("content-range") == "bytes 0-9/%d" % N, r
        assert r.body == DATA[:10], r
    elif status == 304:
        assert_304(r, data_etag)
    elif status == 412:
        assert DATA[:64] not in r.body, r


def test_304_ends_after_its_head_and_keeps_the_connection(srv, site, data_etag, data_200):
    with srv.connect() as c:
        r = c.request(request("GET", "/static/data.bin", [("If-None-Match", data_etag)]))
        assert_304(r, data_etag)
        # Vary, like Cache-Control and ETag, as the 200 has it (15.4.5).
        assert r.header_all("vary") == data_200.header_all("vary"), (r, data_200)
        c.assert_open(0.3)  # no body bytes follow the head
        probe(c, site)
        r = c.request(request("GET", "/static/data.bin", [("If-Modified-Since", LM)]))
        assert_304(r, data_etag)
        c.assert_open(0.3)
        probe(c, site)


def test_preconditions_do_not_apply_to_a_missing_file(srv, site):
    # 13.2.1: preconditions are ignored when the answer would not be 2xx/412.
    for hs in ([("If-Match", "*")], [("If-None-Match", "*")],
               [("If-Unmodified-Since", LM_MINUS_1)], [("If-Modified-Since", LM_PLUS_HOUR)]):
        assert_not_found(fetch(srv, site, "/static/missing.bin", hs))


# --------------------------------------------------------------------------
# Ranges (RFC 9110 14)

SATISFIABLE = [
    ("bytes=0-99", [(0, 99)]),
    ("bytes=-100", [(N - 100, N - 1)]),
    ("bytes=100-", [(100, N - 1)]),
    ("bytes=9990-20000", [(9990, N - 1)]),
    ("bytes=0-0", [(0, 0)]),
    ("bytes=%d-" % (N - 1), [(N - 1, N - 1)]),
    ("bytes=-%d" % (2 * N), [(0, N - 1)]),
    ("bytes=0-9,100-199,-5", [(0, 9), (100, 199), (N - 5, N - 1)]),
    ("bytes=0-9, 20-29", [(0, 9), (20, 29)]),
    ("bytes=500-599,0-9", [(500, 599), (0, 9)]),
    ("bytes=0-9,%d-%d" % (2 * N, 3 * N), [(0, 9)]),
]


@pytest.mark.parametrize("spec,expected", SATISFIABLE, ids=[s for s, _ in SATISFIABLE])
def test_satisfiable_range_is_206_with_exact_bytes(srv, site, data_200, spec, expected):
    r = fetch(srv, site, "/static/data.bin", [("Range", spec)])
    assert r.status == 206, r
    # The 200's ETag, Cache-Control and Vary (15.3.7).
    assert r.header("etag") == data_200.header("etag"), r
    assert r.header_all("vary") == data_200.header_all("vary"), (r, data_200)
    assert r.header("last-modified") == LM, r
    assert r.header("cache-control") == "max-age=60", r
    pieces = range_pieces(r, N)
    for first, last, data in pieces:
        assert data == DATA[first:last + 1], (first, last)
    assert [(f, l) for f, l, _ in pieces] == expected, (spec, r.raw[:600])
    if len(expected) == 1:
        # One range, never multipart (RFC 9110 15.3.7.2) when one was asked;
        # the type is the file's.
        if "," not in spec:
            assert r.header("content-type") == OCTET, r
    else:
        byteranges_boundary(r.header("content-type"))
        for headers, _ in parse_byteranges(r.header("content-type"), r.body):
            assert headers.get("content-type") == OCTET, headers


def test_overlapping_ranges_cover_what_was_asked(srv, site):
    r = fetch(srv, site, "/static/data.bin", [("Range", "bytes=0-99,50-149")])
    assert r.status == 206, r
    covered = set()
    for first, last, data in range_pieces(r, N):
        assert data == DATA[first:last + 1]
        covered.update(range(first, last + 1))
    assert covered >= set(range(150)), sorted(covered)[:5]


def test_huge_last_byte_pos_is_clamped_or_ignored(srv, site):
    r = fetch(srv, site, "/static/data.bin", [("Range", "bytes=0-99999999999999999999999")])
    if r.status == 200:
        assert_full(r, DATA)
    else:
        assert r.status == 206, r
        assert r.header("content-range") == "bytes 0-%d/%d" % (N - 1, N), r
        assert r.body == DATA, r


def test_many_small_ranges_are_answered_exactly_or_ignored(srv, site):
    # 14.2 lets a server ignore many small or unordered ranges (a DoS
    # pattern); whatever it does, the answer is exact.
    spec = "bytes=" + ",".join("%d-%d" % (i * 50, i * 50 + 2) for i in range(100, 0, -1))
    r = fetch(srv, site, "/static/data.bin", [("Range", spec)])
    if r.status == 200:
        assert_full(r, DATA)
    else:
        assert r.status == 206, r
        for first, last, data in range_pieces(r, N):
            assert data == DATA[first:last + 1]


def test_overlapping_ranges_larger_than_the_file_are_answered_exactly_or_ignored(srv, site):
    spec = "bytes=" + ",".join(["0-%d" % (N - 1)] * 3)
    r = fetch(srv, site, "/static/data.bin", [("Range", spec)])
    if r.status == 200:
        assert_full(r, DATA)
    else:
        assert r.status == 206, r
        for first, last, data in range_pieces(r, N):
            assert data == DATA[first:last + 1]


def test_huge_first_byte_pos_is_not_satisfiable_or_ignored(srv, site):
    r = fetch(srv, site, "/static/data.bin", [("Range", "bytes=99999999999999999999999-")])
    if r.status == 200:
        assert_full(r, DATA)
    else:
        assert r.status == 416, r
        assert r.header("content-range") == "bytes */%d" % N, r


UNSATISFIABLE = ["bytes=%d-" % N, "bytes=%d-%d" % (2 * N, 3 * N), "bytes=-0",
                 "bytes=%d-%d,%d-" % (N, N + 5, 2 * N)]


@pytest.mark.parametrize("spec", UNSATISFIABLE)
def test_unsatisfiable_range_is_416(srv, site, spec):
    r = fetch(srv, site, "/static/data.bin", [("Range", spec)])
    assert r.status == 416, r
    assert r.header("content-range") == "bytes */%d" % N, r
    assert DATA[:64] not in r.body, r


INVALID_RANGES = ["bytes=abc", "bytes=5-1", "bytes 0-5", "items=0-5", "bytes=", "bytes=--5",
                  "bytes=1-2-3", "bytes=x-5", "bytes=0-5,abc", "bytes=0x10-20", "bytes=+1-5",
                  "bytes=-", "bytes=5-1,0-3"]


@pytest.mark.parametrize("spec", INVALID_RANGES)
def test_invalid_range_is_ignored(srv, site, spec):
    r = fetch(srv, site, "/static/data.bin", [("Range", spec)])
    assert_full(r, DATA)


IF_RANGES = [
    ("current-etag", "{E}", 206),
    ("old-etag", '"0-old-etag"', 200),
    ("weak-etag", "W/{E}", 200),
    ("date-equal", LM, 206),
    ("date-later", LM_PLUS_1, 200),
    ("date-earlier", LM_MINUS_1, 200),
]


@pytest.mark.parametrize("name,value,status", IF_RANGES, ids=[i[0] for i in IF_RANGES])
def test_if_range(srv, site, data_etag, name, value, status):
    hs = [("If-Range", value.replace("{E}", data_etag)), ("Range", "bytes=10-19")]
    r = fetch(srv, site, "/static/data.bin", hs)
    assert r.status == status, (hs, r)
    if status == 206:
        assert r.header("content-range") == "bytes 10-19/%d" % N, r
        assert r.body == DATA[10:20], r
    else:
        assert_full(r, DATA)


def test_if_range_without_range_is_ignored(srv, site, data_etag):
    assert_full(fetch(srv, site, "/static/data.bin", [("If-Range", data_etag)]), DATA)


def test_range_on_head_is_coherent_and_has_no_body(srv, site):
    with srv.connect() as c:
        r = c.request(request("HEAD", "/static/data.bin", [("Range", "bytes=0-99")]), head=True)
        if r.status == 206:
            assert r.header("content-range") == "bytes 0-99/%d" % N, r
            assert r.header("content-length") == "100", r
        else:
            assert r.status == 200, r
            assert r.header("content-length") == str(N), r
            assert r.header("content-range") is None, r
        c.assert_open(0.3)
        probe(c, site)


# --------------------------------------------------------------------------
# Precompressed siblings (x.css.br, x.css.gz)

ENCODINGS = [
    ("br", "br"),
    ("gzip", "gzip"),
    ("gzip;q=0.5, br;q=0.1", "gzip"),
    ("gzip ; q=0.5 , br ; q=0.1", "gzip"),
    ("br;q=1.0, gzip;q=0.999", "br"),
    ("br;q=0", None),
    ("br;q=0, gzip", "gzip"),
    # gzip through "*" ties with identity, acceptable by default: either,
    # never br.
    ("*;q=0.5, br;q=0", ("gzip", None)),
    ("GZIP", "gzip"),
    ("identity", None),
    ("compress, deflate", None),
    ("", None),
    (None, None),
]


def css_body(coding):
    return {"br": CSS_BR, "gzip": CSS_GZ, None: CSS}[coding]


@pytest.mark.parametrize("accept,coding", ENCODINGS, ids=[str(a) for a, _ in ENCODINGS])
def test_precompressed_sibling_by_accept_encoding(srv, site, accept, coding):
    hs = [] if accept is None else [("Accept-Encoding", accept)]
    r = fetch(srv, site, "/static/style.css", hs)
    assert r.status == 200, r
    allowed = coding if isinstance(coding, tuple) else (coding,)
    assert r.header("content-encoding") in allowed, (accept, r)
    body = css_body(r.header("content-encoding"))
    assert r.body == body, (accept, r)
    assert r.header("content-length") == str(len(body)), r
    assert r.header("content-type") == CSS_TYPE, r
    assert "accept-encoding" in vary_tokens(r), r
    assert ETAG_RE.match(r.header("etag") or ""), r


def test_any_coding_takes_a_sibling(srv, site):
    r = fetch(srv, site, "/static/style.css", [("Accept-Encoding", "*")])
    assert r.status == 200, r
    coding = r.header("content-encoding")
    assert coding in ("br", "gzip", None), r
    assert r.body == css_body(coding), r


def test_each_variant_has_its_own_etag(srv, site):
    tags = [etag_of(srv, site, "/static/style.css", hs)
            for hs in ([("Accept-Encoding", "br")], [("Accept-Encoding", "gzip")], [])]
    assert all(tags) and len(set(tags)) == 3, tags


def test_range_applies_to_the_chosen_variant(srv, site):
    for coding, body in (("br", CSS_BR), ("gzip", CSS_GZ)):
        r = fetch(srv, site, "/static/style.css",
                  [("Accept-Encoding", coding), ("Range", "bytes=5-24")])
        assert r.status == 206, r
        assert r.header("content-encoding") == coding, r
        assert r.header("content-range") == "bytes 5-24/%d" % len(body), r
        assert r.body == body[5:25], r
        assert "accept-encoding" in vary_tokens(r), r


def test_304_of_a_variant_carries_vary(srv, site):
    br_tag = etag_of(srv, site, "/static/style.css", [("Accept-Encoding", "br")])
    r = fetch(srv, site, "/static/style.css",
              [("Accept-Encoding", "br"), ("If-None-Match", br_tag)])
    assert r.status == 304, r
    assert r.header("etag") == br_tag, r
    assert "accept-encoding" in vary_tokens(r), r
    # The identity representation has another validator: a full answer.
    r = fetch(srv, site, "/static/style.css", [("If-None-Match", br_tag)])
    assert r.status == 200 and r.body == CSS, r


def test_sibling_at_least_as_new_is_used_older_is_not(srv, site):
    # style.css.gz has style.css's mtime (as new): used. old.css.gz is an
    # hour older than old.css: stale, so the original is sent.
    r = fetch(srv, site, "/static/style.css", [("Accept-Encoding", "gzip")])
    assert r.header("content-encoding") == "gzip" and r.body == CSS_GZ, r
    r = fetch(srv, site, "/static/old.css", [("Accept-Encoding", "gzip")])
    assert r.status == 200, r
    assert r.header("content-encoding") is None, r
    assert r.body == OLD_CSS, r


def test_sibling_requested_by_name_is_served_as_it_is(srv, site):
    r = fetch(srv, site, "/static/style.css.gz")
    assert r.status == 200 and r.body == CSS_GZ, r


# --------------------------------------------------------------------------
# Path safety: no request reaches a file outside DIR.

ESCAPES = [
    b"/static/../secret.txt",
    b"/static/%2e%2e/secret.txt",
    b"/static/%2E%2E/secret.txt",
    b"/static/..%2fsecret.txt",
    b"/static/..%2Fsecret.txt",
    b"/static/%2e%2e%2fsecret.txt",
    b"/static/%2e%2e%2f%2e%2e%2fsecret.txt",
    b"/static/..%5csecret.txt",
    b"/static/%2e%2e%5csecret.txt",
    b"/static/..\\secret.txt",
    b"/static\\..\\secret.txt",
    b"/static/sub\\..\\..\\secret.txt",
    b"/static/%5c..%5csecret.txt",
    b"/static/.%2e/secret.txt",
    b"/static/%2e./secret.txt",
    b"/static/sub/../../secret.txt",
    b"/static/sub/%2e%2e/%2e%2e/secret.txt",
    b"/static/sub/..%2f..%2fsecret.txt",
    b"/static/deep/../../secret.txt",
    b"/static/deep/%2e%2e/%2e%2e/secret.txt",
    b"/static/./../secret.txt",
    b"/static/.../secret.txt",
    b"/static/....//secret.txt",
    b"/static/..;/secret.txt",
    b"/static/../secret.txt?x=1",
    b"/static/../../../../../../etc/passwd",
    b"/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    b"/static//etc/passwd",
    b"/static/%2fetc%2fpasswd",
    b"/static/%2Fetc/passwd",
    b"/static/%00",
    b"/static/index.html%00.png",
    b"/static/..%00/secret.txt",
    b"/static/.%00./secret.txt",
    b"/static/%252e%252e/secret.txt",
    b"/static/%252e%252e%252fsecret.txt",
    b"/static/..%255csecret.txt",
    b"/static/%c0%ae%c0%ae/secret.txt",
    b"/static/%c0%ae%c0%ae%c0%afsecret.txt",
    b"/static/..%c0%afsecret.txt",
    b"/static/%e0%80%ae%e0%80%ae/secret.txt",
    b"/static/%u002e%u002e/secret.txt",
    b"/static/\xc0\xae\xc0\xae/secret.txt",
    b"/static..%2fsecret.txt",
    b"/static%2f..%2fsecret.txt",
    # Symbolic links that leave DIR
    b"/static/link",
    b"/static/sub/../link",
    b"/static/dirlink_root/etc/passwd",
    b"/static/dirlink_up/secret.txt",
    b"/static/dirlink_up/site/index.html",
    b"/static/passwd_link",
    b"/static/chain1",
    b"/static/sub/chain2",
    # Absolute-form request targets
    b"http://127.0.0.1/static/../secret.txt",
    b"http://127.0.0.1/static/%2e%2e/secret.txt",
    b"http://127.0.0.1/static/..%2fsecret.txt",
    b"http://127.0.0.1/static/link",
]


@pytest.mark.parametrize("target", ESCAPES, ids=[t.decode("latin-1") for t in ESCAPES])
def test_escape_attempt_is_refused(srv, site, target):
    with srv.connect(timeout=5.0) as c:
        c.send(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        r = c.read_response()
    assert 400 <= r.status < 500, (target, r)
    assert_no_leak(r, site)


def test_escape_table_is_large_enough():
    assert len(ESCAPES) >= 40


def test_escape_fixtures_do_reach_the_secret(make_server, site):
    # Controls for the table: its links and paths do lead to the secret,
    # which a mount of the parent folder serves, so a leak would be seen.
    with open(os.path.join(site.dir, "chain1"), "rb") as f:
        assert SECRET in f.read()
    with open(os.path.join(site.dir, "dirlink_up", "secret.txt"), "rb") as f:
        assert SECRET in f.read()
    parent = make_server("--static", "/parent=" + site.base)
    with parent.connect() as c:
        r = c.request(request("GET", "/parent/secret.txt"))
    assert r.status == 200 and SECRET in r.body, r


def test_symlink_that_stays_inside_is_served(srv, site):
    r = fetch(srv, site, "/static/alias.txt")
    assert r.status == 200 and r.body == REAL, r


def test_server_still_serves_after_the_escape_attempts(srv, site):
    assert_full(fetch(srv, site, "/static/data.bin"), DATA)


@pytest.fixture
def special_server(site):
    """A server of its own for the special files: a FIFO opened the wrong
    way would block its worker."""
    s = start_server(site)
    try:
        yield s
    finally:
        # Unblock a reader stuck in open() on the FIFO, if any.
        try:
            fd = os.open(os.path.join(site.dir, "fifo"), os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        stop_clean(s)


@pytest.mark.parametrize("name", ["fifo", "sock", "devnull"])
def test_special_file_is_refused_promptly(special_server, site, name):
    t0 = time.monotonic()
    with special_server.connect(timeout=3.0) as c:
        r = c.request(request("GET", "/static/" + name), timeout=3.0)
        assert 400 <= r.status < 500, r
        assert_no_leak(r, site)
        assert time.monotonic() - t0 < 3.0
        if r.header("connection") != "close":
            probe(c, site)
    # The worker is free: a new connection is served at once.
    with special_server.connect(timeout=3.0) as c:
        probe(c, site)


def test_unreadable_file_is_refused(make_server, scratch):
    if os.geteuid() == 0:
        pytest.skip("permission bits do not stop root")
    folder = scratch / "site"
    path = str(folder / "noperm.txt")
    write(path, SECRET)
    os.chmod(path, 0)
    try:
        srv = make_server("--static", "/static=%s" % folder)
        with srv.connect() as c:
            r = c.request(request("GET", "/static/noperm.txt"))
        assert r.status in (403, 404), r
        assert SECRET not in r.raw and str(folder).encode() not in r.raw, r
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


# --------------------------------------------------------------------------
# HEAD: the GET's head, without the body


def normalised_head(resp):
    out = []
    for name, value in resp.headers:
        if name == "date":
            continue
        if name == "content-type" and value.lower().startswith("multipart/byteranges"):
            value = "multipart/byteranges; boundary=B"
        out.append((name, value))
    return sorted(out)


HEAD_CASES = [
    ("200", "/static/data.bin", []),
    ("200-html", "/static/sub/", []),
    ("206", "/static/data.bin", [("Range", "bytes=0-99")]),
    ("206-multipart", "/static/data.bin", [("Range", "bytes=0-9,20-29")]),
    ("416", "/static/data.bin", [("Range", "bytes=%d-" % N)]),
    ("304", "/static/data.bin", [("If-None-Match", "{E}")]),
    ("412", "/static/data.bin", [("If-Match", '"nope"')]),
    ("404", "/static/missing.txt", []),
    ("301", "/static/sub", []),
    ("br-variant", "/static/style.css", [("Accept-Encoding", "br")]),
]


@pytest.mark.parametrize("name,target,headers", HEAD_CASES, ids=[h[0] for h in HEAD_CASES])
def test_head_is_the_get_without_body(srv, site, data_etag, name, target, headers):
    hs = [(n, v.replace("{E}", data_etag)) for n, v in headers]
    with srv.connect() as c:
        g = c.request(request("GET", target, hs))
        h = c.request(request("HEAD", target, hs), head=True)
        c.assert_open(0.2)  # nothing after the HEAD's head
        probe(c, site)
        if h.status != g.status and any(n == "Range" for n, _ in hs):
            # A server may ignore Range on HEAD (RFC 9110 14.2): then the
            # head is the unconditional GET's.
            assert h.status == 200, (g, h)
            g = c.request(request("GET", target, [x for x in hs if x[0] != "Range"]))
    assert h.status == g.status, (g, h)
    assert normalised_head(h) == normalised_head(g), (g.raw[:600], h.raw)
    if g.status not in (304,):
        assert h.header("content-length") == g.header("content-length") == str(len(g.body)), (g, h)


# --------------------------------------------------------------------------
# Keep-alive


def test_pipelined_static_requests_come_back_in_order(srv, site, data_etag):
    reqs = [
        (request("GET", "/static/data.bin"), 200),
        (request("GET", "/static/data.bin", [("If-None-Match", data_etag)]), 304),
        (request("GET", "/static/data.bin", [("Range", "bytes=100-199")]), 206),
        (request("GET", "/static/data.bin", [("Range", "bytes=0-9,-10")]), 206),
        (request("HEAD", "/static/data.bin"), 200),
        (request("GET", "/static/missing.txt"), 404),
        (request("GET", "/static/data.bin", [("Range", "bytes=%d-" % N)]), 416),
        (request("GET", "/static/style.css", [("Accept-Encoding", "gzip")]), 200),
        (request("GET", "/static/sub/"), 200),
        (request("GET", "/static/real.txt"), 200),
    ]
    with srv.connect() as c:
        c.send(b"".join(q for q, _ in reqs))
        rs = [c.read_response(head=q.startswith(b"HEAD")) for q, _ in reqs]
        c.assert_open(0.3)
    assert [r.status for r in rs] == [s for _, s in reqs], rs
    assert rs[0].body == DATA
    assert rs[1].body == b"" and rs[1].header("etag") == data_etag
    assert rs[2].body == DATA[100:200]
    assert [(f, l) for f, l, _ in range_pieces(rs[3], N)] == [(0, 9), (N - 10, N - 1)]
    assert rs[4].body == b"" and rs[4].header("content-length") == str(N)
    assert rs[5].body == NOT_FOUND_BODY
    assert rs[6].header("content-range") == "bytes */%d" % N
    assert rs[7].body == CSS_GZ
    assert rs[8].body == SUB_INDEX
    assert rs[9].body == REAL


# --------------------------------------------------------------------------
# Big files and slow clients

BIG = 1 << 30
BIG_MARKS = [(4096 * 256 + 7, b"MARK-A-early"), ((1 << 29) + 123, b"MARK-B-middle"),
             (BIG - 16, b"MARK-C-NEAR-END!")]
MIB = 1 << 20


def worker_rss_kib(srv):
    return max([vm_rss_kib(p) for p in children_of(srv.pid)] or [0])


def head_of(conn, req):
    """Sends req and reads only the response head (the body stays)."""
    conn.send(req)
    return conn.read_response(head=True)


def test_big_sparse_file_to_a_slow_client_in_bounded_memory(make_server, scratch):
    folder = scratch / "big"
    folder.mkdir()
    path = str(folder / "big.bin")
    with open(path, "wb") as f:
        f.truncate(BIG)
        for off, mark in BIG_MARKS:
            f.seek(off)
            f.write(mark)
    srv = make_server("--static", "/big=%s" % folder)
    workers = srv.wait_workers(srv.workers)
    assert workers, srv.output()
    rss0 = worker_rss_kib(srv)

    found = {}
    zero_errors = []

    def check(offset, data):
        end = offset + len(data)
        marks = [(o, m) for o, m in BIG_MARKS if o < end and o + len(m) > offset]
        if marks:
            data = bytearray(data)
            for o, m in marks:
                lo, hi = max(o, offset), min(o + len(m), end)
                seen = found.setdefault(o, bytearray(len(m)))
                seen[lo - o:hi - o] = data[lo - offset:hi - offset]
                data[lo - offset:hi - offset] = bytes(hi - lo)
        if data.count(0) != len(data):
            zero_errors.append(offset)

    sock = small_rcvbuf_socket(srv.port, 10.0)
    with Conn(sock, 10.0) as c:
        r = head_of(c, request("GET", "/big/big.bin"))
        assert r.status == 200, r
        assert r.header("content-length") == str(BIG), r
        reader = BodyReader(c, check)
        # Slow: 64 KiB, a pause, for about 3 s; the worker's memory is watched.
        samples = []
        slow_end = time.monotonic() + 3.0
        while time.monotonic() < slow_end:
            reader.read(reader.offset + 65536, chunk=65536, deadline=time.monotonic() + 10)
            time.sleep(0.01)
            if len(samples) < 100:
                samples.append(worker_rss_kib(srv))
        assert reader.offset < BIG // 2, "the slow phase was not slow"
        # Then as fast as the client can.
        got = reader.read(BIG, deadline=time.monotonic() + 60)
        assert got == BIG, "body ended at %d of %d bytes" % (got, BIG)
        samples.append(worker_rss_kib(srv))
        probe_r = c.request(request("HEAD", "/big/big.bin"), head=True)
        assert probe_r.status == 200 and probe_r.header("content-length") == str(BIG), probe_r
    assert not zero_errors, "non-zero bytes in holes near offsets %r" % zero_errors[:5]
    assert {o: bytes(v) for o, v in found.items()} == {o: m for o, m in BIG_MARKS}
    grown = max(samples) - rss0
    assert grown < 100 * 1024, "worker RSS grew by %d KiB while sending (from %d KiB)" % (
        grown, rss0)
    assert srv.worker_pids() == workers
    stop_clean(srv)


def test_range_from_the_middle_of_a_big_file(make_server, scratch):
    folder = scratch / "big"
    folder.mkdir()
    path = str(folder / "big.bin")
    with open(path, "wb") as f:
        f.truncate(BIG)
        for off, mark in BIG_MARKS:
            f.seek(off)
            f.write(mark)
    srv = make_server("--static", "/big=%s" % folder)
    off = BIG_MARKS[1][0] - 123
    with srv.connect() as c:
        spec = "bytes=%d-%d" % (off, off + 1023)
        r = c.request(request("GET", "/big/big.bin", [("Range", spec)]))
        assert r.status == 206, r
        assert r.header("content-range") == "bytes %d-%d/%d" % (off, off + 1023, BIG), r
        expect = bytearray(1024)
        expect[123:123 + len(BIG_MARKS[1][1])] = BIG_MARKS[1][1]
        assert r.body == bytes(expect)
        r = c.request(request("GET", "/big/big.bin", [("Range", "bytes=-16")]))
        assert r.status == 206 and r.body == BIG_MARKS[2][1], r
        assert r.header("content-range") == "bytes %d-%d/%d" % (BIG - 16, BIG - 1, BIG), r
    stop_clean(srv)


def slow_start(srv, target, first=256 * 1024, keep=None):
    """A GET read slowly for its first bytes; returns (conn, head, reader,
    hash of what came); keep, a bytearray, also gets the bytes."""
    sock = small_rcvbuf_socket(srv.port, 10.0, rcvbuf=32768)
    c = Conn(sock, 10.0)
    r = head_of(c, request("GET", target))
    assert r.status == 200, r
    h = hashlib.sha256()

    def take(offset, data):
        h.update(data)
        if keep is not None:
            keep.extend(data)

    reader = BodyReader(c, take)
    while reader.offset < first:
        reader.read(min(first, reader.offset + 16384), chunk=16384,
                    deadline=time.monotonic() + 10)
        time.sleep(0.005)
    return c, r, reader, h


def test_file_replaced_by_rename_during_a_send_completes_with_old_bytes(make_server, scratch):
    folder = scratch / "site"
    folder.mkdir()
    path = str(folder / "f.bin")
    old = os.urandom(24 * MIB)
    new = os.urandom(3 * MIB + 17)
    with open(path, "wb") as f:
        f.write(old)
    os.utime(path, (MTIME, MTIME))
    srv = make_server("--static", "/s=%s" % folder)
    c, r, reader, h = slow_start(srv, "/s/f.bin")
    with c:
        old_etag = r.header("etag")
        assert r.header("content-length") == str(len(old)), r
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(new)
        os.rename(tmp, path)
        got = reader.read(len(old), deadline=time.monotonic() + 20)
        assert got == len(old), "body ended at %d of %d bytes" % (got, len(old))
        assert h.digest() == hashlib.sha256(old).digest(), "the body is not the old file's"
    with srv.connect() as c2:
        r2 = c2.request(request("GET", "/s/f.bin"), timeout=10)
    assert r2.status == 200 and r2.body == new, r2.header("content-length")
    assert r2.header("etag") and r2.header("etag") != old_etag, (old_etag, r2)
    stop_clean(srv)


def test_file_truncated_during_a_send_ends_the_connection(make_server, scratch):
    folder = scratch / "site"
    folder.mkdir()
    path = str(folder / "f.bin")
    old = os.urandom(32 * MIB)
    with open(path, "wb") as f:
        f.write(old)
    srv = make_server("--static", "/s=%s" % folder)
    workers = srv.wait_workers(srv.workers)
    got = bytearray()
    c, r, reader, _ = slow_start(srv, "/s/f.bin", keep=got)
    with c:
        assert r.header("content-length") == str(len(old)), r
        os.truncate(path, MIB)
        t0 = time.monotonic()
        try:
            reader.read(len(old), deadline=time.monotonic() + 5)
        except socket.timeout:
            pass
        assert reader.at_eof(max(0.1, 5 - (time.monotonic() - t0))), \
            "no EOF within 5 s after the truncation (got %d bytes)" % reader.offset
        assert reader.offset < len(old), "the whole promised length arrived"
    # What arrived within the new length is the file's. Past it, sendfile
    # shared page-cache pages with the socket, and truncation may zero
    # those in place (a large folio it cannot split): each page there is
    # the old bytes or zeros, never anything else.
    assert bytes(got[:MIB]) == old[:min(len(got), MIB)]
    for off in range(MIB, len(got), 4096):
        page = bytes(got[off:off + 4096])
        assert page == old[off:off + len(page)] or page.count(0) == len(page), off
    # The server is unharmed: same processes, and it serves the new size.
    assert pid_alive(srv.pid)
    assert srv.worker_pids() == workers, (workers, srv.output())
    with srv.connect() as c2:
        r2 = c2.request(request("GET", "/s/f.bin"), timeout=10)
    assert r2.status == 200 and r2.body == old[:MIB], r2.header("content-length")
    stop_clean(srv)


def test_client_gone_mid_body_leaves_the_worker_serving(make_server, scratch):
    # A client that goes away mid-body: the worker goes on serving others.
    folder = scratch / "site"
    folder.mkdir()
    write(str(folder / "f.bin"), os.urandom(16 * MIB))
    srv = make_server("--static", "/s=%s" % folder)
    workers = srv.wait_workers(srv.workers)
    for _ in range(3):
        c, r, reader, h = slow_start(srv, "/s/f.bin", first=64 * 1024)
        c.close()
    with srv.connect() as c2:
        r2 = c2.request(request("GET", "/s/f.bin", [("Range", "bytes=0-9")]))
    assert r2.status == 206 and len(r2.body) == 10, r2
    assert srv.worker_pids() == workers
    stop_clean(srv)
