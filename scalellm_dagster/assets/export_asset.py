"""A task's `exported_predictions` asset: its predictions upserted into PostgreSQL (SCALELLM_PREDICTIONS_TO), for
the users' own queries beside their rows.

Only what changed travels: the warehouse keeps what the last export wrote (`<task>.exported_state`), and the next
export sends the rows that differ from it and the ids that left. A missing state, another target, or a target whose
row count no longer matches the state (a table emptied or edited by hand) gets a full sync instead."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult

from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.names import EXPORTED_PREDICTIONS, EXPORTED_STATE, PREDICTIONS, task_table
from scalellm_dagster.resources import PredictionsSink, Warehouse
from scalellm_dagster.resources.postgres import EXPORT_COLUMNS
from scalellm_dagster.resources.predictions_sink import EXPORT_SELECT
from scalellm_dagster.tasks_config import TaskSpec


def exported_predictions_asset(task: TaskSpec, predictions: AssetsDefinition) -> AssetsDefinition:
    @task_asset(
        task,
        EXPORTED_PREDICTIONS,
        [predictions],
        "export",
        (
            f"The predictions written to PostgreSQL as <schema>.{task.name}_predictions "
            f"({', '.join(EXPORT_COLUMNS)}, written_at), in one transaction: only the rows that changed since the "
            "last export are sent (upserted by id) and rows no longer in the corpus deleted; unchanged rows keep "
            "their run id, and until the write commits readers see the previous complete table."
        ),
        kinds={"postgres"},
    )
    def exported_predictions(context: AssetExecutionContext, warehouse: Warehouse, sink: PredictionsSink):
        return materialize_export(context, task, warehouse, sink)

    return exported_predictions


def materialize_export(
    context: AssetExecutionContext, task: TaskSpec, warehouse: Warehouse, sink: PredictionsSink
) -> MaterializeResult:
    current = EXPORT_SELECT.format(table=task_table(task, PREDICTIONS))
    state, target = task_table(task, EXPORTED_STATE), sink.display(task.name)
    why_full = _full_sync_reason(warehouse, sink, task, state, target)
    if why_full:
        frame, deleted = warehouse.read_df(current), None
        context.log.info(f"writing all {len(frame):,} predictions to {target} ({why_full})")
    else:
        frame = warehouse.read_df(f"{current} EXCEPT SELECT id, label, source, student, confidence FROM {state}")
        deleted = warehouse.read_df(f"SELECT id FROM {state} ANTI JOIN ({current}) p USING (id)")["id"]
        context.log.info(f"sending {len(frame):,} changed predictions and {len(deleted):,} deletions to {target}")
    written = sink.write(task.name, frame, context.run.run_id, deleted)
    # after the commit: a failure here only makes the next export send again rows it has, which changes nothing
    warehouse.execute(f"CREATE OR REPLACE TABLE {state} AS SELECT *, ?::VARCHAR AS target FROM ({current})", [target])
    context.log.info(
        f"{written.table}: {written.inserted:,} inserted, {written.updated:,} updated, {written.deleted:,} "
        f"deleted, {written.unchanged:,} unchanged in {written.seconds:.1f}s"
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": written.rows,
            "table": target,
            "dagster/table_name": sink.table_name(task.name),
            "sync": f"full ({why_full})" if why_full else "changes only",
            "rows_sent": written.sent,
            "inserted": written.inserted,
            "updated": written.updated,
            "deleted": written.deleted,
            "unchanged": written.unchanged,
            "seconds": round(written.seconds, 2),
            "rows_sent_per_second": round(written.sent / max(written.seconds, 1e-9)),
        }
    )


def _full_sync_reason(warehouse: Warehouse, sink: PredictionsSink, task: TaskSpec, state: str, target: str) -> str:
    """Why this export sends every row, or '' when the changes alone will do."""
    if not warehouse.table_exists(state):
        return "no earlier export recorded"
    recorded = warehouse.read_df(f"SELECT any_value(target) AS target, count(*) AS n FROM {state}")
    if recorded["target"].iloc[0] != target:
        return f"the last export went to {recorded['target'].iloc[0]}"
    rows = sink.count(task.name)
    if rows != int(recorded["n"].iloc[0]):
        held = f"{rows:,}" if rows is not None else "no"
        return f"the table holds {held} rows, the last export wrote {int(recorded['n'].iloc[0]):,}"
    return ""
