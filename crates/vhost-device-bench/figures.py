#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
"""Runs vhost-device-bench several times per scenario and prints the
median of every figure (with the min-max spread, to show the noise) as
the Markdown tables of BENCHMARKS.md.

Usage: figures.py [--bench PATH] [--repeat N] [--out DIR] [SCENARIO...]
       figures.py --from DIR          (only re-print from saved JSON)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

SCENARIOS = ["echo", "gpio-get", "i2c-read", "gpu-2d", "sound-null", "rpmsg", "can-tx"]


def run(bench, scenario, i, out, extra):
    path = os.path.join(out, f"{scenario}-{i}.json")
    cmd = [bench, scenario, "--json"] + extra
    print(f"# {' '.join(cmd)}", file=sys.stderr, flush=True)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, check=False)
    if res.returncode != 0:
        print(f"# {scenario} run {i} failed ({res.returncode})", file=sys.stderr)
        return None
    with open(path, "wb") as f:
        f.write(res.stdout)
    return json.loads(res.stdout)


def load_dir(out):
    reports = {}
    for name in sorted(os.listdir(out)):
        if name.endswith(".json"):
            scenario = name.rsplit("-", 1)[0]
            with open(os.path.join(out, name)) as f:
                reports.setdefault(scenario, []).append(json.load(f))
    return reports


def pick(report, placement, shape=None, key=None):
    if shape == "floor":
        for f in report["floor"]:
            if f["placement"] == placement:
                return f["latency"][key]
        return None
    for l in report["loads"]:
        if l["placement"] == placement and l["shape"].startswith(shape):
            v = l
            for k in key.split("."):
                v = None if v is None else v.get(k)
            return v
    return None


def fmt(values, prec):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{prec}f}"
    return f"{med:.{prec}f} ({min(values):.{prec}f}–{max(values):.{prec}f})"


def table(scenario, reports):
    rows = []

    def row(label, get, prec):
        cells = [fmt([get(r, p) for r in reports], prec) for p in ("same-cpu", "cross-cpu")]
        rows.append(f"| {label} | {cells[0]} | {cells[1]} |")

    if scenario == "sound-null":
        def snd(key):
            return lambda r, p: next((s[key] for s in r["sound"] if s["placement"] == p), None)
        row("period completion interval, mean µs", snd("interval_mean_us"), 1)
        row("jitter p50 µs", snd("jitter_p50_us"), 1)
        row("jitter p99 µs", snd("jitter_p99_us"), 1)
        row("jitter max µs", snd("jitter_max_us"), 1)
        row("daemon CPU %", snd("daemon_cpu_percent"), 3)
        row("daemon context switches/s", lambda r, p: next((s["daemon_context_switches"] / s["elapsed_s"] for s in r["sound"] if s["placement"] == p), None), 0)
    else:
        row("floor p50 µs", lambda r, p: pick(r, p, "floor", "p50_us"), 2)
        row("ping-pong p50 µs", lambda r, p: pick(r, p, "ping-pong", "latency.p50_us"), 2)
        row("ping-pong p99 µs", lambda r, p: pick(r, p, "ping-pong", "latency.p99_us"), 2)
        row("ping-pong p999 µs", lambda r, p: pick(r, p, "ping-pong", "latency.p999_us"), 2)
        row("ping-pong p50 ÷ floor p50", lambda r, p: pick(r, p, "ping-pong", "ratio_to_floor_p50"), 2)
        row("pipelined M req/s", lambda r, p: (pick(r, p, "pipelined", "requests_per_s") or 0) / 1e6, 3)
        # The upstream figures came with a 2.41 µs same-cpu floor:
        # scale our throughput by how much slower this machine's floor is.
        row("pipelined M req/s × (floor p50 ÷ 2.41 µs)",
            lambda r, p: (pick(r, p, "pipelined", "requests_per_s") or 0) / 1e6
            * (pick(r, p, "floor", "p50_us") or 0) / 2.41 if p == "same-cpu" else None, 3)
        row("daemon CPU µs/req, ping-pong", lambda r, p: pick(r, p, "ping-pong", "daemon_cpu_us_per_request"), 3)
        row("daemon CPU µs/req, pipelined", lambda r, p: pick(r, p, "pipelined", "daemon_cpu_us_per_request"), 3)
        row("floor: device-thread CPU µs/round trip",
            lambda r, p: next((f["device_thread_cpu_us_per_round_trip"] for f in r["floor"] if f["placement"] == p), None), 3)
        row("floor: frontend-thread CPU µs/round trip",
            lambda r, p: next((f["frontend_thread_cpu_us_per_round_trip"] for f in r["floor"] if f["placement"] == p), None), 3)
        row("frontend CPU µs/req, ping-pong", lambda r, p: pick(r, p, "ping-pong", "frontend_cpu_us_per_request"), 3)
        row("frontend CPU µs/req, pipelined", lambda r, p: pick(r, p, "pipelined", "frontend_cpu_us_per_request"), 3)

        def cs(shape):
            def get(r, p):
                n = pick(r, p, shape, "daemon_context_switches")
                q = pick(r, p, shape, "requests")
                return None if n is None or not q else n / q
            return get
        row("daemon context switches/req, ping-pong", cs("ping-pong"), 3)
        row("daemon context switches/req, pipelined", cs("pipelined"), 4)
        if scenario == "gpu-2d":
            row("transfer+flush MB/s, ping-pong", lambda r, p: pick(r, p, "ping-pong", "mb_per_s"), 0)
            row("transfer+flush MB/s, pipelined", lambda r, p: pick(r, p, "pipelined", "mb_per_s"), 0)
            row("memcpy MB/s (frontend CPU)", lambda r, p: r["memcpy"]["mb_per_s"] if p == "same-cpu" else None, 0)
            row("memcpy out of a memfd, by row, MB/s", lambda r, p: (r.get("memcpy_from_memfd_by_row") or {}).get("mb_per_s") if p == "same-cpu" else None, 0)
            row("same, into a buffer 16 bytes past a page, MB/s", lambda r, p: (r.get("memcpy_from_memfd_by_row_dst_off16") or {}).get("mb_per_s") if p == "same-cpu" else None, 0)
            row("pipelined ÷ memcpy", lambda r, p: (pick(r, p, "pipelined", "mb_per_s") or 0) / r["memcpy"]["mb_per_s"], 2)
    idle = [r["idle"] for r in reports if r.get("idle")]
    rows.append(f"| idle wake-ups/s (frontend connected) | {fmt([i['wakeups_per_s'] for i in idle], 1)} | |")
    rows.append(f"| RSS idle MiB | {fmt([i['memory']['rss_kib'] / 1024 for i in idle], 2)} | |")
    rows.append(f"| RSS idle MiB, private (RssAnon) | {fmt([i['memory']['anon_kib'] / 1024 for i in idle], 2)} | |")
    if scenario != "sound-null":
        load_rss = [max(l["memory"]["rss_kib"] for l in r["loads"] if l.get("memory")) / 1024 for r in reports if r["loads"]]
        rows.append(f"| RSS under load MiB | {fmt(load_rss, 2)} | |")
    m = reports[0]["machine"]
    head = [
        f"### {scenario}",
        "",
        f"{len(reports)} runs, {m['date']} … {reports[-1]['machine']['date']}; "
        f"daemon: `{os.path.basename(reports[0]['daemon']['description'].split(' --socket-path')[0])}`; "
        f"driver {reports[0]['driver']}. Median (min–max).",
        "",
        "| figure | same-cpu | cross-cpu |",
        "|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="target/release/vhost-device-bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="bench-figures")
    ap.add_argument("--from", dest="from_dir")
    ap.add_argument("--extra", default="", help="more bench arguments, space separated")
    ap.add_argument("scenarios", nargs="*", default=SCENARIOS)
    a = ap.parse_args()
    if a.from_dir:
        reports = load_dir(a.from_dir)
    else:
        os.makedirs(a.out, exist_ok=True)
        reports = {}
        # Interleaved, so a burst of load on the machine hits every
        # scenario a little rather than one scenario a lot.
        for i in range(a.repeat):
            for s in a.scenarios:
                r = run(a.bench, s, i, a.out, a.extra.split())
                if r:
                    reports.setdefault(s, []).append(r)
    m = next(iter(reports.values()))[0]["machine"]
    print(f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), Linux {m['kernel']}.\n")
    for s in SCENARIOS + sorted(set(reports) - set(SCENARIOS)):
        if s in reports:
            print(table(s, reports[s]))


if __name__ == "__main__":
    main()
