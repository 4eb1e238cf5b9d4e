"""Differential test: the WebSocket routes of the FastAPI apps in
tests/asgi_app (main.py: FastAPI's tutorial and the raw ASGI app at /wsraw;
modern.py: the tutorial as current FastAPI writes it) served by evicorn and
by uvicorn (`python -m uvicorn APP --ws websockets`) of the same
interpreter. The same client bytes (the raw client ws_raw.py, with a fixed
Sec-WebSocket-Key) go to both; both must answer the same handshake status
and body, the same messages, the same close codes and reasons, and the app
must see the same events (read back at /result/{key}). Each test also
checks the answer itself, so both servers being wrong the same way fails
too.

Where evicorn deliberately differs from uvicorn, the test says so and
checks each server's own answer (see plugins/asgi/README.md):
  - an app that raises after accepting: evicorn closes with 1011, uvicorn
    drops the connection without a close frame (the client sees 1006);
  - an app that returns after accepting without closing: evicorn closes
    with 1000, uvicorn drops the connection;
  - websocket.send after the app closed or after it received the
    disconnect: evicorn raises ClientDisconnected (an OSError, ASGI 2.4),
    uvicorn a RuntimeError;
  - a close code no endpoint may send: evicorn raises RuntimeError, uvicorn
    the websockets library's ProtocolError;
  - graceful shutdown: evicorn closes with 1001, uvicorn with 1012;
  - the server's answer to a client's close echoes the code; uvicorn's
    also echoes the reason.

Needs uvicorn with the websockets library (the PyPI stack of
tests/requirements-asgi.txt); skipped elsewhere, such as on Debian's stack.
"""
import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import httpx
import pytest

import ws_raw
from evicorn_harness import (evicorn_bin, free_port, python_module_built, stop_group,
                             time_scale, wait_http_ready)

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.normpath(os.path.join(HERE, "..", "asgi_app"))
PYTHON = sys.executable
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MAX_SIZE = 65536


def _version(name):
    try:
        from importlib.metadata import version
        return tuple(int(p) for p in version(name).split(".")[:2])
    except Exception:
        return None


def stack_problem():
    """Why this interpreter cannot run the comparison, or None."""
    for module in ("uvicorn", "websockets", "fastapi"):
        if importlib.util.find_spec(module) is None:
            return "%s is not installed for %s" % (module, PYTHON)
    if (_version("fastapi") or (0, 0)) < (0, 100):
        return "modern.py needs FastAPI >= 0.100"
    return None


pytestmark = [
    pytest.mark.skipif(not python_module_built(), reason="evicorn's Python module is not built"),
    pytest.mark.skipif(stack_problem() is not None, reason=str(stack_problem())),
]


# ---- the two servers -------------------------------------------------------------


def start_pair(tmp_path_factory, app, *args):
    """evicorn and uvicorn serving app with the same options; (procs, ports)."""
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        env.setdefault("VIRTUAL_ENV", sys.prefix)  # evicorn serves with this venv too
    plugins = str(tmp_path_factory.mktemp("plugins"))
    logs = tmp_path_factory.mktemp("logs")
    ev_port, uv_port = free_port(), free_port()
    procs = []
    try:
        with open(logs / "evicorn.log", "w") as ev_log:
            procs.append(subprocess.Popen(
                [evicorn_bin(), app, "--app-dir", APP_DIR, "--host", "127.0.0.1", "--port",
                 str(ev_port), "--plugins", plugins, "--no-access-log"] + list(args),
                env=env, stdin=subprocess.DEVNULL, stdout=ev_log, stderr=subprocess.STDOUT,
                start_new_session=True))
        with open(logs / "uvicorn.log", "w") as uv_log:
            procs.append(subprocess.Popen(
                [PYTHON, "-m", "uvicorn", app, "--app-dir", APP_DIR, "--host", "127.0.0.1",
                 "--port", str(uv_port), "--ws", "websockets", "--no-access-log"] + list(args),
                env=env, stdin=subprocess.DEVNULL, stdout=uv_log, stderr=subprocess.STDOUT,
                start_new_session=True))
        ready = "/json" if app.startswith("main") else "/health"
        wait_http_ready(ev_port, procs[0], ready, log=str(logs / "evicorn.log"))
        wait_http_ready(uv_port, procs[1], ready, log=str(logs / "uvicorn.log"))
    except BaseException:
        for p in procs:
            stop_group(p)
        raise
    return procs, (ev_port, uv_port)


