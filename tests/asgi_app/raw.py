"""A bare ASGI 3 app (no framework), for what FastAPI's middleware would
hide from the server: exceptions before the response starts, a lifespan
scope the app does not support, a factory."""
import json


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("this app does not do lifespan")
    path = scope["path"]
    if path == "/error-before-start":
        raise ValueError("raw error before start")
    if path == "/no-response":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    info = {
        "path": path, "raw_path": scope["raw_path"].decode("latin-1"),
        "root_path": scope["root_path"], "query_string": scope["query_string"].decode("latin-1"),
        "method": scope["method"], "body_length": len(body),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "state": "state" in scope,
    }
    out = json.dumps(info).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [[b"content-type", b"application/json"]]})
    await send({"type": "http.response.body", "body": out})


def create_app():
    """For --factory."""
    return app


class LegacyApp:
    """ASGI 2 (double callable)."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [[b"content-type", b"text/plain"]]})
        await send({"type": "http.response.body", "body": b"asgi2 " + self.scope["path"].encode()})
