"""Outbound HTTP from plugins (ABI 1.4): HTTPS verified by default, HTTP/2
by ALPN, a per-worker cache of keep-alive connections, opt-in redirects
(RFC 9110 15.4) and decompression, proxies from the environment, streamed
responses with backpressure, streamed request bodies, cancellation when the
client leaves, and failures reported as the ABI's codes with one line of
reason.

The upstreams are real (upstreams.py): Debian's nginx with a test CA, an
HTTPS listener offering HTTP/2 and one with a certificate for another
name; and Tricky, a raw-socket server for slow, truncated, reset,
redirecting, echoing, body-counting and hanging answers. The plugin is
fetchprobe (tests/plugins/fetchprobe), whose routes take the upstream URL
and the options from their query string and report what the host said.
"""
import base64
import hashlib
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.parse

import pytest

import plugin_util
from evicorn_harness import (ConnClosed, KeepAliveLoad, Server, evicorn_bin, free_port, get,
                             time_scale)
from upstreams import Nginx, Tricky, gunzip

SCALE = time_scale()
T = 10.0 * SCALE
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")

EPERM, EIO, EINVAL, EMSGSIZE = -1, -5, -22, -90
ETIMEDOUT, ECONNREFUSED, ECANCELED = -110, -111, -125

MiB = 1024 * 1024

# Variables that would send the server's fetches elsewhere or change
# which certificates it trusts: unset unless a test sets them.
CLEAN_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
             "ALL_PROXY", "no_proxy", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
             "CURL_CA_BUNDLE")


def asan_build():
    """Whether the server under test is built with AddressSanitizer (its
    memory use then says nothing about the server's own)."""
    with open(evicorn_bin(), "rb") as f:
        return b"__asan_init" in f.read()


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def ng():
    with Nginx() as n:
        yield n


@pytest.fixture(scope="module")
def tk():
    with Tricky() as t:
        yield t


def deploy(srv, variant, name="fetchprobe.so"):
    start = len(srv.stderr.snapshot())
    plugin_util.deploy(srv, plugin_util.plugin_path(variant), name)
    assert srv.wait_for_log(r"plugin %s: (loaded|replaced)" % re.escape(name), T,
                            start=start), srv.output()


def start_server(*args, env=None):
    """evicorn with fetchprobe, its environment cleaned of proxies and
    certificate settings, then given env."""
    wrapper = ["env"]
    for k in CLEAN_ENV:
        wrapper += ["-u", k]
    for k, v in (env or {}).items():
        wrapper.append("%s=%s" % (k, v))
    s = Server("--no-access-log", "--limit-body", "256M", *args, wrapper=wrapper).start()
    try:
        deploy(s, "fetchprobe")
    except BaseException:
        s.stop()
        raise
    return s


def check_sanitizers(s):
    m = SANITIZER_RE.search("\n".join(s.stderr.snapshot()))
    assert not m, s.output()


@pytest.fixture
def server_factory():
    made = []

    def factory(*args, env=None):
        s = start_server(*args, env=env)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.stop()
    for s in made:
        check_sanitizers(s)


@pytest.fixture
def srv(server_factory):
    return server_factory()


# --------------------------------------------------------------------------
# Client helpers


def qs(**params):
    items = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            items += [(k, x) for x in v]
        elif isinstance(v, bool):
            items.append((k, "1" if v else "0"))
        else:
            items.append((k, str(v)))
    return urllib.parse.urlencode(items)


def call(srv, path, client_timeout=None, **params):
    """GET path?params on a fresh connection; the Response. (timeout=S in
    params is the fetch's own.)"""
    with srv.connect(timeout=client_timeout or T) as c:
        return c.request(get("%s?%s" % (path, qs(**params))), timeout=client_timeout or T)


def fetch(srv, url, client_timeout=None, **params):
    """/fetch/get: the host's answer as a dict (with the body decoded)."""
    r = call(srv, "/fetch/get", client_timeout=client_timeout, url=url, **params)
    assert r.status == 200, r
    doc = json.loads(r.body)
    if doc.get("body_b64") is not None:
        doc["body"] = base64.b64decode(doc["body_b64"])
    doc["hdrs"] = {}
    for n, v in doc.get("headers") or []:
        doc["hdrs"].setdefault(n, v)
    return doc


