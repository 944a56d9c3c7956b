"""Schedules and sensors: a nightly refresh, new files in the corpus folder, a changed PostgreSQL source table,
changed task definitions, and drift audits that failed twice in a row."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from scalellm_dagster.core.audit import FAILURES_BEFORE_TOPUP
from scalellm_dagster.core.corpus import CorpusError
from scalellm_dagster.names import (
    CORPUS,
    DRIFT_AUDIT,
    EMBEDDINGS,
    EXPORTED_PREDICTIONS,
    PREDICTIONS,
    TASK_ASSETS,
    WAREHOUSE_TAGS,
    task_fingerprint,
    task_key,
)
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.settings import Settings
from scalellm_dagster.tasks_config import TaskConfigError, TaskSpec, load_tasks


def build_schedules(all_job, cron: str) -> list[ScheduleDefinition]:
    return [
        ScheduleDefinition(
            name="nightly_refresh",
            job=all_job,
            cron_schedule=cron,
            default_status=DefaultScheduleStatus.STOPPED,
            tags=WAREHOUSE_TAGS,
            description="Reload the corpus and refresh everything downstream: unchanged rows are not re-embedded "
            "or re-predicted, cached teacher answers are not paid for again (cron: SCALELLM_REFRESH_CRON).",
        )
    ]


def _materialized_files(instance) -> dict[str, str]:
    """The files (size:mtime) the latest corpus materialization read."""
    event = instance.get_latest_materialization_event(AssetKey(CORPUS))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return dict(meta["source_files"].value) if "source_files" in meta else {}


def _materialized_source(instance) -> tuple[str | None, str]:
    """(the `rows:hash` of the PostgreSQL source the latest corpus materialization read, that run's id)."""
    event = instance.get_latest_materialization_event(AssetKey(CORPUS))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return (meta["source_fingerprint"].value if "source_fingerprint" in meta else None), (event.run_id if event else "")


def _materialized_fingerprint(instance, task_name: str) -> str | None:
    """The task definition (its fingerprint, the assets' code version) its latest predictions were made with."""
    event = instance.get_latest_materialization_event(AssetKey(task_key(task_name, PREDICTIONS)))
    return (event.asset_materialization.tags or {}).get("dagster/code_version") if event else None


def _stopped_sensor(settings: Settings, all_job, description: str):
    """`@sensor` for the refresh job, off until switched on in the UI; named after the decorated function."""
    return sensor(
        job=all_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=description,
    )


def build_sensors(settings: Settings, tasks: list[TaskSpec], all_job) -> list:
    sensors = (corpus_folder_sensor, corpus_table_sensor, task_config_sensor, drift_topup_sensor)
    return [build(settings, tasks, all_job) for build in sensors]


def _refresh_keys(settings: Settings, tasks: list[TaskSpec]) -> list[AssetKey]:
    """What new source rows refresh: the corpus, its embeddings, and every task's predictions, audit and export."""
    per_task = (PREDICTIONS, DRIFT_AUDIT, *((EXPORTED_PREDICTIONS,) if settings.predictions_to else ()))
    return [AssetKey(CORPUS), AssetKey(EMBEDDINGS), *[AssetKey(task_key(t, name)) for t in tasks for name in per_task]]


def corpus_table_sensor(settings: Settings, tasks: list[TaskSpec], all_job):
    refresh_keys = _refresh_keys(settings, tasks)

    @_stopped_sensor(
        settings,
        all_job,
        (
            "When SCALELLM_CORPUS is a PostgreSQL table or query: rows added, edited or deleted there (its row count "
            "and a hash of every row, computed on the server) request one run of corpus -> embeddings -> every "
            "task's predictions (and their export), which embeds and predicts only the changed rows. A state the "
            "cursor or the latest corpus materialization already has requests nothing."
        ),
    )
    def corpus_table_sensor(context: SensorEvaluationContext):
        source = CorpusSource(path=settings.corpus)
        if not source.is_postgres:
            return SkipReason(f"SCALELLM_CORPUS={settings.corpus} is not a PostgreSQL table or query")
        try:
            now = source.table_fingerprint()
        except CorpusError as exc:
            return SkipReason(f"cannot read the source: {exc}")
        materialized, by_run = _materialized_source(context.instance)
        if now in (context.cursor, materialized):
            return SensorResult(
                skip_reason=SkipReason(f"{source.display}: unchanged ({now.split(':')[0]} rows)"), cursor=now
            )
        return SensorResult(
            run_requests=[
                RunRequest(
                    # a table that returns to an earlier state after a refresh is new again to that refresh
                    run_key=f"table-{now}-after-{by_run[:8]}",
                    asset_selection=refresh_keys,
                    tags={**WAREHOUSE_TAGS, "scalellm/source_rows": now.split(":")[0]},
                )
            ],
            cursor=now,
        )

    return corpus_table_sensor


def corpus_folder_sensor(settings: Settings, tasks: list[TaskSpec], all_job):
    refresh_keys = _refresh_keys(settings, tasks)

    @_stopped_sensor(
        settings,
        all_job,
        (
            "When SCALELLM_CORPUS is a folder: a new or changed Parquet/CSV file there requests one "
            "run of corpus -> embeddings -> every task's predictions, which embeds and predicts only the new rows. "
            "A file counts as processed when the cursor or the latest corpus materialization has its size and "
            "mtime, so no file is processed twice, even one materialized before the sensor started."
        ),
    )
    def corpus_folder_sensor(context: SensorEvaluationContext):
        folder = Path(settings.corpus)
        if not folder.is_dir():
            return SkipReason(f"SCALELLM_CORPUS={settings.corpus} is a file, not a folder to watch")
        seen = json.loads(context.cursor) if context.cursor else {}
        materialized = _materialized_files(context.instance)
        files = CorpusSource(path=settings.corpus).file_stamps()
        new = {name: stamp for name, stamp in files.items() if stamp not in (seen.get(name), materialized.get(name))}
        if not new:
            return SkipReason(f"no new or changed file among {len(files)} in {folder}")
        run_key = hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()[:16]
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=run_key,
                    asset_selection=refresh_keys,
                    tags={**WAREHOUSE_TAGS, "scalellm/new_files": ",".join(sorted(new))[:200]},
                )
            ],
            cursor=json.dumps(files, sort_keys=True),
        )

    return corpus_folder_sensor


