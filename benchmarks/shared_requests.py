"""Several tasks in one request, measured (issue #38): on the bundled demo's two tasks (intent: 77 labels, topic: 6),
the rows both first samples share are asked once per task (separately) and once for both (jointly), with the same
batch size, by the simulated teacher (`simulated_hard`: tokens estimated, ~4 characters a token) and by the real
local model (`local`: SmolLM2-135M-Instruct under llama.cpp, one thread; tokens as llama.cpp counts them), or your
own endpoint (`--teachers openai` with OPENAI_BASE_URL / SCALELLM_TEACHER_MODEL set).

Per teacher: requests, prompt and completion tokens and wall time of each way; per task, the share of valid answers,
how often the joint answer equals the separate one, and accuracy against the gold column both ways.

    .venv/bin/python -m benchmarks.shared_requests [--rows-simulated 400] [--rows-local 100]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scalellm_dagster.core.text_hash import text_hash
from scalellm_dagster.flow import MemoryCache, initial_sample_ids
from scalellm_dagster.flow.shared_requests import ask_shared, shared_rows
from scalellm_dagster.resources.teacher import TeacherResource
from scalellm_dagster.settings import DEMO_CORPUS, DEMO_TASKS, Settings
from scalellm_dagster.tasks_config import load_tasks
from scalellm_dagster.teachers.multi_task import joint_teacher
from scalellm_dagster.teachers.runner import label_with_cache

RESULTS = Path(__file__).resolve().parent / "results" / "shared_requests.json"
BATCH = 10


def run(kind: str, rows: pd.DataFrame, corpus: pd.DataFrame, tasks) -> dict:
    # an `openai` teacher takes OPENAI_BASE_URL, SCALELLM_TEACHER_MODEL... from the environment, as a run would
    options = {**Settings.from_env().options("teacher"), "simulated_latency_ms": 0, "local_threads": 1}
    resource = TeacherResource(kind=kind, api_key=os.environ.get("OPENAI_API_KEY"), **options)
    concurrency = resource.effective_concurrency
    singles = {t.name: resource.build(t, corpus, None) for t in tasks}
    separate, separate_cost = {}, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}
    for task in tasks:
        cache = MemoryCache()
        start = time.perf_counter()
        out, stats = label_with_cache(singles[task.name], rows, cache.lookup, cache.store, BATCH, concurrency)
        separate_cost["seconds"] += time.perf_counter() - start
        separate_cost["requests"] += stats.requests
        separate_cost["prompt_tokens"] += stats.prompt_tokens
        separate_cost["completion_tokens"] += stats.completion_tokens
        separate[task.name] = out.set_index("id")["teacher_label"]
        print(
            f"{kind} separate {task.name}: {stats.requests} requests, {stats.prompt_tokens:,} + "
            f"{stats.completion_tokens:,} tokens",
            flush=True,
        )
    caches = {t.name: MemoryCache() for t in tasks}
    start = time.perf_counter()
    outcome = ask_shared(joint_teacher(tasks, singles), rows, caches, BATCH, concurrency, log=print)
    joint_seconds = time.perf_counter() - start
    per_task = {}
    for task in tasks:
        hashes = rows["text"].map(text_hash)
        answers = caches[task.name].answers
        joint = pd.Series([answers[h].label if h in answers else None for h in hashes], index=rows["id"])
        sep = separate[task.name].loc[rows["id"]]
        gold = rows.set_index("id")[task.gold_column]
        per_task[task.name] = {
            "valid_separate": round(float(sep.notna().mean()), 3),
            "valid_joint": round(float(joint.notna().mean()), 3),
            "joint_equals_separate": round(float((joint.to_numpy() == sep.to_numpy()).mean()), 3),
            "accuracy_vs_gold_separate": round(float((sep.to_numpy() == gold.to_numpy()).mean()), 3),
            "accuracy_vs_gold_joint": round(float((joint.to_numpy() == gold.to_numpy()).mean()), 3),
        }
    result = {
        "teacher": kind,
        "rows": len(rows),
        "tokens_estimated": bool(outcome.tokens_estimated),
        "separate": {**separate_cost, "seconds": round(separate_cost["seconds"], 1)},
        "joint": {
            "requests": outcome.requests,
            "failed_requests": outcome.failed_requests,
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "seconds": round(joint_seconds, 1),
        },
        "per_task": per_task,
    }
    total = lambda d: d["prompt_tokens"] + d["completion_tokens"]  # noqa: E731
    result["saved"] = {
        "requests": round(1 - result["joint"]["requests"] / max(separate_cost["requests"], 1), 3),
        "tokens": round(1 - total(result["joint"]) / max(total(separate_cost), 1), 3),
        "prompt_tokens": round(1 - outcome.prompt_tokens / max(separate_cost["prompt_tokens"], 1), 3),
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-simulated", type=int, default=400)
    parser.add_argument("--rows-local", type=int, default=100)
    parser.add_argument("--teachers", default="simulated_hard,local")
    args = parser.parse_args()
    corpus = pd.read_parquet(DEMO_CORPUS)
    tasks = load_tasks(DEMO_TASKS)
    ids = corpus["id"].to_numpy()
    firsts = {t.name: pd.Series(initial_sample_ids(ids, None, t, t.budget)) for t in tasks}
    both = shared_rows(firsts)
    print(f"demo: {', '.join(f'{k} {len(v)}' for k, v in firsts.items())} sampled rows; {len(both)} in both")
    results = []
    for kind in args.teachers.split(","):
        n = args.rows_local if kind == "local" else args.rows_simulated
        rows = corpus.set_index("id").loc[np.asarray(both[:n])].reset_index()
        results.append(run(kind, rows, corpus, tasks))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"batch_rows": BATCH, "shared_rows": len(both), "runs": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
