"""The SDK's PostgreSQL client (sdk/include/evicorn/pg.h) against a real
PostgreSQL (db_harness.PgServer), through the pgprobe test plugin
(tests/plugins/pgprobe): queries, pipelines, leased transactions,
statement timeouts, and the faults a pool must survive: the server
stopped or restarted under load, a client leaving mid-query, the pool
exhausted, and the plugin hot-reloaded under load. No request may hang
and no file descriptor may leak.
"""
import json
import os
import re
import socket
import threading
import time
import uuid

import pytest

import plugin_util
from evicorn_harness import Conn, ConnClosed, Server, get, time_scale

SCALE = time_scale()
T = 5.0 * SCALE
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")


# --------------------------------------------------------------------------
# Helpers


def start(pg, pool=2, **settings):
    """evicorn serving pgprobe.so with DATABASE_URL and the pool settings
    (PGPROBE_<NAME>=value for each keyword), once the plugin has loaded."""
    env = {"DATABASE_URL": pg.url, "EVICORN_PG_POOL_SIZE": str(pool)}
    for name, value in settings.items():
        env["PGPROBE_" + name.upper()] = str(value)
    wrapper = ["env"] + ["%s=%s" % kv for kv in env.items()]
    srv = Server("--no-access-log", wrapper=wrapper).start()
    try:
        deploy(srv, "pgprobe")
        wait_open(srv, pool)
    except BaseException:
        srv.stop()
        raise
    return srv


def deploy(srv, variant):
    mark = len(srv.stderr.snapshot())
    plugin_util.deploy(srv, plugin_util.plugin_path(variant), "pgprobe.so")
    m = srv.wait_for_log(r"plugin pgprobe\.so: (loaded|replaced)", 10.0, start=mark)
    assert m, srv.output()


def finish(srv):
    srv.stop()
    m = SANITIZER_RE.search("\n".join(srv.stderr.snapshot()))
    assert not m, srv.output()


@pytest.fixture
def servers():
    """Starts servers with start(pg, ...); stops them after the test and
    fails it on a sanitizer report."""
    started = []

    def factory(pg, **kw):
        srv = start(pg, **kw)
        started.append(srv)
        return srv

    yield factory
    for srv in reversed(started):
        finish(srv)


def fetch(srv, path, timeout=T):
    """(status, decoded JSON body or raw bytes, seconds) of one GET on a
    fresh connection; status is None when the connection failed."""
    t0 = time.monotonic()
    try:
        with Conn.tcp(srv.port, timeout) as c:
            r = c.request(get(path), timeout=timeout)
    except (OSError, ConnClosed, AssertionError) as e:
        return None, repr(e), time.monotonic() - t0
    try:
        body = json.loads(r.body)
    except ValueError:
        body = r.body
    return r.status, body, time.monotonic() - t0


def ok(srv, path):
    status, body, _ = fetch(srv, path)
    assert status == 200, (path, status, body)
    return body


def stats(srv):
    return ok(srv, "/pg/stats")


def wait_open(srv, n, timeout=10.0):
    """Waits until the pool has n connections open."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        s = stats(srv)
        if s["open"] == n:
            return s
        assert time.monotonic() < deadline, (s, srv.output())
        time.sleep(0.05)


def worker_fds(srv):
    (pid,) = srv.worker_pids()
    return len(os.listdir("/proc/%d/fd" % pid))


def quiet_fds(srv):
    """The worker's descriptors once the connections of earlier requests
    are closed on the server's side too."""
    time.sleep(0.5 * SCALE)
    return worker_fds(srv)


def wait_fds(srv, n, timeout=5.0):
    """The worker's descriptors come back to n (closing may lag a moment)."""
    deadline = time.monotonic() + timeout * SCALE
    while worker_fds(srv) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker_fds(srv) == n, (worker_fds(srv), n)


def sessions(pg):
    """Connections the pools have open on the server."""
    return int(pg.scalar("SELECT count(*) FROM pg_stat_activity "
                         "WHERE application_name = 'evicorn'"))


def active(pg, tag):
    """Whether the query tagged tag runs on the server."""
    return int(pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                         "AND pid <> pg_backend_pid() AND query LIKE '%%pgprobe:%s */%%'"
                         % tag)) > 0


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout * SCALE
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def log_count(srv, regex, start=0):
    return sum(1 for line in srv.stderr.snapshot()[start:] if re.search(regex, line))


