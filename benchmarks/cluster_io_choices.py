"""Two choices of the cluster path, measured at 1M rows (issue #25): does the warehouse take the workers' vector
parts in (ingest), or keep a view over them? And do the checks' row scans stay on the driver, or go to the cluster
(which means exporting the rows to parts first)?

    .venv/bin/python -m benchmarks.cluster_io_choices [--rows 1000000] [--dim 384]

Builds a warehouse with the rows' texts (resampled demo messages) and writes their vectors (random unit vectors, the
size LSA makes) as 50,000-row parts, as workers do. Then times, against the ingested table and against a view over
the parts: the ingest itself, the embeddings check's scan (`vector_stats`: norms and finiteness inside DuckDB), a
sample's vectors by id (1,500 rows, what labeled_sample and the students read), and a full read in blocks (what
predicting every row reads). And for the corpus check: its Great Expectations validation on the driver, with the
expectations validated one by one (as before issue #25's last step: GX fingerprints the whole frame for each) and as
one suite, against exporting the (id, text) rows to parts for workers, and the whole check with its text scan on a
local cluster of two workers (`--workers`; the cluster's start not counted; first and second run). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from scalellm_dagster.checks.gx_runner import from_configs, portable, validate
from scalellm_dagster.checks.row_scans import validate_on_cluster
from scalellm_dagster.checks.shared_checks import (
    corpus_id_expectations,
    corpus_suite,
    corpus_text_expectations,
    embeddings_suite,
)
from scalellm_dagster.cluster.parts import iter_batches, join, split_rows, write_part
from scalellm_dagster.embedding_arrow import embedding_batch, embedding_schema
from scalellm_dagster.resources import Warehouse
from scalellm_dagster.settings import DEMO_CORPUS


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - start, 2), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    texts = pd.read_parquet(DEMO_CORPUS)["text"].sample(args.rows, replace=True, random_state=0).tolist()
    corpus = pd.DataFrame({"id": np.arange(args.rows), "text": texts})
    report = {"rows": args.rows, "dim": args.dim}
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(database=f"{tmp}/wh.duckdb")
        wh.write_table("corpus", corpus)
        parts = []
        for n, begin in enumerate(range(0, args.rows, 50_000)):
            m = rng.standard_normal((min(50_000, args.rows - begin), args.dim)).astype(np.float32)
            m /= np.linalg.norm(m, axis=1, keepdims=True)
            batch = embedding_batch(np.arange(begin, begin + len(m)), m, ["h"] * len(m), "v", pa.int64())
            parts.append(write_part(pa.Table.from_batches([batch]), join(tmp, "parts", f"out-{n:05d}.parquet")))
        schema = embedding_schema(pa.int64(), args.dim)
        report["ingest_seconds"], _ = timed(
            lambda: wh.write_embedding_batches("embeddings", schema, iter_batches(parts))
        )
        files = "[" + ", ".join(f"'{p}'" for p in parts) + "]"
        report["view_seconds"], _ = timed(
            lambda: wh.execute(
                f"CREATE VIEW embeddings_view AS SELECT * REPLACE (vector::FLOAT[{args.dim}] AS vector) "
                f"FROM read_parquet({files})"
            )
        )
        sample = rng.choice(args.rows, 1_500, replace=False)
        for name, relation in (("table", "embeddings"), ("view", "embeddings_view")):
            report[f"{name}_check_scan_seconds"], _ = timed(lambda relation=relation: wh.vector_stats(relation))
            report[f"{name}_sample_read_seconds"], _ = timed(
                lambda relation=relation: wh.read_embeddings(relation, ids=sample)
            )
            report[f"{name}_full_read_seconds"], _ = timed(
                lambda relation=relation: sum(
                    len(wh.read_embeddings(relation, ids=np.arange(b, min(b + 200_000, args.rows)))[0])
                    for b in range(0, args.rows, 200_000)
                )
            )
        stats = wh.vector_stats("embeddings").assign(row_matches_corpus="yes")
        stats["finite"] = stats["finite"].astype(bool)
        expected = embeddings_suite((), args.dim, args.rows)
        report["embeddings_check_gx_one_by_one_seconds"], _ = timed(
            lambda: [validate(stats, [e], "embeddings", parameters=expected.parameters) for e in expected.defaults]
        )
        report["embeddings_check_gx_suite_seconds"], _ = timed(
            lambda: validate(stats, expected.defaults, "embeddings", parameters=expected.parameters)
        )
        rows = wh.read_df("SELECT id, text FROM corpus")
        corpus = corpus_suite((), 20_000)
        report["corpus_check_on_driver_one_by_one_seconds"], _ = timed(
            lambda: [validate(rows, [e], "corpus", parameters=corpus.parameters) for e in corpus.defaults]
        )
        report["corpus_check_on_driver_seconds"], _ = timed(
            lambda: validate(rows, corpus.defaults, "corpus", parameters=corpus.parameters)
        )
        report["corpus_export_to_parts_seconds"], _ = timed(lambda: split_rows(rows, join(tmp, "corpus"), 50_000))
        from distributed import Client, LocalCluster

        from scalellm_dagster.resources.cluster import WORKER_ENV

        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None, env=WORKER_ENV
            ) as cluster,
            Client(cluster) as client,
        ):

            def on_cluster():
                ids = validate(wh.read_df("SELECT id FROM corpus"), corpus_id_expectations(), "ids")
                texts, _ = validate_on_cluster(
                    client,
                    "local",
                    wh,
                    "SELECT id, text FROM corpus",
                    join(tmp, "check"),
                    50_000,
                    expectations=partial(from_configs, portable(corpus_text_expectations(), corpus.parameters)),
                    name="text",
                    log=lambda _m: None,
                )
                return ids.passed and texts.passed

            # the first run pays each worker's Great Expectations import and context; the second is the steady state
            report[f"corpus_check_on_local{args.workers}_first_seconds"], _ = timed(on_cluster)
            report[f"corpus_check_on_local{args.workers}_seconds"], _ = timed(on_cluster)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
