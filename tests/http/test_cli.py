"""Command line: errors, --version/--help, --uds and --fd listeners."""
import os
import signal
import socket
import tempfile
import time

import pytest

from evicorn_harness import Conn, assert_not_found, get, run_cli


def assert_usage_error(res):
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("evicorn: error: "), res.stderr
    assert res.stdout == "", res.stdout
    return lines[0]


def test_unknown_flag_exit_2():
    line = assert_usage_error(run_cli("--no-such-flag"))
    assert "--no-such-flag" in line


def test_unknown_short_flag_exit_2():
    assert_usage_error(run_cli("-x"))


@pytest.mark.parametrize("args", [
    ("--port", "abc"),
    ("--port", "70000"),
    ("--workers", "-3"),
    ("--log-level", "loud"),
    ("--limit-body", "12Q"),
    ("--timeout-keep-alive", "soon"),
    ("--header", "no-colon"),
    ("--port",),
], ids=lambda a: " ".join(a))
def test_bad_value_exit_2(args):
    assert_usage_error(run_cli(*args))


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "evicorn 0.1.0\n"
    assert res.stderr == ""


def test_help_lists_flags():
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    assert "--timeout-keep-alive" in res.stdout
    assert "--limit-body" in res.stdout
    assert res.stderr == ""


def test_help_shows_no_value_for_valueless_flags():
    # --version and --help take no value (passing one is an error), so the
    # help must not advertise "--version VALUE".
    res = run_cli("--help")
    assert res.returncode == 0
    lines = {l.split()[0]: l for l in res.stdout.splitlines() if l.startswith("  --")}
    assert lines["--version"].split()[1] != "VALUE", lines["--version"]
    assert lines["--help"].split()[1] != "VALUE", lines["--help"]
    assert_usage_error(run_cli("--version=1"))


def test_bad_app_exit_2():
    line = assert_usage_error(run_cli("main"))
    assert "main" in line


def test_uds_serves_and_is_removed(make_server):
    d = tempfile.mkdtemp(prefix="evicorn-uds-")
    path = os.path.join(d, "x.sock")
    try:
        srv = make_server(listen=["--uds", path])
        assert srv.address == "unix:" + path, srv.address
        assert os.path.exists(path)
        with Conn.unix(path) as c:
            r = c.request(get("/over-unix"))
            assert_not_found(r)
            assert_not_found(c.request(get("/again")))
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0, srv.output()
        assert not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(d)


def test_uds_access_log(make_server):
    d = tempfile.mkdtemp(prefix="evicorn-uds-")
    path = os.path.join(d, "x.sock")
    srv = None
    try:
        srv = make_server(listen=["--uds", path])
        with Conn.unix(path) as c:
            assert_not_found(c.request(get("/unix-log")))
        assert srv.wait_for_access_log(r'"GET /unix-log HTTP/1\.1" 404 Not Found$', 3.0), srv.output()
    finally:
        if srv:
            srv.stop()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(d)


def test_fd_inherited_socket(make_server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        fd = sock.fileno()
        srv = make_server(listen=["--fd", str(fd)], pass_fds=(fd,))
        assert srv.address == "http://127.0.0.1:%d" % port, srv.address
        # Close our copy: only the server's can accept now.
        sock.close()
        with Conn.tcp(port) as c:
            assert_not_found(c.request(get("/via-fd")))
    finally:
        sock.close()


def test_fd_not_a_socket():
    r, w = os.pipe()
    try:
        res = run_cli("--fd", str(r), "--plugins", tempfile.gettempdir(), pass_fds=(r,))
    finally:
        os.close(r)
        os.close(w)
    assert res.returncode != 0
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "--fd %d" % r in lines[0], res.stderr


def test_port_in_use(tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        res = run_cli("--host", "127.0.0.1", "--port", port, "--plugins", tmp_path, timeout=10)
        assert time.monotonic() - t0 < 5
    finally:
        busy.close()
    assert res.returncode != 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "127.0.0.1:%d" % port in lines[0], res.stderr
    assert "in use" in lines[0].lower(), res.stderr
