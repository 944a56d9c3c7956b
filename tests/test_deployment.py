"""At home in a team's Dagster deployment: the warehouse's concurrency pool instead of an instance-wide run queue, the
user's dagster.yaml left alone, lineage from their assets, Dagster's standard table metadata, public APIs only."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    asset,
    evaluate_automation_conditions,
)
from dagster import materialize as dagster_materialize

from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.names import warehouse_pool
from scalellm_dagster.settings import OWN_INSTANCE_YAML, SettingError, Settings, ensure_dagster_home
from tests.pipeline_helpers import run_pipeline

ROOT = Path(__file__).resolve().parents[1]
USERS_YAML = "# the team's instance\ntelemetry:\n  enabled: true\nrun_queue:\n  max_concurrent_runs: 7\n"


def test_only_a_folder_without_dagster_yaml_gets_one_and_no_run_queue_limit(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "dagster.yaml").write_text(USERS_YAML)
    ensure_dagster_home(theirs)
    assert (theirs / "dagster.yaml").read_text() == USERS_YAML

    ours = ensure_dagster_home(tmp_path / "ours")
    assert (ours / "dagster.yaml").read_text() == OWN_INSTANCE_YAML
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(ours)) as instance, DagsterInstance.from_config(str(plain)) as default:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        # no instance-wide limit of ours: the run queue is Dagster's default, other code locations' runs go on
        assert config.run_queue_config == default.get_concurrency_config().run_queue_config
        assert config.run_queue_config.max_concurrent_runs > 1


def test_one_pool_per_warehouse_file_on_every_step_that_writes_it(pipeline_env, tmp_path):
    first = build_definitions(Settings.from_env())
    pool = warehouse_pool(pipeline_env["SCALELLM_DUCKDB_PATH"])
    executable = [a for a in first.resolve_asset_graph().assets_defs if a.is_executable and a.keys]
    assert len(executable) >= 7  # corpus, embeddings and the task branches (checks only read: no pool)
    assert {a.op.pool for a in executable} == {pool}
    other = Settings.from_env({**pipeline_env, "SCALELLM_DUCKDB_PATH": str(tmp_path / "other" / "wh.duckdb")})
    assert warehouse_pool(other.duckdb_path) != pool  # same file name, another file: another pool
    assert warehouse_pool(pipeline_env["SCALELLM_DUCKDB_PATH"]) == pool


def _scalellm_run(env: dict):
    return subprocess.Popen(
        [sys.executable, "-m", "scalellm_dagster.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_on_a_users_instance_the_cli_limits_its_pool_not_their_runs_and_leaves_dagster_yaml_alone(
    pipeline_env, tmp_path
):
    """`scalellm run` on a team's instance: their dagster.yaml unchanged, the warehouse's pool limited (once, and a
    limit they set is kept), the run listed with the workspace's job. With the pool's slot held elsewhere, our next
    run waits for it while a run of an asset outside the pool (another code location's) completes."""
    from scalellm_dagster.cli.workspace_run import ensure_pool_limit

    home = tmp_path / "their_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(USERS_YAML)
    env = {**os.environ, **pipeline_env, "DAGSTER_HOME": str(home)}
    pool = warehouse_pool(pipeline_env["SCALELLM_DUCKDB_PATH"])
    first = _scalellm_run(env)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert f"concurrency pool {pool!r} limited to 1" in out
    assert (home / "dagster.yaml").read_text() == USERS_YAML

    @asset
    def someone_elses_table() -> int:
        return 1

    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.get_concurrency_info(pool).slot_count == 1
        [run] = instance.get_runs()
        assert run.tags[".dagster/repository"] == "__repository__@scalellm_dagster" and run.job_name == "scalellm_all"

        assert storage.claim_concurrency_slot(pool, "another-run", "their_step").is_claimed
        second = _scalellm_run(env)
        try:
            deadline = time.monotonic() + 120
            while storage.get_concurrency_info(pool).pending_step_count == 0:
                assert second.poll() is None and time.monotonic() < deadline, "the run never asked for the pool"
                time.sleep(0.5)
            assert dagster_materialize([someone_elses_table], instance=instance).success  # not queued behind ours
            assert second.poll() is None and storage.get_concurrency_info(pool).pending_step_count >= 1
        finally:
            storage.free_concurrency_slots_for_run("another-run")
        out, err = second.communicate(timeout=600)
        assert second.returncode == 0, err[-3000:]
        assert "concurrency pool" not in out  # the limit stands: said once

        storage.set_concurrency_slots(pool, 3)  # the team's own limit is kept
        assert ensure_pool_limit(instance, pool) is None and storage.get_concurrency_info(pool).slot_count == 3
    assert (home / "dagster.yaml").read_text() == USERS_YAML


def test_the_corpus_follows_upstream_assets_named_in_the_settings(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCALELLM_UPSTREAM_ASSETS", "raw/tickets, crm/reviews")
    defs = build_definitions(Settings.from_env())
    graph = defs.resolve_asset_graph()
    parents = graph.get(AssetKey("corpus")).parent_keys
    assert {AssetKey(["raw", "tickets"]), AssetKey(["crm", "reviews"])} == parents  # in place of corpus_source
    corpus_only = AssetSelection.keys("corpus")
    with DagsterInstance.ephemeral() as instance:
        for key in (["raw", "tickets"], ["crm", "reviews"]):  # the team's tables exist
            instance.report_runless_asset_event(AssetMaterialization(AssetKey(key)))
        first = evaluate_automation_conditions(defs, instance, asset_selection=corpus_only)
        run_pipeline(instance, AssetSelection.keys("corpus"), raise_on_error=True)
        quiet = evaluate_automation_conditions(defs, instance, asset_selection=corpus_only, cursor=first.cursor)
        assert quiet.total_requested == 0
        # the team's ingestion (another code location) writes its table
        instance.report_runless_asset_event(AssetMaterialization(AssetKey(["raw", "tickets"])))
        after = evaluate_automation_conditions(defs, instance, asset_selection=corpus_only, cursor=quiet.cursor)
        assert after.get_requested_partitions(AssetKey("corpus")) == {None}


def test_an_upstream_key_that_is_not_one_is_refused_with_the_setting_named():
    with pytest.raises(SettingError, match=r"SCALELLM_UPSTREAM_ASSETS=.*'raw//x' is not an asset key"):
        Settings.from_env({"SCALELLM_UPSTREAM_ASSETS": "raw/tickets,raw//x"})


def test_every_table_asset_names_its_duckdb_table(pipeline_env):
    defs = build_definitions(Settings.from_env())
    names = {s.key.to_user_string(): s.metadata.get("dagster/table_name") for s in defs.resolve_all_asset_specs()}
    assert names["corpus"] == "wh.main.corpus" and names["embeddings"] == "wh.main.embeddings"
    assert names["topic/predictions"] == "wh.topic.predictions"
    assert names["topic/labeled_sample"] == "wh.topic.labeled_sample"


def test_no_module_imports_dagsters_internals():
    """Dagster's private modules (`dagster._...`) move between minor releases: the package uses its public API."""
    offenders = []
    for path in (ROOT / "scalellm_dagster").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("dagster._")]
    assert offenders == []


def test_data_versions_follow_the_rows_so_an_unchanged_refresh_leaves_nothing_stale(
    pipeline_env, tmp_path, monkeypatch
):
    """The corpus's data version is its source read's fingerprint and the embeddings' is that and the embedder's
    version: a refresh that reads nothing new gives the same versions (Dagster then calls nothing downstream stale),
    new rows give new ones."""
    from tests.conftest import corpus_folder

    folder, rows = corpus_folder(tmp_path, monkeypatch, 460)
    foundation = AssetSelection.keys("corpus", "embeddings")
    keys = [AssetKey("corpus"), AssetKey("embeddings")]
    with DagsterInstance.ephemeral() as instance:

        def versions():
            assert run_pipeline(instance, foundation).success
            events = [instance.get_latest_materialization_event(key).asset_materialization for key in keys]
            return [event.tags["dagster/data_version"] for event in events]

        first = versions()
        assert all(len(v) == 16 for v in first), first
        assert versions() == first  # nothing new read: the same rows, the same versions
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        grown = versions()
        assert grown[0] != first[0] and grown[1] != first[1]


def test_the_configuration_reference_is_the_one_the_settings_generate():
    from scalellm_dagster.settings import reference_markdown

    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == reference_markdown(), "docs/configuration.md is behind: run python scripts/config_reference.py"
    for name in ("SCALELLM_TEACHER_RPM", "SCALELLM_UPSTREAM_ASSETS", "OPENAI_API_KEY"):
        assert f"| `{name}` |" in written
