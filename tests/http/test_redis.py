"""The SDK's Redis client (evicorn/redis.h) against a real redis-server:
commands through the test plugin tests/plugins/redisprobe, outages and
reconnects, publish/subscribe renewed after a restart, and the example
chat's Redis-backed rooms (/ws/rooms/{room}) across workers and across
servers.

Redis is Debian's redis-server on a free loopback port (db_harness's
RedisServer), stopped and restarted by PID.
"""
import json
import os
import re
import shutil
import socket
import tempfile
import time

import pytest

import plugin_util
import ws_raw
from db_harness import RedisServer
from evicorn_harness import Server, time_scale
from ws_raw import OP_TEXT

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(HERE, "..", "..", "build", "plugins")
SCALE = time_scale()
T = 5.0 * SCALE  # the bound of one expected event

SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")
NO_REDIS = ["-u", "REDIS_URL", "-u", "REDIS_HOST", "-u", "REDIS_PORT", "-u", "REDIS_PASSWORD",
            "-u", "REDIS_DB"]

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(os.environ.get("EVICORN_TEST_PLUGINS") or os.path.join(
        HERE, "..", "..", "build", "test-plugins"), "redisprobe.so")),
    reason="redisprobe not built (no hiredis)")


# --------------------------------------------------------------------------
# servers


class Serving:
    """An evicorn Server over a private plugins folder holding the named
    plugins, with REDIS_URL (or no Redis at all) and extra variables in
    its environment; stop() also asserts the sanitizers stayed quiet."""

    def __init__(self, redis, *args, plugins=("redisprobe",), env=None):
        self.dir = tempfile.mkdtemp(prefix="evicorn-redis-plugins-")
        for name in plugins:
            src = (os.path.join(PLUGINS, "chat.so") if name == "chat"
                   else plugin_util.plugin_path(name))
            assert os.path.isfile(src), "%s is not built" % src
            shutil.copy(src, os.path.join(self.dir, name + ".so"))
        wrapper = ["env"] + NO_REDIS
        if redis is not None:
            wrapper.append("REDIS_URL=%s" % redis.url)
        for k, v in (env or {}).items():
            wrapper.append("%s=%s" % (k, v))
        self.srv = Server(*args, plugins=self.dir, wrapper=wrapper)
        self.srv.start()
        try:
            for name in plugins:
                self.wait_loaded(name)
        except BaseException:
            self.stop()
            raise

    def wait_loaded(self, name):
        assert self.srv.wait_for_log_lines(r"plugin %s\.so: loaded" % name,
                                           self.srv.workers or 1, 10.0) is not None, \
            self.srv.output()

    @property
    def port(self):
        return self.srv.port

    def get(self, path, timeout=T):
        with self.srv.connect(timeout=timeout) as c:
            return c.request(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode(),
                             timeout=timeout)

    def json(self, path, status=200):
        r = self.get(path)
        assert r.status == status, (path, r, self.srv.output())
        return json.loads(r.body)

    def log(self):
        return "\n".join(self.srv.stderr.snapshot())

    def stop(self):
        try:
            self.srv.stop()
            m = SANITIZER_RE.search(self.log())
            assert not m, self.srv.output()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def serving():
    """Factory: serving(redis, *args, **kw) starts a Serving; each is
    stopped (and checked) when the test ends."""
    started = []

    def factory(*args, **kw):
        s = Serving(*args, **kw)
        started.append(s)
        return s

    yield factory
    errors = []
    for s in reversed(started):
        try:
            s.stop()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def own_redis():
    """A redis-server of the test's own, for tests that stop it."""
    with RedisServer() as r:
        yield r


def cmd(*args):
    """/redisprobe/cmd with one ?a= per argument."""
    from urllib.parse import quote
    return "/redisprobe/cmd?" + "&".join("a=" + quote(str(a), safe="") for a in args)


