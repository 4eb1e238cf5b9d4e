"""Files for plugins (ABI 1.5) and the examples built on them.

A plugin answers with a file the server sends with sendfile(2) and treats
as a static file server does (respond_file: by path or by fd, a part of the
file given by offset and length, validators, conditional requests, ranges,
precompressed siblings), adds file bytes to a response it started
(send_file), and reads, writes and stats files on the thread pool without
blocking the loop (file_read, file_write, file_stat), with the same
cancellation as every other operation when the client leaves.

fileprobe (tests/plugins/fileprobe) calls each of these and answers 418
{"rc": code} when a call fails; examples/files serves and stores uploads in
a folder; examples/static is the site `make run` serves at /static.
"""
import gzip
import json
import os
import re
import shutil
import stat
import tempfile
import time

import pytest

import plugin_util
from evicorn_harness import Server, evicorn_bin, get, time_scale

SCALE = time_scale()
T = 5.0 * SCALE
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")

EPERM, ENOENT, EEXIST, EINVAL, EMSGSIZE = -1, -2, -17, -22, -90

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.dirname(os.path.abspath(evicorn_bin()))
PLUGINS = os.environ.get("EVICORN_PLUGINS") or os.path.join(BUILD, "plugins")

DATA = bytes(range(256)) * 40  # 10240 bytes
TEXT = b"hello, files\n"
PAGE = b"<!doctype html><title>page</title>" + b"<p>compress me</p>" * 50
UPLOAD_LIMIT = 4096


