#!/usr/bin/python3
"""Slowloris: a normal client's latency while 1000 connections dribble
request heads.

Starts one evicorn (--workers 1, pinned to --server-cpu with taskset) serving
the example plugins (GET / -> {"Hello":"World"}). The attackers run in a
child process (asyncio, pinned to --client-cpu): --attackers connections,
each sending one more byte of a never-ending request head every --interval
seconds, and reconnecting when the server closes it (the header timeout), so
the attack holds all of them open the whole time. The normal client (this
process, also on --client-cpu) sends --requests sequential GET / and times
each: on one keep-alive connection, then on a fresh connection each. Both
are measured first without the attack (baseline), then under it. Every
answer must be a 200 with the right body; anything else is a failure.
Target: p99 < 10 ms under attack.

    /usr/bin/python3 bench/faults/slowloris.py [--build build] [--requests 3000]
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib  # noqa: E402

HEAD = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 65536
BODY = b'{"Hello":"World"}'
TARGET_P99_MS = 10.0


# ---- the attackers (child process)


async def dribbler(port, interval, stats, stop, index, n):
    # Spread the first bytes over one interval so they do not arrive in step.
    await asyncio.sleep(interval * index / n)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(interval)
            continue
        stats["open"] += 1
        stats["connects"] += 1
        try:
            for i in range(len(HEAD)):
                if stop.is_set():
                    break
                writer.write(HEAD[i:i + 1])
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(4096), interval)
                except asyncio.TimeoutError:
                    continue
                if not data:  # the server closed it: the header timeout
                    stats["closed_by_server"] += 1
                    break
                stats["bytes_from_server"] += len(data)
        except OSError:
            stats["closed_by_server"] += 1
        finally:
            stats["open"] -= 1
            writer.close()


async def attack_main(port, n, interval, ready, stop_evt, result):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    stats = dict(open=0, connects=0, connect_errors=0, closed_by_server=0, bytes_from_server=0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(dribbler(port, interval, stats, stop, i, n)) for i in range(n)]
    reported = False
    min_open = None
    while not stop_evt.is_set():
        await asyncio.sleep(0.05)
        if not reported and stats["open"] >= n:
            ready.set()
            reported = True
        if reported:
            min_open = stats["open"] if min_open is None else min(min_open, stats["open"])
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats["min_open_during_measurement"] = min_open
    result.put(stats)


def attacker_process(port, n, interval, cpu, ready, stop_evt, result):
    benchlib.pin_self(cpu)
    asyncio.run(attack_main(port, n, interval, ready, stop_evt, result))


# ---- the normal client (this process)


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        body += chunk
    return int(head.split()[1]), body


def measure(port, n, fresh):
    """n sequential GET /; returns (latencies in ms, failures)."""
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    lat, failures = [], 0
    sock = None
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(req)
            status, body = read_response(sock)
            ok = status == 200 and body == BODY
        except OSError:
            ok = False
            sock.close() if sock else None
            sock = None
        lat.append((time.perf_counter() - t0) * 1000)
        if not ok:
            failures += 1
        if fresh and sock is not None:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return lat, failures


def row(label, lat, failures):
    return dict(phase=label, requests=len(lat), failures=failures,
                p50=benchlib.percentile(lat, 50), p99=benchlib.percentile(lat, 99), max=max(lat))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(benchlib.ROOT, "build"))
    ap.add_argument("--attackers", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--timeout-header", default="10")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    benchlib.exit_on_signals()
    benchlib.pin_self(args.client_cpu)
    benchlib.raise_nofile(args.attackers + 256)
    binary = os.path.join(args.build, "evicorn")
    plugins = os.path.join(args.build, "plugins")
    rows = []
    with benchlib.Evicorn(binary, plugins, cpu=args.server_cpu,
                          extra=["--timeout-header", args.timeout_header]) as srv:
        srv.wait_ready("/")
        measure(srv.port, 200, False)  # warm-up
        for fresh in (False, True):
            lat, failed = measure(srv.port, args.requests, fresh)
            rows.append(row("baseline, " + ("new conn" if fresh else "keep-alive"), lat, failed))

        ctx = multiprocessing.get_context("fork")
        ready, stop_evt, result = ctx.Event(), ctx.Event(), ctx.Queue()
        attacker = ctx.Process(target=attacker_process,
                               args=(srv.port, args.attackers, args.interval, args.client_cpu,
                                     ready, stop_evt, result))
        attacker.start()
        try:
            if not ready.wait(60):
                raise SystemExit("the attackers did not get %d connections open" % args.attackers)
            time.sleep(2 * args.interval)  # every dribbler has sent a byte or more
            cpu0 = benchlib_cpu(srv.worker)
            t0 = time.monotonic()
            for fresh in (False, True):
                lat, failed = measure(srv.port, args.requests, fresh)
                rows.append(row("attack, " + ("new conn" if fresh else "keep-alive"), lat,
                                failed))
            worker_cpu = (benchlib_cpu(srv.worker) - cpu0) / (time.monotonic() - t0)
        finally:
            stop_evt.set()
            stats = result.get(timeout=60) if attacker.is_alive() or not result.empty() else {}
            attacker.join(30)
            if attacker.is_alive():
                attacker.kill()

    print(f"evicorn --workers 1 --timeout-header {args.timeout_header} on CPU {args.server_cpu}; "
          f"{args.attackers} dribbling connections (1 byte / {args.interval} s) and the client "
          f"on CPU {args.client_cpu}; {args.requests} sequential GET / per row")
    print()
    print("| phase | requests | failed | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['phase']} | {r['requests']} | {r['failures']} | {r['p50']:.3f} | "
              f"{r['p99']:.3f} | {r['max']:.3f} |")
    print()
    print(f"attackers: {stats.get('connects')} connections made, at least "
          f"{stats.get('min_open_during_measurement')} open throughout the measurement, "
          f"{stats.get('closed_by_server')} closed by the server (header timeout), "
          f"{stats.get('bytes_from_server')} bytes received from it")
    print(f"worker CPU during the attack: {worker_cpu * 100:.0f}% of a core")
    attack_p99 = max(r["p99"] for r in rows if r["phase"].startswith("attack"))
    verdict = "meets" if attack_p99 < TARGET_P99_MS else "MISSES"
    print(f"p99 under attack {attack_p99:.3f} ms: {verdict} the target of {TARGET_P99_MS:.0f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, attackers=stats, worker_cpu=worker_cpu), f, indent=1)
    return 0 if attack_p99 < TARGET_P99_MS and not any(r["failures"] for r in rows) else 1


def benchlib_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
