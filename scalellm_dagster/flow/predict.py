"""Step 4: the chosen student trained on every valid teacher label, then a label and a confidence for every row."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin

from scalellm_dagster.core.students import fit_student, predict_with_confidence


@dataclass(frozen=True)
class TrainedStudent:
    name: str
    model: ClassifierMixin
    seconds: float


@dataclass(frozen=True)
class Predicted:
    labels: np.ndarray  # str, one per row asked about
    confidence: np.ndarray  # float32 in [0, 1]
    method: str  # how the confidence was computed
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return len(self.labels) / max(self.seconds, 1e-9)


def train_student(name: str, X: np.ndarray, y: np.ndarray, seed: int) -> TrainedStudent:
    start = time.perf_counter()
    model = fit_student(name, X, y, seed=seed)
    return TrainedStudent(name, model, time.perf_counter() - start)


def predict_rows(
    student: TrainedStudent, chunks: Iterable[np.ndarray], rows: int, log: Callable[[str], None] = lambda _msg: None
) -> Predicted:
    """`chunks`: the rows' vectors, chunk by chunk in order (a million rows never need to be in memory at once)."""
    labels = np.empty(rows, dtype=object)
    confidence = np.full(rows, np.nan, dtype=np.float32)
    method = "predict_proba"
    start = time.perf_counter()
    done = 0
    for X in chunks:
        pred = predict_with_confidence(student.model, X)
        labels[done : done + len(X)] = pred.labels.astype(str)
        confidence[done : done + len(X)] = pred.confidence
        method = pred.method
        done += len(X)
        log(f"predicted {done:,}/{rows:,} rows ({done / max(time.perf_counter() - start, 1e-9):,.0f} rows/s)")
    if done != rows:
        raise ValueError(f"expected vectors for {rows:,} rows, got {done:,}")
    return Predicted(labels, confidence, method, time.perf_counter() - start)


def final_labels(
    ids: np.ndarray, student_labels: np.ndarray, teacher_labels: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """(label, source) per row: rows the teacher answered keep its label (`teacher-sample`), the rest the
    student's. `teacher_labels` holds valid labels only, indexed by id."""
    from_teacher = pd.Index(teacher_labels.index).get_indexer(ids) >= 0
    labels = np.asarray(student_labels, dtype=object).copy()
    labels[from_teacher] = teacher_labels.reindex(ids[from_teacher]).to_numpy()
    return labels, np.where(from_teacher, "teacher-sample", "student").astype(object)
