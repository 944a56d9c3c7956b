"""A task's `predictions` asset: every row's label and confidence from the chosen student, the teacher's labels
where it answered, and the cascade's (flow steps 4 and 5)."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets import predictions_metadata, task_io
from scalellm_dagster.assets.metadata import kept_write_metadata
from scalellm_dagster.assets.on_cluster import predict_on_cluster
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.assets.teacher_session import TeacherRun
from scalellm_dagster.cluster.parts import join
from scalellm_dagster.core.cascade import agreement_of_most_confident
from scalellm_dagster.flow import (
    TrainedStudent,
    calibrate,
    cascade_new_rows,
    final_labels,
    predict_rows,
    run_cascade,
    train_student,
)
from scalellm_dagster.names import CORPUS, EMBEDDINGS, PREDICTIONS, task_table
from scalellm_dagster.resources import TaskStore, TeacherResource, Warehouse
from scalellm_dagster.resources.cluster import ClusterResource
from scalellm_dagster.tasks_config import TaskSpec

COLUMNS = [
    "id",
    "label",
    "source",
    "confidence",
    "student_label",
    "model",
    "text_hash",
    "embedding_version",
    "model_version",
]


def predictions_asset(task: TaskSpec, report: AssetsDefinition, embeddings: AssetsDefinition) -> AssetsDefinition:
    @task_asset(
        task,
        PREDICTIONS,
        [report, embeddings],
        "predictions",
        (
            "Every corpus row with its label, the student's confidence, and where the label came from: "
            "`teacher-sample` (sampled rows keep the teacher's label), `teacher-cascade` (rows the student was least "
            "sure of, sent back to the teacher when the task sets cascade_budget) or `student`. With a cluster "
            "configured, the rows are predicted there (the student sent to every worker once)."
        ),
    )
    def predictions(
        context: AssetExecutionContext, task_store: TaskStore, teacher: TeacherResource, cluster: ClusterResource
    ):
        with cluster.session(task_store.warehouse.database, context.run.run_id) as (client, parts):
            return materialize_predictions(context, task, task_store, teacher, cluster, client, parts=parts)

    return predictions


@dataclass
class _Run(TeacherRun):
    """What one materialization's steps share."""

    cluster: ClusterResource | None = None
    client: object = None
    parts: str | None = None
    student: TrainedStudent | None = None
    version: str = ""
    deploy: list = field(default_factory=list)  # statements that keep a newly trained student with its predictions
    current: pd.DataFrame | None = None  # every embedded row: id, text_hash, embedding_version
    log: list = field(default_factory=list)  # the write's snapshot statements

    def session(self, one_row_reask: bool = False):
        """Opened only when the cascade sends a row: the corpus and the simulation's vectors are read then."""
        self.corpus = self.warehouse.read_df(f"SELECT * FROM {CORPUS}")
        self.vectors = task_io.simulation_vectors(self.warehouse, self.teacher, None)
        return super().session(one_row_reask)


def materialize_predictions(
    context: AssetExecutionContext,
    task: TaskSpec,
    store: TaskStore,
    teacher: TeacherResource,
    cluster: ClusterResource,
    client,
    *,
    parts: str | None,
) -> MaterializeResult:
    table = task_table(task, PREDICTIONS)
    unchanged = _unchanged_predictions(context, task, store, table)
    if unchanged is not None:
        return unchanged
    warehouse = store.warehouse
    run = _Run(context, task, store, teacher, cluster=cluster, client=client, parts=parts)
    run.current, vectors_read = warehouse.read_df_with_snapshot(
        f"SELECT id, text_hash, embedding_version FROM {EMBEDDINGS}", EMBEDDINGS
    )
    run.student, run.version, run.deploy = _deployed_student(run)
    run.log = warehouse.snapshot_statements(table, context.run.run_id, vectors_read and vectors_read.corpus_run_id)
    previous = _versions(warehouse, table)
    if previous == {run.version}:
        return _follow_the_data(run, table, store.stored_predictions(table))
    return _replace_every_prediction(run, table, previous)


def _unchanged_predictions(
    context: AssetExecutionContext, task: TaskSpec, store: TaskStore, table: str
) -> MaterializeResult | None:
    """When the stored predictions were written after the vectors as they stand, from the corpus as it stands, all
    by the deployed model: no row to predict, said without reading a row. None otherwise."""
    warehouse = store.warehouse
    written, vectors, rows = (warehouse.snapshot(t) for t in (table, EMBEDDINGS, CORPUS))
    if written is None or vectors is None or rows is None or not warehouse.table_exists(table):
        return None
    if not (written.corpus_run_id == vectors.corpus_run_id == rows.run_id and written.same_ids(rows)):
        return None
    if written.written_at is None or vectors.written_at is None or written.written_at < vectors.written_at:
        return None
    _, version = store.deployed_choice(task)
    if version is None or warehouse.row_count(table) != written.rows or _versions(warehouse, table) != {version}:
        return None
    if store.load_student(task, version, context.log.warning) is None:
        return None  # a kept student that no longer loads is trained again
    context.log.info(f"model {version} kept and no row new or edited: the {written.rows:,} predictions stand")
    return MaterializeResult(
        metadata={
            **kept_write_metadata(context, written.run_id),
            "dagster/row_count": written.rows,
            "unchanged": (
                f"model {version} kept, and the corpus and its vectors are those run {written.run_id} predicted: "
                "no row predicted or written"
            ),
            "model_update": f"kept: model {version}, nothing new to predict",
            "model_version": version,
            "rows_predicted": 0,
            "rows_reused": written.rows,
            "rows_written": 0,
            "written_by_run": written.run_id,
        }
    )


