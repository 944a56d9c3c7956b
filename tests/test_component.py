"""The ScaleLLM component in a real `dg` project, made the way a team makes one: `create-dagster project`, two
instances scaffolded with `dg scaffold defs`, each over its own corpus, checked and listed by `dg`, materialized
offline with `dg launch`, on an instance whose dagster.yaml nobody may change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from scalellm_dagster.settings import DEMO_CORPUS

BIN = Path(sys.executable).parent
USER_YAML = "# the team's instance\ntelemetry:\n  enabled: false\n"


def _dg(project: Path, *args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(project / "src"),  # in place of `pip install -e .` of the project: no build needed
    }
    env = {k: v for k, v in env.items() if not k.startswith("SCALELLM_")}  # the instances' YAML says everything
    done = subprocess.run([str(BIN / "dg"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, f"dg {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _edit(defs_yaml: Path, **attributes) -> None:
    doc = yaml.safe_load(defs_yaml.read_text())
    doc["attributes"].update(attributes)
    defs_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A dg project with two ScaleLLM instances: `tickets` (the scaffolded topic task over 1,200 messages) and
    `reviews` (another 1,200 messages, another task: is the message about cards?), and a user-owned instance."""
    root = tmp_path_factory.mktemp("dg")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(USER_YAML)
    done = subprocess.run(
        [str(BIN / "create-dagster"), "project", str(root / "team"), "--no-uv-sync"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    project = root / "team"
    defs = project / "src" / "team" / "defs"
    for name in ("tickets", "reviews"):
        _dg(project, "scaffold", "defs", "scalellm_dagster.ScaleLLM", name, home=home)
    rows = pd.read_parquet(DEMO_CORPUS)
    tickets, reviews = rows.iloc[:1200], rows.iloc[6000:7200].copy()
    tickets.to_parquet(defs / "tickets" / "corpus.parquet", index=False)
    reviews["about_cards"] = (reviews["topic"] == "cards").map({True: "cards", False: "other"})
    reviews.to_parquet(defs / "reviews" / "corpus.parquet", index=False)
    text = (defs / "tickets" / "defs.yaml").read_text()
    (defs / "tickets" / "defs.yaml").write_text(text.replace("budget: 400", "budget: 300"))
    _edit(
        defs / "reviews" / "defs.yaml",
        tasks=[
            {
                "name": "about_cards",
                "instruction": "Is the online-banking customer's message about their card?",
                "gold_column": "about_cards",
                "budget": 200,
                "labels": {"cards": "about a card", "other": "anything else"},
            }
        ],
    )
    return project, defs, home


def test_dg_checks_lists_and_materializes_two_instances_apart(project):
    project, defs, home = project
    assert "All definitions loaded successfully" in _dg(project, "check", "defs", home=home).stdout
    listed = json.loads(_dg(project, "list", "defs", "--json", home=home).stdout)
    keys = {a["asset_key"]: a["dependency_keys"] for a in listed["assets"]}
    assert keys["tickets/embeddings"] == ["tickets/corpus"] and keys["reviews/embeddings"] == ["reviews/corpus"]
    assert "tickets/topic/predictions" in keys and "reviews/about_cards/predictions" in keys
    assert not any(k.startswith("topic/") or k.startswith("reviews/topic") for k in keys)
    resources = {r["name"] for r in listed["resources"]}
    assert {"tickets_warehouse", "reviews_warehouse", "tickets_teacher", "reviews_teacher"} <= resources
    assert {"tickets_scalellm_all", "reviews_scalellm_all"} <= {j["name"] for j in listed["jobs"]}

    for name in ("tickets", "reviews"):
        _dg(project, "launch", "--job", f"{name}_scalellm_all", home=home)

    accuracy = {}
    for name, task, gold in (("tickets", "topic", "topic"), ("reviews", "about_cards", "about_cards")):
        with duckdb.connect(str(project / "data" / f"{name}.duckdb"), read_only=True) as con:
            schemas = {r[0] for r in con.sql("SELECT schema_name FROM information_schema.schemata").fetchall()}
            joined = con.sql(
                f"SELECT p.label, c.{gold} AS gold FROM {task}.predictions p JOIN corpus c USING (id)"
            ).df()
            corpus_ids = con.execute("SELECT count(*) FROM corpus").fetchone()[0]
        other = "about_cards" if task == "topic" else "topic"
        assert task in schemas and other not in schemas  # each warehouse holds its own instance only
        assert len(joined) == corpus_ids == 1200
        assert set(joined["label"]) <= set(joined["gold"])  # its own task's labels, none of the other's
        accuracy[name] = float((joined["label"] == joined["gold"]).mean())
    # the students learned each corpus's own task from its simulated teacher (6 topics; cards or not)
    assert accuracy["tickets"] > 0.8 and accuracy["reviews"] > 0.85, accuracy
    assert (home / "dagster.yaml").read_text() == USER_YAML


def test_a_malformed_defs_yaml_fails_dg_check_with_the_attribute_and_what_was_expected(project):
    project, defs, home = project
    path = defs / "reviews" / "defs.yaml"
    good = path.read_text()
    try:
        _edit(path, teacher_batch_size="many")
        done = _dg(project, "check", "defs", home=home, check=False)
        assert done.returncode != 0
        assert "teacher_batch_size" in done.stdout + done.stderr and "valid integer" in done.stdout + done.stderr

        path.write_text(good.replace("budget: 200", "budget: 5"))
        done = _dg(project, "check", "defs", home=home, check=False)
        assert done.returncode != 0
        assert "tasks[0] (about_cards): 'budget' must be an integer >= 10, got 5" in done.stdout + done.stderr

        path.write_text(good)
        _edit(path, teacher="gpt5")
        done = _dg(project, "check", "defs", home=home, check=False)
        assert done.returncode != 0 and "attribute teacher='gpt5'" in done.stdout + done.stderr, done.stderr[-2000:]

        path.write_text(good)
        _edit(path, key_prefix="Reviews!")
        done = _dg(project, "check", "defs", home=home, check=False)
        assert done.returncode != 0 and "key_prefix" in done.stdout + done.stderr
    finally:
        path.write_text(good)


def test_an_instance_reads_the_table_of_an_upstream_asset_it_names(project, tmp_path):
    """`upstream: [raw/tickets]` makes the team's own asset corpus's parent in `dg list defs`, in place of the
    source sensor."""
    project, defs, home = project
    raw = defs / "raw_tickets.py"
    path = defs / "tickets" / "defs.yaml"
    good = path.read_text()
    raw.write_text("import dagster as dg\n\n\n@dg.asset(key=['raw', 'tickets'])\ndef raw_tickets() -> None:\n    ...\n")
    try:
        _edit(path, upstream=["raw/tickets"])
        listed = json.loads(_dg(project, "list", "defs", "--json", home=home).stdout)
        keys = {a["asset_key"]: a["dependency_keys"] for a in listed["assets"]}
        assert keys["tickets/corpus"] == ["raw/tickets"]
        assert "tickets/corpus_source" not in keys and "reviews/corpus_source" in keys
        assert "tickets_corpus_source_sensor" not in {s["name"] for s in listed["sensors"]}
    finally:
        path.write_text(good)
        raw.unlink()
        shutil.rmtree(defs / "__pycache__", ignore_errors=True)


def test_the_readmes_five_commands_run_as_written(tmp_path):
    """README's "Add ScaleLLM to your Dagster project", run line by line from the checkout; only the new project's
    folder (`../team`) is moved into a temporary folder."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Add ScaleLLM to your Dagster project", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 5 and all("../team" in c for c in commands[1:3])
    script = "\n".join(c.replace("../team", str(tmp_path / "team")) for c in commands)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALELLM_")}
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        env={**env, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stdout + done.stderr
    with duckdb.connect(str(tmp_path / "team" / "data" / "tickets.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM topic.predictions").fetchone()[0] == 13_083