@pytest.fixture(scope="module")
def main_pair(tmp_path_factory):
    procs, ports = start_pair(tmp_path_factory, "main:app", "--ws-max-size", str(MAX_SIZE))
    yield ports
    for p in procs:
        stop_group(p)


@pytest.fixture(scope="module")
def modern_pair(tmp_path_factory):
    procs, ports = start_pair(tmp_path_factory, "modern:app")
    yield ports
    for p in procs:
        stop_group(p)


# ---- one conversation, as the client saw it ---------------------------------------------

APP_HEADERS = ("content-type", "content-length", "x-reason", "sec-websocket-protocol",
               "x-ws-extra", "set-cookie")


def event_of(op, payload):
    if op == ws_raw.OP_TEXT:
        return ("text", payload.decode())
    if op == ws_raw.OP_BINARY:
        return ("bytes", payload)
    if op == ws_raw.OP_CLOSE:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        return ("close", code, payload[2:].decode())
    return ("control", op, payload)


def converse(port, path, script=(), extra=()):
    """Runs script on a new connection; returns what the client saw: the
    handshake's answer, every message, and how the connection ended (the
    server's close frame, or "dropped" without one).

    Steps: ("text", s), ("bytes", b), ("frame", opcode, payload, fin),
    ("recv", n): read n messages, ("close", code, reason): the client
    closes (the server's answer ends the conversation), ("lose",): the
    client goes without a close frame."""
    try:
        ws = ws_raw.connect(port, path, extra=extra, key=KEY, timeout=10 * time_scale())
    except ws_raw.HandshakeRefused as r:
        # An empty refusal's content type is the server's own (uvicorn's
        # says text/plain).
        names = APP_HEADERS if r.body else ("content-length",)
        return [("refused", r.status, r.body, sorted((k, v) for k, v in r.headers if k in names))]
    events = [("accepted", sorted((k, v) for k, v in ws.headers if k in APP_HEADERS))]
    try:
        for step in script:
            kind = step[0]
            if kind == "text":
                ws.send_text(step[1])
            elif kind == "bytes":
                ws.send_binary(step[1])
            elif kind == "frame":
                ws.send_frame(step[1], step[2], fin=step[3])
            elif kind == "recv":
                events.extend(event_of(*ws.recv_message()) for _ in range(step[1]))
            elif kind == "close":
                ws.close(step[1], step[2].encode())
                # Only the code: uvicorn echoes the reason too, evicorn not.
                events.append(event_of(*ws.recv_message())[:2])
                ws.closed_by_server(5 * time_scale())
                return events
            elif kind == "lose":
                return events
        # How the server ends it.
        try:
            end = event_of(*ws.recv_message())
        except ConnectionError:
            events.append(("dropped",))
            return events
        events.append(end)
        if end[0] == "close":
            ws.close(end[1] if end[1] is not None else 1000)
            ws.closed_by_server(5 * time_scale())
        return events
    finally:
        ws.shutdown()


def result(port, key, timeout=5.0):
    deadline = time.monotonic() + timeout * time_scale()
    with httpx.Client(timeout=5.0 * time_scale()) as c:
        while True:
            got = c.get("http://127.0.0.1:%d/result/%s" % (port, key)).json()["result"]
            if got is not None or time.monotonic() > deadline:
                return got
            time.sleep(0.02)


def both(ports, path, script=(), extra=()):
    """The conversation with evicorn, then with uvicorn: (evicorn's, uvicorn's)."""
    return tuple(converse(port, path, script, extra) for port in ports)


def same(ports, path, script=(), extra=()):
    ev, uv = both(ports, path, script, extra)
    assert ev == uv
    return ev


def same_result(ports, key):
    ev, uv = (result(port, key) for port in ports)
    assert ev == uv, key
    return ev


# ---- FastAPI's tutorial, on both apps ---------------------------------------------------

APPS = ["main_pair", "modern_pair"]


