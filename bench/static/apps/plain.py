"""A trivial ASGI app for bench/static/run.py: Granian serves the static
folder itself (--static-path-mount) in front of an app, and this is that
app. It answers 404 to everything that reaches it."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")]})
    await send({"type": "http.response.body", "body": b"not found"})
