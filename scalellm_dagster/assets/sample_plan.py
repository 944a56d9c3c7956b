"""What a task's next sample is: whether a run replaces the deployed model (draws a new sample) or keeps it, and
the rows it would be drawn from. Both teacher-asking assets use it: `labeled_sample` and `shared_teacher_requests`."""

from dataclasses import dataclass

import numpy as np

from scalellm_dagster.assets.deployed_model import retrain_requested
from scalellm_dagster.core.model_policy import Decision, decide
from scalellm_dagster.flow import initial_sample_ids
from scalellm_dagster.names import CORPUS, EMBEDDINGS, LABELED_SAMPLE, task_fingerprint, task_table
from scalellm_dagster.resources import TaskStore
from scalellm_dagster.resources.duckdb_sql import utc_now
from scalellm_dagster.tasks_config import TaskSpec


@dataclass
class SamplePlan:
    """What a task's sample is drawn from, and its first rows: known before any request."""

    budget: int
    budget_note: str
    matrix: np.ndarray | None  # every corpus row's vector, when the sampling needs them
    pool: np.ndarray
    pool_matrix: np.ndarray | None
    first: np.ndarray


def sample_plan(store: TaskStore, task: TaskSpec, ids: np.ndarray, budget: tuple[int, str]) -> SamplePlan:
    """`budget`: the budget to draw and why (`TaskStore.effective_budget`), resolved once by the step."""
    budget, budget_note = budget
    warehouse = store.warehouse
    # clustering and the student's uncertainty need every vector at once
    matrix = None if task.sampling == "random" else warehouse.read_embeddings(EMBEDDINGS, ids=ids)[1]
    # rows an audit asked about never train a student: they are not sampled
    in_pool = ~np.isin(ids, store.audited_ids(task))
    pool, pool_matrix = ids[in_pool], None if matrix is None else matrix[in_pool]
    first = initial_sample_ids(pool, pool_matrix, task, budget)
    return SamplePlan(budget, budget_note, matrix, pool, pool_matrix, first)


def model_decision(store: TaskStore, task: TaskSpec, run_tags: dict, budget: tuple[int, str]) -> Decision:
    """Whether a materialization in a run with these tags replaces the task's deployed model (draws a new sample) or
    keeps it; `budget` as for `sample_plan`."""
    warehouse = store.warehouse
    has_sample = warehouse.table_exists(task_table(task, LABELED_SAMPLE))
    return decide(
        store.last_draw(task) if has_sample else None,
        definition=task_fingerprint(task),
        corpus_rows=warehouse.row_count(CORPUS),
        now=utc_now(),
        cron=task.retrain_cron,
        growth=task.retrain_growth,
        drift_due=store.due_topup(task, store.granted_topups(task)) is not None,
        requested=retrain_requested(run_tags, task.name),
        embedding_versions=warehouse.embedding_versions(),
        budget=budget,
    )
