"""Learning-curve forecasts on real data, sampling strategies, budget advice and the confidence cascade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.core.budget import advise_budget
from scalellm_dagster.core.cascade import Calibrator, plan_cascade
from scalellm_dagster.core.learning_curve import LearningCurve, fit_learning_curve
from scalellm_dagster.core.sampling import cluster_stratified_sample, random_sample, uncertainty_sample
from scalellm_dagster.core.students import evaluate_candidates
from scalellm_dagster.embedders.lsa import LsaEmbedder
from scalellm_dagster.settings import DEMO_CORPUS
from tests.pipeline_helpers import query, run_pipeline

FORECAST_TOLERANCE = 0.03


def test_forecast_from_small_samples_lands_near_the_measured_accuracy_on_banking77():
    """Fit on <= 800 labels of the real banking77 topic task, forecast 3,200 labels, then measure it."""
    df = pd.read_parquet(DEMO_CORPUS)
    X = LsaEmbedder(dim=128).fit_embed(df["text"].tolist())
    order = pd.Series(np.arange(len(df)), index=df["id"])[random_sample(df["id"].to_numpy(), 3200, 0)].to_numpy()
    scores = evaluate_candidates(
        X[order],
        df["topic"].to_numpy()[order],
        ["logistic_regression"],
        [100, 141, 200, 283, 400, 566, 800, 3200],
        cv_folds=5,
    )
    small = scores[scores["sample_size"] <= 800]
    curve = fit_learning_curve(small["sample_size"], small["cv_accuracy"])
    measured = scores.loc[scores["sample_size"] == 3200, "cv_accuracy"].iloc[0]
    assert curve is not None and curve.r2 > 0.5  # small-sample CV points are noisy; the fit need not be tight
    assert abs(curve.accuracy_at(3200) - measured) <= FORECAST_TOLERANCE


def test_cluster_stratified_sample_spreads_every_prefix_over_clusters():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 8)) * 10
    sizes = [700, 200, 80, 20]  # one big cluster and small ones
    X = np.concatenate([c + rng.standard_normal((n, 8)) for c, n in zip(centers, sizes)]).astype(np.float32)
    truth = np.repeat(np.arange(4), sizes)
    ids = np.arange(len(X))
    chosen = cluster_stratified_sample(ids, X, budget=100, seed=0, n_clusters=4)
    assert len(set(chosen)) == 100
    counts = np.bincount(truth[chosen], minlength=4)
    assert counts.tolist() == pytest.approx([70, 20, 8, 2], abs=2)
    assert set(truth[chosen[:8]]) >= {0, 1, 2}  # even a small prefix reaches beyond the big cluster


def test_uncertainty_sample_asks_in_rounds_and_prefers_the_boundary():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(2000, 2)).astype(np.float32)
    gold = np.where(X[:, 0] > 0, "right", "left")
    calls = []

    def ask(ids):
        calls.append(len(ids))
        return gold[ids].tolist()

    chosen = uncertainty_sample(np.arange(2000), X, budget=200, ask=ask, seed=0, rounds=4)
    assert len(chosen) == len(set(chosen)) == 200 and len(calls) == 5 and calls[0] == 60
    later = chosen[60:]
    assert np.abs(X[later, 0]).mean() < 0.25 < np.abs(X[chosen[:60], 0]).mean()


def test_plan_cascade_reaches_the_target_with_the_fewest_rows():
    calibrated = np.array([0.5] * 10 + [0.9] * 40 + [1.0] * 50)
    plan = plan_cascade(calibrated, target_agreement=0.95, max_fraction=0.5)
    # without: (5 + 36 + 50) / 100 = 0.91; sending k of the 0.5-rows: (k + (10 - k) * 0.5 + 86) / 100 >= 0.95 -> k = 8
    assert plan.expected_agreement_without == pytest.approx(0.91)
    assert plan.reached and plan.expected_fraction_to_teacher == pytest.approx(0.08)
    assert plan.expected_agreement_with == pytest.approx(0.95)
    assert plan.threshold == pytest.approx(0.5)
    capped = plan_cascade(calibrated, target_agreement=0.99, max_fraction=0.05)
    assert not capped.reached and capped.expected_fraction_to_teacher == pytest.approx(0.05)


def test_calibrator_is_monotone_and_bounded():
    conf = np.linspace(0.2, 1.0, 200)
    correct = np.random.default_rng(0).random(200) < conf
    cal = Calibrator(conf, correct)(np.array([0.0, 0.3, 0.6, 0.9, 2.0]))
    assert np.all(np.diff(cal) >= 0) and cal.min() >= 0 and cal.max() <= 1


def test_budget_advice_for_a_target_and_for_a_cost_cap():
    curve = LearningCurve(a=2.0, alpha=0.5, c=0.05, r2=1.0, points=5)  # acc(n) = 0.95 - 2/sqrt(n)
    advice = advise_budget(curve, 100, 100_000, cost_per_row=0.001, seconds_per_row=0.01, target_accuracy=0.90)
    assert advice.recommended_budget == pytest.approx(1600, rel=0.02)  # 2/sqrt(n) = 0.05
    assert advice.teacher_cost_usd == pytest.approx(advice.recommended_budget * 0.001)
    capped = advise_budget(curve, 100, 100_000, cost_per_row=0.001, seconds_per_row=0.01, max_cost_usd=0.5)
    assert capped.recommended_budget <= 500 and capped.recommended_budget > 450
    unreachable = advise_budget(curve, 100, 100_000, 0.001, 0.01, target_accuracy=0.99)
    assert "not reached" in unreachable.reason and "0.950" in unreachable.reason
    assert advise_budget(None, 100, 1000, 0.001, 0.01, target_accuracy=0.9) is None


STRATEGY_TASK = """
tasks:
  - name: topic
    instruction: Decide which support team should handle the message.
    gold_column: topic
    budget: 120
    sampling: {sampling}
    uncertainty_rounds: 2
    cascade_budget: 40
    cascade_target_agreement: 0.99
    candidates: [logistic_regression, ridge]
    labels: [cards, payments_and_cash, transfers, top_ups, fees_and_exchange, account_and_security]
