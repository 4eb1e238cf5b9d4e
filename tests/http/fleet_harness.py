"""A fleet of evicorn instances behind a load balancer, in network namespaces.

Five namespaces with a random suffix: three instance hosts, one balancer and
one client. Each instance and the client is joined to the balancer's
namespace by a veth pair on a /30 of 10.R.0.0/16 (R random); nothing is
routed, so traffic cannot leave these namespaces (the balancer proxies, it
does not forward). The instances are the real binary started under
`ip netns exec`; the balancers are Debian's nginx and HAProxy run from the
configuration files of docs/deploy/ with the addresses replaced.

The test process itself stays in its own namespace: sockets are made inside
a namespace by a short-lived thread that enters it (setns(2) changes only
the calling thread, and a socket keeps the namespace it was made in), so the
load generator's connections are the client host's and the direct checks of
an instance are made from the balancer's host.

Everything is stopped by PID and every namespace removed on close(), also
after a failure; processes left in one of these namespaces are found with
`ip netns pids` and killed by PID.
"""
import collections
import ctypes
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import evicorn_harness as eh

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
DEPLOY = os.path.join(ROOT, "docs", "deploy")
DEPLOY_PLUGIN = os.path.join(ROOT, "scripts", "deploy-plugin")

PORT = 8000  # every instance's, on its own host
LB_PORT = 80  # the balancer's, toward the client
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
ROUTE = "/fleet"
# The instance addresses in docs/deploy/*: replaced by the fleet's own.
EXAMPLE_ADDRESSES = ["10.0.1.11", "10.0.1.12", "10.0.1.13"]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run(*argv, check=True, timeout=10):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, check=check, stdin=subprocess.DEVNULL)


