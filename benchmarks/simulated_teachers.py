"""The two simulated teachers, for the validation scripts: every row's answer on a whole dataset at once.

`simulated` errs on rows drawn by a hash of (seed, text), towards the nearest other class (uniform over rows);
`simulated_hard` errs on the rows a model finds hard (`teachers.simulated_hard`). Both are simulations of an LLM that
answer from the gold labels, not LLMs. A script computes the answers once per (dataset, seed) on the whole dataset,
so a row's answer does not depend on which rows a run draws, and wraps them in `table_teacher` for the flow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ["simulated", "simulated_hard"]


def answers_for(
    kind: str, texts: list[str], gold: np.ndarray, labels: list[str], X: np.ndarray, seed: int, accuracy: float
) -> np.ndarray:
    """Each row's answer. `X`: the rows' static-embedder vectors (both simulations read the rows with them)."""
    gold = np.asarray(gold, dtype=object)
    if kind == "simulated":
        from scalellm_dagster.teachers.simulated import error_draw, nearest_other_class

        confusion = nearest_other_class(X, gold, labels)
        draws = np.array([error_draw(t, seed) for t in texts])
        return np.where(draws < accuracy, gold, confusion)
    if kind == "simulated_hard":
        from scalellm_dagster.teachers.simulated_hard import hard_answers, static_embed

        found = hard_answers(texts, gold, {lab: "" for lab in labels}, static_embed, accuracy, seed, vectors=X)
        return found.answers
    raise ValueError(f"unknown simulated teacher {kind!r} (choose from {KINDS})")


def table_teacher(kind: str, task, ids: pd.Series, answers: np.ndarray, accuracy: float, seed: int):
    """A teacher for the flow that answers each id from `answers` (row-aligned with `ids`)."""
    from scalellm_dagster.teachers.simulated_hard import HardRowsTeacher

    teacher = HardRowsTeacher(task, dict(zip(ids.astype(str), answers)), accuracy=accuracy, seed=seed, latency_ms=0.0)
    teacher.provider, teacher.model = kind, f"{kind}-acc{accuracy:.3f}-seed{seed}"
    return teacher
