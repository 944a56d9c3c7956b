"""The whole ScaleLLM flow in memory, step after step: what `scalellm bench`, the benchmarks and the tests run to
compare with the assets, which call the same steps one asset at a time. No Dagster, no warehouse: answers go to an
in-memory cache (or one the caller shares between runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalellm_dagster.core.report import TeacherSpend
from scalellm_dagster.flow.candidates import evaluate_students
from scalellm_dagster.flow.cascade_step import CalibrationSample, calibrate, run_cascade
from scalellm_dagster.flow.predict import final_labels, predict_rows, train_student
from scalellm_dagster.flow.sample import LabelledSample, label_sample
from scalellm_dagster.flow.session import MemoryCache, TeacherSession
from scalellm_dagster.flow.student_selection import select_student
from scalellm_dagster.flow.suspects import SuspectReview, review_suspects
from scalellm_dagster.tasks_config import TaskSpec


@dataclass
class FlowRun:
    """One budget's run of the flow: the summary the report keeps, and what the flow produced."""

    summary: dict
    sample: LabelledSample
    choice: str
    labels: np.ndarray  # final label per row (teacher's where it answered, the student's elsewhere)
    student_labels: np.ndarray
    review: SuspectReview | None = None


def run_flow(
    *,
    task: TaskSpec,
    df: pd.DataFrame,
    X: np.ndarray,
    teacher,
    is_eval: np.ndarray,
    batch_size: int,
    concurrency: int,
    cache: MemoryCache | None = None,
    batch=None,
) -> tuple[FlowRun, dict]:
    """The assets' steps, in memory: sample and label, evaluate candidates, select, predict, cascade. `df`: the rows
    (id, text), `X` their vectors, `is_eval` the rows the teacher may not be asked about; `batch`: the sample and
    the cascade go through the Batch API (`teachers.batch_api.BatchRound`). Returns the run and its step timings
    (seconds), with the teacher's requests and cost."""
    ids = df["id"].to_numpy()
    pool = np.flatnonzero(~is_eval)
    session = TeacherSession(
        teacher,
        cache if cache is not None else MemoryCache(),
        df.set_index("id")["text"],
        batch_size,
        concurrency,
        batch=batch,
    )
    start = time.perf_counter()
    labelled = label_sample(ids[pool], None if task.sampling == "random" else X[pool], task, task.budget, session)
    seconds_teacher = time.perf_counter() - start

    position = pd.Series(np.arange(len(df)), index=ids)
    start = time.perf_counter()
    reask = None if batch_size == 1 else lambda: TeacherSession(teacher, MemoryCache(), session.texts, 1, concurrency)
    review = review_suspects(labelled.answers, X[position[labelled.valid["id"]].to_numpy()], task, reask)
    seconds_teacher += time.perf_counter() - start  # the flagging's training is small; a re-ask is teacher time
    answers = review.answers
    valid = answers[answers["valid"]]
    training = valid[valid["train"]]
    train_pos = position[training["id"]].to_numpy()
    X_train, y_train = X[train_pos], training["teacher_label"].to_numpy()
    start = time.perf_counter()
    candidates = evaluate_students(X_train, y_train, task)
    stats = session.stats
    spend = TeacherSpend(
        stats.rows - stats.unanswered,
        stats.requests,
        stats.request_seconds,
        stats.cost_usd,
        stats.prompt_tokens,
        stats.completion_tokens,
        stats.tokens_estimated,
        concurrency,
    )
    selection = select_student(candidates.scores, X_train, y_train, task, len(df), spend)
    student = train_student(selection.choice.candidate, X_train, y_train, task.seed)
    seconds_train = time.perf_counter() - start

    predicted = predict_rows(student, [X], len(X))
    final, source = final_labels(ids, predicted.labels, valid.set_index("id")["teacher_label"])
    cascade_calls, guarantee = 0, None
    cascade_inputs = {
        "student": student.name,
        "valid": valid,
        "X_valid": X[position[valid["id"]].to_numpy()],
        "confidence": predicted.confidence,
        "source": source,
    }
    if task.cascade_budget:
        start = time.perf_counter()
        final, cascade_calls, guarantee = cascade_step(
            task=task, **cascade_inputs, final=final, ids=ids, session_factory=lambda: session
        )
        seconds_teacher += time.perf_counter() - start
    timings = {
        "teacher": seconds_teacher,
        "train": seconds_train,
        "predict": predicted.seconds,
        "cascade_calls": cascade_calls,
        "reask_calls": review.reasked,
        "asked": session.stats.asked,
        "requests": session.stats.requests,
        "cost_usd": session.stats.cost_usd,
        "teacher_noise": selection.noise.rate,
        "guarantee": guarantee,
        # what `cascade_step` takes besides the labels, for a caller that runs it again (the validation)
        "cascade_inputs": cascade_inputs,
    }
    return FlowRun({}, labelled, student.name, final, predicted.labels, review), timings


def cascade_step(
    *,
    task: TaskSpec,
    student: str,
    valid: pd.DataFrame,
    X_valid: np.ndarray,
    confidence: np.ndarray,
    final: np.ndarray,
    source: np.ndarray,
    ids: np.ndarray,
    session_factory,
):
    """(final labels after the cascade, rows it sent, its guarantee): calibrated on the first answers of every
    valid sample row, whatever the suspect review did (issue #27)."""
    calibrator = calibrate(student, CalibrationSample.from_answers(valid, X_valid), task)
    outcome = run_cascade(
        calibrator, confidence, source == "student", ids, task, task.cascade_budget, session_factory=session_factory
    )
    final = final.copy()
    final[outcome.answered] = outcome.labels
    return final, len(outcome.asked), outcome.guarantee
