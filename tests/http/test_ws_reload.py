"""Hot reload of a plugin with WebSocket connections open on it.

A connection keeps the plugin version it was accepted on: when that
version is replaced (or removed), its open connections go on answering with
the old code until --timeout-websocket-drain, then are closed with 1012
(Service Restart); new connections get the new version at once; the old
generation is unloaded once its last connection is gone. Nothing else fails
meanwhile.

wsprobe's /wsprobe/version (async) and /wsprobe/version_sync (sync) answer
each message MSG with "<version>:MSG"; GET /wsprobe/version answers the
version. wsprobe.so is version 1, wsprobe_v2.so version 2.
"""
import os
import re
import struct
import time

import pytest

import plugin_util
import ws_raw
from evicorn_harness import KeepAliveLoad, Server, time_scale
from ws_raw import OP_CLOSE, OP_TEXT

SCALE = time_scale()
T = 5.0 * SCALE
DRAIN = 2.0  # --timeout-websocket-drain
# The server checks the drain deadline once a second.
DRAIN_CHECK = 1.0
VERSION_REQ = b"GET /wsprobe/version HTTP/1.1\r\nHost: t\r\n\r\n"
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")


def deploy(srv, variant):
    """Installs a wsprobe variant as wsprobe.so; returns when it serves
    (and the monotonic time of the install)."""
    start = len(srv.stderr.snapshot())
    t = time.monotonic()
    plugin_util.deploy(srv, plugin_util.plugin_path(variant), "wsprobe.so")
    m = srv.wait_for_log(r"plugin wsprobe\.so: (loaded|replaced)", 10.0, start=start)
    assert m, srv.output()
    return t


@pytest.fixture
def srv():
    s = Server("--timeout-websocket-drain", DRAIN, "--no-access-log").start()
    try:
        deploy(s, "wsprobe")
        yield s
    finally:
        s.stop()
        m = SANITIZER_RE.search("\n".join(s.stderr.snapshot()))
        assert not m, s.output()


def open_version(srv, n):
    """n connections, alternately on the async and the sync route, each
    checked to answer with version 1."""
    conns = []
    for i in range(n):
        route = "/wsprobe/version" if i % 2 == 0 else "/wsprobe/version_sync"
        conns.append(ws_raw.connect(srv.port, route, timeout=T))
    ask_all(conns, "hello", b"1")
    return conns


def ask_all(conns, text, version):
    """Sends a message on every connection, then reads every answer: each
    must be "<version>:<text><i>"."""
    for i, ws in enumerate(conns):
        ws.send_text("%s%d" % (text, i))
    for i, ws in enumerate(conns):
        ws.sock.settimeout(T)
        assert ws.recv_message() == (OP_TEXT, b"%s:%s%d" % (version, text.encode(), i))


def expect_close(ws, code, timeout):
    ws.sock.settimeout(timeout)
    fin, rsv, op, payload = ws.recv_frame()
    assert (fin, rsv, op) == (True, 0, OP_CLOSE), (op, payload[:100])
    assert payload[:2] == struct.pack("!H", code), payload
    return payload[2:]


def answer_close(ws, code):
    """Answers the server's close; the server then closes the connection."""
    ws.close(code)
    ws.sock.settimeout(T)
    assert ws.sock.recv(65536) == b""
    ws.shutdown()


def count(srv, regex, start=0):
    return sum(1 for line in srv.stderr.snapshot()[start:] if re.search(regex, line))


def drained_with_1012(conns, t_retired):
    """Every connection gets 1012 (empty reason) at the drain deadline, not
    before; returns when all are closed."""
    arrivals = []
    deadline = DRAIN + DRAIN_CHECK + T
    for ws in conns:
        left = max(0.1, t_retired + deadline - time.monotonic())
        assert expect_close(ws, 1012, left) == b""
        arrivals.append(time.monotonic() - t_retired)
    for ws in conns:
        answer_close(ws, 1012)
    assert min(arrivals) >= DRAIN - 0.05, arrivals
    assert max(arrivals) <= deadline, arrivals
    return arrivals


def test_open_connections_keep_v1_until_the_drain_then_1012_and_v1_is_unloaded(srv):
    old = open_version(srv, 100)
    with KeepAliveLoad(srv, VERSION_REQ, conns=2, seconds=60, scale=SCALE) as load:
        time.sleep(0.2)
        start = len(srv.stderr.snapshot())
        t_replace = deploy(srv, "wsprobe_v2")
        assert srv.wait_for_log(r"plugin wsprobe\.so: replaced wsprobe 1 \(generation 0\) with "
                                r"wsprobe 2 \(generation 1", T, start=start), srv.output()
        # New connections get version 2 at once, on both kinds of route.
        new = [ws_raw.connect(srv.port, "/wsprobe/version", timeout=T),
               ws_raw.connect(srv.port, "/wsprobe/version_sync", timeout=T)]
        ask_all(new, "new", b"2")
        # Every open connection still runs version 1.
        ask_all(old, "again", b"1")
        assert time.monotonic() - t_replace < DRAIN, "too slow to check before the drain"
        assert count(srv, r"generation 0 unloaded", start) == 0, srv.output()
        # At the deadline, each old connection is closed with 1012.
        drained_with_1012(old, t_replace)
        assert srv.wait_for_log(r"plugin wsprobe\.so: generation 0 unloaded", T,
                                start=start), srv.output()
        assert count(srv, r"WebSocket \d+ closed with 1012 after the plugin was replaced",
                     start) == 100, srv.output()
        # The new connections were not touched, and still run version 2.
        ask_all(new, "still", b"2")
        time.sleep(0.2)
    assert not load.failures, load.failures[:5]
    bodies = {b for _, b in load.bodies}
    assert bodies == {b"1", b"2"}, bodies
    for ws in new:
        ws.close(1000)
        assert expect_close(ws, 1000, T) == b""
        ws.shutdown()
    assert srv.proc.poll() is None


