"""The checks' Great Expectations project (issue #45): suites written to files on the first run and read back from
them, a checkpoint per check with its validation result in Data Docs, each check linking to its page."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from tests.pipeline_helpers import check_evaluations, query, run_pipeline

SUITES = [
    "corpus/corpus_rows_valid",
    "corpus/topic_gold_labels_in_label_set",
    "embeddings/embeddings_match_corpus",
    "topic/labeled_sample/sample_labels_valid",
    "topic/labeled_sample/sample_invalid_answers_rare",
    "topic/student_candidates/every_candidate_evaluated",
    "topic/model_selection_report/student_chosen",
    "topic/model_selection_report/chosen_student_above_floor",
    "topic/predictions/predictions_cover_corpus",
]


def _file(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(unquote(urlparse(url).path))


def _suite(gx: Path, name: str) -> dict:
    return json.loads((gx / "expectations" / f"{name}.json").read_text())


def _write(gx: Path, name: str, suite: dict) -> None:
    (gx / "expectations" / f"{name}.json").write_text(json.dumps(suite, indent=2))


def _by_rule(suite: dict, rule: str) -> dict:
    [found] = [e for e in suite["expectations"] if e["meta"].get("scalellm_rule") == rule]
    return found


def _dom(chromium: str, url: str) -> str:
    """The page as a real browser renders it (scripts run), read back as HTML."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                "--allow-file-access-from-files",
                "--virtual-time-budget=5000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return done.stdout


