"""The recipes of docs/deploy.md, checked with the tools that can check them:
nginx -t and haproxy -c on the balancer configs (which test_fleet.py also
runs), WebSocket upgrades proxied by both, systemd-analyze verify on the
units, a schema check of the Kubernetes manifests (kubernetes-validate,
pinned, in a venv of the build), the Prometheus config and dashboard against
the metrics evicorn serves, and scripts/deploy-plugin on two local servers.

A check whose tool is missing is skipped with the reason.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

import evicorn_harness as eh
import fleet_harness as fh
import ws_raw
from plugin_util import plugin_path

DEPLOY = fh.DEPLOY
SCRIPT = fh.DEPLOY_PLUGIN
# kubernetes-validate and what it needs, pinned: the manifests' schema check.
K8S_VALIDATE = ["kubernetes-validate==1.37.0", "jsonschema==4.26.0",
                "jsonschema-specifications==2025.9.1", "referencing==0.37.0",
                "rpds-py==2026.9.1", "attrs==26.1.0", "PyYAML==6.0.4", "packaging==26.4",
                "importlib_resources==7.1.0", "typing_extensions==4.16.0"]
K8S_VERSION = "1.32.0"


def read(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return f.read()


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip("%s is not installed" % tool)


def run(argv, timeout=60, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="evicorn-recipes-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# Balancers


def nginx_conf(tmp, listen=None, upstream=None):
    text = read("nginx.conf")
    text = text.replace("/run/nginx-evicorn.pid", os.path.join(tmp, "nginx.pid"))
    text = text.replace("/var/log/nginx/evicorn-error.log", os.path.join(tmp, "error.log"))
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    if listen:
        text = text.replace("listen 80;", "listen %s;" % listen)
    if upstream:
        for a in fh.EXAMPLE_ADDRESSES:
            text = text.replace("%s:8000" % a, upstream)
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def haproxy_conf(tmp, listen=None, upstream=None):
    text = read("haproxy.cfg")
    if listen:
        text = text.replace("bind :80", "bind %s" % listen)
    if upstream:
        for a in fh.EXAMPLE_ADDRESSES:
            text = text.replace("%s:8000" % a, upstream)
    path = os.path.join(tmp, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_nginx_config_passes_nginx_t(tmp):
    need("nginx")
    conf = nginx_conf(tmp)
    r = run(["nginx", "-t", "-c", conf, "-e", os.path.join(tmp, "error.log")])
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


def test_haproxy_config_passes_haproxy_c(tmp):
    need("haproxy")
    r = run(["haproxy", "-c", "-f", haproxy_conf(tmp)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Configuration file is valid" in r.stdout + r.stderr


def test_balancer_configs_name_the_same_instances_and_health_path():
    nginx, haproxy = read("nginx.conf"), read("haproxy.cfg")
    for a in fh.EXAMPLE_ADDRESSES:
        assert "server %s:8000 " % a in nginx
        assert " %s:8000\n" % a in haproxy
    assert "option httpchk GET %s\n" % fh.HEALTH_PATH in haproxy
    assert "http-check expect status 200" in haproxy
    assert re.search(r"proxy_next_upstream error timeout http_503;", nginx)


@pytest.fixture
def echo_server(make_server, tmp):
    plugins = os.path.join(tmp, "plugins")
    os.mkdir(plugins, 0o755)
    build = os.path.dirname(os.path.abspath(eh.evicorn_bin()))
    chat = os.environ.get("EVICORN_PLUGINS") or os.path.join(build, "plugins")
    shutil.copy(os.path.join(chat, "chat.so"), plugins)
    srv = make_server("--workers", 1, plugins=plugins)
    assert srv.wait_for_log(r"plugin .*chat\.so: loaded", 10), srv.output()
    return srv


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_websocket_upgrades_pass_through_the_balancer(kind, tmp, echo_server):
    need(kind)
    port = eh.free_port()
    listen = "127.0.0.1:%d" % port
    upstream = "127.0.0.1:%d" % echo_server.port
    if kind == "nginx":
        conf = nginx_conf(tmp, listen, upstream)
        argv = ["nginx", "-c", conf, "-e", os.path.join(tmp, "error.log"), "-g", "daemon off;"]
    else:
        # Loopback, no health path on this server: check the port only.
        conf = haproxy_conf(tmp, listen, upstream)
        with open(conf) as f:
            text = f.read().replace("option httpchk GET %s\n" % fh.HEALTH_PATH, "")
        text = text.replace("http-check expect status 200\n", "")
        with open(conf, "w") as f:
            f.write(text)
        argv = ["haproxy", "-db", "-f", conf]
    log = open(os.path.join(tmp, "balancer.log"), "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        eh.wait_serving(port, 10)
        ws = ws_raw.connect(port, "/ws/echo")
        try:
            for text in ("hello", "through the balancer"):
                ws.send_text(text)
                assert ws.recv_message() == (1, text.encode())
        finally:
            ws.sock.close()
        # Plain requests on the same balancer keep their keep-alive upstream.
        with eh.Conn.tcp(port) as c:
            for _ in range(3):
                r = c.request(eh.get("/nothing-here"))
                assert r.status == 404
    finally:
        eh.stop_group(proc, 5)
        log.close()


# --------------------------------------------------------------------------
# systemd


def unit_copies(tmp):
    binary = eh.evicorn_bin()
    for name in ("evicorn.socket", "evicorn.service"):
        text = read(name).replace("/usr/local/bin/evicorn", binary)
        with open(os.path.join(tmp, name), "w") as f:
            f.write(text)
    return [os.path.join(tmp, n) for n in ("evicorn.socket", "evicorn.service")]


def test_systemd_units_pass_systemd_analyze_verify(tmp):
    need("systemd-analyze")
    r = run(["systemd-analyze", "verify", "--man=no"] + unit_copies(tmp))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == "", r.stdout + r.stderr


def test_systemd_service_reloads_with_sighup_and_stops_within_its_timeout():
    service = read("evicorn.service")
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", service, re.M)
    argv = exec_start_args(service)
    stop = float(re.search(r"^TimeoutStopSec=(\d+)$", service, re.M).group(1))
    assert stop > flag_value(argv, "--shutdown-delay") + flag_value(
        argv, "--timeout-graceful-shutdown")


def exec_start_args(service):
    line = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", service, re.M).group(1)
    return shlex.split(line.replace("\\\n", " "))


def flag_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag:
            return float(argv[i + 1])
        if a.startswith(flag + "="):
            return float(a.split("=", 1)[1])
    raise AssertionError("%s not in %r" % (flag, argv))


def server_supports_socket_activation():
    with open(eh.evicorn_bin(), "rb") as f:
        return b"LISTEN_FDS" in f.read()


def test_socket_activated_service_serves_and_reloads(tmp):
    """The unit pair's ExecStart, run the way systemd would start it: under
    systemd-socket-activate with the socket unit's named socket."""
    need("systemd-socket-activate")
    if not server_supports_socket_activation():
        pytest.skip("this evicorn does not take sockets from systemd (LISTEN_FDS)")
    socket_unit = read("evicorn.socket")
    fdname = re.search(r"^FileDescriptorName=(\S+)$", socket_unit, re.M).group(1)
    plugins = os.path.join(tmp, "plugins")
    os.mkdir(plugins, 0o755)
    shutil.copy(plugin_path("fleetprobe"), plugins)
    argv = exec_start_args(read("evicorn.service"))
    argv[0] = eh.evicorn_bin()
    argv = [plugins if a == "/srv/evicorn/plugins" else a for a in argv]
    i = argv.index("--user")  # the test is not the evicorn user's host
    del argv[i:i + 2]
    port = eh.free_port()
    proc = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port,
                             "--fdname=" + fdname] + argv,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "log"), "wb"), start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            r = eh.try_request(port, eh.get("/fleet"))
            if isinstance(r, eh.Response) and r.status == 200:
                break
            assert time.monotonic() < deadline and proc.poll() is None, open(
                os.path.join(tmp, "log")).read()[-3000:]
            time.sleep(0.1)
        assert r.body.startswith(b"fleetprobe v1")
        os.kill(proc.pid, 1)  # ExecReload
        time.sleep(0.5)
        r = eh.try_request(port, eh.get("/fleet"))
        assert isinstance(r, eh.Response) and r.status == 200, r
    finally:
        eh.stop_group(proc, 30)


