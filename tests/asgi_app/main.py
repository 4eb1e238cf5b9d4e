"""The FastAPI app the ASGI bridge tests and benchmarks serve, unmodified,
with evicorn (`evicorn main:app --app-dir tests/asgi_app`) and with uvicorn
(`python3 -m uvicorn main:app --app-dir tests/asgi_app`).

Environment knobs (all optional):
  ASGI_APP_SHUTDOWN_MARKER  lifespan shutdown appends "<pid>\n" to this file
  ASGI_APP_LIFESPAN_FAIL    lifespan startup raises (RuntimeError)
  ASGI_APP_STARTUP_DELAY    lifespan startup first sleeps this many seconds
  ASGI_APP_NO_YIELD_STATE   the lifespan yields no state dict: Debian's
                            uvicorn 0.17 predates lifespan state, and
                            Starlette refuses to start without it
  ASGI_APP_BACKGROUND_LOG   where background tasks append their lines
  ASGI_APP_RESULTS_FILE     lifespan shutdown writes `results` there (JSON)
  ASGI_APP_FILES            the folder /file and /assets serve (default:
                            tests/asgi_app/static, which need not exist)

WebSocket routes: FastAPI's tutorial (/ws, /items/{item_id}/ws, the chat
at /ws/{client_id}) and a raw ASGI app at /wsraw for what FastAPI hides
(misbehaving apps, close codes, backpressure); what it saw is read back
at /result/{key}.
"""
import asyncio
import hashlib
import json
import os
import threading
import time
from contextlib import asynccontextmanager
from typing import Dict, List, Optional

from fastapi import (BackgroundTasks, Cookie, Depends, FastAPI, Header, HTTPException, Query,
                     Request, WebSocket, WebSocketDisconnect, WebSocketException, status)
from fastapi.responses import (FileResponse, JSONResponse, PlainTextResponse, RedirectResponse,
                               Response, StreamingResponse)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

MARKER = os.environ.get("ASGI_APP_SHUTDOWN_MARKER")
RESULTS_FILE = os.environ.get("ASGI_APP_RESULTS_FILE")
BACKGROUND_LOG = os.environ.get("ASGI_APP_BACKGROUND_LOG")
FILES_DIR = os.environ.get("ASGI_APP_FILES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "static")

# Results of requests that outlive their response, read back by later ones.
results: Dict[str, object] = {}
hits = {"plaintext": 0}


@asynccontextmanager
async def lifespan(app):
    if os.environ.get("ASGI_APP_LIFESPAN_FAIL"):
        raise RuntimeError("database unavailable")
    await asyncio.sleep(float(os.environ.get("ASGI_APP_STARTUP_DELAY", "0")))
    app.state.started = "yes"
    app.state.startup_pid = os.getpid()
    if os.environ.get("ASGI_APP_NO_YIELD_STATE"):
        yield
    else:
        yield {"greeting": "hello from lifespan", "counter": [0]}
    if MARKER:
        with open(MARKER, "a") as f:
            f.write("%d\n" % os.getpid())
    if RESULTS_FILE:
        with open(RESULTS_FILE, "w") as f:
            json.dump(results, f)


app = FastAPI()
# FastAPI 0.92 has no lifespan= argument; its router takes one.
app.router.lifespan_context = lifespan


# ---- the benchmark routes --------------------------------------------------


@app.get("/")
async def root():
    return {"Hello": "World"}


@app.get("/json")
async def json_route():
    return {"message": "Hello, World!"}


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext():
    hits["plaintext"] += 1  # tells the app's answers from a native plugin's
    return "Hello, World!"


@app.get("/hits")
async def get_hits():
    return hits


@app.get("/sleep")
async def sleep(seconds: float = 1.0):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


# ---- routes, parameters, bodies ------------------------------------------------


@app.get("/sync")
def sync_route():
    return {"sync": True, "main_thread": threading.current_thread() is threading.main_thread()}


@app.get("/sync/thread")
def sync_thread():
    return {"thread": threading.get_native_id()}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None, limit: int = 10, short: bool = False):
    return {"item_id": item_id, "q": q, "limit": limit, "short": short}