def eventually(check, timeout=T, interval=0.05):
    """check() until it returns something true, within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


def fds_of(pid):
    return sorted(os.listdir("/proc/%d/fd" % pid))


# --------------------------------------------------------------------------
# commands


def test_commands_round_trip_with_their_replies(serving, redis_server):
    s = serving(redis_server)
    assert s.json(cmd("SET", "greeting", "hello world")) == {"reply": "OK"}
    assert s.json(cmd("GET", "greeting")) == {"reply": "hello world"}
    assert s.json("/redisprobe/incr/hits") == {"reply": 1}
    assert s.json("/redisprobe/incr/hits") == {"reply": 2}
    assert s.json(cmd("MGET", "greeting", "hits", "absent")) == {
        "reply": ["hello world", "2", None]}
    assert s.json(cmd("RPUSH", "list", "a", "b")) == {"reply": 2}
    assert s.json(cmd("LRANGE", "list", 0, -1)) == {"reply": ["a", "b"]}
    assert redis_server.command("GET", "greeting") == b"hello world"


def test_an_error_reply_is_500_naming_the_server(serving, redis_server):
    s = serving(redis_server)
    s.json(cmd("SET", "str", "x"))
    r = s.get(cmd("LPUSH", "str", "y"))
    assert r.status == 500
    detail = json.loads(r.body)["detail"]
    assert "WRONGTYPE" in detail and "127.0.0.1:%d" % redis_server.port in detail


def test_commands_that_would_take_over_the_connection_are_refused(serving, redis_server):
    s = serving(redis_server)
    for verb in ("SUBSCRIBE", "psubscribe", "MONITOR", "SELECT", "QUIT"):
        r = s.get(cmd(verb, "1"))
        assert r.status == 422, (verb, r)
        assert json.loads(r.body)["rc"] == -22
    assert s.json(cmd("PING")) == {"reply": "PONG"}


def test_a_plugin_level_command_runs_its_callback_without_a_request(serving, redis_server):
    s = serving(redis_server)
    assert s.get(cmd("PING").replace("/cmd", "/bg")).status == 202
    res = eventually(lambda: s.get("/redisprobe/bg_result").status == 200
                     and s.json("/redisprobe/bg_result"))
    assert res == {"status": 0, "reply": "PONG", "req_null": True}


def test_a_command_past_its_timeout_is_504_and_its_late_reply_dropped(serving, redis_server):
    s = serving(redis_server, env={"REDISPROBE_COMMAND_TIMEOUT": "0.5"})
    t0 = time.monotonic()
    r = s.get(cmd("BLPOP", "never-pushed", "1.5"))
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert "no reply within 0.5 s" in json.loads(r.body)["detail"]
    assert took < 1.4 * SCALE
    # The BLPOP's own answer comes later and is dropped; the connection
    # then goes on serving (commands queue behind a blocking one).
    assert s.json("/redisprobe/stats")["pending"] == 0
    time.sleep(max(0.0, 1.7 - took))
    assert s.json(cmd("PING"), 200) == {"reply": "PONG"}


def test_a_client_leaving_with_a_command_pending_is_cancelled_at_once(serving, redis_server):
    s = serving(redis_server)
    s.json(cmd("PING"))
    pid = s.srv.worker_pids()[0]
    time.sleep(0.3)  # the server has closed the connection of that request
    before = fds_of(pid)
    c = socket.create_connection(("127.0.0.1", s.port), timeout=T)
    c.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % cmd("BLPOP", "nothing", "1.5")).encode())
    time.sleep(0.2)
    t0 = time.monotonic()
    c.close()
    # The callback got EVICORN_ECANCELED right away, not when BLPOP ended.
    stats = eventually(lambda: (lambda st: st if st["canceled"] == 1 else None)(
        s.json("/redisprobe/stats")))
    assert stats and stats["canceled"] == 1
    assert time.monotonic() - t0 < 1.0 * SCALE
    # Its reply comes after 1.5 s and is dropped; then nothing is left.
    assert eventually(lambda: s.json("/redisprobe/stats")["pending"] == 0)
    time.sleep(1.5)
    assert s.json(cmd("PING")) == {"reply": "PONG"}
    assert eventually(lambda: fds_of(pid) == before), (before, fds_of(pid),
                                                       [os.readlink("/proc/%d/fd/%s" % (pid, f)) for f in fds_of(pid)])


# --------------------------------------------------------------------------
# publish / subscribe


def test_published_messages_reach_channel_and_pattern_subscribers(serving, redis_server):
    s = serving(redis_server)
    assert s.get("/redisprobe/subscribe/news").status == 200
    assert s.get("/redisprobe/psubscribe/sport:*").status == 200
    assert eventually(lambda: s.json("/redisprobe/messages/news")["active"]
                      and s.json("/redisprobe/messages/sport:*")["active"])
    assert s.json("/redisprobe/publish/news?data=first", 202)["queued"]
    redis_server.command("PUBLISH", "sport:tennis", "ace")
    news = eventually(lambda: s.json("/redisprobe/messages/news")["messages"])
    assert news == [{"channel": "news", "data": "first"}]
    sport = eventually(lambda: s.json("/redisprobe/messages/sport:*")["messages"])
    assert sport == [{"channel": "sport:tennis", "data": "ace"}]
    # Unsubscribed: later messages are not seen.
    assert s.get("/redisprobe/unsubscribe/news").status == 200
    assert eventually(lambda: redis_server.command("PUBSUB", "NUMSUB", "news")[1] == 0)


# --------------------------------------------------------------------------
# outages


def test_redis_restarted_under_use(serving, own_redis):
    s = serving(own_redis)
    server = "127.0.0.1:%d" % own_redis.port
    assert s.json(cmd("SET", "k", "before")) == {"reply": "OK"}
    s.get("/redisprobe/subscribe/events")
    assert eventually(lambda: s.json("/redisprobe/messages/events")["confirmations"] == 1)

    own_redis.stop()
    # Fail fast and clearly while it is down: 503 naming the server.
    statuses = []
    for _ in range(5):
        t0 = time.monotonic()
        r = s.get(cmd("GET", "k"))
        statuses.append(r.status)
        assert time.monotonic() - t0 < 1.0 * SCALE
        if r.status == 503:
            assert server in json.loads(r.body)["detail"], r
            assert r.header("retry-after") == "1"
        time.sleep(0.1)
    assert statuses[-1] == 503, statuses
    assert s.get("/redisprobe/publish/events?data=lost").status == 503
    assert s.json("/redisprobe/stats")["connected"] is False

    time.sleep(1.0)  # several reconnect attempts
    own_redis.start()
    assert eventually(lambda: s.get(cmd("PING")).status == 200), s.log()
    assert eventually(lambda: s.json("/redisprobe/stats")["subscriber_connected"])
    # Resubscribed on the new connection: a message published now arrives.
    assert eventually(lambda: s.json("/redisprobe/messages/events")["confirmations"] == 2)
    own_redis.command("PUBLISH", "events", "after restart")
    msgs = eventually(lambda: s.json("/redisprobe/messages/events")["messages"])
    assert msgs == [{"channel": "events", "data": "after restart"}]
    assert s.json("/redisprobe/stats")["reconnects"] >= 2

    # One warning when it went away, one line when it came back.
    assert eventually(lambda: "redis %s: connected again" % server in s.log()), s.log()
    log = s.log()
    down = [line for line in log.splitlines() if "redis %s" % server in line
            and line.startswith("WARNING")]
    up = [line for line in log.splitlines() if "redis %s: connected again" % server in line]
    assert len(down) == 1, log
    assert len(up) == 1, log


def test_url_password_is_percent_decoded(serving, own_redis):
    # RFC 3986 userinfo: '@', ':' and '/' in a password are percent-encoded.
    own_redis.command("CONFIG", "SET", "requirepass", "p@ss:w/rd%")
    url = "redis://:p%%40ss%%3Aw%%2Frd%%25@127.0.0.1:%d" % own_redis.port
    s = serving(None, env={"REDIS_URL": url})
    assert eventually(lambda: s.get(cmd("SET", "k", "v")).status == 200), s.log()
    assert s.json(cmd("GET", "k")) == {"reply": "v"}


def test_a_server_down_at_startup_is_waited_for(serving, own_redis):
    own_redis.stop()
    s = serving(own_redis)
    r = s.get(cmd("PING"))
    assert r.status == 503
    assert "cannot connect" in json.loads(r.body)["detail"]
    own_redis.start()
    assert eventually(lambda: s.get(cmd("PING")).status == 200), s.log()


def test_without_redis_the_probe_starts_and_answers_503(serving):
    s = serving(None)
    r = s.get(cmd("PING"))
    assert r.status == 503
    assert "redis: no server configured (REDIS_URL or REDIS_HOST)" in s.log()


# --------------------------------------------------------------------------
# the example chat's shared rooms


def ws_json(ws, timeout=T):
    ws.sock.settimeout(timeout)
    while True:
        op, data = ws.recv_message()
        if op == OP_TEXT:
            return json.loads(data)


def join(port, room):
    ws = ws_raw.connect(port, "/ws/rooms/" + room, timeout=T)
    hello = ws_json(ws)
    assert "you" in hello and hello["room"] == room, hello
    return ws, hello


def exchange(a, hello_a, b, hello_b):
    """a and b each send once; both get both messages, in one order."""
    a.send_text("hi from a")
    b.send_text("hi from b")
    want = {(hello_a["you"], "hi from a"), (hello_b["you"], "hi from b")}
    for ws in (a, b):
        got = {(m["from"], m["text"]) for m in (ws_json(ws), ws_json(ws))}
        assert got == want


def test_chat_room_reaches_members_on_other_workers(serving, redis_server):
    s = serving(redis_server, "--workers", "2", plugins=("chat",))
    members = []
    try:
        first = join(s.port, "lobby")
        members.append(first[0])
        # Which worker accepts is the kernel's choice: keep joining (a
        # moment apart, the other worker may still be starting) until one
        # lands on the other worker.
        deadline = time.monotonic() + 10 * SCALE
        while True:
            other = join(s.port, "lobby")
            members.append(other[0])
            if other[1]["worker"] != first[1]["worker"]:
                break
            if time.monotonic() > deadline:
                pytest.fail("every connection landed on one worker")
            time.sleep(0.05)
        exchange(first[0], first[1], other[0], other[1])
    finally:
        for ws in members:
            ws.sock.close()


def test_chat_room_reaches_members_on_another_server(serving, redis_server):
    s1 = serving(redis_server, plugins=("chat",))
    s2 = serving(redis_server, plugins=("chat",))
    a, hello_a = join(s1.port, "shared")
    b, hello_b = join(s2.port, "shared")
    try:
        exchange(a, hello_a, b, hello_b)
    finally:
        a.sock.close()
        b.sock.close()


def test_chat_rooms_without_redis_refuse_the_handshake_with_503(serving):
    s = serving(None, plugins=("chat",))
    with pytest.raises(ws_raw.HandshakeRefused) as e:
        ws_raw.connect(s.port, "/ws/rooms/lobby", timeout=T)
    assert e.value.status == 503
    # The rest of the chat is served as before.
    ws = ws_raw.connect(s.port, "/ws/chat/lobby", timeout=T)
    ws.send_text("hello")
    assert ws_json(ws)["text"] == "hello"
    ws.sock.close()
    lines = [line for line in s.log().splitlines() if "/ws/rooms/{room} answers 503" in line]
    assert len(lines) == 1, s.log()
