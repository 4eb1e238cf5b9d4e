"""WebSocket interoperability: independent clients against the server's
echo route (examples/chat's GET /ws/echo).

- The Python `websockets` library (PyPI, pinned in requirements-asgi.txt),
  its synchronous client: text and binary messages of 0 B .. 16 MiB - 1
  with permessage-deflate (its default offer) and without
  (compression=None), each echoed byte for byte; ws.ping(); close codes
  both ways (the client's echoed, the server's 1009 for a message past
  --ws-max-size).
- Node's `ws` package (installed by ctest's node_ws fixture into
  <build>/node): tests/http/ws_node_client.js does the same size table
  with perMessageDeflate on and off, a ping and closes, and reports JSON.

Runs on the PyPI venv (tests/CMakeLists.txt). The Node half is skipped only
when there is no node executable.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from evicorn_harness import serving_plugin_copy, time_scale

websockets = pytest.importorskip("websockets", reason="needs the websockets library (PyPI venv)")
from websockets.exceptions import ConnectionClosedError  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(HERE, "..", "..", "build", "plugins")
SCALE = time_scale()
TIMEOUT = 60.0 * SCALE

MIB = 1024 * 1024
MAX_SIZE = 16 * MIB  # the server's default --ws-max-size
SIZES = [0, 1, 125, 126, 65535, 65536, MIB, MAX_SIZE - 1]
CLOSE_CODES = [1000, 1001, 1003, 1008, 1011, 3000, 4000, 4999]
DEFLATE_ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def text_of(n):
    """A str of exactly n bytes of UTF-8, with 2- and 3-byte characters."""
    unit = "h\u00e9llo w\u00f6rld \u20ac 0123456789 "
    raw = (unit.encode() * (n // len(unit.encode()) + 1))[:n]
    s = raw.decode("utf-8", "ignore")
    return s + " " * (n - len(s.encode()))


def binary_of(n):
    return bytes((i * 31 + (i >> 8)) & 0xFF for i in range(min(n, 65536))) * (n // 65536) + \
        bytes((i * 31 + (i >> 8)) & 0xFF for i in range(n % 65536))


@pytest.fixture(scope="module")
def echo_server():
    with serving_plugin_copy(os.path.join(PLUGINS, "chat.so"), "evicorn-ws-interop-") as srv:
        yield srv


def url(srv):
    return "ws://127.0.0.1:%d/ws/echo" % srv.port


# --------------------------------------------------------------------------
# websockets (Python)


class Client:
    """A websockets connection that records, for each data frame the server
    sent, whether it came compressed (RSV1)."""

    def __init__(self, srv, compression):
        self.conn = connect(url(srv), compression=compression, max_size=64 * MIB, proxy=None,
                            ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)
        self.ws = self.conn.__enter__()
        self.rsv1 = []
        for ext in self.ws.protocol.extensions:
            decode = ext.decode

            def record(frame, *a, _decode=decode, **kw):
                if frame.opcode.name in ("TEXT", "BINARY"):
                    self.rsv1.append(frame.rsv1)
                return _decode(frame, *a, **kw)
            ext.decode = record

    @property
    def answer(self):
        return self.ws.response.headers.get("Sec-WebSocket-Extensions")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.conn.__exit__(*exc)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])
def test_websockets_echo(echo_server, compression, kind, size):
    msg = text_of(size) if kind == "text" else binary_of(size)
    with Client(echo_server, compression) as c:
        if compression:
            assert c.answer == DEFLATE_ANSWER
            assert [e.name for e in c.ws.protocol.extensions] == ["permessage-deflate"]
        else:
            assert c.answer is None
            assert c.ws.protocol.extensions == []
        c.ws.send(msg)
        got = c.ws.recv(timeout=TIMEOUT)
        assert type(got) is type(msg), "echo came as %s" % type(got).__name__
        assert len(got) == len(msg) and got == msg
        # The server compresses what it sends on a deflate connection.
        assert c.rsv1 == ([True] if compression else [])


@pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])
def test_websockets_many_messages_both_kinds(echo_server, compression):
    # Messages of both kinds back to back, echoes read after all are sent:
    # order and contents kept (with deflate: no context kept between them).
    msgs = [text_of(n) if n % 2 else binary_of(n) for n in range(1, 400, 7)]
    with Client(echo_server, compression) as c:
        for m in msgs:
            c.ws.send(m)
        for m in msgs:
            assert c.ws.recv(timeout=TIMEOUT) == m


@pytest.mark.parametrize("payload", [b"", b"ping", bytes(range(125))],
                         ids=["empty", "short", "125"])
@pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])
def test_websockets_ping_pong(echo_server, compression, payload):
    with Client(echo_server, compression) as c:
        pong = c.ws.ping(payload)
        assert pong.wait(TIMEOUT), "no pong"
        # The connection goes on after it.
        c.ws.send("after the ping")
        assert c.ws.recv(timeout=TIMEOUT) == "after the ping"


def test_websockets_ping_during_a_large_message(echo_server):
    # A ping sent while a 16 MiB - 1 message is on its way: the pong comes,
    # and the message is echoed whole.
    msg = binary_of(MAX_SIZE - 1)
    with Client(echo_server, "deflate") as c:
        sender = threading.Thread(target=c.ws.send, args=(msg,))
        sender.start()
        pong = c.ws.ping(b"meanwhile")
        sender.join(TIMEOUT)
        assert pong.wait(TIMEOUT)
        assert c.ws.recv(timeout=TIMEOUT) == msg


@pytest.mark.parametrize("code", CLOSE_CODES)
def test_websockets_close_code_is_echoed(echo_server, code):
    with Client(echo_server, "deflate") as c:
        c.ws.close(code, "closing with %d" % code)
        assert c.ws.close_code == code  # the code of the server's close frame
        assert c.ws.close_reason == ""


def test_websockets_message_past_max_size_gets_1009(echo_server):
    with Client(echo_server, None) as c:
        c.ws.send(b"x" * (MAX_SIZE + 1))
        with pytest.raises(ConnectionClosedError) as e:
            c.ws.recv(timeout=TIMEOUT)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009, e.value


def test_websockets_compressed_message_inflating_past_max_size_gets_1009(echo_server):
    # 17 MiB of zeros compress to some KiB: the limit holds for the inflated size.
    with Client(echo_server, "deflate") as c:
        c.ws.send(bytes(MAX_SIZE + MIB))
        with pytest.raises(ConnectionClosedError) as e:
            c.ws.recv(timeout=TIMEOUT)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009, e.value


def chat_server(make_server, *args):
    """A server of its own with flags args; the caller removes the plugins
    folder it returns."""
    plugins = tempfile.mkdtemp(prefix="evicorn-ws-interop-")
    shutil.copy(os.path.join(PLUGINS, "chat.so"), plugins)
    srv = make_server(*args, plugins=plugins)
    assert srv.wait_for_log(r"plugin chat\.so: loaded", 10), srv.output()
    return srv, plugins


def test_websockets_offer_declined_with_no_ws_per_message_deflate(make_server):
    srv, plugins = chat_server(make_server, "--no-ws-per-message-deflate")
    try:
        with Client(srv, "deflate") as c:
            assert c.answer is None and c.ws.protocol.extensions == []
            for m in ("x" * 5000, b"y" * 70000):
                c.ws.send(m)
                assert c.ws.recv(timeout=TIMEOUT) == m
            assert c.rsv1 == []
    finally:
        shutil.rmtree(plugins, ignore_errors=True)


@pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])
def test_websockets_ws_max_size_flag(make_server, compression):
    srv, plugins = chat_server(make_server, "--ws-max-size", "1000")
    try:
        with Client(srv, compression) as c:
            c.ws.send("a" * 1000)
            assert c.ws.recv(timeout=TIMEOUT) == "a" * 1000
            c.ws.send("a" * 1001)
            with pytest.raises(ConnectionClosedError) as e:
                c.ws.recv(timeout=TIMEOUT)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009, e.value
    finally:
        shutil.rmtree(plugins, ignore_errors=True)


def test_websockets_shutdown_closes_with_1001(make_server):
    # The server going away tells the client so (1001), and the client's
    # answer completes the closing handshake.
    srv, plugins = chat_server(make_server)
    try:
        with Client(srv, "deflate") as c:
            c.ws.send("hello")
            assert c.ws.recv(timeout=TIMEOUT) == "hello"
            srv.signal(signal.SIGTERM)
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                c.ws.recv(timeout=TIMEOUT)
            assert c.ws.close_code == 1001
        assert srv.wait_exit(10 * SCALE) is not None, srv.output()
    finally:
        shutil.rmtree(plugins, ignore_errors=True)


# --------------------------------------------------------------------------
# ws (Node)


def node_modules():
    explicit = os.environ.get("EVICORN_NODE_MODULES")
    if explicit:
        return explicit
    build = os.path.dirname(os.path.abspath(os.environ.get("EVICORN_BIN") or
                                            os.path.join(HERE, "..", "..", "build", "evicorn")))
    return os.path.join(build, "node", "node_modules")


NODE_CLOSE_CODES = [1000, 1001, 3000, 4999]
_node_runs = {}


def node_run(srv, mode):
    """The node client's JSON report for permessage-deflate on or off (run
    once per mode)."""
    if mode in _node_runs:
        return _node_runs[mode]
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/install-deps installs nodejs and npm)")
    modules = node_modules()
    assert os.path.isfile(os.path.join(modules, "ws", "package.json")), \
        "Node's ws is not installed in %s: ctest's node_ws fixture installs it " \
        "(npm install --prefix <build>/node ws@<version>)" % modules
    env = dict(os.environ, NODE_PATH=modules, WS_NODE_TIMEOUT_MS=str(int(TIMEOUT * 1000)))
    t0 = time.monotonic()
    r = subprocess.run([node, os.path.join(HERE, "ws_node_client.js"), url(srv), mode,
                        ",".join(map(str, SIZES)), ",".join(map(str, NODE_CLOSE_CODES))],
                       capture_output=True, text=True, env=env, timeout=TIMEOUT * 4)
    assert r.returncode == 0 and r.stdout.strip(), \
        "node client failed (%d)\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout[-2000:],
                                                              r.stderr[-2000:])
    out = json.loads(r.stdout)
    out["seconds"] = time.monotonic() - t0
    _node_runs[mode] = out
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
@pytest.mark.parametrize("mode", ["on", "off"], ids=["deflate", "plain"])
def test_node_ws_echo(echo_server, mode, kind, size):
    out = node_run(echo_server, mode)
    rec = [m for m in out["messages"] if m["size"] == size and m["binary"] == (kind == "binary")]
    assert len(rec) == 1, out
    rec = rec[0]
    assert rec["ok"], "ws %s: %s" % (out["ws"], rec)
    assert rec["compressed"] is (mode == "on"), rec


@pytest.mark.parametrize("mode", ["on", "off"], ids=["deflate", "plain"])
def test_node_ws_negotiation_ping_and_closes(echo_server, mode):
    out = node_run(echo_server, mode)
    if mode == "on":
        assert out["extensions"] == "permessage-deflate" and out["answer"] == DEFLATE_ANSWER, out
    else:
        assert out["extensions"] == "" and out["answer"] is None, out
    assert out["ping"] == {"ok": True, "error": None}, out
    assert out["close"] == {"code": 1000, "reason": ""}, out
    assert [(c["sent"], c["code"]) for c in out["closes"]] == \
        [(c, c) for c in NODE_CLOSE_CODES], out
