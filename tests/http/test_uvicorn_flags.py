"""uvicorn's flags with uvicorn's meaning: --env-file, WEB_CONCURRENCY,
FORWARDED_ALLOW_IPS, --use-colors, --loop, --interface, the max-requests
jitter, the worker health check and the head-size limit.

The apps run in the tests' venv (VIRTUAL_ENV: Debian's python3)."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from evicorn_harness import (Conn, evicorn_bin, get, pid_alive, time_scale, try_request,
                             wait_serving)

APP = '''\
import asyncio, json, os, sys

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    loop = asyncio.get_running_loop()
    body = json.dumps({
        "env": {k: os.environ.get(k) for k in ("FROM_FILE", "PRESET", "QUOTED", "EXPANDED")},
        "loop": type(loop).__module__ + "." + type(loop).__name__,
        "client": scope["client"],
        "scheme": scope["scheme"],
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
'''

LEGACY = '''\
class App:
    """ASGI 2: app(scope) returns the coroutine's owner."""
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi"]
'''

LOOPS = '''\
import asyncio

class MarkedLoop(asyncio.SelectorEventLoop):
    pass

def new_loop():
    return MarkedLoop()
'''

SLOW = '''\
import time

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        time.sleep(3)  # blocks the app's loop, not the worker
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''


@pytest.fixture
def app_dir(tmp_path):
    for name, text in (("main.py", APP), ("legacy.py", LEGACY), ("loops.py", LOOPS),
                       ("slow.py", SLOW)):
        (tmp_path / name).write_text(text)
    return tmp_path


def get_json(srv, path="/", extra=""):
    with srv.connect() as c:
        r = c.request(get(path, extra=extra))
    assert r.status == 200, r
    return json.loads(r.body)


def serve(make_server, app_dir, *args, app="main:app", **kw):
    srv = make_server(app, "--app-dir", app_dir, *args, ready_timeout=20.0, **kw)
    wait_serving(srv.port, timeout=20 * time_scale())
    return srv


