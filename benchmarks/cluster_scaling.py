"""The whole graph at 1M rows in process and on a 2-worker Dask cluster on this machine, then Amdahl's-law
projections for 10M and 100M rows on 4, 16 and 64 workers, at 30 ms and 500 ms a teacher call.

    .venv/bin/python -m benchmarks.cluster_scaling [--rows 1000000] [--dask local:2] \
        [--out benchmarks/results/cluster_1m.json]

Both runs go through benchmarks/scaling.py (one task, budget 1,000, simulated teacher at 0 ms, every check). The
projection splits the measured cluster run into
- parallel work: the seconds the workers spent on parts (embedding + predicting), which divide by the workers;
- serial work that grows with rows: everything else the run did, minus the teacher-free fixed part, on the driver
  (loading the corpus, the checks' row scans, exporting and ingesting parts, DuckDB writes);
- fixed work: the part of the driver's time that does not grow with rows (sampling, training, selection), taken
  from a 100k-row in-process run's non-embedding, non-prediction steps;
and adds the teacher: 1,000 labels in requests of 10 rows, 8 in flight, at the call latency. The baseline asks the
teacher about every row, one row a request, 8 in flight. Prints a JSON report and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET, BATCH, CONCURRENCY = 1000, 10, 8


def run(rows: int, dask: str = "") -> dict:
    args = [sys.executable, "-m", "benchmarks.scaling", str(rows)] + (["--dask", dask] if dask else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def project(measured: dict, fixed: float, rows: int) -> dict:
    cluster = measured["cluster"]
    parallel = sum(c["cluster_seconds_per_part_mean"] * c["cluster_parts"] for c in cluster.values())
    serial_rows = max(measured["seconds"] - fixed - parallel / measured["workers"], 0.0)
    per_row_parallel, per_row_serial = parallel / rows, serial_rows / rows
    table = {}
    for n in (10_000_000, 100_000_000):
        for workers in (4, 16, 64):
            for latency in (0.03, 0.5):
                teacher = BUDGET / BATCH / CONCURRENCY * latency
                ours = fixed + teacher + per_row_serial * n + per_row_parallel * n / workers
                baseline = n * latency / CONCURRENCY
                table[f"{n // 1_000_000}M rows, {workers} workers, {int(latency * 1000)} ms"] = {
                    "seconds": round(ours),
                    "baseline_seconds": round(baseline),
                    "speedup": round(baseline / ours, 1),
                    "serial_share": round((fixed + teacher + per_row_serial * n) / ours, 3),
                }
    return {
        "parallel_worker_seconds": round(parallel, 1),
        "serial_row_seconds": round(serial_rows, 1),
        "fixed_seconds": round(fixed, 1),
        "projections": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dask", default="local:2")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cluster_1m.json"))
    args = parser.parse_args()
    small = run(100_000)
    fixed = sum(
        s for step, s in small["steps"].items() if not step.startswith(("embeddings", "topic__predictions", "corpus"))
    )
    in_process = run(args.rows)
    on_cluster = run(args.rows, args.dask)
    workers = int(args.dask.split(":")[1]) if args.dask.startswith("local:") else 2
    on_cluster["workers"] = workers
    row_steps = ("embeddings", "topic__predictions")
    speedup = {step: round(in_process["steps"][step] / on_cluster["steps"][step], 2) for step in row_steps}
    report = {
        "rows": args.rows,
        "dask": args.dask,
        "in_process": in_process,
        "on_cluster": on_cluster,
        "step_speedup": speedup,
        "parallel_efficiency": {s: round(v / workers, 2) for s, v in speedup.items()},
        "whole_run_speedup": round(in_process["seconds"] / on_cluster["seconds"], 2),
        **project(on_cluster, fixed, args.rows),
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print("\n| projection | ours (s) | baseline (s) | speedup | serial share |\n|---|---:|---:|---:|---:|")
    for name, p in report["projections"].items():
        print(f"| {name} | {p['seconds']:,} | {p['baseline_seconds']:,} | {p['speedup']}× | {p['serial_share']:.0%} |")


if __name__ == "__main__":
    main()
