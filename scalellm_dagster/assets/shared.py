"""The shared foundation: the corpus and its embeddings, built once and used by every task."""


import time

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, TableColumn, TableSchema, asset

from scalellm_dagster.assets.metadata import preview
from scalellm_dagster.resources import CorpusSource, EmbedderResource, Warehouse

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
    matrix = model.fit_embed(rows["text"].tolist(), log=context.log.info)
    seconds = time.perf_counter() - start
    written = warehouse.write_embeddings(EMBEDDINGS_TABLE, rows["id"].to_numpy(), matrix)
    context.log.info(f"embedded {written:,} rows in {seconds:.1f}s ({written / max(seconds, 1e-9):,.0f} rows/s)")
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "embedder": model.name,
            "dim": int(model.dim),  # declared by the embedder; the embeddings check compares the table to it
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
