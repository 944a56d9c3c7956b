"""The Dagster webserver on 127.0.0.1 serves the asset graph and a materialization's metadata over GraphQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scalellm_dagster.settings import ensure_dagster_home

ROOT = Path(__file__).resolve().parents[1]

ASSET_GRAPH = (
    "{ assetNodes { assetKey { path } groupName kinds dependencyKeys { path } automationCondition { label } } }"
)
REPORT = """{ assetOrError(assetKey: {path: ["topic", "model_selection_report"]}) {
  ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } } } } } }"""


JOB_RUNS = """{ pipelineOrError(params: {repositoryLocationName: "scalellm_dagster", repositoryName: "__repository__",
  pipelineName: "scalellm_all"}) { ... on Pipeline { runs(limit: 5) { runId status } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture
def webserver(pipeline_env, tmp_path):
    home = ensure_dagster_home(tmp_path / "dagster_home")  # telemetry off: this machine is offline
    os.environ["DAGSTER_HOME"] = str(home)  # the in-process run below records into the same instance
    port = _free_port()
    env = {**os.environ, **pipeline_env, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stdout.read()) from None
                time.sleep(1)
        else:
            raise TimeoutError("dagster-webserver did not answer within 120 s")
        yield port, home, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        del os.environ["DAGSTER_HOME"]


def test_graphql_serves_the_asset_graph_and_report_metadata(webserver):
    port, home, proc = webserver
    nodes = _graphql(port, ASSET_GRAPH)["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {
        "corpus",
        "embeddings",
        "topic/labeled_sample",
        "topic/student_candidates",
        "topic/model_selection_report",
        "topic/predictions",
    } <= set(by_key)
    assert by_key["topic/labeled_sample"]["groupName"] == "topic"
    assert {"embeddings"} <= {"/".join(d["path"]) for d in by_key["topic/labeled_sample"]["dependencyKeys"]}
    assert "sklearn" in by_key["topic/student_candidates"]["kinds"]
    # what the asset pages show as the reason a run happened or waits
    conditions = {key: (n["automationCondition"] or {}).get("label") for key, n in by_key.items()}
    assert conditions["corpus"] == conditions["topic/predictions"] == "eager: follows new data"
    assert conditions["topic/labeled_sample"] == "model: new, missing or definition changed"
    assert conditions["topic/model_selection_report"] == "eager on the sample"
    assert {"corpus_source"} == {"/".join(d["path"]) for d in by_key["corpus"]["dependencyKeys"]}

    # `scalellm run` records an ordinary run of the workspace's job: the job's page (and the timeline) list it.
    cli = subprocess.run(
        [sys.executable, "-m", "scalellm_dagster.cli", "run"],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    runs = _graphql(port, JOB_RUNS)["pipelineOrError"]["runs"]
    assert [r["status"] for r in runs] == ["SUCCESS"]
    assert runs[0]["runId"] in cli.stdout
    entries = _graphql(port, REPORT)["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    labels = {e["label"]: e for e in entries}
    assert {"chosen_model", "summary", "candidates", "learning_curves", "cascade_tradeoff"} <= set(labels)
    assert "chosen student" in labels["summary"]["mdStr"]
    assert proc.poll() is None
