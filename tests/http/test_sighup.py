"""SIGHUP replaces the workers one at a time, and --limit-max-requests-jitter
spreads the workers' restarts.

A rolling restart starts each slot's new worker held, releases it once it
serves, and only then drains that slot's old worker and goes on with the
next slot: as many workers accept as --workers asks, throughout."""
import os
import re
import signal
import threading
import time

from evicorn_harness import KeepAliveLoad, children_of, get, pid_alive, time_scale
from plugin_util import VERSION_REQ, with_probe

SCALE = time_scale()


def keep_alive_clients(srv, conns, request=VERSION_REQ, body=b"1"):
    """Clients on keep-alive connections that, as HTTP client libraries do,
    send a request again on a new connection when a reused one was closed
    idle (KeepAliveLoad's retry_idle_close); anything else is a failure."""
    return KeepAliveLoad(srv, request, conns=conns, body=body, seconds=60, scale=SCALE,
                         retry_idle_close=True)


START_RE = re.compile(r"SIGHUP: starting worker (\d+)'s replacement \(pid (\d+)\)")
SERVES_RE = re.compile(r"SIGHUP: worker (\d+) \(pid (\d+)\) serves; the old one \(pid (\d+)\) "
                       r"drains")


class ProcSampler:
    """Samples the master's live children every few milliseconds."""

    def __init__(self, srv):
        self.srv = srv
        self.samples = []  # (time, frozenset of live pids)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + 60 * SCALE
        while not self.stop.is_set() and time.monotonic() < deadline:
            live = frozenset(p for p in children_of(self.srv.pid) if pid_alive(p))
            self.samples.append((time.monotonic(), live))
            time.sleep(0.003)

    def first_seen(self, pid):
        return next((t for t, live in self.samples if pid in live), None)

    def last_seen(self, pid):
        return next((t for t, live in reversed(self.samples) if pid in live), None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        return False


def roll_events(srv, start):
    """The master's rolling-restart lines after line `start`, in order:
    ("start", slot, pid) and ("serves", slot, new pid, old pid)."""
    events = []
    for line in srv.stderr.snapshot()[start:]:
        m = START_RE.search(line)
        if m:
            events.append(("start", int(m.group(1)), int(m.group(2))))
        m = SERVES_RE.search(line)
        if m:
            events.append(("serves", int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return events


def test_sighup_replaces_workers_one_at_a_time_under_load_with_no_failed_request(make_server):
    n = 3
    srv = with_probe(make_server("--workers", n, "--no-access-log"))
    old = set(srv.wait_workers(n))
    mark = len(srv.stderr.snapshot())
    with ProcSampler(srv) as sampler, \
            keep_alive_clients(srv, 6) as load:
        time.sleep(0.3 * SCALE)
        srv.signal(signal.SIGHUP)
        done = srv.wait_for_log(r"SIGHUP: all %d worker\(s\) replaced" % n, 20, start=mark)
        assert done, srv.output()
        time.sleep(0.3 * SCALE)
        during = len(load.successes)
    assert load.failures == [], load.failures[:5]
    assert during > 50, during

    events = roll_events(srv, mark)
    # Per slot in turn: its replacement starts, serves, and the slot's old
    # worker drains; the next slot's replacement starts only after that.
    assert [e[:2] for e in events] == [(k, s) for s in range(n) for k in ("start", "serves")], \
        events
    new = [e[2] for e in events if e[0] == "start"]
    assert [e[2] for e in events if e[0] == "serves"] == new
    drained = [e[3] for e in events if e[0] == "serves"]
    assert set(drained) == old and not (set(new) & old), (events, old)

    # The new workers appeared one after another, never together.
    born = [sampler.first_seen(p) for p in new]
    assert all(b is not None for b in born), (new, sampler.samples[-1:])
    assert born == sorted(born), born

    # Whatever the moment, N workers were there: old ones not yet told to
    # drain plus new ones; never fewer.
    for t, live in sampler.samples:
        assert len(live) >= n, (t, live)

    assert set(srv.wait_workers(n, timeout=10 * SCALE, exclude=old)) == set(new)
    deadline = time.monotonic() + 10 * SCALE
    while any(pid_alive(p) for p in old) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(pid_alive(p) for p in old), srv.output()


def test_a_single_worker_is_replaced_without_a_gap(make_server):
    srv = with_probe(make_server("--no-access-log"))
    (old,) = srv.wait_workers(1)
    mark = len(srv.stderr.snapshot())
    with keep_alive_clients(srv, 3) as load:
        time.sleep(0.2 * SCALE)
        srv.signal(signal.SIGHUP)
        assert srv.wait_for_log(r"SIGHUP: all 1 worker\(s\) replaced", 20, start=mark), \
            srv.output()
        time.sleep(0.3 * SCALE)
    assert load.failures == [], load.failures[:5]
    (new,) = srv.wait_workers(1, timeout=10 * SCALE, exclude={old})
    assert new != old


# Its lifespan startup takes a second while a file "slow" exists beside it,
# and fails while a file "fail" does.
APP = '''\
import asyncio
import os

HERE = os.path.dirname(__file__)

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.path.exists(os.path.join(HERE, "slow")):
                    await asyncio.sleep(1.0)
                if os.path.exists(os.path.join(os.path.dirname(__file__), "fail")):
                    await send({"type": "lifespan.startup.failed", "message": "told to fail"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def serve_app(make_server, folder, workers):
    """The app above with this many workers, once every one has started."""
    (folder / "main.py").write_text(APP)
    srv = make_server("main:app", "--app-dir", folder, "--workers", workers, "--no-access-log",
                      ready_timeout=30.0)
    old = set(srv.wait_workers(workers, timeout=20 * SCALE))
    deadline = time.monotonic() + 30 * SCALE
    while sum("Application startup complete" in line
              for line in srv.stderr.snapshot()) < workers:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.05)
    return srv, old


def test_a_second_sighup_during_a_roll_starts_it_again_from_worker_0(make_server, tmp_path):
    n = 2
    srv, old = serve_app(make_server, tmp_path, n)
    (tmp_path / "slow").write_text("")
    mark = len(srv.stderr.snapshot())
    with keep_alive_clients(srv, 4, request=get("/"), body=b"ok") as load:
        srv.signal(signal.SIGHUP)
        assert srv.wait_for_log(START_RE, 10, start=mark), srv.output()
        srv.signal(signal.SIGHUP)
        again = srv.wait_for_log(r"SIGHUP during a rolling restart: starting it again from "
                                 r"worker 0", 10, start=mark)
        assert again, srv.output()
        second = srv.stderr.snapshot().index(again.string)
        assert srv.wait_for_log(r"SIGHUP: all %d worker\(s\) replaced" % n, 30, start=second), \
            srv.output()
        time.sleep(0.2 * SCALE)
    assert load.failures == [], load.failures[:5]
    assert len(load.successes) > 20
    # Every worker serving now was started after the second SIGHUP.
    after = [e[2] for e in roll_events(srv, second) if e[0] == "serves"]
    assert len(after) == n
    assert set(srv.wait_workers(n, timeout=10 * SCALE, exclude=old)) == set(after)


def test_a_replacement_that_does_not_start_stops_the_roll_and_the_old_workers_keep_serving(
        make_server, tmp_path):
    srv, old = serve_app(make_server, tmp_path, 2)
    mark = len(srv.stderr.snapshot())
    (tmp_path / "fail").write_text("")
    srv.signal(signal.SIGHUP)
    stopped = srv.wait_for_log(r"SIGHUP: the new worker 0 \(pid \d+\) exited with status \d+ "
                               r"before it served; rolling restart stopped, the old workers keep "
                               r"serving", 20, start=mark)
    assert stopped, srv.output()
    time.sleep(0.5 * SCALE)
    assert sum("rolling restart stopped" in line
               for line in srv.stderr.snapshot()[mark:]) == 1, srv.output()
    assert set(srv.wait_workers(2)) == old
    with srv.connect() as c:
        r = c.request(get("/"))
    assert (r.status, r.body) == (200, b"ok")
    assert srv.proc.poll() is None

    # Fixed: the next SIGHUP replaces them all.
    os.unlink(tmp_path / "fail")
    mark = len(srv.stderr.snapshot())
    srv.signal(signal.SIGHUP)
    assert srv.wait_for_log(r"SIGHUP: all 2 worker\(s\) replaced", 30, start=mark), srv.output()
    assert not (set(srv.wait_workers(2, timeout=10 * SCALE, exclude=old)) & old)


# ---- --limit-max-requests-jitter ----------------------------------------------------------


def test_jitter_gives_each_worker_its_own_limit_within_max_plus_jitter(make_server):
    base, jitter, lifetimes = 3, 12, 6
    srv = make_server("--limit-max-requests", base, "--limit-max-requests-jitter", jitter,
                      "--no-access-log")
    limit_re = re.compile(r"Maximum request limit of (\d+) exceeded")
    counts, limits, sent = [], [], 0
    mark = 0
    deadline = time.monotonic() + 60 * SCALE
    while len(limits) < lifetimes:
        assert time.monotonic() < deadline, srv.output()
        with srv.connect(timeout=10 * SCALE) as c:
            r = c.request(get("/x"), timeout=10 * SCALE)
        assert r.status == 404
        sent += 1
        assert sent <= base + jitter, (sent, srv.output())
        # The worker logs its limit before the response leaves it.
        if srv.wait_for_log(limit_re, 0.05, start=mark):
            lines = srv.stderr.snapshot()
            i = next(i for i in range(mark, len(lines)) if limit_re.search(lines[i]))
            limits.append(int(limit_re.search(lines[i]).group(1)))
            counts.append(sent)
            sent = 0
            mark = i + 1
    assert all(base <= x <= base + jitter for x in limits), limits
    assert counts == limits, (counts, limits)
    # Six limits drawn from 13 values, all equal: about 1 chance in 370,000.
    assert len(set(limits)) > 1, limits
