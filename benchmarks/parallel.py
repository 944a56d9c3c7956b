"""The validation scripts' one loop: jobs over a process pool, results in order, progress every few."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor


def run_jobs(fn: Callable[..., list[dict]], jobs: list[tuple], processes: int, every: int, unit: str) -> list[dict]:
    """`fn(*job)` for each job (each returns rows), on `processes` processes; the rows of every job, in job order."""
    start = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(processes) as pool:
        for n, result in enumerate(pool.map(fn, *zip(*jobs), chunksize=4), start=1):
            rows.extend(result)
            if n % every == 0:
                print(f"{n}/{len(jobs)} {unit} ({time.perf_counter() - start:.0f}s)", flush=True)
    return rows
