"""WebSockets through the ASGI bridge (plugins/asgi): `evicorn main:app`
serving the WebSocket routes of the FastAPI app in tests/asgi_app, black-box,
with the raw-socket client ws_raw.py (Debian's stack has no WebSocket
library, and every byte on the wire is the test's to choose).

Covers the websocket scope (ASGI spec 2.4, lifespan state), FastAPI's
tutorial routes (echo, dependencies on a cookie or a token, the broadcast
chat), accepting and refusing the handshake (403 for a close before accept,
the websocket.http.response extension, 500 for an app that never answers),
subprotocols and extra headers, text and bytes both ways, close codes and
reasons both ways, what send() and receive() do after the end, connections
lost before and after the handshake, --ws-max-size, --ws-max-queue,
backpressure, graceful shutdown (1001), exceptions (1011) and returning
without a close (1000). test_asgi_ws_diff.py compares the same app with
uvicorn.
"""
import hashlib
import json
import os
import select
import signal
import socket
import struct
import threading
import time

import httpx
import pytest

import ws_raw
from evicorn_harness import evicorn_bin, python_module_built, time_scale
from plugin_util import deploy

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "asgi_app"))
BUILD = os.path.dirname(os.path.abspath(evicorn_bin()))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(BUILD, "plugins")

pytestmark = pytest.mark.skipif(not python_module_built(),
                                reason="evicorn's Python module is not built")

OSERROR = "ClientDisconnected (OSError): the WebSocket is closed"


def serve(make_server, *args, app="main:app", timeout=20.0):
    """evicorn APP --app-dir tests/asgi_app ARGS, once the app answers."""
    srv = make_server(app, "--app-dir", APP_DIR, *args, ready_timeout=timeout)
    deadline = time.monotonic() + timeout * time_scale()
    while True:
        try:
            with httpx.Client(timeout=2.0) as c:
                if c.get(srv.url("/json")).status_code == 200:
                    return srv
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("app not serving\n" + srv.output())
        time.sleep(0.05)


@pytest.fixture
def app_server(make_server):
    return serve(make_server)


def connect(srv, path, **kw):
    kw.setdefault("timeout", 10.0 * time_scale())
    return ws_raw.connect(srv.port, path, **kw)


def refused(srv, path, **kw):
    """The handshake's answer when it is not a 101."""
    with pytest.raises(ws_raw.HandshakeRefused) as info:
        connect(srv, path, **kw).shutdown()
    return info.value


def result(srv, key, timeout=5.0):
    """What the app recorded under key (GET /result/{key}), once it has."""
    deadline = time.monotonic() + timeout * time_scale()
    with httpx.Client(timeout=5.0 * time_scale()) as c:
        while True:
            got = c.get(srv.url("/result/" + key)).json()["result"]
            if got is not None or time.monotonic() > deadline:
                return got
            time.sleep(0.02)


def text(ws):
    op, payload = ws.recv_message()
    assert op == ws_raw.OP_TEXT, (op, payload)
    return payload.decode()


def close_frame(ws):
    """(code, reason) of the server's next frame, which must be a close."""
    op, payload = ws.recv_message()
    assert op == ws_raw.OP_CLOSE, (op, payload)
    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    return code, payload[2:].decode()


def closes(ws):
    """Reads to the server's close of the connection; True if it did."""
    return ws.closed_by_server(5.0 * time_scale())


# --------------------------------------------------------------------------
# FastAPI's tutorial


def test_tutorial_echo(app_server):
    ws = connect(app_server, "/ws")
    for msg in ("hello", "héllo wörld ✓", "", "x" * 70000):
        ws.send_text(msg)
        assert text(ws) == "Message text was: " + msg
    ws.close(1000)
    assert close_frame(ws) == (1000, "")
    assert closes(ws)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


@pytest.mark.skipif("ASAN_OPTIONS" in os.environ,
                    reason="AddressSanitizer's quarantine keeps freed memory resident")
