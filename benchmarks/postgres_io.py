"""PostgreSQL in and out at a million rows (issue #37): rows/s reading the corpus from a table and writing
predictions back, beside the Parquet path, on a real PostgreSQL server started here (tests/postgres_server.py).

Reading: the project's path (psycopg COPY ... TO STDOUT as CSV into Arrow's reader), a server-side cursor (psycopg's
other way to stream), DuckDB's `postgres` extension (only when --duckdb-python names an interpreter with DuckDB 1.5
and the `duckdb-extension-postgres-scanner` wheel: no wheel exists for the DuckDB 2.0 this project installs, and
DuckDB would otherwise download it at run time), and a Parquet file; then the whole corpus source (`CorpusSource.load`,
with its validation) for PostgreSQL and Parquet. Writing: the upsert (first write, the same rows again, 10 % changed),
the export check's read-back and comparison, and the same frame written to Parquet.

    .venv/bin/python -m benchmarks.postgres_io --rows 1000000 [--duckdb-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from scalellm_dagster.checks.export_checks import compare, export_suite
from scalellm_dagster.checks.gx_runner import validate
from scalellm_dagster.resources import postgres
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.settings import DEMO_CORPUS
from scalellm_dagster.tasks_config import TaskSpec
from tests.postgres_server import LocalPostgres

RESULTS = Path(__file__).resolve().parent / "results" / "postgres_io.json"

DUCKDB_READ = """
import duckdb, glob, os, sys, time
import duckdb_extension_postgres_scanner as ext
path = glob.glob(os.path.join(os.path.dirname(ext.__file__), "extensions", "*", "*.duckdb_extension"))[0]
conn = duckdb.connect()
conn.sql(f"INSTALL '{path}'"); conn.sql("LOAD postgres")
conn.sql(f"ATTACH '{sys.argv[1]}' AS pg (TYPE postgres, READ_ONLY)")
start = time.perf_counter()
table = conn.sql("SELECT * FROM pg.public.corpus").fetch_arrow_table()
print(time.perf_counter() - start, table.num_rows, duckdb.__version__)
"""


def corpus_rows(n: int) -> pd.DataFrame:
    demo = pd.read_parquet(DEMO_CORPUS, columns=["text", "topic"])
    pick = np.arange(n) % len(demo)
    return pd.DataFrame(
        {
            "id": [f"r{i:07d}" for i in range(n)],
            "text": demo["text"].to_numpy()[pick] + [f" #{i}" for i in range(n)],
            "topic": demo["topic"].to_numpy()[pick],
        }
    )


def timed(fn, repeats: int = 3):
    """(best seconds of `repeats`, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def cursor_read(url: str) -> pd.DataFrame:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor(name="bench") as cursor:
        cursor.itersize = 50_000
        cursor.execute("SELECT * FROM corpus")
        rows = cursor.fetchall()
    return pd.DataFrame(rows, columns=["id", "text", "topic"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--duckdb-python", help="an interpreter with duckdb 1.5 and duckdb-extension-postgres-scanner")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pg_bench_"))
    server = LocalPostgres(work / "pg").start()
    url = server.new_database("bench")
    frame = corpus_rows(args.rows)
    result: dict = {"rows": args.rows, "text_chars_mean": round(frame["text"].str.len().mean(), 1)}
    try:
        import psycopg

        start = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE corpus (id text PRIMARY KEY, text text NOT NULL, topic text)")
            with conn.cursor().copy("COPY corpus FROM STDIN (FORMAT csv)") as copy:
                copy.write(frame.to_csv(index=False, header=False).encode())
        result["setup_load_s"] = round(time.perf_counter() - start, 2)
        parquet = work / "corpus.parquet"
        frame.to_parquet(parquet, index=False)

        location = postgres.Location.parse(f"{url}::public.corpus", "bench")
        reads = {
            "postgres_copy_csv_arrow (this project)": lambda: postgres.read_rows(location),
            "postgres_server_side_cursor": lambda: cursor_read(url),
            "parquet_read": lambda: pq.read_table(parquet),
            "corpus_source_postgres (read + validate)": lambda: CorpusSource(path=f"{url}::public.corpus").load(),
            "corpus_source_parquet (read + validate)": lambda: CorpusSource(path=str(parquet)).load(),
        }
        result["read"] = {}
        for name, fn in reads.items():
            seconds, out = timed(fn)
            assert len(out) == args.rows, (name, len(out))
            result["read"][name] = {"seconds": round(seconds, 2), "rows_per_s": round(args.rows / seconds)}
            print(f"read  {name:45s} {seconds:6.2f} s  {args.rows / seconds:>12,.0f} rows/s", flush=True)
        if args.duckdb_python:
            runs = [
                subprocess.run(
                    [args.duckdb_python, "-c", DUCKDB_READ, url], capture_output=True, text=True, check=True
                ).stdout.split()
                for _ in range(3)
            ]
            seconds = min(float(r[0]) for r in runs)
            assert int(runs[0][1]) == args.rows
            name = f"duckdb_{runs[0][2]}_postgres_extension"
            result["read"][name] = {"seconds": round(seconds, 2), "rows_per_s": round(args.rows / seconds)}
            print(f"read  {name:45s} {seconds:6.2f} s  {args.rows / seconds:>12,.0f} rows/s", flush=True)

        rng = np.random.default_rng(0)
        predictions = pd.DataFrame(
            {
                "id": frame["id"],
                "label": frame["topic"],
                "source": "student",
                "student": "linear_svm",
                "confidence": rng.random(args.rows).astype(np.float32),
            }
        )
        sink = postgres.Location.parse(f"{url}::labels", "bench", queries=False)
        table = "labels.topic_predictions"
        changed = predictions.copy()
        tenth = rng.random(args.rows) < 0.1
        changed.loc[tenth, "confidence"] = np.float32(0.5)
        writes = [
            ("postgres_upsert_first_write", predictions),
            ("postgres_upsert_same_rows_again", predictions),
            ("postgres_upsert_10pct_changed", changed),
        ]
        result["write"] = {}
        for name, data in writes:
            written = postgres.write_predictions(sink, table, data, name)
            entry = {
                "seconds": round(written.seconds, 2),
                "rows_per_s": round(args.rows / written.seconds),
                "inserted": written.inserted,
                "updated": written.updated,
                "deleted": written.deleted,
            }
            result["write"][name] = entry
            print(f"write {name:45s} {written.seconds:6.2f} s  {args.rows / written.seconds:>12,.0f} rows/s  {entry}")
        seconds, _ = timed(lambda: changed.to_parquet(work / "predictions.parquet", index=False))
        result["write"]["parquet_write"] = {"seconds": round(seconds, 2), "rows_per_s": round(args.rows / seconds)}
        print(f"write {'parquet_write':45s} {seconds:6.2f} s  {args.rows / seconds:>12,.0f} rows/s")

        start = time.perf_counter()
        back = postgres.read_predictions(sink, table)
        read_back = time.perf_counter() - start
        both = compare(changed, back)
        suite = export_suite(TaskSpec(name="bench", instruction="", labels={"a": "", "b": ""}, budget=1), len(changed))
        outcome = validate(both, suite.defaults, "bench_export", parameters=suite.parameters)
        check_s = time.perf_counter() - start
        assert outcome.passed, outcome.failed
        result["export_check"] = {"read_back_s": round(read_back, 2), "read_compare_validate_s": round(check_s, 2)}
        print(f"check export_matches_warehouse: read back {read_back:.2f} s, with comparison and GX {check_s:.2f} s")
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
