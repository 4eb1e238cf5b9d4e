"""Native WebSocket routes (ABI 1.2), black-box: the opening handshake, the
frame rules of RFC 6455, size limits, compression, the closing handshake,
keepalive, shutdown, sync routes and their backpressure, and the example
chat plugin.

The clients are raw sockets (ws_raw): every byte on the wire is the test's.
The server side is the example plugin examples/chat (/ws/echo,
/ws/chat/{room}) and the test plugin tests/plugins/wsprobe, whose
GET /wsprobe/closes/{tag} says what the plugin itself saw of a connection
(its close code and reason, and the results of its calls).
"""
import base64
import json
import os
import re
import select
import signal
import socket
import struct
import time
import zlib

import pytest

import plugin_util
import ws_raw
from evicorn_harness import Server, time_scale
from ws_raw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(HERE, "..", "..", "build", "plugins")
SCALE = time_scale()
T = 5.0 * SCALE  # the bound of one expected event

EVICORN_EINVAL = -22
EVICORN_EPIPE = -32
EVICORN_EALREADY = -114
EVICORN_ECANCELED = -125


# --------------------------------------------------------------------------
# servers

# What the sanitizers print (the ASan build) when they find something.
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")


def stop_checked(srv):
    """Stops srv; asserts no sanitizer report in what it printed."""
    srv.stop()
    m = SANITIZER_RE.search("\n".join(srv.stderr.snapshot()))
    assert not m, srv.output()


def deploy_and_wait(srv, src, name):
    start = len(srv.stderr.snapshot())
    plugin_util.deploy(srv, src, name)
    m = srv.wait_for_log(r"plugin %s: loaded" % name.replace(".", r"\."), 10.0, start=start)
    assert m, srv.output()


def chat_path():
    path = os.path.join(PLUGINS, "chat.so")
    assert os.path.isfile(path), "%s is not built" % path
    return path


def start_probe(*args, chat=False):
    """A server with wsprobe (and the chat example) in a private plugins
    folder; the caller stops it."""
    srv = Server(*args).start()
    try:
        deploy_and_wait(srv, plugin_util.plugin_path("wsprobe"), "wsprobe.so")
        if chat:
            deploy_and_wait(srv, chat_path(), "chat.so")
    except BaseException:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="module")
def srv():
    """Default settings: wsprobe and the chat example."""
    s = start_probe(chat=True)
    try:
        yield s
    finally:
        stop_checked(s)


@pytest.fixture(scope="module")
def small():
    """--ws-max-size 1024 and --ws-max-queue 2."""
    s = start_probe("--ws-max-size", "1024", "--ws-max-queue", "2")
    try:
        yield s
    finally:
        stop_checked(s)


@pytest.fixture
def probe_server():
    """Factory: a server with these flags and wsprobe, stopped (and checked)
    after the test."""
    started = []

    def factory(*args):
        s = start_probe(*args)
        started.append(s)
        return s

    yield factory
    errors = []
    for s in started:
        try:
            stop_checked(s)
        except Exception as e:  # stop the others all the same
            errors.append(e)
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------
# helpers


_tags = iter(range(1, 1 << 30))


def new_tag(name):
    return "%s-%d-%d" % (name, os.getpid(), next(_tags))


def connect(s, path, extra=(), **kw):
    return ws_raw.connect(s.port, path, extra=extra, timeout=T, **kw)


def http(s, request, timeout=T):
    with s.connect(timeout=timeout) as c:
        return c.request(request)


def get(s, path):
    return http(s, ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())


def seen(s, tag, timeout=T):
    """What wsprobe saw of the connection tagged `tag`, once it ended."""
    deadline = time.monotonic() + timeout
    while True:
        r = get(s, "/wsprobe/closes/" + tag)
        if r.status == 200:
            return json.loads(r.body)
        assert r.status == 404, r
        if time.monotonic() > deadline:
            raise AssertionError("wsprobe saw no end of %s within %.1f s\n%s"
                                 % (tag, timeout, s.output()))
        time.sleep(0.02)


def not_seen_yet(s, tag):
    r = get(s, "/wsprobe/closes/" + tag)
    assert r.status == 404, r.body


def next_frame(ws, timeout=T):
    ws.sock.settimeout(timeout)
    return ws.recv_frame()


def no_frame_within(ws, seconds):
    """Nothing arrives (and the connection stays open) for `seconds`."""
    if ws.buf:
        raise AssertionError("unexpected bytes: %r" % ws.buf[:200])
    r, _, _ = select.select([ws.sock], [], [], seconds)
    if r:
        data = ws.sock.recv(65536, socket.MSG_PEEK)
        raise AssertionError("unexpected %s: %r" % ("bytes" if data else "close", data[:200]))


def expect_eof(ws, timeout=T):
    """The server closes the TCP connection, sending nothing more first."""
    assert ws.buf == b"", "bytes after the close frame: %r" % ws.buf[:200]
    ws.sock.settimeout(timeout)
    try:
        data = ws.sock.recv(65536)
    except ConnectionResetError:
        data = b""
    assert data == b"", "bytes after the close frame: %r" % data[:200]


def expect_close(ws, code, reason=None, timeout=T):
    """The next frame is a close with `code` (and `reason`, when given).
    Returns the reason."""
    fin, rsv, op, payload = next_frame(ws, timeout)
    assert (fin, rsv, op) == (True, 0, OP_CLOSE), (fin, rsv, op, payload[:200])
    got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    assert got == code, "close code %r, expected %r (payload %r)" % (got, code, payload)
    if reason is not None:
        assert payload[2:] == reason
    return payload[2:]


def fails_with(s, path, tag, code, *frames, raw=b""):
    """Sends frames (already encoded) and raw bytes; the server must answer
    with a close frame carrying `code`, close the connection, and the plugin
    must hear the same code."""
    ws = connect(s, "%s?tag=%s" % (path, tag))
    try:
        ws.send_raw(b"".join(frames) + raw)
        expect_close(ws, code)
        expect_eof(ws)
    finally:
        ws.shutdown()
    got = seen(s, tag)
    assert got["code"] == code, got
    return got


def close_cleanly(ws, code=1000):
    ws.close(code)
    expect_close(ws, code)
    expect_eof(ws)
    ws.shutdown()


def close_among_pings(ws):
    """close_cleanly for a connection the server may ping meanwhile."""
    ws.close(1000)
    while True:
        fin, rsv, op, payload = next_frame(ws)
        if op != OP_PING:
            break
    assert (op, payload) == (OP_CLOSE, struct.pack("!H", 1000))
    expect_eof(ws)
    ws.shutdown()


def handshake(s, lines, path="/wsprobe/echo"):
    """Sends a handshake of these header lines; returns the response."""
    head = "GET %s HTTP/1.1\r\nHost: t\r\n" % path
    if lines and lines[0].startswith(("GET ", "POST ", "PUT ")):
        head, lines = lines[0] + "\r\nHost: t\r\n", lines[1:]
    c = s.connect(timeout=T)
    try:
        r = c.request((head + "".join(x + "\r\n" for x in lines) + "\r\n").encode())
        # A refused handshake closes the connection after its answer.
        if r.status != 101 and r.header("connection") == "close":
            c.assert_closed(T)
        return r
    finally:
        c.close()


KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GOOD = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + KEY,
        "Sec-WebSocket-Version: 13"]


def without(name, lines=GOOD):
    return [x for x in lines if not x.lower().startswith(name.lower() + ":")]


def detail(r):
    assert r.header("content-type") == "application/json", r
    d = json.loads(r.body)["detail"]
    assert isinstance(d, str) and d, r
    return d


# --------------------------------------------------------------------------
# the opening handshake (RFC 6455 4.2.1, 4.2.2)


def test_handshake_answers_101_with_the_accept_key_of_rfc_6455(srv):
    r = handshake(srv, GOOD)
    assert r.status == 101, r
    assert r.reason == "Switching Protocols"
    assert r.header("upgrade") == "websocket"
    assert r.header("connection") == "Upgrade"
    assert r.header("sec-websocket-accept") == ACCEPT
    assert r.header("server") == "evicorn" and r.header("date")
    assert r.header("content-length") is None and r.header("transfer-encoding") is None
    # No extension was offered, none is answered; no subprotocol either.
    assert r.header("sec-websocket-extensions") is None
    assert r.header("sec-websocket-protocol") is None


@pytest.mark.parametrize("upgrade,connection", [("WebSocket", "keep-alive, UPGRADE"),
                                                ("websocket, foo", "Upgrade"),
                                                ("foo/1, WEBSOCKET", "upgrade, close")])
def test_handshake_tokens_are_matched_in_lists_regardless_of_case(srv, upgrade, connection):
    r = handshake(srv, ["Upgrade: " + upgrade, "Connection: " + connection,
                        "Sec-WebSocket-Key: " + KEY, "Sec-WebSocket-Version: 13"])
    assert r.status == 101, r
    assert r.header("sec-websocket-accept") == ACCEPT


def test_handshake_after_a_request_on_the_same_keep_alive_connection(srv):
    c = srv.connect(timeout=T)
    try:
        r = c.request(b"GET /wsprobe/version HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (r.status, r.body) == (200, b"1")
        request, _ = ws_raw.handshake_request("/wsprobe/echo")
        c.send(request + ws_raw.frame(OP_TEXT, b"upgraded"))
        status, headers, rest = ws_raw.read_head(c.sock)
        assert status == 101
        ws = ws_raw.WS(c.sock, headers, c.buf + rest)
        assert ws.recv_message() == (OP_TEXT, b"upgraded")
        close_cleanly(ws)
    finally:
        c.close()


def test_handshake_pipelined_behind_a_request_waits_for_its_response(srv):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=T)
    request, _ = ws_raw.handshake_request("/wsprobe/echo")
    sock.sendall(b"GET /wsprobe/version HTTP/1.1\r\nHost: t\r\n\r\n" + request
                 + ws_raw.frame(OP_TEXT, b"pipelined"))
    first = b"content-length: 1\r\n\r\n1"
    data = b""
    while first not in data or b"\r\n\r\n" not in data.split(first, 1)[1]:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    head, rest = data.split(first, 1)[1].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), data
    ws = ws_raw.WS(sock, [], rest)
    assert ws.recv_message() == (OP_TEXT, b"pipelined")
    close_cleanly(ws)


@pytest.mark.parametrize("framing,body", [
    ("Content-Length: 4", b"abcd"),
    ("Transfer-Encoding: chunked", b"4\r\nabcd\r\n0\r\n\r\n"),
])
def test_a_handshake_body_is_not_read_as_frames(srv, framing, body):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=T)
    name, value = framing.split(": ")
    request, _ = ws_raw.handshake_request("/wsprobe/echo", extra=[(name, value)])
    sock.sendall(request + body + ws_raw.frame(OP_TEXT, b"first frame"))
    status, headers, rest = ws_raw.read_head(sock)
    assert status == 101
    ws = ws_raw.WS(sock, headers, rest)
    assert ws.recv_message() == (OP_TEXT, b"first frame")
    close_cleanly(ws)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_handshake_that_is_not_a_get_is_400(srv, method):
    r = handshake(srv, ["%s /wsprobe/echo HTTP/1.1" % method, "Content-Length: 0"] + GOOD)
    assert r.status == 400, r
    detail(r)
    assert r.header("connection") == "close"


def test_handshake_over_http_1_0_is_400(srv):
    r = handshake(srv, ["GET /wsprobe/echo HTTP/1.0"] + GOOD)
    assert r.status == 400, r
    detail(r)


@pytest.mark.parametrize("key", [
    None,  # missing
    "",
    "abc",
    "dGhlIHNhbXBsZSBub25jZQ",  # no padding
    "dGhlIHNhbXBsZSBub25jZQ==x",
    "dGhlIHNhbXBsZSBub25j!Q==",  # not base64
    "dGhlIHNhbXBsZSBub25jZR==",  # padding bits set: not 16 bytes
    base64.b64encode(b"x" * 15).decode(),
    base64.b64encode(b"x" * 17).decode(),
])
def test_handshake_with_a_missing_or_bad_key_is_400(srv, key):
    lines = without("Sec-WebSocket-Key")
    if key is not None:
        lines.append("Sec-WebSocket-Key: " + key)
    r = handshake(srv, lines)
    assert r.status == 400, r
    detail(r)


def test_handshake_with_two_keys_is_400(srv):
    r = handshake(srv, GOOD + ["Sec-WebSocket-Key: " + KEY])
    assert r.status == 400, r


@pytest.mark.parametrize("connection", [None, "keep-alive", "close", "upgraded"])
def test_handshake_without_connection_upgrade_is_426_with_upgrade(srv, connection):
    lines = without("Connection")
    if connection:
        lines.append("Connection: " + connection)
    r = handshake(srv, lines)
    assert r.status == 426, r
    assert r.header("upgrade") == "websocket"
    detail(r)


@pytest.mark.parametrize("version", [None, "12", "8", "14", "13, 8", "013"])
def test_handshake_of_another_version_is_426_naming_13(srv, version):
    lines = without("Sec-WebSocket-Version")
    if version is not None:
        lines.append("Sec-WebSocket-Version: " + version)
    r = handshake(srv, lines)
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"
    detail(r)


@pytest.mark.parametrize("path", ["/nowhere", "/wsprobe/closes/x", "/ws/echo/more", "/ws/chat"])
def test_handshake_at_a_path_without_a_websocket_route_is_403(srv, path):
    r = handshake(srv, GOOD, path=path)
    assert r.status == 403, r
    detail(r)
    assert r.header("sec-websocket-accept") is None


def test_plain_get_at_a_websocket_only_path_is_404(srv):
    r = get(srv, "/wsprobe/echo")
    assert r.status == 404, r
    r = get(srv, "/ws/echo")
    assert r.status == 404, r


