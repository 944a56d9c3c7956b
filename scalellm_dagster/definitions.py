"""The environment-variable code location: one instance of the `ScaleLLM` component, made from the `Settings`
(environment variables, read once), without a key prefix.

With nothing set, everything is local and offline: the bundled banking77 demo, static embeddings, the
`simulated_hard` teacher (a simulation of an LLM from gold labels), and a DuckDB file under data/.
docs/configuration.md lists the variables that switch on real providers.
"""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, JobDefinition, in_process_executor, multiprocess_executor

from scalellm_dagster.component import ScaleLLM
from scalellm_dagster.names import ALL_JOB
from scalellm_dagster.settings import Settings


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    instance = ScaleLLM.from_settings(settings).definitions(
        folder=Path.cwd(), prefix=(), default_warehouse=Path(settings.duckdb_path)
    )
    # Materializing from the UI runs in one process too (the jobs already do): see `graph.build_graph`.
    return Definitions.merge(instance, Definitions(executor=in_process_executor))


defs = build_definitions()


def all_job() -> JobDefinition:
    """Module-level handle so `reconstructable` can rebuild the job in step subprocesses."""
    return defs.resolve_job_def(ALL_JOB)


def all_job_multiprocess() -> JobDefinition:
    """The same job with each step in its own process, two at a time (`scalellm run --multiprocess`): each step
    opens the DuckDB file only briefly and waits for the lock if it must."""
    return all_job().with_executor_def(multiprocess_executor.configured({"max_concurrent": 2}))