@pytest.mark.parametrize("pair", APPS)
def test_tutorial_echo(request, pair):
    ports = request.getfixturevalue(pair)
    got = same(ports, "/ws", [("text", "hello"), ("recv", 1), ("text", "héllo ✓"), ("recv", 1),
                              ("close", 1000, "")])
    assert got == [("accepted", []), ("text", "Message text was: hello"),
                   ("text", "Message text was: héllo ✓"), ("close", 1000)]


@pytest.mark.parametrize("pair", APPS)
def test_tutorial_dependencies(request, pair):
    ports = request.getfixturevalue(pair)
    got = same(ports, "/items/foo/ws?token=tok&q=5", [("text", "hi"), ("recv", 3),
                                                      ("close", 1000, "")])
    assert got == [("accepted", []), ("text", "Session cookie or query token value is: tok"),
                   ("text", "Query parameter q is: 5"),
                   ("text", "Message text was: hi, for item ID: foo"), ("close", 1000)]
    got = same(ports, "/items/bar/ws", [("text", "yo"), ("recv", 2), ("close", 1000, "")],
               extra=[("Cookie", "session=cookie-value")])
    assert got[1] == ("text", "Session cookie or query token value is: cookie-value")
    # Refused before accepting: no credentials (WebSocketException), or a
    # q that is not an int (FastAPI's validation error): both 403.
    for path in ("/items/foo/ws", "/items/foo/ws?token=t&q=x"):
        got = same(ports, path)
        assert got[0][:3] == ("refused", 403, b""), got


@pytest.mark.parametrize("pair", APPS)
def test_tutorial_chat(request, pair):
    ports = request.getfixturevalue(pair)
    seen = []
    for port in ports:
        one = ws_raw.connect(port, "/ws/1", key=KEY)
        two = ws_raw.connect(port, "/ws/2", key=KEY)
        one.send_text("hello")
        events = [event_of(*one.recv_message()) for _ in range(2)]
        events.append(event_of(*two.recv_message()))
        two.close(1000)
        events.append(event_of(*two.recv_message())[:2])
        two.shutdown()
        events.append(event_of(*one.recv_message()))
        one.shutdown()
        seen.append(events)
    assert seen[0] == seen[1] == [
        ("text", "You wrote: hello"), ("text", "Client #1 says: hello"),
        ("text", "Client #1 says: hello"), ("close", 1000), ("text", "Client #2 left the chat")]
    assert same(ports, "/ws/abc")[0][:2] == ("refused", 403)


# ---- the handshake ---------------------------------------------------------------------


def test_close_before_accept(main_pair):
    got = same(main_pair, "/wsraw/close-before?key=d-cb")
    assert got == [("refused", 403, b"", [("content-length", "0")])]
    assert same_result(main_pair, "d-cb") == {"type": "websocket.disconnect", "code": 1006}
    assert same_result(main_pair, "d-cb:send").startswith(
        "RuntimeError: Expected ASGI message 'websocket.http.response.body' but got "
        "'websocket.send'.")


def test_http_response_extension(main_pair):
    got = same(main_pair, "/wsraw/reject?key=d-rj&status=401")
    assert got == [("refused", 401, b"no token, bye!",
                    [("content-length", "14"), ("content-type", "text/plain; charset=utf-8"),
                     ("x-reason", "no token")])]
    assert same_result(main_pair, "d-rj") == {"type": "websocket.disconnect", "code": 1006}


@pytest.mark.parametrize("path", ["/wsraw/raise-before", "/wsraw/return-before"])
def test_no_handshake_is_a_500(main_pair, path):
    got = same(main_pair, path)
    assert got == [("refused", 500, b"Internal Server Error",
                    [("content-length", "21"), ("content-type", "text/plain; charset=utf-8")])]


def test_subprotocol_and_headers(main_pair):
    got = same(main_pair, "/wsraw/echo?sub=chat&hdr=1", [("text", "x"), ("recv", 1),
                                                        ("close", 1000, "")],
               extra=[("Sec-WebSocket-Protocol", "superchat, chat")])
    assert got == [("accepted", [("sec-websocket-protocol", "chat"), ("set-cookie", "ws=1; Path=/"),
                                 ("x-ws-extra", "yes")]),
                   ("text", "x"), ("close", 1000)]