def test_messages_do_not_stay_in_memory(app_server):
    """96 MiB of messages through an echo: the worker's memory does not
    grow with them (each message is freed once the app has taken it)."""
    [worker] = app_server.worker_pids()
    ws = connect(app_server, "/ws")
    msg = "m" * 32768
    for _ in range(50):  # warm up: buffers and caches reach their size
        ws.send_text(msg)
        text(ws)
    before = rss_kib(worker)
    for _ in range(3000):
        ws.send_text(msg)
        assert text(ws) == "Message text was: " + msg
    grown = rss_kib(worker) - before
    assert grown < 24 * 1024, "the worker grew by %d KiB for 96 MiB of messages" % grown
    ws.close(1000)
    assert close_frame(ws) == (1000, "")


def test_tutorial_dependencies_on_a_cookie_or_a_token(app_server):
    ws = connect(app_server, "/items/foo/ws?token=some-token&q=3")
    ws.send_text("hi")
    assert [text(ws) for _ in range(3)] == [
        "Session cookie or query token value is: some-token", "Query parameter q is: 3",
        "Message text was: hi, for item ID: foo"]
    ws.close(1000)
    ws.shutdown()
    ws = connect(app_server, "/items/bar/ws", extra=[("Cookie", "session=from-cookie")])
    ws.send_text("hey")
    assert [text(ws) for _ in range(2)] == [
        "Session cookie or query token value is: from-cookie",
        "Message text was: hey, for item ID: bar"]
    ws.shutdown()
    # No cookie and no token: the dependency raises WebSocketException before
    # accepting, which Starlette sends as a close: refused with 403.
    assert refused(app_server, "/items/foo/ws").status == 403
    # q is not an int: FastAPI's validation error is a close too.
    assert refused(app_server, "/items/foo/ws?token=t&q=x").status == 403


def test_tutorial_chat_broadcasts_and_announces_leaving(app_server):
    one = connect(app_server, "/ws/1")
    two = connect(app_server, "/ws/2")
    one.send_text("hello")
    assert text(one) == "You wrote: hello"
    assert text(one) == "Client #1 says: hello"
    assert text(two) == "Client #1 says: hello"
    two.send_text("hi there")
    assert text(two) == "You wrote: hi there"
    assert {text(one), text(two)} == {"Client #2 says: hi there"}
    two.close(1001, b"tab closed")
    assert close_frame(two)[0] == 1001
    assert text(one) == "Client #2 left the chat"
    three = connect(app_server, "/ws/3")
    one.shutdown()  # lost without a close frame: the app hears it all the same
    assert text(three) == "Client #1 left the chat"
    three.send_text("anyone?")
    assert text(three) == "You wrote: anyone?"
    assert text(three) == "Client #3 says: anyone?"
    three.shutdown()
    assert refused(app_server, "/ws/not-a-number").status == 403


def test_state_from_lifespan_reaches_the_websocket(app_server):
    ws = connect(app_server, "/ws-state")
    state = json.loads(text(ws))
    assert state == {"greeting": "hello from lifespan", "counter": 0, "started": "yes"}
    assert close_frame(ws) == (1000, "")
    ws.shutdown()


def test_native_websocket_routes_win_over_the_app(make_server):
    srv = serve(make_server)
    start = len(srv.stderr.snapshot())
    deploy(srv, os.path.join(PLUGINS, "chat.so"), "chat.so")
    assert srv.wait_for_log(r"plugin chat\.so: loaded", 5, start=start), srv.output()
    native = connect(srv, "/ws/echo")
    native.send_text("as it was")
    assert text(native) == "as it was"
    native.shutdown()
    app = connect(srv, "/ws")
    app.send_text("as it was")
    assert text(app) == "Message text was: as it was"
    app.shutdown()


# --------------------------------------------------------------------------
# The scope


