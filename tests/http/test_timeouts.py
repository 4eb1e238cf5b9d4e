"""Keep-alive, header and body timeouts, driven by short --timeout-* flags."""
import time

from evicorn_harness import assert_not_found, get


def test_keep_alive_timeout_closes_idle_connection(make_server):
    srv = make_server("--timeout-keep-alive", "1", "--timeout-header", "30")
    with srv.connect() as c:
        assert_not_found(c.request(get("/")))
        t0 = time.monotonic()
        c.assert_open(0.5)  # not before 0.5 s
        c.assert_closed(3.0 - (time.monotonic() - t0))
        elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed <= 3.0, elapsed


def test_keep_alive_timeout_restarts_after_each_request(make_server):
    srv = make_server("--timeout-keep-alive", "1", "--timeout-header", "30")
    with srv.connect() as c:
        # 4 requests 0.6 s apart: 2.4 s in all, each gap under the timeout.
        for i in range(4):
            assert_not_found(c.request(get("/r%d" % i)))
            time.sleep(0.6)
        assert_not_found(c.request(get("/last")))


def test_header_timeout_partial_head(make_server):
    srv = make_server("--timeout-header", "1", "--timeout-keep-alive", "30")
    with srv.connect() as slow:
        t0 = time.monotonic()
        slow.send(b"GET /never-finished HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        # Meanwhile another client is served at once.
        with srv.connect() as other:
            assert_not_found(other.request(get("/other"), timeout=1.0))
        assert time.monotonic() - t0 < 0.5
        rest = slow.read_until_close(3.0)
        elapsed = time.monotonic() - t0
    assert elapsed <= 3.0, elapsed
    assert elapsed >= 0.5, elapsed
    # A 408 is acceptable; a 2xx/4xx for the unfinished request is not.
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408 "), rest


def test_header_timeout_trickled_head(make_server):
    # Bytes that keep coming do not extend the header deadline.
    srv = make_server("--timeout-header", "1", "--timeout-keep-alive", "30")
    with srv.connect() as c:
        t0 = time.monotonic()
        c.send(b"GET /trickle HTTP/1.1\r\n")
        closed = False
        for i in range(30):  # at most 3 s
            time.sleep(0.1)
            try:
                c.send(b"X-T%d: v\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        if not closed:
            c.read_until_close(1.0)
        elapsed = time.monotonic() - t0
    assert elapsed <= 3.0, elapsed


def test_header_timeout_silent_connection(make_server):
    srv = make_server("--timeout-header", "1", "--timeout-keep-alive", "30")
    with srv.connect() as c:
        t0 = time.monotonic()
        c.assert_open(0.5)
        rest = c.read_until_close(3.0)
        elapsed = time.monotonic() - t0
    assert rest == b"", rest
    assert 0.5 <= elapsed <= 3.0, elapsed


def test_body_timeout_stalled_body(make_server):
    srv = make_server("--timeout-body", "1", "--timeout-header", "30", "--timeout-keep-alive", "30")
    with srv.connect() as c:
        t0 = time.monotonic()
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        # The route is a 404: it may answer before the body is complete.
        rest = c.read_until_close(4.0)
        elapsed = time.monotonic() - t0
    assert elapsed <= 4.0, elapsed
    if rest:
        assert rest.startswith(b"HTTP/1.1 404 Not Found\r\n"), rest
        assert rest.endswith(b'\r\n\r\n{"detail":"Not Found"}'), rest
        assert rest.count(b"HTTP/1.1 ") == 1, rest
    with srv.connect() as other:
        assert_not_found(other.request(get("/other")))


def test_body_timeout_not_before_deadline(make_server):
    srv = make_server("--timeout-body", "1", "--timeout-header", "30", "--timeout-keep-alive", "30")
    with srv.connect() as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.4)
        c.send(b"def")  # progress resets the body deadline
        time.sleep(0.4)
        c.send(b"ghij" + get("/after-body"))
        rs = [c.read_response(timeout=2.0), c.read_response(timeout=2.0)]
        for r in rs:
            assert_not_found(r)