def ok(doc):
    assert doc.get("rc") == 0 and doc["error"] == 0, doc
    return doc


def stats(srv):
    r = call(srv, "/fetch/stats")
    assert r.status == 200, r
    return json.loads(r.body)


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def proc_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("%s not in /proc/%d/status" % (key, pid))


def worker_pid(srv):
    return srv.wait_workers(1, timeout=T)[0]


class Stream:
    """A raw GET whose body is read piece by piece (for bodies too big to
    hold): head() parses the head, then read(n) / read_all() count bytes."""

    def __init__(self, srv, path):
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=T)
        self.sock.sendall(get(path) + b"")
        self.buf = b""
        self.status = None
        self.headers = {}
        self.received = 0
        self.sha = hashlib.sha256()

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnClosed("closed before the head")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            n, v = line.split(":", 1)
            self.headers[n.strip().lower()] = v.strip()
        self.length = int(self.headers.get("content-length", "-1"))
        return self

    def read(self, n, hash=False, chunk=1 << 20):
        """Reads up to n more body bytes (by Content-Length); returns how
        many came before the peer closed."""
        got = 0
        if self.buf:
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            got += len(take)
            if hash:
                self.sha.update(take)
        mv = memoryview(bytearray(chunk))
        while got < n:
            k = self.sock.recv_into(mv, min(chunk, n - got))
            if k == 0:
                break
            if hash:
                self.sha.update(mv[:k])
            got += k
        self.received += got
        return got

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------
# HTTPS


@pytest.mark.parametrize("stream", [False, True])
def test_https_with_the_test_ca_succeeds_over_http2(srv, ng, stream):
    d = ok(fetch(srv, ng.surl("/data"), ca_file=ng.ca_file, stream=stream))
    assert d["status"] == 200
    assert d["body"] == ng.data
    assert d["http_version"] == "2"
    assert d["url"] == ng.surl("/data")
    assert d["hdrs"]["content-type"] == "application/json"
    assert all(n == n.lower() for n, _ in d["headers"])


def test_https_trusts_ssl_cert_file_from_the_environment(server_factory, ng):
    s = server_factory(env={"SSL_CERT_FILE": ng.ca_file})
    d = ok(fetch(s, ng.surl("/data")))
    assert d["status"] == 200 and d["body"] == ng.data


def test_https_by_host_name_matches_the_certificate(srv, ng):
    d = ok(fetch(srv, ng.surl("/data", host="localhost"), ca_file=ng.ca_file))
    assert d["status"] == 200 and d["body"] == ng.data


@pytest.mark.parametrize("stream", [False, True])
def test_untrusted_certificate_is_refused_with_the_reason(srv, ng, stream):
    # Verification is on by default: the test CA is not in the system's store.
    d = fetch(srv, ng.surl("/data"), stream=stream)
    assert d["error"] == EIO, d
    assert re.search(r"certificate|issuer|verif", d["error_message"], re.I), d
    assert "\n" not in d["error_message"]
    if stream:
        assert not d["head_seen"], d


def test_wrong_host_name_is_refused_with_the_reason(srv, ng):
    # Signed by the trusted CA, but for other.example.
    d = fetch(srv, ng.wrong_name_url("/data"), ca_file=ng.ca_file)
    assert d["error"] == EIO, d
    assert re.search(r"name", d["error_message"], re.I), d


def test_a_ca_file_that_does_not_exist_fails_cleanly(srv, ng):
    d = fetch(srv, ng.surl("/data"), ca_file="/nonexistent/ca.pem")
    assert d["error"] != 0 and d["error_message"], d


def test_insecure_skips_the_checks_and_warns_once_per_plugin(srv, ng):
    start = len(srv.stderr.snapshot())
    for url in (ng.surl("/data"), ng.wrong_name_url("/data"), ng.surl("/data")):
        d = ok(fetch(srv, url, insecure=True))
        assert d["status"] == 200 and d["body"] == ng.data
    # Verification stays on for fetches without the flag.
    assert fetch(srv, ng.wrong_name_url("/data"))["error"] == EIO
    time.sleep(0.1)
    lines = [line for line in srv.stderr.snapshot()[start:]
             if re.search(r"insecure|verif", line, re.I)]
    assert len(lines) == 1, srv.output()
    assert "WARNING" in lines[0] and "fetchprobe" in lines[0], lines


