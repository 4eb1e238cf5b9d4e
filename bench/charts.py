"""PNG charts for docs/benchmarks.md, drawn from the summaries bench/report.py
builds (Debian's python3-matplotlib, Agg backend, no display needed).

make(parts, outdir) -> {chart name: file name}; a chart whose data is
missing is not drawn. Each figure is small and plain: one question each."""
import os

SERVER_ORDER = ["evicorn", "baseline", "nginx", "kore", "h2o", "uvicorn", "hypercorn"]
TITLE = {"evicorn": "evicorn", "nginx": "nginx", "kore": "Kore", "h2o": "h2o (mruby)",
         "uvicorn": "uvicorn+FastAPI", "hypercorn": "hypercorn+FastAPI",
         "baseline": "evicorn (baseline)"}
COLOR = {"evicorn": "#d62728", "nginx": "#2ca02c", "kore": "#9467bd", "h2o": "#8c564b",
         "uvicorn": "#1f77b4", "hypercorn": "#ff7f0e", "baseline": "#e377c2",
         "granian": "#17becf", "gunicorn": "#7f7f7f"}
# The servers of bench/pyservers/run.py, in the order its chart shows them.
PYSERVERS_ORDER = ["evicorn", "uvicorn", "granian", "hypercorn", "gunicorn"]
# bench/ws/run.py's servers, their titles and colours.
WS_ORDER = ["evicorn", "kore", "uvicorn", "granian", "bridge", "evicorn-http"]
WS_TITLE = {"evicorn": "evicorn (native)", "kore": "Kore", "uvicorn": "uvicorn",
            "granian": "Granian", "bridge": "evicorn ASGI bridge",
            "evicorn-http": "evicorn, HTTP keep-alive"}
WS_COLOR = {"evicorn": COLOR["evicorn"], "kore": COLOR["kore"], "uvicorn": COLOR["uvicorn"],
            "granian": COLOR["granian"], "bridge": "#ff9896", "evicorn-http": "#7f7f7f"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 110})
    return plt


