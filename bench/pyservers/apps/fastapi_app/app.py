"""The FastAPI app of bench/pyservers/run.py: two `async def` routes, plus
/version, which the reload scenario rewrites (VERSION below) while it sends
requests."""
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

VERSION = "v0"

app = FastAPI()


@app.get("/json")
async def json_hello():
    return {"message": "Hello, World!"}


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext_hello():
    return PlainTextResponse("Hello, World!")


@app.get("/version", response_class=PlainTextResponse)
async def version():
    return PlainTextResponse(VERSION)
