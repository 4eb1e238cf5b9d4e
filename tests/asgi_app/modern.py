"""A FastAPI app written the way current FastAPI apps are (FastAPI 0.100+,
pydantic 2): `Annotated` dependencies, a lifespan yielding state, pydantic 2
models, streaming and server-sent events, uploads, files, CORS and GZip
middleware, background tasks, exception handlers, response models, and
FastAPI's WebSocket tutorial (/ws, /items/{item_id}/ws, /ws/{client_id}). Served
unmodified by evicorn (`evicorn modern:app --app-dir tests/asgi_app`) and by
uvicorn (`python -m uvicorn modern:app --app-dir tests/asgi_app`).

Environment knobs (all optional):
  MODERN_APP_FILES  the folder /download and /static serve files from, and
                    /site its subfolder site (default: tests/asgi_app/static,
                    which need not exist)
"""
import asyncio
import hashlib
import os
import time
from contextlib import asynccontextmanager
from enum import Enum
from typing import Annotated, AsyncIterator, Dict, List, Optional

from fastapi import (BackgroundTasks, Cookie, Depends, FastAPI, File, Form, Header,
                     HTTPException, Path, Query, Request, Response, UploadFile, WebSocket,
                     WebSocketDisconnect, WebSocketException, status)
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse,
                               RedirectResponse, StreamingResponse)
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator

FILES_DIR = os.environ.get("MODERN_APP_FILES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "static")


# ---- lifespan: a fake database shared through request.state -------------------


class FakeDB:
    """What a lifespan typically yields: a connection pool, here in memory."""

    def __init__(self):
        self.items: Dict[int, dict] = {}
        self.users: Dict[str, dict] = {}
        self.orders: Dict[int, dict] = {}
        self.audit: List[str] = []
        self.gates: Dict[str, asyncio.Event] = {}
        self.next_id = 1

    def new_id(self):
        self.next_id += 1
        return self.next_id - 1


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    db = FakeDB()
    db.audit.append("startup")
    yield {"db": db, "started_at": "lifespan"}
    db.audit.append("shutdown")


app = FastAPI(title="modern", lifespan=lifespan)

app.add_middleware(GZipMiddleware, minimum_size=1000)
app.add_middleware(
    CORSMiddleware,
    allow_origins=["https://app.example.com"],
    allow_credentials=True,
    allow_methods=["GET", "POST", "PUT"],
    allow_headers=["X-Token", "Content-Type"],
    expose_headers=["X-Request-ID"],
    max_age=600,
)


@app.middleware("http")
async def request_id(request: Request, call_next):
    """Echoes X-Request-ID (or makes one up), as tracing middleware does."""
    rid = request.headers.get("x-request-id") or "generated"
    response = await call_next(request)
    response.headers["X-Request-ID"] = rid
    return response


# ---- dependencies ------------------------------------------------------------


def get_db(request: Request) -> FakeDB:
    return request.state.db


DB = Annotated[FakeDB, Depends(get_db)]


async def audited(db: DB, x_request_id: Annotated[Optional[str], Header()] = None):
    """A dependency with yield: its teardown runs after the response is sent."""
    rid = x_request_id or "anonymous"
    db.audit.append("open " + rid)
    try:
        yield rid
    except QuotaExceeded:
        db.audit.append("failed " + rid)
        raise
    finally:
        db.audit.append("close " + rid)


Audit = Annotated[str, Depends(audited)]


async def verify_token(x_token: Annotated[str, Header()]):
    if x_token != "secret-token":
        raise HTTPException(status_code=401, detail="Invalid X-Token",
                            headers={"WWW-Authenticate": "Bearer"})
    return x_token


def pagination(skip: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=50)] = 10) -> dict:
    return {"skip": skip, "limit": limit}


def listing(page: Annotated[dict, Depends(pagination)], db: DB,
            q: Annotated[Optional[str], Query(min_length=2, max_length=20,
                                              pattern="^[a-z]+$")] = None) -> dict:
    """A sub-dependency: pagination and the database, one level down."""
    items = [i for i in db.items.values() if q is None or q in i["name"].lower()]
    return {"page": page, "items": items[page["skip"]:page["skip"] + page["limit"]]}


# ---- models ------------------------------------------------------------------


class Tag(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    name: str = Field(min_length=1, max_length=20)


class Owner(BaseModel):
    name: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]+$")


class ItemIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid",
                              json_schema_extra={"examples": [{"name": "Hammer", "price": 9.5}]})

    name: str = Field(min_length=2, max_length=30)
    price: float = Field(gt=0, le=10000)
    quantity: int = Field(default=1, ge=1, le=100)
    description: Optional[str] = None
    tags: List[Tag] = []
    owner: Optional[Owner] = None

    @field_validator("name")
    @classmethod
    def name_not_reserved(cls, v: str) -> str:
        if v.lower() in ("admin", "root"):
            raise ValueError("name %r is reserved" % v)
        return v.title()


class ItemOut(BaseModel):
    id: int
    name: str
    price: float
    quantity: int = 1
    description: Optional[str] = None
    tags: List[Tag] = []
    owner: Optional[Owner] = None


class UserIn(BaseModel):
    username: str = Field(min_length=3, max_length=16, pattern="^[a-z0-9_]+$")
    password: str = Field(min_length=8)
    full_name: Optional[str] = None


class UserOut(BaseModel):
    username: str
    full_name: Optional[str] = None


class Color(str, Enum):
    red = "red"
    green = "green"


class QuotaExceeded(Exception):
    def __init__(self, who: str, retry_after: int):
        self.who = who
        self.retry_after = retry_after


# ---- exception handlers ------------------------------------------------------


@app.exception_handler(QuotaExceeded)
async def quota_exceeded_handler(request: Request, exc: QuotaExceeded):
    return JSONResponse(status_code=429, content={"error": "quota exceeded", "who": exc.who},
                        headers={"Retry-After": str(exc.retry_after)})


@app.exception_handler(RequestValidationError)
async def validation_handler(request: Request, exc: RequestValidationError):
    """FastAPI's own 422, with a header counting the errors."""
    response = await request_validation_exception_handler(request, exc)
    response.headers["X-Validation-Errors"] = str(len(exc.errors()))
    return response


# ---- routes: dependencies, models, response models ---------------------------------


@app.get("/health")
async def health(request: Request):
    return {"ok": True, "started_at": request.state.started_at}


@app.get("/ping")
@app.head("/ping")
async def ping():
    """A route for GET and HEAD: for HEAD the app still sends the body."""
    return {"pong": True}


@app.post("/items", status_code=201, response_model=ItemOut,
          dependencies=[Depends(verify_token)])
async def create_item(item: ItemIn, db: DB, rid: Audit, response: Response):
    item_id = db.new_id()
    db.items[item_id] = {"id": item_id, **item.model_dump(exclude_unset=True)}
    response.headers["Location"] = "/items/%d" % item_id
    return db.items[item_id]


@app.get("/items", response_model=Dict[str, object])
def list_items(result: Annotated[dict, Depends(listing)]):
    return {"page": result["page"], "count": len(result["items"]),
            "names": [i["name"] for i in result["items"]]}


@app.get("/items/{item_id}", response_model=ItemOut, response_model_exclude_unset=True)
async def read_item(item_id: Annotated[int, Path(ge=1, le=1000, title="The item's id")], db: DB):
    if item_id not in db.items:
        raise HTTPException(status_code=404, detail="Item %d not found" % item_id,
                            headers={"X-Error": "missing-item"})
    return db.items[item_id]


@app.delete("/items/{item_id}", status_code=204, dependencies=[Depends(verify_token)])
async def delete_item(item_id: Annotated[int, Path(ge=1)], db: DB) -> None:
    if db.items.pop(item_id, None) is None:
        raise HTTPException(status_code=404, detail="Item %d not found" % item_id)


@app.put("/items/{item_id}", response_model=ItemOut,
         dependencies=[Depends(verify_token)])
def replace_item(item_id: Annotated[int, Path(ge=1)], item: ItemIn, db: DB):
    if item_id not in db.items:
        raise HTTPException(status_code=404, detail="Item %d not found" % item_id)
    db.items[item_id] = {"id": item_id, **item.model_dump()}
    return db.items[item_id]


@app.post("/users", status_code=201, response_model=UserOut)
async def create_user(user: UserIn, db: DB):
    """The response model drops the password."""
    db.users[user.username] = user.model_dump()
    return user


@app.get("/colors/{color}")
async def color(color: Color, shade: Annotated[int, Query(ge=0, le=9)] = 5,
                user_agent: Annotated[Optional[str], Header()] = None):
    return {"color": color, "shade": shade, "user_agent": user_agent}


@app.get("/search")
async def search(tags: Annotated[List[str], Query(alias="tag", max_length=3)] = [],
                 exact: bool = False):
    return {"tags": tags, "exact": exact}


