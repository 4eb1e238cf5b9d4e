"""Real upstream servers for the outbound-HTTP tests (test_fetch.py).

Nginx: Debian's nginx on free 127.0.0.1 ports, with a configuration, a
test CA and certificates written at start into a private folder:

    with Nginx() as ng:
        ng.url("/data")             # http://127.0.0.1:PORT/data
        ng.surl("/data")            # https://127.0.0.1:PORT/data (HTTP/2 by ALPN)
        ng.wrong_name_url("/data")  # https with a certificate for other.example
        ng.ca_file                  # the CA that signed both certificates
        ng.connections()            # {$connection: requests} from its access log

It serves /data (JSON), /text (a text file of 256 KiB), /medium (1 MiB),
/big (10 MiB of random bytes), /huge (1 GiB sparse, by sendfile), with
gzip on for JSON and text, and logs $connection and $connection_requests
of every request, so tests count the TCP connections it accepted.

Tricky: a threaded raw-socket HTTP server inside the test process, for
what a well-behaved server never does (see its docstring).

Both listen on loopback only. Nginx is stopped by PID (SIGTERM to the
master, then SIGKILL to its process group, found by the master's PID),
always, also when starting fails; Tricky closes its sockets and joins
its threads. Every wait is bounded and scaled by EVICORN_TIME_SCALE.
"""
import base64
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

from evicorn_harness import time_scale

DATA_DOC = {"service": "nginx", "items": [{"id": i, "name": "item %d" % i} for i in range(50)]}


def free_port():
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free ports: every socket stays bound until all are chosen
    (closing each at once could hand out the same port twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def nginx_binary():
    for path in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if path and os.path.isfile(path):
            return path
    raise RuntimeError("nginx not found (Debian package nginx-light; scripts/install-deps "
                       "installs it)")


def nginx_version(binary):
    r = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", r.stderr + r.stdout)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, text=True,
                       timeout=60 * time_scale(), stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stderr))


def make_pki(d):
    """A CA and two leaves it signs, in d: localhost.pem (localhost and
    127.0.0.1) and other.pem (other.example only). Returns the paths."""
    _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
              "-subj", "/CN=evicorn test CA", "-keyout", "ca.key", "-out", "ca.pem",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    for name, cn, san in (("localhost", "localhost", "DNS:localhost,IP:127.0.0.1"),
                          ("other", "other.example", "DNS:other.example")):
        _openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                  "-keyout", name + ".key", "-out", name + ".csr"], d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                    % san)
        _openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-days", "2", "-out", name + ".pem",
                  "-extfile", name + ".ext"], d)
    return {k: os.path.join(d, k + ".pem") for k in ("ca", "localhost", "other")}


NGINX_CONF = """
worker_processes 1;
{user}
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    types {{ application/json json; text/plain txt; }}
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format conns '$connection $connection_requests $request_method $uri $status '
                     '$server_protocol $server_port';
    access_log {d}/access.log conns;
    gzip on;
    gzip_types application/json text/plain;
    gzip_min_length 1;
    gzip_http_version 1.1;
    gzip_vary on;
    root {d}/www;

    server {{
        listen 127.0.0.1:{http_port};
        {locations}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl{h2_listen};
        {h2_on}
        ssl_certificate {d}/localhost.pem;
        ssl_certificate_key {d}/localhost.key;
        {locations}
    }}
    server {{
        listen 127.0.0.1:{wrong_port} ssl{h2_listen};
        {h2_on}
        ssl_certificate {d}/other.pem;
        ssl_certificate_key {d}/other.key;
        {locations}
    }}
}}
"""

# /data and /text are served from twins with an extension, so that they go
# out as JSON and text (and gzip_types applies).
LOCATIONS = ("location = /status { stub_status; } "
             "location = /data { try_files /data.json =404; } "
             "location = /text { try_files /text.txt =404; }")


