"""Faults from outside the request path: slow clients, dying workers, a
private plugin folder that cannot be written, and running out of file
descriptors. Each test says what the server must still do while it happens.

Timing bounds are generous (the tests share a small machine) and scale with
EVICORN_TIME_SCALE; latency is measured by bench/faults/slowloris.py, not
asserted here."""
import glob
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import tempfile
import threading
import time

import pytest

from evicorn_harness import (ConnClosed, KeepAliveLoad, assert_not_found, env_wrapper, get,
                             pid_alive, run_cli, time_scale, wait_serving)
import plugin_util
from plugin_util import VERSION_REQ, deploy, with_probe

SCALE = time_scale()


def scaled(seconds):
    return seconds * SCALE


# --------------------------------------------------------------------------
# helpers


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def socket_inode(server_port, client_port):
    """Inode of the server side of the loopback connection to client_port."""
    want_local = ":%04X" % server_port
    want_remote = ":%04X" % client_port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
                return fields[9]
    return None


def worker_holding(srv, conn, workers):
    """The worker PID (among workers) whose descriptors hold conn's server side."""
    inode = socket_inode(srv.port, conn.sock.getsockname()[1])
    assert inode, "connection not found in /proc/net/tcp"
    target = "socket:[%s]" % inode
    for pid in workers:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                    return pid
            except OSError:
                pass
    return None


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_count(srv, regex, start=0):
    rx = re.compile(regex)
    return sum(1 for line in srv.stderr.snapshot()[start:] if rx.search(line))


# --------------------------------------------------------------------------
# 1. slowloris


SLOW_CONNS = 1000
SLOW_HEAD = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096


class Slowloris:
    """SLOW_CONNS connections, each sending one more byte of a request head
    every 0.5 s; records when the server closes each and what it sent."""

    def __init__(self, port, n):
        self.port, self.n = port, n
        self.socks = []
        self.opened = {}  # fd -> connect time
        self.closed = {}  # fd -> close time
        self.received = {}  # fd -> bytes the server sent
        self.sent = {}  # fd -> bytes sent so far
        self.error = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def connect_all(self):
        for _ in range(self.n):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=scaled(5))
            s.setblocking(False)
            self.socks.append(s)
            self.opened[s.fileno()] = time.monotonic()
            self.sent[s.fileno()] = 0
            self.received[s.fileno()] = b""
        self.thread.start()

    def _mark_closed(self, sel, s):
        fd = s.fileno()
        if fd not in self.closed:
            self.closed[fd] = time.monotonic()
            sel.unregister(s)

    def _run(self):
        try:
            sel = selectors.DefaultSelector()
            for s in self.socks:
                sel.register(s, selectors.EVENT_READ)
            next_tick = time.monotonic()
            while not self.stop.is_set() and len(self.closed) < len(self.socks):
                now = time.monotonic()
                if now >= next_tick:
                    for s in self.socks:
                        fd = s.fileno()
                        if fd in self.closed:
                            continue
                        i = self.sent[fd]
                        try:
                            s.send(SLOW_HEAD[i:i + 1])
                            self.sent[fd] = i + 1
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            self._mark_closed(sel, s)
                    next_tick += 0.5
                for key, _ in sel.select(timeout=max(0.0, min(0.1, next_tick - time.monotonic()))):
                    s = key.fileobj
                    try:
                        data = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if data:
                        self.received[s.fileno()] += data
                    else:
                        self._mark_closed(sel, s)
            sel.close()
        except Exception as e:  # reported by the test
            self.error = e

    def finish(self):
        self.stop.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()