def unavailable_reason():
    """Why the fleet cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    name = "evf%06x-probe" % random.getrandbits(24)
    try:
        run("ip", "netns", "add", name)
    except (OSError, subprocess.SubprocessError) as e:
        return "ip netns add does not work here: %s" % getattr(e, "stderr", e)
    run("ip", "netns", "del", name, check=False)
    return None


def server_has_flag(flag):
    r = eh.run_cli("--help")
    out = r.stdout + r.stderr
    return re.search(r"^\s*%s\b" % re.escape(flag), out, re.M) is not None


# --------------------------------------------------------------------------
# Namespaces


def socket_in(ns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket made inside network namespace `ns` (a name under /run/netns)."""
    result = {}

    def enter_and_make():
        fd = os.open("/run/netns/%s" % ns, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                result["error"] = OSError(ctypes.get_errno(), "setns(%s)" % ns)
                return
            result["sock"] = socket.socket(family, kind)
        finally:
            os.close(fd)

    t = threading.Thread(target=enter_and_make)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def connect_in(ns, host, port, timeout):
    s = socket_in(ns)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    return s


class NsHTTPConnection(http.client.HTTPConnection):
    """http.client's keep-alive connection, from inside namespace `ns`."""

    def __init__(self, ns, host, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self):
        self.sock = connect_in(self.ns, self.host, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def get_in(ns, host, port, path, timeout=2.0):
    """(status, body text) of one GET on a fresh connection from `ns`."""
    c = NsHTTPConnection(ns, host, port, timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


class Namespaces:
    """The five namespaces and their links; close() removes them."""

    def __init__(self):
        self.tag = "evf%06x" % random.getrandbits(24)
        self.net = random.randint(16, 250)
        self.instances = ["%s-i%d" % (self.tag, k) for k in range(3)]
        self.lb = self.tag + "-lb"
        self.client = self.tag + "-cl"
        self.created = []

    # 10.R.K.0/30 joins instance K (.2) to the balancer (.1); K = 9: the client.
    def instance_addr(self, k):
        return "10.%d.%d.2" % (self.net, k)

    def lb_addr_toward(self, k):
        return "10.%d.%d.1" % (self.net, k)

    @property
    def client_addr(self):
        return "10.%d.9.2" % self.net

    @property
    def lb_addr(self):
        return "10.%d.9.1" % self.net

    def create(self):
        for ns in self.instances + [self.lb, self.client]:
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        links = [(ns, "i%d" % k, k) for k, ns in enumerate(self.instances)]
        links.append((self.client, "cl", 9))
        for ns, lb_side, k in links:
            run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
                lb_side, "netns", self.lb)
            run("ip", "-n", ns, "addr", "add", "10.%d.%d.2/30" % (self.net, k), "dev", "eth0")
            run("ip", "-n", self.lb, "addr", "add", "10.%d.%d.1/30" % (self.net, k), "dev",
                lb_side)
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", self.lb, "link", "set", lb_side, "up")
        return self

    def pids(self, ns):
        out = run("ip", "netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all_in(self, ns):
        """SIGKILL, by PID, every process in namespace ns; waits for them."""
        pids = self.pids(ns)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(eh.pid_alive(p) for p in pids):
            time.sleep(0.02)
        return pids

    def close(self):
        for ns in reversed(self.created):
            self.kill_all_in(ns)
            run("ip", "netns", "del", ns, check=False)
        self.created = []


# --------------------------------------------------------------------------
# Instances


class Instance:
    """One evicorn host: namespace, address, its own plugins folder."""

    def __init__(self, nets, k, plugins, extra=()):
        self.nets, self.k = nets, k
        self.name = "i%d" % k
        self.ns = nets.instances[k]
        self.addr = nets.instance_addr(k)
        self.plugins = plugins
        self.extra = list(extra)
        self.server = None

    def start(self):
        wrapper = ["ip", "netns", "exec", self.ns, "env", "FLEETPROBE_INSTANCE=" + self.name]
        self.server = eh.Server("--workers", 2, *self.extra, plugins=self.plugins,
                                wrapper=wrapper, ready_timeout=15,
                                listen=["--host", self.addr, "--port", str(PORT)])
        self.server.start()
        return self

    def alive(self):
        return self.server is not None and self.server.proc.poll() is None

    def get(self, path, timeout=2.0):
        """A direct GET from the balancer's host, bypassing the balancer."""
        return get_in(self.nets.lb, self.addr, PORT, path, timeout)

    def wait_answering(self, path, expect=None, timeout=15.0, times=1):
        """Until `times` GETs in a row answer 200 (containing expect)."""
        deadline = time.monotonic() + timeout
        good, last = 0, None
        while time.monotonic() < deadline:
            try:
                last = self.get(path)
                ok = last[0] == 200 and (expect is None or expect in last[1])
            except OSError as e:
                last, ok = e, False
            good = good + 1 if ok else 0
            if good >= times:
                return last
            time.sleep(0.05)
        raise AssertionError("%s: %s not answering %r within %.0f s: %r\n%s"
                             % (self.name, path, expect, timeout, last,
                                self.server.output() if self.server else ""))

    def stop(self):
        if self.server is not None:
            self.server.stop()

    def kill(self):
        """SIGKILL to every process of the instance at once, as a host dying."""
        pids = self.nets.kill_all_in(self.ns)
        if self.server is not None:
            self.server.wait_exit(5)
        return pids


# --------------------------------------------------------------------------
# Balancers


def instantiate(template, nets, replace=()):
    """docs/deploy/<template> with the example instance addresses replaced by
    the fleet's, and the pairs of `replace` applied; asserts every example
    address and every `replace` target was there."""
    with open(os.path.join(DEPLOY, template)) as f:
        text = f.read()
    pairs = [(a, nets.instance_addr(k)) for k, a in enumerate(EXAMPLE_ADDRESSES)]
    for old, new in pairs + list(replace):
        assert old in text, "%s: %r not found" % (template, old)
        text = text.replace(old, new)
    return text


class Balancer:
    kind = None

    def __init__(self, nets, workdir, health_path):
        self.nets, self.workdir, self.health_path = nets, workdir, health_path
        self.proc = None
        self.log_path = os.path.join(workdir, "%s.log" % self.kind)

    def start(self):
        argv = ["ip", "netns", "exec", self.nets.lb] + self.command()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        last = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                last = get_in(self.nets.client, self.nets.lb_addr, LB_PORT, ROUTE)
                if last[0] == 200:
                    return self
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("%s not serving (exit %s): %r\n%s"
                             % (self.kind, self.proc.poll(), last, self.output()))

    def output(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Its workers, should any outlive the master: this namespace only.
        self.nets.kill_all_in(self.nets.lb)
        self.log.close()
        self.proc = None


class Nginx(Balancer):
    kind = "nginx"

    def command(self):
        conf = os.path.join(self.workdir, "nginx.conf")
        text = instantiate("nginx.conf", self.nets, [
            ("/run/nginx-evicorn.pid", os.path.join(self.workdir, "nginx.pid")),
            ("/var/log/nginx/evicorn-error.log", self.log_path),
            # Two cores: one worker is what the machine can give it.
            ("worker_processes auto;", "worker_processes 1;"),
        ])
        with open(conf, "w") as f:
            f.write(text)
        return ["nginx", "-c", conf, "-e", self.log_path, "-g", "daemon off;"]


class HAProxy(Balancer):
    kind = "haproxy"

    def command(self):
        conf = os.path.join(self.workdir, "haproxy.cfg")
        replace = []
        if self.health_path != HEALTH_PATH:
            replace.append(("GET " + HEALTH_PATH, "GET " + self.health_path))
        with open(conf, "w") as f:
            f.write(instantiate("haproxy.cfg", self.nets, replace))
        return ["haproxy", "-db", "-f", conf]


BALANCERS = {"nginx": Nginx, "haproxy": HAProxy}


# --------------------------------------------------------------------------
# The client


class LoadGen:
    """Threads in the client's namespace, each with one keep-alive
    http.client connection to the balancer, sending GET path until stopped
    (or, with total=N, until N requests have been sent in all).

    Every request is counted exactly once: a success (200) by body, or a
    failure by kind (a status, or the exception's class). After a failure
    the thread opens a new connection. With `conns` connections at most
    `conns` requests are in flight at any moment."""

    def __init__(self, nets, conns=6, total=None, pause=0.002, timeout=10.0, path=ROUTE):
        self.nets, self.conns, self.total, self.path = nets, conns, total, path
        self.pause, self.timeout = pause, timeout
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sent = 0
        self.ok = collections.Counter()  # body -> count
        self.failures = collections.Counter()  # kind -> count
        self.failure_log = []  # (time, kind, detail)
        self.timeline = []  # (time, body or None)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(conns)]

    def _ticket(self):
        with self.lock:
            if self.stopping.is_set() or (self.total is not None and self.sent >= self.total):
                return False
            self.sent += 1
            return True

    def _run(self):
        conn = None
        while self._ticket():
            try:
                if conn is None:
                    conn = NsHTTPConnection(self.nets.client, self.nets.lb_addr, LB_PORT,
                                            self.timeout)
                conn.request("GET", self.path)
                r = conn.getresponse()
                body = r.read().decode("utf-8", "replace")
                kind = None if r.status == 200 else "status %d" % r.status
                detail = body[:200]
            except (OSError, http.client.HTTPException) as e:
                kind, detail, body = type(e).__name__, str(e), None
            now = time.monotonic()
            with self.lock:
                if kind is None:
                    self.ok[body] += 1
                    self.timeline.append((now, body))
                else:
                    self.failures[kind] += 1
                    self.failure_log.append((now, kind, detail))
                    self.timeline.append((now, None))
            if kind is not None and conn is not None:
                conn.close()
                conn = None
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        return self.join()

    def join(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "load threads did not end"
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stopping.set()
        self.join()
        return False

    # ---- results

    @property
    def failed(self):
        with self.lock:
            return sum(self.failures.values())

    @property
    def succeeded(self):
        with self.lock:
            return sum(self.ok.values())

    def since(self, t0):
        """Bodies of the successes after monotonic time t0 (a Counter)."""
        with self.lock:
            return collections.Counter(b for t, b in self.timeline if t >= t0 and b is not None)

    def wait_successes(self, n, timeout=10.0):
        """Until at least n more requests have succeeded."""
        start = self.succeeded
        deadline = time.monotonic() + timeout
        while self.succeeded < start + n:
            assert time.monotonic() < deadline, "fewer than %d successes in %.0f s: %s" % (
                n, timeout, self.summary())
            time.sleep(0.01)

    def summary(self):
        with self.lock:
            return "sent %d, ok %r, failures %r, first failures %r" % (
                self.sent, dict(self.ok), dict(self.failures), self.failure_log[:5])


# --------------------------------------------------------------------------
# Metrics


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")),
                        float(m.group(3))))
    return out


def metric_sum(text, name, **labels):
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for n, ls, v in parse_metrics(text)
               if n == name and all(ls.get(k) == want for k, want in labels.items()))


# --------------------------------------------------------------------------
# The fleet


class Fleet:
    """Namespaces, three instances serving fleetprobe from their own plugins
    folders, and at most one balancer at a time."""

    def __init__(self, test_plugins):
        self.v1 = os.path.join(test_plugins, "fleetprobe.so")
        self.v2 = os.path.join(test_plugins, "fleetprobe_v2.so")
        for p in (self.v1, self.v2):
            if not os.path.isfile(p):
                raise RuntimeError("%s not built" % p)
        self.workdir = tempfile.mkdtemp(prefix="evicorn-fleet-")
        os.chmod(self.workdir, 0o755)
        self.nets = Namespaces()
        self.has_health = server_has_flag("--health-path")
        self.has_metrics = server_has_flag("--metrics-path")
        self.has_delay = server_has_flag("--shutdown-delay")
        # Without --health-path (yet), the balancers check the route itself.
        self.health_path = HEALTH_PATH if self.has_health else ROUTE
        self.instances = []
        self.balancer = None

    def instance_args(self, k):
        args = ["--proxy-headers", "--forwarded-allow-ips", self.nets.lb_addr_toward(k),
                "--timeout-graceful-shutdown", 5]
        if self.has_health:
            args += ["--health-path", HEALTH_PATH]
        if self.has_metrics:
            args += ["--metrics-path", METRICS_PATH]
        if self.has_delay:
            # Longer than HAProxy's inter x fall (200 ms): it stops sending first.
            args += ["--shutdown-delay", 1]
        return args

    def start(self):
        self.nets.create()
        for k in range(3):
            plugins = os.path.join(self.workdir, "plugins-i%d" % k)
            os.mkdir(plugins, 0o755)
            shutil.copy(self.v1, os.path.join(plugins, "fleetprobe.so"))
            self.instances.append(Instance(self.nets, k, plugins, self.instance_args(k)))
        for inst in self.instances:
            inst.start()
        for inst in self.instances:
            inst.wait_answering(ROUTE, "fleetprobe v1 on " + inst.name, times=4)
        return self

    def start_balancer(self, kind):
        assert self.balancer is None
        self.balancer = BALANCERS[kind](self.nets, self.workdir, self.health_path).start()
        return self.balancer

    def stop_balancer(self):
        if self.balancer is not None:
            try:
                self.balancer.stop()
            finally:
                self.balancer = None

    def place(self, inst, source):
        """fleetprobe.so from `source` into inst's folder, by rename."""
        tmp = os.path.join(inst.plugins, ".fleetprobe.so.tmp")
        shutil.copy(source, tmp)
        os.rename(tmp, os.path.join(inst.plugins, "fleetprobe.so"))

    def reset(self):
        """Every instance running and serving v1 (what a scenario starts from)."""
        for inst in self.instances:
            if not inst.alive():
                self.nets.kill_all_in(inst.ns)
                inst.start()
            status, body = inst.get(ROUTE)
            if "fleetprobe v1 " not in body:
                self.place(inst, self.v1)
            inst.wait_answering(ROUTE, "fleetprobe v1 on " + inst.name, times=4)
            if self.has_health:
                inst.wait_answering(self.health_path)

    def deploy_command(self, source, expect):
        """scripts/deploy-plugin over the three folders, each checked on its
        instance: run from the balancer's host, which reaches them all."""
        targets = ["%s=http://%s:%d%s" % (inst.plugins, inst.addr, PORT, ROUTE)
                   for inst in self.instances]
        return (["ip", "netns", "exec", self.nets.lb, DEPLOY_PLUGIN, "--as", "fleetprobe.so",
                 "--expect", expect, "--timeout", "20", source] + targets)

    def close(self):
        errors = []
        for step in [self.stop_balancer] + [inst.stop for inst in self.instances]:
            try:
                step()
            except Exception as e:  # keep cleaning up
                errors.append(e)
        self.nets.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]
