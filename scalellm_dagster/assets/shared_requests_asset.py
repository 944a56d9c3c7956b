"""`shared_teacher_requests`: one request asks every task's question about the rows two or more tasks' samples share
(SCALELLM_SHARED_REQUESTS=true), before the tasks' own `labeled_sample` steps, which then find those rows answered
in their caches (flow/shared_requests.py)."""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from scalellm_dagster.assets import task_io
from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.metadata import md_table
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.assets.sample_plan import model_decision, sample_plan
from scalellm_dagster.assets.task_branch import pool_of
from scalellm_dagster.assets.teacher_session import warehouse_session
from scalellm_dagster.core.cost_estimate import estimate_labelling
from scalellm_dagster.flow.shared_requests import ask_shared, shared_rows
from scalellm_dagster.names import CORPUS, SHARED_REQUESTS, prefixed
from scalellm_dagster.resources import TaskStore, TeacherResource
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.multi_task import joint_teacher
from scalellm_dagster.teachers.prompt_cost import joint_prompt_sizes, prompt_sizes
from scalellm_dagster.teachers.teacher_kinds import teacher_kind


def shareable(tasks: list[TaskSpec]) -> list[TaskSpec]:
    """Tasks whose first sample is known before any answer (uncertainty sampling picks rows from answers)."""
    return [t for t in tasks if t.sampling != "uncertainty"]


def shared_requests_asset(tasks: list[TaskSpec], teacher_name: str, upstream: AssetsDefinition) -> AssetsDefinition:
    names = ", ".join(t.name for t in tasks)
    prefix = tasks[0].key_prefix  # the component instance's: all its tasks share it

    decorate = asset(
        name=SHARED_REQUESTS,
        key_prefix=list(prefix),
        deps=[upstream],
        pool=pool_of([upstream]),
        group_name=prefixed(prefix, "shared"),
        owners=["team:scalellm"],
        kinds={"duckdb", teacher_kind(teacher_name).badge},
        tags={"layer": "teacher", "teacher": teacher_name},
        description=(
            f"Rows in the first samples of two or more of the tasks ({names}), asked once for every task: one "
            "prompt with each task's question, one answer per task. Answers go to each task's cache under its own "
            "prompt version (a later single-task run reuses them); each task's ledger books its share of the "
            "request. The tasks' labeled_sample steps then ask only the rest."
        ),
    )

    def shared_teacher_requests(context: AssetExecutionContext, task_store: TaskStore, teacher: TeacherResource):
        return materialize_shared_requests(context, tasks, task_store, teacher)

    return decorate(bind_resources(with_heartbeat(shared_teacher_requests), prefix))


def materialize_shared_requests(
    context: AssetExecutionContext, tasks: list[TaskSpec], store: TaskStore, teacher: TeacherResource
) -> MaterializeResult:
    warehouse = store.warehouse
    # a task that keeps its model draws no sample in this run: asking about its rows would be paid for nothing
    budgets = {t.name: store.effective_budget(t) for t in tasks}
    drawing = [t for t in tasks if model_decision(store, t, context.run.tags, budgets[t.name]).replace]
    if len(drawing) < 2:
        kept = ", ".join(t.name for t in tasks if t not in drawing)
        context.log.info(f"fewer than two tasks draw a new sample in this run (kept: {kept}): nothing to ask jointly")
        return MaterializeResult(metadata={"tasks_drawing_a_sample": len(drawing), "models_kept": kept, "requests": 0})
    tasks = drawing
    corpus = warehouse.read_df(f"SELECT * FROM {CORPUS}")
    ids = corpus["id"].to_numpy()
    plans = {t.name: sample_plan(store, t, ids, budgets[t.name]) for t in tasks}
    shared = shared_rows({name: pd.Series(plan.first) for name, plan in plans.items()})
    rows = corpus.set_index("id").loc[np.asarray(shared), ["text"]].reset_index()
    matrix = next((p.matrix for p in plans.values() if p.matrix is not None), None)
    vectors = task_io.simulation_vectors(warehouse, teacher, matrix)
    sessions = {
        t.name: warehouse_session(t, teacher, warehouse, corpus, vectors, context.run.run_id, log=context.log.info)
        for t in tasks
    }
    estimate = shared_estimate(tasks, teacher, rows["text"].tolist())
    context.log.info(
        f"{len(rows):,} rows are in two or more of the tasks' samples; dry-run estimate before any request "
        "(tokens ~4 chars each):\n" + estimate.to_string(index=False)
    )
    joint = joint_teacher(tasks, {name: s.teacher for name, s in sessions.items()})
    outcome = ask_shared(
        joint,
        rows,
        {name: s.cache for name, s in sessions.items()},
        teacher.batch_size,
        teacher.effective_concurrency,
        context.log.info,
    )
    separate = estimate.iloc[0]
    per_task = pd.DataFrame(
        {
            "task": outcome.tasks,
            "answered": [outcome.answered[t] for t in outcome.tasks],
            "valid": [outcome.valid[t] for t in outcome.tasks],
            "valid_share": [round(outcome.valid[t] / max(outcome.answered[t], 1), 3) for t in outcome.tasks],
        }
    )
    context.log.info(
        f"shared requests: {outcome.requests} requests, {outcome.prompt_tokens + outcome.completion_tokens:,} "
        f"tokens for {outcome.asked:,} rows x {len(tasks)} tasks; valid answers "
        + ", ".join(f"{r.task} {r.valid}/{r.answered}" for r in per_task.itertuples())
    )
    return MaterializeResult(
        metadata={
            "tasks": ", ".join(outcome.tasks),
            "rows_in_two_or_more_samples": outcome.rows_shared,
            "rows_asked_jointly": outcome.asked,
            "rows_already_answered": outcome.already_answered,
            "requests": outcome.requests,
            "failed_requests": outcome.failed_requests,
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "tokens_estimated": outcome.tokens_estimated,
            "cost_usd": MetadataValue.float(round(outcome.cost_usd, 6)),
            "separate_requests_estimated": int(separate["requests"]),
            "separate_tokens_estimated": int(separate["prompt_tokens"] + separate["completion_tokens"]),
            "answers_per_task": md_table(per_task),
            "dry_run_estimate": md_table(estimate),
        }
    )


def shared_estimate(tasks: list[TaskSpec], teacher: TeacherResource, texts: list[str]) -> pd.DataFrame:
    """Asking about `texts` for every task: task by task (summed) against one joint request per batch, priced and
    paced as the dry run prices the sample."""
    p = teacher.pricing()
    common = dict(
        rows=len(texts),
        batch_size=teacher.batch_size,
        concurrency=teacher.effective_concurrency,
        seconds_per_request=p["seconds_per_request"],
        price_in_per_mtok=p["price_in_per_mtok"],
        price_out_per_mtok=p["price_out_per_mtok"],
        **teacher.pacing(),
    )
    singles = [estimate_labelling(prompt_sizes(t, texts), label=t.name, **common) for t in tasks]
    joint = estimate_labelling(joint_prompt_sizes(tasks, texts), label="one request for every task", **common)
    separate = {
        "label": "each task on its own (summed)",
        "rows": len(texts),
        **{
            k: sum(getattr(e, k) for e in singles)
            for k in ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "seconds")
        },
        # the tasks run one after another: their times add up
        "limited_by": ", ".join(sorted({e.limited_by for e in singles})),
    }
    return pd.DataFrame([separate, joint.as_row()])
