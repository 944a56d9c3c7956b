"""A task's `exported_predictions` asset: its predictions upserted into PostgreSQL (SCALELLM_PREDICTIONS_TO), for
the users' own queries beside their rows."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.names import EXPORTED_PREDICTIONS, PREDICTIONS, task_table
from scalellm_dagster.resources import PredictionsSink, Warehouse
from scalellm_dagster.resources.postgres import EXPORT_COLUMNS
from scalellm_dagster.tasks_config import TaskSpec

# The predictions table's columns under the names the written table uses.
EXPORT_SELECT = "SELECT id, label, source, model AS student, confidence FROM {table}"


def exported_predictions_asset(task: TaskSpec, predictions: AssetsDefinition) -> AssetsDefinition:
    @task_asset(
        task,
        EXPORTED_PREDICTIONS,
        [predictions],
        "export",
        (
            f"The predictions written to PostgreSQL as <schema>.{task.name}_predictions "
            f"({', '.join(EXPORT_COLUMNS)}, written_at), upserted by id in one transaction: rows no longer in the "
            "corpus are deleted, unchanged rows keep their run id, and until the write commits readers see the "
            "previous complete table."
        ),
        kinds={"postgres"},
    )
    def exported_predictions(context: AssetExecutionContext, warehouse: Warehouse, sink: PredictionsSink):
        frame = warehouse.read_df(EXPORT_SELECT.format(table=task_table(task, PREDICTIONS)))
        context.log.info(f"writing {len(frame):,} predictions to {sink.display(task.name)}")
        written = sink.write(task.name, frame, context.run.run_id)
        context.log.info(
            f"{written.table}: {written.inserted:,} inserted, {written.updated:,} updated, {written.deleted:,} "
            f"deleted, {written.unchanged:,} unchanged in {written.seconds:.1f}s"
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": written.rows,
                "table": sink.display(task.name),
                "inserted": written.inserted,
                "updated": written.updated,
                "deleted": written.deleted,
                "unchanged": written.unchanged,
                "seconds": round(written.seconds, 2),
                "rows_per_second": round(written.rows / max(written.seconds, 1e-9)),
            }
        )

    return exported_predictions