def test_without_upgrade_websocket_the_request_is_ordinary(srv):
    # Connection: Upgrade and the keys alone do not make a handshake.
    r = handshake(srv, without("Upgrade"), path="/wsprobe/version")
    assert (r.status, r.body) == (200, b"1")
    r = handshake(srv, ["Upgrade: h2c"] + without("Upgrade"), path="/wsprobe/version")
    assert (r.status, r.body) == (200, b"1")


def test_a_path_with_both_kinds_of_route_answers_each_kind(srv):
    assert (get(srv, "/wsprobe/version").body) == b"1"
    ws = connect(srv, "/wsprobe/version")
    ws.send_text("hello")
    assert ws.recv_message() == (OP_TEXT, b"1:hello")
    close_cleanly(ws)


def test_ws_none_makes_an_upgrade_an_ordinary_request(probe_server):
    s = probe_server("--ws", "none")
    r = handshake(s, GOOD, path="/wsprobe/version")
    assert (r.status, r.body) == (200, b"1")
    assert r.header("upgrade") is None and r.header("sec-websocket-accept") is None
    r = handshake(s, GOOD, path="/wsprobe/echo")
    assert r.status == 404, r
    # Not even the handshake's own rules apply: it is not a handshake.
    r = handshake(s, ["GET /wsprobe/version HTTP/1.0"] + without("Sec-WebSocket-Key"),
                  path="/wsprobe/version")
    assert (r.status, r.body) == (200, b"1")


def test_first_offered_subprotocol_and_extra_headers_are_answered(srv):
    ws = connect(srv, "/wsprobe/subprotocol?a=1&b=%20x",
                 extra=[("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
                        ("Sec-WebSocket-Protocol", "other"), ("X-Probe", "abra\u00e3o")])
    h = ws.headers
    names = [n for n, _ in h]
    assert ws.header("sec-websocket-protocol") == "chat.v2"
    assert ws.header("x-wsprobe-version") == "1"
    # Failed accepts (a subprotocol not offered, a header that is not a
    # token) said EINVAL and answered nothing.
    assert ws.header("x-failed-accepts") == "subprotocol=%d header=%d" % (EVICORN_EINVAL,
                                                                           EVICORN_EINVAL)
    # The handshake's own headers are the host's: the plugin's are dropped.
    for name in ("upgrade", "connection", "sec-websocket-accept"):
        assert names.count(name) == 1, h
    assert ws.header("connection") == "Upgrade" and ws.header("upgrade") == "websocket"
    ws.send_text("scope")
    op, data = ws.recv_message()
    assert op == OP_TEXT
    scope = json.loads(data)
    assert scope["path"] == "/wsprobe/subprotocol"
    assert scope["raw_path"] == "/wsprobe/subprotocol"
    assert scope["query"] == "a=1&b=%20x"
    assert scope["method"] == "GET"
    assert scope["route"] == "/wsprobe/subprotocol"
    assert scope["http_version"] == "1.1"
    assert scope["x_probe"] == "abra\u00e3o"
    assert scope["subprotocols"] == ["chat.v2", "chat.v1", "other"]
    assert scope["extensions"] == []
    assert scope["second_accept"] == EVICORN_EALREADY
    assert scope["id"] > 0
    close_cleanly(ws)


def test_no_subprotocol_header_when_none_was_offered(srv):
    ws = connect(srv, "/wsprobe/subprotocol")
    assert ws.header("sec-websocket-protocol") is None
    assert ws.header("x-wsprobe-version") == "1"
    close_cleanly(ws)


def test_connection_ids_differ(srv):
    ids = set()
    for _ in range(3):
        ws = connect(srv, "/wsprobe/subprotocol")
        ws.send_text("scope")
        ids.add(json.loads(ws.recv_message()[1])["id"])
        close_cleanly(ws)
    assert len(ids) == 3


@pytest.mark.parametrize("route", ["reject", "reject_sync"])
def test_close_before_accept_refuses_with_403(srv, route):
    with pytest.raises(ws_raw.HandshakeRefused) as e:
        connect(srv, "/wsprobe/" + route)
    assert e.value.status == 403
    assert e.value.body == b""
    assert dict(e.value.headers).get("connection") == "close"


@pytest.mark.parametrize("route", ["reject_custom", "reject_custom_sync"])
def test_a_handler_may_refuse_with_its_own_response(srv, route):
    with pytest.raises(ws_raw.HandshakeRefused) as e:
        connect(srv, "/wsprobe/" + route)
    h = dict(e.value.headers)
    assert e.value.status == 401
    assert h["www-authenticate"] == 'Bearer realm="wsprobe"'
    assert h["content-type"] == "application/json"
    assert h["connection"] == "close"
    assert e.value.body == b'{"detail":"missing token"}'
    assert "sec-websocket-accept" not in h and "upgrade" not in h


@pytest.mark.parametrize("route", ["noaccept", "noaccept_sync"])
def test_a_handler_that_neither_accepts_nor_answers_gets_500(srv, route):
    start = len(srv.stderr.snapshot())
    with pytest.raises(ws_raw.HandshakeRefused) as e:
        connect(srv, "/wsprobe/" + route)
    assert e.value.status == 500
    assert e.value.body == b"Internal Server Error"
    assert srv.wait_for_log(r"WEBSOCKET /wsprobe/%s \(wsprobe\.so\) returned without responding"
                            % route, T, start=start), srv.output()


def test_frames_sent_with_the_handshake_are_read_after_it(srv):
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=T)
    request, key = ws_raw.handshake_request("/wsprobe/echo")
    sock.sendall(request + ws_raw.frame(OP_TEXT, b"early") + ws_raw.frame(OP_BINARY, b"\x00\x01"))
    status, headers, rest = ws_raw.read_head(sock)
    assert status == 101
    ws = ws_raw.WS(sock, headers, rest)
    assert ws.recv_message() == (OP_TEXT, b"early")
    assert ws.recv_message() == (OP_BINARY, b"\x00\x01")
    close_cleanly(ws)


# --------------------------------------------------------------------------
# messages and frames (RFC 6455 5)


def test_echo_example_returns_text_and_binary_as_they_were(srv):
    ws = connect(srv, "/ws/echo")
    for op, data in [(OP_TEXT, "h\u00e9llo \U0001f600".encode()), (OP_BINARY, bytes(range(256))),
                     (OP_TEXT, b""), (OP_BINARY, b""), (OP_BINARY, os.urandom(70000)),
                     (OP_TEXT, b"x" * 126), (OP_TEXT, b"y" * 65535), (OP_TEXT, b"z" * 65536)]:
        ws.send_frame(op, data)
        assert ws.recv_message() == (op, data)
    close_cleanly(ws)


def test_fragmented_messages_are_reassembled(srv):
    ws = connect(srv, "/wsprobe/echo")
    text = "d\u00e9j\u00e0 \U0001f600".encode()
    # A character split across fragments is fine; so are empty fragments.
    ws.send_frame(OP_TEXT, text[:2], fin=False)
    ws.send_frame(OP_CONT, b"", fin=False)
    ws.send_frame(OP_CONT, text[2:10], fin=False)
    ws.send_frame(OP_CONT, text[10:], fin=True)
    assert ws.recv_message() == (OP_TEXT, text)
    ws.send_frame(OP_BINARY, b"\x00", fin=False)
    for i in range(1, 50):
        ws.send_frame(OP_CONT, bytes([i]), fin=False)
    ws.send_frame(OP_CONT, b"", fin=True)
    assert ws.recv_message() == (OP_BINARY, bytes(range(50)))
    close_cleanly(ws)


