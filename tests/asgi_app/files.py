"""A bare ASGI app for the file extensions of ASGI, http.response.pathsend
and http.response.zerocopysend, and Starlette's FileResponse behind a
recorder of the messages it sent. It serves the files of its working
directory (names in the query string are relative to it).

  /extensions                 scope["extensions"], as JSON
  /seen?key=K                 what a request recorded under K: the message
                              types a FileResponse sent, or an error text
  /starlette/NAME?key=K       FileResponse(NAME) (absolute path; &relative=1:
                              the path as given), its messages recorded
  /pathsend?name=N            start (Content-Length of N, unless &chunked=1),
                              then pathsend of its absolute path (&relative=1:
                              of N as given); &later=1: the start leaves first;
                              &gone=1: the path is not there (as if the file
                              was deleted after the app's stat); &key=K: an
                              error is recorded under K
  /zerocopy?name=N&pieces=O:C,O:C
                              start with the Content-Length, zerocopysend of
                              each piece (offset O, count C), then b"tail"
  /zerocopy/position?name=N   from position 5, two zerocopysends of 10 bytes
                              without an offset, then the position, then the
                              rest of the file (neither offset nor count)
  /order?what=W               a misplaced message (W: pathsend-first,
                              zerocopy-first, pathsend-after-end,
                              body-after-pathsend, count-past-end): the error
                              is recorded under W
"""
import asyncio
import json
import os
from urllib.parse import parse_qsl

from starlette.responses import FileResponse

seen = {}


def query(scope):
    return dict(parse_qsl(scope["query_string"].decode()))


async def respond(send, status, body, ctype=b"application/json"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def error_text(exc):
    return "%s: %s" % (type(exc).__name__, exc)


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def starlette_file(scope, receive, send, name, q):
    types = seen[q.get("key", name)] = []

    async def recording(message):
        types.append(message["type"])
        await send(message)

    path = name if q.get("relative") else os.path.abspath(name)
    await FileResponse(path)(scope, receive, recording)


async def pathsend(scope, send, q):
    path = q["name"] if q.get("relative") else os.path.abspath(q["name"])
    headers = [(b"content-type", b"application/octet-stream")]
    if not q.get("chunked"):
        headers.append((b"content-length", b"%d" % os.stat(path).st_size))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if q.get("later"):
        await asyncio.sleep(0.1)  # the start goes out on its own
    if q.get("gone"):
        path += ".gone"
    try:
        await send({"type": "http.response.pathsend", "path": path})
    except Exception as e:
        seen[q.get("key", "pathsend")] = error_text(e)
        raise


def pieces(q):
    return [tuple(int(n) for n in p.split(":")) for p in q["pieces"].split(",")]


async def zerocopy(scope, send, q):
    with open(q["name"], "rb", buffering=0) as f:
        parts = pieces(q)
        length = sum(count for _, count in parts) + len(b"tail")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"content-length", b"%d" % length)]})
        for offset, count in parts:
            await send({"type": "http.response.zerocopysend", "file": f, "offset": offset,
                        "count": count, "more_body": True})
    # The file is closed now; what the server sends next is its own copy.
    await send({"type": "http.response.body", "body": b"tail"})


async def zerocopy_position(scope, send, q):
    with open(q["name"], "rb", buffering=0) as f:
        os.lseek(f.fileno(), 5, os.SEEK_SET)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for _ in range(2):
            await send({"type": "http.response.zerocopysend", "file": f, "count": 10,
                        "more_body": True})
        position = os.lseek(f.fileno(), 0, os.SEEK_CUR)
        await send({"type": "http.response.body", "body": b"|%d|" % position,
                    "more_body": True})
        await send({"type": "http.response.zerocopysend", "file": f})


async def order(scope, send, q):
    what = q["what"]
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/plain")]}
    this_file = os.path.abspath(__file__)
    try:
        if what == "pathsend-first":
            await send({"type": "http.response.pathsend", "path": this_file})
        elif what == "zerocopy-first":
            with open(this_file, "rb") as f:
                await send({"type": "http.response.zerocopysend", "file": f})
        elif what == "pathsend-after-end":
            await send(start)
            await send({"type": "http.response.body", "body": b"done"})
            await send({"type": "http.response.pathsend", "path": this_file})
        elif what == "body-after-pathsend":
            await send(start)
            await send({"type": "http.response.pathsend", "path": this_file})
            await send({"type": "http.response.body", "body": b"ignored"})
        elif what == "count-past-end":
            await send(start)
            with open(this_file, "rb") as f:
                await send({"type": "http.response.zerocopysend", "file": f, "offset": 0,
                            "count": os.path.getsize(this_file) + 1, "more_body": True})
        seen[what] = "no error"
    except Exception as e:
        seen[what] = error_text(e)
    if what.endswith("-first"):
        await respond(send, 200, b"recovered", b"text/plain")
    elif what == "count-past-end":
        await send({"type": "http.response.body", "body": b"recovered"})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path, q = scope["path"], query(scope)
    if path == "/extensions":
        return await respond(send, 200, json.dumps(scope.get("extensions")).encode())
    if path == "/seen":
        return await respond(send, 200, json.dumps(seen.get(q["key"])).encode())
    if path.startswith("/starlette/"):
        return await starlette_file(scope, receive, send, path[len("/starlette/"):], q)
    if path == "/pathsend":
        return await pathsend(scope, send, q)
    if path == "/zerocopy":
        return await zerocopy(scope, send, q)
    if path == "/zerocopy/position":
        return await zerocopy_position(scope, send, q)
    if path == "/order":
        return await order(scope, send, q)
    await respond(send, 404, b"no such route", b"text/plain")
