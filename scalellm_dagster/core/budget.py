"""Budget advice: how many teacher labels reach a target accuracy, or the most a cost cap buys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalellm_dagster.core.learning_curve import LearningCurve


@dataclass(frozen=True)
class BudgetAdvice:
    recommended_budget: int
    forecast_accuracy: float
    teacher_cost_usd: float
    teacher_seconds: float
    reason: str


def advise_budget(
    curve: LearningCurve | None,
    labels_now: int,
    corpus_rows: int,
    cost_per_row: float,
    seconds_per_row: float,
    target_accuracy: float | None = None,
    *,
    max_cost_usd: float | None = None,
) -> BudgetAdvice | None:
    """None without a fitted curve or a target. Forecasts are extrapolations of the fitted power law."""
    if curve is None or (target_accuracy is None and max_cost_usd is None):
        return None
    grid = np.unique(np.geomspace(max(labels_now, 2), max(corpus_rows, labels_now), 400).astype(int))
    acc = np.asarray(curve.accuracy_at(grid))
    affordable = grid if max_cost_usd is None else grid[grid * cost_per_row <= max_cost_usd]
    if len(affordable) == 0:
        affordable = grid[:1]
    if target_accuracy is not None:
        meets = affordable[np.asarray(curve.accuracy_at(affordable)) >= target_accuracy]
        if len(meets):
            n = int(meets[0])
            reason = f"fewest labels whose forecast reaches {target_accuracy:.3f}"
        else:
            n = int(affordable[-1])
            ceiling = 1 - curve.c
            reason = (
                f"target {target_accuracy:.3f} not reached within "
                f"{'the cost cap' if max_cost_usd is not None else 'the corpus'}; "
                f"the curve levels off at {ceiling:.3f}: most labels allowed"
            )
    else:
        n = int(affordable[-1])
        reason = f"most labels within ${max_cost_usd:,.2f}"
    forecast = float(np.interp(n, grid, acc))
    return BudgetAdvice(n, forecast, n * cost_per_row, n * seconds_per_row, reason)