@pytest.fixture(scope="module")
def tree():
    """A folder of files to serve: data.bin, hello.txt, page.html with a
    gzip sibling, a folder, a FIFO, and files/ for examples/files with a
    secret beside it."""
    root = tempfile.mkdtemp(prefix="evicorn-files-")
    with open(os.path.join(root, "data.bin"), "wb") as f:
        f.write(DATA)
    with open(os.path.join(root, "hello.txt"), "wb") as f:
        f.write(TEXT)
    with open(os.path.join(root, "page.html"), "wb") as f:
        f.write(PAGE)
    with open(os.path.join(root, "page.html.gz"), "wb") as f:
        f.write(gzip.compress(PAGE, mtime=0))
    os.mkdir(os.path.join(root, "folder"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.mkdir(os.path.join(root, "files"))
    with open(os.path.join(root, "secret.txt"), "wb") as f:
        f.write(b"secret")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def deploy(srv, src, name):
    start = len(srv.stderr.snapshot())
    plugin_util.deploy(srv, src, name)
    assert srv.wait_for_log(r"plugin %s: (loaded|replaced)" % re.escape(name), 10.0,
                            start=start), srv.output()


def start_server(tree, *args):
    files_dir = os.path.join(tree, "files")
    s = Server("--no-access-log", *args,
               wrapper=["env", "EVICORN_FILES_DIR=" + files_dir,
                        "EVICORN_FILES_MAX_UPLOAD=%d" % UPLOAD_LIMIT]).start()
    deploy(s, plugin_util.plugin_path("fileprobe"), "fileprobe.so")
    deploy(s, os.path.join(PLUGINS, "files.so"), "files.so")
    return s


def check_clean(s):
    s.stop()
    m = SANITIZER_RE.search("\n".join(s.stderr.snapshot()))
    assert not m, s.output()


@pytest.fixture
def srv(tree):
    s = start_server(tree)
    try:
        yield s
    finally:
        check_clean(s)


def request(srv, raw, head=False):
    with srv.connect(timeout=T) as c:
        return c.request(raw, head=head, timeout=T)


def fetch(srv, path, extra="", head=False):
    if head:
        raw = ("HEAD %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, extra)).encode("latin-1")
        return request(srv, raw, head=True)
    return request(srv, get(path, extra=extra))


def post(srv, path, body, extra=""):
    raw = ("POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n"
           % (path, len(body), extra)).encode("latin-1") + body
    return request(srv, raw)


def get_json(srv, path):
    r = fetch(srv, path)
    assert r.status == 200, r
    return json.loads(r.body)


def rc_of(r):
    assert r.status == 418, r
    return json.loads(r.body)["rc"]


def stats(srv):
    return get_json(srv, "/fp/stats")


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    return pred()


def p(tree, name):
    return os.path.join(tree, name)


# ---- respond_file ----------------------------------------------------------


@pytest.mark.parametrize("route", ["/fp/respond", "/fp/respond_sync"])
def test_respond_file_by_path_sends_the_file_with_its_type_and_validators(srv, tree, route):
    r = fetch(srv, "%s?path=%s" % (route, p(tree, "hello.txt")))
    assert r.status == 200, r
    assert r.body == TEXT
    assert r.header("content-length") == str(len(TEXT))
    assert r.header("content-type").startswith("text/plain")
    assert r.header("etag") and r.header("last-modified")
    assert r.header("x-probe") == "1"  # the plugin's own header


def test_respond_file_answers_conditional_requests_and_ranges(srv, tree):
    path = "/fp/respond?path=" + p(tree, "data.bin")
    etag = fetch(srv, path).header("etag")
    r = fetch(srv, path, extra="If-None-Match: %s\r\n" % etag)
    assert r.status == 304 and r.body == b"", r
    r = fetch(srv, path, extra="Range: bytes=10-19\r\n")
    assert r.status == 206, r
    assert r.body == DATA[10:20]
    assert r.header("content-range") == "bytes 10-19/%d" % len(DATA)
    r = fetch(srv, path, extra="Range: bytes=%d-\r\n" % (len(DATA) + 5))
    assert r.status == 416, r


def test_respond_file_head_has_the_length_and_no_body(srv, tree):
    r = fetch(srv, "/fp/respond?path=" + p(tree, "data.bin"), head=True)
    assert r.status == 200, r
    assert r.header("content-length") == str(len(DATA))


@pytest.mark.parametrize("route", ["/fp/respond", "/fp/respond_fd", "/fp/respond_fd_sync"])
def test_offset_and_length_make_a_part_of_the_file_the_representation(srv, tree, route):
    path = "%s?path=%s&offset=100&length=50" % (route, p(tree, "data.bin"))
    r = fetch(srv, path)
    assert r.status == 200, r
    assert r.body == DATA[100:150]
    assert r.header("content-length") == "50"
    # Ranges are within the part.
    r = fetch(srv, path, extra="Range: bytes=0-9\r\n")
    assert r.status == 206, r
    assert r.body == DATA[100:110]
    assert r.header("content-range") == "bytes 0-9/50"


def test_respond_file_by_fd_to_the_end_after_the_plugin_closed_its_fd(srv, tree):
    r = fetch(srv, "/fp/respond_fd?path=%s&offset=10000" % p(tree, "data.bin"))
    assert r.status == 200, r
    assert r.body == DATA[10000:]


def test_content_type_given_by_the_plugin_wins(srv, tree):
    r = fetch(srv, "/fp/respond?path=%s&type=text/x-probe" % p(tree, "data.bin"))
    assert r.status == 200 and r.header("content-type") == "text/x-probe", r


def test_no_validators_sends_a_plain_200_whatever_the_request_asks(srv, tree):
    r = fetch(srv, "/fp/respond?novalidators=1&path=" + p(tree, "data.bin"),
              extra="Range: bytes=0-9\r\n")
    assert r.status == 200, r
    assert r.body == DATA
    assert r.header("etag") is None and r.header("last-modified") is None


def test_precompressed_sibling_is_sent_to_a_client_that_takes_it(srv, tree):
    path = "/fp/respond?precompressed=1&path=" + p(tree, "page.html")
    r = fetch(srv, path, extra="Accept-Encoding: gzip\r\n")
    assert r.status == 200, r
    assert r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == PAGE
    assert "accept-encoding" in (r.header("vary") or "").lower()
    r = fetch(srv, path, extra="Accept-Encoding: identity\r\n")
    assert r.status == 200 and r.body == PAGE and r.header("content-encoding") is None, r


@pytest.mark.parametrize("route", ["/fp/respond", "/fp/respond_sync", "/fp/respond_fd"])
def test_missing_file_folder_and_fifo_are_returned_to_the_handler(srv, tree, route):
    assert rc_of(fetch(srv, "%s?path=%s" % (route, p(tree, "missing")))) == (
        EINVAL if route == "/fp/respond_fd" else ENOENT)
    assert rc_of(fetch(srv, "%s?path=%s" % (route, p(tree, "folder")))) == EPERM
    # A FIFO nobody writes to: refused at once, the loop never waits on it.
    t = time.monotonic()
    assert rc_of(fetch(srv, "%s?path=%s" % (route, p(tree, "fifo")))) == EPERM
    assert time.monotonic() - t < 2 * SCALE


# ---- send_file -------------------------------------------------------------


@pytest.mark.parametrize("route", ["/fp/sendfile", "/fp/sendfile_sync"])
def test_send_file_after_start_mixes_with_send(srv, tree, route):
    r = fetch(srv, "%s?path=%s&offset=5&count=100" % (route, p(tree, "data.bin")))
    assert r.status == 200, r
    assert r.body == b"<<" + DATA[5:105] + b">>"


@pytest.mark.parametrize("route", ["/fp/sendfile", "/fp/sendfile_sync"])
def test_send_file_with_a_negative_count_sends_to_the_end(srv, tree, route):
    r = fetch(srv, "%s?path=%s&offset=10000&count=-1" % (route, p(tree, "data.bin")))
    assert r.status == 200, r
    assert r.body == b"<<" + DATA[10000:] + b">>"


def test_send_file_may_complete_the_response(srv, tree):
    r = fetch(srv, "/fp/sendfile_last?path=%s&offset=1000" % p(tree, "data.bin"))
    assert r.status == 200, r
    assert r.header("content-length") == str(len(DATA) - 1000)
    assert r.body == DATA[1000:]


def test_send_file_of_a_big_file_from_a_sync_handler_arrives_whole(srv, tree):
    big = p(tree, "big.bin")
    blob = os.urandom(1 << 16) * 64  # 4 MiB
    with open(big, "wb") as f:
        f.write(blob)
    try:
        r = fetch(srv, "/fp/sendfile_sync?path=" + big)
        assert r.status == 200, r
        assert r.body == b"<<" + blob + b">>"
    finally:
        os.unlink(big)


# ---- file_read, file_write, file_stat --------------------------------------


def test_file_read_gives_the_bytes_size_and_mode(srv, tree):
    r = fetch(srv, "/fp/read?path=" + p(tree, "data.bin"))
    assert r.status == 200, r
    assert r.body == DATA
    assert r.header("x-size") == str(len(DATA))
    assert stat.S_ISREG(int(r.header("x-mode"), 8))
    assert abs(float(r.header("x-mtime")) - os.stat(p(tree, "data.bin")).st_mtime) < 0.01


def test_file_read_over_max_size_is_emsgsize(srv, tree):
    assert rc_of(fetch(srv, "/fp/read?max=100&path=" + p(tree, "data.bin"))) == EMSGSIZE
    r = fetch(srv, "/fp/read?max=%d&path=%s" % (len(DATA), p(tree, "data.bin")))
    assert r.status == 200 and r.body == DATA, r


def test_file_read_of_a_growing_proc_file_is_bounded_too(srv):
    # /proc files report size 0: the bound holds while reading.
    r = fetch(srv, "/fp/read?max=100000&path=/proc/self/maps")
    assert r.status == 200 and len(r.body) > 0, r
    assert rc_of(fetch(srv, "/fp/read?max=10&path=/proc/self/maps")) == EMSGSIZE


def test_file_read_errors(srv, tree):
    assert rc_of(fetch(srv, "/fp/read?path=" + p(tree, "missing"))) == ENOENT
    assert rc_of(fetch(srv, "/fp/read?path=" + p(tree, "folder"))) == EPERM
    t = time.monotonic()
    assert rc_of(fetch(srv, "/fp/read?path=" + p(tree, "fifo"))) == EPERM
    assert time.monotonic() - t < 2 * SCALE


def test_file_write_replaces_atomically_and_leaves_no_temporary_file(srv, tree):
    d = tempfile.mkdtemp(dir=tree)
    target = os.path.join(d, "out.txt")
    with open(target, "wb") as f:
        f.write(b"x" * 1000)
    r = json.loads(post(srv, "/fp/write?path=" + target, b"new content").body)
    assert r["rc"] == 0 and r["len"] == 11 and r["size"] == 11, r
    with open(target, "rb") as f:
        assert f.read() == b"new content"
    assert os.listdir(d) == ["out.txt"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644 & ~current_umask()


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_file_write_append_and_exclusive(srv, tree):
    d = tempfile.mkdtemp(dir=tree)
    log = os.path.join(d, "log")
    for line in (b"one\n", b"two\n"):
        r = json.loads(post(srv, "/fp/write?mode=append&path=" + log, line).body)
        assert r["rc"] == 0 and r["len"] == 4, r
    assert r["size"] == 8
    with open(log, "rb") as f:
        assert f.read() == b"one\ntwo\n"
    new = os.path.join(d, "new")
    assert json.loads(post(srv, "/fp/write?mode=exclusive&path=" + new, b"first").body)["rc"] == 0
    r = json.loads(post(srv, "/fp/write?mode=exclusive&path=" + new, b"second").body)
    assert r == {"rc": EEXIST}
    assert json.loads(post(srv, "/fp/write?mode=both&path=" + log, b"x").body) == {"rc": EEXIST}
    with open(new, "rb") as f:
        assert f.read() == b"first"


def test_file_write_errors(srv, tree):
    missing_dir = p(tree, "nowhere/file")
    assert json.loads(post(srv, "/fp/write?path=" + missing_dir, b"x").body) == {"rc": ENOENT}
    r = json.loads(post(srv, "/fp/write?mode=append&path=" + p(tree, "fifo"), b"x").body)
    assert r == {"rc": EPERM}
    r = json.loads(post(srv, "/fp/write?path=" + p(tree, "folder"), b"x").body)
    assert r == {"rc": EPERM}
    assert not [n for n in os.listdir(tree) if ".tmp" in n]


def test_file_stat(srv, tree):
    r = get_json(srv, "/fp/stat?path=" + p(tree, "data.bin"))
    assert r["rc"] == 0 and r["size"] == len(DATA) and stat.S_ISREG(r["mode"]), r
    assert abs(r["mtime"] - os.stat(p(tree, "data.bin")).st_mtime) < 0.01
    assert stat.S_ISDIR(get_json(srv, "/fp/stat?path=" + p(tree, "folder"))["mode"])
    assert get_json(srv, "/fp/stat?path=" + p(tree, "missing")) == {"rc": ENOENT}


def test_bad_calls_are_refused(srv):
    assert get_json(srv, "/fp/errors") == {
        "respond_file_null": EINVAL, "respond_file_bad_fd": EINVAL,
        "respond_file_negative_offset": EINVAL, "send_file_bad_fd": EINVAL,
        "read_null_path": EINVAL, "read_no_fn": EINVAL, "write_bad_flags": EINVAL,
        "write_null_data": EINVAL, "stat_empty_path": EINVAL, "stat_null_path": EINVAL}


def test_file_io_is_loop_thread_only(srv):
    assert get_json(srv, "/fp/errors_sync") == {"read": EPERM, "write": EPERM, "stat": EPERM}


def test_no_fd_is_left_open(srv, tree):
    base = stats(srv)["fds"]
    for path in ("/fp/respond?path=%s", "/fp/respond_fd?path=%s", "/fp/sendfile?path=%s",
                 "/fp/sendfile_sync?path=%s", "/fp/read?path=%s"):
        assert fetch(srv, path % p(tree, "data.bin")).status == 200
    assert wait_for(lambda: stats(srv)["fds"] == base, T), (stats(srv), base)


# ---- cancellation and hot reload ------------------------------------------


def block_pool(srv, seconds):
    """Occupies the only pool thread (--threads 1): the next file operation
    waits behind it."""
    c = srv.connect(timeout=T)
    c.send(get("/fp/block_sync?s=%g" % seconds))
    time.sleep(0.2)
    return c


@pytest.mark.parametrize("op", ["read", "write", "stat"])
def test_client_leaving_a_pending_file_operation_gets_ecanceled(tree, op):
    s = start_server(tree, "--threads", "1")
    try:
        target = p(tree, "pending-%s.txt" % op)
        with open(target, "wb") as f:
            f.write(b"before")
        base = stats(s)
        blocker = block_pool(s, 1.0 * SCALE)
        c = s.connect(timeout=T)
        c.send(get("/fp/pending?op=%s&path=%s" % (op, target)))
        time.sleep(0.2)
        c.close()
        assert blocker.read_response(timeout=T).body == b"unblocked"
        blocker.close()
        after = wait_for(lambda: (lambda st: st["completed"] == st["started"] and st)(stats(s)), T)
        assert after, stats(s)
        assert after["started"] == base["started"] + 1
        assert after["cancelled"] == base["cancelled"] + 1
        if op == "write":  # the operation itself still happened
            with open(target, "rb") as f:
                assert f.read() == b"pending"
        assert wait_for(lambda: stats(s)["fds"] == base["fds"], T), (stats(s), base)
    finally:
        check_clean(s)


def test_a_pending_file_operation_keeps_its_plugin_version_until_it_ends(tree):
    s = start_server(tree, "--threads", "1")
    try:
        blocker = block_pool(s, 1.0 * SCALE)
        c = s.connect(timeout=T)
        c.send(get("/fp/pending?op=stat&path=" + p(tree, "data.bin")))
        time.sleep(0.1)
        deploy(s, plugin_util.plugin_path("fileprobe_v2"), "fileprobe.so")
        # Version 1 still has a continuation to run: not unloaded yet.
        assert not s.wait_for_log(r"plugin fileprobe\.so: generation \d+ unloaded", 0.2)
        r = c.read_response(timeout=T)
        assert r.status == 200 and json.loads(r.body)["rc"] == 0, r
        c.close()
        blocker.read_response(timeout=T)
        blocker.close()
        assert s.wait_for_log(r"plugin fileprobe\.so: generation \d+ unloaded", T), s.output()
        assert stats(s)["version"] == "2"
    finally:
        check_clean(s)


# ---- examples/files --------------------------------------------------------


def test_upload_then_download(srv, tree):
    body = b"stored by the files example\n" * 10
    r = post(srv, "/files/notes.txt", body)
    assert r.status == 201, r
    assert json.loads(r.body) == {"name": "notes.txt", "size": len(body)}
    r = fetch(srv, "/files/notes.txt")
    assert r.status == 200 and r.body == body, r
    assert r.header("content-type").startswith("text/plain")
    r = fetch(srv, "/files/notes.txt", extra="Range: bytes=7-12\r\n")
    assert r.status == 206 and r.body == body[7:13], r
    # Replacing: the new bytes, and nothing else in the folder.
    r = post(srv, "/files/notes.txt", b"short")
    assert r.status == 201 and json.loads(r.body)["size"] == 5, r
    assert fetch(srv, "/files/notes.txt").body == b"short"
    assert not [n for n in os.listdir(p(tree, "files")) if ".tmp" in n]


def test_download_from_a_subfolder(srv, tree):
    sub = p(tree, "files/sub")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "a.txt"), "wb") as f:
        f.write(b"in a subfolder")
    r = fetch(srv, "/files/sub/a.txt")
    assert r.status == 200 and r.body == b"in a subfolder", r
    assert fetch(srv, "/files/sub").status == 404  # a folder
    assert fetch(srv, "/files/missing.txt").status == 404


def test_upload_over_the_limit_by_content_length_is_413_before_the_body(srv, tree):
    with srv.connect(timeout=T) as c:
        # Headers only: the answer must not wait for the body.
        c.send(("POST /files/big.bin HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                "Expect: 100-continue\r\n\r\n" % (UPLOAD_LIMIT + 1)).encode())
        r = c.read_response(timeout=T)
    assert r.status == 413, r  # and not a 100 Continue first
    assert not os.path.exists(p(tree, "files/big.bin"))


def test_chunked_upload_over_the_limit_is_413(srv, tree):
    chunk = b"x" * 1000
    raw = b"POST /files/chunked.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 5 + b"0\r\n\r\n"
    with srv.connect(timeout=T) as c:
        c.send(raw)
        r = c.read_response(timeout=T)
    assert r.status == 413, r
    assert not os.path.exists(p(tree, "files/chunked.bin"))


def test_chunked_upload_within_the_limit_is_stored(srv, tree):
    chunk = b"y" * 1000
    raw = b"POST /files/chunked-ok.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3 + b"0\r\n\r\n"
    r = request(srv, raw)
    assert r.status == 201 and json.loads(r.body)["size"] == 3000, r
    with open(p(tree, "files/chunked-ok.bin"), "rb") as f:
        assert f.read() == chunk * 3


@pytest.mark.parametrize("name", [
    "../secret.txt", "%2e%2e/secret.txt", "..%2fsecret.txt", "sub/../../secret.txt",
    "%2e%2e%2fsecret.txt", ".hidden", "sub/.hidden", "a%5c..%5csecret.txt", "a%00b",
    "%2fetc/passwd", "a//b", "a/./b",
])
def test_names_that_could_leave_the_folder_are_refused(srv, tree, name):
    with open(p(tree, "files/.hidden"), "wb") as f:
        f.write(b"hidden")
    r = fetch(srv, "/files/" + name)
    assert r.status in (400, 404), r
    assert b"secret" not in r.body and b"hidden" not in r.body and b"root:" not in r.body


@pytest.mark.parametrize("name", ["..%2fescaped.txt", ".hidden-upload", "%2e%2e", "a%5cb"])
def test_uploads_with_bad_names_are_refused(srv, tree, name):
    r = post(srv, "/files/" + name, b"x")
    # 405: a decoded '/' makes it a path only GET /files/{name:path} matches.
    assert r.status in (400, 404, 405), r
    assert not os.path.exists(p(tree, "escaped.txt"))
    assert not os.path.exists(p(tree, "files/.hidden-upload"))


# ---- examples/static -------------------------------------------------------

STATIC_OUT = os.path.join(BUILD, "examples", "static")
STATIC_SRC = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "static"))


def built_with_brotli():
    """Whether the build found the brotli program (its CMake cache says)."""
    try:
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            m = re.search(r"^EVICORN_BROTLI:FILEPATH=(.*)$", f.read(), re.M)
    except OSError:
        return False
    return bool(m) and not m.group(1).endswith("NOTFOUND")


def test_the_build_copies_the_site_and_precompresses_its_text_files():
    for name in ("index.html", "style.css", "app.js", "logo.svg", "logo.png"):
        with open(os.path.join(STATIC_SRC, name), "rb") as a, \
                open(os.path.join(STATIC_OUT, name), "rb") as b:
            assert a.read() == b.read(), name
    for name in ("index.html", "style.css", "app.js", "logo.svg"):
        out = os.path.join(STATIC_OUT, name)
        with open(out, "rb") as f, gzip.open(out + ".gz") as g:
            assert g.read() == f.read(), name
        assert os.stat(out + ".gz").st_mtime >= os.stat(out).st_mtime
        if built_with_brotli():
            with open(out + ".br", "rb") as f:
                assert f.read(), name
    assert not os.path.exists(os.path.join(STATIC_OUT, "logo.png.gz"))


def test_make_run_serves_the_static_site(make_server):
    s = make_server("--no-access-log", "--static", "/static=" + STATIC_OUT)
    with s.connect(timeout=T) as c:
        r = c.request(get("/static/index.html"), timeout=T)
        assert r.status == 200 and b"Static files, served by evicorn" in r.body, r
        r = c.request(get("/static/style.css", extra="Accept-Encoding: gzip\r\n"), timeout=T)
        assert r.status == 200 and r.header("content-encoding") == "gzip", r
        with open(os.path.join(STATIC_SRC, "style.css"), "rb") as f:
            assert gzip.decompress(r.body) == f.read()
        r = c.request(get("/static/logo.png"), timeout=T)
        assert r.status == 200 and r.body.startswith(b"\x89PNG"), r
        assert r.header("content-type") == "image/png"
