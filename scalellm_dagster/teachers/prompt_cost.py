"""The dry-run estimate for a task, from the project's real prompt measured over sample texts."""

from __future__ import annotations

import numpy as np

from scalellm_dagster.core.cost_estimate import Estimate, PromptSizes
from scalellm_dagster.core.cost_estimate import estimate_vs_baseline as _estimate
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.prompts import system_prompt, user_prompt


def prompt_sizes(task: TaskSpec, texts: list[str]) -> PromptSizes:
    sample = texts[: max(1, min(len(texts), 200))]
    return PromptSizes(
        per_request_chars=len(system_prompt(task)),
        per_row_chars=float(np.mean([len(user_prompt([("123456", t)])) for t in sample])),
        answer_chars_per_row=float(np.mean([len(lab) for lab in task.labels]) + 24),
    )


def estimate_vs_baseline(
    task: TaskSpec,
    texts: list[str],
    corpus_rows: int,
    batch_size: int,
    concurrency: int,
    seconds_per_request: float,
    price_in: float,
    price_out: float,
) -> list[Estimate]:
    return _estimate(
        prompt_sizes(task, texts),
        task.budget,
        corpus_rows,
        batch_size,
        concurrency,
        seconds_per_request,
        price_in,
        price_out,
    )