# --------------------------------------------------------------------------
# HTTP versions and connection reuse


def test_http2_by_alpn_and_http1_only(srv, ng):
    assert ok(fetch(srv, ng.surl("/data"), ca_file=ng.ca_file))["http_version"] == "2"
    d = ok(fetch(srv, ng.surl("/data"), ca_file=ng.ca_file, http1=True))
    assert d["http_version"] == "1.1" and d["body"] == ng.data
    d = ok(fetch(srv, ng.url("/data")))
    assert d["http_version"] == "1.1" and d["body"] == ng.data


def many(srv, url, n, **params):
    r = call(srv, "/fetch/many", client_timeout=120 * SCALE, url=url, n=n, **params)
    assert r.status == 200, r
    return json.loads(r.body)


@pytest.mark.parametrize("stream", [False, True])
def test_sequential_fetches_reuse_one_connection(srv, ng, stream):
    mark = ng.mark()
    m = many(srv, ng.url("/data"), 1000, stream=stream)
    assert m["ok"] == 1000 and m["errors"] == 0, m
    assert m["statuses"] == {"200": 1000}
    conns = ng.connections(since=mark, port=ng.http_port)
    assert sum(conns.values()) == 1000, conns
    # One keep-alive connection does it; a second may come from a reuse
    # race, never hundreds.
    assert len(conns) <= 2, conns


def test_sequential_https_fetches_reuse_one_connection(srv, ng):
    mark = ng.mark()
    m = many(srv, ng.surl("/data"), 300, ca_file=ng.ca_file)
    assert m["ok"] == 300 and m["versions"] == {"2": 300}, m
    conns = ng.connections(since=mark, port=ng.https_port)
    assert sum(conns.values()) == 300 and len(conns) <= 2, conns


def test_concurrent_fetches_stay_within_the_per_host_bound(server_factory, ng):
    bound = 4
    srv = server_factory("--fetch-max-host-connections", str(bound))
    mark = ng.mark()
    results = []

    def one():
        results.append(many(srv, ng.url("/data"), 50, http1=True))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120 * SCALE)
    assert len(results) == 24 and all(m["ok"] == 50 for m in results), results
    conns = ng.connections(since=mark, port=ng.http_port)
    assert sum(conns.values()) == 24 * 50
    # 24 requests in flight at once over far fewer connections, each used
    # many times.
    assert len(conns) <= bound, conns


def test_old_style_fetch_of_an_http_url_works_as_before(srv, ng):
    # Options of the 1.3 size (no flags, max_redirects, ca_file).
    d = ok(fetch(srv, ng.url("/data"), oldsize=True))
    assert d["status"] == 200 and d["body"] == ng.data
    assert d["hdrs"]["content-type"] == "application/json"
    assert "content-encoding" not in d["hdrs"]


def test_old_style_fetch_does_not_follow_redirects(srv, tk):
    d = ok(fetch(srv, tk.url("/chain/2"), oldsize=True))
    assert d["status"] == 302 and d["hdrs"]["location"] == "/chain/1"
    assert d["redirects"] == 0


def test_refused_connection_is_econnrefused(srv):
    port = free_port()
    t0 = time.monotonic()
    d = fetch(srv, "http://127.0.0.1:%d/x" % port)
    assert d["error"] == ECONNREFUSED and d["error_message"], d
    assert time.monotonic() - t0 < 2 * SCALE


# --------------------------------------------------------------------------
# Redirects


def test_redirects_are_not_followed_by_default(srv, tk):
    d = ok(fetch(srv, tk.url("/chain/2")))
    assert d["status"] == 302 and d["hdrs"]["location"] == "/chain/1"
    assert d["redirects"] == 0 and d["url"] == tk.url("/chain/2")


def test_redirects_followed_report_the_final_url_and_count(srv, tk):
    d = ok(fetch(srv, tk.url("/chain/3"), follow=True))
    assert d["status"] == 200 and d["body"] == b'{"end":true}'
    assert d["redirects"] == 3
    assert d["url"] == tk.url("/chain/0")


