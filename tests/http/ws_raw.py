"""A raw-socket WebSocket client for the tests: every byte on the wire is
the test's to choose (masking, RSV bits, fragmentation, bad frames), so the
server's handling of each RFC 6455 rule can be checked, not a library's.

    ws = ws_raw.connect(port, "/ws/echo")
    ws.send_text("hi")
    assert ws.recv_message() == (OP_TEXT, b"hi")
    ws.close(1000)
"""
import base64
import os
import socket
import struct
import zlib

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    def __init__(self, status, headers, body):
        super().__init__("handshake refused: %d" % status)
        self.status, self.headers, self.body = status, headers, body


def handshake_request(path, host="127.0.0.1", key=None, version="13", extra=()):
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
             "Sec-WebSocket-Version: %s" % version]
    lines += ["%s: %s" % kv for kv in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def read_head(sock):
    """Reads an HTTP response head; returns (status, [(name, value)], rest)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return status, headers, rest


def read_body(sock, headers, rest):
    length = dict(headers).get("content-length")
    if length is None:
        return rest
    while len(rest) < int(length):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return rest[:int(length)]


class Inflater:
    """The client's side of permessage-deflate (RFC 7692 7.2.2)."""

    def __init__(self, window_bits=15, no_context_takeover=False):
        self.bits, self.reset = window_bits, no_context_takeover
        self.z = zlib.decompressobj(-window_bits)

    def inflate(self, data):
        if self.reset:
            self.z = zlib.decompressobj(-self.bits)
        return self.z.decompress(data + b"\x00\x00\xff\xff")


class Deflater:
    def __init__(self, window_bits=15, no_context_takeover=False):
        self.bits, self.reset = window_bits, no_context_takeover
        self.z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)

    def deflate(self, data):
        if self.reset:
            self.z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.bits)
        out = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """One frame as a client sends it; length overrides the encoded length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 \
        else _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload, key):
    n = len(payload)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


class WS:
    def __init__(self, sock, headers, rest=b""):
        self.sock, self.headers, self.buf = sock, headers, rest
        self.inflater = None
        ext = dict(headers).get("sec-websocket-extensions", "")
        if ext.startswith("permessage-deflate"):
            params = [p.strip() for p in ext.split(";")[1:]]
            bits = 15
            for p in params:
                if p.startswith("server_max_window_bits="):
                    bits = int(p.split("=")[1])
            self.inflater = Inflater(bits, "server_no_context_takeover" in params)
            cbits = 15
            for p in params:
                if p.startswith("client_max_window_bits="):
                    cbits = int(p.split("=")[1])
            self.deflater = Deflater(cbits, "client_no_context_takeover" in params)

    def header(self, name):
        return dict(self.headers).get(name)

    # -- sending --
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_compressed(self, opcode, data):
        self.send_frame(opcode, self.deflater.deflate(data), rsv=4)

    def close(self, code=1000, reason=b""):
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send_frame(OP_CLOSE, payload)

    # -- receiving --
    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def recv_frame(self):
        """(fin, rsv, opcode, payload) of the next frame; server frames are
        never masked (asserted)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "the server masked a frame"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    def recv_message(self):
        """(opcode, payload) of the next message or control frame, data
        messages reassembled and inflated."""
        fin, rsv, opcode, payload = self.recv_frame()
        if opcode >= 8:
            return opcode, payload
        compressed = bool(rsv & 4)
        parts = [payload]
        while not fin:
            fin, _, op, payload = self.recv_frame()
            if op >= 8:
                continue  # a control frame between fragments
            assert op == OP_CONT
            parts.append(payload)
        data = b"".join(parts)
        if compressed:
            data = self.inflater.inflate(data)
        return opcode, data

    def recv_close(self):
        """Reads until a close frame; returns (code or None, reason)."""
        while True:
            opcode, payload = self.recv_message()
            if opcode == OP_CLOSE:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:]
                return None, b""

    def closed_by_server(self, timeout=5.0):
        """True once the server has closed the TCP connection (EOF or
        reset), reading and dropping anything before it."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def shutdown(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(port, path, extra=(), timeout=10.0, host="127.0.0.1", key=None, version="13"):
    """Opens a WebSocket; raises HandshakeRefused for anything but 101."""
    sock = socket.create_connection((host, port), timeout=timeout)
    request, key = handshake_request(path, key=key, version=version, extra=extra)
    sock.sendall(request)
    status, headers, rest = read_head(sock)
    if status != 101:
        body = read_body(sock, headers, rest)
        sock.close()
        raise HandshakeRefused(status, headers, body)
    import hashlib
    want = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert dict(headers).get("sec-websocket-accept") == want
    return WS(sock, headers, rest)
