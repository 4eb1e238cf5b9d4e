"""Request smuggling / confusion vectors that the table in test_smuggling.py
does not cover (a Host field name with a space, a chunked body with both an
extension and a trailer, a broken chunk after an early response): a bad
request gets exactly one 400, then the connection closes, and the request
sent after it is never answered."""
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


# ---- control: the well-formed version is served and keeps the connection

def test_valid_chunked_body_keeps_connection(server):
    with server.connect() as c:
        c.send(chunked_post(b"5;name=\"v a\"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n") + get("/n"))
        assert_not_found(c.read_response())
        assert_not_found(c.read_response())
        c.assert_open(0.3)


# ---- Host

def test_host_space_before_colon(server):
    expect_400_then_close(server, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")


# ---- a broken body after the answer

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
