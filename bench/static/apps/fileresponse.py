"""The FastAPI app of bench/static/run.py: GET /file answers the file named
by $STATIC_BENCH_FILE with Starlette's FileResponse, which sends it with
the ASGI http.response.pathsend extension when the server offers it (and
reads and sends it in chunks otherwise). GET /pathsend tells whether this
server offered the extension, so the report can say which path was taken.

Served by evicorn (`evicorn fileresponse:app`), uvicorn and Granian."""
import os

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse

PATH = os.environ["STATIC_BENCH_FILE"]

app = FastAPI()


@app.get("/file")
async def f():
    return FileResponse(PATH)


@app.get("/pathsend")
async def pathsend(request: Request):
    return {"pathsend": "http.response.pathsend" in request.scope.get("extensions", {})}