@pytest.fixture
def docs_env(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCALELLM_DATA_DOCS", "on")
    return pipeline_env


def test_a_first_run_writes_the_suites_and_each_check_links_its_validation_page(docs_env, tmp_path):
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert result.success
    gx = tmp_path / "gx"  # beside the warehouse
    assert (gx / "great_expectations.yml").is_file()
    for name in SUITES:
        suite = _suite(gx, name)
        assert suite["name"] == name.replace("/", "."), name
        assert all("scalellm_rule" in e["meta"] for e in suite["expectations"]), name
    # settings stay parameters in the file, filled at validation time
    corpus = _suite(gx, "corpus/corpus_rows_valid")
    assert _by_rule(corpus, "text_within_length_bound")["kwargs"]["max_value"] == {"$PARAMETER": "max_text_chars"}
    assert (
        "scalellm_invariant"
        not in _by_rule(_suite(gx, "topic/labeled_sample/sample_invalid_answers_rare"), "invalid_answers_rare")["meta"]
    )
    checks = check_evaluations(result)
    run_name = result.run_id
    for name, (passed, meta) in checks.items():
        if name.endswith("column_schema_change"):
            continue
        assert passed, name
        page = _file(meta["validation_result"])
        assert page.is_file() and f"/{run_name}/" in page.as_posix(), name
        assert (gx / "checkpoints" / f"{meta['suite']}.json").is_file() or any(
            p.name == f"{meta['suite']}.json" for p in (gx / "checkpoints").rglob("*.json")
        ), name
    assert "corpus:column_schema_change" in checks
    # the history: the stored validation results, one per check, under this run's name
    stored = list((gx / "uncommitted" / "validations").rglob(f"{run_name}/*/*.json"))
    assert len(stored) == len(SUITES)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not found (make test installs Debian's chromium): the Data Docs pages were not opened")
    _, meta = checks["topic/predictions:predictions_cover_corpus"]
    page = _dom(chromium, meta["validation_result"])
    assert "topic.predictions.predictions_cover_corpus" in page
    assert "keep the teacher's label" in page  # the rule's own sentence, not "values must belong to this set"
    index = _dom(chromium, meta["data_docs"])
    for name in SUITES:
        assert name.replace("/", ".") in index, name
    assert run_name in index


def test_the_suite_files_are_what_the_next_run_validates(docs_env, tmp_path):
    db, gx = docs_env["SCALELLM_DUCKDB_PATH"], tmp_path / "gx"
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        longest = query(db, "SELECT max(length(text)) FROM corpus")[0][0]

        # a threshold tightened in the file: the same corpus now fails, by the file's bound
        corpus = _suite(gx, "corpus/corpus_rows_valid")
        _by_rule(corpus, "text_within_length_bound")["kwargs"]["max_value"] = longest - 1
        _write(gx, "corpus/corpus_rows_valid", corpus)
        tight = run_pipeline(instance)
        assert not tight.success
        passed, meta = check_evaluations(tight)["corpus:corpus_rows_valid"]
        assert passed is False and "verdict" not in meta  # judged anew: the suite changed, the corpus did not
        assert any(
            f.startswith(f"expect_column_value_lengths_to_be_between(text): expected between 1 and {longest - 1};")
            for f in meta["failed_expectations"]
        ), meta["failed_expectations"]
        assert "'text_within_length_bound' changed" in " ".join(meta["suite_notes"])

        # back to the parameter; an expectation of the user's own, and an invariant deleted
        _by_rule(corpus, "text_within_length_bound")["kwargs"]["max_value"] = {"$PARAMETER": "max_text_chars"}
        _write(gx, "corpus/corpus_rows_valid", corpus)
        predictions = _suite(gx, "topic/predictions/predictions_cover_corpus")
        predictions["expectations"].append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "confidence", "min_value": 0.999},
                "meta": {},
            }
        )
        _write(gx, "topic/predictions/predictions_cover_corpus", predictions)
        embeddings = _suite(gx, "embeddings/embeddings_match_corpus")
        embeddings["expectations"] = [
            e for e in embeddings["expectations"] if e["meta"]["scalellm_rule"] != "ids_unique"
        ]
        _write(gx, "embeddings/embeddings_match_corpus", embeddings)
        edited = run_pipeline(instance)
    checks = check_evaluations(edited)

    passed, meta = checks["corpus:corpus_rows_valid"]
    assert passed is True

    passed, meta = checks["topic/predictions:predictions_cover_corpus"]
    assert passed is False and not edited.success  # blocking, as the project's own expectations are
    [mine] = [f for f in meta["failed_expectations"] if f.startswith("expect_column_values_to_be_between(confidence)")]
    assert "at least 0.999" in mine and "unexpected" in mine
    assert "(yours)" in meta["expectations"]  # the table says whose expectation it is
    page = _file(meta["validation_result"]).read_text()
    assert "0.999" in page

    passed, meta = checks["embeddings:embeddings_match_corpus"]
    assert passed is True  # the invariant still held: its default was validated
    assert "invariant 'ids_unique' removed" in " ".join(meta["suite_notes"])
    assert "ids_unique (project default, restored)" in meta["expectations"]
    assert _file(meta["invariants_validation_result"]).is_file()


def test_with_data_docs_off_the_results_are_stored_and_linked(pipeline_env, tmp_path):
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert result.success
    _, meta = check_evaluations(result)["corpus:corpus_rows_valid"]
    stored = _file(meta["validation_result"])
    assert stored.suffix == ".json" and json.loads(stored.read_text())["success"] is True
    assert not list((tmp_path / "gx" / "uncommitted" / "data_docs").rglob("*.html"))  # GX makes the empty folder


def test_a_column_the_source_adds_or_retypes_is_reported_on_the_corpus(pipeline_env, small_corpus):
    rows = pd.read_parquet(small_corpus)
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        rows.assign(note="x").drop(columns=["topic"]).assign(topic=rows["topic"].astype("category")).to_parquet(
            small_corpus, index=False
        )
        changed = run_pipeline(instance)
    [evaluation] = [e for e in changed.get_asset_check_evaluations() if e.check_name == "column_schema_change"]
    assert evaluation.passed is False and evaluation.severity == AssetCheckSeverity.WARN
    assert "Added columns: note" in evaluation.description
    assert "topic:" in evaluation.description  # retyped
