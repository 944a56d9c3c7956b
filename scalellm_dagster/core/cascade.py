"""The confidence cascade: rows the student is unsure of go back to the teacher, up to a budget.

The threshold comes from held-out teacher labels: out-of-fold student confidences on the labelled sample are
calibrated into P(student agrees with teacher) by isotonic regression, and the threshold is the lowest that makes
the expected agreement over all rows reach the target (rows below it are answered by the teacher, agreeing by
definition).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sklearn.isotonic import IsotonicRegression


@dataclass(frozen=True)
class CascadePlan:
    threshold: float  # calibrated confidence below which a row goes to the teacher
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
        self.iso.fit(self.confidence, self.agrees.astype(float))

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        return self.iso.predict(np.asarray(confidence, float)).astype(np.float32)


def agreement_of_most_confident(calibrator: Calibrator, share: float) -> float:
    """Expected agreement with the teacher on the `share` of rows the student is most confident of, read off the
    held-out pairs by rank, as the guarantee reads them: what an audit of the rows the student labels should find
    when a cascade has sent the rest to the teacher (share 1: every row)."""
    if not len(calibrator.agrees):
        return float("nan")
    order = np.argsort(-calibrator.confidence, kind="stable")
    kept = min(max(int(round(share * len(order))), 1), len(order))
    return float(calibrator.agrees[order[:kept]].mean())


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
    return CascadePlan(
        threshold=threshold,
        expected_agreement_without=without,
        expected_agreement_with=float(agreement[best]),
        expected_fraction_to_teacher=best / max(n, 1),
        target_agreement=target_agreement,
        reached=reached,
    )


def cascade_tradeoff(
    calibrated: np.ndarray, labels_now: int, corpus_rows: int, fractions=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
) -> list[dict]:
    """Expected agreement with the teacher vs total teacher calls, sending the least confident rows back.

    `calibrated` are held-out calibrated confidences of labelled rows, standing in for the unlabelled rows.
    """
    rest = max(corpus_rows - labels_now, 0)
    rows = []
    for f in fractions:
        plan = plan_cascade(calibrated, target_agreement=1.01, max_fraction=f)  # 1.01: spend the whole fraction
        rows.append(
            {
                "cascade_fraction": f,
                "teacher_calls_total": int(labels_now + round(plan.expected_fraction_to_teacher * rest)),
                "expected_agreement_student_rows": round(plan.expected_agreement_with, 4),
                "threshold": round(plan.threshold, 4),
            }
        )
    return rows


@dataclass(frozen=True)
class GuaranteedPlan:
    """How many of the least confident rows to send so that, with probability >= 1 - delta, the final labels of the
    rows the student would label agree with the teacher on at least `target` of them (under the assumption below)."""

    threshold: float  # the student confidence of the most confident row sent (rows are sent least confident first)
    teacher_rows: int  # rows it sends
    guaranteed_agreement: float  # the bound the plan certifies (>= target when reached)
    target: float
    delta: float
    reached: bool  # the target is certified within the budget (if not, `guaranteed_agreement` is what the most
    # cautious plan the budget affords certifies)
    rows_needed: int | None  # when not reached: the teacher rows the target needs (None when reached)
    calibration_rows: int
    candidates: int = 1  # the selection chose among this many students on the same labels: delta is split over them
    unanswered: int = 0  # rows sent that got no valid answer after one more try: counted as misses in the bound
    assumption: str = (
        "the labelled sample's out-of-fold (confidence rank, agrees-with-the-teacher's-first-answer) "
        "pairs are exchangeable with the unlabelled rows' (a random sample); rows are compared by their "
        "rank in confidence, not its value, because fold students are less confident than the final "
        "one"
    )

    def with_unanswered(self, rows: int, population: int) -> GuaranteedPlan:
        """The statement once `rows` of the rows sent got no answer: they keep the student's label and are counted
        as misses, so the bound drops by their share of the `population` it is about."""
        if rows <= 0:
            return self
        bound = self.guaranteed_agreement - rows / max(population, 1)
        return replace(self, guaranteed_agreement=bound, reached=self.reached and bound >= self.target, unanswered=rows)


def clopper_pearson_lower(successes: np.ndarray, trials: np.ndarray, delta: float) -> np.ndarray:
    """One-sided lower confidence bound at level 1 - delta on a binomial proportion (0 where there are no trials)."""
    from scipy.stats import beta

    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    with np.errstate(invalid="ignore"):
        bound = beta.ppf(delta, successes, trials - successes + 1)
    return np.where((trials > 0) & (successes > 0), np.nan_to_num(bound), 0.0)


def binomial_lower(trials: np.ndarray, rate: np.ndarray, delta: float) -> np.ndarray:
    """Successes that `trials` draws at `rate` reach with probability >= 1 - delta (the delta-quantile)."""
    from scipy.stats import binom

    trials = np.asarray(trials, int)
    return np.where(trials > 0, np.nan_to_num(binom.ppf(delta, trials, np.clip(rate, 0, 1))), 0.0)


def plan_guaranteed_cascade(
    calibration_confidence: np.ndarray,
    calibration_agrees: np.ndarray,
    row_confidence: np.ndarray,
    target: float,
    delta: float,
    max_teacher_rows: int,
    *,
    candidates: int = 1,
) -> GuaranteedPlan:
    """The fewest teacher rows whose agreement bound reaches `target`, found by fixed-sequence testing.

    A plan keeps the share 1 - q of rows the student is most confident of and sends the rest (the share q, known
    exactly) to the teacher, who agrees with itself. The student's agreement on the rows it keeps is bounded below by
    Clopper-Pearson over the same top share of the calibration rows, ranked by their own (out-of-fold) confidence:
    ranks, because fold students, trained on fewer labels, are less confident than the final student, and a
    threshold on the value would keep more, harder rows than the calibration saw. So the final agreement is at least
    q + (1 - q) * LB(q), with LB(q) the lower bound at delta / 2 and a binomial quantile at delta / 2 for the kept
    rows' own draw, so the statement is about the agreement realised on these rows. Plans are tested from the most
    cautious (q = 1) down, each at level delta, stopping at the first that fails: the family-wise error stays
    <= delta without any monotonicity assumption (fixed-sequence testing, as in Learn-then-Test).

    `candidates`: the student was chosen among this many on the same labels, so the calibration agreement is the
    score the selection maximised. Each candidate's statement is made at delta / candidates: all of them hold at once
    with probability >= 1 - delta (Bonferroni), so the chosen one's does, whatever the selection rule.
    """
    level = delta / max(candidates, 1)
    agrees = np.asarray(calibration_agrees, bool)[np.argsort(-np.asarray(calibration_confidence, float), kind="stable")]
    rows = np.sort(np.asarray(row_confidence, float))
    m, n = len(agrees), len(rows)
    kept_cal = np.arange(m + 1)  # plans: keep the top j calibration rows, j = 0 (all to the teacher) .. m
    share_sent = 1 - kept_cal / max(m, 1)
    sent = np.ceil(share_sent * n - 1e-9).astype(int)  # rounding up: never keep more than the share certified
    successes = np.concatenate([[0], np.cumsum(agrees)])
    # delta is split: half for the calibration's bound on the agreement rate, half for the kept rows' own draw
    # around that rate, so the bound holds for the agreement realised on these rows, not only in expectation.
    rate = clopper_pearson_lower(successes, kept_cal, level / 2)
    kept_rows = n - sent
    realised = binomial_lower(kept_rows, rate, level / 2)
    bound = np.where(kept_rows > 0, (sent + realised) / max(n, 1), 1.0)
    passes = bound >= target
    run = int(np.argmin(passes)) if not passes.all() else len(passes)  # the sequence stops at the first failure
    within = sent <= max_teacher_rows

    def threshold(k: int) -> float:
        return float(rows[k - 1]) if k > 0 else float("-inf")

    if run > 0 and within[run - 1]:
        best = run - 1
        return GuaranteedPlan(
            threshold(sent[best]), int(sent[best]), float(bound[best]), target, delta, True, None, m, candidates
        )
    # Not certifiable within the budget: the most cautious affordable plan, and what it certifies on its own.
    affordable = np.flatnonzero(within)
    pick = int(affordable[0]) if len(affordable) else m
    needed = int(sent[run - 1])  # run >= 1: plan 0 sends every row and certifies 1.0
    return GuaranteedPlan(
        threshold(sent[pick]), int(sent[pick]), float(bound[pick]), target, delta, False, needed, m, candidates
    )
