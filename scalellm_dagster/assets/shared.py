"""The shared foundation: the corpus and its embeddings, built once and used by every task."""

import hashlib
import json
import pickle
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)

from scalellm_dagster.assets.conditions import FOLLOW_THE_DATA, source_version
from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.metadata import column_schema, embeddings_schema, kept_write_metadata, preview
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.cluster.dask_run import cluster_metadata, run_parts
from scalellm_dagster.cluster.parts import embed_part, embed_rows, iter_batches, join, split_rows
from scalellm_dagster.core.corpus import few
from scalellm_dagster.core.heartbeat import phase
from scalellm_dagster.core.incremental import plan_refresh
from scalellm_dagster.core.text_hash import TEXT_HASH_SQL, text_hash
from scalellm_dagster.embedders.unreadable import with_fallback
from scalellm_dagster.embedding_arrow import embedding_batch, embedding_schema
from scalellm_dagster.names import CORPUS, CORPUS_SOURCE, EMBEDDINGS, key_path, prefixed
from scalellm_dagster.resources import CorpusSource, EmbedderResource, Warehouse
from scalellm_dagster.resources.cluster import ClusterResource
from scalellm_dagster.version import __version__


def build_foundation(
    pool: str | None = None, upstream: Sequence[AssetKey] = (), prefix: tuple[str, ...] = ()
) -> tuple[AssetsDefinition, ...]:
    """The `corpus` and `embeddings` assets. `pool`: the concurrency pool of the warehouse they write (`names.
    warehouse_pool`); `upstream`: the assets (a dbt model, an ingestion table, another code location's asset) whose
    table the corpus reads: they are its parents in place of `corpus_source`, and their new materializations refresh
    it; `prefix`: the component instance's key prefix (`tickets/corpus`), whose resources they take."""
    shared = {
        "key_prefix": list(prefix),
        "group_name": prefixed(prefix, "shared"),
        "owners": ["team:scalellm"],
        "pool": pool,
        "automation_condition": FOLLOW_THE_DATA,
    }
    corpus_asset = asset(
        name=CORPUS,
        deps=list(upstream) or [AssetKey(key_path(prefix, CORPUS_SOURCE))],
        kinds={"duckdb", "pandas"},
        tags={"layer": "source"},
        description="The source rows (id, text and any other columns), loaded from the configured file or table.",
        **shared,
    )(bind_resources(with_heartbeat(corpus), prefix))
    embeddings_asset = asset(
        name=EMBEDDINGS,
        deps=[corpus_asset],
        kinds={"duckdb", "sklearn"},
        tags={"layer": "foundation"},
        description=(
            "One L2-normalised float32 vector per corpus row, stored as a FLOAT[d] array column with the hash of the "
            "text it came from. Built once and shared: every task depends on it, adding a task never recomputes it, "
            "and a refresh embeds only new or changed rows (the static and MiniLM embedders have nothing to fit; LSA "
            "keeps its fitted model in the warehouse)."
        ),
        **shared,
    )(bind_resources(with_heartbeat(embeddings), prefix))
    return corpus_asset, embeddings_asset


def corpus(context: AssetExecutionContext, source: CorpusSource, warehouse: Warehouse) -> MaterializeResult:
    # before reading: a file or table changed meanwhile looks changed to the source sensor
    stamps = source.file_stamps()
    fingerprint = source.fingerprint()  # once: a PostgreSQL source's is a scan of its table
    version = source_version(source, fingerprint)
    read_key = source_read_key(source, fingerprint)
    about = {
        "source": source.display,
        "source_files": MetadataValue.json(stamps),
        **({"source_fingerprint": fingerprint} if source.is_postgres else {}),
        "source_version": version,  # what corpus_source_sensor compares: a version read is not reported again
        "table": f"{warehouse.database}::{CORPUS}",
    }
    unchanged = unchanged_corpus(warehouse, read_key)
    if unchanged is not None:
        context.log.info(
            f"corpus: source unchanged since run {unchanged.run_id[:8]} read it ({source.display}: same files, "
            f"sizes and mtimes, or the same table rows and hash): its {unchanged.rows:,} rows are kept, not read again"
        )
        return MaterializeResult(
            data_version=corpus_data_version(read_key),
            metadata={
                **kept_write_metadata(context, unchanged.run_id),
                "dagster/row_count": unchanged.rows,
                "unchanged": f"the source's fingerprint matches the read of run {unchanged.run_id}: not read again",
                "written_by_run": unchanged.run_id,
                **about,
            },
        )
    phase(f"reading {source.display}")
    df = source.load()
    run_id = context.run.run_id
    rows = warehouse.write_table(
        CORPUS,
        df,
        same_transaction=warehouse.snapshot_statements(CORPUS, run_id, run_id)
        + warehouse.source_read_statements(run_id, read_key),
    )
    context.log.info(f"corpus: {rows:,} rows from {source.display}")
    return MaterializeResult(
        data_version=corpus_data_version(read_key),
        metadata={
            "dagster/row_count": rows,
            **about,
            "dagster/column_schema": column_schema(df),
            "preview": preview(df),
        },
    )


