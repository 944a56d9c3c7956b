"""`scalellm run` / `demo` execute the job in their own process through Dagster's public `execute_job`, as a run the
UI lists with the workspace's job, and make sure the warehouse's concurrency pool has a limit."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from dagster import DagsterInstance, execute_job, reconstructable

LOCATION_NAME = "scalellm_dagster"  # the code location's name in workspace.yaml
REPOSITORY_NAME = "__repository__"  # what Dagster names the repository of a module's `Definitions`
# The run tag the UI's job page lists a job's runs by (`<repository>@<location>`); Dagster sets it on the runs it
# launches from a code location, and `execute_job`, which runs the job here, leaves it to its caller.
REPOSITORY_TAG = ".dagster/repository"
POOL_LIMIT = 1  # one warehouse-writing step at a time: DuckDB lets one process write a file
# Which process runs the job, so that the next `scalellm run` can tell a run that was killed from one still running.
HOST_TAG, PID_TAG = "scalellm/host", "scalellm/pid"


@dataclass(frozen=True)
class RunOutcome:
    success: bool
    run_id: str
    events: list


def execute_as_workspace_run(job_fn, instance: DagsterInstance, run_config: dict, tags: dict | None = None):
    """Run the job that `job_fn` (a module-level function, so step processes can rebuild it) returns, here."""
    tags = {
        **(tags or {}),
        REPOSITORY_TAG: f"{REPOSITORY_NAME}@{LOCATION_NAME}",
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
    }
    with execute_job(reconstructable(job_fn), instance, run_config=run_config, tags=tags) as result:
        return RunOutcome(result.success, result.run_id, list(result.all_events))


def ensure_pool_limit(instance: DagsterInstance, pool: str) -> str | None:
    """Give the warehouse's pool a limit of POOL_LIMIT when it has none: neither its own (set in the UI or with
    `dagster instance concurrency set`, which is kept) nor the instance's default. Returns what was done, to say."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or pool in storage.get_concurrency_keys():
        return None
    if instance.get_concurrency_config().pool_config.default_pool_limit is not None:
        return None
    storage.set_concurrency_slots(pool, POOL_LIMIT)
    return (
        f"concurrency pool {pool!r} limited to {POOL_LIMIT} step at a time (the steps that write "
        f"the warehouse); change it with `dagster instance concurrency set {pool} N`"
    )


def free_slots_of_killed_runs(instance: DagsterInstance, pool: str) -> list[str]:
    """The pool's slots held by `scalellm run` processes of this machine that no longer exist (killed with SIGKILL,
    the machine restarted): their runs are marked failed and their slots freed, as Dagster's run monitoring does for
    the runs its launchers start, else the pool would wait for them forever. Returns the runs' ids."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    info = storage.get_concurrency_info(pool)
    freed = []
    for run_id in {s.run_id for s in info.claimed_slots} | {s.run_id for s in info.pending_steps}:
        run = instance.get_run_by_id(run_id)
        if run is None or run.tags.get(HOST_TAG) != socket.gethostname() or not run.tags.get(PID_TAG, "").isdigit():
            continue  # another machine's run, or one Dagster launched: its own monitoring answers for it
        if _alive(int(run.tags[PID_TAG])):
            continue
        if not run.is_finished:
            instance.report_run_failed(run, f"the process of this run (pid {run.tags[PID_TAG]}) no longer exists")
        storage.free_concurrency_slots_for_run(run_id)
        freed.append(run_id)
    return freed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
