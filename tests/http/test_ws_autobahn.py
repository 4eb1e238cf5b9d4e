"""WebSocket conformance (RFC 6455, RFC 7692), case by case after the groups
of the Autobahn|Testsuite's fuzzing client: 1 framing, 2 pings and pongs,
3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling,
9 limits, 10 auto-fragmentation, 12 and 13 permessage-deflate.

Every case is a row of CASES: an id (Autobahn's where the case is one of
its cases, a new sub-group number where it is not), a description, the
extension offer of its handshake, and a script of frames to send and of
what must come back, in order:

    Echo(op, payload)  the next message is this one, byte for byte
    Pong(payload)      the next frame is a pong with this payload
    Quiet(s)           nothing at all arrives for s seconds
    Close(codes)       the next frame is a close with one of these codes
                       (None: no code), then the server closes the TCP
                       connection with nothing more on the wire

A script that does not end on a Close is ended by the client's close 1000,
which must come back as 1000 before anything else: a pong or a message the
server should not have sent shows up there ("nothing" cases need no wait).
Where Autobahn grades "OK" and "NON-STRICT", the strict behaviour is
asserted: the close on invalid UTF-8 must come before the rest of the
message is sent, the echo of a message before a bad frame must come back,
and nothing is answered after a close. Each frame the server sends is
checked on the way in (not masked, no RSV bit but RSV1 on the first frame of
a compressed message, control frames whole and short, text valid UTF-8).

One server (examples/chat's GET /ws/echo) serves every case, each on its own
connection; the cases are the same in every build (under the sanitizers,
EVICORN_TIME_SCALE stretches only the waits).
tests/http/ws_autobahn_report.py prints the per-group table.
"""
import os
import random
import socket
import struct
import time
import zlib

import pytest

import ws_raw
from evicorn_harness import serving_plugin_copy, time_scale
from ws_raw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(HERE, "..", "..", "build", "plugins")

SCALE = time_scale()
TIMEOUT = 20.0 * SCALE  # for any one expected frame or the TCP close
QUIET = 0.1 * SCALE  # how long "nothing arrives" is watched for

KIB, MIB = 1024, 1024 * 1024
MAX_SIZE = 16 * MIB  # the server's default --ws-max-size
TAIL = b"\x00\x00\xff\xff"

GROUPS = {
    "1": "Framing", "2": "Pings/Pongs", "3": "Reserved Bits", "4": "Opcodes",
    "5": "Fragmentation", "6": "UTF-8 Handling", "7": "Close Handling",
    "9": "Limits/Performance", "10": "Auto-Fragmentation", "12": "WebSocket Compression",
    "13": "WebSocket Compression (different parameters)",
}

# --------------------------------------------------------------------------
# The script's steps


class Frame:
    """One frame from the client. length: the length the head announces
    (default: the payload's); chop: sent in writes of that many bytes;
    sync: sent in a write of its own (else frames share one write until the
    next expectation)."""

    def __init__(self, op, payload=b"", fin=True, rsv=0, length=None, chop=None, sync=False):
        self.op, self.payload, self.fin, self.rsv = op, as_bytes(payload), fin, rsv
        self.length, self.chop, self.sync = length, chop, sync


class Msg:
    """A data message from the client, in frames of `frag` payload bytes
    (one frame when None), compressed with the connection's deflater
    (permessage-deflate, RSV1 on the first frame) when compress."""

    def __init__(self, op, payload, frag=None, compress=False, chop=None, sync=False):
        self.op, self.payload, self.frag, self.compress = op, as_bytes(payload), frag, compress
        self.chop, self.sync = chop, sync


class Raw:
    """Bytes written as they are (a frame cut in pieces, say), in a write of
    their own."""

    def __init__(self, data):
        self.data = data


class Pause:
    def __init__(self, seconds):
        self.seconds = seconds


class Echo:
    """The next message: opcode and payload exactly; compressed: whether it
    must come compressed (None: either)."""

    def __init__(self, op, payload, compressed=None):
        self.op, self.payload, self.compressed = op, as_bytes(payload), compressed


class Pong:
    def __init__(self, payload=b""):
        self.payload = as_bytes(payload)


class Quiet:
    def __init__(self, seconds=None):
        self.seconds = seconds


class Close:
    """The server's close frame (a code of `codes`, None meaning a close
    without a code), then the end of the TCP connection."""

    def __init__(self, *codes):
        self.codes = codes


def as_bytes(x):
    return x.encode("utf-8") if isinstance(x, str) else bytes(x)


def echo(op, payload, **kw):
    """A message and its echo."""
    compressed = kw.pop("compressed", None)
    return [Msg(op, payload, **kw), Echo(op, payload, compressed)]


def close_frame(code=None, reason=b""):
    return Frame(OP_CLOSE, b"" if code is None else struct.pack("!H", code) + as_bytes(reason))


class Case:
    def __init__(self, cid, desc, script, offer=None, answer=False, client_bits=None,
                 xfail=None):
        """script: the steps, or a function returning them (for payloads
        built only when the case runs). offer: the Sec-WebSocket-Extensions
        header of the handshake; answer: the one the server must send back
        (None: none; False: not checked). client_bits: the window the
        client deflates with (default: what the answer allows)."""
        self.id, self.desc, self.script = cid, desc, script
        self.offer, self.answer, self.client_bits = offer, answer, client_bits
        self.xfail = xfail


# --------------------------------------------------------------------------
# The client side of one case


class Failure(AssertionError):
    pass


def deflate_params(answer):
    """The answer's permessage-deflate parameters as a dict, or None."""
    if not answer:
        return None
    parts = [p.strip() for p in answer.split(";")]
    assert parts[0] == "permessage-deflate", answer
    params = {}
    for p in parts[1:]:
        name, _, value = p.partition("=")
        assert name not in params, "parameter repeated in the answer: %r" % answer
        params[name.strip()] = value.strip().strip('"') if value else True
    return params


