"""pytest fixtures for evicorn's black-box tests."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from evicorn_harness import Server  # noqa: E402


@pytest.fixture
def make_server():
    """Factory: make_server(*args, **kw) starts a Server; every server it
    started is stopped when the test ends, pass or fail."""
    started = []

    def factory(*args, **kw):
        srv = Server(*args, **kw)
        started.append(srv)
        return srv.start()

    yield factory
    errors = []
    for srv in reversed(started):
        try:
            srv.stop()
        except Exception as e:  # keep stopping the others
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def server(make_server):
    """A default server: one worker, no plugins."""
    return make_server()


# --------------------------------------------------------------------------
# Databases: real servers from Debian (db_harness.py), one per test module.


@pytest.fixture(scope="module")
def pg():
    """PostgreSQL with the examples' schema and data (scripts/db-load), on a
    free 127.0.0.1 port; pg.url, pg.psql(sql), pg.restart(). Stopped and
    removed when the module's tests are done, pass or fail."""
    from db_harness import PgServer

    with PgServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_server():
    """redis-server on a free 127.0.0.1 port (redis_server.url,
    redis_server.command(...)); stopped when the module's tests are done."""
    from db_harness import RedisServer

    with RedisServer() as server:
        yield server
