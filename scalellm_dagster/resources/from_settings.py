"""The resources the code location and the CLI use, made from the `Settings`."""

from __future__ import annotations

from pathlib import Path

from dagster import EnvVar

from scalellm_dagster.embedders.embedder_kinds import embedder_kind
from scalellm_dagster.resources.cluster import ClusterResource
from scalellm_dagster.resources.embedder import EmbedderResource
from scalellm_dagster.resources.predictions_sink import PredictionsSink, check_sink_setting
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.resources.task_store import TaskStore
from scalellm_dagster.resources.teacher import TeacherResource
from scalellm_dagster.resources.warehouse import Warehouse
from scalellm_dagster.settings import SettingError, Settings
from scalellm_dagster.teachers.teacher_kinds import teacher_kind


def check_kinds(settings: Settings) -> None:
    """An unknown kind, or one that cannot run here (an optional extra or a model file missing), is one line at
    start-up, before any step runs."""
    missing = (
        embedder_kind(settings.embedder).missing()
        or teacher_kind(settings.teacher).missing(settings)
        or check_sink_setting(settings.predictions_to)
    )
    if missing:
        raise SettingError(missing)


def pace_dir(duckdb_path: str) -> str | None:
    """Where the teacher's and embedder's send schedules are shared between processes: beside the warehouse they
    all write."""
    if not duckdb_path or duckdb_path == ":memory:":
        return None
    path = Path(duckdb_path)
    return str(path.parent / f"{path.stem}.pace")


def build_resources(settings: Settings) -> dict:
    check_kinds(settings)
    # The key is passed as an EnvVar so Dagster shows its name, never its value, in the UI and run config.
    api_key = EnvVar("OPENAI_API_KEY") if settings.openai_api_key else None
    warehouse = Warehouse(**settings.options("warehouse"))
    return {
        "warehouse": warehouse,
        "task_store": TaskStore(warehouse=warehouse),
        "source": CorpusSource(**settings.options("source")),
        "embedder": embedder_resource(settings, api_key),
        "cluster": ClusterResource(local_workers=settings.dask_local_workers, **settings.options("cluster")),
        "teacher": teacher_resource(settings, api_key),
        "sink": PredictionsSink(**settings.options("sink")),
    }


def embedder_resource(settings: Settings, api_key, **overrides) -> EmbedderResource:
    """The embedder the code location builds from `settings` (every `SCALELLM_EMBEDDING_*` option); `overrides`
    replace single options, as `scalellm bench`'s flags do."""
    options = {
        "kind": settings.embedder,
        "pace_dir": pace_dir(settings.duckdb_path),
        **settings.options("embedder"),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    return EmbedderResource(api_key=api_key, **options)


def teacher_resource(settings: Settings, api_key, **overrides) -> TeacherResource:
    """The teacher the code location builds from `settings` (every `SCALELLM_TEACHER_*` option: rate limits, pace
    folder, timeouts, prices…); `overrides` replace single options, as `scalellm bench`'s flags do."""
    options = {
        "kind": settings.teacher,
        "pace_dir": pace_dir(settings.duckdb_path),
        **settings.options("teacher"),
        **{k: v for k, v in overrides.items() if v is not None},
    }
    return TeacherResource(api_key=api_key, **options)
