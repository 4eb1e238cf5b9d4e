"""examples/todo: a JSON CRUD API on a real PostgreSQL (db_harness.PgServer).

The answers are those of the FastAPI app the plugin's header describes:
201 with the created row, 404 {"detail":"Todo not found"}, 422 in pydantic
1's shape with every error at once, and every write visible in the table.
"""
import time

import httpx
import pytest

from db_harness import NO_DATABASE, serving_plugins
from evicorn_harness import time_scale

MISSING = "value_error.missing"


@pytest.fixture(scope="module")
def todo(pg):
    with serving_plugins(["todo"], {"DATABASE_URL": pg.url},
                         [r"plugin todo\.so: loaded"]) as srv:
        yield srv


@pytest.fixture
def client(todo, pg):
    pg.psql("TRUNCATE todos RESTART IDENTITY")
    with httpx.Client(base_url="http://127.0.0.1:%d" % todo.port,
                      timeout=10.0 * time_scale()) as c:
        yield c


def create(client, **fields):
    r = client.post("/todos", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def row(pg, todo_id):
    """The row as the table has it: [title, description, completed]."""
    rows = pg.psql("SELECT title, coalesce(description, '<null>'), completed FROM todos "
                   "WHERE id = %d" % todo_id)
    return rows[0] if rows else None


def error(loc, msg, type_, ctx=None):
    e = {"loc": loc, "msg": msg, "type": type_}
    if ctx is not None:
        e["ctx"] = ctx
    return e


# --------------------------------------------------------------------------
# create


def test_create_answers_201_with_the_row(client, pg):
    r = client.post("/todos", json={"title": "Buy milk", "description": "2 litres",
                                    "completed": True})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.content == b'{"id":1,"title":"Buy milk","description":"2 litres","completed":true}'
    assert row(pg, 1) == ["Buy milk", "2 litres", "t"]


def test_create_defaults_description_and_completed(client):
    assert create(client, title="x") == {"id": 1, "title": "x", "description": None,
                                         "completed": False}


def test_create_keeps_unicode_and_markup(client, pg):
    title = "フレームワーク <b>&\"'\\"
    t = create(client, title=title, description="é" * 3)
    assert client.get("/todos/%d" % t["id"]).json()["title"] == title
    assert row(pg, t["id"])[0] == title


def test_create_ignores_unknown_fields(client):
    assert create(client, title="a", priority=3)["title"] == "a"


def test_create_title_of_200_characters_counts_characters_not_bytes(client):
    assert create(client, title="é" * 200)["title"] == "é" * 200


def test_create_ids_increase(client):
    assert [create(client, title=str(i))["id"] for i in range(3)] == [1, 2, 3]


# --------------------------------------------------------------------------
# create: validation


@pytest.mark.parametrize("body,errors", [
    ({}, [error(["body", "title"], "field required", MISSING)]),
    ({"title": ""}, [error(["body", "title"], "ensure this value has at least 1 characters",
                           "value_error.any_str.min_length", {"limit_value": 1})]),
    ({"title": "x" * 201}, [error(["body", "title"], "ensure this value has at most 200 characters",
                                  "value_error.any_str.max_length", {"limit_value": 200})]),
    ({"title": 5}, [error(["body", "title"], "str type expected", "type_error.str")]),
    ({"title": None}, [error(["body", "title"], "none is not an allowed value",
                             "type_error.none.not_allowed")]),
    ({"title": "a", "completed": "yes"}, [error(["body", "completed"],
                                                "value is not a valid boolean",
                                                "value_error.strictbool")]),
    ({"title": "a", "description": 3}, [error(["body", "description"], "str type expected",
                                              "type_error.str")]),
    ({"title": 1, "description": [], "completed": None}, [
        error(["body", "title"], "str type expected", "type_error.str"),
        error(["body", "description"], "str type expected", "type_error.str"),
        error(["body", "completed"], "none is not an allowed value",
              "type_error.none.not_allowed")]),
])
def test_create_refuses_invalid_fields_with_422(client, pg, body, errors):
    r = client.post("/todos", json=body)
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": errors}
    assert pg.scalar("SELECT count(*) FROM todos") == "0"


def test_create_refuses_a_body_that_is_not_an_object(client):
    r = client.post("/todos", json=["title"])
    assert r.status_code == 422
    assert r.json() == {"detail": [error(["body"], "value is not a valid dict", "type_error.dict")]}


def test_create_refuses_an_empty_body(client):
    r = client.post("/todos", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"detail": [error(["body"], "field required", MISSING)]}


def test_create_refuses_malformed_json(client):
    r = client.post("/todos", content=b'{"title": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == 1 and detail[0]["type"] == "value_error.jsondecode", detail
    assert detail[0]["loc"] == ["body", 10], detail


def test_create_refuses_a_nul_character(client, pg):
    r = client.post("/todos", json={"title": "a\u0000b"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "title"]
    assert pg.scalar("SELECT count(*) FROM todos") == "0"


# --------------------------------------------------------------------------
# read


def test_get_answers_the_row(client):
    t = create(client, title="read me")
    r = client.get("/todos/%d" % t["id"])
    assert r.status_code == 200 and r.json() == t


def test_get_missing_answers_404(client):
    r = client.get("/todos/12345")
    assert r.status_code == 404
    assert r.content == b'{"detail":"Todo not found"}'


def test_get_non_integer_id_is_not_a_route(client):
    r = client.get("/todos/abc")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


def test_get_id_beyond_64_bits_answers_422(client):
    r = client.get("/todos/99999999999999999999")
    assert r.status_code == 422
    assert r.json() == {"detail": [error(["path", "id"], "value is not a valid integer",
                                         "type_error.integer")]}


# --------------------------------------------------------------------------
# list and pagination


def test_list_is_empty_at_first(client):
    r = client.get("/todos")
    assert r.status_code == 200 and r.content == b"[]"


def test_list_pages_in_id_order(client):
    made = [create(client, title="t%d" % i) for i in range(7)]
    assert client.get("/todos").json() == made
    assert client.get("/todos?limit=3").json() == made[:3]
    assert client.get("/todos?limit=3&offset=3").json() == made[3:6]
    assert client.get("/todos?limit=3&offset=6").json() == made[6:]
    assert client.get("/todos?offset=100").json() == []


def test_list_default_limit_is_100(client, pg):
    pg.psql("INSERT INTO todos (title) SELECT 'n' || g FROM generate_series(1, 120) g")
    assert len(client.get("/todos").json()) == 100
    assert len(client.get("/todos?offset=100").json()) == 20


@pytest.mark.parametrize("query,errors", [
    ("limit=0", [error(["query", "limit"], "ensure this value is greater than or equal to 1",
                       "value_error.number.not_ge", {"limit_value": 1})]),
    ("limit=101", [error(["query", "limit"], "ensure this value is less than or equal to 100",
                         "value_error.number.not_le", {"limit_value": 100})]),
    ("limit=abc", [error(["query", "limit"], "value is not a valid integer", "type_error.integer")]),
    ("limit=", [error(["query", "limit"], "value is not a valid integer", "type_error.integer")]),
    ("offset=-1", [error(["query", "offset"], "ensure this value is greater than or equal to 0",
                         "value_error.number.not_ge", {"limit_value": 0})]),
    ("offset=x&limit=0", [
        error(["query", "limit"], "ensure this value is greater than or equal to 1",
              "value_error.number.not_ge", {"limit_value": 1}),
        error(["query", "offset"], "value is not a valid integer", "type_error.integer")]),
])
def test_list_refuses_bad_pagination_with_422(client, query, errors):
    r = client.get("/todos?" + query)
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": errors}


# --------------------------------------------------------------------------
# update


def test_patch_changes_only_the_given_fields(client, pg):
    t = create(client, title="before", description="d")
    r = client.patch("/todos/%d" % t["id"], json={"completed": True})
    assert r.status_code == 200, r.text
    assert r.json() == dict(t, completed=True)
    r = client.patch("/todos/%d" % t["id"], json={"title": "after"})
    assert r.json() == dict(t, completed=True, title="after")
    assert row(pg, t["id"]) == ["after", "d", "t"]


def test_patch_with_null_description_clears_it(client, pg):
    t = create(client, title="x", description="d")
    r = client.patch("/todos/%d" % t["id"], json={"description": None})
    assert r.json()["description"] is None
    assert row(pg, t["id"])[1] == "<null>"


def test_patch_with_an_empty_object_changes_nothing(client):
    t = create(client, title="same")
    r = client.patch("/todos/%d" % t["id"], json={})
    assert r.status_code == 200 and r.json() == t


def test_patch_missing_answers_404(client):
    r = client.patch("/todos/777", json={"title": "x"})
    assert r.status_code == 404
    assert r.json() == {"detail": "Todo not found"}


@pytest.mark.parametrize("body,errors", [
    ({"title": None}, [error(["body", "title"], "none is not an allowed value",
                             "type_error.none.not_allowed")]),
    ({"title": ""}, [error(["body", "title"], "ensure this value has at least 1 characters",
                           "value_error.any_str.min_length", {"limit_value": 1})]),
    ({"completed": 1}, [error(["body", "completed"], "value is not a valid boolean",
                              "value_error.strictbool")]),
    ([], [error(["body"], "value is not a valid dict", "type_error.dict")]),
])
def test_patch_refuses_invalid_fields_with_422(client, pg, body, errors):
    t = create(client, title="keep")
    r = client.patch("/todos/%d" % t["id"], json=body)
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": errors}
    assert row(pg, t["id"]) == ["keep", "<null>", "f"]


# --------------------------------------------------------------------------
# delete


def test_delete_answers_204_and_the_row_is_gone(client, pg):
    t = create(client, title="bye")
    r = client.delete("/todos/%d" % t["id"])
    assert r.status_code == 204 and r.content == b""
    assert row(pg, t["id"]) is None
    assert client.get("/todos/%d" % t["id"]).status_code == 404
    r = client.delete("/todos/%d" % t["id"])
    assert r.status_code == 404 and r.json() == {"detail": "Todo not found"}


# --------------------------------------------------------------------------
# persistence


def test_rows_outlive_a_database_restart(client, pg):
    t = create(client, title="durable")
    pg.restart()
    deadline = time.monotonic() + 15 * time_scale()
    while True:
        r = client.get("/todos/%d" % t["id"])
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert r.json() == t


def test_rows_written_by_sql_are_served(client, pg):
    pg.psql("INSERT INTO todos (title, completed) VALUES ('from psql', true)")
    assert client.get("/todos").json() == [
        {"id": 1, "title": "from psql", "description": None, "completed": True}]


def test_without_a_database_the_plugin_is_refused_in_one_line():
    with serving_plugins(["todo"], NO_DATABASE, [r"todo\.so.*no database configured"]) as srv:
        with httpx.Client(base_url="http://127.0.0.1:%d" % srv.port, timeout=10.0) as c:
            assert c.get("/todos").status_code == 404
        lines = [line for line in srv.stderr.snapshot() if "todo" in line]
        assert len(lines) == 1, lines