def corpus_data_version(read_key: str) -> DataVersion:
    """The corpus's Dagster data version: the same read of the source gives the same rows, so a refresh that read
    nothing new leaves it, and the UI does not call what follows stale."""
    return DataVersion(read_key[:16])


def embeddings_data_version(warehouse: Warehouse, corpus_run_id: str | None, embedding_version: str):
    """The vectors are those of the corpus read by run `corpus_run_id`, made by `embedding_version`: the same pair,
    the same data version. None when the warehouse has no record of that read (Dagster then makes one up)."""
    read_key = warehouse.source_read_key(corpus_run_id) if corpus_run_id else None
    if read_key is None:
        return None
    return DataVersion(hashlib.sha256(f"{read_key}|{embedding_version}".encode()).hexdigest()[:16])


def source_read_key(source: CorpusSource, fingerprint: str) -> str:
    """What decides which rows a read of the source gives: where, how (and the reading code's version), and the
    source's fingerprint."""
    how = [source.path, source.id_column, source.text_column, source.csv_id_type, fingerprint, __version__]
    return hashlib.sha256(json.dumps(how).encode()).hexdigest()


def unchanged_corpus(warehouse: Warehouse, read_key: str):
    """The corpus write (its snapshot) that came from a read with this fingerprint, when it is still the table as it
    stands; None otherwise (the source is read)."""
    last = warehouse.snapshot(CORPUS)
    if last is None or not warehouse.table_exists(CORPUS) or warehouse.row_count(CORPUS) != last.rows:
        return None
    return last if warehouse.source_read_key(last.run_id) == read_key else None


def embeddings(
    context: AssetExecutionContext, embedder: EmbedderResource, warehouse: Warehouse, cluster: ClusterResource
) -> MaterializeResult:
    unchanged = _unchanged_embeddings(context, embedder, warehouse)
    if unchanged is not None:
        return unchanged
    # An OpenAI-compatible embedder is one client with one concurrency limit, as the teacher: it stays on the driver.
    on_cluster = cluster if not embedder.spec.remote else ClusterResource()
    with on_cluster.session(warehouse.database, context.run.run_id) as (client, parts):
        return _embeddings(context, embedder, warehouse, cluster, client, parts)


def _unchanged_embeddings(
    context: AssetExecutionContext, embedder: EmbedderResource, warehouse: Warehouse
) -> MaterializeResult | None:
    """When the stored vectors were made from the corpus as it stands (no corpus write since theirs, the same ids),
    all by the embedder's current version: nothing to embed, said without reading a row. None otherwise."""
    vectors, rows = warehouse.snapshot(EMBEDDINGS), warehouse.snapshot(CORPUS)
    if embedder.refit or vectors is None or rows is None or not warehouse.table_exists(EMBEDDINGS):
        return None
    if vectors.corpus_run_id != rows.run_id or not vectors.same_ids(rows):
        return None
    if warehouse.row_count(EMBEDDINGS) != vectors.rows:
        return None
    model, version = stored_embedder(embedder, warehouse)
    if version is None or warehouse.embedding_versions() != {version}:
        return None
    dim = int(model.dim or _stored_dim(warehouse))
    context.log.info(
        f"embeddings: the {vectors.rows:,} stored vectors were made from the corpus as it stands by {model.name}: "
        "nothing to embed"
    )
    return MaterializeResult(
        data_version=embeddings_data_version(warehouse, rows.run_id, version),
        metadata={
            **kept_write_metadata(context, vectors.run_id),
            "written_by_run": vectors.run_id,
            "dagster/row_count": vectors.rows,
            "unchanged": (
                f"the {vectors.rows:,} vectors of run {vectors.run_id} were made from the corpus as it stands, by "
                f"{model.name} (version {version}): nothing to embed, no row read"
            ),
            "rows_reused": vectors.rows,
            "rows_computed": 0,
            "rows_removed": 0,
            "embedder": model.name,
            "embedding_version": version,
            "dim": dim,
            "table": f"{warehouse.database}::{EMBEDDINGS}",
            "dagster/column_schema": embeddings_schema(
                str(warehouse.read_df(f"SELECT id FROM {CORPUS} LIMIT 0")["id"].dtype), dim
            ),
        },
    )


