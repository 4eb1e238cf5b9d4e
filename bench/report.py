#!/usr/bin/python3
"""Summarises bench/results/<run>/ folders and regenerates docs/benchmarks.md
and its charts (docs/img/*.png, bench/charts.py).

For every scenario it takes the newest run folder that has it, so a subset
run (`bench/run json`) refreshes only that part of the document. It writes
summary.json into each run folder it used.

    report.py [--results bench/results] [--out docs/benchmarks.md] [--img DIR] [--no-charts]
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import median  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SERVERS = ["evicorn", "nginx", "kore", "uvicorn", "h2o", "hypercorn", "baseline"]
WRK_SCENARIOS = ["plaintext", "json", "pipeline"]
SCENARIO_TITLE = {
    "plaintext": "GET /plaintext",
    "json": "GET /json",
    "pipeline": "GET /plaintext, 16-deep pipelining",
}
SERVER_TITLE = {
    "evicorn": "evicorn", "nginx": "nginx", "kore": "Kore", "uvicorn": "uvicorn+FastAPI",
    "h2o": "h2o (mruby)", "hypercorn": "hypercorn+FastAPI",
    "baseline": "evicorn (baseline)",
}
# (scenario, peer) -> the ratio evicorn/peer aimed at; None: no target.
TARGETS = {
    ("plaintext", "nginx"): 1.0, ("json", "nginx"): 1.0, ("pipeline", "nginx"): 1.5,
    ("plaintext", "kore"): 1.5, ("json", "kore"): 1.5, ("pipeline", "kore"): 1.5,
    ("plaintext", "uvicorn"): 5.0, ("json", "uvicorn"): 5.0, ("pipeline", "uvicorn"): 5.0,
}

def parse_wrk(path):
    """One wrk --latency output (benchlib.parse_wrk: req/s, latency
    percentiles in s, errors) with the run's CPU figures from <path>.cpu."""
    with open(path, errors="replace") as f:
        text = f.read()
    r = {"file": os.path.basename(path)}
    r.update(benchlib.parse_wrk(text))
    cpu = read_kv(path + ".cpu")
    for k, v in cpu.items():
        r[k] = float(v)
    if r.get("server_cpu_s") and r["requests"]:
        r["req_per_cpu_s"] = r["requests"] / r["server_cpu_s"]
    if r.get("server_cpu_s") is not None and r.get("wall_s"):
        r["server_cpu_share"] = r["server_cpu_s"] / r["wall_s"]
    return r


def read_kv(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, sep, v = line.rstrip("\n").partition("=")
                if sep:
                    out[k] = v
    return out


def summarise_run(run_dir):
    """summary.json content for one run folder."""
    meta = read_kv(os.path.join(run_dir, "meta.txt"))
    s = {"run_id": os.path.basename(run_dir), "meta": meta,
         "commands": read_kv(os.path.join(run_dir, "commands.txt")),
         "unavailable": read_kv(os.path.join(run_dir, "unavailable.txt")), "wrk": {},
         "stalled": {}}
    p = os.path.join(run_dir, "stalled.txt")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    s["stalled"].setdefault(parts[0], {})[parts[1]] = {
                        "responses": int(parts[2]), "duration_s": float(parts[3])}
    wrk_dir = os.path.join(run_dir, "wrk")
    for scen in WRK_SCENARIOS:
        d = os.path.join(wrk_dir, scen)
        if not os.path.isdir(d):
            continue
        per, redone = {}, {}
        for name in sorted(os.listdir(d)):
            m = re.match(r"(\w+)\.(\d+)\.txt$", name)
            if m:
                per.setdefault(m.group(1), []).append(parse_wrk(os.path.join(d, name)))
            m = re.match(r"(\w+)\.(\d+)\.txt\.disturbed\d+$", name)
            if m:
                redone[m.group(1)] = redone.get(m.group(1), 0) + 1
        out = {}
        for server, all_runs in per.items():
            # Runs that other processes disturbed (after their retries) are
            # left out while at least two clean ones remain.
            clean = [r for r in all_runs if not r.get("disturbed")]
            runs = clean if len(clean) >= 2 else all_runs
            rps = [r["rps"] for r in runs if r["rps"] is not None]
            out[server] = {
                "runs": len(runs),
                "runs_total": len(all_runs),
                "runs_disturbed_used": sum(1 for r in runs if r.get("disturbed")),
                "runs_redone": redone.get(server, 0),
                "rps": rps,
                "rps_median": median(rps),
                "rps_min": min(rps) if rps else None,
                "rps_max": max(rps) if rps else None,
                "p50_median": median([r["p50"] for r in runs if r["p50"] is not None]),
                "p99_median": median([r["p99"] for r in runs if r["p99"] is not None]),
                "errors": sum(r["socket_errors"] + r["non2xx"] for r in runs),
                "requests": sum(r["requests"] or 0 for r in runs),
                "req_per_cpu_s_median": median([r["req_per_cpu_s"] for r in runs
                                                if r.get("req_per_cpu_s")]),
                "server_cpu_share_median": median([r["server_cpu_share"] for r in runs
                                                   if r.get("server_cpu_share") is not None]),
                "client_core_busy_median": median([r["client_core_busy"] for r in runs
                                                   if r.get("client_core_busy") is not None]),
                "steal_max": max([max(r.get("client_core_steal", 0), r.get("server_core_steal", 0))
                                  for r in runs] or [0]),
                "wrk_command": _first_cmd(d, server),
            }
        s["wrk"][scen] = out
    for key, name in (("sleep", "sleep.json"), ("reload", "hot_reload.json"),
                      ("signing", "plugin_signing.json"),
                      ("loadgen_check", "loadgen_check.json"),
                      ("sync", "sync_pool.json"), ("asgi_json", "asgi/summary.json"),
                      ("pyservers_json", "pyservers/summary.json"),
                      ("ws_json", "ws/summary.json")):
        p = os.path.join(run_dir, name)
        if os.path.exists(p):
            with open(p) as f:
                try:
                    s[key] = json.load(f)
                except ValueError:
                    pass
    for key in ("asgi", "pyservers", "ws"):
        p = os.path.join(run_dir, key, "summary.md")
        if os.path.exists(p):
            with open(p) as f:
                s[key] = f.read()
    lat_dir = os.path.join(run_dir, "latency")
    if os.path.isdir(lat_dir):
        lat = {}
        for name in sorted(os.listdir(lat_dir)):
            m = re.match(r"(\w+)\.(\d+)\.txt$", name)
            if not m:
                continue
            kv = read_kv(os.path.join(lat_dir, name))
            r = {}
            for k, v in kv.items():
                try:
                    r[k] = float(v)
                except ValueError:
                    r[k] = v
            if not r.get("skipped"):
                r["sustained"] = (bool(r.get("scheduled"))
                                  and r.get("completed", 0) >= 0.99 * r["scheduled"]
                                  and r.get("drain_s", 1e9) <= 1.0)
            cmd = os.path.join(lat_dir, name + ".cmd")
            if os.path.exists(cmd):
                with open(cmd) as f:
                    r["command"] = f.read().strip()
            lat.setdefault(m.group(1), {})[m.group(2)] = r
        if lat:
            s["latency"] = lat
    idle_dir = os.path.join(run_dir, "idle")
    if os.path.isdir(idle_dir):
        idle = {}
        for name in sorted(os.listdir(idle_dir)):
            if name.endswith(".json"):
                with open(os.path.join(idle_dir, name)) as f:
                    idle[name[:-5]] = json.load(f)
        if idle:
            s["idle"] = idle
    return s


def _first_cmd(d, server):
    p = os.path.join(d, f"{server}.1.txt.cmd")
    if os.path.exists(p):
        with open(p) as f:
            return f.read().strip()
    return None


# ---- formatting --------------------------------------------------------------

def fmt_rps(x):
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_lat(x):
    if x is None:
        return "n/a"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.2f} ms"
    return f"{x:.2f} s"


