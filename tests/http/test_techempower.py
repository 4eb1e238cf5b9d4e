"""examples/techempower: the TechEmpower benchmark's database tests against
a real PostgreSQL (db_harness.PgServer, loaded by scripts/db-load).

Each test is one rule of the benchmark's verifier (TechEmpower's
toolset/test_types): the shapes of the answers, the clamping of the
queries parameter, the headers, the fortunes page to the byte, updates
that persist. hello.so is served beside it for /json and /plaintext.
"""
import concurrent.futures
import json
import os
import re
import time

import httpx
import pytest

import plugin_util
from db_harness import NO_DATABASE, PLUGINS, serving_plugins
from evicorn_harness import KeepAliveLoad, get, time_scale

JSON_CT = re.compile(r"^application/json(; ?charset=(UTF|utf)-8)?$")
PLAIN_CT = re.compile(r"^text/plain(; ?charset=(UTF|utf)-8)?$")

# The page for the 12 rows of scripts/sql/techempower.sql and the one
# added at request time, sorted by message, escaped.
FORTUNES_PAGE = (
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "<tr><td>11</td><td>&lt;script&gt;alert(&quot;This should not be displayed in a browser "
    "alert box.&quot;);&lt;/script&gt;</td></tr>"
    "<tr><td>4</td><td>A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1</td></tr>"
    "<tr><td>5</td><td>A computer program does what you tell it to do, not what you want it to "
    "do.</td></tr>"
    "<tr><td>2</td><td>A computer scientist is someone who fixes things that aren&#39;t "
    "broken.</td></tr>"
    "<tr><td>8</td><td>A list is only as strong as its weakest link. \u2014 Donald Knuth</td></tr>"
    "<tr><td>0</td><td>Additional fortune added at request time.</td></tr>"
    "<tr><td>3</td><td>After enough decimal places, nobody gives a damn.</td></tr>"
    "<tr><td>7</td><td>Any program that runs right is obsolete.</td></tr>"
    "<tr><td>10</td><td>Computers make very fast, very accurate mistakes.</td></tr>"
    "<tr><td>6</td><td>Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom "
    "Christaensen</td></tr>"
    "<tr><td>9</td><td>Feature: A bug with seniority.</td></tr>"
    "<tr><td>1</td><td>fortune: No such file or directory</td></tr>"
    "<tr><td>12</td><td>\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1"
    "\u30de\u30fc\u30af</td></tr>"
    "</table></body></html>").encode("utf-8")

# The verifier's cases for the count parameter, and what each must give.
COUNT_CASES = [("2", 2), ("0", 1), ("-1", 1), ("foo", 1), ("abc", 1), ("", 1), ("1", 1),
               ("20", 20), ("500", 500), ("501", 500), ("1000", 500), ("1.5", 1),
               ("99999999999999999999", 500)]


@pytest.fixture(scope="module")
def te(pg):
    with serving_plugins(["techempower", "hello"], {"DATABASE_URL": pg.url},
                         [r"plugin techempower\.so: loaded", r"plugin hello\.so: loaded"]) as srv:
        yield srv


@pytest.fixture
def client(te):
    with httpx.Client(base_url="http://127.0.0.1:%d" % te.port, timeout=10.0 * time_scale()) as c:
        yield c


def world(pg, ids):
    """{id: randomnumber} from the database."""
    rows = pg.psql("SELECT id, randomnumber FROM world WHERE id IN (%s)"
                   % ",".join(str(int(i)) for i in ids))
    return {int(i): int(n) for i, n in rows}


def assert_world_row(row):
    assert isinstance(row, dict) and set(row) == {"id", "randomNumber"}, row
    assert type(row["id"]) is int and type(row["randomNumber"]) is int, row
    assert 1 <= row["id"] <= 10000 and 1 <= row["randomNumber"] <= 10000, row


# --------------------------------------------------------------------------
# /db


