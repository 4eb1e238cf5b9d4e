"""systemd socket activation: sockets passed from fd 3 on, for the process
whose pid is $LISTEN_PID, named by $LISTEN_FDNAMES (sd_listen_fds(3)).

A small wrapper stands in for systemd: it moves the test's listening
sockets to fds 3, 4, ..., sets LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID
(its own pid, which exec keeps), then execs evicorn."""
import socket
import subprocess
import sys

from evicorn_harness import (Conn, assert_not_found, env_wrapper, evicorn_bin, get,
                             time_scale)

# argv: pid-mode ("self" or a number), names ("" for none), fd..., "--", command...
ACTIVATE = r'''
import fcntl, os, sys
pid, names, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
cut = rest.index("--")
fds, cmd = [int(x) for x in rest[:cut]], rest[cut + 1:]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 3, 4, ...
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid()) if pid == "self" else pid
if names:
    os.environ["LISTEN_FDNAMES"] = names
os.execvp(cmd[0], cmd)
'''


def activate(socks, names="", pid="self"):
    """The wrapper for Server(wrapper=...) and the fds to pass."""
    fds = [s.fileno() for s in socks]
    return [sys.executable, "-c", ACTIVATE, pid, names] + [str(f) for f in fds] + ["--"], fds


def tcp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def unix_listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    return s


def run_wrapped(wrapper, fds, tmp_path, *args):
    """Runs the wrapped server to its exit (for starts that fail)."""
    return subprocess.run(wrapper + env_wrapper() + [evicorn_bin(), "--plugins", str(tmp_path)]
                          + list(args), capture_output=True, text=True, pass_fds=fds,
                          stdin=subprocess.DEVNULL, timeout=10 * time_scale())


def test_every_activated_socket_is_served_tcp_and_unix(make_server, tmp_path):
    a, b = tcp_listener(), tcp_listener()
    path = str(tmp_path / "web.sock")
    u = unix_listener(path)
    ports = [a.getsockname()[1], b.getsockname()[1]]
    wrapper, fds = activate([a, b, u], "web:admin:local")
    try:
        srv = make_server(listen=[], wrapper=wrapper, pass_fds=fds)
    finally:
        for s in (a, b, u):
            s.close()  # only the server's copies are left
    assert srv.wait_for_log(r"unix:%s \(workers" % path, 5), srv.output()
    running = [line for line in srv.stderr.snapshot() if "evicorn running on" in line]
    assert len(running) == 3, srv.output()
    for port in ports:
        assert any("http://127.0.0.1:%d " % port in line for line in running), running
    assert any("unix:%s " % path in line for line in running), running
    for port in ports:
        with Conn.tcp(port) as c:
            assert_not_found(c.request(get("/on-%d" % port)))
    with Conn.unix(path) as c:
        assert_not_found(c.request(get("/on-unix")))


def test_activated_sockets_are_close_on_exec(make_server):
    a = tcp_listener()
    wrapper, fds = activate([a], "web")
    try:
        srv = make_server(listen=[], wrapper=wrapper, pass_fds=fds)
    finally:
        a.close()
    # The sockets are close-on-exec: nothing the server runs inherits them.
    fd_flags = open("/proc/%d/fdinfo/3" % srv.pid).read()
    flags = int(next(l.split()[1] for l in fd_flags.splitlines() if l.startswith("flags:")), 8)
    assert flags & 0o2000000, fd_flags  # O_CLOEXEC


def test_fd_name_serves_only_the_named_sockets(make_server):
    a, b = tcp_listener(), tcp_listener()
    pa, pb = a.getsockname()[1], b.getsockname()[1]
    wrapper, fds = activate([a, b], "web:admin")
    try:
        srv = make_server("--fd-name", "admin", listen=[], wrapper=wrapper, pass_fds=fds)
    finally:
        a.close()
        b.close()
    assert srv.port == pb, srv.output()
    with Conn.tcp(pb) as c:
        assert_not_found(c.request(get("/admin")))
    # The other socket was closed: nothing listens on its port any more.
    try:
        socket.create_connection(("127.0.0.1", pa), timeout=2).close()
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused


def test_sockets_meant_for_another_pid_are_ignored(make_server):
    a = tcp_listener()
    pa = a.getsockname()[1]
    wrapper, fds = activate([a], "web", pid="1")
    try:
        srv = make_server(wrapper=wrapper, pass_fds=fds)  # --host/--port as usual
        assert srv.port and srv.port != pa, srv.output()
        with Conn.tcp(srv.port) as c:
            assert_not_found(c.request(get("/")))
    finally:
        a.close()


def test_a_passed_fd_that_is_not_listening_is_one_line_and_exit_2(tmp_path):
    bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bound.bind(("127.0.0.1", 0))  # bound, never listen()ed
    wrapper, fds = activate([bound], "web")
    try:
        res = run_wrapped(wrapper, fds, tmp_path)
    finally:
        bound.close()
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "fd 3 ('web') is not a listening stream socket" in lines[0], lines


def test_fd_with_activation_is_a_usage_error(tmp_path):
    a = tcp_listener()
    wrapper, fds = activate([a], "web")
    try:
        res = run_wrapped(wrapper, fds, tmp_path, "--fd", "3")
    finally:
        a.close()
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "--fd cannot be used with systemd socket activation" in res.stderr, res.stderr


# Answers with the socket-activation variables its os.environ still has.
ENV_APP = '''\
import os

async def app(scope, receive, send):
    names = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
    left = ",".join(n for n in names if n in os.environ) or "none"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": left.encode()})
'''


def test_an_app_does_not_see_the_activation_variables(make_server, tmp_path):
    # sd_listen_fds(3) removes them, so that nothing the app starts takes
    # the sockets for its own; Python's os.environ is a copy of its own.
    (tmp_path / "envapp.py").write_text(ENV_APP)
    a = tcp_listener()
    pa = a.getsockname()[1]
    wrapper, fds = activate([a], "web")
    try:
        srv = make_server("envapp:app", "--app-dir", tmp_path, "--lifespan", "off", listen=[],
                          wrapper=wrapper, pass_fds=fds, ready_timeout=20.0)
    finally:
        a.close()
    assert srv.port == pa, srv.output()
    with Conn.tcp(pa) as c:
        r = c.request(get("/"))
    assert (r.status, r.body) == (200, b"none"), (r, srv.output())
