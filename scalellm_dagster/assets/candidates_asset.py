"""A task's `student_candidates` asset: every candidate student scored at several sample sizes (flow step 2)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue

from scalellm_dagster.assets import task_io
from scalellm_dagster.assets.conditions import follows_the_model
from scalellm_dagster.assets.metadata import column_schema, md_table
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.flow import Candidates, evaluate_students
from scalellm_dagster.names import STUDENT_CANDIDATES, task_table
from scalellm_dagster.resources import TaskStore
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
    def student_candidates(context: AssetExecutionContext, task_store: TaskStore):
        return materialize_student_candidates(context, task, task_store)

    return student_candidates


def materialize_student_candidates(
    context: AssetExecutionContext, task: TaskSpec, store: TaskStore
) -> MaterializeResult:
    sample, X, y = store.valid_sample(task)
    key = task_io.candidates_inputs_key(task, sample, X, store.draw_id(task))
    result = store.stored_candidates(task, key)
    if result is not None:
        context.log.info("same labels, vectors and settings as the stored scores: reused, nothing retrained")
        written = len(result.scores)
    else:
        result = evaluate_students(X, y, task, progress=context.log.info)
        written = store.warehouse.write_table(
            task_table(task, STUDENT_CANDIDATES), result.scores.assign(inputs_key=key)
        )
    return MaterializeResult(metadata=candidates_metadata(result, written))


def candidates_metadata(result: Candidates, written: int) -> dict:
    scores = result.scores
    pivot = scores.pivot_table(index="candidate", columns="sample_size", values="cv_accuracy")
    pivot.columns = [f"acc@{c}" for c in pivot.columns]
    return {
        "dagster/row_count": written,
        "dagster/column_schema": column_schema(scores),
        "sample_sizes": str(result.sizes),
        "failed": int((scores["status"] == "failed").sum()),
        "pruned": int((scores["status"] == "pruned").sum()),
        "reused_stored_scores": result.reused,
        "seconds": MetadataValue.float(round(result.seconds, 2)),
        "accuracy_vs_teacher": md_table(pivot.reset_index()),
        "candidates": md_table(scores.drop(columns=["error"])),
    }
