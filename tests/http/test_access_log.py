"""--access-log-format: templates of %(name)s fields, JSON lines, and values
a client chose escaped so that no request can write a line of its own."""
import json
import os
import re
import select
import socket
import subprocess
import threading
import time

from evicorn_harness import evicorn_bin, free_port, run_cli, stop_group, time_scale, wait_serving
from plugin_util import with_probe


def access_lines(srv, n, timeout=5.0):
    """The access log's lines once there are n of them (or at the timeout)."""
    deadline = time.monotonic() + timeout * time_scale()
    while True:
        lines = [line for line in srv.stdout.snapshot() if line]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def send(srv, raw):
    with srv.connect() as c:
        return c.request(raw)


def test_the_default_line_is_still_uvicorns(make_server):
    srv = make_server()
    send(srv, b"GET /plain?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    m = srv.wait_for_access_log(r'^INFO:     127\.0\.0\.1:\d+ - "GET /plain\?x=1 HTTP/1\.1" 404 '
                                r'Not Found$')
    assert m, srv.output()


def test_template_fields(make_server):
    fmt = ('%(h)s|%(r)s|%(s)s|%(b)s|%(B)s|%(m)s|%(U)s|%(q)s|%(H)s|%(f)s|%(a)s|%(R)s|%(p)s|'
           '%(L)s|%(D)s|%(T)s|%({x-trace}i)s|%(t)s|100%%')
    srv = with_probe(make_server("--access-log-format", fmt))
    r = send(srv, b"GET /probe/version?v=1 HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\n"
                  b"User-Agent: ua/1\r\nX-Trace: abc\r\n\r\n")
    assert r.status == 200
    (line,) = access_lines(srv, 1)
    f = line.split("|")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", f[0]), line
    assert f[1:13] == ["GET /probe/version?v=1 HTTP/1.1", "200", str(len(r.body)),
                       str(len(r.body)), "GET", "/probe/version", "v=1", "HTTP/1.1", "http://r/",
                       "ua/1", "/probe/version", f[12]], line
    worker = srv.worker_pids()[0]
    assert f[12] == str(worker)
    assert 0 <= float(f[13]) < 5 and abs(int(f[14]) - float(f[13]) * 1e6) <= 1, line
    assert f[15] == "0"
    assert f[16] == "abc"
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\]", f[17]), line
    assert f[18] == "100%"


def test_missing_values_are_a_dash(make_server):
    srv = make_server("--access-log-format", "%(q)s %(f)s %(a)s %(R)s %(b)s %({x-none}i)s")
    send(srv, b"GET /none HTTP/1.1\r\nHost: t\r\n\r\n")
    (line,) = access_lines(srv, 1)
    assert line == "- - - - 22 -", line


def test_json_lines(make_server):
    srv = with_probe(make_server("--access-log-format", "json"))
    send(srv, b"GET /probe/version?a=1&b=2 HTTP/1.1\r\nHost: t\r\nUser-Agent: ua/2\r\n\r\n")
    send(srv, b"GET /nothing HTTP/1.0\r\n\r\n")
    lines = access_lines(srv, 2)
    assert len(lines) == 2, lines
    a, b = (json.loads(line) for line in lines)
    assert set(a) == {"time", "client", "method", "path", "query", "protocol", "status", "bytes",
                      "duration", "route", "user_agent", "referer", "worker"}
    assert (a["method"], a["path"], a["query"], a["protocol"], a["status"], a["bytes"],
            a["route"], a["user_agent"], a["referer"]) == \
        ("GET", "/probe/version", "a=1&b=2", "HTTP/1.1", 200, 1, "/probe/version", "ua/2", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["time"]), a
    assert re.fullmatch(r"127\.0\.0\.1:\d+", a["client"]) and a["worker"] == srv.worker_pids()[0]
    assert isinstance(a["duration"], float) and 0 <= a["duration"] < 5
    assert (b["path"], b["query"], b["protocol"], b["status"], b["route"]) == \
        ("/nothing", None, "HTTP/1.0", 404, None)