def _deployed_student(run: _Run) -> tuple[TrainedStudent, str, list]:
    """(the deployed student, its model version, statements that keep it when it was trained now).

    The student the report chose is trained once per model version and kept in the warehouse; later refreshes load
    it. When the stored vectors were made by another embedder version than the one it was trained on (a re-fit
    embedder, a run that did not redraw the sample), the same student is trained again on the same teacher labels
    with today's vectors, under a new version: a model cannot read vectors of another embedder."""
    task = run.task
    chosen, version = run.store.deployed_choice(task)
    found = run.store.load_student(task, version, run.context.log.warning) if version else None
    if found is not None and found[1] in set(run.current["embedding_version"]):
        run.context.log.info(f"model {version} ({chosen}): the deployed student, loaded from the warehouse")
        return TrainedStudent(chosen, found[0], 0.0), version, []
    sample, X, y = run.store.valid_sample(task)
    embedding = str(run.current["embedding_version"].mode().iloc[0]) if len(run.current) else ""
    key = task_io.candidates_inputs_key(task, sample, X, run.store.draw_id(task))
    reported = version
    if version is None or found is not None:
        version = task_io.model_version(chosen, task, f"{key}|{embedding}")
    student = train_student(chosen, X, y, task.seed)
    changed = f" (vectors of embedder version {found[1]} -> {embedding} under model {reported})" if found else ""
    run.context.log.info(f"model {version} ({chosen}): trained on {len(y):,} teacher labels{changed}")
    return student, version, run.store.deploy_statements(task, version, student, embedding, run.context.run.run_id)


def _versions(warehouse: Warehouse, table: str) -> set[str]:
    """The model versions of the stored predictions; none without a table (or one from before model versions)."""
    if not warehouse.table_exists(table) or "model_version" not in warehouse.columns(table):
        return set()
    return set(warehouse.read_df(f"SELECT DISTINCT model_version FROM {table}")["model_version"])


def _follow_the_data(run: _Run, table: str, stored: pd.DataFrame) -> MaterializeResult:
    """The deployed model stays: rows whose id, text and vectors are unchanged keep their stored prediction as
    written (label, source, confidence); only new or edited rows are predicted, and only they are written."""
    task, warehouse = run.task, run.warehouse
    before = warehouse.row_count(table)
    todo = run.current[~run.current["id"].isin(stored["id"])].reset_index(drop=True)
    run.context.log.info(
        f"model {run.version} kept: predicting {len(todo):,} new or edited rows; {len(stored):,} predictions kept "
        f"as they are, {before - len(stored):,} removed or replaced"
    )
    predicted, where = _predict(run, todo["id"].to_numpy())
    new = _labelled(todo, run.version, predicted, run.store.sample_labels(task))
    cascade = {}
    if task.cascade_budget > 0:
        new, cascade = _cascade_new_rows(run, new, stored)
    new = new.assign(model=run.student.name)[COLUMNS]
    written = warehouse.replace_rows(table, new, stored["id"].to_numpy(), same_transaction=run.log + run.deploy)
    out = pd.concat([stored[COLUMNS], new], ignore_index=True) if len(new) else stored[COLUMNS]
    extra = {
        "model_update": f"kept: model {run.version} predicted only the new or edited rows",
        "model_version": run.version,
        "rows_written": len(new),
        "rows_removed": before - len(stored),
        **where,
        **cascade,
    }
    return MaterializeResult(
        metadata={
            **predictions_metadata.predictions_metadata(out, written, run.student, predicted, len(stored), extra),
            **predictions_metadata.gold_metrics(out, run.store.gold_labels(task)),
        }
    )