def fmt_ratio(x):
    if x is None:
        return "n/a"
    return f"{x:.3f}×" if x < 10 else f"{x:.1f}×"


def fmt_pct(x):
    return "n/a" if x is None else f"{x * 100:.0f} %"


def met(ok):
    return "**met**" if ok else "**not met**"


def shown(cmd, repo=""):
    """A recorded command line for the document: the run's temp folder as
    $TMP, paths inside the repository relative to it (or under `repo`)."""
    cmd = re.sub(r"/tmp/evicorn-bench\.\w+", "$TMP", cmd)
    return cmd.replace(ROOT + "/", repo)


def newest_with(summaries, pred):
    for s in summaries:  # newest first
        if pred(s):
            return s
    return None


def fmt_us(us):
    return "n/a" if us is None else fmt_lat(us / 1e6)


# ---- the document --------------------------------------------------------------

class Doc:
    """The Markdown lines of the report, and the charts drawn for it."""

    def __init__(self, charts, img_rel):
        self.lines = []
        self.charts = charts
        self.img_rel = img_rel

    def add(self, line):
        self.lines.append(line)

    def paras(self, *texts):
        """Each text as a block of its own: the text, then an empty line."""
        for text in texts:
            self.add(text)
            self.add("")

    def chart(self, name, alt):
        if name in self.charts:
            self.add(f"![{alt}]({self.img_rel}/{self.charts[name]})")
            self.add("")

    def table_head(self, titles, align):
        """A table's header row and its separator. align: one letter per
        entry of titles, l or r; a list entry is a run of columns."""
        self.add(row(*titles))
        self.add(row(*[[sep(a)] * len(t) if isinstance(t, list) else sep(a)
                       for t, a in zip(titles, align)]))


def sep(align):
    return "---:" if align == "r" else "---"


def row(*cells):
    """A Markdown table row: a str is a cell, None an empty one, a list a run
    of cells."""
    out = "|"
    for c in cells:
        if c is None:
            out += " |"
        else:
            out += f" {' | '.join(c) if isinstance(c, list) else c} |"
    return out


def bold_evicorn(n):
    return f"**{SERVER_TITLE[n]}**" if n == "evicorn" else SERVER_TITLE[n]


def pick_runs(summaries):
    """For each part of the report, the newest run folder that has it."""
    by_scen = {}
    for scen in WRK_SCENARIOS:
        by_scen[scen] = newest_with(summaries, lambda s, k=scen: k in s["wrk"])
    runs = {
        "by_scen": by_scen,
        "sleep": newest_with(summaries, lambda s: "servers" in s.get("sleep", {})),
        "reload": newest_with(summaries, lambda s: "reload" in s),
        "signing": newest_with(summaries, lambda s: "signing" in s),
        "latency": newest_with(summaries, lambda s: "latency" in s),
        "sync": newest_with(summaries, lambda s: "idle" in s.get("sync", {})),
        "idle": newest_with(summaries, lambda s: "idle" in s),
        "asgi": newest_with(summaries, lambda s: "asgi" in s),
        "pyservers": newest_with(summaries, lambda s: "pyservers" in s),
        "ws": newest_with(summaries, lambda s: "ws" in s),
    }
    runs["used"] = [s for s in summaries
                    if s in list(by_scen.values()) + [runs[k] for k in (
                        "sleep", "reload", "signing", "latency", "sync", "idle", "asgi",
                        "pyservers", "ws")]]
    return runs


