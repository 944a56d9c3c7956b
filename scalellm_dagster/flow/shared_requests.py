"""Asking several tasks' questions about their shared sample rows in one request each (`teachers.multi_task`).

Only rows none of the tasks has an answer for are asked jointly; each joint answer is stored in every task's cache
(with a ledger line per task carrying its share of the request's tokens, cost and time, and `shared_with` naming
the others), so each task's own labelling step then finds those rows answered and asks only the rest. A joint
request that fails leaves its rows to the tasks' own requests: nothing is lost, nothing is paid twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import pandas as pd

from scalellm_dagster.core.text_hash import text_hash
from scalellm_dagster.teachers.base import TeacherFatalError
from scalellm_dagster.teachers.runner import ledger_line


@dataclass
class SharedOutcome:
    tasks: list[str]
    rows_shared: int = 0  # rows in the samples of two or more tasks
    already_answered: int = 0  # of those, answered for some task before: left to the tasks' own requests
    asked: int = 0
    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    tokens_estimated: bool = False
    answered: dict[str, int] = field(default_factory=dict)  # per task: rows answered
    valid: dict[str, int] = field(default_factory=dict)  # per task: answers in its label set


def shared_rows(samples: dict[str, pd.Series]) -> pd.Index:
    """Ids in the samples (`samples[task]`: ids) of at least two tasks, in first-seen order."""
    counts = pd.concat([pd.Series(pd.unique(ids)) for ids in samples.values()]).value_counts(sort=False)
    return pd.Index(counts[counts >= 2].index)


def ask_shared(
    teacher,
    rows: pd.DataFrame,
    caches: dict,
    batch_size: int,
    concurrency: int,
    log: Callable[[str], None] = lambda _msg: None,
) -> SharedOutcome:
    """Ask `teacher` (a joint teacher) about `rows` (id, text) for every task in `caches` (task -> AnswerCache)."""
    tasks = list(caches)
    outcome = SharedOutcome(
        tasks, rows_shared=len(rows), answered=dict.fromkeys(tasks, 0), valid=dict.fromkeys(tasks, 0)
    )
    first = rows.assign(text_hash=rows["text"].map(text_hash)).drop_duplicates("text_hash")
    hashes = first["text_hash"].tolist()
    known = set().union(*(set(cache.lookup(hashes)) for cache in caches.values())) if hashes else set()
    todo = first[~first["text_hash"].isin(known)]
    outcome.already_answered, outcome.asked = len(first) - len(todo), len(todo)
    log(
        f"shared requests for {', '.join(tasks)}: {len(rows):,} rows in two or more samples, {len(todo):,} to ask "
        f"once for every task ({outcome.already_answered:,} already answered for some task: left to each task)"
    )
    batches = [todo.iloc[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(teacher.label_batch, list(zip(b["id"].astype(str), b["text"]))): b for b in batches}
        for future in as_completed(futures):
            batch = futures[future]
            try:
                result = future.result()
            except TeacherFatalError:
                raise
            except Exception as exc:  # noqa: BLE001 - its rows go to the tasks' own requests
                outcome.failed_requests += 1
                log(
                    f"a shared request failed ({type(exc).__name__}: {exc}); "
                    f"its {len(batch)} rows are left to each task"
                )
                continue
            _store(result, batch, caches, teacher, outcome)
            done = outcome.requests + outcome.failed_requests
            if done % max(1, len(batches) // 10) == 0 or done == len(batches):
                log(f"shared requests: {done}/{len(batches)}")
    return outcome


def _store(result, batch: pd.DataFrame, caches: dict, teacher, outcome: SharedOutcome) -> None:
    """Each task's answers into its cache, with its share of the request in its ledger."""
    tasks = list(caches)
    request_id = uuid.uuid4().hex
    cost = teacher.cost_usd(result.prompt_tokens, result.completion_tokens)
    for i, task in enumerate(tasks):
        answers = result.by_task.get(task, {})
        rows = [
            {"text_hash": h, "label": answers[k].label, "raw_answer": answers[k].raw}
            for k, h in zip(batch["id"].astype(str), batch["text_hash"])
            if k in answers
        ]
        ledger = {
            **ledger_line(f"{request_id}-{i}", result, cost, len(batch), len(rows), part=i, parts=len(tasks)),
            "shared_with": ",".join(t for t in tasks if t != task),
        }
        caches[task].store(rows, [ledger])
        outcome.answered[task] += len(rows)
        outcome.valid[task] += sum(r["label"] is not None for r in rows)
    outcome.requests += 1
    outcome.prompt_tokens += result.prompt_tokens
    outcome.completion_tokens += result.completion_tokens
    outcome.cost_usd += cost
    outcome.seconds += result.seconds
    outcome.tokens_estimated |= result.tokens_estimated