class Load:
    """Threads sending GET path on fresh connections in a loop, recording
    (time, status, body) for every answer."""

    def __init__(self, srv, path, threads=4):
        self.srv, self.path = srv, path
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        while not self.stop.is_set():
            status, body, _ = fetch(self.srv, self.path, timeout=T)
            with self.lock:
                self.results.append((time.monotonic(), status, body))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(3 * T)
        assert not any(t.is_alive() for t in self.threads), "a request hung"
        return False

    def since(self, t):
        with self.lock:
            return [r for r in self.results if r[0] >= t]


# --------------------------------------------------------------------------
# Queries


def test_a_query_with_parameters_and_a_prepared_statement(pg, servers):
    srv = servers(pg)
    assert ok(srv, "/pg/param?a=2&b=40") == {"sum": 42, "a": "2"}
    assert ok(srv, "/pg/prepared?id=7") == {"id": 7, "label": "row 7"}


def test_columns_convert_to_json_by_type(pg, servers):
    srv = servers(pg)
    assert ok(srv, "/pg/types") == {
        "i2": 1, "i4": 2, "i8": 9007199254740993, "o": 26, "f4": 1.5, "f8": 2.25,
        "num": 3.125, "b": True, "j": {"a": [1, 2]}, "jb": {"b": None}, "n": None,
        "t": "h\u00e9llo", "nan": "NaN"}


def test_a_pipeline_of_n_statements_runs_in_one_call(pg, servers):
    srv = servers(pg)
    assert ok(srv, "/pg/pipeline?n=200") == list(range(200))
    assert ok(srv, "/pg/pipeline?n=50&atomic=1") == list(range(50))
    before = stats(srv)["queries"]
    ok(srv, "/pg/pipeline?n=10")
    assert stats(srv)["queries"] - before == 10


def test_a_failed_statement_is_500_with_its_sqlstate(pg, servers):
    srv = servers(pg)
    status, body, _ = fetch(srv, "/pg/pipeline?n=5&fail=3")
    assert status == 500, body
    assert "division by zero" in body["detail"] and "22012" in body["detail"], body
    assert "127.0.0.1:%d/hello_world" % pg.port in body["detail"], body
    # The connections go on serving.
    assert ok(srv, "/pg/pipeline?n=5") == list(range(5))


def test_a_leased_transaction_commits_or_is_rolled_back_on_release(pg, servers):
    srv = servers(pg, pool=1)
    ok(srv, "/pg/setup")
    v = int(time.time() * 1000) % 1000000000
    assert ok(srv, "/pg/tx?v=%d&commit=1" % v)["committed"] is True
    assert ok(srv, "/pg/count?v=%d" % v) == {"n": 1}
    assert ok(srv, "/pg/tx?v=%d&commit=0" % v)["committed"] is False
    # Released inside the transaction: rolled back, and the one connection
    # is clean for the next request.
    assert ok(srv, "/pg/count?v=%d" % v) == {"n": 1}
    assert pg.scalar("SELECT count(*) FROM pgprobe_tx WHERE v = %d" % v) == "1"


def test_a_query_past_its_statement_timeout_is_504_with_a_detail(pg, servers):
    # One connection, so every query below runs on the same session.
    srv = servers(pg, pool=1, statement_timeout=0.5)
    status, body, took = fetch(srv, "/pg/sleep?s=5")
    assert status == 504, body
    assert "statement timed out after 0.5 s (statement_timeout)" in body["detail"], body
    assert took < 3 * SCALE, took
    # A longer timeout for one query (a SET before it), then the pool's
    # default again for the next.
    assert ok(srv, "/pg/sleep?s=0.8&timeout=3") == {"slept": True}
    status, body, _ = fetch(srv, "/pg/sleep?s=5&timeout=0.3")
    assert status == 504 and "0.3 s" in body["detail"], body
    status, body, _ = fetch(srv, "/pg/sleep?s=0.8")
    assert status == 504 and "0.5 s" in body["detail"], body


# --------------------------------------------------------------------------
# Pipelining: several requests' statements in flight on one connection