@app.get("/files/{file_path:path}")
async def read_file(file_path: str):
    return {"file_path": file_path}


@app.get("/tags")
async def tags(tag: List[str] = Query(default=[])):
    return {"tags": tag}


class Item(BaseModel):
    name: str
    price: float
    tags: List[str] = []
    description: Optional[str] = Field(default=None, max_length=50)


@app.post("/items/", status_code=201)
async def create_item(item: Item):
    return {"item": item.dict(), "total": item.price * 2}


@app.put("/items/{item_id}")
def update_item(item_id: int, item: Item, notify: bool = False):
    return {"item_id": item_id, "name": item.name, "notify": notify}


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "content_type": request.headers.get("content-type")}


@app.post("/echo/stream")
async def echo_stream(request: Request):
    n, chunks, h = 0, 0, hashlib.sha256()
    async for chunk in request.stream():
        if chunk:
            chunks += 1
            n += len(chunk)
            h.update(chunk)
    return {"length": n, "chunks": chunks, "sha256": h.hexdigest()}


@app.post("/echo/raw")
async def echo_raw(request: Request):
    return Response(await request.body(), media_type="application/octet-stream")


# ---- headers, cookies, state -----------------------------------------------


@app.get("/headers")
async def headers(request: Request, user_agent: Optional[str] = Header(default=None),
                  x_token: Optional[str] = Header(default=None)):
    return {"user_agent": user_agent, "x_token": x_token,
            "x_multi": request.headers.getlist("x-multi"),
            "host": request.headers.get("host")}


@app.get("/cookies")
async def cookies(session: Optional[str] = Cookie(default=None), theme: str = Cookie(default="light")):
    return {"session": session, "theme": theme}


@app.get("/cookies/set")
async def set_cookie():
    response = JSONResponse({"set": True})
    response.set_cookie("session", "abc123", httponly=True)
    response.set_cookie("theme", "dark", max_age=3600)
    return response


@app.get("/state")
async def state(request: Request):
    greeting = getattr(request.state, "greeting", None)
    counter = getattr(request.state, "counter", None)
    if counter is not None:
        counter[0] += 1
    return {"started": request.app.state.started, "pid": os.getpid(),
            "pid_matches": request.app.state.startup_pid == os.getpid(), "greeting": greeting,
            "counter": counter[0] if counter is not None else None}


