"""The predictions step's row-parallel part on the cluster: the rows' vectors exported as parts by the driver (the
one DuckDB reader and writer), the student sent to every worker once, labels and confidences read back in order."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from scalellm_dagster.cluster.dask_run import cluster_metadata, run_parts
from scalellm_dagster.cluster.parts import iter_batches, join, predict_part, write_part
from scalellm_dagster.core.students import confidence_method
from scalellm_dagster.embedding_arrow import embedding_batch
from scalellm_dagster.flow.predict import Predicted, TrainedStudent
from scalellm_dagster.resources import Warehouse


def predict_on_cluster(
    client,
    address: str,
    warehouse: Warehouse,
    student: TrainedStudent,
    ids: np.ndarray,
    relation: str,
    *,
    parts: str,
    rows_per_part: int,
    log,
) -> tuple[Predicted, dict]:
    """(labels and confidences for `ids`, in their order; where the work ran, for the metadata)."""
    start = time.perf_counter()
    in_paths = []
    for number, begin in enumerate(range(0, len(ids), rows_per_part)):
        part_ids, X = warehouse.read_embeddings(ids=ids[begin : begin + rows_per_part], relation_sql=relation)
        batch = embedding_batch(part_ids, X)
        in_paths.append(write_part(pa.Table.from_batches([batch]), join(parts, "in", f"in-{number:05d}.parquet")))
    export = time.perf_counter() - start
    out_paths = [join(parts, "out", f"out-{n:05d}.parquet") for n in range(len(in_paths))]
    log(f"predicting {len(ids):,} rows on the cluster in {len(in_paths)} parts ({export:.1f}s to export them)")
    done = run_parts(client, predict_part, in_paths, out_paths, student.model, log)
    ingest = time.perf_counter()
    results = pa.Table.from_batches(list(iter_batches([d.part for d in done])))
    if results.column("id").to_pylist() != ids.tolist():
        raise RuntimeError("the cluster's predictions came back in another order than the rows sent")  # a bug
    predicted = Predicted(
        results.column("student_label").to_numpy(zero_copy_only=False).astype(object),
        results.column("confidence").to_numpy(),
        confidence_method(student.model),
        time.perf_counter() - start,
    )
    return predicted, {
        **cluster_metadata(address, done, time.perf_counter() - ingest),
        "driver_export_seconds": round(export, 3),
    }
