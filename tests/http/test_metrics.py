"""--metrics-path: the Prometheus text exposition of the whole instance.

A strict little parser reads every scrape: each sample belongs to a family
announced by HELP and TYPE, names and labels are well formed, histograms
are cumulative and end in +Inf == _count. The counts are then checked
exactly against what the test sent, over two workers."""
import os
import re
import signal
import socket
import threading
import time

from evicorn_harness import Conn, Response, get, try_request
import plugin_util
from plugin_util import with_probe

METRICS = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
NAME_AT_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_sample(line):
    """(name, labels, value) of a sample line; asserts its syntax."""
    m = NAME_AT_RE.match(line)
    assert m, "bad sample %r" % line
    name, pos, labels = m.group(0), m.end(), []
    if line[pos:pos + 1] == "{":
        pos += 1
        while line[pos:pos + 1] != "}":
            lm = LABEL_RE.match(line, pos)
            assert lm, "bad labels in %r" % line
            labels.append((lm.group(1), lm.group(2)))
            pos = lm.end()
            if line[pos:pos + 1] == ",":
                pos += 1
        pos += 1
    names = [k for k, _ in labels]
    assert len(names) == len(set(names)), "duplicate label in %r" % line
    assert line[pos:pos + 1] == " ", "bad sample %r" % line
    return name, tuple(labels), float(line[pos + 1:])