def test_max_redirects_is_respected(srv, tk):
    assert ok(fetch(srv, tk.url("/chain/2"), follow=True, max_redirects=2))["redirects"] == 2
    d = fetch(srv, tk.url("/chain/3"), follow=True, max_redirects=2)
    assert d["error"] != 0 and re.search(r"redirect", d["error_message"], re.I), d
    # The default limit is 10.
    assert ok(fetch(srv, tk.url("/chain/10"), follow=True))["redirects"] == 10
    d = fetch(srv, tk.url("/chain/11"), follow=True)
    assert d["error"] != 0 and re.search(r"redirect", d["error_message"], re.I), d


@pytest.mark.parametrize("stream", [False, True])
def test_a_redirect_loop_fails_with_a_clear_error(srv, tk, stream):
    t0 = time.monotonic()
    d = fetch(srv, tk.url("/loop"), follow=True, stream=stream)
    assert d["error"] != 0, d
    assert re.search(r"redirect", d["error_message"], re.I), d
    assert time.monotonic() - t0 < 3 * SCALE


@pytest.mark.parametrize("code,method,want_method,keeps_body", [
    (303, "POST", "GET", False),
    (303, "PUT", "GET", False),
    (307, "POST", "POST", True),
    (308, "POST", "POST", True),
    (307, "PUT", "PUT", True),
    (301, "POST", "GET", False),
    (302, "POST", "GET", False),
    (302, "PUT", "PUT", True),
    (301, "GET", "GET", False),
])
def test_redirect_method_rules(srv, tk, code, method, want_method, keeps_body):
    body = "payload-%d" % code if method != "GET" else None
    d = ok(fetch(srv, tk.url("/redirect/%d?to=/echo" % code), follow=True, method=method,
                 body=body, h=["content-type:text/plain"]))
    assert d["status"] == 200 and d["redirects"] == 1, d
    echo = json.loads(d["body"])
    assert echo["method"] == want_method, echo
    body = base64.b64decode(echo["body_b64"])
    if keeps_body:
        assert body == b"payload-%d" % code, echo
    else:
        assert body == b"", echo
        names = [n for n, _ in echo["headers"]]
        assert "content-length" not in names or dict(echo["headers"])["content-length"] == "0"


def test_request_headers_and_body_reach_the_upstream(srv, tk):
    d = ok(fetch(srv, tk.url("/echo?a=1"), method="PATCH", body="hello",
                 h=["x-test:one", "x-other: two"]))
    echo = json.loads(d["body"])
    assert echo["method"] == "PATCH" and echo["query"] == {"a": "1"}
    assert base64.b64decode(echo["body_b64"]) == b"hello"
    hdrs = dict(echo["headers"])
    assert hdrs["x-test"] == "one" and hdrs["x-other"] == "two"


# --------------------------------------------------------------------------
# Decompression


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("https", [False, True])
def test_decompress_gives_the_original_body(srv, ng, stream, https):
    for path, original in (("/data", ng.data), ("/text", ng.text)):
        url = ng.surl(path) if https else ng.url(path)
        d = ok(fetch(srv, url, ca_file=ng.ca_file, decompress=True, stream=stream))
        assert d["status"] == 200
        assert d["body"] == original, (path, d["body_len"], len(original))


def test_without_decompress_the_raw_gzip_and_its_header(srv, ng):
    d = ok(fetch(srv, ng.url("/text"), h=["accept-encoding:gzip"]))
    assert d["hdrs"].get("content-encoding") == "gzip", d["hdrs"]
    assert d["body"] != ng.text and len(d["body"]) < len(ng.text)
    assert gunzip(d["body"]) == ng.text
    # Nothing is asked for without the flag or the header: identity.
    d = ok(fetch(srv, ng.url("/text")))
    assert "content-encoding" not in d["hdrs"] and d["body"] == ng.text


# --------------------------------------------------------------------------
# Streaming


def test_proxy_passes_status_type_and_body(srv, ng, tk):
    r = call(srv, "/fetch/proxy", url=ng.url("/data"))
    assert r.status == 200 and r.body == ng.data
    assert r.header("content-type") == "application/json"
    assert r.header("x-upstream-http-version") == "1.1"
    r = call(srv, "/fetch/proxy", url=tk.url("/status/404"))
    assert r.status == 404 and r.body == b"status"
    r = call(srv, "/fetch/proxy", url=ng.surl("/text"), ca_file=ng.ca_file, decompress=True)
    assert r.status == 200 and r.body == ng.text
    assert r.header("x-upstream-http-version") == "2"


