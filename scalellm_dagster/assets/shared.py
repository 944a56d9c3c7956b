"""The shared foundation: the corpus and its embeddings, built once and used by every task."""


import hashlib
import pickle
import time

import numpy as np

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, TableColumn, TableSchema, asset

from scalellm_dagster.assets.metadata import column_schema, preview
from scalellm_dagster.core.incremental import plan_refresh
from scalellm_dagster.resources import CorpusSource, EmbedderResource, Warehouse
from scalellm_dagster.resources.warehouse_tables import embedding_batch
from scalellm_dagster.teachers.runner import text_hash

CORPUS_TABLE = "corpus"
EMBEDDINGS_TABLE = "embeddings"


@asset(
    group_name="shared",
    kinds={"duckdb", "pandas"},
    owners=["team:scalellm"],
    tags={"layer": "source"},
    description="The source rows (id, text and any other columns), loaded from the configured file or table.",
)
def corpus(context: AssetExecutionContext, source: CorpusSource, warehouse: Warehouse) -> MaterializeResult:
    stamps = source.file_stamps()  # before reading: a file changed meanwhile looks changed to the sensor
    df = source.load()
    rows = warehouse.write_table(CORPUS_TABLE, df)
    context.log.info(f"corpus: {rows:,} rows from {source.path}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "source": source.path,
            "source_files": MetadataValue.json(stamps),
            "table": f"{warehouse.database}::{CORPUS_TABLE}",
            "dagster/column_schema": column_schema(df),
            "preview": preview(df),
        }
    )


# What every asset of the shared foundation declares (the unsharded and the sharded embeddings alike).
FOUNDATION = {"group_name": "shared", "owners": ["team:scalellm"], "tags": {"layer": "foundation"}}


@asset(
    deps=[corpus],
    kinds={"duckdb", "sklearn"},
    **FOUNDATION,
    description=(
        "One L2-normalised float32 vector per corpus row, stored as a FLOAT[d] array column with the hash of the "
        "text it came from. Built once and shared: every task depends on it, adding a task never recomputes it, "
        "and a refresh embeds only new or changed rows (LSA keeps its fitted model in the warehouse)."
    ),
)
def embeddings(context: AssetExecutionContext, embedder: EmbedderResource, warehouse: Warehouse) -> MaterializeResult:
    rows = warehouse.read_df(f"SELECT id, text FROM {CORPUS_TABLE}")
    rows["text_hash"] = rows["text"].map(text_hash)
    model, current = (embedder.build(), None) if embedder.refit else stored_embedder(embedder, warehouse)
    # Rows whose id and text are unchanged keep the vector this model made; an unfitted LSA sees the whole corpus.
    stored = warehouse.embedding_state(EMBEDDINGS_TABLE, current) if current else None
    plan = plan_refresh(rows, stored)
    context.log.info(f"embedding {len(plan.compute):,} of {len(rows):,} rows with {model.name} "
                     f"({len(plan.reuse):,} unchanged rows reused, {plan.removed:,} removed)")
    start = time.perf_counter()
    cache_note = {}
    if embedder.kind == "lsa" and not len(plan.reuse):
        # Everything to embed: fit (on a sample), then embed and write chunk by chunk, never the whole matrix.
        if not model.fitted:
            model.fit(rows["text"].tolist(), log=context.log.info)
        blob = pickle.dumps(model)
        version = embedding_version(blob)
        dim = model.dim
        written = warehouse.write_embedding_batches(
            EMBEDDINGS_TABLE, embedding_batch(rows["id"].iloc[:1], np.zeros((1, dim)), ["x"], version).schema,
            _lsa_batches(model, rows, version, context.log.info), model=(model.name, blob))
        seconds = time.perf_counter() - start
    else:
        todo = rows.iloc[plan.compute]
        if embedder.kind == "openai":
            fresh, cache_note = _embed_with_cache(model, todo["text"], warehouse, context.log.info)
        elif len(todo):
            fresh = model.embed(todo["text"].tolist(), log=context.log.info)
        else:
            fresh = np.zeros((0, model.dim), np.float32)
        seconds = time.perf_counter() - start
        if len(plan.reuse):
            _, kept = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=rows["id"].to_numpy()[plan.reuse])
            matrix = np.empty((len(rows), kept.shape[1]), dtype=np.float32)
            matrix[plan.reuse] = kept
            if len(plan.compute):
                matrix[plan.compute] = fresh
        else:
            matrix = fresh
        # Vectors from one fitted model share a version; predictions made on other vectors are not reused. Here
        # LSA is the model stored with its vectors (a fit goes the other way), so it keeps its stored version: the
        # same model pickles to other bytes in another process (a set's order follows the hash seed), and
        # re-hashing it would re-stamp every row and make the next predictions redo them all.
        version = current if embedder.kind == "lsa" else model.name
        dim = int(model.dim or matrix.shape[1])  # an all-cached openai run declares the cached vectors' size
        written = warehouse.write_embeddings(
            EMBEDDINGS_TABLE, rows["id"].to_numpy(), matrix, rows["text_hash"].tolist(), version=version)
    rate = len(plan.compute) / max(seconds, 1e-9)
    context.log.info(f"embedded {len(plan.compute):,} rows in {seconds:.1f}s ({rate:,.0f} rows/s)")
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            **plan.summary,
            **cache_note,
            "embedder": model.name,
            "embedding_version": version,
            "dim": int(dim),  # declared by the embedder; the embeddings check compares the table to it
            "embed_seconds": MetadataValue.float(round(seconds, 3)),
            "rows_per_second": MetadataValue.float(round(rate, 1)),
            "table": f"{warehouse.database}::{EMBEDDINGS_TABLE}",
            "dagster/column_schema": TableSchema(
                columns=[
                    TableColumn(name="id", type=str(rows["id"].dtype)),
                    TableColumn(name="text_hash", type="VARCHAR"),
                    TableColumn(name="vector", type=f"FLOAT[{dim}]"),
                ]
            ),
        }
    )


