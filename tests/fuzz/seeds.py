#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/.

The seeds are committed; this script is how they were made, so a changed
input layout (see the comment at the top of each fuzz_*.c) can be followed
by regenerating them: python3 tests/fuzz/seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def framed(payload, opts=0, splits=()):
    """The split header every HTTP target reads first: options, the number
    of split lengths and the lengths (each byte is a length minus one)."""
    assert len(splits) <= 15
    return bytes([opts, len(splits)] + [s - 1 for s in splits]) + payload


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


H = b"Host: a\r\n"

REQUEST = {
    "get": framed(b"GET / HTTP/1.1\r\n" + H + b"\r\n"),
    "get-split-1": framed(b"GET /items/42?q=1 HTTP/1.1\r\n" + H + b"\r\n", splits=[1]),
    "pipelined-pair": framed(
        b"GET /items/42 HTTP/1.1\r\n" + H + b"\r\nGET /price/3.5 HTTP/1.1\r\n" + H + b"\r\n",
        splits=[7, 30]),
    "pipelined-ten": framed(b"".join(
        b"GET /items/%d HTTP/1.1\r\n" % i + H + b"\r\n" for i in range(10))),
    "chunked-post": framed(
        b"POST /upload HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", splits=[20, 3]),
    "chunked-stream": framed(
        b"POST /stream/abc HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", splits=[40, 5, 5]),
    "cl-te": framed(
        b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "content-length": framed(
        b"PUT /upload/7 HTTP/1.1\r\n" + H + b"Content-Type: text/plain\r\n"
        b"Content-Length: 11\r\n\r\nhello world", splits=[50, 2]),
    "expect-continue": framed(
        b"POST /upload HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
        b"Content-Length: 4\r\n\r\nbody", splits=[70]),
    "body-over-limit": framed(
        b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\n" + b"x" * 100, opts=1),
    "chunked-over-limit": framed(
        b"POST /stream/s HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"40\r\n" + b"y" * 64 + b"\r\n10\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n", opts=1),
    "concurrency-shed": framed(
        b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"
        b"GET / HTTP/1.1\r\n" + H + b"\r\nGET /items/1 HTTP/1.1\r\n" + H + b"\r\n", opts=2,
        splits=[45]),
    "http10-keepalive": framed(
        b"GET /users/me HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /users/bob HTTP/1.0\r\n\r\n"),
    "head": framed(b"HEAD /files/a/b.txt HTTP/1.1\r\n" + H + b"\r\n"),
    "method-not-allowed": framed(b"PATCH /items/3 HTTP/1.1\r\n" + H + b"\r\n"),
    "any-method-path": framed(
        b"OPTIONS /any/7/x/y%2Fz HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nok"),
    "proxy-headers": framed(
        b"GET /files/%41%2e/b?x=%20 HTTP/1.1\r\n" + H +
        b"X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-Proto: https\r\n\r\n"),
    "connection-close": framed(
        b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
        opts=8),
    "bare-lf": framed(b"GET / HTTP/1.1\n" + H + b"\n"),
    "obs-fold": framed(b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n  2\r\n\r\n"),
    "many-headers": framed(
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(130)) + b"\r\n"),
    "small-limits-head": framed(
        b"GET /files/" + b"a/" * 200 + b" HTTP/1.1\r\n" + H + b"X-Long: " + b"v" * 300 + b"\r\n\r\n",
        opts=16),
    "small-limits-headers": framed(
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(9)) + b"\r\n",
        opts=16),
    "scope-echo": framed(
        b"GET /users/bob HTTP/1.1\r\n" + H + b"Content-Type: application/json; a=b\r\n"
        b"Cookie: c=1\r\n\r\n"),
}

CHUNKED = {
    "simple": framed(b"5\r\nhello\r\n0\r\n\r\n"),
    "extension": framed(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
    "quoted-extension": framed(b'3;a="b\\"c";d\r\nabc\r\n0\r\n\r\n', splits=[4]),
    "trailers": framed(b"1\r\nx\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"),
    "hex-sizes": framed(b"A\r\n0123456789\r\n1\r\nx\r\nf\r\n" + b"q" * 15 + b"\r\n0\r\n\r\n"),
    "pipelined": framed(b"0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", splits=[1, 2, 3]),
    "response": framed(b"4\r\nabcd\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", opts=1),
    "response-alt": framed(b"2;x\r\nok\r\n0\r\nServer-Timing: a\r\n\r\n", opts=3),
    "space-after-size": framed(b"5 \r\nhello\r\n0\r\n\r\n"),
    "bare-lf": framed(b"5\nhello\n0\n\n"),
    "overflow": framed(b"ffffffffffffffffff\r\n"),
    "leading-zeros": framed(b"0005\r\nhello\r\n0000\r\n\r\n"),
    "byte-by-byte": framed(b"3\r\nabc\r\n0\r\n\r\n", splits=[1]),
    "alt-head": framed(b"3\r\nabc\r\n0\r\n\r\n", opts=2),
    "data-no-crlf": framed(b"5\r\nhelloX\r\n0\r\n\r\n"),
    "huge-size": framed(b"7fffffffffffffff\r\nabc"),
    "long-extension": framed(b"1;" + b"e" * 1100 + b"\r\nx\r\n0\r\n\r\n"),
    "trailer-obs-fold": framed(b"0\r\nX: 1\r\n 2\r\n\r\n"),
}


def elf(e_type=3, machine=62, phdrs=None, shnum=0, cls=2, data=1, tail=b""):
    """A minimal x86-64 ELF: header, program headers, an 8-byte dynamic
    section; enough for the checks before dlopen, not for dlopen."""
    phdrs = phdrs if phdrs is not None else ["load", "dynamic"]
    phoff = 64
    dyn_off = phoff + 56 * len(phdrs)
    shoff = dyn_off + 16 if shnum else 0
    size = dyn_off + 16 + 64 * shnum
    ident = b"\x7fELF" + bytes([cls, data, 1, 0]) + b"\0" * 8
    eh = ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, phoff, shoff, 0, 64, 56,
                             len(phdrs), 64, shnum, 0)
    ph = b""
    for kind in phdrs:
        if kind == "load":
            ph += struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)
        elif kind == "dynamic":
            ph += struct.pack("<IIQQQQQQ", 2, 6, dyn_off, dyn_off, dyn_off, 16, 16, 8)
        elif kind == "load-past-end":
            ph += struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size + 4096, size + 4096, 0x1000)
    sh = b"\0" * 64 * shnum
    return eh + ph + b"\0" * 16 + sh + tail