"""


@pytest.mark.parametrize("sampling", ["stratified-by-cluster", "uncertainty"])
def test_pipeline_with_a_sampling_strategy_and_the_cascade(pipeline_env, tasks_file, sampling):
    tasks_file.write_text(STRATEGY_TASK.format(sampling=sampling))
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
        meta = instance.get_latest_materialization_event(
            AssetKey(["topic", "predictions"])
        ).asset_materialization.metadata
    assert query(db, "SELECT count(*), min(sampling) FROM topic.labeled_sample")[0] == (120, sampling)
    sources = dict(query(db, "SELECT source, count(*) FROM topic.predictions GROUP BY source"))
    assert sources["teacher-sample"] == 120 and 0 < sources["teacher-cascade"] <= 40
    assert meta["teacher_rows_with_cascade"].value == 120 + sources["teacher-cascade"]
    assert meta["expected_agreement_with_cascade"].value > meta["expected_agreement_without_cascade"].value
    # the cascade's rows were answered by the (simulated) teacher, who is right ~90% of the time
    gold_agree = query(
        db,
        """SELECT avg(CASE WHEN p.label = c.topic THEN 1 ELSE 0 END) FROM topic.predictions p
                              JOIN corpus c USING (id) WHERE p.source = 'teacher-cascade'""",
    )[0][0]
    assert gold_agree > 0.75


def test_the_guaranteed_cascade_says_what_it_certifies_and_when_the_budget_cannot(pipeline_env, tasks_file):
    tasks_file.write_text(STRATEGY_TASK.format(sampling="random") + "    cascade_delta: 0.05\n")
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        meta = instance.get_latest_materialization_event(
            AssetKey(["topic", "predictions"])
        ).asset_materialization.metadata
    # 120 labels cannot certify 99 % agreement with 40 extra teacher rows: said plainly, with what the budget buys
    assert meta["cascade_delta"].value == 0.05
    assert "NOT certifiable" in meta["cascade_guarantee"].value and "needs" in meta["cascade_guarantee"].value
    assert 0 < meta["cascade_guaranteed_agreement"].value < 0.99
    assert "exchangeable" in meta["cascade_guarantee_assumes"].value
    assert meta["cascade_requests"].value > 0


def test_following_budget_advice_tops_up_the_sample_from_the_cache(pipeline_env, tasks_file):
    tasks_file.write_text(
        STRATEGY_TASK.format(sampling="random")
        .replace("budget: 120", "budget: 60")
        .replace("cascade_budget: 40", "cascade_budget: 0")
        + "    target_accuracy: 0.99\n    follow_budget_advice: true\n    max_budget: 150\n"
    )
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        advice = query(db, "SELECT max(recommended_budget) FROM topic.model_selection_report")[0][0]
        assert advice is not None and advice > 60
        first = set(r[0] for r in query(db, "SELECT id FROM topic.labeled_sample"))
        result = run_pipeline(instance)
        assert result.success
        meta = [
            e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(["topic", "labeled_sample"])
        ][0].materialization.metadata
    expected = min(advice, 150)
    assert query(db, "SELECT count(*) FROM topic.labeled_sample")[0][0] == expected
    assert first <= set(r[0] for r in query(db, "SELECT id FROM topic.labeled_sample"))
    assert meta["cache_hits"].value == 60 and meta["cache_misses"].value == expected - 60
    # the dry run before any request priced the rows drawn, not the task's own budget (issue #46)
    sample_row = next(line for line in meta["estimate_before_calls"].value.splitlines() if "ScaleLLM sample" in line)
    assert sample_row.split("|")[2].strip() == f"{expected:,}"