def draw_charts(runs, img_dir):
    import charts as charts_mod
    by_scen, latr, sleep = runs["by_scen"], runs["latency"], runs["sleep"]
    idle, sync, pys, ws = runs["idle"], runs["sync"], runs["pyservers"], runs["ws"]
    wrk_parts = {k: v["wrk"][k] for k, v in by_scen.items() if v}
    stalled = {k: v["stalled"].get(k, {}) for k, v in by_scen.items() if v}
    return charts_mod.make({
        "wrk": wrk_parts, "stalled": stalled,
        "latency": latr["latency"] if latr else None,
        "sleep": sleep["sleep"]["servers"] if sleep else None,
        "idle": idle["idle"] if idle else None,
        "sync": sync["sync"] if sync else None,
        "pyservers": pys.get("pyservers_json") if pys else None,
        "ws": ws.get("ws_json") if ws else None}, img_dir)


def intro_section(doc, used):
    add = doc.add
    doc.paras("# Benchmarks",
              "<!-- Generated by bench/run (bench/report.py) from bench/results/; do not edit "
              "by hand. The discussion at the end comes from bench/notes.md. -->")
    runs = ", ".join(f"`{s['run_id']}`" for s in used)
    dates = sorted({s["run_id"][:8] for s in used})
    date_txt = ", ".join(f"{d[:4]}-{d[4:6]}-{d[6:8]}" for d in dates)
    if any(s["meta"].get("quick") == "1" for s in used):
        add("> **These numbers come from a `--quick` run** (short runs, one of each): they "
            "check that the suite works end to end, they are not figures to quote. Run "
            "`bench/run` on a quiet machine for the real ones.")
        add("")
    add(f"Numbers from run{'s' if len(used) > 1 else ''} {runs} of `bench/run` "
        f"(UTC date {date_txt}). "
        "Every figure is the **median** of the runs of that run folder; ratios are "
        "evicorn's median divided by the peer's median from the same run, where all servers "
        "took turns under the same load generator.")
    add("")


def machine_section(doc, meta):
    add = doc.add
    doc.paras("## Machine")
    doc.table_head([None, None], "ll")
    add(row("CPU", f"{meta.get('cpu_model', '?')}, {meta.get('cpus', '?')} cores"
            f"{' (' + meta['hypervisor'] + ' guest)' if meta.get('hypervisor') else ''}"))
    add(row("Memory", meta.get("memory", "?")))
    add(row("Kernel", meta.get("kernel", "?")))
    add(row("OS", meta.get("os", "?")))
    add(row("Pinning", f"server under test on CPU {meta.get('server_cpu')}, load generator on "
            f"CPU {meta.get('client_cpu')} (`taskset -c`)"))
    add("")
    doc.table_head(["Software", "Version"], "ll")
    for key in ["evicorn", "evicorn_commit", "baseline", "nginx", "kore", "uvicorn", "h2o",
                "hypercorn", "wrk"]:
        if key in meta:
            title = "evicorn commit" if key == "evicorn_commit" else SERVER_TITLE.get(key, key)
            add(row(title, meta[key]))
    add("")


def code_block(doc, lines):
    doc.add("```sh")
    for line in lines:
        doc.add(line)
    doc.add("```")
    doc.add("")


def how_to_run_section(doc, used, by_scen):
    add = doc.add
    doc.paras("## How to run")
    code_block(doc, [
        "bench/run                       # everything (about 40 minutes)",
        "bench/run --quick               # short runs, one each: checks the suite end to end",
        "bench/run plaintext json        # a subset: plaintext json pipeline latency sleep sync "
        "idle reload signing asgi pyservers ws",
        "DURATION=5 RUNS=3 bench/run --servers nginx,kore pipeline"])
    add("`bench/run` builds a Release evicorn (and `bench/loadgen`) if needed, starts every "
        "server pinned to CPU 0 (each on its own port on 127.0.0.1, all up for the whole wrk "
        "part), warms each up, then for each scenario runs wrk pinned to CPU 1 against each "
        "server in turn, RUNS times, rotating the order every run; then the fixed-rate latency "
        "runs against the same servers, and the scenarios that start their own servers. Raw "
        "output, server logs and JSON go to `bench/results/<UTC timestamp>/` (not committed); "
        "this file and the charts in `docs/img/` are then regenerated.")
    add("")
    add("The runs reported here:")
    add("")
    code_block(doc, [shown(s["meta"].get("command", "bench/run")) for s in used])
    cmds = first_of_each(used, "commands")
    if cmds:
        add("Servers, as started (`$REPO` is the repository, `$TMP` the run's temp folder; "
            "the configs are copied from `bench/peers/`, and Kore's module is built from a copy "
            "of `bench/peers/kore/` with `kodev flavor prod && kodev build`):")
        add("")
        code_block(doc, [shown(cmds[name], "$REPO/") for name in SERVERS if name in cmds])
    py_cmds = [shown(cmds[k]) for k in ("sleep", "sync", "idle", "reload", "signing", "asgi",
                                        "pyservers", "ws") if k in cmds]
    if py_cmds:
        add("The other benchmarks (each starts and stops its own servers, except "
            "`idle_conns.py`, run against each server started as above, shown for evicorn; "
            "`--json` and `--log` point into the results folder):")
        add("")
        code_block(doc, py_cmds)
    wrk_cmds = []
    for scen in WRK_SCENARIOS:
        s = by_scen[scen]
        if s and "evicorn" in s["wrk"][scen] and s["wrk"][scen]["evicorn"]["wrk_command"]:
            wrk_cmds.append(s["wrk"][scen]["evicorn"]["wrk_command"])
    if wrk_cmds:
        add("Load (shown for evicorn's port; the same for every server):")
        add("")
        code_block(doc, [shown(c) for c in wrk_cmds])
    unavailable = first_of_each(used, "unavailable")
    if unavailable:
        add("Servers missing from a run: " + "; ".join(
            f"{SERVER_TITLE.get(k, k)}: {v}" for k, v in unavailable.items()) + ".")
        add("")


def first_of_each(used, key):
    """The run folders' s[key] dicts merged, the first run's value winning."""
    out = {}
    for s in used:
        for k, v in s[key].items():
            out.setdefault(k, v)
    return out


def target_text(target):
    return '≥ ' + format(target, '.1f') + '×' if target else '—'


