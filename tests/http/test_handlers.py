"""The HTTP engine as handlers see it: bodies, streaming, ordering,
100-continue, disconnects and backpressure (through the probe plugin)."""
import socket
import time

import pytest

from evicorn_harness import Conn
from plugin_util import with_probe


@pytest.fixture
def srv(make_server):
    return with_probe(make_server("--no-access-log"))


def get(path):
    return ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode()


def test_pipelined_responses_keep_request_order_when_a_later_one_finishes_first(srv):
    with srv.connect() as c:
        c.send(get("/probe/delay/300") + get("/probe/delay/10") + get("/probe/version"))
        bodies = [c.read_response().body for _ in range(3)]
    assert bodies == [b"delay 1 300", b"delay 1 10", b"1"]


def test_pipelined_requests_run_concurrently(srv):
    with srv.connect() as c:
        t0 = time.monotonic()
        c.send(b"".join(get("/probe/delay/300") for _ in range(5)))
        for _ in range(5):
            assert c.read_response().status == 200
        assert time.monotonic() - t0 < 1.2  # five 300 ms waits overlap


def test_content_length_body_reaches_the_handler_whole(srv):
    body = bytes(range(256)) * 400
    with srv.connect() as c:
        c.send(b"POST /probe/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        c.send(body)
        r = c.read_response()
    assert r.status == 200 and r.body == body


def test_chunked_body_is_dechunked_before_the_handler_sees_it(srv):
    with srv.connect() as c:
        c.send(b"POST /probe/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        r = c.read_response()
    assert r.body == b"hello world"


def test_body_is_delivered_in_chunks_as_it_arrives(srv):
    with srv.connect() as c:
        c.send(b"POST /probe/chunks HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nabc")
        time.sleep(0.2)
        c.send(b"def")
        time.sleep(0.2)
        c.send(b"ghi")
        r = c.read_response()
    assert r.body == b'{"chunks":3,"bytes":9}'


def test_sync_handler_gets_the_whole_body(srv):
    with srv.connect() as c:
        c.send(b"POST /probe/sync-echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
        assert c.read_response().body == b"abcdef"


def test_streamed_response_without_length_is_chunked(srv):
    with srv.connect() as c:
        c.send(get("/probe/stream/5"))
        r = c.read_response()
    assert r.header("transfer-encoding") == "chunked"
    assert r.header("content-length") is None
    assert r.body == b"x" * 5120


def test_streamed_response_to_http10_is_delimited_by_close(srv):
    with srv.connect() as c:
        c.send(b"GET /probe/stream/3 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.header("transfer-encoding") is None
        assert r.body == b"x" * 3072
        c.read_until_close()


def test_head_to_a_handler_sends_headers_only(srv):
    with srv.connect() as c:
        c.send(b"HEAD /probe/version HTTP/1.1\r\nHost: t\r\n\r\n" + get("/probe/version"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("content-length") == "1"
        assert c.read_response().body == b"1"


def test_expect_100_continue_is_answered_when_the_handler_reads_the_body(srv):
    with srv.connect() as c:
        c.send(b"POST /probe/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response()
        assert interim.status == 100
        c.send(b"ping")
        r = c.read_response()
    assert r.status == 200 and r.body == b"ping"


def test_expect_100_continue_is_not_sent_when_the_handler_ignores_the_body(srv):
    with srv.connect() as c:
        c.send(b"POST /probe/version HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r.status == 405  # POST is not allowed there, and no 100 came first
        assert r.header("connection") == "close"


def test_client_disconnect_mid_request_is_noticed_at_once(srv):
    c = srv.connect()
    c.send(get("/probe/watch"))
    time.sleep(0.2)
    c.close()
    assert srv.wait_for_log(r"probe: client disconnected", 2.0), srv.output()
    assert srv.wait_for_log(r"probe: delay cancelled", 2.0), srv.output()


def test_on_disconnect_after_the_client_left_runs_after_the_call_returns(srv):
    # abi.h: a continuation never runs before the call that registered it
    # returns, even when what it waits for has already happened.
    c = srv.connect()
    c.send(get("/probe/late-disconnect"))
    time.sleep(0.2)
    c.close()
    assert srv.wait_for_log(r"probe: disconnect callback ran", 2.0), srv.output()
    assert srv.wait_for_log(r"probe: disconnect callback ran after on_disconnect returned", 0.1)
    assert not srv.wait_for_log(r"ran inside on_disconnect", 0.1)


def test_handler_that_never_responds_gets_500_and_a_log_line_naming_the_route(srv):
    with srv.connect() as c:
        c.send(get("/probe/no-response"))
        r = c.read_response()
    assert r.status == 500 and r.body == b"Internal Server Error"
    assert r.header("content-type").startswith("text/plain")
    assert srv.wait_for_log(r"GET /probe/no-response \(probe\.so\) returned without responding")


def test_second_response_is_refused_with_an_error_code(srv):
    with srv.connect() as c:
        c.send(get("/probe/double") + get("/probe/version"))
        assert c.read_response().body == b"first"
        assert c.read_response().body == b"1"
    assert srv.wait_for_log(r"second respond returned -114")


def test_header_with_crlf_is_refused(srv):
    with srv.connect() as c:
        c.send(get("/probe/bad-header"))
        r = c.read_response()
    assert r.body == b"rc=-22" and r.header("x-evil") is None


def test_async_handler_blocking_the_loop_is_logged_with_route_and_duration(srv):
    with srv.connect() as c:
        c.send(get("/probe/block/150"))
        assert c.read_response().status == 200
    m = srv.wait_for_log(r"GET /probe/block/\{ms:int\} \(probe\.so\) held the event loop for (\d+) ms")
    assert m and int(m.group(1)) >= 140, srv.output()


def test_offload_runs_blocking_work_off_the_loop(srv):
    with srv.connect() as slow, srv.connect() as fast:
        slow.send(get("/probe/offload/500"))
        time.sleep(0.05)
        t0 = time.monotonic()
        fast.send(get("/probe/version"))
        assert fast.read_response().body == b"1"
        assert time.monotonic() - t0 < 0.3
        assert slow.read_response().body == b"offloaded"


def test_client_that_does_not_read_cannot_make_the_worker_buffer_without_bound(srv):
    # 64 MiB of response to a client that reads nothing: the sync handler
    # must block on backpressure instead of queueing it all.
    c = srv.connect()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(get("/probe/sync-stream/1024"))
    time.sleep(1.0)
    worker = srv.worker_pids()[0]
    with open("/proc/%d/status" % worker) as f:
        rss_kb = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 32 * 1024, "worker RSS %d KiB while a client stalls" % rss_kb
    # The server still serves others meanwhile.
    with srv.connect() as other:
        other.send(get("/probe/version"))
        assert other.read_response().body == b"1"
    c.close()
    assert srv.wait_for_log(r"sync stream stopped: client gone", 5.0), srv.output()


def test_scope_exposes_decoded_path_raw_path_query_and_headers_in_order(make_server):
    srv = with_probe(make_server("--root-path", "/api"))
    with srv.connect() as c:
        c.send(b"GET /probe/scope/a%20b%3F?x=1&y=%20 HTTP/1.1\r\nHost: t\r\n"
               b"X-Dup: 1\r\nX-Dup: 2\r\n\r\n")
        text = c.read_response().body.decode()
    lines = text.splitlines()
    assert "path=/probe/scope/a b?" in lines
    assert "raw_path=/probe/scope/a%20b%3F" in lines
    assert "query=x=1&y=%20" in lines
    assert "root_path=/api" in lines
    assert "route=/probe/scope/{name}" in lines
    assert "param=a b?" in lines
    headers = [l for l in lines if l.startswith("header=")]
    assert headers == ["header=host: t", "header=x-dup: 1", "header=x-dup: 2"]
    assert "version=1.1" in lines and "scheme=http" in lines


def test_proxy_headers_from_a_trusted_peer_set_client_and_scheme(srv):
    with srv.connect() as c:
        c.send(b"GET /probe/scope/x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.1.2.3\r\n"
               b"X-Forwarded-Proto: https\r\n\r\n")
        lines = c.read_response().body.decode().splitlines()
    assert "client=10.1.2.3:0" in lines and "scheme=https" in lines


def test_limit_concurrency_answers_503_beyond_the_limit(make_server):
    srv = with_probe(make_server("--limit-concurrency", "2"))
    conns = [srv.connect() for _ in range(2)]
    for c in conns:
        c.send(get("/probe/delay/500"))
    time.sleep(0.1)
    with srv.connect() as extra:
        extra.send(get("/probe/version"))
        r = extra.read_response()
        assert r.status == 503 and r.header("connection") == "close"
    for c in conns:
        assert c.read_response().status == 200
        c.close()


def test_body_that_breaks_after_dispatch_reaches_the_handler_as_an_error_not_a_short_body(srv):
    with srv.connect() as c:
        c.send(b"POST /probe/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n")
        time.sleep(0.2)  # the handler is now waiting for the whole body
        c.send(b"zz\r\n")
        r = c.read_response()
        assert r.status == 400 and r.body.startswith(b'{"detail":"Invalid HTTP request')
        c.assert_closed(3.0)
    assert srv.wait_for_log(r"probe: echo body failed: -125", 2.0), srv.output()
