"""Step 2: every candidate student, cross-validated against the teacher's labels at several sample sizes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalellm_dagster.core.students import default_sample_sizes, evaluate_candidates
from scalellm_dagster.tasks_config import TaskSpec


@dataclass(frozen=True)
class Candidates:
    scores: pd.DataFrame  # one row per (candidate, sample size)
    sizes: list[int]
    seconds: float
    reused: bool = False  # the stored scores of the same inputs, not recomputed


def evaluate_students(
    X: np.ndarray, y: np.ndarray, task: TaskSpec, progress: Callable[[str], None] | None = None
) -> Candidates:
    """`X, y` in sampling order (valid teacher labels only)."""
    sizes = list(task.sample_sizes) or default_sample_sizes(len(y))
    sizes = [s for s in sizes if s <= len(y)] or [len(y)]
    if progress:
        progress(f"training {len(task.candidates)} candidates at sizes {sizes} on {len(y):,} labels")
    start = time.perf_counter()
    scores = evaluate_candidates(
        X, y, task.candidates, sizes, task.cv_folds, task.seed, progress=progress, prune=task.prune_candidates
    )
    return Candidates(scores, sizes, time.perf_counter() - start)
