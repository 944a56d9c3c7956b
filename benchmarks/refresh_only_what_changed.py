"""A refresh that changes only what changed (issue #42), against the behaviour before it, on the same data.

A corpus of N distinct rows (the bundled banking77 demo, each text made distinct with a reference number), one task
(`topic`, budget 1,000, the default `simulated_hard` teacher), predictions written back to a real PostgreSQL server
started here (tests/postgres_server.py). Each variant runs `scalellm run` as a user would: a first run, then 1 % new
rows and 0.1 % edited texts, then the refresh. Measured for the refresh: teacher requests (the ledger), rows
embedded and predicted (the materializations' metadata), rows sent to PostgreSQL and rows changed there, labels or
confidences changed on rows nobody touched, wall time. The current code also replaces its model on purpose
(`scalellm run --retrain`): the cost of a replacement.

    .venv/bin/python -m benchmarks.refresh_only_what_changed --rows 1000000 [--before <git revision>]

`--before` runs the same steps with the code of that revision (checked out into a temporary worktree and put first
on PYTHONPATH); default: the commit before the deployed model (94a5db0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psycopg
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.settings import DEMO_CORPUS
from tests.postgres_server import LocalPostgres

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "benchmarks" / "results" / "refresh_only_what_changed.json"
TASKS = """tasks:
  - name: topic
    instruction: Decide which support team should handle the online-banking customer's message.
    gold_column: topic
    budget: 1000
    labels: [cards, payments_and_cash, transfers, top_ups, fees_and_exchange, account_and_security]
"""


def corpus(rows: int, offset: int = 0) -> pd.DataFrame:
    """`rows` distinct rows: demo texts with a reference number, ids from `offset`."""
    demo = pd.read_parquet(DEMO_CORPUS, columns=["text", "topic"])
    k = np.arange(offset, offset + rows)
    picked = demo.iloc[k % len(demo)].reset_index(drop=True)
    return pd.DataFrame(
        {
            "id": k.astype(np.int64),
            "text": picked["text"] + " (ref " + pd.Series(k).astype(str) + ")",
            "topic": picked["topic"],
        }
    )


def scalellm_run(env: dict, *extra: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "scalellm"), "run", *extra], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"scalellm run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def latest(home: Path, key: list[str]) -> tuple[dict, str]:
    with DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(AssetKey(key))
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        return meta, event.run_id


def warehouse(db: Path, sql: str):
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).df()


def variant(name: str, pythonpath: str | None, rows: int, pg: LocalPostgres, work: Path, retrain: bool) -> dict:
    folder = work / name
    folder.mkdir()
    url = pg.new_database(name)
    source = folder / "corpus.parquet"
    base = corpus(rows)
    base.to_parquet(source, index=False)
    (folder / "tasks.yaml").write_text(TASKS)
    home = folder / "dagster_home"
    env = {
        **os.environ,
        "SCALELLM_CORPUS": str(source),
        "SCALELLM_TASKS": str(folder / "tasks.yaml"),
        "SCALELLM_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "SCALELLM_PREDICTIONS_TO": f"{url}::labels",
        "DAGSTER_HOME": str(home),
        "TQDM_DISABLE": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    db = folder / "warehouse.duckdb"
    first = scalellm_run(env)
    before = warehouse(db, "SELECT id, label, confidence FROM topic.predictions").set_index("id")
    requests_before = _requests(db)

    new, edited = rows // 100, rows // 1000
    changed = base.copy()
    pick = np.random.default_rng(0).choice(rows, edited, replace=False)
    changed.loc[pick, "text"] = changed.loc[pick, "text"] + " please help"
    pd.concat([changed, corpus(new, offset=rows)], ignore_index=True).to_parquet(source, index=False)
    untouched = np.setdiff1d(base["id"].to_numpy(), base["id"].to_numpy()[pick])

    refresh = scalellm_run(env)
    result = {"first_run_seconds": round(first, 1), "refresh": measure(db, home, url, before, untouched, refresh)}
    result["refresh"]["teacher_requests"] = _requests(db) - requests_before
    if retrain:
        before = warehouse(db, "SELECT id, label, confidence FROM topic.predictions").set_index("id")
        requests_before = _requests(db)
        seconds = scalellm_run(env, "--retrain")
        replaced = measure(db, home, url, before, before.index.to_numpy(), seconds)
        replaced["teacher_requests"] = _requests(db) - requests_before
        predictions, _ = latest(home, ["topic", "predictions"])
        replaced["model_update"] = predictions.get("model_update")
        result["replacement"] = replaced
    return result


def _requests(db: Path) -> int:
    """Teacher requests so far: the ledger has a line per request."""
    return int(warehouse(db, "SELECT count(DISTINCT request_id) AS n FROM scalellm_cache.teacher_ledger")["n"].iloc[0])


def measure(db: Path, home: Path, url: str, before: pd.DataFrame, untouched, seconds: float) -> dict:
    embedded, _ = latest(home, ["embeddings"])
    predicted, _ = latest(home, ["topic", "predictions"])
    export, run_id = latest(home, ["topic", "exported_predictions"])
    after = warehouse(db, "SELECT id, label, confidence FROM topic.predictions").set_index("id")
    kept = before.index.intersection(after.index).intersection(pd.Index(untouched))
    label_changed = int((before.loc[kept, "label"] != after.loc[kept, "label"]).sum())
    confidence_changed = int((before.loc[kept, "confidence"] != after.loc[kept, "confidence"]).sum())
    with psycopg.connect(url) as conn:
        stamped = conn.execute("SELECT count(*) FROM labels.topic_predictions WHERE run_id = %s", [run_id]).fetchone()
    return {
        "wall_seconds": round(seconds, 1),
        "rows_embedded": embedded["rows_computed"],
        "rows_predicted": predicted["rows_predicted"],
        # before: every row was staged and upserted; after: only the changed rows travel
        "rows_sent_to_postgres": export.get("rows_sent", export["dagster/row_count"]),
        "rows_changed_in_postgres": export["inserted"] + export["updated"] + export["deleted"],
        "postgres_rows_stamped_with_this_run": int(stamped[0]),
        "untouched_rows_compared": int(len(kept)),
        "labels_changed_on_untouched_rows": label_changed,
        "confidences_changed_on_untouched_rows": confidence_changed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--before", default="94a5db0", help="the revision whose behaviour is compared ('' to skip)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scalellm-refresh-"))
    pg = LocalPostgres(work / "postgres").start()
    report = {"rows": args.rows, "new_rows": args.rows // 100, "edited_rows": args.rows // 1000}
    try:
        if args.before:
            tree = work / "before-code"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=REPO, check=True)
            try:
                report["before"] = variant("before", str(tree), args.rows, pg, work, retrain=False)
                report["before"]["revision"] = args.before
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)
            print(json.dumps(report["before"], indent=2))
        report["after"] = variant("after", None, args.rows, pg, work, retrain=True)
        print(json.dumps(report["after"], indent=2))
    finally:
        pg.stop()
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