def test_removed_plugin_keeps_its_connections_until_the_drain(srv):
    old = open_version(srv, 10)
    start = len(srv.stderr.snapshot())
    t_removed = time.monotonic()
    os.unlink(os.path.join(srv.plugins, "wsprobe.so"))
    assert srv.wait_for_log(r"plugin wsprobe\.so: removed wsprobe", T, start=start), srv.output()
    # The routes are gone for newcomers ...
    with srv.connect() as c:
        assert c.request(VERSION_REQ).status == 404
    with pytest.raises(ws_raw.HandshakeRefused) as e:
        ws_raw.connect(srv.port, "/wsprobe/version", timeout=T)
    assert e.value.status == 403
    # ... and stay for the open connections, until the deadline.
    ask_all(old, "still", b"1")
    assert time.monotonic() - t_removed < DRAIN, "too slow to check before the drain"
    assert count(srv, r"generation 0 unloaded", start) == 0
    drained_with_1012(old, t_removed)
    assert srv.wait_for_log(r"plugin wsprobe\.so: generation 0 unloaded", T,
                            start=start), srv.output()


def test_a_generation_whose_connections_all_closed_is_unloaded_before_the_drain(srv):
    old = open_version(srv, 10)
    start = len(srv.stderr.snapshot())
    t_replace = deploy(srv, "wsprobe_v2")
    ask_all(old, "x", b"1")
    for ws in old:
        ws.close(1000)
        assert expect_close(ws, 1000, T) == b""
        ws.shutdown()
    assert srv.wait_for_log(r"plugin wsprobe\.so: generation 0 unloaded", T,
                            start=start), srv.output()
    if time.monotonic() - t_replace < DRAIN:
        assert count(srv, r"closed with 1012", start) == 0, srv.output()


def test_each_replaced_generation_drains_from_its_own_replacement(srv):
    gen0 = open_version(srv, 6)
    t1 = deploy(srv, "wsprobe_v2")
    gen1 = [ws_raw.connect(srv.port, "/wsprobe/version", timeout=T),
            ws_raw.connect(srv.port, "/wsprobe/version_sync", timeout=T)]
    ask_all(gen1, "g1-", b"2")
    time.sleep(1.0)
    start = len(srv.stderr.snapshot())
    t2 = deploy(srv, "wsprobe")
    assert srv.wait_for_log(r"replaced wsprobe 2 \(generation 1\) with wsprobe 1 "
                            r"\(generation 2", T, start=start), srv.output()
    gen2 = [ws_raw.connect(srv.port, "/wsprobe/version", timeout=T)]
    ask_all(gen2, "g2-", b"1")
    ask_all(gen0, "g0-", b"1")
    ask_all(gen1, "g1-", b"2")
    drained_with_1012(gen0, t1)
    # Generation 1 was replaced later: it is still open now.
    if time.monotonic() - t2 < DRAIN - 0.2:
        ask_all(gen1, "later", b"2")
    drained_with_1012(gen1, t2)
    assert srv.wait_for_log(r"generation 1 unloaded", T, start=start), srv.output()
    ask_all(gen2, "last", b"1")
    for ws in gen2:
        ws.close(1000)
        expect_close(ws, 1000, T)
        ws.shutdown()


def test_a_sync_handler_busy_at_the_deadline_gets_1012_on_time_and_the_unload_waits(srv):
    ws = ws_raw.connect(srv.port, "/wsprobe/echo_sync", timeout=T)
    start = len(srv.stderr.snapshot())
    ws.send_text("sleep:5000")
    t_sent = time.monotonic()
    time.sleep(0.1)
    t_replace = deploy(srv, "wsprobe_v2")
    # The close does not wait for the handler ...
    drained_with_1012([ws], t_replace)
    assert time.monotonic() - t_sent < 4.9, "too slow to tell"
    # ... but the old code stays mapped until the handler has returned.
    assert count(srv, r"generation 0 unloaded", start) == 0, srv.output()
    assert srv.wait_for_log(r"plugin wsprobe\.so: generation 0 unloaded", T,
                            start=start), srv.output()
    assert time.monotonic() - t_sent >= 4.9
