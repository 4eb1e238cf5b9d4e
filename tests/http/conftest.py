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