@app.get("/quota/{who}")
async def quota(who: Annotated[str, Path(min_length=1)], rid: Audit):
    if who == "greedy":
        raise QuotaExceeded(who, retry_after=30)
    return {"who": who, "rid": rid}


@app.get("/whoami")
async def whoami(request: Request):
    """What the app learns about where it is served: URLs built from the
    Host header, the scheme and client from trusted proxy headers."""
    return {"url": str(request.url), "base_url": str(request.base_url),
            "item_url": str(request.url_for("read_item", item_id=7)),
            "scheme": request.url.scheme, "client_host": request.client.host,
            "root_path": request.scope.get("root_path"), "http_version": request.scope[
                "http_version"]}


@app.get("/audit")
async def audit(db: DB, rid: Audit):
    """The audit log as this request sees it: its own "open", not yet its
    "close" (which comes after the response)."""
    return {"audit": list(db.audit)}


@app.post("/login")
async def login(username: Annotated[str, Form(min_length=3)],
                password: Annotated[str, Form()]):
    if password != "hunter22":
        raise HTTPException(status_code=401, detail="Bad credentials",
                            headers={"WWW-Authenticate": 'Basic realm="modern"'})
    response = RedirectResponse("/me", status_code=303)
    response.set_cookie("session", "s-" + username, httponly=True, samesite="lax", max_age=3600)
    response.set_cookie("flash", "welcome", path="/me")
    return response


@app.get("/me")
async def me(session: Annotated[Optional[str], Cookie()] = None,
             flash: Annotated[Optional[str], Cookie()] = None):
    if session is None:
        raise HTTPException(status_code=401, detail="Not logged in")
    return {"user": session[2:], "flash": flash}


# ---- background tasks --------------------------------------------------------------


def fulfil(db: FakeDB, order_id: int):
    time.sleep(0.05)
    db.orders[order_id]["status"] = "fulfilled"


async def notify(db: FakeDB, order_id: int):
    await asyncio.sleep(0.02)
    db.orders[order_id]["notified"] = True


@app.post("/orders", status_code=202)
async def create_order(background_tasks: BackgroundTasks, db: DB,
                       sku: Annotated[str, Query(min_length=1)]):
    order_id = db.new_id()
    db.orders[order_id] = {"id": order_id, "sku": sku, "status": "pending", "notified": False}
    background_tasks.add_task(fulfil, db, order_id)
    background_tasks.add_task(notify, db, order_id)
    return dict(db.orders[order_id])


@app.get("/orders/{order_id}")
async def read_order(order_id: int, db: DB):
    if order_id not in db.orders:
        raise HTTPException(status_code=404, detail="No such order")
    return db.orders[order_id]


# ---- response classes --------------------------------------------------------------


@app.get("/text", response_class=PlainTextResponse)
async def text(n: Annotated[int, Query(ge=0, le=100000)] = 10):
    return "modern " * n


@app.get("/page", response_class=HTMLResponse)
async def page(title: str = "Hello"):
    return "<html><head><title>%s</title></head><body><h1>%s</h1></body></html>" % (title, title)


@app.get("/big")
async def big(n: Annotated[int, Query(ge=0, le=100000)] = 2000):
    """A large JSON body: gzip-compressed for clients that accept it."""
    return {"rows": [{"i": i, "name": "row %d" % i, "even": i % 2 == 0} for i in range(n)]}


# ---- streaming and server-sent events -------------------------------------------------


@app.get("/stream/async")
async def stream_async(n: Annotated[int, Query(ge=0, le=1000)] = 5, size: int = 0):
    async def chunks():
        for i in range(n):
            await asyncio.sleep(0)
            yield ("async chunk %d\n" % i).encode() + b"." * size
    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/stream/sync")
def stream_sync(n: Annotated[int, Query(ge=0, le=1000)] = 3):
    def chunks():
        for i in range(n):
            yield "sync chunk %d\n" % i
    return StreamingResponse(chunks(), media_type="text/csv", headers={"X-Rows": str(n)})


@app.get("/events/manual")
async def events_manual(request: Request, db: DB, gate: str = "", n: int = 3):
    """Hand-written SSE: the first event, then (with ?gate=) nothing until
    /events/release/{gate} is requested, then the rest."""
    if gate:
        db.gates[gate] = asyncio.Event()

    async def events():
        yield "retry: 1000\n\n"
        yield 'id: 0\nevent: tick\ndata: {"i": 0}\n\n'
        if gate:
            try:
                await asyncio.wait_for(db.gates[gate].wait(), 5)
                yield "event: gate\ndata: released\n\n"
            except asyncio.TimeoutError:
                yield "event: gate\ndata: timeout\n\n"
        for i in range(1, n):
            yield 'id: %d\nevent: tick\ndata: {"i": %d}\n\n' % (i, i)
    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@app.get("/events/endless")
