"""The shared foundation: the corpus and its embeddings, built once and used by every task."""


import time

import numpy as np

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, TableColumn, TableSchema, asset

from scalellm_dagster.assets.metadata import preview
from scalellm_dagster.resources import CorpusSource, EmbedderResource, Warehouse
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
    df = source.load()
    rows = warehouse.write_table(CORPUS_TABLE, df)
    context.log.info(f"corpus: {rows:,} rows from {source.path}")
    return MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "source": source.path,
            "table": f"{warehouse.database}::{CORPUS_TABLE}",
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(name=c, type=str(t)) for c, t in df.dtypes.items()]
            ),
            "preview": preview(df),
        }
    )


@asset(
    group_name="shared",
    deps=[corpus],
    kinds={"duckdb", "sklearn"},
    owners=["team:scalellm"],
    tags={"layer": "foundation"},
    description=(
        "One L2-normalised float32 vector per corpus row, stored as a FLOAT[d] array column. Built once and "
        "shared: every task depends on it, and adding a task never recomputes it."
    ),
)
def embeddings(context: AssetExecutionContext, embedder: EmbedderResource, warehouse: Warehouse) -> MaterializeResult:
    rows = warehouse.read_df(f"SELECT id, text FROM {CORPUS_TABLE}")
    model = embedder.build()
    context.log.info(f"embedding {len(rows):,} rows with {model.name}")
    start = time.perf_counter()
    cache_note = {}
    if embedder.kind == "openai":
        matrix, cache_note = _embed_with_cache(model, rows["text"], warehouse, context.log.info)
    else:  # LSA is fitted on the whole corpus, so its vectors are not cacheable row by row
        matrix = model.fit_embed(rows["text"].tolist(), log=context.log.info)
    seconds = time.perf_counter() - start
    written = warehouse.write_embeddings(EMBEDDINGS_TABLE, rows["id"].to_numpy(), matrix)
    context.log.info(f"embedded {written:,} rows in {seconds:.1f}s ({written / max(seconds, 1e-9):,.0f} rows/s)")
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            **cache_note,
            "embedder": model.name,
            # declared by the embedder (an all-cached openai run declares the cached vectors' size); checked later
            "dim": int(model.dim or matrix.shape[1]),
            "embed_seconds": MetadataValue.float(round(seconds, 3)),
            "rows_per_second": MetadataValue.float(round(written / max(seconds, 1e-9), 1)),
            "table": f"{warehouse.database}::{EMBEDDINGS_TABLE}",
            "dagster/column_schema": TableSchema(
                columns=[
                    TableColumn(name="id", type=str(rows["id"].dtype)),
                    TableColumn(name="vector", type=f"FLOAT[{matrix.shape[1]}]"),
                ]
            ),
        }
    )


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
    if not known:
        raise ValueError("the corpus has no text to embed")
    matrix = np.stack([known[h] for h in hashes]).astype(np.float32)
    return matrix, {"embedding_cache_hits": len(unique) - len(missing), "embedding_cache_misses": len(missing)}