def test_db_answers_one_row_of_world_as_an_object(client, pg):
    r = client.get("/db")
    assert r.status_code == 200, r.text
    assert JSON_CT.match(r.headers["content-type"]), r.headers
    row = r.json()
    assert_world_row(row)
    assert world(pg, [row["id"]]) == {row["id"]: row["randomNumber"]}


def test_db_body_is_compact_json_with_the_benchmarks_key_names(client):
    body = client.get("/db").content
    assert re.fullmatch(rb'\{"id":\d+,"randomNumber":\d+\}', body), body


def test_db_picks_rows_at_random(client):
    ids = {client.get("/db").json()["id"] for _ in range(20)}
    assert len(ids) > 10, ids


# --------------------------------------------------------------------------
# headers every test type requires


@pytest.mark.parametrize("path", ["/db", "/queries?queries=2", "/fortunes",
                                  "/updates?queries=2", "/cached-queries?count=2", "/json",
                                  "/plaintext"])
def test_every_answer_has_server_date_type_and_length(te, path):
    with te.connect() as conn:
        resp = conn.request(get(path))
    assert resp.status == 200, resp
    assert resp.header("server"), resp
    assert resp.header("date"), resp
    assert resp.header("content-type"), resp
    assert resp.header("content-length") == str(len(resp.body)), resp


def test_date_header_is_current(client):
    first = client.get("/db").headers["date"]
    time.sleep(1.1)
    assert client.get("/db").headers["date"] != first


def test_json_and_plaintext_from_hello_meet_the_rules(client):
    r = client.get("/json")
    assert JSON_CT.match(r.headers["content-type"]), r.headers
    assert r.json() == {"message": "Hello, World!"}
    r = client.get("/plaintext")
    assert PLAIN_CT.match(r.headers["content-type"]), r.headers
    assert r.content == b"Hello, World!"


# --------------------------------------------------------------------------
# /queries


@pytest.mark.parametrize("value,expected", COUNT_CASES)
def test_queries_clamps_the_count(client, value, expected):
    r = client.get("/queries?queries=" + value)
    assert r.status_code == 200, r.text
    assert JSON_CT.match(r.headers["content-type"]), r.headers
    rows = r.json()
    assert isinstance(rows, list) and len(rows) == expected
    for row in rows:
        assert_world_row(row)


def test_queries_without_the_parameter_answers_one_row_in_an_array(client):
    rows = client.get("/queries").json()
    assert isinstance(rows, list) and len(rows) == 1
    assert_world_row(rows[0])


def test_queries_rows_are_the_databases(client, pg):
    rows = client.get("/queries?queries=20").json()
    assert len(rows) == 20
    db = world(pg, [row["id"] for row in rows])
    for row in rows:
        assert db[row["id"]] == row["randomNumber"], row


# --------------------------------------------------------------------------
# /fortunes


def test_fortunes_page_is_exact(client):
    r = client.get("/fortunes")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == FORTUNES_PAGE


def test_fortunes_reads_the_table_on_every_request(client, pg):
    pg.psql("INSERT INTO fortune (id, message) VALUES (13, 'zebras & \"<quotes>''')")
    try:
        body = client.get("/fortunes").content
    finally:
        pg.psql("DELETE FROM fortune WHERE id = 13")
    assert body.endswith(b"<tr><td>13</td><td>zebras &amp; &quot;&lt;quotes&gt;&#39;</td></tr>"
                         b"<tr><td>12</td><td>" + "フレームワークのベンチマーク".encode() +
                         b"</td></tr></table></body></html>"), body
    assert client.get("/fortunes").content == FORTUNES_PAGE


def test_fortunes_added_row_is_not_persisted(client, pg):
    client.get("/fortunes")
    assert pg.scalar("SELECT count(*) FROM fortune") == "12"


# --------------------------------------------------------------------------
# /cached-queries (before /updates: the cache is filled on first use and
# then compared with the table)


@pytest.mark.parametrize("value,expected", COUNT_CASES)
def test_cached_queries_clamps_the_count(client, value, expected):
    r = client.get("/cached-queries?count=" + value)
    assert r.status_code == 200, r.text
    assert JSON_CT.match(r.headers["content-type"]), r.headers
    rows = r.json()
    assert isinstance(rows, list) and len(rows) == expected
    for row in rows:
        assert_world_row(row)


