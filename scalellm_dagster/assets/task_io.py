"""What a task's assets compute about their inputs beside the task's stored state (`resources.TaskStore`): the keys
and versions that say a stored result is still valid, the simulated teacher's vectors, vectors in chunks."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from scalellm_dagster.core.students import EVALUATION_VERSION
from scalellm_dagster.names import (
    EMBEDDINGS,
    task_fingerprint,
)
from scalellm_dagster.resources import TeacherResource, Warehouse
from scalellm_dagster.tasks_config import TaskSpec

PREDICT_CHUNK = 200_000


def simulation_vectors(warehouse: Warehouse, teacher: TeacherResource, matrix):
    """What the simulated teacher needs to err plausibly: the row-aligned matrix when one is in memory anyway,
    otherwise blocks streamed from the warehouse (a million vectors are never loaded at once). None when the stored
    vectors are not the ones the simulation reads with (`simulated_hard` reads with the static embedder: under
    another embedder it embeds the texts itself)."""
    if not teacher.spec.simulated:
        return matrix
    reader = teacher.spec.reads_vectors
    if reader is not None and warehouse.embedding_versions() != {reader()}:
        return None
    return matrix if matrix is not None else (lambda: warehouse.iter_embeddings(EMBEDDINGS))


def candidates_inputs_key(task: TaskSpec, sample: pd.DataFrame, X: np.ndarray, draw: str | None = None) -> str:
    """What the candidates' scores, the choice and the deployed student are a function of: the task's settings, the
    evaluation's own version, and the draw the labels came from (`draw`: its run id) or, for a sample drawn before
    draws were recorded, the labels in order and their vectors. Same key, same scores, same model: a refresh reuses
    them. Keyed on the draw, a kept model stays the same when rows of its sample are edited or deleted later."""
    digest = hashlib.sha256(f"{EVALUATION_VERSION}|{task_fingerprint(task)}|{draw or ''}|".encode())
    if draw is None:  # a draw's sample table is written once, with its run: its id names the labels
        digest.update(pd.util.hash_pandas_object(sample[["id", "teacher_label"]].astype(str), index=False).to_numpy())
        digest.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def model_version(chosen: str, task: TaskSpec, inputs_key: str) -> str:
    """The student is a function of its kind, its seed and what it trains on (`candidates_inputs_key`: the draw the
    teacher's labels came from and the task): same inputs, same model, same predictions."""
    return hashlib.sha256(f"{chosen}|{task.seed}|{inputs_key}".encode()).hexdigest()[:12]


def vector_chunks(warehouse: Warehouse, ids: np.ndarray, relation: str, chunk: int = PREDICT_CHUNK):
    for begin in range(0, len(ids), chunk):
        yield warehouse.read_embeddings(ids=ids[begin : begin + chunk], relation_sql=relation)[1]


def teacher_accuracy_vs_gold(gold: pd.DataFrame, sample: pd.DataFrame) -> float | None:
    """The teacher's own accuracy against gold (`gold`: from `gold_labels`) on the rows it labelled (valid answers)."""
    joined = sample.merge(gold.dropna(subset=["gold"]), on="id")
    return float((joined["teacher_label"] == joined["gold"].astype(str)).mean()) if len(joined) else None
