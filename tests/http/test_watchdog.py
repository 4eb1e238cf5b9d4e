"""The watchdog: plugin code that holds a worker's event loop is named in
the log, a worker it will not let go of is replaced, and a plugin whose
startup hangs is refused while everything else serves.

Timings are loose on purpose (a shared, noisy machine): the watchdog samples
every 100 ms, so the tests only check that things happen within generous
windows, never how fast."""
import json
import os
import re
import shutil
import tempfile
import time

from evicorn_harness import Response, get, try_request
import plugin_util
from plugin_util import deploy, with_probe

BLOCK_FOREVER = "/probe/block/600000"  # ten minutes: longer than any test
WARNING_RE = (r"WARNING: +async handler GET /probe/block/\{ms:int\} \(probe\.so\) has blocked "
              r"the event loop for 1\.\d s")


def get_body(srv, path, timeout=5.0):
    r = try_request(srv.port, get(path), timeout=timeout)
    assert isinstance(r, Response), "GET %s failed: %r\n%s" % (path, r, srv.output())
    return r.status, r.body


def lines_matching(srv, regex, start=0):
    rx = re.compile(regex)
    return [line for line in srv.stderr.snapshot()[start:] if rx.search(line)]


def wait_pid_serves(srv, pid, timeout=10.0):
    """Asks the status page on fresh connections until worker `pid` answers."""
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        r = try_request(srv.port, get("/_status"), timeout=2.0)
        if isinstance(r, Response) and r.status == 200:
            who = json.loads(r.body)["pid"]
            seen.add(who)
            if who == pid:
                return
        time.sleep(0.02)
    raise AssertionError("worker %d never answered (answers came from %r)\n%s"
                         % (pid, sorted(seen), srv.output()))


def plugins_folder(*files):
    """A plugins folder holding (variant, name) pairs before the server starts."""
    d = tempfile.mkdtemp(prefix="evicorn-watchdog-")
    for variant, name in files:
        shutil.copyfile(plugin_util.plugin_path(variant), os.path.join(d, name))
    return d


def test_blocking_handler_is_named_after_a_second_and_its_worker_replaced_at_the_timeout(
        make_server):
    srv = with_probe(make_server("--workers", "2", "--timeout-worker", "3", "--status-path",
                                 "/_status", "--no-access-log"))
    before = srv.wait_workers(2)
    mark = len(srv.stderr.snapshot())
    blocker = srv.connect(timeout=30)
    blocker.send(get(BLOCK_FOREVER))

    assert srv.wait_for_log(WARNING_RE + r"; the worker is stopped at 3 s \(--timeout-worker\)",
                            10, start=mark), srv.output()
    # Meanwhile the other worker serves (the blocked one accepts nothing).
    if not lines_matching(srv, r"stopping worker", mark):
        for _ in range(3):
            assert get_body(srv, "/probe/version", timeout=3) == (200, b"1")

    assert srv.wait_for_log(
        r"ERROR: +async handler GET /probe/block/\{ms:int\} \(probe\.so\) has blocked the event "
        r"loop for 3 s \(--timeout-worker\); stopping worker \d", 15, start=mark), srv.output()
    m = srv.wait_for_log(
        r"ERROR: +worker (\d) \(pid (\d+)\) was stopped: its event loop was blocked for 3 s in "
        r"async handler GET /probe/block/\{ms:int\} \(probe\.so\); starting a new one", 10,
        start=mark)
    assert m, srv.output()
    stopped = int(m.group(2))
    assert stopped in before
    # Its connection is closed without an answer.
    assert blocker.read_until_close(5) == b""
    blocker.close()
    # A replacement takes the slot, loads the plugins and serves.
    after = srv.wait_workers(2, timeout=10)
    assert stopped not in after
    replacement = (set(after) - set(before)).pop()
    wait_pid_serves(srv, replacement)
    assert get_body(srv, "/probe/version") == (200, b"1")
    assert len(lines_matching(srv, r"has blocked the event loop for 1\.\d s", mark)) == 1


