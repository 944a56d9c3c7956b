"""Parquet parts: how rows go to the workers and vectors come back.

A part is written under a temporary name and renamed when complete, so a retried or killed task never leaves half
a file under a part's name, and the driver reads only complete parts. Paths are local folders or any fsspec URL
pyarrow's filesystem layer resolves (s3://, gs://, hdfs://, file://): every worker must reach the same root.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scalellm_dagster.embedders.unreadable import with_fallback


class PartError(RuntimeError):
    """A part cannot be read or written; the message names the part."""


def filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local folder or an fsspec-style URL."""
    return pafs.FileSystem.from_uri(root if "://" in root else os.path.abspath(root))


def join(root: str, *names: str) -> str:
    return "/".join([root.rstrip("/"), *names])


def write_part(table: pa.Table, path: str) -> str:
    """Write `table` to `path` atomically: a temporary name first, renamed when complete."""
    fs, inner = filesystem(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    partial = f"{inner}.partial-{uuid.uuid4().hex[:8]}"
    try:
        pq.write_table(table, partial, filesystem=fs)
        fs.move(partial, inner)
    finally:
        if fs.get_file_info(partial).type != pafs.FileType.NotFound:
            fs.delete_file(partial)
    return path


def read_part(path: str, columns: list[str] | None = None) -> pa.Table:
    fs, inner = filesystem(path)
    try:
        return pq.read_table(inner, columns=columns, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as exc:
        raise PartError(f"part {path} cannot be read ({str(exc).splitlines()[0][:200]})") from None


def split_rows(rows: pd.DataFrame, root: str, rows_per_part: int) -> list[str]:
    """`rows` as input parts under `root`, `rows_per_part` each; returns their paths in order."""
    paths = []
    for number, begin in enumerate(range(0, len(rows), rows_per_part)):
        chunk = pa.Table.from_pandas(rows.iloc[begin : begin + rows_per_part], preserve_index=False)
        paths.append(write_part(chunk, join(root, f"in-{number:05d}.parquet")))
    return paths


@dataclass(frozen=True)
class PartDone:
    """What a task reports back (a few numbers; the data stays on storage)."""

    part: str
    rows: int
    seconds: float
    worker: str
    unreadable: tuple = ()


def embed_rows(
    model, rows: pd.DataFrame, version: str, id_type: pa.DataType, where: str
) -> tuple[pa.RecordBatch, list]:
    """(the vectors of `rows` (id, text, text_hash) as one embeddings batch, the ids given the fallback vector);
    in process and on a worker alike. `where` names the rows in the error for a vector of the wrong size."""
    from scalellm_dagster.embedding_arrow import embedding_batch

    texts = rows["text"]
    vectors = model.embed(texts)
    if vectors.shape != (len(rows), model.dim):
        raise ValueError(
            f"embedder {model.name} returned vectors of shape {vectors.shape} for {where}; expected "
            f"({len(rows)}, {model.dim}), its declared dimension"
        )
    vectors, fallback = with_fallback(rows["text"], vectors)
    batch = embedding_batch(rows["id"], vectors, rows["text_hash"].tolist(), version, id_type)
    return batch, rows["id"].iloc[fallback].tolist()


def embed_part(in_path: str, out_path: str, model, schema: pa.Schema, version: str) -> PartDone:
    """A task: read one input part (id, text, text_hash), embed it, write its vectors part (`schema`)."""
    start = time.perf_counter()
    rows = read_part(in_path).to_pandas()
    batch, unreadable = embed_rows(model, rows, version, schema.field("id").type, f"part {in_path}")
    write_part(pa.Table.from_batches([batch], schema=schema), out_path)
    return PartDone(out_path, len(rows), time.perf_counter() - start, worker_name(), tuple(unreadable))


def predict_part(in_path: str, out_path: str, model) -> PartDone:
    """A task: read one part of vectors (id, vector), predict with the student (`model`, a fitted classifier), write
    its labels and confidences (id, student_label, confidence)."""
    from scalellm_dagster.core.students import predict_with_confidence
    from scalellm_dagster.embedding_arrow import ids_and_matrix

    start = time.perf_counter()
    vectors = read_part(in_path)
    ids, X = ids_and_matrix(vectors)
    predicted = predict_with_confidence(model, X, workers=1)  # one core per worker: the cluster is the parallelism
    out = pa.table(
        {
            "id": vectors.column("id"),
            "student_label": pa.array(predicted.labels.astype(str), pa.string()),
            "confidence": pa.array(predicted.confidence, pa.float32()),
        }
    )
    write_part(out, out_path)
    return PartDone(out_path, len(ids), time.perf_counter() - start, worker_name())


def worker_name() -> str:
    try:
        from distributed import get_worker

        worker = get_worker()
        return worker.name if isinstance(worker.name, str) else worker.address
    except (ImportError, ValueError):
        return "driver"


def iter_batches(paths: list[str]):
    """Every record batch of the parts, in order, one part open at a time (memory stays flat)."""
    for path in paths:
        fs, inner = filesystem(path)
        try:
            reader = pq.ParquetFile(fs.open_input_file(inner))
        except (OSError, pa.ArrowInvalid) as exc:
            raise PartError(f"part {path} cannot be read ({str(exc).splitlines()[0][:200]})") from None
        yield from reader.iter_batches()


def remove_tree(root: str) -> None:
    fs, inner = filesystem(root)
    if fs.get_file_info(inner).type != pafs.FileType.NotFound:
        fs.delete_dir(inner)
