"""End-to-end speed of the `embeddings` asset: read the corpus from DuckDB, embed, write the vectors back.

    .venv/bin/python -m benchmarks.embedding_throughput --rows 1000000 [--embedder static|lsa|minilm]
        [--data ../shared/datasets/tweet_eval_offensive/data.parquet] [--out benchmarks/results/embed_1m.json]

The corpus is the file's texts drawn again with replacement up to --rows, each copy made distinct by its copy
number (as `scalellm bench --resample-to` does), written to a fresh warehouse first and not timed. Then the real
`embeddings` asset is materialized once in a child process: the figure is its step's wall time, from reading
`corpus` to the committed `embeddings` table, and the child's peak RSS. No asset check runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from scalellm_dagster.cli.bench import resample

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, time
from dagster import AssetSelection, DagsterInstance, materialize
from scalellm_dagster.definitions import build_definitions
defs = build_definitions()
embeddings = defs.resolve_assets_def("embeddings")
resources = {k: defs.resources[k] for k in ("embedder", "warehouse", "cluster")}
with DagsterInstance.ephemeral() as instance:
    start = time.perf_counter()
    result = materialize([embeddings], resources=resources, instance=instance, raise_on_error=True)
    seconds = time.perf_counter() - start
meta = result.asset_materializations_for_node("embeddings")[0].metadata
step = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"][0]
print(json.dumps({"step_seconds": round(step.event_specific_data.duration_ms / 1000, 2),
                  "embed_and_write_seconds": meta["embed_seconds"].value, "rows": meta["dagster/row_count"].value,
                  "embedder": meta["embedder"].value,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def tweet_corpus(data: str, rows: int) -> pd.DataFrame:
    """(id, text): the file's texts drawn again with replacement up to `rows`, copies made distinct."""
    raw = pd.read_parquet(data)[["text"]].assign(label="x", split="all")
    raw.insert(0, "id", range(len(raw)))
    corpus = resample(raw, rows, seed=0) if rows > len(raw) else raw.head(rows)
    return corpus[["id", "text"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--embedder", default="static", choices=["static", "lsa", "minilm"])
    p.add_argument("--data", default=str(ROOT.parent / "shared/datasets/tweet_eval_offensive/data.parquet"))
    p.add_argument("--out")
    args = p.parse_args()
    corpus = tweet_corpus(args.data, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.parquet"
        corpus[["id", "text"]].to_parquet(path, index=False)
        env = {
            **os.environ,
            "SCALELLM_CORPUS": str(path),
            "SCALELLM_DUCKDB_PATH": str(Path(tmp) / "wh.duckdb"),
            "SCALELLM_EMBEDDER": args.embedder,
            "DAGSTER_HOME": tmp,
        }
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from scalellm_dagster.definitions import build_definitions as b;"
                "from scalellm_dagster.resources import Warehouse; import pandas as pd, os;"
                "Warehouse(database=os.environ['SCALELLM_DUCKDB_PATH']).write_table('corpus', "
                "pd.read_parquet(os.environ['SCALELLM_CORPUS']))",
            ],
            env=env,
            check=True,
        )
        child = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
        if child.returncode:
            sys.exit(child.stderr[-3000:])
        report = json.loads(child.stdout.strip().splitlines()[-1])
    report.update(
        data=args.data,
        mean_chars=round(float(corpus["text"].str.len().mean()), 1),
        cpus=os.cpu_count(),
        rows_per_second_step=round(report["rows"] / report["step_seconds"]),
        rows_per_second_embed_and_write=round(report["rows"] / report["embed_and_write_seconds"]),
    )
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