def test_cached_queries_without_the_parameter_answers_one_row(client):
    rows = client.get("/cached-queries").json()
    assert isinstance(rows, list) and len(rows) == 1


def test_cached_queries_rows_are_the_tables(client, pg):
    rows = client.get("/cached-queries?count=100").json()
    db = world(pg, [row["id"] for row in rows])
    for row in rows:
        assert db[row["id"]] == row["randomNumber"], row


# --------------------------------------------------------------------------
# /updates


@pytest.mark.parametrize("value,expected", COUNT_CASES)
def test_updates_clamps_the_count(client, value, expected):
    r = client.get("/updates?queries=" + value)
    assert r.status_code == 200, r.text
    assert JSON_CT.match(r.headers["content-type"]), r.headers
    rows = r.json()
    assert isinstance(rows, list) and len(rows) == expected
    for row in rows:
        assert_world_row(row)


def test_updates_persist_new_numbers(client, pg):
    before = dict((int(i), int(n)) for i, n in pg.psql("SELECT id, randomnumber FROM world"))
    rows = client.get("/updates?queries=50").json()
    assert len(rows) == 50
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == 50, "an id twice in one request: %r" % ids
    db = world(pg, ids)
    for row in rows:
        assert db[row["id"]] == row["randomNumber"], row
        assert before[row["id"]] != row["randomNumber"], row
    after = dict((int(i), int(n)) for i, n in pg.psql("SELECT id, randomnumber FROM world"))
    changed = {i for i in after if after[i] != before[i]}
    assert changed == set(ids)


def test_concurrent_updates_all_succeed(te, pg):
    url = "http://127.0.0.1:%d/updates?queries=20" % te.port

    def one(_):
        with httpx.Client(timeout=30.0 * time_scale()) as c:
            r = c.get(url)
            return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(48)))
    assert [s for s, _ in results] == [200] * 48, results
    # Each row ends with the number of one of the requests that wrote it.
    written = {}
    for _, rows in results:
        for row in rows:
            written.setdefault(row["id"], set()).add(row["randomNumber"])
    db = world(pg, list(written))
    for i, numbers in written.items():
        assert db[i] in numbers, (i, db[i], numbers)


# --------------------------------------------------------------------------
# what the database executes (pg_stat_statements, as the verifier counts)

SELECT_ONE = "SELECT id, randomnumber FROM world WHERE id = $1"
UPDATE_MANY = "UPDATE world SET randomnumber%"


def calls(pg, pattern):
    return sum(pg.statement_calls(pattern).values())


def test_queries_executes_one_select_per_row(client, pg):
    pg.reset_statements()
    for _ in range(3):
        assert len(client.get("/queries?queries=20").json()) == 20
    assert calls(pg, SELECT_ONE) == 60


def test_updates_executes_one_select_per_row_and_one_update(client, pg):
    pg.reset_statements()
    for _ in range(3):
        assert len(client.get("/updates?queries=20").json()) == 20
    assert calls(pg, SELECT_ONE) == 60
    assert calls(pg, UPDATE_MANY) == 3


def test_fortunes_executes_one_select(client, pg):
    pg.reset_statements()
    for _ in range(4):
        client.get("/fortunes")
    assert calls(pg, "SELECT id, message FROM fortune") == 4


def test_pipelined_requests_are_answered_in_order(te):
    paths = ["/queries?queries=%d" % n for n in (3, 1, 7, 2, 5)] * 2
    with te.connect() as conn:
        conn.send(b"".join(get(p) for p in paths))
        sizes = [len(json.loads(conn.read_response().body)) for _ in paths]
    assert sizes == [3, 1, 7, 2, 5] * 2


# --------------------------------------------------------------------------
# the database going away and coming back


