"""--static PREFIX=DIR end to end: a file, HEAD, a range, 304, 404 and 405
under the mount, a precompressed sibling, folders, and the flag's errors."""
import gzip
import os
import shutil
import tempfile

import pytest

from evicorn_harness import Conn, assert_not_found, get, run_cli

HELLO = b"hello, static world\n"


@pytest.fixture
def www():
    d = tempfile.mkdtemp(prefix="evicorn-static-")
    with open(os.path.join(d, "hello.txt"), "wb") as f:
        f.write(HELLO)
    with open(os.path.join(d, "app.js"), "wb") as f:
        f.write(b"console.log('plain');\n" * 50)
    with open(os.path.join(d, "app.js.gz"), "wb") as f:
        f.write(gzip.compress(b"console.log('plain');\n" * 50))
    with open(os.path.join(d, "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    os.mkdir(os.path.join(d, "docs"))
    with open(os.path.join(d, "docs", "index.html"), "wb") as f:
        f.write(b"<h1>docs</h1>\n")
    os.mkdir(os.path.join(d, "bare"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def srv(make_server, www):
    return make_server("--static", "/static=" + www, "--static-max-age", "120")


def fetch(srv, path, extra="", method="GET"):
    with srv.connect() as c:
        c.send(("%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (method, path, extra)).encode("latin-1"))
        return c.read_response(head=method == "HEAD")


def test_get_serves_the_file_with_type_validators_and_cache_control(srv):
    r = fetch(srv, "/static/hello.txt")
    assert r.status == 200, r
    assert r.body == HELLO
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.header("content-length") == str(len(HELLO))
    assert r.header("etag").startswith('"') and r.header("etag").endswith('"')
    assert r.header("last-modified").endswith(" GMT")
    assert r.header("accept-ranges") == "bytes"
    assert r.header("cache-control") == "max-age=120"
    assert r.header("vary") == "Accept-Encoding"


def test_big_file_arrives_whole(srv, www):
    with open(os.path.join(www, "big.bin"), "rb") as f:
        want = f.read()
    with srv.connect(timeout=20) as c:
        r = c.request(get("/static/big.bin"))
    assert r.status == 200, r
    assert r.header("content-type") == "application/octet-stream"
    assert len(r.body) == len(want) and r.body == want


def test_head_has_the_get_headers_and_no_body(srv):
    with srv.connect() as c:
        c.send(b"HEAD /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response(head=True)
        assert r.status == 200, r
        assert r.header("content-length") == str(len(HELLO))
        assert r.header("etag")
        # No body bytes came: the next response on the connection is whole.
        r2 = c.request(get("/static/hello.txt"))
        assert r2.status == 200 and r2.body == HELLO


def test_one_range_is_206(srv):
    r = fetch(srv, "/static/hello.txt", "Range: bytes=7-12\r\n")
    assert r.status == 206, r
    assert r.body == HELLO[7:13]
    assert r.header("content-range") == "bytes 7-12/%d" % len(HELLO)
    assert r.header("content-length") == "6"


def test_unsatisfiable_range_is_416(srv):
    r = fetch(srv, "/static/hello.txt", "Range: bytes=500-\r\n")
    assert r.status == 416, r
    assert r.header("content-range") == "bytes */%d" % len(HELLO)


def test_two_ranges_are_multipart(srv):
    r = fetch(srv, "/static/hello.txt", "Range: bytes=0-4, -6\r\n")
    assert r.status == 206, r
    ctype = r.header("content-type")
    assert ctype.startswith("multipart/byteranges; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    assert r.header("content-length") == str(len(r.body))
    parts = r.body.split(b"--" + boundary)
    assert parts[-1] == b"--\r\n"
    assert b"content-range: bytes 0-4/%d\r\n\r\nhello\r\n" % len(HELLO) in parts[1]
    assert b"\r\n\r\n" + HELLO[-6:] + b"\r\n" in parts[2]


def test_matching_etag_or_date_is_304(srv):
    first = fetch(srv, "/static/hello.txt")
    r = fetch(srv, "/static/hello.txt", "If-None-Match: %s\r\n" % first.header("etag"))
    assert r.status == 304, r
    assert r.body == b""
    assert r.header("etag") == first.header("etag")
    assert r.header("vary") == "Accept-Encoding"
    r = fetch(srv, "/static/hello.txt",
              "If-Modified-Since: %s\r\n" % first.header("last-modified"))
    assert r.status == 304, r
    r = fetch(srv, "/static/hello.txt", 'If-None-Match: "other"\r\n')
    assert r.status == 200 and r.body == HELLO
    r = fetch(srv, "/static/hello.txt", 'If-Match: "other"\r\n')
    assert r.status == 412, r


def test_missing_file_under_the_mount_is_fastapi_404(srv):
    assert_not_found(fetch(srv, "/static/nope.txt"))
    assert_not_found(fetch(srv, "/static/bare/"))
    assert_not_found(fetch(srv, "/static/hello.txt/"))


def test_other_methods_are_405(srv):
    r = fetch(srv, "/static/hello.txt", "Content-Length: 0\r\n", method="POST")
    assert r.status == 405, r
    assert r.header("allow") == "GET, HEAD"
    assert r.body == b'{"detail":"Method Not Allowed"}'


def test_gzip_sibling_is_chosen_by_accept_encoding(srv, www):
    r = fetch(srv, "/static/app.js", "Accept-Encoding: gzip\r\n")
    assert r.status == 200, r
    assert r.header("content-encoding") == "gzip"
    assert r.header("content-type") == "text/javascript; charset=utf-8"
    assert r.header("vary") == "Accept-Encoding"
    with open(os.path.join(www, "app.js"), "rb") as f:
        plain = f.read()
    assert gzip.decompress(r.body) == plain
    for ae in ("", "Accept-Encoding: gzip;q=0\r\n", "Accept-Encoding: identity\r\n"):
        r = fetch(srv, "/static/app.js", ae)
        assert r.status == 200, (ae, r)
        assert r.header("content-encoding") is None, ae
        assert r.header("vary") == "Accept-Encoding"
        assert r.body == plain


def test_folder_serves_index_and_redirects_without_slash(srv):
    r = fetch(srv, "/static/docs/")
    assert r.status == 200, r
    assert r.body == b"<h1>docs</h1>\n"
    assert r.header("content-type") == "text/html; charset=utf-8"
    r = fetch(srv, "/static/docs?x=1")
    assert r.status == 301, r
    assert r.header("location") == "/static/docs/?x=1"


@pytest.mark.parametrize("path", ["/static/../hello.txt", "/static/%2e%2e/hello.txt",
                                  "/static/docs%2Findex.html", "/static/docs/./index.html",
                                  "/static/docs\\index.html"])
def test_unsafe_paths_are_404(srv, path):
    assert_not_found(fetch(srv, path))


def test_prefix_matches_at_a_segment_boundary(make_server, www):
    srv = make_server("--static", "/static/=" + www)
    assert fetch(srv, "/static/hello.txt").body == HELLO
    r = fetch(srv, "/statichello.txt")
    assert_not_found(r)
    assert r.header("vary") is None  # not the mount's answer


@pytest.mark.parametrize("spec", ["/static=/nonexistent-evicorn-dir", "static=/tmp", "/s",
                                  "/a/../b=/tmp", "/s="])
def test_bad_static_flag_exits_2(spec):
    res = run_cli("--static", spec)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("evicorn: error: --static"), res.stderr


def test_bad_static_max_age_exits_2():
    res = run_cli("--static-max-age", "soon")
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert len(res.stderr.splitlines()) == 1
