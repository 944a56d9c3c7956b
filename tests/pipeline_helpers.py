"""Running the graph in-process in tests."""

from __future__ import annotations

import duckdb
from dagster import AssetSelection, DagsterInstance

from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.names import ALL_JOB
from scalellm_dagster.settings import Settings


def run_pipeline(
    instance: DagsterInstance, selection: AssetSelection | None = None, raise_on_error=False, tags: dict | None = None
):
    """Materialize (a selection of) the graph defined by the current environment, checks included."""
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_job_def(ALL_JOB)
    keys = list(selection.resolve(defs.resolve_asset_graph())) if selection is not None else None
    return job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=raise_on_error, tags=tags)


def query(db_path: str, sql: str):
    with duckdb.connect(db_path, read_only=True) as conn:
        return conn.execute(sql).fetchall()


def run_checks(instance: DagsterInstance, asset_keys: list[str]):
    """Run only the checks of the given assets, against what the warehouse holds now."""
    from dagster import AssetKey, Definitions, define_asset_job

    defs = build_definitions(Settings.from_env())
    keys = [AssetKey.from_user_string(k) for k in asset_keys]
    checks_job = define_asset_job("checks_only", selection=AssetSelection.checks_for_assets(*keys))
    defs = Definitions.merge(defs, Definitions(jobs=[checks_job]))
    return defs.resolve_job_def("checks_only").execute_in_process(instance=instance, raise_on_error=False)


def check_evaluations(result) -> dict:
    """ "asset:check" -> (passed, metadata values) of a run's check evaluations."""
    found = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            found[name] = (evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()})
    return found
