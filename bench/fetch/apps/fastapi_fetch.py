"""GET /external-api as FastAPI does it: one httpx.AsyncClient shared by every
request (opened and closed by the lifespan), its answer returned as JSON.
The twin of examples/external (whose upstream is EVICORN_EXTERNAL_API_URL).

    EXTERNAL_API_URL=http://127.0.0.1:9000/data.json uvicorn fastapi_fetch:app

SSL_CERT_FILE, when set, is the CA bundle trusted for https:// upstreams (as
evicorn's client honours it). The connection pool is large enough for every
concurrent request to keep its own keep-alive connection, as evicorn's
per-worker cache does."""
import os
import ssl
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

URL = os.environ["EXTERNAL_API_URL"]
TIMEOUT = float(os.environ.get("EXTERNAL_API_TIMEOUT", "5"))
client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app):
    global client
    cafile = os.environ.get("SSL_CERT_FILE")
    verify = ssl.create_default_context(cafile=cafile) if cafile else True
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=TIMEOUT, verify=verify, limits=limits) as c:
        client = c
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/external-api")
async def external_api():
    try:
        r = await client.get(URL)
    except httpx.TimeoutException as e:
        return JSONResponse({"detail": "upstream request timed out: %s" % e}, status_code=504)
    except httpx.HTTPError as e:
        return JSONResponse({"detail": "upstream request failed: %s" % e}, status_code=502)
    return JSONResponse(r.json(), status_code=r.status_code)
