"""How often the drift audit fails when the new rows have drifted (issue #27): its power, computed exactly.

Drift of x %: a share x of the new rows come from somewhere the student never learned (it agrees with the teacher on
none of them, as with a label the sample never saw), so the agreement the audit samples falls from the expected e to
e * (1 - x). The audit of n rows fails when the upper end of the exact 95 % Clopper-Pearson interval of its agreement
is below e; its power is the binomial probability of that, summed exactly over the outcomes. Also shown: the false
alarm rate (no drift), and the power of a drop of 10 points, for several audit sizes.

    .venv/bin/python benchmarks/audit_power.py [--expected 0.85 0.70] [--sizes 30 60 100 300]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalellm_dagster.core.audit import clopper_pearson  # noqa: E402


def power(n: int, expected: float, true_agreement: float) -> float:
    fails = np.array([clopper_pearson(k, n)[1] < expected for k in range(n + 1)])
    return float(binom.pmf(np.arange(n + 1), n, true_agreement)[fails].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected", type=float, nargs="+", default=[0.85, 0.70])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 100, 300])
    args = parser.parse_args()
    rows = []
    for e in args.expected:
        for n in args.sizes:
            rows.append({"expected": e, "audit_rows": n, "false_alarm": round(power(n, e, e), 4),
                         **{f"drift_{int(x * 100)}pct": round(power(n, e, e * (1 - x)), 3) for x in (0.1, 0.25, 0.5)},
                         "drop_10_points": round(power(n, e, e - 0.10), 3)})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
