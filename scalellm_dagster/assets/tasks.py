"""The asset factory: one branch of assets per task in the tasks file, all hanging off `embeddings`: the sample,
the candidates, the report, the predictions and the drift audit, each built by its own module.

Each asset reads its inputs (the task's state through the `TaskStore` resource), calls one step of the ScaleLLM flow
(`scalellm_dagster.flow`), writes its table and turns the step's result into metadata (its `*_metadata` module).
"""

from dagster import AssetsDefinition

from scalellm_dagster.assets.audit_asset import drift_audit_asset
from scalellm_dagster.assets.candidates_asset import student_candidates_asset
from scalellm_dagster.assets.export_asset import exported_predictions_asset
from scalellm_dagster.assets.predictions_asset import predictions_asset
from scalellm_dagster.assets.report_asset import model_selection_report_asset
from scalellm_dagster.assets.sample_asset import labeled_sample_asset
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.teacher_kinds import teacher_kind


def build_task_assets(
    task: TaskSpec,
    embeddings_asset: AssetsDefinition,
    teacher: str = "simulated_hard",
    export: bool = False,
    shared: AssetsDefinition | None = None,
) -> list[AssetsDefinition]:
    """The task's five assets: sample, candidates, report, predictions, drift audit, and with `export` (a
    predictions sink is configured) the predictions written to PostgreSQL; `teacher` is the teacher kind that
    answers (its badge shows on the assets that ask it); they write the warehouse `embeddings_asset` writes and take
    turns in its concurrency pool; `shared`: the shared_teacher_requests asset, when it asks
    this task's shared rows first."""
    sample = labeled_sample_asset(task, embeddings_asset, teacher, shared)
    candidates = student_candidates_asset(task, sample, embeddings_asset)
    report = model_selection_report_asset(task, candidates, embeddings_asset)
    predictions = predictions_asset(task, report, embeddings_asset)
    audit = drift_audit_asset(task, predictions, {"duckdb", teacher_kind(teacher).badge})
    return [sample, candidates, report, predictions, audit] + (
        [exported_predictions_asset(task, predictions)] if export else []
    )
