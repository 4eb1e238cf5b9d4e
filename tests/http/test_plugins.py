"""Plugins as operators see them: dropped, replaced, removed and refused
while the server keeps serving."""
import os
import shutil
import time

import pytest

from evicorn_harness import ConnClosed, KeepAliveLoad
import plugin_util
from plugin_util import VERSION_REQ, deploy, with_probe


def get_body(srv, path, timeout=5.0):
    with srv.connect(timeout=timeout) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
        r = c.read_response()
        return r.status, r.body


def maps_of(pid):
    with open("/proc/%d/maps" % pid) as f:
        return f.read()


def test_dropped_plugin_serves_its_routes(make_server):
    srv = with_probe(make_server())
    assert get_body(srv, "/probe/version") == (200, b"1")


def test_plugin_built_against_the_frozen_v1_header_loads(make_server):
    # probe.c includes tests/abi-v1/evicorn/abi.h, a frozen copy of ABI 1.0.
    srv = with_probe(make_server())
    assert srv.wait_for_log(r"plugin probe\.so: loaded probe 1 \(generation \d+, 17 routes\)")


def test_replace_by_rename_under_load_fails_no_request_and_serves_v2_within_a_second(make_server):
    srv = with_probe(make_server("--no-access-log"))
    with KeepAliveLoad(srv, VERSION_REQ) as h:
        time.sleep(0.3)
        t0 = time.monotonic()
        deploy(srv, plugin_util.plugin_path("probe_v2"), "probe.so")
        deadline = t0 + 1.0
        while time.monotonic() < deadline:
            with h.lock:
                if any(ts > t0 and body == b"2" for ts, body in h.bodies):
                    break
            time.sleep(0.01)
        time.sleep(0.3)
    assert not h.failures, h.failures[:5]
    first_v2 = min(ts for ts, body in h.bodies if body == b"2")
    assert first_v2 - t0 < 1.0
    assert all(body == b"2" for ts, body in h.bodies if ts > first_v2 + 0.1)


def test_request_in_flight_on_v1_finishes_on_v1_and_v1_is_unmapped_after(make_server):
    srv = with_probe(make_server())
    worker = srv.worker_pids()[0]
    status = srv.wait_for_log(r"plugin probe\.so: loaded")
    assert "probe.so" in maps_of(worker)
    slow = srv.connect()
    slow.send(b"GET /probe/delay/700 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.2)
    start = len(srv.stderr.snapshot())
    deploy(srv, plugin_util.plugin_path("probe_v2"), "probe.so")
    assert srv.wait_for_log(r"replaced probe 1 \(generation 0\) with probe 2", 5,
                            start=start), srv.output()
    assert get_body(srv, "/probe/version") == (200, b"2")
    # generation 0 is still mapped: a request runs on it
    assert "-g0-probe.so" in maps_of(worker)
    r = slow.read_response()
    slow.close()
    assert r.body == b"delay 1 700"
    assert srv.wait_for_log(r"plugin probe\.so: generation 0 unloaded", 3, start=start)
    assert "-g0-probe.so" not in maps_of(worker)
    assert "-g1-probe.so" in maps_of(worker)
    del status


def test_removed_plugin_takes_its_routes_away(make_server):
    srv = with_probe(make_server())
    os.unlink(os.path.join(srv.plugins, "probe.so"))
    assert srv.wait_for_log(r"plugin probe\.so: removed probe", 3)
    assert get_body(srv, "/probe/version") == (404, b'{"detail":"Not Found"}')


def test_drop_replace_remove_while_hammered_never_fails_another_plugin(make_server):
    srv = with_probe(make_server("--no-access-log"), name="stable.so")
    with KeepAliveLoad(srv, VERSION_REQ) as h:
        for i in range(5):
            deploy(srv, plugin_util.plugin_path("probe_conflict" if False else "probe_v2"), "stable.so")
            time.sleep(0.1)
            deploy(srv, plugin_util.plugin_path("probe"), "stable.so")
            time.sleep(0.1)
    assert not h.failures, h.failures[:5]
    assert len(h.bodies) > 50


REFUSALS = [
    ("probe_abi2", r"built for ABI 2\.0, this server speaks ABI 1\.\d+"),
    ("probe_startup_fails", r"startup failed: database unreachable"),
    ("probe_bad_pattern", r"invalid route pattern '/broken/\{id': unclosed '\{'"),
    ("probe_no_entry", r"no evicorn_plugin_entry symbol"),
]


@pytest.mark.parametrize("variant,reason", REFUSALS)
def test_bad_plugin_is_refused_with_one_line_and_the_old_version_keeps_serving(make_server,
                                                                                variant, reason):
    srv = with_probe(make_server())
    start = len(srv.stderr.snapshot())
    deploy(srv, plugin_util.plugin_path(variant), "probe.so")
    m = srv.wait_for_log(r"ERROR: +plugin .*/probe\.so refused: " + reason, 3, start=start)
    assert m, srv.output()
    assert get_body(srv, "/probe/version") == (200, b"1")


def write_file(srv, name, data):
    tmp = os.path.join(srv.plugins, "." + name)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(srv.plugins, name))


