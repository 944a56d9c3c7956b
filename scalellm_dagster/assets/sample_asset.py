"""A task's `labeled_sample` asset: the rows chosen for the teacher and its answers (flow steps 1 and 1b)."""

import numpy as np
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets import sample_metadata, task_io
from scalellm_dagster.assets.conditions import model_condition
from scalellm_dagster.assets.sample_plan import model_decision, sample_plan
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.assets.teacher_session import TeacherRun
from scalellm_dagster.core.corpus import check_gold_column
from scalellm_dagster.core.model_policy import Decision
from scalellm_dagster.flow import LabelledSample, TeacherSession, label_sample
from scalellm_dagster.flow.suspects import review_suspects
from scalellm_dagster.names import CORPUS, EMBEDDINGS, LABELED_SAMPLE, task_table
from scalellm_dagster.resources import TaskStore, TeacherResource, Warehouse
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.teacher_kinds import teacher_kind


def labeled_sample_asset(
    task: TaskSpec, upstream: AssetsDefinition, teacher: str, shared: AssetsDefinition | None = None
) -> AssetsDefinition:
    """`shared`: the `shared_teacher_requests` asset, when this task's shared rows are asked jointly before it."""

    @task_asset(
        task,
        LABELED_SAMPLE,
        [upstream, *([shared] if shared is not None else [])],
        "teacher",
        (
            f"Rows chosen for the teacher ({task.sampling} sampling, budget {task.budget:,}) and the teacher's "
            f"label for each, raw answer kept. Task: {task.description or task.instruction}"
        ),
        kinds={"duckdb", teacher_kind(teacher).badge},  # what really answers: a simulation wears no OpenAI badge
        tags={"teacher": teacher},
        automation_condition=model_condition(task),
    )
    def labeled_sample(context: AssetExecutionContext, task_store: TaskStore, teacher: TeacherResource):
        return materialize_labeled_sample(TeacherRun(context, task, task_store, teacher))

    return labeled_sample


def materialize_labeled_sample(run: TeacherRun) -> MaterializeResult:
    task, warehouse = run.task, run.warehouse
    budget = run.store.effective_budget(task)  # once: the decision, the plan and the estimate read this one value
    decision = model_decision(run.store, task, run.context.run.tags, budget)
    run.context.log.info(f"{task.name}: model {'replaced' if decision.replace else 'kept'} ({decision.reason})")
    if not decision.replace:
        return _kept_sample(run, decision)
    run.corpus, corpus_read = warehouse.read_df_with_snapshot(f"SELECT * FROM {CORPUS}", CORPUS)
    if task.gold_column:  # before any teacher request; the other tasks go on
        check_gold_column(run.corpus, task.name, task.gold_column, task.label_names)
    plan = sample_plan(run.store, task, run.corpus["id"].to_numpy(), budget)
    run.vectors = task_io.simulation_vectors(warehouse, run.teacher, plan.matrix)
    session = run.session()
    first_texts = run.corpus.set_index("id").loc[plan.first, "text"].tolist()
    estimate = run.teacher.cost_estimate(task, first_texts, len(run.corpus), budget=plan.budget)
    run.context.log.info(
        f"{task.sampling} sampling, budget {plan.budget:,} ({plan.budget_note}); dry-run estimate before "
        "any request (tokens ~4 chars each):\n" + estimate.to_string(index=False)
    )
    labelled = label_sample(
        plan.pool, plan.pool_matrix, task, plan.budget, session, first=plan.first, log=run.context.log.info
    )
    labelled, drift_rows, topup_log, topup_note = _with_drift_topup(run, session, labelled)
    sample, review = _reviewed_sample(run, session, labelled, drift_rows)
    table = task_table(task, LABELED_SAMPLE)
    written = warehouse.write_table(
        table,
        sample,
        same_transaction=(
            run.store.estimate_basis_statements(task, run.teacher, first_texts)
            + topup_log
            + warehouse.snapshot_statements(table, run.context.run.run_id, corpus_read and corpus_read.run_id)
            + run.store.draw_statements(
                task,
                run_id=run.context.run.run_id,
                corpus_rows=len(run.corpus),
                embedding=_main_embedding_version(warehouse),
                budget=plan.budget,
                reason=decision.reason,
            )
        ),
    )
    return MaterializeResult(
        metadata={
            "model": "replaced: a new sample was drawn",
            "model_decision": decision.reason,
            "corpus_rows_at_draw": len(run.corpus),
            "drawn_by_run": run.context.run.run_id,
            **sample_metadata.sample_metadata(
                task,
                sample,
                written,
                session,
                run.teacher.spec.simulated,
                plan.budget,
                budget_note=plan.budget_note,
                estimate=estimate,
            ),
            **sample_metadata.suspect_metadata(review, sample),
            "drift_topup": topup_note,
            "drift_topup_rows_in_sample": len(drift_rows),
        }
    )


def _main_embedding_version(warehouse: Warehouse) -> str:
    """The embedder version of most vectors: what the model drawn now is trained on."""
    found = warehouse.read_df(
        f"SELECT embedding_version FROM {EMBEDDINGS} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    return str(found["embedding_version"].iloc[0]) if len(found) else ""


def _kept_sample(run: TeacherRun, decision: Decision) -> MaterializeResult:
    """The deployed model stays: the sample is left as drawn (no request, no write). Its checks judge it against the
    corpus it was drawn from, which this run's snapshot points to."""
    task, warehouse = run.task, run.warehouse
    table = task_table(task, LABELED_SAMPLE)
    drawn = warehouse.snapshot(table)
    for sql, params in warehouse.snapshot_statements(table, run.context.run.run_id, drawn and drawn.corpus_run_id):
        warehouse.execute(sql, params)
    return MaterializeResult(
        metadata=sample_metadata.kept_sample_metadata(
            decision, run.store.last_draw(task), warehouse.row_count(table), warehouse.row_count(CORPUS)
        )
    )


def _with_drift_topup(run: TeacherRun, session: TeacherSession, labelled: LabelledSample):
    """The sample with the drift top-up rows failed audits called for (asked of the teacher now), those rows,
    the statements that record the grant, and a note for the UI."""
    drift_rows, topup_log, topup_note = run.store.grant_topup(
        run.task, labelled.ids, run.context.run.run_id, run.context.log.info
    )
    drift_rows = drift_rows[~np.isin(drift_rows, labelled.ids)]
    if len(drift_rows):
        session.ask(drift_rows)
        every = np.concatenate([labelled.ids, drift_rows])
        labelled = LabelledSample(every, session.answers_for(every))
    return labelled, drift_rows, topup_log, topup_note


def _reviewed_sample(run: TeacherRun, session: TeacherSession, labelled: LabelledSample, drift_rows: np.ndarray):
    """The sample table (texts, answers, the suspect review's verdicts, provenance) and the review."""
    valid_ids = labelled.valid["id"].to_numpy()
    review = review_suspects(
        labelled.answers,
        run.warehouse.read_embeddings(EMBEDDINGS, ids=valid_ids)[1],
        run.task,
        None if run.teacher.batch_size == 1 else lambda: run.session(one_row_reask=True),
        run.context.log.info,
    )
    sample = (
        run.corpus.set_index("id")
        .loc[labelled.ids, ["text"]]
        .reset_index()
        .merge(review.answers, on="id", how="left", validate="one_to_one")
    )
    sample.insert(0, "sample_rank", np.arange(len(sample)))
    sample = sample.assign(
        teacher=session.name,
        prompt_version=session.teacher.prompt_version,
        sampling=run.task.sampling,
        drift_topup=sample["id"].isin(drift_rows),
    )
    return sample, review