class Nginx:
    """nginx with an HTTP, an HTTPS (HTTP/2) and a wrong-name HTTPS
    listener; see the module's docstring."""

    BIG = 10 * 1024 * 1024
    HUGE = 1024 * 1024 * 1024
    MEDIUM = 1024 * 1024

    def __init__(self, ready_timeout=15.0):
        self.ready_timeout = ready_timeout
        self.dir = None
        self.proc = None
        self.binary = nginx_binary()

    # ---- content

    def _write_content(self):
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        self.data = json.dumps(DATA_DOC).encode()
        with open(os.path.join(www, "data"), "wb") as f:
            f.write(self.data)
        line = b"the quick brown fox jumps over the lazy dog %d\n"
        text = b"".join(line % i for i in range(6000))[:256 * 1024]
        self.text = text
        with open(os.path.join(www, "text"), "wb") as f:
            f.write(text)
        self.medium = os.urandom(self.MEDIUM)
        with open(os.path.join(www, "medium"), "wb") as f:
            f.write(self.medium)
        big = os.urandom(self.BIG)
        self.big_sha256 = hashlib.sha256(big).hexdigest()
        with open(os.path.join(www, "big"), "wb") as f:
            f.write(big)
        del big
        with open(os.path.join(www, "huge"), "wb") as f:
            f.truncate(self.HUGE)  # sparse: zeros, no disk used
        for name, ext in (("data", "json"), ("text", "txt")):
            os.rename(os.path.join(www, name), os.path.join(www, name + "." + ext))

    def _config(self):
        v = nginx_version(self.binary)
        new_h2 = v >= (1, 25, 1)
        user = ""
        if os.geteuid() == 0:
            user = "user root root;"  # the folder is private to this user
        conf = NGINX_CONF.format(
            d=self.dir, user=user, http_port=self.http_port, https_port=self.https_port,
            wrong_port=self.wrong_port, h2_listen="" if new_h2 else " http2",
            h2_on="http2 on;" if new_h2 else "", locations=LOCATIONS)
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return path

    # ---- lifecycle

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="evicorn-nginx-")
        try:
            for sub in ("tmp", "logs"):
                os.makedirs(os.path.join(self.dir, sub))
            self.pki = make_pki(self.dir)
            self.ca_file = self.pki["ca"]
            self._write_content()
            self.http_port, self.https_port, self.wrong_port = free_ports(3)
            conf = self._config()
            self.log_path = os.path.join(self.dir, "nginx.stderr")
            self._log = open(self.log_path, "wb")
            self.proc = subprocess.Popen(
                [self.binary, "-p", self.dir, "-e", "stderr", "-c", conf, "-g",
                 "daemon off; pid %s/nginx.pid; error_log stderr;" % self.dir],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.dir)
            self._wait_ready()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout * time_scale()
        while time.monotonic() < deadline and self.proc.poll() is None:
            if all(self._accepts(p) for p in (self.http_port, self.https_port,
                                              self.wrong_port)):
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not get ready (exit %r):\n%s"
                           % (self.proc.poll(), self.log()))

    @staticmethod
    def _accepts(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def stop(self):
        """SIGTERM to the master by PID, then SIGKILL to its group (its
        PID is the group's): always reaped."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(10 * time_scale())
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def cleanup(self):
        try:
            self.stop()
        finally:
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # ---- addresses

    def url(self, path="/data"):
        return "http://127.0.0.1:%d%s" % (self.http_port, path)

    def surl(self, path="/data", host="127.0.0.1"):
        return "https://%s:%d%s" % (host, self.https_port, path)

    def wrong_name_url(self, path="/data"):
        return "https://127.0.0.1:%d%s" % (self.wrong_port, path)

    # ---- the access log

    def access_lines(self):
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                return [line.split() for line in f if line.strip()]
        except OSError:
            return []

    def mark(self):
        """A position in the access log (for connections(since=...))."""
        return len(self.access_lines())

    def connections(self, since=0, uri=None, port=None):
        """{connection serial: requests seen} for the access-log lines
        after `since`, optionally only for one URI and server port."""
        out = {}
        for f in self.access_lines()[since:]:
            if uri is not None and f[3] != uri:
                continue
            if port is not None and f[6] != str(port):
                continue
            out[f[0]] = out.get(f[0], 0) + 1
        return out


# --------------------------------------------------------------------------
# A misbehaving upstream


class Request:
    def __init__(self, method, target, version, headers, body, chunked):
        self.method = method
        self.target = target
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = dict(urllib.parse.parse_qsl(u.query))
        self.version = version
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.chunked = chunked

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None


class _Closed(Exception):
    pass


class HangConn:
    """One connection to /hang: when it was accepted, when its request
    head arrived and when the peer closed it (monotonic seconds)."""

    def __init__(self):
        self.accepted = time.monotonic()
        self.requested = None
        self.closed = None


class Tricky:
    """A threaded HTTP/1.1 server on raw sockets, in the test process,
    for what well-behaved servers never do. Keep-alive unless noted.

      /slow-head?delay=S     the head (and "late") after S seconds
      /slow-body?delay=S     the head and half the body, the rest after S s
      /truncated             Content-Length: 1000, then 100 bytes and close
      /reset                 Content-Length: 1 MB, then 64 KiB and a reset
                             (SO_LINGER 0)
      /loop                  302 to /loop, for ever
      /chain/N               302 to /chain/N-1 ... /chain/0 answers 200
      /redirect/CODE?to=P    CODE (301, 302, 303, 307, 308) to P
      /echo                  200 JSON: {method, target, path, query,
                             body_b64, headers, chunked}
      /sink                  counts the request body: {bytes, sha256,
                             chunked, method, content_length}
      /hang                  reads the request and never answers; each
                             connection's times are in .hangs
      /status/CODE           CODE with a short body

    Request bodies are read by Content-Length or chunked, answering
    "100 Continue" first when asked. .requests lists every Request;
    .connections counts accepted connections."""

    def __init__(self):
        self.sock = None
        self.threads = []
        self.conns = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests = []
        self.hangs = []
        self.connections = 0

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    # ---- serving

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.add(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            with self.lock:
                self.threads = [x for x in self.threads if x.is_alive()] + [t]

    def _serve(self, c):
        buf = bytearray()
        hang = None
        try:
            c.settimeout(120 * time_scale())
            while not self.stopping.is_set():
                req, buf, hang = self._read_request(c, buf, hang)
                with self.lock:
                    self.requests.append(req)
                if not self._answer(c, req, hang):
                    return
        except (_Closed, OSError):
            pass
        finally:
            if hang is not None and hang.closed is None:
                hang.closed = time.monotonic()
            with self.lock:
                self.conns.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def _recv(self, c, buf):
        data = c.recv(1 << 20)
        if not data:
            raise _Closed()
        buf += data

    def _read_request(self, c, buf, hang):
        while b"\r\n\r\n" not in buf:
            if len(buf) > 65536:
                raise _Closed()
            self._recv(c, buf)
        i = buf.index(b"\r\n\r\n")
        head = bytes(buf[:i]).decode("latin-1").split("\r\n")
        del buf[:i + 4]
        method, target, version = head[0].split(" ", 2)
        headers = []
        for line in head[1:]:
            n, v = line.split(":", 1)
            headers.append((n.strip().lower(), v.strip()))
        req = Request(method, target, version, headers, b"", False)
        if req.path == "/hang":
            hang = HangConn()
            with self.lock:
                self.hangs.append(hang)
            hang.requested = time.monotonic()
            return req, buf, hang
        if (req.header("expect") or "").lower() == "100-continue":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        sink = req.path == "/sink"
        h = hashlib.sha256() if sink else None
        count = 0
        body = bytearray()

        def take(data):
            nonlocal count
            count += len(data)
            if sink:
                h.update(data)
            else:
                body.extend(data)

        te = (req.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            req.chunked = True
            while True:
                while b"\r\n" not in buf:
                    self._recv(c, buf)
                j = buf.index(b"\r\n")
                size = int(bytes(buf[:j]).split(b";")[0], 16)
                del buf[:j + 2]
                if size == 0:
                    while True:  # trailers, then the empty line
                        while b"\r\n" not in buf:
                            self._recv(c, buf)
                        j = buf.index(b"\r\n")
                        line = bytes(buf[:j])
                        del buf[:j + 2]
                        if line == b"":
                            break
                    break
                while len(buf) < size + 2:
                    self._recv(c, buf)
                take(bytes(buf[:size]))
                del buf[:size + 2]
        else:
            n = int(req.header("content-length") or 0)
            while n > 0:
                if not buf:
                    self._recv(c, buf)
                k = min(n, len(buf))
                take(bytes(buf[:k]))
                del buf[:k]
                n -= k
        req.body = bytes(body)
        req.body_bytes = count
        if sink:
            req.body_sha256 = h.hexdigest()
        return req, buf, hang

    @staticmethod
    def _send(c, status, body=b"", headers=(), reason="X", close=False, length=None):
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        lines += ["%s: %s" % hv for hv in headers]
        lines.append("Content-Length: %d" % (len(body) if length is None else length))
        if close:
            lines.append("Connection: close")
        c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _wait(self, seconds):
        """Sleeps up to seconds; False when the server is stopping."""
        return not self.stopping.wait(seconds)

    def _answer(self, c, req, hang):
        """Answers req; False when the connection must end."""
        p, q = req.path, req.query
        if p == "/hang":
            while not self.stopping.is_set():  # until the peer closes
                try:
                    c.settimeout(0.05)
                    data = c.recv(65536)
                    if not data:
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            hang.closed = time.monotonic()
            return False
        if p == "/slow-head":
            if not self._wait(float(q.get("delay", "2"))):
                return False
            self._send(c, 200, b"late", [("Content-Type", "text/plain")])
            return True
        if p == "/slow-body":
            self._send(c, 200, b"01234", [("Content-Type", "text/plain")], length=10)
            if not self._wait(float(q.get("delay", "2"))):
                return False
            c.sendall(b"56789")
            return True
        if p == "/truncated":
            self._send(c, 200, b"t" * 100, [("Content-Type", "text/plain")], length=1000,
                       close=True)
            c.shutdown(socket.SHUT_WR)
            return False
        if p == "/reset":
            self._send(c, 200, b"r" * 65536, [("Content-Type", "application/octet-stream")],
                       length=1000000)
            time.sleep(0.05)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if p == "/loop":
            self._send(c, 302, b"", [("Location", "/loop")])
            return True
        m = re.match(r"^/chain/(\d+)$", p)
        if m:
            n = int(m.group(1))
            if n > 0:
                self._send(c, 302, b"", [("Location", "/chain/%d" % (n - 1))])
            else:
                self._send(c, 200, b'{"end":true}', [("Content-Type", "application/json")])
            return True
        m = re.match(r"^/redirect/(\d{3})$", p)
        if m:
            self._send(c, int(m.group(1)), b"", [("Location", q.get("to", "/echo"))])
            return True
        if p == "/echo":
            doc = {"method": req.method, "target": req.target, "path": p, "query": q,
                   "body_b64": base64.b64encode(req.body).decode(),
                   "chunked": req.chunked, "headers": req.headers}
            self._send(c, 200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
            return True
        if p == "/sink":
            doc = {"bytes": req.body_bytes, "sha256": req.body_sha256, "chunked": req.chunked,
                   "method": req.method, "content_length": req.header("content-length")}
            self._send(c, 200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
            return True
        m = re.match(r"^/status/(\d{3})$", p)
        if m:
            self._send(c, int(m.group(1)), b"status", [("Content-Type", "text/plain")])
            return True
        self._send(c, 404, b"no such path", [("Content-Type", "text/plain")])
        return True


def gunzip(data):
    return gzip.decompress(data)


@contextlib.contextmanager
def tricky():
    t = Tricky().start()
    try:
        yield t
    finally:
        t.stop()
