"""--health-path and --shutdown-delay: what a load balancer's health check
sees while an instance serves, and from the moment it is told to stop."""
import json
import signal
import time

from evicorn_harness import Conn, Response, get, run_cli, try_request
from plugin_util import with_probe

HEALTH = "/healthz"


def health(srv, timeout=2.0):
    r = try_request(srv.port, get(HEALTH), timeout=timeout)
    assert isinstance(r, Response), (r, srv.output())
    return r


def test_health_is_200_while_the_instance_serves(make_server):
    srv = make_server("--workers", "2", "--health-path", HEALTH, "--no-access-log")
    r = health(srv)
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert r.header("cache-control") == "no-store"
    assert json.loads(r.body) == {"status": "ok"}


def test_health_path_comes_before_plugin_routes(make_server):
    srv = with_probe(make_server("--health-path", "/probe/version", "--no-access-log"))
    r = try_request(srv.port, get("/probe/version"))
    assert r.status == 200 and json.loads(r.body) == {"status": "ok"}
    assert try_request(srv.port, get("/probe/scope/x")).status == 200


def test_health_fails_at_once_on_sigterm_while_the_delay_keeps_serving(make_server):
    srv = with_probe(make_server("--workers", "2", "--health-path", HEALTH, "--shutdown-delay",
                                 "2", "--no-access-log"))
    assert health(srv).status == 200
    keep = Conn.tcp(srv.port, timeout=10)  # a keep-alive client of the balancer
    assert keep.request(get("/probe/version")).status == 200
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    time.sleep(0.2)
    r = health(srv)
    assert r.status == 503, srv.output()
    assert json.loads(r.body) == {"status": "unavailable"}
    # Meanwhile everything else is served as usual, on new connections and
    # on open ones.
    deadline = t0 + 1.5
    while time.monotonic() < deadline:
        r = try_request(srv.port, get("/probe/version"))
        assert isinstance(r, Response) and r.status == 200, (r, srv.output())
        assert keep.request(get("/probe/version")).status == 200
        assert health(srv).status == 503
        time.sleep(0.1)
    assert srv.wait_for_log(r"shutting down in 2 s \(--shutdown-delay\)", 1), srv.output()
    # Then the usual graceful shutdown, and the process exits.
    assert srv.wait_exit(10) == 0, srv.output()
    assert time.monotonic() - t0 >= 1.9


def test_without_a_delay_sigterm_shuts_down_at_once(make_server):
    srv = make_server("--health-path", HEALTH, "--no-access-log")
    assert health(srv).status == 200
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0, srv.output()
    assert time.monotonic() - t0 < 1.5


def test_a_second_sigterm_ends_the_delay(make_server):
    srv = make_server("--health-path", HEALTH, "--shutdown-delay", "30", "--no-access-log")
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert health(srv).status == 503
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0, srv.output()
    assert time.monotonic() - t0 < 5


def test_health_path_must_be_absolute():
    r = run_cli("--health-path", "healthz")
    assert r.returncode != 0 and "--health-path" in r.stderr
