"""Parallel speedup of the sharded graph: the same corpus run with 1 and with 2 shard runs at a time.

    .venv/bin/python benchmarks/sharding.py [ROWS] [SHARDS]      (default 200000 rows, 4 shards)

The corpus resamples the bundled banking77 demo (ids renumbered); one task (`topic`, budget 1,000, logistic
regression and ridge students, simulated teacher at 0 ms). Each configuration starts from an empty warehouse and
Dagster instance and runs `run_sharded` (the code behind `scalellm run` with SCALELLM_SHARDS set) in a fresh
process. Shard runs are executed by Dagster in worker processes; phase times are wall clock.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from scaling import TASKS  # noqa: E402

CHILD = """
import json, sys
from scalellm_dagster.shard_runs import run_sharded
phases = run_sharded(workers=int(sys.argv[1]), log_level="WARNING", log=lambda _m: None)
print(json.dumps({"ok": all(p.success for p in phases) and len(phases) == 4,
                  "phases": {p.job: round(p.seconds, 1) for p in phases},
                  "shard_run_seconds": {p.job: [round(r.seconds, 1) for r in p.runs] for p in phases if len(p.runs) > 1},
                  "worker_peak_rss_mb": {p.job: max(round(r.peak_rss_mb) for r in p.runs) for p in phases}}))
"""


def main(rows: int, shards: int) -> None:
    import duckdb
    import pandas as pd

    from scalellm_dagster.settings import DEMO_CORPUS, ensure_dagster_home

    demo = pd.read_parquet(DEMO_CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = demo.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
        corpus["id"] = range(rows)
        corpus.to_parquet(f"{tmp}/corpus.parquet", index=False)
        Path(f"{tmp}/tasks.yaml").write_text(TASKS)
        labels = {}
        for workers in (1, 2):
            run_dir = Path(tmp) / f"workers{workers}"
            env = {**os.environ, "SCALELLM_CORPUS": f"{tmp}/corpus.parquet", "SCALELLM_TASKS": f"{tmp}/tasks.yaml",
                   "SCALELLM_DUCKDB_PATH": str(run_dir / "wh.duckdb"), "SCALELLM_SHARDS": str(shards),
                   "SCALELLM_SIMULATED_LATENCY_MS": "0", "TQDM_DISABLE": "1",
                   "DAGSTER_HOME": str(ensure_dagster_home(run_dir / "dagster_home"))}
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, str(workers)], env=env, cwd=ROOT,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                print(json.dumps({"workers": workers, "failed": proc.stderr[-3000:]}))
                return
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            if not out["ok"]:
                print(json.dumps({"workers": workers, **out, "log": proc.stderr[-3000:]}))
                return
            with duckdb.connect(str(run_dir / "wh.duckdb"), read_only=True) as conn:
                labels[workers] = conn.execute("SELECT id, label FROM topic.predictions ORDER BY id").df()
            print(json.dumps({"rows": rows, "shards": shards, "workers": workers, "wall_seconds": round(wall, 1),
                              **out, "peak_rss_mb_any_process": round(
                                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}), flush=True)
        same = labels[1].equals(labels[2])
        print(json.dumps({"predictions_identical_across_worker_counts": bool(same)}))


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(args[0] if args else 200_000, args[1] if len(args) > 1 else 4)
