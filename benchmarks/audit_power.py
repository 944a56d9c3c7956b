"""How often the drift audit fails when the new rows have drifted (issue #27): its power, computed exactly.

Drift of x %: a share x of the new rows come from somewhere the student never learned (it agrees with the teacher on
none of them, as with a label the sample never saw), so the agreement the audit samples falls from the expected e to
e * (1 - x). The audit of n rows fails when the upper end of the exact 95 % Clopper-Pearson interval of its agreement
is below e; its power is the binomial probability of that, summed exactly over the outcomes. Also shown: the false
alarm rate (no drift), and the power of a drop of 10 points, for several audit sizes.

Then the rule as it runs (`--refreshes`): a sequence of refreshes of `audit_rows` each, judged alone and pooled with
the same student's latest audits up to `audit_pool_rows` (`core.audit.judge_audit`); two failures in a row call for a
drift top-up. Simulated (`--sequences` per case): how often a top-up is called within the refreshes with no drift
(false alarms), and after how many refreshes it is called once the new rows drift (drift from the first refresh).

    .venv/bin/python -m benchmarks.audit_power [--expected 0.85 0.70] [--sizes 30 60 100 300]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.stats import binom

from scalellm_dagster.core.audit import clopper_pearson


def power(n: int, expected: float, true_agreement: float) -> float:
    fails = np.array([clopper_pearson(k, n)[1] < expected for k in range(n + 1)])
    return float(binom.pmf(np.arange(n + 1), n, true_agreement)[fails].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected", type=float, nargs="+", default=[0.85, 0.70])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 100, 300])
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--sequences", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for e in args.expected:
        for n in args.sizes:
            rows.append(
                {
                    "expected": e,
                    "audit_rows": n,
                    "false_alarm": round(power(n, e, e), 4),
                    **{f"drift_{int(x * 100)}pct": round(power(n, e, e * (1 - x)), 3) for x in (0.1, 0.25, 0.5)},
                    "drop_10_points": round(power(n, e, e - 0.10), 3),
                }
            )
    sequential = []
    for e in args.expected:
        for pool_rows in (0, 300):
            for drift in (0.0, 0.1, 0.25):
                sequential.append(
                    {
                        "expected": e,
                        "audit_rows": 30,
                        "audit_pool_rows": pool_rows,
                        "drift": drift,
                        **simulate(e, e * (1 - drift), 30, pool_rows, args.refreshes, args.sequences),
                    }
                )
    print(json.dumps({"single_audit": rows, "sequential": sequential}, indent=1))


def simulate(
    expected: float,
    true_agreement: float,
    audit_rows: int,
    pool_rows: int,
    refreshes: int,
    sequences: int,
    seed: int = 0,
) -> dict:
    """Share of sequences in which a top-up is called within `refreshes`, and the median refresh it is called at."""
    from scalellm_dagster.core.audit import FAILURES_BEFORE_TOPUP, judge_audit

    rng = np.random.default_rng(seed)
    called_at = []
    for _ in range(sequences):
        earlier, streak, at = [], 0, None
        for refresh in range(1, refreshes + 1):
            agrees = rng.random(audit_rows) < true_agreement
            verdict = judge_audit(agrees, expected, earlier, pool_rows)
            earlier.append((audit_rows, int(agrees.sum()), expected))
            streak = streak + 1 if not verdict.passed else 0
            if streak >= FAILURES_BEFORE_TOPUP:
                at = refresh
                break
        called_at.append(at)
    called = [a for a in called_at if a is not None]
    return {
        f"topup_within_{refreshes}": round(len(called) / sequences, 3),
        "median_refresh_called": float(np.median(called)) if called else None,
    }


if __name__ == "__main__":
    main()
