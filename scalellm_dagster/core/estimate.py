"""A dry-run estimate of what the teacher will cost, before any request: ours vs asking about every row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.prompts import system_prompt, user_prompt

CHARS_PER_TOKEN = 4  # a rough rule for English text with OpenAI tokenizers; estimates say "estimated"


@dataclass(frozen=True)
class Estimate:
    label: str
    rows: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds: float

    def as_row(self) -> dict:
        return self.__dict__.copy()


def estimate_labelling(
    task: TaskSpec,
    texts: list[str],
    rows: int,
    batch_size: int,
    concurrency: int,
    seconds_per_request: float,
    price_in_per_mtok: float,
    price_out_per_mtok: float,
    label: str,
) -> Estimate:
    """Tokens from the real prompt built over a sample of `texts`, scaled to `rows`; time at `concurrency`."""
    sample = texts[: max(1, min(len(texts), 200))]
    system_tokens = len(system_prompt(task)) / CHARS_PER_TOKEN
    row_tokens = np.mean([len(user_prompt([("123456", t)])) for t in sample]) / CHARS_PER_TOKEN
    answer_tokens = (np.mean([len(lab) for lab in task.labels]) + 24) / CHARS_PER_TOKEN
    requests = int(np.ceil(rows / batch_size))
    prompt_tokens = int(requests * system_tokens + rows * row_tokens)
    completion_tokens = int(rows * answer_tokens)
    cost = (prompt_tokens * price_in_per_mtok + completion_tokens * price_out_per_mtok) / 1e6
    seconds = float(np.ceil(requests / max(concurrency, 1)) * seconds_per_request)
    return Estimate(label, rows, requests, prompt_tokens, completion_tokens, cost, seconds)


def estimate_vs_baseline(task: TaskSpec, texts: list[str], corpus_rows: int, batch_size: int, concurrency: int,
                         seconds_per_request: float, price_in: float, price_out: float) -> list[Estimate]:
    common = dict(concurrency=concurrency, seconds_per_request=seconds_per_request,
                  price_in_per_mtok=price_in, price_out_per_mtok=price_out)
    return [
        estimate_labelling(task, texts, min(task.budget, corpus_rows), batch_size,
                           label=f"ScaleLLM sample ({batch_size} rows/request)", **common),
        estimate_labelling(task, texts, corpus_rows, 1, label="row-by-row baseline (1 row/request)", **common),
    ]
