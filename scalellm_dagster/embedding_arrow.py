"""The embeddings table's shape in Arrow, and the way back to numpy: what the warehouse, the cluster's parts and
the assets all build and read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def ids_and_matrix(result: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    ids = result.column("id").to_numpy()
    column = result.column("vector").combine_chunks()
    if len(column) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return ids, matrix


def embedding_schema(id_type: pa.DataType, dim: int, hashes: bool = True, version: bool = True) -> pa.Schema:
    """The embeddings table's columns, declared: never inferred from a (possibly empty) first chunk, where Arrow
    would type an empty id column as null."""
    fields = [pa.field("id", id_type)]
    if hashes:
        fields.append(pa.field("text_hash", pa.string()))
    if version:
        fields.append(pa.field("embedding_version", pa.dictionary(pa.int32(), pa.string())))
    return pa.schema([*fields, pa.field("vector", pa.list_(pa.float32(), dim))])


def embedding_batch(
    ids,
    matrix: np.ndarray,
    text_hashes: list[str] | None = None,
    version: str | None = None,
    id_type: pa.DataType | None = None,
) -> pa.RecordBatch:
    """One batch of `embedding_schema(id_type, ...)`; `id_type` defaults to what the ids are (never empty ids)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    ids = pa.array(np.asarray(ids), type=id_type)
    if pa.types.is_null(ids.type):
        raise ValueError("embedding_batch: the id type is unknown for an empty batch; pass id_type")
    schema = embedding_schema(ids.type, matrix.shape[1], text_hashes is not None, version is not None)
    columns = [ids]
    if text_hashes is not None:
        columns.append(pa.array(text_hashes, pa.string()))
    if version is not None:
        columns.append(pa.array([version] * len(matrix), pa.string()).dictionary_encode())
    columns.append(pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
