"""The FastAPI app of bench/ws/run.py, served by uvicorn, Granian and
evicorn's ASGI bridge alike:

  GET /ws/echo         every text and binary message comes back as it was
  GET /ws/chat/{room}  each text message goes to every connection in the
                       room as {"from": <id>, "text": ...}, one send after
                       another (FastAPI's documented broadcast pattern, as
                       examples/chat does natively)
  GET /plaintext       "Hello, World!" (readiness check; idle HTTP)
"""
import itertools
import json

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse

app = FastAPI()

rooms = {}
ids = itertools.count(1)


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext():
    return PlainTextResponse("Hello, World!")


@app.websocket("/ws/echo")
async def echo(ws: WebSocket):
    await ws.accept()
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        text = msg.get("text")
        if text is not None:
            await ws.send_text(text)
        else:
            await ws.send_bytes(msg.get("bytes") or b"")


@app.websocket("/ws/chat/{room}")
async def chat(ws: WebSocket, room: str):
    await ws.accept()
    me = next(ids)
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        while True:
            text = await ws.receive_text()
            out = json.dumps({"from": me, "text": text})
            for member in list(members):
                try:
                    await member.send_text(out)
                except (WebSocketDisconnect, RuntimeError):
                    members.discard(member)
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(ws)
        if not members:
            rooms.pop(room, None)
