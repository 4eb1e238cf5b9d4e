#!/usr/bin/python3
"""What signed plugins cost: loading a 1 MiB plugin with and without
--plugin-pubkey.

Runs bench/hot_reload.py's swap loop (8 keep-alive connections on
GET /probe/version the whole time, the other version renamed in every 0.5 s)
with the 1 MiB probe variants (build/test-plugins/probe_big*.so), first
unsigned, then signed (each swap stages NAME.so.sig before NAME.so), for
--rounds rounds of --reloads swaps each, alternating. Reports, per mode, the
median of:
  - the load as the worker times it (its debug line "loaded in ... ms
    (checks and copy, signature, dlopen and startup)");
  - the swap as a client sees it: from the rename to the first response of
    the new version (this includes the watcher's 10 ms debounce).

    /usr/bin/python3 bench/plugin_signing.py [--rounds 3] [--reloads 20] [--json out.json]
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import hot_reload  # noqa: E402

LOADED = re.compile(r"plugin probe\.so: loaded in ([\d.]+) ms \(checks and copy ([\d.]+), "
                    r"signature ([\d.]+), dlopen and startup ([\d.]+)\)")


def one_round(args, signed, log_path):
    run_args = argparse.Namespace(
        bin=args.bin, probe=args.probe, probe_v2=args.probe_v2, reloads=args.reloads,
        conns=8, interval=0.5, warmup=1.0, reload_timeout=5.0, server_cpu=args.server_cpu,
        client_cpu=args.client_cpu, signed=signed,
        # The worker's own timing of each load is a debug line, read back
        # from the server's log.
        server_args=["--log-level", "debug"])
    folder = tempfile.mkdtemp(prefix="evicorn-signing-")
    try:
        return hot_reload.run(run_args, folder, log_path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    build = os.path.join(benchlib.ROOT, "build")
    ap.add_argument("--bin", default=os.path.join(build, "evicorn"))
    ap.add_argument("--probe", default=os.path.join(build, "test-plugins", "probe_big.so"))
    ap.add_argument("--probe-v2", default=os.path.join(build, "test-plugins", "probe_big_v2.so"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    benchlib.exit_on_signals()
    benchlib.pin_self(args.client_cpu)
    for p in (args.bin, args.probe, args.probe_v2):
        if not os.path.exists(p):
            sys.exit(f"missing {p}")
    out = {"plugin_bytes": os.path.getsize(args.probe), "rounds": args.rounds,
           "reloads": args.reloads}
    loads = {False: [], True: []}
    swaps = {False: [], True: []}
    failed = 0
    logdir = tempfile.mkdtemp(prefix="evicorn-signing-logs-")
    try:
        for r in range(args.rounds):
            for signed in (False, True):
                log_path = os.path.join(logdir, f"{r}-{int(signed)}.log")
                res = one_round(args, signed, log_path)
                failed += res["failed"]
                swaps[signed] += [x["ms"] for x in res["reloads"] if x["ms"] is not None]
                with open(log_path, errors="replace") as f:
                    for m in LOADED.finditer(f.read()):
                        loads[signed].append(tuple(float(g) for g in m.groups()))
                print(f"round {r + 1} {'signed' if signed else 'unsigned'}: "
                      f"{len(res['reloads'])} swaps, median "
                      f"{benchlib.median([x['ms'] for x in res['reloads'] if x['ms']]):.1f} ms",
                      file=sys.stderr)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    for signed in (False, True):
        key = "signed" if signed else "unsigned"
        rows = loads[signed]
        out[key] = {
            "loads": len(rows),
            "load_ms_median": benchlib.median([x[0] for x in rows]),
            "copy_ms_median": benchlib.median([x[1] for x in rows]),
            "signature_ms_median": benchlib.median([x[2] for x in rows]),
            "dlopen_ms_median": benchlib.median([x[3] for x in rows]),
            "swap_ms_median": benchlib.median(swaps[signed]),
            "swaps": len(swaps[signed]),
        }
    out["failed_requests"] = failed
    u, s = out["unsigned"], out["signed"]
    print(f"1 MiB plugin ({out['plugin_bytes']} bytes), medians over {u['loads']} / {s['loads']} "
          f"loads:")
    for name, row in (("unsigned", u), ("signed", s)):
        print(f"  {name:8s}: load {row['load_ms_median']:.2f} ms (checks and copy "
              f"{row['copy_ms_median']:.2f}, signature {row['signature_ms_median']:.2f}, "
              f"dlopen and startup {row['dlopen_ms_median']:.2f}); rename to first new "
              f"response {row['swap_ms_median']:.1f} ms")
    print(f"  signature check adds {s['load_ms_median'] - u['load_ms_median']:.2f} ms per load "
          f"(median); failed requests during all swaps: {failed}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