def throughput(plt, wrk, stalled, path):
    """Grouped bars: median req/s per server, per wrk scenario."""
    import numpy as np

    scens = [s for s in ("plaintext", "json", "pipeline") if wrk.get(s)]
    servers = [n for n in SERVER_ORDER if any(n in wrk[s] for s in scens)]
    labels = {"plaintext": "GET /plaintext", "json": "GET /json",
              "pipeline": "/plaintext, 16 pipelined"}
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(scens))
    w = 0.8 / max(1, len(servers))
    for i, n in enumerate(servers):
        vals = [0 if n in stalled.get(s, {}) else (wrk[s].get(n, {}).get("rps_median") or 0)
                for s in scens]
        bars = ax.bar(x + (i - (len(servers) - 1) / 2) * w, vals, w, label=TITLE[n],
                      color=COLOR[n])
        for b, s in zip(bars, scens):
            if n in stalled.get(s, {}):
                ax.annotate("stalls", (b.get_x() + b.get_width() / 2, 0), ha="center",
                            va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, [labels[s] for s in scens])
    ax.set_ylabel("requests/s (median of runs)")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
    ax.legend(ncol=3, fontsize=8, frameon=False)
    ax.set_title("Throughput, wrk -t1 -c64, one server core")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency(plt, lat, path):
    """p50 and p99 latency against the offered rate, log scale."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
    for ax, key, name in ((axes[0], "latency_p50_us", "p50"), (axes[1], "latency_p99_us", "p99")):
        for n in SERVER_ORDER:
            runs = lat.get(n)
            if not runs:
                continue
            pts = sorted((int(r), v[key]) for r, v in runs.items()
                         if not v.get("skipped") and v.get(key) is not None)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] / 1000 for p in pts], "o-", label=TITLE[n],
                    color=COLOR[n])
            bad = [p for p in pts if not runs[str(p[0])].get("sustained")]
            if bad:
                ax.plot([p[0] for p in bad], [p[1] / 1000 for p in bad], "x", color="black",
                        markersize=9)
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (req/s)")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
        ax.set_title(f"{name} latency, GET /plaintext")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms from intended send time (log)")
    axes[1].legend(fontsize=8, frameon=False)
    fig.text(0.5, 0.005, "x: rate not sustained (see the tables)", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def sleeps(plt, sleep, path):
    """Wall time until the last answer against the number of concurrent sleeps."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for n in SERVER_ORDER:
        per_n = sleep.get(n)
        if not per_n:
            continue
        pts = sorted((int(k), v["wall_s_median"]) for k, v in per_n.items()
                     if v.get("wall_s_median") is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=TITLE[n],
                    color=COLOR[n])
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("concurrent requests, each a 1 s async sleep")
    ax.set_ylabel("wall time to the last answer (s)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("Concurrent async sleeps, one worker")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def idle(plt, idle_res, path):
    """KiB of server RSS per idle keep-alive connection."""
    servers = [n for n in SERVER_ORDER if n in idle_res]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    vals = [idle_res[n]["rss_per_conn_kib"] for n in servers]
    bars = ax.bar([TITLE[n] for n in servers], vals, color=[COLOR[n] for n in servers])
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                    fontsize=8)
    n = next(iter(idle_res.values()))["n"]
    ax.set_ylabel("KiB of RSS per connection")
    ax.set_title(f"{n:,} idle keep-alive connections")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sync_pool(plt, sync, path):
    """The async route's latency percentiles, idle vs pool saturated."""
    keys = [("p50", "latency_p50_us"), ("p90", "latency_p90_us"), ("p99", "latency_p99_us"),
            ("p99.9", "latency_p99_9_us"), ("max", "latency_max_us")]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for label, phase, color in (("idle server", "idle", "#7f7f7f"),
                                ("sync pool saturated", "saturated", "#d62728")):
        ax.plot([k[0] for k in keys], [sync[phase][k[1]] / 1000 for k in keys], "o-",
                label=label, color=color)
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    ax.set_title(f"evicorn GET /plaintext at {sync['rate']:,} req/s")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pyservers(plt, summary, path):
    """bench/pyservers/run.py's summary.json: median req/s and requests per
    server CPU-second per scenario and server (grouped bars), and, when it
    ran, the median time from a file save to the new code under --reload."""
    import numpy as np

    scens = [s for s, d in summary["scenarios"].items()
             if any(v["runs"] for v in d["servers"].values())]
    servers = [n for n in PYSERVERS_ORDER
               if any(summary["scenarios"][s]["servers"].get(n, {}).get("runs") for s in scens)]
    reload_ = {n: r for n, r in (summary.get("reload") or {}).items()
               if r.get("save_to_new_code_ms_median") is not None}
    panels = 2 + (1 if reload_ else 0)
    widths = [3, 3] + ([1.3] if reload_ else [])
    fig, axes = plt.subplots(1, panels, figsize=(11 if reload_ else 9.5, 3.9),
                             gridspec_kw={"width_ratios": widths})
    # each scenario's bars: only the servers it ran, centred on its tick
    present = {s: [n for n in servers if summary["scenarios"][s]["servers"].get(n, {}).get(
        "runs")] for s in scens}
    w = 0.8 / max(1, max(len(v) for v in present.values()))
    for ax, key, ylabel, title in (
            (axes[0], "rps_median", "requests/s (median of runs)", "Throughput"),
            (axes[1], "requests_per_cpu_s_median", "requests per server CPU-second",
             "Requests per server CPU-second")):
        for xi, sc in enumerate(scens):
            names = present[sc]
            for i, n in enumerate(names):
                v = summary["scenarios"][sc]["servers"][n].get(key) or 0
                ax.bar(xi + (i - (len(names) - 1) / 2) * w, v, w, color=COLOR[n])
        ax.set_xticks(np.arange(len(scens)), scens, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
        ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOR[n]) for n in servers]
    fig.legend(handles, servers, loc="lower center", ncol=len(servers), fontsize=8,
               frameon=False)
    if reload_:
        names = [n for n in PYSERVERS_ORDER if n in reload_]
        vals = [reload_[n]["save_to_new_code_ms_median"] for n in names]
        bars = axes[2].bar(names, vals, color=[COLOR[n] for n in names])
        for b, n in zip(bars, names):
            axes[2].annotate(f"{reload_[n]['failed_total']} failed", (
                b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                fontsize=7)
        axes[2].set_ylabel("ms from save to new code (median)")
        axes[2].set_title("--reload under load")
    a = summary["args"]
    fig.suptitle(f"One worker pinned to CPU {a['server_cpu']}, wrk -t1 -c{a['conns']} "
                 f"on CPU {a['client_cpu']}, Python {summary['versions'].get('python', '?')}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def websockets(plt, summary, outdir):
    """bench/ws/run.py's summary.json: ws_echo.png (median echo round trips
    per second and per server CPU-second, per message kind and connection
    count) and ws_broadcast_idle.png (the broadcast's last receiver, RSS per
    idle connection). Returns the file names drawn."""
    import numpy as np

    drawn = []
    echo = summary.get("echo") or {}
    a = summary["args"]
    if echo:
        scens = list(echo)
        fig, axes = plt.subplots(2, len(scens), figsize=(3.6 * len(scens) + 1, 6.4),
                                 squeeze=False)
        names = [n for n in WS_ORDER if any(
            c["servers"].get(n, {}).get("rate_median") for d in echo.values()
            for c in d["by_conns"].values())]
        for col, scen in enumerate(scens):
            d = echo[scen]
            conns = list(d["by_conns"])
            w = 0.8 / max(1, len(names))
            for row, key, ylabel in ((0, "rate_median", "round trips/s"),
                                     (1, "rt_per_server_cpu_s_median",
                                      "round trips per server CPU-s")):
                ax = axes[row][col]
                for i, n in enumerate(names):
                    vals = [d["by_conns"][c]["servers"].get(n, {}).get(key) or 0 for c in conns]
                    bars = ax.bar(np.arange(len(conns)) + (i - (len(names) - 1) / 2) * w, vals,
                                  w, color=WS_COLOR[n], label=WS_TITLE[n])
                    for b, c in zip(bars, conns):
                        st = d["by_conns"][c]["servers"].get(n, {}).get("status")
                        if st in ("n/a", "pending"):
                            ax.annotate(st, (b.get_x() + b.get_width() / 2, 0), ha="center",
                                        va="bottom", fontsize=6, rotation=90)
                ax.yaxis.set_major_formatter(plt.FuncFormatter(
                    lambda v, _: f"{v / 1000:.0f}k" if v >= 1000 or v == 0 else f"{v:.0f}"))
                ax.set_xticks(np.arange(len(conns)), ["%s conn." % c for c in conns],
                              fontsize=8)
                if col == 0:
                    ax.set_ylabel(ylabel)
                if row == 0:
                    ax.set_title(d["title"], fontsize=9)
                ax.grid(True, axis="y", alpha=0.3)
        handles = [plt.Rectangle((0, 0), 1, 1, color=WS_COLOR[n]) for n in names]
        fig.legend(handles, [WS_TITLE[n] for n in names], loc="lower center",
                   ncol=len(names), fontsize=8, frameon=False)
        fig.suptitle("WebSocket echo, one server core (CPU %d), wsload on CPU %d; medians of "
                     "%d runs" % (a["server_cpu"], a["client_cpu"], a["runs"]), fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.savefig(os.path.join(outdir, "ws_echo.png"))
        plt.close(fig)
        drawn.append("ws_echo.png")
    bc = summary.get("broadcast")
    idle = summary.get("idle")
    if bc or idle:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        if bc:
            names = [n for n in WS_ORDER if bc["servers"].get(n, {}).get("all_ms_median")]
            vals = [bc["servers"][n]["all_ms_median"] for n in names]
            bars = axes[0].bar([WS_TITLE[n] for n in names], vals,
                               color=[WS_COLOR[n] for n in names])
            for b, v in zip(bars, vals):
                axes[0].annotate("%.0f" % v, (b.get_x() + b.get_width() / 2, v), ha="center",
                                 va="bottom", fontsize=8)
            axes[0].set_ylabel("ms until the last receiver has it")
            axes[0].set_title("One message to {:,} connections".format(bc["n"]), fontsize=9)
            axes[0].tick_params(axis="x", labelsize=7)
        if idle:
            names = [n for n in WS_ORDER
                     if idle["servers"].get(n, {}).get("rss_per_conn_kib_median") is not None]
            vals = [idle["servers"][n]["rss_per_conn_kib_median"] for n in names]
            bars = axes[1].bar([WS_TITLE[n] for n in names], vals,
                               color=[WS_COLOR[n] for n in names])
            for b, v in zip(bars, vals):
                axes[1].annotate("%.2f" % v, (b.get_x() + b.get_width() / 2, v), ha="center",
                                 va="bottom", fontsize=8)
            axes[1].axhline(4.0, color="grey", lw=0.8, ls="--")
            axes[1].set_ylabel("KiB of RSS per connection")
            axes[1].set_title("{:,} idle connections (dashed: 4 KiB)".format(idle["n"]),
                              fontsize=9)
            axes[1].tick_params(axis="x", labelsize=7)
        for ax in axes:
            plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "ws_broadcast_idle.png"))
        plt.close(fig)
        drawn.append("ws_broadcast_idle.png")
    return drawn


def make(parts, outdir):
    """parts: {"wrk": ..., "stalled": ..., "latency": ..., "sleep": ..., "idle": ...,
    "sync": ..., "pyservers": ..., "ws": ...}, any missing. Returns {name: file name} of the
    charts drawn."""
    try:
        plt = _plt()
    except ImportError:
        print("charts: matplotlib is missing (apt-get install python3-matplotlib); "
              "no charts drawn", flush=True)
        return {}
    os.makedirs(outdir, exist_ok=True)
    drawn = {}
    jobs = [("throughput", "throughput.png", lambda p: throughput(
                plt, parts["wrk"], parts.get("stalled", {}), p), parts.get("wrk")),
            ("latency", "latency_vs_rate.png", lambda p: latency(plt, parts["latency"], p),
             parts.get("latency")),
            ("sleep", "async_sleeps.png", lambda p: sleeps(plt, parts["sleep"], p),
             parts.get("sleep")),
            ("idle", "idle_rss.png", lambda p: idle(plt, parts["idle"], p), parts.get("idle")),
            ("sync", "sync_pool.png", lambda p: sync_pool(plt, parts["sync"], p),
             parts.get("sync")),
            ("pyservers", "pyservers.png", lambda p: pyservers(plt, parts["pyservers"], p),
             parts.get("pyservers"))]
    for name, fname, draw, data in jobs:
        if not data:
            continue
        draw(os.path.join(outdir, fname))
        drawn[name] = fname
    if parts.get("ws"):  # bench/ws/run.py's two charts
        for fname in websockets(plt, parts["ws"], outdir):
            drawn[fname[:-4]] = fname
    return drawn