def task_config_sensor(settings: Settings, tasks: list[TaskSpec], all_job):
    @_stopped_sensor(
        settings,
        all_job,
        (
            "Reruns a task's four assets when its definition in the tasks file changes (after the code "
            "location reloads). Only that task reruns; a bigger budget tops up the sample from the cache, and a "
            "changed prompt re-asks the teacher because the prompt version is part of every cache key."
        ),
    )
    def task_config_sensor(context: SensorEvaluationContext):
        try:
            current = {t.name: task_fingerprint(t) for t in load_tasks(settings.tasks)}
        except TaskConfigError as exc:
            return SkipReason(f"tasks file does not load: {exc}")
        return _task_config_tick(context, current, {t.name for t in tasks})

    return task_config_sensor


def _task_config_tick(context: SensorEvaluationContext, current: dict[str, str], loaded: set[str]) -> SensorResult:
    """One tick of `task_config_sensor`: `current` is each task's fingerprint in the tasks file now, `loaded` the
    tasks the code location was built with (a task added since waits for a reload)."""
    made_with = {name: _materialized_fingerprint(context.instance, name) for name in current if name in loaded}
    if context.cursor is None:
        # First tick: a task whose predictions were made with another definition is stale; the rest are
        # recorded (a task never materialized waits for its first materialization).
        seen = {name: made_with.get(name) or fp for name, fp in current.items()}
    else:
        seen = json.loads(context.cursor)
    # a definition already materialized (by hand, or by an earlier run) needs no run
    changed = sorted(
        name for name, fp in current.items() if seen.get(name) != fp and name in loaded and made_with.get(name) != fp
    )
    pending = sorted(name for name, fp in current.items() if seen.get(name) != fp and name not in loaded)
    kept = {name: fp for name, fp in current.items() if name not in pending}
    if not changed:
        reason = "no task changed" + (f"; reload the code location to pick up {pending}" if pending else "")
        if context.cursor is None:
            reason = f"recorded {len(current)} task definitions; " + reason
        kept.update({name: seen[name] for name in pending if name in seen and context.cursor is not None})
        return SensorResult(skip_reason=SkipReason(reason), cursor=json.dumps(kept, sort_keys=True))
    requests = [
        RunRequest(
            run_key=f"{name}-{current[name]}",
            asset_selection=[AssetKey(task_key(name, a)) for a in TASK_ASSETS],
            tags={**WAREHOUSE_TAGS, "scalellm/task": name},
        )
        for name in changed
    ]
    kept.update({name: seen[name] for name in pending if name in seen})
    return SensorResult(run_requests=requests, cursor=json.dumps(kept, sort_keys=True))


def drift_topup_sensor(settings: Settings, tasks: list[TaskSpec], all_job):
    @_stopped_sensor(
        settings,
        all_job,
        (
            f"When a task's drift audits have failed {FAILURES_BEFORE_TOPUP} times in a row (their "
            "agreement with the teacher on new rows fell below the report's estimate by more than the audit's "
            "interval), reruns the task's sample (which then takes its drift top-up from the failing refreshes' "
            "rows), candidates, selection, predictions and audit. One run per failing streak."
        ),
    )
    def drift_topup_sensor(context: SensorEvaluationContext):
        requests = []
        for task in tasks:
            event = context.instance.get_latest_materialization_event(AssetKey(task_key(task.name, DRIFT_AUDIT)))
            meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
            if "drift_topup_due" not in meta or not meta["drift_topup_due"].value:
                continue
            last_failed = meta["last_failed_audit_run_id"].value
            requests.append(
                RunRequest(
                    run_key=f"{task.name}-drift-topup-{last_failed}",
                    asset_selection=[AssetKey(task_key(task, a)) for a in (*TASK_ASSETS, DRIFT_AUDIT)],
                    tags={**WAREHOUSE_TAGS, "scalellm/task": task.name, "scalellm/drift_after_audit": last_failed},
                )
            )
        if not requests:
            return SkipReason(f"no task has {FAILURES_BEFORE_TOPUP} failed drift audits in a row awaiting a top-up")
        return SensorResult(run_requests=requests)

    return drift_topup_sensor
