"""The CLI end to end with Dagster's multiprocess executor: steps in separate processes share one DuckDB file."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.pipeline_helpers import query


def test_cli_run_multiprocess_succeeds_and_summarises(pipeline_env, tmp_path):
    env = {**os.environ, **pipeline_env, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    proc = subprocess.run([sys.executable, "-m", "scalellm_dagster.cli", "run", "--multiprocess"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "teacher simulated (simulation of an LLM from gold labels)" in out
    assert "succeeded" in out and "400 corpus rows" in out
    topic_line = next(line for line in out.splitlines() if line.startswith("topic "))
    # teacher labels, ..., predictions, then the first drift audit's agreement and verdict
    assert re.search(r"^topic +120 .* 400 +[01]\.\d{3} (passed|FAILED)$", topic_line.rstrip()), topic_line
    assert "Could not set lock" not in proc.stderr
    assert query(pipeline_env["SCALELLM_DUCKDB_PATH"], "SELECT count(*) FROM topic.predictions")[0][0] == 400


def test_cli_run_sharded_reports_each_shard_and_rejects_a_bad_shard_count(pipeline_env, tmp_path):
    env = {**os.environ, **pipeline_env, "DAGSTER_HOME": str(tmp_path / "dagster_home"), "SCALELLM_SHARDS": "2"}
    proc = subprocess.run([sys.executable, "-m", "scalellm_dagster.cli", "run", "--workers", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 shards, 1 shard run(s) at a time" in proc.stdout
    assert proc.stdout.count("shard 2/2 done") == 2  # embeddings, then predictions
    assert "6 runs succeeded" in proc.stdout and "400 corpus rows" in proc.stdout
    assert query(pipeline_env["SCALELLM_DUCKDB_PATH"], "SELECT count(*) FROM topic.predictions")[0][0] == 400

    bad = subprocess.run([sys.executable, "-m", "scalellm_dagster.cli", "run"],
                         env={**env, "SCALELLM_SHARDS": "four"}, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "SCALELLM_SHARDS='four': expected a whole number of shards" in bad.stderr