def wrk_results(by_scen):
    """For each wrk scenario reported: (scenario, {server: results},
    {server: stall} of its run folder)."""
    for scen in WRK_SCENARIOS:
        s = by_scen[scen]
        if s:
            yield scen, s["wrk"][scen], s["stalled"].get(scen, {})


def rps_cell(n, wrk, stalled):
    """Server n's median req/s in the throughput table."""
    if n in stalled:
        return "stalls"
    if n not in wrk:
        return "n/a"
    v = fmt_rps(wrk[n]["rps_median"])
    v = f"**{v}**" if n == "evicorn" else v
    return v + (" ⚠" if wrk[n].get("runs_disturbed_used") else "")


def throughput_section(doc, by_scen, present):
    add = doc.add
    doc.paras("## Throughput (wrk, 64 connections, 1 thread)")
    doc.chart("throughput", "Median requests per second per server: plaintext, JSON, pipelined")
    add("Median requests per second:")
    add("")
    doc.table_head(["Scenario", [SERVER_TITLE[n] for n in present]], "lr")
    for scen, wrk, stalled in wrk_results(by_scen):
        add(row(SCENARIO_TITLE[scen], [rps_cell(n, wrk, stalled) for n in present]))
    add("")


def peers_section(doc, by_scen, present):
    """evicorn's median against each peer's; returns the verdicts on the
    targets."""
    add = doc.add
    doc.paras("### evicorn against each peer")
    doc.table_head(["Scenario", "Peer", "evicorn / peer", "Target", None], "llrrl")
    verdicts = []
    for scen, wrk, stalled in wrk_results(by_scen):
        if "evicorn" not in wrk:
            continue
        ev = wrk["evicorn"]["rps_median"]
        for peer in present:
            if peer == "evicorn":
                continue
            ratio = (ev / wrk[peer]["rps_median"]
                     if peer in wrk and wrk[peer]["rps_median"] and ev else None)
            target = TARGETS.get((scen, peer))
            if peer in stalled:
                st = stalled[peer]
                add(row(SCENARIO_TITLE[scen], SERVER_TITLE[peer], "—", target_text(target),
                        f"not comparable: {SERVER_TITLE[peer]} stalls ({st['responses']} "
                        f"responses in {st['duration_s']:g} s)"))
                continue
            if target is None:
                verdict = "(no target)"
            elif ratio is None:
                verdict = "n/a"
            else:
                verdict = met(ratio >= target)
                verdicts.append((scen, peer, ratio, target, ratio >= target))
            add(row(SCENARIO_TITLE[scen], SERVER_TITLE[peer], fmt_ratio(ratio),
                    target_text(target), verdict))
    add("")
    return verdicts


def spread_section(doc, by_scen, meta):
    add = doc.add
    doc.paras("### Spread and latency",
              "Per server: median req/s, the lowest and highest run, wrk's p50 and p99 latency "
              "(medians over the runs; not shown with pipelining, where wrk's percentiles "
              "are not meaningful), and the errors wrk saw over all runs (socket errors + "
              "non-2xx answers).")
    doc.table_head(["Scenario", "Server", "Runs", "Median req/s", "Min – max", "p50", "p99",
                    "Errors", "Server CPU", "Client core busy"], "llrrrrrrrr")
    for scen, wrk, stalled in wrk_results(by_scen):
        for n in SERVERS:
            if n not in wrk:
                continue
            r = wrk[n]
            if n in stalled:
                st = stalled[n]
                add(row(SCENARIO_TITLE[scen], SERVER_TITLE[n], f"{r['runs']}",
                        f"stalls: {st['responses']} responses in {st['duration_s']:g} s",
                        *[None] * 6))
                continue
            lat = (("—", "—") if scen == "pipeline"
                   else (fmt_lat(r["p50_median"]), fmt_lat(r["p99_median"])))
            nruns = f"{r['runs']}" if r["runs"] == r.get("runs_total", r["runs"]) else \
                f"{r['runs']} of {r['runs_total']}"
            if r.get("runs_redone"):
                nruns += f" ({r['runs_redone']} redone)"
            if r.get("runs_disturbed_used"):
                nruns += " ⚠"
            add(row(SCENARIO_TITLE[scen], SERVER_TITLE[n], nruns, fmt_rps(r["rps_median"]),
                    f"{fmt_rps(r['rps_min'])} – {fmt_rps(r['rps_max'])}", lat[0], lat[1],
                    f"{r['errors']}", fmt_pct(r.get("server_cpu_share_median")),
                    fmt_pct(r.get("client_core_busy_median"))))
    add("")
    add("Runs: the runs the medians are taken from. A run counts as *disturbed* when "
        "processes other than the server took more than "
        f"{float(meta.get('disturb_limit', 0.15)) * 100:.0f} % of the server's core, or "
        "other than wrk of wrk's core (busy time from `/proc/stat` minus the server's and "
        "wrk's own CPU time); `bench/run` sets a disturbed run aside and does it again (up "
        f"to {meta.get('retries', 2)} times: \"redone\"), and a run still disturbed after "
        "that is left out of the medians while two clean runs remain (\"4 of 5\"), or used "
        "and marked ⚠ otherwise.")
    add("")
    add("Server CPU is the CPU time of the server's processes (master and workers, from "
        "`/proc/<pid>/stat`) over the wall time of the run, in % of one core; client core busy "
        "is the share of CPU " + str(meta.get("client_cpu", 1)) + " (wrk's core) not idle, "
        "from `/proc/stat`. When the client core is ~100 % busy while a server's CPU is below "
        "100 %, wrk, not that server, set the pace.")
    add("")


