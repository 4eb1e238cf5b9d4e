"""A plugin author's path, end to end, outside the source tree.

`cmake --install` the build into a temporary prefix, then build
hello_oot.c against that prefix only, the two documented ways:
  (a) cc -shared -fPIC hello_oot.c $(pkg-config --cflags --libs evicorn)
  (b) a CMake project with find_package(evicorn) + evicorn_add_plugin
Each result must export exactly one symbol, evicorn_plugin_entry, and the
installed server must load both and answer through them.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("EVICORN_BUILD_DIR") or os.path.normpath(
    os.path.join(HERE, "..", "..", "build"))
sys.path.insert(0, os.path.join(HERE, "..", "http"))

from evicorn_harness import Conn, Server, get  # noqa: E402


def run(argv, **kw):
    """Runs a command; on failure the assertion shows its output."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL, **kw)
    assert p.returncode == 0, "%s failed (%d)\n%s\n%s" % (" ".join(argv), p.returncode,
                                                          p.stdout, p.stderr)
    return p.stdout


def own_exports(so):
    """Names of the dynamic symbols the object defines."""
    out = run(["nm", "-D", "--defined-only", so])
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    d = tmp_path_factory.mktemp("prefix")
    run(["cmake", "--install", BUILD, "--prefix", str(d)])
    return d


@pytest.fixture(scope="module")
def pc_env(prefix):
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = str(prefix / "lib" / "pkgconfig")
    return env


@pytest.fixture(scope="module")
def pc_plugin(prefix, pc_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("pc") / "hello_oot_pc.so"
    flags = run(["pkg-config", "--cflags", "--libs", "evicorn"], env=pc_env).split()
    run(["cc", "-shared", "-fPIC", "-std=c17", "-Wall", "-Wextra", "-Werror",
         "-DOOT_NAME=\"pc\"", os.path.join(HERE, "hello_oot.c")] + flags + ["-o", str(out)],
        env=pc_env)
    return out


@pytest.fixture(scope="module")
def cmake_plugin(prefix, tmp_path_factory):
    b = tmp_path_factory.mktemp("cmake-build")
    run(["cmake", "-S", os.path.join(HERE, "project"), "-B", str(b),
         "-DCMAKE_PREFIX_PATH=%s" % prefix, "-DCMAKE_BUILD_TYPE=Release"])
    run(["cmake", "--build", str(b)])
    return b / "plugins" / "hello_oot.so"


def test_install_lays_out_headers_library_and_packages(prefix):
    for rel in ("include/evicorn/abi.h", "include/evicorn/sdk.h", "lib/libevicorn_sdk.a",
                "lib/pkgconfig/evicorn.pc", "lib/cmake/evicorn/evicornConfig.cmake",
                "lib/cmake/evicorn/evicornConfigVersion.cmake",
                "lib/cmake/evicorn/evicornPlugin.cmake"):
        assert (prefix / rel).is_file(), rel


def test_pkg_config_flags_hide_symbols_and_link_the_sdk(pc_env, prefix):
    cflags = run(["pkg-config", "--cflags", "evicorn"], env=pc_env).split()
    libs = run(["pkg-config", "--libs", "evicorn"], env=pc_env).split()
    assert "-fvisibility=hidden" in cflags
    assert any(f.startswith("-I") and os.path.samefile(f[2:], prefix / "include")
               for f in cflags), cflags
    assert "-levicorn_sdk" in libs and "-ljansson" in libs, libs
    assert libs.index("-levicorn_sdk") < libs.index("-ljansson"), libs


def test_sdk_library_exports_nothing_by_default(prefix):
    # Every object in the archive was compiled with -fvisibility=hidden.
    out = run(["readelf", "--syms", "--wide", str(prefix / "lib" / "libevicorn_sdk.a")])
    exported = [l.split()[-1] for l in out.splitlines()
                if " GLOBAL " in l and " DEFAULT " in l and " UND " not in l]
    assert exported == [], exported


def test_pkg_config_build_exports_only_the_entry(pc_plugin):
    assert own_exports(str(pc_plugin)) == ["evicorn_plugin_entry"]


def test_cmake_package_build_exports_only_the_entry(cmake_plugin):
    assert cmake_plugin.is_file()
    assert own_exports(str(cmake_plugin)) == ["evicorn_plugin_entry"]


def test_installed_server_loads_both_and_answers(prefix, pc_plugin, cmake_plugin,
                                                 tmp_path, monkeypatch):
    server = prefix / "bin" / "evicorn"
    assert server.is_file(), "the install has no bin/evicorn"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for so in (pc_plugin, cmake_plugin):
        shutil.copy(so, plugins / so.name)
    monkeypatch.setenv("EVICORN_BIN", str(server))
    srv = Server("--plugins", str(plugins)).start()
    try:
        for name in ("hello_oot_pc", "hello_oot"):
            assert srv.wait_for_log(r"plugin %s\.so: loaded" % name, timeout=5), srv.output()
        for built_with, n in (("pc", 2), ("cmake", 7)):
            with Conn.tcp(srv.port) as c:
                r = c.request(get("/oot/%s?n=%d" % (built_with, n)))
            assert r.status == 200, r
            assert r.header("content-type") == "application/json", r
            assert json.loads(r.body) == {"built_with": built_with, "n": n}
        with Conn.tcp(srv.port) as c:
            r = c.request(get("/oot/pc?n=x"))
        assert r.status == 422, r
    finally:
        srv.stop()