@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 10, b"p" * 125])
def test_ping_is_answered_with_a_pong_of_the_same_payload(srv, payload):
    ws = connect(srv, "/wsprobe/echo")
    ws.send_frame(OP_PING, payload)
    assert next_frame(ws) == (True, 0, OP_PONG, payload)
    close_cleanly(ws)


def test_control_frames_between_fragments(srv):
    ws = connect(srv, "/wsprobe/echo")
    ws.send_frame(OP_TEXT, b"Hel", fin=False)
    ws.send_frame(OP_PING, b"p1")
    ws.send_frame(OP_CONT, b"lo ", fin=False)
    ws.send_frame(OP_PONG, b"unsolicited")  # ignored
    ws.send_frame(OP_PING, b"p2")
    ws.send_frame(OP_CONT, "w\u00f6rld".encode(), fin=True)
    assert next_frame(ws) == (True, 0, OP_PONG, b"p1")
    assert next_frame(ws) == (True, 0, OP_PONG, b"p2")
    assert next_frame(ws) == (True, 0, OP_TEXT, "Hello w\u00f6rld".encode())
    close_cleanly(ws)


def test_an_unsolicited_pong_is_ignored(srv):
    ws = connect(srv, "/wsprobe/echo")
    ws.send_frame(OP_PONG, b"hello")
    ws.send_text("still here")
    assert next_frame(ws) == (True, 0, OP_TEXT, b"still here")
    close_cleanly(ws)


def test_unmasked_client_frame_is_1002(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("unmasked"), 1002,
               ws_raw.frame(OP_TEXT, b"hi", mask=False))


def test_unmasked_frame_after_good_ones_is_1002_and_the_good_ones_arrived(srv):
    tag = new_tag("unmasked-late")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag)
    ws.send_text("one")
    assert ws.recv_message() == (OP_TEXT, b"one")
    ws.send_frame(OP_TEXT, b"two", mask=False)
    expect_close(ws, 1002)
    expect_eof(ws)
    ws.shutdown()
    assert seen(srv, tag)["messages"] == 1


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_rsv_bits_without_an_extension_are_1002(srv, rsv):
    fails_with(srv, "/wsprobe/echo", new_tag("rsv%d" % rsv), 1002,
               ws_raw.frame(OP_TEXT, b"hi", rsv=rsv))


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x7, 0xB, 0xC, 0xF])
def test_unknown_opcode_is_1002(srv, opcode):
    fails_with(srv, "/wsprobe/echo", new_tag("op%x" % opcode), 1002,
               ws_raw.frame(opcode, b"hi"))


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_is_1002(srv, opcode):
    payload = struct.pack("!H", 1000) if opcode == OP_CLOSE else b"p"
    fails_with(srv, "/wsprobe/echo", new_tag("fragctl"), 1002,
               ws_raw.frame(opcode, payload, fin=False))


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_bytes_is_1002(srv, opcode):
    payload = struct.pack("!H", 1000) + b"r" * 124 if opcode == OP_CLOSE else b"p" * 126
    fails_with(srv, "/wsprobe/echo", new_tag("bigctl"), 1002, ws_raw.frame(opcode, payload))


def test_control_frame_over_125_bytes_is_refused_from_its_head(srv):
    # Two bytes of head suffice: the 200 bytes announced are never sent.
    fails_with(srv, "/wsprobe/echo", new_tag("bigctl-head"), 1002, raw=b"\x89\xfe\x00\xc8")


def test_continuation_without_a_start_is_1002(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("cont"), 1002, ws_raw.frame(OP_CONT, b"x"))


def test_continuation_after_a_finished_message_is_1002(srv):
    tag = new_tag("cont-after")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag)
    ws.send_text("done")
    assert ws.recv_message() == (OP_TEXT, b"done")
    ws.send_frame(OP_CONT, b"more", fin=True)
    expect_close(ws, 1002)
    expect_eof(ws)
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["messages"]) == (1002, 1), got


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_a_fragmented_message_is_1002(srv, opcode):
    got = fails_with(srv, "/wsprobe/echo", new_tag("interleaved"), 1002,
                     ws_raw.frame(OP_TEXT, b"part", fin=False), ws_raw.frame(opcode, b"new"))
    assert got["messages"] == 0


def test_64_bit_length_with_the_top_bit_set_is_1002(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("len63"), 1002,
               ws_raw.frame(OP_BINARY, b"", length=1 << 63))


@pytest.mark.parametrize("bad", [
    b"\xff",
    b"\xc0\xaf",  # overlong
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"ok\xe2\x28\xa1",  # a bad continuation
    b"\xe2\x82",  # ends inside a character
])
def test_invalid_utf8_text_is_1007(srv, bad):
    got = fails_with(srv, "/wsprobe/echo", new_tag("utf8"), 1007, ws_raw.frame(OP_TEXT, bad))
    assert got["messages"] == 0


def test_invalid_utf8_fails_at_once_mid_message_before_fin(srv):
    # The rest of the message is never sent: the server must not wait for it.
    fails_with(srv, "/wsprobe/echo", new_tag("utf8-early"), 1007,
               ws_raw.frame(OP_TEXT, "caf\u00e9 ".encode(), fin=False),
               ws_raw.frame(OP_CONT, b"ab\xff", fin=False))


def test_invalid_utf8_in_the_first_fragment_fails_before_fin(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("utf8-first"), 1007,
               ws_raw.frame(OP_TEXT, b"\xc3\x28", fin=False))


def test_a_message_ending_inside_a_character_is_1007(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("utf8-end"), 1007,
               ws_raw.frame(OP_TEXT, b"ok\xf0\x9f", fin=False),
               ws_raw.frame(OP_CONT, b"\x98", fin=True))


def test_binary_messages_are_not_checked_for_utf8(srv):
    ws = connect(srv, "/wsprobe/echo")
    ws.send_frame(OP_BINARY, b"\xff\xfe\xc0")
    assert ws.recv_message() == (OP_BINARY, b"\xff\xfe\xc0")
    close_cleanly(ws)


