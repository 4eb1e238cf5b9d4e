"""HTTP/1.1 protocol behaviour seen from a client."""
import datetime
import email.utils
import re
import time

import httpx

from evicorn_harness import NOT_FOUND_BODY, assert_not_found, get, read_all_responses

IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                         r"\d{2}:\d{2}:\d{2} GMT$")


def test_not_found_exact_response(server):
    with server.connect() as c:
        r = c.request(get("/nothing-here"))
    assert r.version == "HTTP/1.1"
    assert r.status == 404
    assert r.reason == "Not Found"
    assert r.body == b'{"detail":"Not Found"}'
    assert r.header("content-type") == "application/json"
    assert r.header("content-length") == "22"
    assert r.header("transfer-encoding") is None


def test_server_and_date_headers(server):
    with server.connect() as c:
        r = c.request(get("/"))
    assert r.header("server") == "evicorn"
    date = r.header("date")
    assert date is not None and IMF_FIXDATE.match(date), date
    when = email.utils.parsedate_to_datetime(date)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 5, (date, now)


def test_no_server_header_flag(make_server):
    srv = make_server("--no-server-header")
    with srv.connect() as c:
        r = c.request(get("/"))
    assert_not_found(r)
    assert r.header("server") is None, r
    assert r.header("date") is not None


def test_no_date_header_flag(make_server):
    srv = make_server("--no-date-header")
    with srv.connect() as c:
        r = c.request(get("/"))
    assert_not_found(r)
    assert r.header("date") is None, r
    assert r.header("server") == "evicorn"


def test_custom_header_flag(make_server):
    srv = make_server("--header", "X-A:1")
    with srv.connect() as c:
        r = c.request(get("/"))
    assert_not_found(r)
    assert r.header("x-a") == "1", r
    assert r.header("server") == "evicorn"


def test_custom_header_flag_written_lower_case(make_server):
    # uvicorn lower-cases --header names, like every header it writes.
    srv = make_server("--header", "X-A:1")
    with srv.connect() as c:
        r = c.request(get("/"))
    assert b"\r\nx-a: 1\r\n" in r.raw, r.raw


def test_keep_alive_by_default_http11(server):
    with server.connect() as c:
        r1 = c.request(get("/one"))
        assert_not_found(r1)
        assert r1.header("connection") is None, r1
        r2 = c.request(get("/two"))
        assert_not_found(r2)
        c.assert_open(0.3)


def test_client_connection_close_closes(server):
    with server.connect() as c:
        r = c.request(get("/", extra="Connection: close\r\n"))
        assert_not_found(r)
        assert r.header("connection") == "close"
        c.assert_closed(2.0)


def test_http10_closes_after_response(server):
    with server.connect() as c:
        c.send(b"GET /old HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 404
        assert r.body == NOT_FOUND_BODY
        assert r.header("connection") == "close"
        c.assert_closed(2.0)


def test_http10_keep_alive_stays_open(server):
    with server.connect() as c:
        r1 = c.request(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert_not_found(r1)
        assert r1.header("connection") == "keep-alive"
        c.assert_open(0.3)
        r2 = c.request(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert_not_found(r2)
        assert r2.header("connection") == "keep-alive"


def test_pipelined_requests_answered_in_order(server):
    n = 10
    with server.connect() as c:
        c.send(b"".join(get("/p%d" % i) for i in range(n)))
        rs = [c.read_response() for _ in range(n)]
        for r in rs:
            assert_not_found(r)
        c.assert_open(0.3)  # exactly n responses, nothing extra
    # The access log shows them in the order sent.
    for i in range(n):
        assert server.wait_for_access_log(r'"GET /p%d HTTP/1.1" 404' % i, 3.0)
    lines = [l for l in server.stdout.snapshot() if '"GET /p' in l]
    order = [int(re.search(r"/p(\d+) ", l).group(1)) for l in lines]
    assert order == list(range(n)), lines


def test_pipelined_request_after_close_not_answered(server):
    with server.connect() as c:
        c.send(get("/first") + get("/second", extra="Connection: close\r\n") + get("/third"))
        rs, rest = read_all_responses(c, timeout=3.0)
    assert [r.status for r in rs] == [404, 404], rs
    assert rs[1].header("connection") == "close"
    assert rest == b""
    time.sleep(0.2)
    assert not any("/third" in l for l in server.stdout.snapshot())


def test_head_has_headers_no_body(server):
    with server.connect() as c:
        c.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response(head=True)
        assert r.status == 404
        assert r.header("content-length") == "22"
        assert r.header("content-type") == "application/json"
        # No body bytes follow: the next response starts right away.
        r2 = c.request(get("/after-head"))
        assert_not_found(r2)


def test_request_line_split_across_sends(server):
    with server.connect() as c:
        for part in (b"GE", b"T /spl", b"it HTTP/1", b".1\r\nHo", b"st: x\r", b"\n", b"\r\n"):
            c.send(part)
            time.sleep(0.05)
        r = c.read_response()
    assert_not_found(r)
    assert server.wait_for_access_log(r'"GET /split HTTP/1.1" 404', 3.0)


def test_absolute_form_target(server):
    with server.connect() as c:
        r = c.request(b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_not_found(r)
        c.assert_open(0.2)


def test_httpx_client_get(server):
    with httpx.Client(timeout=5.0) as client:
        r = client.get(server.url("/via-httpx"))
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json"
        assert r.content == NOT_FOUND_BODY
        assert r.json() == {"detail": "Not Found"}
        assert r.http_version == "HTTP/1.1"


def test_access_log_line(server):
    with server.connect() as c:
        assert_not_found(c.request(get("/path?q=1")))
    m = server.wait_for_access_log(r'^INFO:     127\.0\.0\.1:\d+ - "GET /path\?q=1 HTTP/1\.1" 404 Not Found$', 3.0)
    assert m, server.output()


def test_access_log_names_client_port(server):
    with server.connect() as c:
        port = c.sock.getsockname()[1]
        assert_not_found(c.request(get("/who")))
    assert server.wait_for_access_log(r'^INFO:     127\.0\.0\.1:%d - "GET /who HTTP/1\.1" 404 Not Found$' % port,
                                      3.0), server.output()


def test_no_access_log_flag(make_server):
    srv = make_server("--no-access-log")
    with srv.connect() as c:
        assert_not_found(c.request(get("/quiet")))
        assert_not_found(c.request(get("/quiet2")))
    # A marker request on a normal server would log within ms; give it time.
    assert srv.wait_for_access_log(r"GET /quiet", 0.5) is None, srv.output()
    assert srv.stdout.snapshot() == [], srv.output()


def test_connection_survives_many_requests(server):
    with server.connect() as c:
        for i in range(50):
            assert_not_found(c.request(get("/k%d" % i)))
