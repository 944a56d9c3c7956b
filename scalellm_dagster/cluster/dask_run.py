"""Parts through a Dask cluster: one task per part, the model sent to every worker once, progress as parts finish.

A worker that dies mid-task has its tasks rerun on the others by the scheduler (each task writes its part under a
temporary name, so a rerun overwrites nothing half-written); a task that fails for a data reason fails the step
with the part's name, and the driver publishes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from scalellm_dagster.cluster.parts import PartDone, PartError


def run_parts(
    client, task: Callable, in_paths: list[str], out_paths: list[str], model, log: Callable[[str], None], **kwargs
) -> list[PartDone]:
    """`task(in_path, out_path, model, **kwargs)` for every part on the cluster; returns what each reported."""
    from distributed import as_completed

    if not in_paths:
        return []
    remote = client.scatter(model, broadcast=True)  # once per worker, not once per task
    futures = client.map(task, in_paths, out_paths, model=remote, pure=False, **kwargs)
    part_of = {f.key: p for f, p in zip(futures, in_paths)}
    done: list[PartDone] = []
    start = time.perf_counter()
    for future in as_completed(futures, loop=client.loop):
        if future.status == "error":
            error = future.exception()
            for other in futures:
                other.cancel()
            if isinstance(error, PartError):
                raise error
            raise PartError(
                f"part {part_of[future.key]} failed on the cluster: {type(error).__name__}: {error}"
            ) from None
        done.append(future.result())
        rows = sum(d.rows for d in done)
        log(
            f"cluster: {len(done)}/{len(futures)} parts done ({rows:,} rows, "
            f"{rows / max(time.perf_counter() - start, 1e-9):,.0f} rows/s)"
        )
    return sorted(done, key=lambda d: d.part)


def cluster_metadata(address: str, done: list[PartDone], ingest_seconds: float | None = None) -> dict:
    """Where the work ran, for the UI: the scheduler, the workers and their parts, seconds per part, and the time
    the driver spent taking the parts in."""
    per_worker = Counter(d.worker for d in done)
    seconds = [d.seconds for d in done]
    where = {
        "cluster_scheduler": address,
        "cluster_workers_used": len(per_worker),
        "cluster_parts_per_worker": dict(sorted(per_worker.items())),
        "cluster_parts": len(done),
        "cluster_seconds_per_part_mean": round(sum(seconds) / len(seconds), 3) if seconds else 0.0,
        "cluster_seconds_per_part_max": round(max(seconds), 3) if seconds else 0.0,
    }
    if ingest_seconds is not None:
        where["driver_ingest_seconds"] = round(ingest_seconds, 3)
    return where