@app.get("/scope")
async def scope(request: Request):
    s = request.scope
    return {
        "type": s["type"], "asgi": s["asgi"], "http_version": s["http_version"],
        "method": s["method"], "scheme": s["scheme"], "path": s["path"],
        "raw_path": s["raw_path"].decode("latin-1"), "query_string": s["query_string"].decode("latin-1"),
        "root_path": s["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in s["headers"]],
        "client": list(s["client"]) if s.get("client") else None,
        "server": list(s["server"]) if s.get("server") else None,
        "has_state": "state" in s,
    }


# ---- responses ---------------------------------------------------------------


@app.get("/http-exception")
async def http_exception():
    raise HTTPException(status_code=404, detail="Item not found", headers={"X-Error": "yes"})


@app.get("/teapot")
def teapot():
    raise HTTPException(status_code=418, detail={"reason": "short and stout"})


@app.get("/boom")
async def boom():
    raise RuntimeError("boom")


@app.get("/boom/sync")
def boom_sync():
    raise ValueError("sync boom")


@app.get("/redirect")
async def redirect():
    return RedirectResponse("/json")


@app.get("/redirect/found")
async def redirect_found():
    return RedirectResponse("https://example.com/elsewhere?x=1", status_code=302)


@app.get("/empty", status_code=204)
async def empty():
    return Response(status_code=204)


@app.get("/custom-headers")
async def custom_headers():
    return Response("ok", media_type="text/plain",
                    headers={"X-Custom": "one", "Cache-Control": "no-store"})


@app.get("/large")
async def large(size: int = 1 << 20):
    return Response(b"x" * size, media_type="application/octet-stream")


@app.get("/stream")
async def stream(n: int = 5, delay: float = 0.0, size: int = 0):
    async def lines():
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield ("line %d\n" % i).encode() + (b"." * size)
    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/stream/sync")
def stream_sync(n: int = 3):
    def lines():
        for i in range(n):
            yield "sync line %d\n" % i
    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/sse")
async def sse(n: int = 3, delay: float = 0.05):
    async def events():
        for i in range(n):
            yield "data: %s\n\n" % json.dumps({"i": i})
            await asyncio.sleep(delay)
    return StreamingResponse(events(), media_type="text/event-stream")


# ---- background tasks --------------------------------------------------------


def write_log(line: str):
    time.sleep(0.05)
    if BACKGROUND_LOG:
        with open(BACKGROUND_LOG, "a") as f:
            f.write(line + "\n")


async def write_log_async(line: str):
    await asyncio.sleep(0.05)
    if BACKGROUND_LOG:
        with open(BACKGROUND_LOG, "a") as f:
            f.write(line + "\n")


@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(write_log, "sync notification for %s" % email)
    background_tasks.add_task(write_log_async, "async notification for %s" % email)
    return {"message": "Notification sent in the background"}


# ---- disconnects -------------------------------------------------------------


@app.get("/disconnect")
async def disconnect(request: Request, key: str, limit: float = 10.0):
    deadline = time.monotonic() + limit
    results[key] = "waiting"
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            results[key] = "disconnected"
            return PlainTextResponse("too late")
        await asyncio.sleep(0.02)
    results[key] = "timeout"
    return PlainTextResponse("still connected")


@app.get("/result/{key}")
async def result(key: str):
    return {"key": key, "result": results.get(key)}


# ---- raw ASGI, for what FastAPI never does -----------------------------------------


async def raw_app(scope, receive, send):
    """Mounted at /raw: misbehaving and low-level ASGI apps."""
    # Starlette before 0.33 strips the mount's prefix from path; later ones
    # leave path whole and put the prefix in root_path.
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    if path == "/no-response":
        return
    if path == "/error-before-start":
        raise RuntimeError("error before start")
    if path == "/error-after-start":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("error after start")
    if path == "/incomplete":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        return
    if path == "/invalid":
        errors = []
        for msg in ({"type": "http.response.body", "body": b"too early"},
                    {"type": "http.response.start", "status": 200,
                     "headers": [(b"bad header", b"x")]},
                    {"type": "http.response.start", "status": 200,
                     "headers": [(b"x-injected", b"a\r\nset-cookie: evil=1")]},
                    {"type": "no.such.message"}):
            try:
                await send(msg)
                errors.append("accepted")
            except RuntimeError as exc:
                errors.append("RuntimeError: %s" % exc)
        body = json.dumps(errors).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            results["after_complete"] = "accepted"
        except RuntimeError as exc:
            results["after_complete"] = "RuntimeError: %s" % exc
        return
    if path == "/send-after-disconnect":
        key = scope["query_string"].decode() or "sad"
        results[key] = "streaming"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        try:
            for i in range(500):
                await send({"type": "http.response.body", "body": b"tick %d\n" % i,
                            "more_body": True})
                await asyncio.sleep(0.02)
            results[key] = "never disconnected"
        except OSError as exc:
            results[key] = "OSError: %s" % type(exc).__name__
            raise
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/connection-keep-alive":
        # The bytes of the header after Connection spell "close": only the
        # Connection value itself may decide.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"connection", b"keep-alive"), (b"x-note", b"closed"),
                                (b"x-close", b"close")]})
        await send({"type": "http.response.body", "body": b"kept"})
        return
    if path == "/connection-close":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"connection", b"Keep-Alive, Close")]})
        await send({"type": "http.response.body", "body": b"closing"})
        return
    if path == "/receive-after-response":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        msg = await asyncio.wait_for(receive(), 2)
        results["after_response"] = msg["type"]
        return
    if path == "/backpressure":
        # 32 MiB in 64 KiB sends, counted in results["bp"], to a client
        # that does not read for a while.
        chunk = b"b" * 65536
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(512 * len(chunk)).encode())]})
        for i in range(512):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            results["bp"] = str(i + 1)
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"no raw route"})


app.mount("/raw", raw_app)

# ---- files: FileResponse and StaticFiles (Starlette sends them with
# http.response.pathsend when the server offers it, else streams them) ----


