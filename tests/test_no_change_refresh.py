"""A refresh with nothing new (issue #47): the source is not read again, no table is rewritten, no row is scanned
again by a check, and every check still reports its verdict, with the run that reached it."""

from __future__ import annotations

import pandas as pd
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.checks.gx_project import Project
from scalellm_dagster.resources import CorpusSource, Warehouse
from tests.pipeline_helpers import check_evaluations, query, run_pipeline

WRITES = "SELECT table_name, count(*) FROM scalellm_meta.snapshots GROUP BY 1"
SCANNING_CHECKS = {
    "corpus:corpus_rows_valid",
    "corpus:topic_gold_labels_in_label_set",
    "embeddings:embeddings_match_corpus",
    "topic/predictions:predictions_cover_corpus",
}


def _meta(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey.from_user_string(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _validated(monkeypatch) -> list[str]:
    """The suites the checks validate from now on."""
    names: list[str] = []
    real = Project.validate

    def counting(self, suite, *args, **kwargs):
        names.append(suite.name)
        return real(self, suite, *args, **kwargs)

    monkeypatch.setattr(Project, "validate", counting)
    return names


def test_a_no_change_refresh_reads_and_writes_nothing_and_still_reports_every_check(pipeline_env, monkeypatch):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        first = run_pipeline(instance)
        assert first.success
        writes = dict(query(db, WRITES))
        predictions = query(db, "SELECT * FROM topic.predictions ORDER BY id")
        verdicts = check_evaluations(first)

        def never(self):
            raise AssertionError("the unchanged source was read again")

        monkeypatch.setattr(CorpusSource, "load", never)
        monkeypatch.setattr(Warehouse, "vector_stats", lambda *a, **k: never(None))
        validated = _validated(monkeypatch)
        again = run_pipeline(instance)
        assert again.success

    for key in ("corpus", "embeddings", "topic/predictions"):
        meta = _meta(again, key)
        assert "unchanged" in meta, key
        assert meta["written_by_run"] == first.run_id
    assert _meta(again, "corpus")["dagster/row_count"] == 400
    assert _meta(again, "embeddings")["rows_computed"] == 0
    # the kept materialization's figures still show on the asset's page
    assert _meta(again, "topic/predictions")["label_counts"] == _meta(first, "topic/predictions")["label_counts"]
    assert (_meta(again, "topic/predictions")["rows_predicted"], _meta(again, "topic/predictions")["rows_written"]) == (
        0,
        0,
    )
    # nothing rewritten: the snapshot log has no new write of these tables, the predictions are the same rows
    after = dict(query(db, WRITES))
    for table in ("corpus", "embeddings", "topic.predictions"):
        assert after[table] == writes[table], table
    assert query(db, "SELECT * FROM topic.predictions ORDER BY id") == predictions
    # every check reported; the scanning ones from the verdict the first run reached, without scanning again
    checks = check_evaluations(again)
    assert set(checks) == set(verdicts)
    for name in SCANNING_CHECKS & set(checks):
        passed, metadata = checks[name]
        assert passed is True and passed == verdicts[name][0], name
        assert metadata["verdict"].startswith(f"carried over from run {first.run_id[:8]}"), name
        assert metadata["verdict_reached_by_run"] == first.run_id
        assert metadata["expectations_evaluated"] == verdicts[name][1]["expectations_evaluated"]
        # the link still opens the page of the validation that reached it
        assert metadata["validation_result"] == verdicts[name][1]["validation_result"], name
        assert f"/{first.run_id}/" in metadata["validation_result"]
    assert set(checks) >= SCANNING_CHECKS
    assert not {
        "corpus.corpus_rows_valid",
        "corpus.topic_gold_labels_in_label_set",
        "embeddings.embeddings_match_corpus",
        "topic.predictions.predictions_cover_corpus",
    } & set(validated)
    assert validated  # the other checks (the sample's, the report's) did run


def test_a_changed_setting_or_source_is_judged_again(pipeline_env, small_corpus, monkeypatch):
    """The verdict's basis holds the check's settings: a tighter text bound re-checks the unchanged corpus (and
    fails it, blocking what follows); new rows are read, embedded and checked again."""
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        longest = query(db, "SELECT max(length(text)) FROM corpus")[0][0]
        monkeypatch.setenv("SCALELLM_MAX_TEXT_CHARS", str(longest - 1))
        tight = run_pipeline(instance)
        assert not tight.success
        passed, metadata = check_evaluations(tight)["corpus:corpus_rows_valid"]
        assert passed is False and "verdict" not in metadata
        assert "unchanged" in _meta(tight, "corpus")  # the source itself was not read again

        monkeypatch.delenv("SCALELLM_MAX_TEXT_CHARS")
        rows = pd.read_parquet(small_corpus)
        more = rows.assign(id=rows["id"] + 10_000_000, text=rows["text"] + " (again)").head(25)
        pd.concat([rows, more], ignore_index=True).to_parquet(small_corpus, index=False)
        grown = run_pipeline(instance)
        assert grown.success
    assert "unchanged" not in _meta(grown, "corpus") and _meta(grown, "corpus")["dagster/row_count"] == 425
    assert _meta(grown, "embeddings")["rows_computed"] == 25
    assert _meta(grown, "topic/predictions")["rows_written"] == 25
    for name in SCANNING_CHECKS:
        passed, metadata = check_evaluations(grown)[name]
        assert passed is True and "verdict" not in metadata, name


def test_a_refresh_with_new_rows_scans_only_their_texts(pipeline_env, small_corpus):
    """The ids are checked whole (one column), the text expectations only on rows new or edited since the corpus
    that passed them: a bad new row still fails the check, by its id."""
    rows = pd.read_parquet(small_corpus)
    with DagsterInstance.ephemeral() as instance:
        first = run_pipeline(instance)
        assert first.success
        more = rows.assign(id=rows["id"] + 10_000_000, text=rows["text"] + " (again)").head(25)
        edited = rows.assign(text=rows["text"].where(rows.index != 3, rows["text"] + " (edited)"))
        pd.concat([edited, more], ignore_index=True).to_parquet(small_corpus, index=False)
        grown = run_pipeline(instance)
        assert grown.success
        passed, metadata = check_evaluations(grown)["corpus:corpus_rows_valid"]
        assert passed is True
        assert metadata["text_rows_scanned"] == (
            f"26 new or edited rows; the other 399 are unchanged since run {first.run_id[:8]} passed the text "
            "expectations on them with the same settings"
        )
        bad = pd.DataFrame({"id": [20_000_000], "text": ["x" * 20_001], "topic": [rows["topic"].iloc[0]]})
        pd.concat([edited, more, bad], ignore_index=True).to_parquet(small_corpus, index=False)
        refused = run_pipeline(instance)
    assert not refused.success
    passed, metadata = check_evaluations(refused)["corpus:corpus_rows_valid"]
    assert passed is False
    assert metadata["text_rows_scanned"].startswith(
        f"1 new or edited rows; the other 425 are unchanged since run {grown.run_id[:8]}"
    )
    assert "expect_column_value_lengths_to_be_between(text)" in metadata["failures"]
    assert "20000000" in metadata["failures"]
