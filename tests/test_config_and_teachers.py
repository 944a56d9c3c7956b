"""Task configuration, the simulated teacher and the answer parser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalellm_dagster.settings import DEMO_TASKS
from scalellm_dagster.tasks_config import TaskConfigError, load_tasks, parse_task
from scalellm_dagster.teachers.prompts import parse_answers, prompt_version
from scalellm_dagster.teachers.simulated import SimulatedTeacher, nearest_other_class

BASE = {"name": "t", "instruction": "Decide.", "budget": 100, "labels": ["a", "b", "c"]}


def test_demo_tasks_load_with_two_tasks_on_one_corpus():
    tasks = load_tasks(DEMO_TASKS)
    assert [t.name for t in tasks] == ["intent", "topic"]
    assert len(tasks[0].labels) == 77 and "reverted_card_payment?" in tasks[0].labels
    assert tasks[1].labels["cards"].startswith("ordering")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "Bad Name"}, "'name' must be lower-case letters"),
        ({"budget": 5}, "'budget' must be an integer >= 10, got 5"),
        ({"labels": ["only"]}, "'labels' must list at least two labels"),
        ({"labels": [True, "no"]}, "read as a boolean"),
        (
            {"sampling": "magic"},
            "'sampling' must be one of ['random', 'stratified-by-cluster', 'uncertainty'], got 'magic'",
        ),
        ({"follow_budget_advice": True}, "'follow_budget_advice' needs 'target_accuracy' or 'max_teacher_cost_usd'"),
        ({"cascade_target_agreement": 1.5}, "'cascade_target_agreement' must be a number in (0, 1], got 1.5"),
        ({"inference_seconds_per_point": -1}, "'inference_seconds_per_point' must be a number >= 0, got -1"),
        (
            {"cascade_delta": 0.5},
            "'cascade_delta' is the probability that the cascade misses its target: a number in (0, 0.5)",
        ),
        (
            {"cascade_delta": 0.05, "sampling": "uncertainty"},
            "'cascade_delta' certifies agreement only on a random sample, and 'sampling' is 'uncertainty'",
        ),
        ({"candidates": ["gpt5"]}, "unknown student(s) ['gpt5']"),
        ({"budgett": 3}, "unknown field(s) ['budgett']"),
        ({"instruction": ""}, "'instruction' must be a non-empty string"),
    ],
)
def test_task_errors_name_the_field_and_what_was_expected(change, message):
    with pytest.raises(TaskConfigError) as err:
        parse_task({**BASE, **change}, where="tasks.yaml: tasks[0]")
    assert message in str(err.value) and "tasks.yaml: tasks[0]" in str(err.value)


def test_duplicate_task_names_are_rejected(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "tasks:\n  - {name: t, instruction: x, budget: 10, labels: [a, b]}\n"
        "  - {name: t, instruction: y, budget: 10, labels: [a, b]}\n"
    )
    with pytest.raises(TaskConfigError, match="task name 't' is used twice"):
        load_tasks(path)


def test_prompt_version_changes_with_the_task_wording():
    task = parse_task(BASE)
    assert prompt_version(task) == prompt_version(parse_task(BASE))
    assert prompt_version(task) != prompt_version(parse_task({**BASE, "instruction": "Decide carefully."}))
    assert prompt_version(task) != prompt_version(parse_task({**BASE, "labels": ["a", "b", "d"]}))


def test_parser_accepts_json_prose_and_lines_and_never_coerces():
    keys, labels = ["1", "2", "3"], ["pos", "neg"]
    got = parse_answers(
        'Here: {"answers": [{"id": "1", "label": "pos"}, {"id": "2", "label": "Positive"}]}', keys, labels
    )
    assert got["1"].label == "pos" and got["2"].label is None and got["2"].raw == "Positive"
    assert "3" not in got  # missing rows are left out, to be asked again
    assert parse_answers('{"1": "neg", "3": "pos"}', keys, labels)["3"].label == "pos"
    lines = parse_answers("1: neg\n2 -> pos\nunrelated", keys, labels)
    assert lines["1"].label == "neg" and lines["2"].label == "pos"
    assert parse_answers('{"answers": [{"id": "9", "label": "pos"}]}', keys, labels) == {}
    assert parse_answers("", keys, labels) == {}


def test_simulated_teacher_errs_towards_the_nearest_other_class_deterministically():
    rng = np.random.default_rng(0)
    centers = {"a": [1, 0, 0], "b": [0.9, 0.4, 0], "c": [0, 0, 1]}  # b is a's neighbour
    gold = np.array(["a"] * 200 + ["b"] * 200 + ["c"] * 200, dtype=object)
    X = np.stack([np.array(centers[g]) + 0.05 * rng.standard_normal(3) for g in gold]).astype(np.float32)
    confusion = nearest_other_class(X, gold, ["a", "b", "c"])
    assert (confusion[gold == "a"] == "b").mean() > 0.95 and (confusion != gold).all()

    task = parse_task({**BASE, "gold_column": "g"})
    ids = pd.Series(range(600))
    texts = [f"text {i}" for i in range(600)]
    teacher = SimulatedTeacher.from_corpus(task, ids, pd.Series(gold), X, accuracy=0.8, seed=3)
    rows = [(str(i), texts[i]) for i in range(600)]
    first = teacher.label_batch(rows).answers
    again = SimulatedTeacher.from_corpus(task, ids, pd.Series(gold), X, accuracy=0.8, seed=3).label_batch(rows)
    assert {k: a.label for k, a in first.items()} == {k: a.label for k, a in again.answers.items()}
    right = np.mean([first[str(i)].label == gold[i] for i in range(600)])
    assert 0.74 < right < 0.86
    wrong_a = [first[str(i)].label for i in range(200) if first[str(i)].label != "a"]
    assert wrong_a and all(label == "b" for label in wrong_a)
    assert teacher.provider == "simulated" and teacher.model.startswith("simulated-acc0.800")

    # Streamed from the warehouse in blocks of any order, it gives the same answers without the whole matrix.
    order = rng.permutation(600)
    blocks = lambda: ((ids.to_numpy()[order[s : s + 128]], X[order[s : s + 128]]) for s in range(0, 600, 128))
    streamed = SimulatedTeacher.from_corpus(task, ids, pd.Series(gold), blocks, accuracy=0.8, seed=3)
    assert {k: a.label for k, a in streamed.label_batch(rows).answers.items()} == {k: a.label for k, a in first.items()}


def test_dry_run_estimate_scales_with_rows_and_requests():
    from scalellm_dagster.core.cost_estimate import estimate_vs_baseline
    from scalellm_dagster.teachers.prompt_cost import prompt_sizes

    task = parse_task({**BASE, "budget": 100})
    texts = ["a short message about my card"] * 50
    ours, baseline = estimate_vs_baseline(
        prompt_sizes(task, texts),
        task.budget,
        corpus_rows=10_000,
        batch_size=10,
        concurrency=4,
        seconds_per_request=1.0,
        price_in=0.15,
        price_out=0.6,
    )
    assert (ours.rows, ours.requests, ours.seconds) == (100, 10, 3.0)  # ceil(10 / 4) rounds of 1 s
    assert (baseline.rows, baseline.requests, baseline.seconds) == (10_000, 10_000, 2500.0)
    # the system prompt is paid once per request: batching makes each row cheaper
    assert baseline.prompt_tokens / baseline.rows > ours.prompt_tokens / ours.rows
    assert baseline.cost_usd > 100 * ours.cost_usd


def test_few_shot_examples_go_into_the_prompt_and_its_version():
    from scalellm_dagster.teachers.prompts import system_prompt

    plain = parse_task(BASE)
    shots = parse_task({**BASE, "few_shot": [{"text": "my card never came", "label": "a"}]})
    assert '"my card never came" -> label: a' in system_prompt(shots)
    assert prompt_version(shots) != prompt_version(plain)
    with pytest.raises(TaskConfigError, match=r"few_shot\[0\] must be a mapping with 'text' and a 'label'"):
        parse_task({**BASE, "few_shot": [{"text": "x", "label": "zzz"}]})


def test_a_biased_simulation_gives_its_wrong_answers_to_one_label_at_the_same_accuracy():
    import numpy as np
    import pandas as pd

    from scalellm_dagster.teachers.simulated import SimulatedTeacher

    task = parse_task({"name": "t", "instruction": "x", "budget": 10, "labels": ["a", "b", "c", "d"]})
    rng = np.random.default_rng(0)
    gold = pd.Series(rng.choice(["a", "b", "c", "d"], 4000))
    ids = pd.Series(np.arange(4000))
    X = rng.normal(size=(4000, 8)).astype(np.float32)
    rows = [(str(i), f"text {i}") for i in ids]

    def answers(bias):
        teacher = SimulatedTeacher.from_corpus(task, ids, gold, X, accuracy=0.6, seed=1, bias=bias)
        got = teacher.label_batch(rows).answers
        return pd.Series([got[str(i)].label for i in ids])

    plain, biased = answers(0.0), answers(0.8)
    assert abs((plain == gold).mean() - 0.6) < 0.03 and ((plain == gold) == (biased == gold)).all()
    wrong = biased != gold
    assert (biased[wrong & (gold != "a")] == "a").mean() > 0.75  # most wrong answers go to the favoured label
    assert (plain[plain != gold] == "a").mean() < 0.4
