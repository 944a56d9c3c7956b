"""The flow's teacher session over the warehouse: answers cached in DuckDB, every request in its ledger."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext

from scalellm_dagster.flow import TeacherSession
from scalellm_dagster.flow.suspects import REASK_PROMPT_SUFFIX
from scalellm_dagster.resources import TaskStore, TeacherResource, Warehouse
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.simulated_hard import HardRowsTeacher


@dataclass
class TeacherRun:
    """What one materialization of a task's asset that may ask the teacher carries between its steps."""

    context: AssetExecutionContext
    task: TaskSpec
    store: TaskStore  # the task's state; its warehouse for everything else
    teacher: TeacherResource
    corpus: pd.DataFrame | None = None
    vectors: object = None  # what the simulated teacher reads (`task_io.simulation_vectors`)

    @property
    def warehouse(self) -> Warehouse:
        return self.store.warehouse

    def session(self, one_row_reask: bool = False) -> TeacherSession:
        return warehouse_session(
            self.task,
            self.teacher,
            self.warehouse,
            self.corpus,
            self.vectors,
            self.context.run.run_id,
            log=self.context.log.info,
            one_row_reask=one_row_reask,
        )


def warehouse_session(
    task: TaskSpec,
    teacher: TeacherResource,
    warehouse: Warehouse,
    corpus: pd.DataFrame,
    matrix: np.ndarray | None,
    run_id: str,
    *,
    log,
    one_row_reask: bool = False,
) -> TeacherSession:
    """`matrix` (row-aligned vectors, or a callable streaming blocks) feeds the simulated teacher only.
    `one_row_reask`: one row per request, cached apart from the batched answers (it is another prompt)."""
    model = teacher.build(task, corpus, matrix)
    if isinstance(model, HardRowsTeacher):
        model.log = log  # its first question reads the whole corpus: the run says so
    version = model.prompt_version + (REASK_PROMPT_SUFFIX if one_row_reask else "")
    cache = warehouse.answer_cache(
        {
            "provider": model.provider,
            "model": model.model,
            "prompt_version": version,
            "task": task.name,
            "run_id": run_id,
        }
    )
    batch = teacher.batch_round(
        task, model, cache.batches, log, {"scalellm_task": task.name, "scalellm_run": run_id, "prompt": version}
    )
    return TeacherSession(
        model,
        cache,
        corpus.set_index("id")["text"],
        1 if one_row_reask else teacher.batch_size,
        teacher.concurrency,
        log,
        store_window=teacher.store_window_seconds,
        batch=batch,
    )
