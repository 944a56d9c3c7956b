"""What a task's assets read from and keep in the warehouse, beyond plain tables: the valid sample, the
teacher's spend from the ledger, the budget to use, and which stored predictions are still valid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from scalellm_dagster.core.cost_estimate import PromptSizes
from scalellm_dagster.core.report import TeacherSpend
from scalellm_dagster.core.students import EVALUATION_VERSION
from scalellm_dagster.core.text_hash import TEXT_HASH_SQL
from scalellm_dagster.flow import Candidates
from scalellm_dagster.flow.cascade_step import CalibrationSample
from scalellm_dagster.names import (
    AUDIT_EXPECTATION,
    CORPUS,
    EMBEDDINGS,
    ESTIMATE_BASIS,
    LABELED_SAMPLE,
    MODEL_SELECTION_REPORT,
    STUDENT_CANDIDATES,
    task_fingerprint,
    task_table,
)
from scalellm_dagster.resources import TeacherResource, Warehouse
from scalellm_dagster.settings import default_data_dir
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.prompt_cost import prompt_sizes

PREDICT_CHUNK = 200_000


def reports_dir(warehouse: Warehouse) -> Path:
    """Plots go beside the warehouse file, so each warehouse (a test's, a user's) keeps its own."""
    base = default_data_dir() if warehouse.database == ":memory:" else Path(warehouse.database).parent
    return base / "reports"


def effective_budget(warehouse: Warehouse, task: TaskSpec) -> tuple[int, str]:
    """The task's budget, or the last report's advice when the task follows it (capped by max_budget)."""
    if not task.follow_budget_advice:
        return task.budget, "task budget"
    table = task_table(task, MODEL_SELECTION_REPORT)
    if not warehouse.table_exists(table):
        return task.budget, "task budget (no report yet to take advice from)"
    advice = warehouse.read_df(f"SELECT max(recommended_budget) AS n FROM {table}")["n"].iloc[0]
    if pd.isna(advice):
        return task.budget, "task budget (the last report gave no advice)"
    cap = task.max_budget or task.budget
    return int(min(max(advice, 2), cap)), f"advice of the last report ({int(advice):,}), capped at {cap:,}"


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


def valid_sample(warehouse: Warehouse, task: TaskSpec) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The teacher labels students train on, in sampling order: (frame of id, text, teacher_label; X; y). Valid
    answers, less the suspects the task's `suspect_labels: drop` leaves out (`train`; older tables lack it), of the
    rows still embedded (a sampled row deleted since has no vector to train on)."""
    table = task_table(task, LABELED_SAMPLE)
    train = "s.train" if "train" in warehouse.columns(table) else "true"
    sample = warehouse.read_df(
        f"SELECT s.id, s.text, s.teacher_label FROM {table} s SEMI JOIN {EMBEDDINGS} e ON s.id = e.id "
        f"WHERE s.valid AND {train} ORDER BY s.sample_rank"
    )
    _, X = warehouse.read_embeddings(EMBEDDINGS, ids=sample["id"].to_numpy())
    return sample, X, sample["teacher_label"].to_numpy()


def calibration_sample(warehouse: Warehouse, task: TaskSpec) -> CalibrationSample:
    """Every valid answer of the sample with what the cascade's calibration needs: the first answer, whether the
    student trains on the row, whether a drift top-up (not the random draw) added it. Older tables lack some."""
    table = task_table(task, LABELED_SAMPLE)
    kept = [f"s.{c}" for c in ("first_label", "train", "drift_topup") if c in warehouse.columns(table)]
    answers = warehouse.read_df(
        f"SELECT {', '.join(['s.id', 's.teacher_label', *kept])} FROM {table} s SEMI JOIN {EMBEDDINGS} e "
        "ON s.id = e.id WHERE s.valid ORDER BY s.sample_rank"
    )
    _, X = warehouse.read_embeddings(EMBEDDINGS, ids=answers["id"].to_numpy())
    return CalibrationSample.from_answers(answers, X)


