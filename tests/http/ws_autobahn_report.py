#!/usr/bin/env python3
"""Runs the WebSocket conformance suite (test_ws_autobahn.py) and prints its
per-group table (Markdown), as docs/reliability.md shows it.

    tests/http/ws_autobahn_report.py --build build        # Release build
    tests/http/ws_autobahn_report.py --build build-asan   # sanitizers
    tests/http/ws_autobahn_report.py --junit results.xml  # a finished run

With --build, the server and plugins are taken from that build directory and,
when it was configured with EVICORN_SANITIZE=ON, the environment is the one
ctest gives the sanitized tests (tests/CMakeLists.txt). Without it, the
EVICORN_* variables already set are used. Exits non-zero when a case fails.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "test_ws_autobahn.py")

sys.path.insert(0, HERE)


def group_names():
    # The suite's module names the groups; importing it builds the case
    # table only (no server is started).
    import test_ws_autobahn
    return test_ws_autobahn.GROUPS


def sanitized(build):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            return re.search(r"^EVICORN_SANITIZE:BOOL=(ON|TRUE|1)$", f.read(), re.M) is not None
    except OSError:
        return False


def run(build, junit):
    env = dict(os.environ)
    if build:
        build = os.path.abspath(build)
        env.update(EVICORN_BIN=os.path.join(build, "evicorn"),
                   EVICORN_PLUGINS=os.path.join(build, "plugins"),
                   EVICORN_TEST_PLUGINS=os.path.join(build, "test-plugins"),
                   PYTHONDONTWRITEBYTECODE="1")
        if sanitized(build):
            env.update(ASAN_OPTIONS="handle_segv=0:detect_leaks=1", EVICORN_TIME_SCALE="3")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE,
           "--junitxml", junit]
    return subprocess.run(cmd, cwd=HERE, env=env, stdout=sys.stderr).returncode


def table(junit):
    """[(group, cases, passed, xfailed, failed, seconds)] from a JUnit file."""
    groups = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        m = re.search(r"\[([0-9]+)\.[^\]]*\]$", tc.get("name", ""))
        if not m:
            continue
        g = groups.setdefault(m.group(1), {"cases": 0, "passed": 0, "xfailed": 0, "failed": 0,
                                           "time": 0.0})
        g["cases"] += 1
        g["time"] += float(tc.get("time") or 0)
        kinds = {child.tag for child in tc}
        skipped = tc.find("skipped")
        if "failure" in kinds or "error" in kinds:
            g["failed"] += 1
        elif skipped is not None and "xfail" in skipped.get("type", ""):
            g["xfailed"] += 1
        elif skipped is not None:
            g["failed"] += 1  # a conformance case is never skipped
        else:
            g["passed"] += 1
    return sorted(groups.items(), key=lambda kv: int(kv[0]))


def markdown(rows, names):
    out = ["| group | | cases | passed | xfailed | failed | time (s) |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    tot = {"cases": 0, "passed": 0, "xfailed": 0, "failed": 0, "time": 0.0}
    for g, r in rows:
        out.append("| %s | %s | %d | %d | %d | %d | %.1f |"
                   % (g, names.get(g, ""), r["cases"], r["passed"], r["xfailed"], r["failed"],
                      r["time"]))
        for k in tot:
            tot[k] += r[k]
    out.append("| all | | %d | %d | %d | %d | %.1f |"
               % (tot["cases"], tot["passed"], tot["xfailed"], tot["failed"], tot["time"]))
    return "\n".join(out), tot


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", help="a build directory to take the server from")
    ap.add_argument("--junit", help="report on this JUnit XML file instead of running the suite")
    args = ap.parse_args()
    if args.junit:
        junit, rc = args.junit, 0
    else:
        fd, junit = tempfile.mkstemp(suffix=".xml", prefix="ws-autobahn-")
        os.close(fd)
        rc = run(args.build, junit)
    try:
        text, tot = markdown(table(junit), group_names())
    finally:
        if not args.junit:
            os.unlink(junit)
    print(text)
    return 1 if rc or tot["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