def concurrently(srv, paths, timeout=T):
    """fetch() of every path at once, one thread each; the answers in the
    order of paths."""
    answers = [None] * len(paths)

    def one(i, path):
        answers[i] = fetch(srv, path, timeout)

    threads = [threading.Thread(target=one, args=(i, p), daemon=True)
               for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * timeout)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return answers


def hold_connection(srv, pg, seconds, tag):
    """Starts /pg/sleep on a thread and waits until it runs on the server;
    returns the thread and the list its answer goes to."""
    answer = []
    t = threading.Thread(target=lambda: answer.append(
        fetch(srv, "/pg/sleep?s=%g&tag=%s" % (seconds, tag))), daemon=True)
    t.start()
    wait_until(lambda: active(pg, tag), 5.0, "the query never ran")
    return t, answer


@pytest.mark.parametrize("pool,depth", [(1, 8), (2, 4)])
def test_many_requests_on_a_pipelined_pool_each_get_their_own_results(pg, servers, pool,
                                                                      depth):
    srv = servers(pg, pool=pool, pipeline_depth=depth)
    before = stats(srv)
    paths, expected, statements = [], [], 0
    for i in range(48):
        if i % 3 == 0:
            paths.append("/pg/param?a=%d&b=%d" % (i, 1000 * i))
            expected.append({"sum": 1001 * i, "a": str(i)})
            statements += 1
        elif i % 3 == 1:
            paths.append("/pg/prepared?id=%d" % i)
            expected.append({"id": i, "label": "row %d" % i})
            statements += 1
        else:
            n = 1 + i % 7
            paths.append("/pg/pipeline?n=%d%s" % (n, "&atomic=1" if i % 2 else ""))
            expected.append(list(range(n)))
            statements += n
    for _ in range(3):
        answers = concurrently(srv, paths)
        for path, want, (status, body, _) in zip(paths, expected, answers):
            assert (status, body) == (200, want), (path, status, body)
    after = stats(srv)
    assert after["queries"] - before["queries"] == 3 * statements
    assert after["errors"] == before["errors"]
    assert after["busy"] == 0 and after["waiting"] == 0 and after["open"] == pool


def test_requests_wait_on_the_connection_up_to_the_depth_then_in_the_queue(pg, servers):
    srv = servers(pg, pool=1, pipeline_depth=4)
    tag = "head_" + uuid.uuid4().hex[:8]
    holder, held = hold_connection(srv, pg, 1.5, tag)
    answers = []
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: answers.append(
            (i, fetch(srv, "/pg/param?a=%d&b=1" % i))), daemon=True)
        t.start()
        threads.append(t)
    # The sleep and 3 more in flight on the one connection, 2 queued.
    wait_until(lambda: stats(srv)["waiting"] == 2, 5.0, "the requests did not queue")
    s = stats(srv)
    assert s["busy"] == 1 and s["open"] == 1, s
    assert active(pg, tag)
    for t in threads + [holder]:
        t.join(3 * T)
    assert held[0][:2] == (200, {"slept": True}), held
    assert len(answers) == 5
    for i, (status, body, _) in answers:
        assert (status, body) == (200, {"sum": i + 1, "a": str(i)}), (i, status, body)
    assert stats(srv)["busy"] == 0


def test_a_failing_statement_does_not_fail_the_requests_pipelined_with_it(pg, servers):
    srv = servers(pg, pool=1, pipeline_depth=16)
    before = stats(srv)
    tag = "err_" + uuid.uuid4().hex[:8]
    # The connection is busy: what follows piles up behind the sleep, in
    # one pipeline, good requests between failing ones.
    holder, held = hold_connection(srv, pg, 0.5, tag)
    cases = [
        ("/pg/param?a=1&b=2", 200, {"sum": 3, "a": "1"}),
        ("/pg/pipeline?n=5&fail=2", 500, "22012"),
        ("/pg/prepared?id=4", 200, {"id": 4, "label": "row 4"}),
        ("/pg/pipeline?n=4&fail=3&atomic=1", 500, "22012"),
        ("/pg/pipeline?n=3", 200, [0, 1, 2]),
        ("/pg/error", 500, "22012"),
        ("/pg/pipeline?n=4&atomic=1", 200, [0, 1, 2, 3]),
        ("/pg/param?a=5&b=6", 200, {"sum": 11, "a": "5"}),
    ] * 2
    answers = concurrently(srv, [c[0] for c in cases])
    holder.join(3 * T)
    assert held[0][:2] == (200, {"slept": True}), held
    for (path, want_status, want), (status, body, _) in zip(cases, answers):
        assert status == want_status, (path, status, body)
        if want_status == 200:
            assert body == want, (path, body)
        else:
            assert want in body["detail"], (path, body)
    after = stats(srv)
    assert after["errors"] - before["errors"] == 6
    assert after["busy"] == 0 and after["waiting"] == 0
    # The session is clean: no transaction left open, the default timeout.
    assert ok(srv, "/pg/pipeline?n=2&atomic=1") == [0, 1]