async def events_endless(rid: Audit, db: DB):
    """An event stream the client ends by going away; the audit dependency
    is torn down then."""
    async def events():
        i = 0
        try:
            while True:
                yield "data: %d\n\n" % i
                i += 1
                await asyncio.sleep(0.01)
        finally:
            db.audit.append("stream ended " + rid)
    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/events/release/{gate}")
async def events_release(gate: str, db: DB):
    event = db.gates.get(gate)
    if event is None:
        raise HTTPException(status_code=404, detail="No such gate")
    event.set()
    return {"released": gate}


@app.get("/events", response_class=EventSourceResponse)
async def events(n: Annotated[int, Query(ge=0, le=100)] = 3,
                 last_event_id: Annotated[Optional[int], Header()] = None) -> AsyncIterator[
                     ServerSentEvent]:
    """FastAPI's own SSE: yield events, FastAPI frames them."""
    start = 0 if last_event_id is None else last_event_id + 1
    for i in range(start, start + n):
        yield ServerSentEvent(data={"i": i, "square": i * i}, event="tick", id=str(i))
        await asyncio.sleep(0)
    yield ServerSentEvent(raw_data="bye", event="end")


@app.get("/items.jsonl")
async def items_jsonl(n: Annotated[int, Query(ge=0, le=100)] = 3) -> AsyncIterator[ItemOut]:
    """JSON Lines: a generator endpoint with no response class."""
    for i in range(n):
        yield ItemOut(id=i + 1, name="Item %d" % i, price=i + 0.5)


# ---- uploads -------------------------------------------------------------------------


async def describe(f: UploadFile) -> dict:
    data = await f.read()
    return {"filename": f.filename, "content_type": f.content_type, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


@app.post("/upload")
async def upload(file: Annotated[UploadFile, File(description="one file")],
                 note: Annotated[str, Form(max_length=50)],
                 public: Annotated[bool, Form()] = False):
    return {"file": await describe(file), "note": note, "public": public}


@app.post("/uploads")
async def uploads(files: Annotated[List[UploadFile], File()],
                  tags: Annotated[List[str], Form()] = []):
    return {"files": [await describe(f) for f in files], "tags": tags}


@app.post("/upload/raw")
async def upload_raw(data: Annotated[bytes, File()]):
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# ---- files ---------------------------------------------------------------------------


@app.get("/download/{name}")
@app.head("/download/{name}")
async def download(name: Annotated[str, Path(pattern=r"^[a-z0-9_-]+\.[a-z]+$")],
                   attachment: bool = False):
    path = os.path.join(FILES_DIR, name)
    if not os.path.isfile(path):
        raise HTTPException(status_code=404, detail="No such file")
    return FileResponse(path, filename=name if attachment else None,
                        headers={"Cache-Control": "public, max-age=60"})


app.mount("/static", StaticFiles(directory=FILES_DIR, check_dir=False), name="static")
# A site: index.html for a folder, 404.html for what is missing.
app.mount("/site", StaticFiles(directory=os.path.join(FILES_DIR, "site"), html=True,
                               check_dir=False), name="site")


# ---- WebSockets, as FastAPI's tutorial writes them ------------------------------------


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        await websocket.send_text(f"Message text was: {data}")


async def get_cookie_or_token(
    websocket: WebSocket,
    session: Annotated[str | None, Cookie()] = None,
    token: Annotated[str | None, Query()] = None,
):
    if session is None and token is None:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    return session or token


@app.websocket("/items/{item_id}/ws")
async def websocket_item(
    *,
    websocket: WebSocket,
    item_id: str,
    q: int | None = None,
    cookie_or_token: Annotated[str, Depends(get_cookie_or_token)],
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
        self.active_connections: list[WebSocket] = []

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


# ---- a sub-application, with its own docs, under /v2 ----------------------------------

v2 = FastAPI(title="modern v2")


@v2.get("/ping")
async def v2_ping(request: Request):
    return {"pong": True, "root_path": request.scope.get("root_path"),
            "path": request.scope["path"], "url": str(request.url),
            "self": str(request.url_for("v2_ping"))}


app.mount("/v2", v2)