def test_slowloris_does_not_starve_a_normal_client_and_every_dribbler_is_closed(make_server):
    raise_fd_limit(SLOW_CONNS + 256)
    header_timeout = 2.0
    srv = make_server("--timeout-header", header_timeout, "--timeout-keep-alive", 30,
                      "--no-access-log")
    workers = srv.wait_workers(1)
    attack = Slowloris(srv.port, SLOW_CONNS)
    try:
        attack.connect_all()
        last_connect = max(attack.opened.values())
        # The normal client: fresh connections and one keep-alive connection,
        # sequentially, while every dribbler is still open and sending.
        served = 0
        with srv.connect() as keep:
            while time.monotonic() < last_connect + header_timeout - 0.5:
                with srv.connect() as c:
                    assert_not_found(c.request(get("/normal/%d" % served)))
                assert_not_found(keep.request(get("/keep/%d" % served)))
                served += 1
        assert served >= 10, served
        assert len(attack.closed) < SLOW_CONNS / 2, "dribblers closed before the header timeout"
        deadline = last_connect + header_timeout + scaled(3.0)
        while len(attack.closed) < SLOW_CONNS and time.monotonic() < deadline:
            time.sleep(0.05)
        # Served again once the attackers are gone.
        assert_not_found(srv.connect().request(get("/after")))
    finally:
        attack.finish()
    assert attack.error is None, repr(attack.error)
    still_open = SLOW_CONNS - len(attack.closed)
    assert still_open == 0, "%d dribbling connections still open %.1f s after the header " \
        "timeout" % (still_open, scaled(3.0))
    # Closed for their deadline (counted from the accept, never extended by
    # the bytes that kept coming), with no response: a plain close, no 408.
    early = [attack.closed[fd] - attack.opened[fd] for fd in attack.closed
             if attack.closed[fd] - attack.opened[fd] < header_timeout - 0.3]
    assert not early, "closed before the header timeout: %r" % sorted(early)[:5]
    talked = [d for d in attack.received.values() if d]
    assert not talked, talked[:3]
    assert srv.worker_pids() == workers
    assert not srv.wait_for_log(r"died from signal", 0.1)


# --------------------------------------------------------------------------
# 2 and 3. a worker dies under load


def spread_connections(srv, workers, per_worker=3, most=40):
    """Opens keep-alive connections until every worker holds per_worker of
    them; returns [(conn, (index, worker pid))]. The kernel tends to hand
    consecutive connections to the same worker, so a worker that has its
    share is kept busy (GET /probe/block blocks its loop) while the others
    accept."""
    tagged = []
    count = dict.fromkeys(workers, 0)
    blocked = {}  # pid -> conn whose blocking request is pending
    while min(count.values()) < per_worker:
        assert len(tagged) < most, "connections not spread over the workers: %r" % count
        for pid, n in count.items():
            if n >= per_worker and pid not in blocked:
                conn = next(c for c, tag in tagged if tag[1] == pid)
                conn.send(b"GET /probe/block/%d HTTP/1.1\r\nHost: t\r\n\r\n"
                          % int(scaled(300)))
                blocked[pid] = conn
        c = srv.connect()
        r = c.request(VERSION_REQ)  # accepted and served: now it has a worker
        assert r.status == 200, r
        pid = worker_holding(srv, c, workers)
        assert pid in count, pid
        count[pid] += 1
        tagged.append((c, (len(tagged), pid)))
    for conn in blocked.values():
        r = conn.read_response(timeout=scaled(5))
        assert r.status == 200 and r.body == b"blocked", r
    return tagged


def kill_a_worker_under_load(srv, kill, log_regex):
    """Puts 2 workers under keep-alive load, calls kill(tagged) which returns
    the PID it killed, and checks the blast radius. Returns the log match."""
    workers = srv.wait_workers(2)
    tagged = spread_connections(srv, workers)
    mark = len(srv.stderr.snapshot())
    with KeepAliveLoad(srv, VERSION_REQ, conns=tagged, body=b"1", scale=SCALE) as load:
        time.sleep(0.3)
        dead = kill(tagged)
        t_dead = time.monotonic()
        assert dead in workers
        m = srv.wait_for_log(log_regex % dead, scaled(3), start=mark)
        assert m, srv.output()
        new = srv.wait_workers(2, timeout=scaled(1.0), exclude={dead})
        t_replaced = time.monotonic()
        assert t_replaced - t_dead < scaled(1.0) + 0.1
        (survivor,) = [p for p in workers if p != dead]
        assert survivor in new
        time.sleep(0.5)
        t_stop = time.monotonic()
    assert not pid_alive(dead)
    on_dead = {tag for _, tag in tagged if tag[1] == dead}
    with load.lock:
        failures, successes = list(load.failures), list(load.successes)
    # Only the connections held by the dead worker failed, each once (its
    # request in flight, or its next one). Nothing opened after the death
    # failed (those are tagged None); a failure may be noticed after the
    # replacement, which takes milliseconds, so time does not tell them apart.
    failed_tags = [tag for _, tag, _ in failures]
    assert all(tag in on_dead for tag in failed_tags), (failures, on_dead)
    assert len(failed_tags) == len(set(failed_tags)) <= len(on_dead), (failures, on_dead)
    # The surviving worker kept serving every one of its connections.
    on_survivor = {tag for _, tag in tagged if tag[1] == survivor}
    for tag in on_survivor:
        assert any(t > t_dead for t, tg in successes if tg == tag), tag
    # Reconnected clients were served too, by the survivor or the new worker.
    reconnected = [t for t, tag in successes if tag is None]
    assert len(reconnected) >= len(set(failed_tags)) and all(t <= t_stop + scaled(10)
                                                             for t in reconnected)
    return m