def audit_expectation_statements(task: TaskSpec, estimate: float, population: str, rows: int) -> list:
    """What the drift audit compares its agreement with, kept beside the predictions it is about."""
    table = task_table(task, AUDIT_EXPECTATION)
    return [
        (
            f"CREATE OR REPLACE TABLE {table} AS SELECT ?::DOUBLE AS estimate, ?::VARCHAR AS population, "
            "?::INTEGER AS calibration_rows",
            [estimate, population, rows],
        )
    ]


def sample_labels(warehouse: Warehouse, task: TaskSpec) -> pd.Series:
    """Every valid teacher label by id, of the rows whose text is still the one the teacher read: what the sampled
    rows keep in the predictions (a sampled row edited since is labelled like any other new text)."""
    return warehouse.read_df(
        f"""SELECT s.id, s.teacher_label FROM {task_table(task, LABELED_SAMPLE)} s JOIN {EMBEDDINGS} e
            ON s.id = e.id AND e.text_hash = {TEXT_HASH_SQL.format(column="s.text")} WHERE s.valid"""
    ).set_index("id")["teacher_label"]


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


def stored_candidates(warehouse: Warehouse, task: TaskSpec, key: str) -> Candidates | None:
    table = task_table(task, STUDENT_CANDIDATES)
    if not warehouse.table_exists(table):
        return None
    stored = warehouse.read_df(f"SELECT * FROM {table}")
    if "inputs_key" not in stored.columns or set(stored["inputs_key"]) != {key}:
        return None
    scores = stored.drop(columns="inputs_key")
    return Candidates(scores, sorted(int(s) for s in scores["sample_size"].unique()), 0.0, reused=True)


def stored_report(warehouse: Warehouse, task: TaskSpec, key: str) -> str | None:
    """The chosen student of the stored report when it was made from the same inputs (`candidates_inputs_key`)."""
    table = task_table(task, MODEL_SELECTION_REPORT)
    if not warehouse.table_exists(table) or "inputs_key" not in warehouse.columns(table):
        return None
    found = warehouse.read_df(f"SELECT candidate, inputs_key FROM {table} WHERE chosen")
    return str(found["candidate"].iloc[0]) if len(found) and set(found["inputs_key"]) == {key} else None


def deployed_choice(warehouse: Warehouse, task: TaskSpec) -> tuple[str, str | None]:
    """(the chosen student, the model version the report gave it; None for a report from before versions)."""
    table = task_table(task, MODEL_SELECTION_REPORT)
    versioned = "model_version" in warehouse.columns(table)
    found = warehouse.read_df(
        f"SELECT candidate, {'model_version' if versioned else 'NULL AS model_version'} FROM {table} WHERE chosen"
    )
    version = found["model_version"].iloc[0]
    return str(found["candidate"].iloc[0]), None if pd.isna(version) else str(version)


def teacher_description(warehouse: Warehouse, task: TaskSpec) -> str:
    teacher = warehouse.read_df(f"SELECT any_value(teacher) AS t FROM {task_table(task, LABELED_SAMPLE)}")["t"][0]
    return f"`{teacher}`" + (
        " — a simulation answering from gold labels, not an LLM" if str(teacher).startswith("simulated") else ""
    )


ESTIMATE_BASIS_COLUMNS = (
    "per_request_chars",
    "per_row_chars",
    "answer_chars_per_row",
    "price_in_per_mtok",
    "price_out_per_mtok",
    "seconds_per_request",
)


def keep_estimate_basis(task: TaskSpec, teacher: TeacherResource, texts: list[str]) -> list[tuple[str, list]]:
    """SQL committed with the sample: the prompt sizes and prices its dry run used, so the report prices the
    row-by-row baseline exactly as the dry run did."""
    sizes, pricing = prompt_sizes(task, texts), teacher.pricing()
    values = [
        sizes.per_request_chars,
        sizes.per_row_chars,
        sizes.answer_chars_per_row,
        pricing["price_in_per_mtok"],
        pricing["price_out_per_mtok"],
        pricing["seconds_per_request"],
    ]
    columns = ", ".join(f"?::DOUBLE AS {c}" for c in ESTIMATE_BASIS_COLUMNS)
    return [(f"CREATE OR REPLACE TABLE {task_table(task, ESTIMATE_BASIS)} AS SELECT {columns}", values)]


