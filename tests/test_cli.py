"""The CLI end to end with Dagster's multiprocess executor: steps in separate processes share one DuckDB file."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.pipeline_helpers import query


def test_cli_run_multiprocess_succeeds_and_summarises(pipeline_env, tmp_path):
    env = {**os.environ, **pipeline_env, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    proc = subprocess.run(
        [sys.executable, "-m", "scalellm_dagster.cli", "run", "--multiprocess"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "teacher simulated_hard (simulation of an LLM from gold labels)" in out
    assert "succeeded" in out and "400 corpus rows" in out
    topic_line = next(line for line in out.splitlines() if line.startswith("topic "))
    # teacher labels, ..., predictions, then the first drift audit: a baseline, which asks and judges nothing
    assert re.search(r"^topic +120 .* 400 +[0-9a-f]{12} +baseline$", topic_line.rstrip()), topic_line
    assert "Could not set lock" not in proc.stderr
    assert query(pipeline_env["SCALELLM_DUCKDB_PATH"], "SELECT count(*) FROM topic.predictions")[0][0] == 400


def test_cli_run_on_a_local_cluster_and_the_settings_it_refuses(pipeline_env, tmp_path):
    env = {
        **os.environ,
        **pipeline_env,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SCALELLM_DASK": "local:2",
        "SCALELLM_DASK_PART_ROWS": "100",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "scalellm_dagster.cli", "run"], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cluster local:2" in proc.stdout and "400 corpus rows" in proc.stdout
    assert "cluster: 4/4 parts done (400 rows" in proc.stdout + proc.stderr  # embeddings, then predictions
    assert query(pipeline_env["SCALELLM_DUCKDB_PATH"], "SELECT count(*) FROM topic.predictions")[0][0] == 400

    for setting, message in [
        ({"SCALELLM_DASK": "four"}, "SCALELLM_DASK='four': expected local:N"),
        ({"SCALELLM_SHARDS": "4"}, "SCALELLM_SHARDS is gone: the row-parallel steps run on a Dask cluster instead"),
    ]:
        bad = subprocess.run(
            [sys.executable, "-m", "scalellm_dagster.cli", "run"],
            env={**env, **setting},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr[-2000:]


def test_cli_estimate_prices_embeddings_and_labels_under_the_limits_and_sends_nothing(pipeline_env):
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(lambda text: "x") as server:
        env = {
            **os.environ,
            **pipeline_env,
            "SCALELLM_EMBEDDER": "openai",
            "SCALELLM_TEACHER": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "SCALELLM_EMBEDDING_RPM": "6",  # 10 s between requests: the limit, not latency, sets the time
            "SCALELLM_TEACHER_RPM": "60",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "scalellm_dagster.cli", "estimate"], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert server.requests == []  # a dry run
    out = proc.stdout
    assert "embeddings: openai:text-embedding-3-small, $0.02 per M tokens" in out
    embed_row = next(line for line in out.splitlines() if line.startswith("| embeddings ("))
    cells = [c.strip() for c in embed_row.strip("|").split("|")]
    assert cells[1:3] == ["400", "2"] and cells[-2:] == ["20.0000", "requests/min limit"], cells  # 400 rows / 256
    sample_row = next(line for line in out.splitlines() if line.startswith("| ScaleLLM sample"))
    cells = [c.strip() for c in sample_row.strip("|").split("|")]
    assert cells[1:3] == ["120", "12"] and cells[-4:-2] == ["12.0000", "requests/min limit"], cells  # 1 s apart
    # the Batch API's price beside the synchronous one (SCALELLM_BATCH_PRICE_FACTOR 0.5), and its wait
    assert float(cells[-2]) == pytest.approx(float(cells[5]) / 2, abs=1e-4) and cells[-1] == "up to 24 h", cells
    assert "teacher mode sync (Batch API at 50% of the price, 100+ rows)" in out

    offline = subprocess.run(
        [sys.executable, "-m", "scalellm_dagster.cli", "estimate"],
        env={**os.environ, **pipeline_env},
        capture_output=True,
        text=True,
    )
    assert "embeddings: static, offline (no requests, nothing to pay)" in offline.stdout
