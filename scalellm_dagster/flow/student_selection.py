"""Step 3: the chosen student and the model selection report's material: the trade-off table, the student's
calibrated confidence (what a cascade would buy) and budget advice from the chosen student's learning curve."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scalellm_dagster.core.budget import BudgetAdvice, advise_budget
from scalellm_dagster.core.cascade import Calibrator, cascade_tradeoff
from scalellm_dagster.core.learning_curve import fit_learning_curve
from scalellm_dagster.core.report import TeacherSpend, candidate_table
from scalellm_dagster.core.selection import Choice, choose_student
from scalellm_dagster.core.students import fit_students, out_of_fold, predict_with_confidence
from scalellm_dagster.core.teacher_noise import TeacherNoise, estimate_teacher_noise
from scalellm_dagster.tasks_config import TaskSpec


@dataclass(frozen=True)
class Selection:
    choice: Choice
    table: pd.DataFrame  # one row per candidate: accuracy, speed, fitted curve, forecasts, chosen
    cascade_tradeoff: pd.DataFrame
    advice: BudgetAdvice | None
    calibrator: Calibrator  # the chosen student's confidence -> expected agreement, for the cascade
    noise: TeacherNoise  # teacher labels the chosen student, trained without them, finds implausible

    @property
    def report_table(self) -> pd.DataFrame:
        """The report's stored table: the candidates with the criterion, the reason and the advice."""
        return self.table.assign(
            criterion=self.choice.criterion,
            reason=self.choice.reason,
            recommended_budget=self.advice.recommended_budget if self.advice else None,
        )


def select_student(
    scores: pd.DataFrame, X: np.ndarray, y: np.ndarray, task: TaskSpec, corpus_rows: int, spend: TeacherSpend
) -> Selection:
    """`X, y`: the valid teacher labels the candidates were scored on; `spend`: what the teacher cost so far."""
    choice = choose_student(
        scores,
        task.selection,
        task.min_rows_per_second,
        corpus_rows=corpus_rows,
        seconds_per_point=task.inference_seconds_per_point,
    )
    oof = out_of_fold(choice.candidate, X, y, task.cv_folds, task.seed)
    calibrator = Calibrator(oof.confidence, oof.correct)
    calibrated = calibrator(oof.confidence)
    # The teacher's unlearnable mistakes are a floor under every student's error vs the teacher.
    noise = estimate_teacher_noise(y, oof)
    chosen = scores[(scores["candidate"] == choice.candidate) & (scores["status"] == "ok")]
    advice = advise_budget(
        fit_learning_curve(chosen["sample_size"], chosen["cv_accuracy"], noise.floor_prior()),
        len(y),
        corpus_rows,
        cost_per_row=spend.cost_usd / max(spend.rows_answered, 1),
        seconds_per_row=spend.request_seconds / max(spend.rows_answered, 1) / max(spend.concurrency, 1),
        target_accuracy=task.target_accuracy,
        max_cost_usd=task.max_teacher_cost_usd,
    )
    table = candidate_table(
        scores, choice, task.budget, noise.floor_prior(), corpus_rows, task.inference_seconds_per_point
    )
    return Selection(
        choice, table, pd.DataFrame(cascade_tradeoff(calibrated, len(y), corpus_rows)), advice, calibrator, noise
    )


GOLD_EVAL_ROWS = 2000


def with_accuracy_vs_gold(
    selection: Selection,
    scores: pd.DataFrame,
    X: np.ndarray,
    y: np.ndarray,
    X_eval: np.ndarray,
    gold_eval: np.ndarray,
    *,
    seed: int,
) -> Selection:
    """Adds each candidate's accuracy against gold labels on held-out rows (the teacher never saw them), trained on
    every teacher label as the final student would be: what a user with a gold column compares, where accuracy vs
    the teacher is all a task without one can show. Candidates not evaluated at the largest size get none."""
    ok = scores[scores["status"] == "ok"]
    at_max = set(ok.loc[ok["sample_size"] == ok["sample_size"].max(), "candidate"])
    names = [name for name in selection.table["candidate"] if name in at_max]
    fitted = fit_students(names, X, y, seed)
    accuracy = {
        name: float((predict_with_confidence(model, X_eval).labels == gold_eval).mean())
        for name, model in zip(names, fitted, strict=True)
    }
    table = selection.table.assign(accuracy_vs_gold_heldout=selection.table["candidate"].map(accuracy))
    return replace(selection, table=table)