def test_statement_timeouts_stay_per_query_on_a_pipelined_connection(pg, servers):
    srv = servers(pg, pool=1, pipeline_depth=8, statement_timeout=0.5)
    cases = [
        ("/pg/sleep?s=0.1", 200),
        ("/pg/sleep?s=0.8&timeout=3", 200),  # a SET: runs alone
        ("/pg/sleep?s=0.8", 504),
        ("/pg/sleep?s=0.1", 200),
        ("/pg/sleep?s=1&timeout=0.2", 504),
        ("/pg/sleep?s=0.6", 504),
        ("/pg/sleep?s=0.1&timeout=-1", 200),
    ]
    answers = concurrently(srv, [c[0] for c in cases], timeout=3 * T)
    for (path, want), (status, body, _) in zip(cases, answers):
        assert status == want, (path, status, body)
        if want == 504:
            limit = "0.2 s" if "timeout=0.2" in path else "0.5 s"
            assert limit in body["detail"], (path, body)
    status, body, _ = fetch(srv, "/pg/sleep?s=0.8")
    assert status == 504 and "0.5 s" in body["detail"], body


def test_a_disconnect_behind_another_request_does_not_cancel_that_request(pg, servers):
    srv = servers(pg, pool=1, pipeline_depth=4)
    fds = quiet_fds(srv)
    head = "head_" + uuid.uuid4().hex[:8]
    behind = "behind_" + uuid.uuid4().hex[:8]
    holder, held = hold_connection(srv, pg, 1.5, head)
    c = Conn.tcp(srv.port, T)
    c.send(get("/pg/sleep?s=30&tag=%s" % behind))
    # Sent behind the head on the one connection, not queued.
    wait_until(lambda: stats(srv)["queries"] >= 2, 5.0, "the second query was not sent")
    assert stats(srv)["waiting"] == 0
    c.close()
    time.sleep(0.3 * SCALE)
    # The head runs on, and ends on its own.
    assert active(pg, head)
    holder.join(3 * T)
    assert held[0][:2] == (200, {"slept": True}), held
    # The departed one reached the head and was cancelled then.
    wait_until(lambda: not active(pg, behind), 3.0, "the departed query still runs")
    assert ok(srv, "/pg/param?a=1&b=1") == {"sum": 2, "a": "1"}
    s = stats(srv)
    assert s["busy"] == 0 and s["errors"] == 0, s
    wait_fds(srv, fds)


def test_a_lost_connection_fails_every_request_in_flight_on_it(pg, servers):
    srv = servers(pg, pool=1, pipeline_depth=8)
    fds = quiet_fds(srv)
    tag = "lost_" + uuid.uuid4().hex[:8]
    holder, held = hold_connection(srv, pg, 30, tag)
    paths = ["/pg/param?a=%d&b=0" % i for i in range(5)]
    answers = []
    threads = [threading.Thread(target=lambda p=p: answers.append(fetch(srv, p)), daemon=True)
               for p in paths]
    for t in threads:
        t.start()
    wait_until(lambda: stats(srv)["queries"] >= 6, 5.0, "the queries were not sent")
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'evicorn'")
    for t in threads + [holder]:
        t.join(3 * T)
    for status, body, _ in answers + held:
        assert status == 503, (status, body)
        assert "127.0.0.1:%d/hello_world" % pg.port in body["detail"], body
    wait_open(srv, 1)
    assert ok(srv, "/pg/param?a=1&b=1") == {"sum": 2, "a": "1"}
    wait_fds(srv, fds)