def test_invalid_utf8_in_a_close_reason_is_1007(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("utf8-close"), 1007,
               ws_raw.frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye\xff"))


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_reserved_or_invalid_close_codes_are_1002(srv, code):
    fails_with(srv, "/wsprobe/echo", new_tag("code%d" % code), 1002,
               ws_raw.frame(OP_CLOSE, struct.pack("!H", code)))


def test_close_payload_of_one_byte_is_1002(srv):
    fails_with(srv, "/wsprobe/echo", new_tag("close1"), 1002, ws_raw.frame(OP_CLOSE, b"\x03"))


# --------------------------------------------------------------------------
# size limits and compression


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_max_size_message_passes_and_one_byte_more_is_1009(small, opcode):
    ws = connect(small, "/wsprobe/echo")
    ws.send_frame(opcode, b"a" * 1024)
    assert ws.recv_message() == (opcode, b"a" * 1024)
    close_cleanly(ws)
    got = fails_with(small, "/wsprobe/echo", new_tag("big"), 1009,
                     ws_raw.frame(opcode, b"a" * 1025))
    assert got["messages"] == 0


def test_max_size_counts_the_whole_fragmented_message(small):
    ws = connect(small, "/wsprobe/echo")
    ws.send_frame(OP_BINARY, b"a" * 512, fin=False)
    ws.send_frame(OP_CONT, b"b" * 512, fin=True)
    assert ws.recv_message() == (OP_BINARY, b"a" * 512 + b"b" * 512)
    close_cleanly(ws)
    fails_with(small, "/wsprobe/echo", new_tag("bigfrag"), 1009,
               ws_raw.frame(OP_BINARY, b"a" * 600, fin=False),
               ws_raw.frame(OP_CONT, b"b" * 600, fin=True))


def test_a_fragment_over_the_limit_is_refused_from_its_head(small):
    # Only the head of the second fragment is sent: 2 bytes, the 16-bit
    # length and the mask key.
    fails_with(small, "/wsprobe/echo", new_tag("bighead"), 1009,
               ws_raw.frame(OP_TEXT, b"a" * 600, fin=False),
               ws_raw.frame(OP_CONT, b"b" * 600)[:8])


def test_a_frame_announcing_too_much_is_refused_before_its_payload(srv):
    # 1 GiB announced on the default 16 MiB limit; nothing more is sent.
    fails_with(srv, "/wsprobe/echo", new_tag("announce"), 1009,
               ws_raw.frame(OP_BINARY, b"", length=1 << 30))


DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]


def test_permessage_deflate_is_negotiated_and_both_ways_compressed(srv):
    ws = connect(srv, "/ws/echo", extra=DEFLATE)
    ext = ws.header("sec-websocket-extensions")
    assert ext.split(";")[0] == "permessage-deflate", ext
    text = ("compress me " * 100).encode()
    ws.send_compressed(OP_TEXT, text)
    fin, rsv, op, payload = next_frame(ws)
    assert (fin, rsv, op) == (True, 4, OP_TEXT)
    assert len(payload) < len(text)
    assert ws.inflater.inflate(payload) == text
    # Uncompressed messages are still fine from the client.
    ws.send_binary(b"\x00plain")
    assert ws.recv_message() == (OP_BINARY, b"\x00plain")
    close_cleanly(ws)


def test_no_permessage_deflate_when_disabled(probe_server):
    s = probe_server("--no-ws-per-message-deflate")
    ws = connect(s, "/wsprobe/echo", extra=DEFLATE)
    assert ws.header("sec-websocket-extensions") is None
    ws.send_text("plain")
    assert next_frame(ws) == (True, 0, OP_TEXT, b"plain")
    close_cleanly(ws)
    # ... so a compressed frame is an RSV1 without an extension.
    ws = connect(s, "/wsprobe/echo")
    ws.send_frame(OP_TEXT, zlib.compress(b"x")[2:-4], rsv=4)
    expect_close(ws, 1002)
    ws.shutdown()


def test_rsv1_on_a_continuation_or_control_frame_is_1002_even_with_deflate(srv):
    for frames in ([ws_raw.frame(OP_TEXT, b"a", fin=False), ws_raw.frame(OP_CONT, b"b", rsv=4)],
                   [ws_raw.frame(OP_PING, b"p", rsv=4)]):
        ws = connect(srv, "/wsprobe/echo", extra=DEFLATE)
        assert ws.inflater is not None
        ws.send_raw(b"".join(frames))
        expect_close(ws, 1002)
        expect_eof(ws)
        ws.shutdown()


def test_compressed_message_is_limited_after_inflating(small):
    ws = connect(small, "/wsprobe/echo", extra=DEFLATE)
    ws.send_compressed(OP_BINARY, b"\x00" * 1024)
    assert ws.recv_message() == (OP_BINARY, b"\x00" * 1024)
    close_cleanly(ws)
    tag = new_tag("inflated")
    ws = connect(small, "/wsprobe/echo?tag=" + tag, extra=DEFLATE)
    packed = ws.deflater.deflate(b"\x00" * 1025)
    assert len(packed) < 1024
    ws.send_frame(OP_BINARY, packed, rsv=4)
    expect_close(ws, 1009)
    expect_eof(ws)
    ws.shutdown()
    assert seen(small, tag)["code"] == 1009


def test_compression_bomb_is_1009_and_the_server_keeps_serving(srv):
    # 64 MiB of zeros in about 64 KiB, on the default 16 MiB limit.
    tag = new_tag("bomb")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag, extra=DEFLATE)
    packed = ws.deflater.deflate(b"\x00" * (64 << 20))
    assert len(packed) < (1 << 17)
    ws.send_frame(OP_BINARY, packed, rsv=4)
    expect_close(ws, 1009)
    expect_eof(ws)
    ws.shutdown()
    assert seen(srv, tag)["code"] == 1009
    ws = connect(srv, "/wsprobe/echo", extra=DEFLATE)
    ws.send_compressed(OP_TEXT, b"fine")
    assert ws.recv_message() == (OP_TEXT, b"fine")
    close_cleanly(ws)


def test_compressed_data_that_is_not_deflate_is_1007(srv):
    tag = new_tag("not-deflate")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag, extra=DEFLATE)
    ws.send_frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=4)
    expect_close(ws, 1007)
    expect_eof(ws)
    ws.shutdown()
    assert seen(srv, tag)["code"] == 1007


def test_compressed_text_that_inflates_to_invalid_utf8_is_1007(srv):
    tag = new_tag("inflated-utf8")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag, extra=DEFLATE)
    ws.send_compressed(OP_TEXT, b"ok\xff")
    expect_close(ws, 1007)
    expect_eof(ws)
    ws.shutdown()
    assert seen(srv, tag)["code"] == 1007


# --------------------------------------------------------------------------
# the closing handshake


@pytest.mark.parametrize("code,reason", [(1000, b""), (1001, b"going"), (1003, b"no text"),
                                         (1007, b""), (1011, b"oops"), (1014, b""),
                                         (3000, b"app"), (4001, "bye \u00e9".encode()),
                                         (4999, b"r" * 123)])
def test_client_close_code_and_reason_reach_the_plugin(srv, code, reason):
    tag = new_tag("cclose")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag)
    ws.send_text("x")
    assert ws.recv_message() == (OP_TEXT, b"x")
    ws.close(code, reason)
    # The server answers with the same code, then closes first (7.1.1).
    expect_close(ws, code)
    expect_eof(ws)
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["reason"].encode()) == (code, reason), got
    assert got["messages"] == 1


