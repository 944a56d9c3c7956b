"""A task's `predictions` asset: every row's label and confidence from the chosen student, the teacher's labels
where it answered, and the cascade's (flow steps 4 and 5)."""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets import task_io, task_metadata
from scalellm_dagster.assets.on_cluster import predict_on_cluster
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.assets.teacher_session import warehouse_session
from scalellm_dagster.cluster.parts import join
from scalellm_dagster.core.cascade import agreement_of_most_confident
from scalellm_dagster.flow import calibrate, final_labels, predict_rows, run_cascade, train_student
from scalellm_dagster.names import CORPUS, EMBEDDINGS, PREDICTIONS, task_table
from scalellm_dagster.resources import TeacherResource, Warehouse
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
        context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource, cluster: ClusterResource
    ):
        with cluster.session(warehouse.database, context.run.run_id) as (client, parts):
            return materialize_predictions(context, task, warehouse, teacher, cluster, client, parts)

    return predictions


def materialize_predictions(
    context: AssetExecutionContext,
    task: TaskSpec,
    warehouse: Warehouse,
    teacher: TeacherResource,
    cluster: ClusterResource,
    client,
    parts: str | None,
) -> MaterializeResult:
    sample, X_train, y_train = task_io.valid_sample(warehouse, task)
    student = train_student(task_io.chosen_student(warehouse, task), X_train, y_train, task.seed)
    table = task_table(task, PREDICTIONS)
    current, vectors_read = warehouse.read_df_with_snapshot(
        f"SELECT id, text_hash, embedding_version FROM {EMBEDDINGS}", EMBEDDINGS
    )
    version = task_io.model_version(student.name, sample, task)
    reuse, compute = task_io.reusable_predictions(
        warehouse, current, version, EMBEDDINGS, table if warehouse.table_exists(table) else None
    )
    context.log.info(f"predicting {len(compute):,} rows ({len(reuse):,} unchanged predictions reused)")
    predicted, where = _predict(
        context, task, warehouse, cluster, client, parts, student, current["id"].to_numpy()[compute]
    )
    out = _every_row_labelled(current, version, reuse, compute, predicted, task_io.sample_labels(warehouse, task))
    out, outcome, audit = _with_cascade(context, task, warehouse, teacher, student.name, out)
    out = out.assign(model=student.name)[COLUMNS]
    log = warehouse.snapshot_statements(table, context.run.run_id, vectors_read and vectors_read.corpus_run_id)
    written = warehouse.write_table(
        table, out, same_transaction=log + (task_io.audit_expectation_statements(task, *audit) if audit else [])
    )
    audit_note = {"audit_expected_agreement": round(audit[0], 4), "audit_population": audit[1]} if audit else {}
    where = {**where, **task_metadata.cascade_metadata(task, outcome, out), **audit_note}
    return MaterializeResult(
        metadata={
            **task_metadata.predictions_metadata(out, written, student, predicted, len(reuse), where),
            **task_metadata.gold_metrics(out, task_io.gold_labels(warehouse, task)),
        }
    )


def _predict(
    context, task: TaskSpec, warehouse: Warehouse, cluster: ClusterResource, client, parts: str | None, student, todo
) -> tuple:
    """(the student's labels and confidences for the `todo` ids, where they were computed)."""
    if client is not None and len(todo):
        return predict_on_cluster(
            client,
            cluster.describe(),
            warehouse,
            student,
            todo,
            EMBEDDINGS,
            join(parts, task.name),
            cluster.rows_per_part,
            context.log.info,
        )
    chunks = task_io.vector_chunks(warehouse, todo, EMBEDDINGS)
    return predict_rows(student, chunks, len(todo), log=context.log.info), {"ran_on": "in process"}


def _with_cascade(
    context: AssetExecutionContext,
    task: TaskSpec,
    warehouse: Warehouse,
    teacher: TeacherResource,
    student: str,
    out: pd.DataFrame,
):
    """(the rows with the cascade's answers, the cascade's outcome, what an audit should find): the calibration
    both need is made only when the task has a cascade or audits."""
    outcome, calibrator = None, None
    if task.cascade_budget > 0 or task.audit_rows > 0:
        calibrator = calibrate(student, task_io.calibration_sample(warehouse, task), task)
    if task.cascade_budget > 0:

        def session():
            corpus = warehouse.read_df(f"SELECT * FROM {CORPUS}")
            return warehouse_session(
                task,
                teacher,
                warehouse,
                corpus,
                task_io.simulation_vectors(warehouse, teacher, None),
                context.run.run_id,
                context.log.info,
            )

        outcome = run_cascade(
            calibrator,
            out["confidence"].to_numpy(),
            (out["source"] == "student").to_numpy(),
            out["id"].to_numpy(),
            task,
            task.cascade_budget,
            session,
            context.log.info,
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


def _every_row_labelled(
    current: pd.DataFrame, version: str, reuse: pd.DataFrame, compute: np.ndarray, predicted, teacher_labels: pd.Series
) -> pd.DataFrame:
    """Every row: reused and fresh student predictions, and the teacher's label where it answered (`teacher_labels`
    by id: every valid answer, suspects left out of training included)."""
    out = current.assign(model_version=version, student_label=None, confidence=np.float32(np.nan))
    if len(reuse):
        out = out.set_index("id")
        out.loc[reuse.index, ["student_label", "confidence"]] = reuse[["student_label", "confidence"]]
        out = out.reset_index()
    out.loc[compute, "student_label"] = predicted.labels
    out.loc[compute, "confidence"] = predicted.confidence
    out["confidence"] = out["confidence"].astype(np.float32)
    label, source = final_labels(out["id"].to_numpy(), out["student_label"].to_numpy(), teacher_labels)
    return out.assign(label=label, source=source)
