"""Teacher throughput against a local OpenAI-compatible server: batching, concurrency, and the cache.

    .venv/bin/python -m benchmarks.teacher_throughput [--rows 2000] [--latency-ms 50] [--batch-size 10]

Labels `--rows` banking77 demo messages through the real `openai` client and the DuckDB answer cache, at
concurrency 1 and 16 (fresh cache each), then reruns the second job to show that a rerun makes no request.
The server is the test suite's fake (tests/fake_openai.py), answering with the gold topic after `--latency-ms`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import pandas as pd

from scalellm_dagster.openai_client import make_client
from scalellm_dagster.resources.warehouse import Warehouse
from scalellm_dagster.settings import DEMO_CORPUS, DEMO_TASKS
from scalellm_dagster.tasks_config import load_tasks
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests.fake_openai import FakeOpenAI


def job(server, warehouse, rows, concurrency, batch_size):
    task = next(t for t in load_tasks(DEMO_TASKS) if t.name == "topic")
    teacher = OpenAIChatTeacher(task, make_client(server.base_url, "bench", 30, 4), "bench-model", 0.15, 0.60)
    key = {
        "provider": teacher.provider,
        "model": teacher.model,
        "prompt_version": teacher.prompt_version,
        "task": task.name,
        "run_id": f"bench-c{concurrency}",
    }
    cache = warehouse.answer_cache(key)
    before = len(server.chat_requests())
    start = time.perf_counter()
    out, stats = label_with_cache(
        teacher, rows, lookup=cache.lookup, store=cache.store, batch_size=batch_size, concurrency=concurrency
    )
    wall = time.perf_counter() - start
    requests = len(server.chat_requests()) - before
    return {
        "concurrency": concurrency,
        "rows": len(rows),
        "requests": requests,
        "rows_per_request": round(len(rows) / requests, 2) if requests else None,
        "wall_seconds": round(wall, 2),
        "rows_per_second": round(len(rows) / wall, 1),
        "cache_hits": stats.cache_hits,
        "cost_usd": round(stats.cost_usd, 6),
        "valid": int(out["valid"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    corpus = pd.read_parquet(DEMO_CORPUS).head(args.rows)
    gold = dict(zip(corpus["text"], corpus["topic"]))
    results = []
    with (
        FakeOpenAI(lambda t: gold[t], latency_s=args.latency_ms / 1000) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for concurrency in (1, 16):
            warehouse = Warehouse(database=f"{tmp}/c{concurrency}.duckdb")
            results.append(
                {"run": "first", **job(server, warehouse, corpus[["id", "text"]], concurrency, args.batch_size)}
            )
        results.append({"run": "rerun", **job(server, warehouse, corpus[["id", "text"]], 16, args.batch_size)})
    print(pd.DataFrame(results).to_markdown(index=False))
    print(json.dumps({"latency_ms": args.latency_ms, "batch_size": args.batch_size, "results": results}))


if __name__ == "__main__":
    main()