def parse_exposition(text):
    """{family: {"type", "help", "samples": {(name, labels): value}}}; asserts the format."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families, current = {}, None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert NAME_RE.match(name) and help_text, line
            assert name not in families, "family %s announced twice" % name
            families[name] = {"help": help_text, "type": None, "samples": {}}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and kind in TYPES, line
            assert families[name]["type"] is None, line
            families[name]["type"] = kind
        else:
            assert not line.startswith("#") and line, "unexpected line %r" % line
            name, labels, value = parse_sample(line)
            fam = families.get(current)
            assert fam and fam["type"], "sample before its HELP/TYPE: %r" % line
            suffixes = ("_bucket", "_sum", "_count") if fam["type"] == "histogram" else ("",)
            assert any(name == current + s for s in suffixes), \
                "sample %s outside its family %s" % (name, current)
            key = (name, labels)
            assert key not in fam["samples"], "duplicate series %r" % (key,)
            fam["samples"][key] = value
    for name, fam in families.items():
        assert fam["type"], "%s has no TYPE" % name
        if fam["type"] == "counter":
            assert name.endswith("_total"), "counter %s must end in _total" % name
            assert all(v >= 0 for v in fam["samples"].values()), name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    series = {}
    for (sname, labels), v in samples.items():
        rest = tuple(kv for kv in labels if kv[0] != "le")
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            le = dict(labels)["le"]
            s["buckets"].append((float("inf") if le == "+Inf" else float(le), v))
        elif sname == name + "_sum":
            s["sum"] = v
        else:
            s["count"] = v
    for rest, s in series.items():
        b = s["buckets"]
        assert b and s["sum"] is not None and s["count"] is not None, (name, rest)
        bounds = [le for le, _ in b]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf"), (name, rest, bounds)
        counts = [v for _, v in b]
        assert counts == sorted(counts), "buckets of %s %r not cumulative" % (name, rest)
        assert counts[-1] == s["count"], "+Inf != _count for %s %r" % (name, rest)
        assert s["sum"] >= 0


def scrape(srv):
    r = try_request(srv.port, get(METRICS), timeout=5)
    assert isinstance(r, Response) and r.status == 200, (r, srv.output())
    assert r.header("content-type") == CONTENT_TYPE
    return parse_exposition(r.body.decode())


def value(fams, family, sample=None, **labels):
    want = tuple(sorted(labels.items()))
    for (name, lab), v in fams[family]["samples"].items():
        if name == (sample or family) and tuple(sorted(lab)) == want:
            return v
    return 0.0


def route_labels(fams):
    return {dict(lab)["route"] for (_, lab) in fams["evicorn_http_requests_total"]["samples"]}


def metrics_server(make_server, *args, workers=2):
    srv = make_server("--workers", str(workers), "--metrics-path", METRICS, "--no-access-log",
                      *args)
    with_probe(srv)
    return srv


def wait_ready(srv, n, timeout=5.0):
    """The scrape once the master has seen n workers serve (it hears of
    them a moment after they start)."""
    deadline = time.monotonic() + timeout
    while True:
        fams = scrape(srv)
        if value(fams, "evicorn_workers_ready") == n or time.monotonic() > deadline:
            return fams
        time.sleep(0.05)


def fresh_get(srv, path):
    r = try_request(srv.port, get(path), timeout=5)
    assert isinstance(r, Response), (r, srv.output())
    return r


def test_the_exposition_parses_and_announces_every_family(make_server):
    srv = metrics_server(make_server)
    fresh_get(srv, "/probe/version")
    fams = wait_ready(srv, 2)
    for name, kind in [("evicorn_http_requests_total", "counter"),
                       ("evicorn_http_request_duration_seconds", "histogram"),
                       ("evicorn_http_requests_in_flight", "gauge"),
                       ("evicorn_connections_open", "gauge"),
                       ("evicorn_connections_total", "counter"),
                       ("evicorn_websocket_connections_open", "gauge"),
                       ("evicorn_http_received_bytes_total", "counter"),
                       ("evicorn_http_sent_bytes_total", "counter"),
                       ("evicorn_http_client_errors_total", "counter"),
                       ("evicorn_threadpool_busy_threads", "gauge"),
                       ("evicorn_threadpool_queued_tasks", "gauge"),
                       ("evicorn_plugin_loads_total", "counter"),
                       ("evicorn_plugin_refusals_total", "counter"),
                       ("evicorn_plugin_generations", "gauge"),
                       ("evicorn_worker_restarts_total", "counter"),
                       ("evicorn_workers_ready", "gauge"),
                       ("evicorn_info", "gauge")]:
        assert name in fams and fams[name]["type"] == kind, (name, sorted(fams))
    assert value(fams, "evicorn_workers_ready") == 2
    assert value(fams, "evicorn_plugin_loads_total") == 2  # one per worker
    assert value(fams, "evicorn_plugin_generations") == 2


def test_requests_are_counted_exactly_by_route_template_over_two_workers(make_server):
    srv = metrics_server(make_server, "--status-path", "/_status")
    pids = set()
    for i in range(30):
        assert fresh_get(srv, "/probe/scope/%d" % (i % 3)).status == 200
    for i in range(7):
        assert fresh_get(srv, "/no/such/%d" % i).status == 404
    for i in range(5):
        r = try_request(srv.port, b"POST /probe/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2"
                        b"\r\n\r\nhi")
        assert isinstance(r, Response) and r.status == 200
    for _ in range(20):
        pids.add(int(re.search(rb'"pid":(\d+)', fresh_get(srv, "/_status").body).group(1)))
    # Any worker answers the scrape with the instance's sums.
    for _ in range(6):
        fams = scrape(srv)
        assert value(fams, "evicorn_http_requests_total", route="/probe/scope/{name}",
                     method="GET", status="2xx") == 30
        assert value(fams, "evicorn_http_requests_total", route="<unmatched>", method="GET",
                     status="4xx") == 7
        assert value(fams, "evicorn_http_requests_total", route="/probe/echo", method="POST",
                     status="2xx") == 5
        assert value(fams, "evicorn_http_requests_total", route="/_status", method="GET",
                     status="2xx") == 20
        assert value(fams, "evicorn_http_request_duration_seconds",
                     "evicorn_http_request_duration_seconds_count",
                     route="/probe/scope/{name}") == 30
        assert not any("/probe/scope/1" in r for r in route_labels(fams))
    assert len(pids) == 2, "the load reached one worker only: %r" % pids


def test_latency_lands_in_the_right_bucket(make_server):
    srv = metrics_server(make_server, workers=1)
    assert fresh_get(srv, "/probe/delay/300").status == 200
    fams = scrape(srv)
    h = "evicorn_http_request_duration_seconds"
    route = "/probe/delay/{ms:int}"
    assert value(fams, h, h + "_bucket", route=route, le="0.25") == 0
    assert value(fams, h, h + "_bucket", route=route, le="0.5") == 1
    assert 0.3 <= value(fams, h, h + "_sum", route=route) < 2.0


def test_client_errors_are_counted_by_reason(make_server):
    srv = metrics_server(make_server, "--timeout-header", "1", workers=1)
    with Conn.tcp(srv.port) as c:
        assert c.request(b"GARBAGE\r\n\r\n").status == 400
    with Conn.tcp(srv.port) as c:
        big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert c.request(big).status == 431
    with Conn.tcp(srv.port) as c:
        body = b"x" * 10
        r = c.request(b"POST /probe/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                      % (2 << 20, body))
        assert r.status == 413
    with Conn.tcp(srv.port) as c:
        c.send(b"GET /probe/version HTTP/1.1\r\nHost:")  # and nothing more
        c.assert_closed(timeout=5)
    fams = scrape(srv)
    ce = "evicorn_http_client_errors_total"
    assert value(fams, ce, reason="bad_request") == 1
    assert value(fams, ce, reason="limits") == 2
    assert value(fams, ce, reason="timeout") == 1
    assert value(fams, "evicorn_http_requests_total", route="<rejected>", method="OTHER",
                 status="4xx") >= 1


def raw_exchange(port, request):
    """Sends request on a fresh connection and returns every byte the server sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def test_bytes_in_and_out_are_counted_at_the_connection(make_server):
    srv = metrics_server(make_server, workers=1)
    scrape_req = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    first = raw_exchange(srv.port, scrape_req)
    req = b"GET /probe/stream/50 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(srv.port, req)
    assert b" 200 " in answer.split(b"\r\n")[0]
    second = raw_exchange(srv.port, scrape_req)

    def counters(raw):
        body = raw.split(b"\r\n\r\n", 1)[1].decode()
        fams = parse_exposition(body)
        return (value(fams, "evicorn_http_received_bytes_total"),
                value(fams, "evicorn_http_sent_bytes_total"))

    (rx1, tx1), (rx2, tx2) = counters(first), counters(second)
    # Between the two renders: the request and the second scrape's request
    # came in; the first scrape's answer and the request's went out.
    assert rx2 - rx1 == len(req) + len(scrape_req)
    assert tx2 - tx1 == len(first) + len(answer)


