#!/usr/bin/python3
"""Thousands of concurrent 1 s async sleeps on ONE worker: evicorn's
GET /weather/<city> (the weather plugin: a 1 s timer on the event loop)
against the same route in FastAPI (`await asyncio.sleep(1)`,
bench/peers/fastapi_app.py) under uvicorn and hypercorn.

For every server and every concurrency N (-n, e.g. 1000,5000,10000), each
round starts a fresh server (one worker, pinned to --server-cpu), then, from
this process (pinned to --client-cpu, raw non-blocking sockets on epoll):

  1. samples the worker's VmRSS (before),
  2. opens N connections and waits until the worker holds them all,
     samples VmRSS again (connections open),
  3. sends one request on every connection (t0 = first send),
  4. samples VmRSS while all N are pending (~0.5 s after t0: the peak; the
     maximum of the samples taken until the first response is kept too),
  5. waits for every response (status 200 and the city echoed back).

Reported per round: successes, wall time from the first send to the last
response, and the worker's RSS growth per pending request:
(peak - before) / N, with the split into connections and requests. Rounds
are summarised by their medians. Targets (evicorn, N = 10,000): wall time
<= 1.3 s, growth <= 8 KiB per pending request.

    /usr/bin/python3 bench/async_sleep.py [--servers evicorn,uvicorn,hypercorn]
        [-n 1000,5000,10000] [--rounds 3] [--json out.json]
"""
import argparse
import errno
import json
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

CITIES = ["london", "paris", "tokyo", "lima", "oslo", "cairo", "delhi", "quito",
          "rome", "seoul", "sydney", "dakar", "lagos", "perth", "riga", "bern"]


def open_connections(port, n, batch, deadline):
    """Opens n non-blocking connections in batches (so the listen backlog
    never overflows); returns the sockets. Raises on a connect failure."""
    socks = []
    ep = select.epoll()
    try:
        while len(socks) < n:
            pending = {}
            for _ in range(min(batch, n - len(socks))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rc = s.connect_ex(("127.0.0.1", port))
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    raise OSError(rc, f"connect: {os.strerror(rc)}")
                pending[s.fileno()] = s
                ep.register(s.fileno(), select.EPOLLOUT)
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"connecting: {len(socks)} of {n} open")
                for fd, _ in ep.poll(0.5):
                    s = pending.pop(fd)
                    ep.unregister(fd)
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        s.close()
                        raise OSError(err, f"connect: {os.strerror(err)}")
                    socks.append(s)
        return socks
    finally:
        ep.close()


def make_server(args, name):
    if name == "evicorn":
        return benchlib.Evicorn(args.bin, args.plugins, cpu=args.server_cpu, log_path=args.log)
    return benchlib.Peer(name, cpu=args.server_cpu, log_path=args.log)


