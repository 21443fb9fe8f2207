"""Prints the comparison table from the JSON summaries of `trecho bench`.

Usage: python3 bench/table.py RESULTS_DIR

Each file is one run. Of the runs of one system, workload and load, the
table shows the run with the median throughput (the faster middle one for
an even count) and the range of throughput over all of them. The ratio
column divides trecho's median requests per second by the peer's; the
trecho run during a rebalance is a row of its own and not the reference.
"""

import json
import pathlib
import sys


def read_runs(folder):
    groups = {}
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        run = json.loads(path.read_text())
        system = run["target"] + (f" ({run['label']})" if run.get("label") else "")
        key = (run["workload"], f"{run['connections']}x{run['depth']}", system)
        groups.setdefault(key, []).append(run)
    return groups


def median_run(runs):
    ordered = sorted(runs, key=lambda run: run["throughput"])
    return ordered[len(ordered) // 2]


def main():
    groups = read_runs(sys.argv[1])
    header = ("workload", "C x D", "system", "req/s", "range req/s", "booked/s", "p50 ms",
              "p90 ms", "p99 ms", "p99.9 ms", "max ms", "check", "trecho / this")
    rows = [header]
    for (workload, load, system), runs in sorted(groups.items()):
        run = median_run(runs)
        trecho = [
            median_run(r)["throughput"]
            for (w, l, s), r in groups.items()
            if w == workload and l == load and s.startswith("trecho") and "rebalance" not in s
        ]
        ratio = f"{trecho[0] / run['throughput']:.2f}" if trecho and run["throughput"] else "-"
        checks = {run.get("check_passed") for run in runs}
        if False in checks:
            check = "FAILED"
        elif None in checks:
            check = "skipped"
        else:
            check = "ok"
        latency = run["latency_ms"]
        rates = [r["throughput"] for r in runs]
        rows.append((
            workload, load, system,
            f"{run['throughput']:,.0f}",
            f"{min(rates):,.0f}-{max(rates):,.0f}",
            f"{run['bookings_per_second']:,.0f}",
            f"{latency['p50']:.2f}", f"{latency['p90']:.2f}", f"{latency['p99']:.2f}",
            f"{latency['p999']:.2f}", f"{latency['max']:.2f}",
            check, ratio,
        ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


if __name__ == "__main__":
    main()