@app.get("/file/{name}")
@app.head("/file/{name}")
async def file(name: str, download: bool = False):
    path = os.path.join(FILES_DIR, os.path.basename(name))
    if not os.path.isfile(path):
        raise HTTPException(status_code=404, detail="No such file")
    return FileResponse(path, filename=name if download else None)


app.mount("/assets", StaticFiles(directory=FILES_DIR, html=True, check_dir=False),
          name="assets")

# ---- WebSockets: FastAPI's tutorial (fastapi.tiangolo.com/advanced/websockets) ----
# Written without Annotated, which FastAPI 0.92 lacks.


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        await websocket.send_text(f"Message text was: {data}")


async def get_cookie_or_token(
    websocket: WebSocket,
    session: Optional[str] = Cookie(default=None),
    token: Optional[str] = Query(default=None),
):
    if session is None and token is None:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    return session or token


@app.websocket("/items/{item_id}/ws")
async def websocket_item(
    *,
    websocket: WebSocket,
    item_id: str,
    q: Optional[int] = None,
    cookie_or_token: str = Depends(get_cookie_or_token),
):
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        await websocket.send_text(f"Session cookie or query token value is: {cookie_or_token}")
        if q is not None:
            await websocket.send_text(f"Query parameter q is: {q}")
        await websocket.send_text(f"Message text was: {data}, for item ID: {item_id}")


class ConnectionManager:
    def __init__(self):
        self.active_connections: List[WebSocket] = []

    async def connect(self, websocket: WebSocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket):
        self.active_connections.remove(websocket)

    async def send_personal_message(self, message: str, websocket: WebSocket):
        await websocket.send_text(message)

    async def broadcast(self, message: str):
        for connection in self.active_connections:
            await connection.send_text(message)


manager = ConnectionManager()