def test_segfaulting_handler_kills_only_its_worker_and_fails_only_its_connections(make_server):
    srv = with_probe(make_server("--workers", 2, "--no-access-log"))

    def crash(tagged):
        workers = {tag[1] for _, tag in tagged}
        c = srv.connect()
        assert c.request(VERSION_REQ).status == 200
        pid = worker_holding(srv, c, workers)
        c.send(b"GET /probe/crash HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises((ConnClosed, OSError)):
            c.read_response()
        c.close()
        return pid

    kill_a_worker_under_load(
        srv, crash, r"ERROR: +worker \d \(pid %d\) died from signal 11 \(Segmentation fault\) "
        r"while running GET /probe/crash \(probe\.so\)$")


def test_sigkilled_worker_is_logged_and_replaced_and_the_other_keeps_serving(make_server):
    srv = with_probe(make_server("--workers", 2, "--no-access-log"))

    def sigkill(tagged):
        pid = tagged[0][1][1]
        os.kill(pid, signal.SIGKILL)
        return pid

    kill_a_worker_under_load(srv, sigkill,
                             r"ERROR: +worker \d \(pid %d\) died from signal 9 \(Killed\)")


# --------------------------------------------------------------------------
# 4. the private plugin folder


@pytest.fixture
def tmpdir_for_server():
    d = tempfile.mkdtemp(prefix="evicorn-faults-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(bool(env_wrapper()), reason="a wrapper such as valgrind needs TMPDIR itself")
@pytest.mark.parametrize("kind,reason", [
    ("missing", "No such file or directory"),
    ("a-file", "Not a directory"),
])
def test_unusable_tmpdir_at_start_is_one_line_and_exit_1(tmpdir_for_server, kind, reason):
    target = os.path.join(tmpdir_for_server, kind)
    if kind == "a-file":
        open(target, "w").close()
    env = dict(os.environ, TMPDIR=target)
    res = run_cli("--host", "127.0.0.1", "--port", 0, "--plugins", tmpdir_for_server, env=env)
    assert res.returncode == 1, res
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ERROR:"), lines
    assert "cannot create a private folder for plugin copies in %s: %s" % (target, reason) \
        in lines[0], lines


def private_dir_of(srv, tmp):
    (d,) = glob.glob(os.path.join(tmp, "evicorn-%d-*" % srv.pid))
    return d


def version_of(srv):
    with srv.connect() as c:
        r = c.request(VERSION_REQ)
    return r.status, r.body


def test_private_dir_replaced_by_a_file_refuses_the_drop_with_one_line(make_server,
                                                                       tmpdir_for_server):
    srv = with_probe(make_server(wrapper=["env", "TMPDIR=" + tmpdir_for_server]))
    private = private_dir_of(srv, tmpdir_for_server)
    os.rmdir(private)  # empty: copies are unlinked once mapped
    open(private, "w").close()
    try:
        mark = len(srv.stderr.snapshot())
        deploy(srv, plugin_util.plugin_path("probe_v2"), "probe.so")
        rx = r"ERROR: +plugin .*/probe\.so refused: cannot copy to %s/\S+: Not a directory$" \
            % private
        assert srv.wait_for_log(rx, scaled(3), start=mark), srv.output()
        assert version_of(srv) == (200, b"1")
        time.sleep(0.3)
        assert log_count(srv, r"refused", mark) == 1, srv.output()
    finally:
        os.unlink(private)
        os.mkdir(private, 0o700)
    mark = len(srv.stderr.snapshot())
    deploy(srv, plugin_util.plugin_path("probe_v2"), "probe.so")
    assert srv.wait_for_log(r"plugin probe\.so: replaced probe 1", scaled(3), start=mark)
    assert version_of(srv) == (200, b"2")


def test_private_dir_removed_refuses_a_new_plugin_with_one_line(make_server, tmpdir_for_server):
    # A /tmp cleaner may remove the folder of a long-running server.
    srv = make_server(wrapper=["env", "TMPDIR=" + tmpdir_for_server])
    private = private_dir_of(srv, tmpdir_for_server)
    os.rmdir(private)
    try:
        mark = len(srv.stderr.snapshot())
        deploy(srv, plugin_util.plugin_path("probe"), "probe.so")
        rx = r"ERROR: +plugin .*/probe\.so refused: cannot copy to %s/\S+: No such file or " \
            r"directory$" % private
        assert srv.wait_for_log(rx, scaled(3), start=mark), srv.output()
        assert_not_found(srv.connect().request(get("/")))
    finally:
        os.mkdir(private, 0o700)


FSIZE_LIMIT = 1 << 20


def test_plugin_larger_than_the_file_size_limit_is_refused_and_the_server_lives(
        make_server, tmpdir_for_server):
    # A full disk, portably: copies beyond RLIMIT_FSIZE fail with EFBIG, and
    # SIGXFSZ must not kill the worker.
    srv = with_probe(make_server(wrapper=["prlimit", "--fsize=%d" % FSIZE_LIMIT]))
    workers = srv.wait_workers(1)
    big = os.path.join(tmpdir_for_server, "big.so")
    with open(plugin_util.plugin_path("probe_v2"), "rb") as src, open(big, "wb") as dst:
        dst.write(src.read())
        dst.write(b"\0" * (2 * FSIZE_LIMIT))  # trailing bytes: still a loadable ELF
    mark = len(srv.stderr.snapshot())
    deploy(srv, big, "probe.so")
    assert srv.wait_for_log(r"ERROR: +plugin .*/probe\.so refused: cannot copy to \S+: "
                            r"File too large$", scaled(3), start=mark), srv.output()
    assert version_of(srv) == (200, b"1")
    time.sleep(0.3)
    assert log_count(srv, r"refused", mark) == 1, srv.output()
    assert srv.worker_pids() == workers
    assert not srv.wait_for_log(r"died from signal", 0.1, start=mark)
    # No half copy left behind.
    assert os.listdir(private_dir_of_any(srv)) == []
    mark = len(srv.stderr.snapshot())
    deploy(srv, plugin_util.plugin_path("probe_v2"), "probe.so")
    assert srv.wait_for_log(r"plugin probe\.so: replaced probe 1", scaled(3), start=mark)
    assert version_of(srv) == (200, b"2")


def private_dir_of_any(srv):
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return private_dir_of(srv, tmp)


# --------------------------------------------------------------------------
# 5. file-descriptor exhaustion


NOFILE = 64
EMFILE_RX = r"WARNING: +accept on \S+ failed: Too many open files"


def test_running_out_of_descriptors_pauses_accept_quietly_and_recovers(make_server):
    srv = make_server("--timeout-header", 30, "--timeout-keep-alive", 30, "--no-access-log",
                      wrapper=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE)])
    (worker,) = srv.wait_workers(1)
    wait_serving(srv.port)
    held = []
    try:
        # More connections than the worker has descriptors: the rest wait in
        # the listen queue.
        for _ in range(NOFILE + 40):
            held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=scaled(5)))
        assert srv.wait_for_log(EMFILE_RX, scaled(3)), srv.output()
        cpu0, t0 = cpu_seconds(worker), time.monotonic()
        time.sleep(1.5)
        busy = (cpu_seconds(worker) - cpu0) / (time.monotonic() - t0)
        assert busy < 0.2 * SCALE, "worker used %.0f%% of a core while saturated" % (busy * 100)
        assert log_count(srv, EMFILE_RX) == 1, srv.output()
        assert pid_alive(srv.pid) and pid_alive(worker)
    finally:
        for s in held:
            s.close()
    assert_not_found(wait_serving(srv.port, timeout=scaled(3)))
    for i in range(5):
        with srv.connect() as c:
            assert_not_found(c.request(get("/again/%d" % i)))
    assert srv.worker_pids() == [worker]
