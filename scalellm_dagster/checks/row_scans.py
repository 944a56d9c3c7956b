"""A check's row-by-row expectations part by part on the Dask cluster.

Only expectations each row passes or fails on its own go to the workers (text present, not blank, within the length
bound); what needs every row at once (row count, id uniqueness, ids matching the corpus) stays on the driver, over
the id column alone. The driver, the one DuckDB process, exports the rows as Parquet parts; each task validates one
part with Great Expectations and sends back its outcome (counts and a few examples, never rows); `merge` adds them up.
Nothing here imports Dagster: a worker runs `validate_part`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from scalellm_dagster.checks.gx_runner import Outcome, merge, validate
from scalellm_dagster.cluster.dask_run import cluster_metadata, run_parts
from scalellm_dagster.cluster.parts import PartDone, join, read_part, worker_name, write_part


@dataclass(frozen=True)
class PartValidated(PartDone):
    outcome: Outcome | None = None


def validate_part(in_path: str, out_path: str, model: Callable[[], list], name: str) -> PartValidated:
    """A task: validate one part against the expectations `model()` builds (built on the worker: a factory travels
    lighter than GX objects)."""
    start = time.perf_counter()
    rows = read_part(in_path).to_pandas()
    outcome = validate(rows, model(), name)
    return PartValidated(in_path, len(rows), time.perf_counter() - start, worker_name(), outcome=outcome)


def export_parts(warehouse, sql: str, root: str, rows_per_part: int) -> list[str]:
    """The rows of `sql` as parts of `rows_per_part` under `root`, streamed out of DuckDB (memory stays flat)."""
    paths = []
    with warehouse.get_connection() as conn:
        reader = conn.sql(sql).to_arrow_reader(rows_per_part)  # the relation API streams without a copy
        for number, batch in enumerate(reader):
            paths.append(write_part(pa.Table.from_batches([batch]), join(root, f"in-{number:05d}.parquet")))
    return paths


def validate_on_cluster(
    client,
    address: str,
    warehouse,
    sql: str,
    parts: str,
    rows_per_part: int,
    *,
    expectations: Callable[[], list],
    name: str,
    log,
) -> tuple[Outcome, dict]:
    """(the outcome over every row of `sql`, where the work ran)."""
    start = time.perf_counter()
    paths = export_parts(warehouse, sql, join(parts, f"check-{name}"), rows_per_part)
    export = time.perf_counter() - start
    log(f"check {name}: validating {len(paths)} parts on the cluster ({export:.1f}s to export them)")
    done = run_parts(client, validate_part, paths, paths, expectations, log, name=name)
    return merge([d.outcome for d in done]), {
        **cluster_metadata(address, done),
        "driver_export_seconds": round(export, 3),
    }
