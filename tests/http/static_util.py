"""Client-side helpers for the static file tests (test_static.py): raw
requests, multipart/byteranges parsing (RFC 9110 14.6, RFC 2046 5.1.1),
Content-Range parsing and a reader that downloads a body at a chosen pace
without keeping it in memory."""
import re
import socket
import time

CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
BYTERANGES_RE = re.compile(r'^multipart/byteranges\s*;\s*boundary=(?:"([^"]+)"|([^\s;"]+))\s*$',
                           re.IGNORECASE)
ETAG_RE = re.compile(r'^"[\x21\x23-\x7e\x80-\xff]*"$')  # strong: no W/ (RFC 9110 8.8.3)


def request(method, target, headers=(), body=b"", version="HTTP/1.1"):
    """Bytes of one request; headers is a sequence of (name, value)."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    head = method.encode() + b" " + target + b" " + version.encode() + b"\r\nHost: 127.0.0.1\r\n"
    for name, value in headers:
        head += ("%s: %s\r\n" % (name, value)).encode("latin-1")
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def content_range(value):
    """(first, last, complete_length) of a satisfied Content-Range."""
    m = CONTENT_RANGE_RE.match(value or "")
    assert m, "bad Content-Range %r" % value
    first, last, length = (int(g) for g in m.groups())
    assert first <= last < length, value
    return first, last, length


def comma_list(value):
    return [v.strip().lower() for v in (value or "").split(",") if v.strip()]


def byteranges_boundary(ctype):
    m = BYTERANGES_RE.match(ctype or "")
    assert m, "not multipart/byteranges with a boundary: %r" % ctype
    return (m.group(1) or m.group(2)).encode("latin-1")


def parse_byteranges(ctype, body):
    """The parts of a multipart/byteranges body as a list of (headers, data),
    headers a dict of lower-case names. Strict about the delimiters: each
    is CRLF "--" boundary (the first may start the body), the last is
    followed by "--"; every part has a header block ended by an empty line."""
    boundary = byteranges_boundary(ctype)
    assert 1 <= len(boundary) <= 70, boundary  # RFC 2046 5.1.1
    delim = b"\r\n--" + boundary
    segments = (b"\r\n" + body).split(delim)
    assert len(segments) >= 3, "no parts in %r" % body[:300]
    # segments[0] is the preamble, the last one follows the close delimiter.
    closing = segments[-1]
    assert closing.startswith(b"--"), "no close delimiter: %r" % closing[:100]
    assert closing[2:] in (b"", b"\r\n"), "bytes after the close delimiter: %r" % closing[:100]
    parts = []
    for seg in segments[1:-1]:
        assert seg.startswith(b"\r\n"), "part does not start with CRLF: %r" % seg[:100]
        rest = seg[2:]
        if rest.startswith(b"\r\n"):  # no header fields
            head, data = b"", rest[2:]
        else:
            head, sep, data = rest.partition(b"\r\n\r\n")
            assert sep, "part without header end: %r" % seg[:200]
        headers = {}
        for line in head.split(b"\r\n") if head else []:
            name, colon, value = line.partition(b":")
            assert colon, "bad part header %r" % line
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        parts.append((headers, data))
    return parts


def range_pieces(resp, length):
    """A 206's ranges as a list of (first, last, data), from a single-part
    Content-Range or a multipart/byteranges body; checks each part's
    Content-Range against its data and the complete length."""
    ctype = resp.header("content-type") or ""
    if ctype.lower().startswith("multipart/byteranges"):
        assert resp.header("content-range") is None, resp  # RFC 9110 15.3.7.2
        pieces = []
        for headers, data in parse_byteranges(ctype, resp.body):
            first, last, total = content_range(headers.get("content-range"))
            assert total == length, headers
            assert len(data) == last - first + 1, (headers, len(data))
            pieces.append((first, last, data))
        return pieces
    first, last, total = content_range(resp.header("content-range"))
    assert total == length, resp
    assert len(resp.body) == last - first + 1, resp
    return [(first, last, resp.body)]


def vm_rss_kib(pid):
    """VmRSS of pid in KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def small_rcvbuf_socket(port, timeout, rcvbuf=65536):
    """A client socket with a small receive buffer, so that a slow reader
    holds the server back instead of the kernel buffering megabytes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


class BodyReader:
    """Reads a response body that follows a head already taken from conn
    (evicorn_harness.Conn): first the bytes conn buffered, then the socket.
    Every chunk goes to on_chunk(offset, data); nothing is kept."""

    def __init__(self, conn, on_chunk):
        self.conn = conn
        self.on_chunk = on_chunk
        self.offset = 0
        self.eof = False
        self.buf = bytearray(1 << 20)

    def _deliver(self, data):
        if data:
            self.on_chunk(self.offset, data)
            self.offset += len(data)

    def read(self, upto, chunk=1 << 20, deadline=None, pause=0.0):
        """Reads until offset reaches upto, EOF or the deadline (monotonic);
        pause seconds after each read of at most chunk bytes."""
        if self.conn.buf:
            take = self.conn.buf[:upto - self.offset]
            self.conn.buf = self.conn.buf[len(take):]
            self._deliver(take)
        view = memoryview(self.buf)
        sock = self.conn.sock
        while self.offset < upto and not self.eof:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise socket.timeout("body not complete: %d of %d bytes" % (self.offset, upto))
            sock.settimeout(left if left is not None else self.conn.timeout)
            try:
                n = sock.recv_into(view[:min(chunk, upto - self.offset)])
            except ConnectionResetError:
                self.eof = True
                break
            if n == 0:
                self.eof = True
                break
            self._deliver(bytes(view[:n]))
            if pause:
                time.sleep(pause)
        return self.offset

    def at_eof(self, timeout):
        """True when the peer closes within timeout with no more bytes
        (more bytes: delivered, then keeps waiting)."""
        deadline = time.monotonic() + timeout
        sock = self.conn.sock
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self._deliver(data)
        return True

