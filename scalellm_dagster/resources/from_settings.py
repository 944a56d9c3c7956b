"""The resources the code location and the CLI use, made from the `Settings`."""

from __future__ import annotations

from dagster import EnvVar

from scalellm_dagster.embedders.embedder_kinds import embedder_kind
from scalellm_dagster.resources.cluster import ClusterResource
from scalellm_dagster.resources.embedder import EmbedderResource
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.resources.teacher import TeacherResource
from scalellm_dagster.resources.warehouse import Warehouse
from scalellm_dagster.settings import SettingError, Settings
from scalellm_dagster.teachers.teacher_kinds import teacher_kind


def check_kinds(settings: Settings) -> None:
    """An unknown kind, or one that cannot run here (an optional extra or a model file missing), is one line at
    start-up, before any step runs."""
    missing = embedder_kind(settings.embedder).missing() or teacher_kind(settings.teacher).missing(settings)
    if missing:
        raise SettingError(missing)


def build_resources(settings: Settings) -> dict:
    check_kinds(settings)
    # The key is passed as an EnvVar so Dagster shows its name, never its value, in the UI and run config.
    api_key = EnvVar("OPENAI_API_KEY") if settings.openai_api_key else None
    return {
        "warehouse": Warehouse(database=settings.duckdb_path, memory_limit=settings.duckdb_memory_limit),
        "source": CorpusSource(
            path=settings.corpus,
            id_column=settings.id_column,
            text_column=settings.text_column,
            max_text_chars=settings.max_text_chars,
            csv_id_type=settings.csv_id_type,
        ),
        "embedder": EmbedderResource(
            kind=settings.embedder,
            dim=settings.embedding_dim,
            model=settings.embedding_model,
            base_url=settings.openai_base_url,
            api_key=api_key,
            batch_size=settings.embedding_batch_size,
            refit=settings.embedding_refit,
        ),
        "cluster": ClusterResource(
            scheduler=settings.dask_scheduler,
            local_workers=settings.dask_local_workers,
            parts_root=settings.dask_parts,
            rows_per_part=settings.dask_part_rows,
        ),
        "teacher": TeacherResource(
            kind=settings.teacher,
            model=settings.teacher_model,
            base_url=settings.openai_base_url,
            api_key=api_key,
            batch_size=settings.teacher_batch_size,
            concurrency=settings.teacher_concurrency,
            max_retries=settings.teacher_max_retries,
            timeout_seconds=settings.teacher_timeout_seconds,
            price_in_per_mtok=settings.price_in_per_mtok,
            price_out_per_mtok=settings.price_out_per_mtok,
            simulated_accuracy=settings.simulated_accuracy,
            simulated_bias=settings.simulated_bias,
            simulated_latency_ms=settings.simulated_latency_ms,
            local_model=settings.local_model,
            local_threads=settings.local_threads,
            store_window_seconds=settings.teacher_store_seconds,
        ),
    }
