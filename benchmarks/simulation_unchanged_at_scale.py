"""The `simulated_hard` answers after issue #47 against the computation before it, on a corpus of N rows.

The new path reads the static vectors the `embeddings` step stored in the warehouse (another order, other blocks),
sums the class centroids with a sparse product and draws with DuckDB's SHA-256; the old one (kept verbatim in
tests/reference/simulated_hard_before.py) embeds every text again. The test suite compares them to the bit on a few
thousand rows; this counts differing answers at scale, on a warehouse a `scalellm run` left:

    .venv/bin/python -m benchmarks.simulation_unchanged_at_scale --warehouse data/warehouse.duckdb --gold gold
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb
import numpy as np

from scalellm_dagster.embedding_arrow import ids_and_matrix
from scalellm_dagster.teachers.simulated_hard import hard_answers, static_embed
from tests.reference.simulated_hard_before import hard_answers_before_47


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--gold", default="gold", help="the corpus's gold column")
    parser.add_argument("--accuracy", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    conn = duckdb.connect(args.warehouse, read_only=True)
    corpus = conn.execute(f'SELECT id, text, "{args.gold}" AS gold FROM corpus').df()
    labels = {label: "" for label in sorted(corpus["gold"].dropna().unique())}

    def stored():
        end = conn.execute("SELECT max(rowid) + 1 FROM embeddings").fetchone()[0]
        for start in range(0, end, 131_072):
            yield ids_and_matrix(
                conn.sql(
                    f"SELECT id, vector FROM embeddings WHERE rowid >= {start} AND rowid < {start + 131_072}"
                ).to_arrow_table()
            )

    gold = corpus["gold"].astype(object).tolist()
    start = time.perf_counter()
    new = hard_answers(
        corpus["text"], gold, labels, static_embed, args.accuracy, args.seed, stored=stored, ids=corpus["id"]
    )
    new_seconds = time.perf_counter() - start
    start = time.perf_counter()
    old = hard_answers_before_47(corpus["text"].tolist(), gold, labels, static_embed, args.accuracy, args.seed)
    old_seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "rows": len(corpus),
                "answers_differing": int((new.answers != old.answers).sum()),
                "wrong_rows_differing": int((new.wrong != old.wrong).sum()),
                "hardness_max_abs_difference": float(np.abs(new.hardness - old.hardness).max()),
                "seconds_now": round(new_seconds, 1),
                "seconds_before": round(old_seconds, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
