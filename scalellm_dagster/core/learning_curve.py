"""Accuracy vs number of teacher labels: a saturating power law, fitted to forecast larger budgets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares


@dataclass(frozen=True)
class FloorPrior:
    """What the teacher's unlearnable noise says of the curve's floor `c`: an estimate with its standard error,
    weighed with the measured points (not a bound: the estimate itself is uncertain)."""

    mean: float
    sd: float


@dataclass(frozen=True)
class LearningCurve:
    """err(n) = a * n^(-alpha) + c; `c` is the error the student would keep with unlimited labels."""

    a: float
    alpha: float
    c: float
    r2: float
    points: int
    cov: tuple | None = None  # the fit's parameter covariance (3x3, nested tuples), for the forecast band
    prior: FloorPrior | None = None  # what the fit was told of the floor

    def accuracy_at(self, n: float | np.ndarray) -> float | np.ndarray:
        return 1.0 - (self.a * np.power(n, -self.alpha) + self.c)

    def band(self, n: np.ndarray, draws: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """The fit's parameter uncertainty at `n` (16th-84th percentiles of parameters drawn from its covariance,
        kept within the fit's bounds). Not a calibrated 68 % interval: it ignores that the measured points share
        their labels and the floor estimate's own error, and held the next measured point in 1-5 of 10 runs
        (BENCHMARKS.md, issue #36), so the report does not draw it. None without a usable covariance."""
        if self.cov is None:
            return None
        cov = np.asarray(self.cov, dtype=float)
        if not np.all(np.isfinite(cov)):
            return None
        rng = np.random.default_rng(seed)
        try:
            p = rng.multivariate_normal([self.a, self.alpha, self.c], cov, size=draws, check_valid="ignore")
        except (np.linalg.LinAlgError, ValueError):
            return None
        p[:, 0] = np.clip(p[:, 0], 0, None)
        p[:, 1] = np.clip(p[:, 1], 0, 2)
        p[:, 2] = np.clip(p[:, 2], 0, 1)
        acc = 1.0 - (p[:, [0]] * np.power(np.asarray(n, float)[None, :], -p[:, [1]]) + p[:, [2]])
        lo, hi = np.percentile(np.clip(acc, 0, 1), [16, 84], axis=0)
        return lo, hi


def _err(n, a, alpha, c):
    return a * np.power(n, -alpha) + c


def fit_learning_curve(sizes, accuracies, prior: FloorPrior | None = None) -> LearningCurve | None:
    """Weighted least squares; None when there are fewer than three distinct sizes or the fit does not converge.

    Each point is weighted by its binomial standard error, sqrt(err (1 - err) / n): accuracy measured on few labels
    is noisy, and letting it pull as hard as the largest sizes makes forecasts level off too early. `prior` enters
    as one more observation, of the floor: with three or four points on the rising part of the curve, an unbounded
    fit puts the floor at 0 (a student that would end up agreeing with every teacher label), which no noisy teacher
    allows; a hard bound at the estimated noise would make every forecast pessimistic by the estimate's error.
    """
    n = np.asarray(sizes, dtype=float)
    err = 1.0 - np.asarray(accuracies, dtype=float)
    keep = np.isfinite(err)
    n, err = n[keep], err[keep]
    if len(np.unique(n)) < 3:
        return None
    sigma = np.sqrt(np.clip(err * (1 - err), 1e-3, None) / n)
    if prior is not None and prior.mean > err.min():  # an estimate above a measured error is contradicted by it
        prior = FloorPrior(float(err.min()), prior.sd)

    def residuals(p):
        r = (err - _err(n, *p)) / sigma
        return np.append(r, (p[2] - prior.mean) / prior.sd) if prior is not None else r

    start = (1.0, 0.5, float(np.clip(prior.mean if prior else err.min() / 2, 0, max(err.min(), 0))))
    try:
        fit = least_squares(residuals, start, bounds=([0.0, 0.0, 0.0], [np.inf, 2.0, 1.0]), max_nfev=20000)
    except (RuntimeError, ValueError):
        return None
    if not fit.success:
        return None
    params = fit.x
    residual = err - _err(n, *params)
    total = ((err - err.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    observations = len(fit.fun)
    cov = None
    if observations > 3:
        with np.errstate(all="ignore"):
            try:
                # scaled by the reduced chi-square, as curve_fit does with relative weights
                scale = max(float((fit.fun**2).sum()) / (observations - 3), 1.0)
                cov = np.linalg.inv(fit.jac.T @ fit.jac) * scale
            except np.linalg.LinAlgError:
                cov = None
    usable = cov is not None and np.all(np.isfinite(cov))
    return LearningCurve(
        a=float(params[0]),
        alpha=float(params[1]),
        c=float(params[2]),
        r2=float(r2),
        points=len(n),
        cov=tuple(map(tuple, cov.tolist())) if usable else None,
        prior=prior,
    )