def test_handler_blocking_for_less_than_a_second_is_not_reported_by_the_watchdog(make_server):
    srv = with_probe(make_server("--timeout-worker", "2"))
    worker = srv.wait_workers(1)
    mark = len(srv.stderr.snapshot())
    assert get_body(srv, "/probe/block/300") == (200, b"blocked")
    # The after-the-fact warning names it; the watchdog says nothing.
    assert srv.wait_for_log(r"GET /probe/block/\{ms:int\} \(probe\.so\) held the event loop for "
                            r"\d+ ms", 5, start=mark), srv.output()
    time.sleep(1.5)
    assert not lines_matching(srv, r"has blocked the event loop|was stopped", mark), srv.output()
    assert srv.wait_workers(1) == worker


def test_timeout_worker_zero_warns_but_never_stops_the_worker(make_server):
    srv = with_probe(make_server("--timeout-worker", "0"))
    worker = srv.wait_workers(1)
    mark = len(srv.stderr.snapshot())
    assert get_body(srv, "/probe/block/1600", timeout=10) == (200, b"blocked")
    assert srv.wait_for_log(WARNING_RE + r"$", 3, start=mark), srv.output()
    assert not lines_matching(srv, r"was stopped", mark), srv.output()
    assert srv.wait_workers(1) == worker


def test_plugin_whose_startup_hangs_at_server_start_is_refused_and_the_rest_serves(make_server):
    folder = plugins_folder(("probe", "probe.so"), ("probe_other_hangs", "other.so"))
    try:
        srv = make_server("--plugins", folder, "--timeout-startup", "1", "--workers", "1")
        assert srv.wait_for_log(r"ERROR: +plugin other \(other\.so\): startup did not finish "
                                r"within 1 s; refused", 10), srv.output()
        assert srv.wait_for_log(r"ERROR: +worker 0 \(pid \d+\) was stopped: plugin other "
                                r"\(other\.so\): startup did not finish within 1 s", 10)
        refused = srv.wait_for_log(r"ERROR: +plugin \S*/other\.so refused: its startup hung in "
                                   r"an earlier worker \(timeout 1 s\); replace the file to "
                                   r"retry", 10)
        assert refused, srv.output()
        start = srv.stderr.snapshot().index(refused.string)
        if "probe.so: loaded" not in "\n".join(srv.stderr.snapshot()[start:]):
            assert srv.wait_for_log(r"plugin probe\.so: loaded", 5, start=start), srv.output()
        assert get_body(srv, "/probe/version") == (200, b"1")
        assert get_body(srv, "/other/version")[0] == 404
        # No restart loop: the replacement stays up.
        time.sleep(1.5)
        assert len(lines_matching(srv, r"startup did not finish")) == 2  # worker + master
        assert not lines_matching(srv, r"keeps failing")
        assert get_body(srv, "/probe/version") == (200, b"1")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_hanging_plugin_dropped_into_a_running_server_is_refused_until_replaced(make_server):
    srv = with_probe(make_server("--timeout-startup", "1", "--workers", "2", "--no-access-log"))
    before = srv.wait_workers(2)
    mark = len(srv.stderr.snapshot())
    deploy(srv, plugin_util.plugin_path("probe_other_hangs"), "other.so")

    assert srv.wait_for_log(r"ERROR: +plugin other \(other\.so\): startup did not finish within "
                            r"1 s; refused", 10, start=mark), srv.output()
    assert srv.wait_for_log(r"worker \d \(pid \d+\) was stopped: plugin other \(other\.so\): "
                            r"startup did not finish within 1 s", 10, start=mark), srv.output()
    assert srv.wait_for_log(r"plugin \S*/other\.so refused: its startup hung in an earlier "
                            r"worker \(timeout 1 s\); replace the file to retry", 10,
                            start=mark), srv.output()
    # The workers that tried it were replaced (each worker loads it, so
    # usually both); the replacements serve the other plugin.
    stopped = len(lines_matching(srv, r"was stopped: plugin other", mark))
    assert 1 <= stopped <= 2
    assert len(set(srv.wait_workers(2, timeout=10)) - set(before)) >= stopped
    deadline = time.monotonic() + 5
    while len(lines_matching(srv, r"plugin probe\.so: loaded", mark)) < stopped:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.05)
    for _ in range(4):
        assert get_body(srv, "/probe/version") == (200, b"1")
    assert get_body(srv, "/other/version")[0] == 404

    # A new file under the same name lifts the quarantine.
    with_probe(srv, "probe_other", "other.so")
    for _ in range(4):
        assert get_body(srv, "/other/version") == (200, b"other")
    assert get_body(srv, "/probe/version") == (200, b"1")