PLUGIN_FILE = {
    "minimal-so": elf(),
    "with-sections": elf(shnum=2),
    "exec": elf(e_type=2),
    "aarch64": elf(machine=183),
    "elf32": elf(cls=1),
    "big-endian": elf(data=2),
    "no-dynamic": elf(phdrs=["load"]),
    "no-load": elf(phdrs=["dynamic"]),
    "load-past-end": elf(phdrs=["load-past-end", "dynamic"]),
    "truncated": elf()[:100],
    "magic-only": b"\x7fELF",
    "not-elf": b"#!/bin/sh\necho not a plugin\n",
    "padded": elf(tail=b"\0" * 512),
}



def ws_frame(opcode, payload, fin=True, rsv=0, mask=b"\x37\xfa\x21\x3d"):
    """A client frame (RFC 6455 §5.2), masked unless mask is None."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    m = 0x80 if mask is not None else 0
    n = len(payload)
    if n <= 125:
        head += bytes([m | n])
    elif n <= 0xFFFF:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# permessage-deflate's "Hello" (RFC 7692 §7.2.3.1), for option bit 0.
DEFLATED_HELLO = bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])

WS = {
    "text": framed(ws_frame(1, b"Hello")),
    "binary-126": framed(ws_frame(2, bytes(range(126)))),
    "binary-65536": framed(ws_frame(2, b"x" * 65536), splits=(7, 200, 3)),
    "fragments-with-ping": framed(ws_frame(1, b"frag", fin=False) + ws_frame(9, b"p") +
                                  ws_frame(0, b"men", fin=False) + ws_frame(0, b"ted")),
    "utf8-split": framed(ws_frame(1, b"\xe2\x82", fin=False) + ws_frame(0, b"\xac"),
                         splits=(1, 2)),
    "utf8-invalid": framed(ws_frame(1, b"\xce\xba\xed\xa0\x80", fin=False)),
    "close": framed(ws_frame(8, b"\x03\xe8bye") + ws_frame(1, b"after")),
    "close-bad-code": framed(ws_frame(8, b"\x03\xed")),
    "unmasked": framed(ws_frame(1, b"x", mask=None)),
    "orphan-continuation": framed(ws_frame(0, b"x")),
    "deflated": framed(ws_frame(2, DEFLATED_HELLO, rsv=0x40) + ws_frame(1, b"\x00", rsv=0x40),
                       opts=1),
}

for name, data in REQUEST.items():
    write("fuzz_request", name, data)
for name, data in CHUNKED.items():
    write("fuzz_chunked", name, data)
for name, data in PLUGIN_FILE.items():
    write("fuzz_plugin_file", name, data)
for name, data in WS.items():
    write("fuzz_ws", name, data)
