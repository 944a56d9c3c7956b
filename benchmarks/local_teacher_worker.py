"""The local teacher's per-request time with the model in its worker process vs loaded in the calling process
(how it ran before), on the same labelling requests (10 demo messages each, json_object + schema, SmolLM2-135M,
1 thread), and llama.cpp's decoding speed in tokens/s.

    .venv/bin/python -m benchmarks.local_teacher_worker [--requests 15] [--rows 10]

The in-process measurement runs in a subprocess of its own, so that a crash there cannot take this script down.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def requests(n: int, rows: int) -> list[dict]:
    import pandas as pd

    from scalellm_dagster.settings import DEMO_CORPUS, DEMO_TASKS
    from scalellm_dagster.tasks_config import load_tasks
    from scalellm_dagster.teachers.prompts import answer_schema, system_prompt, user_prompt
    from scalellm_dagster.teachers.structured_output import response_format

    task = next(t for t in load_tasks(DEMO_TASKS) if t.name == "topic")
    texts = pd.read_parquet(DEMO_CORPUS)["text"].head(n * rows).tolist()
    out = []
    for i in range(n):
        batch = [(str(i * rows + j), texts[i * rows + j]) for j in range(rows)]
        keys = [k for k, _ in batch]
        out.append(
            {
                "messages": [
                    {"role": "system", "content": system_prompt(task)},
                    {"role": "user", "content": user_prompt(batch)},
                ],
                "temperature": 0,
                "max_tokens": 40 * rows,
                "response_format": response_format("json_object+schema", answer_schema(task, keys), keys),
            }
        )
    return out


def timed(call, reqs: list[dict]) -> dict:
    call(**reqs[0])  # warm-up: the first decode allocates
    seconds, tokens = [], 0
    for request in reqs[1:]:
        start = time.perf_counter()
        out = call(**request)
        seconds.append(time.perf_counter() - start)
        tokens += out["usage"]["completion_tokens"]
    return {
        "requests": len(seconds),
        "seconds_per_request": round(sum(seconds) / len(seconds), 3),
        "completion_tokens_per_second": round(tokens / sum(seconds), 1),
    }


def in_process(n: int, rows: int) -> dict:
    from llama_cpp import Llama

    from scalellm_dagster.teachers.local import default_model_path

    llama = Llama(model_path=str(default_model_path()), n_threads=1, n_ctx=2048, verbose=False, seed=0)
    return timed(llama.create_chat_completion, requests(n, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--in-process-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_only:
        print(json.dumps(in_process(args.requests, args.rows)))
        return
    from scalellm_dagster.teachers.local import model_worker

    worker = model_worker(None)
    worker.start()
    try:
        in_worker = timed(worker.request, requests(args.requests, args.rows))
    finally:
        worker.close()
    proc = subprocess.run(
        [sys.executable, __file__, "--in-process-only", "--requests", str(args.requests), "--rows", str(args.rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    before = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "rows_per_request": args.rows,
                "in_process_before": before,
                "worker_process_now": in_worker,
                "worker_overhead_seconds_per_request": round(
                    in_worker["seconds_per_request"] - before["seconds_per_request"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
