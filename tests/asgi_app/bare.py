"""The smallest ASGI app: what a server costs around an app that costs
nothing (bench/asgi/run.py --app bare:app --routes /)."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: nothing to do (servers carry on without it)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, World!"})