def test_client_close_without_a_code_is_1005_and_answered_empty(srv):
    tag = new_tag("nocode")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag)
    ws.close(None)
    assert next_frame(ws) == (True, 0, OP_CLOSE, b"")
    expect_eof(ws)
    ws.shutdown()
    assert seen(srv, tag)["code"] == 1005


@pytest.mark.parametrize("route", ["close", "close_sync"])
@pytest.mark.parametrize("code,reason", [(1000, ""), (1000, "done"), (1001, "away"),
                                         (1011, "boom"), (4001, "bye"), (3999, "\u00e9t\u00e9")])
def test_server_close_with_code_and_reason(srv, route, code, reason):
    tag = new_tag(route)
    ws = connect(srv, "/wsprobe/%s?tag=%s" % (route, tag))
    ws.send_text("close:%d:%s" % (code, reason))
    expect_close(ws, code, reason.encode())
    not_seen_yet(srv, tag)  # the close handshake is not finished
    ws.close(code)
    expect_eof(ws)
    ws.shutdown()
    got = seen(srv, tag)
    assert got["close_rc"] == 0
    assert got["code"] == code, got  # the peer's answer


def test_server_close_reason_is_cut_to_123_bytes_at_a_character_boundary(srv):
    ws = connect(srv, "/wsprobe/close")
    ws.send_text("close:4000:" + "\u00e9" * 100)
    assert expect_close(ws, 4000) == "\u00e9".encode() * 61
    ws.close(4000)
    expect_eof(ws)
    ws.shutdown()


@pytest.mark.parametrize("route", ["close", "close_sync"])
@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_plugin_close_with_an_invalid_code_is_einval(srv, route, code):
    ws = connect(srv, "/wsprobe/" + route)
    ws.send_text("close:%d:x" % code)
    assert ws.recv_message() == (OP_TEXT, b"close-rc:%d" % EVICORN_EINVAL)
    # Nothing was sent: the connection still works.
    ws.send_text("after")
    assert ws.recv_message() == (OP_TEXT, b"after")
    close_cleanly(ws)


@pytest.mark.parametrize("route", ["send_after_close", "send_after_close_sync"])
def test_send_and_close_after_close_are_epipe(srv, route):
    tag = new_tag(route)
    ws = connect(srv, "/wsprobe/%s?tag=%s" % (route, tag))
    ws.send_text("go")
    # The close comes, and nothing sent after it.
    expect_close(ws, 1000, b"closing")
    ws.close(1000)
    expect_eof(ws)
    ws.shutdown()
    got = seen(srv, tag)
    assert got["close_rc"] == 0
    assert got["send_after_close"] == EVICORN_EPIPE, got
    assert got["close_again"] == EVICORN_EPIPE, got
    assert got["code"] == 1000


def test_frames_after_the_clients_close_are_ignored(srv):
    tag = new_tag("after-close")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag)
    ws.send_raw(ws_raw.frame(OP_TEXT, b"before") + ws_raw.frame(OP_CLOSE, struct.pack("!H", 1000))
                + ws_raw.frame(OP_TEXT, b"after") + ws_raw.frame(OP_PING, b"p")
                + ws_raw.frame(OP_TEXT, b"\xff", mask=False))
    assert ws.recv_message() == (OP_TEXT, b"before")
    expect_close(ws, 1000)
    expect_eof(ws)
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["messages"]) == (1000, 1), got


def test_messages_after_the_servers_close_are_not_delivered(srv):
    tag = new_tag("after-server-close")
    ws = connect(srv, "/wsprobe/close?tag=" + tag)
    ws.send_text("close:4002:enough")
    expect_close(ws, 4002, b"enough")
    ws.send_text("late")
    ws.send_frame(OP_PING, b"late ping")  # no pong after our close either
    ws.close(4002)
    expect_eof(ws)
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["messages"]) == (4002, 1), got


def test_a_client_that_never_answers_the_close_is_dropped_after_the_close_timeout(srv):
    tag = new_tag("silent")
    ws = connect(srv, "/wsprobe/close?tag=" + tag)
    ws.send_text("close:1000:bye")
    t0 = time.monotonic()
    expect_close(ws, 1000, b"bye")
    expect_eof(ws, timeout=5.0 + T)
    assert time.monotonic() - t0 > 4.0
    ws.shutdown()
    assert seen(srv, tag)["code"] == 1000


# --------------------------------------------------------------------------
# connections lost


def test_connection_lost_after_the_handshake_is_1006(srv):
    tag = new_tag("lost")
    ws = connect(srv, "/wsprobe/echo?tag=" + tag)
    ws.send_text("x")
    assert ws.recv_message() == (OP_TEXT, b"x")
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["reason"], got["messages"]) == (1006, "", 1)


def test_connection_reset_mid_message_is_1006(srv):
    tag = new_tag("reset")
    ws = connect(srv, "/wsprobe/echo_sync?tag=" + tag)
    ws.send_frame(OP_TEXT, b"half", fin=False)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["messages"]) == (1006, 0)


@pytest.mark.parametrize("route", ["late_accept", "late_accept_sync"])
def test_connection_lost_before_the_handshake_completes(srv, route):
    tag = new_tag(route)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=T)
    request, _ = ws_raw.handshake_request("/wsprobe/%s?ms=300&tag=%s" % (route, tag))
    sock.sendall(request)
    time.sleep(0.05)
    sock.close()
    got = seen(srv, tag)
    # The plugin hears of it either way: its accept fails, or the
    # accepted connection ends at once with 1006.
    if got["accept_rc"] == 0:
        assert got["code"] == 1006, got
    else:
        assert got["accept_rc"] == EVICORN_EPIPE, got


def test_a_pending_handshake_notices_the_client_leaving(srv):
    tag = new_tag("late-cancel")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=T)
    request, _ = ws_raw.handshake_request("/wsprobe/late_accept?ms=4000&tag=" + tag)
    sock.sendall(request)
    time.sleep(0.1)
    sock.close()
    # Whatever happens, the plugin has heard of the end after 4 s: with the
    # disconnect noticed, its sleep was cut short.
    got = seen(srv, tag, timeout=4.0 + T)
    assert got["sleep_status"] == EVICORN_ECANCELED, got
    assert got["accept_rc"] == EVICORN_EPIPE, got


# --------------------------------------------------------------------------
# keepalive


def test_a_client_that_never_answers_pings_is_closed_with_1011(probe_server):
    s = probe_server("--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")
    tag = new_tag("nopong")
    ws = connect(s, "/wsprobe/echo?tag=" + tag)
    t0 = time.monotonic()
    assert next_frame(ws) == (True, 0, OP_PING, b"evicorn")
    t_ping = time.monotonic() - t0
    expect_close(ws, 1011)
    t_close = time.monotonic() - t0
    expect_eof(ws)
    ws.shutdown()
    assert 0.3 < t_ping < 0.5 + T, t_ping
    assert t_close - t_ping > 0.3, (t_ping, t_close)
    assert seen(s, tag)["code"] == 1011


