"""A dry-run estimate of what the teacher will cost, before any request: ours vs asking about every row.

Plain arithmetic over prompt sizes: the caller measures its own prompts (`teachers.prompt_cost` does for the
project's prompt), so this floor depends on nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    limited_by: str = "latency"  # what sets `seconds`: latency at the concurrency, or a requests/tokens limit

    def as_row(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class PromptSizes:
    """Characters sent once per request (instructions, labels), per row (its text), and answered per row."""

    per_request_chars: float
    per_row_chars: float
    answer_chars_per_row: float
    # what a tokens/min limit counts per row beyond the prompt: the completion bound sent as max_tokens
    answer_bound_tokens_per_row: float = 0.0


def estimate_labelling(
    sizes: PromptSizes,
    rows: int,
    batch_size: int,
    concurrency: int,
    seconds_per_request: float,
    price_in_per_mtok: float,
    *,
    price_out_per_mtok: float,
    label: str,
    requests_per_minute: float = 0,
    tokens_per_minute: float = 0,
) -> Estimate:
    """Tokens for `rows` rows in requests of `batch_size`; time at `concurrency`, or as the endpoint's rate limits
    pace it when that is longer (a tokens/min limit counts the prompt and the completion bound, as endpoints do)."""
    requests = int(np.ceil(rows / batch_size))
    prompt_tokens = int((requests * sizes.per_request_chars + rows * sizes.per_row_chars) / CHARS_PER_TOKEN)
    answer_tokens = sizes.answer_chars_per_row / CHARS_PER_TOKEN  # per row
    completion_tokens = int(rows * answer_tokens)
    cost = (prompt_tokens * price_in_per_mtok + completion_tokens * price_out_per_mtok) / 1e6
    times = {"latency": float(np.ceil(requests / max(concurrency, 1)) * seconds_per_request)}
    if requests_per_minute > 0:
        times["requests/min limit"] = requests * 60.0 / requests_per_minute
    if tokens_per_minute > 0:
        counted = prompt_tokens + rows * max(sizes.answer_bound_tokens_per_row, answer_tokens)
        times["tokens/min limit"] = counted * 60.0 / tokens_per_minute
    limited_by = max(times, key=times.get)
    return Estimate(label, rows, requests, prompt_tokens, completion_tokens, cost, times[limited_by], limited_by)


def estimate_vs_baseline(
    sizes: PromptSizes,
    budget: int,
    corpus_rows: int,
    batch_size: int,
    concurrency: int,
    seconds_per_request: float,
    *,
    price_in: float,
    price_out: float,
    requests_per_minute: float = 0,
    tokens_per_minute: float = 0,
) -> list[Estimate]:
    common = dict(
        concurrency=concurrency,
        seconds_per_request=seconds_per_request,
        price_in_per_mtok=price_in,
        price_out_per_mtok=price_out,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    return [
        estimate_labelling(
            sizes, min(budget, corpus_rows), batch_size, label=f"ScaleLLM sample ({batch_size} rows/request)", **common
        ),
        estimate_labelling(sizes, corpus_rows, 1, label="row-by-row baseline (1 row/request)", **common),
    ]
