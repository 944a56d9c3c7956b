"""The asset graph of one corpus: its source, corpus, embeddings, every task's branch, the checks, the jobs, the
sensors and the resources, made from `Settings`. The `ScaleLLM` component builds each of its instances with it
(under the instance's key prefix), and the environment-variable code location is one instance without a prefix."""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    Definitions,
    define_asset_job,
    in_process_executor,
    map_asset_specs,
)

from scalellm_dagster.assets import build_foundation, build_task_assets
from scalellm_dagster.assets.deployed_model import RETRAIN_TAG
from scalellm_dagster.assets.resource_keys import resources_of
from scalellm_dagster.assets.shared_requests_asset import shareable, shared_requests_asset
from scalellm_dagster.automation import build_sensors, corpus_source_spec, instance_assets
from scalellm_dagster.checks import build_checks
from scalellm_dagster.names import (
    ALL_JOB,
    CORPUS,
    EMBEDDINGS,
    RETRAIN_JOB,
    TASK_ASSETS,
    WAREHOUSE_TAGS,
    key_path,
    prefixed,
    task_key,
    task_table,
    warehouse_pool,
)
from scalellm_dagster.resources.from_settings import build_resources
from scalellm_dagster.settings import Settings
from scalellm_dagster.tasks_config import TaskSpec


def build_graph(settings: Settings, tasks: list[TaskSpec], prefix: tuple[str, ...] = ()) -> Definitions:
    """Everything one corpus needs; with a `prefix`, every asset key, resource key, job and sensor is under it, so
    several corpora live in one code location without sharing anything by accident."""
    export = bool(settings.predictions_to)
    upstream = [AssetKey(path) for path in settings.upstream_keys]
    corpus, embeddings = build_foundation(warehouse_pool(settings.duckdb_path), upstream, prefix)
    joint = shareable(tasks) if settings.shared_requests else []
    shared = shared_requests_asset(joint, settings.teacher, embeddings) if len(joint) >= 2 else None
    ours = instance_assets(prefix)
    all_job = define_asset_job(
        prefixed(prefix, ALL_JOB),
        selection=ours,
        tags=WAREHOUSE_TAGS,
        # One process per run: a step process costs seconds of imports, more than most steps compute, and steps
        # would only take turns on the one DuckDB file anyway; row-parallel work goes to the cluster resource.
        executor_def=in_process_executor,
        description=(
            "Materialize the corpus, its embeddings and every task's branch, with all checks. Each task's model is "
            "kept unless its replacement policy says otherwise: new or edited rows are predicted with it."
        ),
    )
    retrain_job = define_asset_job(
        prefixed(prefix, RETRAIN_JOB),
        # everything below the foundation: not the embeddings, the corpus, nor the source(s) the corpus reads
        selection=ours - AssetSelection.keys(embeddings.key).upstream(),
        tags={**WAREHOUSE_TAGS, RETRAIN_TAG: "all"},
        executor_def=in_process_executor,
        description=(
            "Replace every task's model now: a new sample from the corpus as it is, candidates, report and student, "
            "then every row predicted again. One task only: launch it with the tag scalellm/retrain=<task>, or "
            "`scalellm run --retrain <task>`."
        ),
    )
    assets = [
        *([] if upstream else [corpus_source_spec(settings, prefix)]),
        corpus,
        embeddings,
        *([shared] if shared is not None else []),
        *[
            a
            for task in tasks
            for a in build_task_assets(
                task, embeddings, settings.teacher, export=export, shared=shared if task in joint else None
            )
        ],
    ]
    return Definitions(
        assets=with_table_names(assets, settings, tasks, prefix),
        asset_checks=build_checks(tasks, export, prefix),
        jobs=[all_job, retrain_job],
        sensors=build_sensors(settings, tasks, all_job, prefix),
        resources=resources_of(build_resources(settings), prefix),
    )


def with_table_names(assets: list, settings: Settings, tasks: list[TaskSpec], prefix: tuple[str, ...]) -> list:
    """The DuckDB table each asset writes, as `catalog.schema.table` (Dagster's `dagster/table_name`, which the UI
    shows and catalogs join on)."""
    tables = {
        AssetKey(key_path(prefix, CORPUS)): f"main.{CORPUS}",
        AssetKey(key_path(prefix, EMBEDDINGS)): f"main.{EMBEDDINGS}",
        **{AssetKey(task_key(t, name)): task_table(t, name) for t in tasks for name in TASK_ASSETS},
    }
    catalog = "memory" if settings.duckdb_path == ":memory:" else Path(settings.duckdb_path).stem
    return map_asset_specs(
        lambda spec: (
            spec.merge_attributes(metadata={"dagster/table_name": f"{catalog}.{tables[spec.key]}"})
            if spec.key in tables
            else spec
        ),
        assets,
    )