def test_a_client_that_answers_pings_stays_open(probe_server):
    s = probe_server("--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")
    ws = connect(s, "/wsprobe/echo")
    pings = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        ws.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            fin, rsv, op, payload = ws.recv_frame()
        except socket.timeout:
            break
        assert op == OP_PING, (op, payload)
        ws.send_frame(OP_PONG, payload)
        pings += 1
    assert pings >= 2
    ws.send_text("alive")
    while True:
        fin, rsv, op, payload = next_frame(ws)
        if op != OP_PING:
            break
        ws.send_frame(OP_PONG, payload)
    assert (op, payload) == (OP_TEXT, b"alive")
    close_among_pings(ws)


def test_a_busy_client_is_not_pinged(probe_server):
    # Anything the client sends counts as a sign of life.
    s = probe_server("--ws-ping-interval", "1", "--ws-ping-timeout", "1")
    ws = connect(s, "/wsprobe/echo")
    for i in range(12):
        ws.send_text(str(i))
        assert next_frame(ws) == (True, 0, OP_TEXT, str(i).encode())
        time.sleep(0.2)
    close_cleanly(ws)


def test_no_pings_with_interval_0_and_keep_alive_timeout_does_not_apply(probe_server):
    s = probe_server("--ws-ping-interval", "0", "--timeout-keep-alive", "1")
    ws = connect(s, "/wsprobe/echo")
    no_frame_within(ws, 2.0)
    ws.send_text("idle but open")
    assert ws.recv_message() == (OP_TEXT, b"idle but open")
    close_cleanly(ws)


def test_ping_timeout_0_never_gives_up(probe_server):
    s = probe_server("--ws-ping-interval", "0.3", "--ws-ping-timeout", "0")
    ws = connect(s, "/wsprobe/echo")
    pings = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        assert next_frame(ws) == (True, 0, OP_PING, b"evicorn")
        pings += 1
    assert pings >= 3
    ws.send_text("still open")
    while True:
        fin, rsv, op, payload = next_frame(ws)
        if op != OP_PING:
            break
    assert (op, payload) == (OP_TEXT, b"still open")
    close_among_pings(ws)


# --------------------------------------------------------------------------
# graceful shutdown


def test_shutdown_closes_open_connections_with_1001():
    s = start_probe()
    try:
        a = connect(s, "/wsprobe/echo")
        b = connect(s, "/wsprobe/echo_sync")
        for ws in (a, b):
            ws.send_text("hi")
            assert ws.recv_message() == (OP_TEXT, b"hi")
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        for ws in (a, b):
            expect_close(ws, 1001)
            ws.send_text("ignored")
            ws.close(1001)
            expect_eof(ws)
            ws.shutdown()
        # Both answered: nothing waits for the close timeout.
        assert s.wait_exit(3.0 * SCALE) == 0, s.output()
        assert time.monotonic() - t0 < 3.0 * SCALE
    finally:
        stop_checked(s)


def test_shutdown_with_a_busy_sync_handler_closes_at_once_and_exits_after_it():
    s = start_probe()
    try:
        ws = connect(s, "/wsprobe/echo_sync")
        ws.send_text("sleep:3000")
        time.sleep(0.2)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        expect_close(ws, 1001)
        assert time.monotonic() - t0 < 2.5  # not after the handler
        ws.close(1001)
        expect_eof(ws)
        ws.shutdown()
        assert s.wait_exit(T) == 0, s.output()
        assert time.monotonic() - t0 >= 2.7  # the handler ran to its end
    finally:
        stop_checked(s)


def test_shutdown_completes_the_closing_handshake_of_a_paused_connection():
    s = start_probe()
    try:
        ws = connect(s, "/wsprobe/pause")
        ws.send_text("pause:20000")
        time.sleep(0.2)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        expect_close(ws, 1001)
        ws.close(1001)
        ws.sock.settimeout(T)
        try:
            data = ws.sock.recv(65536)
        except ConnectionResetError:
            data = "reset"
        assert data == b"", data
        assert time.monotonic() - t0 < min(2.0 * SCALE, 4.0)
        ws.shutdown()
    finally:
        stop_checked(s)


def test_shutdown_waits_for_a_silent_client_only_until_the_close_timeout():
    s = start_probe()
    try:
        ws = connect(s, "/wsprobe/echo")
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        expect_close(ws, 1001)
        expect_eof(ws, timeout=5.0 + T)
        assert time.monotonic() - t0 > 4.0
        assert s.wait_exit(T) == 0, s.output()
        ws.shutdown()
    finally:
        stop_checked(s)


def test_shutdown_timeout_cuts_a_silent_client_short():
    s = start_probe("--timeout-graceful-shutdown", "1")
    try:
        ws = connect(s, "/wsprobe/echo")
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        expect_close(ws, 1001)
        expect_eof(ws, timeout=T)
        assert time.monotonic() - t0 < 4.0
        s.wait_exit(T)
        assert s.wait_for_log(r"graceful shutdown timed out with 1 connection", T), s.output()
        ws.shutdown()
    finally:
        stop_checked(s)


# --------------------------------------------------------------------------
# sync routes


def test_sync_route_runs_messages_one_at_a_time_in_order(srv):
    ws = connect(srv, "/wsprobe/echo_sync")
    other = connect(srv, "/wsprobe/echo")
    t0 = time.monotonic()
    ws.send_text("sleep:1000")
    for i in range(20):
        ws.send_text("m%d" % i)
    ws.send_binary(b"\x00bin")
    # The loop is free meanwhile: an async connection answers at once ...
    other.send_text("quick")
    assert other.recv_message() == (OP_TEXT, b"quick")
    # ... while the sync one has not answered anything yet.
    if time.monotonic() - t0 < 0.8:
        no_frame_within(ws, 0)
    assert ws.recv_message() == (OP_TEXT, b"slept:1000")
    assert time.monotonic() - t0 >= 1.0
    for i in range(20):
        assert ws.recv_message() == (OP_TEXT, b"m%d" % i)
    assert ws.recv_message() == (OP_BINARY, b"\x00bin")
    close_cleanly(ws)
    close_cleanly(other)


def test_sync_route_close_event_comes_after_every_message(srv):
    tag = new_tag("sync-order")
    ws = connect(srv, "/wsprobe/echo_sync?tag=" + tag)
    ws.send_text("sleep:300")
    for i in range(5):
        ws.send_text(str(i))
    ws.close(1000)
    ws.shutdown()  # gone before any answer
    got = seen(srv, tag)
    assert (got["code"], got["messages"]) == (1000, 6), got


def test_sync_route_connection_lost_mid_handler_still_delivers_what_arrived(srv):
    tag = new_tag("sync-lost")
    ws = connect(srv, "/wsprobe/echo_sync?tag=" + tag)
    ws.send_text("sleep:500")
    for i in range(3):
        ws.send_text(str(i))
    time.sleep(0.1)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.shutdown()
    got = seen(srv, tag)
    assert (got["code"], got["messages"]) == (1006, 4), got