class Peer:
    def __init__(self, port, case):
        extra = [("Sec-WebSocket-Extensions", case.offer)] if case.offer else ()
        ws = ws_raw.connect(port, "/ws/echo", extra=extra, timeout=TIMEOUT)
        self.sock = ws.sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(ws.buf)
        self.pending = bytearray()
        self.send_error = None
        self.answer = ws.header("sec-websocket-extensions")
        if case.answer is not False and self.answer != case.answer:
            self.close()
            raise Failure("extension answer %r, expected %r" % (self.answer, case.answer))
        self.params = deflate_params(self.answer)
        # Outgoing compression: the window the case asks for, else the
        # largest the answer allows (RFC 7692 7.1.2.2).
        p = self.params or {}
        self.client_bits = case.client_bits or int(p.get("client_max_window_bits") or 15)
        self.client_reset = "client_no_context_takeover" in p
        self.server_bits = int(p.get("server_max_window_bits") or 15)
        self.server_reset = "server_no_context_takeover" in p
        self.deflater = self.inflater = None
        # Incoming message in progress: (opcode, compressed, [payloads]).
        self.partial = None
        self.events = []

    # ---- sending

    def compress(self, data):
        bits = self.client_bits
        if self.deflater is None or self.client_reset:
            if bits == 8:
                # zlib has no raw deflate with a 256-byte window: Huffman
                # coding alone refers to no earlier byte, so any window fits.
                self.deflater = zlib.compressobj(6, zlib.DEFLATED, -9, 8, zlib.Z_HUFFMAN_ONLY)
            else:
                self.deflater = zlib.compressobj(6, zlib.DEFLATED, -bits)
        out = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def write(self, data, chop=None, sync=False):
        if chop or sync:
            self.flush()
            step = chop or len(data) or 1
            for i in range(0, len(data), step):
                self._sendall(data[i:i + step])
        else:
            self.pending += data

    def flush(self):
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self._sendall(data)

    def _sendall(self, data):
        if self.send_error is not None:
            return
        try:
            self.sock.settimeout(TIMEOUT)
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The server closed: what it sent before stays to be read.
            self.send_error = e

    def send(self, step):
        if isinstance(step, Frame):
            data = ws_raw.frame(step.op, step.payload, fin=step.fin, rsv=step.rsv,
                                length=step.length)
            self.write(data, step.chop, step.sync)
        elif isinstance(step, Msg):
            payload, rsv = step.payload, 0
            if step.compress:
                assert self.params is not None, "compression was not negotiated"
                payload, rsv = self.compress(payload), 4
            size = step.frag or len(payload) or 1
            pieces = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
            parts = []
            for i, piece in enumerate(pieces):
                parts.append(ws_raw.frame(step.op if i == 0 else OP_CONT, piece,
                                          fin=i == len(pieces) - 1, rsv=rsv if i == 0 else 0))
            self.write(b"".join(parts), step.chop, step.sync)
        elif isinstance(step, Raw):
            self.write(step.data, sync=True)
        elif isinstance(step, Pause):
            self.flush()
            time.sleep(step.seconds)
        else:
            raise TypeError(step)

    # ---- receiving

    def _fill(self, deadline):
        """More bytes into buf; False at the end of the connection."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _need(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise Failure("the server closed the connection (%d byte(s) of a frame)"
                              % len(self.buf))

    def frame(self, deadline):
        """(fin, rsv, opcode, payload) of the server's next frame."""
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise Failure("the server masked a frame")
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    def event(self, deadline):
        """The next control frame ("ping"/"pong"/"close", payload) or whole
        message ("message", opcode, payload, compressed), checked."""
        while True:
            fin, rsv, op, payload = self.frame(deadline)
            if op in (OP_CLOSE, OP_PING, OP_PONG):
                if not fin or rsv or len(payload) > 125:
                    raise Failure("bad control frame: fin %s rsv %d len %d"
                                  % (fin, rsv, len(payload)))
                return ({OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}[op], payload)
            if op not in (OP_CONT, OP_TEXT, OP_BINARY):
                raise Failure("frame with opcode %d" % op)
            if op == OP_CONT:
                if self.partial is None:
                    raise Failure("continuation frame outside a message")
                if rsv:
                    raise Failure("RSV bits %d on a continuation frame" % rsv)
                self.partial[2].append(payload)
            else:
                if self.partial is not None:
                    raise Failure("new message inside a fragmented one")
                if rsv & ~(4 if self.params is not None else 0):
                    raise Failure("RSV bits %d on a data frame" % rsv)
                self.partial = (op, bool(rsv & 4), [payload])
            if not fin:
                continue
            op, compressed, parts = self.partial
            self.partial = None
            data = b"".join(parts)
            if compressed:
                if self.inflater is None or self.server_reset:
                    self.inflater = zlib.decompressobj(-self.server_bits)
                try:
                    data = self.inflater.decompress(data + TAIL)
                except zlib.error as e:
                    raise Failure("compressed message not inflatable with a window of %d bits: %s"
                                  % (self.server_bits, e))
            if op == OP_TEXT:
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise Failure("text message not valid UTF-8: %s" % e)
            return ("message", op, data, compressed)

    def expect(self, step):
        self.flush()
        deadline = time.monotonic() + TIMEOUT
        if isinstance(step, Quiet):
            seconds = step.seconds if step.seconds is not None else QUIET
            if self.buf:
                raise Failure("expected nothing, got %r" % bytes(self.buf[:60]))
            try:
                more = self._fill(time.monotonic() + seconds)
            except socket.timeout:
                return
            if not more:
                raise Failure("expected nothing, the server closed the connection")
            raise Failure("expected nothing, got %s" % describe(self.event(deadline)))
        try:
            ev = self.event(deadline)
        except socket.timeout:
            raise Failure("nothing came within %.0f s, expected %s"
                          % (TIMEOUT, type(step).__name__.lower()))
        if isinstance(step, Echo):
            if ev[0] != "message" or ev[1] != step.op or ev[2] != step.payload:
                raise Failure("expected the echo (%s), got %s"
                              % (describe(("message", step.op, step.payload, None)), describe(ev)))
            if step.compressed is not None and ev[3] != step.compressed:
                raise Failure("the echo came %scompressed" % ("" if ev[3] else "un"))
        elif isinstance(step, Pong):
            if ev != ("pong", step.payload):
                raise Failure("expected pong %r, got %s" % (step.payload, describe(ev)))
        elif isinstance(step, Close):
            if ev[0] != "close":
                raise Failure("expected a close %r, got %s" % (step.codes, describe(ev)))
            code, reason = close_of(ev[1])
            if code not in step.codes:
                raise Failure("close code %r (reason %r), expected %s"
                              % (code, reason, " or ".join(map(str, step.codes))))
            self.expect_eof(deadline)
        else:
            raise TypeError(step)

    def expect_eof(self, deadline):
        """The server ends the TCP connection and sends nothing more."""
        if self.buf:
            raise Failure("bytes after the close frame: %r" % bytes(self.buf[:60]))
        try:
            while self._fill(deadline):
                raise Failure("bytes after the close frame: %r" % bytes(self.buf[:60]))
        except socket.timeout:
            raise Failure("the server did not close the TCP connection within %.0f s" % TIMEOUT)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def close_of(payload):
    if len(payload) == 0:
        return None, b""
    if len(payload) == 1:
        raise Failure("close frame with a 1-byte payload")
    code = struct.unpack("!H", payload[:2])[0]
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise Failure("close reason not valid UTF-8: %r" % payload[2:])
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise Failure("the server sent close code %d, which no endpoint may send" % code)
    return code, payload[2:]


def describe(ev):
    if ev[0] == "message":
        kind = {OP_TEXT: "text", OP_BINARY: "binary"}[ev[1]]
        data = ev[2]
        shown = repr(data[:40]) + ("..." if len(data) > 40 else "")
        return "%s message of %d bytes %s" % (kind, len(data), shown)
    if ev[0] == "close":
        code, reason = (struct.unpack("!H", ev[1][:2])[0], ev[1][2:]) if len(ev[1]) >= 2 \
            else (None, ev[1])
        return "close %r %r" % (code, reason)
    return "%s %r" % ev


