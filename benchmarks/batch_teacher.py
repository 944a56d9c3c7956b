"""The teacher synchronously and through the Batch API, side by side (issue #44): requests, tokens, cost and wall
time, against the repository's OpenAI-compatible test server answering every row with its gold label.

1. **The demo**: `scalellm run` on the bundled banking77 demo (two tasks, 1,500 + 400 sample rows, their cascades),
   with `SCALELLM_TEACHER=openai` pointed at the server, once per mode, each on a fresh warehouse. Cost, requests
   and tokens are read from the run's ledger.
2. **20,000 sampled rows**: `scalellm bench --teacher openai --teacher-mode batch` on the demo corpus grown to
   40,000 rows (`--resample-to`), budget 20,000 (topic labels), ten rows a request as the demo, the three linear
   candidates (the kernel SVM and the forest take most of an hour at 20,000 rows and measure nothing about the
   teacher): the bench's own side-by-side table.

The server answers a synchronous request after `--latency` seconds (default 0.5 s, a short gpt-4o-mini request of
ten rows) and finishes a batch within three looks at it (`SCALELLM_BATCH_POLL_SECONDS=1`): the batch's wall time
here is this project's own overhead (upload, polls, download, storing). A real provider's batch takes minutes to
hours (within its 24 h window); the wall-time column says what a run costs when nobody is waiting, not how soon a
provider answers.

    .venv/bin/python -m benchmarks.batch_teacher [--latency 0.5] [--skip-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from scalellm_dagster.settings import DEMO_CORPUS, DEMO_TASKS
from scalellm_dagster.tasks_config import load_tasks
from tests.fake_openai import FakeOpenAI

RESULTS = Path(__file__).resolve().parent / "results" / "batch_teacher.json"
SUFFIX = re.compile(r" \[\d+\]$")  # the copies `--resample-to` makes


class GoldServer(FakeOpenAI):
    """Answers each task's prompt with the row's gold label for that task (told apart by its instruction)."""

    def __init__(self, gold: dict[str, dict[str, str]], instructions: dict[str, str], **kw):
        super().__init__(lambda text: "", **kw)
        self.gold, self.instructions = gold, instructions

    def label_for(self, text: str, body: dict) -> str:
        system = body["messages"][0]["content"]
        # the bench's prompt is its own task's (the topic labels), the demo's are the tasks file's
        task = next((name for name, instruction in self.instructions.items() if instruction in system), "topic")
        return self.gold[task][SUFFIX.sub("", text)]


def demo_run(server: GoldServer, mode: str, folder: Path) -> dict:
    db = folder / f"{mode}.duckdb"
    env = {
        **os.environ,
        "SCALELLM_TEACHER": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "SCALELLM_TEACHER_MODE": mode,
        "SCALELLM_BATCH_POLL_SECONDS": "1",
        "SCALELLM_DUCKDB_PATH": str(db),
        "DAGSTER_HOME": str(folder / f"home-{mode}"),
    }
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "scalellm_dagster.cli", "run"], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"scalellm run ({mode}) failed:\n{done.stderr[-3000:]}")
    with duckdb.connect(str(db), read_only=True) as conn:
        requests, rows, prompt, completion, cost, batches = conn.execute(
            """SELECT count(*), sum(rows_answered), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd),
                      count(DISTINCT batch_id) FROM scalellm_cache.teacher_ledger"""
        ).fetchone()
        labels = conn.execute(
            "SELECT count(*) FILTER (WHERE valid) FROM intent.labeled_sample UNION ALL "
            "SELECT count(*) FILTER (WHERE valid) FROM topic.labeled_sample"
        ).fetchall()
    return {
        "teacher_mode": mode,
        "requests": requests,
        "rows_answered": int(rows),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "cost_usd": round(float(cost), 4),
        "batches": batches,
        "run_wall_seconds": round(seconds, 1),
        "valid_sample_labels": [n for (n,) in labels],
    }


def bench_20k(server: GoldServer, folder: Path) -> dict:
    out = folder / "bench.json"
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "SCALELLM_BATCH_POLL_SECONDS": "1"}
    command = [
        sys.executable, "-m", "scalellm_dagster.cli", "bench", "--data", str(DEMO_CORPUS), "--label-column",
        "topic", "--teacher", "openai", "--teacher-mode", "batch", "--resample-to", "40000", "--budgets", "20000",
        "--teacher-batch-size", "10", "--baseline-sample", "50", "--probe-rows", "10000", "--out", str(out),
        "--candidates", "logistic_regression,linear_svm,ridge",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"scalellm bench failed:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per synchronous request")
    parser.add_argument("--skip-bench", action="store_true", help="only the demo")
    args = parser.parse_args()
    corpus = pd.read_parquet(DEMO_CORPUS)
    tasks = load_tasks(DEMO_TASKS)
    gold = {t.name: dict(zip(corpus["text"], corpus[t.gold_column])) for t in tasks}
    instructions = {t.name: t.instruction for t in tasks}
    results: dict = {"server_latency_seconds": args.latency}
    with tempfile.TemporaryDirectory() as tmp, GoldServer(gold, instructions, latency_s=args.latency) as server:
        results["demo"] = [demo_run(server, mode, Path(tmp)) for mode in ("sync", "batch")]
        print(pd.DataFrame(results["demo"]).to_markdown(index=False), flush=True)
        if not args.skip_bench:
            results["bench_20k"] = bench_20k(server, Path(tmp))["runs"]
            print(pd.DataFrame(results["bench_20k"]).to_markdown(index=False), flush=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