def cpu_cost_section(doc, by_scen, present):
    add = doc.add
    doc.paras("### Requests per CPU-second of the server",
              "Requests served divided by the CPU time the server's processes used (median over "
              "the runs): how much work each server does per request, independent of whether the "
              "client or the server was the bottleneck. No targets; shown to read the throughput "
              "ratios right.")
    doc.table_head(["Scenario", [SERVER_TITLE[n] for n in present], "evicorn / best C peer"],
                   "lrr")
    for scen, wrk, stalled in wrk_results(by_scen):
        vals = {n: wrk[n].get("req_per_cpu_s_median") for n in present
                if n in wrk and n not in stalled}
        cells = ["stalls" if n in stalled else fmt_rps(vals.get(n)) for n in present]
        c_peers = [vals[n] for n in ("nginx", "kore", "h2o") if vals.get(n)]
        ratio = (vals["evicorn"] / max(c_peers)
                 if vals.get("evicorn") and c_peers else None)
        add(row(SCENARIO_TITLE[scen], cells, fmt_ratio(ratio)))
    add("")


def wrk_sections(doc, by_scen, meta):
    """Throughput, the ratios to the peers, spread and CPU cost; returns the
    verdicts on the targets."""
    present = [n for n in SERVERS if any(s and n in s["wrk"][k] for k, s in by_scen.items())]
    throughput_section(doc, by_scen, present)
    verdicts = peers_section(doc, by_scen, present)
    spread_section(doc, by_scen, meta)
    cpu_cost_section(doc, by_scen, present)
    return verdicts


def latency_section(doc, latr):
    add = doc.add
    L_ = latr["latency"]
    m = latr["meta"]
    rates = sorted({int(r) for runs in L_.values() for r in runs})
    rate_titles = [f"{r:,} req/s" for r in rates]
    doc.paras("## Latency at fixed request rates (`bench/loadgen`)",
              "wrk measures how fast a server can go; at that point every queue is full, and its "
              "percentiles hide the requests wrk did not send while a response was late "
              "(coordinated omission). Here `bench/loadgen` (open loop, pinned to CPU "
              f"{m.get('client_cpu', 1)}) sends `GET /plaintext` at a constant rate over "
              f"{m.get('lat_conns', 64)} keep-alive connections, one request in flight per "
              "connection, for "
              f"{m.get('lat_duration', '?')} s after a {m.get('lat_warmup', '?')} s warm-up at the "
              "same rate. Each latency runs from the request's *intended* send time to the end of "
              "its response, so a stall is charged to every request that was due during it. The "
              "rates are fixed, well below evicorn's wrk peak; a server that answers fewer than "
              "99 % of the scheduled requests, or still owes answers more than 1 s after the last "
              "scheduled send, did not sustain the rate (marked ✗) and is not run at the higher "
              "ones (—).")
    doc.chart("latency", "p50 and p99 latency against the offered rate, per server")
    for title, key in (("p50", "latency_p50_us"), ("p99", "latency_p99_us"),
                       ("p99.9", "latency_p99_9_us")):
        add(f"**{title}**:")
        add("")
        doc.table_head(["Server", rate_titles], "lr")
        for n in SERVERS:
            if n not in L_:
                continue
            cells = []
            for r in rates:
                v = L_[n].get(str(r))
                if v is None:
                    cells.append("n/a")
                elif v.get("skipped"):
                    cells.append("—")
                else:
                    c = fmt_us(v.get(key))
                    cells.append(c if v.get("sustained") else f"{c} ✗")
            add(row(bold_evicorn(n), cells))
        add("")
    ev = L_.get("evicorn", {})
    add("evicorn's p99 against each peer's at the same rate (peer / evicorn: above 1× "
        "means evicorn's tail is shorter):")
    add("")
    doc.table_head(["Peer", rate_titles], "lr")
    for n in SERVERS:
        if n == "evicorn" or n not in L_:
            continue
        cells = []
        for r in rates:
            a, b = ev.get(str(r), {}), L_[n].get(str(r), {})
            if a.get("latency_p99_us") and b.get("latency_p99_us") and not b.get("skipped"):
                cells.append(fmt_ratio(b["latency_p99_us"] / a["latency_p99_us"]))
            else:
                cells.append("—")
        add(row(SERVER_TITLE[n], cells))
    add("")
    add("Answered / scheduled, and loadgen's own send lag (median, p99: how late requests "
        "left the client; it grows when every connection is waiting on the server):")
    add("")
    doc.table_head(["Server", "Rate", "Answered", "Errors", "Send lag p50", "Send lag p99",
                    "Max latency"], "lrrrrrr")
    for n in SERVERS:
        for r in rates:
            v = L_.get(n, {}).get(str(r))
            if not v or v.get("skipped"):
                continue
            errs = sum(int(v.get(k, 0)) for k in ("non2xx", "io_errors", "timeouts"))
            add(row(SERVER_TITLE[n], f"{r:,}", f"{int(v.get('completed', 0)):,} / "
                    f"{int(v.get('scheduled', 0)):,}", f"{errs}", fmt_us(v.get("send_lag_p50_us")),
                    fmt_us(v.get("send_lag_p99_us")), fmt_us(v.get("latency_max_us"))))
    add("")
    cmd = ev.get(str(rates[0]), {}).get("command") if rates else None
    if cmd:
        code_block(doc, [shown(cmd) + "    # one run; the same for every server and rate"])
    chk = latr.get("loadgen_check")
    if chk and "delay" in chk and "stall" in chk:
        d, st = chk["delay"], chk["stall"]
        add("The generator is checked at the start of this part against servers with a "
            "known answer (`bench/loadgen/validate.py`, 1,000 req/s for 5 s): a server that "
            f"answers every request after a fixed 10 ms gave p50 {fmt_us(d['latency_p50_us'])}"
            f" (expected 10–12 ms: {'pass' if d['passed'] else '**fail**'}); the same server "
            "without the delay, stopped with SIGSTOP for 1 s mid-run, gave p50 "
            f"{fmt_us(st['latency_p50_us'])}, p90 {fmt_us(st['latency_p90_us'])}, p99 "
            f"{fmt_us(st['latency_p99_us'])} and max {fmt_us(st['latency_max_us'])}: the "
            "requests due during the pause are charged for it "
            f"({'pass' if st['passed'] else '**fail**'}).")
        add("")


