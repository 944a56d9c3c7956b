"""Run the sharded graph as Dagster runs: prepare, one run per embeddings shard, teach, one run per predictions
shard. With more than one worker, shard runs go to a pool of worker processes, as a run launcher would start them on
a cluster; the two corpus-wide runs stay in this process (a fresh process per run costs more in imports than it
saves). Every run is recorded in the same Dagster instance, so the UI shows each shard's run, logs and checks."""

from __future__ import annotations

import ctypes
import functools
import gc
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunOutcome:
    partition: str | None
    ok: bool
    run_id: str
    seconds: float
    peak_rss_mb: float  # of the process that ran it, so far


@dataclass
class PhaseResult:
    job: str
    seconds: float
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(run.ok for run in self.runs)


def run_sharded(workers: int = 2, log_level: str = "INFO", log: Callable[[str], None] = print) -> list[PhaseResult]:
    """Materialize everything; stops after the first phase with a failed run (later phases would read it)."""
    from scalellm_dagster.definitions import SHARD_JOBS
    from scalellm_dagster.settings import Settings

    shards = Settings.from_env().shards
    if not shards:
        raise ValueError("run_sharded needs SCALELLM_SHARDS set to the number of shards")
    keys = _definitions(Settings.from_env()).resolve_job_def(SHARD_JOBS[1]).partitions_def.get_partition_keys()
    phases: list[PhaseResult] = []
    pool = None
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(threads,))
        for _ in range(workers):  # start the workers now: their imports overlap the first, unsharded phase
            pool.submit(int)
    try:
        for job, partitioned in zip(SHARD_JOBS, (False, True, False, True)):
            start = time.perf_counter()
            phase = PhaseResult(job, 0.0)
            if not partitioned:
                phase.runs.append(_run(job, None, log_level))
            elif pool is None:
                for key in keys:
                    phase.runs.append(_run(job, key, log_level))
                    log(_line(phase.runs[-1], shards))
            else:
                for outcome in pool.map(_run, [job] * len(keys), keys, [log_level] * len(keys)):
                    phase.runs.append(outcome)
                    log(_line(outcome, shards))
            phase.seconds = time.perf_counter() - start
            phases.append(phase)
            log(f"{job}: {len(phase.runs)} run(s) in {phase.seconds:.1f}s"
                + ("" if phase.success else " - FAILED, later phases not started"))
            if not phase.success:
                break
    finally:
        if pool is not None:
            pool.shutdown()
    return phases


def _start_worker(threads: int) -> None:
    # Before numpy loads: each worker's BLAS gets its share of the cores instead of all of them.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import scalellm_dagster.definitions  # noqa: F401 - the import is the slow part of a worker's first run


def _run(job: str, partition: str | None, log_level: str) -> RunOutcome:
    from dagster import DagsterInstance

    from scalellm_dagster.settings import Settings

    start = time.perf_counter()
    with DagsterInstance.get() as instance:
        result = _definitions(Settings.from_env()).resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _return_free_memory()
    return RunOutcome(partition, result.success, result.run_id, time.perf_counter() - start, peak)


def _return_free_memory() -> None:
    """Give memory freed by the run back to the OS (glibc keeps it otherwise), so a process that ran a
    corpus-wide step does not sit on its peak while the shard workers run beside it."""
    gc.collect()
    import pyarrow

    pyarrow.default_memory_pool().release_unused()  # Arrow's jemalloc/mimalloc pool keeps freed pages too
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@functools.lru_cache(maxsize=4)
def _definitions(settings):
    from scalellm_dagster.definitions import build_definitions

    return build_definitions(settings)


def _line(run: RunOutcome, shards: int) -> str:
    return (f"  shard {int(run.partition) + 1}/{shards} {'done' if run.ok else 'FAILED'} in {run.seconds:.1f}s "
            f"(run {run.run_id[:8]}, worker peak {run.peak_rss_mb:,.0f} MB)")
