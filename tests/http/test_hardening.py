"""Request smuggling / confusion vectors: each must get exactly one 400, then
the connection closes, and the request sent after it is never answered."""
import json
import time

from evicorn_harness import assert_not_found, get, read_all_responses

NEXT = get("/smuggled-next")


def expect_400_then_close(srv, data):
    with srv.connect() as c:
        c.send(data + NEXT)
        rs, rest = read_all_responses(c, timeout=3.0)
    statuses = [r.status for r in rs]
    assert statuses == [400], "expected exactly [400] then close, got %r (%r)" % (statuses, rs)
    assert rest == b"", rest
    r = rs[0]
    assert r.header("content-type") == "application/json", r
    assert r.header("connection") == "close", r
    doc = json.loads(r.body)
    assert list(doc) == ["detail"] and isinstance(doc["detail"], str), r.body
    # The request after the bad one never reached a handler.
    time.sleep(0.1)
    assert not any("/smuggled-next" in l for l in srv.stdout.snapshot()), srv.output()
    return doc["detail"]


def chunked_post(body):
    return b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def cl_post(cl_lines, body):
    return b"POST /up HTTP/1.1\r\nHost: x\r\n" + cl_lines + b"\r\n" + body


# ---- controls: the well-formed versions are served and keep the connection

def test_valid_chunked_body_keeps_connection(server):
    with server.connect() as c:
        c.send(chunked_post(b"5;name=\"v a\"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n") + get("/n"))
        assert_not_found(c.read_response())
        assert_not_found(c.read_response())
        c.assert_open(0.3)


def test_valid_content_length_body_keeps_connection(server):
    with server.connect() as c:
        c.send(cl_post(b"Content-Length: 5\r\n", b"hello") + get("/n"))
        assert_not_found(c.read_response())
        assert_not_found(c.read_response())
        c.assert_open(0.3)


# ---- line endings

def test_bare_lf_line_endings(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\nHost: x\n\n")


def test_bare_lf_after_header(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n")


def test_obs_fold_line(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n")


# ---- Content-Length / Transfer-Encoding framing

def test_content_length_and_transfer_encoding(server):
    # The classic CL.TE smuggle: whoever trusts CL sees a second request.
    smuggle = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    data = cl_post(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(smuggle), smuggle)
    expect_400_then_close(server, data)
    assert not any("/smuggled " in l for l in server.stdout.snapshot())


def test_two_content_length_equal(server):
    expect_400_then_close(server, cl_post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"))


def test_two_content_length_different(server):
    expect_400_then_close(server, cl_post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"))


def test_content_length_plus_sign(server):
    expect_400_then_close(server, cl_post(b"Content-Length: +5\r\n", b"hello"))


def test_content_length_minus_sign(server):
    expect_400_then_close(server, cl_post(b"Content-Length: -5\r\n", b"hello"))


def test_content_length_comma_list(server):
    expect_400_then_close(server, cl_post(b"Content-Length: 5, 5\r\n", b"hello"))


def test_content_length_space_before_colon(server):
    # RFC 9112 5.1: whitespace between field name and colon MUST be a 400.
    expect_400_then_close(server, cl_post(b"Content-Length : 5\r\n", b"hello"))


def test_space_inside_header_name(server):
    # A field name is a token (RFC 9110 5.1); "X A" is not one.
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n")


def test_host_space_before_colon(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")


def test_transfer_encoding_gzip(server):
    expect_400_then_close(server, cl_post(b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"))


def test_transfer_encoding_gzip_chunked(server):
    expect_400_then_close(server, cl_post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"))


def test_transfer_encoding_chunked_chunked(server):
    expect_400_then_close(server, cl_post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"))


def test_transfer_encoding_twice(server):
    expect_400_then_close(server, cl_post(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"))


def test_transfer_encoding_identity(server):
    expect_400_then_close(server, cl_post(b"Transfer-Encoding: identity\r\n", b""))


def test_transfer_encoding_on_http10(server):
    expect_400_then_close(server, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


# ---- chunk lines

def test_invalid_chunk_size_byte(server):
    expect_400_then_close(server, chunked_post(b"5g\r\nhello\r\n0\r\n\r\n"))


def test_space_after_chunk_size(server):
    expect_400_then_close(server, chunked_post(b"5 \r\nhello\r\n0\r\n\r\n"))


def test_chunk_extension_bare_lf(server):
    expect_400_then_close(server, chunked_post(b"5;a=b\nhello\r\n0\r\n\r\n"))


def test_oversized_chunk_extension(server):
    expect_400_then_close(server, chunked_post(b"5;" + b"a" * 2000 + b"\r\nhello\r\n0\r\n\r\n"))


def test_chunk_data_longer_than_size(server):
    expect_400_then_close(server, chunked_post(b"3\r\nhello\r\n0\r\n\r\n"))


# ---- header values and Host

def test_nul_in_header_value(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n")


def test_missing_host_http11(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n")


def test_two_host_headers(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")


# ---- Upgrade is not special

def test_upgrade_websocket_answered_as_http(server):
    req = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with server.connect() as c:
        r = c.request(req)
        assert_not_found(r)
        assert r.header("upgrade") is None
        # Not switched to another protocol: plain HTTP still works on it.
        assert_not_found(c.request(get("/after-upgrade")))


def test_invalid_chunk_after_early_response_closes(server):
    # The 404 may go out before the body is read; a broken body that follows
    # must still end the connection without answering what comes after it.
    with server.connect() as c:
        c.send(chunked_post(b""))
        assert_not_found(c.read_response())
        c.send(b"zz\r\n" + NEXT)
        c.assert_closed(3.0)
    time.sleep(0.1)
    assert not any("/smuggled-next" in l for l in server.stdout.snapshot()), server.output()
