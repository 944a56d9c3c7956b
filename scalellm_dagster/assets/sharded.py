"""The foundation split into shards (Dagster partitions), for corpora too big for one step.

With `SCALELLM_SHARDS=N`, the embedder is fitted once (`embedding_model`), then each shard of `embeddings` is its
own partition, so shards run as separate runs, in parallel, on one machine or a cluster. Each shard writes its own
Parquet file (DuckDB allows one writing process per file); the warehouse exposes them as one `embeddings` view,
which every task reads exactly as it reads the unsharded table.
"""

import pickle
import time

import numpy as np
from dagster import (
    AssetCheckExecutionContext,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from scalellm_dagster.assets.metadata import embeddings_schema
from scalellm_dagster.assets.shared import (
    CORPUS_TABLE,
    EMBEDDINGS_TABLE,
    FOUNDATION,
    _embed_with_cache,
    corpus,
    embedding_version,
    stored_embedder,
)
from scalellm_dagster.core.incremental import plan_refresh
from scalellm_dagster.core.sharding import shard_keys, shard_positions
from scalellm_dagster.resources import EmbedderResource, Warehouse
from scalellm_dagster.resources.duckdb_sql import ids_and_matrix
from scalellm_dagster.core.corpus import few
from scalellm_dagster.embedders.unreadable import with_fallback
from scalellm_dagster.resources.warehouse_tables import embedding_batch, embedding_schema
from scalellm_dagster.teachers.runner import text_hash

WRITE_CHUNK = 50_000


def shard_partitions(shards: int) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(shard_keys(shards))


def shard_of_check_run(context: AssetCheckExecutionContext, shards: int) -> int | None:
    """The shard a check's run materialized, or None: not sharded, or the check run on its own (whole relation)."""
    if shards and context.op_execution_context.has_partition_key:
        return int(context.op_execution_context.partition_key)
    return None


def embedding_casts(dim: int) -> dict[str, str]:
    return {"vector": f"FLOAT[{dim}]"}


def build_sharded_foundation(shards: int) -> list:
    partitions = shard_partitions(shards)

    @asset(
        deps=[corpus],
        kinds={"duckdb", "sklearn"},
        **FOUNDATION,
        description="The embedder every shard uses: LSA fitted once on (a sample of) the corpus and kept in the "
        "warehouse, so shards embed into one shared space; a fit-free embedder (static, minilm, openai) has nothing to fit.",
    )
    def embedding_model(context: AssetExecutionContext, embedder: EmbedderResource,
                        warehouse: Warehouse) -> MaterializeResult:
        refit = embedder.refit and embedder.kind == "lsa"  # only LSA has a fit; the others have nothing to redo
        model, version = (embedder.build(), None) if refit else stored_embedder(embedder, warehouse)
        reused = embedder.kind == "lsa" and version is not None
        if version is None:  # an LSA to fit
            model.fit(warehouse.read_df(f"SELECT text FROM {CORPUS_TABLE}")["text"].tolist(), log=context.log.info)
            blob = pickle.dumps(model)
            warehouse.save_model(model.name, blob)
            version = embedding_version(blob)
        context.log.info(f"embedder {model.name}: {'reused the fitted model' if reused else 'ready'}")
        return MaterializeResult(metadata={
            "embedder": model.name,
            "embedding_version": version,
            "dim": int(model.dim) if model.dim else "taken from the first answer",
            "reused_fitted_model": reused,
            "shards": shards,
        })

    @asset(
        name="embeddings",
        partitions_def=partitions,
        deps=[embedding_model],
        kinds={"duckdb", "parquet", "sklearn"},
        **FOUNDATION,
        description=(
            f"One L2-normalised float32 vector per corpus row, in {shards} shards (a row's shard is a hash of its "
            "id). Each shard is a partition written to its own Parquet file; the warehouse's `embeddings` view "
            "reads them as one FLOAT[d] table. A refresh of a shard embeds only its new or changed rows."
        ),
    )
    def embeddings(context: AssetExecutionContext, embedder: EmbedderResource, warehouse: Warehouse):
        shard = int(context.partition_key)
        ids = warehouse.read_df(f"SELECT id FROM {CORPUS_TABLE}")["id"]
        ids = ids.iloc[shard_positions(ids, shard, shards)]
        rows = warehouse.read_df(f"SELECT c.id, c.text FROM {CORPUS_TABLE} c SEMI JOIN _ids USING (id) ORDER BY c.id",
                                 ids=ids.to_numpy())
        rows["text_hash"] = rows["text"].map(text_hash)
        model, version = stored_embedder(embedder, warehouse)
        if version is None:
            raise RuntimeError(f"no fitted {model.name} embedder in {warehouse.database}: materialize "
                               "`embedding_model` before the `embeddings` shards")
        stored = warehouse.read_shard(EMBEDDINGS_TABLE, shard, shards)
        if stored is not None and not (len(stored) and set(stored.column("embedding_version").to_pylist()) == {version}):
            stored = None  # vectors from another model are not comparable: the whole shard is recomputed
        plan = plan_refresh(rows, stored.select(["id", "text_hash"]).to_pandas() if stored is not None else None)
        context.log.info(f"shard {shard + 1}/{shards}: embedding {len(plan.compute):,} of {len(rows):,} rows with "
                         f"{model.name} ({len(plan.reuse):,} unchanged rows reused, {plan.removed:,} removed)")
        start = time.perf_counter()
        todo = rows.iloc[plan.compute]
        if embedder.kind == "openai":
            fresh, _ = _embed_with_cache(model, todo["text"], warehouse, context.log.info)
        else:
            fresh = model.embed(todo["text"].tolist(), log=context.log.info) if len(todo) else None
        seconds = time.perf_counter() - start
        dim = int(model.dim or (fresh.shape[1] if fresh is not None and fresh.size else 0))
        matrix = np.empty((len(rows), dim), dtype=np.float32)
        if len(plan.reuse):
            kept_ids, kept = ids_and_matrix(stored.select(["id", "vector"]))
            position = {i: p for p, i in enumerate(kept_ids.tolist())}
            matrix[plan.reuse] = kept[[position[i] for i in rows["id"].to_numpy()[plan.reuse].tolist()]]
        if len(plan.compute):
            if fresh.shape != (len(plan.compute), dim):
                raise ValueError(f"embedder {model.name} returned vectors of shape {fresh.shape} for shard {shard}; "
                                 f"expected ({len(plan.compute)}, {dim})")
            matrix[plan.compute], fallback = with_fallback(todo["text"], fresh)
            if len(fallback):
                context.log.warning(f"shard {shard + 1}/{shards}: {len(fallback):,} texts no embedder can read got "
                                    f"the shared fallback vector: ids {few(todo['id'].iloc[fallback].tolist(), 10)}")
        id_type = warehouse.id_type(CORPUS_TABLE)
        batches = (embedding_batch(rows["id"].iloc[b : b + WRITE_CHUNK], matrix[b : b + WRITE_CHUNK],
                                   rows["text_hash"].iloc[b : b + WRITE_CHUNK].tolist(), version, id_type)
                   for b in range(0, len(rows), WRITE_CHUNK))
        schema = embedding_schema(id_type, dim)
        written = warehouse.write_shard(EMBEDDINGS_TABLE, shard, shards, schema, batches)
        published = warehouse.publish_shards(EMBEDDINGS_TABLE, shards, embedding_casts(dim))
        rate = len(plan.compute) / max(seconds, 1e-9)
        context.log.info(f"shard {shard + 1}/{shards}: embedded {len(plan.compute):,} rows in {seconds:.1f}s "
                         f"({rate:,.0f} rows/s); view {'published over all shards' if published else 'waits for the other shards'}")
        return MaterializeResult(metadata={
            "dagster/row_count": written,
            **plan.summary,
            "shard": f"{shard + 1} of {shards}",
            "file": str(warehouse.shard_path(EMBEDDINGS_TABLE, shard, shards)),
            "view_published": published,
            "embedder": model.name,
            "embedding_version": version,
            "dim": dim,
            "embed_seconds": MetadataValue.float(round(seconds, 3)),
            "rows_per_second": MetadataValue.float(round(rate, 1)),
            "dagster/column_schema": embeddings_schema(str(rows["id"].dtype), int(dim)),
        })

    return [embedding_model, embeddings]