def run_to_exit(*args, env=None, timeout=30.0):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([evicorn_bin(), "--host", "127.0.0.1", "--port", "0"] + [str(a) for a in args],
                       capture_output=True, text=True, env=e, timeout=timeout * time_scale(),
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


# ---- the environment ------------------------------------------------------------------


def test_env_file_reaches_the_app_and_set_variables_win(make_server, app_dir, monkeypatch):
    env_file = app_dir / "prod.env"
    env_file.write_text("# settings\nexport FROM_FILE=yes\nPRESET=from-file\n"
                        "QUOTED=\"two\\nlines\"\nEXPANDED=${FROM_FILE}-${MISSING:-dflt}\n"
                        "WEB_CONCURRENCY=2\n")
    monkeypatch.setenv("PRESET", "from-shell")
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    srv = serve(make_server, app_dir, "--env-file", env_file)
    assert srv.wait_for_log(r"Loading environment from '%s'" % re.escape(str(env_file)), 5.0)
    env = get_json(srv)["env"]
    assert env == {"FROM_FILE": "yes", "PRESET": "from-shell", "QUOTED": "two\nlines",
                   "EXPANDED": "yes-dflt"}
    # WEB_CONCURRENCY from the file sets --workers, as in uvicorn.
    assert srv.workers == 2, srv.output()


def test_a_missing_env_file_is_a_warning(make_server, app_dir):
    srv = serve(make_server, app_dir, "--env-file", app_dir / "nope.env")
    assert srv.wait_for_log(r"--env-file .*nope\.env: No such file or directory; no variables "
                            r"loaded", 5.0), srv.output()


def test_web_concurrency_is_the_default_of_workers(make_server, app_dir, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    srv = make_server()
    assert srv.workers == 3
    srv2 = make_server("--workers", "1")
    assert srv2.workers == 1
    monkeypatch.setenv("WEB_CONCURRENCY", "lots")
    code, _, err = run_to_exit()
    assert code == 2
    assert err.strip().splitlines() == [
        "evicorn: error: WEB_CONCURRENCY: invalid value 'lots' (expected an integer from 0 "
        "to 1024)"]


def test_forwarded_allow_ips_from_the_environment(make_server, app_dir, monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8")
    srv = serve(make_server, app_dir)
    # 127.0.0.1 is no longer trusted: its X-Forwarded-For is ignored.
    got = get_json(srv, extra="X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n")
    assert got["client"][0] == "127.0.0.1" and got["scheme"] == "http"


def test_the_client_behind_a_chain_of_proxies(make_server, app_dir):
    srv = serve(make_server, app_dir, "--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8")
    got = get_json(srv, extra="X-Forwarded-For: 198.51.100.7, 203.0.113.9:4711, 10.1.2.3\r\n"
                              "X-Forwarded-Proto: https\r\n")
    assert got["client"] == ["203.0.113.9", 4711]
    assert got["scheme"] == "https"
    assert srv.wait_for_access_log(r'^INFO:     203\.0\.113\.9:4711 - "GET / HTTP/1\.1" 200 OK$',
                                   3.0), srv.output()


# ---- logs -------------------------------------------------------------------------------


def test_use_colors_as_uvicorn(make_server):
    srv = make_server("--use-colors")
    with srv.connect() as c:
        assert c.request(get("/nothing")).status == 404
    assert srv.wait_for_log(r"^\x1b\[32mINFO\x1b\[0m:     evicorn running on", 1.0), srv.output()
    assert srv.wait_for_access_log(
        r'^\x1b\[32mINFO\x1b\[0m:     127\.0\.0\.1:\d+ - "\x1b\[1mGET /nothing HTTP/1\.1\x1b\[0m" '
        r'\x1b\[31m404 Not Found\x1b\[0m$', 3.0), srv.output()


def test_no_colors_when_not_a_terminal_or_asked(make_server):
    for args in ((), ("--no-use-colors",)):
        srv = make_server(*args)
        with srv.connect() as c:
            assert c.request(get("/x")).status == 404
        assert srv.wait_for_access_log(r'"GET /x HTTP/1\.1" 404 Not Found$', 3.0)
        assert "\x1b[" not in srv.output()


# ---- how the app is run -----------------------------------------------------------------


def test_loop_choices(make_server, app_dir):
    assert get_json(serve(make_server, app_dir, "--loop", "asyncio"))["loop"].startswith(
        "asyncio.")
    assert get_json(serve(make_server, app_dir, "--loop", "uvloop"))["loop"] == "uvloop.Loop"
    assert get_json(serve(make_server, app_dir))["loop"] == "uvloop.Loop"  # auto, installed
    assert get_json(serve(make_server, app_dir, "--loop", "loops:new_loop"))["loop"] == \
        "loops.MarkedLoop"


def test_a_loop_factory_that_cannot_be_imported_exits_1(app_dir):
    code, _, err = run_to_exit("main:app", "--app-dir", app_dir, "--loop", "loops:missing")
    assert code == 1, err
    assert "Error loading custom loop setup function" in err


def test_interface_choices(make_server, app_dir):
    for args, app, body in ((("--interface", "asgi2"), "legacy:App", b"asgi2"),
                            ((), "legacy:App", b"asgi2"),
                            (("--interface", "wsgi"), "legacy:wsgi", b"wsgi")):
        srv = serve(make_server, app_dir, *args, app=app)
        with srv.connect() as c:
            r = c.request(get("/"))
        assert (r.status, r.body) == (200, body), srv.output()


def test_a_wsgi_app_served_as_asgi_gets_a_hint(make_server, app_dir):
    srv = make_server("legacy:wsgi", "--app-dir", app_dir, ready_timeout=20.0)
    assert srv.wait_for_log(r"a WSGI app\? Serve it with --interface wsgi", 10.0), srv.output()


# ---- workers ----------------------------------------------------------------------------


def test_max_requests_jitter_stays_in_its_range(make_server):
    srv = make_server("--limit-max-requests", 3, "--limit-max-requests-jitter", 4)
    (first,) = srv.wait_workers(1)
    sent = 0
    while not srv.wait_for_log(r"Maximum request limit of \d+ exceeded", 0.05):
        assert sent < 8, srv.output()
        with srv.connect() as c:
            c.request(get("/x"))
        sent += 1
    limit = int(srv.wait_for_log(r"Maximum request limit of (\d+) exceeded", 1.0).group(1))
    assert 3 <= limit <= 7 and limit == sent, (limit, sent)


def test_a_stopped_worker_fails_the_health_check_and_is_replaced(make_server):
    srv = make_server("--workers", 2, "--timeout-worker-healthcheck", 1)
    a, b = srv.wait_workers(2)
    os.kill(a, signal.SIGSTOP)
    try:
        assert srv.wait_for_log(r"worker \d \(pid %d\) was killed: it did not answer the health "
                                r"check for 1 s" % a, 10), srv.output()
        srv.wait_workers(2, timeout=10 * time_scale(), exclude={a})
        assert pid_alive(b)
    finally:
        if pid_alive(a):
            os.kill(a, signal.SIGCONT)


def test_a_busy_app_is_not_a_failed_health_check(make_server, app_dir):
    # The app's loop blocks for 3 s; the worker still answers the check.
    srv = serve(make_server, app_dir, "--timeout-worker-healthcheck", 1, app="slow:app")
    (worker,) = srv.wait_workers(1)
    r = try_request(srv.port, get("/block"), timeout=10 * time_scale())
    assert r.status == 200 and r.body == b"ok"
    assert pid_alive(worker)
    assert "health check" not in srv.output()


# ---- the request head -------------------------------------------------------------------


def test_head_size_limit(make_server):
    srv = make_server("--h11-max-incomplete-event-size", 2048)
    with srv.connect() as c:
        r = c.request(get("/", extra="X-Big: %s\r\n" % ("a" * 2500)))
    assert r.status == 431
    with srv.connect() as c:  # the request line may take half
        r = c.request(get("/" + "b" * 1100))
    assert r.status == 414
    with srv.connect() as c:
        assert c.request(get("/", extra="X-Ok: %s\r\n" % ("a" * 1500))).status == 404
    big = make_server("--h11-max-incomplete-event-size", "64K")
    with big.connect() as c:  # over the default 16 KiB, under 64 KiB
        assert c.request(get("/", extra="X-Big: %s\r\n" % ("a" * 20000))).status == 404


# ---- --log-config ------------------------------------------------------------------------

LOGGING_APP = '''\
import logging

log = logging.getLogger("uvicorn.error")

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    log.info("the app says %s", scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''

YAML_CONFIG = '''\
version: 1
disable_existing_loggers: false
formatters:
  plain:
    format: "%(name)s|%(levelname)s|%(process)d|%(message)s"
  access:
    (): {access_formatter}
    fmt: "ACCESS %(client_addr)s|%(request_line)s|%(status_code)s"
    use_colors: false
  console:
    (): evicorn.logging.DefaultFormatter
    fmt: "%(levelprefix)s %(message)s"
handlers:
  console:
    class: logging.StreamHandler
    stream: ext://sys.stderr
    formatter: console
  server:
    class: logging.FileHandler
    filename: {dir}/server.log
    formatter: plain
  access:
    class: logging.FileHandler
    filename: {dir}/access.log
    formatter: access
loggers:
  uvicorn.error: {{handlers: [server, console], level: INFO, propagate: false}}
  uvicorn.access: {{handlers: [access], level: INFO, propagate: false}}
'''


def served_python_has(module):
    """Whether the interpreter that serves the app (the active venv's) has module."""
    python = os.path.join(os.environ.get("VIRTUAL_ENV", "/usr"), "bin", "python3")
    return subprocess.run([python, "-c", "import " + module], capture_output=True).returncode == 0


def wait_lines(path, regex, count, timeout=10.0):
    deadline = time.monotonic() + timeout * time_scale()
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [ln for ln in lines if re.search(regex, ln)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("formatter", ["evicorn.logging.AccessFormatter",
                                       "uvicorn.logging.AccessFormatter"])
def test_log_config_yaml_takes_the_servers_lines(make_server, tmp_path, formatter):
    if formatter.startswith("uvicorn") and not served_python_has("uvicorn.logging"):
        pytest.skip("uvicorn is not installed for the serving interpreter")
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    config = tmp_path / "log.yaml"
    config.write_text(YAML_CONFIG.format(dir=tmp_path, access_formatter=formatter))
    srv = make_server("logapp:app", "--app-dir", tmp_path, "--log-config", config,
                      "--workers", 2, ready_timeout=20.0)
    # The harness found the "running on" line through the console handler.
    wait_serving(srv.port, timeout=20 * time_scale())
    for i in range(4):
        with srv.connect() as c:
            assert c.request(get("/r%d" % i)).status == 200
    access = wait_lines(tmp_path / "access.log", r"^ACCESS .*GET /r", 4)
    assert sorted(re.sub(r":\d+\|", ":P|", ln) for ln in access) == [
        "ACCESS 127.0.0.1:P|GET /r%d HTTP/1.1|200 OK" % i for i in range(4)]
    server_log = tmp_path / "server.log"
    assert wait_lines(server_log, r"^uvicorn\.error\|INFO\|\d+\|the app says /r\d$", 4)
    assert wait_lines(server_log, r"^uvicorn\.error\|INFO\|%d\|evicorn running on" % srv.pid, 1)
    srv.stop()
    # Every worker's shutdown lines arrive, none is lost at exit.
    assert len(wait_lines(server_log, r"\|Application shutdown complete\.$", 2)) == 2
    assert wait_lines(server_log, r"\|%d\|stopped$" % srv.pid, 1)
    assert srv.stdout.snapshot() == []  # access records went to their file only


def test_log_config_json_and_ini(make_server, tmp_path):
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    json_config = tmp_path / "log.json"
    json_config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"f": {"format": "JSON %(levelname)s %(message)s"},
                       "c": {"format": "%(levelname)s:     %(message)s"}},
        "handlers": {"h": {"class": "logging.FileHandler", "filename": str(tmp_path / "j.log"),
                           "formatter": "f"},
                     "c": {"class": "logging.StreamHandler", "formatter": "c",
                           "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn.error": {"handlers": ["h", "c"], "level": "INFO"},
                    "uvicorn.access": {"handlers": ["h"], "level": "INFO"}}}))
    srv = make_server("logapp:app", "--app-dir", tmp_path, "--log-config", json_config,
                      ready_timeout=20.0)
    wait_serving(srv.port, timeout=20 * time_scale())
    assert wait_lines(tmp_path / "j.log", r'^JSON INFO 127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200$',
                      1)
    ini = tmp_path / "log.ini"
    ini.write_text("[loggers]\nkeys=root,error\n[handlers]\nkeys=h,c\n[formatters]\nkeys=f,c\n"
                   "[logger_root]\nhandlers=\n"
                   "[logger_error]\nqualname=uvicorn.error\nhandlers=h,c\nlevel=INFO\n"
                   "propagate=0\n"
                   "[handler_h]\nclass=FileHandler\nargs=('%s',)\nformatter=f\n"
                   "[handler_c]\nclass=StreamHandler\nargs=(sys.stderr,)\nformatter=c\n"
                   "[formatter_f]\nformat=INI %%(levelname)s %%(message)s\n"
                   "[formatter_c]\nformat=%%(levelname)s:     %%(message)s\n" % (tmp_path / "i.log"))
    srv2 = make_server("logapp:app", "--app-dir", tmp_path, "--log-config", ini,
                       "--no-access-log", ready_timeout=20.0)
    wait_serving(srv2.port, timeout=20 * time_scale())
    with srv2.connect() as c:
        c.request(get("/ini"))
    assert wait_lines(tmp_path / "i.log", r"^INI INFO the app says /ini$", 1)


def test_a_bad_log_config_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    code, _, err = run_to_exit("logapp:app", "--app-dir", tmp_path, "--log-config", bad)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("evicorn: error: --log-config %s: ValueError: " % bad), err
    code, _, err = run_to_exit("--log-config", bad)  # no APP: no Python to configure
    assert code == 2
    assert err.strip() == ("evicorn: error: --log-config configures Python's logging: it needs "
                           "an APP")


def test_the_apps_uvicorn_loggers_print_as_under_uvicorn(make_server, tmp_path):
    # Without --log-config, uvicorn's default logging config: an app that
    # logs through "uvicorn.error" is seen on stderr in the same format.
    (tmp_path / "logapp.py").write_text(LOGGING_APP)
    srv = serve(make_server, tmp_path, app="logapp:app")
    with srv.connect() as c:
        c.request(get("/hello"))
    assert srv.wait_for_log(r"^INFO:     the app says /hello$", 5.0), srv.output()


SLOW_STARTUP_APP = '''\
import asyncio, os

MARKS = os.environ["SLOW_APP_MARKS"]

def mark(what):
    with open(MARKS, "a") as f:
        f.write("%s %d\\n" % (what, os.getpid()))

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(1.0)
                mark("started")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                mark("stopped")
                await send({"type": "lifespan.shutdown.complete"})
                return
'''


def test_a_stop_during_startup_lets_every_worker_start_then_shut_down(make_server, tmp_path,
                                                                       monkeypatch):
    # As uvicorn: a SIGTERM while the app's startup runs is handled once it
    # is done, so the app's shutdown runs; the worker is not cut down.
    (tmp_path / "slowapp.py").write_text(SLOW_STARTUP_APP)
    marks = tmp_path / "marks"
    monkeypatch.setenv("SLOW_APP_MARKS", str(marks))
    srv = make_server("slowapp:app", "--app-dir", tmp_path, "--workers", 2, ready_timeout=20.0)
    srv.signal(signal.SIGTERM)  # the workers are still in their 1 s startup
    assert srv.wait_exit(20 * time_scale()) == 0, srv.output()
    lines = marks.read_text().split("\n")[:-1] if marks.exists() else []
    by_pid = {}
    for line in lines:
        what, pid = line.split()
        by_pid.setdefault(pid, []).append(what)
    assert sorted(by_pid.values()) == [["started", "stopped"]] * 2, (lines, srv.output())
