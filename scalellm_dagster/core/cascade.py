"""The confidence cascade: rows the student is unsure of go back to the teacher, up to a budget.

The threshold comes from held-out teacher labels: out-of-fold student confidences on the labelled sample are
calibrated into P(student agrees with teacher) by isotonic regression, and the threshold is the lowest that makes
the expected agreement over all rows reach the target (rows below it are answered by the teacher, agreeing by
definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression


@dataclass(frozen=True)
class CascadePlan:
    threshold: float                 # calibrated confidence below which a row goes to the teacher
    expected_agreement_without: float
    expected_agreement_with: float
    expected_fraction_to_teacher: float
    target_agreement: float
    reached: bool


class Calibrator:
    """Raw student confidence -> probability that the student agrees with the teacher."""

    def __init__(self, oof_confidence: np.ndarray, oof_correct: np.ndarray):
        # kept: the guaranteed cascade bounds agreement on these held-out pairs directly
        self.confidence, self.agrees = np.asarray(oof_confidence, float), np.asarray(oof_correct, bool)
        self.iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        self.iso.fit(np.asarray(oof_confidence, float), np.asarray(oof_correct, float))

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        return self.iso.predict(np.asarray(confidence, float)).astype(np.float32)


def plan_cascade(calibrated: np.ndarray, target_agreement: float, max_fraction: float) -> CascadePlan:
    """Lowest threshold meeting the target with at most `max_fraction` of rows sent to the teacher.

    `calibrated` is the calibrated confidence of the rows to be labelled (or a representative sample of them).
    """
    p = np.sort(np.asarray(calibrated, float))
    n = len(p)
    without = float(p.mean()) if n else 1.0
    # sending the k least confident rows to the teacher: agreement = (k + sum of the rest) / n
    suffix = np.concatenate([np.cumsum(p[::-1])[::-1], [0.0]])
    k = np.arange(n + 1)
    agreement = (k + suffix) / max(n, 1)
    allowed = k <= int(np.floor(max_fraction * n))
    meets = allowed & (agreement >= target_agreement)
    if meets.any():
        best = int(np.argmax(meets))
        reached = True
    else:
        best = int(np.flatnonzero(allowed)[-1])
        reached = False
    threshold = float(p[best - 1]) if best > 0 else 0.0
    return CascadePlan(threshold=threshold, expected_agreement_without=without,
                       expected_agreement_with=float(agreement[best]), expected_fraction_to_teacher=best / max(n, 1),
                       target_agreement=target_agreement, reached=reached)


def cascade_tradeoff(calibrated: np.ndarray, labels_now: int, corpus_rows: int,
                     fractions=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2)) -> list[dict]:
    """Expected agreement with the teacher vs total teacher calls, sending the least confident rows back.

    `calibrated` are held-out calibrated confidences of labelled rows, standing in for the unlabelled rows.
    """
    rest = max(corpus_rows - labels_now, 0)
    rows = []
    for f in fractions:
        plan = plan_cascade(calibrated, target_agreement=1.01, max_fraction=f)  # 1.01: spend the whole fraction
        rows.append({
            "cascade_fraction": f,
            "teacher_calls_total": int(labels_now + round(plan.expected_fraction_to_teacher * rest)),
            "expected_agreement_student_rows": round(plan.expected_agreement_with, 4),
            "threshold": round(plan.threshold, 4),
        })
    return rows


@dataclass(frozen=True)
class GuaranteedPlan:
    """A threshold with a finite-sample statement: with probability >= 1 - delta, the final labels of the rows the
    student would label agree with the teacher on at least `target` of them (under the assumption below)."""

    threshold: float  # raw student confidence below which a row goes to the teacher
    teacher_rows: int  # rows it sends
    guaranteed_agreement: float  # the bound the chosen threshold certifies (>= target when reached)
    target: float
    delta: float
    reached: bool  # the target is certified within the budget
    best_within_budget: float  # when not reached: the best bound any threshold within the budget certifies
    rows_needed: int | None  # when not reached: the teacher rows the target needs (None: not even all of them)
    calibration_rows: int
    assumption: str = ("the labelled sample's out-of-fold (confidence, agrees-with-teacher) pairs are exchangeable "
                       "with the unlabelled rows' (a random sample); fold students train on fewer labels than the "
                       "final one, which makes the bound conservative")


def clopper_pearson_lower(successes: np.ndarray, trials: np.ndarray, delta: float) -> np.ndarray:
    """One-sided lower confidence bound at level 1 - delta on a binomial proportion (0 where there are no trials)."""
    from scipy.stats import beta

    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(delta, successes, trials - successes + 1)
    return np.where((trials > 0) & (successes > 0), np.nan_to_num(bound), 0.0)


def plan_guaranteed_cascade(calibration_confidence: np.ndarray, calibration_agrees: np.ndarray,
                            row_confidence: np.ndarray, target: float, delta: float,
                            max_teacher_rows: int) -> GuaranteedPlan:
    """The lowest threshold whose agreement bound reaches `target`, found by fixed-sequence testing.

    For a threshold t, rows below it go to the teacher (agreeing by definition) and the rest keep the student's
    label; the share sent, f(t), is known exactly from `row_confidence`. The student's agreement on the rows it keeps
    is bounded below by Clopper-Pearson over the calibration rows at or above t, so the final agreement is at least
    f(t) + (1 - f(t)) * LB(t). Thresholds are tested from the most cautious (everything to the teacher) down, each at
    level delta, stopping at the first that fails: the family-wise error stays <= delta without any monotonicity
    assumption (fixed-sequence testing, as in Learn-then-Test).
    """
    cal = np.asarray(calibration_confidence, float)
    agrees = np.asarray(calibration_agrees, bool)
    rows = np.sort(np.asarray(row_confidence, float))
    n = len(rows)
    # candidate thresholds, most cautious first: above every row, then each distinct calibration confidence down
    grid = np.concatenate([[np.inf], np.unique(cal)[::-1]])
    order = np.argsort(-cal, kind="stable")
    kept = np.searchsorted(-cal[order], -grid, side="right")  # calibration rows with confidence >= t
    successes = np.concatenate([[0], np.cumsum(agrees[order])])[kept]
    sent = np.searchsorted(rows, grid, side="left")  # rows with confidence < t
    share = sent / max(n, 1)
    bound = share + (1 - share) * clopper_pearson_lower(successes, kept, delta)
    passes = bound >= target
    run = int(np.argmin(passes)) if not passes.all() else len(grid)  # the sequence stops at the first failure
    within = sent <= max_teacher_rows
    if run > 0 and within[run - 1]:
        best = run - 1  # the lowest certified threshold, and it fits the budget
        return GuaranteedPlan(float(grid[best]), int(sent[best]), float(bound[best]), target, delta, True,
                              float(bound[best]), None, len(cal))
    # Not certifiable within the budget: the most cautious affordable threshold, and what it does certify.
    affordable = np.flatnonzero(within)
    pick = int(affordable[np.argmax(bound[affordable])]) if len(affordable) else len(grid) - 1
    needed = int(sent[run - 1]) if run > 0 else None
    return GuaranteedPlan(float(grid[pick]), int(sent[pick]), float(bound[pick]), target, delta, False,
                          float(bound[pick]), needed, len(cal))