def teacher_spend(warehouse: Warehouse, task: TaskSpec, concurrency: int) -> TeacherSpend:
    t = warehouse.ledger_totals(task.name)
    basis = {}
    if warehouse.table_exists(task_table(task, ESTIMATE_BASIS)):
        row = warehouse.read_df(f"SELECT * FROM {task_table(task, ESTIMATE_BASIS)}").iloc[0]
        basis = {
            "prompt_sizes": PromptSizes(
                float(row.per_request_chars), float(row.per_row_chars), float(row.answer_chars_per_row)
            ),
            "price_in_per_mtok": float(row.price_in_per_mtok),
            "price_out_per_mtok": float(row.price_out_per_mtok),
            "assumed_seconds_per_request": float(row.seconds_per_request),
        }
    return TeacherSpend(
        int(t["rows_answered"]),
        int(t["requests"]),
        float(t["request_seconds"]),
        float(t["cost_usd"]),
        int(t["prompt_tokens"]),
        int(t["completion_tokens"]),
        bool(t["tokens_estimated"]),
        concurrency,
        **basis,
    )


def model_version(chosen: str, task: TaskSpec, inputs_key: str) -> str:
    """The student is a function of its kind, its seed and what it trains on (`candidates_inputs_key`: the draw the
    teacher's labels came from and the task): same inputs, same model, same predictions."""
    return hashlib.sha256(f"{chosen}|{task.seed}|{inputs_key}".encode()).hexdigest()[:12]


def stored_predictions(warehouse: Warehouse, table: str) -> pd.DataFrame:
    """The stored predictions still valid for their rows (same id, text and vectors), every column as written."""
    return warehouse.read_df(
        f"""SELECT p.* FROM {table} p JOIN {EMBEDDINGS} e
            ON p.id = e.id AND p.text_hash = e.text_hash AND p.embedding_version = e.embedding_version"""
    )


def vector_chunks(warehouse: Warehouse, ids: np.ndarray, relation: str, chunk: int = PREDICT_CHUNK):
    for begin in range(0, len(ids), chunk):
        yield warehouse.read_embeddings(ids=ids[begin : begin + chunk], relation_sql=relation)[1]


def gold_labels(warehouse: Warehouse, task: TaskSpec) -> pd.DataFrame | None:
    if not task.gold_column:
        return None
    return warehouse.read_df(f'SELECT id, "{task.gold_column}" AS gold FROM {CORPUS}')


def gold_eval_rows(warehouse: Warehouse, task: TaskSpec, gold: pd.DataFrame, sample_ids: np.ndarray, rows: int):
    """(vectors, gold labels) of up to `rows` seeded random corpus rows outside the sample with a gold label (`gold`:
    from `gold_labels`), or None when there are none."""
    gold = gold.dropna(subset=["gold"])
    gold = gold[~gold["id"].isin(sample_ids)]
    if not len(gold):
        return None
    gold = gold.sample(n=min(rows, len(gold)), random_state=task.seed)
    ids, X = warehouse.read_embeddings(EMBEDDINGS, ids=gold["id"].to_numpy())
    return X, gold.set_index("id").loc[ids, "gold"].astype(str).to_numpy()


def teacher_accuracy_vs_gold(gold: pd.DataFrame, sample: pd.DataFrame) -> float | None:
    """The teacher's own accuracy against gold (`gold`: from `gold_labels`) on the rows it labelled (valid answers)."""
    joined = sample.merge(gold.dropna(subset=["gold"]), on="id")
    return float((joined["teacher_label"] == joined["gold"].astype(str)).mean()) if len(joined) else None