def run_case(port, case):
    script = case.script() if callable(case.script) else case.script
    peer = Peer(port, case)
    try:
        closed = False
        for step in script:
            if isinstance(step, (Echo, Pong, Quiet, Close)):
                peer.expect(step)
                closed = isinstance(step, Close)
                if closed:
                    break
            else:
                peer.send(step)
        if not closed:
            peer.send(close_frame(1000))
            peer.expect(Close(1000))
    finally:
        peer.close()


# --------------------------------------------------------------------------
# The cases

T, B = OP_TEXT, OP_BINARY
HELLO = "Hello, world!"
CASES = []


def case(*a, **kw):
    CASES.append(Case(*a, **kw))


# ---- 1 Framing: text and binary messages of every length encoding

for sub, op, fill in (("1", T, b"*"), ("2", B, b"\xfe")):
    kind = "text" if op == T else "binary"
    for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536), 1):
        case("1.%s.%d" % (sub, i), "Send a %s message with payload length %d" % (kind, n),
             echo(op, fill * n))
    case("1.%s.8" % sub, "Send a %s message with payload length 65536, chopped into writes of "
         "997 octets" % kind, echo(op, fill * 65536, chop=997))

# Beyond Autobahn (its client always masks, and never sets the top bit of a
# 64-bit length): RFC 6455 5.1 and 5.2.
case("1.3.1", "Send an unmasked text frame",
     [Raw(ws_raw.frame(T, HELLO.encode(), mask=False)), Close(1002)])
case("1.3.2", "Send an unmasked ping", [Raw(ws_raw.frame(OP_PING, b"", mask=False)), Close(1002)])
case("1.3.3", "Send an unmasked close", [Raw(ws_raw.frame(OP_CLOSE, b"\x03\xe8", mask=False)),
                                         Close(1002)])
case("1.3.4", "Send a frame whose 64-bit length has the most significant bit set",
     [Frame(B, b"", length=(1 << 63) | 5), Close(1002)])


def head_bytewise(op, payload):
    """A frame whose head (and masking key) goes one octet a write, then the
    payload in one write."""
    data = ws_raw.frame(op, payload)
    head = len(data) - len(payload)
    return [Raw(data[i:i + 1]) for i in range(head)] + [Raw(data[head:]), Echo(op, payload)]


case("1.3.5", "Send a text message of 126 octets (16-bit length) with its head in writes of 1 "
     "octet", head_bytewise(T, b"*" * 126))
case("1.3.6", "Send a binary message of 65536 octets (64-bit length) with its head in writes of "
     "1 octet", lambda: head_bytewise(B, b"\xfe" * 65536))

# ---- 2 Pings and pongs

case("2.1", "Send a ping without payload", [Frame(OP_PING), Pong()])
case("2.2", "Send a ping with a small text payload",
     [Frame(OP_PING, "Hello, world!"), Pong("Hello, world!")])
