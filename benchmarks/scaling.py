"""Time and peak memory of the whole Dagster graph at growing corpus sizes (one task, offline defaults).

    .venv/bin/python benchmarks/scaling.py 10000 100000 [1000000]

Each size runs in a fresh subprocess: a corpus made by resampling the bundled banking77 demo (with replacement, ids
renumbered), the `topic` task (budget 1,000, simulated teacher at 0 ms latency, logistic regression and ridge
students), in-process executor, every asset check included. Peak RSS is the child's maximum resident set.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
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
from scalellm_dagster.definitions import ALL_JOB, build_definitions
start = time.perf_counter()
with DagsterInstance.ephemeral() as instance:
    result = build_definitions().resolve_job_def(ALL_JOB).execute_in_process(
        instance=instance, raise_on_error=True,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    steps = {e.step_key: round(e.event_specific_data.duration_ms / 1000, 1)
             for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
print(json.dumps({"seconds": round(time.perf_counter() - start, 1), "ok": result.success,
                  "checks_passed": all(c.passed for c in result.get_asset_check_evaluations()),
                  "slowest_steps": dict(sorted(steps.items(), key=lambda kv: -kv[1])[:5])}))
"""


def main(sizes: list[int]) -> None:
    import pandas as pd

    from scalellm_dagster.settings import DEMO_CORPUS

    demo = pd.read_parquet(DEMO_CORPUS)
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = demo.sample(n=n, replace=True, random_state=0).reset_index(drop=True)
            corpus["id"] = range(n)
            corpus.to_parquet(f"{tmp}/corpus.parquet", index=False)
            Path(f"{tmp}/tasks.yaml").write_text(TASKS)
            env = {**os.environ, "SCALELLM_CORPUS": f"{tmp}/corpus.parquet", "SCALELLM_TASKS": f"{tmp}/tasks.yaml",
                   "SCALELLM_DUCKDB_PATH": f"{tmp}/wh.duckdb", "SCALELLM_SIMULATED_LATENCY_MS": "0",
                   "TQDM_DISABLE": "1"}
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if proc.returncode != 0:
                print(json.dumps({"rows": n, "failed": proc.stderr[-2000:]}))
                continue
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            db_mb = Path(f"{tmp}/wh.duckdb").stat().st_size / 2**20
            print(json.dumps({"rows": n, "wall_seconds": round(wall, 1), **out,
                              "peak_rss_mb": round(max(peak, before) / 1024), "warehouse_mb": round(db_mb)}),
                  flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])
