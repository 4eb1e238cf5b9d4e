#!/usr/bin/env python3
"""Through a load balancer: plaintext (hello's GET /plaintext) through nginx
to 1, 2 and 3 evicorn instances, and straight to one instance for reference.

    python3 bench/fleet/run.py [--rounds 3] [--duration 10] [--warmup 2]
                               [--connections 64] [--quick] [--docs]

Contenders:

  direct     wrk straight at one instance
  nginx-1    wrk at nginx, upstream: 1 instance
  nginx-2    wrk at nginx, upstream: 2 instances (round robin)
  nginx-3    wrk at nginx, upstream: 3 instances (round robin)

nginx runs docs/deploy/nginx.conf, the recipe as it is (keep-alive to the
upstreams, passive checks), with its listen address, the instances on
127.0.0.1 ports and one worker; every instance is evicorn --workers 1
--no-access-log serving hello.so. This machine has two cores: the instances
and nginx all share CPU 0 (--server-cpu), wrk and this script CPU 1
(--client-cpu), so adding instances adds no CPU and the numbers show what
the balancer costs, not how a fleet scales. Each of --rounds rounds runs
every contender once, the order rotated every round, each after a warm-up
of its own; medians over the rounds.

Output: bench/fleet/results/<UTC timestamp>/ (gitignored): raw/ (wrk's
output), logs/, summary.json and summary.md; --docs also puts the section
into docs/benchmarks.md ("## Through a load balancer").

Needs wrk, taskset and nginx (apt-get install wrk nginx-light).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
SECTION_TITLE = "## Through a load balancer"
PATH = "/plaintext"
EXAMPLE_ADDRESSES = ["10.0.1.11", "10.0.1.12", "10.0.1.13"]
CONTENDERS = ["direct", "nginx-1", "nginx-2", "nginx-3"]


def log(msg):
    print("[fleet %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def nginx_conf(tmp, port, upstreams):
    """docs/deploy/nginx.conf with `upstreams` (127.0.0.1 ports) in place of
    the example instances, listening on 127.0.0.1:port, one worker."""
    with open(os.path.join(ROOT, "docs", "deploy", "nginx.conf")) as f:
        lines = f.read().split("\n")
    out = []
    for line in lines:
        hit = next((a for a in EXAMPLE_ADDRESSES if "server %s:8000" % a in line), None)
        if hit is None:
            out.append(line)
            continue
        k = EXAMPLE_ADDRESSES.index(hit)
        if k < len(upstreams):
            out.append(line.replace("%s:8000" % hit, "127.0.0.1:%d" % upstreams[k]))
    text = "\n".join(out)
    for old, new in (("listen 80;", "listen 127.0.0.1:%d;" % port),
                     ("worker_processes auto;", "worker_processes 1;"),
                     ("/run/nginx-evicorn.pid", os.path.join(tmp, "nginx.pid")),
                     ("/var/log/nginx/evicorn-error.log", os.path.join(tmp, "error.log"))):
        assert old in text, old
        text = text.replace(old, new)
    path = os.path.join(tmp, "nginx-%d.conf" % len(upstreams))
    with open(path, "w") as f:
        f.write(text)
    return path


def wrk(args, port, seconds, out_path):
    cmd = benchlib.taskset(args.client_cpu, [
        "wrk", "-t1", "-c%d" % args.connections, "-d%ds" % seconds, "--latency",
        "http://127.0.0.1:%d%s" % (port, PATH)])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out_path:
        with open(out_path, "w") as f:
            f.write(" ".join(cmd) + "\n" + out.stdout + out.stderr)
    return benchlib.parse_wrk(out.stdout, unit="ms"), " ".join(cmd)


def measure(name, args, ctx, rnd):
    """One run of a contender: (wrk numbers, command)."""
    nginx = None
    try:
        if name == "direct":
            port = ctx["ports"][0]
        else:
            n = int(name.split("-")[1])
            port = benchlib.free_port()
            conf = nginx_conf(ctx["tmp"], port, ctx["ports"][:n])
            nginx = benchlib.PinnedServer(
                "nginx", ["nginx", "-c", conf, "-e", os.path.join(ctx["tmp"], "error.log"),
                          "-g", "daemon off;"],
                cpu=args.server_cpu, port=port,
                log_path=os.path.join(ctx["outdir"], "logs", "nginx.log"), new_session=True)
            nginx.start().wait_ready(PATH, timeout=10)
            benchlib.pin_tree(nginx.proc.pid, [args.server_cpu])
            ctx["commands"]["nginx"] = " ".join(nginx.command) + "  (%s)" % benchlib.rel(conf)
        if args.warmup:
            wrk(args, port, args.warmup, None)
        raw = os.path.join(ctx["outdir"], "raw", "%s-r%d.txt" % (name, rnd))
        r, cmd = wrk(args, port, args.duration, raw)
        ctx["commands"]["wrk"] = cmd
        return r
    finally:
        if nginx is not None:
            nginx.stop()


def section(summary):
    res = summary["results"]
    direct = res.get("direct", {}).get("rps")
    m = summary["machine"]
    lines = [SECTION_TITLE, "",
             "Plaintext (`GET /plaintext` of hello) through nginx running the recipe of "
             "[docs/deploy.md](deploy.md) (`docs/deploy/nginx.conf`: keep-alive to the "
             "upstreams, passive checks, one worker) to 1, 2 and 3 evicorn instances "
             "(`--workers 1` each), and straight to one instance. **This machine has two "
             "cores: the instances and nginx all run on CPU 0, wrk on CPU 1, so more "
             "instances add no CPU: the table shows the balancer's overhead, not how a "
             "fleet scales.** On real hosts each instance has its own cores and the "
             "balancer its own. Medians of %d round(s) of %d s (after %d s of warm-up), "
             "wrk `-t1 -c%d`, order rotated every round. `python3 bench/fleet/run.py%s`, %s."
             % (summary["args"]["rounds"], summary["args"]["duration"],
                summary["args"]["warmup"], summary["args"]["connections"],
                " --quick" if summary["args"]["quick"] else "",
                summary["stamp"]), "",
             "| path | req/s | rounds' range | vs direct | p50 ms | p99 ms | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    titles = {"direct": "wrk → evicorn", "nginx-1": "wrk → nginx → 1 instance",
              "nginx-2": "wrk → nginx → 2 instances", "nginx-3": "wrk → nginx → 3 instances"}
    for name in CONTENDERS:
        r = res.get(name)
        if not r or r.get("rps") is None:
            continue
        ratio = "%.2f×" % (r["rps"] / direct) if direct else "–"
        each = [x["rps"] for x in r["runs"] if x.get("rps") is not None]
        lines.append("| %s | %s | %s | %s | %.2f | %.2f | %d |" % (
            titles[name], "{:,.0f}".format(r["rps"]),
            "{:,.0f}–{:,.0f}".format(min(each), max(each)), ratio, r["p50"] or 0,
            r["p99"] or 0, r["errors"]))
    lines += ["", "The rounds' range shows how steady the machine was: a wide one means "
              "other work shared the cores during the run.",
              "", "Machine: %s, %s cores, %s; nginx %s, wrk %s; evicorn %s (%s)." % (
        m.get("cpu_model", "?"), m.get("cpus"), m.get("kernel"), summary["nginx"],
        summary["wrk"], summary["evicorn"].get("commit", "?"),
        summary["evicorn"].get("CMAKE_BUILD_TYPE", "?"))]
    return "\n".join(lines) + "\n"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, help="rounds (3)")
    ap.add_argument("--duration", type=int, help="measured s per run (10)")
    ap.add_argument("--warmup", type=int, help="s of load before each run (2)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="--rounds 1 --duration 3 --warmup 1")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="the build tree: evicorn and plugins/hello.so (build)")
    ap.add_argument("--docs", action="store_true",
                    help="put the section into docs/benchmarks.md")
    args = ap.parse_args()
    for key, full, quick in (("rounds", 3, 1), ("duration", 10, 3), ("warmup", 2, 1)):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.build = os.path.abspath(args.build)
    return args


def main():
    args = parse_args()
    benchlib.exit_on_signals()
    for tool, pkg in (("wrk", "wrk"), ("taskset", "util-linux"), ("nginx", "nginx-light")):
        if not shutil.which(tool):
            sys.exit("bench/fleet/run.py: %s is not installed (apt-get install %s)" % (tool, pkg))
    if max(args.server_cpu, args.client_cpu) >= (os.cpu_count() or 1):
        sys.exit("bench/fleet/run.py: need CPUs %d and %d" % (args.server_cpu, args.client_cpu))
    binary = os.path.join(args.build, "evicorn")
    hello = os.path.join(args.build, "plugins", "hello.so")
    for p in (binary, hello):
        if not os.path.exists(p):
            sys.exit("bench/fleet/run.py: %s is not built" % benchlib.rel(p))

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    outdir = os.path.join(HERE, "results", stamp)
    for d in ("logs", "raw"):
        os.makedirs(os.path.join(outdir, d))
    tmp = tempfile.mkdtemp(prefix="evicorn-fleet-bench-")
    os.chmod(tmp, 0o755)
    plugins = os.path.join(tmp, "plugins")
    os.mkdir(plugins, 0o755)
    shutil.copy(hello, plugins)  # a private copy: a rebuild must not reload it mid-run
    ctx = {"tmp": tmp, "outdir": outdir, "commands": {}, "ports": []}
    benchlib.pin_self(args.client_cpu)
    instances = []
    runs = {n: [] for n in CONTENDERS}
    try:
        for k in range(3):
            inst = benchlib.Evicorn(binary, plugins, cpu=args.server_cpu,
                                    log_path=os.path.join(outdir, "logs", "evicorn-%d.log" % k))
            instances.append(inst)
            inst.start().wait_ready(PATH)
            ctx["ports"].append(inst.port)
        ctx["commands"]["evicorn"] = " ".join(instances[0].command)
        for rnd in range(args.rounds):
            order = CONTENDERS[rnd % len(CONTENDERS):] + CONTENDERS[:rnd % len(CONTENDERS)]
            for name in order:
                r = measure(name, args, ctx, rnd)
                log("round %d %s: %s req/s, p99 %s ms, errors %d" % (
                    rnd + 1, name, r["rps"], r["p99"], r["socket_errors"] + r["non2xx"]))
                runs[name].append(r)
    finally:
        for inst in instances:
            inst.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name, key):
        return benchlib.median([r[key] for r in runs[name] if r.get(key) is not None])

    results = {n: {"rps": med(n, "rps"), "p50": med(n, "p50"), "p99": med(n, "p99"),
                   "errors": sum(r["socket_errors"] + r["non2xx"] for r in runs[n]),
                   "runs": runs[n]} for n in CONTENDERS}
    summary = {"stamp": stamp, "args": vars(args), "results": results,
               "commands": ctx["commands"], "machine": benchlib.machine(),
               "evicorn": benchlib.evicorn_build_info(args.build),
               "nginx": benchlib.deb_version("nginx-light") or "?",
               "wrk": benchlib.deb_version("wrk") or "?"}
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    text = section(summary)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(text)
    if args.docs:
        benchlib.splice_section(os.path.join(ROOT, "docs", "benchmarks.md"), SECTION_TITLE, text)
    print(text)


if __name__ == "__main__":
    main()