# --------------------------------------------------------------------------
# Kubernetes


def manifests():
    return [d for d in yaml.safe_load_all(read("kubernetes.yaml")) if d]


def deployment():
    return next(d for d in manifests() if d["kind"] == "Deployment")


def container_args(dep, name="evicorn"):
    c = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)
    return c, c["args"]


def test_kubernetes_grace_period_covers_delay_and_graceful_shutdown():
    dep = deployment()
    _, args = container_args(dep)
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    delay = flag_value(args, "--shutdown-delay")
    graceful = flag_value(args, "--timeout-graceful-shutdown")
    assert grace >= delay + graceful + 1, (grace, delay, graceful)


def test_kubernetes_probes_use_the_health_path():
    c, args = container_args(deployment())
    health = next(a.split("=", 1)[1] for a in args if a.startswith("--health-path="))
    assert c["readinessProbe"]["httpGet"]["path"] == health
    assert c["livenessProbe"]["httpGet"]["path"] == health
    # Liveness must outlast a graceful shutdown, during which health is 503.
    lp = c["livenessProbe"]
    assert lp["periodSeconds"] * lp["failureThreshold"] > flag_value(args, "--shutdown-delay") + \
        flag_value(args, "--timeout-graceful-shutdown")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    plugins = next(a.split("=", 1)[1] for a in args if a.startswith("--plugins="))
    assert mounts["plugins"]["mountPath"] == plugins