def _embeddings(
    context: AssetExecutionContext,
    embedder: EmbedderResource,
    warehouse: Warehouse,
    cluster: ClusterResource,
    client,
    parts: str | None,
) -> MaterializeResult:
    # DuckDB hashes the texts (the same digest as `text_hash`) on every core while it reads them.
    rows, corpus_read = warehouse.read_df_with_snapshot(
        f"SELECT id, text, {TEXT_HASH_SQL.format(column='text')} AS text_hash FROM {CORPUS}", CORPUS
    )
    model, current = (embedder.build(), None) if embedder.refit else stored_embedder(embedder, warehouse)
    # Rows whose id and text are unchanged keep the vector this model made; an unfitted LSA sees the whole corpus.
    plan = plan_refresh(rows, warehouse.embedding_state(EMBEDDINGS, current) if current else None)
    context.log.info(
        f"embedding {len(plan.compute):,} of {len(rows):,} rows with {model.name} "
        f"({len(plan.reuse):,} unchanged rows reused, {plan.removed:,} removed)"
    )
    start = time.perf_counter()
    blob, version = _fit_and_version(embedder, model, current, rows, plan, context.log.info)
    todo = rows.iloc[plan.compute]
    id_type = warehouse.id_type(CORPUS)
    made = _make_vectors(
        context, embedder, model, warehouse, cluster, client, parts=parts, todo=todo, version=version, id_type=id_type
    )
    # Vectors are written chunk by chunk as they are made (or as the cluster's parts are read), and unchanged rows
    # are carried over inside DuckDB: memory stays flat whatever the corpus size.
    ingest = time.perf_counter()
    written = warehouse.write_embedding_batches(
        EMBEDDINGS,
        embedding_schema(id_type, made.dim),
        made.batches,
        model=(model.name, blob) if blob is not None else None,
        keep_ids=rows["id"].to_numpy()[plan.reuse] if len(plan.reuse) else None,
        same_transaction=warehouse.snapshot_statements(
            EMBEDDINGS, context.run.run_id, corpus_read and corpus_read.run_id
        ),
    )
    where = (
        cluster_metadata(cluster.describe(), made.parts_done, time.perf_counter() - ingest)
        if made.parts_done is not None
        else {"ran_on": "in process"}
    )
    seconds = time.perf_counter() - start
    context.log.info(
        f"embedded {len(plan.compute):,} rows in {seconds:.1f}s ({len(plan.compute) / max(seconds, 1e-9):,.0f} rows/s)"
    )
    if made.unreadable:
        context.log.warning(
            f"{len(made.unreadable):,} texts no embedder can read (no letter or digit, or a zero "
            f"vector) got the shared fallback vector: ids {few(made.unreadable, 10)}"
        )
    return MaterializeResult(
        data_version=embeddings_data_version(warehouse, corpus_read and corpus_read.run_id, version),
        metadata={
            "dagster/row_count": written,
            **plan.summary,
            **_made_metadata(model, made, version, seconds, len(plan.compute)),
            **where,
            "table": f"{warehouse.database}::{EMBEDDINGS}",
            "dagster/column_schema": embeddings_schema(str(rows["id"].dtype), int(made.dim)),
        },
    )


def _made_metadata(model, made, version: str, seconds: float, rows: int) -> dict:
    return {
        **made.cache_note,
        "embedder": model.name,
        "unreadable_texts": len(made.unreadable),
        "unreadable_text_ids": few(made.unreadable, 10) if made.unreadable else "none",
        "embedding_version": version,
        "dim": int(made.dim),  # declared by the embedder; the embeddings check compares the table to it
        "embed_seconds": MetadataValue.float(round(seconds, 3)),
        "rows_per_second": MetadataValue.float(round(rows / max(seconds, 1e-9), 1)),
    }


def _fit_and_version(embedder: EmbedderResource, model, current: str | None, rows, plan, log):
    """(the fitted model's pickle to keep, or None; the version stamped on the vectors made now)."""
    if embedder.spec.fitted_on_corpus and not len(plan.reuse):
        # Everything to embed: fit (on a sample) unless fitted; the model is kept with the vectors it makes.
        if not model.fitted:
            model.fit(rows["text"].tolist(), log=log)
        blob = pickle.dumps(model)
        return blob, embedding_version(blob)
    # A refresh keeps a fitted model's stored version: the same model pickles to other bytes in another process (a
    # set's order follows the hash seed), and re-hashing it would re-stamp every row and make the next predictions
    # redo them all. A fit-free model's version is its name.
    return None, current if embedder.spec.fitted_on_corpus else model.name