def embedding_version(blob: bytes) -> str:
    """The version of the vectors a fitted LSA makes: the hash of its pickle (a fit-free model's is its name)."""
    return hashlib.sha256(blob).hexdigest()[:12]


def stored_embedder(embedder: EmbedderResource, warehouse: Warehouse):
    """(model, version of the vectors it makes): LSA as fitted and kept in the warehouse, or unfitted with version
    None when none is kept; a fit-free model (minilm, openai) with its name as version."""
    model = embedder.build()
    if embedder.kind != "lsa":
        return model, model.name
    blob = warehouse.load_model(model.name)
    if blob is None:
        return model, None
    return pickle.loads(blob), embedding_version(blob)  # noqa: S301 - our own pickle, from our own warehouse


def _lsa_batches(model, rows, version: str, log, chunk: int = 50_000):
    for begin in range(0, len(rows), chunk):
        part = rows.iloc[begin : begin + chunk]
        vectors = model.embed(part["text"].tolist())
        if vectors.shape != (len(part), model.dim):
            raise ValueError(f"embedder {model.name} returned vectors of shape {vectors.shape} for rows "
                             f"{begin:,}..{begin + len(part) - 1:,}; expected ({len(part)}, {model.dim}), its "
                             "declared dimension")
        yield embedding_batch(part["id"], vectors, part["text_hash"].tolist(), version)
        log(f"embedded {begin + len(part):,}/{len(rows):,} rows")


def _embed_with_cache(model, texts, warehouse: Warehouse, log):
    """Only texts never embedded by this model are sent; the rest come from the warehouse's vector cache."""
    hashes = texts.map(text_hash)
    unique = list(dict.fromkeys(hashes))
    known = warehouse.cached_vectors(model.name, unique)
    missing = [h for h in unique if h not in known]
    log(f"embedding cache: {len(known):,} of {len(unique):,} distinct texts cached, {len(missing):,} to embed")
    if missing:
        first_text = dict(zip(hashes, texts))
        fresh = model.fit_embed([first_text[h] for h in missing], log=log)
        warehouse.store_vectors(model.name, missing, fresh)
        known.update(zip(missing, fresh))
    if not hashes.size:
        return np.zeros((0, model.dim or 0), np.float32), {"embedding_cache_hits": 0, "embedding_cache_misses": 0}
    matrix = np.stack([known[h] for h in hashes]).astype(np.float32)
    return matrix, {"embedding_cache_hits": len(unique) - len(missing), "embedding_cache_misses": len(missing)}