@pytest.fixture(scope="module")
def k8s_validate():
    """kubernetes-validate in a venv of the build (made once, pinned)."""
    build = os.path.dirname(os.path.abspath(eh.evicorn_bin()))
    venv = os.path.join(build, "venv-k8s-validate")
    tool = os.path.join(venv, "bin", "kubernetes-validate")
    stamp = os.path.join(venv, "pins.txt")
    want = "\n".join(K8S_VALIDATE)
    if not (os.path.isfile(tool) and os.path.isfile(stamp) and open(stamp).read() == want):
        r = run([sys.executable, "-m", "venv", "--clear", venv], timeout=120)
        if r.returncode != 0:
            pytest.skip("cannot make a venv: %s" % r.stderr[-300:])
        r = run([os.path.join(venv, "bin", "pip"), "install", "-q", "--no-deps"] + K8S_VALIDATE,
                timeout=300)
        if r.returncode != 0:
            pytest.skip("cannot install kubernetes-validate: %s" % r.stderr[-300:])
        with open(stamp, "w") as f:
            f.write(want)
    return tool


def test_kubernetes_manifests_pass_the_schema_check(k8s_validate):
    r = run([k8s_validate, "--strict", "-k", K8S_VERSION, os.path.join(DEPLOY, "kubernetes.yaml")])
    assert r.returncode == 0, r.stdout + r.stderr
    kinds = [d["kind"] for d in manifests()]
    assert r.stdout.count("passed") == len(kinds) == 3, r.stdout


def test_kubernetes_schema_check_can_fail(k8s_validate, tmp):
    bad = read("kubernetes.yaml").replace("terminationGracePeriodSeconds: 30",
                                          "terminationGracePeriodSeconds: thirty")
    path = os.path.join(tmp, "bad.yaml")
    with open(path, "w") as f:
        f.write(bad)
    r = run([k8s_validate, "--strict", "-k", K8S_VERSION, path])
    assert r.returncode != 0, r.stdout


# --------------------------------------------------------------------------
# Prometheus