@pytest.mark.parametrize("name,data,reason", [
    ("empty.so", b"", "empty file"),
    ("text.so", b"hello, not a plugin\n", "not an ELF file"),
    ("short.so", b"\x7fELF\x02\x01", "truncated ELF header"),
])
def test_non_plugin_files_are_refused_with_the_reason(make_server, name, data, reason):
    srv = with_probe(make_server())
    write_file(srv, name, data)
    assert srv.wait_for_log(r"plugin .*/%s refused: %s" % (name.replace(".", r"\."), reason), 3)
    assert get_body(srv, "/probe/version") == (200, b"1")


def test_truncated_plugin_is_refused_before_dlopen(make_server):
    srv = with_probe(make_server())
    data = open(plugin_util.plugin_path("probe_v2"), "rb").read()
    write_file(srv, "half.so", data[: len(data) // 2])
    assert srv.wait_for_log(r"plugin .*/half\.so refused: truncated", 3), srv.output()
    assert get_body(srv, "/probe/version") == (200, b"1")


def test_route_conflicting_with_another_plugin_is_refused(make_server):
    srv = with_probe(make_server())
    deploy(srv, plugin_util.plugin_path("probe_v2"), "other.so")
    assert srv.wait_for_log(r"plugin .*/other\.so refused: route GET /probe/version conflicts", 3)
    assert get_body(srv, "/probe/version") == (200, b"1")


def test_naive_cp_over_a_loaded_plugin_does_not_crash_the_server(make_server):
    srv = with_probe(make_server())
    workers = srv.worker_pids()
    with KeepAliveLoad(srv, VERSION_REQ, conns=2) as h:
        for _ in range(3):
            shutil.copyfile(plugin_util.plugin_path("probe_v2"), os.path.join(srv.plugins, "probe.so"))
            time.sleep(0.2)
            shutil.copyfile(plugin_util.plugin_path("probe"), os.path.join(srv.plugins, "probe.so"))
            time.sleep(0.2)
    assert not h.failures, h.failures[:5]
    assert srv.worker_pids() == workers  # no worker died
    assert not srv.wait_for_log(r"died from signal", 0.1)


def test_every_worker_loads_the_same_plugins(make_server):
    srv = make_server("--workers", "2")
    srv.wait_workers(2)
    with_probe(srv)
    logs = [l for l in srv.stderr.snapshot() if "plugin probe.so: loaded" in l]
    assert len(logs) == 2


def test_crashing_handler_kills_only_its_worker_which_is_replaced_and_named(make_server):
    srv = with_probe(make_server("--workers", "2"))
    old = set(srv.wait_workers(2))
    with srv.connect() as c:
        c.send(b"GET /probe/crash HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises((ConnClosed, OSError)):
            c.read_response()
    m = srv.wait_for_log(r"worker \d \(pid (\d+)\) died from signal 11 \(Segmentation fault\) "
                         r"while running GET /probe/crash \(probe\.so\)", 3)
    assert m, srv.output()
    t0 = time.monotonic()
    new = set(srv.wait_workers(2, timeout=1.0))
    assert time.monotonic() - t0 < 1.0
    assert int(m.group(1)) not in new and len(new - old) == 1
    assert get_body(srv, "/probe/version")[0] in (200,)
