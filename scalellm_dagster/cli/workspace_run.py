"""`scalellm run` / `demo` execute the job in their own process, but record the run as an ordinary run of the
workspace's job: it carries the code location of `workspace.yaml`, so the UI lists it on the job's page and the
Overview timeline, and *Re-execute* works without a "different code location" warning."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, reconstructable

from scalellm_dagster.settings import PACKAGE_DIR

WORKSPACE_YAML = PACKAGE_DIR.parent / "workspace.yaml"
LOCATION_NAME = "scalellm_dagster"
REPOSITORY_NAME = "__repository__"  # what Dagster names the repository of a module's `Definitions`


def execute_as_workspace_run(
    job_fn, instance: DagsterInstance, run_config: dict, tags: dict | None = None, workspace_yaml: Path = WORKSPACE_YAML
):
    """Run the job that `job_fn` (a module-level function) returns, here, as a run of the workspace's job: the
    origin the webserver gives the job, from the checkout's workspace.yaml, or the same module entry when the
    package is installed without one.

    Dagster's public `execute_job` records a run with no code-location origin, which the UI shows apart from the
    workspace's runs; no public API creates a run with one. So this one function uses Dagster's internals
    (`dagster._core`); `tests/test_cli.py::test_the_workspace_run_uses_dagsters_internals_as_they_are` fails
    when a Dagster release moves them."""
    from dagster._core.execution.api import execute_run
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origin_from_module_name, location_origins_from_yaml_paths

    if workspace_yaml.is_file():
        [location] = [
            o for o in location_origins_from_yaml_paths([str(workspace_yaml)]) if o.location_name == LOCATION_NAME
        ]
    else:
        location = location_origin_from_module_name(
            "scalellm_dagster.definitions", None, str(Path.cwd()), LOCATION_NAME
        )
    job = reconstructable(job_fn)
    job_def = job.get_definition()
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        tags=tags,
        job_code_origin=job.get_python_origin(),
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), job_def.name),
    )
    return execute_run(job, run, instance)