def test_a_bad_pipeline_depth_refuses_to_load(pg):
    env = ["env", "DATABASE_URL=" + pg.url, "EVICORN_PG_PIPELINE_DEPTH=0"]
    srv = Server("--no-access-log", wrapper=env).start()
    try:
        mark = len(srv.stderr.snapshot())
        plugin_util.deploy(srv, plugin_util.plugin_path("pgprobe"), "pgprobe.so")
        assert srv.wait_for_log(r"EVICORN_PG_PIPELINE_DEPTH=0: expected a number of operations "
                                r"per connection, 1-1024", 10.0, start=mark), srv.output()
    finally:
        finish(srv)


# --------------------------------------------------------------------------
# Faults


def test_a_client_that_disconnects_has_its_query_cancelled_on_the_server(pg, servers):
    srv = servers(pg, pool=1)
    fds = quiet_fds(srv)
    tag = "gone_" + uuid.uuid4().hex[:8]
    c = Conn.tcp(srv.port, T)
    c.send(get("/pg/sleep?s=30&tag=%s" % tag))
    wait_until(lambda: active(pg, tag), 5.0, "the query never ran")
    c.close()
    wait_until(lambda: not active(pg, tag), 3.0, "the query still runs on the server")
    # The one connection was drained and serves again.
    assert ok(srv, "/pg/param?a=1&b=1") == {"sum": 2, "a": "1"}
    assert stats(srv)["busy"] == 0
    wait_fds(srv, fds)


def test_an_exhausted_pool_queues_a_bounded_number_then_answers_503(pg, servers):
    srv = servers(pg, pool=1, max_waiting=2, acquire_timeout=0.5)
    holder = threading.Thread(target=fetch, args=(srv, "/pg/hold?s=2"), daemon=True)
    holder.start()
    wait_until(lambda: stats(srv)["busy"] == 1, 5.0, "the connection was not leased")
    answers = []

    def one():
        answers.append(fetch(srv, "/pg/param?a=1&b=2"))

    waiting = [threading.Thread(target=one) for _ in range(2)]
    for t in waiting:
        t.start()
    wait_until(lambda: stats(srv)["waiting"] == 2, 5.0, "the requests did not queue")
    status, body, took = fetch(srv, "/pg/param?a=1&b=2")
    assert status == 503 and "too many requests waiting" in body["detail"], body
    assert took < 0.4 * SCALE, took
    for t in waiting:
        t.join(3 * T)
    assert len(answers) == 2
    for status, body, took in answers:
        assert status == 503, body
        assert "no connection to 127.0.0.1:%d/hello_world within 0.5 s" % pg.port \
            in body["detail"], body
        assert took < 2 * SCALE, took
    holder.join(3 * T)
    assert ok(srv, "/pg/param?a=1&b=2") == {"sum": 3, "a": "1"}


def test_postgres_stopped_answers_503_at_once_and_recovers(pg, servers):
    srv = servers(pg, pool=2, acquire_timeout=3)
    fds = quiet_fds(srv)
    mark = len(srv.stderr.snapshot())
    pg.stop()
    try:
        # Let the pool notice and retry a few times.
        time.sleep(1.5)
        for _ in range(5):
            status, body, took = fetch(srv, "/pg/param?a=1&b=2")
            assert status == 503, body
            assert "127.0.0.1:%d/hello_world" % pg.port in body["detail"], body
            assert took < 1.0 * SCALE, took
        time.sleep(1.0)
    finally:
        pg.start()
    # One line for the outage, not one per retry.
    assert log_count(srv, r"pgprobe.*(lost the connection|cannot connect) to", mark) == 1, \
        srv.output()
    back = time.monotonic()
    # The server is back (start returned once it accepts connections): the
    # pool serves within 2 s (its back-off is capped at 1 s).
    wait_until(lambda: fetch(srv, "/pg/param?a=1&b=2")[0] == 200, 2.0, "no recovery")
    assert time.monotonic() - back < 2.0 * SCALE
    assert srv.wait_for_log(r"pgprobe.*connected to 127\.0\.0\.1:%d/hello_world again" % pg.port,
                            5.0, start=mark), srv.output()
    wait_open(srv, 2)
    wait_fds(srv, fds)


