"""The FastAPI peer of bench/db/run.py: TechEmpower's four database tests on
asyncpg, as a FastAPI application is usually written for them.

    GET /db                    {"id": N, "randomNumber": N}, one random row
    GET /queries?queries=N     N rows, one query after another on one connection
    GET /fortunes              the fortune table, plus one row, sorted, as HTML (Jinja2)
    GET /updates?queries=N     N rows read one after another, then written with the
                               same single UPDATE statement examples/techempower uses

N is clamped as the benchmark's rules say (not an integer or < 1: 1; > 500:
500). The database comes from DATABASE_URL, the pool size from
EVICORN_PG_POOL_SIZE (default 8), the same variables the evicorn plugin
reads; the pool is opened at startup (lifespan) with all its connections, and
every statement is prepared by asyncpg on first use on each connection (its
statement cache), as asyncpg always does.

JSON goes out through orjson (FastAPI's ORJSONResponse), the fortunes page
through a Jinja2 template with autoescaping, as TechEmpower's FastAPI entry
does.
"""
import os
import random
from contextlib import asynccontextmanager
from operator import itemgetter

import asyncpg
import jinja2
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

try:
    from fastapi.responses import ORJSONResponse as JSONResponse
except ImportError:  # a FastAPI without it
    from fastapi.responses import JSONResponse

READ_ROW = "SELECT id, randomnumber FROM world WHERE id = $1"
READ_FORTUNES = "SELECT id, message FROM fortune"
WRITE_ROWS = ("UPDATE world SET randomnumber = v.r FROM "
              "(SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v "
              "WHERE world.id = v.id")
EXTRA_FORTUNE = (0, "Additional fortune added at request time.")

TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>"
    "{% endfor %}</table></body></html>")

pool = None


@asynccontextmanager
async def lifespan(app):
    global pool
    size = int(os.environ.get("EVICORN_PG_POOL_SIZE") or 8)
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=size,
                                     max_size=size)
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


def query_count(value):
    try:
        n = int(value)
    except (TypeError, ValueError):
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


@app.get("/db")
async def single_query():
    async with pool.acquire() as conn:
        row = await conn.fetchrow(READ_ROW, random.randint(1, 10000))
    return JSONResponse({"id": row[0], "randomNumber": row[1]})


@app.get("/queries")
async def multiple_queries(queries: str = "1"):
    ids = [random.randint(1, 10000) for _ in range(query_count(queries))]
    out = []
    async with pool.acquire() as conn:
        stmt = await conn.prepare(READ_ROW)
        for i in ids:
            row = await stmt.fetchrow(i)
            out.append({"id": row[0], "randomNumber": row[1]})
    return JSONResponse(out)


@app.get("/fortunes")
async def fortunes():
    async with pool.acquire() as conn:
        rows = await conn.fetch(READ_FORTUNES)
    rows = [tuple(r) for r in rows]
    rows.append(EXTRA_FORTUNE)
    rows.sort(key=itemgetter(1))
    return HTMLResponse(TEMPLATE.render(fortunes=rows))


@app.get("/updates")
async def updates(queries: str = "1"):
    ids = sorted(random.sample(range(1, 10001), query_count(queries)))
    out = []
    async with pool.acquire() as conn:
        stmt = await conn.prepare(READ_ROW)
        for i in ids:
            row = await stmt.fetchrow(i)
            number = random.randint(1, 10000)
            while number == row[1]:
                number = random.randint(1, 10000)
            out.append({"id": row[0], "randomNumber": number})
        await conn.execute(WRITE_ROWS, ids, [r["randomNumber"] for r in out])
    return JSONResponse(out)
