"""A task's `student_candidates` asset: every candidate student scored at several sample sizes (flow step 2)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets import task_io, task_metadata
from scalellm_dagster.assets.conditions import follows_the_model
from scalellm_dagster.assets.deployed_model import draw_id
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.flow import evaluate_students
from scalellm_dagster.names import STUDENT_CANDIDATES, task_table
from scalellm_dagster.resources import Warehouse
from scalellm_dagster.tasks_config import TaskSpec


def student_candidates_asset(
    task: TaskSpec, sample: AssetsDefinition, embeddings: AssetsDefinition
) -> AssetsDefinition:
    @task_asset(
        task,
        STUDENT_CANDIDATES,
        [sample, embeddings],  # reads the vectors directly: refreshes must order after them
        "students",
        (
            "Every candidate student at several sample sizes: cross-validated accuracy against the "
            "teacher's labels, train time, inference throughput; failures recorded with their reason."
        ),
        automation_condition=follows_the_model(embeddings.key),
    )
    def student_candidates(context: AssetExecutionContext, warehouse: Warehouse):
        return materialize_student_candidates(context, task, warehouse)

    return student_candidates


def materialize_student_candidates(
    context: AssetExecutionContext, task: TaskSpec, warehouse: Warehouse
) -> MaterializeResult:
    sample, X, y = task_io.valid_sample(warehouse, task)
    key = task_io.candidates_inputs_key(task, sample, X, draw_id(warehouse, task))
    result = task_io.stored_candidates(warehouse, task, key)
    if result is not None:
        context.log.info("same labels, vectors and settings as the stored scores: reused, nothing retrained")
        written = len(result.scores)
    else:
        result = evaluate_students(X, y, task, progress=context.log.info)
        written = warehouse.write_table(task_table(task, STUDENT_CANDIDATES), result.scores.assign(inputs_key=key))
    return MaterializeResult(metadata=task_metadata.candidates_metadata(result, written))