def one_round(args, name, n):
    res = {"n": n, "server": name}
    with make_server(args, name) as srv:
        # The first request also proves the route works; it takes ~1 s.
        srv.wait_ready("/weather/warmup", timeout=30)
        worker = srv.worker
        res["server_command"] = " ".join(srv.command)
        time.sleep(0.2)
        res["rss_before_kib"] = benchlib.vmrss_kib(worker)
        fds_before = benchlib.fd_count(worker)

        deadline = time.monotonic() + args.timeout
        t_conn = time.perf_counter()
        socks = open_connections(srv.port, n, args.batch, deadline)
        # Wait until the worker has accepted them all (its fd count grows).
        while benchlib.fd_count(worker) < fds_before + n:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker accepted {benchlib.fd_count(worker) - fds_before} of {n}")
            time.sleep(0.01)
        res["connect_s"] = time.perf_counter() - t_conn
        time.sleep(0.1)
        res["rss_connected_kib"] = benchlib.vmrss_kib(worker)

        ep = select.epoll(sizehint=n)
        state = {}
        reqs = []
        for i, s in enumerate(socks):
            city = f"{CITIES[i % len(CITIES)]}{i}"
            reqs.append((s, city, f"GET /weather/{city} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                         .encode()))
            ep.register(s.fileno(), select.EPOLLIN)
            state[s.fileno()] = [city, benchlib.ResponseParser(), None, None]

        # Send everything: all requests are small, so every send completes.
        t0 = time.perf_counter()
        for s, city, data in reqs:
            sent = s.send(data)
            if sent != len(data):
                raise OSError(f"short send on {city}")
            state[s.fileno()][2] = time.perf_counter()
        t_sent = time.perf_counter()
        res["send_s"] = t_sent - t0

        ok = failed = 0
        latencies = []
        t_first = t_last = None
        peak_samples = []
        rss_at_half = None
        remaining = n
        while remaining:
            now = time.perf_counter()
            if now - t0 > args.timeout:
                break
            if t_first is None:
                rss = benchlib.vmrss_kib(worker)
                peak_samples.append(rss)
                if rss_at_half is None and now - t0 >= 0.5:
                    rss_at_half = rss
            events = ep.poll(0.02 if t_first is None else 0.2)
            for fd, ev in events:
                st = state[fd]
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = None
                if data is None or data == b"":
                    failed += 1
                    remaining -= 1
                    ep.unregister(fd)
                    continue
                try:
                    done = st[1].feed(data)
                except ValueError:
                    done, failed, remaining = [], failed + 1, remaining - 1
                    ep.unregister(fd)
                    continue
                if not done:
                    continue
                t = time.perf_counter()
                status, body, _ = done[0]
                if status == 200 and b'"' + st[0].encode() + b'"' in body and (
                        "25°C".encode() in body or b"25\\u00b0C" in body.lower()):
                    ok += 1
                else:
                    failed += 1
                    if failed <= 3:
                        print(f"unexpected answer for {st[0]}: {status} {body[:120]!r}",
                              file=sys.stderr)
                latencies.append(t - st[2])
                t_first = t_first or t
                t_last = t
                remaining -= 1
                ep.unregister(fd)
        ep.close()
        for s in socks:
            s.close()

        res.update({
            "ok": ok,
            "failed": failed + remaining,
            "wall_s": (t_last - t0) if t_last else None,
            "first_response_s": (t_first - t0) if t_first else None,
            "latency_p50_s": benchlib.percentile(latencies, 50),
            "latency_p99_s": benchlib.percentile(latencies, 99),
            "latency_max_s": max(latencies) if latencies else None,
            "rss_half_kib": rss_at_half,
            "rss_peak_kib": max(peak_samples) if peak_samples else None,
            "rss_samples": len(peak_samples),
        })
    before, conn = res["rss_before_kib"], res["rss_connected_kib"]
    peak = res["rss_half_kib"] if res["rss_half_kib"] is not None else res["rss_peak_kib"]
    res["rss_growth_per_request_kib"] = (peak - before) / n
    res["rss_growth_per_request_max_kib"] = (res["rss_peak_kib"] - before) / n
    res["rss_connections_per_conn_kib"] = (conn - before) / n
    res["rss_requests_per_request_kib"] = (peak - conn) / n
    return res


def summarise(rounds, n):
    def med(key):
        vals = [r[key] for r in rounds if r.get(key) is not None]
        return benchlib.median(vals)

    return {
        "n": n,
        "rounds": len(rounds),
        "ok_min": min(r["ok"] for r in rounds),
        "failed_total": sum(r["failed"] for r in rounds),
        "wall_s_median": med("wall_s"),
        "first_response_s_median": med("first_response_s"),
        "send_s_median": med("send_s"),
        "connect_s_median": med("connect_s"),
        "latency_p99_s_median": med("latency_p99_s"),
        "rss_before_kib_median": med("rss_before_kib"),
        "rss_peak_kib_median": med("rss_half_kib") or med("rss_peak_kib"),
        "rss_growth_per_request_kib_median": med("rss_growth_per_request_kib"),
        "rss_growth_per_request_max_kib_median": med("rss_growth_per_request_max_kib"),
        "rss_connections_per_conn_kib_median": med("rss_connections_per_conn_kib"),
        "rss_requests_per_request_kib_median": med("rss_requests_per_request_kib"),
        "per_round": rounds,
    }


def failed_round(name, n, err):
    """A round that could not finish (server down, connects refused, the
    phase limit passed): every request counts as failed."""
    return {"n": n, "server": name, "ok": 0, "failed": n, "wall_s": None, "error": str(err)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(benchlib.ROOT, "build", "evicorn"))
    ap.add_argument("--plugins", default=os.path.join(benchlib.ROOT, "build", "plugins"))
    ap.add_argument("--servers", default="evicorn,uvicorn,hypercorn",
                    help="comma-separated: evicorn, uvicorn, hypercorn")
    ap.add_argument("-n", default="10000", help="concurrent requests; a comma-separated list")
    ap.add_argument("--rounds", type=int, default=3, help="fresh server per round")
    ap.add_argument("--batch", type=int, default=500, help="connections opened per batch")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-phase limit, seconds")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--log", help="append the servers' output here")
    args = ap.parse_args()
    try:
        ns = [int(x) for x in args.n.split(",")]
        if any(x <= 0 for x in ns):
            raise ValueError
    except ValueError:
        ap.error(f"bad -n {args.n!r}: expected positive whole numbers, comma-separated")
    servers = args.servers.split(",")
    for name in servers:
        if name != "evicorn" and name not in benchlib.Peer.KINDS:
            ap.error(f"unknown server {name!r}")

    benchlib.exit_on_signals()
    benchlib.pin_self(args.client_cpu)
    limit = benchlib.raise_nofile(max(ns) + 256)
    if limit < max(ns) + 64:
        sys.exit(f"RLIMIT_NOFILE is {limit}: too low for {max(ns)} connections")
    if "evicorn" in servers and not os.path.exists(os.path.join(args.plugins, "weather.so")):
        sys.exit(f"no weather.so in {args.plugins}")

    out = {"servers": {}, "ns": ns, "client_cpu": args.client_cpu,
           "server_cpu": args.server_cpu, "targets": {"wall_s": 1.3,
                                                      "rss_growth_per_request_kib": 8.0}}
    failed = 0
    for n in ns:
        for name in servers:
            rounds = []
            for r in range(args.rounds):
                try:
                    res = one_round(args, name, n)
                except (OSError, RuntimeError, TimeoutError) as e:
                    res = failed_round(name, n, e)
                    print(f"{name} n={n} round {r + 1}: failed: {e}", flush=True)
                    rounds.append(res)
                    continue
                rounds.append(res)
                print(f"{name} n={n} round {r + 1}: ok {res['ok']}/{n}, failed {res['failed']}, "
                      f"wall {res['wall_s'] or 0:.3f} s (first response "
                      f"{res['first_response_s'] or 0:.3f} s, send {res['send_s'] * 1000:.0f} ms), "
                      f"RSS {res['rss_before_kib']} -> {res['rss_connected_kib']} -> "
                      f"{res['rss_half_kib']} KiB (max {res['rss_peak_kib']}): "
                      f"{res['rss_growth_per_request_kib']:.2f} KiB per pending request",
                      flush=True)
            summ = summarise(rounds, n)
            failed += summ["failed_total"]
            out["servers"].setdefault(name, {})[str(n)] = summ
            wall = summ["wall_s_median"]
            print(f"{name} n={n}: median wall {'n/a' if wall is None else f'{wall:.3f} s'}, "
                  f"successes min {summ['ok_min']}/{n}", flush=True)
    ev = out["servers"].get("evicorn", {}).get("10000")
    if ev and ev["wall_s_median"] is not None:
        out["wall_met"] = ev["wall_s_median"] <= 1.3
        out["rss_met"] = (ev["rss_growth_per_request_kib_median"] or 1e9) <= 8.0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
