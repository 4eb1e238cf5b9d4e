"""Helpers for tests that need plugins: copy built .so files into a running
server's plugins folder the way operators should (temp name + rename)."""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

# The probe plugin's GET /probe/version: its body is the probe's version.
VERSION_REQ = b"GET /probe/version HTTP/1.1\r\nHost: t\r\n\r\n"


def plugin_path(name):
    """Path of a test-only plugin built into build/test-plugins."""
    d = os.environ.get("EVICORN_TEST_PLUGINS") or os.path.join(HERE, "..", "..", "build",
                                                               "test-plugins")
    path = os.path.join(d, name + ".so")
    assert os.path.isfile(path), "test plugin %s not built" % path
    return path


def deploy(srv, src, name):
    """Atomically installs src as <plugins>/<name>."""
    tmp = os.path.join(srv.plugins, "." + name + ".tmp")
    shutil.copyfile(src, tmp)
    os.rename(tmp, os.path.join(srv.plugins, name))


def with_probe(srv, variant="probe", name="probe.so", timeout=5.0):
    """Deploys a probe variant and waits until the worker(s) loaded it."""
    start = len(srv.stderr.snapshot())
    deploy(srv, plugin_path(variant), name)
    # A line per worker; the workers' lines are alike, so they are counted
    # (the info lines: at debug level each load has a timing line too).
    assert srv.wait_for_log_lines(r"plugin %s: (loaded|replaced) .*generation" %
                                  name.replace(".", r"\."),
                                  srv.workers or 1, timeout, start=start) is not None, \
        srv.output()
    return srv
