"""Size limits and malformed requests: exact error statuses, then close."""
import json
import time

from evicorn_harness import get, read_all_responses


def assert_json_error(r, status):
    assert r.status == status, r
    assert r.header("content-type") == "application/json", r
    assert r.header("content-length") == str(len(r.body)), r
    doc = json.loads(r.body)
    assert isinstance(doc, dict) and list(doc) == ["detail"], r.body
    assert isinstance(doc["detail"], str) and doc["detail"], r.body
    assert r.header("connection") == "close", r
    return doc["detail"]


def expect_single_error(srv, data, status, timeout=3.0):
    """Sends data, expects exactly one response (the error), then the close."""
    with srv.connect() as c:
        c.send(data)
        rs, rest = read_all_responses(c, timeout=timeout)
    assert len(rs) >= 1, "no response at all (rest %r)" % rest
    assert [r.status for r in rs] == [status], rs
    assert rest == b"", rest
    return assert_json_error(rs[0], status)


def test_request_line_too_long_414(server):
    data = b"GET /" + b"a" * (9 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n" + get("/next")
    expect_single_error(server, data, 414)


def test_request_line_just_under_limit_ok(server):
    target = b"/" + b"a" * (8 * 1024 - 40)
    with server.connect() as c:
        r = c.request(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 404, r


def test_headers_too_large_431(server):
    big = b"".join(b"X-Fill-%d: %s\r\n" % (i, b"v" * 1000) for i in range(20))
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n" + get("/next")
    expect_single_error(server, data, 431)


def test_too_many_headers_431(server):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(130))
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n" + get("/next")
    expect_single_error(server, data, 431)


def test_128_headers_accepted(server):
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(127))  # + Host = 128
    with server.connect() as c:
        r = c.request(b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert r.status == 404, r


def test_content_length_over_limit_413_before_body(make_server):
    srv = make_server("--limit-body", "1000")
    with srv.connect() as c:
        t0 = time.monotonic()
        # Head only: the body is never sent; the answer must not wait for it.
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        r = c.read_response(timeout=2.0)
        assert time.monotonic() - t0 < 1.0
        assert_json_error(r, 413)
        c.assert_closed(3.0)


def test_content_length_at_limit_accepted(make_server):
    srv = make_server("--limit-body", "1000")
    with srv.connect() as c:
        r = c.request(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                      + b"z" * 1000)
        assert r.status == 404, r
        # The body was consumed: the connection is still in sync.
        assert c.request(get("/next")).status == 404


def test_chunked_body_over_limit_413(make_server):
    srv = make_server("--limit-body", "1000")
    body = b"".join(b"200\r\n" + b"c" * 0x200 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    data = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
            + get("/next"))
    expect_single_error(srv, data, 413)


def test_garbage_request_400(server):
    detail = expect_single_error(server, b"GARBAGE\r\n\r\n" + get("/next"), 400)
    assert detail


def test_bad_http_version_400(server):
    expect_single_error(server, b"GET / HTTP/X.1\r\nHost: x\r\n\r\n" + get("/next"), 400)


def test_misspelled_http_name_400(server):
    # HTTP-name is the case-sensitive "HTTP" (RFC 9112 2.3).
    expect_single_error(server, b"GET / HTTX/1.1\r\nHost: x\r\n\r\n" + get("/next"), 400)


def test_unsupported_http_major_505(server):
    expect_single_error(server, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n" + get("/next"), 505)


def test_space_in_target_400(server):
    expect_single_error(server, b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n" + get("/next"), 400)
