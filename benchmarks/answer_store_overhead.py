"""What keeping each teacher answer safe before the next request costs: 1,000 requests through the real `openai`
client and the DuckDB answer cache, in three ways: warehouse writes grouped every second with no journal (a kill
loses up to a second of answers), a warehouse write per request, and grouped writes with each request's answers
journaled and fsynced first (the default: a kill loses only the requests in flight).

    .venv/bin/python -m benchmarks.answer_store_overhead [--requests 1000] [--batch-size 5] [--latency-ms 0]

The server is the test suite's fake (tests/fake_openai.py) answering at once (or after --latency-ms), so the
differences are the writes alone. Prints JSON: wall seconds of each, the warehouse writes, and the overhead per
request against the first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from scalellm_dagster.openai_client import make_client
from scalellm_dagster.resources.warehouse import Warehouse
from scalellm_dagster.settings import DEMO_CORPUS, DEMO_TASKS
from scalellm_dagster.tasks_config import load_tasks
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests.fake_openai import FakeOpenAI


def run(server, rows: pd.DataFrame, batch_size: int, window: float, folder: Path, journaled: bool) -> dict:
    task = next(t for t in load_tasks(DEMO_TASKS) if t.name == "topic")
    teacher = OpenAIChatTeacher(task, make_client(server.base_url, "bench", 30, 4), "bench-model", 0.15, 0.60)
    warehouse = Warehouse(database=str(folder / f"window{window}-{journaled}.duckdb"))
    cache = warehouse.answer_cache(
        {
            "provider": teacher.provider,
            "model": teacher.model,
            "prompt_version": teacher.prompt_version,
            "task": task.name,
            "run_id": "bench",
        }
    )
    writes = []

    def store(answers, ledger):
        writes.append(len(ledger))
        cache.store(answers, ledger)

    start = time.perf_counter()
    _, stats = label_with_cache(
        teacher,
        rows,
        cache.lookup,
        store,
        batch_size=batch_size,
        concurrency=2,
        flush_seconds=window,
        flush_rows=1 if window <= 0 else 200,
        journal=cache.journal if journaled else None,
    )
    return {
        "store_window_seconds": window,
        "journal": journaled,
        "requests": stats.requests,
        "writes": len(writes),
        "wall_seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    corpus = pd.read_parquet(DEMO_CORPUS).drop_duplicates("text")
    rows = corpus.head(args.requests * args.batch_size)[["id", "text"]].reset_index(drop=True)
    gold = dict(zip(corpus["text"], corpus["topic"]))
    with (
        FakeOpenAI(lambda t: gold[t], latency_s=args.latency_ms / 1000) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        grouped = run(server, rows, args.batch_size, 1.0, Path(tmp), journaled=False)
        each = run(server, rows, args.batch_size, 0.0, Path(tmp), journaled=False)
        journaled = run(server, rows, args.batch_size, 1.0, Path(tmp), journaled=True)

    def overhead(other: dict) -> float:
        return round(1000 * (other["wall_seconds"] - grouped["wall_seconds"]) / max(other["requests"], 1), 2)

    print(
        json.dumps(
            {
                "rows": len(rows),
                "batch_size": args.batch_size,
                "latency_ms": args.latency_ms,
                "grouped_no_journal": grouped,
                "warehouse_write_per_request": each,
                "journal_then_grouped": journaled,
                "overhead_ms_per_request": {
                    "warehouse_write_per_request": overhead(each),
                    "journal_then_grouped": overhead(journaled),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
