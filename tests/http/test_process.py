"""Master/worker processes: worker count, signals, restarts, reloads."""
import os
import signal
import time

from evicorn_harness import (Response, assert_not_found, get, pid_alive, try_request,
                             wait_serving)


def test_running_line_names_workers_and_pid(make_server):
    srv = make_server("--workers", "2")
    m = srv.wait_for_log(r"^INFO:     evicorn running on http://127\.0\.0\.1:(\d+) "
                         r"\(workers: (\d+), pid (\d+)\)$", 1.0)
    assert m, srv.output()
    assert int(m.group(1)) == srv.port
    assert int(m.group(2)) == 2
    assert int(m.group(3)) == srv.pid


def test_two_workers_are_children_and_serve(make_server):
    srv = make_server("--workers", "2")
    kids = srv.wait_workers(2)
    assert srv.pid not in kids
    for pid in kids:
        with open("/proc/%d/stat" % pid) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        assert ppid == srv.pid
    for i in range(10):
        r = try_request(srv.port)
        assert isinstance(r, Response), r
        assert_not_found(r)


def test_sigterm_exits_zero_and_closes_idle_keepalive(make_server):
    srv = make_server("--timeout-keep-alive", "30")
    with srv.connect() as c:
        assert_not_found(c.request(get("/")))
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        # The idle connection is closed at once, not after 30 s.
        c.assert_closed(2.0)
        assert time.monotonic() - t0 < 2.0
    assert srv.wait_exit(5) == 0, srv.output()
    assert time.monotonic() - t0 < 5.0


def test_sigint_exits_zero(make_server):
    srv = make_server()
    wait_serving(srv.port)
    srv.signal(signal.SIGINT)
    assert srv.wait_exit(5) == 0, srv.output()


def test_sigterm_stops_workers(make_server):
    srv = make_server("--workers", "2")
    kids = srv.wait_workers(2)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(5) == 0, srv.output()
    for pid in kids:
        assert not pid_alive(pid), pid


def test_killed_worker_is_replaced(make_server):
    srv = make_server()
    (old,) = srv.wait_workers(1)
    wait_serving(srv.port)
    mark = len(srv.stderr.snapshot())
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    m = srv.wait_for_log(r"worker (\d+) \(pid (\d+)\) died from signal 9\b", 3.0, start=mark)
    assert m, srv.output()
    assert int(m.group(1)) == 0
    assert int(m.group(2)) == old
    (new,) = srv.wait_workers(1, timeout=1.0, exclude={old})
    assert new != old
    r = wait_serving(srv.port, timeout=1.0)
    assert_not_found(r)
    assert time.monotonic() - t0 < 1.5


def test_sighup_replaces_workers_without_failures(make_server):
    srv = make_server("--workers", "2")
    old = set(srv.wait_workers(2))
    wait_serving(srv.port)
    failures, ok = [], 0
    t_end = time.monotonic() + 2.0
    hup_at = time.monotonic() + 0.5
    hupped = False
    while time.monotonic() < t_end:
        if not hupped and time.monotonic() >= hup_at:
            srv.signal(signal.SIGHUP)
            hupped = True
        r = try_request(srv.port, timeout=2.0)
        if isinstance(r, Response) and r.status == 404 and r.body == b'{"detail":"Not Found"}':
            ok += 1
        else:
            failures.append(r)
    assert failures == [], "%d ok, failures: %r" % (ok, failures[:5])
    assert ok > 20
    new = set(srv.wait_workers(2, timeout=5.0, exclude=old))
    assert not (new & old)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in old), (old, srv.output())
    assert_not_found(wait_serving(srv.port))


def test_limit_max_requests_replaces_worker(make_server):
    srv = make_server("--limit-max-requests", "5")
    (first,) = srv.wait_workers(1)
    for i in range(5):
        with srv.connect() as c:
            assert_not_found(c.request(get("/m%d" % i)))
    m = srv.wait_for_log(r"Maximum request limit of 5 exceeded", 3.0)
    assert m, srv.output()
    # The 6th and later requests are served by a new worker.
    for i in range(5, 8):
        assert_not_found(wait_serving(srv.port, timeout=3.0))
    deadline = time.monotonic() + 3
    while pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(first)
    (second,) = srv.wait_workers(1, exclude={first})
    assert second != first
    assert srv.wait_for_log(r"worker 0 \(pid %d\) exited; starting a new one" % first, 2.0), \
        srv.output()


def test_limit_max_requests_keepalive_connection_closed(make_server):
    # After the 5th response on a keep-alive connection the worker drains:
    # the idle connection is closed at once, not after the keep-alive timeout.
    srv = make_server("--limit-max-requests", "5", "--timeout-keep-alive", "30")
    with srv.connect() as c:
        for i in range(5):
            assert_not_found(c.request(get("/k%d" % i)))
        c.assert_closed(3.0)
    assert_not_found(wait_serving(srv.port, timeout=3.0))