def sleep_section(doc, sleep):
    """The concurrent sleeps; returns the verdicts on evicorn's targets."""
    add = doc.add
    S = sleep["sleep"]
    sv = S["servers"]
    ns = S.get("ns") or sorted({int(k) for v in sv.values() for k in v})
    any_ = next(iter(next(iter(sv.values())).values()))
    doc.paras("## Concurrent 1 s async sleeps (`bench/async_sleep.py`)",
              "One worker per server, fresh for every round (CPU "
              f"{S['server_cpu']}): evicorn's `GET /weather/<city>` (the weather plugin: a 1 s "
              "timer on the event loop) against the same route in FastAPI (`await "
              "asyncio.sleep(1)`, `bench/peers/fastapi_app.py`) on uvicorn and hypercorn. The "
              f"client (CPU {S['client_cpu']}, raw non-blocking sockets on epoll) opens N "
              "connections, then sends one request on each and waits for every answer. Wall time "
              "runs from the first send to the last answer; RSS is the worker's VmRSS (evicorn's "
              "worker process; the single uvicorn/hypercorn process), before any connection and "
              f"at its highest while all requests are pending. Medians of {any_['rounds']} "
              "round(s).")
    doc.chart("sleep", "Wall time until the last answer against concurrency, per server")
    doc.table_head(["Server", "N", "Successful (worst round)", "Wall time", "First answer",
                    "RSS before → peak", "RSS growth per request"], "lrrrrrr")
    for n in SERVERS:
        if n not in sv:
            continue
        for k in ns:
            v = sv[n].get(str(k))
            if not v:
                continue
            wall = v.get("wall_s_median")
            first = v.get("first_response_s_median")
            rounds = v.get("per_round", [])
            peak = [r.get("rss_peak_kib") for r in rounds if r.get("rss_peak_kib")]
            before = [r.get("rss_before_kib") for r in rounds if r.get("rss_before_kib")]
            growth = v.get("rss_growth_per_request_max_kib_median")
            add(row(bold_evicorn(n), f"{k:,}", f"{v['ok_min']:,} / {k:,}",
                    'n/a' if wall is None else f'{wall:.3f} s',
                    'n/a' if first is None else f'{first:.3f} s',
                    f"{fmt_rps(median(before)) if before else 'n/a'} → "
                    f"{fmt_rps(median(peak)) if peak else 'n/a'} KiB",
                    'n/a' if growth is None else f'{growth:.2f} KiB'))
    add("")
    verdicts = []
    ev = sv.get("evicorn", {}).get("10000")
    if ev and ev.get("wall_s_median") is not None:
        g = ev.get("rss_growth_per_request_kib_median")
        wall_ok = ev["wall_s_median"] <= 1.3 and ev["ok_min"] == 10000
        rss_ok = g is not None and g <= 8.0
        add("evicorn at 10,000 against its targets: wall time "
            f"{ev['wall_s_median']:.3f} s (≤ 1.3 s: {met(wall_ok)}), worker RSS growth "
            f"{g:.2f} KiB per pending request measured 0.5 s after the first send "
            f"(≤ 8 KiB: {met(rss_ok)}; of which the open connection "
            f"{ev['rss_connections_per_conn_kib_median']:.2f} KiB).")
        add("")
        verdicts.append(("weather wall", None, ev["wall_s_median"], 1.3, wall_ok))
        verdicts.append(("weather rss", None, g, 8.0, rss_ok))
    return verdicts


def sync_section(doc, sync):
    add = doc.add
    y = sync["sync"]
    i_, s_ = y["idle"], y["saturated"]
    doc.paras("## Async latency while the sync pool is saturated (`bench/sync_pool.py`)",
              "One evicorn worker with the hello plugin (async routes, on the event loop) and the "
              f"calculate plugin (`POST /calculate/`: a sync route, 2 s of blocking work on the "
              f"thread pool, `--threads {y['threads']}`). `bench/loadgen` sends `GET /plaintext` "
              f"at {y['rate']:,} req/s (open loop, {y['duration_s']:g} s after a "
              f"{y['warmup_s']:g} s warm-up), first on the idle server, then while "
              f"{y['sync_conns']} client threads keep `POST /calculate/` requests going back to "
              "back, so every pool thread is busy and as many requests again wait in its queue. "
              f"During the saturated phase the pool answered {y['sync_answers_per_s']:.1f} sync "
              f"requests per second (a full pool: {y['sync_answers_per_s_full_pool']:g}/s).")
    doc.chart("sync", "Async route latency percentiles, idle vs sync pool saturated")
    doc.table_head(["Phase", "p50", "p90", "p99", "p99.9", "max", "Answered"], "lrrrrrr")
    for label, r in (("idle", i_), ("sync pool saturated", s_)):
        add(row(label, fmt_us(r["latency_p50_us"]), fmt_us(r["latency_p90_us"]),
                fmt_us(r["latency_p99_us"]), fmt_us(r["latency_p99_9_us"]),
                fmt_us(r["latency_max_us"]),
                f"{int(r['completed']):,} / {int(r['scheduled']):,}"))
    add("")
    if y.get("p99_ratio"):
        add(f"p99 saturated / idle: {fmt_ratio(y['p99_ratio'])}.")
        add("")