def test_websocket_scope_is_asgi_spec_2_4(app_server):
    ws = connect(app_server, "/wsraw/scope?a=1&b=%20x",
                 extra=[("Sec-WebSocket-Protocol", "chat, superchat"),
                        ("Sec-WebSocket-Protocol", "v3"), ("X-Multi", "one"),
                        ("x-multi", "two")])
    s = json.loads(text(ws))
    local_port = ws.sock.getsockname()[1]
    ws.shutdown()
    assert s["type"] == "websocket"
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert s["http_version"] == "1.1"
    assert s["scheme"] == "ws"
    assert s["has_method"] is False
    # Starlette's Mount moved /wsraw into root_path (and, from 0.33 on,
    # leaves path whole).
    assert s["root_path"] == "/wsraw"
    assert s["path"] in ("/scope", "/wsraw/scope")
    assert s["raw_path"] == "/wsraw/scope"
    assert s["query_string"] == "a=1&b=%20x"
    assert s["subprotocols"] == ["chat", "superchat", "v3"]
    assert s["extensions"] == {"websocket.http.response": {}}
    names = [k for k, _ in s["headers"]]
    assert names == [n.lower() for n in names]
    assert ["x-multi", "one"] in s["headers"] and ["x-multi", "two"] in s["headers"]
    assert ["upgrade", "websocket"] in s["headers"]
    assert s["client"] == ["127.0.0.1", local_port]
    assert s["server"] == ["127.0.0.1", app_server.port]
    assert s["state"] == ["counter", "greeting"]


def test_scheme_is_wss_behind_a_tls_proxy(app_server):
    ws = connect(app_server, "/wsraw/scope", extra=[("X-Forwarded-Proto", "https")])
    assert json.loads(text(ws))["scheme"] == "wss"
    ws.shutdown()


# --------------------------------------------------------------------------
# The handshake


def test_close_before_accept_is_a_403(app_server):
    r = refused(app_server, "/wsraw/close-before?key=cb")
    assert r.status == 403 and r.body == b""
    assert result(app_server, "cb:connect") == "websocket.connect"
    # As uvicorn: the app's receive() then says 1006, and the refused
    # handshake takes no websocket.send.
    assert result(app_server, "cb") == {"type": "websocket.disconnect", "code": 1006}
    assert result(app_server, "cb:send").startswith(
        "RuntimeError: Expected ASGI message 'websocket.http.response.body'")


def test_websocket_http_response_rejects_with_status_headers_and_body(app_server):
    r = refused(app_server, "/wsraw/reject?key=rj&status=401")
    assert r.status == 401
    headers = dict(r.headers)
    assert headers["x-reason"] == "no token"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "14"
    assert r.body == b"no token, bye!"
    assert result(app_server, "rj") == {"type": "websocket.disconnect", "code": 1006}
    r = refused(app_server, "/wsraw/reject?key=rj2&status=418")
    assert r.status == 418 and r.body == b"no token, bye!"


def test_no_handshake_is_a_500_and_logged(app_server):
    for path, log in (("/wsraw/raise-before", r"RuntimeError: raised before accepting"),
                      ("/wsraw/return-before",
                       r"ASGI callable returned without sending handshake\.")):
        r = refused(app_server, path)
        assert r.status == 500 and r.body == b"Internal Server Error"
        assert dict(r.headers)["content-type"] == "text/plain; charset=utf-8"
        assert app_server.wait_for_log(log, 5), app_server.output()
    assert app_server.wait_for_log(r"Exception in ASGI application", 5)


def test_subprotocol_is_negotiated_and_extra_headers_sent(app_server):
    ws = connect(app_server, "/wsraw/echo?sub=chat&hdr=1",
                 extra=[("Sec-WebSocket-Protocol", "superchat, chat")])
    assert ws.header("sec-websocket-protocol") == "chat"
    assert ws.header("x-ws-extra") == "yes"
    assert ws.header("set-cookie") == "ws=1; Path=/"
    ws.send_text("still echoing")
    assert text(ws) == "still echoing"
    ws.shutdown()
    # None chosen: no Sec-WebSocket-Protocol in the answer.
    ws = connect(app_server, "/wsraw/echo", extra=[("Sec-WebSocket-Protocol", "chat")])
    assert ws.header("sec-websocket-protocol") is None
    ws.shutdown()
    # One the client did not offer would break the client: the app's send()
    # raises, and the handshake is answered 500.
    r = refused(app_server, "/wsraw/echo?sub=other", extra=[("Sec-WebSocket-Protocol", "chat")])
    assert r.status == 500
    assert app_server.wait_for_log(r"Subprotocol 'other' in 'websocket.accept' was not offered", 5)