def test_proxy_of_10_mib_arrives_intact(srv, ng):
    s = Stream(srv, "/fetch/proxy?" + qs(url=ng.url("/big"))).head()
    try:
        assert s.status == 200 and s.length == Nginx.BIG
        assert s.read(Nginx.BIG, hash=True) == Nginx.BIG
    finally:
        s.close()
    assert s.sha.hexdigest() == ng.big_sha256


def test_proxy_of_1_gib_with_bounded_memory(srv, ng):
    pid = worker_pid(srv)
    base = stats(srv)
    rss0 = proc_kb(pid, "VmRSS")
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                samples.append(proc_kb(pid, "VmRSS"))
            except (OSError, AssertionError):
                return
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    s = Stream(srv, "/fetch/proxy?" + qs(url=ng.url("/huge"), timeout=600)).head()
    try:
        s.sock.settimeout(30 * SCALE)
        assert s.status == 200 and s.length == Nginx.HUGE, s.headers
        # Read a little, then stop reading for a while: the fetch must
        # pause instead of buffering what nginx can send.
        assert s.read(16 * MiB) == 16 * MiB
        time.sleep(1.0)
        stalled = proc_kb(pid, "VmRSS")
        assert s.read(Nginx.HUGE - 16 * MiB) == Nginx.HUGE - 16 * MiB
    finally:
        done.set()
        s.close()
        sampler.join(5)
    assert s.received == Nginx.HUGE
    after = wait_for(lambda: (lambda x: x["streams_ended"] > base["streams_ended"] and x)(
        stats(srv)), T)
    assert after and after["streams_ok"] == base["streams_ok"] + 1, after
    assert after["pauses"] > base["pauses"], after  # backpressure was used
    assert after["data_while_paused"] == 0, after
    if not asan_build():
        hwm = proc_kb(pid, "VmHWM")
        grew = (max(samples + [stalled, hwm]) - rss0) / 1024
        assert grew < 64, "worker grew %.1f MiB (stalled %d kB, start %d kB, hwm %d kB)" % (
            grew, stalled, rss0, hwm)


def test_client_leaving_a_proxied_stream_cancels_the_fetch(srv, ng):
    base = stats(srv)
    s = Stream(srv, "/fetch/proxy?" + qs(url=ng.url("/huge"), timeout=600)).head()
    assert s.read(4 * MiB) == 4 * MiB
    s.close()
    after = wait_for(lambda: (lambda x: x["streams_cancelled"] > base["streams_cancelled"]
                              and x)(stats(srv)), T)
    assert after, stats(srv)
    assert after["streams_ok"] == base["streams_ok"]