def test_database_restart_is_survived(client, pg):
    assert client.get("/db").status_code == 200
    pg.stop()
    try:
        r = client.get("/db")
        assert r.status_code in (500, 503, 504), r.text
        assert "detail" in r.json()
    finally:
        pg.start()
    deadline = time.monotonic() + 15 * time_scale()
    while True:
        r = client.get("/db")
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert client.get("/fortunes").content == FORTUNES_PAGE


def test_one_sync_mode_answers_the_same_rows_in_one_transaction(pg):
    """TECHEMPOWER_ONE_SYNC=1 (a measurement mode, outside the rules):
    /queries answers the same shape, its reads ending with one sync; a
    warning says so at startup."""
    with serving_plugins(["techempower"], {"DATABASE_URL": pg.url, "TECHEMPOWER_ONE_SYNC": "1"},
                         [r"plugin techempower\.so: loaded"]) as srv:
        assert srv.wait_for_log(r"TECHEMPOWER_ONE_SYNC=1: /queries sends one sync", 5.0)
        with httpx.Client(base_url="http://127.0.0.1:%d" % srv.port, timeout=10.0) as c:
            rows = c.get("/queries?queries=20").json()
        assert len(rows) == 20
        for row in rows:
            assert_world_row(row)
        assert world(pg, [r["id"] for r in rows]) == {r["id"]: r["randomNumber"] for r in rows}


# --------------------------------------------------------------------------
# hot reload under database load


def evicorn_sessions(pg):
    # This server's sessions only: it names them with libpq's PGAPPNAME.
    return int(pg.scalar("SELECT count(*) FROM pg_stat_activity "
                         "WHERE application_name = 'te-reload'"))


def wait_sessions(pg, n, timeout):
    deadline = time.monotonic() + timeout * time_scale()
    while evicorn_sessions(pg) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    return evicorn_sessions(pg)


def test_hot_reload_under_database_load_fails_nothing(pg):
    """A new techempower.so replaces the old one while clients hammer the
    database routes: no request fails, and once the old generation drains
    its pool's connections are closed (only the new pool's remain)."""
    with serving_plugins(["techempower"], {"DATABASE_URL": pg.url, "EVICORN_PG_POOL_SIZE": "3",
                                            "PGAPPNAME": "te-reload"},
                         [r"plugin techempower\.so: loaded"]) as srv:
        assert wait_sessions(pg, 3, 5.0) == 3
        loads = [KeepAliveLoad(srv, get(path), conns=2, seconds=30, scale=time_scale())
                 for path in ("/db", "/queries?queries=5", "/fortunes", "/updates?queries=3")]
        for load in loads:
            load.__enter__()
        try:
            time.sleep(0.5)
            mark = len(srv.stderr.snapshot())
            # The same build again: a new file is a new generation.
            plugin_util.deploy(srv, os.path.join(PLUGINS, "techempower.so"), "techempower.so")
            assert srv.wait_for_log(r"plugin techempower\.so: replaced", 10.0, start=mark), \
                srv.output()
            assert srv.wait_for_log(r"plugin techempower\.so: generation \d+ unloaded", 10.0,
                                    start=mark), srv.output()
            time.sleep(0.5)
        finally:
            for load in loads:
                load.__exit__(None, None, None)
        for load in loads:
            assert not load.failures, load.failures[:3]
            assert len(load.successes) > 10
        assert wait_sessions(pg, 3, 5.0) == 3


# --------------------------------------------------------------------------
# without a database


def test_without_a_database_the_plugin_is_refused_in_one_line():
    with serving_plugins(["techempower", "hello"], NO_DATABASE,
                         [r"plugin hello\.so: loaded",
                          r"techempower\.so.*no database configured"]) as srv:
        with httpx.Client(base_url="http://127.0.0.1:%d" % srv.port, timeout=10.0) as c:
            assert c.get("/json").json() == {"message": "Hello, World!"}
            assert c.get("/db").status_code == 404
        lines = [line for line in srv.stderr.snapshot() if "techempower" in line]
        assert len(lines) == 1, lines
        assert "DATABASE_URL" in lines[0], lines
