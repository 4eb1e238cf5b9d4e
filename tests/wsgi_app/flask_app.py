"""A small Flask app, written as Flask apps usually are, served by
evicorn (--interface wsgi) in tests/http/test_wsgi.py and compared with
gunicorn in tests/http/test_wsgi_diff.py. Needs Flask (the tests skip
without it)."""
import hashlib
import time

from flask import (Flask, Response, abort, jsonify, redirect, request, stream_with_context,
                   url_for)

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, Flask!"


@app.get("/json")
def json_route():
    return jsonify(message="Hello, World!", items=[1, 2, 3], nested={"ok": True})


@app.post("/form")
def form():
    return jsonify(fields=request.form.to_dict(flat=False),
                   content_type=request.mimetype)


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(filename=f.filename, mimetype=f.mimetype, size=len(data),
                   sha256=hashlib.sha256(data).hexdigest(),
                   fields=request.form.to_dict(flat=False))


@app.get("/redirect")
def go_elsewhere():
    return redirect(url_for("json_route"))


@app.get("/redirect/permanent")
def go_permanently():
    return redirect("https://example.com/new?x=1", code=308)


@app.get("/cookies/set")
def set_cookies():
    resp = jsonify(set=True)
    resp.set_cookie("session", "abc123", httponly=True, max_age=3600)
    resp.set_cookie("theme", "dark", path="/x", samesite="Lax")
    return resp


@app.get("/cookies")
def read_cookies():
    return jsonify(dict(request.cookies))


@app.get("/abort")
def aborted():
    abort(500)


@app.get("/boom")
def boom():
    raise RuntimeError("flask view failed")


@app.get("/teapot")
def teapot():
    return jsonify(detail="short and stout"), 418, {"X-Custom": "tea"}


@app.get("/stream")
def stream():
    n = request.args.get("n", 5, type=int)
    delay = request.args.get("delay", 0.0, type=float)

    def gen():
        for i in range(n):
            if delay:
                time.sleep(delay)
            # the request context is still there while streaming
            yield "line %d of %s\n" % (i, request.args.get("tag", "t"))

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.get("/args")
def args():
    return jsonify(args=request.args.to_dict(flat=False), path=request.path,
                   full_path=request.full_path)


@app.post("/body")
def body():
    data = request.get_data()
    return jsonify(length=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   content_length=request.content_length)


@app.get("/large")
def large():
    size = request.args.get("size", 100000, type=int)
    return Response(b"x" * size, mimetype="application/octet-stream")


@app.get("/headers")
def headers():
    resp = jsonify(user_agent=request.headers.get("User-Agent"),
                   x_token=request.headers.get("X-Token"),
                   host=request.host, scheme=request.scheme,
                   remote_addr=request.remote_addr)
    resp.headers["X-Custom"] = "one"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@app.route("/methods", methods=["GET", "PUT", "DELETE"])
def methods():
    return jsonify(method=request.method)
