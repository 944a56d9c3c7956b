"""`TaskStore`: every read and write of a task's own state in the warehouse, by name — its draws and deployed
students, its sample's labels, the teacher's spend and the estimate's basis, the stored candidates and report, the
stored predictions, its audits and drift top-ups. A task's assets and checks take it as a resource and ask it; none
reads another asset's module for what that asset keeps. Generic table I/O stays on `store.warehouse`.

Writes are returned as `same_transaction` statements (`(sql, params)` lists), so each lands in the same transaction
as the asset's own table."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import ConfigurableResource
from sklearn.exceptions import InconsistentVersionWarning

from scalellm_dagster.core.audit import FAILURES_BEFORE_TOPUP, drift_topup, failures_in_a_row
from scalellm_dagster.core.cost_estimate import PromptSizes
from scalellm_dagster.core.model_policy import Drawn
from scalellm_dagster.core.report import TeacherSpend
from scalellm_dagster.core.text_hash import TEXT_HASH_SQL
from scalellm_dagster.flow import Candidates
from scalellm_dagster.flow.cascade_step import CalibrationSample
from scalellm_dagster.names import (
    AUDIT_ANSWERS,
    AUDIT_EXPECTATION,
    AUDIT_LOG,
    AUDIT_SCOPE,
    CORPUS,
    DEPLOYED_MODEL,
    DRIFT_TOPUPS,
    EMBEDDINGS,
    ESTIMATE_BASIS,
    LABELED_SAMPLE,
    MODEL_HISTORY,
    MODEL_SELECTION_REPORT,
    PREDICTIONS,
    STUDENT_CANDIDATES,
    task_fingerprint,
    task_table,
)
from scalellm_dagster.resources.duckdb_sql import utc_now
from scalellm_dagster.resources.warehouse import Warehouse
from scalellm_dagster.settings import default_data_dir
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.prompt_cost import prompt_sizes

Statements = list[tuple[str, list]]

ESTIMATE_BASIS_COLUMNS = (
    "per_request_chars",
    "per_row_chars",
    "answer_chars_per_row",
    "price_in_per_mtok",
    "price_out_per_mtok",
    "seconds_per_request",
)


class TaskStore(ConfigurableResource):
    """A task's state in the warehouse (`warehouse`), read and written by name."""

    warehouse: Warehouse

    def reports_dir(self) -> Path:
        """Plots go beside the warehouse file, so each warehouse (a test's, a user's) keeps its own."""
        database = self.warehouse.database
        return (default_data_dir() if database == ":memory:" else Path(database).parent) / "reports"

    # -- the draw and the deployed student ---------------------------------------------------------------------------

    def last_draw(self, task: TaskSpec) -> Drawn | None:
        """The draw behind the deployed model, or None when no model was drawn yet (or its sample is gone)."""
        table = task_table(task, MODEL_HISTORY)
        if not self.warehouse.table_exists(table):
            return None
        row = self.warehouse.read_df(f"SELECT * FROM {table} ORDER BY drawn_at DESC, rowid DESC LIMIT 1")
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

    def draw_id(self, task: TaskSpec) -> str | None:
        drawn = self.last_draw(task)
        return drawn.run_id if drawn else None

    @staticmethod
    def draw_statements(
        task: TaskSpec, *, run_id: str, corpus_rows: int, embedding: str, budget: int, reason: str
    ) -> Statements:
        """For the sample's write: the draw is recorded exactly when the sample lands."""
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

    def load_student(self, task: TaskSpec, version: str, log=print) -> tuple[object, str] | None:
        """(the student deployed under `version`, the embedder version of the vectors it was trained on), or None when
        none was kept under it, or it no longer unpickles (a scikit-learn upgrade): the caller trains it again from
        the same labels."""
        table = task_table(task, DEPLOYED_MODEL)
        if not self.warehouse.table_exists(table):
            return None
        found = self.warehouse.read_df(
            f"SELECT model, embedding_version FROM {table} WHERE model_version = ? LIMIT 1", [version]
        )
        if not len(found):
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", InconsistentVersionWarning)  # another version's model may predict wrong
                model = pickle.loads(found["model"].iloc[0])  # noqa: S301 - our own pickle
        except Exception as exc:  # noqa: BLE001 - any failure to restore it means: train it again
            log(
                f"the kept student of model {version} cannot be restored ({type(exc).__name__}: {exc}); "
                "training it again"
            )
            return None
        return model, found["embedding_version"].iloc[0]

    @staticmethod
    def deploy_statements(task: TaskSpec, version: str, student, embedding: str, run_id: str) -> Statements:
        """For the predictions' write: the student (a `TrainedStudent`) is kept with the rows it labelled, with the
        embedder version of the vectors it was trained on."""
        table = task_table(task, DEPLOYED_MODEL)
        return [
            (f'CREATE SCHEMA IF NOT EXISTS "{task.name}"', []),
            (
                f"CREATE TABLE IF NOT EXISTS {table} (model_version VARCHAR, student VARCHAR, "
                "embedding_version VARCHAR, deployed_at TIMESTAMP, run_id VARCHAR, model BLOB)",
                [],
            ),
            (f"DELETE FROM {table} WHERE model_version = ?", [version]),
            (
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
                [version, student.name, embedding, utc_now(), run_id, pickle.dumps(student.model)],
            ),
        ]

    # -- the sample ----------------------------------------------------------------------------------------------------

    def effective_budget(self, task: TaskSpec) -> tuple[int, str]:
        """The task's budget, or the last report's advice when the task follows it (capped by max_budget)."""
        if not task.follow_budget_advice:
            return task.budget, "task budget"
        table = task_table(task, MODEL_SELECTION_REPORT)
        if not self.warehouse.table_exists(table):
            return task.budget, "task budget (no report yet to take advice from)"
        advice = self.warehouse.read_df(f"SELECT max(recommended_budget) AS n FROM {table}")["n"].iloc[0]
        if pd.isna(advice):
            return task.budget, "task budget (the last report gave no advice)"
        cap = task.max_budget or task.budget
        return int(min(max(advice, 2), cap)), f"advice of the last report ({int(advice):,}), capped at {cap:,}"

    def valid_sample(self, task: TaskSpec) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """The teacher labels students train on, in sampling order: (frame of id, text, teacher_label; X; y). Valid
        answers, less the suspects the task's `suspect_labels: drop` leaves out (`train`; older tables lack it), of
        the rows still embedded (a sampled row deleted since has no vector to train on)."""
        table = task_table(task, LABELED_SAMPLE)
        train = "s.train" if "train" in self.warehouse.columns(table) else "true"
        sample = self.warehouse.read_df(
            f"SELECT s.id, s.text, s.teacher_label FROM {table} s SEMI JOIN {EMBEDDINGS} e ON s.id = e.id "
            f"WHERE s.valid AND {train} ORDER BY s.sample_rank"
        )
        _, X = self.warehouse.read_embeddings(EMBEDDINGS, ids=sample["id"].to_numpy())
        return sample, X, sample["teacher_label"].to_numpy()

    def calibration_sample(self, task: TaskSpec) -> CalibrationSample:
        """Every valid answer of the sample with what the cascade's calibration needs: the first answer, whether the
        student trains on the row, whether a drift top-up (not the random draw) added it. Older tables lack some."""
        table = task_table(task, LABELED_SAMPLE)
        kept = [f"s.{c}" for c in ("first_label", "train", "drift_topup") if c in self.warehouse.columns(table)]
        answers = self.warehouse.read_df(
            f"SELECT {', '.join(['s.id', 's.teacher_label', *kept])} FROM {table} s SEMI JOIN {EMBEDDINGS} e "
            "ON s.id = e.id WHERE s.valid ORDER BY s.sample_rank"
        )
        _, X = self.warehouse.read_embeddings(EMBEDDINGS, ids=answers["id"].to_numpy())
        return CalibrationSample.from_answers(answers, X)

    def sample_labels(self, task: TaskSpec) -> pd.Series:
        """Every valid teacher label by id, of the rows whose text is still the one the teacher read: what the
        sampled rows keep in the predictions (a sampled row edited since is labelled like any other new text)."""
        return self.warehouse.read_df(
            f"""SELECT s.id, s.teacher_label FROM {task_table(task, LABELED_SAMPLE)} s JOIN {EMBEDDINGS} e
                ON s.id = e.id AND e.text_hash = {TEXT_HASH_SQL.format(column="s.text")} WHERE s.valid"""
        ).set_index("id")["teacher_label"]

    def teacher_description(self, task: TaskSpec) -> str:
        sample = task_table(task, LABELED_SAMPLE)
        teacher = self.warehouse.read_df(f"SELECT any_value(teacher) AS t FROM {sample}")["t"][0]
        return f"`{teacher}`" + (
            " — a simulation answering from gold labels, not an LLM" if str(teacher).startswith("simulated") else ""
        )

    @staticmethod
    def estimate_basis_statements(task: TaskSpec, teacher, texts: list[str]) -> Statements:
        """For the sample's write: the prompt sizes and prices its dry run used (`teacher`: a `TeacherResource`), so
        the report prices the row-by-row baseline exactly as the dry run did."""
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

    def teacher_spend(self, task: TaskSpec, concurrency: int) -> TeacherSpend:
        t = self.warehouse.ledger_totals(task.name)
        basis = {}
        if self.warehouse.table_exists(task_table(task, ESTIMATE_BASIS)):
            row = self.warehouse.read_df(f"SELECT * FROM {task_table(task, ESTIMATE_BASIS)}").iloc[0]
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

    def gold_labels(self, task: TaskSpec) -> pd.DataFrame | None:
        if not task.gold_column:
            return None
        return self.warehouse.read_df(f'SELECT id, "{task.gold_column}" AS gold FROM {CORPUS}')

    def gold_eval_rows(self, task: TaskSpec, gold: pd.DataFrame, sample_ids: np.ndarray, rows: int):
        """(vectors, gold labels) of up to `rows` seeded random corpus rows outside the sample with a gold label
        (`gold`: from `gold_labels`), or None when there are none."""
        gold = gold.dropna(subset=["gold"])
        gold = gold[~gold["id"].isin(sample_ids)]
        if not len(gold):
            return None
        gold = gold.sample(n=min(rows, len(gold)), random_state=task.seed)
        ids, X = self.warehouse.read_embeddings(EMBEDDINGS, ids=gold["id"].to_numpy())
        return X, gold.set_index("id").loc[ids, "gold"].astype(str).to_numpy()

    # -- the candidates, the report, the predictions ----------------------------------------------------------------

    def stored_candidates(self, task: TaskSpec, key: str) -> Candidates | None:
        """The stored candidates' scores when they were made from the same inputs (`candidates_inputs_key`)."""
        table = task_table(task, STUDENT_CANDIDATES)
        if not self.warehouse.table_exists(table):
            return None
        stored = self.warehouse.read_df(f"SELECT * FROM {table}")
        if "inputs_key" not in stored.columns or set(stored["inputs_key"]) != {key}:
            return None
        scores = stored.drop(columns="inputs_key")
        return Candidates(scores, sorted(int(s) for s in scores["sample_size"].unique()), 0.0, reused=True)

    def stored_report(self, task: TaskSpec, key: str) -> str | None:
        """The chosen student of the stored report when it was made from the same inputs."""
        table = task_table(task, MODEL_SELECTION_REPORT)
        if not self.warehouse.table_exists(table) or "inputs_key" not in self.warehouse.columns(table):
            return None
        found = self.warehouse.read_df(f"SELECT candidate, inputs_key FROM {table} WHERE chosen")
        return str(found["candidate"].iloc[0]) if len(found) and set(found["inputs_key"]) == {key} else None

    def deployed_choice(self, task: TaskSpec) -> tuple[str, str | None]:
        """(the chosen student, the model version the report gave it; None for a report from before versions)."""
        table = task_table(task, MODEL_SELECTION_REPORT)
        versioned = "model_version" in self.warehouse.columns(table)
        found = self.warehouse.read_df(
            f"SELECT candidate, {'model_version' if versioned else 'NULL AS model_version'} FROM {table} WHERE chosen"
        )
        version = found["model_version"].iloc[0]
        return str(found["candidate"].iloc[0]), None if pd.isna(version) else str(version)

    def stored_predictions(self, table: str) -> pd.DataFrame:
        """The stored predictions still valid for their rows (same id, text and vectors), every column as written."""
        return self.warehouse.read_df(
            f"""SELECT p.* FROM {table} p JOIN {EMBEDDINGS} e
                ON p.id = e.id AND p.text_hash = e.text_hash AND p.embedding_version = e.embedding_version"""
        )

    @staticmethod
    def audit_expectation_statements(task: TaskSpec, estimate: float, population: str, rows: int) -> Statements:
        """What the drift audit compares its agreement with, kept beside the predictions it is about."""
        table = task_table(task, AUDIT_EXPECTATION)
        return [
            (
                f"CREATE OR REPLACE TABLE {table} AS SELECT ?::DOUBLE AS estimate, ?::VARCHAR AS population, "
                "?::INTEGER AS calibration_rows",
                [estimate, population, rows],
            )
        ]

    # -- audits and drift top-ups -------------------------------------------------------------------------------------

    def audited_ids(self, task: TaskSpec) -> np.ndarray:
        """Rows an audit asked the teacher about: kept out of every sample, so they never train a student."""
        table = task_table(task, AUDIT_ANSWERS)
        if not self.warehouse.table_exists(table):
            return np.array([])
        return self.warehouse.read_df(f"SELECT DISTINCT id FROM {table}")["id"].to_numpy()

    def granted_topups(self, task: TaskSpec) -> pd.DataFrame:
        table = task_table(task, DRIFT_TOPUPS)
        if not self.warehouse.table_exists(table):
            return pd.DataFrame({"id": [], "after_audit_run_id": []})
        return self.warehouse.read_df(f"SELECT id, after_audit_run_id FROM {table} ORDER BY granted_at, topup_rank")

    def audit_history(self, task: TaskSpec) -> pd.DataFrame:
        table = task_table(task, AUDIT_LOG)
        if not self.warehouse.table_exists(table):
            return pd.DataFrame(columns=["audit_run_id", "audited_at", "passed"])
        return self.warehouse.read_df(f"SELECT * FROM {table} ORDER BY audited_at")

    def audit_estimate(self, task: TaskSpec) -> tuple[float, str]:
        """(the agreement the audited population should show, that population): what `predictions` kept for it (the
        student-labelled rows; with a cascade, the most confident share), or for warehouses written before it kept
        one, the report's estimate (the chosen student's cross-validated agreement over every row)."""
        kept = task_table(task, AUDIT_EXPECTATION)
        if self.warehouse.table_exists(kept):
            row = self.warehouse.read_df(f"SELECT estimate, population FROM {kept}").iloc[0]
            return float(row["estimate"]), str(row["population"])
        report = task_table(task, MODEL_SELECTION_REPORT)
        chosen = self.warehouse.read_df(f"SELECT cv_accuracy FROM {report} WHERE chosen")
        return float(chosen["cv_accuracy"].iloc[0]), "every row (the report's estimate)"

    def predicting_model(self, task: TaskSpec) -> str:
        """The student behind the stored predictions."""
        found = self.warehouse.read_df(f"SELECT any_value(model) AS m FROM {task_table(task, PREDICTIONS)}")
        return str(found["m"].iloc[0])

    def due_topup(self, task: TaskSpec, granted: pd.DataFrame) -> tuple[np.ndarray, str] | None:
        """(the failing audits' new rows, the last failing audit's run id) when two or more audits in a row have
        failed since the last top-up (`granted`: from `granted_topups`); else None."""
        streak = failing_streak(self.audit_history(task), granted)
        if len(streak) < FAILURES_BEFORE_TOPUP:
            return None
        scope = self.warehouse.read_df(
            f"SELECT id FROM {task_table(task, AUDIT_SCOPE)} WHERE audit_run_id IN (SELECT unnest(?::VARCHAR[]))",
            [streak["audit_run_id"].tolist()],
        )
        return scope["id"].to_numpy(), str(streak["audit_run_id"].iloc[-1])

    def grant_topup(
        self, task: TaskSpec, sample_ids: np.ndarray, run_id: str, log
    ) -> tuple[np.ndarray, Statements, str]:
        """The sample's drift rows: every top-up granted before, plus a new one when failed audits call for it.
        Returns (ids to add to the sample, statements recording a new grant, a note for the metadata)."""
        granted = self.granted_topups(task)
        due = self.due_topup(task, granted)
        if due is None:
            note = f"{len(granted):,} drift rows from earlier top-ups" if len(granted) else "no drift top-up"
            return granted["id"].to_numpy(), [], note
        pool, after = due
        exclude = np.concatenate([np.asarray(sample_ids), granted["id"].to_numpy(), self.audited_ids(task)])
        new = drift_topup(pool, exclude, task.drift_topup, task.seed)
        log(
            f"drift top-up: {FAILURES_BEFORE_TOPUP}+ failed audits in a row (last: run {after[:8]}); adding "
            f"{len(new):,} rows from their new rows to the sample"
        )
        table = task_table(task, DRIFT_TOPUPS)
        id_type = "BIGINT" if np.issubdtype(np.asarray(new).dtype, np.integer) else "VARCHAR"
        statements = [
            (f'CREATE SCHEMA IF NOT EXISTS "{task.name}"', []),
            (
                f"CREATE TABLE IF NOT EXISTS {table} (id {id_type}, topup_rank INTEGER, granted_at TIMESTAMP, "
                "granted_by_run_id VARCHAR, after_audit_run_id VARCHAR)",
                [],
            ),
            (
                f"INSERT INTO {table} SELECT unnest(?), unnest(range(?)), ?, ?, ?",
                [new.tolist(), len(new), utc_now(), run_id, after],
            ),
        ]
        return (
            np.concatenate([granted["id"].to_numpy(), new]),
            statements,
            f"drift top-up of {len(new):,} rows granted after failed audits (last: run {after[:8]})",
        )


def failing_streak(history: pd.DataFrame, topups: pd.DataFrame) -> pd.DataFrame:
    """The audits of the current run of failures, counted since the last top-up (a top-up starts a new count)."""
    if len(topups) and len(history):
        last = topups["after_audit_run_id"].iloc[-1]
        after = np.flatnonzero(history["audit_run_id"].to_numpy() == last)
        history = history.iloc[after[-1] + 1 :] if len(after) else history
    passed = [None if pd.isna(p) else bool(p) for p in history["passed"]]
    streak = failures_in_a_row(passed)
    judged = history[[p is not None for p in passed]]
    return judged.iloc[len(judged) - streak :] if streak else judged.iloc[:0]