def test_messages_in_the_wrong_order(main_pair):
    got = same(main_pair, "/wsraw/misuse?key=d-mis", [("recv", 1), ("lose",)])
    assert json.loads(got[1][1]) == [
        "RuntimeError: Expected ASGI message 'websocket.accept', 'websocket.close', or "
        "'websocket.http.response.start' but got 'websocket.send'.",
        "RuntimeError: Expected ASGI message 'websocket.send' or 'websocket.close', but got "
        "'websocket.accept'.",
        "RuntimeError: Expected ASGI message 'websocket.send' or 'websocket.close', but got "
        "'websocket.http.response.start'."]
    # A close code no endpoint may send: each server's own exception (and
    # uvicorn's connection is left closing).
    ev, uv = (result(port, "d-mis:bad-close") for port in main_pair)
    assert ev == "RuntimeError: Invalid WebSocket close code 1005 in 'websocket.close'."
    assert uv.startswith("ProtocolError: ")


def test_scope(main_pair):
    ev, uv = both(main_pair, "/wsraw/scope?a=1&b=%20x",
                  extra=[("Sec-WebSocket-Protocol", "chat, v2"), ("X-Multi", "1"),
                         ("X-Multi", "2")])
    scopes = []
    for conv, port in zip((ev, uv), main_pair):
        s = json.loads(conv[1][1])
        assert s.pop("server") == ["127.0.0.1", port]
        assert s.pop("client")[0] == "127.0.0.1"
        scopes.append(s)
    assert scopes[0] == scopes[1]
    s = scopes[0]
    assert s["type"] == "websocket" and s["scheme"] == "ws" and s["http_version"] == "1.1"
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert s["subprotocols"] == ["chat", "v2"]
    assert s["extensions"] == {"websocket.http.response": {}}
    assert s["query_string"] == "a=1&b=%20x" and s["raw_path"] == "/wsraw/scope"
    assert s["state"] == ["counter", "greeting"] and s["has_method"] is False


def test_wss_behind_a_proxy(main_pair):
    ev, uv = both(main_pair, "/wsraw/scope", extra=[("X-Forwarded-Proto", "https")])
    assert json.loads(ev[1][1])["scheme"] == json.loads(uv[1][1])["scheme"] == "wss"


# ---- messages and closes -------------------------------------------------------------------


def test_text_and_bytes(main_pair):
    big = bytes(range(256)) * 200
    got = same(main_pair, "/wsraw/echo", [
        ("text", "héllo"), ("recv", 1), ("bytes", b"\x00\xff"), ("recv", 1), ("bytes", big),
        ("recv", 1), ("frame", ws_raw.OP_TEXT, b"frag", False),
        ("frame", ws_raw.OP_CONT, b"mented", True), ("recv", 1), ("close", 1000, "")])
    assert got == [("accepted", []), ("text", "héllo"), ("bytes", b"\x00\xff"), ("bytes", big),
                   ("text", "fragmented"), ("close", 1000)]


def test_app_closes_with_code_and_reason(main_pair):
    ev, uv = both(main_pair, "/wsraw/echo?key=d-ac", [("text", "close 4001 going away")])
    assert ev == uv == [("accepted", []), ("close", 4001, "going away")]
    assert same_result(main_pair, "d-ac:again") == {"type": "websocket.disconnect", "code": 1005}
    # send() after the app's own close: ASGI 2.4's OSError here, uvicorn's
    # RuntimeError there.
    ev_send, uv_send = (result(port, "d-ac:send") for port in main_pair)
    assert ev_send == "ClientDisconnected (OSError): the WebSocket is closed"
    assert uv_send.startswith("RuntimeError: Unexpected ASGI message 'websocket.send', after "
                              "sending 'websocket.close'")


def test_client_closes_with_code_and_reason(main_pair):
    got = same(main_pair, "/wsraw/echo?key=d-cc", [("text", "a"), ("recv", 1),
                                                  ("close", 4002, "client bye ✓")])
    assert got == [("accepted", []), ("text", "a"), ("close", 4002)]
    assert same_result(main_pair, "d-cc") == {"type": "websocket.disconnect", "code": 4002,
                                              "reason": "client bye ✓"}
    assert same_result(main_pair, "d-cc:again") == {"type": "websocket.disconnect",
                                                    "code": 1005}
    ev_send, uv_send = (result(port, "d-cc:send") for port in main_pair)
    assert ev_send == "ClientDisconnected (OSError): the WebSocket is closed"
    assert uv_send.startswith("RuntimeError: Unexpected ASGI message 'websocket.send'")