def _cascade_new_rows(run: _Run, new: pd.DataFrame, stored: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The new rows through the deployed cascade: the least confident go to the teacher, up to the confidence of
    the least sure row it sent when the model was deployed."""
    sent = stored.loc[stored["source"] == "teacher-cascade", "confidence"]
    threshold = float(sent.max()) if len(sent) else None
    outcome = cascade_new_rows(
        new["confidence"].to_numpy(),
        (new["source"] == "student").to_numpy(),
        new["id"].to_numpy(),
        threshold,
        run.task.cascade_budget,
        run.session,
        log=run.context.log.info,
    )
    new.loc[new.index[outcome.answered], "label"] = outcome.labels
    new.loc[new.index[outcome.answered], "source"] = "teacher-cascade"
    return new, {
        "cascade_new_rows_sent": len(outcome.asked),
        "cascade_new_rows_answered": len(outcome.answered),
        "cascade_requests": outcome.requests,
        "cascade_confidence_threshold": "none (the deployed cascade sent no row)" if threshold is None else threshold,
    }


def _replace_every_prediction(run: _Run, table: str, previous: set[str]) -> MaterializeResult:
    """A new model (or none before): every row predicted, the cascade planned over all of them, and what changed
    against the model it replaces said in the metadata."""
    task, warehouse = run.task, run.warehouse
    before = warehouse.read_df(f"SELECT id, label, student_label FROM {table}") if previous else None
    ids = run.current["id"].to_numpy()
    run.context.log.info(
        f"model {run.version} replaces {', '.join(sorted(previous))}: predicting every row ({len(ids):,})"
        if previous
        else f"model {run.version}: predicting every row ({len(ids):,})"
    )
    predicted, where = _predict(run, ids)
    out = _labelled(run.current, run.version, predicted, run.store.sample_labels(task))
    out, outcome, audit = _with_cascade(run, out)
    out = out.assign(model=run.student.name)[COLUMNS]
    expectation = run.store.audit_expectation_statements(task, *audit) if audit else []
    written = warehouse.write_table(table, out, same_transaction=run.log + expectation + run.deploy)
    audit_note = {"audit_expected_agreement": round(audit[0], 4), "audit_population": audit[1]} if audit else {}
    extra = {
        **predictions_metadata.replacement_metadata(previous, run.version, before, out),
        "model_version": run.version,
        "rows_written": len(out),
        **where,
        **predictions_metadata.cascade_metadata(task, outcome, out),
        **audit_note,
    }
    return MaterializeResult(
        metadata={
            **predictions_metadata.predictions_metadata(out, written, run.student, predicted, 0, extra),
            **predictions_metadata.gold_metrics(out, run.store.gold_labels(task)),
        }
    )


def _predict(run: _Run, todo: np.ndarray) -> tuple:
    """(the student's labels and confidences for the `todo` ids, where they were computed)."""
    if run.client is not None and len(todo):
        return predict_on_cluster(
            run.client,
            run.cluster.describe(),
            run.warehouse,
            run.student,
            todo,
            EMBEDDINGS,
            parts=join(run.parts, run.task.name),
            rows_per_part=run.cluster.rows_per_part,
            log=run.context.log.info,
        )
    chunks = task_io.vector_chunks(run.warehouse, todo, EMBEDDINGS)
    return predict_rows(run.student, chunks, len(todo), log=run.context.log.info), {"ran_on": "in process"}


def _with_cascade(run: _Run, out: pd.DataFrame):
    """(the rows with the cascade's answers, the cascade's outcome, what an audit should find): the calibration
    both need is made only when the task has a cascade or audits."""
    task, student = run.task, run.student.name
    outcome, calibrator = None, None
    if task.cascade_budget > 0 or task.audit_rows > 0:
        calibrator = calibrate(student, run.store.calibration_sample(task), task)
    if task.cascade_budget > 0:
        outcome = run_cascade(
            calibrator,
            out["confidence"].to_numpy(),
            (out["source"] == "student").to_numpy(),
            out["id"].to_numpy(),
            task,
            task.cascade_budget,
            session_factory=run.session,
            log=run.context.log.info,
        )
        out.loc[out.index[outcome.answered], "label"] = outcome.labels
        out.loc[out.index[outcome.answered], "source"] = "teacher-cascade"
    return out, outcome, audit_expectation(task, calibrator, outcome, out)


def audit_expectation(task: TaskSpec, calibrator, outcome, out: pd.DataFrame) -> tuple[float, str, int] | None:
    """(agreement an audit of the student-labelled rows should find, which rows, calibration rows): with a cascade,
    those rows are the most confident share, and the estimate is read off the same share of the held-out pairs."""
    if calibrator is None or not len(calibrator.agrees):
        return None
    student = int((out["source"] == "student").sum())
    sent = len(outcome.asked) if outcome is not None else 0
    share = student / max(student + sent, 1)
    population = (
        "every row the student labels"
        if not sent
        else f"the {share:.0%} most confident of the rows outside the sample (the cascade sent the rest)"
    )
    return agreement_of_most_confident(calibrator, share), population, len(calibrator.agrees)


def _labelled(rows: pd.DataFrame, version: str, predicted, teacher_labels: pd.Series) -> pd.DataFrame:
    """`rows` (id, text_hash, embedding_version) with the student's predictions, in order, and the teacher's label
    where it answered (`teacher_labels` by id: every valid answer, suspects left out of training included)."""
    out = rows.assign(
        model_version=version,
        student_label=np.asarray(predicted.labels, dtype=object),
        confidence=np.asarray(predicted.confidence, dtype=np.float32),
    )
    label, source = final_labels(out["id"].to_numpy(), out["student_label"].to_numpy(), teacher_labels)
    return out.assign(label=label, source=source)
