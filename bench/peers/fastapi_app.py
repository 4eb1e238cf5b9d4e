"""FastAPI peer for the evicorn benchmarks: the same routes as the hello
example plugin, and the weather plugin's GET /weather/{city} (`await
asyncio.sleep(1)`, then {"city":...,"temperature":"25°C"}). Run from this folder with Debian's interpreter:

    /usr/bin/python3 -m uvicorn fastapi_app:app --loop uvloop --http httptools \
        --no-access-log --workers 1
"""
import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

app = FastAPI()


@app.get("/")
async def root():
    return {"Hello": "World"}


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext():
    return "Hello, World!"


@app.get("/json", response_class=JSONResponse)
async def json():
    return {"message": "Hello, World!"}


@app.get("/weather/{city}")
async def weather(city: str):
    await asyncio.sleep(1)
    return {"city": city, "temperature": "25°C"}
