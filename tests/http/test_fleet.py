"""A fleet: three evicorn instances, each on its own host (network
namespace), behind nginx and behind HAProxy (docs/deploy/), with a client on
a fourth host sending keep-alive load through the balancer for the whole of
every scenario (fleet_harness.py).

What a user relies on, under load: a plugin rolled out instance by instance
with scripts/deploy-plugin, and the instances restarted one by one, cost no
request; an instance dying costs at most the requests it had in flight, the
balancer routes around it and it gets traffic again once restarted; and the
instances' metrics add up to what the client sent.
"""
import os
import shutil
import signal
import subprocess
import time

import pytest

import fleet_harness as fh
from evicorn_harness import time_scale

REASON = fh.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

TEST_PLUGINS = os.environ.get("EVICORN_TEST_PLUGINS") or os.path.join(
    fh.ROOT, "build", "test-plugins")

# Client connections: also the bound on the requests in flight at any moment.
CONNS = 6


@pytest.fixture(scope="module")
def fleet():
    f = fh.Fleet(TEST_PLUGINS)
    try:
        yield f.start()
    finally:
        f.close()


@pytest.fixture(params=["nginx", "haproxy"])
def balancer(request, fleet):
    if shutil.which(request.param) is None:
        pytest.skip("%s is not installed (scripts/install-deps)" % request.param)
    fleet.reset()
    b = fleet.start_balancer(request.param)
    try:
        yield b
    finally:
        fleet.stop_balancer()


def wait_served_by(load, name, since, timeout=10.0):
    """Until a response through the balancer came from instance `name`."""
    deadline = time.monotonic() + timeout * time_scale()
    while not any(body.endswith(" on " + name) for body in load.since(since)):
        assert time.monotonic() < deadline, "%s got no traffic within %.0f s: %s" % (
            name, timeout, load.summary())
        time.sleep(0.05)


def instances_of(bodies):
    return {body.rsplit(" on ", 1)[1] for body in bodies}


def test_rolling_plugin_deploy_fails_no_request(fleet, balancer):
    with fh.LoadGen(fleet.nets, conns=CONNS) as load:
        load.wait_successes(200)
        deploy = subprocess.run(fleet.deploy_command(fleet.v2, "fleetprobe v2"),
                                capture_output=True, text=True, timeout=120)
        assert deploy.returncode == 0, deploy.stderr
        done = time.monotonic()
        load.wait_successes(300)
    assert load.failed == 0, load.summary()
    seen = set(load.ok)
    assert {"fleetprobe v1 on i%d" % k for k in range(3)} <= seen, load.summary()
    after = load.since(done)
    assert instances_of(after) == {"i0", "i1", "i2"}, load.summary()
    assert all(b.startswith("fleetprobe v2 ") for b in after), after
    # Every instance (both workers) serves v2 when asked directly.
    for inst in fleet.instances:
        for _ in range(6):
            assert inst.get(fh.ROUTE) == (200, "fleetprobe v2 on " + inst.name)


def test_rolling_restart_fails_no_request(fleet, balancer):
    with fh.LoadGen(fleet.nets, conns=CONNS) as load:
        load.wait_successes(200)
        for inst in fleet.instances:
            inst.server.signal(signal.SIGTERM)
            rc = inst.server.wait_exit(30 * time_scale())
            assert rc == 0, "%s: exit %r\n%s" % (inst.name, rc, inst.server.output())
            inst.start()
            inst.wait_answering(fleet.health_path)
            # Back in the balancer's rotation before the next one goes.
            wait_served_by(load, inst.name, time.monotonic())
        load.wait_successes(100)
    assert load.failed == 0, load.summary()


def test_dead_instance_costs_at_most_its_in_flight_requests(fleet, balancer):
    victim = fleet.instances[1]
    with fh.LoadGen(fleet.nets, conns=CONNS) as load:
        load.wait_successes(200)
        killed = victim.kill()
        assert len(killed) == 3, killed  # the master and its two workers
        # The balancer stops choosing it: HAProxy after one failed check,
        # nginx after one failed connection (max_fails=1).
        time.sleep(1.0)
        routed_around = time.monotonic()
        load.wait_successes(300)
        without = load.since(routed_around)
        failed_while_dead = load.failed
        victim.start()
        victim.wait_answering(fleet.health_path)
        wait_served_by(load, victim.name, time.monotonic(), timeout=15.0)
        load.wait_successes(100)
    print("dead instance: %d client failure(s) of %d requests" % (
        failed_while_dead, load.sent))
    assert instances_of(without) == {"i0", "i2"}, load.summary()
    # Each client connection has at most one request in flight, so at most
    # CONNS requests were on the victim when it died; the balancers retry a
    # GET that met a dead connection, so usually none fails at all.
    assert failed_while_dead <= CONNS, load.summary()
    assert load.failed == failed_while_dead, load.summary()


def test_instances_see_the_client_address(fleet, balancer):
    """--proxy-headers with --forwarded-allow-ips = the balancer: the
    access log names the client host, not the balancer."""
    path = fh.ROUTE + "?from=client"  # told apart from the health checks
    marks = [len(inst.server.stdout.snapshot()) for inst in fleet.instances]
    with fh.LoadGen(fleet.nets, conns=2, path=path) as load:
        load.wait_successes(60)
    for inst, mark in zip(fleet.instances, marks):
        lines = [line for line in inst.server.stdout.snapshot()[mark:] if path in line]
        assert lines, inst.server.output()[-2000:]
        assert all(fleet.nets.client_addr in line for line in lines), lines[:3]
        assert not any(fleet.nets.lb_addr_toward(inst.k) + ":" in line
                       for line in lines), lines[:3]


def scrape_requests(fleet):
    total = 0.0
    for inst in fleet.instances:
        status, text = inst.get(fh.METRICS_PATH)
        assert status == 200, text[:500]
        total += fh.metric_sum(text, "evicorn_http_requests_total", route=fh.ROUTE)
    return total


def test_metrics_of_the_instances_add_up_to_what_the_client_sent(fleet, balancer):
    if not fleet.has_metrics:
        pytest.skip("this evicorn has no --metrics-path")
    sent = 900
    before = scrape_requests(fleet)
    load = fh.LoadGen(fleet.nets, conns=CONNS, total=sent).start().join(60)
    assert load.failed == 0 and load.succeeded == sent, load.summary()
    # A worker counts a request once its response is out: wait for the last.
    deadline = time.monotonic() + 3 * time_scale()
    while True:
        counted = scrape_requests(fleet) - before
        if counted == sent or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counted == sent
