"""The sample's suspect teacher labels: flagged out of fold, then kept, re-asked one row per request, or left out of
training, as the task's `suspect_labels` says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from scalellm_dagster.flow import MemoryCache, TeacherSession
from scalellm_dagster.flow.suspects import review_suspects
from scalellm_dagster.tasks_config import parse_task
from scalellm_dagster.teachers.base import Answer, BatchResult

LABELS = ["a", "b", "c", "d"]


class BatchConfusedTeacher:
    """Errs on the flipped rows only inside a batch of several rows; alone in a request, it answers right (the way
    a real LLM loses track of rows in a long prompt)."""

    provider, model, prompt_version = "fake", "batch-confused", "v1"

    def __init__(self, gold: dict[str, str], flipped: dict[str, str]):
        self.gold, self.flipped = gold, flipped
        self.single_row_requests = 0

    def label_batch(self, rows):
        alone = len(rows) == 1
        self.single_row_requests += alone
        return BatchResult(
            {k: Answer(self.gold[k] if alone else self.flipped.get(k, self.gold[k]), "x") for k, _ in rows}
        )

    def cost_usd(self, prompt_tokens, completion_tokens):
        return 0.0


@pytest.fixture(scope="module")
def labelled():
    X, gold_codes = make_classification(
        n_samples=600,
        n_features=20,
        n_informative=10,
        n_classes=4,
        n_clusters_per_class=1,
        class_sep=2.5,
        random_state=1,
    )
    gold = np.array(LABELS)[gold_codes]
    rng = np.random.default_rng(1)
    flipped = rng.random(len(gold)) < 0.12
    wrong = np.array(LABELS)[(gold_codes + rng.integers(1, 4, len(gold))) % 4]
    ids = np.arange(len(gold))
    teacher = BatchConfusedTeacher(
        {str(i): g for i, g in zip(ids, gold)}, {str(i): w for i, w, f in zip(ids, wrong, flipped) if f}
    )
    texts = pd.Series([f"row {i}" for i in ids], index=ids)
    answers = TeacherSession(teacher, MemoryCache(), texts, batch_size=10, concurrency=2).ask(ids)
    answers.loc[[3, 7], ["teacher_label", "valid"]] = [None, False]  # two unusable answers stay out of everything
    return X, gold, flipped, teacher, texts, answers


def _task(policy: str):
    return parse_task({"name": "t", "instruction": "x", "labels": LABELS, "budget": 600, "suspect_labels": policy})


def _review(labelled, policy, with_session=True):
    X, _gold, _flipped, teacher, texts, answers = labelled
    valid = answers["valid"].to_numpy()
    session = (
        (lambda: TeacherSession(teacher, MemoryCache(), texts, batch_size=1, concurrency=2)) if with_session else None
    )
    return review_suspects(answers, X[valid], _task(policy), session)


def test_keep_flags_the_batch_mistakes_and_trains_on_every_valid_label(labelled):
    _X, _gold, flipped, _teacher, _texts, answers = labelled
    review = _review(labelled, "keep")
    out = review.answers
    assert out["suspect"][flipped].mean() > 0.6 and flipped[out["suspect"]].mean() > 0.6
    assert not out.loc[[3, 7], "suspect"].any()
    assert out["train"].tolist() == answers["valid"].tolist()
    assert out["teacher_label"].equals(answers["teacher_label"]) and review.reasked == 0


def test_drop_leaves_the_suspects_out_of_training_only(labelled):
    review = _review(labelled, "drop")
    out = review.answers
    assert review.dropped == review.flagged > 0
    assert (out["train"] == (out["valid"] & ~out["suspect"])).all()
    assert out["teacher_label"].equals(out["first_label"])  # their labels are not changed


def test_reask_asks_each_suspect_alone_and_takes_the_second_answer(labelled):
    _X, gold, flipped, teacher, _texts, answers = labelled
    before = teacher.single_row_requests
    review = _review(labelled, "reask")
    out = review.answers
    suspects = out["suspect"].to_numpy()
    assert teacher.single_row_requests - before == review.reasked == suspects.sum()
    assert (out.loc[suspects, "teacher_label"] == gold[suspects]).all()  # alone, this teacher answers right
    assert review.changed_by_reask == (suspects & flipped).sum()  # a flagged row it had right is confirmed
    assert out["first_label"].equals(answers["teacher_label"])  # the first answer stays on record
    assert out["train"].tolist() == answers["valid"].tolist()
    wrong_before = (answers["teacher_label"] != gold)[answers["valid"]].sum()
    wrong_after = (out["teacher_label"] != gold)[out["valid"]].sum()
    assert wrong_after < wrong_before / 2


def test_reask_without_a_one_row_session_says_why_it_did_not_ask(labelled):
    review = _review(labelled, "reask", with_session=False)
    assert review.reasked == 0 and "already asks one row per request" in review.note


def test_an_unknown_policy_names_the_field_and_the_choices():
    from scalellm_dagster.tasks_config import TaskConfigError

    with pytest.raises(TaskConfigError, match=r"suspect_labels.*\['keep', 'reask', 'drop'\].*'fix'"):
        _task("fix")


def test_reask_through_the_assets_pays_once_and_shows_the_suspects(pipeline_env, tasks_file):
    from dagster import AssetKey, DagsterInstance

    from tests.pipeline_helpers import query, run_pipeline

    tasks_file.write_text(tasks_file.read_text() + "    suspect_labels: reask\n")  # the last task: topic
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success
        flagged = query(db, "SELECT count(*) FROM topic.labeled_sample WHERE suspect AND reasked")[0][0]
        assert flagged > 0 and flagged == query(db, "SELECT count(*) FROM topic.labeled_sample WHERE suspect")[0][0]
        one_row = query(
            db,
            "SELECT count(*) FROM scalellm_cache.teacher_ledger WHERE task = 'topic' "
            "AND prompt_version LIKE '%+one-row-reask'",
        )[0][0]
        assert one_row == flagged  # one request per suspect, cached apart from the batched answers
        meta = next(
            m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey(["topic", "labeled_sample"])
        ).materialization.metadata
        assert meta["suspect_labels_policy"].value == "reask"
        assert meta["suspects_reasked"].value == flagged
        assert "second_answer" in meta["suspect_teacher_label_examples"].value

        assert run_pipeline(instance).success  # a rerun asks nothing again, the re-asked suspects included
        assert (
            query(
                db,
                "SELECT count(*) FROM scalellm_cache.teacher_ledger WHERE task = 'topic' "
                "AND prompt_version LIKE '%+one-row-reask'",
            )[0][0]
            == one_row
        )


def test_too_few_valid_labels_flag_nothing_and_say_why():
    answers = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "teacher_label": ["a", None, "a"],
            "raw_answer": ["a", "?", "a"],
            "valid": [True, False, True],
            "from_cache": False,
        }
    )
    review = review_suspects(answers, np.zeros((2, 4)), _task("drop"))
    assert review.flagged == 0 and "not estimated" in review.noise.method
    assert review.answers["train"].tolist() == [True, False, True]
