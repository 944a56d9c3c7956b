"""Step 1: choose the rows the teacher labels, and label them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalellm_dagster.core.sampling import cluster_stratified_sample, random_sample, uncertainty_sample
from scalellm_dagster.flow.session import TeacherSession
from scalellm_dagster.tasks_config import TaskSpec


@dataclass(frozen=True)
class LabelledSample:
    ids: np.ndarray  # the chosen rows, in sampling order: the first n are what a budget of n would have bought
    answers: pd.DataFrame  # id, teacher_label, raw_answer, valid, from_cache, in the same order

    @property
    def valid(self) -> pd.DataFrame:
        return self.answers[self.answers["valid"]]


def initial_sample_ids(ids: np.ndarray, matrix: np.ndarray | None, task: TaskSpec, budget: int) -> np.ndarray:
    """The rows known before any request: the whole sample, or for uncertainty sampling (whose later rows depend
    on the teacher's answers) a random stand-in of the same size, good enough for a dry-run estimate."""
    if task.sampling == "stratified-by-cluster":
        return cluster_stratified_sample(ids, matrix, budget, seed=task.seed)
    return random_sample(ids, budget, seed=task.seed)


def label_sample(
    ids: np.ndarray,
    matrix: np.ndarray | None,
    task: TaskSpec,
    budget: int,
    session: TeacherSession,
    first: np.ndarray | None = None,
    *,
    log: Callable[[str], None] = lambda _msg: None,
) -> LabelledSample:
    """`ids` are the rows the teacher may see (`matrix` row-aligned; needed unless sampling is random)."""
    if task.sampling == "uncertainty":
        chosen = uncertainty_sample(
            ids, matrix, budget, session.ask_labels, seed=task.seed, rounds=task.uncertainty_rounds, log=log
        )
    else:
        chosen = first if first is not None else initial_sample_ids(ids, matrix, task, budget)
        session.ask(chosen)
    return LabelledSample(np.asarray(chosen), session.answers_for(chosen))