def test_in_flight_counts_a_slow_request_while_it_runs(make_server):
    srv = metrics_server(make_server, workers=1)
    slow = Conn.tcp(srv.port, timeout=10)
    slow.send(get("/probe/delay/1500"))
    time.sleep(0.4)
    fams = scrape(srv)
    # The slow request, and the scrape itself.
    assert value(fams, "evicorn_http_requests_in_flight") == 2
    assert value(fams, "evicorn_connections_open") == 2
    assert slow.read_response(timeout=5).status == 200
    slow.close()
    fams = scrape(srv)
    assert value(fams, "evicorn_http_requests_in_flight") == 1


def test_raw_paths_never_become_series(make_server):
    srv = metrics_server(make_server, workers=1)
    with Conn.tcp(srv.port, timeout=10) as c:
        for i in range(1000):
            path = "/probe/scope/n%d" % i if i % 2 else "/nothing/%d" % i
            assert c.request(get(path)).status in (200, 404)
    fams = scrape(srv)
    assert route_labels(fams) == {"/probe/scope/{name}", "<unmatched>"}
    assert len(fams["evicorn_http_requests_total"]["samples"]) == 2
    assert value(fams, "evicorn_http_requests_total", route="/probe/scope/{name}",
                 method="GET", status="2xx") == 500


def test_odd_methods_are_one_label(make_server):
    srv = metrics_server(make_server, workers=1)
    with Conn.tcp(srv.port) as c:
        for m in (b"PROPFIND", b"PURGE", b"MKCOL"):
            assert c.request(m + b" /probe/version HTTP/1.1\r\nHost: t\r\n\r\n").status == 405
    fams = scrape(srv)
    assert value(fams, "evicorn_http_requests_total", route="<unmatched>", method="OTHER",
                 status="4xx") == 3


def test_a_crashed_worker_is_counted_and_its_gauges_do_not_linger(make_server):
    srv = metrics_server(make_server, workers=2)
    pids = srv.wait_workers(2)
    assert fresh_get(srv, "/probe/version").status == 200
    before = value(scrape(srv), "evicorn_http_requests_total", route="/probe/version",
                   method="GET", status="2xx")
    holder = Conn.tcp(srv.port, timeout=10)  # an open connection on some worker
    holder.send(get("/probe/delay/3000"))
    time.sleep(0.3)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    srv.wait_workers(2, timeout=10, exclude=pids)
    fams = wait_ready(srv, 2, timeout=10)
    holder.close()
    assert value(fams, "evicorn_worker_restarts_total", cause="crash") == 2
    # Counters go on from where the dead workers left them; what they had
    # open went with them.
    assert value(fams, "evicorn_http_requests_total", route="/probe/version", method="GET",
                 status="2xx") == before
    assert value(fams, "evicorn_http_requests_in_flight") == 1  # the scrape
    assert value(fams, "evicorn_connections_open") == 1
    assert value(fams, "evicorn_plugin_generations") == 2


def test_plugin_refusals_are_counted(make_server):
    srv = metrics_server(make_server, workers=1)
    mark = len(srv.stderr.snapshot())
    plugin_util.deploy(srv, plugin_util.plugin_path("probe_no_entry"), "broken.so")
    assert srv.wait_for_log(r"plugin .*broken\.so refused", 5, start=mark), srv.output()
    fams = scrape(srv)
    assert value(fams, "evicorn_plugin_refusals_total") == 1
    assert value(fams, "evicorn_plugin_loads_total") == 1


def test_metrics_path_must_be_absolute(make_server):
    from evicorn_harness import run_cli
    r = run_cli("--metrics-path", "metrics")
    assert r.returncode != 0
    assert "--metrics-path" in (r.stderr if isinstance(r.stderr, str) else r.stderr.decode())