def idle_section(doc, idle):
    add = doc.add
    I_ = idle["idle"]
    k = next(iter(I_.values()))["n"]
    doc.paras("## Idle keep-alive connections (`bench/idle_conns.py`)",
              f"Each server, freshly started as in the wrk part (one worker, CPU 0), gets {k:,} "
              "connections; each sends one `GET /plaintext`, reads the answer and then stays "
              "open and idle. RSS is the sum of VmRSS over the server's processes (master and "
              "workers), before the connections and 1 s after the last answer; the table shows "
              "the growth per connection, and how many connections the server still held at the "
              "end.")
    doc.chart("idle", "KiB of RSS per idle keep-alive connection, per server")
    doc.table_head(["Server", "Processes", "RSS before", "RSS with the connections",
                    "Per connection", "Still open"], "lrrrrr")
    for n in SERVERS:
        if n not in I_:
            continue
        v = I_[n]
        add(row(bold_evicorn(n), f"{len(v.get('pids', []))}", f"{v['rss_before_kib']:,} KiB",
                f"{v['rss_after_kib']:,} KiB", f"{v['rss_per_conn_kib']:.2f} KiB",
                f"{v.get('still_open', 0):,} / {v['n']:,}"))
    add("")


def signing_section(doc, run):
    """What signature checks (--plugin-pubkey) cost a plugin load."""
    add = doc.add
    g = run["signing"]
    doc.paras("## Signed plugins (`bench/plugin_signing.py`)",
              f"The hot-reload loop above with a {g['plugin_bytes'] / 1048576:.1f} MiB plugin "
              f"(the probe with 1 MiB of read-only data), {g['reloads']} swaps per round, "
              f"{g['rounds']} round(s) alternating: unsigned, then signed (evicorn with "
              "`--plugin-pubkey`, each swap staging `probe.so.sig` before `probe.so`). The load "
              "time is the worker's own measure of each load (its debug line: trust checks and "
              "the private copy, the Ed25519 check of the copy, `dlopen` and startup); the swap "
              "time runs from the rename to the first response of the new version, and includes "
              "the watcher's 10 ms debounce.")
    u, s_ = g["unsigned"], g["signed"]

    def ms(v, digits=2):
        return "n/a" if v is None else f"{v:.{digits}f} ms"

    doc.table_head(["Median", "Unsigned", "Signed"], "lrr")
    add(row(f"Load ({u['loads']} / {s_['loads']} loads)", ms(u["load_ms_median"]),
            ms(s_["load_ms_median"])))
    add(row("… trust checks and copy", ms(u["copy_ms_median"]), ms(s_["copy_ms_median"])))
    add(row("… signature check", ms(u["signature_ms_median"]), ms(s_["signature_ms_median"])))
    add(row("… dlopen and startup", ms(u["dlopen_ms_median"]), ms(s_["dlopen_ms_median"])))
    add(row("Rename to first response of the new version", ms(u["swap_ms_median"], 1),
            ms(s_["swap_ms_median"], 1)))
    add(row("Failed requests during all swaps", f"{g['failed_requests']}", None))
    add("")


def reload_section(doc, reload_):
    """The hot reload; returns the verdicts on its targets."""
    add = doc.add
    h = reload_["reload"]
    doc.paras("## Hot reload under load (`bench/hot_reload.py`)",
              f"One evicorn worker serves `--plugins` a temp folder holding the probe plugin. "
              f"{h['conns']} keep-alive connections from one client process hit "
              "`GET /probe/version` back to back the whole time "
              f"(≈ {h['req_per_s']:,.0f} req/s). The other version is copied to a hidden name "
              "in the folder and `os.rename`d over `probe.so`, alternating v1 → v2 → v1 …; the "
              "reload time runs from the rename to the first response carrying the new version. "
              "Any non-200 answer, wrong body, connection error or close, or 5 s without an "
              "answer is a failed request.")
    med = h["reload_ms_median"]
    doc.table_head(["Measure", "Value", "Target", None], "lrrl")
    add(row(f"Reload time, median of {h['reloads_seen']}",
            'n/a' if med is None else f'{med:.1f} ms', "≤ 50 ms", met(h["reload_met"])))
    if med is not None:
        add(row("Reload time, min / p90 / max", f"{h['reload_ms_min']:.1f} / "
                f"{h['reload_ms_p90']:.1f} / {h['reload_ms_max']:.1f} ms", None, None))
        add(row("Longest gap between responses during a reload, median",
                f"{h['max_gap_ms_median']:.1f} ms", None, None))
    add(row("Requests during the test", f"{h['requests']:,}", None, None))
    add(row("Failed requests", f"{h['failed']}", "0", met(h["failed"] == 0)))
    add(row("Old version after the new one showed", f"{h['regressions']}", None, None))
    add("")
    return [("reload time", None, med, 50.0, h["reload_met"]),
            ("reload failures", None, h["failed"], 0, h["failed"] == 0)]


def describe_verdict(v):
    what, peer, val, target, _ = v
    if peer:
        return (f"{SCENARIO_TITLE[what]} vs {SERVER_TITLE[peer]}: "
                f"{fmt_ratio(val)} (target ≥ {target:.1f}×)")
    if what == "weather wall":
        return f"10k weather wall time: {val:.3f} s (target ≤ 1.3 s)"
    if what == "weather rss":
        return f"10k weather RSS growth: {val:.2f} KiB per request (target ≤ 8 KiB)"
    if what == "reload time":
        return f"hot-reload median: {'n/a' if val is None else f'{val:.1f} ms'} (target ≤ 50 ms)"
    return f"hot-reload failed requests: {val} (target 0)"


def targets_section(doc, verdicts):
    add = doc.add
    doc.paras("## Targets at a glance")
    good = [v for v in verdicts if v[4]]
    bad = [v for v in verdicts if not v[4]]
    add(f"Met ({len(good)} of {len(verdicts)}):")
    add("")
    for v in good:
        add(f"- {describe_verdict(v)}")
    add("")
    if bad:
        add(f"Not met ({len(bad)}):")
        add("")
        for v in bad:
            add(f"- {describe_verdict(v)}")
        add("")