@dataclass
class _Vectors:
    batches: object  # an iterable of embedding batches, consumed by the write
    dim: int
    unreadable: list = field(default_factory=list)  # ids given the fallback vector
    cache_note: dict = field(default_factory=dict)
    parts_done: list | None = None  # the cluster's part reports, when it embedded


def _make_vectors(
    context,
    embedder: EmbedderResource,
    model,
    warehouse: Warehouse,
    cluster: ClusterResource,
    client,
    *,
    parts: str | None,
    todo,
    version: str,
    id_type,
) -> _Vectors:
    """The vectors of `todo`: a remote model's through the warehouse's vector cache, on the cluster when there is
    one, else in process, chunk by chunk."""
    if embedder.spec.remote:
        fresh, cache_note = _embed_with_cache(model, todo["text"], warehouse, context.log.info)
        fresh, fallback = with_fallback(todo["text"], fresh)
        batches = (
            [embedding_batch(todo["id"], fresh, todo["text_hash"].tolist(), version, id_type)] if len(fresh) else []
        )
        dim = int(model.dim or (fresh.shape[1] if len(fresh) else _stored_dim(warehouse)))
        return _Vectors(batches, dim, todo["id"].iloc[fallback].tolist(), cache_note)
    if client is not None and len(todo):
        done = _embed_on_cluster(
            client,
            model,
            todo,
            parts,
            embedding_schema(id_type, model.dim),
            version,
            rows_per_part=cluster.rows_per_part,
            log=context.log.info,
        )
        return _Vectors(
            iter_batches([d.part for d in done]), model.dim, [i for d in done for i in d.unreadable], parts_done=done
        )
    made = _Vectors(None, model.dim)
    made.batches = _embedding_batches(model, todo, version, id_type, context.log.info, made.unreadable)
    return made


def embedding_version(blob: bytes) -> str:
    """The version of the vectors a fitted LSA makes: the hash of its pickle (a fit-free model's is its name)."""
    return hashlib.sha256(blob).hexdigest()[:12]


def stored_embedder(embedder: EmbedderResource, warehouse: Warehouse):
    """(model, version of the vectors it makes): LSA as fitted and kept in the warehouse, or unfitted with version
    None when none is kept; a fit-free model (minilm, openai) with its name as version."""
    model = embedder.build()
    if not embedder.spec.fitted_on_corpus:
        return model, model.name
    blob = warehouse.load_model(model.name)
    if blob is None:
        return model, None
    return pickle.loads(blob), embedding_version(blob)  # noqa: S301 - our own pickle, from our own warehouse


def _stored_dim(warehouse: Warehouse) -> int:
    """The stored vectors' size: what an all-cached run of a model that declares none carries over."""
    found = warehouse.read_df(f"SELECT array_length(vector) AS dim FROM {EMBEDDINGS} LIMIT 1")
    return int(found["dim"].iloc[0]) if len(found) else 0


def _embed_on_cluster(client, model, todo, parts: str, schema, version: str, *, rows_per_part: int, log):
    """The rows to embed as parts under `parts`, embedded on the cluster; returns each part's report."""
    in_paths = split_rows(todo[["id", "text", "text_hash"]], join(parts, "in"), rows_per_part)
    out_paths = [join(parts, "out", f"out-{n:05d}.parquet") for n in range(len(in_paths))]
    log(f"embedding {len(todo):,} rows on the cluster in {len(in_paths)} parts of up to {rows_per_part:,}")
    return run_parts(client, embed_part, in_paths, out_paths, model, log, schema=schema, version=version)


def _embedding_batches(model, rows, version: str, id_type, log, unreadable: list, *, chunk: int = 50_000):
    """Batches of vectors, made as DuckDB consumes them; the ids given the fallback vector go to `unreadable`.
    An embedder that pools on several threads (`threads`) gets that many chunks in flight, in order."""

    def embed(begin: int):
        part = rows.iloc[begin : begin + chunk]
        return embed_rows(model, part, version, id_type, f"rows {begin:,}..{begin + len(part) - 1:,}")

    threads, done = max(1, model.threads), 0
    begins = iter(range(0, len(rows), chunk))
    with ThreadPoolExecutor(threads) as pool:
        pending = deque(pool.submit(embed, begin) for begin in islice(begins, threads))
        while pending:
            batch, fallback = pending.popleft().result()
            pending.extend(pool.submit(embed, begin) for begin in islice(begins, 1))
            unreadable.extend(fallback)
            done += batch.num_rows
            log(f"embedded {done:,}/{len(rows):,} rows")
            yield batch


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