def test_messages_in_the_wrong_order_raise_runtime_error(app_server):
    ws = connect(app_server, "/wsraw/misuse?key=mis")
    report = json.loads(text(ws))
    assert report == [
        "RuntimeError: Expected ASGI message 'websocket.accept', 'websocket.close', or "
        "'websocket.http.response.start' but got 'websocket.send'.",
        "RuntimeError: Expected ASGI message 'websocket.send' or 'websocket.close', but got "
        "'websocket.accept'.",
        "RuntimeError: Expected ASGI message 'websocket.send' or 'websocket.close', but got "
        "'websocket.http.response.start'.",
    ]
    # A close code no endpoint may send is refused, and the connection
    # goes on to close properly.
    assert close_frame(ws) == (1000, "")
    ws.shutdown()
    assert result(app_server, "mis:bad-close") == (
        "RuntimeError: Invalid WebSocket close code 1005 in 'websocket.close'.")
    assert result(app_server, "mis") == "sent"


# --------------------------------------------------------------------------
# Messages and closes


def test_text_and_bytes_both_ways(app_server):
    ws = connect(app_server, "/wsraw/echo")
    ws.send_text("héllo ✓")
    assert ws.recv_message() == (ws_raw.OP_TEXT, "héllo ✓".encode())
    ws.send_binary(b"\x00\xff\x80binary")
    assert ws.recv_message() == (ws_raw.OP_BINARY, b"\x00\xff\x80binary")
    big = os.urandom(3 * 1024 * 1024)
    ws.send_binary(big)
    assert ws.recv_message() == (ws_raw.OP_BINARY, big)
    for i in range(200):  # in order
        ws.send_text("m%d" % i)
    assert [text(ws) for _ in range(200)] == ["m%d" % i for i in range(200)]
    # fragmented, with a ping between the fragments
    ws.send_frame(ws_raw.OP_TEXT, b"frag", fin=False)
    ws.send_frame(ws_raw.OP_PING, b"p")
    ws.send_frame(ws_raw.OP_CONT, b"mented")
    assert ws.recv_message() == (ws_raw.OP_PONG, b"p")
    assert text(ws) == "fragmented"
    ws.shutdown()


