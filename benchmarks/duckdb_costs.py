"""Two DuckDB costs behind issue #28's changes to the warehouse: opening a database, and storing a large model.

    .venv/bin/python -m benchmarks.duckdb_costs [--blob-mb 229]

1. Milliseconds per `duckdb.connect` + `close`: in memory, on a file, and on a file while another connection to it
   stays open in the process (what `resources/warehouse_keep_open.py` relies on).
2. Replacing a stored pickle of `--blob-mb` MB (random bytes; the LSA model at 1M rows is 229 MB) in the keyed
   `models` table, in one transaction: with `INSERT OR REPLACE` (before issue #28) and with a delete and an insert
   (`warehouse_tables._save_model_statements`). Each in a fresh child process: its seconds and its peak RSS above
   the RSS it had with the bytes in hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

STORE = """
import json, os, resource, time
import duckdb
from scalellm_dagster.resources.warehouse_tables import _save_model_statements
def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
blob = os.urandom({blob_mb} * 2**20)
before = rss_mb()
conn = duckdb.connect({db!r}, config={{"memory_limit": "2GB"}})
for sql, params in _save_model_statements("m", b"the previous fit"):
    conn.execute(sql, params)
start = time.perf_counter()
conn.execute("BEGIN")
if {upsert}:
    conn.execute("INSERT OR REPLACE INTO scalellm_cache.models VALUES (?, ?, now())", ["m", blob])
else:
    for sql, params in _save_model_statements("m", blob):
        conn.execute(sql, params)
conn.execute("COMMIT")
seconds = time.perf_counter() - start
conn.close()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": round(seconds, 2), "peak_above_mb": round(peak - before)}}))
"""


def connect_ms(path: str, repeat: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        duckdb.connect(path).close()
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blob-mb", type=int, default=229)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "w.duckdb")
        duckdb.connect(db).execute("CREATE TABLE t AS SELECT 1 AS x").close()
        report = {"connect_ms_memory": connect_ms(":memory:"), "connect_ms_file": connect_ms(db)}
        held = duckdb.connect(db)
        report["connect_ms_file_while_one_is_open"] = connect_ms(db)
        held.close()
        for upsert in (True, False):
            script = STORE.format(blob_mb=args.blob_mb, db=str(Path(tmp) / f"{upsert}.duckdb"), upsert=upsert)
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
            name = "replace_model_insert_or_replace" if upsert else "replace_model_delete_then_insert"
            report[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in report.items()}, indent=1))


if __name__ == "__main__":
    main()
