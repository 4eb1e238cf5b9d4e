"""--reload: an app's source files change, new workers serve the new code.

The server runs the app in the tests' venv (VIRTUAL_ENV). Each test writes
its app into its own folder and watches that folder; a change is a file
written the way editors write one (in place, or to a temporary name then
renamed over the original)."""
import os
import re
import threading
import time

import pytest

from evicorn_harness import Response, pid_alive, time_scale, try_request

APP = '''\
import {module}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": {module}.VERSION.encode()}})
'''


def write(path, text, rename=False):
    """Writes a file as an editor does: in place, or by renaming a new file
    over it (vim, most IDEs)."""
    if rename:
        tmp = os.path.join(os.path.dirname(path), ".%s.tmp" % os.path.basename(path))
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


def version(path, v, rename=False):
    write(path, 'VERSION = "%s"\n' % v, rename)


@pytest.fixture
def app_dir(tmp_path):
    """main.py serving the VERSION of version.py."""
    write(str(tmp_path / "main.py"), APP.format(module="version"))
    version(str(tmp_path / "version.py"), "v1")
    return tmp_path


def start(make_server, app_dir, *args, workers=1):
    srv = make_server("main:app", "--app-dir", app_dir, "--reload", "--reload-dir", app_dir,
                      "--workers", workers, *args, ready_timeout=20.0)
    assert srv.wait_for_log(r"Will watch for changes in these directories: \['%s'\]"
                            % re.escape(os.path.realpath(str(app_dir))), 5.0), srv.output()
    wait_body(srv, b"v1")
    return srv


def body(srv):
    r = try_request(srv.port, timeout=3.0)
    return r.body if isinstance(r, Response) and r.status == 200 else r


def wait_body(srv, expected, timeout=10.0):
    deadline = time.monotonic() + timeout * time_scale()
    last = None
    while time.monotonic() < deadline:
        last = body(srv)
        if last == expected:
            return
        time.sleep(0.05)
    raise AssertionError("expected %r, last %r\n%s" % (expected, last, srv.output()))


def count(srv, regex):
    return sum(1 for line in srv.stderr.snapshot() if re.search(regex, line))


def test_a_change_is_served_by_new_workers_and_the_old_ones_drain(make_server, app_dir):
    srv = start(make_server, app_dir, workers=2)
    old = set(srv.wait_workers(2))
    version(str(app_dir / "version.py"), "v2")
    wait_body(srv, b"v2")
    assert srv.wait_for_log(r"Detected changes in 'version\.py'\. Reloading\.\.\.", 5.0)
    new = set(srv.wait_workers(2, timeout=10.0 * time_scale(), exclude=old))
    assert not (new & old)
    deadline = time.monotonic() + 10 * time_scale()
    while any(pid_alive(p) for p in old) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in old), srv.output()
    # Every request after the switch gets the new code, on either worker.
    assert {body(srv) for _ in range(20)} == {b"v2"}
    # The master stayed; an editor's rename-over-the-file is a change too.
    version(str(app_dir / "version.py"), "v3", rename=True)
    wait_body(srv, b"v3")
    assert srv.proc.poll() is None


def test_no_request_fails_across_reloads_under_load(make_server, app_dir):
    srv = start(make_server, app_dir, workers=2)
    stop = threading.Event()
    lock = threading.Lock()
    seen, failures = [], []

    def client():
        while not stop.is_set():
            r = try_request(srv.port, timeout=5.0)
            with lock:
                if isinstance(r, Response) and r.status == 200:
                    seen.append(r.body)
                else:
                    failures.append(r)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # Each save replaces the file whole (rename), as most editors do: a
        # save in place leaves the file empty between its truncation and its
        # write, and a writer paused there for longer than the quiet period
        # (a loaded machine) has its empty file served, by any server. Saves
        # in place are the other tests' subject.
        for v in ("v2", "v3", "v4", "v5"):
            version(str(app_dir / "version.py"), v, rename=True)
            wait_body(srv, v.encode(), timeout=15.0)
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == [], "%d ok; failures: %r\n%s" % (len(seen), failures[:5], srv.output())
    assert len(seen) > 50
    assert set(seen) <= {b"v1", b"v2", b"v3", b"v4", b"v5"}, srv.output()
    # No reload without a save (a save while the previous reload's workers
    # still start may be taken up by the next one).
    assert 1 <= count(srv, r"Reloading\.\.\.") <= 4, srv.output()