case("2.3", "Send a ping with a small binary (non UTF-8) payload",
     [Frame(OP_PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),
      Pong(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")])
case("2.4", "Send a ping with a binary payload of 125 octets",
     [Frame(OP_PING, b"\xfe" * 125), Pong(b"\xfe" * 125)])
case("2.5", "Send a ping with a binary payload of 126 octets: the connection is failed",
     [Frame(OP_PING, b"\xfe" * 126), Close(1002)])
case("2.6", "Send a ping with a payload of 125 octets, in writes of 1 octet",
     [Frame(OP_PING, b"\xfe" * 125, chop=1), Pong(b"\xfe" * 125)])
case("2.7", "Send an unsolicited pong without payload: nothing comes back",
     [Frame(OP_PONG)])
case("2.8", "Send an unsolicited pong with payload: nothing comes back",
     [Frame(OP_PONG, "unsolicited pong payload")])
case("2.9", "Send an unsolicited pong, then a ping: only the ping is answered",
     [Frame(OP_PONG, "unsolicited pong payload"), Frame(OP_PING, "ping payload"),
      Pong("ping payload")])
case("2.10", "Send 10 pings with payload: 10 pongs, in order",
     [Frame(OP_PING, "payload-%d" % i) for i in range(10)]
     + [Pong("payload-%d" % i) for i in range(10)])
case("2.11", "Send 10 pings with payload, in writes of 1 octet: 10 pongs, in order",
     [Frame(OP_PING, "payload-%d" % i, chop=1) for i in range(10)]
     + [Pong("payload-%d" % i) for i in range(10)])

# ---- 3 Reserved bits (no extension negotiated: every RSV bit is an error)

case("3.1", "Send a small text message with RSV = 1",
     [Frame(T, HELLO, rsv=1), Close(1002)])
case("3.2", "Send a small text message, then again with RSV = 2, then a ping: the first is "
     "echoed, then the connection is failed, and the ping is not answered",
     [Frame(T, HELLO), Frame(T, HELLO, rsv=2), Frame(OP_PING), Echo(T, HELLO), Close(1002)])
case("3.3", "Send a small text message, then again with RSV = 3, then a ping, frame by frame",
     [Frame(T, HELLO, sync=True), Frame(T, HELLO, rsv=3, sync=True), Frame(OP_PING, sync=True),
      Echo(T, HELLO), Close(1002)])
case("3.4", "Send a small text message, then again with RSV = 4, then a ping, in writes of 1 "
     "octet",
     [Frame(T, HELLO, chop=1), Frame(T, HELLO, rsv=4, chop=1), Frame(OP_PING, chop=1),
      Echo(T, HELLO), Close(1002)])
case("3.5", "Send a small binary message with RSV = 5",
     [Frame(B, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5), Close(1002)])
case("3.6", "Send a ping with payload and RSV = 6", [Frame(OP_PING, HELLO, rsv=6), Close(1002)])
case("3.7", "Send a close with RSV = 7", [Frame(OP_CLOSE, rsv=7), Close(1002)])

# ---- 4 Opcodes

for sub, ops in (("1", (3, 4, 5, 6, 7)), ("2", (11, 12, 13, 14, 15))):
    kind = "non-control" if sub == "1" else "control"
    a, b_, c, d, e = ops
    case("4.%s.1" % sub, "Send a frame with the reserved %s opcode %d" % (kind, a),
         [Frame(a), Close(1002)])
    case("4.%s.2" % sub, "Send a frame with the reserved %s opcode %d and a payload" % (kind, b_),
         [Frame(b_, "reserved opcode payload"), Close(1002)])
    for i, op in ((3, c), (4, d), (5, e)):
        payload = b"" if i == 3 else b"reserved opcode payload"
        case("4.%s.%d" % (sub, i), "Send a small text message, then a frame with the reserved %s "
             "opcode %d%s, then a ping: the message is echoed, then the connection is failed"
             % (kind, op, "" if i == 3 else " and a payload"),
             [Frame(T, HELLO), Frame(op, payload), Frame(OP_PING), Echo(T, HELLO), Close(1002)])

# ---- 5 Fragmentation

F = ["fragment%d" % i for i in range(1, 6)]
case("5.1", "Send a ping fragmented into 2 frames",
     [Frame(OP_PING, F[0], fin=False), Frame(OP_CONT, F[1]), Close(1002)])
case("5.2", "Send a pong fragmented into 2 frames",
     [Frame(OP_PONG, F[0], fin=False), Frame(OP_CONT, F[1]), Close(1002)])
for cid, how, kw in (("5.3", "in one write", {}), ("5.4", "frame by frame", {"sync": True}),
                     ("5.5", "in writes of 1 octet", {"chop": 1})):
    case(cid, "Send a text message fragmented into 2 frames, %s" % how,
         [Frame(T, F[0], fin=False, **kw), Frame(OP_CONT, F[1], **kw), Echo(T, F[0] + F[1])])
for cid, how, kw in (("5.6", "in one write", {}), ("5.7", "frame by frame", {"sync": True}),
                     ("5.8", "in writes of 1 octet", {"chop": 1})):
    case(cid, "Send a text message fragmented into 2 frames with a ping between them, %s" % how,
         [Frame(T, F[0], fin=False, **kw), Frame(OP_PING, "ping payload", **kw),
          Frame(OP_CONT, F[1], **kw), Pong("ping payload"), Echo(T, F[0] + F[1])])
for first, fin in ((9, True), (12, False)):
    for cid, how, kw in ((first, "in one write", {}), (first + 1, "frame by frame", {"sync": True}),
                         (first + 2, "in writes of 1 octet", {"chop": 1})):
        case("5.%d" % cid, "Send a continuation frame with FIN = %s where there is nothing to "
             "continue, then a text message, %s" % (fin, how),
             [Frame(OP_CONT, "non-continuation payload", fin=fin, **kw),
              Frame(T, HELLO, **kw), Close(1002)])
case("5.15", "Send a text message fragmented into 2 frames, then a continuation frame with FIN "
     "= false where there is nothing to continue, then a text message: the first is echoed, "
     "then the connection is failed",
     [Frame(T, F[0], fin=False), Frame(OP_CONT, F[1]), Frame(OP_CONT, F[2], fin=False),
      Frame(T, F[3]), Echo(T, F[0] + F[1]), Close(1002)])
for cid, fin in (("5.16", False), ("5.17", True)):
    case(cid, "Twice: a continuation frame with FIN = %s where there is nothing to continue, "
         "then a text message fragmented into 2 frames" % fin,
         [Frame(OP_CONT, F[0], fin=fin), Frame(T, F[1], fin=False), Frame(OP_CONT, F[2])] * 2
         + [Close(1002)])
case("5.18", "Send a text message fragmented into 2 frames, both with the text opcode",
     [Frame(T, F[0], fin=False), Frame(T, F[1]), Close(1002)])
for cid, kw in (("5.19", {}), ("5.20", {"sync": True})):
    case(cid, "A text message in 5 frames, a ping after the 2nd and the 4th: the first pong "
         "comes before the rest of the message is sent%s" % (", frame by frame" if kw else ""),
         [Frame(T, F[0], fin=False, **kw), Frame(OP_CONT, F[1], fin=False, **kw),
          Frame(OP_PING, "pongme 1!", **kw), Pong("pongme 1!"), Pause(0.05),
          Frame(OP_CONT, F[2], fin=False, **kw), Frame(OP_CONT, F[3], fin=False, **kw),
          Frame(OP_PING, "pongme 2!", **kw), Frame(OP_CONT, F[4], **kw),
          Pong("pongme 2!"), Echo(T, "".join(F))])

# ---- 6 UTF-8 handling

case("6.1.1", "Send a text message of length 0", echo(T, b""))
case("6.1.2", "Send a text message in 3 frames of length 0",
     [Frame(T, b"", fin=False), Frame(OP_CONT, b"", fin=False), Frame(OP_CONT, b""),
      Echo(T, b"")])
case("6.1.3", "Send a text message in 3 frames, the first and the last of length 0",
     [Frame(T, b"", fin=False), Frame(OP_CONT, "middle frame payload", fin=False),
      Frame(OP_CONT, b""), Echo(T, "middle frame payload")])

HELLO_UTF8 = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode("utf-8")
KOSME = bytes.fromhex("cebae1bdb9cf83cebcceb5")  # "κόσμε"


def one_byte_frames(op, payload, **kw):
    frames = [Frame(op if i == 0 else OP_CONT, payload[i:i + 1], fin=i == len(payload) - 1, **kw)
              for i in range(len(payload))]
    return frames


case("6.2.1", "Send a valid UTF-8 text message in one frame", echo(T, HELLO_UTF8))
cut = HELLO_UTF8.index("\u00fc".encode("utf-8"))
case("6.2.2", "Send a valid UTF-8 text message in 2 frames, cut between code points",
     [Frame(T, HELLO_UTF8[:cut], fin=False), Frame(OP_CONT, HELLO_UTF8[cut:]),
      Echo(T, HELLO_UTF8)])
case("6.2.3", "Send a valid UTF-8 text message in frames of 1 octet (cut inside code points)",
     one_byte_frames(T, HELLO_UTF8) + [Echo(T, HELLO_UTF8)])
case("6.2.4", "Send a valid UTF-8 text message (\u03ba\u1f79\u03c3\u03bc\u03b5) in frames of 1 "
     "octet", one_byte_frames(T, KOSME) + [Echo(T, KOSME)])

BAD_UTF8 = KOSME + b"\xed\xa0\x80" + b"edited"  # a UTF-16 surrogate in the middle
case("6.3.1", "Send an invalid UTF-8 text message in one frame",
     [Frame(T, BAD_UTF8), Close(1007)])
BAD_AT = BAD_UTF8.index(b"\xa0")  # the first octet that makes it invalid (ED A0)
case("6.3.2", "Send an invalid UTF-8 text message in frames of 1 octet: the connection is "
     "failed at the frame with the first invalid octet, before the rest is sent",
     [Frame(T if i == 0 else OP_CONT, BAD_UTF8[i:i + 1], fin=False, sync=True)
      for i in range(BAD_AT + 1)] + [Close(1007)])

case("6.3.3", "Send a text message whose last frame ends inside a character (CE, then an empty "
     "final frame)", [Frame(T, b"hello\xce", fin=False), Frame(OP_CONT, b""), Close(1007)])
case("6.3.4", "Send a binary message that is not valid UTF-8: it is echoed (binary is not "
     "checked)", echo(B, BAD_UTF8))
case("6.3.5", "Send a text message with a character cut by a ping between its frames",
     [Frame(T, KOSME[:3], fin=False), Frame(OP_PING, "p"), Frame(OP_CONT, KOSME[3:]), Pong("p"),
      Echo(T, KOSME)])

# 6.4: fail fast. Parts 1 and 3 are valid UTF-8 on their own; the first
# octet that makes the message invalid is 0x90 (F4 90 80 80 would be
# U+110000). The close must come before the rest is sent.
FF1, FF2, FF3 = KOSME, b"\xf4\x90\x80\x80", b"edited"
FF = FF1 + FF2 + FF3


def cut_frame(op, payload, cuts):
    """One frame's bytes (head, masking key, masked payload) cut in pieces
    at these payload offsets."""
    data = ws_raw.frame(op, payload)
    head = len(data) - len(payload)
    at = [0] + [head + c for c in cuts] + [len(data)]
    return [data[at[i]:at[i + 1]] for i in range(len(at) - 1)]


case("6.4.1", "Send an invalid UTF-8 text message in 3 frames: the 1st valid, the 2nd with the "
     "sequence that makes it invalid; the connection is failed before the 3rd is sent",
     [Frame(T, FF1, fin=False), Quiet(), Frame(OP_CONT, FF2, fin=False), Close(1007)])
case("6.4.2", "As 6.4.1, the 2nd frame holding only the octet that makes the message invalid",
     [Frame(T, FF[:12], fin=False), Quiet(), Frame(OP_CONT, FF[12:13], fin=False), Close(1007)])
case("6.4.3", "As 6.4.1, in 3 writes of one frame: the connection is failed after the 2nd write",
     lambda: (lambda p: [Raw(p[0]), Quiet(), Raw(p[1]), Close(1007)])(
         cut_frame(T, FF, [len(FF1), len(FF1) + len(FF2)])))
case("6.4.4", "As 6.4.2, in 3 writes of one frame: the connection is failed after the 2nd write",
     lambda: (lambda p: [Raw(p[0]), Quiet(), Raw(p[1]), Close(1007)])(cut_frame(T, FF, [12, 13])))


def utf8_valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def utf8_sequences():
    """Markus Kuhn's UTF-8 decoder stress test as Autobahn groups it: (title,
    [(valid, octets)])."""
    groups = []
    groups.append(("Some valid UTF-8 sequences", [
        (True, b"hello$world"), (True, b"hello\xc2\xa2world"), (True, b"hello\xe2\x82\xacworld"),
        (True, b"hello\xf0\xa4\xad\xa2world"), (True, KOSME)]))
    groups.append(("All prefixes of a valid UTF-8 string that contains multi-byte code points",
                   [(utf8_valid(KOSME[:i]), KOSME[:i]) for i in range(1, len(KOSME) + 1)]))
    groups.append(("First possible sequence of a certain length", [
        (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
        (True, b"\xf0\x90\x80\x80")]))
    groups.append(("First possible sequence length 5/6 (invalid code points)", [
        (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80")]))
    groups.append(("Last possible sequence of a certain length", [
        (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
        (True, b"\xf4\x8f\xbf\xbf")]))
    groups.append(("Last possible sequence length 4/5/6 (invalid code points)", [
        (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
        (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")]))
    groups.append(("Other boundary conditions", [
        (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
        (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80")]))
    cont = [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf",
            b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf", bytes(range(0x80, 0xbf))]
    groups.append(("Unexpected continuation bytes", [(False, s) for s in cont]))
    groups.append(("Lonely start characters", [
        (False, b"".join(bytes([i, 0x20]) for i in range(lo, hi)))
        for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd))]))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    groups.append(("Sequences with last continuation byte missing", [(False, s) for s in missing]))
    groups.append(("Concatenation of incomplete sequences", [(False, b"".join(missing))]))
    groups.append(("Impossible bytes", [(False, b"\xfe"), (False, b"\xff"),
                                        (False, b"\xfe\xfe\xff\xff")]))
    groups.append(("Examples of an overlong ASCII character", [
        (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
        (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf")]))
    groups.append(("Maximum overlong sequences", [
        (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
        (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf")]))
    groups.append(("Overlong representation of the NUL character", [
        (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
        (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80")]))
    single = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf", b"\xed\xb0\x80",
              b"\xed\xbe\x80", b"\xed\xbf\xbf"]
    groups.append(("Single UTF-16 surrogates", [(False, s) for s in single]))
    groups.append(("Paired UTF-16 surrogates", [
        (False, hi + lo) for hi in single[:4] for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")]))
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in (0xf0, 0xf1, 0xf2, 0xf3, 0xf4):
        for z2 in (0x8f, 0x9f, 0xaf, 0xbf):
            if z1 == 0xf4 and z2 != 0x8f:
                continue  # past U+10FFFF
            for z3 in (0xbe, 0xbf):
                zz = bytes([z1, z2, 0xbf, z3])
                if zz not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    nonchars.append(zz)
    groups.append(("Non-character code points (valid UTF-8)", [(True, s) for s in nonchars]))
    groups.append(("Unicode specials (i.e. replacement char)", [
        (True, bytes([0xef, 0xbf, c])) for c in range(0xb9, 0xc0)]))
    return groups


for gi, (title, seqs) in enumerate(utf8_sequences(), 5):
    for j, (valid, octets) in enumerate(seqs, 1):
        assert valid == utf8_valid(octets), (title, octets)
        if valid:
            case("6.%d.%d" % (gi, j), "%s: send %s as a text message: it is echoed"
                 % (title, octets.hex()), echo(T, octets))
        else:
            case("6.%d.%d" % (gi, j), "%s: send %s as a text message: the connection is failed"
                 % (title, octets.hex()), [Frame(T, octets), Close(1007)])

# ---- 7 Close handling

case("7.1.1", "Send a text message, then a close: the message is echoed, the close answered",
     [Frame(T, "Hello World!"), Echo(T, "Hello World!"), close_frame(1000), Close(1000)])
case("7.1.2", "Send two close frames: one close comes back",
     [close_frame(1000), close_frame(1000), Close(1000)])
case("7.1.3", "Send a close, then a ping: the ping is not answered",
     [close_frame(1000), Frame(OP_PING, "Hello World!"), Close(1000)])
case("7.1.4", "Send a close, then a text message: the message is not echoed",
     [close_frame(1000), Frame(T, "Hello World!"), Close(1000)])
case("7.1.5", "Send a message's first frame, a close, then the message's last frame: nothing is "
     "echoed", [Frame(T, F[0], fin=False), close_frame(1000), Frame(OP_CONT, F[1]), Close(1000)])
case("7.1.6", "Send a 256 KiB text message, a small one, a close, then a ping: both messages are "
     "echoed before the close, and the ping is not answered",
     lambda: [Frame(T, (b"BAsd7&jh23" * 26215)[:256 * KIB]), Frame(T, "Hello World!"),
              close_frame(1000), Frame(OP_PING), Echo(T, (b"BAsd7&jh23" * 26215)[:256 * KIB]),
              Echo(T, "Hello World!"), Close(1000)])
case("7.3.1", "Send a close with payload length 0 (no code): a close with no code or 1000 comes "
     "back", [close_frame(None), Close(None, 1000)])
case("7.3.2", "Send a close with payload length 1", [Frame(OP_CLOSE, b"a"), Close(1002)])
case("7.3.3", "Send a close with payload length 2 (code 1000, no reason)",
     [close_frame(1000), Close(1000)])
case("7.3.4", "Send a close with code 1000 and a short reason",
     [close_frame(1000, "Hello World!"), Close(1000)])
case("7.3.5", "Send a close with code 1000 and a reason of 123 octets (payload 125)",
     [close_frame(1000, "*" * 123), Close(1000)])
case("7.3.6", "Send a close with code 1000 and a reason of 124 octets (payload 126)",
     [close_frame(1000, "*" * 124), Close(1002)])
case("7.5.1", "Send a close with a reason that is not valid UTF-8",
     [close_frame(1000, BAD_UTF8), Close(1007)])
for i, code in enumerate((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                          4000, 4999, 1012, 1013, 1014), 1):
    extra = " (registered with IANA after RFC 6455)" if code in (1012, 1013, 1014) else ""
    case("7.7.%d" % i, "Send a close with the valid code %d%s: the code is echoed" % (code, extra),
         [close_frame(code), Close(code)])
for i, code in enumerate((0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015), 1):
    case("7.9.%d" % i, "Send a close with the invalid code %d" % code,
         [close_frame(code), Close(1002)])
case("7.13.1", "Send a close with code 5000 (outside every range of RFC 6455 7.4.2)",
     [close_frame(5000), Close(1002)])
case("7.13.2", "Send a close with code 65535", [close_frame(65535), Close(1002)])

# ---- 9 Limits and performance

def blob(n, op):
    """n octets of payload: ASCII for text (valid UTF-8 however it is cut),
    anything for binary."""
    unit = b"Hello, world! \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 " if op == B else \
        b"The quick brown fox jumps over the lazy dog 0123456789. "
    return (unit * (n // len(unit) + 1))[:n]


for sub, op in (("1", T), ("2", B)):
    kind = "text" if op == T else "binary"
    for i, n in enumerate((64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB, 16 * MIB), 1):
        case("9.%s.%d" % (sub, i), "Send a %s message of %d octets" % (kind, n),
             (lambda op, n: lambda: echo(op, blob(n, op)))(op, n))
for sub, op in (("3", T), ("4", B)):
    kind = "text" if op == T else "binary"
    total = 4 * MIB
    for i, frag in enumerate((64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB),
                             1):
        case("9.%s.%d" % (sub, i), "Send a %s message of %d octets in frames of %d octets"
             % (kind, total, frag),
             (lambda op, f: lambda: echo(op, blob(total, op), frag=f))(op, frag))
for sub, op in (("5", T), ("6", B)):
    kind = "text" if op == T else "binary"
    for i, chop in enumerate((64, 128, 256, 512, 1024, 2048), 1):
        case("9.%s.%d" % (sub, i), "Send a %s message of %d octets in writes of %d octets"
             % (kind, MIB, chop), (lambda op, c: lambda: echo(op, blob(MIB, op), chop=c))(op, chop))
for sub, op in (("7", T), ("8", B)):
    kind = "text" if op == T else "binary"
    for i, n in enumerate((0, 16, 64, 256, 1024, 4096), 1):
        case("9.%s.%d" % (sub, i), "Send 1000 %s messages of %d octets, each after the echo of the "
             "one before" % (kind, n),
             (lambda op, n: lambda: [s for k in range(1000) for s in echo(op, blob(n, op))])(op, n))

# --ws-max-size (16 MiB): at the limit and one past it.
case("9.11.1", "Send a text message of 16 MiB - 1 octets",
     lambda: echo(T, blob(MAX_SIZE - 1, T)))
case("9.11.2", "Send a binary message of 16 MiB - 1 octets in frames of 1 MiB",
     lambda: echo(B, blob(MAX_SIZE - 1, B), frag=MIB))
case("9.11.3", "Announce a text frame of 16 MiB + 1 octets: the connection is failed with 1009 "
     "before its payload is sent",
     [Frame(T, b"", length=MAX_SIZE + 1), Close(1009)])
case("9.11.4", "Send a binary message in frames of 1 MiB until it passes 16 MiB: the connection "
     "is failed with 1009 at the frame that passes it",
     lambda: [Frame(B if i == 0 else OP_CONT, blob(MIB, B), fin=False) for i in range(16)]
     + [Frame(OP_CONT, b"x", fin=False), Close(1009)])
case("9.11.5", "Announce a frame of 2^63 - 1 octets",
     [Frame(B, b"", length=(1 << 63) - 1), Close(1009)])

# ---- 10 Auto-fragmentation

case("10.1.1", "Send a text message of 65536 octets in frames of 1300 octets",
     lambda: echo(T, b"*" * 65536, frag=1300))

# ---- 12 and 13 permessage-deflate

# Autobahn's message sizes and auto-fragmentation (payload size, fragment
# size of the compressed payload; 0: one frame). Autobahn sends 1000
# messages per case; here fewer, so that each case moves about 512 KiB.
MSG_SIZES = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0), (32768, 0),
             (65536, 0), (131072, 0), (8192, 256), (16384, 256), (32768, 256), (65536, 256),
             (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768)]


def msg_count(size):
    return max(4, min(32, (512 * KIB) // size))


def make_data(kind, size=256 * KIB):
    """Deterministic test data standing in for Autobahn's files."""
    rnd = random.Random(kind)
    if kind == "text_de":  # prose with umlauts (Autobahn: Goethe's Faust, sent as binary)
        words = ["Habe", "nun", "ach", "Philosophie", "Juristerei", "und", "Medizin", "leider",
                 "auch", "Theologie", "durchaus", "studiert", "mit", "hei\u00dfem", "Bem\u00fchn",
                 "da", "steh", "ich", "armer", "Tor", "bin", "so", "klug", "als", "wie", "zuvor",
                 "Gr\u00f6\u00dfe", "f\u00fcr", "\u00fcber", "Sch\u00fcler", "M\u00e4dchen"]
        out = []
        while sum(map(len, out)) < size:
            line = " ".join(rnd.choice(words) for _ in range(rnd.randint(4, 11)))
            out.append(line.capitalize() + rnd.choice([".", ",", "!", "?", ";"]) + "\n")
        return "".join(out).encode("utf-8")[:size]
    if kind == "bitmap":  # 512 x 512, 8 bits a pixel (Autobahn: a bitmap)
        head = b"BM" + struct.pack("<IHHI", 54 + 512 * 512, 0, 0, 54) + bytes(40)
        rows = []
        for y in range(512):
            rows.append(bytes(((x * y) // 257 + (x ^ y) // 4 + rnd.randint(0, 3)) & 0xff
                              for x in range(512)))
        return (head + b"".join(rows))[:size]
    if kind == "pdf":  # text objects and incompressible streams (Autobahn: a PDF)
        out, n = [b"%PDF-1.4\n"], 1
        while sum(map(len, out)) < size:
            if rnd.random() < 0.4:
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(200, 2000)))
                out.append(b"%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n"
                           % (n, len(data)) + data + b"\nendstream\nendobj\n")
            else:
                out.append(b"%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                           b"/Contents %d 0 R /Resources << /Font << /F1 4 0 R >> >> >>\nendobj\n"
                           % (n, n + 1))
            n += 1
        return b"".join(out)[:size]
    if kind == "json":  # (Autobahn: a large JSON file), ASCII
        recs = []
        while sum(map(len, recs)) < size:
            recs.append('{"id": %d, "name": "user%05d", "email": "user%05d@example.com", '
                        '"active": %s, "score": %.3f, "tags": ["%s", "%s"], "address": {"street": '
                        '"%d Main Street", "city": "Springfield", "zip": "%05d"}},\n'
                        % (len(recs), rnd.randint(0, 99999), rnd.randint(0, 99999),
                           rnd.choice(["true", "false"]), rnd.random() * 100,
                           rnd.choice(["alpha", "beta", "gamma", "delta"]),
                           rnd.choice(["red", "green", "blue"]), rnd.randint(1, 999),
                           rnd.randint(0, 99999)))
        return ("[" + "".join(recs)).encode("ascii")[:size]
    if kind == "html":  # (Autobahn: a large HTML file), ASCII
        out = ["<!DOCTYPE html>\n<html><head><title>Test</title></head><body>\n"]
        while sum(map(len, out)) < size:
            out.append('<div class="row r%d"><a href="/item/%d">Item %d</a> <span class="price">'
                       '%d.%02d</span><p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, '
                       'sed do eiusmod tempor %d.</p></div>\n'
                       % (rnd.randint(0, 9), rnd.randint(0, 9999), rnd.randint(0, 9999),
                          rnd.randint(1, 500), rnd.randint(0, 99), rnd.randint(0, 999)))
        return "".join(out).encode("ascii")[:size]
    raise ValueError(kind)


_DATA = {}


def data(kind):
    if kind not in _DATA:
        _DATA[kind] = make_data(kind)
    return _DATA[kind]


def slices(blob_, size, count):
    """Autobahn's messages: consecutive slices of the data, wrapping around."""
    out, at = [], 0
    for _ in range(count):
        end = at + size
        piece = blob_[at:end] if end <= len(blob_) else blob_[at:] + blob_[:end - len(blob_)]
        out.append(piece)
        at = end % len(blob_)
    return out


def compressed_echoes(kind, op, size, frag, count=None):
    msgs = slices(data(kind), size, count or msg_count(size))
    return [s for m in msgs for s in echo(op, m, compress=True, frag=frag or None)]


DEFAULT_ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
DATASETS = [("text_de", B, "Prose with umlauts (binary)"), ("bitmap", B, "A bitmap (binary)"),
            ("pdf", B, "Text objects and incompressible streams (binary)"),
            ("json", T, "JSON (text)"), ("html", T, "HTML (text)")]
for j, (kind, op, title) in enumerate(DATASETS, 1):
    for i, (size, frag) in enumerate(MSG_SIZES, 1):
        case("12.%d.%d" % (j, i), "%s: send %d compressed messages of %d octets%s, each after the "
             "echo of the one before; default offer"
             % (title, msg_count(size), size, ", in frames of %d octets" % frag if frag else ""),
             (lambda k, o, s, f: lambda: compressed_echoes(k, o, s, f))(kind, op, size, frag),
             offer="permessage-deflate; client_max_window_bits", answer=DEFAULT_ANSWER)

# 13.1-13.7: Autobahn's offers (client_no_context_takeover and
# client_max_window_bits are always offered), JSON data.
AB_OFFERS = [
    ("", DEFAULT_ANSWER),
    ("; server_no_context_takeover", DEFAULT_ANSWER),
    ("; server_max_window_bits=8", DEFAULT_ANSWER + "; server_max_window_bits=8"),
    ("; server_max_window_bits=15", DEFAULT_ANSWER + "; server_max_window_bits=15"),
    ("; server_no_context_takeover; server_max_window_bits=8",
     DEFAULT_ANSWER + "; server_max_window_bits=8"),
    ("; server_no_context_takeover; server_max_window_bits=15",
     DEFAULT_ANSWER + "; server_max_window_bits=15"),
]
AB_BASE = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
offers13 = [(AB_BASE + extra, ans) for extra, ans in AB_OFFERS]
offers13.append((", ".join([AB_BASE + "; server_no_context_takeover; server_max_window_bits=8",
                            AB_BASE + "; server_no_context_takeover", AB_BASE]),
                 DEFAULT_ANSWER + "; server_max_window_bits=8"))
for j, (offer, answer) in enumerate(offers13, 1):
    for i, (size, frag) in enumerate(MSG_SIZES, 1):
        case("13.%d.%d" % (j, i), "JSON (text): send %d compressed messages of %d octets%s; "
             "offer: %s" % (msg_count(size), size,
                            ", in frames of %d octets" % frag if frag else "", offer),
             (lambda s, f: lambda: compressed_echoes("json", T, s, f))(size, frag),
             offer=offer, answer=answer)

# Beyond Autobahn: every window size on either side, sizes 16 B .. 1 MiB.
SIZES_13 = [16, 256, 4096, 65536, MIB]


def window_probe():
    """Binary data whose matches lie just beyond 2^9 .. 2^14 octets back:
    compressed with a larger window than agreed, it cannot be inflated with
    the agreed one."""
    rnd = random.Random("window")
    out = []
    for d in (600, 1100, 2200, 4400, 8800, 17600):
        r = bytes(rnd.getrandbits(8) for _ in range(256))
        out += [r, bytes(rnd.getrandbits(8) for _ in range(d - 256)), r]
    return b"".join(out)


def sizes_script(compressed=None):
    steps = echo(B, window_probe(), compress=True, compressed=compressed)
    for size in SIZES_13:
        for m in slices(data("json") * (1 + MIB // (256 * KIB)), size, 2):
            steps += echo(T, m, compress=True, compressed=compressed)
    return steps


for i, bits in enumerate(range(8, 16), 1):
    case("13.8.%d" % i, "Offer client_max_window_bits=%d and compress with a window of %d bits%s: "
         "messages of 16 B .. 1 MiB and one with matches past 2^9 .. 2^14 octets back"
         % (bits, bits,
            " (Huffman coding only, zlib has no 8-bit raw window)" if bits == 8 else ""),
         sizes_script, offer="permessage-deflate; client_max_window_bits=%d" % bits,
         answer=DEFAULT_ANSWER, client_bits=bits)
for i, bits in enumerate(range(8, 16), 1):
    how = "uncompressed (zlib cannot deflate with a 256-octet window)" if bits == 8 else \
        "compressed, inflatable with a window of %d bits" % bits
    case("13.9.%d" % i, "Offer server_max_window_bits=%d: the answer grants it and the echoes come "
         "%s" % (bits, how), (lambda c: lambda: sizes_script(compressed=c))(bits > 8),
         offer="permessage-deflate; server_max_window_bits=%d" % bits,
         answer=DEFAULT_ANSWER + "; server_max_window_bits=%d" % bits)
case("13.10.1", "Offer permessage-deflate without parameters (the client would keep its context): "
     "the answer asks for no context takeover, and the client complies",
     sizes_script, offer="permessage-deflate", answer=DEFAULT_ANSWER)
case("13.10.2", "Offer client_no_context_takeover", sizes_script,
     offer="permessage-deflate; client_no_context_takeover", answer=DEFAULT_ANSWER)
case("13.10.3", "Offer server_no_context_takeover", sizes_script,
     offer="permessage-deflate; server_no_context_takeover", answer=DEFAULT_ANSWER)
case("13.10.4", "Offer every parameter at once, with windows of 9 bits",
     sizes_script, offer="permessage-deflate; client_no_context_takeover; "
     "server_no_context_takeover; client_max_window_bits=9; server_max_window_bits=9",
     answer=DEFAULT_ANSWER + "; server_max_window_bits=9", client_bits=9)

# Negotiation (RFC 7692 5, 7.1): offers the server must decline, and the
# next offer taken when the first is declined. Without the extension, RSV1
# stays an error.
PLAIN = [Frame(T, HELLO), Echo(T, HELLO, compressed=False), Frame(T, HELLO, rsv=4), Close(1002)]
for i, (offer, answer, what) in enumerate([
        ("permessage-deflate; server_max_window_bits=7", None, "a window below 8 bits"),
        ("permessage-deflate; server_max_window_bits=16", None, "a window above 15 bits"),
        ("permessage-deflate; client_max_window_bits=16", None, "a client window above 15 bits"),
        ("permessage-deflate; server_max_window_bits", None,
         "server_max_window_bits without a value"),
        ("permessage-deflate; server_max_window_bits=010", None, "a value with a leading zero"),
        ("permessage-deflate; client_no_context_takeover=1", None, "a value where none is allowed"),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None,
         "a parameter given twice"),
        ("permessage-deflate; x-unknown", None, "an unknown parameter"),
        ("x-webkit-deflate-frame", None, "another extension only"),
        ("permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=10",
         DEFAULT_ANSWER + "; server_max_window_bits=10",
         "a declined offer followed by one the server takes"),
        ('permessage-deflate; server_max_window_bits="10"',
         DEFAULT_ANSWER + "; server_max_window_bits=10", "a quoted value"),
        ("x-webkit-deflate-frame, permessage-deflate", DEFAULT_ANSWER,
         "another extension, then permessage-deflate")], 1):
    if answer is None:
        case("13.11.%d" % i, "Offer %s (%s): declined; RSV1 stays an error" % (offer, what),
             PLAIN, offer=offer, answer=None)
    else:
        case("13.11.%d" % i, "Offer %s (%s): the answer takes it" % (offer, what),
             echo(T, HELLO * 20, compress=True), offer=offer, answer=answer)


# Compressed messages against the rules of RFC 7692 and RFC 6455.
def z(payload, final=False, wbits=15):
    """A message's payload as permessage-deflate sends it (no context)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    if final:
        return c.compress(as_bytes(payload)) + c.flush(zlib.Z_FINISH)
    out = c.compress(as_bytes(payload)) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


LONG = ("Hello, compressed world! " * 40).encode()
DEFL = dict(offer="permessage-deflate", answer=DEFAULT_ANSWER)
case("12.6.1", "A compressed text message in frames of 1 octet of compressed payload",
     echo(T, LONG, compress=True, frag=1), **DEFL)
case("12.6.2", "A compressed text message in 3 frames with a ping between them: the pong comes "
     "first", lambda: (lambda p: [Frame(T, p[:5], fin=False, rsv=4), Frame(OP_PING, "between"),
                                  Frame(OP_CONT, p[5:10], fin=False), Frame(OP_CONT, p[10:]),
                                  Pong("between"), Echo(T, LONG)])(z(LONG)), **DEFL)
case("12.6.3", "A compressed binary message in writes of 1 octet",
     echo(B, LONG, compress=True, chop=1), **DEFL)
case("12.6.4", "Compressed and uncompressed messages, text and binary, interleaved",
     [s for k in range(6) for s in echo(T if k % 3 else B, LONG[k:], compress=k % 2 == 0)], **DEFL)
case("12.6.5", "A compressed empty text message (one empty stored block's first octet)",
     [Frame(T, b"\x00", rsv=4), Echo(T, b"")], **DEFL)
case("12.6.6", "A compressed empty binary message with an empty payload",
     [Frame(B, b"", rsv=4), Echo(B, b"")], **DEFL)
case("12.6.7", "A compressed message ending in a final block (BFINAL), then another message",
     [Frame(T, z(LONG, final=True), rsv=4), Echo(T, LONG), Msg(T, LONG[:100], compress=True),
      Echo(T, LONG[:100])], **DEFL)
case("12.6.8", "A compressed message made with a window of 9 bits, then one of 15 bits",
     [Frame(B, z(LONG, wbits=9), rsv=4), Echo(B, LONG), Frame(B, z(LONG), rsv=4),
      Echo(B, LONG)], **DEFL)
case("12.6.9", "A ping with RSV1 (control frames are never compressed)",
     [Frame(OP_PING, z("ping"), rsv=4), Close(1002)], **DEFL)
case("12.6.10", "A pong with RSV1", [Frame(OP_PONG, z("pong"), rsv=4), Close(1002)], **DEFL)
case("12.6.11", "A close with RSV1", [Frame(OP_CLOSE, b"\x03\xe8", rsv=4), Close(1002)], **DEFL)
case("12.6.12", "RSV1 on the continuation frame of a compressed message",
     lambda: (lambda p: [Frame(T, p[:5], fin=False, rsv=4), Frame(OP_CONT, p[5:], rsv=4),
                         Close(1002)])(z(LONG)), **DEFL)
case("12.6.13", "RSV1 on the continuation frame of an uncompressed message",
     [Frame(T, F[0], fin=False), Frame(OP_CONT, F[1], rsv=4), Close(1002)], **DEFL)
case("12.6.14", "RSV2 on a data frame with permessage-deflate negotiated",
     [Frame(T, HELLO, rsv=2), Close(1002)], **DEFL)
case("12.6.15", "RSV3 on a compressed data frame",
     [Frame(T, z(HELLO), rsv=5), Close(1002)], **DEFL)
case("12.6.16", "A compressed text message that inflates to invalid UTF-8",
     [Frame(T, z(BAD_UTF8), rsv=4), Close(1007)], **DEFL)
case("12.6.17", "A compressed message that is not valid DEFLATE data (RFC 7692 names no code: "
     "1007, data inconsistent with the message, or 1002)",
     [Frame(B, b"\xff\xff\xff\xff\xff\xff", rsv=4), Close(1007, 1002)], **DEFL)
case("12.6.18", "A compressed message of 17 KiB that inflates past 16 MiB",
     lambda: [Frame(B, z(bytes(MAX_SIZE + MIB)), rsv=4), Close(1009)], **DEFL)
case("12.6.19", "A compressed text message that inflates to 16 MiB exactly",
     lambda: echo(T, blob(MAX_SIZE, T), compress=True), **DEFL)
case("12.6.20", "Compressed messages of 16 B .. 1 MiB, text and binary, in frames of 4096 octets",
     lambda: [s for n in SIZES_13 for op in (T, B)
              for s in echo(op, blob(n, op), compress=True, frag=4096)], **DEFL)


# --------------------------------------------------------------------------
# The test

@pytest.fixture(scope="module")
def echo_server():
    with serving_plugin_copy(os.path.join(PLUGINS, "chat.so"), "evicorn-ws-conformance-") as srv:
        yield srv


def params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


assert len({c.id for c in CASES}) == len(CASES), "case ids repeat"


@pytest.mark.parametrize("case", params())
def test_case(echo_server, case):
    assert echo_server.proc.poll() is None, "the server exited\n" + echo_server.output()
    try:
        run_case(echo_server.port, case)
    except Failure as e:
        pytest.fail("%s %s: %s" % (case.id, case.desc, e), pytrace=False)
