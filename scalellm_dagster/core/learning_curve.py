"""Accuracy vs number of teacher labels: a saturating power law, fitted to forecast larger budgets."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


@dataclass(frozen=True)
class LearningCurve:
    """err(n) = a * n^(-alpha) + c; `c` is the error the student would keep with unlimited labels."""

    a: float
    alpha: float
    c: float
    r2: float
    points: int
    cov: tuple | None = None  # the fit's parameter covariance (3x3, nested tuples), for the forecast band
    floor_min: float = 0.0  # the floor's lower bound the fit was given (the teacher's unlearnable noise)

    def accuracy_at(self, n: float | np.ndarray) -> float | np.ndarray:
        return 1.0 - (self.a * np.power(n, -self.alpha) + self.c)

    def band(self, n: np.ndarray, draws: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """A 68 % band of forecast accuracy at `n`: parameters drawn from the fit's covariance, kept within the
        fit's bounds. None when the fit gave no usable covariance (e.g. as many points as parameters)."""
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
        p[:, 2] = np.clip(p[:, 2], self.floor_min, 1)
        acc = 1.0 - (p[:, [0]] * np.power(np.asarray(n, float)[None, :], -p[:, [1]]) + p[:, [2]])
        lo, hi = np.percentile(np.clip(acc, 0, 1), [16, 84], axis=0)
        return lo, hi


def _err(n, a, alpha, c):
    return a * np.power(n, -alpha) + c


def fit_learning_curve(sizes, accuracies, floor_min: float = 0.0) -> LearningCurve | None:
    """Weighted least squares; None when there are fewer than three distinct sizes or the fit does not converge.

    Each point is weighted by its binomial standard error, sqrt(err (1 - err) / n): accuracy measured on few labels
    is noisy, and letting it pull as hard as the largest sizes makes forecasts level off too early.
    `floor_min` bounds the floor from below: with three or four points on the rising part of the curve, an unbounded
    fit puts it at 0 (a student that would end up agreeing with every teacher label), which no noisy teacher allows.
    """
    n = np.asarray(sizes, dtype=float)
    err = 1.0 - np.asarray(accuracies, dtype=float)
    keep = np.isfinite(err)
    n, err = n[keep], err[keep]
    floor_min = float(np.clip(floor_min, 0.0, max(err.min() - 1e-6, 0.0))) if len(err) else 0.0
    if len(np.unique(n)) < 3:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, cov = curve_fit(
                _err, n, err, p0=(1.0, 0.5, max(err.min() / 2, floor_min)),
                sigma=np.sqrt(np.clip(err * (1 - err), 1e-3, None) / n),
                bounds=([0.0, 0.0, floor_min], [np.inf, 2.0, 1.0]), maxfev=20000,
            )
    except (RuntimeError, ValueError):
        return None
    residual = err - _err(n, *params)
    total = ((err - err.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    usable = len(n) > 3 and np.all(np.isfinite(cov))
    return LearningCurve(a=float(params[0]), alpha=float(params[1]), c=float(params[2]), r2=float(r2), points=len(n),
                         cov=tuple(map(tuple, cov.tolist())) if usable else None, floor_min=floor_min)