# A client's attempt to forge fields or lines: quotes, backslashes, tabs and
# bytes outside ASCII in the target and headers (the parser already refuses
# CR, LF and other control characters there with a 400).
EVIL_TARGET = b'/x%0d%0a"\\y\xc3\xa9?q="inject'
EVIL_UA = b'ua" \xc3\xa9 \\ \t{"status":200}'
EVIL_REF = b'"\t\\n'


def evil_request():
    return (b"GET " + EVIL_TARGET + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: " + EVIL_UA
            + b"\r\nReferer: " + EVIL_REF + b"\r\n\r\n")


def test_json_escapes_what_a_client_sent(make_server):
    srv = make_server("--access-log-format", "json")
    send(srv, evil_request())
    send(srv, b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
    lines = access_lines(srv, 2)
    assert len(lines) == 2, lines
    a, b = (json.loads(line) for line in lines)
    assert all(0x20 <= ord(ch) < 0x7f for ch in lines[0]), lines[0]
    assert a["path"] + "?" + a["query"] == EVIL_TARGET.decode("latin-1")
    assert a["user_agent"] == EVIL_UA.decode("latin-1")
    assert a["referer"] == EVIL_REF.decode("latin-1")
    assert b["path"] == "/after"


def test_templates_escape_what_a_client_sent(make_server):
    srv = make_server("--access-log-format", '"%(r)s" "%(a)s" "%(f)s" %(s)s')
    send(srv, evil_request())
    lines = access_lines(srv, 1)
    assert len(lines) == 1, lines
    (line,) = lines
    assert all(0x20 <= ord(ch) < 0x7f for ch in line), line
    # Only the template's own quotes are left unescaped: 6 of them.
    assert line.count('"') == 6, line
    assert line.endswith(" 404"), line
    assert r'"GET /x%0d%0a\x22\x5cy\xc3\xa9?q=\x22inject HTTP/1.1"' in line, line
    assert r'"ua\x22 \xc3\xa9 \x5c \x09{\x22status\x22:200}"' in line, line
    assert r'"\x22\x09\x5cn"' in line, line


def test_an_unknown_field_is_a_usage_error(tmp_path):
    for fmt, why in (("%(zz)s", "unknown field %(zz)s"), ("%d", "'%' must start %(name)s")):
        res = run_cli("--access-log-format", fmt, "--plugins", str(tmp_path))
        assert res.returncode == 2, res
        assert why in res.stderr, res.stderr
        assert len(res.stderr.splitlines()) == 1, res.stderr


def test_no_access_log_wins_over_a_format(make_server):
    srv = make_server("--access-log-format", "json", "--no-access-log")
    send(srv, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert not srv.wait_for_access_log(r".", 0.3), srv.output()


def test_a_stdout_nobody_reads_never_stops_the_loop(tmp_path):
    # stdout is a pipe the test does not read: 64 KiB of lines fill it. The
    # server keeps answering (lines queue up to a bound, then are dropped
    # and counted) and says how many it dropped once stdout is read again.
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [evicorn_bin(), "--host", "127.0.0.1", "--port", str(port), "--plugins", str(plugins),
         "--workers", "1", "--access-log-format", "%(r)s %(s)s"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    err = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_serving(port, 10.0 * time_scale())
        target = b"/" + b"x" * 2000
        batch = b"".join(b"GET %s?%d HTTP/1.1\r\nHost: t\r\n\r\n" % (target, i)
                         for i in range(100))
        answered = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10 * time_scale()) as s:
            # 8,000 lines of 1 KiB (a value is cut there): over the queue's bound
            for _ in range(80):
                s.sendall(batch)
                got = b""
                while got.count(b"HTTP/1.1 404") < 100:
                    chunk = s.recv(1 << 20)
                    assert chunk, "connection closed after %d answers" % answered
                    got += chunk
                answered += 100
        assert answered == 8000
        # Reading stdout again: lines arrive, and the drop is reported.
        out = proc.stdout.read1(1 << 20)
        assert out.startswith(b"GET / HTTP/1.1 404\nGET /xxx"), out[:200]
        deadline = time.monotonic() + 10 * time_scale()
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.1)[0]:
                os.read(proc.stdout.fileno(), 1 << 20)
            if any(b"access log:" in line and b"dropped" in line for line in err):
                break
        assert any(re.search(rb"access log: \d+ line\(s\) dropped", line) for line in err), err
    finally:
        stop_group(proc)