def test_prometheus_config_passes_promtool(tmp):
    need("promtool")
    r = run(["promtool", "check", "config", os.path.join(DEPLOY, "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_every_instance_on_the_metrics_path():
    conf = yaml.safe_load(read("prometheus.yml"))
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    static = jobs["evicorn"]
    assert static["metrics_path"] == fh.METRICS_PATH
    assert static["static_configs"][0]["targets"] == ["%s:8000" % a for a in fh.EXAMPLE_ADDRESSES]
    pod = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert pod["prometheus.io/path"] == fh.METRICS_PATH
    assert pod["prometheus.io/scrape"] == "true"


def dashboard_metric_names():
    names = set()
    for panel in yaml.safe_load(read("dashboard.yml"))["panels"]:
        for q in panel.get("queries") or [panel["query"]]:
            names.update(re.findall(r"\b(evicorn_[a-z_]+)\b", q))
    return names


def test_dashboard_queries_name_metrics_evicorn_serves(make_server):
    if not fh.server_has_flag("--metrics-path"):
        pytest.skip("this evicorn has no --metrics-path")
    srv = make_server("--metrics-path", "/metrics")
    with srv.connect() as c:
        c.request(eh.get("/nothing"))  # one request, so per-route series exist
        r = c.request(eh.get("/metrics"))
    assert r.status == 200, r
    families = {}
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", r.body.decode(), re.M):
        families[m.group(1)] = m.group(2)
    served = set(families)
    for name, kind in families.items():
        if kind == "histogram":
            served.update(name + s for s in ("_bucket", "_sum", "_count"))
    names = dashboard_metric_names()
    assert len(names) >= 8, names
    assert names <= served, names - served


# --------------------------------------------------------------------------
# scripts/deploy-plugin


def deploy(*args, timeout=60):
    return run([SCRIPT] + list(args), timeout=timeout)


@pytest.mark.parametrize("args", [
    [],
    ["only-a-plugin.so"],
    ["--unknown", "x.so", "dir"],
    ["--confirm", "0", "PLUGIN", "dir"],
    ["--ssh", "PLUGIN", "no-host-here"],
    ["--as", ".hidden.so", "PLUGIN", "dir"],
    ["--timeout"],
])
def test_deploy_plugin_usage_errors_say_one_line_and_exit_2(args):
    args = [plugin_path("fleetprobe") if a == "PLUGIN" else a for a in args]
    r = deploy(*args)
    assert r.returncode == 2, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "usage: deploy-plugin" in r.stderr


@pytest.fixture
def two_instances(make_server, tmp):
    servers = []
    for k in range(2):
        plugins = os.path.join(tmp, "plugins-%d" % k)
        os.mkdir(plugins, 0o755)
        shutil.copy(plugin_path("fleetprobe"), plugins)
        srv = make_server("--workers", 2, plugins=plugins)
        eh.wait_serving(srv.port)
        assert srv.wait_for_log(r"fleetprobe\.so: loaded", 10), srv.output()
        servers.append(srv)
    return servers


def body(srv):
    r = eh.try_request(srv.port, eh.get("/fleet"))
    return r.body if isinstance(r, eh.Response) else r


def test_deploy_plugin_renames_signature_then_plugin_into_each_folder_in_turn(two_instances, tmp):
    src = os.path.join(tmp, "fleetprobe.so")
    shutil.copy(plugin_path("fleetprobe_v2"), src)
    with open(src + ".sig", "wb") as f:
        f.write(b"signature bytes")
    targets = ["%s=%s" % (s.plugins, s.url("/fleet")) for s in two_instances]
    r = deploy("--expect", "fleetprobe v2", "--confirm", "6", src, *targets)
    assert r.returncode == 0, r.stderr
    for srv in two_instances:
        assert body(srv).startswith(b"fleetprobe v2"), body(srv)
        assert sorted(os.listdir(srv.plugins)) == ["fleetprobe.so", "fleetprobe.so.sig"]
        with open(os.path.join(srv.plugins, "fleetprobe.so.sig"), "rb") as f:
            assert f.read() == b"signature bytes"
    lines = r.stderr.splitlines()
    assert "[1/2]" in lines[1] and "serving" in lines[1], lines
    assert "[2/2]" in lines[3] and "serving" in lines[3], lines


def test_deploy_plugin_stops_at_an_instance_that_does_not_take_the_new_version(two_instances,
                                                                                 tmp):
    targets = ["%s=%s" % (s.plugins, s.url("/fleet")) for s in two_instances]
    r = deploy("--as", "fleetprobe.so", "--expect", "fleetprobe v3", "--timeout", "2",
               plugin_path("fleetprobe_v2"), *targets)
    assert r.returncode == 1, r.stderr
    assert "did not answer" in r.stderr and "stopping here" in r.stderr
    # The first instance got the file; the second was never touched.
    assert body(two_instances[0]).startswith(b"fleetprobe v2")
    assert body(two_instances[1]).startswith(b"fleetprobe v1")
    assert os.listdir(two_instances[1].plugins) == ["fleetprobe.so"]