def test_compressed_messages(app_server):
    ws = connect(app_server, "/wsraw/echo",
                 extra=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")])
    assert ws.header("sec-websocket-extensions").startswith("permessage-deflate")
    data = b"compress me " * 1000
    ws.send_compressed(ws_raw.OP_BINARY, data)
    assert ws.recv_message() == (ws_raw.OP_BINARY, data)
    ws.shutdown()


def test_app_closes_with_code_and_reason_then_send_raises_oserror(app_server):
    ws = connect(app_server, "/wsraw/echo?key=ac")
    ws.send_text("close 4001 going away now")
    assert close_frame(ws) == (4001, "going away now")
    ws.close(4001)
    assert closes(ws)
    assert result(app_server, "ac:send") == OSERROR
    # As uvicorn: after its own close, the app's receive() says 1005.
    assert result(app_server, "ac:again") == {"type": "websocket.disconnect", "code": 1005}
    assert not app_server.wait_for_log(r"Exception in ASGI application", 0.2)


def test_client_closes_with_code_and_reason(app_server):
    ws = connect(app_server, "/wsraw/echo?key=cc")
    ws.send_text("first")
    assert text(ws) == "first"
    ws.close(4002, "client bye ✓".encode())
    assert close_frame(ws)[0] == 4002
    assert closes(ws)
    assert result(app_server, "cc") == {"type": "websocket.disconnect", "code": 4002,
                                        "reason": "client bye ✓"}
    assert result(app_server, "cc:send") == OSERROR
    assert result(app_server, "cc:again") == {"type": "websocket.disconnect", "code": 1005}
    # A close frame without a code: 1005.
    ws = connect(app_server, "/wsraw/echo?key=cc2")
    ws.close(None)
    assert closes(ws)
    assert result(app_server, "cc2") == {"type": "websocket.disconnect", "code": 1005,
                                         "reason": ""}


def test_exception_after_accept_closes_with_1011_and_is_logged(app_server):
    ws = connect(app_server, "/wsraw/echo")
    ws.send_text("raise")
    assert close_frame(ws) == (1011, "")
    ws.close(1011)
    assert closes(ws)
    assert app_server.wait_for_log(r"RuntimeError: raised after accepting", 5)
    assert app_server.wait_for_log(r"Exception in ASGI application", 5)


def test_returning_after_accept_closes_with_1000(app_server):
    ws = connect(app_server, "/wsraw/echo")
    ws.send_text("return")
    assert close_frame(ws) == (1000, "")
    ws.close(1000)
    assert closes(ws)
    assert not app_server.wait_for_log(r"Exception in ASGI application|ASGI callable", 0.2)


# --------------------------------------------------------------------------
# Lost connections


def test_connection_lost_after_the_handshake_is_1006(app_server):
    ws = connect(app_server, "/wsraw/echo?key=lost")
    ws.send_text("ping")
    assert text(ws) == "ping"
    ws.shutdown()  # no close frame
    assert result(app_server, "lost") == {"type": "websocket.disconnect", "code": 1006,
                                          "reason": ""}
    assert result(app_server, "lost:send") == OSERROR


def test_connection_lost_before_the_handshake_is_1006(app_server):
    sock = socket.create_connection(("127.0.0.1", app_server.port))
    sock.sendall(ws_raw.handshake_request("/wsraw/late?key=early&delay=0.5")[0])
    time.sleep(0.1)
    sock.close()
    # The app accepts after the client left (uvicorn lets it): its receive()
    # says 1006, and send() raises an OSError. (The server reads nothing
    # while a handshake waits for its handler, so it may learn of the loss
    # only when the 101 goes out: then the 1006 comes with an empty reason.)
    got = result(app_server, "early")
    assert got.pop("reason", "") == "" and got == {"type": "websocket.disconnect", "code": 1006}
    assert result(app_server, "early:send") == OSERROR
    assert not app_server.wait_for_log(r"Exception in ASGI application", 0.2)


# --------------------------------------------------------------------------
# Limits and flow control


def test_max_size_to_the_byte(make_server):
    srv = serve(make_server, "--ws-max-size", "1000")
    ws = connect(srv, "/wsraw/echo?key=size")
    ws.send_binary(b"a" * 1000)
    assert ws.recv_message() == (ws_raw.OP_BINARY, b"a" * 1000)
    ws.send_text("é" * 500)  # 1000 bytes of UTF-8
    assert text(ws) == "é" * 500
    ws.send_binary(b"b" * 1001)
    assert close_frame(ws) == (1009, "")
    assert closes(ws)
    assert result(srv, "size") == {"type": "websocket.disconnect", "code": 1009, "reason": ""}
    # Fragments each under the limit, together over it.
    ws = connect(srv, "/wsraw/echo?key=frag")
    ws.send_frame(ws_raw.OP_TEXT, b"c" * 600, fin=False)
    ws.send_frame(ws_raw.OP_CONT, b"c" * 400, fin=False)
    ws.send_frame(ws_raw.OP_CONT, b"c")
    assert close_frame(ws) == (1009, "")
    assert closes(ws)
    assert result(srv, "frag")["code"] == 1009


def send_until_stalled(sock, frames, stall=1.0):
    """Writes frames without blocking; returns how many were written whole
    when the socket stayed unwritable for `stall` seconds (or all)."""
    sock.setblocking(False)
    try:
        for i, data in enumerate(frames):
            view = memoryview(data)
            while view:
                _, w, _ = select.select([], [sock], [], stall * time_scale())
                if not w:
                    return i
                view = view[sock.send(view):]
        return len(frames)
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("max_queue,stalls", [(4, True), (1000, False)])
def test_max_queue_pauses_reading_until_the_app_receives(make_server, max_queue, stalls):
    srv = serve(make_server, "--ws-max-queue", str(max_queue))
    key = "q%d" % max_queue
    ws = connect(srv, "/wsraw/hold?key=" + key)
    payloads = [bytes([i]) * (1024 * 1024) for i in range(48)]
    frames = [ws_raw.frame(ws_raw.OP_BINARY, p) for p in payloads]
    written = send_until_stalled(ws.sock, frames)
    # The app receives nothing until released: with 4 at most waiting for it,
    # the server stops reading and the client's writes stall; with 1000, the
    # server reads all 48 MiB.
    if stalls:
        assert written < len(frames), written
    else:
        assert written == len(frames)
    httpx.get(srv.url("/wsraw/release?key=" + key), timeout=5)
    t = threading.Thread(target=lambda: ws.sock.sendall(b"".join(frames[written:])))
    t.start()
    t.join(30 * time_scale())
    assert not t.is_alive()
    ws.send_text("done")
    assert text(ws) == "got 49"
    want = [[len(p), hashlib.sha256(p).hexdigest()[:16]] for p in payloads]
    want.append([4, hashlib.sha256(b"done").hexdigest()[:16]])
    assert result(srv, key) == want
    ws.shutdown()


def test_send_waits_for_a_slow_client_and_raises_when_it_leaves(app_server):
    ws = connect(app_server, "/wsraw/flood?key=fl")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(0.5 * time_scale())
    sent = result(app_server, "fl:sent")
    time.sleep(0.5 * time_scale())
    # send() waits while the client does not read: the app stalls too.
    assert result(app_server, "fl:sent") == sent
    assert sent < 1000, sent
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()  # reset
    got = result(app_server, "fl")
    assert got["error"] == "ClientDisconnected (OSError): the client has disconnected", got
    assert not app_server.wait_for_log(r"Exception in ASGI application", 0.2)


def test_a_client_leaving_while_send_waits_does_not_hold_shutdown(make_server):
    srv = serve(make_server, "--timeout-graceful-shutdown", "4")
    ws = connect(srv, "/wsraw/flood?key=fl")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(0.5 * time_scale())
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()
    assert "ClientDisconnected" in result(srv, "fl")["error"]
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(3 * time_scale()) == 0, srv.output()
    assert not srv.wait_for_log(r"graceful shutdown timed out", 0.1)


# --------------------------------------------------------------------------
# Shutdown and other modes


def test_shutdown_closes_with_1001_and_the_app_hears_it(make_server, tmp_path, monkeypatch):
    seen = tmp_path / "results.json"
    monkeypatch.setenv("ASGI_APP_RESULTS_FILE", str(seen))
    srv = serve(make_server)
    ws = connect(srv, "/wsraw/echo?key=bye")
    ws.send_text("open")
    assert text(ws) == "open"
    start = len(srv.stderr.snapshot())
    srv.signal(signal.SIGTERM)
    assert close_frame(ws) == (1001, "")
    ws.close(1001)
    assert closes(ws)
    assert srv.wait_exit(15 * time_scale()) == 0, srv.output()
    # The lifespan shutdown ran after the connection's end reached the app.
    assert srv.wait_for_log(r"Application shutdown complete", 1, start=start), srv.output()
    results = json.loads(seen.read_text())
    assert results["bye"] == {"type": "websocket.disconnect", "code": 1001, "reason": ""}
    assert results["bye:send"] == OSERROR


def test_ws_none_hands_upgrades_to_the_app_as_http(make_server):
    srv = serve(make_server, "--ws", "none")
    r = refused(srv, "/ws")
    assert r.status == 404  # FastAPI has no HTTP route at /ws


def test_wsgi_apps_refuse_websockets(make_server):
    srv = make_server("plain:app", "--interface", "wsgi", "--app-dir",
                      os.path.normpath(os.path.join(HERE, "..", "wsgi_app")), ready_timeout=20)
    deadline = time.monotonic() + 20 * time_scale()
    while True:
        try:
            if httpx.get(srv.url("/hello"), timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.05)
    # WSGI has no WebSockets: refused as at a path without a WebSocket route.
    r = refused(srv, "/hello")
    assert r.status == 403
    assert json.loads(r.body) == {"detail": "No WebSocket route at this path"}
