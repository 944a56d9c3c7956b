"""Step 5: the rows the student is least sure of go back to the teacher, as far as the task's target agreement
needs and the cascade budget allows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scalellm_dagster.core.cascade import Calibrator, CascadePlan, GuaranteedPlan, plan_cascade, plan_guaranteed_cascade
from scalellm_dagster.core.students import out_of_fold_confidence
from scalellm_dagster.flow.teaching import TeacherSession
from scalellm_dagster.tasks_config import TaskSpec


@dataclass(frozen=True)
class CascadeOutcome:
    plan: CascadePlan
    asked: np.ndarray  # positions sent to the teacher
    answered: np.ndarray  # positions (among `asked`) with a valid answer
    labels: np.ndarray  # the teacher's labels for `answered`
    requests: int
    guarantee: GuaranteedPlan | None = None  # with cascade_delta: the threshold's finite-sample statement


def calibrate(student: str, X_train: np.ndarray, y_train: np.ndarray, task: TaskSpec) -> Calibrator:
    """The student's confidence mapped to its out-of-fold agreement with the teacher's labels."""
    return Calibrator(*out_of_fold_confidence(student, X_train, y_train, task.cv_folds, task.seed))


def run_cascade(calibrator: Calibrator, confidence: np.ndarray, is_student_row: np.ndarray, ids: np.ndarray,
                task: TaskSpec, budget: int, session_factory: Callable[[], TeacherSession],
                log: Callable[[str], None] = lambda _msg: None) -> CascadeOutcome:
    """`confidence` and `is_student_row` cover every row (`ids`); `calibrator` (from `calibrate`) turns the
    confidence into expected agreement. The session is opened only when some row goes to the teacher."""
    agreement = calibrator(confidence)
    plan = plan_cascade(agreement[is_student_row], task.cascade_target_agreement,
                        max_fraction=budget / max(int(is_student_row.sum()), 1))
    guarantee = None
    if task.cascade_delta is not None:
        guarantee = plan_guaranteed_cascade(calibrator.confidence, calibrator.agrees, confidence[is_student_row],
                                            task.cascade_target_agreement, task.cascade_delta, budget)
        # by rank, as the plan was made: the `teacher_rows` least confident student rows
        pick = np.flatnonzero(is_student_row)
        pick = pick[np.argsort(confidence[pick], kind="stable")[:min(guarantee.teacher_rows, budget)]]
        log(f"cascade: {len(pick):,} least confident rows to the teacher; with probability >= "
            f"{1 - task.cascade_delta:.0%} agreement with the teacher >= {guarantee.guaranteed_agreement:.3f} "
            + ("(target reached)" if guarantee.reached else
               f"(target {guarantee.target:.3f} NOT reachable within the budget of {budget:,} rows: needs "
               + (f"{guarantee.rows_needed:,}" if guarantee.rows_needed is not None else "more than every") + " rows)"))
    else:
        pick = np.flatnonzero(is_student_row & (agreement <= plan.threshold))
        pick = pick[np.argsort(agreement[pick], kind="stable")[:budget]]
        log(f"cascade: {len(pick):,} least confident rows to the teacher (threshold {plan.threshold:.3f}, "
            f"expected agreement {plan.expected_agreement_without:.3f} -> {plan.expected_agreement_with:.3f})")
    if not len(pick):
        return CascadeOutcome(plan, pick, pick, np.array([], dtype=object), 0, guarantee)
    session = session_factory()
    answers = session.ask(ids[pick])
    ok = answers["valid"].to_numpy()
    return CascadeOutcome(plan, pick, pick[ok], answers["teacher_label"].to_numpy()[ok], session.stats.requests,
                          guarantee)