def test_code_that_does_not_load_keeps_the_old_workers_then_a_fix_reloads(make_server, app_dir):
    srv = start(make_server, app_dir)
    (worker,) = srv.wait_workers(1)
    write(str(app_dir / "version.py"), 'VERSION = "v2"\nthis is not python(\n')
    assert srv.wait_for_log(r"reload: the new code does not start .*the old workers keep "
                            r"serving", 15.0), srv.output()
    assert srv.wait_for_log(r"SyntaxError", 1.0), srv.output()
    assert body(srv) == b"v1"
    assert pid_alive(worker)
    assert count(srv, r"reload: the new code does not start") == 1
    # An app whose import raises: the same.
    write(str(app_dir / "version.py"), 'raise RuntimeError("half-written")\n')
    deadline = time.monotonic() + 15 * time_scale()
    while count(srv, r"reload: the new code does not start") < 2:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.05)
    assert srv.wait_for_log(r"RuntimeError: half-written", 1.0), srv.output()
    assert body(srv) == b"v1"
    # Fixed: the next change is served.
    version(str(app_dir / "version.py"), "v3")
    wait_body(srv, b"v3", timeout=15.0)
    deadline = time.monotonic() + 10 * time_scale()
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(worker)
    assert srv.proc.poll() is None


def test_a_failed_lifespan_startup_keeps_the_old_workers(make_server, app_dir):
    srv = start(make_server, app_dir)
    broken = APP.format(module="version").replace(
        '{"type": "lifespan.startup.complete"}',
        '{"type": "lifespan.startup.failed", "message": "no database"}')
    write(str(app_dir / "main.py"), broken)
    assert srv.wait_for_log(r"reload: the new code does not start", 15.0), \
        srv.output()
    assert body(srv) == b"v1"
    write(str(app_dir / "main.py"), APP.format(module="version"))
    version(str(app_dir / "version.py"), "v2")
    wait_body(srv, b"v2", timeout=15.0)


def test_an_app_that_does_not_load_at_start_waits_for_a_fix(make_server, app_dir):
    # As uvicorn's reloader: the server stays up and serves once fixed.
    write(str(app_dir / "version.py"), "VERSION = \n")
    srv = make_server("main:app", "--app-dir", app_dir, "--reload", "--reload-dir", app_dir,
                      ready_timeout=20.0)
    assert srv.wait_for_log(r"could not start the app; waiting for the next change",
                            15.0), srv.output()
    assert srv.proc.poll() is None
    version(str(app_dir / "version.py"), "v2")
    wait_body(srv, b"v2", timeout=15.0)


def test_include_exclude_and_new_folders(make_server, app_dir):
    srv = start(make_server, app_dir, "--reload-include", "*.toml", "--reload-exclude",
                "scratch_*.py")
    # Not watched: other suffixes, excluded names, editor droppings, caches.
    for name in ("notes.txt", "scratch_one.py", ".hidden.py", "main.py.swp", "main.pyc"):
        write(str(app_dir / name), "x = 1\n")
    # Nor anything in a dot-folder.
    os.makedirs(str(app_dir / ".venv"))
    write(str(app_dir / ".venv" / "site.py"), "x = 1\n")
    time.sleep(1.5 * time_scale())
    assert count(srv, r"Reloading") == 0, srv.output()
    # An included suffix reloads.
    write(str(app_dir / "settings.toml"), "a = 1\n")
    assert srv.wait_for_log(r"Detected changes in 'settings\.toml'", 5.0), \
        srv.output()
    wait_n = count(srv, r"serves the new code")
    # A folder made after the start is watched, with the files in it.
    os.makedirs(str(app_dir / "pkg" / "sub"))
    time.sleep(0.3)
    write(str(app_dir / "pkg" / "sub" / "mod.py"), "x = 2\n")
    assert srv.wait_for_log(r"Detected changes in 'pkg/sub/mod\.py'", 5.0), \
        srv.output()
    deadline = time.monotonic() + 15 * time_scale()
    while count(srv, r"serves the new code") <= wait_n:
        assert time.monotonic() < deadline, srv.output()
        time.sleep(0.05)


def test_a_burst_of_saves_is_one_reload_after_the_delay(make_server, app_dir):
    srv = start(make_server, app_dir, "--reload-delay", "1.5")
    for i in range(6):
        version(str(app_dir / "version.py"), "v%d" % (i + 2))
        time.sleep(0.1)
    wait_body(srv, b"v7", timeout=15.0)
    time.sleep(2.0)
    assert count(srv, r"Reloading\.\.\.") == 1, srv.output()


def test_the_default_folder_is_the_current_one(make_server, app_dir):
    srv = make_server("main:app", "--reload", cwd=str(app_dir), ready_timeout=20.0)
    assert srv.wait_for_log(r"Will watch for changes in these directories: \['%s'\]"
                            % re.escape(os.path.realpath(str(app_dir))), 5.0), srv.output()
    wait_body(srv, b"v1")
    version(str(app_dir / "version.py"), "v2")
    wait_body(srv, b"v2")


def test_sighup_still_restarts_the_workers(make_server, app_dir):
    import signal
    srv = start(make_server, app_dir)
    (old,) = srv.wait_workers(1)
    srv.signal(signal.SIGHUP)
    (new,) = srv.wait_workers(1, timeout=10.0 * time_scale(), exclude={old})
    assert new != old
    wait_body(srv, b"v1")
