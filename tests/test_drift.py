"""Audits of each refresh's new rows, and the drift top-up after two failures: a corpus whose new rows come from a
label the sample never saw (`top_ups`), against rows like the first ones."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, build_sensor_context

from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.settings import DEMO_CORPUS, Settings
from tests.conftest import corpus_folder
from tests.pipeline_helpers import query, run_pipeline


def _audit_check(result) -> tuple[bool, str]:
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "audit_agreement_within_estimate")
    return check.passed, check.severity.value


def _audit_meta(result) -> dict:
    return next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(["topic", "drift_audit"])
    )


# what the automation runs for a new file: the deployed student predicts the new rows; nothing is retrained
REFRESH = AssetSelection.assets(
    AssetKey("corpus"), AssetKey("embeddings"), AssetKey(["topic", "predictions"]), AssetKey(["topic", "drift_audit"])
)


def _tick(instance):
    defs = build_definitions(Settings.from_env())
    return defs.resolve_sensor_def("model_policy_sensor").evaluate_tick(
        build_sensor_context(instance=instance, definitions=defs)
    )


@pytest.fixture
def drifting_corpus(pipeline_env, tmp_path, monkeypatch):
    """A corpus folder whose first file has no `top_ups` rows; returns (folder, familiar rows, top_ups rows)."""
    demo = pd.read_parquet(DEMO_CORPUS).sample(frac=1.0, random_state=0)
    demo["is_card"] = "other"
    familiar, novel = demo[demo["topic"] != "top_ups"], demo[demo["topic"] == "top_ups"]
    folder = tmp_path / "drop"
    folder.mkdir()
    familiar.iloc[:400].to_parquet(folder / "part-000.parquet", index=False)
    monkeypatch.setenv("SCALELLM_CORPUS", str(folder))
    return folder, familiar.iloc[400:], novel


def test_new_rows_of_an_unseen_label_fail_two_audits_and_the_top_up_fixes_it(pipeline_env, drifting_corpus):
    folder, familiar, novel = drifting_corpus
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        # every row is new to the first audit, and is the population the sample came from: a baseline, no test
        first_run = run_pipeline(instance)
        first = _audit_meta(first_run)
        assert first["audited_rows"].value == 0 and first["audit_passed"].value.startswith("baseline, not a drift test")
        assert first["new_rows"].value == 400 and first["failed_audits_in_a_row"].value == 0
        assert not [
            e for e in first_run.get_asset_check_evaluations() if e.check_name == "audit_agreement_within_estimate"
        ]
        tables = {
            t for (t,) in query(db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'topic'")
        }
        assert "audit_answers" not in tables  # the teacher was asked nothing

        familiar.iloc[:150].to_parquet(folder / "part-001.parquet", index=False)
        result = run_pipeline(instance, REFRESH)
        same = _audit_meta(result)  # more of the same: the audit holds
        assert _audit_check(result) == (True, "WARN")
        assert same["new_rows"].value == 150 and same["audit_passed"].value is True
        assert _tick(instance).run_requests == []

        failures = []
        for i, part in enumerate([novel.iloc[:150], novel.iloc[150:300]], start=2):
            part.to_parquet(folder / f"part-00{i}.parquet", index=False)
            result = run_pipeline(instance, REFRESH)
            assert result.success and _audit_check(result) == (False, "WARN")  # a warning: the run goes on
            failures.append(_audit_meta(result))
        assert [m["audit_passed"].value for m in failures] == [False, False]
        assert all(m["audit_agreement"].value < 0.3 for m in failures)  # the student never says top_ups
        assert [m["failed_audits_in_a_row"].value for m in failures] == [1, 2]
        assert not failures[0]["drift_topup_due"].value and failures[1]["drift_topup_due"].value

        tick = _tick(instance)
        assert len(tick.run_requests) == 1
        request = tick.run_requests[0]
        assert request.tags["scalellm/task"] == "topic"
        assert AssetKey(["topic", "labeled_sample"]) in request.asset_selection
        topped = run_pipeline(instance, selection=AssetSelection.assets(*request.asset_selection))
        assert topped.success
        assert not _audit_meta(topped)["drift_topup_due"].value  # the streak is answered: no second request
        assert _tick(instance).run_requests == []

        drift = query(
            db, "SELECT s.id, c.topic FROM topic.labeled_sample s JOIN corpus c USING (id) WHERE s.drift_topup"
        )
        assert len(drift) == 50 and {t for _, t in drift} == {"top_ups"}  # from the failing refreshes' rows
        audited = {r[0] for r in query(db, "SELECT id FROM topic.audit_answers")}
        sampled = {r[0] for r in query(db, "SELECT id FROM topic.labeled_sample")}
        assert audited and not audited & sampled  # audit rows never train a student

        novel.iloc[300:450].to_parquet(folder / "part-004.parquet", index=False)
        after = _audit_meta(run_pipeline(instance, REFRESH))
        assert after["audit_passed"].value is True and after["failed_audits_in_a_row"].value == 0
        log = query(db, "SELECT new_rows, passed FROM topic.audit_log ORDER BY audited_at")
        assert log == [(400, None), (150, True), (150, False), (150, False), (150, True)]


def test_the_audit_interval_is_the_exact_one_and_failures_count_in_a_row():
    from scipy.stats import binomtest

    from scalellm_dagster.core.audit import clopper_pearson, failures_in_a_row, judge_audit

    for agreed, n in [(0, 30), (12, 30), (30, 30), (71, 100)]:
        exact = binomtest(agreed, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(agreed, n) == pytest.approx((exact.low, exact.high), abs=1e-9)
    assert judge_audit([True] * 12 + [False] * 18, estimate=0.7).passed is False  # 0.4, interval up to 0.59
    assert judge_audit([True] * 18 + [False] * 12, estimate=0.7).passed is True  # 0.6, interval up to 0.77
    assert judge_audit([], estimate=0.7).passed is None
    assert failures_in_a_row([True, False, None, False]) == 2  # a refresh with nothing to audit breaks nothing
    assert failures_in_a_row([False, True]) == 0


def test_a_refresh_with_nothing_new_is_not_audited_rather_than_passed(pipeline_env):
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        result = run_pipeline(instance, REFRESH)  # the same corpus: no new rows
    assert result.success
    # no result at all (the UI shows the check as not evaluated), not the previous run's audit judged again
    assert not [e for e in result.get_asset_check_evaluations() if e.check_name == "audit_agreement_within_estimate"]
    assert _audit_meta(result)["audit_passed"].value == "not audited this run"


def test_invalid_audit_answers_count_as_disagreements_not_as_fewer_rows(pipeline_env, tmp_path, monkeypatch):
    from scalellm_dagster.assets import audit_asset as audit_module

    folder, rows = corpus_folder(tmp_path, monkeypatch, 550)

    real = audit_module.warehouse_session

    def failing_session(*args, **kwargs):
        session = real(*args, **kwargs)
        ask = session.ask

        def ask_with_ten_invalid(ids):
            out = ask(ids)
            out.loc[out.index[:10], "valid"] = False
            return out

        session.ask = ask_with_ten_invalid
        return session

    monkeypatch.setattr(audit_module, "warehouse_session", failing_session)
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success  # the baseline
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        meta = _audit_meta(run_pipeline(instance, REFRESH))
    assert meta["audited_rows"].value == 30 and meta["audit_invalid_answers"].value == 10
    rows = query(
        pipeline_env["SCALELLM_DUCKDB_PATH"],
        "SELECT count(*), count(teacher_label), count(*) FILTER (WHERE agrees) FROM topic.audit_answers",
    )
    assert rows[0][0] == 30 and rows[0][1] == 20 and rows[0][2] <= 20


def test_with_a_cascade_the_audit_expects_the_agreement_of_the_rows_the_student_keeps(pipeline_env, tasks_file):
    tasks_file.write_text(
        tasks_file.read_text().replace(
            "    budget: 120\n", "    budget: 120\n    cascade_budget: 80\n    cascade_target_agreement: 0.99\n"
        )
    )
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    meta = _audit_meta(result)
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    ((estimate, population),) = query(db, "SELECT estimate, population FROM topic.audit_expectation")
    ((cv,),) = query(db, "SELECT cv_accuracy FROM topic.model_selection_report WHERE chosen")
    sent = query(db, "SELECT count(*) FROM topic.predictions WHERE source = 'teacher-cascade'")[0][0]
    assert sent == 80 and "most confident" in population and meta["estimate_population"].value == population
    assert meta["expected_agreement"].value == pytest.approx(estimate, abs=1e-4)
    assert estimate > cv  # the kept rows are the ones the student is surest of: the old estimate was too low


def test_pooled_audits_see_a_drop_one_audit_cannot():
    from scalellm_dagster.core.audit import judge_audit

    drifted = [True] * 23 + [False] * 7  # 0.767 against an expected 0.85: one audit's interval reaches 0.90
    alone = judge_audit(drifted, estimate=0.85)
    assert alone.passed is True and alone.pooled_audits == 1
    earlier = [(30, 23, 0.85)] * 9
    pooled = judge_audit(drifted, estimate=0.85, earlier=earlier, pool_rows=300)
    assert pooled.passed is False and pooled.pooled_audits == 10 and pooled.pooled_audited == 300
    assert pooled.pooled_ci_high < 0.85 < alone.ci_high
    # the pool stops at pool_rows, newest first; pool_rows 0 judges the audit alone
    assert judge_audit(drifted, 0.85, earlier=[(300, 300, 0.85)] + earlier, pool_rows=300).pooled_audits == 10
    assert judge_audit(drifted, 0.85, earlier=earlier, pool_rows=0).passed is True
