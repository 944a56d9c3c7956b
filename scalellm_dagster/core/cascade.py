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