def test_streamed_upload_of_50_mib_arrives_whole(srv, tk):
    pid = worker_pid(srv)
    rss0 = proc_kb(pid, "VmRSS")
    size = 50 * MiB
    block = os.urandom(MiB)
    want = hashlib.sha256()
    for _ in range(size // MiB):
        want.update(block)
    c = srv.connect(timeout=120 * SCALE)
    try:
        head = ("POST /fetch/upload?%s HTTP/1.1\r\nHost: t\r\nContent-Type: "
                "application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                % (qs(url=tk.url("/sink"), timeout=600), size)).encode()
        errors = []

        def send():
            try:
                c.sock.sendall(head)
                for _ in range(size // MiB):
                    c.sock.sendall(block)
            except OSError as e:
                errors.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        r = c.read_response(timeout=120 * SCALE)
        sender.join(30 * SCALE)
    finally:
        c.close()
    assert not errors, errors
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["error"] == 0 and doc["status"] == 200, doc
    assert doc["sent"] == size
    up = doc["upstream"]
    assert up["bytes"] == size and up["sha256"] == want.hexdigest(), up
    assert up["method"] == "POST"
    if not asan_build():
        grew = (proc_kb(pid, "VmHWM") - rss0) / 1024
        assert grew < 48, "worker grew %.1f MiB for a 50 MiB upload" % grew


def test_fetch_calls_that_must_fail(srv, ng):
    r = call(srv, "/fetch/errors", url=ng.url("/data"))
    assert r.status == 200, r
    assert json.loads(r.body) == {"no_url": EINVAL, "null_opts": EINVAL,
                                  "write_without_stream": EINVAL, "end_error": ECANCELED,
                                  "ends": 1, "head_seen": 0}
    r = call(srv, "/fetch/errors_sync")
    assert json.loads(r.body) == {"fetch_start": EPERM}
    assert not re.search(r"on_end ran inside", srv.output())


# --------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("stream", [False, True])
def test_slow_headers_past_the_timeout_is_etimedout(srv, tk, stream):
    t0 = time.monotonic()
    d = fetch(srv, tk.url("/slow-head?delay=%g" % (5 * SCALE)), timeout=0.5, stream=stream)
    took = time.monotonic() - t0
    assert d["error"] == ETIMEDOUT and d["error_message"], d
    assert 0.45 <= took < 0.5 + 1.5 * SCALE, took
    # A proxy answers it as a gateway timeout.
    r = call(srv, "/fetch/proxy", url=tk.url("/slow-head?delay=%g" % (5 * SCALE)), timeout=0.5)
    assert r.status == 504 and json.loads(r.body)["error"] == ETIMEDOUT, r


def test_a_stalled_body_past_the_timeout_is_etimedout(srv, tk):
    d = fetch(srv, tk.url("/slow-body?delay=%g" % (5 * SCALE)), timeout=0.5)
    assert d["error"] == ETIMEDOUT, d
    # Within the timeout the same upstream succeeds.
    d = ok(fetch(srv, tk.url("/slow-body?delay=0.2"), timeout=5))
    assert d["body"] == b"0123456789"


@pytest.mark.parametrize("path", ["/truncated", "/reset"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_body_cut_short_is_a_clean_error(srv, tk, path, stream):
    d = fetch(srv, tk.url(path), stream=stream)
    assert d["error"] == EIO and d["error_message"], d
    assert "\n" not in d["error_message"]
    if stream and d["head_seen"]:
        # on_head may not have run when the failure came with the head.
        assert d["head_seen"] == 1 and d["head_status"] == 200, d
    # The worker goes on serving.
    assert fetch(srv, tk.url("/status/200"))["status"] == 200


@pytest.mark.parametrize("path", ["/truncated", "/reset"])
def test_a_proxied_body_cut_short_never_looks_complete(srv, tk, path):
    s = Stream(srv, "/fetch/proxy?" + qs(url=tk.url(path))).head()
    try:
        if s.status == 200:
            # Failed after the head: the client's body is cut short too.
            assert s.length > 0
            assert s.read(s.length) < s.length
        else:
            # Failed before the head reached the plugin: a gateway error.
            assert s.status == 502, s.headers
            s.read(s.length)
    finally:
        s.close()


def test_a_body_over_max_response_is_emsgsize(srv, ng):
    d = fetch(srv, ng.url("/big"), max_response=MiB)
    assert d["error"] == EMSGSIZE and d["error_message"], d
    d = ok(fetch(srv, ng.url("/big"), max_response=Nginx.BIG))
    assert d["body_len"] == Nginx.BIG
    # The default limit is 8 MiB.
    assert fetch(srv, ng.url("/big"))["error"] == EMSGSIZE


# --------------------------------------------------------------------------
# Cancellation, shutdown, reload


@pytest.mark.parametrize("whole", [False, True])
def test_client_leaving_closes_the_upstream_connection(srv, tk, whole):
    base = stats(srv)
    n = len(tk.hangs)
    c = srv.connect(timeout=T)
    c.send(get("/fetch/hang?" + qs(url=tk.url("/hang"), whole=whole)))
    assert wait_for(lambda: len(tk.hangs) > n and tk.hangs[n].requested, T), "no upstream request"
    time.sleep(0.2)
    hang = tk.hangs[n]
    assert hang.closed is None  # still waiting for its answer
    t0 = time.monotonic()
    c.close()
    assert wait_for(lambda: hang.closed is not None, 5 * SCALE), "upstream connection left open"
    assert hang.closed - t0 < 1.0 * SCALE, hang.closed - t0
    after = wait_for(lambda: (lambda x: x["hang_ended"] > base["hang_ended"] and x)(stats(srv)), T)
    assert after, ("the fetch's last event did not run", base, stats(srv), srv.output())
    assert after["hang_last_error"] == ECANCELED, after


def test_sigterm_with_fetches_in_flight_exits_cleanly(server_factory, ng, tk):
    s = server_factory("--timeout-graceful-shutdown", "2")
    n = len(tk.hangs)
    hangs = []
    for whole in (False, True):
        c = s.connect(timeout=T)
        c.send(get("/fetch/hang?" + qs(url=tk.url("/hang"), whole=whole)))
        hangs.append(c)
    stalled = Stream(s, "/fetch/proxy?" + qs(url=ng.url("/huge"), timeout=600)).head()
    assert stalled.read(MiB) == MiB
    slow = s.connect(timeout=T)
    slow.send(get("/fetch/get?" + qs(url=tk.url("/slow-head?delay=0.8"), timeout=10)))
    assert wait_for(lambda: sum(1 for h in tk.hangs[n:] if h.requested) >= 2, T), tk.hangs
    time.sleep(0.2)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    # The fetch that ends within the grace period is answered.
    r = slow.read_response(timeout=T)
    assert r.status == 200 and json.loads(r.body)["status"] == 200, r
    code = s.wait_exit(15 * SCALE)
    took = time.monotonic() - t0
    for c in hangs + [slow]:
        c.close()
    stalled.close()
    assert code == 0, s.output()
    assert took < 2 + 5 * SCALE, took
    assert wait_for(lambda: all(h.closed for h in tk.hangs[n:]), T)
    out = s.output()
    assert not re.search(r"worker \d+ (died|killed)|signal \d+|Segmentation", out), out
    check_sanitizers(s)


def test_hot_reload_with_streaming_fetches_in_flight(srv, ng):
    results = {}

    def slow_reader():
        st = Stream(srv, "/fetch/proxy?" + qs(url=ng.url("/big"), timeout=600)).head()
        try:
            results["status"] = st.status
            got = 0
            while got < Nginx.BIG:  # about 2 s: spans the reload
                k = st.read(min(256 * 1024, Nginx.BIG - got), hash=True)
                if k == 0:
                    break
                got += k
                time.sleep(0.05)
            results["got"] = got
            results["sha"] = st.sha.hexdigest()
        except (OSError, ConnClosed) as e:
            results["error"] = repr(e)
        finally:
            st.close()

    reader = threading.Thread(target=slow_reader, daemon=True)
    with KeepAliveLoad(srv, get("/fetch/proxy?" + qs(url=ng.url("/medium"))), conns=4,
                       body=ng.medium, seconds=60, scale=SCALE) as load:
        reader.start()
        time.sleep(0.5)
        deploy(srv, "fetchprobe_v2")
        time.sleep(0.5)
        reader.join(60 * SCALE)
        assert srv.wait_for_log(r"plugin fetchprobe\.so: generation \d+ unloaded", T), \
            srv.output()
    assert not load.failures, load.failures[:3]
    assert len(load.successes) > 20
    assert results.get("status") == 200 and results.get("got") == Nginx.BIG, results
    assert results["sha"] == ng.big_sha256
    assert stats(srv)["version"] == "2"


# --------------------------------------------------------------------------
# Proxies from the environment


def test_http_proxy_from_the_environment_and_no_proxy(server_factory, ng, tk):
    s = server_factory(env={"http_proxy": tk.url(""), "no_proxy": "127.0.0.1"})
    # A name nobody resolves: only the proxy can answer for it.
    d = ok(fetch(s, "http://upstream.invalid/echo?via=proxy"))
    echo = json.loads(d["body"])
    assert echo["target"] == "http://upstream.invalid/echo?via=proxy", echo
    assert dict(echo["headers"])["host"] == "upstream.invalid"
    # no_proxy: loopback goes direct.
    d = ok(fetch(s, ng.url("/data")))
    assert d["body"] == ng.data


# --------------------------------------------------------------------------
# Name resolution: c-ares on the worker's loop, cached with the TTLs.
# The server asks a tiny DNS server of the test's own (EVICORN_DNS_SERVERS).


class TinyDns:
    """A DNS server on 127.0.0.1 (UDP): each name in `names` has an A record
    (address, ttl); a name in `slow` is answered after that many seconds;
    AAAA questions for known names get no records, other names NXDOMAIN.
    `queries` counts the A questions per name."""

    def __init__(self, names, slow=None):
        self.names = names
        self.slow = slow or {}
        self.queries = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def count(self, name):
        with self.lock:
            return self.queries.get(name, 0)

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                name, qtype, qend = self._question(data)
            except (IndexError, UnicodeDecodeError):
                continue
            reply = self._answer(data, name, qtype, qend)
            delay = self.slow.get(name, 0)
            if delay:
                threading.Timer(delay, self._send, (reply, peer)).start()
            else:
                self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    @staticmethod
    def _question(data):
        labels, i = [], 12
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode("ascii"))
            i += 1 + data[i]
        qtype = int.from_bytes(data[i + 1:i + 3], "big")
        return ".".join(labels).lower(), qtype, i + 5

    def _answer(self, data, name, qtype, qend):
        known = self.names.get(name)
        if qtype == 1:
            with self.lock:
                self.queries[name] = self.queries.get(name, 0) + 1
        rcode = 0 if known else 3
        answers = b""
        if known and qtype == 1:
            addr, ttl = known
            answers = (b"\xc0\x0c\x00\x01\x00\x01" + ttl.to_bytes(4, "big") + b"\x00\x04" +
                       socket.inet_aton(addr))
        flags = (0x8180 | rcode).to_bytes(2, "big")
        counts = b"\x00\x01" + (b"\x00\x01" if answers else b"\x00\x00") + b"\x00\x00\x00\x00"
        return data[:2] + flags + counts + data[12:qend] + answers

    def close(self):
        self.sock.close()


@pytest.fixture
def dns():
    d = TinyDns({"up.evicorn.test": ("127.0.0.1", 300),
                 "short.evicorn.test": ("127.0.0.1", 1),
                 "slow.evicorn.test": ("127.0.0.1", 300)},
                slow={"slow.evicorn.test": 1.0})
    yield d
    d.close()


def dns_server(server_factory, dns):
    return server_factory("--workers", "1",
                          env={"EVICORN_DNS_SERVERS": "127.0.0.1:%d" % dns.port})


def by_name(url, name):
    return url.replace("127.0.0.1", name, 1)


def test_two_fetches_within_the_ttl_make_one_dns_query(server_factory, ng, dns):
    s = dns_server(server_factory, dns)
    for _ in range(2):
        d = ok(fetch(s, by_name(ng.url("/data"), "up.evicorn.test")))
        assert d["body"] == ng.data
    assert dns.count("up.evicorn.test") == 1


def test_a_name_is_asked_again_once_its_ttl_has_passed(server_factory, ng, dns):
    s = dns_server(server_factory, dns)
    url = by_name(ng.url("/data"), "short.evicorn.test")
    ok(fetch(s, url))
    ok(fetch(s, url))
    assert dns.count("short.evicorn.test") == 1
    time.sleep(1.5)
    ok(fetch(s, url))
    assert dns.count("short.evicorn.test") == 2


def test_a_name_that_does_not_exist_is_a_clear_error(server_factory, ng, dns):
    s = dns_server(server_factory, dns)
    d = fetch(s, by_name(ng.url("/data"), "nope.evicorn.test"))
    assert d["error"] == EIO, d
    assert "could not resolve host nope.evicorn.test" in d["error_message"], d


def test_a_slow_lookup_does_not_block_the_worker(server_factory, ng, dns):
    s = dns_server(server_factory, dns)
    slow = {}

    def one():
        t0 = time.monotonic()
        slow["doc"] = fetch(s, by_name(ng.url("/data"), "slow.evicorn.test"))
        slow["took"] = time.monotonic() - t0

    t = threading.Thread(target=one)
    t.start()
    assert wait_for(lambda: dns.count("slow.evicorn.test") >= 1, T)
    # While the lookup waits, the same worker serves other fetches.
    t0 = time.monotonic()
    d = ok(fetch(s, ng.url("/data")))
    assert d["body"] == ng.data
    assert time.monotonic() - t0 < 0.5 * SCALE
    t.join(T)
    assert ok(slow["doc"])["body"] == ng.data
    assert slow["took"] >= 0.9


def test_names_in_the_hosts_file_resolve_without_dns(server_factory, ng, dns):
    s = dns_server(server_factory, dns)
    d = ok(fetch(s, by_name(ng.url("/data"), "localhost")))
    assert d["body"] == ng.data
    assert dns.count("localhost") == 0