def notes_section(doc):
    notes = os.path.join(BENCH, "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            doc.add(f.read().rstrip("\n"))
        doc.add("")


def asgi_section(doc, asgi):
    # The ASGI bridge's benchmark (bench/asgi/run.py) writes its own section;
    # bench/run copies it into its results folder.
    add = doc.add
    results_md = os.path.join(BENCH, "asgi", "RESULTS.md")
    if asgi:
        text = asgi["asgi"].rstrip("\n")
        text = text.replace("## FastAPI through the ASGI bridge",
                            "## FastAPI through the ASGI bridge (`bench/asgi/run.py`)", 1)
        add(text)
        add("")
        cmd = asgi["commands"].get("asgi")
        if cmd:
            add("Run by `bench/run` as:")
            add("")
            code_block(doc, [shown(cmd)])
        if os.path.exists(results_md):
            add("The bridge's own write-up, with a profile of where the time goes: "
                "[bench/asgi/RESULTS.md](../bench/asgi/RESULTS.md).")
            add("")
    elif os.path.exists(results_md):
        with open(results_md) as f:
            add(f.read().rstrip("\n"))
        add("")


def pyservers_section(doc, pys):
    # bench/pyservers/run.py writes its own section; bench/run copies it into
    # its results folder. Its image line is replaced by the chart drawn here.
    if not pys:
        return
    skip_blank = False
    for line in pys["pyservers"].rstrip("\n").split("\n"):
        if line.startswith("![") and "pyservers.png" in line:
            doc.chart("pyservers", "req/s and requests per server CPU-second, per scenario "
                                   "and server")
            skip_blank = True  # chart() adds its own empty line
            continue
        if not (skip_blank and line == ""):
            doc.add(line)
        skip_blank = False
    doc.add("")
    cmd = pys["commands"].get("pyservers")
    if cmd:
        doc.add("Run by `bench/run` as:")
        doc.add("")
        code_block(doc, [shown(cmd)])
    notes = os.path.join(BENCH, "pyservers", "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            for line in f.read().rstrip("\n").split("\n"):
                doc.add(line)
        doc.add("")


def ws_section(doc, ws):
    # bench/ws/run.py writes its own section; bench/run copies it into its
    # results folder. Its image lines are replaced by the charts drawn here,
    # and bench/ws/notes.md (the hand-written verdicts) follows it.
    if not ws:
        return
    skip_blank = False
    for line in ws["ws"].rstrip("\n").split("\n"):
        m = re.match(r"!\[(.*)\]\(img/(ws_\w+)\.png\)$", line)
        if m:
            doc.chart(m.group(2), m.group(1))
            skip_blank = True  # chart() adds its own empty line
            continue
        if not (skip_blank and line == ""):
            doc.add(line)
        skip_blank = False
    doc.add("")
    cmd = ws["commands"].get("ws")
    if cmd:
        doc.add("Run by `bench/run` as:")
        doc.add("")
        code_block(doc, [shown(cmd)])
    notes = os.path.join(BENCH, "ws", "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            for line in f.read().rstrip("\n").split("\n"):
                doc.add(line)
        doc.add("")


# Sections written by benchmarks that bench/run does not run (each script's
# --docs puts its own section into docs/benchmarks.md): kept as they are when
# the rest of the file is regenerated.
STANDALONE_SECTIONS = ("## Outbound HTTP (`bench/fetch/run.py`)",
                       "## Databases (`bench/db/run.py`)",
                       "## Static files (`bench/static/run.py`)")


def standalone_sections(doc, path=os.path.join(ROOT, "docs", "benchmarks.md")):
    try:
        with open(path) as f:
            lines = f.read().rstrip("\n").split("\n")
    except OSError:
        return
    keep = False
    for line in lines:
        if line.startswith("## "):
            keep = line in STANDALONE_SECTIONS
        if keep:
            doc.add(line)
    if doc.lines and doc.lines[-1] != "":
        doc.add("")


def render(summaries, img_dir=None, img_rel="img"):
    runs = pick_runs(summaries)
    used, by_scen = runs["used"], runs["by_scen"]
    doc = Doc(draw_charts(runs, img_dir) if img_dir else {}, img_rel)
    if not used:
        raise SystemExit("no results to report")
    meta = used[0]["meta"]
    intro_section(doc, used)
    machine_section(doc, meta)
    how_to_run_section(doc, used, by_scen)
    verdicts = wrk_sections(doc, by_scen, meta) if any(by_scen.values()) else []
    if runs["latency"]:
        latency_section(doc, runs["latency"])
    if runs["sleep"]:
        verdicts += sleep_section(doc, runs["sleep"])
    if runs["sync"]:
        sync_section(doc, runs["sync"])
    if runs["idle"]:
        idle_section(doc, runs["idle"])
    if runs["reload"]:
        verdicts += reload_section(doc, runs["reload"])
    if runs["signing"]:
        signing_section(doc, runs["signing"])
    if verdicts:
        targets_section(doc, verdicts)
    notes_section(doc)
    asgi_section(doc, runs["asgi"])
    pyservers_section(doc, runs["pyservers"])
    ws_section(doc, runs["ws"])
    standalone_sections(doc)
    return "\n".join(doc.lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(BENCH, "results"))
    ap.add_argument("--out", help="write the Markdown here (default: only summaries)")
    ap.add_argument("--img", help="folder for the PNG charts (default: img/ next to --out)")
    ap.add_argument("--no-charts", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir(a.results):
        raise SystemExit(f"no {a.results}")
    summaries = []
    for name in sorted(os.listdir(a.results), reverse=True):
        d = os.path.join(a.results, name)
        if not os.path.isfile(os.path.join(d, "meta.txt")):
            continue
        s = summarise_run(d)
        with open(os.path.join(d, "summary.json"), "w") as f:
            json.dump(s, f, indent=2)
        summaries.append(s)
    if a.out:
        img_dir = a.img or os.path.join(os.path.dirname(os.path.abspath(a.out)), "img")
        text = render(summaries, img_dir=None if a.no_charts else img_dir,
                      img_rel=os.path.relpath(img_dir, os.path.dirname(os.path.abspath(a.out))))
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
