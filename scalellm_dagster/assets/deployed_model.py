"""A task's deployed model in the warehouse: when its sample was drawn and why (`model_history`, one row per draw,
committed with the sample), and the trained student itself (`deployed_model`, one row per version, pickled), so a
refresh predicts new rows with exactly the model that labelled the others.

Both tables are append-only: the latest row is the deployed one, the rest is the history the UI shows.
"""

from __future__ import annotations

import pickle
import warnings
from datetime import UTC, datetime

import pandas as pd
from sklearn.exceptions import InconsistentVersionWarning

from scalellm_dagster.core.model_policy import Drawn
from scalellm_dagster.names import DEPLOYED_MODEL, MODEL_HISTORY, task_fingerprint, task_table
from scalellm_dagster.resources import Warehouse

RETRAIN_TAG = "scalellm/retrain"  # on a run: "all", or task names separated by commas, whose models it replaces


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def retrain_requested(tags: dict, task: str) -> bool:
    asked = (tags or {}).get(RETRAIN_TAG, "")
    return asked.strip() == "all" or task in {name.strip() for name in asked.split(",")}


def last_draw(warehouse: Warehouse, task) -> Drawn | None:
    """The draw behind the deployed model, or None when no model was drawn yet (or its sample is gone)."""
    table = task_table(task, MODEL_HISTORY)
    if not warehouse.table_exists(table):
        return None
    row = warehouse.read_df(f"SELECT * FROM {table} ORDER BY drawn_at DESC, rowid DESC LIMIT 1")
    if not len(row):
        return None
    return Drawn(
        row["drawn_at"].iloc[0].to_pydatetime(),
        int(row["corpus_rows"].iloc[0]),
        row["definition"].iloc[0],
        row["run_id"].iloc[0],
        row["embedding_version"].iloc[0],
        int(row["budget"].iloc[0]) if "budget" in row and not pd.isna(row["budget"].iloc[0]) else None,
    )


def draw_id(warehouse: Warehouse, task) -> str | None:
    drawn = last_draw(warehouse, task)
    return drawn.run_id if drawn else None


def draw_statements(
    task, run_id: str, corpus_rows: int, embedding: str, budget: int, reason: str
) -> list[tuple[str, list]]:
    """`same_transaction` statements for the sample's write: the draw is recorded exactly when the sample lands."""
    table = task_table(task, MODEL_HISTORY)
    return [
        (f'CREATE SCHEMA IF NOT EXISTS "{task.name}"', []),
        (
            f"CREATE TABLE IF NOT EXISTS {table} (run_id VARCHAR, drawn_at TIMESTAMP, corpus_rows BIGINT, "
            "definition VARCHAR, embedding_version VARCHAR, budget INTEGER, reason VARCHAR)",
            [],
        ),
        (
            f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)",
            [run_id, utc_now(), corpus_rows, task_fingerprint(task), embedding, budget, reason],
        ),
    ]


def load_student(warehouse: Warehouse, task, version: str, log=print) -> tuple[object, str] | None:
    """(the student deployed under `version`, the embedder version of the vectors it was trained on), or None when
    none was kept under it, or it no longer unpickles (a scikit-learn upgrade): the caller trains it again from the
    same labels."""
    table = task_table(task, DEPLOYED_MODEL)
    if not warehouse.table_exists(table):
        return None
    found = warehouse.read_df(
        f"SELECT model, embedding_version FROM {table} WHERE model_version = ? LIMIT 1", [version]
    )
    if not len(found):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)  # another version's model may predict wrong
            model = pickle.loads(found["model"].iloc[0])  # noqa: S301 - our own pickle
    except Exception as exc:  # noqa: BLE001 - any failure to restore it means: train it again
        log(f"the kept student of model {version} cannot be restored ({type(exc).__name__}: {exc}); training it again")
        return None
    return model, found["embedding_version"].iloc[0]


def deploy_statements(task, version: str, student, embedding: str, run_id: str) -> list[tuple[str, list]]:
    """`same_transaction` statements for the predictions' write: the student (a `TrainedStudent`) is kept with the
    rows it labelled, with the embedder version of the vectors it was trained on."""
    table = task_table(task, DEPLOYED_MODEL)
    return [
        (f'CREATE SCHEMA IF NOT EXISTS "{task.name}"', []),
        (
            f"CREATE TABLE IF NOT EXISTS {table} (model_version VARCHAR, student VARCHAR, embedding_version VARCHAR, "
            "deployed_at TIMESTAMP, run_id VARCHAR, model BLOB)",
            [],
        ),
        (f"DELETE FROM {table} WHERE model_version = ?", [version]),
        (
            f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
            [version, student.name, embedding, utc_now(), run_id, pickle.dumps(student.model)],
        ),
    ]