def test_connection_lost_after_the_handshake(main_pair):
    got = same(main_pair, "/wsraw/echo?key=d-lost", [("text", "a"), ("recv", 1), ("lose",)])
    assert got == [("accepted", []), ("text", "a")]
    assert same_result(main_pair, "d-lost") == {"type": "websocket.disconnect", "code": 1006,
                                                "reason": ""}
    # The app received the disconnect, then sends: OSError here, uvicorn's
    # RuntimeError there.
    ev_send, uv_send = (result(port, "d-lost:send") for port in main_pair)
    assert ev_send == "ClientDisconnected (OSError): the WebSocket is closed"
    assert uv_send.startswith("RuntimeError: Unexpected ASGI message 'websocket.send'")


def test_connection_lost_before_the_handshake(main_pair):
    for port in main_pair:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(ws_raw.handshake_request("/wsraw/late?key=d-early&delay=0.5", key=KEY)[0])
        time.sleep(0.1)
        sock.close()
    got = [result(port, "d-early") for port in main_pair]
    # evicorn may learn of the loss only when the 101 goes out (it reads
    # nothing while a handshake waits): then its 1006 comes with an empty
    # reason.
    assert got[0].pop("reason", "") == ""
    assert got[0] == got[1] == {"type": "websocket.disconnect", "code": 1006}
    for port in main_pair:
        assert result(port, "d-early:send").startswith("ClientDisconnected (OSError)")


def test_max_size(main_pair):
    got = same(main_pair, "/wsraw/echo?key=d-size", [
        ("bytes", b"a" * MAX_SIZE), ("recv", 1), ("bytes", b"b" * (MAX_SIZE + 1))])
    assert got == [("accepted", []), ("bytes", b"a" * MAX_SIZE), ("close", 1009, "")]
    # The app hears the 1009 the server closed with; uvicorn's websockets
    # implementation tells it 1006, 10 s later (not waited for here).
    assert result(main_pair[0], "d-size")["code"] == 1009
    got = same(main_pair, "/wsraw/echo?key=d-frag", [
        ("frame", ws_raw.OP_BINARY, b"c" * (MAX_SIZE // 2), False),
        ("frame", ws_raw.OP_CONT, b"c" * (MAX_SIZE // 2), False),
        ("frame", ws_raw.OP_CONT, b"c", True)])
    assert got == [("accepted", []), ("close", 1009, "")]


# ---- where evicorn differs on purpose ----------------------------------------------------


def test_exception_after_accept(main_pair):
    ev, uv = both(main_pair, "/wsraw/echo", [("text", "raise")])
    assert ev == [("accepted", []), ("close", 1011, "")]
    assert uv == [("accepted", []), ("dropped",)]


def test_return_after_accept_without_close(main_pair):
    ev, uv = both(main_pair, "/wsraw/echo", [("text", "return")])
    assert ev == [("accepted", []), ("close", 1000, "")]
    assert uv == [("accepted", []), ("dropped",)]


def test_graceful_shutdown(tmp_path_factory):
    procs, ports = start_pair(tmp_path_factory, "main:app")
    try:
        codes = []
        for proc, port in zip(procs, ports):
            ws = ws_raw.connect(port, "/wsraw/echo", key=KEY)
            ws.send_text("up")
            assert event_of(*ws.recv_message()) == ("text", "up")
            os.killpg(proc.pid, signal.SIGTERM)
            end = event_of(*ws.recv_message())
            codes.append(end[:2])
            try:
                ws.close(end[1])
            except OSError:
                pass
            ws.closed_by_server(5 * time_scale())
            ws.shutdown()
            codes.append(proc.wait(15 * time_scale()))
        # uvicorn re-raises the SIGTERM it handled once it is done.
        assert codes == [("close", 1001), 0, ("close", 1012), -signal.SIGTERM]
    finally:
        for p in procs:
            stop_group(p)
