"""Running the graph in-process in tests."""

from __future__ import annotations

import duckdb
from dagster import AssetSelection, DagsterInstance

from scalellm_dagster.definitions import ALL_JOB, build_definitions
from scalellm_dagster.settings import Settings


def run_pipeline(instance: DagsterInstance, selection: AssetSelection | None = None, raise_on_error=False):
    """Materialize (a selection of) the graph defined by the current environment, checks included."""
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_job_def(ALL_JOB)
    keys = list(selection.resolve(defs.resolve_asset_graph())) if selection is not None else None
    return job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=raise_on_error)


def query(db_path: str, sql: str):
    with duckdb.connect(db_path, read_only=True) as conn:
        return conn.execute(sql).fetchall()
