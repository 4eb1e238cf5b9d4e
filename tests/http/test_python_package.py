"""evicorn as a Python package, in the interpreters users have: `pip install`
from the checkout into a venv of Debian's /usr/bin/python3 and into a venv
of the python3 first on PATH (a separate CPython build with its own prefix),
then serving an app that imports a module only that venv has, with the
venv's `evicorn` command, `python -m evicorn`, and the C binary picking the
venv's interpreter (VIRTUAL_ENV).

pip fetches the build backend (scikit-build-core) from PyPI; these tests
are skipped when PyPI cannot be reached."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from evicorn_harness import evicorn_bin, free_port, python_module_built

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))

APP = '''
import sys

import venvonly


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ("%s %s" % (venvonly.GREETING, sys.prefix)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''


def pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def interpreters():
    """Debian's python3 and the first other python3 on PATH."""
    found = [("debian", "/usr/bin/python3")]
    other = shutil.which("python3")
    if other and os.path.realpath(other) != os.path.realpath("/usr/bin/python3"):
        found.append(("path", other))
    return found


pytestmark = [
    pytest.mark.skipif(not python_module_built(), reason="evicorn's Python module is not built"),
    pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable (the build backend)"),
]


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 600),
                          **kw)


@pytest.fixture(scope="module", params=interpreters(), ids=lambda p: p[0])
def venv(request):
    """A venv of one interpreter with evicorn pip-installed from the
    checkout, and a module (venvonly) that only this venv has."""
    name, python = request.param
    root = tempfile.mkdtemp(prefix="evicorn-venv-%s-" % name)
    try:
        res = run([python, "-m", "venv", root])
        assert res.returncode == 0, res.stderr
        vpy = os.path.join(root, "bin", "python")
        res = run([vpy, "-m", "pip", "install", "-q", REPO])
        assert res.returncode == 0, res.stdout + res.stderr
        purelib = run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                      ).stdout.strip()
        with open(os.path.join(purelib, "venvonly.py"), "w") as f:
            f.write('GREETING = "only in %s"\n' % name)
        app_dir = os.path.join(root, "project")
        os.makedirs(app_dir)
        with open(os.path.join(app_dir, "app2.py"), "w") as f:
            f.write(APP)
        yield name, root, app_dir
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Serving:
    """A server started by argv in app_dir, stopped by PID."""

    def __init__(self, argv, cwd, env):
        self.port = free_port()
        self.proc = subprocess.Popen(argv + ["--port", str(self.port)], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)

    def get(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")  # body ends at the close
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                return data.split(b"\r\n\r\n", 1)[1].decode()
            except (OSError, IndexError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("not serving:\n" + self.stop())
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
        return self.proc.stderr.read()


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def serve_and_check(argv, venv, env):
    name, root, app_dir = venv
    srv = Serving(argv + ["app2:app", "--workers", "2", "--plugins", app_dir], app_dir, env)
    try:
        body = srv.get()
    finally:
        err = srv.stop()
    assert body == "only in %s %s" % (name, root), (body, err)
    return err


def test_console_script_and_version(venv):
    name, root, _ = venv
    res = run([os.path.join(root, "bin", "evicorn"), "--version"], env=clean_env())
    assert (res.returncode, res.stdout) == (0, "evicorn 0.1.0\n"), res
    res = run([os.path.join(root, "bin", "python"), "-m", "evicorn", "--version"],
              env=clean_env())
    assert (res.returncode, res.stdout) == (0, "evicorn 0.1.0\n"), res


def test_the_venvs_evicorn_command_serves_with_the_venvs_packages(venv):
    _, root, _ = venv
    serve_and_check([os.path.join(root, "bin", "evicorn")], venv, clean_env())


def test_python_dash_m_evicorn_serves_with_the_venvs_packages(venv):
    _, root, _ = venv
    serve_and_check([os.path.join(root, "bin", "python"), "-m", "evicorn"], venv, clean_env())


def test_the_binary_serves_with_the_active_venvs_interpreter(venv):
    _, root, _ = venv
    env = clean_env(VIRTUAL_ENV=root, PATH=os.path.join(root, "bin") + ":" + os.environ["PATH"])
    err = serve_and_check([evicorn_bin()], venv, env)
    assert "serving app2:app with %s/bin/python (Python " % root in err, err


def test_the_binary_says_in_one_line_when_no_interpreter_fits(tmp_path):
    # A copy of the binary with no module beside it, and a venv without
    # evicorn: nothing can serve the app.
    binary = tmp_path / "evicorn"
    shutil.copy(evicorn_bin(), binary)
    bare = tmp_path / "bare"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(bare)]).returncode == 0
    res = run([str(binary), "main:app", "--port", "0"], env=clean_env(VIRTUAL_ENV=str(bare)),
              timeout=30)
    assert res.returncode == 1, res
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert "cannot serve main:app with %s/bin/python (Python " % bare in lines[0]
    assert "neither built for it beside this binary nor installed in it" in lines[0]

    res = run([str(binary), "main:app"], env=clean_env(VIRTUAL_ENV=str(tmp_path / "missing")),
              timeout=30)
    assert res.returncode == 1, res
    assert res.stderr.splitlines() == [
        "ERROR:    cannot serve main:app: VIRTUAL_ENV names a folder without bin/python"], \
        res.stderr
