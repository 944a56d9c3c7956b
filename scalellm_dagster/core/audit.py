"""Auditing a deployed student on the rows each refresh brings: is it still as good as the report said?

A refresh's new rows are the ones no earlier audit covered. A small seeded random share of those the student
labelled goes to the teacher (never to training); their agreement with the deployed labels, with its exact
(Clopper-Pearson) 95 % interval, is compared with the agreement expected on that same population: the student-labelled
rows, which with a cascade are the most confident share, read off the held-out calibration by rank. An invalid answer
counts as a disagreement. An audit fails when even the interval's upper end lies below the estimate: a drop a
few dozen rows can show is a large one, so a failure means the new rows are unlike those the student learned from.
Two failures in a row call for a drift top-up: teacher labels on rows from the failing refreshes, added to the
sample, and the selection run again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scalellm_dagster.core.cascade import clopper_pearson_lower
from scalellm_dagster.core.sampling import sampling_priority

CONFIDENCE = 0.95
FAILURES_BEFORE_TOPUP = 2


@dataclass(frozen=True)
class AuditVerdict:
    audited: int
    agreed: int
    agreement: float | None
    ci_low: float | None
    ci_high: float | None
    estimate: float
    passed: bool | None  # None: not audited (no new rows the student labelled)
    # this audit pooled with the consecutive earlier audits of the same student (`pool_rows`)
    pooled_audits: int = 1
    pooled_audited: int = 0
    pooled_agreement: float | None = None
    pooled_ci_high: float | None = None
    pooled_estimate: float | None = None

    @property
    def pooled_passed(self) -> bool | None:
        """The pooled interval reaches its expected agreement (None when nothing was pooled with this audit)."""
        if self.pooled_audits < 2 or self.pooled_ci_high is None:
            return None
        return self.pooled_ci_high >= self.pooled_estimate


def draw_audit(candidate_ids: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """`rows` of the candidates, chosen by the same stable per-id priority the samples use (salted apart from the
    sample's, so audits are not the rows next in line for a bigger budget)."""
    candidate_ids = np.asarray(candidate_ids)
    if rows <= 0 or not len(candidate_ids):
        return candidate_ids[:0]
    order = np.argsort(sampling_priority(candidate_ids, seed + 7_919), kind="stable")
    return candidate_ids[order[:rows]]


def clopper_pearson(agreed: int, audited: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval: the cascade's one-sided lower bound on agreement, and one minus the same bound
    on disagreement, each at half the error."""
    tail = (1 - confidence) / 2
    low = float(clopper_pearson_lower(agreed, audited, tail))
    high = 1.0 - float(clopper_pearson_lower(audited - agreed, audited, tail))
    return low, high


def judge_audit(
    agrees: np.ndarray, estimate: float, earlier: list[tuple[int, int, float]] = (), pool_rows: int = 0
) -> AuditVerdict:
    """This audit's verdict; with `pool_rows`, also pooled with the latest of `earlier` ((audited, agreed, estimate)
    of the consecutive earlier audits of the same student, oldest first) until the pool has `pool_rows` rows: 30 rows
    a refresh cannot see a drop of a few points, a few refreshes pooled can. It fails when either interval's upper
    end is below its estimate (the pool's: the estimates weighted by rows)."""
    agrees = np.asarray(agrees, dtype=bool)
    if not len(agrees):
        return AuditVerdict(0, 0, None, None, None, estimate, None)
    agreed = int(agrees.sum())
    low, high = clopper_pearson(agreed, len(agrees))
    pool = [(len(agrees), agreed, estimate)]
    for audited, hits, their_estimate in reversed(list(earlier)):
        if not pool_rows or sum(p[0] for p in pool) >= pool_rows:
            break
        pool.append((int(audited), int(hits), float(their_estimate)))
    rows, hits = sum(p[0] for p in pool), sum(p[1] for p in pool)
    verdict = AuditVerdict(
        len(agrees),
        agreed,
        agreed / len(agrees),
        low,
        high,
        estimate,
        None,
        len(pool),
        rows,
        hits / rows,
        clopper_pearson(hits, rows)[1],
        sum(p[0] * p[2] for p in pool) / rows,
    )
    return replace(verdict, passed=high >= estimate and verdict.pooled_passed is not False)


def failures_in_a_row(history: list[bool | None]) -> int:
    """Consecutive failed audits at the end of `history` (oldest first); refreshes with nothing to audit neither
    break nor extend the run."""
    count = 0
    for passed in reversed([p for p in history if p is not None]):
        if passed:
            break
        count += 1
    return count


def drift_topup(pool_ids: np.ndarray, exclude_ids: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """`rows` ids from `pool_ids` (the failing refreshes' new rows) not in `exclude_ids` (already sampled or
    audited), by stable priority, so a rerun of the same top-up picks the same rows and pays nothing again."""
    pool = np.setdiff1d(np.asarray(pool_ids), np.asarray(exclude_ids))
    if rows <= 0 or not len(pool):
        return pool[:0]
    order = np.argsort(sampling_priority(pool, seed + 104_729), kind="stable")
    return pool[order[:rows]]
