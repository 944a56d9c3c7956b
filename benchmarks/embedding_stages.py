"""Where the `embeddings` step's time goes: each stage of it timed alone, one after the other, at N rows.

    .venv/bin/python -m benchmarks.embedding_stages --rows 1000000 [--out benchmarks/results/embedding_stages_1m.json]

The corpus is tweet_eval drawn again up to --rows (as `embedding_throughput.py`), written to a fresh warehouse
first. Then: read (id, text and each text's hash, as the step needs them), embed with the static embedder, give
unreadable texts the fallback vector, build the Arrow batches, write the table. In the step itself embedding and
writing overlap, so its wall time is less than the sum. Runs on older checkouts too (PYTHONPATH=that checkout),
which is how the "before" column was measured: there the hash is computed in Python after the read, the texts
are handed over as a list, and the write keeps insertion order and compresses the vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--data", default=str(ROOT.parent / "shared/datasets/tweet_eval_offensive/data.parquet"))
    p.add_argument("--out")
    args = p.parse_args()
    from benchmarks.embedding_throughput import tweet_corpus  # the same corpus as the step's benchmark
    from scalellm_dagster.embedders.static import StaticEmbedder
    from scalellm_dagster.embedders.unreadable import with_fallback
    from scalellm_dagster.embedding_arrow import embedding_batch, embedding_schema
    from scalellm_dagster.resources import Warehouse
    from scalellm_dagster.teachers import runner

    corpus = tweet_corpus(args.data, args.rows)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Warehouse(database=str(Path(tmp) / "wh.duckdb"))
        warehouse.write_table("corpus", corpus)
        start = time.perf_counter()
        if hasattr(runner, "TEXT_HASH_SQL"):
            rows = warehouse.read_df(
                f"SELECT id, text, {runner.TEXT_HASH_SQL.format(column='text')} AS text_hash FROM corpus"
            )
        else:
            rows = warehouse.read_df("SELECT id, text FROM corpus")
            rows["text_hash"] = rows["text"].map(runner.text_hash)
        seconds["read_and_hash"] = time.perf_counter() - start
        start = time.perf_counter()
        model = StaticEmbedder()
        model.load()
        seconds["load_model"] = time.perf_counter() - start
        start = time.perf_counter()
        vectors = model.embed(rows["text"] if getattr(model, "reads_arrow", False) else rows["text"].tolist())
        seconds["embed"] = time.perf_counter() - start
        start = time.perf_counter()
        vectors, _ = with_fallback(rows["text"], vectors)
        seconds["fallback_vectors"] = time.perf_counter() - start
        id_type = warehouse.id_type("corpus")
        start = time.perf_counter()
        chunk = 50_000
        batches = [
            embedding_batch(
                rows["id"].iloc[s : s + chunk],
                vectors[s : s + chunk],
                rows["text_hash"].iloc[s : s + chunk].tolist(),
                model.name,
                id_type,
            )
            for s in range(0, len(rows), chunk)
        ]
        seconds["arrow_batches"] = time.perf_counter() - start
        start = time.perf_counter()
        warehouse.write_embedding_batches("embeddings", embedding_schema(id_type, model.dim), batches)
        seconds["write"] = time.perf_counter() - start
    report = {
        "rows": args.rows,
        "code": str(Path(sys.modules["scalellm_dagster"].__file__).parents[1]),
        "cpus": os.cpu_count(),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "sum_seconds": round(sum(seconds.values()), 2),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
