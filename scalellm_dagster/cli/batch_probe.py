"""Rows per request, measured: the same rows asked at several batch sizes, compared with the one-row answers.

Several rows in one prompt save the instructions' tokens, but a real LLM can answer a row differently beside
others (a small one often does). This says by how much, so a task can take the largest batch that stays within an
agreement loss it accepts.
"""

from __future__ import annotations

import pandas as pd

from scalellm_dagster.flow.session import MemoryCache
from scalellm_dagster.teachers.runner import label_with_cache


def probe_batch_sizes(
    teacher, rows: pd.DataFrame, sizes: list[int], concurrency: int = 1, gold: pd.Series | None = None
) -> pd.DataFrame:
    """One line per batch size: requests, valid answers, agreement with the 1-row answers, tokens, seconds (and
    accuracy vs `gold`, aligned with `rows`, when given). Every size starts from an empty cache."""
    sizes = sorted(set([1, *sizes]))
    answers, lines = {}, []
    for size in sizes:
        cache = MemoryCache()
        out, stats = label_with_cache(
            teacher, rows, cache.lookup, cache.store, batch_size=size, concurrency=concurrency
        )
        answers[size] = out["teacher_label"].to_numpy()
        line = {
            "rows_per_request": size,
            "requests": stats.requests,
            "valid": round(float(out["valid"].mean()), 3),
            "agreement_with_1_row": round(float((answers[size] == answers[1]).mean()), 3),
            "prompt_tokens_per_row": round(stats.prompt_tokens / max(len(rows), 1), 1),
            "completion_tokens_per_row": round(stats.completion_tokens / max(len(rows), 1), 1),
            "wall_seconds": round(stats.wall_seconds, 2),
        }
        if gold is not None:
            line["accuracy_vs_gold"] = round(float((answers[size] == gold.to_numpy()).mean()), 3)
        lines.append(line)
    return pd.DataFrame(lines)


def largest_within(table: pd.DataFrame, max_agreement_loss: float) -> int:
    """The largest batch whose answers agree with the one-row answers on at least 1 - `max_agreement_loss`."""
    ok = table[table["agreement_with_1_row"] >= 1 - max_agreement_loss]
    return int(ok["rows_per_request"].max())