@app.websocket("/ws/{client_id}")
async def websocket_chat(websocket: WebSocket, client_id: int):
    await manager.connect(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            await manager.send_personal_message(f"You wrote: {data}", websocket)
            await manager.broadcast(f"Client #{client_id} says: {data}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)
        await manager.broadcast(f"Client #{client_id} left the chat")


@app.websocket("/ws-state")
async def websocket_state(websocket: WebSocket):
    """The lifespan's state, as the websocket scope carries it."""
    await websocket.accept()
    counter = getattr(websocket.state, "counter", None)
    await websocket.send_json({"greeting": getattr(websocket.state, "greeting", None),
                               "counter": counter[0] if counter is not None else None,
                               "started": websocket.app.state.started})
    await websocket.close()


# ---- WebSockets, raw ASGI, for what FastAPI never does ------------------------------

gates: Dict[str, asyncio.Event] = {}


def gate(key: str) -> asyncio.Event:
    if key not in gates:
        gates[key] = asyncio.Event()
    return gates[key]


def describe(exc: BaseException) -> str:
    return "%s%s: %s" % (type(exc).__name__, " (OSError)" if isinstance(exc, OSError) else "",
                         exc)


async def try_send(send, message) -> str:
    try:
        await send(message)
        return "sent"
    except Exception as exc:  # what the server raises is the point
        return describe(exc)


async def try_receive(receive) -> object:
    try:
        return await asyncio.wait_for(receive(), 5)
    except Exception as exc:
        return describe(exc)


def query_args(scope) -> Dict[str, str]:
    return {k: v for k, v in
            (p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)}


async def ws_raw_app(scope, receive, send):
    """Mounted at /wsraw. WebSocket paths:
      /echo      accept (?sub= a subprotocol, ?hdr=1 extra headers), echo text and
                 bytes; "close CODE REASON" closes, "raise" raises, "return"
                 returns; results[key] gets the disconnect, and what send() and
                 receive() did after it
      /close-before /raise-before /return-before /reject (?status=)  no handshake
      /misuse    sends in the wrong order, reports what each raised (then, in
                 results, what a close with code 1005 raised)
      /scope     the scope, as JSON
      /late      accepts after ?delay= seconds (the client may be gone by then)
      /hold      accepts, waits for the gate, then receives everything
      /flood     sends 64 KiB messages until send() raises
    HTTP: /release?key= opens the gate of /hold."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    args = query_args(scope)
    key = args.get("key", path)
    if scope["type"] == "http":
        if path == "/release":
            gate(key).set()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    first = await receive()
    results[key + ":connect"] = first["type"]
    if path == "/close-before":
        await send({"type": "websocket.close", "code": 4000, "reason": "not you"})
        results[key] = await try_receive(receive)
        results[key + ":send"] = await try_send(send, {"type": "websocket.send", "text": "x"})
        return
    if path == "/raise-before":
        raise RuntimeError("raised before accepting")
    if path == "/return-before":
        return
    if path == "/reject":
        code = int(args.get("status", "401"))
        await send({"type": "websocket.http.response.start", "status": code,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"x-reason", b"no token"), (b"content-length", b"14")]})
        await send({"type": "websocket.http.response.body", "body": b"no token, ",
                    "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"bye!"})
        results[key] = await try_receive(receive)
        results[key + ":send"] = await try_send(send, {"type": "websocket.send", "text": "x"})
        return
    if path == "/misuse":
        report = [await try_send(send, {"type": "websocket.send", "text": "too early"})]
        await send({"type": "websocket.accept"})
        report.append(await try_send(send, {"type": "websocket.accept"}))
        report.append(await try_send(send, {"type": "websocket.http.response.start",
                                            "status": 200}))
        await send({"type": "websocket.send", "text": json.dumps(report)})
        # A code no endpoint may send (uvicorn's connection does not survive it).
        results[key + ":bad-close"] = await try_send(send, {"type": "websocket.close",
                                                            "code": 1005})
        results[key] = await try_send(send, {"type": "websocket.close"})
        return
    if path == "/scope":
        await send({"type": "websocket.accept"})
        info = {k: scope[k] for k in ("type", "asgi", "http_version", "scheme", "path",
                                      "root_path", "subprotocols", "extensions")}
        info.update({
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "client": list(scope["client"]) if scope.get("client") else None,
            "server": list(scope["server"]) if scope.get("server") else None,
            "state": sorted(scope.get("state", {})), "has_method": "method" in scope,
        })
        await send({"type": "websocket.send", "text": json.dumps(info)})
        await send({"type": "websocket.close"})
        return
    if path == "/late":
        await asyncio.sleep(float(args.get("delay", "0.5")))
        await send({"type": "websocket.accept"})
        results[key] = await try_receive(receive)
        results[key + ":send"] = await try_send(send, {"type": "websocket.send", "text": "x"})
        return
    if path == "/hold":
        await send({"type": "websocket.accept"})
        await asyncio.wait_for(gate(key).wait(), 60)
        got = []
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes") or msg.get("text", "").encode()
            got.append([len(data), hashlib.sha256(data).hexdigest()[:16]])
            if msg.get("text") == "done":
                break
        results[key] = got
        await send({"type": "websocket.send", "text": "got %d" % len(got)})
        await send({"type": "websocket.close"})
        return
    if path == "/flood":
        await send({"type": "websocket.accept"})
        n = 0
        chunk = b"f" * 65536
        while True:
            outcome = await try_send(send, {"type": "websocket.send", "bytes": chunk})
            if outcome != "sent":
                results[key] = {"sent": n, "error": outcome}
                return
            n += 1
            results[key + ":sent"] = n
    if path != "/echo":
        await send({"type": "websocket.close", "code": 4404})
        return
    accept = {"type": "websocket.accept"}
    if "sub" in args:
        accept["subprotocol"] = args["sub"]
    if args.get("hdr"):
        accept["headers"] = [(b"x-ws-extra", b"yes"), (b"Set-Cookie", b"ws=1; Path=/")]
    await send(accept)
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            results[key] = msg
            results[key + ":send"] = await try_send(send, {"type": "websocket.send", "text": "x"})
            results[key + ":again"] = await try_receive(receive)
            return
        text = msg.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = (text + " ").split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason.strip()})
            results[key + ":send"] = await try_send(send, {"type": "websocket.send", "text": "x"})
            results[key + ":again"] = await try_receive(receive)
            return
        if text == "raise":
            raise RuntimeError("raised after accepting")
        if text == "return":
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


app.mount("/wsraw", ws_raw_app)

