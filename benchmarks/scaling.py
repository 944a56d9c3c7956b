"""Time and peak memory of the whole Dagster graph at growing corpus sizes (one task, offline defaults).

    .venv/bin/python -m benchmarks.scaling 10000 100000 [1000000]
    .venv/bin/python -m benchmarks.scaling --dask local:2 1000000
    .venv/bin/python -m benchmarks.scaling --dask tcp://127.0.0.1:8786 1000000


Each size runs in a fresh subprocess: a corpus made by resampling the bundled banking77 demo (with replacement, ids
renumbered), the `topic` task (budget 1,000, simulated teacher at 0 ms latency, logistic regression and ridge
students), in-process executor, every asset check included. Peak RSS is the child's maximum resident set, and the
peak of the whole process tree's summed RSS (sampled every 0.2 s) covers the workers of a `--dask local:N` cluster.
With --dask the row-parallel steps (embedding, predicting) run on that cluster (SCALELLM_DASK / _SCHEDULER); each
step's seconds are reported, with the cluster's part times and the driver's export and ingest seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = """tasks:
  - name: topic
    instruction: Decide which support team should handle the message.
    gold_column: topic
    budget: 1000
    candidates: [logistic_regression, ridge]
    labels: [cards, payments_and_cash, transfers, top_ups, fees_and_exchange, account_and_security]
"""

CHILD = """
import json, sys, time
from dagster import DagsterInstance
from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.names import ALL_JOB
start = time.perf_counter()
with DagsterInstance.ephemeral() as instance:
    result = build_definitions().resolve_job_def(ALL_JOB).execute_in_process(
        instance=instance, raise_on_error=True,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    steps = {e.step_key: round(e.event_specific_data.duration_ms / 1000, 1)
             for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    cluster = {e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()
                                               if k.startswith(("cluster_", "driver_"))}
               for e in result.get_asset_materialization_events()
               if any(k.startswith("cluster_") for k in e.materialization.metadata)}
print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "ok": result.success,
                  "checks_passed": all(c.passed for c in result.get_asset_check_evaluations()),
                  "steps": dict(sorted(steps.items(), key=lambda kv: -kv[1])), "cluster": cluster}))
"""


def tree_rss_mb(pid: int) -> float:
    """Summed RSS of a process and all its descendants, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, StopIteration):
            continue
    return total / 1024


def main(sizes: list[int], dask: str = "", part_rows: int = 50_000) -> None:
    import pandas as pd

    from scalellm_dagster.settings import DEMO_CORPUS

    demo = pd.read_parquet(DEMO_CORPUS)
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = demo.sample(n=n, replace=True, random_state=0).reset_index(drop=True)
            corpus["id"] = range(n)
            corpus.to_parquet(f"{tmp}/corpus.parquet", index=False)
            Path(f"{tmp}/tasks.yaml").write_text(TASKS)
            env = {
                **os.environ,
                "SCALELLM_CORPUS": f"{tmp}/corpus.parquet",
                "SCALELLM_TASKS": f"{tmp}/tasks.yaml",
                "SCALELLM_DUCKDB_PATH": f"{tmp}/wh.duckdb",
                "SCALELLM_SIMULATED_LATENCY_MS": "0",
                "TQDM_DISABLE": "1",
                "SCALELLM_DASK_PART_ROWS": str(part_rows),
            }
            if dask:
                env["SCALELLM_DASK_SCHEDULER" if "://" in dask else "SCALELLM_DASK"] = dask
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            args = [sys.executable, "-c", CHILD]
            child = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            peaks: list[float] = []
            sampler = threading.Thread(target=_sample, args=(child, peaks), daemon=True)
            sampler.start()
            stdout, stderr = child.communicate()
            sampler.join()
            tree_peak = max(peaks, default=0.0)
            proc = subprocess.CompletedProcess(args, child.returncode, stdout, stderr)
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if proc.returncode != 0:
                print(json.dumps({"rows": n, "failed": proc.stderr[-2000:]}))
                continue
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            db_mb = Path(f"{tmp}/wh.duckdb").stat().st_size / 2**20
            extra = {"dask": dask, "part_rows": part_rows} if dask else {}
            print(
                json.dumps(
                    {
                        "rows": n,
                        **extra,
                        "wall_seconds": round(wall, 1),
                        **out,
                        "peak_rss_mb": round(max(peak, before) / 1024),
                        "peak_tree_rss_mb": round(tree_peak),
                        "warehouse_mb": round(db_mb),
                    }
                ),
                flush=True,
            )


def _sample(child: subprocess.Popen, peaks: list[float]) -> None:
    while child.poll() is None:
        peaks.append(tree_rss_mb(child.pid))
        time.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument(
        "--dask", default="", help="local:N, or a scheduler address tcp://host:port; default: in process"
    )
    parser.add_argument("--part-rows", type=int, default=50_000, help="rows per part on the cluster")
    a = parser.parse_args()
    main(a.sizes, a.dask, a.part_rows)
