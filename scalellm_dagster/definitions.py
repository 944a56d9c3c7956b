"""The code location: one `Definitions` from the `Settings` (environment variables, read once).

With nothing set, everything is local and offline: the bundled banking77 demo, static embeddings, the
`simulated_hard` teacher (a simulation of an LLM from gold labels), and a DuckDB file under data/. README
("Configuration") lists the variables that switch on real providers.
"""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    Definitions,
    JobDefinition,
    define_asset_job,
    in_process_executor,
    map_asset_specs,
    multiprocess_executor,
)

from scalellm_dagster.assets import build_foundation, build_task_assets
from scalellm_dagster.assets.deployed_model import RETRAIN_TAG
from scalellm_dagster.assets.shared_requests_asset import shareable, shared_requests_asset
from scalellm_dagster.automation import build_sensors, corpus_source_spec
from scalellm_dagster.checks import build_checks
from scalellm_dagster.names import (
    ALL_JOB,
    CORPUS,
    EMBEDDINGS,
    RETRAIN_JOB,
    TASK_ASSETS,
    WAREHOUSE_TAGS,
    task_key,
    task_table,
    warehouse_pool,
)
from scalellm_dagster.resources.from_settings import build_resources
from scalellm_dagster.settings import Settings
from scalellm_dagster.tasks_config import load_tasks


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    tasks = load_tasks(settings.tasks)
    export = bool(settings.predictions_to)
    upstream = settings.upstream_keys
    corpus, embeddings = build_foundation(warehouse_pool(settings.duckdb_path), upstream)
    joint = shareable(tasks) if settings.shared_requests else []
    shared = shared_requests_asset(joint, settings.teacher, embeddings) if len(joint) >= 2 else None
    all_job = define_asset_job(
        ALL_JOB,
        selection=AssetSelection.all(),
        tags=WAREHOUSE_TAGS,
        description=(
            "Materialize the corpus, its embeddings and every task's branch, with all checks. Each task's model is "
            "kept unless its replacement policy says otherwise: new or edited rows are predicted with it."
        ),
    )
    retrain_job = define_asset_job(
        RETRAIN_JOB,
        # everything below the foundation: not the embeddings, the corpus, nor the source(s) the corpus reads
        selection=AssetSelection.all() - AssetSelection.keys(EMBEDDINGS).upstream(),
        tags={**WAREHOUSE_TAGS, RETRAIN_TAG: "all"},
        description=(
            "Replace every task's model now: a new sample from the corpus as it is, candidates, report and student, "
            "then every row predicted again. One task only: launch it with the tag scalellm/retrain=<task>, or "
            "`scalellm run --retrain <task>`."
        ),
    )
    assets = [
        *([] if upstream else [corpus_source_spec(settings)]),
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
    tables = {
        AssetKey(CORPUS): f"main.{CORPUS}",
        AssetKey(EMBEDDINGS): f"main.{EMBEDDINGS}",
        **{AssetKey(task_key(t, name)): task_table(t, name) for t in tasks for name in TASK_ASSETS},
    }
    catalog = "memory" if settings.duckdb_path == ":memory:" else Path(settings.duckdb_path).stem
    return Definitions(
        # the DuckDB table each asset writes, as `catalog.schema.table` (Dagster's `dagster/table_name`, which the UI
        # shows and catalogs join on)
        assets=map_asset_specs(
            lambda spec: (
                spec.merge_attributes(metadata={"dagster/table_name": f"{catalog}.{tables[spec.key]}"})
                if spec.key in tables
                else spec
            ),
            assets,
        ),
        asset_checks=build_checks(tasks, export),
        jobs=[all_job, retrain_job],
        sensors=build_sensors(settings, tasks, all_job),
        resources=build_resources(settings),
        # One process per run: a step process costs seconds of imports, more than most steps compute, and steps
        # would only take turns on the one DuckDB file anyway; row-parallel work goes to the cluster resource.
        # `scalellm run --multiprocess` keeps the multiprocess executor.
        executor=in_process_executor,
    )


defs = build_definitions()


def all_job() -> JobDefinition:
    """Module-level handle so `reconstructable` can rebuild the job in step subprocesses."""
    return defs.resolve_job_def(ALL_JOB)


def all_job_multiprocess() -> JobDefinition:
    """The same job with each step in its own process, two at a time (`scalellm run --multiprocess`): each step
    opens the DuckDB file only briefly and waits for the lock if it must."""
    return all_job().with_executor_def(multiprocess_executor.configured({"max_concurrent": 2}))
