"""The check on a task's `exported_predictions`: the PostgreSQL table, read back, row for row against the warehouse."""

import functools

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetKey, asset_check

from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.checks.gx_project import Suite, project_of, rule
from scalellm_dagster.checks.shared_checks import suite_name, suite_says
from scalellm_dagster.names import EXPORTED_PREDICTIONS, PREDICTIONS, task_key, task_table
from scalellm_dagster.resources import PredictionsSink, Warehouse
from scalellm_dagster.resources.predictions_sink import EXPORT_SELECT
from scalellm_dagster.tasks_config import TaskSpec

COMPARED = ("label", "source", "student", "confidence")


def export_suite(task: TaskSpec, rows: int) -> Suite:
    import great_expectations.expectations as gxe

    from scalellm_dagster.checks.rules import ExpectExportedValueToMatch, ExpectExportHoldsEveryRow

    return Suite(
        suite_name(task_key(task, EXPORTED_PREDICTIONS), "export_matches_warehouse"),
        [
            rule(gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "warehouse_rows"}), "same_row_count"),
            rule(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids_unique"),
            rule(ExpectExportHoldsEveryRow(), "every_row_exported"),
            *[rule(ExpectExportedValueToMatch(column=f"{c}_matches"), f"{c}_exported_as_is") for c in COMPARED],
        ],
        {"warehouse_rows": rows},
    )


def compare(warehouse_rows: pd.DataFrame, written: pd.DataFrame) -> pd.DataFrame:
    """One row per id on either side: whether it is on both, and whether each value is the same (ids compared as
    text, so an integer key and its text form meet)."""
    ours = warehouse_rows.assign(id=warehouse_rows["id"].astype(str))
    both = ours.merge(written, on="id", how="outer", suffixes=("", "_written"), indicator=True)
    both["row_matches"] = both["_merge"].map(
        {"both": "yes", "left_only": "missing (not written)", "right_only": "extra (not in the warehouse)"}
    )
    for column in COMPARED:
        left, right = both[column], both[f"{column}_written"]
        if column == "confidence":
            # REAL in PostgreSQL is the warehouse's float32: the same number, read back as a float64
            same = (left.astype("float32") == right.astype("float32")) | (left.isna() & right.isna())
        else:
            same = (left.astype(object) == right.astype(object)) | (left.isna() & right.isna())
        both[f"{column}_matches"] = same.fillna(False).astype(bool)
    return both.drop(columns="_merge")


def export_matches_warehouse_check(task: TaskSpec) -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey(task_key(task, EXPORTED_PREDICTIONS)),
        description=(
            "The PostgreSQL table read back holds exactly the warehouse's predictions: one row per id, no row "
            "missing or extra, the same label, source, student and confidence in every row."
            + suite_says(suite_name(task_key(task, EXPORTED_PREDICTIONS), "export_matches_warehouse"))
        ),
    )
    @functools.partial(bind_resources, prefix=task.key_prefix)
    @with_heartbeat
    def export_matches_warehouse(
        context: AssetCheckExecutionContext, warehouse: Warehouse, sink: PredictionsSink
    ) -> AssetCheckResult:
        ours = warehouse.read_df(EXPORT_SELECT.format(table=task_table(task, PREDICTIONS)))
        both = compare(ours, sink.read(task.name))
        outcome = project_of(warehouse).validate(export_suite(task, len(ours)), both, context.run.run_id)
        return AssetCheckResult(
            passed=outcome.passed, metadata={"table": sink.display(task.name), **outcome.metadata()}
        )

    return export_matches_warehouse
