"""The ABI's watches (1.3): an async handler continues when a file
descriptor it owns is ready or a timer fires; a watch is bound to a request
(cancelled with its callback run when the client leaves) or to the plugin
version (pools, back-off timers: it does not keep the version from draining,
nor a stopping worker alive; what its shutdown leaves is logged and
stopped).

watchprobe (tests/plugins/watchprobe) exercises each of these; its
/watch/stats reports counters, its version and the worker's open fds.
"""
import json
import re
import threading
import time

import pytest

import plugin_util
from evicorn_harness import Conn, KeepAliveLoad, Server, get, time_scale

SCALE = time_scale()
T = 5.0 * SCALE
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")

EPERM, EINVAL = -1, -22


def deploy(srv, variant, name="watchprobe.so"):
    start = len(srv.stderr.snapshot())
    plugin_util.deploy(srv, plugin_util.plugin_path(variant), name)
    assert srv.wait_for_log(r"plugin %s: (loaded|replaced)" % re.escape(name), 10.0,
                            start=start), srv.output()


@pytest.fixture
def srv():
    s = Server("--no-access-log").start()
    try:
        deploy(s, "watchprobe")
        yield s
    finally:
        s.stop()
        m = SANITIZER_RE.search("\n".join(s.stderr.snapshot()))
        assert not m, s.output()


def get_json(srv, path):
    with srv.connect(timeout=T) as c:
        r = c.request(get(path), timeout=T)
    assert r.status == 200, r
    return json.loads(r.body)


def stats(srv):
    return get_json(srv, "/watch/stats")


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def test_timer_watch_fires_once_after_its_timeout(srv):
    r = get_json(srv, "/watch/timer?s=0.15")
    assert r["events"] == 4  # EVICORN_TIMEOUT
    assert r["elapsed"] >= 0.14


def test_fd_watch_continues_when_the_fd_is_readable(srv):
    before = stats(srv)["plugin_fires"]
    r = get_json(srv, "/watch/pipe?ms=50")
    assert r == {"read": "ping", "events": 1}  # EVICORN_READABLE
    # The write came from a plugin-level timer.
    assert stats(srv)["plugin_fires"] == before + 1


def test_many_concurrent_watches_and_no_fd_left(srv):
    base = stats(srv)["fds"]
    results, errors = [], []

    def one():
        try:
            results.append(get_json(srv, "/watch/pipe?ms=30"))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * T)
    assert not errors, errors
    assert len(results) == 40 and all(r["read"] == "ping" for r in results)
    assert wait_for(lambda: stats(srv)["fds"] == base, T), (stats(srv), base)


def test_client_leaving_cancels_a_request_watch_with_its_callback(srv):
    base = stats(srv)
    c = srv.connect(timeout=T)
    c.send(get("/watch/hang"))
    time.sleep(0.3)
    assert stats(srv)["cancelled"] == base["cancelled"]  # still waiting
    c.close()
    s = wait_for(lambda: stats(srv)["cancelled"] == base["cancelled"] + 1 and stats(srv), T)
    assert s, stats(srv)
    assert wait_for(lambda: stats(srv)["fds"] == base["fds"], T), (stats(srv), base)


def test_a_callback_may_cancel_its_own_watch(srv):
    # Rearmed then cancelled inside its callback: it never runs again.
    assert get_json(srv, "/watch/self_cancel") == {"first_runs": 1}


def test_cancelling_a_watch_whose_timer_is_already_due(srv):
    # Both timers expire in one loop iteration: the first callback cancels
    # the second while it is pending; it must never run (ASan would see a
    # use after free, a release build a crash or a second response).
    for _ in range(20):
        assert get_json(srv, "/watch/cancel_due") == {"fired": 1}


def test_keep_alive_timeout_after_a_response_whose_end_added_no_bytes():
    """A response whose body went out before its end was said leaves no
    output to flush when it ends; the idle connection must still get its
    keep-alive timeout (it once stayed open for good)."""
    s = Server("--no-access-log", "--timeout-keep-alive", "1").start()
    try:
        deploy(s, "watchprobe")
        with s.connect(timeout=T) as c:
            r = c.request(get("/watch/late_end"), timeout=T)
            assert (r.status, r.body) == (200, b"hello")
            t = time.monotonic()
            c.assert_closed(timeout=3 * SCALE)
            assert time.monotonic() - t < 2.5 * SCALE
    finally:
        s.stop()


def test_bad_calls_are_refused(srv):
    assert get_json(srv, "/watch/errors") == {
        "created": 0, "fd_events_on_timer": EINVAL, "bad_events": EINVAL, "no_fn": EINVAL,
        "bad_fd": EINVAL}


def test_watches_are_loop_thread_only(srv):
    assert get_json(srv, "/watch/errors_sync") == {"req_bound": EPERM, "plugin_bound": EPERM}


def test_plugin_timer_made_in_startup_keeps_ticking(srv):
    t0 = stats(srv)["ticks"]
    assert wait_for(lambda: stats(srv)["ticks"] >= t0 + 5, T), stats(srv)


def test_plugin_watches_do_not_hold_a_stopping_worker(srv):
    t = time.monotonic()
    srv.stop()
    assert time.monotonic() - t < 3 * SCALE, srv.output()


def test_reload_under_load_fails_nothing_and_the_old_version_stops_its_watches(srv):
    with KeepAliveLoad(srv, get("/watch/pipe?ms=5"), conns=4, seconds=30, scale=SCALE) as load:
        time.sleep(0.3)
        deploy(srv, "watchprobe_v2")
        assert srv.wait_for_log(r"plugin watchprobe\.so: generation \d+ unloaded", T), \
            srv.output()
        time.sleep(0.3)
    assert not load.failures, load.failures[:3]
    assert len(load.successes) > 20
    s = stats(srv)
    assert s["version"] == "2"
    assert "left" not in srv.output().split("replaced")[-1]
    t0 = s["ticks"]
    time.sleep(0.2)
    assert stats(srv)["ticks"] > t0


def test_watches_left_at_unload_are_logged_and_stopped(srv):
    deploy(srv, "watchprobe_leak")
    deploy(srv, "watchprobe_v2")
    m = srv.wait_for_log(r"plugin watchprobe left 1 watch\(es\) at unload \(fd -1\)", T)
    assert m, srv.output()
    # The leaked timer was stopped before its code was unmapped: the worker
    # lives on and serves.
    time.sleep(0.2)
    assert stats(srv)["version"] == "2"
    assert srv.worker_pids() and not re.search(r"worker \d+ (died|exited)", srv.output())