def test_postgres_restarted_under_load(pg, servers):
    srv = servers(pg, pool=2, acquire_timeout=2)
    fds = quiet_fds(srv)
    with Load(srv, "/pg/prepared?id=3") as load:
        time.sleep(0.5)
        pg.restart()
        back = time.monotonic()
        time.sleep(2.5)
    answers = load.since(0)
    assert answers, "no requests ran"
    for _, status, body in answers:
        if status == 200:
            assert body == {"id": 3, "label": "row 3"}, body
        else:
            # In flight when the server went: a clear detail, no hang.
            assert status in (500, 503), (status, body)
            assert isinstance(body, dict) and body.get("detail"), body
    served = [t for t, status, _ in load.since(back) if status == 200]
    assert served and served[0] - back < 2.0 * SCALE, (served[:1], back)
    wait_open(srv, 2)
    assert stats(srv)["reconnects"] >= 2
    wait_fds(srv, fds)


def test_hot_reload_under_database_load_fails_nothing(pg, servers):
    srv = servers(pg, pool=2)
    fds = quiet_fds(srv)
    wait_until(lambda: sessions(pg) == 2, 5.0, "the pool did not open 2 sessions")
    with Load(srv, "/pg/prepared?id=5") as load:
        time.sleep(0.5)
        deploy(srv, "pgprobe_v2")
        time.sleep(1.0)
    bad = [r for r in load.results if r[1] != 200]
    assert not bad, bad[:5]
    assert len(load.results) > 20
    status, body, _ = fetch(srv, "/pg/version")
    assert (status, body) == (200, 2)
    # The old generation drained: its connections are closed.
    wait_until(lambda: sessions(pg) == 2, 5.0, "the old generation's connections stay open")
    wait_fds(srv, fds)


def test_idle_connections_closed_by_the_server_are_replaced_before_use(pg, servers):
    # Every hand-out of a connection idle over 1 ms is checked first.
    srv = servers(pg, pool=2, idle_check=0.001)
    fds = quiet_fds(srv)
    mark = len(srv.stderr.snapshot())
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'evicorn'")
    # Whether the pool noticed already (the idle read watch) or notices on
    # the check, no request fails.
    for _ in range(5):
        assert ok(srv, "/pg/param?a=1&b=2") == {"sum": 3, "a": "1"}
    wait_open(srv, 2)
    assert stats(srv)["reconnects"] == 2
    assert log_count(srv, r"pgprobe.*lost the connection to", mark) == 1, srv.output()
    wait_fds(srv, fds)


def test_a_server_that_never_answers_fails_the_connect_at_connect_timeout(servers):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nobody ever answers
    try:
        url = "postgresql://postgres@127.0.0.1:%d/hello_world" % silent.getsockname()[1]
        env = ["env", "DATABASE_URL=" + url, "EVICORN_PG_POOL_SIZE=1",
               "PGPROBE_CONNECT_TIMEOUT=0.5", "PGPROBE_ACQUIRE_TIMEOUT=5"]
        srv = Server("--no-access-log", wrapper=env).start()
        try:
            deploy(srv, "pgprobe")
            status, body, took = fetch(srv, "/pg/param?a=1&b=2")
            assert status == 503, body
            assert "timeout expired after 0.5 s (connect_timeout)" in body["detail"], body
            assert took < 2 * SCALE, took
        finally:
            finish(srv)
    finally:
        silent.close()


def test_a_pool_without_a_database_refuses_to_load():
    env = ["env", "-u", "DATABASE_URL", "-u", "PGHOST", "-u", "PGDATABASE", "-u", "PGPORT",
           "-u", "PGHOSTADDR", "-u", "PGSERVICE"]
    srv = Server("--no-access-log", wrapper=env).start()
    try:
        mark = len(srv.stderr.snapshot())
        plugin_util.deploy(srv, plugin_util.plugin_path("pgprobe"), "pgprobe.so")
        assert srv.wait_for_log(r"no database configured: set DATABASE_URL \(postgresql://user@host:port/dbname\) or PGHOST/PGDATABASE",
                                10.0, start=mark), srv.output()
    finally:
        finish(srv)


def test_a_conninfo_libpq_cannot_parse_refuses_to_load():
    srv = Server("--no-access-log",
                 wrapper=["env", "DATABASE_URL=host=127.0.0.1 port"]).start()
    try:
        mark = len(srv.stderr.snapshot())
        plugin_util.deploy(srv, plugin_util.plugin_path("pgprobe"), "pgprobe.so")
        assert srv.wait_for_log(r"invalid conninfo: missing \"=\" after \"port\"", 10.0,
                                start=mark), srv.output()
    finally:
        finish(srv)
