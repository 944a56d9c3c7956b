"""The asset factory: one branch of assets per task in the tasks file, all hanging off `embeddings`: the sample,
the candidates, the report, the predictions and the drift audit (`audit.py`).

Each asset reads its inputs, calls one step of the ScaleLLM flow (`scalellm_dagster.flow`), writes its table and
turns the step's result into metadata (`task_metadata`).
"""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, asset

from scalellm_dagster.assets import task_io as io
from scalellm_dagster.assets.audit import audited_ids, build_audit_asset, grant_topup
from scalellm_dagster.assets import task_metadata as meta
from scalellm_dagster.assets.shared import CORPUS_TABLE, EMBEDDINGS_TABLE, embeddings
from scalellm_dagster.assets.task_io import task_table
from scalellm_dagster.assets.teaching import warehouse_session
from scalellm_dagster.automation import task_fingerprint
from scalellm_dagster.core.cascade import agreement_of_most_confident
from scalellm_dagster.core.corpus import check_gold_column
from scalellm_dagster.flow import (
    LabelledSample,
    calibrate,
    evaluate_students,
    final_labels,
    first_rows,
    label_sample,
    predict_rows,
    run_cascade,
    select_student,
    train_student,
    with_accuracy_vs_gold,
)
from scalellm_dagster.flow.selection import GOLD_EVAL_ROWS
from scalellm_dagster.flow.suspects import review_suspects
from scalellm_dagster.assets.on_cluster import predict_on_cluster
from scalellm_dagster.cluster.parts import join
from scalellm_dagster.resources import TeacherResource, Warehouse
from scalellm_dagster.resources.cluster import ClusterResource
from scalellm_dagster.tasks_config import TaskSpec

__all__ = ["build_task_assets", "task_asset_key", "task_table"]


def task_asset_key(task: TaskSpec, name: str) -> AssetKey:
    return AssetKey([task.name, name])


# The badge the UI shows on labeled_sample: what really answers, so a simulation never wears an OpenAI badge.
TEACHER_KINDS = {"simulated": "python", "openai": "openai", "local": "llama"}