def test_sync_send_waits_for_a_slow_reader_and_loses_nothing(srv):
    ws = connect(srv, "/wsprobe/echo_sync")
    ws.send_text("flood:200:65536")
    time.sleep(0.5)  # read nothing for a while: the sends must wait
    for i in range(200):
        op, data = ws.recv_message()
        assert op == OP_BINARY and len(data) == 65536
        assert struct.unpack("!I", data[:4])[0] == i
    assert ws.recv_message() == (OP_TEXT, b"flood-done:200")
    close_cleanly(ws)


def test_max_queue_pauses_reading_of_a_slow_sync_route(small):
    # --ws-max-queue 2: while the handler sleeps, two messages wait and the
    # server stops reading, so a ping sent after them is not answered
    # until the handler catches up. Nothing is lost and order is kept.
    ws = connect(small, "/wsprobe/echo_sync")
    t0 = time.monotonic()
    ws.send_text("sleep:2500")
    time.sleep(0.2)
    ws.send_text("q0")
    time.sleep(0.2)
    ws.send_text("q1")  # the queue is full: reading stops
    time.sleep(0.5)
    ws.send_text("q2")
    ws.send_frame(OP_PING, b"are you there")
    got = []
    while len(got) < 5:
        op, data = ws.recv_message()
        got.append((op, data, time.monotonic() - t0))
    data_msgs = [(op, d) for op, d, _ in got if op != OP_PONG]
    assert data_msgs == [(OP_TEXT, b"slept:2500"), (OP_TEXT, b"q0"), (OP_TEXT, b"q1"),
                         (OP_TEXT, b"q2")]
    pong = [(d, t) for op, d, t in got if op == OP_PONG]
    assert len(pong) == 1 and pong[0][0] == b"are you there"
    assert pong[0][1] >= 2.5, "the ping was read while the queue was full: %r" % got
    close_cleanly(ws)


def test_max_queue_loses_nothing_from_a_burst(small):
    ws = connect(small, "/wsprobe/echo_sync")
    ws.send_text("sleep:300")
    ws.send_raw(b"".join(ws_raw.frame(OP_TEXT, b"b%d" % i) for i in range(100)))
    assert ws.recv_message() == (OP_TEXT, b"slept:300")
    for i in range(100):
        assert ws.recv_message() == (OP_TEXT, b"b%d" % i)
    close_cleanly(ws)


# --------------------------------------------------------------------------
# ws_pause (async routes)


def test_paused_connection_holds_messages_and_pings_until_resumed(srv):
    tag = new_tag("pause")
    ws = connect(srv, "/wsprobe/pause?tag=" + tag)
    t0 = time.monotonic()
    ws.send_text("pause:1000")
    time.sleep(0.3)
    ws.send_text("a")
    ws.send_binary(b"b")
    ws.send_frame(OP_PING, b"paused?")
    got = []
    while len(got) < 4:
        op, data = ws.recv_message()
        got.append((op, data, time.monotonic() - t0))
    assert all(t >= 1.0 for _, _, t in got), got
    data_msgs = [(op, d) for op, d, _ in got if op != OP_PONG]
    assert data_msgs == [(OP_TEXT, b"resumed"), (OP_TEXT, b"a"), (OP_BINARY, b"b")], got
    assert [(op, d) for op, d, _ in got if op == OP_PONG] == [(OP_PONG, b"paused?")]
    close_cleanly(ws)
    got = seen(srv, tag)
    assert (got["code"], got["messages"], got["pause_rc"], got["sleep_status"]) == (1000, 3, 0, 0)


def test_connection_lost_while_paused_ends_with_1006_after_the_plugins_sleep(srv):
    tag = new_tag("pause-lost")
    ws = connect(srv, "/wsprobe/pause?tag=" + tag)
    ws.send_text("pause:300")
    time.sleep(0.1)
    ws.shutdown()
    got = seen(srv, tag)
    # Reading is paused, so the loss may only be seen once the plugin
    # resumes; either way its continuation ran before on_close.
    assert got["code"] == 1006, got
    assert got["sleep_status"] in (0, EVICORN_ECANCELED), got


# --------------------------------------------------------------------------
# the chat example


def chat_msg(sender, text):
    return json.dumps({"from": sender, "text": text}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def chat_join(s, room):
    ws = connect(s, "/ws/chat/" + room)
    # Its id: the "from" of its own first message, which comes back to it.
    ws.send_text("hello")
    op, data = ws.recv_message()
    assert op == OP_TEXT
    me = json.loads(data)["from"]
    assert data == chat_msg(me, "hello")
    return ws, me


def test_chat_broadcasts_to_every_member_of_the_room_only(srv):
    room, other_room = new_tag("room"), new_tag("room")
    a1, id1 = chat_join(srv, room)
    a2, id2 = chat_join(srv, room)
    assert a1.recv_message() == (OP_TEXT, chat_msg(id2, "hello"))
    b1, idb = chat_join(srv, other_room)
    assert len({id1, id2, idb}) == 3
    text = 'quote " backslash \\ newline \n \u00e9 \U0001f600 \x01'
    a1.send_text(text)
    for ws in (a1, a2):
        assert ws.recv_message() == (OP_TEXT, chat_msg(id1, text))
    # Binary messages are not chat.
    a2.send_binary(b"\x00\x01")
    a2.send_text("second")
    for ws in (a1, a2):
        assert ws.recv_message() == (OP_TEXT, chat_msg(id2, "second"))
    # The other room heard none of it: its next message is its own.
    b1.send_text("other room")
    assert b1.recv_message() == (OP_TEXT, chat_msg(idb, "other room"))
    for ws in (a1, a2):
        no_frame_within(ws, 0.2)
    # A member that left gets nothing, and the rest go on.
    close_cleanly(a2)
    a1.send_text("alone")
    assert a1.recv_message() == (OP_TEXT, chat_msg(id1, "alone"))
    close_cleanly(a1)
    close_cleanly(b1)


def test_chat_member_lost_without_a_close_leaves_the_room(srv):
    room = new_tag("room")
    a1, id1 = chat_join(srv, room)
    a2, id2 = chat_join(srv, room)
    assert a1.recv_message() == (OP_TEXT, chat_msg(id2, "hello"))
    a2.shutdown()
    time.sleep(0.2)
    a1.send_text("anyone?")
    assert a1.recv_message() == (OP_TEXT, chat_msg(id1, "anyone?"))
    # The room lives on for newcomers.
    a3, id3 = chat_join(srv, room)
    assert a1.recv_message() == (OP_TEXT, chat_msg(id3, "hello"))
    close_cleanly(a1)
    close_cleanly(a3)


def test_chat_with_compression(srv):
    room = new_tag("room")
    a1 = connect(srv, "/ws/chat/" + room, extra=DEFLATE)
    a2 = connect(srv, "/ws/chat/" + room)
    a1.send_compressed(OP_TEXT, ("long " * 200).encode())
    op, data = a2.recv_message()
    assert json.loads(data)["text"] == "long " * 200
    op, data = a1.recv_message()
    assert json.loads(data)["text"] == "long " * 200
    close_cleanly(a1)
    close_cleanly(a2)