def build_task_assets(task: TaskSpec, embeddings_asset: AssetsDefinition = embeddings,
                      teacher_kind: str = "simulated") -> list[AssetsDefinition]:
    """The task's five assets: sample, candidates, report, predictions, drift audit."""
    # The code version is the task's fingerprint: the UI marks a task's assets as changed when its definition does.
    common = {"key_prefix": [task.name], "group_name": task.name, "owners": ["team:scalellm"],
              "code_version": task_fingerprint(task)}
    task_tags = {"task": task.name}

    @asset(
        name="labeled_sample",
        deps=[embeddings_asset],
        kinds={"duckdb", TEACHER_KINDS.get(teacher_kind, "python")},
        tags={**task_tags, "layer": "teacher", "teacher": teacher_kind},
        description=(
            f"Rows chosen for the teacher ({task.sampling} sampling, budget {task.budget:,}) and the teacher's "
            f"label for each, raw answer kept. Task: {task.description or task.instruction}"
        ),
        **common,
    )
    def labeled_sample(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource):
        corpus_df, corpus_read = warehouse.read_df_with_snapshot(f"SELECT * FROM {CORPUS_TABLE}", CORPUS_TABLE)
        if task.gold_column:  # before any teacher request; the other tasks go on
            check_gold_column(corpus_df, task.name, task.gold_column, task.label_names)
        ids = corpus_df["id"].to_numpy()
        budget, budget_note = io.effective_budget(warehouse, task)
        # clustering and the student's uncertainty need every vector at once
        matrix = None if task.sampling == "random" else warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=ids)[1]
        session_vectors = io.for_simulation(warehouse, teacher, matrix)
        session = warehouse_session(task, teacher, warehouse, corpus_df, session_vectors, context.run.run_id,
                                    context.log.info)
        # rows an audit asked about never train a student: they are not sampled
        in_pool = ~np.isin(ids, audited_ids(warehouse, task))
        pool, pool_matrix = ids[in_pool], None if matrix is None else matrix[in_pool]
        first = first_rows(pool, pool_matrix, task, budget)
        first_texts = corpus_df.set_index("id").loc[first, "text"].tolist()
        estimate = teacher.estimate(task, first_texts, len(corpus_df))
        context.log.info(f"{task.sampling} sampling, budget {budget:,} ({budget_note}); dry-run estimate before "
                         "any request (tokens ~4 chars each):\n" + estimate.to_string(index=False))
        labelled = label_sample(pool, pool_matrix, task, budget, session, first=first, log=context.log.info)
        drift_rows, topup_log, topup_note = grant_topup(warehouse, task, labelled.ids, context.run.run_id,
                                                        context.log.info)
        drift_rows = drift_rows[~np.isin(drift_rows, labelled.ids)]
        if len(drift_rows):
            session.ask(drift_rows)
            labelled = LabelledSample(np.concatenate([labelled.ids, drift_rows]),
                                      session.answers_for(np.concatenate([labelled.ids, drift_rows])))
        valid_ids = labelled.valid["id"].to_numpy()
        review = review_suspects(
            labelled.answers, warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=valid_ids)[1], task,
            None if teacher.batch_size == 1 else lambda: warehouse_session(
                task, teacher, warehouse, corpus_df, session_vectors, context.run.run_id, context.log.info,
                one_row_reask=True),
            context.log.info)
        sample = corpus_df.set_index("id").loc[labelled.ids, ["text"]].reset_index().merge(
            review.answers, on="id", how="left", validate="one_to_one")
        sample.insert(0, "sample_rank", np.arange(len(sample)))
        sample = sample.assign(teacher=session.name, prompt_version=session.model.prompt_version,
                               sampling=task.sampling, drift_topup=sample["id"].isin(drift_rows))
        table = task_table(task, "labeled_sample")
        written = warehouse.write_table(table, sample, also=io.keep_estimate_basis(task, teacher, first_texts)
                                        + topup_log + warehouse.snapshot_statements(
                                            table, context.run.run_id, corpus_read and corpus_read.run_id))
        return MaterializeResult(metadata={**meta.sample_metadata(
            task, sample, written, session, teacher.kind == "simulated", budget, budget_note, estimate),
            **meta.suspect_metadata(review, sample), "drift_topup": topup_note,
            "drift_topup_rows_in_sample": len(drift_rows)})

    @asset(
        name="student_candidates",
        deps=[labeled_sample, embeddings],  # reads the vectors directly: refreshes must order after them
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "students"},
        description="Every candidate student at several sample sizes: cross-validated accuracy against the "
        "teacher's labels, train time, inference throughput; failures recorded with their reason.",
        **common,
    )
    def student_candidates(context: AssetExecutionContext, warehouse: Warehouse):
        sample, X, y = io.valid_sample(warehouse, task)
        key = io.candidates_inputs_key(task, sample, X)
        result = io.stored_candidates(warehouse, task, key)
        if result is not None:
            context.log.info("same labels, vectors and settings as the stored scores: reused, nothing retrained")
            written = len(result.scores)
        else:
            result = evaluate_students(X, y, task, progress=context.log.info)
            written = warehouse.write_table(task_table(task, "student_candidates"),
                                            result.scores.assign(inputs_key=key))
        return MaterializeResult(metadata=meta.candidates_metadata(result, written))

    @asset(
        name="model_selection_report",
        deps=[student_candidates, embeddings],
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "selection"},
        description="The cost / accuracy / latency trade-off: accuracy vs teacher labels per candidate with a "
        "fitted learning curve and forecasts, teacher cost and time vs a row-by-row baseline, the chosen student.",
        **common,
    )
    def model_selection_report(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource):
        scores = warehouse.read_df(f"SELECT * FROM {task_table(task, 'student_candidates')}")
        sample, X, y = io.valid_sample(warehouse, task)
        spend = io.teacher_spend(warehouse, task, teacher.effective_concurrency)
        corpus_rows = warehouse.row_count(CORPUS_TABLE)
        selection = select_student(scores, X, y, task, corpus_rows, spend)
        gold = io.gold_labels(warehouse, task)
        answered = io.sample_labels(warehouse, task)  # suspects left out of training are still not held out
        held_out = None if gold is None else io.gold_eval_rows(warehouse, task, gold, answered.index.to_numpy(),
                                                                 GOLD_EVAL_ROWS)
        teacher_vs_gold = None
        if held_out is not None:
            selection = with_accuracy_vs_gold(selection, scores, X, y, *held_out, task.seed)
            teacher_vs_gold = io.teacher_accuracy_vs_gold(gold, answered.reset_index())
        report_table = selection.report_table
        written = warehouse.write_table(task_table(task, "model_selection_report"), report_table)
        summary = meta.report_summary(task, selection, spend, corpus_rows, io.teacher_description(warehouse, task))
        plot_meta = meta.report_plots(task, scores, selection, spend, corpus_rows, io.reports_dir(warehouse),
                                      teacher_vs_gold)
        context.log.info(f"chosen student for {task.name}: {selection.choice.candidate} "
                         f"({selection.choice.cv_accuracy:.3f})")
        return MaterializeResult(metadata={**meta.report_metadata(
            selection, report_table, written, spend, corpus_rows, summary, warehouse.ledger_by_run(task.name),
            plot_meta), **meta.noise_metadata(selection.noise)})

    @asset(
        name="predictions",
        deps=[model_selection_report, embeddings_asset],
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "predictions"},
        description="Every corpus row with its label, the student's confidence, and where the label came from: "
        "`teacher-sample` (sampled rows keep the teacher's label), `teacher-cascade` (rows the student was least "
        "sure of, sent back to the teacher when the task sets cascade_budget) or `student`. With a cluster "
        "configured, the rows are predicted there (the student sent to every worker once).",
        **common,
    )
    def predictions(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource,
                    cluster: ClusterResource):
        with cluster.session(warehouse.database, context.run.run_id) as on:
            return _predictions(context, warehouse, teacher, cluster, *on)

    def _predictions(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource,
                     cluster: ClusterResource, client, parts: str | None):
        sample, X_train, y_train = io.valid_sample(warehouse, task)
        student = train_student(io.chosen_student(warehouse, task), X_train, y_train, task.seed)
        table = task_table(task, "predictions")
        embedding_source, predictions_source = EMBEDDINGS_TABLE, table if warehouse.table_exists(table) else None
        current, vectors_read = warehouse.read_df_with_snapshot(
            f"SELECT id, text_hash, embedding_version FROM {embedding_source}", EMBEDDINGS_TABLE)
        version = io.model_version(student.name, sample, task)
        reuse, compute = io.reusable_predictions(warehouse, current, version, embedding_source, predictions_source)
        context.log.info(f"predicting {len(compute):,} rows ({len(reuse):,} unchanged predictions reused)")
        todo = current["id"].to_numpy()[compute]
        where = {"ran_on": "in process"}
        if client is not None and len(todo):
            predicted, where = predict_on_cluster(client, cluster.describe(), warehouse, student, todo,
                                                  embedding_source, join(parts, task.name), cluster.rows_per_part,
                                                  context.log.info)
        else:
            predicted = predict_rows(student, io.vector_chunks(warehouse, todo, embedding_source), len(todo),
                                     log=context.log.info)
        out = _assemble(current, version, reuse, compute, predicted, io.sample_labels(warehouse, task))
        outcome, calibrator = None, None
        if task.cascade_budget > 0 or task.audit_rows > 0:
            calibrator = calibrate(student.name, io.calibration_sample(warehouse, task), task)
        if task.cascade_budget > 0:
            outcome = run_cascade(calibrator, out["confidence"].to_numpy(), (out["source"] == "student").to_numpy(),
                                  out["id"].to_numpy(), task, task.cascade_budget,
                                  lambda: _cascade_session(context, warehouse, teacher), context.log.info)
            out.loc[out.index[outcome.answered], "label"] = outcome.labels
            out.loc[out.index[outcome.answered], "source"] = "teacher-cascade"
        out = out.assign(model=student.name)[["id", "label", "source", "confidence", "student_label", "model",
                                              "text_hash", "embedding_version", "model_version"]]
        log = warehouse.snapshot_statements(table, context.run.run_id, vectors_read and vectors_read.corpus_run_id)
        audit = audit_expectation(task, calibrator, outcome, out)
        written = warehouse.write_table(table, out, also=log + (io.audit_expectation_statements(task, *audit)
                                                                  if audit else []))
        return MaterializeResult(metadata={**meta.predictions_metadata(
            out, written, student, predicted, len(reuse),
            {**where, **meta.cascade_metadata(task, outcome, out),
             **({"audit_expected_agreement": round(audit[0], 4), "audit_population": audit[1]} if audit else {})}),
            **meta.gold_metrics(out, io.gold_labels(warehouse, task))})

    def _cascade_session(context, warehouse: Warehouse, teacher: TeacherResource):
        corpus_df = warehouse.read_df(f"SELECT * FROM {CORPUS_TABLE}")
        return warehouse_session(task, teacher, warehouse, corpus_df,
                                 io.for_simulation(warehouse, teacher, None), context.run.run_id,
                                 context.log.info)

    audit = build_audit_asset(task, predictions, common, {"duckdb", TEACHER_KINDS.get(teacher_kind, "python")})
    return [labeled_sample, student_candidates, model_selection_report, predictions, audit]


def audit_expectation(task: TaskSpec, calibrator, outcome, out: pd.DataFrame) -> tuple[float, str, int] | None:
    """(agreement an audit of the student-labelled rows should find, which rows, calibration rows): with a cascade,
    those rows are the most confident share, and the estimate is read off the same share of the held-out pairs."""
    if calibrator is None or not len(calibrator.agrees):
        return None
    student = int((out["source"] == "student").sum())
    sent = len(outcome.asked) if outcome is not None else 0
    share = student / max(student + sent, 1)
    population = ("every row the student labels" if not sent else
                  f"the {share:.0%} most confident of the rows outside the sample (the cascade sent the rest)")
    return agreement_of_most_confident(calibrator, share), population, len(calibrator.agrees)


def _assemble(current: pd.DataFrame, version: str, reuse: pd.DataFrame, compute: np.ndarray, predicted,
              teacher_labels: pd.Series) -> pd.DataFrame:
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
